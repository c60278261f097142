// leasefs/lock/local_store.h — the embedded lease store: a SQLite database on local disk.
//
// Every leasefs mount on one machine opens the same file, so mounts of one SOURCE on one machine
// serialize through it exactly as hosts serialize through DynamoDB. It must live on a local
// filesystem (SQLite's own locking is what makes compare-and-set atomic between processes), never
// on the shared storage. Crash safety: a rollback journal, which survives any process crash (no
// shared memory mapping, so no store fault can kill the daemon); after a machine crash every
// session in it is gone anyway, and a file corrupted by it is moved aside at open.
#pragma once

#include <memory>
#include <string>

#include "leasefs/lock/clock.h"
#include "leasefs/lock/lease_store.h"

namespace leasefs::lock {

// Opens or creates the store at `path` (creating missing directories: the last mode 0700, any
// above 0755; the file is made 0600). Refuses a store, or a directory on its path, that another
// user owns or may write (a sticky directory such as /tmp excepted). On failure returns nullptr
// and one line in *error. `clock` must outlive the store.
std::unique_ptr<LeaseStore> OpenLocalStore(const std::string& path, const Clock& clock,
                                           std::string* error);

// /var/lib/leasefs/leases.db for root, else $XDG_STATE_HOME (or ~/.local/state)/leasefs/leases.db.
std::string DefaultLocalStorePath();

}  // namespace leasefs::lock
