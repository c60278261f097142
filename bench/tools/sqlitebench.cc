/*
 * leasefs-sqlitebench: single-connection SQLite transaction throughput.
 *
 * Setup (not timed): delete DB and its -journal/-wal/-shm files, create table
 * kv(k INTEGER PRIMARY KEY, v INTEGER, pad BLOB) with ROWS rows of 100-byte payload, in the journal
 * mode of the workload, with synchronous=FULL (SQLite's default, set explicitly and checked).
 *
 * Timed loop, until SECONDS have passed or MAX_TX transactions are done:
 *
 *   delete  rollback-journal mode (journal_mode=DELETE). Each transaction is
 *           BEGIN IMMEDIATE; upsert one row (k random in [0, 2*ROWS): about half insert, half
 *           update); COMMIT. Every commit creates, fsyncs and deletes the -journal file, fsyncs
 *           the database and takes/releases the fcntl locks of SQLite's lock protocol.
 *   wal     the same transactions in journal_mode=WAL: every commit appends to and fsyncs the
 *           -wal file; automatic checkpoints (every 1000 pages) are part of the measurement.
 *   read    rollback-journal mode, read only: each transaction is one autocommit
 *           SELECT v FROM kv WHERE k=? (k random in [0, ROWS)), i.e. its own read transaction:
 *           SHARED lock, hot-journal check, header read to validate the page cache, unlock.
 *
 * One JSON object on stdout: {"mode", "tx", "seconds", "tx_per_s", ...}. Errors go to stderr and
 * the exit status is 1. The connection stays open for the whole run (as a server's would).
 *
 * Usage: leasefs-sqlitebench --db PATH --mode delete|wal|read [--seconds S] [--max-tx N]
 *                            [--rows N] [--keep]
 */
#include <sqlite3.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>

namespace {

struct Options {
  std::string db;
  std::string mode;
  double seconds = 5.0;
  std::uint64_t max_tx = 0;  // 0: no limit
  std::int64_t rows = 1000;
  bool keep = false;
};

void Usage() {
  std::fprintf(stderr,
               "usage: leasefs-sqlitebench --db PATH --mode delete|wal|read [--seconds S] "
               "[--max-tx N] [--rows N] [--keep]\n");
}

Options ParseArgs(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "-h" || a == "--help") {
      Usage();
      std::exit(0);
    }
    if (a == "--keep") {
      o.keep = true;
      continue;
    }
    if (i + 1 >= argc) throw std::runtime_error("missing value for " + std::string(a));
    const char* v = argv[++i];
    char* end = nullptr;
    errno = 0;
    if (a == "--db") {
      o.db = v;
    } else if (a == "--mode") {
      o.mode = v;
    } else if (a == "--seconds") {
      o.seconds = std::strtod(v, &end);
    } else if (a == "--max-tx") {
      o.max_tx = std::strtoull(v, &end, 10);
    } else if (a == "--rows") {
      o.rows = std::strtoll(v, &end, 10);
    } else {
      throw std::runtime_error("unknown option " + std::string(a));
    }
    if (end != nullptr && (errno != 0 || end == v || *end != '\0')) {
      throw std::runtime_error("bad value for " + std::string(a) + ": " + v);
    }
  }
  if (o.db.empty()) throw std::runtime_error("--db is required");
  if (o.mode != "delete" && o.mode != "wal" && o.mode != "read") {
    throw std::runtime_error("--mode must be delete, wal or read");
  }
  if (o.seconds <= 0 && o.max_tx == 0) throw std::runtime_error("need --seconds or --max-tx");
  if (o.rows < 1) throw std::runtime_error("--rows must be at least 1");
  return o;
}

// Owns one connection; every failure becomes an exception carrying SQLite's message.
class Db {
 public:
  explicit Db(const std::string& path) {
    int rc =
        sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
    if (rc != SQLITE_OK) {
      std::string msg = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
      sqlite3_close(db_);
      throw std::runtime_error("open " + path + ": " + msg);
    }
    sqlite3_busy_timeout(db_, 5000);
  }
  ~Db() { sqlite3_close(db_); }
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  void Exec(const char* sql) {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
      std::string msg = err ? err : sqlite3_errmsg(db_);
      sqlite3_free(err);
      throw std::runtime_error(std::string(sql) + ": " + msg);
    }
  }

  // Runs a statement returning one text column and returns its first row.
  std::string QueryText(const char* sql) {
    sqlite3_stmt* s = Prepare(sql);
    std::string out;
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
      const unsigned char* t = sqlite3_column_text(s, 0);
      out = t ? reinterpret_cast<const char*>(t) : "";
    } else if (rc != SQLITE_DONE) {
      sqlite3_finalize(s);
      Throw(sql);
    }
    sqlite3_finalize(s);
    return out;
  }

  sqlite3_stmt* Prepare(const char* sql) {
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(db_, sql, -1, &s, nullptr) != SQLITE_OK) Throw(sql);
    return s;
  }

  // Steps s to completion and resets it.
  void StepDone(sqlite3_stmt* s) {
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    }
    if (rc != SQLITE_DONE) {
      std::string sql = sqlite3_sql(s);
      sqlite3_reset(s);
      Throw(sql.c_str());
    }
    sqlite3_reset(s);
  }

  [[noreturn]] void Throw(const char* what) {
    throw std::runtime_error(std::string(what) + ": " + sqlite3_errmsg(db_));
  }

 private:
  sqlite3* db_ = nullptr;
};

