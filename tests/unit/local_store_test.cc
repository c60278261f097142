// Unit tests for the local (SQLite) lease store: compare-and-set semantics per outcome, and
// linearizability between separate connections (as separate mounts on one machine use it).
#include "leasefs/lock/local_store.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "mount_harness.h"

namespace leasefs::lock {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

class LocalStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = temp_.path();
    path_ = dir_ + "/sub/leases.db";  // the directory is created by OpenLocalStore
    store_ = Open();
    ASSERT_NE(store_, nullptr);
  }
  void TearDown() override { store_.reset(); }
  std::unique_ptr<LeaseStore> Open() {
    std::string error;
    auto store = OpenLocalStore(path_, clock_, &error);
    EXPECT_NE(store, nullptr) << error;
    return store;
  }
  TimePoint Soon() { return clock_.now() + seconds(10); }

  SteadyClock clock_;
  leasefs::testing::TempDir temp_;  // first: removed last, after everything using it
  std::string dir_, path_;
  std::unique_ptr<LeaseStore> store_;
};

TEST_F(LocalStoreTest, MissingRecordHasRevisionZero) {
  StoreResult r = store_->get("db/a", Soon());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.record.revision, 0u);
  EXPECT_EQ(r.record.key, "db/a");
}

TEST_F(LocalStoreTest, CompareAndSetSequence) {
  StoreResult r = store_->put("k", 0, "{\"v\":1}", Soon());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.record.revision, 1u);

  r = store_->put("k", 0, "{\"v\":\"again\"}", Soon());  // must not exist: it does
  EXPECT_EQ(r.outcome, StoreOutcome::kConflict);
  EXPECT_EQ(r.record.revision, 1u);
  EXPECT_EQ(r.record.body, "{\"v\":1}");

  r = store_->put("k", 1, "{\"v\":2}", Soon());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.record.revision, 2u);

  r = store_->put("k", 1, "{\"v\":\"stale\"}", Soon());
  EXPECT_EQ(r.outcome, StoreOutcome::kConflict);
  EXPECT_EQ(r.record.body, "{\"v\":2}");

  r = store_->get("k", Soon());
  EXPECT_EQ(r.record.revision, 2u);
  EXPECT_EQ(r.record.body, "{\"v\":2}");
}

TEST_F(LocalStoreTest, RemoveIsConditional) {
  ASSERT_TRUE(store_->put("k", 0, "{}", Soon()).ok());
  EXPECT_EQ(store_->remove("k", 5, Soon()).outcome, StoreOutcome::kConflict);
  EXPECT_TRUE(store_->remove("k", 1, Soon()).ok());
  EXPECT_EQ(store_->get("k", Soon()).record.revision, 0u);
  EXPECT_TRUE(store_->remove("k", 0, Soon()).ok());  // already gone, as expected
  // A record re-created after deletion starts again at revision 1.
  EXPECT_EQ(store_->put("k", 0, "{}", Soon()).record.revision, 1u);
}

TEST_F(LocalStoreTest, ListByPrefix) {
  for (const char* key : {"session/a", "session/b", "db/x", "sessionless"}) {
    ASSERT_TRUE(store_->put(key, 0, "{}", Soon()).ok());
  }
  std::vector<Record> records;
  ASSERT_TRUE(store_->list("session/", &records, Soon()).ok());
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[0].key, "session/a");
  EXPECT_EQ(records[1].key, "session/b");
}

TEST_F(LocalStoreTest, ConcurrentConnectionsAreLinearizable) {
  // Four connections (as four mounts) increment one counter by compare-and-set; every
  // successful write must be counted exactly once.
  constexpr int kWriters = 4, kIncrements = 150;
  std::atomic<int> successes{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; w++) {
    threads.emplace_back([&] {
      auto store = Open();
      for (int i = 0; i < kIncrements;) {
        StoreResult current = store->get("counter", Soon());
        ASSERT_TRUE(current.ok()) << current.error;
        int value = current.record.revision ? std::stoi(current.record.body) : 0;
        StoreResult r =
            store->put("counter", current.record.revision, std::to_string(value + 1), Soon());
        if (r.ok()) {
          successes++;
          i++;
        } else {
          ASSERT_EQ(r.outcome, StoreOutcome::kConflict) << r.error;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  StoreResult final_record = store_->get("counter", Soon());
  EXPECT_EQ(successes.load(), kWriters * kIncrements);
  EXPECT_EQ(final_record.record.body, std::to_string(kWriters * kIncrements));
  EXPECT_EQ(final_record.record.revision, static_cast<uint64_t>(kWriters * kIncrements));
}

TEST_F(LocalStoreTest, BusyStoreAnswersUnavailableByTheDeadline) {
  ASSERT_TRUE(store_->put("k", 0, "{}", Soon()).ok());
  sqlite3* other = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &other), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(other, "BEGIN EXCLUSIVE", nullptr, nullptr, nullptr), SQLITE_OK);
  auto start = clock_.now();
  StoreResult r = store_->put("k", 1, "{\"late\":1}", clock_.now() + milliseconds(200));
  auto waited = clock_.now() - start;
  EXPECT_EQ(r.outcome, StoreOutcome::kUnavailable);
  EXPECT_FALSE(r.error.empty());
  EXPECT_LT(waited, seconds(3));
  sqlite3_exec(other, "ROLLBACK", nullptr, nullptr, nullptr);
  sqlite3_close(other);
  // Nothing was written, and the store works again.
  EXPECT_EQ(store_->get("k", Soon()).record.revision, 1u);
  EXPECT_TRUE(store_->put("k", 1, "{\"now\":1}", Soon()).ok());
}

TEST(LocalStorePath, UnusablePathIsOneClearError) {
  SteadyClock clock;
  std::string error;
  EXPECT_EQ(OpenLocalStore("/proc/leasefs/leases.db", clock, &error), nullptr);
  EXPECT_NE(error.find("/proc/leasefs"), std::string::npos) << error;
}

}  // namespace
}  // namespace leasefs::lock
