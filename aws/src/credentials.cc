/*
** credentials.cc — where leasefs gets its AWS credentials, and how it keeps them fresh.
**
** THE CHAIN
**
** MakeDefaultChain() returns a provider that asks five providers in the order the AWS SDKs use,
** and the first that yields credentials wins:
**
**    1. environment   AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN)
**    2. web-identity  AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN (or the profile's
**                     web_identity_token_file + role_arn), exchanged at STS with an unsigned
**                     AssumeRoleWithWebIdentity POST                      (credentials_remote.cc)
**    3. shared-file   aws_access_key_id / aws_secret_access_key / aws_session_token of profile
**                     AWS_PROFILE ("default") in ~/.aws/credentials, else in ~/.aws/config
**    4. ecs           the container agent at AWS_CONTAINER_CREDENTIALS_RELATIVE_URI or _FULL_URI,
**                     with an Authorization token when one is configured (credentials_remote.cc)
**    5. imds          EC2 instance metadata, IMDSv2 only (session token first), 1 s per request
**                     so that a machine outside EC2 gives up quickly      (credentials_remote.cc)
**
** A provider that does not apply (its variables are unset) or fails says why in one line; the
** chain prefixes each line with the provider's name and joins them, so "no credentials" always
** comes with the five reasons, e.g.
**
**    environment: AWS_ACCESS_KEY_ID is not set; web-identity: AWS_WEB_IDENTITY_TOKEN_FILE is not
**    set (...); shared-file: no profile "default" in /root/.aws/credentials; /root/.aws/config
**    does not exist; ecs: ...; imds: no IMDSv2 session token from http://169.254.169.254/...

**
** A provider that applies but fails (an STS error, say) does not stop the search: the next one is
** asked, and the failure stays in `why` should none succeed. Once a provider has yielded, the
** chain sticks to it ("used for good"): a later refresh asks that provider only, so credentials
** never silently change identity because, for example, IMDS answered while STS was down.
**
** THE CACHE AND ITS REFRESH PROTOCOL                                       (credential_cache.cc)
**
** A CredentialCache owns one provider (normally the chain). start() fetches once, synchronously,
** so that bad configuration fails the mount with the reasons above. Credentials without an expiry
** (environment, shared files) are then kept as they are. For expiring ones a background thread
** sleeps until `refresh_before` (5 min) ahead of the expiry and fetches again:
**
**    success -> the new credentials replace the old ones atomically; the next refresh is
**               scheduled from the new expiry. If the new expiry is itself already within
**               `refresh_before` (short-lived credentials, or IMDS still serving the old set),
**               the next attempt is at half the time left, but never sooner than retry_min.
**    failure -> the old credentials stay in place (they are still valid: the refresh started
**               early for exactly this reason), the failure is logged, and the fetch is retried
**               after retry_min, 2*retry_min, ... capped at retry_max. Past the expiry current()
**               returns nullopt and the retries go on.
**
** INVARIANTS
**
**  * current() never waits on I/O: it copies the cached credentials under a mutex that is only
**    ever held to read or replace that copy, never across a provider call.
**  * At most one fetch runs at a time per cache: start() before the thread exists, then only the
**    refresher thread. Providers therefore need no locking of their own for fetch().
**  * Credentials that current() returns are unexpired by the cache's clock at the time of the
**    call (a caller should still not start a request that outlives them by much).
**  * No secret is ever logged or put into `why`: messages name variables, files, URLs, HTTP
**    statuses and provider names; access keys, secret keys, session tokens, web identity tokens
**    and container authorization tokens never appear. Response bodies are quoted (briefly) only
**    for answers other than 200, which carry no credentials.
**  * Providers read their inputs (environment, files) at every fetch, not once: rotated web
**    identity tokens and container authorization token files are picked up by the next refresh.
**  * No provider touches the process environment; everything comes through the
**    CredentialEnvironment, which is how the tests substitute theirs.
**
** This file holds the helpers shared by the providers, the two local providers and the chain.
*/
#include "leasefs/aws/credentials.h"

#include <errno.h>
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <string.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <utility>
#include <vector>

#include "credentials_internal.h"

