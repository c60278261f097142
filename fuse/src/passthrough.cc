// passthrough.cc — the FUSE low-level operations of leasefs.
//
// Every operation maps to the *at() system call on the backing file's O_PATH descriptor (see
// inode_table.h for how node ids map to descriptors), so no path is ever re-resolved from SOURCE
// and renames elsewhere cannot redirect an operation. Operations that cannot take an O_PATH
// descriptor (open, chmod, truncate, xattrs) go through /proc/self/fd/N, which names the very same
// file. File handles (fi->fh) are ordinary descriptors opened with the caller's flags.
//
// Errors: every handler replies with the errno of the backing system call, unchanged. A handler
// replies exactly once on every path.
//
// Ownership: as root serving other users (create_as_caller), a created node is chowned to the
// caller before it is looked up; if that fails the node is removed and the error returned, so no
// user ever receives a root-owned file it cannot use. The daemon runs with umask 0: the kernel
// already applied the caller's umask to the mode it sends.
//
// Seams (leasefs/lock/seams.h): FileLocks decides locks; WriteGate admits write, truncate,
// fallocate, copy_file_range, create, mknod, unlink, rmdir, rename and link before the backing
// call; ChangeSink is told about data changes after they succeed. Absent seams cost one null test.
#include "leasefs/fuse/passthrough.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sched.h>
#include <spdlog/spdlog.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "inode_table.h"
#include "status_snapshots.h"

namespace leasefs::fuse {
namespace {

// "/proc/self/fd/N" for an O_PATH descriptor.
struct ProcPath {
  char text[32];
  explicit ProcPath(int fd) { std::snprintf(text, sizeof text, "/proc/self/fd/%d", fd); }
  const char* c_str() const { return text; }
};

struct DirHandle {
  DIR* dir = nullptr;
  off_t offset = 0;
  struct dirent* entry = nullptr;  // read but not yet returned to the kernel
  ~DirHandle() {
    if (dir) closedir(dir);
  }
};

bool is_dot_or_dotdot(const char* name) {
  return name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'));
}

// A write-class operation admitted by the WriteGate. The gate may take a claim for the
// operation alone (lock/host_locks.h, FENCING); it is given back when this goes out of scope,
// after the backing call.
class Admission {
 public:
  explicit Admission(lock::WriteGate* gate) : gate_(gate) {}
  ~Admission() {
    if (gate_ && ticket_) gate_->end_write(ticket_);
  }
  Admission(const Admission&) = delete;
  Admission& operator=(const Admission&) = delete;

  int admit(const lock::FileRef& file, lock::WriteKind kind, std::string_view name) {
    return gate_ ? gate_->admit(file, kind, name, &ticket_) : 0;
  }

 private:
  lock::WriteGate* gate_;
  lock::WriteTicket ticket_;
};

class PassthroughImpl;
PassthroughImpl& self(fuse_req_t req) {
  return *static_cast<PassthroughImpl*>(fuse_req_userdata(req));
}

// Kernel cache notifications run on a thread of their own, and the caller waits for them only
// for a bounded time. A notification blocks in the kernel while a request that holds the same
// inode's lock is in flight (an unlink or rename holds its directory's, a write its file's), and
// such a request may itself be waiting for the lease machinery that asked for the notification
// (a write admitted under a claim taken for it, lock/host_locks.h FENCING): waiting without
// bound would deadlock. Past the bound the notification still happens, as soon as that request
// is answered; the requests that can hold those locks meanwhile are this host's own writes under
// the very claim being taken.
class KernelInvalidator final : public lock::CacheInvalidator {
 public:
  KernelInvalidator(PassthroughImpl& fs) : fs_(fs) {}
  ~KernelInvalidator() override;
  void invalidate_file(const lock::FileRef& file) override;
  void invalidate_name(const lock::FileRef& dir, std::string_view name) override;
  int open_known(const lock::FileRef& file) override;
  // Drops the kernel's cached lookup of `name` in the node `parent` (an id, maybe forgotten).
  void invalidate_entry(fuse_ino_t parent, std::string name);

 private:
  struct Job {
    std::function<void()> work;
    std::shared_ptr<std::atomic<bool>> done;
  };
  void run(std::function<void()> work);

  static constexpr auto kNotifyWait = std::chrono::milliseconds(200);
  PassthroughImpl& fs_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<Job> jobs_;
  bool stopping_ = false;
  std::thread thread_;
};

class PassthroughImpl final : public Passthrough {
 public:
  PassthroughImpl(const PassthroughConfig& config, PassthroughSeams seams)
      : config_(config), seams_(seams), invalidator_(*this) {
    build_operations();
  }

