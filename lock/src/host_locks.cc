// host_locks.cc — see host_locks.h for the protocol.
//
// Lock order: DatabaseLocks::mutex, then (inside LeaseManager calls) the manager's own lock;
// HostLocks::mutex_ and waiters_mutex_ are leaves, never held across a lease operation.
#include "leasefs/lock/host_locks.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>

namespace leasefs::lock {
namespace {

constexpr uint64_t kPendingByte = 0x40000000;
constexpr uint64_t kSharedFirst = kPendingByte + 2;
constexpr uint64_t kSharedEnd = kSharedFirst + 510;
constexpr uint64_t kShmLockFirst = 120;  // WAL lock bytes 120..127
constexpr uint64_t kShmDms = 128;
constexpr size_t kMaxCachedInfos = 4096;

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

}  // namespace

HostLocks::HostLocks(std::string source, std::string lease_namespace, CacheInvalidator* invalidator)
    : source_(std::move(source)),
      namespace_(std::move(lease_namespace)),
      invalidator_(invalidator) {}

HostLocks::~HostLocks() {
  stop();
}

void HostLocks::attach(LeaseManager* leases) {
  leases_ = leases;
}
void HostLocks::attach_invalidator(CacheInvalidator* invalidator) {
  invalidator_ = invalidator;
}

HostLocks::FileInfo HostLocks::Classify(const std::string& relative_path) {
  FileInfo info;
  info.path = relative_path;
  if (EndsWith(relative_path, "-shm")) {
    info.kind = FileKind::kShm;
    info.database = relative_path.substr(0, relative_path.size() - 4);
  } else {
    info.kind = FileKind::kDatabase;
    info.database = relative_path;
  }
  return info;
}

HostLocks::FileInfo HostLocks::info(const FileRef& file, bool sqlite_locked) {
  const FileKey key{file.device, file.inode};
  {
    std::lock_guard<std::mutex> guard(mutex_);
    auto it = infos_.find(key);
    if (it != infos_.end()) {
      if (sqlite_locked && it->second.kind == FileKind::kDatabase) {
        databases_seen_.insert(it->second.database);
      }
      return it->second;
    }
  }
  // The O_PATH descriptor names the backing file; its path relative to SOURCE names the file
  // for the cluster.
  char link[64];
  std::snprintf(link, sizeof link, "/proc/self/fd/%d", file.path_fd);
  char target[PATH_MAX + 1];
  ssize_t n = readlink(link, target, PATH_MAX);
  std::string absolute = n > 0 ? std::string(target, static_cast<size_t>(n)) : std::string();
  std::string relative;
  if (absolute == source_) {
    relative = "";
  } else if (absolute.compare(0, source_.size() + 1, source_ + "/") == 0) {
    relative = absolute.substr(source_.size() + 1);
  } else {
    relative = "#" + std::to_string(file.device) + ":" + std::to_string(file.inode);
  }
  FileInfo result = Classify(relative);
  std::lock_guard<std::mutex> guard(mutex_);
  if (infos_.size() >= kMaxCachedInfos) infos_.clear();
  infos_[key] = result;
  if (sqlite_locked && result.kind == FileKind::kDatabase) databases_seen_.insert(result.database);
  return result;
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
  return use;
}

int HostLocks::try_set(const FileRef& file, uint64_t owner, uint64_t handle,
                       const struct flock& request) {
  LockRange range;
  if (int err = RangeFromFlock(request, &range)) return err;
  const bool sqlite_range = Overlaps(range, {kPendingByte, kSharedEnd});
  FileInfo fi = info(file, sqlite_range && request.l_type != F_UNLCK);
  DatabaseLocks& db = database(fi.database);
  std::lock_guard<std::mutex> guard(db.mutex);
  const FileKey key{file.device, file.inode};
  db.kinds[key] = fi.kind;
  FileLockState& state = db.files[key];

  if (request.l_type == F_UNLCK) {
    state.unlock(owner, range);
    if (leases_) leases_->set_use(lease_name(fi.database), use_of(db));
    return 0;
  }
  const LockType type = request.l_type == F_WRLCK ? LockType::kWrite : LockType::kRead;
  if (state.conflict(owner, type, range)) return EAGAIN;
  const uint32_t pid = static_cast<uint32_t>(request.l_pid);
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
    ClaimResult result = leases_->acquire(lease_name(fi.database), use, entering);
    if (result != ClaimResult::kGranted) return EAGAIN;
  }
  state.lock(owner, type, range, pid);
  db.owners_by_handle[handle].insert({key, owner});
  return 0;
}

