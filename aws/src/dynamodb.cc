// dynamodb.cc — the DynamoDB JSON 1.0 client.
//
// One call is one logical request: POST / with the operation's JSON body, signed afresh (SigV4,
// service "dynamodb") before every attempt, sent through HttpClient::send_with_retries inside the
// caller's deadline. The classifier retries what the default one does (transport errors before
// any byte was sent, 429, 5xx) plus DynamoDB's throttling errors, which arrive as HTTP 400 with a
// throttling __type.
//
// Mapping the last attempt to a DynamoStatus:
//
//   HTTP 200                                   kOk (body parsed; "{}" when empty)
//   400 ConditionalCheckFailedException        kConditionFailed (body kept: may carry "Item")
//   400 ResourceNotFoundException              kNotFound
//   400 AccessDenied / UnrecognizedClient /
//       signature and token errors             kAccessDenied
//   400 throttling __type, or 429              kThrottled (the retries ran out)
//   other 4xx                                  kValidation
//   5xx                                        kUnavailable
//   transport error                            kUnavailable
//   no credentials in the cache                kNoCredentials (nothing sent)
//
// Writes get one more rule. A write is *maybe applied* if any attempt of it was answered 5xx (the
// service may have applied it before failing) or failed in transport after the request may have
// been sent (maybe_sent). For such a write:
//   - a final error of any kind becomes kAmbiguous;
//   - a final kConditionFailed also becomes kAmbiguous: the condition may have failed only
//     because an earlier attempt of this same write landed (the Kinesis Client Library's
//     "lost lease" bug, and cirello-io/dynamolock #280) — the caller settles it by reading;
//   - a final kOk stays kOk (if an earlier attempt had landed, the retry's condition would have
//     failed; an unconditional write is idempotent).
// Reads are never ambiguous: a read that failed is kUnavailable.
#include "leasefs/aws/dynamodb.h"

#include <chrono>
#include <exception>
#include <optional>
#include <string_view>
#include <utility>

#include "leasefs/aws/sigv4.h"

namespace leasefs::aws {
namespace {

constexpr std::string_view kTargetPrefix = "DynamoDB_20120810.";

// Operations that change nothing; anything else is treated as a write.
bool IsReadOperation(std::string_view op) {
  return op == "GetItem" || op == "BatchGetItem" || op == "Query" || op == "Scan" ||
         op == "DescribeTable" || op == "ListTables" || op == "DescribeTimeToLive" ||
         op == "TransactGetItems" || op == "DescribeLimits" || op == "DescribeEndpoints";
}

bool IsThrottlingType(std::string_view type) {
  return type == "ProvisionedThroughputExceededException" || type == "ThrottlingException" ||
         type == "RequestLimitExceeded" || type == "LimitExceededException" ||
         type == "TransactionConflictException";
}

bool IsAccessType(std::string_view type) {
  return type == "AccessDeniedException" || type == "UnrecognizedClientException" ||
         type == "IncompleteSignatureException" || type == "MissingAuthenticationTokenException" ||
         type == "InvalidSignatureException" || type == "SignatureDoesNotMatch" ||
         type == "ExpiredTokenException" || type == "InvalidClientTokenId" ||
         type == "MissingAuthenticationToken";
}

// The error's type without its namespace ("com.amazonaws.dynamodb.v20120810#X" -> "X"), from the
// body's __type, else from the x-amzn-ErrorType header ("X:http://internal.amazon.com/...").
std::string ErrorType(const nlohmann::json& body, const Headers& headers) {
  std::string type;
  if (body.is_object()) {
    auto it = body.find("__type");
    if (it != body.end() && it->is_string()) type = it->get<std::string>();
  }
  if (type.empty()) {
    type = FindHeader(headers, "x-amzn-ErrorType");
    if (auto colon = type.find(':'); colon != std::string::npos) type.resize(colon);
  }
  if (auto hash = type.rfind('#'); hash != std::string::npos) type.erase(0, hash + 1);
  return type;
}

std::string ErrorMessage(const nlohmann::json& body) {
  if (!body.is_object()) return {};
  for (const char* name : {"message", "Message"}) {
    auto it = body.find(name);
    if (it != body.end() && it->is_string()) return it->get<std::string>();
  }
  return {};
}

nlohmann::json ParseBody(const std::string& text, bool* valid) {
  *valid = true;
  if (text.empty()) return nlohmann::json::object();
  nlohmann::json body = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) {
    *valid = false;
    return nlohmann::json::object();
  }
  return body;
}

// Retryable by the default rules, or a DynamoDB throttling error (HTTP 400 + __type).
bool DynamoRetryable(const HttpRequest& request, const HttpResponse& response) {
  if (DefaultRetryable(request, response)) return true;
  if (response.status != 400) return false;
  bool valid;
  nlohmann::json body = ParseBody(response.body, &valid);
  return IsThrottlingType(ErrorType(body, response.headers));
}

// Whether the service may have applied a request that got `response`.
bool MaybeApplied(const HttpResponse& response) {
  if (response.status >= 500) return true;
  return response.status == 0 && response.maybe_sent;
}

std::string RequestUrl(const std::string& endpoint) {
  // https://host[:port] needs a "/" path; an endpoint that already has a path keeps it.
  auto scheme = endpoint.find("://");
  auto path = endpoint.find('/', scheme == std::string::npos ? 0 : scheme + 3);
  return path == std::string::npos ? endpoint + "/" : endpoint;
}

}  // namespace

