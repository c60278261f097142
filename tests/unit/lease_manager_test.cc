// Unit tests for the lease protocol (lease_manager.h): several sessions on one real local store,
// time driven by a ManualClock (nothing sleeps), faults injected by a wrapper store that can be
// down or answer "ambiguous" after applying a write — failures the real store cannot produce on
// demand.
#include "leasefs/lock/lease_manager.h"

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "leasefs/lock/local_store.h"
#include "mount_harness.h"

namespace leasefs::lock {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

class FaultyStore final : public LeaseStore {
 public:
  // kAmbiguousThenDown: the next write lands but is answered "ambiguous", and the store is down
  // from then on (the settling read fails too).
  // kLostThenDown: the next write does not land, is answered "ambiguous", and the store is down
  // from then on.
  enum class Fault { kNone, kDown, kAmbiguousAfterApply, kAmbiguousThenDown, kLostThenDown };
  explicit FaultyStore(LeaseStore& inner) : inner_(inner) {}
  void set_fault(Fault fault) { fault_ = fault; }
  uint64_t requests() const { return requests_; }

  StoreResult get(const std::string& key, TimePoint deadline) override {
    requests_++;
    if (fault_ == Fault::kDown) return Down();
    return inner_.get(key, deadline);
  }
  StoreResult put(const std::string& key, uint64_t revision, const std::string& body,
                  TimePoint deadline) override {
    requests_++;
    if (fault_ == Fault::kDown) return Down();
    if (fault_ == Fault::kLostThenDown) {
      fault_ = Fault::kDown;
      StoreResult r;
      r.outcome = StoreOutcome::kAmbiguous;
      r.error = "injected: connection reset after sending";
      return r;
    }
    StoreResult r = inner_.put(key, revision, body, deadline);
    if ((fault_ == Fault::kAmbiguousAfterApply || fault_ == Fault::kAmbiguousThenDown) && r.ok()) {
      if (fault_ == Fault::kAmbiguousThenDown) fault_ = Fault::kDown;
      r.outcome = StoreOutcome::kAmbiguous;
      r.error = "injected: timed out after sending";
    }
    return r;
  }
  StoreResult remove(const std::string& key, uint64_t revision, TimePoint deadline) override {
    requests_++;
    if (fault_ == Fault::kDown) return Down();
    return inner_.remove(key, revision, deadline);
  }
  StoreResult list(const std::string& prefix, std::vector<Record>* out,
                   TimePoint deadline) override {
    return inner_.list(prefix, out, deadline);
  }
  std::string describe() const override { return "faulty:" + inner_.describe(); }

 private:
  static StoreResult Down() {
    StoreResult r;
    r.outcome = StoreOutcome::kUnavailable;
    r.error = "injected: store down";
    return r;
  }
  LeaseStore& inner_;
  std::atomic<Fault> fault_{Fault::kNone};
  std::atomic<uint64_t> requests_{0};
};

class RecordingListener final : public LeaseListener {
 public:
  void flush(const std::string& db) override { flushes[db]++; }
  void invalidate(const std::string& db) override { invalidations[db]++; }
  void revalidate(const std::string& db) override { revalidations[db]++; }
  std::map<std::string, int> flushes, invalidations, revalidations;
};

RegionModes Use(std::initializer_list<std::pair<Region, Mode>> regions) {
  RegionModes modes{};
  for (auto [region, mode] : regions) modes[static_cast<size_t>(region)] = mode;
  return modes;
}

const RegionModes kNothing{};
const RegionModes kShared = Use({{Region::kShared, Mode::kRead}});
const RegionModes kReserved =
    Use({{Region::kShared, Mode::kRead}, {Region::kReserved, Mode::kWrite}});
// A writer at COMMIT, asking for PENDING on its way to EXCLUSIVE.
const RegionModes kCommitting = Use({{Region::kPending, Mode::kWrite},
                                     {Region::kReserved, Mode::kWrite},
                                     {Region::kShared, Mode::kRead}});
// A reader starting a transaction: PENDING on its way to SHARED.
const RegionModes kPendingRead = Use({{Region::kPending, Mode::kRead}});
const RegionModes kExclusive = Use({{Region::kPending, Mode::kWrite},
                                    {Region::kReserved, Mode::kWrite},
                                    {Region::kShared, Mode::kWrite}});

// One host: its fault-injectable view of the shared store, its listener, its lease manager.
struct Host {
  Host(LeaseStore& shared, const Clock& clock, const std::string& name, LeaseConfig config = {})
      : store(shared) {
    config.session_name = name;
    config.busy_retries = 0;  // answer kBusy at once: time here is the ManualClock's
    manager = std::make_unique<LeaseManager>(store, clock, config, listener);
    std::string error;
    EXPECT_TRUE(manager->start(&error)) << error;
  }
  FaultyStore store;
  RecordingListener listener;
  std::unique_ptr<LeaseManager> manager;
};

class LeaseManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = temp_.path();
    std::string error;
    store_ = OpenLocalStore(dir_ + "/leases.db", real_clock_, &error);
    ASSERT_NE(store_, nullptr) << error;
  }
  void TearDown() override {
    hosts_.clear();
    store_.reset();
  }
  // A writer's transaction ends (it wrote); 1 ms later its background step runs.
  void CommitAndYield(Host& writer) {
    writer.manager->mark_dirty("app.db");
    writer.manager->set_use("app.db", kNothing);
    clock_.advance(milliseconds(1));
    writer.manager->tick();
  }
  Host& AddHost(const std::string& name, LeaseConfig config = {}) {
    hosts_.push_back(std::make_unique<Host>(*store_, clock_, name, config));
    return *hosts_.back();
  }
  Mode ClaimInStore(Host& host, Region region) {
    return host.manager->held("app.db")[static_cast<size_t>(region)];
  }

  SteadyClock real_clock_;  // only for the local store's own busy timeouts
  ManualClock clock_;
  leasefs::testing::TempDir temp_;  // first: removed last, after everything using it
  std::string dir_;
  std::unique_ptr<LeaseStore> store_;
  std::vector<std::unique_ptr<Host>> hosts_;
};

TEST_F(LeaseManagerTest, DeadlineFollowsTheRenewalSendTime) {
  LeaseConfig config;
  config.lease = seconds(10);
  config.drift = 0.01;
  config.margin = milliseconds(500);
  TimePoint started = clock_.now();
  Host& a = AddHost("a", config);
  // L(1-2ρ) - margin = 10 s * 0.98 - 0.5 s = 9.3 s after the send.
  EXPECT_EQ(a.manager->deadline(), started + milliseconds(9300));
  clock_.advance(milliseconds(2500));  // L/4: renewal due
  a.manager->tick();
  EXPECT_EQ(a.manager->deadline(), started + milliseconds(2500 + 9300));
  EXPECT_EQ(a.manager->stats().renewals, 1u);
}

TEST_F(LeaseManagerTest, LoneHostCostsNothingPerTransaction) {
  LeaseConfig config;
  config.lease = seconds(10);  // renewal and demand check every 2.5 s
  Host& a = AddHost("a", config);
  ASSERT_EQ(a.manager->acquire("app.db", kExclusive), ClaimResult::kGranted);
  a.manager->set_use("app.db", kNothing);
  // The same 10 seconds, once with 100 transactions and once with 10,000: the store sees the
  // same heartbeat traffic (a renewal and a demand check per L/4), nothing per transaction.
  auto requests_for = [&](int transactions) {
    uint64_t before = a.store.requests();
    const auto step = std::chrono::duration_cast<Duration>(seconds(10)) / transactions;
    for (int tx = 0; tx < transactions; tx++) {  // SHARED, RESERVED, EXCLUSIVE, unlock: cached
      EXPECT_EQ(a.manager->acquire("app.db", kShared), ClaimResult::kGranted);
      EXPECT_EQ(a.manager->acquire("app.db", kReserved), ClaimResult::kGranted);
      EXPECT_EQ(a.manager->acquire("app.db", kExclusive), ClaimResult::kGranted);
      a.manager->mark_dirty("app.db");
      a.manager->set_use("app.db", kNothing);
      clock_.advance(step);
      a.manager->tick();
    }
    return a.store.requests() - before;
  };
  uint64_t slow = requests_for(100);
  uint64_t fast = requests_for(10000);
  EXPECT_EQ(slow, fast);
  EXPECT_LE(fast, 10u);  // 4 renewals + 4 demand checks in 10 s
  EXPECT_TRUE(a.manager->may_write("app.db"));
}