namespace leasefs::aws {
namespace internal {

std::optional<std::string> Env(const CredentialEnvironment& env, const std::string& name) {
  if (!env.getenv) return std::nullopt;
  std::optional<std::string> value = env.getenv(name);
  if (!value || value->empty()) return std::nullopt;
  return value;
}

std::string Trim(std::string_view text) {
  size_t begin = 0, end = text.size();
  while (begin < end && std::isspace(static_cast<unsigned char>(text[begin]))) begin++;
  while (end > begin && std::isspace(static_cast<unsigned char>(text[end - 1]))) end--;
  return std::string(text.substr(begin, end - begin));
}

std::string ExpandHome(const std::string& path, const std::string& home) {
  if (path == "~") return home;
  if (path.rfind("~/", 0) == 0) return home + path.substr(1);
  return path;
}

bool ReadSmallFile(const std::string& path, std::string* out, std::string* why, bool* missing) {
  constexpr size_t kLimit = 1 << 20;  // credentials files and tokens are a few KiB
  if (missing) *missing = false;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (missing) *missing = (errno == ENOENT);
    *why = "cannot open " + path + ": " + strerror(errno);
    return false;
  }
  std::string text;
  char buffer[4096];
  for (;;) {
    ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      *why = "cannot read " + path + ": " + strerror(errno);
      ::close(fd);
      return false;
    }
    if (n == 0) break;
    text.append(buffer, static_cast<size_t>(n));
    if (text.size() > kLimit) {
      *why = path + " is larger than 1 MiB";
      ::close(fd);
      return false;
    }
  }
  ::close(fd);
  *out = std::move(text);
  return true;
}

namespace {

// Reads exactly `count` digits at text[*pos]; advances *pos.
bool Digits(std::string_view text, size_t* pos, size_t count, int* value) {
  if (*pos + count > text.size()) return false;
  int v = 0;
  for (size_t i = 0; i < count; i++) {
    char c = text[*pos + i];
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  *pos += count;
  *value = v;
  return true;
}

bool Expect(std::string_view text, size_t* pos, char c) {
  if (*pos >= text.size() || text[*pos] != c) return false;
  (*pos)++;
  return true;
}

}  // namespace

std::optional<WallTime> ParseIso8601(std::string_view raw) {
  std::string trimmed = Trim(raw);
  std::string_view text = trimmed;
  size_t pos = 0;
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
  if (!Digits(text, &pos, 4, &year) || !Expect(text, &pos, '-') || !Digits(text, &pos, 2, &month) ||
      !Expect(text, &pos, '-') || !Digits(text, &pos, 2, &day))
    return std::nullopt;
  if (pos >= text.size() || (text[pos] != 'T' && text[pos] != 't' && text[pos] != ' '))
    return std::nullopt;
  pos++;
  if (!Digits(text, &pos, 2, &hour) || !Expect(text, &pos, ':') ||
      !Digits(text, &pos, 2, &minute) || !Expect(text, &pos, ':') ||
      !Digits(text, &pos, 2, &second))
    return std::nullopt;
  std::chrono::nanoseconds fraction{0};
  if (pos < text.size() && (text[pos] == '.' || text[pos] == ',')) {
    pos++;
    size_t start = pos;
    int64_t scale = 100000000;
    int64_t nanos = 0;
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
      nanos += (text[pos] - '0') * scale;
      scale /= 10;
      pos++;
    }
    if (pos == start) return std::nullopt;
    fraction = std::chrono::nanoseconds(nanos);
  }
  std::chrono::minutes offset{0};
  if (pos < text.size() && (text[pos] == 'Z' || text[pos] == 'z')) {
    pos++;
  } else if (pos < text.size() && (text[pos] == '+' || text[pos] == '-')) {
    int sign = text[pos] == '-' ? -1 : 1;
    pos++;
    int oh = 0, om = 0;
    if (!Digits(text, &pos, 2, &oh)) return std::nullopt;
    Expect(text, &pos, ':');
    if (!Digits(text, &pos, 2, &om)) return std::nullopt;
    offset = std::chrono::minutes(sign * (oh * 60 + om));
  } else {
    return std::nullopt;  // AWS always states the zone; a bare local time would be a guess
  }
  if (pos != text.size()) return std::nullopt;
  if (hour > 23 || minute > 59 || second > 60) return std::nullopt;
  std::chrono::year_month_day date{std::chrono::year(year),
                                   std::chrono::month(static_cast<unsigned>(month)),
                                   std::chrono::day(static_cast<unsigned>(day))};
  if (!date.ok()) return std::nullopt;
  auto time = std::chrono::sys_days(date) + std::chrono::hours(hour) +
              std::chrono::minutes(minute) + std::chrono::seconds(second) - offset;
  return std::chrono::time_point_cast<WallTime::duration>(time + fraction);
}

