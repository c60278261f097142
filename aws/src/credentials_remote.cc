// credentials_remote.cc — the providers that ask a service over HTTP: STS web identity, the ECS/EKS
// container agent and EC2 instance metadata (IMDSv2). The chain, the refresh protocol and the
// invariants every provider keeps (no secret in logs or `why`, inputs re-read at every fetch) are
// described at the top of credentials.cc.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <utility>

#include "credentials_internal.h"
#include "leasefs/aws/credentials.h"
#include "leasefs/aws/endpoint.h"
#include "leasefs/aws/http.h"

namespace leasefs::aws {
namespace {

using internal::Env;
using internal::Trim;

std::string WithoutTrailingSlash(std::string url) {
  while (!url.empty() && url.back() == '/') url.pop_back();
  return url;
}

bool HasLineBreak(const std::string& text) {
  return text.find_first_of("\r\n") != std::string::npos;
}

// ---- web identity -----------------------------------------------------------------------------

// The STS endpoint, by endpoint.h's rules (AWS_ENDPOINT_URL_STS, AWS_ENDPOINT_URL, else regional).
// Without any region the SDKs use the global endpoint sts.amazonaws.com, which is us-east-1's.
std::string StsEndpoint(const CredentialEnvironment& env) {
  std::string region = ResolveRegion("", env);
  if (region.empty()) region = "us-east-1";
  return WithoutTrailingSlash(ResolveEndpoint("", "STS", "sts", region, env));
}

class WebIdentityProvider final : public CredentialProvider {
 public:
  WebIdentityProvider(CredentialEnvironment env, std::shared_ptr<HttpClient> http)
      : env_(std::move(env)), http_(std::move(http)) {}

  std::optional<Credentials> fetch(Deadline deadline, std::string* why) override {
    std::string token_file, role_arn, session_name, source;
    if (auto file = Env(env_, "AWS_WEB_IDENTITY_TOKEN_FILE")) {
      token_file = *file;
      role_arn = Env(env_, "AWS_ROLE_ARN").value_or("");
      session_name = Env(env_, "AWS_ROLE_SESSION_NAME").value_or("");
      source = "AWS_WEB_IDENTITY_TOKEN_FILE";
      if (role_arn.empty()) {
        *why = "AWS_WEB_IDENTITY_TOKEN_FILE is set but AWS_ROLE_ARN is not";
        return std::nullopt;
      }
    } else {
      // The profile may carry the same settings (web_identity_token_file, role_arn).
      internal::SharedFiles files = internal::LocateSharedFiles(env_);
      std::map<std::string, std::string> keys;
      std::string ignored;
      if (internal::LoadProfile(files.config_path, files.profile, true, &keys, &ignored) &&
          keys.count("web_identity_token_file")) {
        token_file = internal::ExpandHome(Trim(keys["web_identity_token_file"]), env_.home);
        role_arn = Trim(keys["role_arn"]);
        session_name = Trim(keys["role_session_name"]);
        source = "profile \"" + files.profile + "\" in " + files.config_path;
        if (role_arn.empty()) {
          *why = source + " has web_identity_token_file but no role_arn";
          return std::nullopt;
        }
      } else {
        *why = "AWS_WEB_IDENTITY_TOKEN_FILE is not set (nor web_identity_token_file in profile \"" +
               files.profile + "\")";
        return std::nullopt;
      }
    }
    if (!http_) {
      *why = "no HTTP client";
      return std::nullopt;
    }
    std::string token, error;
    if (!internal::ReadSmallFile(token_file, &token, &error)) {
      *why = "web identity token: " + error;
      return std::nullopt;
    }
    token = Trim(token);
    if (token.empty()) {
      *why = "web identity token file " + token_file + " is empty";
      return std::nullopt;
    }
    if (session_name.empty()) {
      auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(
          std::chrono::system_clock::now().time_since_epoch());
      session_name = "leasefs-" + std::to_string(millis.count());
    }

    HttpRequest request;
    request.method = "POST";
    request.url = StsEndpoint(env_) + "/";
    request.headers = {{"Content-Type", "application/x-www-form-urlencoded; charset=utf-8"},
                       {"Accept", "application/xml"}};
    request.body = "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn=" +
                   internal::FormEncode(role_arn) +
                   "&RoleSessionName=" + internal::FormEncode(session_name) +
                   "&WebIdentityToken=" + internal::FormEncode(token);
    RetryPolicy policy;
    policy.max_attempts = 4;
    policy.retryable = [](const HttpRequest& req, const HttpResponse& resp) {
      // STS asks callers to retry when it could not reach the identity provider.
      return DefaultRetryable(req, resp) ||
             (resp.status == 400 && resp.body.find("IDPCommunicationError") != std::string::npos);
    };
    HttpResponse response = http_->send_with_retries(request, deadline, policy);
    std::string where = "STS AssumeRoleWithWebIdentity at " + request.url + " (role " + role_arn +
                        ", token from " + source + ")";
    if (response.status != 200) {
      if (response.status != 0) {
        // <ErrorResponse><Error><Code>..</Code><Message>..</Message></Error></ErrorResponse>
        std::string code = internal::XmlText(response.body, "Code").value_or("");
        std::string message = internal::XmlText(response.body, "Message").value_or("");
        if (!code.empty()) {
          *why = where + ": HTTP " + std::to_string(response.status) + " " + code +
                 (message.empty() ? "" : ": " + message);
          return std::nullopt;
        }
      }
      *why = where + ": " + internal::DescribeFailure(response);
      return std::nullopt;
    }
    std::optional<std::string> block = internal::XmlText(response.body, "Credentials");
    Credentials creds;
    std::optional<std::string> id, secret, session, expiration;
    if (block) {
      id = internal::XmlText(*block, "AccessKeyId");
      secret = internal::XmlText(*block, "SecretAccessKey");
      session = internal::XmlText(*block, "SessionToken");
      expiration = internal::XmlText(*block, "Expiration");
    }
    if (!id || !secret || !session || !expiration || id->empty() || secret->empty()) {
      *why = where +
             ": the answer lacks Credentials (AccessKeyId, SecretAccessKey, SessionToken, " +
             "Expiration)";
      return std::nullopt;
    }
    creds.expires = internal::ParseIso8601(*expiration);
    if (!creds.expires) {
      *why =
          where + ": the answer's Expiration \"" + Trim(*expiration) + "\" is not an ISO 8601 time";
      return std::nullopt;
    }
    creds.access_key_id = Trim(*id);
    creds.secret_access_key = Trim(*secret);
    creds.session_token = Trim(*session);
    return creds;
  }
  std::string name() const override { return "web-identity"; }

