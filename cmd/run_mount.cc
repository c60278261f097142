#include "run_mount.h"

#include <fcntl.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/syslog_sink.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <syslog.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "leasefs/fuse/passthrough.h"
#include "leasefs/fuse/session.h"

namespace leasefs::cmd {
namespace {

void UseStderrLog(const std::string& level) {
  auto logger = spdlog::stderr_color_mt("leasefs");
  logger->set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ %v");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(level));
}

void UseSyslog(const std::string& level) {
  spdlog::drop_all();
  auto logger = spdlog::syslog_logger_mt("leasefs", "leasefs", LOG_PID, LOG_DAEMON);
  logger->set_pattern("%v");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(level));
}

// Where a daemon child sends its verdict; -1 in the foreground.
struct ReadyChannel {
  int fd = -1;
  void send(const std::string& message) {
    if (fd < 0) return;
    std::string line = message + "\n";
    ssize_t ignored = write(fd, line.data(), line.size());
    (void)ignored;
    close(fd);
    fd = -1;
  }
};

void Detach() {
  int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null_fd >= 0) {
    dup2(null_fd, STDIN_FILENO);
    dup2(null_fd, STDOUT_FILENO);
    dup2(null_fd, STDERR_FILENO);
    if (null_fd > STDERR_FILENO) close(null_fd);
  }
  if (chdir("/") < 0) spdlog::warn("chdir(/) failed: {}", std::strerror(errno));
}

int Serve(const MountOptions& o, ReadyChannel ready) {
  umask(0);  // the kernel has applied the caller's umask to every mode it sends us
  bool root = geteuid() == 0;
  fuse::PassthroughConfig config;
  config.source = o.source;
  config.entry_timeout = o.entry_timeout;
  config.attr_timeout = o.attr_timeout;
  config.negative_timeout = o.negative_timeout;
  config.create_as_caller = root;

  std::string error;
  auto fs = fuse::Passthrough::Open(config, {}, &error);
  if (!fs) {
    spdlog::error("{}", error);
    ready.send(error);
    return kExitFailure;
  }
  fuse::SessionConfig session_config;
  session_config.mountpoint = o.mountpoint;
  session_config.fsname = o.source;
  session_config.allow_other = o.allow_other.value_or(root);
  session_config.read_only = o.read_only;
  session_config.debug = o.fuse_debug;
  session_config.kernel_options = o.kernel_options;
  session_config.max_threads = o.threads;
  auto session = fuse::Session::Mount(*fs, session_config, &error);
  if (!session) {
    spdlog::error("{}", error);
    ready.send(error);
    return kExitFailure;
  }
  if (ready.fd >= 0) {
    UseSyslog(o.log_level);
    Detach();
    ready.send("ok");
  }
  // Under a Type=notify systemd unit: ready now (requests queue in the kernel until served).
  sd_notify(0, "READY=1");
  spdlog::info("serving {} on {}", o.source, o.mountpoint);
  int rc = session->run();
  sd_notify(0, "STOPPING=1");
  session.reset();  // unmount before saying we stopped
  spdlog::info("unmounted {}", o.mountpoint);
  return rc == 0 ? kExitOk : kExitFailure;
}

// Parent side of daemon mode: wait for the daemon's verdict and for the mount to answer.
int AwaitDaemon(int ready_fd, const std::string& mountpoint) {
  std::string message;
  char buffer[512];
  ssize_t n;
  while ((n = read(ready_fd, buffer, sizeof buffer)) != 0) {
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    message.append(buffer, static_cast<size_t>(n));
  }
  close(ready_fd);
  while (!message.empty() && message.back() == '\n') message.pop_back();
  if (message == "ok") {
    struct stat st;
    if (stat(mountpoint.c_str(), &st) == 0) return kExitOk;  // answered by the daemon
    std::fprintf(stderr, "leasefs: error: the mount on %s does not answer: %s\n",
                 mountpoint.c_str(), std::strerror(errno));
    return kExitFailure;
  }
  if (message.empty()) message = "the daemon exited before the mount was ready (see syslog)";
  std::fprintf(stderr, "leasefs: error: %s\n", message.c_str());
  return kExitFailure;
}

}  // namespace

int RunMount(const MountOptions& o) {
  if (o.foreground || o.fuse_debug) {
    UseStderrLog(o.log_level);
    return Serve(o, {});
  }
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) < 0) {
    std::fprintf(stderr, "leasefs: error: pipe: %s\n", std::strerror(errno));
    return kExitFailure;
  }
  std::fflush(nullptr);
  pid_t child = fork();
  if (child < 0) {
    std::fprintf(stderr, "leasefs: error: fork: %s\n", std::strerror(errno));
    return kExitFailure;
  }
  if (child > 0) {
    close(pipe_fds[1]);
    waitpid(child, nullptr, 0);  // the intermediate process exits at once
    return AwaitDaemon(pipe_fds[0], o.mountpoint);
  }
  // Intermediate process: new session, then fork again so the daemon is not a session leader
  // and is reparented to init (no zombie left with whoever ran `leasefs mount`).
  close(pipe_fds[0]);
  setsid();
  pid_t daemon = fork();
  if (daemon != 0) _exit(daemon < 0 ? kExitFailure : kExitOk);
  UseStderrLog(o.log_level);  // until detached, errors still reach the terminal
  return Serve(o, ReadyChannel{pipe_fds[1]});
}

}  // namespace leasefs::cmd