  bool open_root(std::string* error) {
    int fd = ::open(config_.source.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
      *error = "cannot open source directory " + config_.source + ": " + std::strerror(errno);
      return false;
    }
    struct stat st;
    if (fstatat(fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) {
      *error = "cannot stat source directory " + config_.source + ": " + std::strerror(errno);
      ::close(fd);
      return false;
    }
    source_device_ = st.st_dev;
    inodes_.set_root(fd, st);
    return true;
  }

  const fuse_lowlevel_ops& operations() const override { return ops_; }
  ~PassthroughImpl() override { stop_sweeper(); }

  void attach_session(fuse_session* session) override {
    session_.store(session);
    if (session) {
      start_sweeper();
    } else {
      stop_sweeper();
    }
  }
  lock::CacheInvalidator& cache_invalidator() override { return invalidator_; }
  size_t inode_count() const override { return inodes_.size(); }

  fuse_session* session() const { return session_.load(); }
  fuse_ino_t node_id_of(const lock::FileRef& file) const;
  int open_known(const lock::FileRef& file) const {
    int path_fd = inodes_.dup_path_fd(file.device, file.inode);
    if (path_fd < 0) return -1;
    int fd = ::open(ProcPath(path_fd).c_str(), O_RDONLY | O_CLOEXEC);
    ::close(path_fd);
    return fd;
  }

 private:
  // ---- helpers --------------------------------------------------------------------------
  Inode& inode_of(fuse_ino_t ino) {
    return ino == FUSE_ROOT_ID ? inodes_.root() : *reinterpret_cast<Inode*>(ino);
  }
  fuse_ino_t node_id(Inode& inode) {
    return &inode == &inodes_.root() ? FUSE_ROOT_ID : reinterpret_cast<fuse_ino_t>(&inode);
  }
  static lock::FileRef ref(const Inode& inode) { return {inode.device, inode.number, inode.fd}; }

  // Who sent `req`. The supplementary groups are read (from /proc/PID/status) only for a caller
  // other than root, the only one they matter for; unreadable, the caller has none.
  static Caller caller_of(fuse_req_t req) {
    const fuse_ctx* ctx = fuse_req_ctx(req);
    Caller caller{ctx->uid, ctx->gid, {}};
    if (caller.uid == 0) return caller;
    std::vector<gid_t> groups(64);
    int n = fuse_req_getgroups(req, static_cast<int>(groups.size()), groups.data());
    if (n > static_cast<int>(groups.size())) {
      groups.resize(static_cast<size_t>(n));
      n = fuse_req_getgroups(req, n, groups.data());
    }
    groups.resize(std::clamp(n, 0, static_cast<int>(groups.size())));
    std::sort(groups.begin(), groups.end());
    groups.erase(std::unique(groups.begin(), groups.end()), groups.end());
    caller.groups = std::move(groups);
    return caller;
  }

  bool is_hidden(const Inode& parent, const char* name) const {
    return !config_.hidden_root_name.empty() && &parent == &inodes_.root() &&
           config_.hidden_root_name == name;
  }

  // Admits a write-class operation on `inode` (or on `name` inside it) for as long as
  // `admission` lives.
  int admit(Admission& admission, const Inode& inode, lock::WriteKind kind,
            std::string_view name = {}) {
    return admission.admit(ref(inode), kind, name);
  }
  Admission admission() { return Admission(seams_.write_gate); }

  // Drops kernel references (FORGET); a destroyed inode is forgotten by the lock manager too.
  void forget(Inode& inode, uint64_t count) {
    const lock::FileRef file{inode.device, inode.number, -1};
    if (inodes_.forget(inode, count) && seams_.locks) seams_.locks->forget(file);
  }

  // `err` from an operation through `inode`'s descriptor. ENOENT or ESTALE there means the
  // descriptor outlived its file: removed through another client of the storage, whose number
  // a new file may carry now (inode_table.h). The Inode is marked stale and the answer is
  // ESTALE, on which the kernel walks the path again once, revalidating every name
  // (LOOKUP_REVAL): the open or stat is retried by name, and finds the file there now, or
  // ENOENT. Never on a local disk, where the descriptor keeps the file.
  int through_descriptor(Inode& inode, int err) {
    if ((err != ENOENT && err != ESTALE) || &inode == &inodes_.root()) return err;
    inodes_.mark_stale(inode);
    // What lock/ knows of this number described the file that is gone.
    if (seams_.locks) seams_.locks->forget(lock::FileRef{inode.device, inode.number, -1});
    return ESTALE;
  }

  // Looks `name` up in `parent` and takes one kernel reference on success. Returns 0 or errno.
  int lookup_entry(Inode& parent, const char* name, fuse_entry_param* e) {
    std::memset(e, 0, sizeof *e);
    e->attr_timeout = config_.attr_timeout;
    e->entry_timeout = config_.entry_timeout;
    if (is_hidden(parent, name)) return ENOENT;
    int fd = -1;
    for (int attempt = 0;; attempt++) {
      fd = openat(parent.fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
      if (fd < 0) return errno;
      if (fstatat(fd, "", &e->attr, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) == 0) break;
      int err = errno;
      ::close(fd);
      // ESTALE: the storage client resolved the name from its cache to a file removed
      // elsewhere (an NFS handle the server no longer knows). The client has now marked it
      // stale, so the same name walked once more is looked up on the server.
      if (err != ESTALE || attempt > 0) return err;
    }
    if (e->attr.st_dev != source_device_) {
      ::close(fd);
      warn_nested_mount(name);
      return EXDEV;
    }
    Inode& inode = inodes_.acquire(fd, e->attr, node_id(parent), name);
    e->ino = node_id(inode);
    return 0;
  }

  // Files removed on the storage directly while the kernel still knows them (inode_table.h):
  // every second the next kUnlinkedBatch Inodes are checked (one fstat each, through a
  // duplicate of the descriptor), so each known file is looked at every max(1 s, count / batch)
  // and a removed one's space is released within that, unless a process holds it open. Paced
  // rather than all at once: on NFS each check may be a GETATTR to the server.
  static constexpr size_t kUnlinkedBatch = 500;
  void start_sweeper() {
    std::lock_guard<std::mutex> guard(sweep_mutex_);
    if (sweeper_.joinable() || sweep_stopping_) return;
    sweeper_ = std::thread([this] {
      std::unique_lock<std::mutex> lock(sweep_mutex_);
      while (!sweep_changed_.wait_for(lock, std::chrono::seconds(1),
                                      [&] { return sweep_stopping_; })) {
        lock.unlock();
        sweep_unlinked();
        lock.lock();
      }
    });
  }
  void stop_sweeper() {
    {
      std::lock_guard<std::mutex> guard(sweep_mutex_);
      sweep_stopping_ = true;
    }
    sweep_changed_.notify_all();
    if (sweeper_.joinable()) sweeper_.join();
  }
  void sweep_unlinked() {
    for (InodeTable::Known& known : inodes_.next_batch(&sweep_cursor_, kUnlinkedBatch)) {
      struct stat st;
      const bool gone = fstatat(known.fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) == 0
                            ? st.st_nlink == 0
                            : (errno == ESTALE || errno == ENOENT);
      ::close(known.fd);
      if (!gone || !inodes_.mark_stale_if(known.device, known.number, known.inode)) continue;
      spdlog::debug("'{}' was removed from the source: dropping it from the kernel's cache",
                    known.name);
      invalidator_.invalidate_entry(static_cast<fuse_ino_t>(known.parent_node),
                                    std::move(known.name));
    }
  }

  void warn_nested_mount(const char* name) {
    if (!warned_nested_.exchange(true)) {
      spdlog::warn(
          "'{}' is on another filesystem mounted inside the source; nested mounts are not "
          "served (EXDEV)",
          name);
    }
  }

  // How long the kernel may remember that `name` does not exist.
  double negative_timeout_of(std::string_view name) const {
    double timeout = config_.negative_timeout;
    for (const std::string& suffix : config_.cacheable_absent_suffixes) {
      if (name.size() > suffix.size() && name.ends_with(suffix)) {
        timeout = std::max(timeout, config_.entry_timeout);
      }
    }
    return timeout;
  }

  void reply_lookup(fuse_req_t req, Inode& parent, const char* name) {
    fuse_entry_param e;
    int err = lookup_entry(parent, name, &e);
    const double absent_timeout = err == ENOENT ? negative_timeout_of(name) : 0;
    if (absent_timeout > 0) {
      std::memset(&e, 0, sizeof e);
      e.entry_timeout = absent_timeout;
      fuse_reply_entry(req, &e);
    } else if (err) {
      fuse_reply_err(req, err);
    } else if (fuse_reply_entry(req, &e) == -ENOENT) {
      forget(inode_of(e.ino), 1);  // request was interrupted; the kernel took no reference
    }
  }

  // After creating `name` in `parent` as root on behalf of the caller, hand it to the caller.
  int give_to_caller(fuse_req_t req, Inode& parent, const char* name, int fd = -1) {
    if (!config_.create_as_caller) return 0;
    const fuse_ctx* ctx = fuse_req_ctx(req);
    // The daemon's own identity (root creating for root): the node is already the caller's,
    // and a set-group-ID parent's group was applied by the backing filesystem.
    if (ctx->uid == daemon_uid_ && ctx->gid == daemon_gid_) return 0;
    struct stat parent_st;
    if (fstatat(parent.fd, "", &parent_st, AT_EMPTY_PATH) < 0) return errno;
    gid_t gid = (parent_st.st_mode & S_ISGID) ? static_cast<gid_t>(-1) : ctx->gid;
    int rc = fd >= 0 ? fchown(fd, ctx->uid, gid)
                     : fchownat(parent.fd, name, ctx->uid, gid, AT_SYMLINK_NOFOLLOW);
    return rc < 0 ? errno : 0;
  }

  // The mode to create a node with. With DONT_MASK the kernel sent the caller's mode unmasked
  // and its umask separately. The backing filesystem applies the *process* umask unless the
  // parent has a default ACL, which is exactly the rule to reproduce; so each worker thread gets
  // its own umask (unshare(CLONE_FS), once) set to the caller's. If a thread cannot, the umask is
  // applied here (default ACLs then cannot widen the mode; never a wider mode than asked).
  mode_t creation_mode(fuse_req_t req, mode_t mode) {
    if (!caller_umask_) return mode;
    thread_local int own_umask = -1;  // -1 unknown, 1 this thread has its own fs_struct, 0 not
    if (own_umask < 0) {
      own_umask = unshare(CLONE_FS) == 0 ? 1 : 0;
      if (!own_umask) spdlog::warn("unshare(CLONE_FS): {}; default ACLs ignored", strerror(errno));
    }
    mode_t caller_umask = fuse_req_ctx(req)->umask;
    if (own_umask) {
      umask(caller_umask);
      return mode;
    }
    return mode & ~caller_umask;
  }

  // openat(O_CREAT) that also tells whether this call created the file, which only matters when
  // the file must then be handed to the caller: try O_EXCL first, else open what exists.
  //
  // O_CREAT alone meets a storage client's cached name: an NFS or FUSE client that still holds
  // the name of a file removed through another client opens it instead of creating it, and the
  // open fails with ENOENT. An exclusive create makes the client look the name up (FUSE
  // revalidates on LOOKUP_EXCL; NFS creates on the server), so ENOENT from O_CREAT is retried
  // that way: it ends in a create, an open of what is there now, or the parent's own ENOENT.
  int open_or_create(Inode& parent, const char* name, int flags, mode_t mode, bool* created) {
    *created = false;
    if (!config_.create_as_caller || (flags & O_EXCL)) {
      int fd = openat(parent.fd, name, flags, mode);
      if (fd >= 0 || errno != ENOENT || (flags & O_EXCL)) {
        *created = fd >= 0 && config_.create_as_caller;
        return fd;
      }
    }
    for (int attempt = 0; attempt < 8; attempt++) {
      int fd = openat(parent.fd, name, flags | O_EXCL, mode);
      if (fd >= 0) {
        *created = true;
        return fd;
      }
      if (errno != EEXIST) return -1;
      fd = openat(parent.fd, name, flags & ~O_CREAT);
      if (fd >= 0 || errno != ENOENT) return fd;
      // Removed between the two calls: try again.
    }
    errno = EAGAIN;
    return -1;
  }

  void make_node(fuse_req_t req, fuse_ino_t parent_ino, const char* name, mode_t mode, dev_t rdev,
                 const char* link_target) {
    Inode& parent = inode_of(parent_ino);
    if (is_hidden(parent, name)) return (void)fuse_reply_err(req, EPERM);
    Admission admission = this->admission();
    if (int err = admit(admission, parent, lock::WriteKind::kCreate, name))
      return (void)fuse_reply_err(req, err);
    mode = creation_mode(req, mode);
    int rc;
    if (S_ISDIR(mode)) {
      rc = mkdirat(parent.fd, name, mode);
    } else if (link_target) {
      rc = symlinkat(link_target, parent.fd, name);
    } else {
      rc = mknodat(parent.fd, name, mode, rdev);
    }
    if (rc < 0) return (void)fuse_reply_err(req, errno);
    if (int err = give_to_caller(req, parent, name)) {
      unlinkat(parent.fd, name, S_ISDIR(mode) ? AT_REMOVEDIR : 0);
      return (void)fuse_reply_err(req, err);
    }
    reply_lookup(req, parent, name);
  }

  // ---- operations -----------------------------------------------------------------------
  void build_operations();

  static void op_init(void* userdata, fuse_conn_info* conn) {
    auto& fs = *static_cast<PassthroughImpl*>(userdata);
    // Dirty pages must never outlive the write reply: a write is on the backing storage when
    // write() returns, where fencing admitted it and another host can read it (docs/DESIGN.md).
    conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
    // Small SQLite-sized requests gain nothing from splice (and lose on some kernels).
    conn->want &= ~(FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE);
    if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC) conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
    if (conn->capable & FUSE_CAP_PARALLEL_DIROPS) conn->want |= FUSE_CAP_PARALLEL_DIROPS;
    if (!fs.seams_.locks) conn->want &= ~(FUSE_CAP_POSIX_LOCKS | FUSE_CAP_FLOCK_LOCKS);
    // The kernel clears set-user-ID/set-group-ID on write, truncate and chown itself (by a
    // SETATTR). Left to us, it would not happen: our writes run as root, which keeps them.
    conn->want &= ~FUSE_CAP_HANDLE_KILLPRIV;
    // No auto_inval_data (libfuse turns it on by default). With it, every attribute reply that
    // shows a new mtime makes the kernel drop all of the file's cached pages, and a read() after
    // any write() first asks for attributes, so while a file is written its pages are dropped
    // over and over. The kernel's write() (no writeback_cache) puts its bytes in the page cache
    // before it sends the WRITE and leaves those pages unlocked, so a drop in that window lets a
    // reader fetch the page again, from the backing file as it was before the WRITE; the stale
    // page then stays cached after write() returns. The session answers a READ only after the
    // WRITEs sent before it (request_order.h), but the kernel can send the reader's READ before
    // the writer's WRITE, and no daemon can help that: the fewer drops, the fewer such windows.
    // Nothing needs it: this host's writes keep the cache current, open() without keep_cache
    // drops pages changed elsewhere (close-to-open), and CacheInvalidator drops them when a lease
    // moves. fuse/README.md ("No auto_inval_data") has the evidence (SQLite's walthread.test).
    conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
    // POSIX ACLs (opt-in, --acl): the kernel enforces them (reading system.posix_acl_* through
    // getxattr, one extra request per inode) and leaves the umask to us, so a default ACL on the
    // parent overrides it as on a local disk. Off, permissions are the mode bits.
    if (fs.config_.posix_acl && (conn->capable & FUSE_CAP_POSIX_ACL) &&
        (conn->capable & FUSE_CAP_DONT_MASK)) {
      conn->want |= FUSE_CAP_POSIX_ACL | FUSE_CAP_DONT_MASK;
      fs.caller_umask_ = true;
    }
    spdlog::debug("FUSE protocol {}.{}, max_write {}", conn->proto_major, conn->proto_minor,
                  conn->max_write);
  }

  static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
    auto& fs = self(req);
    fs.reply_lookup(req, fs.inode_of(parent), name);
  }

