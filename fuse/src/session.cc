// session.cc — libfuse session lifecycle: argument vector, mount, multithreaded loop, unmount.
#include "leasefs/fuse/session.h"

#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <poll.h>
#include <pthread.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <limits>
#include <list>
#include <mutex>
#include <set>
#include <thread>

#include "request_order.h"

namespace leasefs::fuse {
namespace {

std::mutex last_fuse_message_mutex;
std::string last_fuse_message;

void route_fuse_log(enum fuse_log_level level, const char* format, va_list ap) {
  char text[1024];
  std::vsnprintf(text, sizeof text, format, ap);
  std::string message(text);
  while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) message.pop_back();
  if (message.rfind("fuse: ", 0) == 0) message.erase(0, 6);
  {
    std::lock_guard<std::mutex> guard(last_fuse_message_mutex);
    last_fuse_message = message;
  }
  if (level <= FUSE_LOG_ERR) {
    spdlog::debug("libfuse: {}", message);  // surfaced to the user through the caller's error
  } else if (level <= FUSE_LOG_WARNING) {
    spdlog::warn("libfuse: {}", message);
  } else {
    spdlog::debug("libfuse: {}", message);
  }
}

std::string take_fuse_message() {
  std::lock_guard<std::mutex> guard(last_fuse_message_mutex);
  std::string message = std::move(last_fuse_message);
  last_fuse_message.clear();
  return message;
}

// The same characters that would split an -o list must not reach libfuse unescaped.
std::string escape_option_value(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == ',' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

// Termination signals. libfuse's own handlers only mark the session exited, which a loop asleep
// in poll() does not see when the signal is taken by another thread (every thread that does not
// block it may take it: the lease threads do not). These handlers also make signal_fd readable,
// which the loop waits on. One session per process has them, as with libfuse's.
constexpr int kTerminationSignals[] = {SIGTERM, SIGINT, SIGHUP};
std::atomic<fuse_session*> signalled_session{nullptr};
std::atomic<int> termination_signal{0};  // the first one that arrived, 0 if none
int signal_fd = -1;                      // eventfd, created with the first session
struct sigaction previous_actions[std::size(kTerminationSignals) + 1];  // + SIGPIPE

void on_termination_signal(int sig) {
  const int saved_errno = errno;
  int none = 0;
  termination_signal.compare_exchange_strong(none, sig);
  if (fuse_session* session = signalled_session.load()) fuse_session_exit(session);
  const uint64_t one = 1;
  (void)!write(signal_fd, &one, sizeof one);
  errno = saved_errno;
}

bool install_signal_handlers(fuse_session* session) {
  if (signal_fd < 0) signal_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  fuse_session* none = nullptr;
  if (signal_fd < 0 || !signalled_session.compare_exchange_strong(none, session)) return false;
  struct sigaction action {};
  action.sa_handler = on_termination_signal;
  sigemptyset(&action.sa_mask);
  size_t i = 0;
  for (int sig : kTerminationSignals) sigaction(sig, &action, &previous_actions[i++]);
  action.sa_handler = SIG_IGN;  // a peer closing a socket must not kill the daemon
  sigaction(SIGPIPE, &action, &previous_actions[i]);
  return true;
}

void remove_signal_handlers() {
  size_t i = 0;
  for (int sig : kTerminationSignals) sigaction(sig, &previous_actions[i++], nullptr);
  sigaction(SIGPIPE, &previous_actions[i], nullptr);
  signalled_session.store(nullptr);
}

// The multithreaded request loop. libfuse's fuse_session_loop_mt() lets every idle worker read
// /dev/fuse at once, so the order in which requests reach their handlers is not the order in
// which the kernel sent them; a READ sent after a WRITE can then be answered from the file as it
// was before that WRITE, and the kernel keeps the stale page (request_order.h, fuse/README.md).
// Here one worker at a time reads a request and admits it to a RequestOrder before the next
// worker may read; requests are then processed concurrently, except that a READ waits for the
// WRITEs (and truncations, fallocates, copies) the kernel sent before it on the same bytes.
// Workers are started as needed, up to max_threads, as libfuse does.
class Loop {
 public:
  Loop(fuse_session* session, unsigned max_threads)
      : session_(session), max_threads_(max_threads ? max_threads : 1) {}

  // Serves until the session ends (unmount, or a termination signal). Returns 0,
  // or the negative errno that stopped it.
  int run() {
    stop_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    done_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (stop_fd_ < 0 || done_fd_ < 0) return -errno;
    // Non-blocking reads: a worker with nothing to read sleeps in poll(), where a stop wakes it
    // (a read() would sleep until the next request).
    int fd = fuse_session_fd(session_);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);

    {
      std::lock_guard<std::mutex> guard(state_mutex_);
      start_worker_locked();
    }
    // A termination signal may be handled on any thread of the process (the lease threads do
    // not block it); the handler marks the session exited and makes signal_fd readable, so this
    // wait ends whichever thread took it and however it races with the check above the poll.
    for (;;) {
      if (fuse_session_exited(session_)) break;
      pollfd fds[2] = {{done_fd_, POLLIN, 0}, {signal_fd, POLLIN, 0}};
      if (poll(fds, 2, -1) < 0 && errno != EINTR) {
        error_ = -errno;
        break;
      }
      if (fds[0].revents || fds[1].revents) break;
    }
    stopped_by_signal_ = termination_signal.load() != 0;
    uint64_t one = 1;
    (void)!write(stop_fd_, &one, sizeof one);
    std::list<std::thread> threads;
    {
      std::lock_guard<std::mutex> guard(state_mutex_);
      stopping_ = true;
      threads.swap(threads_);
    }
    for (auto& t : threads) t.join();
    close(stop_fd_);
    close(done_fd_);
    return error_;
  }

  // run() ended because SIGTERM, SIGINT or SIGHUP arrived.
  bool stopped_by_signal() const { return stopped_by_signal_; }

 private:
  static constexpr int kStop = std::numeric_limits<int>::min();

  void start_worker_locked() {
    if (stopping_) return;
    // The new thread inherits this mask: termination signals stay blocked in every worker.
    sigset_t all, previous;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &previous);
    threads_.emplace_back([this] { worker(); });
    pthread_sigmask(SIG_SETMASK, &previous, nullptr);
    idle_++;
  }

