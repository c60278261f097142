// lease_store_contract.h — the LeaseStore contract (lease_store.h) as a typed test suite, run
// against every backend: local_store_test.cc instantiates it for the SQLite store,
// dynamodb_store_test.cc for the DynamoDB store against dynalite.
//
// A Backend type provides:
//   static void SetUpTestSuite(); static void TearDownTestSuite();   // shared servers
//   void SetUp();        // per test; may GTEST_SKIP() or fail (then no store is opened)
//   std::unique_ptr<LeaseStore> Open();  // a new connection to the test's store, as another
//                                        // mount (local) or another host (dynamodb) would open it
//   const Clock& clock();
//   static constexpr int kIncrements;    // per writer in the linearizability test
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <barrier>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "leasefs/lock/lease_store.h"

namespace leasefs::lock {

template <typename Backend>
class LeaseStoreContract : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { Backend::SetUpTestSuite(); }
  static void TearDownTestSuite() { Backend::TearDownTestSuite(); }
  void SetUp() override {
    backend_.SetUp();
    if (IsSkipped() || HasFailure()) return;
    store_ = backend_.Open();
    ASSERT_NE(store_, nullptr);
  }
  void TearDown() override { store_.reset(); }

  std::unique_ptr<LeaseStore> Open() { return backend_.Open(); }
  TimePoint Soon() { return backend_.clock().now() + std::chrono::seconds(10); }

  Backend backend_;
  std::unique_ptr<LeaseStore> store_;
};

TYPED_TEST_SUITE_P(LeaseStoreContract);

TYPED_TEST_P(LeaseStoreContract, MissingRecordHasRevisionZero) {
  StoreResult r = this->store_->get("db/a", this->Soon());
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.record.revision, 0u);
  EXPECT_EQ(r.record.key, "db/a");
}

TYPED_TEST_P(LeaseStoreContract, CompareAndSetSequence) {
  auto& store = this->store_;
  StoreResult r = store->put("k", 0, "{\"v\":1}", this->Soon());
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.record.revision, 1u);

  r = store->put("k", 0, "{\"v\":\"again\"}", this->Soon());  // must not exist: it does
  EXPECT_EQ(r.outcome, StoreOutcome::kConflict) << r.error;
  EXPECT_EQ(r.record.revision, 1u);
  EXPECT_EQ(r.record.body, "{\"v\":1}");

  r = store->put("k", 1, "{\"v\":2}", this->Soon());
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.record.revision, 2u);

  r = store->put("k", 1, "{\"v\":\"stale\"}", this->Soon());
  EXPECT_EQ(r.outcome, StoreOutcome::kConflict) << r.error;
  EXPECT_EQ(r.record.body, "{\"v\":2}");

  r = store->get("k", this->Soon());
  EXPECT_EQ(r.record.revision, 2u);
  EXPECT_EQ(r.record.body, "{\"v\":2}");
}

TYPED_TEST_P(LeaseStoreContract, RemoveIsConditional) {
  auto& store = this->store_;
  ASSERT_TRUE(store->put("k", 0, "{}", this->Soon()).ok());
  EXPECT_EQ(store->remove("k", 5, this->Soon()).outcome, StoreOutcome::kConflict);
  EXPECT_TRUE(store->remove("k", 1, this->Soon()).ok());
  EXPECT_EQ(store->get("k", this->Soon()).record.revision, 0u);
  EXPECT_TRUE(store->remove("k", 0, this->Soon()).ok());  // already gone, as expected
  // A record re-created after deletion starts again at revision 1.
  EXPECT_EQ(store->put("k", 0, "{}", this->Soon()).record.revision, 1u);
}

TYPED_TEST_P(LeaseStoreContract, ConflictsCarryTheCurrentRecord) {
  auto& store = this->store_;
  ASSERT_TRUE(store->put("k", 0, "{\"v\":1}", this->Soon()).ok());
  StoreResult r = store->remove("k", 0, this->Soon());  // expects it missing: it is not
  EXPECT_EQ(r.outcome, StoreOutcome::kConflict);
  EXPECT_EQ(r.record.revision, 1u);
  EXPECT_EQ(r.record.body, "{\"v\":1}");
  r = store->remove("k", 7, this->Soon());
  EXPECT_EQ(r.outcome, StoreOutcome::kConflict);
  EXPECT_EQ(r.record.revision, 1u);
  // A missing record conflicts with any expected revision but 0, reported as revision 0.
  r = store->put("missing", 3, "{}", this->Soon());
  EXPECT_EQ(r.outcome, StoreOutcome::kConflict);
  EXPECT_EQ(r.record.revision, 0u);
  r = store->remove("missing", 3, this->Soon());
  EXPECT_EQ(r.outcome, StoreOutcome::kConflict);
  EXPECT_EQ(r.record.revision, 0u);
  EXPECT_EQ(store->get("missing", this->Soon()).record.revision, 0u);
}

