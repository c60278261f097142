// leasefs/replicate/change_sink.h — how the passthrough reports data changes to replication.
//
// The passthrough calls a ChangeSink after each successful data change to a file, with the
// backing file's identity, and on fsync. A replicator decides which files matter (databases,
// their -wal) and captures committed transactions from these notifications. With no sink
// supplied (the default today) nothing is reported and nothing is captured.
//
// Calls come from FUSE worker threads, concurrently, on the request path: an implementation
// records what changed and returns; it never uploads or blocks inside these calls.
#pragma once

#include <sys/types.h>

#include <cstdint>

#include "leasefs/lock/seams.h"

namespace leasefs::replicate {

class ChangeSink {
 public:
  virtual ~ChangeSink() = default;
  virtual void wrote(const lock::FileRef& file, uint64_t offset, uint64_t length) = 0;
  virtual void truncated(const lock::FileRef& file, uint64_t size) = 0;
  virtual void synced(const lock::FileRef& file) = 0;
};

}  // namespace leasefs::replicate
