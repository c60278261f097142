// local_store.cc — LeaseStore on SQLite. One table:
//
//   records(key TEXT PRIMARY KEY, revision INTEGER NOT NULL, body TEXT NOT NULL)
//
// A write is BEGIN IMMEDIATE (takes SQLite's write lock, so no other process can interleave),
// read the revision, compare, write revision + 1, COMMIT. SQLite's busy handler waits for other
// processes' transactions, but never past the caller's deadline: a write that could not start
// or commit in time was not applied (kUnavailable) — SQLite's COMMIT is atomic, so a local store
// never answers kAmbiguous.
//
// The store is the file at its path, not the file this process happened to open: if it is deleted
// or replaced while mounts run (rm leases.db*), mounts that kept writing into their open copy
// would no longer see each other's claims. Every request first checks that the path still names
// the opened file (one stat) and otherwise opens the path again (creating it if it is gone). The
// session record is then missing from the new file, so the next renewal's compare-and-set fails:
// the mount is fenced, its claims are dropped, and it joins again in the store the others use.
// That check comes at the next request, which may be a renewal seconds away while the mount
// grants locks from cached claims; so a thread also watches the file (inotify: deleted, moved,
// its links gone) and bumps generation(), which the lease manager reads on every lock request.
//
// Journal mode: a rollback journal (TRUNCATE), not WAL. WAL's index is a file every process maps
// shared, and a write into a shared mapping the kernel refuses (the file made immutable, its
// filesystem gone read-only or full under a hole) is a SIGBUS that kills the daemon and with it
// every mount's clients. With a rollback journal every store I/O is a read or write call whose
// failure is an error code: the request is unavailable, the mount fences, and recovers once the
// file is writable. It costs throughput (bench/README.md: two mounts alternating writes, ~140
// against ~190 handoffs per second) on the store meant for one machine; DynamoDB is the
// production store.
//   synchronous=OFF: the store holds nothing that must survive the machine. Every session in it
// belongs to a daemon of this machine, all gone after a power loss. A daemon killed mid-write
// loses nothing (its writes are in the page cache and the journal rolls back). A power loss may
// leave the file corrupt: opening a store that fails SQLite's quick_check moves it aside
// (leases.db.corrupt-TIME) and starts an empty one, which no session of the lost boot can be
// in.
#include "leasefs/lock/local_store.h"

#include <poll.h>
#include <spdlog/spdlog.h>
#include <sqlite3.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <mutex>
#include <thread>

namespace leasefs::lock {
namespace {

class Statement {
 public:
  Statement(sqlite3* db, const char* sql) { sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr); }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  sqlite3_stmt* get() { return stmt_; }
  bool valid() const { return stmt_ != nullptr; }