TYPED_TEST_P(LeaseStoreContract, ListByPrefix) {
  for (const char* key : {"session/a", "session/b", "db/x", "sessionless"}) {
    ASSERT_TRUE(this->store_->put(key, 0, "{}", this->Soon()).ok());
  }
  std::vector<Record> records;
  ASSERT_TRUE(this->store_->list("session/", &records, this->Soon()).ok());
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[0].key, "session/a");
  EXPECT_EQ(records[1].key, "session/b");
  EXPECT_EQ(records[0].revision, 1u);
  EXPECT_EQ(records[0].body, "{}");
  ASSERT_TRUE(this->store_->list("", &records, this->Soon()).ok());
  EXPECT_EQ(records.size(), 4u);
}

TYPED_TEST_P(LeaseStoreContract, ConcurrentConnectionsAreLinearizable) {
  // Four connections (as four mounts or hosts) increment one counter by compare-and-set; every
  // successful write must be counted exactly once.
  constexpr int kWriters = 4, kIncrements = TypeParam::kIncrements;
  std::atomic<int> successes{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; w++) {
    threads.emplace_back([&] {
      auto store = this->Open();
      ASSERT_NE(store, nullptr);
      for (int i = 0; i < kIncrements;) {
        StoreResult current = store->get("counter", this->Soon());
        ASSERT_TRUE(current.ok()) << current.error;
        int value = current.record.revision ? std::stoi(current.record.body) : 0;
        StoreResult r =
            store->put("counter", current.record.revision, std::to_string(value + 1), this->Soon());
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
  StoreResult final_record = this->store_->get("counter", this->Soon());
  EXPECT_EQ(successes.load(), kWriters * kIncrements);
  EXPECT_EQ(final_record.record.body, std::to_string(kWriters * kIncrements));
  EXPECT_EQ(final_record.record.revision, static_cast<uint64_t>(kWriters * kIncrements));
}

TYPED_TEST_P(LeaseStoreContract, OneWinnerPerRevision) {
  // Several connections race compare-and-set on one key from the same revision, round after
  // round: exactly one wins each round, and every loser's conflict shows the winner's record.
  constexpr int kRacers = 6, kRounds = 12;
  std::vector<std::unique_ptr<LeaseStore>> stores;
  for (int i = 0; i < kRacers; i++) {
    stores.push_back(this->Open());
    ASSERT_NE(stores.back(), nullptr);
  }
  std::barrier start(kRacers);
  std::vector<std::vector<StoreResult>> results(kRacers, std::vector<StoreResult>(kRounds));
  std::vector<std::thread> threads;
  for (int i = 0; i < kRacers; i++) {
    threads.emplace_back([&, i] {
      for (int round = 0; round < kRounds; round++) {
        start.arrive_and_wait();
        results[i][round] = stores[i]->put(
            "race", round, "racer " + std::to_string(i) + " round " + std::to_string(round),
            this->Soon());
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int round = 0; round < kRounds; round++) {
    int winners = 0;
    std::string winning_body;
    for (int i = 0; i < kRacers; i++) {
      const StoreResult& r = results[i][round];
      if (r.ok()) {
        winners++;
        winning_body = r.record.body;
        EXPECT_EQ(r.record.revision, static_cast<uint64_t>(round + 1));
      } else {
        EXPECT_EQ(r.outcome, StoreOutcome::kConflict) << "round " << round << ": " << r.error;
      }
    }
    EXPECT_EQ(winners, 1) << "round " << round;
    for (int i = 0; i < kRacers; i++) {
      const StoreResult& r = results[i][round];
      if (r.outcome != StoreOutcome::kConflict) continue;
      EXPECT_EQ(r.record.revision, static_cast<uint64_t>(round + 1)) << "round " << round;
      EXPECT_EQ(r.record.body, winning_body) << "round " << round;
    }
  }
  EXPECT_EQ(this->store_->get("race", this->Soon()).record.revision,
            static_cast<uint64_t>(kRounds));
}

REGISTER_TYPED_TEST_SUITE_P(LeaseStoreContract, MissingRecordHasRevisionZero, CompareAndSetSequence,
                            RemoveIsConditional, ConflictsCarryTheCurrentRecord, ListByPrefix,
                            ConcurrentConnectionsAreLinearizable, OneWinnerPerRevision);

}  // namespace leasefs::lock
