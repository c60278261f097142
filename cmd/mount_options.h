// mount_options.h — what `leasefs mount` accepts, in all three spellings:
//
//   leasefs mount --attr-timeout 2 SOURCE MOUNTPOINT          (long options)
//   leasefs mount -o attr_timeout=2,noatime SOURCE MOUNTPOINT  (every long option as -o key=value)
//   mount -t fuse.leasefs SOURCE MOUNTPOINT -o attr_timeout=2  (mount(8) runs mount.leasefs)
//
// Contract: parsing never exits the process and never prints; it returns a MountOptions or one
// line saying what is wrong. -o keys are the long option names with '_' for '-'; besides those it
// accepts the kernel's mount flags (passed through) and mount(8)'s own bookkeeping options
// (_netdev, nofail, noauto, x-systemd.*, ...) which it ignores. Anything else is an error.
#pragma once

#include <CLI/CLI.hpp>
#include <optional>
#include <string>
#include <vector>

namespace leasefs::cmd {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;  // the mount could not be made or served
inline constexpr int kExitUsage = 2;    // bad command line

struct MountOptions {
  std::string source;
  std::string mountpoint;
  bool foreground = false;
  std::optional<bool> allow_other;  // default: on when running as root
  bool read_only = false;
  bool acl = false;
  double entry_timeout = 1.0;
  double attr_timeout = 1.0;
  double negative_timeout = 0.0;
  unsigned threads = 16;
  std::string log_level = "info";
  bool fuse_debug = false;
  std::vector<std::string> kernel_options;
  std::string lease_store =
      "local";                  // local[:PATH] | none | dynamodb://TABLE?region=R[&endpoint=U]
  std::string lease_namespace;  // default: SOURCE's path (local) or its volume id (dynamodb)
  double lease_duration = 10;
  double storage_cache_wait = 0;  // LeaseConfig::storage_cache_wait
  double lock_hold = 0;           // HostLocks' lock_hold (HELD F_SETLK)
  // HostLocks' local_lock_hold (HELD F_SETLK); unset: 0.02 s with the local store, 0 with
  // DynamoDB (see run_mount.cc).
  std::optional<double> local_lock_hold;
  // Accepted now, implemented by later work; CheckMountRequest rejects it "not yet supported".
  std::string replica;
  std::string metrics_addr;
};

// Declares the options and positionals of `leasefs mount` on `command`, bound to `options`.
void AddMountOptions(CLI::App& command, MountOptions& options);

// Rewrites every "-o LIST" (and "-oLIST") in `args` — the arguments after "mount" — into the long
// options of `command`, collecting kernel flags into options.kernel_options. With `sloppy`, unknown
// -o keys are ignored instead of rejected. Returns an error line, or nullopt.
std::optional<std::string> ExpandDashO(const CLI::App& command, std::vector<std::string>& args,
                                       MountOptions& options, bool sloppy = false);

// mount.leasefs SOURCE MOUNTPOINT [-sfnv] [-o LIST] [-t TYPE]: the mount(8) helper convention.
struct HelperInvocation {
  std::vector<std::string> mount_args;  // arguments for `leasefs mount`
  bool fake = false;                    // -f: do everything but mount
  bool sloppy = false;                  // -s: ignore unknown options
};
std::optional<std::string> ParseHelperArgs(const std::vector<std::string>& argv,
                                           HelperInvocation* out);

}  // namespace leasefs::cmd
