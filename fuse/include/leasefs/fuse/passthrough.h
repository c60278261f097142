// leasefs/fuse/passthrough.h — a FUSE low-level passthrough over a SOURCE directory.
//
// Contract:
//   * Every request is answered with what the backing filesystem answered: same data, same
//     attributes (st_ino is the backing st_ino, stable for the life of the file), same errno.
//   * The kernel page cache is used for reads but never for writes (no writeback_cache): a
//     write reply means the bytes reached the backing file. Open drops the kernel's cached pages
//     (close-to-open, as NFS does); CacheInvalidator drops them on demand.
//   * Lock operations go to lock::FileLocks, write-class operations through lock::WriteGate, and
//     data changes are reported to replicate::ChangeSink — each only when supplied (see seams.h).
//   * Only one filesystem is served: entries on another device below SOURCE (nested mounts) are
//     refused with EXDEV on lookup, because st_ino must stay unique under one st_dev.
//
// Threading: all methods are safe to call from the FUSE worker threads concurrently.
#pragma once

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "leasefs/lock/seams.h"
#include "leasefs/replicate/change_sink.h"

namespace leasefs::fuse {

// The mount's status, read with getxattr(MOUNTPOINT, kStatusXattr) (what `leasefs status` does).
// Virtual: not stored, not listed, answered only on the root of the mount, where a stored
// attribute of that name (or below it) is never shown, even without cluster locking. It answers a
// summary naming a snapshot, whose database list is then read as "kStatusXattr.ID.K", a page at a
// time (fuse/src/status_snapshots.h has the protocol): one value could not hold more than a few
// hundred databases (the kernel's XATTR_SIZE_MAX, 64 KiB).
inline constexpr const char* kStatusXattr = "user.leasefs.status";
// The most a page of the database list may hold, well under XATTR_SIZE_MAX.
inline constexpr size_t kStatusPageBytes = 32 * 1024;

// One status snapshot as the status producer makes it (lock/status.h StatusReport): the summary
// (a JSON object that includes the "snapshot" id it was made for and "database_pages") and the
// pages of its database list (JSON arrays of at most kStatusPageBytes).
struct StatusSnapshot {
  std::string summary;
  std::vector<std::string> pages;
};

struct PassthroughConfig {
  std::string source;             // absolute path of the backing directory
  double entry_timeout = 1.0;     // seconds the kernel may cache a name lookup
  double attr_timeout = 1.0;      // seconds the kernel may cache attributes
  double negative_timeout = 0.0;  // seconds the kernel may cache "no such name"
  // Names ending in one of these suffixes have their absence cached as long as names are
  // (entry_timeout), even when negative_timeout is lower (leasefs: SQLite's "-wal";
  // cmd/run_mount.cc says why that is safe).
  std::vector<std::string> cacheable_absent_suffixes;
  // When the daemon runs as root on behalf of other users: nodes it creates are chowned to the
  // requesting uid (and gid, unless the parent directory is set-group-ID).
  bool create_as_caller = false;
  // Enforce POSIX ACLs as the backing filesystem would (costs a request per inode; EFS has none).
  bool posix_acl = false;
  // A name in SOURCE's root the mount hides (leasefs's own marker file, lock/volume_id.h): it
  // is not listed, a lookup says ENOENT and creating it (or renaming or linking onto it) EPERM.
  std::string hidden_root_name;
  // Produces status snapshot `id` for a caller, who may see a database path only where
  // `path_visible(path)` (path relative to SOURCE) says so. Empty: the attribute does not exist.
  std::function<StatusSnapshot(uint64_t id,
                               const std::function<bool(const std::string& path)>& path_visible)>
      status;
};

struct PassthroughSeams {
  lock::FileLocks* locks = nullptr;
  lock::WriteGate* write_gate = nullptr;
  replicate::ChangeSink* changes = nullptr;
};

class Passthrough {
 public:
  // Opens SOURCE. On failure returns nullptr and sets *error to one line naming the cause.
  static std::unique_ptr<Passthrough> Open(const PassthroughConfig& config, PassthroughSeams seams,
                                           std::string* error);
  virtual ~Passthrough() = default;

  // The operation table to hand to fuse_session_new(); its userdata must be this object.
  virtual const fuse_lowlevel_ops& operations() const = 0;

  // Set once the session exists, so the invalidator can reach the kernel.
  virtual void attach_session(fuse_session* session) = 0;
  virtual lock::CacheInvalidator& cache_invalidator() = 0;

  // Inodes currently known to the kernel (for status and leak tests).
  virtual size_t inode_count() const = 0;
};

}  // namespace leasefs::fuse