// Finalizes a prepared statement on scope exit.
struct Stmt {
  sqlite3_stmt* s;
  explicit Stmt(sqlite3_stmt* st) : s(st) {}
  ~Stmt() { sqlite3_finalize(s); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
};

void RemoveDbFiles(const std::string& db) {
  for (const char* suffix : {"", "-journal", "-wal", "-shm"}) {
    std::string p = db + suffix;
    if (::unlink(p.c_str()) != 0 && errno != ENOENT) {
      throw std::runtime_error("unlink " + p + ": " + std::strerror(errno));
    }
  }
}

int Run(const Options& o) {
  RemoveDbFiles(o.db);
  const char* want_journal = o.mode == "wal" ? "wal" : "delete";
  std::uint64_t tx = 0;
  double elapsed = 0;
  {
    Db db(o.db);
    std::string jm =
        db.QueryText(o.mode == "wal" ? "PRAGMA journal_mode=WAL" : "PRAGMA journal_mode=DELETE");
    if (jm != want_journal) {
      throw std::runtime_error("journal_mode is " + jm + ", wanted " + want_journal);
    }
    db.Exec("PRAGMA synchronous=FULL");
    if (db.QueryText("PRAGMA synchronous") != "2") {
      throw std::runtime_error("synchronous is not FULL");
    }
    db.Exec("CREATE TABLE kv(k INTEGER PRIMARY KEY, v INTEGER NOT NULL, pad BLOB NOT NULL)");
    db.Exec("BEGIN");
    {
      Stmt ins(db.Prepare("INSERT INTO kv(k, v, pad) VALUES(?1, 0, randomblob(100))"));
      for (std::int64_t k = 0; k < o.rows; ++k) {
        sqlite3_bind_int64(ins.s, 1, k);
        db.StepDone(ins.s);
      }
    }
    db.Exec("COMMIT");

    std::mt19937_64 rng(42);
    const bool write = o.mode != "read";
    std::uniform_int_distribution<std::int64_t> key(0, write ? 2 * o.rows - 1 : o.rows - 1);
    Stmt begin(db.Prepare("BEGIN IMMEDIATE"));
    Stmt commit(db.Prepare("COMMIT"));
    Stmt upsert(
        db.Prepare("INSERT INTO kv(k, v, pad) VALUES(?1, 1, randomblob(100)) "
                   "ON CONFLICT(k) DO UPDATE SET v = v + 1, pad = excluded.pad"));
    Stmt select(db.Prepare("SELECT v FROM kv WHERE k = ?1"));

    auto start = std::chrono::steady_clock::now();
    for (;;) {
      if (write) {
        db.StepDone(begin.s);
        sqlite3_bind_int64(upsert.s, 1, key(rng));
        db.StepDone(upsert.s);
        db.StepDone(commit.s);
      } else {
        sqlite3_bind_int64(select.s, 1, key(rng));
        if (sqlite3_step(select.s) != SQLITE_ROW) db.Throw("SELECT v FROM kv WHERE k = ?1");
        db.StepDone(select.s);  // finishes the statement: the read transaction ends here
      }
      ++tx;
      std::chrono::duration<double> d = std::chrono::steady_clock::now() - start;
      elapsed = d.count();
      if (o.max_tx != 0 && tx >= o.max_tx) break;
      if (o.seconds > 0 && elapsed >= o.seconds) break;
    }
    if (write) {
      std::string ok = db.QueryText("PRAGMA quick_check");
      if (ok != "ok") throw std::runtime_error("quick_check: " + ok);
    }
  }
  if (!o.keep) RemoveDbFiles(o.db);

  std::printf(
      "{\"mode\": \"%s\", \"journal_mode\": \"%s\", \"synchronous\": \"full\", \"rows\": %lld, "
      "\"tx\": %llu, \"seconds\": %.6f, \"tx_per_s\": %.1f}\n",
      o.mode.c_str(), want_journal, static_cast<long long>(o.rows),
      static_cast<unsigned long long>(tx), elapsed,
      elapsed > 0 ? static_cast<double>(tx) / elapsed : 0.0);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return Run(ParseArgs(argc, argv));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "leasefs-sqlitebench: %s\n", e.what());
    return 1;
  }
}
