// inode_table.h — the passthrough's table of inodes the kernel knows about.
//
// The kernel names a file by a 64-bit node id it got from LOOKUP (or CREATE, MKDIR, ...), and
// tells us with FORGET how many of those lookups it has dropped. We hand out the address of an
// Inode as the node id, so the id is valid exactly as long as the Inode lives:
//
//   * An Inode is keyed by the backing (st_dev, st_ino) and holds an O_PATH descriptor to the
//     backing file; one Inode per backing file, however many names (hard links) lead to it.
//   * `lookups` counts the kernel's references. Every successful entry reply adds one; FORGET
//     subtracts. At zero the Inode is destroyed and its descriptor closed. The root is pinned.
//   * A descriptor may outlive its file. On a local disk it pins the file, so (st_dev, st_ino)
//     cannot name another file while the Inode lives. Through a storage client (NFS, EFS, a
//     FUSE client) it pins nothing: the file can be removed elsewhere and its number reused by a
//     new file, and the old descriptor then fails with ESTALE or ENOENT. Whoever sees that marks
//     the Inode stale; the next acquire() of that (st_dev, st_ino) gives the new file a new
//     Inode (a new node id, so the kernel drops its cached name), and the stale one lives on,
//     out of the map, until the kernel forgets it.
//   * A descriptor pins a file that was removed on the storage directly (not through this mount)
//     on a local disk, and keeps its space allocated, until the kernel forgets the node, which
//     it may never do while it caches the name. So each Inode remembers the last name it was
//     looked up by (parent node, name), and the passthrough sweeps the table (next_batch): an
//     Inode whose file has no links left is marked stale and its name invalidated in the kernel,
//     which then forgets the node unless a process has it open (as a local disk keeps an open
//     file's space).
//   * All of this is guarded by one mutex. The critical sections are map operations only; no
//     system call on the backing storage is made while holding it (the O_PATH open and fstat
//     happen before, and a redundant descriptor is closed after).
//
// Lock ordering: InodeTable::mutex_ is a leaf; nothing else is acquired while it is held.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace leasefs::fuse {

struct Inode {
  int fd = -1;  // O_PATH | O_NOFOLLOW descriptor of the backing file
  dev_t device = 0;
  ino_t number = 0;
  uint64_t lookups = 0;  // guarded by InodeTable::mutex_
  // The descriptor no longer reaches the file (ESTALE/ENOENT through it): the next lookup of
  // this (device, number) gets a fresh Inode. Set by mark_stale(), from any thread.
  std::atomic<bool> stale{false};
  // The last name the kernel looked this file up by, for invalidating it (guarded by the mutex).
  uint64_t parent_node = 0;
  std::string name;

  Inode() = default;
  Inode(const Inode&) = delete;
  Inode& operator=(const Inode&) = delete;
  ~Inode() {
    if (fd >= 0) ::close(fd);
  }
};

class InodeTable {
 public:
  // Installs the root (pinned: never forgotten). Takes ownership of root_fd.
  void set_root(int root_fd, const struct stat& st) {
    root_.fd = root_fd;
    root_.device = st.st_dev;
    root_.number = st.st_ino;
    root_.lookups = 1;
  }
  Inode& root() { return root_; }
  const Inode& root() const { return root_; }

  // Records one more kernel reference to the backing file `st` that `fd` (O_PATH, owned by the
  // caller until this returns) refers to, looked up as `name` in the node `parent_node` (both
  // remembered for the sweep; name may be null). Returns the Inode; `fd` is adopted if the file
  // was new, otherwise closed.
  Inode& acquire(int fd, const struct stat& st, uint64_t parent_node = 0,
                 const char* name = nullptr) {
    std::unique_ptr<Inode> fresh;
    Inode* inode;
    {
      std::lock_guard<std::mutex> guard(mutex_);
      if (st.st_dev == root_.device && st.st_ino == root_.number) {
        inode = &root_;
      } else {
        auto& slot = inodes_[{st.st_dev, st.st_ino}];
        if (slot && slot->stale.load(std::memory_order_relaxed)) {
          Inode* old = slot.get();
          orphans_.emplace(old, std::move(slot));  // the kernel still holds its references
        }
        if (!slot) {
          slot = std::make_unique<Inode>();
          slot->fd = fd;
          slot->device = st.st_dev;
          slot->number = st.st_ino;
          fd = -1;
        }
        inode = slot.get();
      }
      inode->lookups++;
      if (name != nullptr && inode != &root_) {
        inode->parent_node = parent_node;
        inode->name = name;
      }
    }
    if (fd >= 0) ::close(fd);
    return *inode;
  }

