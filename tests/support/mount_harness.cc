/*
 * mount_harness.cc: implementation of the test harness that runs `leasefs mount -f` daemons.
 *
 * Process handling: the daemon is a direct child (fork + execv), so waitpid() gives its exit
 * status. The child sets PR_SET_PDEATHSIG(SIGTERM) and then re-checks its parent, closing the race
 * where the parent died between fork and prctl. All waits are polls of a condition against a
 * deadline (mountinfo, waitpid(WNOHANG)); nothing sleeps a fixed time hoping for a state change.
 */
#include "mount_harness.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace leasefs::testing {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr auto kMountTimeout = 10s;
constexpr auto kExitTimeout = 10s;
constexpr auto kCommandTimeout = 10s;
constexpr auto kPollInterval = 10ms;
constexpr size_t kLogTailBytes = 64 * 1024;

std::string TmpRoot() {
  const char* tmp = getenv("TMPDIR");
  return (tmp != nullptr && tmp[0] == '/') ? std::string(tmp) : std::string("/tmp");
}

std::string ErrnoText(int err) {
  return std::string(strerrorname_np(err) ? strerrorname_np(err) : "E?") + " (" + strerror(err) +
         ")";
}

std::string ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// Decodes the \ooo escapes /proc/self/mountinfo uses for space, tab, newline and backslash.
std::string UnescapeMountinfo(const std::string& field) {
  std::string out;
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size()) {
      const char a = field[i + 1], b = field[i + 2], c = field[i + 3];
      if (a >= '0' && a <= '7' && b >= '0' && b <= '7' && c >= '0' && c <= '7') {
        out.push_back(static_cast<char>((a - '0') * 64 + (b - '0') * 8 + (c - '0')));
        i += 3;
        continue;
      }
    }
    out.push_back(field[i]);
  }
  return out;
}

// The fstype of the topmost mount on `real_mountpoint`, or "" if nothing is mounted there.
std::string TopMountFstype(const std::string& real_mountpoint) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line, fstype;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string id, parent, devno, root, mount_point, token;
    if (!(fields >> id >> parent >> devno >> root >> mount_point)) continue;
    // Skip mount options and optional fields up to the "-" separator.
    bool separator = false;
    while (fields >> token) {
      if (token == "-") {
        separator = true;
        break;
      }
    }
    std::string type;
    if (!separator || !(fields >> type)) continue;
    if (UnescapeMountinfo(mount_point) == real_mountpoint) fstype = type;  // later lines are on top
  }
  return fstype;
}

bool IsFuseType(const std::string& fstype) {
  return fstype == "fuse" || fstype.rfind("fuse.", 0) == 0;
}

std::string RealPath(const std::string& path) {
  char resolved[PATH_MAX];
  if (realpath(path.c_str(), resolved) == nullptr) return path;
  return resolved;
}

std::string DescribeWaitStatus(int status) {
  std::ostringstream out;
  if (WIFEXITED(status)) {
    out << "exited with status " << WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    const char* name = sigabbrev_np(WTERMSIG(status));
    out << "killed by signal " << WTERMSIG(status) << " (SIG" << (name ? name : "?") << ")";
  } else {
    out << "wait status " << status;
  }
  return out.str();
}

// The log, or its last kLogTailBytes with a note saying so.
std::string LogTail(const std::string& text) {
  if (text.size() <= kLogTailBytes) return text;
  return "[... first " + std::to_string(text.size() - kLogTailBytes) + " bytes omitted ...]\n" +
         text.substr(text.size() - kLogTailBytes);
}

struct CommandResult {
  int status = -1;  // raw wait status, -1 if the command could not be run
  std::string output;
};

