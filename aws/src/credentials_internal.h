// credentials_internal.h — helpers shared by the credential providers (credentials.cc,
// credentials_remote.cc) and reachable by their unit tests. Not part of the library's interface.
#pragma once

#include <map>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "leasefs/aws/credentials.h"
#include "leasefs/aws/http.h"

namespace leasefs::aws::internal {

// The variable's value, or nullopt when unset *or empty* (an empty AWS_PROFILE means "not set",
// as in the AWS CLI). An environment without a getenv function has no variables at all.
std::optional<std::string> Env(const CredentialEnvironment& env, const std::string& name);

std::string Trim(std::string_view text);

// "~/x" -> HOME/x; anything else unchanged.
std::string ExpandHome(const std::string& path, const std::string& home);

// Reads a whole (small) file. False with `why` ("cannot open PATH: No such file or directory").
// `missing` (optional) is set when the failure was ENOENT.
bool ReadSmallFile(const std::string& path, std::string* out, std::string* why,
                   bool* missing = nullptr);

// ISO 8601 / RFC 3339 date-time as AWS writes it: 2024-05-17T15:09:54Z, optionally with
// fractional seconds and a Z / +HH:MM / -HHMM offset. nullopt when malformed.
std::optional<WallTime> ParseIso8601(std::string_view text);
std::string FormatIso8601(WallTime time);  // 2024-05-17T15:09:54Z (for logs and messages)

// The text content of the first <tag>...</tag> in `xml` (entities decoded). Enough for the fixed
// shapes of STS responses; not a general XML parser.
std::optional<std::string> XmlText(std::string_view xml, std::string_view tag);

// application/x-www-form-urlencoded value: unreserved characters kept, all else %XX.
std::string FormEncode(std::string_view text);

// One line about a failed HTTP exchange, safe to log: "HTTP 404" plus a short sanitized excerpt
// of the body, or "transport error: ...". Only ever called for error answers, which carry no
// credentials.
std::string DescribeFailure(const HttpResponse& response);

// Credentials from the JSON document the ECS/EKS agents and IMDS serve (AccessKeyId,
// SecretAccessKey, Token, Expiration). False with `why` when a field is missing or malformed.
bool CredentialsFromJson(const std::string& body, Credentials* out, std::string* why);

// The shared AWS files as the CLI reads them.
struct SharedFiles {
  std::string profile;           // AWS_PROFILE or "default"
  std::string credentials_path;  // AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials
  std::string config_path;       // AWS_CONFIG_FILE or ~/.aws/config
};
SharedFiles LocateSharedFiles(const CredentialEnvironment& env);

// The keys of `profile` in one file: the credentials file names sections [NAME], the config file
// [profile NAME] (and [default] for "default", used when there is no [profile default]). False when
// the file or the section does not exist; `why` says which (a missing file is not an error, an
// unreadable one is reported as such).
bool LoadProfile(const std::string& path, const std::string& profile, bool config_style,
                 std::map<std::string, std::string>* keys, std::string* why);

}  // namespace leasefs::aws::internal