 private:
  sqlite3_stmt* stmt_ = nullptr;
};

// Opens (creating if needed) and sets up the store's SQLite file; nullptr and *error on failure.
sqlite3* OpenConnection(const std::string& path, std::string* error);

bool SameFile(const struct stat& a, const struct stat& b) {
  return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

class LocalStore final : public LeaseStore {
 public:
  LocalStore(sqlite3* db, std::string path, const struct stat& opened, const Clock& clock)
      : db_(db), path_(std::move(path)), opened_(opened), clock_(clock) {
    watch_fd_ = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (watch_fd_ >= 0) {
      watch_ =
          inotify_add_watch(watch_fd_, path_.c_str(), IN_DELETE_SELF | IN_MOVE_SELF | IN_ATTRIB);
      watcher_ = std::thread([this] { watch(); });
    }
  }
  ~LocalStore() override {
    stopping_ = true;
    if (watcher_.joinable()) watcher_.join();
    if (watch_fd_ >= 0) ::close(watch_fd_);
    sqlite3_close_v2(db_);
  }

  uint64_t generation() const override { return generation_.load(std::memory_order_relaxed); }

  StoreResult get(const std::string& key, TimePoint deadline) override {
    std::lock_guard<std::mutex> guard(mutex_);
    if (!still_the_store()) return reopen_failed();
    set_busy_timeout(deadline);
    StoreResult result;
    if (!read(key, &result.record)) return unavailable("read");
    result.outcome = StoreOutcome::kOk;
    return result;
  }

  StoreResult put(const std::string& key, uint64_t expected_revision, const std::string& body,
                  TimePoint deadline) override {
    return write(key, expected_revision, &body, deadline);
  }

  StoreResult remove(const std::string& key, uint64_t expected_revision,
                     TimePoint deadline) override {
    return write(key, expected_revision, nullptr, deadline);
  }

  StoreResult list(const std::string& prefix, std::vector<Record>* out,
                   TimePoint deadline) override {
    std::lock_guard<std::mutex> guard(mutex_);
    if (!still_the_store()) return reopen_failed();
    set_busy_timeout(deadline);
    Statement stmt(db_,
                   "SELECT key, revision, body FROM records WHERE substr(key, 1, ?1) = ?2 "
                   "ORDER BY key");
    if (!stmt.valid()) return unavailable("list");
    sqlite3_bind_int(stmt.get(), 1, static_cast<int>(prefix.size()));
    sqlite3_bind_text(stmt.get(), 2, prefix.data(), static_cast<int>(prefix.size()),
                      SQLITE_TRANSIENT);
    out->clear();
    int rc;
    while ((rc = sqlite3_step(stmt.get())) == SQLITE_ROW) {
      out->push_back(row_to_record(stmt.get()));
    }
    if (rc != SQLITE_DONE) return unavailable("list");
    StoreResult result;
    result.outcome = StoreOutcome::kOk;
    return result;
  }

  std::string describe() const override { return "local:" + path_; }

 private:
  static Record row_to_record(sqlite3_stmt* stmt) {
    Record record;
    record.key = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
    record.revision = static_cast<uint64_t>(sqlite3_column_int64(stmt, 1));
    const auto* body = sqlite3_column_text(stmt, 2);
    record.body = body ? reinterpret_cast<const char*>(body) : "";
    return record;
  }

  // Reads `key` into *record (revision 0 if missing). False on a database error.
  bool read(const std::string& key, Record* record) {
    Statement stmt(db_, "SELECT key, revision, body FROM records WHERE key = ?1");
    if (!stmt.valid()) return false;
    sqlite3_bind_text(stmt.get(), 1, key.data(), static_cast<int>(key.size()), SQLITE_TRANSIENT);
    int rc = sqlite3_step(stmt.get());
    if (rc == SQLITE_ROW) {
      *record = row_to_record(stmt.get());
      return true;
    }
    *record = Record{key, 0, ""};
    return rc == SQLITE_DONE;
  }

  StoreResult write(const std::string& key, uint64_t expected_revision, const std::string* body,
                    TimePoint deadline) {
    std::lock_guard<std::mutex> guard(mutex_);
    if (!still_the_store()) return reopen_failed();
    set_busy_timeout(deadline);
    if (sqlite3_exec(db_, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) != SQLITE_OK) {
      return unavailable("begin");
    }
    StoreResult result;
    if (!read(key, &result.record)) return rollback("read");
    if (result.record.revision != expected_revision) {
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
      result.outcome = StoreOutcome::kConflict;
      return result;
    }
    if (body) {
      Statement stmt(db_,
                     "INSERT OR REPLACE INTO records(key, revision, body) VALUES (?1, ?2, ?3)");
      if (!stmt.valid()) return rollback("prepare");
      sqlite3_bind_text(stmt.get(), 1, key.data(), static_cast<int>(key.size()), SQLITE_TRANSIENT);
      sqlite3_bind_int64(stmt.get(), 2, static_cast<sqlite3_int64>(expected_revision + 1));
      sqlite3_bind_text(stmt.get(), 3, body->data(), static_cast<int>(body->size()),
                        SQLITE_TRANSIENT);
      if (sqlite3_step(stmt.get()) != SQLITE_DONE) return rollback("write");
      result.record = Record{key, expected_revision + 1, *body};
    } else if (expected_revision != 0) {
      Statement stmt(db_, "DELETE FROM records WHERE key = ?1");
      if (!stmt.valid()) return rollback("prepare");
      sqlite3_bind_text(stmt.get(), 1, key.data(), static_cast<int>(key.size()), SQLITE_TRANSIENT);
      if (sqlite3_step(stmt.get()) != SQLITE_DONE) return rollback("delete");
      result.record = Record{key, 0, ""};
    }
    if (sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK)
      return rollback("commit");
    result.outcome = StoreOutcome::kOk;
    return result;
  }

  void set_busy_timeout(TimePoint deadline) {
    auto remaining = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_.now());
    sqlite3_busy_timeout(db_, static_cast<int>(std::clamp<int64_t>(remaining.count(), 0, 60000)));
  }

  StoreResult unavailable(const char* step) {
    StoreResult result;
    result.outcome = StoreOutcome::kUnavailable;
    result.error =
        std::string("local lease store ") + path_ + ": " + step + ": " + sqlite3_errmsg(db_);
    return result;
  }

  StoreResult rollback(const char* step) {
    StoreResult result = unavailable(step);
    if (!sqlite3_get_autocommit(db_)) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    return result;
  }

  // The watcher thread: any event on the opened file that leaves path_ naming another file (or
  // none) bumps the generation once per replacement.
  void watch() {
    bool reported = false;
    struct stat reported_for {};
    while (!stopping_) {
      pollfd p{watch_fd_, POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) continue;
      char events[4096];
      while (::read(watch_fd_, events, sizeof events) > 0) {
      }
      struct stat now, opened;
      bool same;
      {
        std::lock_guard<std::mutex> guard(opened_mutex_);
        opened = opened_;
        same = stat(path_.c_str(), &now) == 0 && SameFile(now, opened);
      }
      if (!same && !(reported && SameFile(reported_for, opened))) {
        reported = true;
        reported_for = opened;
        generation_++;
        spdlog::error(
            "local lease store {} was deleted or replaced: fencing until this mount "
            "joins the store now at that path",
            path_);
      }
    }
  }

  // Whether path_ still names the file db_ has open; if not, opens the path again (see the top).
  bool still_the_store() {
    struct stat now;
    if (stat(path_.c_str(), &now) == 0 && SameFile(now, opened_)) return true;
    std::string error;
    sqlite3* fresh = OpenConnection(path_, &error);
    if (!fresh) {
      reopen_error_ = error;
      return false;
    }
    struct stat opened;
    if (stat(path_.c_str(), &opened) != 0) {
      sqlite3_close_v2(fresh);
      reopen_error_ = "local lease store " + path_ + " vanished again";
      return false;
    }
    spdlog::error("local lease store {} was replaced or deleted; using the file now at that path",
                  path_);
    if (generation_ == reported_generation_) generation_++;  // the watcher had not seen it
    reported_generation_ = generation_;
    sqlite3_close_v2(db_);
    db_ = fresh;
    {
      std::lock_guard<std::mutex> guard(opened_mutex_);
      opened_ = opened;
    }
    if (watch_fd_ >= 0) {
      inotify_rm_watch(watch_fd_, watch_);
      watch_ =
          inotify_add_watch(watch_fd_, path_.c_str(), IN_DELETE_SELF | IN_MOVE_SELF | IN_ATTRIB);
    }
    return true;
  }

  StoreResult reopen_failed() {
    StoreResult result;
    result.outcome = StoreOutcome::kUnavailable;
    result.error = reopen_error_;
    return result;
  }

  std::mutex mutex_;  // one connection, used by one thread at a time
  sqlite3* db_;
  std::string path_;
  std::mutex opened_mutex_;  // opened_ is also read by the watcher
  struct stat opened_;       // the file db_ has open
  std::atomic<uint64_t> generation_{0};
  uint64_t reported_generation_ = 0;  // the generation when db_ was opened (under mutex_)
  int watch_fd_ = -1;
  int watch_ = -1;
  std::atomic<bool> stopping_{false};
  std::thread watcher_;
  std::string reopen_error_;
  const Clock& clock_;
};

}  // namespace