TEST_F(LeaseManagerTest, ConflictRecordsDemandAndTheIdleHolderYields) {
  LeaseConfig config;
  config.idle_release = seconds(1);
  Host& a = AddHost("a", config);
  Host& b = AddHost("b", config);
  ASSERT_EQ(a.manager->acquire("app.db", kExclusive), ClaimResult::kGranted);
  a.manager->mark_dirty("app.db");
  // B's reader conflicts with A's W on SHARED while A's process holds it.
  EXPECT_EQ(b.manager->acquire("app.db", kShared), ClaimResult::kBusy);
  a.manager->tick();  // in use: A must not give anything up
  EXPECT_EQ(ClaimInStore(a, Region::kShared), Mode::kWrite);

  // Round 1: A has never seen another session on this database, so it is not polling; its
  // idle claims go after idle_release, which bounds B's wait.
  a.manager->set_use("app.db", kNothing);
  a.manager->tick();
  EXPECT_EQ(a.manager->held("app.db"), kExclusive);
  int invalidations_before = b.listener.invalidations["app.db"];
  clock_.advance(milliseconds(1100));
  a.manager->tick();
  b.manager->tick();  // B, waiting, finds the claim handed over (and drops its caches)
  EXPECT_EQ(a.manager->held("app.db"), kNothing);
  EXPECT_EQ(a.listener.flushes["app.db"], 1);  // durable before anyone else can read
  EXPECT_FALSE(a.manager->may_write("app.db"));
  ASSERT_EQ(b.manager->acquire("app.db", kShared), ClaimResult::kGranted);
  // A wrote: the version moved, so B drops its caches before its reader proceeds.
  EXPECT_EQ(b.listener.invalidations["app.db"], invalidations_before + 1);
  b.manager->set_use("app.db", kNothing);

  // Round 2: A now knows B is around. Its next grant records that, and once its transaction
  // ends it yields to B's demand at the very next tick (a handoff, not an idle release).
  ASSERT_EQ(a.manager->acquire("app.db", kExclusive), ClaimResult::kBusy);  // B's cached R
  b.manager->tick();                                                        // B yields it
  ASSERT_EQ(a.manager->acquire("app.db", kExclusive), ClaimResult::kGranted);
  a.manager->mark_dirty("app.db");
  EXPECT_EQ(b.manager->acquire("app.db", kShared), ClaimResult::kBusy);
  a.manager->set_use("app.db", kNothing);
  a.manager->tick();
  // Demand on any region makes A yield every idle claim on the database (B's SQLite will want
  // PENDING, SHARED and RESERVED in turn): one handoff per turn.
  EXPECT_EQ(a.manager->held("app.db"), kNothing);
  EXPECT_EQ(a.manager->stats().handoffs, 1u);
  EXPECT_EQ(a.listener.flushes["app.db"], 2);
  ASSERT_EQ(b.manager->acquire("app.db", kShared), ClaimResult::kGranted);
  EXPECT_EQ(b.listener.invalidations["app.db"], invalidations_before + 2);
}

TEST_F(LeaseManagerTest, HolderThatNeverGoesIdleStillHandsOver) {
  LeaseConfig config;
  config.demand_check_interval = milliseconds(250);  // (default: L/4)
  Host& a = AddHost("a", config);
  Host& b = AddHost("b", config);
  ASSERT_EQ(a.manager->acquire("app.db", kExclusive), ClaimResult::kGranted);  // nobody else yet
  a.manager->set_use("app.db", kNothing);
  // A runs back-to-back read transactions from its cache; B wants to write.
  int steps = 0;
  bool b_granted = false;
  for (; steps < 100 && !b_granted; steps++) {
    ASSERT_NE(a.manager->acquire("app.db", kShared), ClaimResult::kUnavailable);
    a.manager->set_use("app.db", kNothing);
    a.manager->tick();
    b_granted = b.manager->acquire("app.db", kExclusive) == ClaimResult::kGranted;
    if (b_granted) break;
    b.manager->tick();
    clock_.advance(milliseconds(10));
  }
  EXPECT_TRUE(b_granted) << "A never handed over";
  EXPECT_LE(steps * 10, 250 + 50) << "handover took longer than the demand check interval";
}

TEST_F(LeaseManagerTest, ReadersOnTwoHostsShareAndAWriterWaitsForBoth) {
  Host& a = AddHost("a");
  Host& b = AddHost("b");
  ASSERT_EQ(a.manager->acquire("app.db", kShared), ClaimResult::kGranted);
  ASSERT_EQ(b.manager->acquire("app.db", kShared), ClaimResult::kGranted);
  // RESERVED alongside readers is fine (SQLite's writer may prepare while others read).
  ASSERT_EQ(a.manager->acquire("app.db", kReserved), ClaimResult::kGranted);
  EXPECT_EQ(b.manager->acquire("app.db", kReserved), ClaimResult::kBusy);
  // EXCLUSIVE needs B's reader gone.
  EXPECT_EQ(a.manager->acquire("app.db", kExclusive), ClaimResult::kBusy);
  b.manager->set_use("app.db", kNothing);
  b.manager->tick();
  EXPECT_EQ(a.manager->acquire("app.db", kExclusive), ClaimResult::kGranted);
}

TEST_F(LeaseManagerTest, IdleClaimsAreReleasedWithoutDemand) {
  LeaseConfig config;
  config.idle_release = seconds(1);
  Host& a = AddHost("a", config);
  ASSERT_EQ(a.manager->acquire("app.db", kExclusive), ClaimResult::kGranted);
  a.manager->set_use("app.db", kNothing);
  clock_.advance(milliseconds(900));
  a.manager->tick();
  EXPECT_EQ(a.manager->held("app.db"), kExclusive);
  clock_.advance(milliseconds(200));
  a.manager->tick();
  EXPECT_EQ(a.manager->held("app.db"), kNothing);
  EXPECT_EQ(a.manager->stats().idle_releases, 1u);
}

TEST_F(LeaseManagerTest, FencedWhileTheStoreIsDownAndBackWhenItReturns) {
  LeaseConfig config;
  config.lease = seconds(10);
  Host& a = AddHost("a", config);
  ASSERT_EQ(a.manager->acquire("app.db", kExclusive), ClaimResult::kGranted);
  EXPECT_TRUE(a.manager->may_write("app.db"));
  a.store.set_fault(FaultyStore::Fault::kDown);
  // Renewals fail; until the deadline the host still owns its claims.
  for (int step = 0; step < 18; step++) {
    clock_.advance(milliseconds(500));
    a.manager->tick();
  }
  EXPECT_GT(a.manager->stats().renewal_failures, 0u);
  EXPECT_TRUE(a.manager->may_write("app.db"));
  clock_.advance(seconds(1));  // past L(1-2ρ) - margin since the last renewal
  EXPECT_TRUE(a.manager->fenced());
  EXPECT_FALSE(a.manager->may_write("app.db"));
  EXPECT_EQ(a.manager->acquire("app.db", kExclusive), ClaimResult::kFenced);
  // The store returns before anyone declared the session dead: everything works again.
  a.store.set_fault(FaultyStore::Fault::kNone);
  a.manager->tick();
  EXPECT_FALSE(a.manager->fenced());
  EXPECT_FALSE(a.manager->dead());
  EXPECT_TRUE(a.manager->may_write("app.db"));
}

