// session.cc — libfuse session lifecycle: argument vector, mount, multithreaded loop, unmount.
#include "leasefs/fuse/session.h"

#include <fuse_lowlevel.h>
#include <spdlog/spdlog.h>

#include <csignal>
#include <cstdarg>
#include <cstdio>
#include <mutex>
#include <set>

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
  if (fuse_set_signal_handlers(session->session_) != 0) {
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
  fuse_loop_config* loop = fuse_loop_cfg_create();
  fuse_loop_cfg_set_clone_fd(loop, config_.clone_fd ? 1 : 0);
  fuse_loop_cfg_set_max_threads(loop, config_.max_threads);
  int rc = fuse_session_loop_mt(session_, loop);
  fuse_loop_cfg_destroy(loop);
  // libfuse's signal handler records the signal number as the session's "error".
  if (rc == SIGTERM || rc == SIGINT || rc == SIGHUP) {
    spdlog::info("stopping on signal {}", rc);
    return 0;
  }
  return rc;
}

Session::~Session() {
  if (!session_) return;
  if (mounted_) fuse_session_unmount(session_);
  if (signals_installed_) fuse_remove_signal_handlers(session_);
  fuse_session_destroy(session_);
}

}  // namespace leasefs::fuse