std::string DefaultLocalStorePath() {
  if (geteuid() == 0) return "/var/lib/leasefs/leases.db";
  if (const char* state = std::getenv("XDG_STATE_HOME"); state && *state) {
    return std::string(state) + "/leasefs/leases.db";
  }
  const char* home = std::getenv("HOME");
  return std::string(home ? home : "/tmp") + "/.local/state/leasefs/leases.db";
}

namespace {

// Whether another user could replace or rewrite what `st` describes: owned by someone other than
// root or us, or writable by group or others (a directory with the sticky bit excepted: there
// only an entry's owner may remove or rename it, and the entry is checked in turn).
std::string OthersCanChange(const struct stat& st) {
  char mode[8];
  std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
  if (st.st_uid != 0 && st.st_uid != geteuid()) {
    return "is owned by uid " + std::to_string(st.st_uid);
  }
  const bool sticky_dir = S_ISDIR(st.st_mode) && (st.st_mode & S_ISVTX);
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) && !sticky_dir) {
    return std::string("is writable by other users (mode ") + mode + ")";
  }
  return "";
}

// Creates the store's missing directories (the last mode 0700, any above it 0755, whatever the
// umask: the daemon runs with umask 0) and refuses a path whose directories another user could
// change: the store decides which host may write the databases, so whoever can replace it can
// make two hosts write at once.
bool PrepareStoreDirectory(const std::filesystem::path& dir, std::string* error) {
  std::filesystem::path at = dir.is_absolute() ? dir.root_path() : std::filesystem::path(".");
  const auto last = std::prev(dir.end());
  for (auto part = dir.begin(); part != dir.end(); ++part) {
    if (part->empty() || *part == dir.root_path()) continue;
    at /= *part;
    struct stat st;
    if (stat(at.c_str(), &st) != 0) {
      if (errno != ENOENT ||
          (mkdir(at.c_str(), part == last ? 0700 : 0755) != 0 && errno != EEXIST)) {
        *error = "cannot create lease store directory " + at.string() + ": " + std::strerror(errno);
        return false;
      }
      chmod(at.c_str(), part == last ? 0700 : 0755);  // mkdir's mode went through the umask
      if (stat(at.c_str(), &st) != 0) {
        *error = "cannot create lease store directory " + at.string() + ": " + std::strerror(errno);
        return false;
      }
    }
    if (!S_ISDIR(st.st_mode)) {
      *error = "lease store directory " + at.string() + " is not a directory";
      return false;
    }
    if (std::string why = OthersCanChange(st); !why.empty()) {
      *error = "lease store directory " + at.string() + " " + why +
               "; another user could replace the store: use a directory only root (or you) "
               "can write";
      return false;
    }
  }
  return true;
}

}  // namespace