std::string FormatIso8601(WallTime time) {
  auto seconds = std::chrono::floor<std::chrono::seconds>(time);
  auto days = std::chrono::floor<std::chrono::days>(seconds);
  std::chrono::year_month_day date(days);
  std::chrono::hh_mm_ss clock(seconds - days);
  char text[32];
  std::snprintf(text, sizeof text, "%04d-%02u-%02uT%02d:%02d:%02dZ", static_cast<int>(date.year()),
                static_cast<unsigned>(date.month()), static_cast<unsigned>(date.day()),
                static_cast<int>(clock.hours().count()), static_cast<int>(clock.minutes().count()),
                static_cast<int>(clock.seconds().count()));
  return text;
}

namespace {

std::string DecodeXmlEntities(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); i++) {
    if (text[i] != '&') {
      out += text[i];
      continue;
    }
    size_t semi = text.find(';', i);
    if (semi == std::string_view::npos) {
      out += text.substr(i);
      break;
    }
    std::string_view entity = text.substr(i + 1, semi - i - 1);
    if (entity == "amp") {
      out += '&';
    } else if (entity == "lt") {
      out += '<';
    } else if (entity == "gt") {
      out += '>';
    } else if (entity == "quot") {
      out += '"';
    } else if (entity == "apos") {
      out += '\'';
    } else if (entity.size() > 1 && entity[0] == '#') {
      unsigned long code = 0;
      try {
        code = entity[1] == 'x' || entity[1] == 'X'
                   ? std::stoul(std::string(entity.substr(2)), nullptr, 16)
                   : std::stoul(std::string(entity.substr(1)), nullptr, 10);
      } catch (...) {
        code = 0;
      }
      if (code == 0 || code > 0x10FFFF) {
        out += text.substr(i, semi - i + 1);
      } else if (code < 0x80) {  // UTF-8 encode
        out += static_cast<char>(code);
      } else if (code < 0x800) {
        out += static_cast<char>(0xC0 | (code >> 6));
        out += static_cast<char>(0x80 | (code & 0x3F));
      } else if (code < 0x10000) {
        out += static_cast<char>(0xE0 | (code >> 12));
        out += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (code & 0x3F));
      } else {
        out += static_cast<char>(0xF0 | (code >> 18));
        out += static_cast<char>(0x80 | ((code >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (code & 0x3F));
      }
    } else {
      out += text.substr(i, semi - i + 1);
    }
    i = semi;
  }
  return out;
}

}  // namespace

std::optional<std::string> XmlText(std::string_view xml, std::string_view tag) {
  std::string open = "<" + std::string(tag);
  size_t pos = 0;
  while ((pos = xml.find(open, pos)) != std::string_view::npos) {
    size_t after = pos + open.size();
    if (after >= xml.size()) return std::nullopt;
    char next = xml[after];
    if (next == '>' || next == '/' || std::isspace(static_cast<unsigned char>(next))) {
      size_t content = xml.find('>', after);
      if (content == std::string_view::npos) return std::nullopt;
      if (xml[content - 1] == '/') return std::string();  // <Tag/>
      content++;
      size_t close = xml.find("</" + std::string(tag) + ">", content);
      if (close == std::string_view::npos) return std::nullopt;
      std::string_view inner = xml.substr(content, close - content);
      if (inner.rfind("<![CDATA[", 0) == 0 && inner.size() >= 12 &&
          inner.substr(inner.size() - 3) == "]]>")
        return std::string(inner.substr(9, inner.size() - 12));
      return DecodeXmlEntities(inner);
    }
    pos = after;  // a longer tag sharing the prefix, e.g. <Credentials> vs <Credential>
  }
  return std::nullopt;
}

std::string FormEncode(std::string_view text) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

std::string DescribeFailure(const HttpResponse& response) {
  if (response.status == 0) {
    return "transport error: " + (response.transport_error.empty() ? std::string("no response")
                                                                   : response.transport_error);
  }
  std::string text = "HTTP " + std::to_string(response.status);
  std::string excerpt;
  for (char c : response.body.substr(0, 160))
    excerpt += (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) ? ' ' : c;
  excerpt = Trim(excerpt);
  if (!excerpt.empty()) text += " (" + excerpt + (response.body.size() > 160 ? "...)" : ")");
  return text;
}