// Runs argv[0] (looked up in PATH) with stdout+stderr captured, bounded by kCommandTimeout.
CommandResult RunCommand(const std::vector<std::string>& args) {
  CommandResult result;
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) {
    result.output = "pipe2: " + ErrnoText(errno);
    return result;
  }
  const int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  const pid_t pid = fork();
  if (pid == 0) {
    if (null_fd >= 0) dup2(null_fd, 0);
    dup2(pipe_fds[1], 1);
    dup2(pipe_fds[1], 2);
    execvp(argv[0], argv.data());
    static const char kMsg[] = "mount_harness: execvp failed\n";
    (void)!write(2, kMsg, sizeof(kMsg) - 1);
    _exit(127);
  }
  if (null_fd >= 0) close(null_fd);
  close(pipe_fds[1]);
  if (pid < 0) {
    close(pipe_fds[0]);
    result.output = "fork: " + ErrnoText(errno);
    return result;
  }
  const auto deadline = Clock::now() + kCommandTimeout;
  bool timed_out = false;
  char buf[4096];
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      timed_out = true;
      break;
    }
    pollfd pfd{pipe_fds[0], POLLIN, 0};
    const int ready = poll(&pfd, 1, static_cast<int>(left));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) continue;  // timeout is detected at the top of the loop
    const ssize_t n = read(pipe_fds[0], buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    result.output.append(buf, static_cast<size_t>(n));
  }
  close(pipe_fds[0]);
  if (timed_out) {
    kill(pid, SIGKILL);
    result.output += "\n[mount_harness: command timed out and was killed]";
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  result.status = status;
  return result;
}

std::string CommandLine(const std::vector<std::string>& args) {
  std::string out;
  for (const auto& a : args) out += (out.empty() ? "" : " ") + a;
  return out;
}

