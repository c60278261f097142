// local_store.cc — LeaseStore on SQLite. One table:
//
//   records(key TEXT PRIMARY KEY, revision INTEGER NOT NULL, body TEXT NOT NULL)
//
// A write is BEGIN IMMEDIATE (takes SQLite's write lock, so no other process can interleave),
// read the revision, compare, write revision + 1, COMMIT. SQLite's busy handler waits for other
// processes' transactions, but never past the caller's deadline: a write that could not start
// or commit in time was not applied (kUnavailable) — SQLite's COMMIT is atomic, so a local store
// never answers kAmbiguous.
#include "leasefs/lock/local_store.h"

#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
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

class LocalStore final : public LeaseStore {
 public:
  LocalStore(sqlite3* db, std::string path, const Clock& clock)
      : db_(db), path_(std::move(path)), clock_(clock) {}
  ~LocalStore() override { sqlite3_close_v2(db_); }

  StoreResult get(const std::string& key, TimePoint deadline) override {
    std::lock_guard<std::mutex> guard(mutex_);
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

  std::mutex mutex_;  // one connection, used by one thread at a time
  sqlite3* db_;
  std::string path_;
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

std::unique_ptr<LeaseStore> OpenLocalStore(const std::string& path, const Clock& clock,
                                           std::string* error) {
  std::error_code ec;
  auto dir = std::filesystem::path(path).parent_path();
  if (!dir.empty() && !std::filesystem::exists(dir, ec)) {
    std::filesystem::create_directories(dir, ec);
    if (ec) {
      *error = "cannot create lease store directory " + dir.string() + ": " + ec.message();
      return nullptr;
    }
    chmod(dir.c_str(), 0700);
  }
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(
      path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  auto fail = [&](const std::string& what) {
    *error = "cannot open lease store " + path + ": " + what;
    sqlite3_close_v2(db);
    return nullptr;
  };
  if (rc != SQLITE_OK) return fail(db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
  sqlite3_busy_timeout(db, 5000);
  const char* setup =
      "PRAGMA journal_mode=WAL;"
      "PRAGMA synchronous=NORMAL;"
      "CREATE TABLE IF NOT EXISTS records("
      "  key TEXT PRIMARY KEY, revision INTEGER NOT NULL, body TEXT NOT NULL) WITHOUT ROWID;";
  // Mounts starting together race to create the store and switch it to WAL; SQLite answers
  // some of those races SQLITE_BUSY without calling the busy handler, so try again for a while.
  for (int attempt = 0;; attempt++) {
    char* message = nullptr;
    rc = sqlite3_exec(db, setup, nullptr, nullptr, &message);
    if (rc == SQLITE_OK) break;
    std::string what = message ? message : "setup failed";
    sqlite3_free(message);
    if ((rc & 0xff) != SQLITE_BUSY || attempt >= 100) return fail(what);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return std::make_unique<LocalStore>(db, path, clock);
}

}  // namespace leasefs::lock