TEST_F(LeaseManagerTest, DeadHostIsReapedOnlyAfterAFullLeaseOnTheWaitersClock) {
  LeaseConfig config;
  config.lease = seconds(10);
  Host& a = AddHost("a", config);
  Host& b = AddHost("b", config);
  ASSERT_EQ(a.manager->acquire("app.db", kExclusive), ClaimResult::kGranted);
  a.manager->mark_dirty("app.db");
  // A's daemon "dies": it never ticks again. B keeps retrying like SQLite's busy handler.
  EXPECT_EQ(b.manager->acquire("app.db", kExclusive), ClaimResult::kBusy);  // first observation
  clock_.advance(seconds(9));
  b.manager->tick();
  EXPECT_EQ(b.manager->acquire("app.db", kExclusive), ClaimResult::kBusy);
  EXPECT_FALSE(a.manager->fenced());
  // A's deadline (9.48 s after its last renewal was sent) passes before B may take over (10 s
  // after B first saw A's record): A stopped writing before anyone could start.
  clock_.advance(milliseconds(600));
  EXPECT_TRUE(a.manager->fenced());
  b.manager->tick();
  EXPECT_EQ(b.manager->acquire("app.db", kExclusive), ClaimResult::kBusy);
  clock_.advance(milliseconds(600));
  b.manager->tick();
  int invalidations_before = b.listener.invalidations["app.db"];
  ASSERT_EQ(b.manager->acquire("app.db", kExclusive), ClaimResult::kGranted);
  EXPECT_EQ(b.manager->stats().sessions_reaped, 1u);
  EXPECT_EQ(b.listener.invalidations["app.db"], invalidations_before + 1);
  // A comes back (e.g. un-paused): its renewal finds it was declared dead.
  a.manager->tick();
  EXPECT_TRUE(a.manager->dead());
  EXPECT_FALSE(a.manager->may_write("app.db"));
  EXPECT_EQ(a.manager->acquire("app.db", kShared), ClaimResult::kFenced);
}

// HOT JOURNALS: a writer that died mid-transaction marks the record, and every other host makes
// its storage view agree (once) before its next lock is granted; a clean transaction on a host
// that agreed clears the mark, one on a host that did not leaves it.
TEST_F(LeaseManagerTest, AbandonedTransactionMakesEveryHostRevalidateOnce) {
  Host& a = AddHost("a");
  Host& b = AddHost("b");
  Host& c = AddHost("c");
  ASSERT_EQ(a.manager->acquire("app.db", kExclusive), ClaimResult::kGranted);
  a.manager->mark_dirty("app.db");
  a.manager->relinquish("app.db", kNothing);  // the writer died holding EXCLUSIVE
  EXPECT_EQ(ClaimInStore(a, Region::kShared), Mode::kNone);
  EXPECT_EQ(a.listener.revalidations["app.db"], 0);

  ASSERT_EQ(b.manager->acquire("app.db", kShared), ClaimResult::kGranted);
  EXPECT_EQ(b.listener.revalidations["app.db"], 1);
  EXPECT_EQ(b.manager->stats().hot_journal_checks, 1u);
  b.manager->set_use("app.db", kNothing);
  clock_.advance(seconds(2));
  b.manager->tick();  // idle release of an R claim: clears nothing
  ASSERT_EQ(b.manager->acquire("app.db", kShared), ClaimResult::kGranted);
  EXPECT_EQ(b.listener.revalidations["app.db"], 1);  // once per mark
  b.manager->set_use("app.db", kNothing);
  clock_.advance(seconds(2));
  b.manager->tick();

  // C saw the mark too, but its clean write transaction (the rollback) ends it for everyone.
  ASSERT_EQ(c.manager->acquire("app.db", kExclusive), ClaimResult::kGranted);
  EXPECT_EQ(c.listener.revalidations["app.db"], 1);
  CommitAndYield(c);
  clock_.advance(seconds(2));
  c.manager->tick();
  ASSERT_EQ(a.manager->acquire("app.db", kShared), ClaimResult::kGranted);
  EXPECT_EQ(a.listener.revalidations["app.db"], 0);  // cleared: nothing to look for
}

// A storage client that cannot be made to look again: the host waits out its name cache
// (storage_cache_wait) before granting a lock after a writer died, answering busy meanwhile.
TEST_F(LeaseManagerTest, StorageCacheWaitHoldsLocksBackAfterAWriterDied) {
  LeaseConfig config;
  config.storage_cache_wait = seconds(30);
  Host& a = AddHost("a", config);
  Host& b = AddHost("b", config);
  ASSERT_EQ(a.manager->acquire("app.db", kExclusive), ClaimResult::kGranted);
  a.manager->relinquish("app.db", kNothing);
  EXPECT_EQ(b.manager->acquire("app.db", kShared), ClaimResult::kBusy);
  EXPECT_EQ(b.listener.revalidations["app.db"], 1);
  auto pass = [&](int how_many_seconds) {  // time passes; both sessions renew
    for (int i = 0; i < how_many_seconds; i++) {
      clock_.advance(seconds(1));
      a.manager->tick();
      b.manager->tick();
    }
  };
  pass(29);
  EXPECT_EQ(b.manager->acquire("app.db", kShared), ClaimResult::kBusy);
  pass(2);
  EXPECT_EQ(b.manager->acquire("app.db", kShared), ClaimResult::kGranted);
  EXPECT_EQ(b.listener.revalidations["app.db"], 1);
  b.manager->set_use("app.db", kNothing);
  EXPECT_EQ(b.manager->acquire("app.db", kShared), ClaimResult::kGranted);  // once per mark
}

TEST_F(LeaseManagerTest, EveryNewMarkIsCheckedEvenByTheHostThatSetIt) {
  Host& a = AddHost("a");
  Host& b = AddHost("b");
  ASSERT_EQ(a.manager->acquire("app.db", kExclusive), ClaimResult::kGranted);
  a.manager->relinquish("app.db", kNothing);
  // A writes again at once from the record it remembers, then dies mid-transaction again.
  ASSERT_EQ(a.manager->acquire("app.db", kExclusive), ClaimResult::kGranted);
  EXPECT_EQ(a.listener.revalidations["app.db"], 1);  // A must look too: its mark is new to it
  a.manager->relinquish("app.db", kNothing);
  ASSERT_EQ(b.manager->acquire("app.db", kShared), ClaimResult::kGranted);
  EXPECT_EQ(b.listener.revalidations["app.db"], 1);
}