// Removes everything below the directory open as `dir_fd` that lives on device `dev`.
// Returns false if anything could not be removed.
bool RemoveContents(int dir_fd, dev_t dev) {
  DIR* dir = fdopendir(dir_fd);
  if (dir == nullptr) {
    close(dir_fd);
    return false;
  }
  bool ok = true;
  std::vector<std::string> names;
  while (dirent* entry = readdir(dir)) {
    const std::string name = entry->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  const int fd = dirfd(dir);
  for (const auto& name : names) {
    struct stat st;
    if (fstatat(fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      ok = false;
      continue;
    }
    if (S_ISDIR(st.st_mode)) {
      if (st.st_dev != dev) {  // something is mounted here; never descend into it
        ok = false;
        continue;
      }
      fchmodat(fd, name.c_str(), 0700, 0);  // make sure we can read it even as non-root
      const int child = openat(fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (child < 0 || !RemoveContents(child, dev)) ok = false;
      if (unlinkat(fd, name.c_str(), AT_REMOVEDIR) != 0) ok = false;
    } else if (unlinkat(fd, name.c_str(), 0) != 0) {
      ok = false;
    }
  }
  closedir(dir);
  return ok;
}

}  // namespace

TempDir::TempDir() {
  std::string tmpl = TmpRoot() + "/leasefs-test-XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) {
    throw std::runtime_error("TempDir: mkdtemp(" + tmpl + "): " + ErrnoText(errno));
  }
  path_ = tmpl;
  if (chmod(path_.c_str(), 0755) != 0) {
    throw std::runtime_error("TempDir: chmod(" + path_ + "): " + ErrnoText(errno));
  }
}

TempDir::~TempDir() {
  if (path_.empty()) return;
  struct stat st;
  if (lstat(path_.c_str(), &st) != 0) return;
  bool ok = false;
  const int fd = open(path_.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd >= 0) ok = RemoveContents(fd, st.st_dev);
  if (rmdir(path_.c_str()) != 0) ok = false;
  if (!ok) fprintf(stderr, "mount_harness: could not fully remove %s\n", path_.c_str());
}

std::string LeasefsBinary() {
  const char* bin = getenv("LEASEFS_BIN");
  if (bin == nullptr || bin[0] == '\0') {
    ADD_FAILURE() << "LEASEFS_BIN is not set. Run this test through ctest (which sets it to the "
                     "built leasefs binary) or export LEASEFS_BIN=/path/to/leasefs.";
    return "";
  }
  if (access(bin, X_OK) != 0) {
    ADD_FAILURE() << "LEASEFS_BIN=" << bin << " is not an executable file: " << ErrnoText(errno);
    return "";
  }
  return bin;
}

bool IsFuseMounted(const std::string& mountpoint) {
  return IsFuseType(TopMountFstype(RealPath(mountpoint)));
}

std::unique_ptr<LeasefsMount> LeasefsMount::Start(const std::string& source,
                                                  const std::string& mountpoint,
                                                  std::vector<std::string> extra_args) {
  const std::string bin = LeasefsBinary();
  if (bin.empty()) return nullptr;
  char resolved[PATH_MAX];
  if (realpath(mountpoint.c_str(), resolved) == nullptr) {
    ADD_FAILURE() << "mountpoint " << mountpoint << ": " << ErrnoText(errno);
    return nullptr;
  }
  if (IsFuseType(TopMountFstype(resolved))) {
    ADD_FAILURE() << "mountpoint " << resolved << " already has a FUSE mount on it";
    return nullptr;
  }

  std::unique_ptr<LeasefsMount> mount(new LeasefsMount());
  mount->source_ = source;
  mount->mountpoint_ = resolved;
  std::string log_tmpl = TmpRoot() + "/leasefs-mount-XXXXXX.log";
  const int log_fd = mkostemps(log_tmpl.data(), 4, O_CLOEXEC);
  if (log_fd < 0) {
    ADD_FAILURE() << "cannot create daemon log " << log_tmpl << ": " << ErrnoText(errno);
    mount->stopped_ = true;
    return nullptr;
  }
  mount->log_path_ = log_tmpl;

  std::vector<std::string> args = {bin, "mount", "-f"};
  for (auto& a : extra_args) args.push_back(std::move(a));
  args.push_back(source);
  args.push_back(mountpoint);
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);

  const int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid == 0) {
    // Only async-signal-safe calls from here on.
    if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0) _exit(126);
    if (getppid() != parent) _exit(126);  // the parent died before prctl took effect
    if (null_fd >= 0) dup2(null_fd, 0);
    dup2(log_fd, 1);
    dup2(log_fd, 2);
    close_range(3, ~0U, 0);
    sigset_t empty;
    sigemptyset(&empty);
    sigprocmask(SIG_SETMASK, &empty, nullptr);
    execv(argv[0], argv.data());
    static const char kMsg[] = "mount_harness: execv of the leasefs binary failed\n";
    (void)!write(2, kMsg, sizeof(kMsg) - 1);
    _exit(127);
  }
  if (null_fd >= 0) close(null_fd);
  close(log_fd);
  if (pid < 0) {
    ADD_FAILURE() << "fork: " << ErrnoText(errno);
    mount->stopped_ = true;
    return nullptr;
  }
  mount->pid_ = pid;

  const auto deadline = Clock::now() + kMountTimeout;
  std::string problem;
  for (;;) {
    if (IsFuseType(TopMountFstype(mount->mountpoint_))) return mount;
    int status = 0;
    const pid_t w = waitpid(pid, &status, WNOHANG);
    if (w == pid) {
      mount->reaped_ = true;
      mount->wait_status_ = status;
      problem = "daemon " + DescribeWaitStatus(status) + " before the mount appeared";
      break;
    }
    if (Clock::now() >= deadline) {
      problem = "no FUSE mount appeared on " + mount->mountpoint_ + " within 10 s";
      break;
    }
    std::this_thread::sleep_for(kPollInterval);
  }
  // Stop() cleans up (kills, unmounts); its message carries the log if it failed.
  const ::testing::AssertionResult cleanup = mount->Stop();
  std::string details;
  if (cleanup) {
    details = "\n--- daemon log ---\n" + LogTail(mount->log()) + "\n--- end of daemon log ---";
  } else {
    details = std::string("\ncleanup: ") + cleanup.message();
  }
  ADD_FAILURE() << "LeasefsMount::Start(" << CommandLine(args) << "): " << problem << details;
  unlink(mount->log_path_.c_str());  // its contents are in the failure message
  return nullptr;
}

std::string LeasefsMount::log() const {
  return log_path_.empty() ? std::string() : ReadWholeFile(log_path_);
}