  static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
    auto& fs = self(req);
    fs.forget(fs.inode_of(ino), nlookup);
    fuse_reply_none(req);
  }

  static void op_forget_multi(fuse_req_t req, size_t count, fuse_forget_data* forgets) {
    auto& fs = self(req);
    for (size_t i = 0; i < count; i++) fs.forget(fs.inode_of(forgets[i].ino), forgets[i].nlookup);
    fuse_reply_none(req);
  }

  static void op_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
    auto& fs = self(req);
    struct stat st;
    if (fi) {
      if (fstat(static_cast<int>(fi->fh), &st) < 0) return (void)fuse_reply_err(req, errno);
    } else {
      Inode& inode = fs.inode_of(ino);
      if (fstatat(inode.fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
        return (void)fuse_reply_err(req, fs.through_descriptor(inode, errno));
    }
    fuse_reply_attr(req, &st, fs.config_.attr_timeout);
  }

  static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int valid,
                         fuse_file_info* fi) {
    auto& fs = self(req);
    Inode& inode = fs.inode_of(ino);
    ProcPath path(inode.fd);
    int fh = fi ? static_cast<int>(fi->fh) : -1;
    Admission admission = fs.admission();
    if (int err = fs.admit(admission, inode,
                           (valid & FUSE_SET_ATTR_SIZE) ? lock::WriteKind::kTruncate
                                                        : lock::WriteKind::kSetAttr)) {
      return (void)fuse_reply_err(req, err);
    }
    if (valid & FUSE_SET_ATTR_MODE) {
      int rc = fh >= 0 ? fchmod(fh, attr->st_mode) : chmod(path.c_str(), attr->st_mode);
      if (rc < 0) return (void)fuse_reply_err(req, errno);
    }
    if (valid & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
      uid_t uid = (valid & FUSE_SET_ATTR_UID) ? attr->st_uid : static_cast<uid_t>(-1);
      gid_t gid = (valid & FUSE_SET_ATTR_GID) ? attr->st_gid : static_cast<gid_t>(-1);
      if (fchownat(inode.fd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) {
        return (void)fuse_reply_err(req, errno);
      }
    }
    if (valid & FUSE_SET_ATTR_SIZE) {
      int rc = fh >= 0 ? ftruncate(fh, attr->st_size) : truncate(path.c_str(), attr->st_size);
      if (rc < 0) return (void)fuse_reply_err(req, errno);
      if (fs.seams_.changes) fs.seams_.changes->truncated(ref(inode), attr->st_size);
    }
    if (valid & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME)) {
      struct timespec times[2];
      times[0].tv_sec = 0;
      times[1].tv_sec = 0;
      times[0].tv_nsec = UTIME_OMIT;
      times[1].tv_nsec = UTIME_OMIT;
      if (valid & FUSE_SET_ATTR_ATIME_NOW) {
        times[0].tv_nsec = UTIME_NOW;
      } else if (valid & FUSE_SET_ATTR_ATIME) {
        times[0] = attr->st_atim;
      }
      if (valid & FUSE_SET_ATTR_MTIME_NOW) {
        times[1].tv_nsec = UTIME_NOW;
      } else if (valid & FUSE_SET_ATTR_MTIME) {
        times[1] = attr->st_mtim;
      }
      int rc;
      if (fh >= 0) {
        rc = futimens(fh, times);
      } else {
        // utimensat() has no AT_EMPTY_PATH before Linux 6.x everywhere; /proc/self/fd works for
        // every type but symlinks, whose times we set through the parent-less empty path.
        rc = utimensat(inode.fd, "", times, AT_EMPTY_PATH);
        if (rc < 0 && (errno == EINVAL || errno == ENOENT))
          rc = utimensat(AT_FDCWD, path.c_str(), times, 0);
      }
      if (rc < 0) return (void)fuse_reply_err(req, errno);
    }
    op_getattr(req, ino, fi);
  }