// HOT JOURNALS, A FENCED WRITER: a write of a local writer was refused (the lease lapsed), so
// its transaction may end without its rollback. Its session survives and releases its claims as
// usual, yet every release of a W claim marks the record until the host holds no W claim.
TEST_F(LeaseManagerTest, FencedWritersReleasesMarkTheRecordHotUntilNoWriteClaimIsLeft) {
  Host& a = AddHost("a");
  Host& b = AddHost("b");
  ASSERT_EQ(a.manager->acquire("app.db", kExclusive), ClaimResult::kGranted);
  a.manager->mark_dirty("app.db");
  a.manager->abandon("app.db");  // a write refused while holding EXCLUSIVE: nothing released
  EXPECT_EQ(ClaimInStore(a, Region::kShared), Mode::kWrite);
  auto idle = [&](Host& host, const RegionModes& use) {  // local use drops; idle release
    host.manager->set_use("app.db", use);
    clock_.advance(seconds(2));
    a.manager->tick();
    b.manager->tick();
  };
  // SQLite steps down to RESERVED; B's demand takes W on SHARED, A keeps W on RESERVED: marked.
  idle(a, kReserved);
  EXPECT_EQ(b.manager->acquire("app.db", kShared), ClaimResult::kBusy);
  clock_.advance(seconds(1));
  a.manager->tick();
  EXPECT_EQ(ClaimInStore(a, Region::kReserved), Mode::kWrite);
  ASSERT_EQ(b.manager->acquire("app.db", kShared), ClaimResult::kGranted);
  EXPECT_EQ(b.listener.revalidations["app.db"], 1);
  idle(b, kNothing);
  idle(a, kNothing);  // the last W claim goes: marked again
  ASSERT_EQ(b.manager->acquire("app.db", kShared), ClaimResult::kGranted);
  EXPECT_EQ(b.listener.revalidations["app.db"], 2);
  idle(b, kNothing);
  // The mark is spent: A's next transaction is clean, and clears the record's mark.
  ASSERT_EQ(a.manager->acquire("app.db", kExclusive), ClaimResult::kGranted);
  CommitAndYield(a);
  idle(a, kNothing);
  ASSERT_EQ(b.manager->acquire("app.db", kShared), ClaimResult::kGranted);
  EXPECT_EQ(b.listener.revalidations["app.db"], 2);
}

TEST_F(LeaseManagerTest, ReapingADeadWritersClaimsMarksTheRecordHot) {
  LeaseConfig config;
  config.lease = seconds(10);
  Host& a = AddHost("a", config);
  Host& b = AddHost("b", config);
  ASSERT_EQ(a.manager->acquire("app.db", kExclusive), ClaimResult::kGranted);
  EXPECT_EQ(b.manager->acquire("app.db", kShared), ClaimResult::kBusy);
  clock_.advance(seconds(11));
  b.manager->tick();
  ASSERT_EQ(b.manager->acquire("app.db", kShared), ClaimResult::kGranted);
  EXPECT_EQ(b.manager->stats().sessions_reaped, 1u);
  EXPECT_EQ(b.listener.revalidations["app.db"], 1);
}

// RECORDS LOST: a database record deleted by hand while a host uses its claims. The host cannot
// stop another from creating the record afresh, but it notices at its next read (the demand
// check, L/4 at the latest) and fences instead of carrying on beside the other.
TEST_F(LeaseManagerTest, RecordDeletedUnderAHolderLosesTheSession) {
  LeaseConfig config;
  config.lease = seconds(8);
  Host& a = AddHost("a", config);
  Host& b = AddHost("b", config);
  ASSERT_EQ(a.manager->acquire("app.db", kReserved), ClaimResult::kGranted);
  EXPECT_TRUE(a.manager->may_write("app.db"));
  StoreResult current = store_->get("db/app.db", TimePoint::max());
  ASSERT_TRUE(current.ok());
  ASSERT_TRUE(store_->remove("db/app.db", current.record.revision, TimePoint::max()).ok());
  ASSERT_EQ(b.manager->acquire("app.db", kReserved), ClaimResult::kGranted);  // cannot be helped
  clock_.advance(seconds(2) + milliseconds(1));  // the demand check is due (L/4)
  a.manager->tick();
  EXPECT_TRUE(a.manager->dead());
  EXPECT_FALSE(a.manager->may_write("app.db"));
  EXPECT_EQ(a.manager->acquire("app.db", kExclusive), ClaimResult::kFenced);
}

TEST_F(LeaseManagerTest, RecordDeletedIsNoticedAtTheNextLockRequest) {
  Host& a = AddHost("a");
  ASSERT_EQ(a.manager->acquire("app.db", kShared), ClaimResult::kGranted);
  StoreResult current = store_->get("db/app.db", TimePoint::max());
  ASSERT_TRUE(store_->remove("db/app.db", current.record.revision, TimePoint::max()).ok());
  // Still holding SHARED, it asks for RESERVED: the read shows its SHARED claim gone.
  EXPECT_EQ(a.manager->acquire("app.db", kReserved), ClaimResult::kFenced);
  EXPECT_TRUE(a.manager->dead());
}

// Renewals never wait behind the claims' work: a flush to slow storage that takes longer than the
// lease (here 1.5 s against L = 0.6 s), made by the background thread while it yields a claim,
// must not let the session lapse. Real time and real background threads: what is tested is
// that the renewal does not share a thread with that work.
TEST_F(LeaseManagerTest, SlowFlushDoesNotDelayRenewals) {
  class SlowFlush final : public LeaseListener {
   public:
    void flush(const std::string&) override {
      flushing = true;
      std::this_thread::sleep_for(milliseconds(1500));
      flushing = false;
    }
    void invalidate(const std::string&) override {}
    std::atomic<bool> flushing{false};
  };
  LeaseConfig config;
  config.lease = milliseconds(600);
  config.margin = milliseconds(50);
  config.session_name = "a";
  SlowFlush slow;
  LeaseManager a(*store_, real_clock_, config, slow);
  std::string error;
  ASSERT_TRUE(a.start(&error)) << error;
  config.session_name = "b";
  RecordingListener quick;
  LeaseManager b(*store_, real_clock_, config, quick);
  ASSERT_TRUE(b.start(&error)) << error;
  a.run_background();
  b.run_background();
  ASSERT_EQ(a.acquire("app.db", kExclusive), ClaimResult::kGranted);
  a.mark_dirty("app.db");
  EXPECT_EQ(b.acquire("app.db", kExclusive), ClaimResult::kBusy);  // demand: A must yield
  a.set_use("app.db", kNothing);                                   // A's yield flushes, slowly
  for (int i = 0; i < 200 && !slow.flushing; i++) std::this_thread::sleep_for(milliseconds(5));
  ASSERT_TRUE(slow.flushing);
  const uint64_t renewals = a.stats().renewals;
  std::this_thread::sleep_for(milliseconds(1200));  // still flushing: two leases' time
  EXPECT_TRUE(slow.flushing);
  EXPECT_FALSE(a.fenced());
  EXPECT_FALSE(a.dead());
  EXPECT_GE(a.stats().renewals, renewals + 4);  // every L/4
  a.stop();
  b.stop();
}

// A session declared dead is not resurrected under the locks it held: the host joins again, as a
// new session, only once its local processes have let go of every lock, and the first claim in
// the new session drops the caches.
TEST_F(LeaseManagerTest, DeclaredDeadHostJoinsAgainOnlyAfterItsLocksAreGone) {
  LeaseConfig config;
  config.lease = seconds(10);
  Host& a = AddHost("a", config);
  Host& b = AddHost("b", config);
  ASSERT_EQ(a.manager->acquire("app.db", kExclusive), ClaimResult::kGranted);
  const std::string old_session = a.manager->session_id();
  EXPECT_EQ(b.manager->acquire("app.db", kExclusive), ClaimResult::kBusy);
  clock_.advance(milliseconds(10200));
  b.manager->tick();
  ASSERT_EQ(b.manager->acquire("app.db", kExclusive), ClaimResult::kGranted);
  b.manager->set_use("app.db", kNothing);
  a.manager->tick();  // A wakes up: its renewal finds it was declared dead
  ASSERT_TRUE(a.manager->dead());
  // A local process still holds its EXCLUSIVE lock from the lost session: no new session yet,
  // however long that takes.
  for (int i = 0; i < 5; i++) {
    clock_.advance(seconds(10));
    a.manager->tick();
    b.manager->tick();
    EXPECT_TRUE(a.manager->dead());
    EXPECT_FALSE(a.manager->may_write("app.db"));
    EXPECT_EQ(a.manager->acquire("app.db", kShared), ClaimResult::kFenced);
  }
  // The process gives up its lock (SQLite does, after the I/O error): A joins again.
  a.manager->set_use("app.db", kNothing);
  clock_.advance(seconds(10));
  a.manager->tick();
  ASSERT_FALSE(a.manager->dead());
  EXPECT_NE(a.manager->session_id(), old_session);
  EXPECT_EQ(a.manager->stats().rejoins, 1u);
  int invalidations_before = a.listener.invalidations["app.db"];
  b.manager->tick();  // B lets its idle claim go
  clock_.advance(seconds(2));
  b.manager->tick();
  ASSERT_EQ(a.manager->acquire("app.db", kReserved), ClaimResult::kGranted);
  EXPECT_TRUE(a.manager->may_write("app.db"));
  EXPECT_EQ(a.listener.invalidations["app.db"], invalidations_before + 1);
}

