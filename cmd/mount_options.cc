#include "mount_options.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <set>

#include "leasefs/fuse/session.h"

namespace leasefs::cmd {
namespace {

// A day: longer kernel caches only hide other hosts' changes for longer.
constexpr double kMaxCacheSeconds = 86400;

// Options that mount(8), fstab and systemd use for their own bookkeeping; meaningless to us.
bool IsMountBookkeepingOption(const std::string& key) {
  static const std::set<std::string> keys = {
      "_netdev", "nofail",   "auto", "noauto",  "user",       "nouser", "users", "owner",
      "group",   "defaults", "rw",   "comment", "nobootwait", "bg",     "fg"};
  return keys.count(key) > 0 || key.rfind("x-", 0) == 0;
}

std::vector<std::string> SplitOptionList(const std::string& list) {
  std::vector<std::string> items;
  std::string current;
  for (size_t i = 0; i < list.size(); i++) {
    if (list[i] == '\\' && i + 1 < list.size()) {
      current.push_back(list[++i]);
    } else if (list[i] == ',') {
      if (!current.empty()) items.push_back(current);
      current.clear();
    } else {
      current.push_back(list[i]);
    }
  }
  if (!current.empty()) items.push_back(current);
  return items;
}

const CLI::Option* FindLongOption(const CLI::App& command, const std::string& name) {
  for (const CLI::Option* option : command.get_options()) {
    const auto& names = option->get_lnames();
    if (std::find(names.begin(), names.end(), name) != names.end()) return option;
  }
  return nullptr;
}

// One line for a number out of range, whatever the spelling: CLI11's own checks accept "nan"
// (every comparison with it is false) and answer a bad value with its full range written out.
std::string FormatNumber(double value) {
  char text[32];
  std::snprintf(text, sizeof text, "%g", value);
  return text;
}

// A number of seconds in [low, high]; the whole argument must be a finite number.
CLI::Validator Seconds(double low, double high) {
  return CLI::Validator(
      [low, high](std::string& value) -> std::string {
        char* end = nullptr;
        const double seconds = std::strtod(value.c_str(), &end);
        if (!value.empty() && end == value.c_str() + value.size() && std::isfinite(seconds) &&
            seconds >= low && seconds <= high) {
          return "";
        }
        return "must be a number of seconds from " + FormatNumber(low) + " to " +
               FormatNumber(high) + ", not '" + value + "'";
      },
      "SECONDS");
}

// A whole number in [low, high].
CLI::Validator Count(long low, long high) {
  return CLI::Validator(
      [low, high](std::string& value) -> std::string {
        char* end = nullptr;
        errno = 0;
        const long count = std::strtol(value.c_str(), &end, 10);
        if (!value.empty() && end == value.c_str() + value.size() && errno == 0 && count >= low &&
            count <= high) {
          return "";
        }
        return "must be a whole number from " + std::to_string(low) + " to " +
               std::to_string(high) + ", not '" + value + "'";
      },
      "N");
}

// HOST:PORT or [IPV6]:PORT; a bare PORT means loopback (metrics are for the host's own
// Prometheus agent unless an interface is named).
CLI::Validator MetricsAddress() {
  return CLI::Validator(
      [](std::string& value) -> std::string {
        std::string port = value;
        const bool bare = value.find(':') == std::string::npos;
        if (!bare) {
          const size_t colon = value.rfind(':');
          const bool bracketed = value.front() == '[' && colon > 0 && value[colon - 1] == ']';
          const std::string host = value.substr(0, colon);
          if (host.empty() || (!bracketed && host.find(':') != std::string::npos)) {
            return "must be PORT, HOST:PORT or [IPV6]:PORT, not '" + value + "'";
          }
          port = value.substr(colon + 1);
        }
        char* end = nullptr;
        const long number = std::strtol(port.c_str(), &end, 10);
        if (port.empty() || end != port.c_str() + port.size() || number < 1 || number > 65535) {
          return "must be PORT, HOST:PORT or [IPV6]:PORT with a port from 1 to 65535, not '" +
                 value + "'";
        }
        if (bare) value = "127.0.0.1:" + port;
        return "";
      },
      "[HOST:]PORT");
}

}  // namespace

void AddMountOptions(CLI::App& command, MountOptions& o) {
  command.add_option("source", o.source, "Directory to serve (the shared NFS/EFS directory)")
      ->required();
  command.add_option("mountpoint", o.mountpoint, "Where to mount it")->required();
  command.add_flag("-f,--foreground", o.foreground,
                   "Stay in the foreground and log to stderr (default: daemonize once mounted)");
  command.add_flag_function(
      "--allow-other", [&o](int64_t) { o.allow_other = true; },
      "Let other users access the mount (default when run as root)");
  command.add_flag_function(
      "--no-allow-other", [&o](int64_t) { o.allow_other = false; },
      "Only the mounting user may access the mount");
  command.add_flag("--ro,--read-only", o.read_only, "Mount read-only");
  command.add_flag("--acl", o.acl,
                   "Enforce POSIX ACLs stored on SOURCE (default: permissions are the mode bits)");
  command
      .add_option("--entry-timeout", o.entry_timeout, "Seconds the kernel may cache a name lookup")
      ->check(Seconds(0, kMaxCacheSeconds));
  command.add_option("--attr-timeout", o.attr_timeout, "Seconds the kernel may cache attributes")
      ->check(Seconds(0, kMaxCacheSeconds));
  command
      .add_option("--negative-timeout", o.negative_timeout,
                  "Seconds the kernel may cache a failed lookup")
      ->check(Seconds(0, kMaxCacheSeconds));
  command.add_option("--threads,--max-threads", o.threads, "Most FUSE worker threads")
      ->check(Count(1, 1024));
  command.add_option("--log-level", o.log_level, "trace, debug, info, warn, error or off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));
  command.add_flag("-d,--debug", o.fuse_debug, "Trace every FUSE request (implies -f)");
  command.add_option("--lease-store", o.lease_store,
                     "Where leases live: local[:PATH] (default, a SQLite file on local disk shared "
                     "by this machine's mounts), dynamodb://TABLE?region=R[&endpoint=URL] (hosts "
                     "on many machines), or none (locks only between this host's processes)");
  command.add_option("--namespace", o.lease_namespace,
                     "Name of this shared directory in the lease store, the same on every host "
                     "(default: SOURCE's path with local, the id in SOURCE/.leasefs-volume with "
                     "dynamodb)");
  command
      .add_option("--lease-duration", o.lease_duration,
                  "Lease duration L in seconds (default 10): a dead host's locks pass to "
                  "others after L")
      ->check(Seconds(1, 3600));
  command
      .add_option("--storage-cache-wait", o.storage_cache_wait,
                  "Seconds to wait after a writer died before locking its database, for storage "
                  "clients whose name cache cannot be refreshed (default 0: NFS and FUSE clients "
                  "are made to look again)")
      ->check(Seconds(0, 3600));
  command
      .add_option("--lock-hold", o.lock_hold,
                  "Seconds a lock request that waits for another host is held in the daemon "
                  "before SQLite is told busy (default 0: busy at once)")
      ->check(Seconds(0, 60));
  command
      .add_option("--local-lock-hold", o.local_lock_hold,
                  "Seconds a lock request that waits for another process on this host is held "
                  "in the daemon, and granted the moment that lock goes, before SQLite is told "
                  "busy (default 0.02 with the local lease store, 0 with DynamoDB; 0: busy at "
                  "once, as on a local disk)")
      ->check(Seconds(0, 60));
  command.add_option("--replica", o.replica, "S3 replica URL (not yet supported)");
  command
      .add_option("--metrics-addr", o.metrics_addr,
                  "Serve Prometheus metrics at http://HOST:PORT/metrics (a bare PORT: on "
                  "127.0.0.1 only)")
      ->transform(MetricsAddress());
}

std::optional<std::string> ExpandDashO(const CLI::App& command, std::vector<std::string>& args,
                                       MountOptions& options, bool sloppy) {
  std::vector<std::string> out;
  for (size_t i = 0; i < args.size(); i++) {
    std::string list;
    if (args[i] == "-o") {
      if (i + 1 >= args.size()) return "-o needs a list of options, e.g. -o allow_other,ro";
      list = args[++i];
    } else if (args[i].rfind("-o", 0) == 0 && args[i].size() > 2) {
      list = args[i].substr(2);
    } else if (args[i] == "--") {
      out.insert(out.end(), args.begin() + static_cast<long>(i), args.end());
      break;
    } else {
      out.push_back(args[i]);
      continue;
    }
    for (const std::string& item : SplitOptionList(list)) {
      auto eq = item.find('=');
      std::string key = item.substr(0, eq);
      bool has_value = eq != std::string::npos;
      std::string value = has_value ? item.substr(eq + 1) : "";
      std::string long_name = key;
      std::replace(long_name.begin(), long_name.end(), '_', '-');
      const CLI::Option* option = key.empty() ? nullptr : FindLongOption(command, long_name);
      if (option) {
        bool is_flag = option->get_expected_max() == 0;
        if (is_flag && has_value) return "mount option '" + key + "' takes no value";
        if (!is_flag && !has_value)
          return "mount option '" + key + "' needs a value: " + key + "=...";
        out.push_back("--" + long_name);
        if (!is_flag) out.push_back(value);
      } else if (fuse::IsKernelMountOption(key) && !has_value) {
        options.kernel_options.push_back(key);
      } else if (IsMountBookkeepingOption(key)) {
        continue;
      } else if (!sloppy) {
        return "unknown mount option '" + item + "' (see leasefs mount --help)";
      }
    }
  }
  args = std::move(out);
  return std::nullopt;
}

std::optional<std::string> ParseHelperArgs(const std::vector<std::string>& argv,
                                           HelperInvocation* out) {
  std::vector<std::string> positional;
  std::vector<std::string> option_lists;
  for (size_t i = 1; i < argv.size(); i++) {
    const std::string& arg = argv[i];
    if (arg == "-o" || arg == "-t") {
      if (i + 1 >= argv.size()) return arg + " needs a value";
      if (arg == "-o") option_lists.push_back(argv[i + 1]);
      i++;  // -t fuse.leasefs: we are that type
    } else if (arg.rfind("-o", 0) == 0 && arg.size() > 2) {
      option_lists.push_back(arg.substr(2));
    } else if (arg.size() > 1 && arg[0] == '-') {
      for (char flag : arg.substr(1)) {
        switch (flag) {
          case 'f':
            out->fake = true;
            break;
          case 's':
            out->sloppy = true;
            break;
          case 'n':
          case 'v':
            break;  // no mtab to write; verbosity is the log level's job
          default:
            return std::string("unknown mount helper flag -") + flag;
        }
      }
    } else {
      positional.push_back(arg);
    }
  }
  if (positional.size() != 2) return "usage: mount.leasefs SOURCE MOUNTPOINT [-o OPTIONS]";
  for (const auto& list : option_lists) {
    out->mount_args.push_back("-o");
    out->mount_args.push_back(list);
  }
  out->mount_args.push_back(positional[0]);
  out->mount_args.push_back(positional[1]);
  return std::nullopt;
}

}  // namespace leasefs::cmd
