// leasefs/lock/status.h — what a mount reports about its locking: one snapshot, rendered as
// JSON (for `leasefs status`) and as Prometheus text (for --metrics-addr). Both renderings come
// from the same snapshot, so they cannot disagree.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "leasefs/lock/host_locks.h"
#include "leasefs/lock/lease_manager.h"

namespace leasefs::lock {

// The status report, taken at one moment, in the form it travels in (fuse/passthrough.h
// kStatusXattr): a summary and the database list in pages.
//
// summary: {"session", "store", "lease_ms", "deadline_in_ms", "fenced", "dead", "stats":{...},
//   "locks":{...}, "snapshot" (the `snapshot` argument), "database_pages" (pages.size())}.
// pages: JSON arrays, each at most `page_bytes` bytes; concatenated they are the list of
//   databases, [{"name" (the lease), "path" (a name of the file, relative to SOURCE, as this
//   host knows it), "claims":{region:"r"|"w"}, "in_use":{...}, "version", "dirty",
//   "competing"}]. A database whose path `path_visible` refuses has "path": "" and
//   "hidden": true (the rest of the entry stays, so counts and aggregates are the same for every
//   caller). An entry too long for a page by itself has its path shortened and "truncated": true
//   (a path is at most PATH_MAX bytes, so in practice never).
// The reassembled document — the summary without "snapshot" and "database_pages", plus
// "databases": the concatenated pages — is what `leasefs status --json` prints.
struct StatusReport {
  std::string summary;
  std::vector<std::string> pages;
};
StatusReport StatusReportOf(const LeaseManager& leases, const HostLocks& locks, const Clock& clock,
                            uint64_t snapshot,
                            const std::function<bool(const std::string& path)>& path_visible,
                            size_t page_bytes);

// Prometheus text exposition format (version 0.0.4), metric names prefixed leasefs_.
std::string PrometheusText(const LeaseManager& leases, const HostLocks& locks, const Clock& clock);

}  // namespace leasefs::lock