TEST_F(LeaseManagerTest, RenewingHolderIsNeverReaped) {
  LeaseConfig config;
  config.lease = seconds(10);
  Host& a = AddHost("a", config);
  Host& b = AddHost("b", config);
  ASSERT_EQ(a.manager->acquire("app.db", kExclusive), ClaimResult::kGranted);
  for (int step = 0; step < 40; step++) {  // 100 s of A working and renewing, B waiting
    clock_.advance(milliseconds(2500));
    a.manager->tick();
    b.manager->tick();
    EXPECT_EQ(b.manager->acquire("app.db", kExclusive), ClaimResult::kBusy);
  }
  EXPECT_EQ(b.manager->stats().sessions_reaped, 0u);
  EXPECT_FALSE(a.manager->dead());
}

TEST_F(LeaseManagerTest, AmbiguousWritesAreSettledByReading) {
  Host& a = AddHost("a");
  Host& b = AddHost("b");
  a.store.set_fault(FaultyStore::Fault::kAmbiguousAfterApply);
  // Every write "times out" after landing; the host must still know what it holds.
  ASSERT_EQ(a.manager->acquire("app.db", kExclusive), ClaimResult::kGranted);
  clock_.advance(seconds(3));
  a.manager->tick();  // ambiguous renewal
  clock_.advance(seconds(3));
  a.manager->tick();  // and another: must not conclude it was declared dead
  EXPECT_FALSE(a.manager->dead());
  EXPECT_GE(a.manager->stats().renewals, 2u);
  EXPECT_EQ(b.manager->acquire("app.db", kShared), ClaimResult::kBusy);
  a.manager->set_use("app.db", kNothing);
  clock_.advance(seconds(2));  // A never saw B: its idle claims go after idle_release
  a.manager->tick();           // released, ambiguously
  a.store.set_fault(FaultyStore::Fault::kNone);
  EXPECT_EQ(b.manager->acquire("app.db", kShared), ClaimResult::kGranted);
}

TEST_F(LeaseManagerTest, ForeignHolderIsClusterWideGetlk) {
  Host& a = AddHost("a");
  Host& b = AddHost("b");
  EXPECT_EQ(b.manager->foreign_holder("app.db", Region::kReserved, Mode::kWrite), Mode::kNone);
  ASSERT_EQ(a.manager->acquire("app.db", kReserved), ClaimResult::kGranted);
  EXPECT_EQ(b.manager->foreign_holder("app.db", Region::kReserved, Mode::kWrite), Mode::kWrite);
  // Idle but cached is still reported as held (a live journal must never look hot)...
  a.manager->set_use("app.db", kNothing);
  EXPECT_EQ(b.manager->foreign_holder("app.db", Region::kReserved, Mode::kWrite), Mode::kWrite);
  // ...until the holder releases it.
  clock_.advance(seconds(2));
  a.manager->tick();
  EXPECT_EQ(b.manager->foreign_holder("app.db", Region::kReserved, Mode::kWrite), Mode::kNone);
  // A reader's claim does not conflict with a read probe.
  ASSERT_EQ(a.manager->acquire("app.db", kShared), ClaimResult::kGranted);
  EXPECT_EQ(b.manager->foreign_holder("app.db", Region::kShared, Mode::kRead), Mode::kNone);
  EXPECT_EQ(b.manager->foreign_holder("app.db", Region::kShared, Mode::kWrite), Mode::kRead);
}

// A host that writes a database and finds no other host on it claims the whole write set in one
// store write, so the rest of the transaction's lock steps cost no round trip; a pure reader
// claims only what it reads; another host's demand takes the surplus back.
TEST_F(LeaseManagerTest, WriterAloneClaimsTheWriteSetReadersOnlyWhatTheyUse) {
  LeaseConfig config;
  config.claim_write_set = true;  // what a remote store's mounts use
  Host& reader = AddHost("reader", config);
  ASSERT_EQ(reader.manager->acquire("app.db", kShared), ClaimResult::kGranted);
  EXPECT_EQ(ClaimInStore(reader, Region::kShared), Mode::kRead);
  EXPECT_EQ(ClaimInStore(reader, Region::kReserved), Mode::kNone);
  reader.manager->set_use("app.db", kNothing);
  clock_.advance(seconds(2));
  reader.manager->tick();  // idle: released

  Host& writer = AddHost("writer", config);
  ASSERT_EQ(writer.manager->acquire("app.db", kReserved), ClaimResult::kGranted);
  EXPECT_EQ(ClaimInStore(writer, Region::kPending), Mode::kWrite);
  EXPECT_EQ(ClaimInStore(writer, Region::kShared), Mode::kWrite);
  uint64_t requests = writer.store.requests();
  ASSERT_EQ(writer.manager->acquire("app.db", kExclusive), ClaimResult::kGranted);
  EXPECT_EQ(writer.store.requests(), requests) << "EXCLUSIVE was already claimed";
  writer.manager->set_use("app.db", kNothing);
  // The reader comes back: its demand makes the idle writer yield, and it reads.
  EXPECT_EQ(reader.manager->acquire("app.db", kShared), ClaimResult::kBusy);
  clock_.advance(milliseconds(2600));  // the writer's next look for demand (L/4)
  writer.manager->tick();
  EXPECT_EQ(reader.manager->acquire("app.db", kShared), ClaimResult::kGranted);
}

// One SQLite BEGIN IMMEDIATE ... COMMIT on `host`, as the host lock table reports it.
ClaimResult WriteTransaction(Host& host) {
  for (const RegionModes* step : {&kShared, &kReserved, &kExclusive}) {
    ClaimResult result = host.manager->acquire("app.db", *step);
    if (result != ClaimResult::kGranted) return result;
  }
  host.manager->mark_dirty("app.db");
  host.manager->set_use("app.db", kNothing);
  return ClaimResult::kGranted;
}