std::unique_ptr<LeaseStore> OpenLocalStore(const std::string& path, const Clock& clock,
                                           std::string* error) {
  const auto dir = std::filesystem::absolute(std::filesystem::path(path)).parent_path();
  if (!PrepareStoreDirectory(dir, error)) return nullptr;
  sqlite3* db = OpenConnection(path, error);
  if (!db) return nullptr;
  struct stat opened;
  if (stat(path.c_str(), &opened) != 0) {
    *error = "cannot open lease store " + path + ": " + std::strerror(errno);
    sqlite3_close_v2(db);
    return nullptr;
  }
  if (std::string why = OthersCanChange(opened); !why.empty()) {
    *error = "lease store " + path + " " + why + "; another user could rewrite it";
    sqlite3_close_v2(db);
    return nullptr;
  }
  // SQLite created it 0644 (the daemon's umask is 0); its journals copy the file's mode.
  if ((opened.st_mode & 077) != 0) chmod(path.c_str(), 0600);
  return std::make_unique<LocalStore>(db, path, opened, clock);
}

namespace {

// Runs `sql` until it is not answered SQLITE_BUSY (mounts starting together race to create the
// store, and SQLite answers some of those races without calling the busy handler); the result
// code, the message in *message.
int ExecRetryingBusy(sqlite3* db, const char* sql, std::string* message,
                     int (*row)(void*, int, char**, char**) = nullptr, void* context = nullptr) {
  for (int attempt = 0;; attempt++) {
    char* text = nullptr;
    int rc = sqlite3_exec(db, sql, row, context, &text);
    *message = text ? text : (rc == SQLITE_OK ? "" : sqlite3_errstr(rc));
    sqlite3_free(text);
    if ((rc & 0xff) != SQLITE_BUSY || attempt >= 100) return rc;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

int FirstColumn(void* out, int columns, char** values, char**) {
  if (columns > 0 && values[0]) *static_cast<std::string*>(out) = values[0];
  return 0;
}

// Opens and sets the store up; SQLITE_CORRUPT / SQLITE_NOTADB (or a failed quick_check) come back
// as `corrupt`, for the caller to move the file aside.
sqlite3* OpenOnce(const std::string& path, std::string* error, bool* corrupt) {
  *corrupt = false;
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(
      path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  auto fail = [&](int code, const std::string& what) -> sqlite3* {
    *error = "cannot open lease store " + path + ": " + what;
    *corrupt = (code & 0xff) == SQLITE_CORRUPT || (code & 0xff) == SQLITE_NOTADB;
    sqlite3_close_v2(db);
    return nullptr;
  };
  if (rc != SQLITE_OK) return fail(rc, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
  sqlite3_busy_timeout(db, 5000);
  std::string message, mode;
  rc = ExecRetryingBusy(db, "PRAGMA journal_mode=TRUNCATE", &message, FirstColumn, &mode);
  if (rc != SQLITE_OK) return fail(rc, message);
  if (mode != "truncate") {
    // A store in WAL mode (earlier versions) leaves it only once no other process has it open.
    spdlog::warn(
        "lease store {} stays in {} mode while older mounts use it; remount them all to "
        "leave it",
        path, mode);
  }
  rc = ExecRetryingBusy(db,
                        "PRAGMA synchronous=OFF;"
                        "CREATE TABLE IF NOT EXISTS records("
                        "  key TEXT PRIMARY KEY, revision INTEGER NOT NULL, body TEXT NOT NULL) "
                        "WITHOUT ROWID;",
                        &message);
  if (rc != SQLITE_OK) return fail(rc, message);
  std::string check;
  rc = ExecRetryingBusy(db, "PRAGMA quick_check", &message, FirstColumn, &check);
  if (rc != SQLITE_OK) return fail(rc, message);
  if (check != "ok") return fail(SQLITE_CORRUPT, "quick_check: " + check);
  return db;
}

sqlite3* OpenConnection(const std::string& path, std::string* error) {
  bool corrupt = false;
  if (sqlite3* db = OpenOnce(path, error, &corrupt)) return db;
  if (!corrupt) return nullptr;
  const std::string aside = path + ".corrupt-" + std::to_string(std::time(nullptr));
  if (std::rename(path.c_str(), aside.c_str()) != 0) return nullptr;
  std::remove((path + "-journal").c_str());  // it belonged to the corrupt file
  spdlog::error(
      "{}; moved it to {} and started an empty store (a power loss with mounts running "
      "can do this; their sessions ended with that boot)",
      *error, aside);
  return OpenOnce(path, error, &corrupt);
}

}  // namespace

}  // namespace leasefs::lock
