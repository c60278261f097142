#include "run_mount.h"

#include <fcntl.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/syslog_sink.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <syslog.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>

#include "leasefs/fuse/passthrough.h"
#include "leasefs/fuse/session.h"
#include "leasefs/lock/dynamodb_store.h"
#include "leasefs/lock/host_locks.h"
#include "leasefs/lock/lease_manager.h"
#include "leasefs/lock/local_store.h"
#include "leasefs/lock/status.h"
#include "leasefs/lock/volume_id.h"
#include "metrics_server.h"

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

// Cluster locking: the lease store, this mount's session, the host lock manager. Absent with
// --lease-store none (then the kernel arbitrates locks between this host's processes only).
struct Locking {
  lock::SteadyClock clock;
  std::unique_ptr<lock::LeaseStore> store;
  std::unique_ptr<lock::HostLocks> host_locks;
  std::unique_ptr<lock::LeaseManager> leases;

  bool open(const MountOptions& o, std::string* error) {
    // The namespace tells this directory's databases from other directories' in the store, and
    // must be the same on every host that shares it. One machine: SOURCE's canonical path. Many
    // machines: the volume id kept in SOURCE (they may mount it at different paths).
    std::string lease_namespace = o.lease_namespace;
    const bool remote = o.lease_store.rfind("dynamodb://", 0) == 0;
    if (remote) {
      if (lease_namespace.empty()) {
        std::string id;
        if (!lock::ReadOrCreateVolumeId(o.source, &id, error)) return false;
        lease_namespace = "vol:" + id;
      }
      store = lock::OpenDynamoStore(o.lease_store, clock, error);
    } else {
      if (lease_namespace.empty()) lease_namespace = o.source;
      std::string path = o.lease_store == "local" ? lock::DefaultLocalStorePath()
                                                  : o.lease_store.substr(std::strlen("local:"));
      store = lock::OpenLocalStore(path, clock, error);
    }
    if (!store) return false;
    // Held local waits pay off where a store request is cheap: one mount on the local store
    // served 27 % more with 20 ms. On DynamoDB a held request whose wait turns into one for a
    // claim asks the store from the one waiter thread, milliseconds per look, and two mounts
    // served half as much (bench/README.md): off there unless asked for.
    const double local_lock_hold = o.local_lock_hold.value_or(remote ? 0 : 0.02);
    host_locks = std::make_unique<lock::HostLocks>(
        o.source, lease_namespace + "/", nullptr, std::chrono::seconds(10),
        std::chrono::duration_cast<lock::Duration>(std::chrono::duration<double>(o.lock_hold)),
        std::chrono::duration_cast<lock::Duration>(std::chrono::duration<double>(local_lock_hold)));
    lock::LeaseConfig config;
    char host[256] = "localhost";
    gethostname(host, sizeof host - 1);
    config.session_name = std::string(host) + ":" + o.mountpoint;
    config.lease =
        std::chrono::duration_cast<lock::Duration>(std::chrono::duration<double>(o.lease_duration));
    config.storage_cache_wait = std::chrono::duration_cast<lock::Duration>(
        std::chrono::duration<double>(o.storage_cache_wait));
    if (remote) {
      // A remote store answers in milliseconds and bills per request: poll for handoffs at a
      // pace near its round trip, and look again only briefly inside a lock call (SQLite's busy
      // handler retries anyway). The local store's defaults poll at memory speed.
      config.poll_interval = std::chrono::milliseconds(5);
      // While a wait drags on, back off to ~8 reads a second per database (a waiting host must
      // not cost more than its work: issue 12's bound is 10 requests/s per mount).
      config.poll_interval_max = std::chrono::milliseconds(125);
      config.busy_retries = 3;
      config.busy_poll = std::chrono::milliseconds(3);
      config.claim_write_set = true;
    } else {
      // A host busy on a database it holds alone looks for demand this often (the default is
      // lease / 4: 2.5 s, the first wait of a writer on another host). A local read costs tens
      // of microseconds; DynamoDB keeps the default, where each look is billed.
      config.demand_check_interval = std::chrono::milliseconds(100);
    }
    leases = std::make_unique<lock::LeaseManager>(*store, clock, config, *host_locks);
    host_locks->attach(leases.get());
    return leases->start(error);
  }
  void run() {
    leases->run_background();
    host_locks->run_background();
  }
  void stop() {
    host_locks->stop();
    leases->stop();  // flushes and releases every claim, removes the session
  }
};