  static void op_readlink(fuse_req_t req, fuse_ino_t ino) {
    auto& fs = self(req);
    char buf[PATH_MAX + 1];
    ssize_t n = readlinkat(fs.inode_of(ino).fd, "", buf, sizeof buf);
    if (n < 0) return (void)fuse_reply_err(req, errno);
    if (n == static_cast<ssize_t>(sizeof buf)) return (void)fuse_reply_err(req, ENAMETOOLONG);
    buf[n] = '\0';
    fuse_reply_readlink(req, buf);
  }

  static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode,
                       dev_t rdev) {
    self(req).make_node(req, parent, name, mode, rdev, nullptr);
  }
  static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
    self(req).make_node(req, parent, name, S_IFDIR | mode, 0, nullptr);
  }
  static void op_symlink(fuse_req_t req, const char* link, fuse_ino_t parent, const char* name) {
    self(req).make_node(req, parent, name, S_IFLNK, 0, link);
  }

  static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t new_parent, const char* new_name) {
    auto& fs = self(req);
    Inode& inode = fs.inode_of(ino);
    Inode& parent = fs.inode_of(new_parent);
    if (fs.is_hidden(parent, new_name)) return (void)fuse_reply_err(req, EPERM);
    Admission admission = fs.admission();
    if (int err = fs.admit(admission, parent, lock::WriteKind::kLink, new_name))
      return (void)fuse_reply_err(req, err);
    int rc = linkat(inode.fd, "", parent.fd, new_name, AT_EMPTY_PATH);
    if (rc < 0 && (errno == EPERM || errno == ENOENT)) {
      // AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH; the /proc link works without it.
      rc = linkat(AT_FDCWD, ProcPath(inode.fd).c_str(), parent.fd, new_name, AT_SYMLINK_FOLLOW);
    }
    if (rc < 0) return (void)fuse_reply_err(req, errno);
    fs.reply_lookup(req, parent, new_name);
  }

  static void op_unlink(fuse_req_t req, fuse_ino_t parent_ino, const char* name) {
    auto& fs = self(req);
    Inode& parent = fs.inode_of(parent_ino);
    if (fs.is_hidden(parent, name)) return (void)fuse_reply_err(req, ENOENT);
    Admission admission = fs.admission();
    if (int err = fs.admit(admission, parent, lock::WriteKind::kUnlink, name))
      return (void)fuse_reply_err(req, err);
    int rc = unlinkat(parent.fd, name, 0);
    fuse_reply_err(req, rc < 0 ? errno : 0);
  }

  static void op_rmdir(fuse_req_t req, fuse_ino_t parent_ino, const char* name) {
    auto& fs = self(req);
    Inode& parent = fs.inode_of(parent_ino);
    if (fs.is_hidden(parent, name)) return (void)fuse_reply_err(req, ENOENT);
    Admission admission = fs.admission();
    if (int err = fs.admit(admission, parent, lock::WriteKind::kUnlink, name))
      return (void)fuse_reply_err(req, err);
    int rc = unlinkat(parent.fd, name, AT_REMOVEDIR);
    fuse_reply_err(req, rc < 0 ? errno : 0);
  }

  static void op_rename(fuse_req_t req, fuse_ino_t parent_ino, const char* name,
                        fuse_ino_t new_parent_ino, const char* new_name, unsigned int flags) {
    auto& fs = self(req);
    Inode& parent = fs.inode_of(parent_ino);
    Inode& new_parent = fs.inode_of(new_parent_ino);
    if (fs.is_hidden(parent, name)) return (void)fuse_reply_err(req, ENOENT);
    if (fs.is_hidden(new_parent, new_name)) return (void)fuse_reply_err(req, EPERM);
    Admission from = fs.admission(), to = fs.admission();
    if (int err = fs.admit(from, parent, lock::WriteKind::kRename, name))
      return (void)fuse_reply_err(req, err);
    if (int err = fs.admit(to, new_parent, lock::WriteKind::kRename, new_name)) {
      return (void)fuse_reply_err(req, err);
    }
    int rc = renameat2(parent.fd, name, new_parent.fd, new_name, flags);
    fuse_reply_err(req, rc < 0 ? errno : 0);
  }

  static void op_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
    auto& fs = self(req);
    Inode& inode = fs.inode_of(ino);
    Admission admission = fs.admission();
    if (fi->flags & O_TRUNC) {
      if (int err = fs.admit(admission, inode, lock::WriteKind::kTruncate))
        return (void)fuse_reply_err(req, err);
    }
    // O_DIRECT is the kernel's business (FUSE sends it uncached already); the backing file is
    // opened buffered so our unaligned request buffers are acceptable to it.
    int flags = (fi->flags & ~(O_NOFOLLOW | O_DIRECT)) | O_CLOEXEC;
    int fd = ::open(ProcPath(inode.fd).c_str(), flags);
    if (fd < 0) return (void)fuse_reply_err(req, fs.through_descriptor(inode, errno));
    fi->fh = static_cast<uint64_t>(fd);
    fi->keep_cache = 0;
    fi->noflush = 0;
    if ((fi->flags & O_TRUNC) && fs.seams_.changes) fs.seams_.changes->truncated(ref(inode), 0);
    if (fuse_reply_open(req, fi) == -ENOENT) ::close(fd);
  }

  static void op_create(fuse_req_t req, fuse_ino_t parent_ino, const char* name, mode_t mode,
                        fuse_file_info* fi) {
    auto& fs = self(req);
    Inode& parent = fs.inode_of(parent_ino);
    if (fs.is_hidden(parent, name)) return (void)fuse_reply_err(req, EPERM);
    Admission admission = fs.admission();
    if (int err = fs.admit(admission, parent, lock::WriteKind::kCreate, name))
      return (void)fuse_reply_err(req, err);
    // The kernel resolves symlinks itself; O_NOFOLLOW keeps a stale cache from ever making the
    // daemon follow one out of SOURCE.
    int flags = ((fi->flags | O_CREAT) & ~O_DIRECT) | O_NOFOLLOW | O_CLOEXEC;
    bool created = false;
    int fd = fs.open_or_create(parent, name, flags, fs.creation_mode(req, mode), &created);
    if (fd < 0) return (void)fuse_reply_err(req, errno);
    if (created) {
      if (int err = fs.give_to_caller(req, parent, name, fd)) {
        ::close(fd);
        unlinkat(parent.fd, name, 0);
        return (void)fuse_reply_err(req, err);
      }
    }
    fuse_entry_param e;
    if (int err = fs.lookup_entry(parent, name, &e)) {
      ::close(fd);
      return (void)fuse_reply_err(req, err);
    }
    fi->fh = static_cast<uint64_t>(fd);
    fi->keep_cache = 0;
    fi->noflush = 0;
    if (fuse_reply_create(req, &e, fi) == -ENOENT) {
      ::close(fd);
      fs.forget(fs.inode_of(e.ino), 1);
    }
  }

  static void op_read(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) {
    fuse_bufvec buf = FUSE_BUFVEC_INIT(size);
    buf.buf[0].flags = static_cast<fuse_buf_flags>(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
    buf.buf[0].fd = static_cast<int>(fi->fh);
    buf.buf[0].pos = off;
    fuse_reply_data(req, &buf, FUSE_BUF_NO_SPLICE);
  }

  static void op_write_buf(fuse_req_t req, fuse_ino_t ino, fuse_bufvec* in, off_t off,
                           fuse_file_info* fi) {
    auto& fs = self(req);
    Inode& inode = fs.inode_of(ino);
    Admission admission = fs.admission();
    if (int err = fs.admit(admission, inode, lock::WriteKind::kWrite))
      return (void)fuse_reply_err(req, err);
    fuse_bufvec out = FUSE_BUFVEC_INIT(fuse_buf_size(in));
    out.buf[0].flags = static_cast<fuse_buf_flags>(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
    out.buf[0].fd = static_cast<int>(fi->fh);
    out.buf[0].pos = off;
    ssize_t n = fuse_buf_copy(&out, in, FUSE_BUF_NO_SPLICE);
    if (n < 0) return (void)fuse_reply_err(req, static_cast<int>(-n));
    if (fs.seams_.changes) fs.seams_.changes->wrote(ref(inode), off, static_cast<uint64_t>(n));
    fuse_reply_write(req, static_cast<size_t>(n));
  }

  static void op_flush(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
    auto& fs = self(req);
    if (fs.seams_.locks) fs.seams_.locks->release_owner(ref(fs.inode_of(ino)), fi->lock_owner);
    // close() of a duplicate gives the backing filesystem its close-time flush (NFS writes back
    // and reports deferred write errors here) without giving up our descriptor.
    int dup_fd = dup(static_cast<int>(fi->fh));
    if (dup_fd < 0) return (void)fuse_reply_err(req, errno);
    fuse_reply_err(req, ::close(dup_fd) < 0 ? errno : 0);
  }

  static void op_release(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
    auto& fs = self(req);
    if (fs.seams_.locks) fs.seams_.locks->release_handle(ref(fs.inode_of(ino)), fi->fh);
    ::close(static_cast<int>(fi->fh));
    fuse_reply_err(req, 0);
  }

  static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info* fi) {
    auto& fs = self(req);
    int fd = static_cast<int>(fi->fh);
    int rc = datasync ? fdatasync(fd) : fsync(fd);
    if (rc < 0) return (void)fuse_reply_err(req, errno);
    if (fs.seams_.changes) fs.seams_.changes->synced(ref(fs.inode_of(ino)));
    fuse_reply_err(req, 0);
  }

  static void op_opendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
    auto& fs = self(req);
    auto handle = std::unique_ptr<DirHandle>(new (std::nothrow) DirHandle);
    if (!handle) return (void)fuse_reply_err(req, ENOMEM);
    int fd = openat(fs.inode_of(ino).fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return (void)fuse_reply_err(req, errno);
    handle->dir = fdopendir(fd);
    if (!handle->dir) {
      int err = errno;
      ::close(fd);
      return (void)fuse_reply_err(req, err);
    }
    fi->fh = reinterpret_cast<uint64_t>(handle.get());
    fi->keep_cache = 0;
    fi->cache_readdir = 0;
    if (fuse_reply_open(req, fi) != -ENOENT) handle.release();
  }

  static DirHandle& dir_of(fuse_file_info* fi) { return *reinterpret_cast<DirHandle*>(fi->fh); }

  void read_directory(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset, fuse_file_info* fi,
                      bool plus) {
    DirHandle& d = dir_of(fi);
    Inode& dir_inode = inode_of(ino);
    std::vector<char> buf(size);
    char* p = buf.data();
    size_t remaining = size;
    if (offset != d.offset) {
      seekdir(d.dir, offset);
      d.entry = nullptr;
      d.offset = offset;
    }
    int error = 0;
    while (true) {
      if (!d.entry) {
        errno = 0;
        d.entry = readdir(d.dir);
        if (!d.entry) {
          error = errno;  // 0 at the end of the directory
          break;
        }
      }
      const char* name = d.entry->d_name;
      off_t next = d.entry->d_off;
      if (is_hidden(dir_inode, name)) {
        d.entry = nullptr;
        d.offset = next;
        continue;
      }
      size_t used;
      if (plus) {
        fuse_entry_param e;
        bool looked_up = false;
        if (is_dot_or_dotdot(name)) {
          std::memset(&e, 0, sizeof e);
          e.attr.st_ino = d.entry->d_ino;
          e.attr.st_mode = static_cast<mode_t>(d.entry->d_type) << 12;
        } else {
          int err = lookup_entry(dir_inode, name, &e);
          if (err == EXDEV) {  // a nested mount: skip
            d.entry = nullptr;
            d.offset = next;
            continue;
          }
          if (err == ENOENT) {
            // Listed, yet not found by name: removed since, or a storage client (NFS, a FUSE
            // client) still caching the name's absence. Listed as READDIR lists it, without
            // attributes (node id 0: the kernel links nothing), so the listing shows what the
            // directory holds rather than what the client's name cache believes.
            std::memset(&e, 0, sizeof e);
            e.attr.st_ino = d.entry->d_ino;
            e.attr.st_mode = static_cast<mode_t>(d.entry->d_type) << 12;
          } else if (err) {
            error = err;
            break;
          } else {
            looked_up = true;
          }
        }
        used = fuse_add_direntry_plus(req, p, remaining, name, &e, next);
        if (used > remaining) {
          if (looked_up) forget(inode_of(e.ino), 1);
          break;
        }
      } else {
        struct stat st;
        std::memset(&st, 0, sizeof st);
        st.st_ino = d.entry->d_ino;
        st.st_mode = static_cast<mode_t>(d.entry->d_type) << 12;
        used = fuse_add_direntry(req, p, remaining, name, &st, next);
        if (used > remaining) break;
      }
      p += used;
      remaining -= used;
      d.entry = nullptr;
      d.offset = next;
    }
    // An error after some entries were added is reported on the next call instead.
    if (error && remaining == size) return (void)fuse_reply_err(req, error);
    fuse_reply_buf(req, buf.data(), size - remaining);
  }

  static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                         fuse_file_info* fi) {
    self(req).read_directory(req, ino, size, off, fi, false);
  }
  static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                             fuse_file_info* fi) {
    self(req).read_directory(req, ino, size, off, fi, true);
  }

  static void op_releasedir(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
    delete &dir_of(fi);
    fuse_reply_err(req, 0);
  }

  static void op_fsyncdir(fuse_req_t req, fuse_ino_t, int datasync, fuse_file_info* fi) {
    int fd = dirfd(dir_of(fi).dir);
    int rc = datasync ? fdatasync(fd) : fsync(fd);
    fuse_reply_err(req, rc < 0 ? errno : 0);
  }

  static void op_statfs(fuse_req_t req, fuse_ino_t ino) {
    struct statvfs st;
    if (fstatvfs(self(req).inode_of(ino).fd, &st) < 0) return (void)fuse_reply_err(req, errno);
    fuse_reply_statfs(req, &st);
  }

  static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value,
                          size_t size, int flags) {
    auto& fs = self(req);
    Inode& inode = fs.inode_of(ino);
    Admission admission = fs.admission();
    if (int err = fs.admit(admission, inode, lock::WriteKind::kSetAttr))
      return (void)fuse_reply_err(req, err);
    int rc = setxattr(ProcPath(inode.fd).c_str(), name, value, size, flags);
    fuse_reply_err(req, rc < 0 ? errno : 0);
  }

  // The status attributes of the root (status_snapshots.h has the protocol).
  static void reply_status(fuse_req_t req, const char* name, size_t size) {
    auto& fs = self(req);
    Caller caller = caller_of(req);
    std::string value;
    if (std::strcmp(name, kStatusXattr) == 0) {
      std::map<std::string, bool> seen;  // directories checked for this caller
      const int root_fd = fs.inodes_.root().fd;
      value = fs.status_snapshots_.take(caller, [&](uint64_t id) {
        return fs.config_.status(
            id, [&](const std::string& path) { return PathVisible(root_fd, path, caller, &seen); });
      });
    } else if (auto page = ParseStatusPageName(name)) {
      if (int err = fs.status_snapshots_.page(page->first, page->second, caller, &value)) {
        return (void)fuse_reply_err(req, err);
      }
    } else {
      return (void)fuse_reply_err(req, ENODATA);  // the names below kStatusXattr are ours
    }
    if (size == 0) return (void)fuse_reply_xattr(req, value.size());
    if (size < value.size()) return (void)fuse_reply_err(req, ERANGE);
    fuse_reply_buf(req, value.data(), value.size());
  }

  static bool is_status_name(const char* name) {
    const size_t n = std::strlen(kStatusXattr);
    return std::strncmp(name, kStatusXattr, n) == 0 && (name[n] == '\0' || name[n] == '.');
  }

  static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
    auto& fs = self(req);
    if (ino == FUSE_ROOT_ID && is_status_name(name)) {
      // Never a stored attribute of that name: without status (no cluster locking), none.
      if (!fs.config_.status) return (void)fuse_reply_err(req, ENODATA);
      return reply_status(req, name, size);
    }
    ProcPath path(fs.inode_of(ino).fd);
    if (size == 0) {
      ssize_t n = getxattr(path.c_str(), name, nullptr, 0);
      return n < 0 ? (void)fuse_reply_err(req, errno) : (void)fuse_reply_xattr(req, n);
    }
    std::vector<char> value(size);
    ssize_t n = getxattr(path.c_str(), name, value.data(), size);
    if (n < 0) return (void)fuse_reply_err(req, errno);
    fuse_reply_buf(req, value.data(), static_cast<size_t>(n));
  }

  static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
    ProcPath path(self(req).inode_of(ino).fd);
    if (size == 0) {
      ssize_t n = listxattr(path.c_str(), nullptr, 0);
      return n < 0 ? (void)fuse_reply_err(req, errno) : (void)fuse_reply_xattr(req, n);
    }
    std::vector<char> names(size);
    ssize_t n = listxattr(path.c_str(), names.data(), size);
    if (n < 0) return (void)fuse_reply_err(req, errno);
    fuse_reply_buf(req, names.data(), static_cast<size_t>(n));
  }

  static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
    auto& fs = self(req);
    Inode& inode = fs.inode_of(ino);
    Admission admission = fs.admission();
    if (int err = fs.admit(admission, inode, lock::WriteKind::kSetAttr))
      return (void)fuse_reply_err(req, err);
    int rc = removexattr(ProcPath(inode.fd).c_str(), name);
    fuse_reply_err(req, rc < 0 ? errno : 0);
  }

  static void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
                           fuse_file_info* fi) {
    auto& fs = self(req);
    Inode& inode = fs.inode_of(ino);
    Admission admission = fs.admission();
    if (int err = fs.admit(admission, inode, lock::WriteKind::kAllocate))
      return (void)fuse_reply_err(req, err);
    if (fallocate(static_cast<int>(fi->fh), mode, offset, length) < 0) {
      return (void)fuse_reply_err(req, errno);
    }
    if (fs.seams_.changes) {
      fs.seams_.changes->wrote(ref(inode), static_cast<uint64_t>(offset),
                               static_cast<uint64_t>(length));
    }
    fuse_reply_err(req, 0);
  }

  static void op_lseek(fuse_req_t req, fuse_ino_t, off_t off, int whence, fuse_file_info* fi) {
    off_t result = lseek(static_cast<int>(fi->fh), off, whence);
    if (result < 0) return (void)fuse_reply_err(req, errno);
    fuse_reply_lseek(req, result);
  }

  static void op_copy_file_range(fuse_req_t req, fuse_ino_t, off_t off_in, fuse_file_info* fi_in,
                                 fuse_ino_t ino_out, off_t off_out, fuse_file_info* fi_out,
                                 size_t len, int flags) {
    auto& fs = self(req);
    Inode& out = fs.inode_of(ino_out);
    Admission admission = fs.admission();
    if (int err = fs.admit(admission, out, lock::WriteKind::kWrite))
      return (void)fuse_reply_err(req, err);
    off_t start = off_out;
    ssize_t n = copy_file_range(static_cast<int>(fi_in->fh), &off_in, static_cast<int>(fi_out->fh),
                                &off_out, len, static_cast<unsigned>(flags));
    if (n < 0) return (void)fuse_reply_err(req, errno);
    if (fs.seams_.changes) fs.seams_.changes->wrote(ref(out), static_cast<uint64_t>(start), n);
    fuse_reply_write(req, static_cast<size_t>(n));
  }

  // ---- lock operations (registered only when a FileLocks seam is supplied) ----------------
  static void op_getlk(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi, struct flock* lock) {
    auto& fs = self(req);
    int err = fs.seams_.locks->test_lock(ref(fs.inode_of(ino)), fi->lock_owner, lock);
    if (err) return (void)fuse_reply_err(req, err);
    fuse_reply_lock(req, lock);
  }

  static void op_setlk(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi, struct flock* lock,
                       int sleep) {
    auto& fs = self(req);
    // The completion may run on another thread, and at most once; an interrupt of a waiting
    // request (an F_SETLKW, or an F_SETLK held while another host hands the claim over) asks
    // the lock manager to complete it with EINTR. The wait id travels as the callback's data
    // pointer, so nothing is allocated per wait (held requests are many).
    // Registered first: once set_lock() parks the request, it may complete (and the request be
    // freed) at any moment.
    // A request that cannot wait (F_SETLK without held requests: most of them) registers
    // nothing: fuse_req_interrupt_func takes two libfuse mutexes.
    const uint64_t wait_id = fs.next_wait_id_.fetch_add(1) + 1;
    if (fs.seams_.locks->may_wait(sleep != 0)) {
      fuse_req_interrupt_func(
          req,
          [](fuse_req_t interrupted, void* data) {
            self(interrupted).seams_.locks->cancel_wait(reinterpret_cast<uintptr_t>(data));
          },
          reinterpret_cast<void*>(static_cast<uintptr_t>(wait_id)));
    }
    fs.seams_.locks->set_lock(ref(fs.inode_of(ino)), fi->lock_owner, fi->fh, *lock, sleep != 0,
                              wait_id, [req](int err) { fuse_reply_err(req, err); });
  }

  PassthroughConfig config_;
  PassthroughSeams seams_;
  std::atomic<uint64_t> next_wait_id_{0};  // names lock requests for interrupts (set_lock)
  KernelInvalidator invalidator_;
  InodeTable inodes_;
  dev_t source_device_ = 0;
  std::atomic<fuse_session*> session_{nullptr};
  std::atomic<bool> warned_nested_{false};
  std::mutex sweep_mutex_;
  std::condition_variable sweep_changed_;
  bool sweep_stopping_ = false;
  std::thread sweeper_;
  std::pair<dev_t, ino_t> sweep_cursor_{0, 0};  // used by the sweeper thread only
  bool caller_umask_ = false;                   // set in init, before any request that creates
  const uid_t daemon_uid_ = geteuid();
  const gid_t daemon_gid_ = getegid();
  // Ids from the time of day in microseconds: no two daemons of a mountpoint share one.
  StatusSnapshots status_snapshots_{
      static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count())};
  fuse_lowlevel_ops ops_{};
};

