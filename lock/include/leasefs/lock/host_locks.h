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
//
// IDENTITY. A database is its file, not one of its names. Its lease is named
//     lease_namespace + "ino:" + the file's inode number on the backing storage
// (st_ino: on NFS and EFS the server's file id, the same on every host whatever its mountpoint).
// The namespace tells apart unrelated SOURCE directories sharing one lease store (for the local
// store: SOURCE's absolute path; for remote stores: the volume id in SOURCE/.leasefs-volume).
// So hard links share one record, and a rename (here or on another host) moves no lock. Inode
// numbers are reused once a file is gone: a new file that gets a dead database's number takes
// over its record, which is safe because nobody can reach the old file any more (on this host
// the passthrough's O_PATH descriptor keeps the number allocated while the file is known; the
// record's claims and version simply carry on). What must never survive the file is this host's
// cache of what a number means (its name, its kind): it is dropped when the passthrough
// forgets the inode (FileLocks::forget).
//   "-shm", "-journal" and "-wal" files belong to the database they are named after (SQLite's
// own rule): the database is the file with that name in the same directory now, resolved each
// time a journal is written, removed or renamed, and when a -shm is first locked. A database
// with several names has one journal per name, as SQLite itself has (so crash recovery across
// hard links is as broken as on a local disk, but locking is not).
//
// PROTOCOL OF ONE REQUEST (under the database's mutex, so grants and the table stay in step):
//   F_SETLK lock:   conflict with another local owner -> EAGAIN. Otherwise the host's use after
//                   the lock (strongest mode per region over all owners) must be covered by
//                   claims: LeaseManager::acquire(); granted -> apply to the table; busy,
//                   unavailable or fenced -> EAGAIN (SQLite's busy handler retries; EIO here
//                   would be an I/O error, which corrupts hot-journal handling).
//   F_SETLK unlock: apply to the table, then report the reduced use (cached claims remain).
//   F_SETLK downgrade: a lock the owner already holds in that mode or stronger on every byte
//                   (SQLite's step down to SHARED after EXCLUSIVE or RESERVED) is applied like
//                   an unlock, with no acquire(): it needs no claim, so it is never refused, not
//                   even while fenced (a refusal is SQLITE_IOERR_RDLOCK, "disk I/O error").
//   HELD F_SETLK:   a lock on a database's SQLite bytes that conflicts with another local
//                   owner's lock, or only with another host (acquire() answered busy: its claim,
//                   or its writer's priority), is not answered EAGAIN at once. It waits in the
//                   daemon, for at most `lock_hold`, and is granted the moment it can be: a
//                   local unlock wakes it; for another host, our demand is in the record and the
//                   holder hands the claim over when its processes let go
//                   (LeaseListener::claims_changed, acquire_cached: no store I/O per retry), and
//                   it asks the store every 2 ms as well: a claim may come free without being
//                   handed to us (a dead holder, reaped only by a request to the store; a claim
//                   handed and yielded again before the retry). SQLite's busy handler would
//                   otherwise sleep 1, 2, 5, 10... ms between attempts, whatever the wait took.
//                   It never closes a wait cycle: only an owner holding nothing (a transaction
//                   starting) or holding RESERVED (SQLite's one writer, whom everyone else
//                   yields to) waits; an owner holding SHARED without RESERVED (upgrading to
//                   write) gets EAGAIN at once, as on a local disk, since the writer that holds
//                   RESERVED needs its SHARED gone to commit.
//   F_SETLKW:       as F_SETLK, but instead of EAGAIN the request waits, re-tried when local
//                   locks change and every 10 ms, until granted or cancelled (EINTR).
//   F_GETLK:        a conflicting local lock, else a conflicting claim of another live host.
//   FLUSH:          every lock of the owner on that file goes (POSIX close semantics).
//   RELEASE:        owners first seen on that handle lose their locks on the file (OFD locks,
//                   which the kernel otherwise never releases through FUSE).
//
// FENCING. Writes to a database file, or to its -journal or -wal (truncating, allocating,
// removing or renaming those names too), are admitted only while LeaseManager::may_write()
// holds. Creating a name is not fenced: it changes no data (an O_TRUNC open is a truncate), and
// SQLite creates its -wal holding only SHARED. Changes of owner, mode or times are metadata, not
// data: SQLite (as root) chowns every journal it opens, and a host without the write claim must
// not refuse that. Files never locked in SQLite's regions on this host are not fenced.
//   A write-class operation without the write claim is one of two things. A process of this host
// holding a lock on the database (SQLite) writes only under its lock, so the claim was lost: the
// lease lapsed, and the write must fail (EIO). Its transaction may then end without its rollback
// (refused too), after pages it wrote before the deadline: a hot journal, though nothing died.
// So the database is marked abandoned (LeaseManager::abandon), as a close inside a write
// transaction marks it, and the release of this host's W claims tells every other host to look
// for the journal (lease_manager.h, HOT JOURNALS). Anything else is a process that holds no lock
// and removes, renames, truncates or overwrites the file (rm, mv, cp): it is served as on a local
// disk, after the host takes the database's write set (PENDING, RESERVED and SHARED as W) for
// the duration of the operation, waiting for it as a lock would (at most `transient_wait`, then
// EBUSY; EIO only when the store cannot be reached). Taking the full write set makes every other
// host drop its cached claims and, at its next lock, its caches.
#pragma once

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
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
  // `transient_wait` bounds how long a write by a process holding no lock waits for the claim
  // it needs (see FENCING).
  // `lock_hold` bounds how long an F_SETLK waiting for another host is held, and
  // `local_lock_hold` one waiting for another local process (HELD F_SETLK); zero answers EAGAIN
  // at once.
  HostLocks(std::string source, std::string lease_namespace, CacheInvalidator* invalidator,
            Duration transient_wait = std::chrono::seconds(10),
            Duration lock_hold = Duration::zero(), Duration local_lock_hold = Duration::zero());
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
  void set_lock(const FileRef& file, uint64_t owner, uint64_t handle, const struct flock& lock,
                bool wait, uint64_t wait_id, LockCompletion done) override;
  void cancel_wait(uint64_t wait_id) override;
  bool may_wait(bool wait) const override {
    return wait || lock_hold_ > Duration::zero() || local_lock_hold_ > Duration::zero();
  }
  void release_owner(const FileRef& file, uint64_t owner) override;
  void release_handle(const FileRef& file, uint64_t handle) override;
  void forget(const FileRef& file) override;

  // WriteGate
  int admit(const FileRef& file, WriteKind kind, std::string_view name,
            WriteTicket* ticket) override;
  void end_write(WriteTicket ticket) override;

  // LeaseListener
  void flush(const std::string& db) override;
  void invalidate(const std::string& db) override;
  void revalidate(const std::string& db) override;
  void claims_changed(const std::string& db) override;

  struct Counters {
    uint64_t setlk = 0, setlk_busy = 0, setlkw_waits = 0, getlk = 0, flushes = 0;
    // HELD F_SETLK: requests held for another host, and those of them granted while held.
    uint64_t setlk_held = 0, setlk_held_granted = 0;
    uint64_t abandoned_transactions = 0, fenced_writes = 0;
  };
  Counters counters() const;
  // A name of the database leased as `lease` (relative to SOURCE), as this host last knew it,
  // for status; empty if none is known.
  std::string path_of(const std::string& lease) const;

  // kShm: a "-shm" file (WAL lock bytes); kDatabase: any other file (SQLite's byte regions, the
  // rest of the file as WHOLE — finer regions are still correct for non-SQLite files).
  enum class FileKind : uint8_t { kDatabase, kShm };

 private:
  struct FileKey {
    dev_t device;
    ino_t inode;
    auto operator<=>(const FileKey&) const = default;
  };
  // What this host knows of one file, cached until the passthrough forgets it.
  struct FileInfo {
    std::string path;   // relative to SOURCE when first seen
    std::string lease;  // the database whose regions its locks are in: itself, or for a -shm the
                        // database it is named after
    FileKind kind = FileKind::kDatabase;
  };
  struct DatabaseLocks {
    std::mutex mutex;                        // serializes this database's lock requests
    std::map<FileKey, FileLockState> files;  // the database file and its -shm
    std::map<FileKey, FileKind> kinds;
    std::map<uint64_t, std::set<std::pair<FileKey, uint64_t>>> owners_by_handle;
    int transient_writes = 0;  // admitted writes holding the write set (see FENCING)
  };
  // The files and names by which this host has locked a database (flush, invalidate, status).
  struct KnownDatabase {
    std::set<FileKey> files;
    std::vector<std::string> names;  // most recent last, a few at most
  };
  struct Waiter {
    uint64_t id;
    FileRef file;
    uint64_t owner, handle;
    struct flock lock;
    LockCompletion done;
    // A held F_SETLK (answered EAGAIN at this time), rather than an F_SETLKW.
    std::optional<std::chrono::steady_clock::time_point> held_until;
    // A held request also asks the store now and then, not only the claims here (see
    // retry_waiters): what it waits for may have come free rather than been handed to us.
    std::chrono::steady_clock::time_point next_store_look{};
  };
  // How try_set() may get the claims: kStore through acquire() (store I/O, looking again a few
  // times before busy), kStoreOnce through acquire_once() (one store attempt: a held request's
  // look at the store, which must not keep the waiter thread from the other waiters), kCached
  // from the claims this host holds already (a held request's retries).
  enum class Attempt { kStore, kStoreOnce, kCached };

  // Resolves the file's path and lease (cached until forget()).
  FileInfo info(const FileRef& file, bool sqlite_locked);
  // The lease of the file at `relative` (absolute: `at` < 0) or `relative` below the directory
  // `at`, if it is a regular file; empty otherwise.
  std::string lease_at(int at, const std::string& relative) const;
  std::string lease_of_inode(ino_t inode) const {
    return namespace_ + "ino:" + std::to_string(inode);
  }
  // The database lease that fences a write-class operation on `file` (or on `name` inside it), or
  // empty if it touches no database of this host's.
  std::string fenced_lease(const FileRef& file, std::string_view name);
  // A copy of what this host knows of the database (its files and names).
  KnownDatabase known(const std::string& lease) const;
  // Takes the write set of `lease` for one operation by a process holding no lock (FENCING).
  int admit_transient(const std::string& lease, WriteTicket* ticket);
  DatabaseLocks& database(const std::string& name);
  RegionModes use_of(DatabaseLocks& db) const;
  // One attempt: 0 granted, EAGAIN busy/conflict, or another errno. *hold_for (if given) is how
  // long the EAGAIN's wait may be held (HELD F_SETLK: lock_hold for another host,
  // local_lock_hold for a local owner), zero if it may not.
  int try_set(const FileRef& file, uint64_t owner, uint64_t handle, const struct flock& lock,
              Attempt attempt = Attempt::kStore, Duration* hold_for = nullptr);
  void retry_waiters();
  // Debug log: a held request answered busy after all, and what the claims looked like.
  void log_unserved(const Waiter& w);
  void note_locks_changed();

  const std::string source_;
  const std::string namespace_;
  CacheInvalidator* invalidator_;
  const Duration transient_wait_;
  const Duration lock_hold_;
  const Duration local_lock_hold_;
  LeaseManager* leases_ = nullptr;

  mutable std::mutex mutex_;  // guards the maps below (never held across a lease operation)
  std::map<FileKey, FileInfo> infos_;
  std::set<std::string> databases_seen_;  // leases locked in SQLite's regions on this host
  std::map<std::string, KnownDatabase> known_;
  std::map<std::string, std::unique_ptr<DatabaseLocks>> databases_;
  std::map<uint64_t, std::string> tickets_;  // admitted transient writes: ticket -> lease
  uint64_t next_ticket_ = 1;
  // Bumped on the lock path: atomics, never a shared mutex.
  struct AtomicCounters {
    std::atomic<uint64_t> setlk{0}, setlk_busy{0}, setlkw_waits{0}, getlk{0}, flushes{0};
    std::atomic<uint64_t> setlk_held{0}, setlk_held_granted{0};
    std::atomic<uint64_t> abandoned_transactions{0}, fenced_writes{0};
  } counters_;

  std::mutex waiters_mutex_;
  std::condition_variable waiters_changed_;
  std::vector<Waiter> waiters_;
  // Interrupts that found no waiting request (it had not parked yet, or had completed): a
  // request parking later under one of these ids completes with EINTR. The newest few only.
  std::set<uint64_t> cancelled_early_;
  bool locks_changed_ = false;
  bool stopping_ = false;
  std::thread waiter_thread_;
};

}  // namespace leasefs::lock
