// leasefs/aws/credentials.h — AWS credentials and the standard provider chain.
//
// The chain, in the SDKs' order (first provider that yields credentials wins, and is then used
// for good, refreshed as it needs):
//   1. environment: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, optional AWS_SESSION_TOKEN;
//   2. web identity: AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN (+ AWS_ROLE_SESSION_NAME), through
//      STS AssumeRoleWithWebIdentity (unsigned POST, region from AWS_REGION/AWS_DEFAULT_REGION,
//      endpoint sts.REGION.amazonaws.com or AWS_ENDPOINT_URL_STS / AWS_ENDPOINT_URL);
//   3. shared files: ~/.aws/credentials and ~/.aws/config (AWS_SHARED_CREDENTIALS_FILE,
//      AWS_CONFIG_FILE), profile AWS_PROFILE or "default" (config uses "[profile NAME]");
//   4. ECS container: AWS_CONTAINER_CREDENTIALS_RELATIVE_URI (against http://169.254.170.2) or
//      AWS_CONTAINER_CREDENTIALS_FULL_URI, with AWS_CONTAINER_AUTHORIZATION_TOKEN[_FILE] (the
//      file wins); leasefs's own LEASEFS_ECS_CONTAINER_ENDPOINT replaces http://169.254.170.2;
//      a plain-http FULL_URI must name loopback or the ECS/EKS agent addresses;
//   5. EC2 IMDSv2: PUT /latest/api/token, then /latest/meta-data/iam/security-credentials/[ROLE]
//      (endpoint AWS_EC2_METADATA_SERVICE_ENDPOINT, default http://169.254.169.254; disabled by
//      AWS_EC2_METADATA_DISABLED=true).
// Every endpoint is overridable through the environment so tests point providers at a local HTTP
// server playing the service.
//
// Refresh: a CredentialCache calls its provider in a background thread when the credentials are
// within `refresh_before` of expiring (default 5 min), so current() — which a lease renewal calls —
// never waits on the network once credentials were first obtained. If a refresh fails, the old
// credentials are kept until they expire and the refresh is retried with backoff. The full
// protocol and its invariants are described at the top of src/credentials.cc.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "leasefs/aws/http.h"

namespace leasefs::aws {

using WallTime = std::chrono::system_clock::time_point;

struct Credentials {
  std::string access_key_id;
  std::string secret_access_key;
  std::string session_token;        // empty for long-term keys
  std::optional<WallTime> expires;  // empty: never expires
};

// Where providers read their inputs; tests replace both.
struct CredentialEnvironment {
  std::function<std::optional<std::string>(const std::string&)> getenv;  // default: ::getenv
  std::string home;                                                      // default: $HOME
  static CredentialEnvironment Process();
};

class CredentialProvider {
 public:
  virtual ~CredentialProvider() = default;
  // Fetches credentials now (may do network I/O, bounded by deadline). nullopt with `why` set
  // when this provider does not apply or failed.
  virtual std::optional<Credentials> fetch(Deadline deadline, std::string* why) = 0;
  virtual std::string name() const = 0;  // "environment", "web-identity", "shared-file", ...
};

std::unique_ptr<CredentialProvider> MakeEnvironmentProvider(CredentialEnvironment env);
std::unique_ptr<CredentialProvider> MakeWebIdentityProvider(CredentialEnvironment env,
                                                            std::shared_ptr<HttpClient> http);
std::unique_ptr<CredentialProvider> MakeSharedFileProvider(CredentialEnvironment env);
std::unique_ptr<CredentialProvider> MakeEcsProvider(CredentialEnvironment env,
                                                    std::shared_ptr<HttpClient> http);
std::unique_ptr<CredentialProvider> MakeImdsProvider(CredentialEnvironment env,
                                                     std::shared_ptr<HttpClient> http);
// The five above, in order; fetch() returns the first that yields, `why` lists every refusal.
std::unique_ptr<CredentialProvider> MakeDefaultChain(CredentialEnvironment env,
                                                     std::shared_ptr<HttpClient> http);

// Caches one provider's credentials and refreshes them in the background before they expire.
class CredentialCache {
 public:
  struct Options {
    std::chrono::seconds refresh_before{300};
    std::chrono::milliseconds fetch_timeout{5000};
    // After a failed refresh: retry after retry_min, doubling up to retry_max. retry_min is also
    // the shortest wait before re-fetching credentials that arrived already within
    // refresh_before of their expiry. (Added with the implementation: tests shorten them.)
    std::chrono::milliseconds retry_min{1000};
    std::chrono::milliseconds retry_max{60000};
    // The wall clock expiries are judged by; empty means std::chrono::system_clock::now. Only
    // tests set it (to expire credentials without waiting); the refresher still sleeps in real
    // time for the intervals this clock implies.
    std::function<WallTime()> now;
  };
  CredentialCache(std::unique_ptr<CredentialProvider> provider, Options options);
  CredentialCache(std::unique_ptr<CredentialProvider> provider)
      : CredentialCache(std::move(provider), Options{}) {}
  ~CredentialCache();  // stops the background thread

  // Fetches synchronously once (at startup, so bad configuration fails the mount early) and
  // starts the refresher. False with `why` when no credentials could be obtained.
  bool start(std::string* why);
  // The current credentials (never blocks on I/O after start() succeeded); nullopt if expired.
  std::optional<Credentials> current() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Parses an INI file as the AWS CLI writes them: sections, key = value, '#'/';' comments.
std::map<std::string, std::map<std::string, std::string>> ParseIni(const std::string& text);

}  // namespace leasefs::aws