// Two hosts taking turns: each yields its claims as soon as its transaction ends, so the next
// one finds them free. A turn costs three store requests in all: the yield, the next host's
// read, its claim of the write set. Every turn is a clean handoff: flushed before the yield,
// caches dropped before the next host's transaction.
TEST_F(LeaseManagerTest, HostsTakingTurnsHandOffInThreeRequests) {
  LeaseConfig config;
  config.claim_write_set = true;
  config.idle_release = seconds(5);  // B still wants the claim when A looks (L/4) below
  Host& a = AddHost("a", config);
  Host& b = AddHost("b", config);
  // The first meeting: A holds the claims and has never seen B, so B's demand waits for A's
  // look for demand (L/4), and A's release hands the claims to B in the same write.
  ASSERT_EQ(WriteTransaction(a), ClaimResult::kGranted);
  ASSERT_EQ(b.manager->acquire("app.db", kShared), ClaimResult::kBusy);
  clock_.advance(milliseconds(2600));
  a.manager->tick();
  EXPECT_EQ(a.manager->held("app.db"), kNothing);
  // B, waiting, reads its record while its demand stands: the claim is its own, and since A
  // wrote, B's caches go before anything can use the claim.
  const int b_invalidations = b.listener.invalidations["app.db"];
  b.manager->tick();
  EXPECT_EQ(b.manager->held("app.db"), kShared);
  EXPECT_EQ(b.listener.invalidations["app.db"], b_invalidations + 1);
  const uint64_t b_requests = b.store.requests();
  ASSERT_EQ(b.manager->acquire("app.db", kShared), ClaimResult::kGranted);
  EXPECT_EQ(b.store.requests(), b_requests) << "the handed-over claim costs nothing more";
  ASSERT_EQ(WriteTransaction(b), ClaimResult::kGranted);

  for (int turn = 0; turn < 40; turn++) {
    Host& mine = turn % 2 ? b : a;
    Host& other = turn % 2 ? a : b;
    const uint64_t before = a.store.requests() + b.store.requests();
    const int flushes = other.listener.flushes["app.db"];
    other.manager->tick();  // the other host's transaction ended: it yields at once
    EXPECT_EQ(other.manager->held("app.db"), kNothing) << "turn " << turn;
    EXPECT_EQ(other.listener.flushes["app.db"], flushes + 1) << "durable before the yield";
    const int invalidations = mine.listener.invalidations["app.db"];
    ASSERT_EQ(WriteTransaction(mine), ClaimResult::kGranted) << "turn " << turn;
    EXPECT_EQ(mine.listener.invalidations["app.db"], invalidations + 1) << "turn " << turn;
    // Steady state once each host has read the other's session record.
    if (turn >= 2) {
      EXPECT_EQ(a.store.requests() + b.store.requests() - before, 3u) << "turn " << turn;
    }
    clock_.advance(milliseconds(1));
  }
  const LeaseStats sa = a.manager->stats(), sb = b.manager->stats();
  EXPECT_EQ(sa.wasted_handoffs + sb.wasted_handoffs, 0u);
  EXPECT_GE(sa.handoffs + sb.handoffs, 40u);
}

// A busy host that once met another keeps yielding eagerly only while yielding helps: a yield
// nobody took before the host's next claim makes it wait longer after its last lock, so its
// back-to-back transactions soon cost the store nothing again, yet another host's demand is
// still answered promptly.
TEST_F(LeaseManagerTest, EagerHandoffsNobodyTakesBackOff) {
  LeaseConfig config;
  config.claim_write_set = true;
  config.poll_interval = milliseconds(1);
  Host& a = AddHost("a", config);
  Host& b = AddHost("b", config);
  ASSERT_EQ(WriteTransaction(b), ClaimResult::kGranted);
  b.manager->tick();
  ASSERT_EQ(a.manager->acquire("app.db", kShared), ClaimResult::kBusy);  // they meet
  clock_.advance(seconds(3));
  b.manager->tick();  // B yields on demand and then stays away
  ASSERT_EQ(WriteTransaction(a), ClaimResult::kGranted);

  // A's transactions follow each other 100 us apart.
  auto run = [&](int transactions) {
    const uint64_t before = a.store.requests();
    for (int tx = 0; tx < transactions; tx++) {
      a.manager->tick();
      clock_.advance(std::chrono::microseconds(100));
      EXPECT_EQ(WriteTransaction(a), ClaimResult::kGranted);
    }
    return a.store.requests() - before;
  };
  run(10);
  const LeaseStats early = a.manager->stats();
  EXPECT_EQ(early.wasted_handoffs, 1u);
  // 200 more transactions in 20 ms: no yield, and the store sees only A's looks for demand
  // (one per poll_interval of 1 ms), not a request per transaction.
  EXPECT_LE(run(200), 21u);
  EXPECT_EQ(a.manager->stats().handoffs, early.handoffs);
  EXPECT_EQ(a.manager->stats().wasted_handoffs, 1u);

  // B comes back: A, still competing, notices the demand within a poll interval.
  ASSERT_EQ(b.manager->acquire("app.db", kShared), ClaimResult::kBusy);
  clock_.advance(milliseconds(1));
  a.manager->tick();
  EXPECT_EQ(a.manager->held("app.db"), kNothing);
  EXPECT_EQ(b.manager->acquire("app.db", kShared), ClaimResult::kGranted);
}

// SQLite's PENDING lock, cluster-wide: while a writer on one host waits for PENDING, readers on
// other hosts may finish but no new one starts, so readers taking turns cannot starve it.
TEST_F(LeaseManagerTest, WaitingWriterKeepsNewReadersOut) {
  Host& writer = AddHost("writer");
  Host& reader = AddHost("reader");
  Host& late = AddHost("late");
  ASSERT_EQ(reader.manager->acquire(
                "app.db", Use({{Region::kPending, Mode::kRead}, {Region::kShared, Mode::kRead}})),
            ClaimResult::kGranted);
  reader.manager->set_use("app.db", kShared);  // a read transaction in progress
  ASSERT_EQ(writer.manager->acquire("app.db", kReserved), ClaimResult::kGranted);
  // COMMIT: PENDING as W conflicts with the reader's PENDING claim (cached): demand.
  EXPECT_EQ(writer.manager->acquire("app.db", kCommitting), ClaimResult::kBusy);
  // A new reader elsewhere must not get in ahead of the writer.
  EXPECT_EQ(late.manager->acquire("app.db", kPendingRead), ClaimResult::kBusy);
  // The reader, at its next look for demand (L/4), yields its idle PENDING claim, and SHARED
  // once its transaction ends.
  clock_.advance(seconds(3));
  reader.manager->tick();
  EXPECT_EQ(writer.manager->acquire("app.db", kCommitting), ClaimResult::kGranted);
  EXPECT_EQ(late.manager->acquire("app.db", kPendingRead),
            ClaimResult::kBusy);  // PENDING is the writer's now
  // EXCLUSIVE: the reader's SHARED claim is in the way; once its transaction ends it yields.
  EXPECT_EQ(writer.manager->acquire("app.db", kExclusive), ClaimResult::kBusy);
  reader.manager->set_use("app.db", kNothing);
  clock_.advance(milliseconds(1));
  reader.manager->tick();
  ASSERT_EQ(writer.manager->acquire("app.db", kExclusive), ClaimResult::kGranted);
  CommitAndYield(writer);  // competing: yields, and the late reader's demand is handed over
  EXPECT_EQ(late.manager->acquire("app.db", kPendingRead), ClaimResult::kGranted);
}

// The 3-host stall this rule fixes: readers on a host that caches PENDING as R take it in
// overlapping turns, so the host's use of PENDING never drains and a writer elsewhere waits for
// ever. Once the host knows a writer waits for PENDING, a process newly entering PENDING as R is
// refused even though the cached claim covers it; one already inside its transaction is not.
TEST_F(LeaseManagerTest, CachedPendingDoesNotLetNewReadersAheadOfAWaitingWriter) {
  Host& readers = AddHost("readers");
  Host& writer = AddHost("writer");
  const RegionModes starting =
      Use({{Region::kPending, Mode::kRead}, {Region::kShared, Mode::kRead}});
  // Reader 1 holds PENDING on its way to SHARED.
  ASSERT_EQ(readers.manager->acquire("app.db", starting, starting), ClaimResult::kGranted);
  ASSERT_EQ(writer.manager->acquire("app.db", kReserved), ClaimResult::kGranted);
  // COMMIT: PENDING as W is in the way of the readers' PENDING claim.
  ASSERT_EQ(writer.manager->acquire("app.db", kCommitting), ClaimResult::kBusy);
  // The readers' host reads the demand; PENDING is in use, so it stays.
  clock_.advance(seconds(3));
  readers.manager->tick();
  ASSERT_EQ(writer.manager->acquire("app.db", kCommitting), ClaimResult::kBusy);
  // Reader 2 enters PENDING: the cached claim covers it, but a writer waits, so it is refused.
  EXPECT_EQ(readers.manager->acquire("app.db", starting, kPendingRead), ClaimResult::kBusy);
  // Reader 1, already holding PENDING, is not: it only adds SHARED, and then leaves PENDING.
  ASSERT_EQ(readers.manager->acquire("app.db", starting, Use({{Region::kShared, Mode::kRead}})),
            ClaimResult::kGranted);
  readers.manager->set_use("app.db", kShared);
  clock_.advance(milliseconds(1));
  readers.manager->tick();  // PENDING is idle now: yielded, and handed to the writer
  ASSERT_EQ(writer.manager->acquire("app.db", kCommitting), ClaimResult::kGranted);
  // EXCLUSIVE once reader 1's transaction ends.
  EXPECT_EQ(writer.manager->acquire("app.db", kExclusive), ClaimResult::kBusy);
  readers.manager->set_use("app.db", kNothing);
  clock_.advance(milliseconds(1));
  readers.manager->tick();
  ASSERT_EQ(writer.manager->acquire("app.db", kExclusive), ClaimResult::kGranted);
  CommitAndYield(writer);  // competing: yields, and hands the readers' demand over
  EXPECT_EQ(readers.manager->acquire("app.db", starting, kPendingRead), ClaimResult::kGranted);
}

