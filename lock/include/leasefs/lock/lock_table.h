// leasefs/lock/lock_table.h — the host lock table: POSIX byte-range locks of one file.
//
// The leasefs daemon is the POSIX lock manager for every file its mount serves. The kernel does
// not keep FUSE locks itself; it forwards each fcntl(F_GETLK/F_SETLK/F_SETLKW) to us with a 64-bit
// lock_owner (one per process for classic POSIX locks, one per open file description for OFD
// locks) and expects the answers a local filesystem would give. This file implements those answers
// for one file, exactly as fs/locks.c does for local files. What the rest of the cluster holds is
// not this file's business: the lease manager consults the table, then the lease store.
//
// A lock is held by an owner, is READ (shared) or WRITE (exclusive), and covers a byte range. The
// rules are few, but every one of them matters to SQLite:
//
//   *  Locks of the same owner never conflict with each other.  An owner does not "hold two locks"
//      on a byte: applying a lock REPLACES the owner's coverage of the range with the new type.
//      This is how SQLite upgrades (READ -> WRITE on the shared range for EXCLUSIVE) and
//      downgrades (WRITE -> READ when it drops back to SHARED) without ever unlocking.
//
//   *  Locks of different owners conflict iff their ranges overlap and at least one is WRITE.
//      A lock request that conflicts fails (F_SETLK -> EAGAIN, which SQLite maps to SQLITE_BUSY)
//      and changes nothing at all: application is all-or-nothing.
//
//   *  Unlocking a range removes the owner's coverage there and nothing else; unlocking bytes the
//      owner does not hold is not an error.  close(2) of any descriptor of the file drops every
//      lock of the closing owner (FUSE tells us through FLUSH), see unlock_all().
//
//   *  F_GETLK reports one lock that would conflict, or F_UNLCK.  SQLite decides that a rollback
//      journal is "hot" (and rolls it back!) when F_GETLK(F_WRLCK) on RESERVED_BYTE reports
//      F_UNLCK, so a wrong "unlocked" answer here corrupts databases.
//
// Representation.  Ranges are half-open [start, end) over uint64 offsets; end == kToEnd stands for
// "to the end of the file and beyond" (l_len == 0).  Real offsets never exceed OFFSET_MAX
// (INT64_MAX); as in fs/locks.c a range whose last byte is OFFSET_MAX IS a to-EOF range, and
// RangeFromFlock() returns it as such.  The table keeps the locks of a file in canonical form,
// which fs/locks.c also maintains and which these invariants define:
//
//   (1) every range is non-empty (start < end);
//   (2) the ranges of one owner do not overlap;
//   (3) two ranges of one owner that touch (a.end == b.start) have different types — adjacent or
//       overlapping ranges of the same type are merged into one;
//   (4) storage is one flat vector sorted by (owner, start): a lock call touches one contiguous
//       run of it, and after the first few transactions no call allocates.
//
// Canonical form makes the table a function of "which owner holds which byte how", so it can be
// checked byte by byte against a reference model (tests/unit/lock_table_test.cc does).  Applying a
// lock may split an existing lock of the owner into up to three pieces (a WRITE in the middle of a
// READ) and may merge any number of the owner's locks into one.  The merged lock reports the pid
// of the request that produced it; the untouched pieces of a split lock keep theirs.
//
// SQLite's pattern, for scale: a handful of owners per file, at most three ranges per owner
// (PENDING 0x40000000, RESERVED 0x40000001, SHARED 0x40000002..0x400001FF in the database file; WAL
// bytes 120..128 in the -shm file), four to eight calls per transaction.  Everything here is a
// linear scan of a few dozen bytes of memory.
#pragma once

#include <fcntl.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

