// leasefs/fuse/session.h — mounting a Passthrough and serving it until it is unmounted.
//
// Contract:
//   * Mount() mounts the filesystem and returns once the kernel has the mount; requests queue in
//     the kernel until run() serves them. On failure it returns nullptr and one line in *error.
//   * run() serves requests on a pool of worker threads until the filesystem is unmounted
//     (umount, fusermount3 -u) or SIGTERM, SIGINT or SIGHUP arrives; then it returns 0 (also when
//     stopped by one of those signals), or the error of the loop. The session unmounts (if still
//     mounted) on destruction.
//   * Requests are taken from the kernel one at a time, in the kernel's order, and handled
//     concurrently, except that a READ is handled only after every WRITE, truncation, fallocate
//     or copy that the kernel sent before it on the same bytes (src/request_order.h says why).
//   * libfuse's own diagnostics are routed to spdlog; the last one is kept for error messages.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "leasefs/fuse/passthrough.h"

namespace leasefs::fuse {

struct SessionConfig {
  std::string mountpoint;
  std::string fsname;        // the "source" column of /proc/mounts
  bool allow_other = false;  // other users may access the mount (needs root or user_allow_other)
  bool read_only = false;
  bool debug = false;                       // libfuse request tracing on stderr
  std::vector<std::string> kernel_options;  // passed through: nosuid, nodev, noexec, noatime, ...
  unsigned max_threads = 16;
};

class Session {
 public:
  static std::unique_ptr<Session> Mount(Passthrough& fs, const SessionConfig& config,
                                        std::string* error);
  ~Session();
  int run();

  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

 private:
  Session() = default;
  fuse_session* session_ = nullptr;
  bool mounted_ = false;
  bool signals_installed_ = false;
  SessionConfig config_;
};

// Mount options libfuse and the kernel accept for a leasefs mount (for the command's -o parsing).
bool IsKernelMountOption(const std::string& key);

}  // namespace leasefs::fuse
