// leasefs/lock/status.h — what a mount reports about its locking: one snapshot, rendered as
// JSON (for `leasefs status`) and as Prometheus text (for --metrics-addr). Both renderings come
// from the same snapshot, so they cannot disagree.
#pragma once

#include <string>

#include "leasefs/lock/host_locks.h"
#include "leasefs/lock/lease_manager.h"

namespace leasefs::lock {

// JSON: {"session", "store", "lease_ms", "deadline_in_ms", "fenced", "dead", "stats":{...},
// "locks":{...}, "databases":[{"name" (the lease), "path" (a name of the file, relative to SOURCE,
// as this host knows it), "claims":{region:"r"|"w"},"in_use":{...},"version",
// "dirty","competing"}]}
std::string StatusJson(const LeaseManager& leases, const HostLocks& locks, const Clock& clock);

// Prometheus text exposition format (version 0.0.4), metric names prefixed leasefs_.
std::string PrometheusText(const LeaseManager& leases, const HostLocks& locks, const Clock& clock);

}  // namespace leasefs::lock