  // Under receive_mutex_: waits for a request or the stop. kStop, 0 when the session ended, a
  // negative errno, or the size of the request in *buf.
  int receive(fuse_buf* buf) {
    pollfd fds[2] = {{fuse_session_fd(session_), POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    for (;;) {
      if (fuse_session_exited(session_)) return kStop;
      int res = fuse_session_receive_buf(session_, buf);
      if (res == -EINTR) continue;
      if (res != -EAGAIN) return res;
      // Nothing queued: sleep until a request comes or run() stops the loop.
      if (poll(fds, 2, -1) < 0 && errno != EINTR) return -errno;
      if (fds[1].revents) return kStop;
    }
  }

  void worker() {
    fuse_buf buf;
    std::memset(&buf, 0, sizeof buf);
    for (;;) {
      RequestOrder::Ticket ticket;
      {
        std::lock_guard<std::mutex> receiving(receive_mutex_);
        int res = receive(&buf);
        if (res == kStop) break;
        if (res <= 0) {  // 0: unmounted (libfuse marked the session exited); else an error
          if (res < 0) {
            spdlog::error("reading /dev/fuse: {}", std::strerror(-res));
            error_ = res;
            fuse_session_exit(session_);
          }
          uint64_t one = 1;
          (void)!write(done_fd_, &one, sizeof one);
          break;
        }
        if (!(buf.flags & FUSE_BUF_IS_FD)) ticket = order_.admit(buf.mem, buf.size);
        std::lock_guard<std::mutex> guard(state_mutex_);
        if (--idle_ == 0 && threads_.size() < max_threads_) start_worker_locked();
      }
      order_.wait(ticket);
      fuse_session_process_buf(session_, &buf);
      order_.complete(ticket);
      std::lock_guard<std::mutex> guard(state_mutex_);
      idle_++;
    }
    std::free(buf.mem);
  }

  fuse_session* session_;
  unsigned max_threads_;
  RequestOrder order_;
  std::mutex receive_mutex_;  // one worker reads /dev/fuse and admits its request at a time
  std::mutex state_mutex_;    // threads_, idle_, stopping_
  std::list<std::thread> threads_;
  unsigned idle_ = 0;  // workers not processing a request
  bool stopping_ = false;
  bool stopped_by_signal_ = false;
  int error_ = 0;
  int stop_fd_ = -1;  // eventfd: readable once run() stops the workers
  int done_fd_ = -1;  // eventfd: a worker saw the session end
};

}  // namespace

bool IsKernelMountOption(const std::string& key) {
  static const std::set<std::string> options = {
      "suid",       "nosuid",   "dev",        "nodev",    "exec",        "noexec",      "atime",
      "noatime",    "diratime", "nodiratime", "relatime", "norelatime",  "strictatime", "lazytime",
      "nolazytime", "sync",     "async",      "dirsync",  "auto_unmount"};
  return options.count(key) > 0;
}

std::unique_ptr<Session> Session::Mount(Passthrough& fs, const SessionConfig& config,
                                        std::string* error) {
  fuse_set_log_func(route_fuse_log);
  std::string options =
      "fsname=" + escape_option_value(config.fsname) + ",subtype=leasefs,default_permissions";
  if (config.allow_other) options += ",allow_other";
  if (config.read_only) options += ",ro";
  for (const auto& option : config.kernel_options) options += "," + option;

  std::vector<std::string> argv_storage = {"leasefs", "-o", options};
  if (config.debug) argv_storage.push_back("-d");
  std::vector<char*> argv;
  for (auto& arg : argv_storage) argv.push_back(arg.data());
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());

  std::unique_ptr<Session> session(new Session);
  session->config_ = config;
  session->session_ = fuse_session_new(&args, &fs.operations(), sizeof(fuse_lowlevel_ops), &fs);
  fuse_opt_free_args(&args);  // fuse_session_new() parsed them into a copy it owns
  if (!session->session_) {
    *error = "cannot create FUSE session: " + take_fuse_message();
    return nullptr;
  }
  if (!install_signal_handlers(session->session_)) {
    *error = "cannot install signal handlers";
    return nullptr;
  }
  session->signals_installed_ = true;
  if (fuse_session_mount(session->session_, config.mountpoint.c_str()) != 0) {
    std::string cause = take_fuse_message();
    *error = "cannot mount on " + config.mountpoint + (cause.empty() ? "" : ": " + cause);
    return nullptr;
  }
  session->mounted_ = true;
  fs.attach_session(session->session_);
  return session;
}

int Session::run() {
  Loop loop(session_, config_.max_threads);
  int rc = loop.run();
  if (loop.stopped_by_signal()) spdlog::info("stopping on a signal");
  return rc;
}

Session::~Session() {
  if (!session_) return;
  if (mounted_) fuse_session_unmount(session_);
  if (signals_installed_) remove_signal_handlers();
  fuse_session_destroy(session_);
}

}  // namespace leasefs::fuse