bool CredentialsFromJson(const std::string& body, Credentials* out, std::string* why) {
  nlohmann::json doc = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object()) {
    *why = "the answer is not a JSON object";
    return false;
  }
  // IMDS says {"Code": "Success", ...}; anything else is an error it reports in-band.
  if (doc.contains("Code") && doc["Code"].is_string() && doc["Code"] != "Success") {
    *why = "the answer has Code " + doc["Code"].get<std::string>();
    return false;
  }
  auto field = [&](const char* name, std::string* value) {
    auto it = doc.find(name);
    if (it == doc.end() || !it->is_string() || it->get<std::string>().empty()) return false;
    *value = it->get<std::string>();
    return true;
  };
  Credentials creds;
  std::string expiration;
  if (!field("AccessKeyId", &creds.access_key_id) ||
      !field("SecretAccessKey", &creds.secret_access_key)) {
    *why = "the answer lacks AccessKeyId or SecretAccessKey";
    return false;
  }
  field("Token", &creds.session_token);
  if (field("Expiration", &expiration)) {
    creds.expires = ParseIso8601(expiration);
    if (!creds.expires) {
      *why = "the answer's Expiration \"" + expiration + "\" is not an ISO 8601 time";
      return false;
    }
  }
  *out = std::move(creds);
  return true;
}

SharedFiles LocateSharedFiles(const CredentialEnvironment& env) {
  SharedFiles files;
  files.profile = Env(env, "AWS_PROFILE").value_or("default");
  files.credentials_path =
      ExpandHome(Env(env, "AWS_SHARED_CREDENTIALS_FILE").value_or("~/.aws/credentials"), env.home);
  files.config_path = ExpandHome(Env(env, "AWS_CONFIG_FILE").value_or("~/.aws/config"), env.home);
  return files;
}

namespace {

// "profile  foo " -> {"profile", "foo"}: section names compared word by word.
std::vector<std::string> Words(std::string_view text) {
  std::vector<std::string> words;
  std::istringstream in{std::string(text)};
  for (std::string word; in >> word;) words.push_back(word);
  return words;
}

}  // namespace

bool LoadProfile(const std::string& path, const std::string& profile, bool config_style,
                 std::map<std::string, std::string>* keys, std::string* why) {
  std::string text, error;
  bool missing = false;
  if (path.empty() || path[0] == '~') {
    *why = "cannot locate " + path + " (HOME is not known)";
    return false;
  }
  if (!ReadSmallFile(path, &text, &error, &missing)) {
    *why = missing ? path + " does not exist" : error;
    return false;
  }
  auto sections = ParseIni(text);
  const std::map<std::string, std::string>* found = nullptr;
  const std::map<std::string, std::string>* fallback = nullptr;
  for (const auto& [name, values] : sections) {
    std::vector<std::string> words = Words(name);
    if (config_style) {
      if (words.size() == 2 && words[0] == "profile" && words[1] == profile) found = &values;
      // The CLI writes [default] in config; [profile default] is accepted too and, as in
      // endpoint.cc's region lookup, preferred when both exist.
      if (profile == "default" && words.size() == 1 && words[0] == "default") fallback = &values;
    } else if (words.size() == 1 && words[0] == profile) {
      found = &values;
    }
  }
  if (!found) found = fallback;
  if (!found) {
    *why = "no profile \"" + profile + "\" in " + path;
    return false;
  }
  *keys = *found;
  return true;
}

}  // namespace internal

namespace {

using internal::Env;

class EnvironmentProvider final : public CredentialProvider {
 public:
  explicit EnvironmentProvider(CredentialEnvironment env) : env_(std::move(env)) {}

  std::optional<Credentials> fetch(Deadline, std::string* why) override {
    std::optional<std::string> id = Env(env_, "AWS_ACCESS_KEY_ID");
    std::optional<std::string> secret = Env(env_, "AWS_SECRET_ACCESS_KEY");
    if (!id && !secret) {
      *why = "AWS_ACCESS_KEY_ID is not set";
      return std::nullopt;
    }
    if (!id || !secret) {
      *why = id ? "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not"
                : "AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not";
      return std::nullopt;
    }
    Credentials creds;
    creds.access_key_id = std::move(*id);
    creds.secret_access_key = std::move(*secret);
    creds.session_token = Env(env_, "AWS_SESSION_TOKEN").value_or("");
    return creds;
  }
  std::string name() const override { return "environment"; }

 private:
  CredentialEnvironment env_;
};

class SharedFileProvider final : public CredentialProvider {
 public:
  explicit SharedFileProvider(CredentialEnvironment env) : env_(std::move(env)) {}