// WRITERS' CLAIMS: a writer holding RESERVED on its way to EXCLUSIVE is refused PENDING and
// sleeps in SQLite's busy handler. PENDING, handed over while it sleeps, stays with it although
// new readers elsewhere ask for it (they would take it in turns and starve the writer: commits
// of 350 ms to 2.8 s, issue 12); once the writer gave up (writer_claim_keep), it goes.
class WriterClaimsTest : public LeaseManagerTest {
 protected:
  // A reader on `readers_` holds PENDING on its way to SHARED; the writer, holding RESERVED, is
  // refused PENDING and sleeps; the reader leaves PENDING (keeping SHARED while `reading`), its
  // host yields PENDING to the writer, whose host adopts it; the readers' next transaction asks
  // for PENDING as R.
  void HandPendingToASleepingWriter(bool reading) {
    LeaseConfig config;
    config.idle_release = seconds(5);  // the writer's claims outlast the readers' first look
    writer_ = &AddHost("writer", config);
    readers_ = &AddHost("readers", config);
    const RegionModes starting =
        Use({{Region::kPending, Mode::kRead}, {Region::kShared, Mode::kRead}});
    ASSERT_EQ(readers_->manager->acquire("app.db", starting, starting), ClaimResult::kGranted);
    ASSERT_EQ(writer_->manager->acquire("app.db", kReserved), ClaimResult::kGranted);
    ASSERT_EQ(writer_->manager->acquire("app.db", kCommitting), ClaimResult::kBusy);  // sleeps
    clock_.advance(milliseconds(2600));
    readers_->manager->tick();  // the readers' host looks for demand (L/4, the first meeting)
    ASSERT_EQ(writer_->manager->acquire("app.db", kCommitting), ClaimResult::kBusy);  // again
    clock_.advance(milliseconds(1));
    readers_->manager->set_use("app.db", reading ? kShared : kNothing);  // leaves PENDING
    readers_->manager->tick();                                           // yields it
    clock_.advance(milliseconds(20));  // the writer's next poll (it backs off)
    writer_->manager->tick();          // adopts it while its SQLite sleeps
    ASSERT_EQ(ClaimInStore(*writer_, Region::kPending), Mode::kWrite);
    readers_->manager->set_use("app.db", kNothing);
    ASSERT_EQ(readers_->manager->acquire("app.db", kPendingRead), ClaimResult::kBusy);
  }
  Host* writer_ = nullptr;
  Host* readers_ = nullptr;
};

TEST_F(WriterClaimsTest, PendingHandedToACommittingWriterWaitsForIt) {
  HandPendingToASleepingWriter(/*reading=*/true);
  clock_.advance(milliseconds(20));  // the writer's next poll finds the readers' demand
  writer_->manager->tick();
  EXPECT_EQ(ClaimInStore(*writer_, Region::kPending), Mode::kWrite) << "owed back before it woke";
  EXPECT_EQ(writer_->manager->acquire("app.db", kCommitting), ClaimResult::kGranted);
  // EXCLUSIVE once the readers' host yields SHARED (no transaction uses it); then PENDING goes
  // to the readers as before.
  EXPECT_EQ(writer_->manager->acquire("app.db", kExclusive), ClaimResult::kBusy);
  clock_.advance(milliseconds(1));
  readers_->manager->tick();
  ASSERT_EQ(writer_->manager->acquire("app.db", kExclusive), ClaimResult::kGranted);
  CommitAndYield(*writer_);
  EXPECT_EQ(readers_->manager->acquire("app.db", kPendingRead), ClaimResult::kGranted);
}

TEST_F(WriterClaimsTest, PendingKeptForACommittingWriterGoesWhenItGivesUp) {
  HandPendingToASleepingWriter(/*reading=*/false);
  // The writer's SQLite stops asking but keeps RESERVED (its busy timeout ran out, and the
  // application has not rolled back yet): after writer_claim_keep the readers get PENDING.
  clock_.advance(milliseconds(300));
  writer_->manager->tick();
  EXPECT_EQ(ClaimInStore(*writer_, Region::kPending), Mode::kNone);
  clock_.advance(milliseconds(20));
  EXPECT_EQ(readers_->manager->acquire("app.db", kPendingRead), ClaimResult::kGranted);
}

// A claim handed over to a host that no longer wants it, and released by it before it ever
// adopted it, must still leave the host's caches marked stale: the version moved while the
// claim was away, and the host's next grant has to drop its caches.
TEST_F(LeaseManagerTest, HandedClaimsReleasedUnusedStillInvalidateLater) {
  Host& a = AddHost("a");
  Host& b = AddHost("b");
  ASSERT_EQ(b.manager->acquire("app.db", kShared), ClaimResult::kGranted);  // B caches version 0
  b.manager->set_use("app.db", kNothing);
  clock_.advance(seconds(2));
  b.manager->tick();  // idle release
  ASSERT_EQ(b.manager->held("app.db"), kNothing);
  ASSERT_EQ(WriteTransaction(a), ClaimResult::kGranted);  // A writes: version 1 on release
  a.manager->set_use("app.db", kExclusive);               // ... in its next transaction
  EXPECT_EQ(b.manager->acquire("app.db", kReserved), ClaimResult::kBusy);  // B waits
  a.manager->set_use("app.db", kNothing);
  clock_.advance(milliseconds(1));
  a.manager->tick();  // A yields: B's demand is handed over, version bumped
  // A wants it back before B has looked; B's background poll finds the handed claim unused
  // and A waiting, and releases it.
  EXPECT_EQ(a.manager->acquire("app.db", kReserved), ClaimResult::kBusy);
  const int b_invalidations = b.listener.invalidations["app.db"];
  clock_.advance(milliseconds(1));
  b.manager->tick();
  EXPECT_EQ(b.manager->held("app.db"), kNothing);
  EXPECT_EQ(b.listener.invalidations["app.db"], b_invalidations + 1)
      << "the handed claim carried version 1; B's caches are from version 0";
  // And B's next grant (nothing written since) is at version 1: its caches were dropped above.
  clock_.advance(milliseconds(1));
  a.manager->tick();
  ASSERT_EQ(a.manager->acquire("app.db", kReserved), ClaimResult::kGranted);
  a.manager->set_use("app.db", kNothing);
  clock_.advance(seconds(2));
  a.manager->tick();
  ASSERT_EQ(b.manager->acquire("app.db", kShared), ClaimResult::kGranted);
}