namespace leasefs::lock {

enum class LockType : uint8_t { kRead, kWrite };

// End of a range that extends to the end of the file, whatever its size (struct flock l_len 0).
inline constexpr uint64_t kToEnd = UINT64_MAX;

// Bytes [start, end). Empty when start >= end.
struct LockRange {
  uint64_t start = 0;
  uint64_t end = 0;
  friend bool operator==(const LockRange&, const LockRange&) = default;
};

struct HeldLock {
  uint64_t owner = 0;
  LockType type = LockType::kRead;
  LockRange range;
  uint32_t pid = 0;  // reported by F_GETLK only; never used for ownership
  friend bool operator==(const HeldLock&, const HeldLock&) = default;
};

// Converts the range of a struct flock to a LockRange, with the kernel's rules (fs/locks.c
// flock64_to_posix_lock): l_len > 0 is [l_start, l_start + l_len); l_len == 0 is [l_start, kToEnd);
// l_len < 0 is [l_start + l_len, l_start) (POSIX.1-2001); a range whose last byte is OFFSET_MAX is
// returned as a to-EOF range.  l_whence must be SEEK_SET (FUSE always delivers absolute ranges).
// Returns 0, EINVAL (l_whence not SEEK_SET, l_start < 0, or l_start + l_len < 0 for a negative
// l_len) or EOVERFLOW (last byte beyond OFFSET_MAX), and leaves *out untouched on error.
// l_type is not examined.
int RangeFromFlock(const struct flock& lock, LockRange* out);

// Describes `held` in a struct flock, as F_GETLK reports a conflicting lock: l_type F_RDLCK or
// F_WRLCK, l_whence SEEK_SET, l_start, l_len (0 when the range reaches past OFFSET_MAX, i.e. to
// EOF), l_pid.  When there is no conflict F_GETLK sets only l_type = F_UNLCK; that is the caller's.
void FillFlock(const HeldLock& held, struct flock* out);

// The POSIX locks of one file.  Not thread-safe: whoever owns a FileLockState guards it.
// Every method accepts empty ranges, which hold nothing, conflict with nothing and change nothing.
class FileLockState {
 public:
  // The conflicting lock with the lowest start (ties: lowest owner) that another owner holds
  // against (owner, type, range), or nullopt when the request could be granted.
  std::optional<HeldLock> conflict(uint64_t owner, LockType type, LockRange range) const;

  // F_SETLK: applies the lock when nothing conflicts and returns nullopt; otherwise changes nothing
  // and returns the conflicting lock (the caller answers EAGAIN).
  std::optional<HeldLock> try_lock(uint64_t owner, LockType type, LockRange range, uint32_t pid);

  // Sets owner's coverage of `range` to `type`: upgrades, downgrades, splits and merges the
  // owner's locks as needed.  Does not look at other owners; the caller has checked conflict().
  void lock(uint64_t owner, LockType type, LockRange range, uint32_t pid);

  // F_UNLCK: removes owner's coverage of `range`, splitting a lock that straddles its edges.
  void unlock(uint64_t owner, LockRange range);

  // close(2) by owner (FLUSH), or the end of an OFD owner: drops every lock of owner.
  void unlock_all(uint64_t owner);

  bool empty() const { return locks_.empty(); }

  // Whether owner holds any lock on the file; on any byte of `range`.
  bool owner_holds(uint64_t owner) const;
  bool owner_holds_in(uint64_t owner, LockRange range) const;

  // The strongest lock any owner holds on any byte of `range`: nullopt when no byte of it is
  // locked, else kRead or kWrite.  leasefs needs, per lock region, the union of its local owners.
  std::optional<LockType> strongest_in(LockRange range) const;

  // Every lock, sorted by (start, owner).  For tests, diagnostics and status output.
  std::vector<HeldLock> locks() const;

 private:
  // Replaces locks_[first, last) — a run of one owner's locks — by pieces[0, count).
  void replace(size_t first, size_t last, const HeldLock* pieces, size_t count);
  // The run [first, last) of locks_ that belongs to owner (empty, at its sorted place, if none).
  std::pair<size_t, size_t> owner_run(uint64_t owner) const;

  std::vector<HeldLock> locks_;  // canonical; sorted by (owner, range.start)
};

}  // namespace leasefs::lock
