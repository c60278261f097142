// host_locks.cc — see host_locks.h for the protocol.
//
// Lock order: DatabaseLocks::mutex, then (inside LeaseManager calls) the manager's own lock;
// HostLocks::mutex_ and waiters_mutex_ are leaves, never held across a lease operation.
#include "leasefs/lock/host_locks.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <thread>

namespace leasefs::lock {
namespace {

constexpr uint64_t kPendingByte = 0x40000000;
constexpr uint64_t kSharedFirst = kPendingByte + 2;
constexpr uint64_t kSharedEnd = kSharedFirst + 510;
constexpr uint64_t kShmLockFirst = 120;  // WAL lock bytes 120..127
constexpr uint64_t kShmDms = 128;
constexpr size_t kMaxCachedInfos = 1 << 16;
constexpr size_t kMaxNamesPerDatabase = 4;

bool EndsWith(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() &&
         text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool Overlaps(LockRange a, LockRange b) {
  return a.start < b.end && b.start < a.end;
}

Mode ModeOf(std::optional<LockType> type) {
  if (!type) return Mode::kNone;
  return *type == LockType::kWrite ? Mode::kWrite : Mode::kRead;
}

struct RegionSpan {
  Region region;
  LockRange range;
};

// The regions of a file kind and the bytes each covers (WHOLE is everything else).
std::vector<RegionSpan> SpansOf(HostLocks::FileKind kind) {
  std::vector<RegionSpan> spans;
  if (kind == HostLocks::FileKind::kShm) {
    for (uint64_t i = 0; i < 8; i++) {
      spans.push_back({static_cast<Region>(static_cast<size_t>(Region::kWal0) + i),
                       {kShmLockFirst + i, kShmLockFirst + i + 1}});
    }
    spans.push_back({Region::kDms, {kShmDms, kShmDms + 1}});
  } else {
    spans.push_back({Region::kPending, {kPendingByte, kPendingByte + 1}});
    spans.push_back({Region::kReserved, {kPendingByte + 1, kPendingByte + 2}});
    spans.push_back({Region::kShared, {kSharedFirst, kSharedEnd}});
  }
  return spans;
}

// The complement of SpansOf(kind) for non-shm files: the WHOLE region's pieces.
std::vector<LockRange> WholePieces() {
  return {{0, kPendingByte}, {kSharedEnd, kToEnd}};
}

std::string ParentOf(const std::string& relative) {
  auto slash = relative.rfind('/');
  return slash == std::string::npos ? std::string() : relative.substr(0, slash);
}

// Whether `name` in directory `dir` starts with SQLite's file header.
bool IsSqliteFile(int dir, const std::string& name) {
  static constexpr char kHeader[16] = "SQLite format 3";  // and its NUL: 16 bytes
  int fd = openat(dir, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return false;
  char head[sizeof kHeader];
  bool database = pread(fd, head, sizeof head, 0) == static_cast<ssize_t>(sizeof head) &&
                  std::memcmp(head, kHeader, sizeof head) == 0;
  ::close(fd);
  return database;
}

// The database a "-journal" or "-wal" name belongs to, or empty for any other name.
std::string DatabaseOfJournal(std::string_view name) {
  for (std::string_view suffix : {std::string_view("-journal"), std::string_view("-wal")}) {
    if (name.size() > suffix.size() && name.ends_with(suffix)) {
      return std::string(name.substr(0, name.size() - suffix.size()));
    }
  }
  return {};
}

// How often a held request asks the store rather than the claims here (retry_waiters).
constexpr auto kHeldStoreLook = std::chrono::milliseconds(2);

// HELD F_SETLK (host_locks.h): may `owner`, holding what it holds in `state` (a database file),
// wait in the daemon for a conflicting lock to go, here or on another host? Not while it holds
// SHARED without RESERVED (a read transaction upgrading to write): the owner of RESERVED is in a
// write transaction whose commit needs our SHARED gone, so the wait could only end when that
// writer gives up, and it holds that writer up meanwhile. SQLite on one disk answers such an
// upgrade SQLITE_BUSY at once (the reader rolls back, or BEGIN IMMEDIATE starts again from
// nothing), and so do we. An owner holding nothing (a transaction starting) or holding RESERVED
// (the one writer, whom everyone else yields to) may wait: an owner holding nothing blocks
// nobody, and RESERVED's owner waits only for SHARED owners, who never wait, so no wait closes a
// cycle.
bool MayBeHeld(const FileLockState& state, uint64_t owner) {
  return !state.owner_holds_in(owner, {kSharedFirst, kSharedEnd}) ||
         state.owner_holds_in(owner, {kPendingByte + 1, kPendingByte + 2});
}

// Whether `owner` already holds every byte of `range` in `type` or stronger: the request gives
// it nothing it does not have (a downgrade from W to R, or a lock it holds already), so the
// host's use can only shrink (see try_set).
bool OwnerAlreadyHolds(const FileLockState& state, uint64_t owner, LockType type, LockRange range) {
  uint64_t covered = range.start;               // every byte below this is held strongly enough
  for (const HeldLock& held : state.locks()) {  // canonical: by owner, then start
    if (held.owner != owner || held.range.end <= covered) continue;
    if (held.range.start > covered) return false;  // a gap
    if (type == LockType::kWrite && held.type != LockType::kWrite) return false;
    covered = held.range.end;
    if (covered >= range.end) return true;
  }
  return covered >= range.end;
}
}  // namespace

HostLocks::HostLocks(std::string source, std::string lease_namespace, CacheInvalidator* invalidator,
                     Duration transient_wait, Duration lock_hold, Duration local_lock_hold)
    : source_(std::move(source)),
      namespace_(std::move(lease_namespace)),
      invalidator_(invalidator),
      transient_wait_(transient_wait),
      lock_hold_(lock_hold),
      local_lock_hold_(local_lock_hold) {}

HostLocks::~HostLocks() {
  stop();
}

void HostLocks::attach(LeaseManager* leases) {
  leases_ = leases;
}
void HostLocks::attach_invalidator(CacheInvalidator* invalidator) {
  invalidator_ = invalidator;
}

std::string HostLocks::lease_at(int at, const std::string& relative) const {
  struct stat st;
  const std::string path = at < 0 ? source_ + "/" + relative : relative;
  if (fstatat(at < 0 ? AT_FDCWD : at, path.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 ||
      !S_ISREG(st.st_mode)) {
    return {};
  }
  return lease_of_inode(st.st_ino);
}

HostLocks::FileInfo HostLocks::info(const FileRef& file, bool sqlite_locked) {
  const FileKey key{file.device, file.inode};
  {
    std::lock_guard<std::mutex> guard(mutex_);
    auto it = infos_.find(key);
    if (it != infos_.end()) {
      if (sqlite_locked && it->second.kind == FileKind::kDatabase) {
        databases_seen_.insert(it->second.lease);
      }
      return it->second;
    }
  }
  // The O_PATH descriptor names the backing file; its path relative to SOURCE tells a -shm
  // from a database (and names the database in status).
  char link[64];
  std::snprintf(link, sizeof link, "/proc/self/fd/%d", file.path_fd);
  char target[PATH_MAX + 1];
  ssize_t n = file.path_fd >= 0 ? readlink(link, target, PATH_MAX) : -1;
  std::string absolute = n > 0 ? std::string(target, static_cast<size_t>(n)) : std::string();
  FileInfo result;
  if (absolute == source_) {
    result.path = "";
  } else if (absolute.compare(0, source_.size() + 1, source_ + "/") == 0) {
    result.path = absolute.substr(source_.size() + 1);
  } else {
    result.path = "#" + std::to_string(file.device) + ":" + std::to_string(file.inode);
  }
  result.lease = lease_of_inode(file.inode);
  if (EndsWith(result.path, "-shm")) {
    // The WAL lock bytes of the database the -shm is named after, as it is now.
    std::string database = lease_at(-1, result.path.substr(0, result.path.size() - 4));
    if (!database.empty()) {
      result.kind = FileKind::kShm;
      result.lease = database;
    }
  }
  std::lock_guard<std::mutex> guard(mutex_);
  if (infos_.size() >= kMaxCachedInfos) infos_.clear();  // forget() normally keeps it small
  infos_[key] = result;
  if (result.kind == FileKind::kDatabase) {
    KnownDatabase& known = known_[result.lease];
    known.files.insert(key);
    auto& names = known.names;
    if (std::find(names.begin(), names.end(), result.path) == names.end()) {
      if (names.size() >= kMaxNamesPerDatabase) names.erase(names.begin());
      names.push_back(result.path);
    }
    if (sqlite_locked) databases_seen_.insert(result.lease);
  }
  return result;
}

void HostLocks::forget(const FileRef& file) {
  const FileKey key{file.device, file.inode};
  std::lock_guard<std::mutex> guard(mutex_);
  auto it = infos_.find(key);
  if (it == infos_.end()) return;
  auto known = known_.find(it->second.lease);
  if (known != known_.end()) known->second.files.erase(key);
  infos_.erase(it);
}

std::string HostLocks::path_of(const std::string& lease) const {
  std::lock_guard<std::mutex> guard(mutex_);
  auto it = known_.find(lease);
  return it == known_.end() || it->second.names.empty() ? std::string() : it->second.names.back();
}

HostLocks::DatabaseLocks& HostLocks::database(const std::string& name) {
  std::lock_guard<std::mutex> guard(mutex_);
  auto& slot = databases_[name];
  if (!slot) slot = std::make_unique<DatabaseLocks>();
  return *slot;
}

RegionModes HostLocks::use_of(DatabaseLocks& db) const {
  RegionModes use{};
  auto raise = [&](Region region, Mode mode) {
    Mode& current = use[static_cast<size_t>(region)];
    current = std::max(current, mode);
  };
  for (const auto& [key, state] : db.files) {
    FileKind kind = db.kinds.at(key);
    for (const RegionSpan& span : SpansOf(kind)) {
      Mode mode = ModeOf(state.strongest_in(span.range));
      if (span.region == Region::kDms && mode != Mode::kNone) mode = Mode::kWrite;
      raise(span.region, mode);
    }
    if (kind != FileKind::kShm) {
      for (LockRange piece : WholePieces())
        raise(Region::kWhole, ModeOf(state.strongest_in(piece)));
    }
  }
  if (db.transient_writes > 0) {
    for (Region region : {Region::kPending, Region::kReserved, Region::kShared}) {
      raise(region, Mode::kWrite);
    }
  }
  return use;
}

int HostLocks::try_set(const FileRef& file, uint64_t owner, uint64_t handle,
                       const struct flock& request, Attempt attempt, Duration* hold_for) {
  if (hold_for) *hold_for = Duration::zero();
  LockRange range;
  if (int err = RangeFromFlock(request, &range)) return err;
  const bool sqlite_range = Overlaps(range, {kPendingByte, kSharedEnd});
  FileInfo fi = info(file, sqlite_range && request.l_type != F_UNLCK);
  DatabaseLocks& db = database(fi.lease);
  std::lock_guard<std::mutex> guard(db.mutex);
  const FileKey key{file.device, file.inode};
  db.kinds[key] = fi.kind;
  FileLockState& state = db.files[key];

  if (request.l_type == F_UNLCK) {
    state.unlock(owner, range);
    if (leases_) leases_->set_use(fi.lease, use_of(db));
    return 0;
  }
  const LockType type = request.l_type == F_WRLCK ? LockType::kWrite : LockType::kRead;
  if (state.conflict(owner, type, range)) {
    // Another local owner's lock: held as well (HELD F_SETLK), woken by its unlock.
    if (hold_for && fi.kind == FileKind::kDatabase && sqlite_range && MayBeHeld(state, owner)) {
      *hold_for = local_lock_hold_;
    }
    return EAGAIN;
  }
  const uint32_t pid = static_cast<uint32_t>(request.l_pid);
  if (leases_ && OwnerAlreadyHolds(state, owner, type, range)) {
    // A downgrade needs no claim, and must not be refused. SQLite steps down from EXCLUSIVE or
    // RESERVED to SHARED with an F_RDLCK on the SHARED range: at the end of every write
    // transaction, of every BEGIN EXCLUSIVE or IMMEDIATE one that only read, and after a SELECT
    // rolled back a hot journal. It cannot be refused on one disk, so SQLite reports a refusal
    // as SQLITE_IOERR_RDLOCK ("disk I/O error"), for a transaction that has committed, or only
    // read. The owner enters nothing and the host's use can only shrink, so the claims that
    // covered the use before cover it after: nothing is asked of the lease manager, and neither
    // a lapsed deadline (fenced) nor another host's demand (writer priority) has a say. Like an
    // unlock, the request only reports the reduced use.
    state.lock(owner, type, range, pid);
    db.owners_by_handle[handle].insert({key, owner});
    leases_->set_use(fi.lease, use_of(db));
    return 0;
  }
  if (leases_) {
    FileLockState before = state;
    state.lock(owner, type, range, pid);  // tentatively, to compute the use it implies
    RegionModes use = use_of(db);
    state = std::move(before);
    // The regions this owner enters with the request (LeaseManager: writer priority).
    RegionModes entering{};
    const Mode mode = type == LockType::kWrite ? Mode::kWrite : Mode::kRead;
    for (const RegionSpan& span : SpansOf(fi.kind)) {
      if (Overlaps(span.range, range) && !state.owner_holds_in(owner, span.range)) {
        entering[static_cast<size_t>(span.region)] = mode;
      }
    }
    ClaimResult result =
        attempt == Attempt::kCached      ? leases_->acquire_cached(fi.lease, use, entering)
        : attempt == Attempt::kStoreOnce ? leases_->acquire_once(fi.lease, use, entering)
                                         : leases_->acquire(fi.lease, use, entering);
    if (result != ClaimResult::kGranted) {
      if (hold_for && result == ClaimResult::kBusy && fi.kind == FileKind::kDatabase &&
          sqlite_range && MayBeHeld(state, owner) &&
          // Not while another host has the database open in WAL mode (its DMS claim): SQLite
          // could then only go on to meet that claim at the -shm, where it retries on its own
          // for ~10 s and gives up with SQLITE_PROTOCOL (WAL across hosts: not yet).
          leases_->others_hold(fi.lease)[static_cast<size_t>(Region::kDms)] == Mode::kNone) {
        *hold_for = lock_hold_;
      }
      return EAGAIN;
    }
  }
  state.lock(owner, type, range, pid);
  db.owners_by_handle[handle].insert({key, owner});
  return 0;
}

void HostLocks::set_lock(const FileRef& file, uint64_t owner, uint64_t handle,
                         const struct flock& lock, bool wait, uint64_t wait_id,
                         LockCompletion done) {
  Duration hold_for{};
  int err = try_set(file, owner, handle, lock, Attempt::kStore, &hold_for);
  counters_.setlk++;
  if (lock.l_type == F_UNLCK) note_locks_changed();
  const bool hold = err == EAGAIN && !wait && hold_for > Duration::zero();
  if (err == EAGAIN && !hold) counters_.setlk_busy++;
  if (err == EAGAIN && wait) counters_.setlkw_waits++;
  if (hold) counters_.setlk_held++;
  if (err != EAGAIN || !(wait || hold)) {
    done(err);
    return;
  }
  std::unique_lock<std::mutex> guard(waiters_mutex_);
  if (cancelled_early_.erase(wait_id)) {  // interrupted before it could wait
    guard.unlock();
    done(EINTR);
    return;
  }
  Waiter waiter{wait_id, file, owner, handle, lock, std::move(done), std::nullopt};
  if (hold) waiter.held_until = std::chrono::steady_clock::now() + hold_for;
  waiters_.push_back(std::move(waiter));
  // An unlock between try_set() and here saw no waiter and woke no one: retry once regardless.
  locks_changed_ = true;
  waiters_changed_.notify_all();
}

// Wakes the waiter thread only when someone waits: an unlock is on the hot path of every SQLite
// transaction, and a needless wake-up costs a context switch on each.
void HostLocks::note_locks_changed() {
  std::lock_guard<std::mutex> guard(waiters_mutex_);
  if (waiters_.empty()) return;
  locks_changed_ = true;
  waiters_changed_.notify_all();
}

void HostLocks::cancel_wait(uint64_t wait_id) {
  LockCompletion done;
  {
    std::lock_guard<std::mutex> guard(waiters_mutex_);
    for (auto it = waiters_.begin(); it != waiters_.end(); ++it) {
      if (it->id == wait_id) {
        done = std::move(it->done);
        waiters_.erase(it);
        break;
      }
    }
    if (!done) {
      // Not waiting (yet, or any more; or retry_waiters() has it in hand right now): remember
      // it for set_lock() and for retry_waiters(). Ids only grow, so the oldest go first.
      cancelled_early_.insert(wait_id);
      while (cancelled_early_.size() > 256) cancelled_early_.erase(cancelled_early_.begin());
    }
  }
  if (done) done(EINTR);
}

void HostLocks::retry_waiters() {
  std::vector<Waiter> pending;
  {
    std::lock_guard<std::mutex> guard(waiters_mutex_);
    pending.swap(waiters_);
  }
  std::vector<Waiter> still_waiting;
  const auto now = std::chrono::steady_clock::now();
  for (Waiter& w : pending) {
    if (!w.held_until) {  // F_SETLKW: the whole protocol, store included, until granted
      int err = try_set(w.file, w.owner, w.handle, w.lock);
      if (err == EAGAIN) {
        still_waiting.push_back(std::move(w));
      } else {
        w.done(err);
      }
      continue;
    }
    // Held F_SETLK: granted from claims already here, else held on while the wait is still for
    // another host and the time is not up, else busy after all. Every kHeldStoreLook it also
    // goes through the store: a claim handed to us can be yielded again by the background
    // thread before this thread sees it (the claim was owed to another host, and a held
    // request is no local use), or be released instead of handed, and then only a request to
    // the store gets it. Cached retries alone left held writers waiting out their whole hold
    // with the claim free in the record (issue 12).
    // Held until its first deadline, whatever it waits for now (a local lock, then a claim).
    // Before a busy answer it asks the store once, as a new request would: a request held for
    // a local lock that went may now need claims that are not here (not held for another host
    // with lock_hold 0, it would be answered busy without ever asking).
    Duration hold_for{};
    int err = try_set(w.file, w.owner, w.handle, w.lock, Attempt::kCached, &hold_for);
    if (err == EAGAIN && now < *w.held_until &&
        (hold_for == Duration::zero() || now >= w.next_store_look)) {
      w.next_store_look = now + kHeldStoreLook;
      err = try_set(w.file, w.owner, w.handle, w.lock, Attempt::kStoreOnce, &hold_for);
    }
    if (err == EAGAIN && hold_for > Duration::zero() && now < *w.held_until) {
      still_waiting.push_back(std::move(w));
      continue;
    }
    if (err == 0) {
      counters_.setlk_held_granted++;
    } else if (err == EAGAIN) {
      counters_.setlk_busy++;
      if (spdlog::should_log(spdlog::level::debug)) log_unserved(w);
    }
    w.done(err);
  }
  std::vector<Waiter> interrupted;
  {
    std::lock_guard<std::mutex> guard(waiters_mutex_);
    // cancel_wait() may have run meanwhile for a waiter we had in hand: it found nothing and
    // left the id in cancelled_early_.
    for (Waiter& w : still_waiting) {
      if (cancelled_early_.erase(w.id)) {
        interrupted.push_back(std::move(w));
      } else {
        waiters_.push_back(std::move(w));
      }
    }
  }
  for (Waiter& w : interrupted) w.done(EINTR);
}

void HostLocks::log_unserved(const Waiter& w) {
  auto text = [](const RegionModes& modes) {
    std::string out;
    for (size_t i = 0; i < kRegionCount; i++) {
      if (modes[i] == Mode::kNone) continue;
      out += std::string(out.empty() ? "" : ",") + RegionName(static_cast<Region>(i)) + ":" +
             (modes[i] == Mode::kWrite ? "w" : "r");
    }
    return out.empty() ? std::string("-") : out;
  };
  const std::string lease = info(w.file, false).lease;
  spdlog::debug("held lock request {} {}+{} on {} answered busy: claims {} others want {}",
                w.lock.l_type == F_WRLCK ? "W" : "R", w.lock.l_start, w.lock.l_len, lease,
                text(leases_->held(lease)), text(leases_->others_want(lease)));
}

void HostLocks::claims_changed(const std::string& db) {
  (void)db;  // few requests wait at a time: retry them all
  note_locks_changed();
}

void HostLocks::run_background() {
  waiter_thread_ = std::thread([this] {
    std::unique_lock<std::mutex> lock(waiters_mutex_);
    while (!stopping_) {
      // Every 10 ms (F_SETLKW re-runs the protocol), or when a held request's time is up.
      auto wake = std::chrono::steady_clock::now() + std::chrono::milliseconds(10);
      for (const Waiter& w : waiters_) {
        if (w.held_until) wake = std::min(wake, *w.held_until);
      }
      waiters_changed_.wait_until(
          lock, wake, [&] { return stopping_ || (locks_changed_ && !waiters_.empty()); });
      if (stopping_) break;
      locks_changed_ = false;
      if (waiters_.empty()) continue;
      lock.unlock();
      retry_waiters();
      lock.lock();
    }
  });
}

void HostLocks::stop() {
  std::vector<Waiter> abandoned;
  {
    std::lock_guard<std::mutex> guard(waiters_mutex_);
    stopping_ = true;
    waiters_changed_.notify_all();
    abandoned.swap(waiters_);
  }
  if (waiter_thread_.joinable()) waiter_thread_.join();
  for (Waiter& w : abandoned) w.done(EINTR);
}

int HostLocks::test_lock(const FileRef& file, uint64_t owner, struct flock* lock) {
  counters_.getlk++;
  LockRange range;
  if (int err = RangeFromFlock(*lock, &range)) return err;
  FileInfo fi = info(file, false);
  DatabaseLocks& db = database(fi.lease);
  std::lock_guard<std::mutex> guard(db.mutex);
  const FileKey key{file.device, file.inode};
  db.kinds[key] = fi.kind;
  const LockType type = lock->l_type == F_WRLCK ? LockType::kWrite : LockType::kRead;
  if (auto conflict = db.files[key].conflict(owner, type, range)) {
    FillFlock(*conflict, lock);
    return 0;
  }
  if (leases_) {
    const Mode mode = type == LockType::kWrite ? Mode::kWrite : Mode::kRead;
    std::vector<RegionSpan> spans = SpansOf(fi.kind);
    if (fi.kind != FileKind::kShm) {
      for (LockRange piece : WholePieces()) spans.push_back({Region::kWhole, piece});
    }
    for (const RegionSpan& span : spans) {
      if (!Overlaps(span.range, range)) continue;
      Mode held = leases_->foreign_holder(fi.lease, span.region, mode);
      if (held == Mode::kNone) continue;
      // Report the part of the request the other host's claim covers.
      HeldLock other{0,
                     held == Mode::kWrite ? LockType::kWrite : LockType::kRead,
                     {std::max(span.range.start, range.start), std::min(span.range.end, range.end)},
                     0};
      FillFlock(other, lock);
      return 0;
    }
  }
  lock->l_type = F_UNLCK;
  return 0;
}

void HostLocks::release_owner(const FileRef& file, uint64_t owner) {
  counters_.flushes++;
  FileInfo fi = info(file, false);
  DatabaseLocks& db = database(fi.lease);
  bool abandoned = false;
  {
    std::lock_guard<std::mutex> guard(db.mutex);
    const FileKey key{file.device, file.inode};
    auto it = db.files.find(key);
    if (it == db.files.end() || !it->second.owner_holds(owner)) return;
    // SQLite always unlocks before it closes. A close that still finds a write lock in the
    // database's lock regions is a writer that died mid-transaction (possibly after spilling
    // pages into the file): its journal must become hot for every host, now.
    if (db.kinds[key] != FileKind::kShm) {
      for (const HeldLock& held : it->second.locks()) {
        if (held.owner == owner && held.type == LockType::kWrite &&
            Overlaps(held.range, {kPendingByte, kSharedEnd})) {
          abandoned = true;
        }
      }
    }
    it->second.unlock_all(owner);
    if (leases_ && !abandoned) {
      leases_->set_use(fi.lease, use_of(db));
    } else if (leases_) {
      counters_.abandoned_transactions++;
      spdlog::warn(
          "a process closed {} inside a write transaction; releasing its claims so "
          "its journal can be rolled back anywhere",
          fi.path);
      leases_->relinquish(fi.lease, use_of(db));
    }
  }
  note_locks_changed();
}

void HostLocks::release_handle(const FileRef& file, uint64_t handle) {
  FileInfo fi = info(file, false);
  DatabaseLocks& db = database(fi.lease);
  std::lock_guard<std::mutex> guard(db.mutex);
  auto it = db.owners_by_handle.find(handle);
  if (it == db.owners_by_handle.end()) return;
  const FileKey key{file.device, file.inode};
  bool changed = false;
  for (auto entry = it->second.begin(); entry != it->second.end();) {
    if (entry->first == key) {
      // Any owner still holding locks here when the open file description goes is an OFD owner:
      // a process owner's locks went with its FLUSH.
      db.files[key].unlock_all(entry->second);
      entry = it->second.erase(entry);
      changed = true;
    } else {
      ++entry;
    }
  }
  if (it->second.empty()) db.owners_by_handle.erase(it);
  if (changed && leases_) leases_->set_use(fi.lease, use_of(db));
}

std::string HostLocks::fenced_lease(const FileRef& file, std::string_view name) {
  if (name.empty()) {
    FileInfo fi = info(file, false);
    if (fi.kind == FileKind::kShm) return {};  // the wal-index: shared memory, not data
    // A journal is fenced by the database named after it now (it is short-lived, and a
    // database replaced under its name must not be guarded by its predecessor's record).
    std::string database = DatabaseOfJournal(fi.path);
    return database.empty() ? fi.lease : lease_at(-1, database);
  }
  // A directory entry: the database it names, or the one the journal it names belongs to.
  std::string database = DatabaseOfJournal(name);
  return lease_at(file.path_fd, database.empty() ? std::string(name) : database);
}

int HostLocks::admit(const FileRef& file, WriteKind kind, std::string_view name,
                     WriteTicket* ticket) {
  // Creating a name changes no data (an O_TRUNC open is admitted as kTruncate), and SQLite
  // creates its -wal holding only SHARED; owner, mode and times are metadata (see FENCING).
  if (!leases_ || kind == WriteKind::kCreate || kind == WriteKind::kSetAttr) return 0;
  const std::string lease = fenced_lease(file, name);
  if (lease.empty()) return 0;
  bool seen;
  {
    std::lock_guard<std::mutex> guard(mutex_);
    seen = databases_seen_.count(lease) > 0;
  }
  if (!seen) {
    // Never locked as a database here. Writes to it are not fenced (nothing of this host's
    // could be stale), but a name removed or replaced may be a database another host is
    // writing: a SQLite file is serialized with its writers wherever they are.
    const bool name_change = kind == WriteKind::kUnlink || kind == WriteKind::kRename;
    if (!name_change ||
        !IsSqliteFile(file.path_fd, DatabaseOfJournal(name).empty() ? std::string(name)
                                                                    : DatabaseOfJournal(name))) {
      return 0;
    }
    std::lock_guard<std::mutex> guard(mutex_);
    databases_seen_.insert(lease);
  }
  if (leases_->may_write(lease)) {
    leases_->mark_dirty(lease);
    return 0;
  }
  return admit_transient(lease, ticket);
}

int HostLocks::admit_transient(const std::string& lease, WriteTicket* ticket) {
  DatabaseLocks& db = database(lease);
  std::unique_lock<std::mutex> guard(db.mutex);
  RegionModes use = use_of(db);
  use[static_cast<size_t>(Region::kDms)] = Mode::kNone;  // "open in WAL mode", not a write lock
  for (Mode mode : use) {
    if (mode == Mode::kWrite) {
      // A local process holds a write lock, yet the host may not write: the lease lapsed. Its
      // transaction may end without its rollback (that is refused too), leaving a hot journal
      // after pages it wrote before the deadline: the release of our W claims must say so
      // (lease_manager.h, HOT JOURNALS: A FENCED WRITER), however well the session recovers.
      counters_.fenced_writes++;
      leases_->abandon(lease);
      spdlog::warn("fenced: a write to {} refused (the lease deadline passed)", path_of(lease));
      return EIO;
    }
  }
  RegionModes entering{};
  for (Region region : {Region::kPending, Region::kReserved, Region::kShared}) {
    entering[static_cast<size_t>(region)] = Mode::kWrite;
  }
  db.transient_writes++;
  const auto give_up = std::chrono::steady_clock::now() + transient_wait_;
  auto pause = std::chrono::milliseconds(1);
  int error = 0;
  while (true) {
    ClaimResult result = leases_->acquire(lease, use_of(db), entering);
    if (result == ClaimResult::kGranted) break;
    if (result != ClaimResult::kBusy) {
      error = EIO;  // fenced, or the store cannot be reached
      break;
    }
    if (std::chrono::steady_clock::now() >= give_up) {
      error = EBUSY;
      break;
    }
    // Another host holds it: wait as a lock would, with local lock requests free to run.
    guard.unlock();
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::milliseconds(50));
    guard.lock();
  }
  if (error) {
    db.transient_writes--;
    leases_->set_use(lease, use_of(db));
    counters_.fenced_writes++;
    spdlog::warn("a write to {} by a process holding no lock was refused: {}", path_of(lease),
                 error == EBUSY ? "another host kept the database busy" : "no lease");
    return error;
  }
  leases_->mark_dirty(lease);
  std::lock_guard<std::mutex> tickets(mutex_);
  ticket->id = next_ticket_++;
  tickets_[ticket->id] = lease;
  return 0;
}

void HostLocks::end_write(WriteTicket ticket) {
  std::string lease;
  {
    std::lock_guard<std::mutex> guard(mutex_);
    auto it = tickets_.find(ticket.id);
    if (it == tickets_.end()) return;
    lease = std::move(it->second);
    tickets_.erase(it);
  }
  DatabaseLocks& db = database(lease);
  {
    std::lock_guard<std::mutex> guard(db.mutex);
    db.transient_writes--;
    leases_->set_use(lease, use_of(db));
  }
  note_locks_changed();
}

HostLocks::Counters HostLocks::counters() const {
  Counters c;
  c.setlk = counters_.setlk;
  c.setlk_busy = counters_.setlk_busy;
  c.setlkw_waits = counters_.setlkw_waits;
  c.getlk = counters_.getlk;
  c.flushes = counters_.flushes;
  c.setlk_held = counters_.setlk_held;
  c.setlk_held_granted = counters_.setlk_held_granted;
  c.abandoned_transactions = counters_.abandoned_transactions;
  c.fenced_writes = counters_.fenced_writes;
  return c;
}

HostLocks::KnownDatabase HostLocks::known(const std::string& lease) const {
  std::lock_guard<std::mutex> guard(mutex_);
  auto it = known_.find(lease);
  return it == known_.end() ? KnownDatabase{} : it->second;
}

void HostLocks::flush(const std::string& lease) {
  const auto [files, names] = known(lease);
  auto sync = [](int fd, const std::string& what) {
    if (fd < 0) return;
    if (fsync(fd) < 0) spdlog::error("fsync {} before handing off: {}", what, std::strerror(errno));
    ::close(fd);
  };
  // The database through any descriptor of its file (its names may have moved), its journals by
  // the names they were created under.
  for (const FileKey& key : files) {
    if (invalidator_) sync(invalidator_->open_known(FileRef{key.device, key.inode, -1}), lease);
  }
  for (const std::string& name : names) {
    for (const char* suffix : {"", "-journal", "-wal"}) {
      std::string path = source_ + "/" + name + suffix;
      if (*suffix == '\0' && (!files.empty() || lease_at(-1, name) != lease)) continue;
      sync(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW), path);
    }
  }
}

void HostLocks::invalidate(const std::string& lease) {
  const auto [files, names] = known(lease);
  // The backing client's cache (NFS: close-to-open revalidation on open, clean pages dropped),
  // then the kernel's FUSE cache of pages and attributes.
  auto drop = [&](int fd, const FileRef& file) {
    if (fd >= 0) {
      posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
      ::close(fd);
    }
    if (invalidator_) invalidator_->invalidate_file(file);
  };
  for (const FileKey& key : files) {
    FileRef file{key.device, key.inode, -1};
    drop(invalidator_ ? invalidator_->open_known(file) : -1, file);
  }
  for (const std::string& name : names) {
    const std::string parent = ParentOf(name);
    struct stat dir_st;
    const std::string dir_path = parent.empty() ? source_ : source_ + "/" + parent;
    bool have_dir = stat(dir_path.c_str(), &dir_st) == 0;
    const std::string base = name.substr(parent.empty() ? 0 : parent.size() + 1);
    for (const char* suffix : {"", "-journal", "-wal", "-shm"}) {
      std::string path = source_ + "/" + name + suffix;
      struct stat st;
      if (stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
        drop(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW),
             FileRef{st.st_dev, st.st_ino, -1});
      }
      // Cached names, positive or negative: a -journal's existence decides hot-journal recovery.
      if (invalidator_ && have_dir) {
        invalidator_->invalidate_name(FileRef{dir_st.st_dev, dir_st.st_ino, -1}, base + suffix);
      }
    }
  }
}

// Makes this host's storage client look again at the names of the database's journals: a hot
// journal another host's writer left must not hide behind a cached "no such file".
//   * NFS: a stat of the directory with AT_STATX_FORCE_SYNC fetches its attributes from the
//     server; a changed change attribute invalidates every cached lookup in it, negative ones too.
//   * FUSE clients (and any client that revalidates a rename target): renameat2() of the database
//     onto "NAME-journal/" with RENAME_NOREPLACE makes the kernel look the target up afresh
//     (LOOKUP_RENAME_TARGET | LOOKUP_EXCL) and then refuses the rename whatever it finds: EEXIST
//     if the journal exists, ENOTDIR if not (a non-directory cannot be renamed to a name with a
//     trailing slash). Nothing is ever renamed or created.
// Then this mount's own kernel cache of those names is dropped, so SQLite's next lookup reaches
// the client.
void HostLocks::revalidate(const std::string& lease) {
  const auto names = known(lease).names;
  for (const std::string& name : names) {
    const std::string parent = ParentOf(name);
    const std::string dir_path = parent.empty() ? source_ : source_ + "/" + parent;
    const std::string base = name.substr(parent.empty() ? 0 : parent.size() + 1);
    struct statx dir_stx;
    const bool have_dir = statx(AT_FDCWD, dir_path.c_str(), AT_STATX_FORCE_SYNC,
                                STATX_INO | STATX_MTIME, &dir_stx) == 0;
    const std::string db_path = source_ + "/" + name;
    for (const char* suffix : {"-journal", "-wal"}) {
      const std::string probe = db_path + suffix + "/";
      if (renameat2(AT_FDCWD, db_path.c_str(), AT_FDCWD, probe.c_str(), RENAME_NOREPLACE) == 0) {
        // Cannot happen (see above); undo it rather than leave the database renamed.
        spdlog::error("revalidating {}: the probe rename succeeded; renaming it back", name);
        renameat2(AT_FDCWD, probe.c_str(), AT_FDCWD, db_path.c_str(), RENAME_NOREPLACE);
      }
      if (invalidator_ && have_dir) {
        const dev_t dev = makedev(dir_stx.stx_dev_major, dir_stx.stx_dev_minor);
        invalidator_->invalidate_name(FileRef{dev, static_cast<ino_t>(dir_stx.stx_ino), -1},
                                      base + suffix);
      }
    }
  }
  spdlog::info("a writer died inside a transaction on {}: re-read its directory before locking",
               names.empty() ? lease : names.back());
}

}  // namespace leasefs::lock
