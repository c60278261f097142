// Unit tests for the passthrough's inode table: one Inode per backing file, reference counts
// that follow the kernel's lookups and forgets, descriptors closed exactly when the last
// reference goes.
#include "inode_table.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "mount_harness.h"

namespace leasefs::fuse {
namespace {

class InodeTableTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = temp_.path();
    int fd = open(root_.c_str(), O_PATH | O_DIRECTORY);
    ASSERT_GE(fd, 0);
    struct stat st;
    ASSERT_EQ(fstat(fd, &st), 0);
    table_.set_root(fd, st);
    ASSERT_EQ(system(("touch " + root_ + "/a && ln " + root_ + "/a " + root_ + "/b").c_str()), 0);
  }

  // Opens `name` as the passthrough's lookup does and acquires it.
  Inode& Acquire(const char* name) {
    int fd = openat(table_.root().fd, name, O_PATH | O_NOFOLLOW);
    EXPECT_GE(fd, 0);
    struct stat st;
    EXPECT_EQ(fstatat(fd, "", &st, AT_EMPTY_PATH), 0);
    return table_.acquire(fd, st);
  }
  static bool IsOpen(int fd) { return fcntl(fd, F_GETFD) >= 0; }

  leasefs::testing::TempDir temp_;  // first: removed last, after everything using it
  std::string root_;
  InodeTable table_;
};

TEST_F(InodeTableTest, HardLinksShareOneInode) {
  Inode& a = Acquire("a");
  Inode& b = Acquire("b");
  EXPECT_EQ(&a, &b);
  EXPECT_EQ(a.lookups, 2u);
  EXPECT_EQ(table_.size(), 2u);  // root + one file
}

TEST_F(InodeTableTest, ForgetClosesDescriptorAtZero) {
  Inode& a = Acquire("a");
  Acquire("a");
  int fd = a.fd;
  const dev_t device = a.device;
  const ino_t number = a.number;
  table_.forget(a, 1);
  EXPECT_TRUE(IsOpen(fd));
  EXPECT_NE(table_.find(device, number), nullptr);
  table_.forget(a, 1);
  EXPECT_FALSE(IsOpen(fd));
  EXPECT_EQ(table_.find(device, number), nullptr);
  EXPECT_EQ(table_.size(), 1u);
}

TEST_F(InodeTableTest, ForgetMoreThanHeldDoesNotUnderflow) {
  Inode& a = Acquire("a");
  const ino_t number = a.number;
  const dev_t device = a.device;
  table_.forget(a, 5);
  EXPECT_EQ(table_.find(device, number), nullptr);
}

TEST_F(InodeTableTest, RootIsPinned) {
  table_.forget(table_.root(), 100);
  EXPECT_TRUE(IsOpen(table_.root().fd));
  EXPECT_EQ(table_.find(table_.root().device, table_.root().number), &table_.root());
}

TEST_F(InodeTableTest, RedundantDescriptorIsClosed) {
  Acquire("a");
  int fd = openat(table_.root().fd, "b", O_PATH | O_NOFOLLOW);
  struct stat st;
  ASSERT_EQ(fstatat(fd, "", &st, AT_EMPTY_PATH), 0);
  Inode& again = table_.acquire(fd, st);
  EXPECT_NE(again.fd, fd);
  EXPECT_FALSE(IsOpen(fd));
}

// Through a storage client a descriptor can outlive its file and the file's number be reused
// (inode_table.h): once marked stale, the next acquire of that number gets a fresh Inode with the
// new descriptor, and the stale one stays valid (and counted) until the kernel forgets it.
TEST_F(InodeTableTest, StaleInodeIsReplacedAndFreedWhenForgotten) {
  Inode& old = Acquire("a");
  const int old_fd = old.fd;
  table_.mark_stale(old);
  Inode& fresh = Acquire("a");
  EXPECT_NE(&fresh, &old);
  EXPECT_FALSE(fresh.stale.load());
  EXPECT_EQ(fresh.lookups, 1u);
  EXPECT_EQ(old.lookups, 1u);
  EXPECT_EQ(table_.find(fresh.device, fresh.number), &fresh);
  EXPECT_EQ(table_.size(), 3u);  // root, the fresh Inode and the orphan
  EXPECT_TRUE(IsOpen(old_fd));
  table_.forget(old, 1);
  EXPECT_FALSE(IsOpen(old_fd));
  EXPECT_EQ(table_.size(), 2u);
  EXPECT_EQ(table_.find(fresh.device, fresh.number), &fresh);
  Acquire("b");  // a hard link of the fresh file: the same Inode
  EXPECT_EQ(fresh.lookups, 2u);
  table_.forget(fresh, 2);
  EXPECT_EQ(table_.size(), 1u);
}

TEST_F(InodeTableTest, RootIsNeverStale) {
  table_.mark_stale(table_.root());
  EXPECT_FALSE(table_.root().stale.load());
}

}  // namespace
}  // namespace leasefs::fuse
