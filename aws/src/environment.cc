// environment.cc — CredentialEnvironment::Process() (credentials.h): the process's real
// environment, for the credential providers and the region/endpoint resolution.
#include <pwd.h>
#include <unistd.h>

#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "leasefs/aws/credentials.h"

namespace leasefs::aws {
namespace {

// $HOME when set and not empty (as the AWS CLI and SDKs do), else the passwd entry's directory
// (a daemon started by systemd may have no HOME), else "".
std::string ProcessHome() {
  if (const char* home = ::getenv("HOME"); home != nullptr && *home != '\0') return home;
  long size = ::sysconf(_SC_GETPW_R_SIZE_MAX);
  if (size <= 0) size = 16384;
  std::vector<char> buffer(static_cast<size_t>(size));
  struct passwd entry {};
  struct passwd* found = nullptr;
  if (::getpwuid_r(::getuid(), &entry, buffer.data(), buffer.size(), &found) == 0 &&
      found != nullptr && found->pw_dir != nullptr) {
    return found->pw_dir;
  }
  return {};
}

}  // namespace

CredentialEnvironment CredentialEnvironment::Process() {
  CredentialEnvironment env;
  // Read at each call, not captured now: the variables are read when a provider runs.
  env.getenv = [](const std::string& name) -> std::optional<std::string> {
    const char* value = ::getenv(name.c_str());
    if (value == nullptr) return std::nullopt;
    return std::string(value);
  };
  env.home = ProcessHome();
  return env;
}

}  // namespace leasefs::aws
