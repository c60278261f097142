// The host lock table; see lock_table.h for the semantics and the invariants kept here.
#include "leasefs/lock/lock_table.h"

#include <fcntl.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>

namespace leasefs::lock {
namespace {

static_assert(sizeof(off_t) == 8, "leasefs needs a 64-bit off_t (_FILE_OFFSET_BITS=64)");

// The largest file offset (fs/locks.c OFFSET_MAX). A range whose last byte is this is to-EOF.
constexpr uint64_t kOffsetMax = INT64_MAX;

bool Empty(LockRange range) {
  return range.start >= range.end;
}

// Whether some byte lies in both. An empty range (start >= end) overlaps nothing, not even a lock
// whose interior its start falls in.
bool Overlaps(LockRange a, LockRange b) {
  return !Empty(a) && !Empty(b) && a.start < b.end && b.start < a.end;
}

bool Conflicts(LockType a, LockType b) {
  return a == LockType::kWrite || b == LockType::kWrite;
}

}  // namespace

int RangeFromFlock(const struct flock& lock, LockRange* out) {
  if (lock.l_whence != SEEK_SET || lock.l_start < 0) return EINVAL;
  const uint64_t start = static_cast<uint64_t>(lock.l_start);
  if (lock.l_len > 0) {
    const uint64_t last = static_cast<uint64_t>(lock.l_len) - 1;  // offset of the last byte - start
    if (last > kOffsetMax - start) return EOVERFLOW;
    *out = {start, start + last == kOffsetMax ? kToEnd : start + last + 1};
  } else if (lock.l_len < 0) {
    // Unsigned negation: exact for every negative l_len, INT64_MIN included.
    const uint64_t length = uint64_t{0} - static_cast<uint64_t>(lock.l_len);
    if (length > start) return EINVAL;
    *out = {start - length, start};
  } else {
    *out = {start, kToEnd};
  }
  return 0;
}

void FillFlock(const HeldLock& held, struct flock* out) {
  out->l_type = held.type == LockType::kWrite ? F_WRLCK : F_RDLCK;
  out->l_whence = SEEK_SET;
  out->l_start = static_cast<off_t>(std::min(held.range.start, kOffsetMax));
  out->l_len =
      held.range.end > kOffsetMax ? 0 : static_cast<off_t>(held.range.end - held.range.start);
  out->l_pid = static_cast<pid_t>(held.pid);
}

std::optional<HeldLock> FileLockState::conflict(uint64_t owner, LockType type,
                                                LockRange range) const {
  const HeldLock* first = nullptr;
  // locks_ is sorted by owner, so on equal starts the earlier (lower) owner is kept.
  for (const HeldLock& held : locks_) {
    if (held.owner == owner || !Overlaps(held.range, range) || !Conflicts(held.type, type)) {
      continue;
    }
    if (first == nullptr || held.range.start < first->range.start) first = &held;
  }
  if (first == nullptr) return std::nullopt;
  return *first;
}

std::optional<HeldLock> FileLockState::try_lock(uint64_t owner, LockType type, LockRange range,
                                                uint32_t pid) {
  std::optional<HeldLock> blocker = conflict(owner, type, range);
  if (!blocker) lock(owner, type, range, pid);
  return blocker;
}

void FileLockState::lock(uint64_t owner, LockType type, LockRange range, uint32_t pid) {
  if (Empty(range)) return;
  const auto [run_begin, run_end] = owner_run(owner);
  // The affected locks form one contiguous stretch [first, last) of the owner's run: those that
  // overlap `range`, plus a same-type lock touching either edge (it merges). By invariant (3) no
  // lock beyond these can touch the merged result with the same type.
  size_t first = run_begin;
  while (first < run_end) {
    const HeldLock& held = locks_[first];
    if (held.range.end > range.start || (held.range.end == range.start && held.type == type)) {
      break;
    }
    ++first;
  }
  HeldLock merged{owner, type, range, pid};
  std::optional<HeldLock> left, right;  // the parts of other-type locks that stick out
  size_t last = first;
  for (; last < run_end; ++last) {
    const HeldLock& held = locks_[last];
    if (held.range.start > range.end || (held.range.start == range.end && held.type != type)) {
      break;
    }
    if (held.type == type) {
      merged.range.start = std::min(merged.range.start, held.range.start);
      merged.range.end = std::max(merged.range.end, held.range.end);
      continue;
    }
    // Only the first affected lock can start before `range`, only the last can end after it; one
    // lock that does both is split into three.
    if (held.range.start < range.start) {
      left = HeldLock{owner, held.type, {held.range.start, range.start}, held.pid};
    }
    if (held.range.end > range.end) {
      right = HeldLock{owner, held.type, {range.end, held.range.end}, held.pid};
    }
  }
  HeldLock pieces[3];
  size_t count = 0;
  if (left) pieces[count++] = *left;
  pieces[count++] = merged;
  if (right) pieces[count++] = *right;
  replace(first, last, pieces, count);
}

void FileLockState::unlock(uint64_t owner, LockRange range) {
  if (Empty(range)) return;
  const auto [run_begin, run_end] = owner_run(owner);
  size_t first = run_begin;
  while (first < run_end && locks_[first].range.end <= range.start) ++first;
  size_t last = first;
  while (last < run_end && locks_[last].range.start < range.end) ++last;
  if (first == last) return;
  HeldLock pieces[2];
  size_t count = 0;
  if (const HeldLock& held = locks_[first]; held.range.start < range.start) {
    pieces[count++] = HeldLock{owner, held.type, {held.range.start, range.start}, held.pid};
  }
  if (const HeldLock& held = locks_[last - 1]; held.range.end > range.end) {
    pieces[count++] = HeldLock{owner, held.type, {range.end, held.range.end}, held.pid};
  }
  replace(first, last, pieces, count);
}

void FileLockState::unlock_all(uint64_t owner) {
  const auto [first, last] = owner_run(owner);
  locks_.erase(locks_.begin() + static_cast<ptrdiff_t>(first),
               locks_.begin() + static_cast<ptrdiff_t>(last));
}

bool FileLockState::owner_holds(uint64_t owner) const {
  const auto [first, last] = owner_run(owner);
  return first != last;
}

bool FileLockState::owner_holds_in(uint64_t owner, LockRange range) const {
  const auto [first, last] = owner_run(owner);
  for (size_t i = first; i < last; ++i) {
    if (Overlaps(locks_[i].range, range)) return true;
  }
  return false;
}

std::optional<LockType> FileLockState::strongest_in(LockRange range) const {
  std::optional<LockType> strongest;
  for (const HeldLock& held : locks_) {
    if (!Overlaps(held.range, range)) continue;
    if (held.type == LockType::kWrite) return LockType::kWrite;
    strongest = LockType::kRead;
  }
  return strongest;
}

std::vector<HeldLock> FileLockState::locks() const {
  std::vector<HeldLock> sorted = locks_;
  std::sort(sorted.begin(), sorted.end(), [](const HeldLock& a, const HeldLock& b) {
    return a.range.start != b.range.start ? a.range.start < b.range.start : a.owner < b.owner;
  });
  return sorted;
}

void FileLockState::replace(size_t first, size_t last, const HeldLock* pieces, size_t count) {
  const size_t old_count = last - first;
  const size_t common = std::min(old_count, count);
  std::copy(pieces, pieces + common, locks_.begin() + static_cast<ptrdiff_t>(first));
  const auto tail = locks_.begin() + static_cast<ptrdiff_t>(first + common);
  if (count > old_count) {
    locks_.insert(tail, pieces + common, pieces + count);
  } else if (old_count > count) {
    locks_.erase(tail, locks_.begin() + static_cast<ptrdiff_t>(last));
  }
}

std::pair<size_t, size_t> FileLockState::owner_run(uint64_t owner) const {
  const auto first =
      std::lower_bound(locks_.begin(), locks_.end(), owner,
                       [](const HeldLock& held, uint64_t o) { return held.owner < o; });
  const auto last = std::upper_bound(
      first, locks_.end(), owner, [](uint64_t o, const HeldLock& held) { return o < held.owner; });
  return {static_cast<size_t>(first - locks_.begin()), static_cast<size_t>(last - locks_.begin())};
}

}  // namespace leasefs::lock