::testing::AssertionResult LeasefsMount::Stop() {
  if (stopped_) {
    return stop_ok_ ? ::testing::AssertionSuccess()
                    : ::testing::AssertionFailure() << stop_message_;
  }
  stopped_ = true;
  std::vector<std::string> problems;
  std::vector<std::string> notes;

  // 1. Unmount; the daemon exits when its session ends.
  if (IsFuseType(TopMountFstype(mountpoint_))) {
    bool unmounted = false;
    for (int attempt = 0; attempt < 5; ++attempt) {
      const CommandResult r = RunCommand({"fusermount3", "-u", mountpoint_});
      if ((r.status == 0) || !IsFuseType(TopMountFstype(mountpoint_))) {
        unmounted = true;
        break;
      }
      if (r.output.find("busy") == std::string::npos) {
        problems.push_back("fusermount3 -u " + mountpoint_ + " failed: " + r.output);
        break;
      }
      notes.push_back("fusermount3 -u: busy (attempt " + std::to_string(attempt + 1) + ")");
      std::this_thread::sleep_for(100ms * (attempt + 1));  // back off before retrying the unmount
    }
    if (!unmounted) {
      const CommandResult r = RunCommand({"fusermount3", "-u", "-z", mountpoint_});
      notes.push_back("lazy unmount (fusermount3 -u -z): " +
                      (r.status == 0 ? std::string("ok") : r.output));
    }
  }

  // 2. Reap the daemon, bounded.
  if (pid_ > 0 && !reaped_) {
    const auto deadline = Clock::now() + kExitTimeout;
    for (;;) {
      int status = 0;
      const pid_t w = waitpid(pid_, &status, WNOHANG);
      if (w == pid_) {
        reaped_ = true;
        wait_status_ = status;
        break;
      }
      if (w < 0 && errno != EINTR) {
        problems.push_back("waitpid: " + ErrnoText(errno));
        break;
      }
      if (Clock::now() >= deadline) {
        kill(pid_, SIGKILL);
        while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
        }
        reaped_ = true;
        wait_status_ = status;
        problems.push_back("daemon did not exit within 10 s of the unmount; sent SIGKILL");
        break;
      }
      std::this_thread::sleep_for(kPollInterval);
    }
  }
  if (reaped_ && !(WIFEXITED(wait_status_) && WEXITSTATUS(wait_status_) == 0)) {
    problems.push_back("daemon " + DescribeWaitStatus(wait_status_) + " (expected exit status 0)");
  }

  // 3. Nothing of ours may stay mounted.
  if (IsFuseType(TopMountFstype(mountpoint_))) {
    problems.push_back(mountpoint_ + " was still mounted after the daemon exited");
    RunCommand({"fusermount3", "-u", "-z", mountpoint_});
  }

  // 4. Sanitizer reports in the log.
  const std::string text = log();
  for (const char* marker :
       {"ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer", "WARNING: ThreadSanitizer"}) {
    if (text.find(marker) != std::string::npos) {
      problems.push_back(std::string("daemon log contains a sanitizer report (\"") + marker +
                         "\")");
    }
  }

  stop_ok_ = problems.empty();
  if (stop_ok_) {
    if (!log_path_.empty()) unlink(log_path_.c_str());
    return ::testing::AssertionSuccess();
  }
  std::ostringstream msg;
  msg << "leasefs mount of " << source_ << " on " << mountpoint_ << " (pid " << pid_ << "):";
  for (const auto& p : problems) msg << "\n  - " << p;
  for (const auto& n : notes) msg << "\n  note: " << n;
  msg << "\n--- daemon log (" << log_path_ << ", kept) ---\n"
      << LogTail(text) << "\n--- end of daemon log ---";
  stop_message_ = msg.str();
  return ::testing::AssertionFailure() << stop_message_;
}

LeasefsMount::~LeasefsMount() {
  if (stopped_) return;
  try {
    const ::testing::AssertionResult result = Stop();
    if (!result) ADD_FAILURE() << "stopping the mount at destruction: " << result.message();
  } catch (...) {
    fprintf(stderr, "mount_harness: exception while stopping the mount of %s\n",
            mountpoint_.c_str());
  }
}

}  // namespace leasefs::testing