void PassthroughImpl::build_operations() {
  ops_.init = op_init;
  ops_.lookup = op_lookup;
  ops_.forget = op_forget;
  ops_.forget_multi = op_forget_multi;
  ops_.getattr = op_getattr;
  ops_.setattr = op_setattr;
  ops_.readlink = op_readlink;
  ops_.mknod = op_mknod;
  ops_.mkdir = op_mkdir;
  ops_.symlink = op_symlink;
  ops_.link = op_link;
  ops_.unlink = op_unlink;
  ops_.rmdir = op_rmdir;
  ops_.rename = op_rename;
  ops_.open = op_open;
  ops_.create = op_create;
  ops_.read = op_read;
  ops_.write_buf = op_write_buf;
  ops_.flush = op_flush;
  ops_.release = op_release;
  ops_.fsync = op_fsync;
  ops_.opendir = op_opendir;
  ops_.readdir = op_readdir;
  ops_.readdirplus = op_readdirplus;
  ops_.releasedir = op_releasedir;
  ops_.fsyncdir = op_fsyncdir;
  ops_.statfs = op_statfs;
  ops_.setxattr = op_setxattr;
  ops_.getxattr = op_getxattr;
  ops_.listxattr = op_listxattr;
  ops_.removexattr = op_removexattr;
  ops_.fallocate = op_fallocate;
  ops_.lseek = op_lseek;
  ops_.copy_file_range = op_copy_file_range;
  if (seams_.locks) {
    ops_.getlk = op_getlk;
    ops_.setlk = op_setlk;
  }
}

