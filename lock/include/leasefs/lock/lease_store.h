// leasefs/lock/lease_store.h — the distributed store under the lease protocol.
//
// The store is deliberately dumb: named records, each a small JSON document with a revision
// number the store bumps on every write, and writes that apply only if the revision is still the
// one the writer read (compare-and-set). Everything about sessions, claims and versions is the
// lease protocol's (lease_manager.h); a backend only has to make single-record compare-and-set
// linearizable. Backends: `local` (SQLite on local disk, shared by the mounts of one machine) and
// `dynamodb` (one table, conditional writes on the revision attribute).
//
// Outcomes. Every call ends in exactly one of:
//   kOk          done; `record` is the record as it now is (after a write: the new revision).
//   kConflict    the condition failed; nothing was written; `record` is the current record
//                (revision 0 if it does not exist).
//   kUnavailable nothing was written (the request was refused or never sent); retry later.
//   kAmbiguous   the write may or may not have landed (timeout after sending). The caller must
//                settle it by reading, never by guessing: every body the protocol writes carries
//                a token unique to that write, so a re-read shows whether it landed.
// A backend retries what it safely can inside `deadline` and never past it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "leasefs/lock/clock.h"

namespace leasefs::lock {

struct Record {
  std::string key;
  uint64_t revision = 0;  // 0: the record does not exist
  std::string body;       // JSON text
};

enum class StoreOutcome { kOk, kConflict, kUnavailable, kAmbiguous };

struct StoreResult {
  StoreOutcome outcome = StoreOutcome::kUnavailable;
  Record record;
  std::string error;  // human-readable cause for kUnavailable and kAmbiguous
  bool ok() const { return outcome == StoreOutcome::kOk; }
};

class LeaseStore {
 public:
  virtual ~LeaseStore() = default;

  // Strongly consistent read. A missing record is kOk with revision 0.
  virtual StoreResult get(const std::string& key, TimePoint deadline) = 0;

  // Writes `body` as revision expected_revision + 1 if the stored revision is expected_revision
  // (0: only if the record does not exist).
  virtual StoreResult put(const std::string& key, uint64_t expected_revision,
                          const std::string& body, TimePoint deadline) = 0;

  // Deletes the record if its revision is expected_revision. Deleting a missing record with
  // expected_revision 0 is kOk.
  virtual StoreResult remove(const std::string& key, uint64_t expected_revision,
                             TimePoint deadline) = 0;

  // Every record whose key starts with `prefix`, for status and cleanup (not on any hot path;
  // may be eventually consistent).
  virtual StoreResult list(const std::string& prefix, std::vector<Record>* out,
                           TimePoint deadline) = 0;

  // Short description for logs and status, e.g. "local:/var/lib/leasefs/leases.db".
  virtual std::string describe() const = 0;

  // Bumped whenever the store this object talks to stops being the one other hosts reach at the
  // same address (the local store's file deleted or renamed away): every session and claim held
  // through the old one must be treated as lost at once, before anyone could take them over.
  // Cheap enough to read on every lock request.
  virtual uint64_t generation() const { return 0; }
};

}  // namespace leasefs::lock
