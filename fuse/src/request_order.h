// request_order.h — a READ is served only after the data-changing requests that the kernel sent
// before it on the same bytes.
//
// Why (fuse/README.md, "No auto_inval_data, and requests are received in order"): without
// writeback_cache the kernel copies a write()'s bytes into the page cache before it sends the
// WRITE, and does not lock those pages while the WRITE is in flight. If the kernel invalidates
// the file's pages meanwhile (an open without keep_cache, a new size or mtime in an attribute
// reply, a lease changing hands), a reader faults the page in again with a READ that the kernel
// sends after the WRITE. A single-threaded daemon answers them in that order. With several
// workers the READ can be answered first, from the backing file as it was before the WRITE; the
// kernel caches that page and keeps it after write() has returned, so readers see data older
// than a completed write.
// SQLite's WAL readers read pages from two snapshots that way (walthread.test).
//
// Use: the session's workers call admit() in the order they receive requests from /dev/fuse (one
// worker receives at a time), wait() before processing a request and complete() after it.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace leasefs::fuse {

class RequestOrder {
 public:
  struct Ticket {
    enum Kind { kOther, kRead, kChange };
    Kind kind = kOther;
    uint64_t seq = 0;
    uint64_t node = 0;
    uint64_t begin = 0, end = 0;  // the bytes [begin, end) read or changed
    bool must_wait = false;       // a READ that a change admitted before it overlaps
  };

  // `request` is one request as read from /dev/fuse (struct fuse_in_header, then its arguments).
  // Must be called in the order the requests were read.
  Ticket admit(const void* request, size_t size);
  // For a READ: returns once no change admitted before it overlaps its bytes. Else immediately.
  void wait(const Ticket& ticket);
  // For a change: it is finished (the backing file has it). Else nothing.
  void complete(const Ticket& ticket);

  // Changes admitted and not completed (for tests).
  size_t pending() const;

 private:
  struct Change {
    uint64_t seq, begin, end;
  };
  bool overlapped_locked(const Ticket& ticket) const;

  mutable std::mutex mutex_;
  std::condition_variable completed_;
  uint64_t next_seq_ = 1;
  std::unordered_map<uint64_t, std::vector<Change>> changes_;  // by node id
};

}  // namespace leasefs::fuse