// The passthrough holds one O_PATH descriptor per inode the kernel has cached (tens of thousands
// on a busy tree), so the default 1,024 or even 20,000 descriptors run out: raise the soft limit
// to the hard one, and as root the hard one to the kernel's maximum (fs.nr_open).
void RaiseFileLimit() {
  rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
  if (geteuid() == 0) {
    rlim_t most = 1 << 20;
    if (FILE* f = std::fopen("/proc/sys/fs/nr_open", "r")) {
      unsigned long long value = 0;
      if (std::fscanf(f, "%llu", &value) == 1 && value > 0) most = static_cast<rlim_t>(value);
      std::fclose(f);
    }
    if (limit.rlim_max < most) limit.rlim_max = most;
  }
  limit.rlim_cur = limit.rlim_max;
  if (setrlimit(RLIMIT_NOFILE, &limit) != 0) {
    getrlimit(RLIMIT_NOFILE, &limit);
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
  getrlimit(RLIMIT_NOFILE, &limit);
  spdlog::debug("file descriptor limit {}", static_cast<unsigned long long>(limit.rlim_cur));
}

// Said in the mount's log (syslog once daemonized) when the mount starts serving.
void WarnIfFewFileDescriptors() {
  constexpr rlim_t kEnough = 65536;
  rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < kEnough) {
    spdlog::warn(
        "only {} file descriptors (the hard limit): the mount holds one per file the kernel "
        "caches, so listing a directory of more files fails with 'Too many open files'; raise "
        "the hard limit (ulimit -Hn; systemd: LimitNOFILE=)",
        static_cast<unsigned long long>(limit.rlim_cur));
  }
}

int Serve(const MountOptions& o, ReadyChannel ready) {
  umask(0);  // the kernel has applied the caller's umask to every mode it sends us
  RaiseFileLimit();
  bool root = geteuid() == 0;
  fuse::PassthroughConfig config;
  config.source = o.source;
  config.entry_timeout = o.entry_timeout;
  config.attr_timeout = o.attr_timeout;
  config.negative_timeout = o.negative_timeout;
  // A read transaction in rollback-journal mode asks whether "-journal" and "-wal" exist: two
  // lookups per transaction, usually of names that do not exist. The absence of "-wal" may be
  // remembered as long as names are (entry_timeout): SQLite learns that a database is in WAL
  // mode from its header (bytes 18-19, written in the same transaction that switches modes, read
  // after every lock whose version moved, which drops this cache too) and then opens "-wal" with
  // O_CREAT, which reaches the daemon whatever the kernel remembers. The absence of "-journal"
  // is not cached: other hosts must see a live journal by name at once (tests/py Coherence).
  config.cacheable_absent_suffixes = {"-wal"};
  config.create_as_caller = root;
  config.posix_acl = o.acl;
  config.hidden_root_name = lock::kVolumeIdFile;

  auto fail = [&](const std::string& error) {
    if (ready.fd >= 0) {
      ready.send(error);  // the waiting parent prints it: one line, once
    } else {
      spdlog::error("{}", error);
    }
    return kExitFailure;
  };
  std::string error;
  std::unique_ptr<Locking> locking;
  fuse::PassthroughSeams seams;
  std::unique_ptr<MetricsServer> metrics;
  if (o.lease_store != "none") {
    locking = std::make_unique<Locking>();
    if (!locking->open(o, &error)) return fail(error);
    seams.locks = locking->host_locks.get();
    seams.write_gate = locking->host_locks.get();
    Locking* l = locking.get();
    config.status = [l](uint64_t id, const std::function<bool(const std::string&)>& visible) {
      lock::StatusReport report = lock::StatusReportOf(*l->leases, *l->host_locks, l->clock, id,
                                                       visible, fuse::kStatusPageBytes);
      return fuse::StatusSnapshot{std::move(report.summary), std::move(report.pages)};
    };
    if (!o.metrics_addr.empty()) {
      metrics = MetricsServer::Start(
          o.metrics_addr,
          [l] { return lock::PrometheusText(*l->leases, *l->host_locks, l->clock); }, &error);
      if (!metrics) return fail(error);
    }
  } else if (!o.metrics_addr.empty()) {
    return fail("--metrics-addr needs cluster locking (--lease-store local or dynamodb)");
  }
  auto fs = fuse::Passthrough::Open(config, seams, &error);
  if (!fs) return fail(error);
  if (locking) locking->host_locks->attach_invalidator(&fs->cache_invalidator());
  fuse::SessionConfig session_config;
  session_config.mountpoint = o.mountpoint;
  session_config.fsname = o.source;
  session_config.allow_other = o.allow_other.value_or(root);
  session_config.read_only = o.read_only;
  session_config.debug = o.fuse_debug;
  session_config.kernel_options = o.kernel_options;
  session_config.max_threads = o.threads;
  auto session = fuse::Session::Mount(*fs, session_config, &error);
  if (!session) return fail(error);
  if (ready.fd >= 0) {
    UseSyslog(o.log_level);
    Detach();
    ready.send("ok");
  }
  if (locking) locking->run();
  // Under a Type=notify systemd unit: ready now (requests queue in the kernel until served).
  sd_notify(0, "READY=1");
  spdlog::info("serving {} on {} (leases: {})", o.source, o.mountpoint,
               locking ? locking->store->describe() + ", session " + locking->leases->session_id()
                       : "none, host-local locks");
  WarnIfFewFileDescriptors();
  int rc = session->run();
  sd_notify(0, "STOPPING=1");
  metrics.reset();              // free the port first: `umount && mount` reuses it at once
  fs->attach_session(nullptr);  // no cache notification may reach a session being destroyed
  session.reset();              // unmount before giving up claims
  if (locking) locking->stop();
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
