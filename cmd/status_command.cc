#include "status_command.h"

#include <limits.h>
#include <linux/limits.h>
#include <stdlib.h>
#include <sys/xattr.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "leasefs/fuse/passthrough.h"
#include "mount_checks.h"
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

// A member of the status JSON; null if absent (operator[] of a const object may not be asked
// for a key it lacks).
const json& Field(const json& object, const char* key) {
  static const json kAbsent;
  if (!object.is_object()) return kAbsent;
  auto it = object.find(key);
  return it == object.end() ? kAbsent : *it;
}

// A counter from the status JSON, for printf's %llu.
unsigned long long Count(const json& object, const char* key) {
  return object.is_object() ? static_cast<unsigned long long>(object.value(key, uint64_t{0})) : 0;
}

// The value of attribute `name` of `path` into *value: 0, or the errno. No value is larger than
// XATTR_SIZE_MAX (the kernel refuses those with E2BIG), so one call is enough.
int ReadAttribute(const std::string& path, const std::string& name, std::string* value) {
  std::vector<char> buffer(XATTR_SIZE_MAX);
  ssize_t n = getxattr(path.c_str(), name.c_str(), buffer.data(), buffer.size());
  if (n < 0) return errno;
  value->assign(buffer.data(), static_cast<size_t>(n));
  return 0;
}

// The status document of the leasefs mount at `path` (canonical), as one JSON object: the
// summary, and the pages of its snapshot's database list reassembled as "databases" (see
// fuse/passthrough.h kStatusXattr). A snapshot that goes before all its pages are read (it lives
// for seconds, and the daemon keeps only the last few) is taken again. A daemon from before
// pages answers the whole document at once. On failure returns false and one line in *error.
bool ReadStatus(const std::string& path, const std::string& shown, json* doc, std::string* error) {
  auto unreadable = [&] {
    *error = shown + " answered an unreadable status";
    return false;
  };
  auto failed = [&](int err) {
    *error = "cannot read the status of " + shown + ": " + std::strerror(err);
    return false;
  };
  constexpr int kAttempts = 5;
  for (int attempt = 0; attempt < kAttempts; attempt++) {
    std::string text;
    if (int err = ReadAttribute(path, fuse::kStatusXattr, &text)) {
      if (err != ENODATA && err != ENOTSUP) return failed(err);
      *error = shown + " has no status: it was mounted without cluster locking";
      return false;
    }
    *doc = json::parse(text, nullptr, false);
    if (!doc->is_object()) return unreadable();
    if (!doc->contains("snapshot")) return true;
    const json& id = (*doc)["snapshot"];
    const json& count = (*doc)["database_pages"];
    if (!id.is_number_unsigned() || !count.is_number_unsigned()) return unreadable();
    json databases = json::array();
    bool gone = false;
    for (uint64_t k = 0; k < count.get<uint64_t>() && !gone; k++) {
      const std::string name = std::string(fuse::kStatusXattr) + "." +
                               std::to_string(id.get<uint64_t>()) + "." + std::to_string(k);
      if (int err = ReadAttribute(path, name, &text)) {
        if (err != ENODATA) return failed(err);
        gone = true;
        continue;
      }
      json page = json::parse(text, nullptr, false);
      if (!page.is_array()) return unreadable();
      for (json& db : page) databases.push_back(std::move(db));
    }
    if (gone) continue;
    doc->erase("snapshot");
    doc->erase("database_pages");
    (*doc)["databases"] = std::move(databases);
    return true;
  }
  *error = "cannot read the status of " + shown +
           ": its snapshots kept expiring before they could be read (too many readers at once?)";
  return false;
}

// The status for people.
void PrintStatus(const std::string& mountpoint, const json& s) {
  const json& st = Field(s, "stats");
  const json& lk = Field(s, "locks");
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
  for (const json& db : Field(s, "databases")) {
    std::string path = db.value("path", "");
    if (db.value("hidden", false)) {
      path = "(hidden: in a directory you may not search)";
    } else if (path.empty()) {
      path = "?";
    } else if (db.value("truncated", false)) {
      path += "... (truncated)";
    }
    std::printf("  %s (%s)\n    claims %s; in use %s; version %llu%s%s\n", path.c_str(),
                db.value("name", "").c_str(), ModesText(Field(db, "claims")).c_str(),
                ModesText(Field(db, "in_use")).c_str(), Count(db, "version"),
                db.value("dirty", false) ? "; written" : "",
                db.value("competing", false) ? "; other hosts active" : "");
  }
}

}  // namespace

int RunStatus(const std::string& mountpoint, bool as_json) {
  // The attribute alone proves nothing (anyone may set user.leasefs.status on a directory of
  // theirs): the directory must be where a leasefs filesystem is mounted.
  char resolved[PATH_MAX];
  if (!realpath(mountpoint.c_str(), resolved)) {
    std::fprintf(stderr, "leasefs: error: cannot access %s: %s\n", mountpoint.c_str(),
                 std::strerror(errno));
    return kExitFailure;
  }
  std::string fstype;
  if (!IsMountPoint(resolved, &fstype) || fstype != "fuse.leasefs") {
    std::fprintf(stderr, "leasefs: error: %s is not a leasefs mount\n", mountpoint.c_str());
    return kExitFailure;
  }
  json s;
  std::string error;
  if (!ReadStatus(resolved, mountpoint, &s, &error)) {
    std::fprintf(stderr, "leasefs: error: %s\n", error.c_str());
    return kExitFailure;
  }
  if (as_json) {
    std::printf("%s\n", s.dump(-1, ' ', false, json::error_handler_t::replace).c_str());
    return kExitOk;
  }
  try {
    PrintStatus(mountpoint, s);
  } catch (const json::exception&) {  // a field of another type than leasefs writes
    std::fprintf(stderr, "leasefs: error: %s answered an unreadable status\n", mountpoint.c_str());
    return kExitFailure;
  }
  return kExitOk;
}

}  // namespace leasefs::cmd