  std::optional<Credentials> fetch(Deadline, std::string* why) override {
    internal::SharedFiles files = internal::LocateSharedFiles(env_);
    std::vector<std::string> reasons;
    // The credentials file first: a profile there is complete or it is the answer's problem.
    for (bool config : {false, true}) {
      const std::string& path = config ? files.config_path : files.credentials_path;
      std::map<std::string, std::string> keys;
      std::string reason;
      if (!internal::LoadProfile(path, files.profile, config, &keys, &reason)) {
        reasons.push_back(reason);
        continue;
      }
      auto value = [&](const char* key) {
        auto it = keys.find(key);
        return it == keys.end() ? std::string() : internal::Trim(it->second);
      };
      Credentials creds;
      creds.access_key_id = value("aws_access_key_id");
      creds.secret_access_key = value("aws_secret_access_key");
      creds.session_token = value("aws_session_token");
      if (!creds.access_key_id.empty() && !creds.secret_access_key.empty()) return creds;
      std::string where = "profile \"" + files.profile + "\" in " + path;
      if (!creds.access_key_id.empty() || !creds.secret_access_key.empty()) {
        reasons.push_back(where + " has only one of aws_access_key_id and aws_secret_access_key");
      } else if (keys.count("credential_process")) {
        reasons.push_back(where + " uses credential_process, which leasefs does not support");
      } else if (keys.count("sso_session") || keys.count("sso_start_url")) {
        reasons.push_back(where + " uses SSO, which leasefs does not support");
      } else if (keys.count("source_profile") || keys.count("credential_source")) {
        reasons.push_back(where + " assumes a role (source_profile/credential_source), which " +
                          "leasefs does not support");
      } else {
        reasons.push_back(where + " has no aws_access_key_id");
      }
    }
    *why = reasons[0] + "; " + reasons[1];
    return std::nullopt;
  }
  std::string name() const override { return "shared-file"; }

 private:
  CredentialEnvironment env_;
};

class ChainProvider final : public CredentialProvider {
 public:
  explicit ChainProvider(std::vector<std::unique_ptr<CredentialProvider>> providers)
      : providers_(std::move(providers)) {}

  std::optional<Credentials> fetch(Deadline deadline, std::string* why) override {
    CredentialProvider* chosen;
    {
      std::lock_guard<std::mutex> guard(mutex_);
      chosen = chosen_;
    }
    if (chosen) {
      std::string reason;
      std::optional<Credentials> creds = chosen->fetch(deadline, &reason);
      if (!creds) *why = chosen->name() + ": " + reason;
      return creds;
    }
    std::string reasons;
    for (auto& provider : providers_) {
      std::string reason;
      std::optional<Credentials> creds = provider->fetch(deadline, &reason);
      if (creds) {
        spdlog::debug("AWS credentials: using the {} provider", provider->name());
        std::lock_guard<std::mutex> guard(mutex_);
        chosen_ = provider.get();
        return creds;
      }
      spdlog::debug("AWS credentials: {} provider: {}", provider->name(), reason);
      if (!reasons.empty()) reasons += "; ";
      reasons += provider->name() + ": " + (reason.empty() ? "no credentials" : reason);
    }
    *why = reasons;
    return std::nullopt;
  }

  std::string name() const override {
    std::lock_guard<std::mutex> guard(mutex_);
    return chosen_ ? "chain(" + chosen_->name() + ")" : "chain";
  }

 private:
  std::vector<std::unique_ptr<CredentialProvider>> providers_;
  mutable std::mutex mutex_;
  CredentialProvider* chosen_ = nullptr;  // guarded by mutex_; set once
};

}  // namespace

std::unique_ptr<CredentialProvider> MakeEnvironmentProvider(CredentialEnvironment env) {
  return std::make_unique<EnvironmentProvider>(std::move(env));
}

std::unique_ptr<CredentialProvider> MakeSharedFileProvider(CredentialEnvironment env) {
  return std::make_unique<SharedFileProvider>(std::move(env));
}

std::unique_ptr<CredentialProvider> MakeDefaultChain(CredentialEnvironment env,
                                                     std::shared_ptr<HttpClient> http) {
  std::vector<std::unique_ptr<CredentialProvider>> providers;
  providers.push_back(MakeEnvironmentProvider(env));
  providers.push_back(MakeWebIdentityProvider(env, http));
  providers.push_back(MakeSharedFileProvider(env));
  providers.push_back(MakeEcsProvider(env, http));
  providers.push_back(MakeImdsProvider(std::move(env), std::move(http)));
  return std::make_unique<ChainProvider>(std::move(providers));
}

}  // namespace leasefs::aws
