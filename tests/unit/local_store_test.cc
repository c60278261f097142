// Unit tests for the local (SQLite) lease store: the LeaseStore contract shared with every backend
// (lease_store_contract.h: compare-and-set semantics per outcome, linearizability between separate
// connections, as separate mounts on one machine use it), then what is particular to SQLite.
#include "leasefs/lock/local_store.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include <chrono>
#include <memory>
#include <string>

#include "lease_store_contract.h"
#include "mount_harness.h"

namespace leasefs::lock {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

// The backend of the shared contract (lease_store_contract.h): a store file in a fresh directory.
struct LocalBackend {
  static constexpr int kIncrements = 150;
  static void SetUpTestSuite() {}
  static void TearDownTestSuite() {}
  void SetUp() { path_ = temp_.path() + "/sub/leases.db"; }  // OpenLocalStore creates sub/
  std::unique_ptr<LeaseStore> Open() {
    std::string error;
    auto store = OpenLocalStore(path_, clock_, &error);
    EXPECT_NE(store, nullptr) << error;
    return store;
  }
  const Clock& clock() const { return clock_; }

  SteadyClock clock_;
  leasefs::testing::TempDir temp_;
  std::string path_;
};

INSTANTIATE_TYPED_TEST_SUITE_P(Local, LeaseStoreContract, LocalBackend);

// Local-store specifics, on the same fixture.
class LocalStoreTest : public LeaseStoreContract<LocalBackend> {
 protected:
  const std::string& path() const { return backend_.path_; }
};

TEST_F(LocalStoreTest, BusyStoreAnswersUnavailableByTheDeadline) {
  ASSERT_TRUE(store_->put("k", 0, "{}", Soon()).ok());
  sqlite3* other = nullptr;
  ASSERT_EQ(sqlite3_open(path().c_str(), &other), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(other, "BEGIN EXCLUSIVE", nullptr, nullptr, nullptr), SQLITE_OK);
  const Clock& clock = backend_.clock();
  auto start = clock.now();
  StoreResult r = store_->put("k", 1, "{\"late\":1}", clock.now() + milliseconds(200));
  auto waited = clock.now() - start;
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

TEST(LocalStorePath, MissingDirectoriesAreCreatedPrivate) {
  leasefs::testing::TempDir temp;
  SteadyClock clock;
  std::string error;
  const mode_t old_umask = umask(0);  // as in the daemon
  auto store = OpenLocalStore(temp.path() + "/a/b/leases.db", clock, &error);
  umask(old_umask);
  ASSERT_NE(store, nullptr) << error;
  struct stat st;
  ASSERT_EQ(stat((temp.path() + "/a").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0755u);
  ASSERT_EQ(stat((temp.path() + "/a/b").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  ASSERT_EQ(stat((temp.path() + "/a/b/leases.db").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
}

TEST(LocalStorePath, DirectoryOthersCanWriteIsRefused) {
  leasefs::testing::TempDir temp;
  SteadyClock clock;
  std::string error;
  const std::string open_dir = temp.path() + "/open";
  ASSERT_EQ(mkdir(open_dir.c_str(), 0700), 0);
  ASSERT_EQ(chmod(open_dir.c_str(), 0777), 0);
  EXPECT_EQ(OpenLocalStore(open_dir + "/leases.db", clock, &error), nullptr);
  EXPECT_EQ(error, "lease store directory " + open_dir +
                       " is writable by other users (mode 0777); another user could replace the "
                       "store: use a directory only root (or you) can write");
  // Sticky, as /tmp: only an entry's owner may replace it, so a private directory in it is fine.
  ASSERT_EQ(chmod(open_dir.c_str(), 01777), 0);
  auto store = OpenLocalStore(open_dir + "/mine/leases.db", clock, &error);
  EXPECT_NE(store, nullptr) << error;
}

}  // namespace
}  // namespace leasefs::lock
