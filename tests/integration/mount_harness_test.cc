/*
 * mount_harness_test: the integration-test harness itself (tests/support/mount_harness.h).
 *
 * Checks that LeasefsMount really mounts and unmounts, that its failure paths report failures
 * instead of passing (a daemon that cannot start, a daemon killed by SIGKILL), that SIGTERM makes
 * the daemon unmount and exit 0 whichever of its threads takes the signal, and that a test process
 * dying without stopping its mount still takes the daemon and the mount with it (PR_SET_PDEATHSIG).
 */
#include "mount_harness.h"

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest-spi.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <string>
#include <thread>

namespace leasefs::testing {
namespace {

using namespace std::chrono_literals;

// Polls `condition` every 10 ms until it holds or `timeout` passes; returns its last value.
template <typename Condition>
bool WaitFor(Condition condition, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (condition()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return condition();
    std::this_thread::sleep_for(10ms);
  }
}

// True while `pid` exists and is not a zombie (an orphan's reaper may be slow or absent).
bool Alive(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return false;
  const size_t paren = line.rfind(')');
  return paren != std::string::npos && paren + 2 < line.size() && line[paren + 2] != 'Z';
}

TEST(MountHarness, StartWriteStop) {
  TempDir source, mountpoint;
  struct stat st;
  ASSERT_EQ(stat(source.path().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0755u) << "TempDir must be traversable by other users";
  auto mount = LeasefsMount::Start(source.path(), mountpoint.path());
  ASSERT_NE(mount, nullptr);
  EXPECT_TRUE(IsFuseMounted(mountpoint.path()));
  EXPECT_GT(mount->pid(), 0);
  const int fd = open((mountpoint.path() + "/hello").c_str(), O_CREAT | O_WRONLY, 0644);
  ASSERT_GE(fd, 0) << strerror(errno);
  ASSERT_EQ(write(fd, "hi", 2), 2);
  ASSERT_EQ(close(fd), 0);
  ASSERT_EQ(stat((source.path() + "/hello").c_str(), &st), 0) << "file must appear in SOURCE";
  EXPECT_EQ(st.st_size, 2);
  EXPECT_TRUE(mount->Stop());
  EXPECT_FALSE(IsFuseMounted(mountpoint.path()));
  EXPECT_TRUE(mount->Stop()) << "Stop is idempotent";
}

TEST(MountHarness, TempDirIsRemovedRecursively) {
  std::string path;
  {
    TempDir dir;
    path = dir.path();
    ASSERT_EQ(mkdir((path + "/a").c_str(), 0700), 0);
    ASSERT_EQ(mkdir((path + "/a/b").c_str(), 0), 0);
    const int fd = open((path + "/a/f").c_str(), O_CREAT | O_WRONLY, 0);
    ASSERT_GE(fd, 0);
    close(fd);
    ASSERT_EQ(symlink("/", (path + "/a/root-link").c_str()), 0);
  }
  struct stat st;
  EXPECT_NE(lstat(path.c_str(), &st), 0) << path << " still exists";
}

TEST(MountHarness, DaemonThatCannotStartIsAFailure) {
  TempDir mountpoint;
  std::string missing_source = mountpoint.path() + "-does-not-exist";
  std::unique_ptr<LeasefsMount> mount;
  EXPECT_NONFATAL_FAILURE(mount = LeasefsMount::Start(missing_source, mountpoint.path()),
                          "before the mount appeared");
  EXPECT_EQ(mount, nullptr);
  EXPECT_FALSE(IsFuseMounted(mountpoint.path()));
}

TEST(MountHarness, KilledDaemonIsAFailureAndIsCleanedUp) {
  TempDir source, mountpoint;
  auto mount = LeasefsMount::Start(source.path(), mountpoint.path());
  ASSERT_NE(mount, nullptr);
  ASSERT_EQ(kill(mount->pid(), SIGKILL), 0);
  const ::testing::AssertionResult result = mount->Stop();
  EXPECT_FALSE(result);
  EXPECT_NE(std::string(result.message()).find("killed by signal 9"), std::string::npos)
      << result.message();
  EXPECT_FALSE(IsFuseMounted(mountpoint.path())) << "a dead daemon's mount must be removed";
  unlink(mount->log_path().c_str());  // kept by the failed Stop
}

TEST(MountHarness, SigtermUnmountsAndExitsZero) {
  TempDir source, mountpoint;
  auto mount = LeasefsMount::Start(source.path(), mountpoint.path());
  ASSERT_NE(mount, nullptr);
  ASSERT_EQ(kill(mount->pid(), SIGTERM), 0);
  EXPECT_TRUE(WaitFor([&] { return !IsFuseMounted(mountpoint.path()); }, 10s))
      << "the daemon must unmount itself on SIGTERM";
  EXPECT_TRUE(mount->Stop());
}

// A process-directed SIGTERM may be taken by any thread that does not block it, and the lease
// threads do not. Sent to one of them directly (tgkill), it must still stop the daemon: a loop
// that only re-checked libfuse's "exited" flag slept on until the next request, so an orphaned
// daemon (DaemonDiesWithTheProcessThatStartedIt) could stay mounted for ever.
TEST(MountHarness, SigtermTakenByAnotherThreadStopsTheDaemon) {
  TempDir source, mountpoint, store;
  auto mount = LeasefsMount::Start(source.path(), mountpoint.path(),
                                   {"--lease-store", "local:" + store.path() + "/leases.db"});
  ASSERT_NE(mount, nullptr);
  const std::string tasks = "/proc/" + std::to_string(mount->pid()) + "/task";
  pid_t target = -1;
  // The lease threads start right after the mount appears; wait until one is there.
  WaitFor(
      [&] {
        std::unique_ptr<DIR, int (*)(DIR*)> dir(opendir(tasks.c_str()), closedir);
        for (dirent* entry; dir && (entry = readdir(dir.get()));) {
          const pid_t tid = static_cast<pid_t>(atoi(entry->d_name));
          if (tid <= 0 || tid == mount->pid()) continue;
          std::ifstream status(tasks + "/" + entry->d_name + "/status");
          for (std::string line; std::getline(status, line);) {
            if (line.rfind("SigBlk:", 0) != 0) continue;
            const unsigned long long blocked = std::stoull(line.substr(7), nullptr, 16);
            if (!(blocked & (1ULL << (SIGTERM - 1)))) target = tid;
          }
          if (target > 0) return true;
        }
        return false;
      },
      5s);
  ASSERT_GT(target, 0) << "no thread besides the main one takes SIGTERM; nothing to test";
  ASSERT_EQ(syscall(SYS_tgkill, mount->pid(), target, SIGTERM), 0) << strerror(errno);
  EXPECT_TRUE(WaitFor([&] { return !IsFuseMounted(mountpoint.path()); }, 10s))
      << "SIGTERM taken by thread " << target << " did not stop the daemon";
  EXPECT_TRUE(mount->Stop());
}

TEST(MountHarness, DaemonDiesWithTheProcessThatStartedIt) {
  TempDir source, mountpoint;
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(fds[0]);
    // Start a mount and "crash" without stopping it.
    auto mount = LeasefsMount::Start(source.path(), mountpoint.path());
    const pid_t daemon = mount ? mount->pid() : -1;
    const std::string log_path = mount ? mount->log_path() : "";
    (void)!write(fds[1], &daemon, sizeof(daemon));
    (void)!write(fds[1], log_path.data(), log_path.size());
    (void)mount.release();
    _exit(0);
  }
  close(fds[1]);
  pid_t daemon = -1;
  ASSERT_EQ(read(fds[0], &daemon, sizeof(daemon)), static_cast<ssize_t>(sizeof(daemon)));
  std::string log_path;
  char buf[512];
  for (ssize_t n; (n = read(fds[0], buf, sizeof(buf))) > 0;) log_path.append(buf, n);
  close(fds[0]);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_GT(daemon, 0) << "the child could not start a mount";
  EXPECT_TRUE(WaitFor([&] { return !IsFuseMounted(mountpoint.path()); }, 10s))
      << "the orphaned daemon did not unmount";
  EXPECT_TRUE(WaitFor([&] { return !Alive(daemon); }, 10s))
      << "the orphaned daemon (pid " << daemon << ") is still running";
  if (IsFuseMounted(mountpoint.path())) {  // do not leave it behind even when the check failed
    kill(daemon, SIGKILL);
    const std::string cmd = "fusermount3 -u -z '" + mountpoint.path() + "'";
    (void)!system(cmd.c_str());
  }
  if (!log_path.empty()) unlink(log_path.c_str());
}

}  // namespace
}  // namespace leasefs::testing
