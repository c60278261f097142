// leasefs/aws/dynamodb.h — a small DynamoDB JSON (1.0) client: the calls the lease store needs.
//
// Requests are POST / with X-Amz-Target: DynamoDB_20120810.<Op>, Content-Type
// application/x-amz-json-1.0, SigV4-signed for service "dynamodb". Items are nlohmann::json in
// DynamoDB's attribute-value form ({"k": {"S": "..."}, "rev": {"N": "3"}}).
//
// Results: every call returns a DynamoResult. `kConditionFailed` (ConditionalCheckFailedException)
// is an outcome, not an error. Errors are typed by the server's __type (the part after '#'):
// throttling (ProvisionedThroughputExceededException, ThrottlingException, RequestLimitExceeded)
// and 5xx are retried inside the deadline by the client; kAmbiguous means a write may have landed
// (the request may have been sent and no answer arrived) — the caller settles it by reading.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "leasefs/aws/credentials.h"
#include "leasefs/aws/http.h"

namespace leasefs::aws {

enum class DynamoStatus {
  kOk,
  kConditionFailed,   // ConditionalCheckFailedException
  kNotFound,          // ResourceNotFoundException (no such table)
  kAccessDenied,      // AccessDeniedException, UnrecognizedClientException, signature errors
  kValidation,        // ValidationException and other 4xx client errors
  kThrottled,         // retries exhausted on throttling
  kUnavailable,       // nothing was written: refused, 5xx, or never sent
  kAmbiguous,         // a write may have landed
  kNoCredentials,     // the credential cache had none
};

struct DynamoResult {
  DynamoStatus status = DynamoStatus::kUnavailable;
  nlohmann::json body;    // parsed response (kOk; kConditionFailed carries Item when asked)
  std::string error_type; // server __type without the namespace, or "transport"
  std::string message;    // human-readable
  int attempts = 0;
  bool ok() const { return status == DynamoStatus::kOk; }
};

struct DynamoOptions {
  std::string region;
  std::string endpoint;  // https://dynamodb.REGION.amazonaws.com or an override
  RetryPolicy retry;     // retryable is filled in by the client when empty
};

class DynamoClient {
 public:
  DynamoClient(DynamoOptions options, std::shared_ptr<HttpClient> http,
               std::shared_ptr<CredentialCache> credentials);

  // `request` is the operation's JSON body (TableName, Key, ...).
  DynamoResult call(const std::string& operation, const nlohmann::json& request,
                    Deadline deadline);

  DynamoResult get_item(const nlohmann::json& request, Deadline deadline) {
    return call("GetItem", request, deadline);
  }
  DynamoResult put_item(const nlohmann::json& request, Deadline deadline) {
    return call("PutItem", request, deadline);
  }
  DynamoResult update_item(const nlohmann::json& request, Deadline deadline) {
    return call("UpdateItem", request, deadline);
  }
  DynamoResult delete_item(const nlohmann::json& request, Deadline deadline) {
    return call("DeleteItem", request, deadline);
  }

  const DynamoOptions& options() const { return options_; }

 private:
  DynamoOptions options_;
  std::shared_ptr<HttpClient> http_;
  std::shared_ptr<CredentialCache> credentials_;
};

}  // namespace leasefs::aws