  // Adds a reference to an Inode the caller already holds a reference to (e.g. LINK).
  void add_reference(Inode& inode) {
    std::lock_guard<std::mutex> guard(mutex_);
    inode.lookups++;
  }

  // Drops `count` kernel references; destroys the Inode when none remain. Returns true if it
  // did (its descriptor is closed by then: the backing inode number may be reused from now on).
  bool forget(Inode& inode, uint64_t count) {
    std::unique_ptr<Inode> doomed;
    {
      std::lock_guard<std::mutex> guard(mutex_);
      if (&inode == &root_) return false;
      inode.lookups = count >= inode.lookups ? 0 : inode.lookups - count;
      if (inode.lookups > 0) return false;
      auto it = inodes_.find({inode.device, inode.number});
      if (it != inodes_.end() && it->second.get() == &inode) {
        doomed = std::move(it->second);
        inodes_.erase(it);
      } else if (auto orphan = orphans_.find(&inode); orphan != orphans_.end()) {
        doomed = std::move(orphan->second);
        orphans_.erase(orphan);
      } else {
        return false;
      }
    }
    return true;  // `doomed` closes the descriptor outside the lock
  }

  // A duplicate of the O_PATH descriptor of a backing file the kernel currently knows, or -1.
  // (dup() is the one system call made under the lock: it cannot block.)
  int dup_path_fd(dev_t device, ino_t number) const {
    std::lock_guard<std::mutex> guard(mutex_);
    const Inode* inode = nullptr;
    if (device == root_.device && number == root_.number) {
      inode = &root_;
    } else if (auto it = inodes_.find({device, number}); it != inodes_.end()) {
      inode = it->second.get();
    }
    return inode ? fcntl(inode->fd, F_DUPFD_CLOEXEC, 0) : -1;
  }

  // The Inode for a backing file the kernel currently knows, or nullptr. The pointer is only an
  // identity (a node id) once the lock is dropped: the caller must not dereference it.
  const Inode* find(dev_t device, ino_t number) const {
    std::lock_guard<std::mutex> guard(mutex_);
    if (device == root_.device && number == root_.number) return &root_;
    auto it = inodes_.find({device, number});
    return it == inodes_.end() ? nullptr : it->second.get();
  }

  // The descriptor of `inode` no longer reaches its file (see above). Never the root's.
  void mark_stale(Inode& inode) {
    if (&inode != &root_) inode.stale.store(true, std::memory_order_relaxed);
  }

  // One Inode of a sweep: a duplicate of its descriptor (the caller closes it) and its last name.
  struct Known {
    int fd = -1;
    const Inode* inode = nullptr;  // identity only (see find())
    dev_t device = 0;
    ino_t number = 0;
    uint64_t parent_node = 0;
    std::string name;
  };
  // Up to `limit` Inodes (not the root, not stale) with keys after *cursor, in key order;
  // advances *cursor, and resets it to the start after the last one.
  std::vector<Known> next_batch(std::pair<dev_t, ino_t>* cursor, size_t limit) const {
    std::vector<Known> batch;
    std::lock_guard<std::mutex> guard(mutex_);
    auto it = inodes_.upper_bound(*cursor);
    for (; it != inodes_.end() && batch.size() < limit; ++it) {
      const Inode& inode = *it->second;
      *cursor = it->first;
      if (inode.stale.load(std::memory_order_relaxed) || inode.name.empty()) continue;
      int fd = fcntl(inode.fd, F_DUPFD_CLOEXEC, 0);
      if (fd < 0) break;  // out of descriptors: the next sweep goes on from here
      batch.push_back({fd, &inode, inode.device, inode.number, inode.parent_node, inode.name});
    }
    if (it == inodes_.end()) *cursor = {0, 0};
    return batch;
  }

  // Marks stale the Inode of (device, number) if it is still `expected`; returns whether it was.
  Inode* mark_stale_if(dev_t device, ino_t number, const Inode* expected) {
    std::lock_guard<std::mutex> guard(mutex_);
    auto it = inodes_.find({device, number});
    if (it == inodes_.end() || it->second.get() != expected) return nullptr;
    it->second->stale.store(true, std::memory_order_relaxed);
    return it->second.get();
  }

  size_t size() const {
    std::lock_guard<std::mutex> guard(mutex_);
    return inodes_.size() + orphans_.size() + 1;
  }

 private:
  mutable std::mutex mutex_;
  Inode root_;
  std::map<std::pair<dev_t, ino_t>, std::unique_ptr<Inode>> inodes_;
  std::map<const Inode*, std::unique_ptr<Inode>> orphans_;  // stale, replaced in inodes_
};

}  // namespace leasefs::fuse