// A release write whose answer is lost (it landed, handing the claims over, but neither the
// reply nor the settling read came back) must leave the host believing it holds no more than it
// tried to keep: otherwise its processes would go on writing under claims another host has.
TEST_F(LeaseManagerTest, UnsettledReleaseWriteGivesUpTheClaimsLocally) {
  Host& a = AddHost("a");
  Host& b = AddHost("b");
  ASSERT_EQ(b.manager->acquire("app.db", kShared), ClaimResult::kGranted);  // B was here: A
  b.manager->set_use("app.db", kNothing);                                   // competes
  clock_.advance(seconds(2));
  b.manager->tick();
  ASSERT_EQ(a.manager->acquire("app.db", kExclusive), ClaimResult::kGranted);
  a.manager->mark_dirty("app.db");
  EXPECT_EQ(b.manager->acquire("app.db", kReserved), ClaimResult::kBusy);
  a.manager->set_use("app.db", kNothing);  // an eager handoff is due
  a.store.set_fault(FaultyStore::Fault::kAmbiguousThenDown);
  clock_.advance(milliseconds(1));
  a.manager->tick();  // the yield lands, hands B the claims, and its answer is lost
  EXPECT_EQ(a.manager->held("app.db"), kNothing);
  EXPECT_FALSE(a.manager->may_write("app.db"));
  EXPECT_NE(a.manager->acquire("app.db", kReserved), ClaimResult::kGranted);
  ASSERT_EQ(b.manager->acquire("app.db", kReserved), ClaimResult::kGranted);
  EXPECT_TRUE(b.manager->may_write("app.db"));
}

// The other outcome of an unsettled release write: it did not land. The host believes in less
// than the store says it holds; once the store answers again it must read the record and give
// the claims up by itself, or the waiting host would wait on them for ever (nothing else would
// ever make this host look: it thinks it holds nothing).
TEST_F(LeaseManagerTest, UnsettledReleaseWriteThatDidNotLandIsCleanedUpLater) {
  Host& a = AddHost("a");
  Host& b = AddHost("b");
  ASSERT_EQ(b.manager->acquire("app.db", kShared), ClaimResult::kGranted);
  b.manager->set_use("app.db", kNothing);
  clock_.advance(seconds(2));
  b.manager->tick();
  ASSERT_EQ(a.manager->acquire("app.db", kExclusive), ClaimResult::kGranted);
  a.manager->mark_dirty("app.db");
  EXPECT_EQ(b.manager->acquire("app.db", kReserved), ClaimResult::kBusy);
  a.manager->set_use("app.db", kNothing);
  a.store.set_fault(FaultyStore::Fault::kLostThenDown);
  clock_.advance(milliseconds(1));
  a.manager->tick();  // the yield is lost, and so is the read that would settle it
  EXPECT_EQ(a.manager->held("app.db"), kNothing);
  EXPECT_EQ(b.manager->acquire("app.db", kReserved), ClaimResult::kBusy);  // still A's in the store
  a.store.set_fault(FaultyStore::Fault::kNone);
  clock_.advance(milliseconds(1));
  a.manager->tick();  // A reads the record: claims it did not believe in, B waiting: yielded
  ASSERT_EQ(b.manager->acquire("app.db", kReserved), ClaimResult::kGranted);
  EXPECT_EQ(a.listener.flushes["app.db"], 2) << "flushed before each attempt to yield";
}

// An eager yield that hands the waiter what it asked for is taken, even when the waiter never
// needs to write the record (it finds the claims its own): it must not be judged wasted at the
// yielding host's next claim, which would make that host linger before every later yield.
TEST_F(LeaseManagerTest, YieldHandedToAWaiterIsNotWasted) {
  LeaseConfig config;
  config.claim_write_set = true;
  Host& a = AddHost("a", config);
  Host& b = AddHost("b", config);
  ASSERT_EQ(a.manager->acquire("app.db", kExclusive), ClaimResult::kGranted);
  a.manager->mark_dirty("app.db");
  EXPECT_EQ(b.manager->acquire("app.db", kReserved), ClaimResult::kBusy);
  a.manager->set_use("app.db", kNothing);
  clock_.advance(milliseconds(2600));
  a.manager->tick();  // the first meeting: A's look for demand hands B the write set
  ASSERT_EQ(b.manager->acquire("app.db", kExclusive), ClaimResult::kGranted);
  EXPECT_EQ(a.manager->acquire("app.db", kReserved), ClaimResult::kBusy);
  b.manager->mark_dirty("app.db");
  b.manager->set_use("app.db", kNothing);  // B competes: an eager yield, handing A the set
  clock_.advance(milliseconds(1));
  b.manager->tick();
  ASSERT_EQ(b.manager->held("app.db"), kNothing);
  const uint64_t a_requests = a.store.requests();
  ASSERT_EQ(a.manager->acquire("app.db", kExclusive), ClaimResult::kGranted);  // A's turn, held
  EXPECT_EQ(a.store.requests(), a_requests + 1) << "one read: the claims are A's already";
  EXPECT_EQ(b.manager->acquire("app.db", kReserved), ClaimResult::kBusy);  // B judges its yield
  EXPECT_EQ(b.manager->stats().wasted_handoffs, 0u);
}

// A waiting host that polls for a handover backs off while nothing changes (LeaseConfig::
// poll_interval_max), so a long wait costs a few requests a second, not one per poll_interval.
TEST_F(LeaseManagerTest, PollingWhileWaitingBacksOff) {
  LeaseConfig config;
  config.poll_interval = milliseconds(5);
  config.poll_interval_max = milliseconds(125);
  Host& a = AddHost("a", config);
  Host& b = AddHost("b", config);
  ASSERT_EQ(a.manager->acquire("app.db", kExclusive), ClaimResult::kGranted);  // held for long
  EXPECT_EQ(b.manager->acquire("app.db", kShared), ClaimResult::kBusy);
  const uint64_t before = b.store.requests();
  const uint64_t renewals_before = b.manager->stats().renewals;
  for (int step = 1; step <= 10000; step++) {  // 10 s in 1 ms steps
    clock_.advance(milliseconds(1));
    // B's SQLite tries again now and then (a held request expires, the busy handler sleeps).
    if (step % 350 == 0) {
      EXPECT_EQ(b.manager->acquire("app.db", kShared), ClaimResult::kBusy);
    }
    b.manager->tick();
  }
  const uint64_t renewals = b.manager->stats().renewals - renewals_before;
  const uint64_t polls = b.store.requests() - before - renewals;
  // (Each retry reads too: only a lock request's read reaps a dead holder, so none is skipped.)
  EXPECT_LE(polls, 10u * 12) << "at most ~12 requests a second while waiting";
  EXPECT_GE(polls, 10u * 5) << "but still looking";
  // A change brings the pace back: A's writer ends, the claims are handed over, B sees it.
  a.manager->mark_dirty("app.db");
  a.manager->set_use("app.db", kNothing);
  clock_.advance(milliseconds(1));
  a.manager->tick();
  for (int step = 0; step < 130; step++) {
    clock_.advance(milliseconds(1));
    b.manager->tick();
  }
  EXPECT_EQ(b.manager->acquire("app.db", kShared), ClaimResult::kGranted);
}

TEST_F(LeaseManagerTest, CleanStopReleasesEverything) {
  Host& a = AddHost("a");
  Host& b = AddHost("b");
  ASSERT_EQ(a.manager->acquire("app.db", kExclusive), ClaimResult::kGranted);
  a.manager->mark_dirty("app.db");
  a.manager->stop();
  EXPECT_EQ(a.listener.flushes["app.db"], 1);
  EXPECT_EQ(b.manager->acquire("app.db", kExclusive), ClaimResult::kGranted);
  std::vector<Record> sessions;
  ASSERT_TRUE(store_->list("session/", &sessions, real_clock_.now() + seconds(5)).ok());
  ASSERT_EQ(sessions.size(), 1u);  // only b's
  EXPECT_EQ(sessions[0].key, "session/" + b.manager->session_id());
}

}  // namespace
}  // namespace leasefs::lock