fuse_ino_t PassthroughImpl::node_id_of(const lock::FileRef& file) const {
  const Inode* inode = inodes_.find(file.device, file.inode);
  if (!inode) return 0;
  return inode == &inodes_.root() ? FUSE_ROOT_ID : reinterpret_cast<fuse_ino_t>(inode);
}

KernelInvalidator::~KernelInvalidator() {
  {
    std::lock_guard<std::mutex> guard(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void KernelInvalidator::run(std::function<void()> work) {
  auto done = std::make_shared<std::atomic<bool>>(false);
  std::unique_lock<std::mutex> lock(mutex_);
  if (!thread_.joinable()) {
    thread_ = std::thread([this] {
      std::unique_lock<std::mutex> jobs_lock(mutex_);
      while (true) {
        changed_.wait(jobs_lock, [&] { return stopping_ || !jobs_.empty(); });
        if (jobs_.empty()) return;  // stopping, and nothing left to do
        Job job = std::move(jobs_.front());
        jobs_.pop_front();
        jobs_lock.unlock();
        job.work();
        job.done->store(true);
        jobs_lock.lock();
        changed_.notify_all();
      }
    });
  }
  jobs_.push_back(Job{std::move(work), done});
  changed_.notify_all();
  if (!changed_.wait_for(lock, kNotifyWait, [&] { return done->load(); })) {
    spdlog::debug("a cache notification waits for a request in flight; not waiting for it");
  }
}

// Invalidation names a node the kernel may already have forgotten, or (if its Inode was freed and
// the address reused) a different node: the kernel answers ENOENT for the first and merely drops a
// cache for the second. Both are harmless, which is why no reference is held across the call.
void KernelInvalidator::invalidate_file(const lock::FileRef& file) {
  fuse_ino_t node = fs_.node_id_of(file);
  if (!fs_.session() || !node) return;
  run([this, node] {
    fuse_session* session = fs_.session();  // null once the mount is ending
    if (!session) return;
    int rc = fuse_lowlevel_notify_inval_inode(session, node, 0, 0);
    if (rc < 0 && rc != -ENOENT) spdlog::warn("cache invalidation failed: {}", std::strerror(-rc));
  });
}

void KernelInvalidator::invalidate_name(const lock::FileRef& dir, std::string_view name) {
  invalidate_entry(fs_.node_id_of(dir), std::string(name));
}

void KernelInvalidator::invalidate_entry(fuse_ino_t parent, std::string name) {
  if (!fs_.session() || !parent) return;
  run([this, parent, name = std::move(name)] {
    fuse_session* session = fs_.session();
    if (!session) return;
    int rc = fuse_lowlevel_notify_inval_entry(session, parent, name.c_str(), name.size());
    if (rc < 0 && rc != -ENOENT) spdlog::warn("name invalidation failed: {}", std::strerror(-rc));
  });
}

int KernelInvalidator::open_known(const lock::FileRef& file) {
  return fs_.open_known(file);
}

}  // namespace

std::unique_ptr<Passthrough> Passthrough::Open(const PassthroughConfig& config,
                                               PassthroughSeams seams, std::string* error) {
  auto fs = std::make_unique<PassthroughImpl>(config, seams);
  if (!fs->open_root(error)) return nullptr;
  return fs;
}

}  // namespace leasefs::fuse