uint64_t HostLocks::set_lock(const FileRef& file, uint64_t owner, uint64_t handle,
                             const struct flock& lock, bool wait, LockCompletion done) {
  int err = try_set(file, owner, handle, lock);
  counters_.setlk++;
  if (err == EAGAIN) counters_.setlk_busy++;
  if (err == EAGAIN && wait) counters_.setlkw_waits++;
  if (lock.l_type == F_UNLCK) note_locks_changed();
  if (err != EAGAIN || !wait) {
    done(err);
    return 0;
  }
  std::lock_guard<std::mutex> guard(waiters_mutex_);
  uint64_t id = next_wait_id_++;
  waiters_.push_back(Waiter{id, file, owner, handle, lock, std::move(done)});
  // An unlock between try_set() and here saw no waiter and woke no one: retry once regardless.
  locks_changed_ = true;
  waiters_changed_.notify_all();
  return id;
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
  for (Waiter& w : pending) {
    int err = try_set(w.file, w.owner, w.handle, w.lock);
    if (err == EAGAIN) {
      still_waiting.push_back(std::move(w));
    } else {
      w.done(err);
    }
  }
  std::lock_guard<std::mutex> guard(waiters_mutex_);
  // cancel_wait() may have run meanwhile for a waiter we held: it found nothing, so the kernel
  // still waits for an answer; the waiter stays until its lock or the next interrupt.
  waiters_.insert(waiters_.end(), std::make_move_iterator(still_waiting.begin()),
                  std::make_move_iterator(still_waiting.end()));
}

void HostLocks::run_background() {
  waiter_thread_ = std::thread([this] {
    std::unique_lock<std::mutex> lock(waiters_mutex_);
    while (!stopping_) {
      waiters_changed_.wait_for(lock, std::chrono::milliseconds(10),
                                [&] { return stopping_ || (locks_changed_ && !waiters_.empty()); });
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
  DatabaseLocks& db = database(fi.database);
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
      Mode held = leases_->foreign_holder(lease_name(fi.database), span.region, mode);
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
  DatabaseLocks& db = database(fi.database);
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
    if (leases_) {
      leases_->set_use(lease_name(fi.database), use_of(db));
      if (abandoned) {
        counters_.abandoned_transactions++;
        spdlog::warn(
            "a process closed {} inside a write transaction; releasing its claims so "
            "its journal can be rolled back anywhere",
            fi.path);
        leases_->relinquish(lease_name(fi.database));
      }
    }
  }
  note_locks_changed();
}

void HostLocks::release_handle(const FileRef& file, uint64_t handle) {
  FileInfo fi = info(file, false);
  DatabaseLocks& db = database(fi.database);
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
  if (changed && leases_) leases_->set_use(lease_name(fi.database), use_of(db));
}

int HostLocks::admit(const FileRef& file, WriteKind kind, std::string_view name) {
  // Creating a name changes no data (an O_TRUNC open is admitted as kTruncate), and SQLite
  // creates its -wal holding only SHARED: creation is not fenced.
  if (!leases_ || kind == WriteKind::kCreate) return 0;
  FileInfo fi = info(file, false);
  std::string target = fi.path;
  if (!name.empty()) target = (fi.path.empty() ? "" : fi.path + "/") + std::string(name);
  std::string database = target;
  for (const char* suffix : {"-journal", "-wal"}) {
    if (EndsWith(target, suffix)) database = target.substr(0, target.size() - std::strlen(suffix));
  }
  {
    std::lock_guard<std::mutex> guard(mutex_);
    if (!databases_seen_.count(database)) return 0;  // never locked as a database: not fenced
  }
  if (!leases_->may_write(lease_name(database))) {
    counters_.fenced_writes++;
    spdlog::warn("fenced: {} of {} refused (no write claim, or lease deadline passed)",
                 static_cast<int>(kind), target);
    return EIO;
  }
  leases_->mark_dirty(lease_name(database));
  return 0;
}

HostLocks::Counters HostLocks::counters() const {
  return Counters{counters_.setlk,        counters_.setlk_busy, counters_.setlkw_waits,
                  counters_.getlk,        counters_.flushes,    counters_.abandoned_transactions,
                  counters_.fenced_writes};
}

void HostLocks::flush(const std::string& lease) {
  const std::string db = database_of_lease(lease);
  for (const char* suffix : {"", "-journal", "-wal"}) {
    std::string path = source_ + "/" + db + suffix;
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) continue;  // e.g. no journal between transactions
    if (fsync(fd) < 0) spdlog::error("fsync {} before handing off: {}", path, std::strerror(errno));
    ::close(fd);
  }
}

void HostLocks::invalidate(const std::string& lease) {
  const std::string db = database_of_lease(lease);
  const std::string parent = ParentOf(db);
  struct stat dir_st;
  const std::string dir_path = parent.empty() ? source_ : source_ + "/" + parent;
  bool have_dir = stat(dir_path.c_str(), &dir_st) == 0;
  const std::string base = db.substr(parent.empty() ? 0 : parent.size() + 1);
  for (const char* suffix : {"", "-journal", "-wal", "-shm"}) {
    std::string path = source_ + "/" + db + suffix;
    struct stat st;
    if (stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
      // The backing client's cache (NFS: close-to-open revalidation on open, clean pages
      // dropped), then the kernel's FUSE cache of pages and attributes.
      int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
      if (fd >= 0) {
        posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        ::close(fd);
      }
      if (invalidator_) invalidator_->invalidate_file(FileRef{st.st_dev, st.st_ino, -1});
    }
    // Cached names, positive or negative: a -journal's existence decides hot-journal recovery.
    if (invalidator_ && have_dir) {
      invalidator_->invalidate_name(FileRef{dir_st.st_dev, dir_st.st_ino, -1}, base + suffix);
    }
  }
}

}  // namespace leasefs::lock
