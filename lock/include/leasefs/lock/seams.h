// leasefs/lock/seams.h — the contract between the FUSE passthrough and lock arbitration.
//
// The passthrough (fuse/) knows nothing about leases. It asks these interfaces three things:
//
//   1. FileLocks:  who may hold which POSIX byte-range lock (F_GETLK, F_SETLK, F_SETLKW), and what
//                  a close (FLUSH) or the last release of a file handle gives up.
//   2. WriteGate:  whether a write-class operation on a file may reach the backing storage now
//                  (fencing: a host whose lease may have lapsed must not write).
//   3. CacheInvalidator (implemented BY fuse/, called by lock/): drop the kernel's cached pages,
//                  attributes and names for a file when another host may have changed it.
//
// When no FileLocks is supplied the passthrough does not implement the FUSE lock operations and the
// kernel arbitrates POSIX locks locally: correct for processes on this host, invisible to others.
// When no WriteGate is supplied every write is admitted. That is the single-host behaviour; the
// cluster-wide implementations live in lock/ and are plugged in by the `leasefs` command.
//
// Files are named by FileRef: the backing file's identity plus a descriptor the implementation may
// use (never close) to find its path relative to SOURCE. Calls may come from any FUSE worker thread
// concurrently; implementations are thread-safe and must not block a worker thread on the network
// longer than the lease deadline allows (F_SETLKW in particular completes through its callback).
#pragma once

#include <fcntl.h>
#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string_view>

namespace leasefs::lock {

struct FileRef {
  dev_t device = 0;
  ino_t inode = 0;
  int path_fd = -1;  // O_PATH descriptor of the backing file, owned by the passthrough
};

// Completion of a lock request: 0 for success, else a positive errno (EAGAIN for a conflict,
// EINTR when interrupted). Called exactly once, from any thread.
using LockCompletion = std::function<void(int error)>;

class FileLocks {
 public:
  virtual ~FileLocks() = default;

  // F_GETLK: on return *lock describes a conflicting lock, or has l_type = F_UNLCK.
  virtual int test_lock(const FileRef& file, uint64_t owner, struct flock* lock) = 0;
  // F_SETLK (wait = false) and F_SETLKW (wait = true), through the file handle `handle`.
  // `done` runs exactly once, maybe before this returns, maybe later on another thread (a wait).
  // `wait_id` is the caller's unique non-zero name for the request: cancel_wait(wait_id) may come
  // before, during or after this call (a kernel interrupt races the request).
  virtual void set_lock(const FileRef& file, uint64_t owner, uint64_t handle,
                        const struct flock& lock, bool wait, uint64_t wait_id,
                        LockCompletion done) = 0;
  // The kernel interrupted the request `wait_id`: complete it with EINTR if it is still
  // waiting, or when it would start to wait.
  virtual void cancel_wait(uint64_t wait_id) = 0;
  // Whether set_lock(..., wait, ...) may complete later rather than before it returns (an
  // F_SETLKW, or an F_SETLK the implementation may hold): only then is an interrupt worth
  // registering for it.
  virtual bool may_wait(bool wait) const { return wait; }
  // close(2) of any descriptor of the file by `owner`: POSIX drops all of its locks on the file.
  virtual void release_owner(const FileRef& file, uint64_t owner) = 0;
  // Last release of a file handle (open file description); releases OFD locks taken through it.
  virtual void release_handle(const FileRef& file, uint64_t handle) = 0;
  // The passthrough forgot the file (the kernel dropped its last reference, every handle is
  // closed): nothing cached about it may outlive this, because the storage may give its inode
  // number to another file from now on. `file.path_fd` is -1.
  virtual void forget(const FileRef& file) { (void)file; }
};

enum class WriteKind { kWrite, kTruncate, kAllocate, kCreate, kUnlink, kRename, kLink, kSetAttr };

// A write admitted under a claim taken for that operation alone (WriteGate::admit): the claim is
// held until end_write(). Zero: nothing to end.
struct WriteTicket {
  uint64_t id = 0;
  explicit operator bool() const { return id != 0; }
};

class WriteGate {
 public:
  virtual ~WriteGate() = default;
  // 0 to admit, else the errno to fail the operation with (EIO when fenced, EBUSY when another
  // host kept the database busy too long). `name` is the entry name for operations on a
  // directory entry (create, unlink, rename, link), else empty. An admission may take a claim for
  // the operation (a file removed or replaced by a process that holds no lock): then *ticket is
  // set, and the caller must call end_write(*ticket) once the operation is done, whatever its
  // outcome.
  virtual int admit(const FileRef& file, WriteKind kind, std::string_view name,
                    WriteTicket* ticket) = 0;
  virtual void end_write(WriteTicket ticket) { (void)ticket; }
};

class CacheInvalidator {
 public:
  virtual ~CacheInvalidator() = default;
  // Drops the kernel's cached pages and attributes of the file.
  virtual void invalidate_file(const FileRef& file) = 0;
  // Drops the kernel's cached lookup (positive or negative) of `name` in directory `dir`.
  virtual void invalidate_name(const FileRef& dir, std::string_view name) = 0;
  // A new read-only descriptor of a file the passthrough still knows (by device and inode), or
  // -1: how lock/ reaches a database whose names it cannot trust (renamed, linked). The caller
  // closes it.
  virtual int open_known(const FileRef& file) {
    (void)file;
    return -1;
  }
};

}  // namespace leasefs::lock
