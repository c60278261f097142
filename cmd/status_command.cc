#include "status_command.h"

#include <sys/xattr.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "leasefs/fuse/passthrough.h"
#include "mount_options.h"

namespace leasefs::cmd {
namespace {

using json = nlohmann::json;

std::string ModesText(const json& modes) {
  std::string out;
  for (const auto& [region, mode] : modes.items()) {
    out += (out.empty() ? "" : " ") + region + "=" + mode.get<std::string>();
  }
  return out.empty() ? "-" : out;
}

}  // namespace

int RunStatus(const std::string& mountpoint, bool as_json) {
  std::vector<char> buffer(64 * 1024);
  ssize_t n;
  while ((n = getxattr(mountpoint.c_str(), fuse::kStatusXattr, buffer.data(), buffer.size())) < 0 &&
         errno == ERANGE) {
    buffer.resize(buffer.size() * 4);
  }
  if (n < 0) {
    int err = errno;
    if (err == ENODATA || err == ENOTSUP) {
      std::fprintf(stderr, "leasefs: error: %s is not a leasefs mount with cluster locking\n",
                   mountpoint.c_str());
    } else {
      std::fprintf(stderr, "leasefs: error: cannot read the status of %s: %s\n", mountpoint.c_str(),
                   std::strerror(err));
    }
    return kExitFailure;
  }
  std::string text(buffer.data(), static_cast<size_t>(n));
  if (as_json) {
    std::printf("%s\n", text.c_str());
    return kExitOk;
  }
  json s = json::parse(text, nullptr, false);
  if (!s.is_object()) {
    std::fprintf(stderr, "leasefs: error: %s answered an unreadable status\n", mountpoint.c_str());
    return kExitFailure;
  }
  const json& st = s["stats"];
  const json& lk = s["locks"];
  uint64_t requests = st.value("store_requests", uint64_t{0});
  double average_ms = requests
                          ? static_cast<double>(st.value("store_latency_us_total", uint64_t{0})) /
                                1000.0 / static_cast<double>(requests)
                          : 0;
  std::printf("mount       %s\n", mountpoint.c_str());
  std::printf("session     %s\n", s.value("session", "").c_str());
  std::printf("store       %s\n", s.value("store", "").c_str());
  std::printf("lease       %.1f s, deadline in %.1f s%s\n", s.value("lease_ms", 0) / 1000.0,
              s.value("deadline_in_ms", 0) / 1000.0,
              s.value("dead", false)     ? ", DEAD (declared dead by another host)"
              : s.value("fenced", false) ? ", FENCED (writes refused)"
                                         : "");
  std::printf(
      "store use   %llu requests (%llu failed, %.2f ms average), %llu renewals (%llu failed)\n",
      static_cast<unsigned long long>(requests),
      static_cast<unsigned long long>(st.value("store_errors", uint64_t{0})), average_ms,
      static_cast<unsigned long long>(st.value("renewals", uint64_t{0})),
      static_cast<unsigned long long>(st.value("renewal_failures", uint64_t{0})));
  std::printf(
      "locks       %llu set (%llu busy, %llu waited), %llu tested, %llu fenced writes, "
      "%llu abandoned transactions\n",
      static_cast<unsigned long long>(lk.value("setlk", uint64_t{0})),
      static_cast<unsigned long long>(lk.value("setlk_busy", uint64_t{0})),
      static_cast<unsigned long long>(lk.value("setlkw_waits", uint64_t{0})),
      static_cast<unsigned long long>(lk.value("getlk", uint64_t{0})),
      static_cast<unsigned long long>(lk.value("fenced_writes", uint64_t{0})),
      static_cast<unsigned long long>(lk.value("abandoned_transactions", uint64_t{0})));
  std::printf(
      "handoffs    %llu yielded, %llu idle releases, %llu cache invalidations, "
      "%llu dead sessions taken over\n",
      static_cast<unsigned long long>(st.value("handoffs", uint64_t{0})),
      static_cast<unsigned long long>(st.value("idle_releases", uint64_t{0})),
      static_cast<unsigned long long>(st.value("invalidations", uint64_t{0})),
      static_cast<unsigned long long>(st.value("sessions_reaped", uint64_t{0})));
  std::printf("databases\n");
  for (const json& db : s["databases"]) {
    std::printf("  %s\n    claims %s; in use %s; version %llu%s%s\n", db.value("name", "").c_str(),
                ModesText(db["claims"]).c_str(), ModesText(db["in_use"]).c_str(),
                static_cast<unsigned long long>(db.value("version", uint64_t{0})),
                db.value("dirty", false) ? "; written" : "",
                db.value("competing", false) ? "; other hosts active" : "");
  }
  return kExitOk;
}

}  // namespace leasefs::cmd
