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

// A counter from the status JSON, for printf's %llu.
unsigned long long Count(const json& object, const char* key) {
  return static_cast<unsigned long long>(object.value(key, uint64_t{0}));
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
  unsigned long long requests = Count(st, "store_requests");
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
      requests, Count(st, "store_errors"), average_ms, Count(st, "renewals"),
      Count(st, "renewal_failures"));
  std::printf(
      "locks       %llu set (%llu busy, %llu waited), %llu tested, %llu fenced writes, "
      "%llu abandoned transactions\n",
      Count(lk, "setlk"), Count(lk, "setlk_busy"), Count(lk, "setlkw_waits"), Count(lk, "getlk"),
      Count(lk, "fenced_writes"), Count(lk, "abandoned_transactions"));
  std::printf(
      "handoffs    %llu yielded (%llu not taken), %llu idle releases, %llu cache invalidations, "
      "%llu dead sessions taken over, %llu hot-journal checks\n",
      Count(st, "handoffs"), Count(st, "wasted_handoffs"), Count(st, "idle_releases"),
      Count(st, "invalidations"), Count(st, "sessions_reaped"), Count(st, "hot_journal_checks"));
  std::printf("databases\n");
  for (const json& db : s["databases"]) {
    std::string path = db.value("path", "");
    std::printf("  %s (%s)\n    claims %s; in use %s; version %llu%s%s\n",
                path.empty() ? "?" : path.c_str(), db.value("name", "").c_str(),
                ModesText(db["claims"]).c_str(), ModesText(db["in_use"]).c_str(),
                Count(db, "version"), db.value("dirty", false) ? "; written" : "",
                db.value("competing", false) ? "; other hosts active" : "");
  }
  return kExitOk;
}

}  // namespace leasefs::cmd
