// status_snapshots.h — how the passthrough serves the status report (passthrough.h
// kStatusXattr) in pieces, and decides which database paths a caller may see. Internal to fuse/.
//
// Protocol, on the mount's root only:
//   getxattr "user.leasefs.status"        takes a new snapshot for the caller and answers its
//                                         summary, which names it: "snapshot": ID,
//                                         "database_pages": N.
//   getxattr "user.leasefs.status.ID.K"   page K (0 <= K < N) of snapshot ID's database list.
//                                         ENODATA once the snapshot is gone, for a K out of
//                                         range, or for a caller other than the one it was
//                                         taken for (root may read any).
// A reader takes the summary, then reads the N pages; on ENODATA it starts again with a new
// summary. Every value fits the kernel's XATTR_SIZE_MAX (64 KiB), whatever the number of
// databases.
//
// Why snapshots kept by the daemon rather than pages computed on demand: the summary and every
// page come from one moment, so the list cannot skip or repeat a database that appears or goes
// between two reads, and its counters agree with it. Why several kept, each for a while: two
// `leasefs status` run at once (or a summary read twice by getfattr, which asks the size first)
// must not invalidate each other. Bounds: at most kKept snapshots, none older than kLifetime,
// and at most kMaxBytes held (the newest is always kept), so a user looping on the summary can
// cost memory only within those bounds; their snapshots may push out others', which the readers
// then retake.
//
// Visibility: a caller other than root sees a database's path only if it may search (x, by the
// mode bits: owner, else group — the caller's groups — else other) every directory from the
// root of SOURCE down to the database's own directory: what the kernel would require of it to
// reach the file. POSIX ACLs are not consulted (EFS has none; the mode's group bits are the ACL
// mask, so an ACL can only narrow what they allow). A path that cannot be checked (gone, a
// component that is no longer a directory) is hidden; so is a name outside SOURCE ("#dev:ino").
// An empty path (not known) reveals nothing and is left as is.
//
// Threading: StatusSnapshots is safe to call from any thread; the snapshot is made outside its
// mutex.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "leasefs/fuse/passthrough.h"

namespace leasefs::fuse {

// Who sent a request: fuse_req_ctx's uid and gid, and fuse_req_getgroups's supplementary groups.
struct Caller {
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;  // sorted, without duplicates

  bool operator==(const Caller&) const = default;
  bool in_group(gid_t group) const;
};

// Whether `caller` may search a directory whose attributes are `st`, by its mode bits.
bool MaySearch(const struct stat& st, const Caller& caller);

// Whether `caller` may search every directory from `root_fd` (the root of SOURCE) down to the one
// that holds `path` (relative to that root). `seen` remembers directories already checked (by
// their relative path; "" is the root) for the next call with the same caller.
bool PathVisible(int root_fd, const std::string& path, const Caller& caller,
                 std::map<std::string, bool>* seen);

// "user.leasefs.status.ID.K" as {ID, K}; nullopt for any other name.
std::optional<std::pair<uint64_t, size_t>> ParseStatusPageName(const char* name);

class StatusSnapshots {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr size_t kKept = 16;
  static constexpr Clock::duration kLifetime = std::chrono::seconds(10);
  static constexpr size_t kMaxBytes = 64 << 20;

  // `first_id`: the first snapshot's id (then +1 each). Ids should not repeat across daemons of
  // one mountpoint, or a reader whose mount was replaced between two reads could mix them.
  // `max_bytes`: kMaxBytes, or less for tests.
  explicit StatusSnapshots(uint64_t first_id, size_t max_bytes = kMaxBytes)
      : next_id_(first_id), max_bytes_(max_bytes) {}

  // Takes a snapshot for `caller` with `make(id)` and returns its summary.
  std::string take(const Caller& caller, const std::function<StatusSnapshot(uint64_t id)>& make,
                   Clock::time_point now = Clock::now());

  // Page `page` of snapshot `id` into *out: 0, or ENODATA (see the protocol above).
  int page(uint64_t id, size_t page, const Caller& caller, std::string* out,
           Clock::time_point now = Clock::now());

  size_t size() const;

 private:
  struct Entry {
    uint64_t id;
    Caller caller;
    Clock::time_point taken;
    std::vector<std::string> pages;
    size_t bytes;
  };
  void expire(Clock::time_point now);  // mutex_ held

  mutable std::mutex mutex_;
  uint64_t next_id_;
  const size_t max_bytes_;
  std::deque<Entry> entries_;  // oldest first
  size_t bytes_ = 0;
};

}  // namespace leasefs::fuse
