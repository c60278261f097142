// endpoint.cc — region and endpoint resolution; the rules are in endpoint.h.
#include "leasefs/aws/endpoint.h"

#include <fstream>
#include <sstream>

namespace leasefs::aws {
namespace {

// The variable's value, "" when unset (an empty value counts as unset, as in the AWS SDKs).
std::string Env(const CredentialEnvironment& env, const std::string& name) {
  if (!env.getenv) return {};
  std::optional<std::string> value = env.getenv(name);
  return value ? *value : std::string();
}

std::string ConfigPath(const CredentialEnvironment& env) {
  std::string path = Env(env, "AWS_CONFIG_FILE");
  if (path.empty()) return env.home.empty() ? std::string() : env.home + "/.aws/config";
  if (path.starts_with("~/") && !env.home.empty()) path = env.home + path.substr(1);
  return path;
}

// The `region` of the selected profile in the config file, "" if the file, the profile or the key
// is missing (a missing file is normal: not every host has one).
std::string ProfileRegion(const CredentialEnvironment& env) {
  const std::string path = ConfigPath(env);
  if (path.empty()) return {};
  std::ifstream file(path, std::ios::binary);
  if (!file) return {};
  std::ostringstream text;
  text << file.rdbuf();
  const auto sections = ParseIni(text.str());

  std::string profile = Env(env, "AWS_PROFILE");
  if (profile.empty()) profile = "default";
  // The config file names profiles "[profile NAME]"; the default one may also be "[default]".
  for (const std::string& name :
       {"profile " + profile, profile == "default" ? profile : std::string()}) {
    if (name.empty()) continue;
    const auto section = sections.find(name);
    if (section == sections.end()) continue;
    const auto region = section->second.find("region");
    if (region != section->second.end() && !region->second.empty()) return region->second;
  }
  return {};
}

std::string WithoutTrailingSlashes(std::string url) {
  while (url.ends_with('/')) url.pop_back();
  return url;
}

}  // namespace

std::string ResolveRegion(const std::string& explicit_region, const CredentialEnvironment& env) {
  if (!explicit_region.empty()) return explicit_region;
  for (const char* name : {"AWS_REGION", "AWS_DEFAULT_REGION"}) {
    if (std::string region = Env(env, name); !region.empty()) return region;
  }
  return ProfileRegion(env);
}

std::string ResolveEndpoint(const std::string& explicit_endpoint,
                            const std::string& service_env_name, const std::string& host_prefix,
                            const std::string& region, const CredentialEnvironment& env) {
  if (!explicit_endpoint.empty()) return WithoutTrailingSlashes(explicit_endpoint);
  if (std::string url = Env(env, "AWS_ENDPOINT_URL_" + service_env_name); !url.empty()) {
    return WithoutTrailingSlashes(std::move(url));
  }
  if (std::string url = Env(env, "AWS_ENDPOINT_URL"); !url.empty()) {
    return WithoutTrailingSlashes(std::move(url));
  }
  if (region.empty()) return {};
  const char* suffix = region.starts_with("cn-") ? ".amazonaws.com.cn" : ".amazonaws.com";
  return "https://" + host_prefix + "." + region + suffix;
}

}  // namespace leasefs::aws
