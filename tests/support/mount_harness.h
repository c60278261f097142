/*
 * mount_harness: run a real `leasefs mount -f` daemon from a GoogleTest test.
 *
 * Contract:
 *   - TempDir is a fresh directory (mode 0755, so other users can traverse it) that is removed
 *     recursively on destruction. Removal never crosses into another filesystem, so a mount left
 *     inside it is never followed.
 *   - LeasefsBinary() is $LEASEFS_BIN; if unset or not executable the current test gets a failure
 *     that says how to set it, and "" is returned.
 *   - LeasefsMount::Start forks `LEASEFS_BIN mount -f [extra_args...] SOURCE MOUNTPOINT` with
 *     stdout+stderr in a log file and PR_SET_PDEATHSIG(SIGTERM), so the daemon (which unmounts
 * itself on SIGTERM) dies with the thread that started it, even if the test crashes. Call Start
 * from a thread that outlives the mount (normally the test's main thread). Start returns only once
 *     /proc/self/mountinfo shows a "fuse"/"fuse.*" mount on MOUNTPOINT (bounded wait); on failure
 * it adds a test failure carrying the daemon log, cleans up and returns nullptr.
 *   - Stop unmounts (fusermount3 -u, retried while busy, then lazily), reaps the daemon (bounded,
 *     then SIGKILL) and fails if the exit status is not 0, the mount is still there, or the log
 *     contains a sanitizer report. The destructor calls Stop if needed and reports its failure.
 */
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

namespace leasefs::testing {

// A temporary directory, mode 0755, removed recursively on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Path of the leasefs binary: $LEASEFS_BIN, else a test failure (with instructions) and "".
std::string LeasefsBinary();

// True if /proc/self/mountinfo lists a mount of fstype "fuse" or "fuse.*" on `mountpoint`
// (compared after realpath()).
bool IsFuseMounted(const std::string& mountpoint);

// One running `leasefs mount -f` daemon.
class LeasefsMount {
 public:
  static std::unique_ptr<LeasefsMount> Start(const std::string& source,
                                             const std::string& mountpoint,
                                             std::vector<std::string> extra_args = {});

  // Unmounts, reaps the daemon and checks its exit status and log. Idempotent: a second call
  // returns the first call's result.
  ::testing::AssertionResult Stop();

  // Calls Stop() if it has not been called; a failure becomes a non-fatal test failure.
  ~LeasefsMount();

  LeasefsMount(const LeasefsMount&) = delete;
  LeasefsMount& operator=(const LeasefsMount&) = delete;

  const std::string& mountpoint() const { return mountpoint_; }
  const std::string& source() const { return source_; }
  pid_t pid() const { return pid_; }
  const std::string& log_path() const { return log_path_; }
  // The daemon's combined stdout+stderr so far.
  std::string log() const;

 private:
  LeasefsMount() = default;

  std::string source_;
  std::string mountpoint_;  // realpath of the mountpoint
  std::string log_path_;
  pid_t pid_ = -1;
  bool reaped_ = false;
  int wait_status_ = 0;
  bool stopped_ = false;
  bool stop_ok_ = false;
  std::string stop_message_;
};

}  // namespace leasefs::testing
