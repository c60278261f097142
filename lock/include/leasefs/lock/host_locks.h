// leasefs/lock/host_locks.h — the lock manager of one mount: POSIX locks for this host's
// processes (lock_table.h), backed by cluster claims (lease_manager.h), and write fencing.
//
// REGIONS. A lock request is mapped to the lock regions it touches:
//   * a database file: SQLite's PENDING byte, RESERVED byte and SHARED range (0x40000000 +0, +1,
//     +2..+511) are three regions; every other byte of the file is the WHOLE region;
//   * a "-shm" file: the eight WAL lock bytes 120..127 are regions WAL0..WAL7, and the DMS byte
//     128 is region DMS, claimed W whenever any local process holds it in any mode: until WAL
//     databases work across hosts, a host that has one open in WAL mode excludes every other
//     host (their SQLite gets SQLITE_BUSY at its DMS lock: "database is locked"). Every other
//     byte is host-local and needs no claim;
//   * any other file: every byte is the WHOLE region of that file.
//   A database is named by its path relative to SOURCE, the same on every host whatever its
//   mountpoint; "-shm", "-journal" and "-wal" files belong to the database they are named after.
//   Its lease is named `lease_namespace` + that path: the namespace tells apart unrelated
//   SOURCE directories sharing one lease store (for the local store: SOURCE's absolute path).
//
// PROTOCOL OF ONE REQUEST (under the database's mutex, so grants and the table stay in step):
//   F_SETLK lock:   conflict with another local owner -> EAGAIN. Otherwise the host's use after
//                   the lock (strongest mode per region over all owners) must be covered by
//                   claims: LeaseManager::acquire(); granted -> apply to the table; busy,
//                   unavailable or fenced -> EAGAIN (SQLite's busy handler retries; EIO here
//                   would be an I/O error, which corrupts hot-journal handling).
//   F_SETLK unlock: apply to the table, then report the reduced use (cached claims remain).
//   F_SETLKW:       as F_SETLK, but instead of EAGAIN the request waits, re-tried when local
//                   locks change and every retry_interval, until granted or cancelled (EINTR).
//   F_GETLK:        a conflicting local lock, else a conflicting claim of another live host.
//   FLUSH:          every lock of the owner on that file goes (POSIX close semantics).
//   RELEASE:        owners first seen on that handle lose their locks on the file (OFD locks,
//                   which the kernel otherwise never releases through FUSE).
//
// FENCING. Writes to a database file, or to its -journal or -wal (truncating, allocating,
// removing or renaming those names too), are admitted only while LeaseManager::may_write()
// holds; otherwise EIO. Creating a name is not fenced: it changes no data (an O_TRUNC open is a
// truncate), and SQLite creates its -wal holding only SHARED. Files never locked in SQLite's
// regions are not fenced.
#pragma once

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "leasefs/lock/lease_manager.h"
#include "leasefs/lock/lock_table.h"
#include "leasefs/lock/seams.h"

namespace leasefs::lock {

class HostLocks final : public FileLocks, public WriteGate, public LeaseListener {
 public:
  // `source` is the absolute backing directory; `invalidator` drops kernel caches (fuse/).
  HostLocks(std::string source, std::string lease_namespace, CacheInvalidator* invalidator);
  ~HostLocks() override;

  // Set before the first request (the manager needs this object as its listener first, and the
  // passthrough needs it as a seam before it provides the invalidator).
  void attach(LeaseManager* leases);
  void attach_invalidator(CacheInvalidator* invalidator);
  // Retries waiting F_SETLKW requests; call once, stop() before destruction.
  void run_background();
  void stop();

  // FileLocks
  int test_lock(const FileRef& file, uint64_t owner, struct flock* lock) override;
  uint64_t set_lock(const FileRef& file, uint64_t owner, uint64_t handle, const struct flock& lock,
                    bool wait, LockCompletion done) override;
  void cancel_wait(uint64_t wait_id) override;
  void release_owner(const FileRef& file, uint64_t owner) override;
  void release_handle(const FileRef& file, uint64_t handle) override;

  // WriteGate
  int admit(const FileRef& file, WriteKind kind, std::string_view name) override;

  // LeaseListener
  void flush(const std::string& db) override;
  void invalidate(const std::string& db) override;

  struct Counters {
    uint64_t setlk = 0, setlk_busy = 0, setlkw_waits = 0, getlk = 0, flushes = 0;
    uint64_t abandoned_transactions = 0, fenced_writes = 0;
  };
  Counters counters() const;

  // kShm: a "-shm" file (WAL lock bytes); kDatabase: any other file (SQLite's byte regions, the
  // rest of the file as WHOLE — finer regions are still correct for non-SQLite files).
  enum class FileKind : uint8_t { kDatabase, kShm };
  struct FileInfo {
    std::string path;      // relative to SOURCE
    std::string database;  // the database it belongs to: itself, or the one a -shm is named after
    FileKind kind = FileKind::kDatabase;
  };
  // Classifies a path relative to SOURCE (exposed for tests).
  static FileInfo Classify(const std::string& relative_path);

 private:
  struct FileKey {
    dev_t device;
    ino_t inode;
    auto operator<=>(const FileKey&) const = default;
  };
  struct DatabaseLocks {
    std::mutex mutex;                        // serializes this database's lock requests
    std::map<FileKey, FileLockState> files;  // the database file and its -shm
    std::map<FileKey, FileKind> kinds;
    std::map<uint64_t, std::set<std::pair<FileKey, uint64_t>>> owners_by_handle;
  };
  struct Waiter {
    uint64_t id;
    FileRef file;
    uint64_t owner, handle;
    struct flock lock;
    LockCompletion done;
  };

  // Resolves the file's path (cached by identity) and its database.
  FileInfo info(const FileRef& file, bool sqlite_locked);
  DatabaseLocks& database(const std::string& name);
  RegionModes use_of(DatabaseLocks& db) const;
  // One attempt: 0 granted, EAGAIN busy/conflict, or another errno.
  int try_set(const FileRef& file, uint64_t owner, uint64_t handle, const struct flock& lock);
  void retry_waiters();
  void note_locks_changed();

  std::string lease_name(const std::string& db) const { return namespace_ + db; }
  std::string database_of_lease(const std::string& lease) const {
    return lease.substr(std::min(namespace_.size(), lease.size()));
  }

  const std::string source_;
  const std::string namespace_;
  CacheInvalidator* invalidator_;
  LeaseManager* leases_ = nullptr;

  mutable std::mutex mutex_;  // guards the maps below (never held across a lease operation)
  std::map<FileKey, FileInfo> infos_;
  std::set<std::string> databases_seen_;  // paths locked in SQLite's regions
  std::map<std::string, std::unique_ptr<DatabaseLocks>> databases_;
  // Bumped on the lock path: atomics, never a shared mutex.
  struct AtomicCounters {
    std::atomic<uint64_t> setlk{0}, setlk_busy{0}, setlkw_waits{0}, getlk{0}, flushes{0};
    std::atomic<uint64_t> abandoned_transactions{0}, fenced_writes{0};
  } counters_;

  std::mutex waiters_mutex_;
  std::condition_variable waiters_changed_;
  std::vector<Waiter> waiters_;
  uint64_t next_wait_id_ = 1;
  bool locks_changed_ = false;
  bool stopping_ = false;
  std::thread waiter_thread_;
};

}  // namespace leasefs::lock