DynamoClient::DynamoClient(DynamoOptions options, std::shared_ptr<HttpClient> http,
                           std::shared_ptr<CredentialCache> credentials)
    : options_(std::move(options)), http_(std::move(http)), credentials_(std::move(credentials)) {}

DynamoResult DynamoClient::call(const std::string& operation, const nlohmann::json& request,
                                Deadline deadline) {
  DynamoResult result;
  const bool read = IsReadOperation(operation);

  std::optional<Credentials> credentials;
  if (credentials_) credentials = credentials_->current();
  if (!credentials) {
    result.status = DynamoStatus::kNoCredentials;
    result.error_type = "credentials";
    result.message = credentials_ ? "no valid AWS credentials (expired or never obtained)"
                                  : "no AWS credential provider configured";
    return result;
  }
  if (!http_) {
    result.status = DynamoStatus::kUnavailable;
    result.error_type = "transport";
    result.message = "no HTTP client configured";
    return result;
  }

  HttpRequest http_request;
  http_request.method = "POST";
  http_request.url = RequestUrl(options_.endpoint);
  http_request.headers = {{"Content-Type", "application/x-amz-json-1.0"},
                          {"X-Amz-Target", std::string(kTargetPrefix) + operation}};
  http_request.body = request.dump();

  // Observe every attempt's answer, whatever classifier decides on retrying it.
  bool maybe_applied = false;
  RetryPolicy policy = options_.retry;
  auto classify = policy.retryable ? policy.retryable : DynamoRetryable;
  policy.retryable = [&maybe_applied, classify](const HttpRequest& req, const HttpResponse& resp) {
    if (MaybeApplied(resp)) maybe_applied = true;
    return classify(req, resp);
  };
  auto sign = [this, &credentials](HttpRequest& req) {
    // A retry may run after a background refresh: sign with the freshest credentials.
    if (auto fresh = credentials_->current()) credentials = std::move(fresh);
    Sign(req, *credentials,
         SigningScope{options_.region, "dynamodb", std::chrono::system_clock::now()});
  };

  HttpResponse response;
  try {
    response = http_->send_with_retries(http_request, deadline, policy, sign);
  } catch (const std::exception& e) {  // Sign() throws only if OpenSSL itself fails
    response = HttpResponse{};
    response.transport_error = std::string("signing failed: ") + e.what();
  }
  if (MaybeApplied(response)) maybe_applied = true;
  result.attempts = response.attempts;

  if (response.status == 0) {
    result.error_type = "transport";
    result.message = response.transport_error.empty() ? "no response" : response.transport_error;
    result.status =
        (!read && maybe_applied) ? DynamoStatus::kAmbiguous : DynamoStatus::kUnavailable;
    return result;
  }

  bool valid;
  result.body = ParseBody(response.body, &valid);
  if (response.status == 200) {
    if (!valid && read) {
      result.status = DynamoStatus::kUnavailable;
      result.error_type = "transport";
      result.message = "malformed JSON in the response to " + operation;
      return result;
    }
    // A write answered 200 was applied, whatever its body says.
    result.status = DynamoStatus::kOk;
    return result;
  }

  result.error_type = ErrorType(result.body, response.headers);
  result.message = ErrorMessage(result.body);
  if (result.message.empty()) {
    result.message = "HTTP " + std::to_string(response.status);
    if (!result.error_type.empty()) result.message += " " + result.error_type;
  }
  const std::string& type = result.error_type;
  if (response.status >= 500) {
    result.status = DynamoStatus::kUnavailable;
  } else if (type == "ConditionalCheckFailedException") {
    result.status = DynamoStatus::kConditionFailed;
  } else if (type == "ResourceNotFoundException") {
    result.status = DynamoStatus::kNotFound;
  } else if (IsAccessType(type) || response.status == 403) {
    result.status = DynamoStatus::kAccessDenied;
  } else if (IsThrottlingType(type) || response.status == 429) {
    result.status = DynamoStatus::kThrottled;
  } else {
    result.status = DynamoStatus::kValidation;
  }
  if (!read && maybe_applied && result.status != DynamoStatus::kOk) {
    result.message = "an earlier attempt may have been applied; last answer: " + result.message;
    result.status = DynamoStatus::kAmbiguous;
  }
  return result;
}

}  // namespace leasefs::aws