 private:
  CredentialEnvironment env_;
  std::shared_ptr<HttpClient> http_;
};

// ---- ECS / EKS container credentials ----------------------------------------------------------

// The host of an absolute URL, lower-cased, without brackets or port.
std::string HostOf(const std::string& url, std::string* scheme) {
  size_t sep = url.find("://");
  if (sep == std::string::npos) return {};
  *scheme = url.substr(0, sep);
  std::transform(scheme->begin(), scheme->end(), scheme->begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  size_t start = sep + 3;
  size_t end = url.find_first_of("/?#", start);
  std::string authority = url.substr(start, end == std::string::npos ? end : end - start);
  if (size_t at = authority.rfind('@'); at != std::string::npos) authority.erase(0, at + 1);
  std::string host;
  if (!authority.empty() && authority[0] == '[') {
    size_t close = authority.find(']');
    host = authority.substr(1, close == std::string::npos ? close : close - 1);
  } else {
    host = authority.substr(0, authority.find(':'));
  }
  std::transform(host.begin(), host.end(), host.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return host;
}

// A plain-http FULL_URI would send the authorization token in the clear, so (as in the SDKs) it
// must point at this machine or at the ECS/EKS agents' link-local addresses.
bool AllowedPlainHttpHost(const std::string& host) {
  if (host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0) return true;
  return host == "169.254.170.2" || host == "169.254.170.23" || host == "fd00:ec2::23";
}

class EcsProvider final : public CredentialProvider {
 public:
  EcsProvider(CredentialEnvironment env, std::shared_ptr<HttpClient> http)
      : env_(std::move(env)), http_(std::move(http)) {}

  std::optional<Credentials> fetch(Deadline deadline, std::string* why) override {
    std::string url;
    if (auto relative = Env(env_, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")) {
      std::string host = WithoutTrailingSlash(
          Env(env_, "LEASEFS_ECS_CONTAINER_ENDPOINT").value_or("http://169.254.170.2"));
      url = host + ((*relative)[0] == '/' ? "" : "/") + *relative;
    } else if (auto full = Env(env_, "AWS_CONTAINER_CREDENTIALS_FULL_URI")) {
      std::string scheme;
      std::string host = HostOf(*full, &scheme);
      if (host.empty() || (scheme != "http" && scheme != "https")) {
        *why = "AWS_CONTAINER_CREDENTIALS_FULL_URI " + *full + " is not an http(s) URL";
        return std::nullopt;
      }
      if (scheme == "http" && !AllowedPlainHttpHost(host)) {
        *why = "AWS_CONTAINER_CREDENTIALS_FULL_URI " + *full +
               " is plain http to a host other than loopback or the ECS/EKS agent";
        return std::nullopt;
      }
      url = *full;
    } else {
      *why = "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI and _FULL_URI are not set";
      return std::nullopt;
    }
    if (!http_) {
      *why = "no HTTP client";
      return std::nullopt;
    }

    HttpRequest request;
    request.method = "GET";
    request.url = url;
    request.headers = {{"Accept", "application/json"}};
    // The token file (EKS Pod Identity rotates it) takes precedence over the variable.
    std::optional<std::string> authorization;
    if (auto file = Env(env_, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")) {
      std::string text, error;
      if (!internal::ReadSmallFile(*file, &text, &error)) {
        *why = "authorization token: " + error;
        return std::nullopt;
      }
      authorization = Trim(text);
    } else if (auto token = Env(env_, "AWS_CONTAINER_AUTHORIZATION_TOKEN")) {
      authorization = *token;
    }
    if (authorization) {
      if (authorization->empty() || HasLineBreak(*authorization)) {
        *why = "the container authorization token is empty or spans lines";
        return std::nullopt;
      }
      request.headers.emplace_back("Authorization", *authorization);
    }

    RetryPolicy policy;
    policy.max_attempts = 3;
    HttpResponse response = http_->send_with_retries(request, deadline, policy);
    if (response.status != 200) {
      *why = "container credentials at " + url + ": " + internal::DescribeFailure(response);
      return std::nullopt;
    }
    Credentials creds;
    std::string error;
    if (!internal::CredentialsFromJson(response.body, &creds, &error)) {
      *why = "container credentials at " + url + ": " + error;
      return std::nullopt;
    }
    return creds;
  }
  std::string name() const override { return "ecs"; }

 private:
  CredentialEnvironment env_;
  std::shared_ptr<HttpClient> http_;
};

// ---- EC2 instance metadata (IMDSv2) -----------------------------------------------------------

class ImdsProvider final : public CredentialProvider {
 public:
  static constexpr std::chrono::seconds kRequestTimeout{1};

  ImdsProvider(CredentialEnvironment env, std::shared_ptr<HttpClient> http)
      : env_(std::move(env)), http_(std::move(http)) {}

  std::optional<Credentials> fetch(Deadline deadline, std::string* why) override {
    if (auto disabled = Env(env_, "AWS_EC2_METADATA_DISABLED")) {
      std::string value = Trim(*disabled);
      std::transform(value.begin(), value.end(), value.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      if (value == "true") {
        *why = "disabled by AWS_EC2_METADATA_DISABLED";
        return std::nullopt;
      }
    }
    if (!http_) {
      *why = "no HTTP client";
      return std::nullopt;
    }
    std::string endpoint = WithoutTrailingSlash(
        Env(env_, "AWS_EC2_METADATA_SERVICE_ENDPOINT").value_or("http://169.254.169.254"));
    // Every request is short: outside EC2 nothing answers at the link-local address, and the
    // chain should report that within a second or so, not after the caller's whole deadline.
    auto request_deadline = [&] {
      return std::min(deadline, std::chrono::steady_clock::now() + kRequestTimeout);
    };

    HttpRequest token_request;
    token_request.method = "PUT";
    token_request.url = endpoint + "/latest/api/token";
    token_request.headers = {{"X-aws-ec2-metadata-token-ttl-seconds", "21600"}};
    HttpResponse token = http_->send(token_request, request_deadline());
    if (token.status != 200) {
      *why = "no IMDSv2 session token from " + token_request.url + ": " +
             internal::DescribeFailure(token);
      return std::nullopt;
    }
    std::string session = Trim(token.body);
    if (session.empty() || HasLineBreak(session)) {
      *why = "IMDS at " + endpoint + " answered the token request with an unusable token";
      return std::nullopt;
    }

    const std::string base = endpoint + "/latest/meta-data/iam/security-credentials/";
    HttpRequest role_request;
    role_request.url = base;
    role_request.headers = {{"X-aws-ec2-metadata-token", session}};
    HttpResponse roles = http_->send(role_request, request_deadline());
    if (roles.status == 404) {
      *why = "this instance has no IAM role (" + base + " answered 404)";
      return std::nullopt;
    }
    if (roles.status != 200) {
      *why = "role name from " + base + ": " + internal::DescribeFailure(roles);
      return std::nullopt;
    }
    std::string role = Trim(roles.body.substr(0, roles.body.find('\n')));
    if (role.empty() || role.find_first_of("/?#% \t") != std::string::npos) {
      *why = "IMDS at " + base + " named no usable role";
      return std::nullopt;
    }

    HttpRequest creds_request;
    creds_request.url = base + role;
    creds_request.headers = {{"X-aws-ec2-metadata-token", session}};
    HttpResponse answer = http_->send(creds_request, request_deadline());
    if (answer.status != 200) {
      *why = "credentials from " + creds_request.url + ": " + internal::DescribeFailure(answer);
      return std::nullopt;
    }
    Credentials creds;
    std::string error;
    if (!internal::CredentialsFromJson(answer.body, &creds, &error)) {
      *why = "credentials from " + creds_request.url + ": " + error;
      return std::nullopt;
    }
    return creds;
  }
  std::string name() const override { return "imds"; }

 private:
  CredentialEnvironment env_;
  std::shared_ptr<HttpClient> http_;
};

}  // namespace

std::unique_ptr<CredentialProvider> MakeWebIdentityProvider(CredentialEnvironment env,
                                                            std::shared_ptr<HttpClient> http) {
  return std::make_unique<WebIdentityProvider>(std::move(env), std::move(http));
}

std::unique_ptr<CredentialProvider> MakeEcsProvider(CredentialEnvironment env,
                                                    std::shared_ptr<HttpClient> http) {
  return std::make_unique<EcsProvider>(std::move(env), std::move(http));
}

std::unique_ptr<CredentialProvider> MakeImdsProvider(CredentialEnvironment env,
                                                     std::shared_ptr<HttpClient> http) {
  return std::make_unique<ImdsProvider>(std::move(env), std::move(http));
}

}  // namespace leasefs::aws
