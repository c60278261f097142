// Unit tests for the host lock table (lock/include/leasefs/lock/lock_table.h): struct flock
// conversion, each POSIX rule on its own, SQLite's exact fcntl sequence between two owners, and a
// randomized comparison against a byte-by-byte reference model.
#include "leasefs/lock/lock_table.h"

#include <fcntl.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>
#include <map>
#include <optional>
#include <ostream>
#include <random>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

namespace leasefs::lock {

// Readable failure messages (found by GoogleTest through ADL).
void PrintTo(LockType type, std::ostream* os) {
  *os << (type == LockType::kWrite ? "W" : "R");
}
void PrintTo(const LockRange& range, std::ostream* os) {
  *os << "[" << range.start << ", ";
  if (range.end == kToEnd) {
    *os << "EOF)";
  } else {
    *os << range.end << ")";
  }
}
void PrintTo(const HeldLock& held, std::ostream* os) {
  *os << "{owner " << held.owner << " ";
  PrintTo(held.type, os);
  *os << " ";
  PrintTo(held.range, os);
  *os << " pid " << held.pid << "}";
}

namespace {

constexpr LockType R = LockType::kRead;
constexpr LockType W = LockType::kWrite;
constexpr uint64_t A = 1;
constexpr uint64_t B = 2;
constexpr uint64_t C = 3;
constexpr uint64_t kOffsetMax = INT64_MAX;

HeldLock L(uint64_t owner, LockType type, uint64_t start, uint64_t end, uint32_t pid = 0) {
  return HeldLock{owner, type, {start, end}, pid};
}

struct flock Flock(short type, off_t start, off_t len, short whence = SEEK_SET) {
  struct flock fl {};
  fl.l_type = type;
  fl.l_whence = whence;
  fl.l_start = start;
  fl.l_len = len;
  return fl;
}

// ---------------------------------------------------------------------------------------------
// struct flock <-> LockRange

TEST(RangeFromFlockTest, PositiveLength) {
  LockRange range;
  ASSERT_EQ(RangeFromFlock(Flock(F_RDLCK, 10, 5), &range), 0);
  EXPECT_EQ(range, (LockRange{10, 15}));
  ASSERT_EQ(RangeFromFlock(Flock(F_RDLCK, 0, 1), &range), 0);
  EXPECT_EQ(range, (LockRange{0, 1}));
}

TEST(RangeFromFlockTest, ZeroLengthMeansToEndOfFile) {
  LockRange range;
  ASSERT_EQ(RangeFromFlock(Flock(F_UNLCK, 0, 0), &range), 0);
  EXPECT_EQ(range, (LockRange{0, kToEnd}));
  ASSERT_EQ(RangeFromFlock(Flock(F_WRLCK, 0x40000000, 0), &range), 0);
  EXPECT_EQ(range, (LockRange{0x40000000, kToEnd}));
}

TEST(RangeFromFlockTest, NegativeLengthCoversBytesBeforeStart) {
  LockRange range;
  ASSERT_EQ(RangeFromFlock(Flock(F_RDLCK, 10, -4), &range), 0);
  EXPECT_EQ(range, (LockRange{6, 10}));
  ASSERT_EQ(RangeFromFlock(Flock(F_RDLCK, 5, -5), &range), 0);
  EXPECT_EQ(range, (LockRange{0, 5}));
  ASSERT_EQ(RangeFromFlock(Flock(F_RDLCK, INT64_MAX, -INT64_MAX), &range), 0);
  EXPECT_EQ(range, (LockRange{0, kOffsetMax}));
}

TEST(RangeFromFlockTest, InvalidInputIsEinvalAndLeavesOutputAlone) {
  const LockRange sentinel{123, 456};
  LockRange range = sentinel;
  EXPECT_EQ(RangeFromFlock(Flock(F_RDLCK, 3, -4), &range), EINVAL);  // starts before byte 0
  EXPECT_EQ(RangeFromFlock(Flock(F_RDLCK, 0, -1), &range), EINVAL);
  EXPECT_EQ(RangeFromFlock(Flock(F_RDLCK, INT64_MAX, INT64_MIN), &range), EINVAL);
  EXPECT_EQ(RangeFromFlock(Flock(F_RDLCK, -1, 1), &range), EINVAL);  // negative start
  EXPECT_EQ(RangeFromFlock(Flock(F_RDLCK, INT64_MIN, 0), &range), EINVAL);
  EXPECT_EQ(RangeFromFlock(Flock(F_RDLCK, 0, 1, SEEK_CUR), &range), EINVAL);  // not absolute
  EXPECT_EQ(RangeFromFlock(Flock(F_RDLCK, 0, 1, SEEK_END), &range), EINVAL);
  EXPECT_EQ(range, sentinel);
}

TEST(RangeFromFlockTest, LastByteBeyondOffsetMaxOverflows) {
  // fs/locks.c and POSIX: EOVERFLOW when the last byte is not representable in off_t.
  const LockRange sentinel{123, 456};
  LockRange range = sentinel;
  EXPECT_EQ(RangeFromFlock(Flock(F_WRLCK, INT64_MAX, 2), &range), EOVERFLOW);
  EXPECT_EQ(RangeFromFlock(Flock(F_WRLCK, 2, INT64_MAX), &range), EOVERFLOW);
  EXPECT_EQ(RangeFromFlock(Flock(F_WRLCK, INT64_MAX / 2 + 2, INT64_MAX / 2 + 1), &range),
            EOVERFLOW);
  EXPECT_EQ(range, sentinel);
}

TEST(RangeFromFlockTest, RangeEndingAtOffsetMaxIsToEndOfFile) {
  // The kernel stores both as fl_end == OFFSET_MAX; libfuse turns that back into l_len 0.
  LockRange range;
  ASSERT_EQ(RangeFromFlock(Flock(F_WRLCK, 1, INT64_MAX), &range), 0);
  EXPECT_EQ(range, (LockRange{1, kToEnd}));
  ASSERT_EQ(RangeFromFlock(Flock(F_WRLCK, INT64_MAX, 1), &range), 0);
  EXPECT_EQ(range, (LockRange{kOffsetMax, kToEnd}));
  ASSERT_EQ(RangeFromFlock(Flock(F_WRLCK, 0, INT64_MAX), &range), 0);  // last byte OFFSET_MAX-1
  EXPECT_EQ(range, (LockRange{0, kOffsetMax}));
}

TEST(RangeFromFlockTest, SqliteOffsets) {
  LockRange range;
  ASSERT_EQ(RangeFromFlock(Flock(F_RDLCK, 0x40000000, 1), &range), 0);  // PENDING_BYTE
  EXPECT_EQ(range, (LockRange{0x40000000, 0x40000001}));
  ASSERT_EQ(RangeFromFlock(Flock(F_WRLCK, 0x40000001, 1), &range), 0);  // RESERVED_BYTE
  EXPECT_EQ(range, (LockRange{0x40000001, 0x40000002}));
  ASSERT_EQ(RangeFromFlock(Flock(F_RDLCK, 0x40000002, 510), &range), 0);  // SHARED range
  EXPECT_EQ(range, (LockRange{0x40000002, 0x40000200}));
  ASSERT_EQ(RangeFromFlock(Flock(F_UNLCK, 0x40000000, 2), &range), 0);  // downgrade
  EXPECT_EQ(range, (LockRange{0x40000000, 0x40000002}));
  ASSERT_EQ(RangeFromFlock(Flock(F_WRLCK, 120, 1), &range), 0);  // WAL_WRITE_LOCK in -shm
  EXPECT_EQ(range, (LockRange{120, 121}));
}

TEST(FillFlockTest, DescribesTheLock) {
  struct flock fl = Flock(F_UNLCK, 7, 7, SEEK_END);
  FillFlock(L(A, W, 0x40000001, 0x40000002, 4242), &fl);
  EXPECT_EQ(fl.l_type, F_WRLCK);
  EXPECT_EQ(fl.l_whence, SEEK_SET);
  EXPECT_EQ(fl.l_start, 0x40000001);
  EXPECT_EQ(fl.l_len, 1);
  EXPECT_EQ(fl.l_pid, 4242);

  FillFlock(L(B, R, 0x40000002, 0x40000200, 17), &fl);
  EXPECT_EQ(fl.l_type, F_RDLCK);
  EXPECT_EQ(fl.l_start, 0x40000002);
  EXPECT_EQ(fl.l_len, 510);
  EXPECT_EQ(fl.l_pid, 17);
}

TEST(FillFlockTest, ToEndOfFileIsLengthZero) {
  struct flock fl {};
  FillFlock(L(A, R, 100, kToEnd), &fl);
  EXPECT_EQ(fl.l_start, 100);
  EXPECT_EQ(fl.l_len, 0);
  FillFlock(L(A, R, 5, kOffsetMax + 1), &fl);  // last byte OFFSET_MAX: the same lock
  EXPECT_EQ(fl.l_len, 0);
  FillFlock(L(A, R, 5, kOffsetMax), &fl);  // last byte OFFSET_MAX-1: a finite lock
  EXPECT_EQ(fl.l_len, INT64_MAX - 5);
}

TEST(FillFlockTest, RoundTripsThroughRangeFromFlock) {
  const std::vector<std::pair<off_t, off_t>> cases = {
      {0, 1}, {0, 0}, {10, 5}, {0x40000000, 2}, {0x40000002, 510}, {INT64_MAX - 1, 1}, {3, 0}};
  for (const auto& [start, len] : cases) {
    LockRange range;
    ASSERT_EQ(RangeFromFlock(Flock(F_WRLCK, start, len), &range), 0);
    struct flock fl {};
    FillFlock(HeldLock{A, W, range, 1}, &fl);
    EXPECT_EQ(fl.l_start, start) << start << "/" << len;
    EXPECT_EQ(fl.l_len, len) << start << "/" << len;
  }
  // A negative length comes back in its positive form.
  LockRange range;
  ASSERT_EQ(RangeFromFlock(Flock(F_WRLCK, 10, -4), &range), 0);
  struct flock fl {};
  FillFlock(HeldLock{A, W, range, 1}, &fl);
  EXPECT_EQ(fl.l_start, 6);
  EXPECT_EQ(fl.l_len, 4);
}

// ---------------------------------------------------------------------------------------------
// One owner: replace, split, merge, unlock

TEST(FileLockStateTest, StartsEmpty) {
  FileLockState state;
  EXPECT_TRUE(state.empty());
  EXPECT_TRUE(state.locks().empty());
  EXPECT_FALSE(state.owner_holds(A));
  EXPECT_EQ(state.strongest_in({0, kToEnd}), std::nullopt);
  EXPECT_EQ(state.conflict(A, W, {0, kToEnd}), std::nullopt);
}

TEST(FileLockStateTest, LockAndUnlockOneRange) {
  FileLockState state;
  state.lock(A, R, {10, 20}, 7);
  EXPECT_FALSE(state.empty());
  EXPECT_TRUE(state.owner_holds(A));
  EXPECT_FALSE(state.owner_holds(B));
  EXPECT_TRUE(state.owner_holds_in(A, {19, 30}));
  EXPECT_FALSE(state.owner_holds_in(A, {20, 30}));  // ranges are half-open
  EXPECT_FALSE(state.owner_holds_in(A, {0, 10}));
  EXPECT_FALSE(state.owner_holds_in(B, {10, 20}));
  EXPECT_EQ(state.locks(), std::vector<HeldLock>{L(A, R, 10, 20, 7)});
  state.unlock(A, {10, 20});
  EXPECT_TRUE(state.empty());
  EXPECT_FALSE(state.owner_holds(A));
}

TEST(FileLockStateTest, SameLockTwiceIsOneLock) {
  FileLockState state;
  state.lock(A, W, {10, 20}, 7);
  state.lock(A, W, {10, 20}, 7);
  EXPECT_EQ(state.locks(), std::vector<HeldLock>{L(A, W, 10, 20, 7)});
}

TEST(FileLockStateTest, UpgradeInTheMiddleSplitsIntoThree) {
  FileLockState state;
  state.lock(A, R, {0, 30}, 7);
  state.lock(A, W, {10, 20}, 7);
  EXPECT_EQ(state.locks(),
            (std::vector<HeldLock>{L(A, R, 0, 10, 7), L(A, W, 10, 20, 7), L(A, R, 20, 30, 7)}));
}

TEST(FileLockStateTest, DowngradeInTheMiddleSplitsIntoThree) {
  FileLockState state;
  state.lock(A, W, {0, kToEnd}, 7);
  state.lock(A, R, {100, 200}, 7);
  EXPECT_EQ(state.locks(), (std::vector<HeldLock>{L(A, W, 0, 100, 7), L(A, R, 100, 200, 7),
                                                  L(A, W, 200, kToEnd, 7)}));
}

TEST(FileLockStateTest, UpgradeAtAnEdge) {
  FileLockState state;
  state.lock(A, R, {0, 30}, 7);
  state.lock(A, W, {0, 10}, 7);
  EXPECT_EQ(state.locks(), (std::vector<HeldLock>{L(A, W, 0, 10, 7), L(A, R, 10, 30, 7)}));
  state.lock(A, W, {25, 30}, 7);
  EXPECT_EQ(state.locks(),
            (std::vector<HeldLock>{L(A, W, 0, 10, 7), L(A, R, 10, 25, 7), L(A, W, 25, 30, 7)}));
}

TEST(FileLockStateTest, UpgradeOverhangingTheLock) {
  FileLockState state;
  state.lock(A, R, {10, 20}, 7);
  state.lock(A, W, {15, 40}, 7);
  EXPECT_EQ(state.locks(), (std::vector<HeldLock>{L(A, R, 10, 15, 7), L(A, W, 15, 40, 7)}));
  state.lock(A, W, {0, 12}, 7);
  EXPECT_EQ(state.locks(),
            (std::vector<HeldLock>{L(A, W, 0, 12, 7), L(A, R, 12, 15, 7), L(A, W, 15, 40, 7)}));
}

TEST(FileLockStateTest, DowngradeTheWholeLockInPlace) {
  FileLockState state;
  state.lock(A, W, {0, 10}, 7);
  state.lock(A, R, {0, 10}, 7);
  EXPECT_EQ(state.locks(), std::vector<HeldLock>{L(A, R, 0, 10, 7)});
}

TEST(FileLockStateTest, MergesAdjacentRangesOfTheSameType) {
  FileLockState state;
  state.lock(A, R, {0, 10}, 7);
  state.lock(A, R, {10, 20}, 7);
  EXPECT_EQ(state.locks(), std::vector<HeldLock>{L(A, R, 0, 20, 7)});
  state.lock(A, R, {30, 40}, 7);
  state.lock(A, R, {29, 30}, 7);  // adjacent on the other side
  EXPECT_EQ(state.locks(), (std::vector<HeldLock>{L(A, R, 0, 20, 7), L(A, R, 29, 40, 7)}));
}

TEST(FileLockStateTest, MergesOverlappingRangesOfTheSameType) {
  FileLockState state;
  state.lock(A, W, {0, 10}, 7);
  state.lock(A, W, {5, 15}, 7);
  EXPECT_EQ(state.locks(), std::vector<HeldLock>{L(A, W, 0, 15, 7)});
  state.lock(A, W, {3, 4}, 7);  // inside: nothing changes
  EXPECT_EQ(state.locks(), std::vector<HeldLock>{L(A, W, 0, 15, 7)});
}

TEST(FileLockStateTest, FillingAGapMergesBothNeighbours) {
  FileLockState state;
  state.lock(A, R, {0, 10}, 7);
  state.lock(A, R, {20, 30}, 7);
  state.lock(A, R, {40, 50}, 7);
  state.lock(A, R, {10, 20}, 7);
  EXPECT_EQ(state.locks(), (std::vector<HeldLock>{L(A, R, 0, 30, 7), L(A, R, 40, 50, 7)}));
  state.lock(A, R, {5, 45}, 7);  // swallows a whole lock and overlaps two
  EXPECT_EQ(state.locks(), std::vector<HeldLock>{L(A, R, 0, 50, 7)});
}

TEST(FileLockStateTest, DoesNotMergeDifferentTypes) {
  FileLockState state;
  state.lock(A, R, {0, 10}, 7);
  state.lock(A, W, {10, 20}, 7);
  state.lock(A, R, {20, 30}, 7);
  EXPECT_EQ(state.locks(),
            (std::vector<HeldLock>{L(A, R, 0, 10, 7), L(A, W, 10, 20, 7), L(A, R, 20, 30, 7)}));
}

TEST(FileLockStateTest, UpgradeAcrossSeveralLocksMergesThemAll) {
  FileLockState state;
  state.lock(A, R, {0, 10}, 7);
  state.lock(A, W, {10, 20}, 7);
  state.lock(A, R, {20, 30}, 7);
  state.lock(A, W, {30, 40}, 7);
  state.lock(A, W, {5, 25}, 7);
  EXPECT_EQ(state.locks(), (std::vector<HeldLock>{L(A, R, 0, 5, 7), L(A, W, 5, 25, 7),
                                                  L(A, R, 25, 30, 7), L(A, W, 30, 40, 7)}));
  state.lock(A, W, {0, 30}, 7);  // now adjacent to [30, 40) W as well
  EXPECT_EQ(state.locks(), std::vector<HeldLock>{L(A, W, 0, 40, 7)});
}

TEST(FileLockStateTest, DowngradeNextToSameTypeMerges) {
  FileLockState state;
  state.lock(A, R, {0, 10}, 7);
  state.lock(A, W, {10, 20}, 7);
  state.lock(A, R, {10, 15}, 7);
  EXPECT_EQ(state.locks(), (std::vector<HeldLock>{L(A, R, 0, 15, 7), L(A, W, 15, 20, 7)}));
}

TEST(FileLockStateTest, MergedLockTakesThePidOfTheRequest) {
  FileLockState state;
  state.lock(A, R, {0, 10}, 100);
  state.lock(A, R, {10, 20}, 200);
  EXPECT_EQ(state.locks(), std::vector<HeldLock>{L(A, R, 0, 20, 200)});
  state.lock(A, W, {5, 8}, 300);  // the split pieces keep the pid they had
  EXPECT_EQ(state.locks(),
            (std::vector<HeldLock>{L(A, R, 0, 5, 200), L(A, W, 5, 8, 300), L(A, R, 8, 20, 200)}));
  state.unlock(A, {6, 7});
  EXPECT_EQ(state.locks(), (std::vector<HeldLock>{L(A, R, 0, 5, 200), L(A, W, 5, 6, 300),
                                                  L(A, W, 7, 8, 300), L(A, R, 8, 20, 200)}));
}

TEST(FileLockStateTest, UnlockTheMiddleSplitsInTwo) {
  FileLockState state;
  state.lock(A, W, {0, 30}, 7);
  state.unlock(A, {10, 20});
  EXPECT_EQ(state.locks(), (std::vector<HeldLock>{L(A, W, 0, 10, 7), L(A, W, 20, 30, 7)}));
}

TEST(FileLockStateTest, UnlockBeyondTheLockTrimsIt) {
  FileLockState state;
  state.lock(A, R, {10, 20}, 7);
  state.unlock(A, {15, 100});
  EXPECT_EQ(state.locks(), std::vector<HeldLock>{L(A, R, 10, 15, 7)});
  state.unlock(A, {0, 12});
  EXPECT_EQ(state.locks(), std::vector<HeldLock>{L(A, R, 12, 15, 7)});
  state.unlock(A, {0, kToEnd});
  EXPECT_TRUE(state.empty());
}

TEST(FileLockStateTest, UnlockSpanningSeveralLocks) {
  FileLockState state;
  state.lock(A, R, {0, 10}, 7);
  state.lock(A, W, {10, 20}, 7);
  state.lock(A, R, {25, 30}, 7);
  state.lock(A, W, {40, 50}, 7);
  state.unlock(A, {5, 45});
  EXPECT_EQ(state.locks(), (std::vector<HeldLock>{L(A, R, 0, 5, 7), L(A, W, 45, 50, 7)}));
}

TEST(FileLockStateTest, UnlockOfUnheldBytesIsANoOp) {
  FileLockState state;
  state.lock(A, R, {10, 20}, 7);
  state.unlock(A, {0, 10});
  state.unlock(A, {20, 30});
  state.unlock(B, {0, kToEnd});  // another owner's unlock never touches A
  EXPECT_EQ(state.locks(), std::vector<HeldLock>{L(A, R, 10, 20, 7)});
}

TEST(FileLockStateTest, ToEndOfFileRanges) {
  FileLockState state;
  state.lock(A, R, {100, kToEnd}, 7);
  state.unlock(A, {200, kToEnd});
  EXPECT_EQ(state.locks(), std::vector<HeldLock>{L(A, R, 100, 200, 7)});
  state.lock(A, R, {200, kToEnd}, 7);  // adjacent again: merged
  EXPECT_EQ(state.locks(), std::vector<HeldLock>{L(A, R, 100, kToEnd, 7)});
  state.lock(A, W, {kOffsetMax, kToEnd}, 7);
  EXPECT_EQ(state.locks(),
            (std::vector<HeldLock>{L(A, R, 100, kOffsetMax, 7), L(A, W, kOffsetMax, kToEnd, 7)}));
  state.unlock(A, {0, 150});
  EXPECT_EQ(state.locks(),
            (std::vector<HeldLock>{L(A, R, 150, kOffsetMax, 7), L(A, W, kOffsetMax, kToEnd, 7)}));
  EXPECT_EQ(state.conflict(B, R, {kToEnd - 1, kToEnd}), L(A, W, kOffsetMax, kToEnd, 7));
}

TEST(FileLockStateTest, EmptyRangesHoldNothingAndChangeNothing) {
  // struct flock cannot express an empty range (l_len 0 is to-EOF); the table still defines it.
  FileLockState state;
  state.lock(A, W, {10, 10}, 7);
  state.lock(A, W, {20, 5}, 7);
  EXPECT_TRUE(state.empty());
  state.lock(A, W, {0, 20}, 7);
  state.lock(A, R, {10, 10}, 7);  // would split the W if it were not empty
  state.unlock(A, {15, 15});
  EXPECT_EQ(state.locks(), std::vector<HeldLock>{L(A, W, 0, 20, 7)});
  EXPECT_EQ(state.conflict(B, W, {5, 5}), std::nullopt);
  EXPECT_EQ(state.strongest_in({5, 5}), std::nullopt);
  EXPECT_EQ(state.try_lock(B, W, {5, 5}, 8), std::nullopt);
  EXPECT_FALSE(state.owner_holds(B));
}

TEST(FileLockStateTest, UnlockAllDropsOnlyThatOwner) {
  FileLockState state;
  state.lock(A, R, {0, 10}, 7);
  state.lock(A, W, {20, 30}, 7);
  state.lock(B, R, {0, 10}, 8);
  state.lock(C, R, {5, kToEnd}, 9);
  state.unlock_all(B);
  EXPECT_EQ(state.locks(),
            (std::vector<HeldLock>{L(A, R, 0, 10, 7), L(C, R, 5, kToEnd, 9), L(A, W, 20, 30, 7)}));
  state.unlock_all(B);  // nothing left: a no-op
  state.unlock_all(A);
  EXPECT_EQ(state.locks(), std::vector<HeldLock>{L(C, R, 5, kToEnd, 9)});
  state.unlock_all(C);
  EXPECT_TRUE(state.empty());
}

TEST(FileLockStateTest, OwnersAreIndependent) {
  FileLockState state;
  state.lock(B, R, {0, 100}, 8);
  state.lock(A, R, {50, 150}, 7);
  state.lock(C, R, {0, 10}, 9);
  state.unlock(A, {0, 60});
  EXPECT_EQ(state.locks(),
            (std::vector<HeldLock>{L(B, R, 0, 100, 8), L(C, R, 0, 10, 9), L(A, R, 60, 150, 7)}));
  EXPECT_TRUE(state.owner_holds(A));
  EXPECT_TRUE(state.owner_holds(B));
  EXPECT_TRUE(state.owner_holds(C));
  EXPECT_FALSE(state.owner_holds(4));
}

TEST(FileLockStateTest, LocksAreSortedByStartThenOwner) {
  FileLockState state;
  state.lock(C, R, {0, 5}, 9);
  state.lock(A, R, {3, 4}, 7);
  state.lock(B, R, {0, 1}, 8);
  state.lock(UINT64_MAX, R, {0, 1}, 1);  // owner ids are arbitrary 64-bit values
  EXPECT_EQ(state.locks(), (std::vector<HeldLock>{L(B, R, 0, 1, 8), L(C, R, 0, 5, 9),
                                                  L(UINT64_MAX, R, 0, 1, 1), L(A, R, 3, 4, 7)}));
}

// ---------------------------------------------------------------------------------------------
// Conflicts between owners

TEST(ConflictTest, ReadersNeverConflict) {
  FileLockState state;
  state.lock(A, R, {0, 100}, 7);
  EXPECT_EQ(state.conflict(B, R, {0, kToEnd}), std::nullopt);
  EXPECT_EQ(state.try_lock(B, R, {50, 60}, 8), std::nullopt);
  EXPECT_EQ(state.conflict(C, R, {55, 56}), std::nullopt);
}

TEST(ConflictTest, WriterConflictsWithReader) {
  FileLockState state;
  state.lock(A, R, {10, 20}, 7);
  EXPECT_EQ(state.conflict(B, W, {19, 30}), L(A, R, 10, 20, 7));
  EXPECT_EQ(state.conflict(B, W, {0, kToEnd}), L(A, R, 10, 20, 7));
  EXPECT_EQ(state.conflict(B, W, {20, 30}), std::nullopt);  // touching is not overlapping
  EXPECT_EQ(state.conflict(B, W, {0, 10}), std::nullopt);
}

TEST(ConflictTest, ReaderConflictsWithWriter) {
  FileLockState state;
  state.lock(A, W, {10, 20}, 7);
  EXPECT_EQ(state.conflict(B, R, {15, 16}), L(A, W, 10, 20, 7));
  EXPECT_EQ(state.conflict(B, R, {0, 11}), L(A, W, 10, 20, 7));
  EXPECT_EQ(state.conflict(B, R, {20, kToEnd}), std::nullopt);
}

TEST(ConflictTest, WriterConflictsWithWriter) {
  FileLockState state;
  state.lock(A, W, {10, kToEnd}, 7);
  EXPECT_EQ(state.conflict(B, W, {1000, 1001}), L(A, W, 10, kToEnd, 7));
  EXPECT_EQ(state.conflict(B, W, {kOffsetMax, kToEnd}), L(A, W, 10, kToEnd, 7));
  EXPECT_EQ(state.conflict(B, W, {0, 10}), std::nullopt);
}

TEST(ConflictTest, AnOwnerNeverConflictsWithItself) {
  FileLockState state;
  state.lock(A, W, {0, kToEnd}, 7);
  EXPECT_EQ(state.conflict(A, W, {0, kToEnd}), std::nullopt);
  EXPECT_EQ(state.conflict(A, R, {5, 6}), std::nullopt);
  EXPECT_EQ(state.try_lock(A, R, {5, 6}, 7), std::nullopt);
  EXPECT_EQ(state.locks(),
            (std::vector<HeldLock>{L(A, W, 0, 5, 7), L(A, R, 5, 6, 7), L(A, W, 6, kToEnd, 7)}));
}

TEST(ConflictTest, ReportsTheConflictingLockWithTheLowestStart) {
  FileLockState state;
  state.lock(B, R, {50, 60}, 8);
  state.lock(C, R, {40, 45}, 9);
  state.lock(B, R, {30, 35}, 8);
  state.lock(A, W, {0, 100}, 7);  // the requester's own locks are ignored
  EXPECT_EQ(state.conflict(A, W, {0, kToEnd}), L(B, R, 30, 35, 8));
  EXPECT_EQ(state.conflict(A, W, {36, kToEnd}), L(C, R, 40, 45, 9));
  EXPECT_EQ(state.conflict(A, W, {55, 56}), L(B, R, 50, 60, 8));
  // The reported lock is the whole lock, even where it starts before the probe.
  EXPECT_EQ(state.conflict(A, W, {59, 70}), L(B, R, 50, 60, 8));
  // Equal starts: the lowest owner.
  state.lock(C, R, {30, 31}, 9);
  EXPECT_EQ(state.conflict(A, W, {0, kToEnd}), L(B, R, 30, 35, 8));
  EXPECT_EQ(state.conflict(B, W, {0, kToEnd}), L(A, W, 0, 100, 7));
}

TEST(ConflictTest, ConflictFillsTheFlockForGetlk) {
  FileLockState state;
  state.lock(A, W, {0x40000000, 0x40000002}, 4242);
  const std::optional<HeldLock> blocker = state.conflict(B, W, {0x40000001, 0x40000002});
  ASSERT_TRUE(blocker.has_value());
  struct flock fl = Flock(F_WRLCK, 0x40000001, 1);
  FillFlock(*blocker, &fl);
  EXPECT_EQ(fl.l_type, F_WRLCK);
  EXPECT_EQ(fl.l_whence, SEEK_SET);
  EXPECT_EQ(fl.l_start, 0x40000000);
  EXPECT_EQ(fl.l_len, 2);
  EXPECT_EQ(fl.l_pid, 4242);
}

TEST(ConflictTest, TryLockIsAllOrNothing) {
  FileLockState state;
  state.lock(A, R, {50, 60}, 7);
  state.lock(B, R, {0, 10}, 8);
  state.lock(B, W, {20, 30}, 8);
  const std::vector<HeldLock> before = state.locks();
  // B would upgrade [0, 100): [50, 60) is A's, so nothing of B's may change, not even [0, 10).
  EXPECT_EQ(state.try_lock(B, W, {0, 100}, 8), L(A, R, 50, 60, 7));
  EXPECT_EQ(state.locks(), before);
  // A new owner blocked on one byte of a large request gets nothing either.
  EXPECT_EQ(state.try_lock(C, W, {29, kToEnd}, 9), L(B, W, 20, 30, 8));
  EXPECT_FALSE(state.owner_holds(C));
  EXPECT_EQ(state.locks(), before);
  // Without the conflict the same request succeeds.
  EXPECT_EQ(state.try_lock(B, W, {0, 50}, 8), std::nullopt);
  EXPECT_EQ(state.locks(), (std::vector<HeldLock>{L(B, W, 0, 50, 8), L(A, R, 50, 60, 7)}));
}

TEST(StrongestInTest, UnionOfAllOwners) {
  FileLockState state;
  EXPECT_EQ(state.strongest_in({0, kToEnd}), std::nullopt);
  state.lock(A, R, {10, 20}, 7);
  state.lock(B, R, {15, 25}, 8);
  state.lock(C, W, {40, 50}, 9);
  EXPECT_EQ(state.strongest_in({0, 10}), std::nullopt);
  EXPECT_EQ(state.strongest_in({0, 11}), R);
  EXPECT_EQ(state.strongest_in({24, 40}), R);
  EXPECT_EQ(state.strongest_in({25, 40}), std::nullopt);
  EXPECT_EQ(state.strongest_in({19, 41}), W);
  EXPECT_EQ(state.strongest_in({49, kToEnd}), W);
  EXPECT_EQ(state.strongest_in({50, kToEnd}), std::nullopt);
}

// ---------------------------------------------------------------------------------------------
// SQLite's rollback-journal locking (os_unix.c unixLock / posixUnlock / unixCheckReservedLock),
// issued through struct flock exactly as SQLite issues it and as the daemon will translate it.

constexpr off_t kPendingByte = 0x40000000;
constexpr off_t kReservedByte = kPendingByte + 1;
constexpr off_t kSharedFirst = kPendingByte + 2;
constexpr off_t kSharedSize = 510;

// The daemon's F_SETLK: 0, EAGAIN on conflict, or the conversion's errno.
int SetLk(FileLockState& state, uint64_t owner, uint32_t pid, short type, off_t start, off_t len) {
  LockRange range;
  if (int error = RangeFromFlock(Flock(type, start, len), &range); error != 0) return error;
  if (type == F_UNLCK) {
    state.unlock(owner, range);
    return 0;
  }
  return state.try_lock(owner, type == F_WRLCK ? W : R, range, pid) ? EAGAIN : 0;
}

// The daemon's F_GETLK.
struct flock GetLk(const FileLockState& state, uint64_t owner, short type, off_t start, off_t len) {
  struct flock fl = Flock(type, start, len);
  LockRange range;
  EXPECT_EQ(RangeFromFlock(fl, &range), 0);
  if (std::optional<HeldLock> blocker = state.conflict(owner, type == F_WRLCK ? W : R, range)) {
    FillFlock(*blocker, &fl);
  } else {
    fl.l_type = F_UNLCK;
  }
  return fl;
}

// One SQLite connection (one process, so one lock owner) on the database file.
class SqliteConnection {
 public:
  SqliteConnection(FileLockState& state, uint64_t owner, uint32_t pid)
      : state_(state), owner_(owner), pid_(pid) {}

  // NONE -> SHARED. SQLite always drops the temporary PENDING read lock, success or not.
  int Shared() {
    if (int error = Set(F_RDLCK, kPendingByte, 1); error != 0) return error;
    const int error = Set(F_RDLCK, kSharedFirst, kSharedSize);
    EXPECT_EQ(Set(F_UNLCK, kPendingByte, 1), 0);
    return error;
  }
  int Reserved() { return Set(F_WRLCK, kReservedByte, 1); }  // SHARED -> RESERVED
  int Pending() { return Set(F_WRLCK, kPendingByte, 1); }    // RESERVED -> PENDING
  int Exclusive() { return Set(F_WRLCK, kSharedFirst, kSharedSize); }
  // EXCLUSIVE/RESERVED -> SHARED.
  int Downgrade() {
    if (int error = Set(F_RDLCK, kSharedFirst, kSharedSize); error != 0) return error;
    return Set(F_UNLCK, kPendingByte, 2);
  }
  int Unlock() { return Set(F_UNLCK, 0, 0); }  // -> NONE

  // unixCheckReservedLock: F_GETLK(F_WRLCK) on RESERVED_BYTE. False means "the journal is hot".
  bool SomeoneHoldsReserved() const {
    return GetLk(state_, owner_, F_WRLCK, kReservedByte, 1).l_type != F_UNLCK;
  }

  // Whether each SQLite lock could be taken now, asked without changing anything.
  bool CouldTakeShared() const {
    return Free(F_RDLCK, kPendingByte, 1) && Free(F_RDLCK, kSharedFirst, kSharedSize);
  }
  bool CouldTakeReserved() const { return Free(F_WRLCK, kReservedByte, 1); }
  bool CouldTakePending() const { return Free(F_WRLCK, kPendingByte, 1); }
  bool CouldTakeExclusive() const { return Free(F_WRLCK, kSharedFirst, kSharedSize); }

  uint64_t owner() const { return owner_; }

 private:
  int Set(short type, off_t start, off_t len) {
    return SetLk(state_, owner_, pid_, type, start, len);
  }
  bool Free(short type, off_t start, off_t len) const {
    return GetLk(state_, owner_, type, start, len).l_type == F_UNLCK;
  }

  FileLockState& state_;
  uint64_t owner_;
  uint32_t pid_;
};

struct Expect {
  bool shared, reserved, pending, exclusive, reserved_held;
};

// What `other` (holding nothing) can take, and what its hot-journal check sees.
void ExpectOther(const SqliteConnection& other, Expect expect) {
  EXPECT_EQ(other.CouldTakeShared(), expect.shared);
  EXPECT_EQ(other.CouldTakeReserved(), expect.reserved);
  EXPECT_EQ(other.CouldTakePending(), expect.pending);
  EXPECT_EQ(other.CouldTakeExclusive(), expect.exclusive);
  EXPECT_EQ(other.SomeoneHoldsReserved(), expect.reserved_held);
}

class SqliteSequenceTest : public ::testing::TestWithParam<bool> {};

// One write transaction by `writer` while `other` watches, in both role assignments (the owner
// ids' order must not matter).
TEST_P(SqliteSequenceTest, WriteTransactionAsSeenByAnotherOwner) {
  FileLockState state;
  SqliteConnection first(state, 0x5151, 100);
  SqliteConnection second(state, 0x0a0a, 200);
  SqliteConnection& writer = GetParam() ? first : second;
  SqliteConnection& other = GetParam() ? second : first;
  const uint64_t w = writer.owner();
  const uint32_t wpid = GetParam() ? 100 : 200;

  {
    SCOPED_TRACE("NONE");
    ExpectOther(other, {true, true, true, true, false});
  }

  {
    SCOPED_TRACE("SHARED");
    ASSERT_EQ(writer.Shared(), 0);
    EXPECT_EQ(state.locks(), std::vector<HeldLock>{L(w, R, kSharedFirst, 0x40000200, wpid)});
    ExpectOther(other, {true, true, true, false, false});
    const struct flock fl = GetLk(state, other.owner(), F_WRLCK, kSharedFirst, kSharedSize);
    EXPECT_EQ(fl.l_type, F_RDLCK);
    EXPECT_EQ(fl.l_start, kSharedFirst);
    EXPECT_EQ(fl.l_len, kSharedSize);
    EXPECT_EQ(fl.l_pid, static_cast<pid_t>(wpid));
  }
  {
    SCOPED_TRACE("RESERVED");
    ASSERT_EQ(writer.Reserved(), 0);
    EXPECT_EQ(state.locks(), (std::vector<HeldLock>{L(w, W, kReservedByte, kSharedFirst, wpid),
                                                    L(w, R, kSharedFirst, 0x40000200, wpid)}));
    ExpectOther(other, {true, false, true, false, true});
    const struct flock fl = GetLk(state, other.owner(), F_WRLCK, kReservedByte, 1);
    EXPECT_EQ(fl.l_type, F_WRLCK);
    EXPECT_EQ(fl.l_start, kReservedByte);
    EXPECT_EQ(fl.l_len, 1);
    EXPECT_EQ(fl.l_pid, static_cast<pid_t>(wpid));
    EXPECT_FALSE(writer.SomeoneHoldsReserved());  // its own lock is not "someone"
    EXPECT_EQ(other.Reserved(), EAGAIN);          // and a failed attempt changes nothing
    ExpectOther(other, {true, false, true, false, true});
  }
  {
    SCOPED_TRACE("PENDING");
    ASSERT_EQ(writer.Pending(), 0);
    // PENDING and RESERVED are adjacent write locks of one owner: one lock of two bytes.
    EXPECT_EQ(state.locks(), (std::vector<HeldLock>{L(w, W, kPendingByte, kSharedFirst, wpid),
                                                    L(w, R, kSharedFirst, 0x40000200, wpid)}));
    ExpectOther(other, {false, false, false, false, true});
    EXPECT_EQ(other.Shared(), EAGAIN);  // new readers are held off
    const struct flock fl = GetLk(state, other.owner(), F_WRLCK, kReservedByte, 1);
    EXPECT_EQ(fl.l_type, F_WRLCK);
    EXPECT_EQ(fl.l_start, kPendingByte);
    EXPECT_EQ(fl.l_len, 2);
  }
  {
    SCOPED_TRACE("EXCLUSIVE");
    ASSERT_EQ(writer.Exclusive(), 0);
    EXPECT_EQ(state.locks(),
              std::vector<HeldLock>{L(w, W, kPendingByte, kSharedFirst + kSharedSize, wpid)});
    ExpectOther(other, {false, false, false, false, true});
    const struct flock fl = GetLk(state, other.owner(), F_RDLCK, 0, 0);
    EXPECT_EQ(fl.l_type, F_WRLCK);
    EXPECT_EQ(fl.l_start, kPendingByte);
    EXPECT_EQ(fl.l_len, 2 + kSharedSize);
    EXPECT_EQ(GetLk(state, other.owner(), F_WRLCK, 0, kPendingByte).l_type, F_UNLCK);  // data
  }
  {
    SCOPED_TRACE("downgrade to SHARED");
    ASSERT_EQ(writer.Downgrade(), 0);
    EXPECT_EQ(state.locks(), std::vector<HeldLock>{L(w, R, kSharedFirst, 0x40000200, wpid)});
    ExpectOther(other, {true, true, true, false, false});
  }
  {
    SCOPED_TRACE("NONE again");
    ASSERT_EQ(writer.Unlock(), 0);
    EXPECT_TRUE(state.empty());
    ExpectOther(other, {true, true, true, true, false});
  }
}

// A writer in PENDING waits for an existing reader to leave; new readers are turned away meanwhile.
TEST_P(SqliteSequenceTest, WriterWaitsInPendingForReaders) {
  FileLockState state;
  SqliteConnection first(state, 0x5151, 100);
  SqliteConnection second(state, 0x0a0a, 200);
  SqliteConnection late(state, 0x7777, 300);
  SqliteConnection& writer = GetParam() ? first : second;
  SqliteConnection& reader = GetParam() ? second : first;

  ASSERT_EQ(reader.Shared(), 0);
  ASSERT_EQ(writer.Shared(), 0);
  ASSERT_EQ(writer.Reserved(), 0);
  EXPECT_TRUE(reader.SomeoneHoldsReserved());
  EXPECT_EQ(reader.Reserved(), EAGAIN);  // SQLITE_BUSY, reader stays SHARED
  ASSERT_EQ(writer.Pending(), 0);
  EXPECT_EQ(writer.Exclusive(), EAGAIN);  // the reader's SHARED blocks; writer stays PENDING
  EXPECT_EQ(late.Shared(), EAGAIN);       // PENDING keeps new readers out
  EXPECT_FALSE(late.CouldTakeShared());
  EXPECT_FALSE(reader.CouldTakeShared());  // not even the reader could take SHARED afresh
  ASSERT_EQ(reader.Unlock(), 0);
  ASSERT_EQ(writer.Exclusive(), 0);
  EXPECT_TRUE(late.SomeoneHoldsReserved());
  ASSERT_EQ(writer.Downgrade(), 0);
  EXPECT_FALSE(late.SomeoneHoldsReserved());
  EXPECT_EQ(late.Shared(), 0);
  ASSERT_EQ(writer.Unlock(), 0);
  ASSERT_EQ(late.Unlock(), 0);
  EXPECT_TRUE(state.empty());
}

// Hot-journal rollback goes SHARED -> EXCLUSIVE without RESERVED (SQLite 3.53 takes only the
// shared range; older releases take PENDING first). Either way readers are locked out.
TEST_P(SqliteSequenceTest, HotJournalRollbackSkipsReserved) {
  FileLockState state;
  SqliteConnection recoverer(state, 0x5151, 100);
  SqliteConnection other(state, 0x0a0a, 200);
  ASSERT_EQ(recoverer.Shared(), 0);
  EXPECT_FALSE(recoverer.SomeoneHoldsReserved());  // the journal is hot
  if (GetParam()) {
    ASSERT_EQ(recoverer.Pending(), 0);
  }
  ASSERT_EQ(recoverer.Exclusive(), 0);
  EXPECT_FALSE(other.CouldTakeShared());
  EXPECT_FALSE(other.CouldTakeExclusive());
  EXPECT_EQ(other.Shared(), EAGAIN);
  ASSERT_EQ(recoverer.Unlock(), 0);
  EXPECT_EQ(other.Shared(), 0);
}

INSTANTIATE_TEST_SUITE_P(BothRoles, SqliteSequenceTest, ::testing::Bool());

// ---------------------------------------------------------------------------------------------
// Randomized comparison against a byte-by-byte reference model.
//
// The model knows, for each of 64 bytes and one "tail" standing for [base+64, EOF), which type of
// lock each owner holds on it. Every range drawn ends at a byte boundary inside the window or at
// EOF, so the tail is always covered as a whole and the model is exact. After every operation the
// table must equal the canonical form of the model lock for lock, every conflict() probe must name
// the lock the model names, and strongest_in()/owner_holds()/empty() must agree.

constexpr int kBytes = 64;
constexpr int kCells = kBytes + 1;  // cell kBytes is the tail
constexpr int kOwners = 4;

class Model {
 public:
  Model(uint64_t base, const std::array<uint64_t, kOwners>& owners)
      : base_(base), owners_(owners) {}

  // Cells [first, last) covered by `range` (which the generator keeps aligned to cells).
  std::pair<int, int> cells(LockRange range) const {
    if (range.start >= range.end) return {0, 0};
    const int first = static_cast<int>(range.start - base_);
    const int last = range.end == kToEnd ? kCells : static_cast<int>(range.end - base_);
    return {first, last};
  }
  LockRange range_of_cells(int first, int last) const {
    return {base_ + static_cast<uint64_t>(first),
            last == kCells ? kToEnd : base_ + static_cast<uint64_t>(last)};
  }

  void set(int owner, LockRange range, std::optional<LockType> type) {
    const auto [first, last] = cells(range);
    for (int c = first; c < last; ++c) held_[owner][c] = type;
  }
  void clear(int owner) { held_[owner].fill(std::nullopt); }
  std::optional<LockType> at(int owner, int cell) const { return held_[owner][cell]; }

  // The owner's canonical lock containing `cell`: the maximal run of cells with its type.
  HeldLock lock_at(int owner, int cell) const {
    const std::optional<LockType> type = held_[owner][cell];
    int first = cell, last = cell + 1;
    while (first > 0 && held_[owner][first - 1] == type) --first;
    while (last < kCells && held_[owner][last] == type) ++last;
    return HeldLock{owners_[owner], *type, range_of_cells(first, last), Pid(owner)};
  }

  std::optional<HeldLock> conflict(int owner, LockType type, LockRange range) const {
    std::optional<HeldLock> first;
    const auto [lo, hi] = cells(range);
    for (int p = 0; p < kOwners; ++p) {
      if (p == owner) continue;
      for (int c = lo; c < hi; ++c) {
        const std::optional<LockType> held = held_[p][c];
        if (!held || (*held == LockType::kRead && type == LockType::kRead)) continue;
        const HeldLock candidate = lock_at(p, c);
        if (!first || std::tie(candidate.range.start, candidate.owner) <
                          std::tie(first->range.start, first->owner)) {
          first = candidate;
        }
        break;  // later cells of p belong to locks that start later
      }
    }
    return first;
  }

  std::optional<LockType> strongest_in(LockRange range) const {
    std::optional<LockType> strongest;
    const auto [lo, hi] = cells(range);
    for (int p = 0; p < kOwners; ++p) {
      for (int c = lo; c < hi; ++c) {
        if (held_[p][c] == LockType::kWrite) return LockType::kWrite;
        if (held_[p][c]) strongest = LockType::kRead;
      }
    }
    return strongest;
  }

  bool holds(int owner) const {
    return std::any_of(held_[owner].begin(), held_[owner].end(),
                       [](std::optional<LockType> t) { return t.has_value(); });
  }

  // The canonical lock list, sorted by (start, owner) as FileLockState::locks() returns it.
  std::vector<HeldLock> locks() const {
    std::vector<HeldLock> out;
    for (int p = 0; p < kOwners; ++p) {
      for (int c = 0; c < kCells;) {
        if (!held_[p][c]) {
          ++c;
          continue;
        }
        out.push_back(lock_at(p, c));
        const auto [first, last] = cells(out.back().range);
        c = last;
      }
    }
    std::sort(out.begin(), out.end(), [](const HeldLock& a, const HeldLock& b) {
      return std::tie(a.range.start, a.owner) < std::tie(b.range.start, b.owner);
    });
    return out;
  }

  static uint32_t Pid(int owner) { return 1000 + static_cast<uint32_t>(owner); }

 private:
  uint64_t base_;
  std::array<uint64_t, kOwners> owners_;
  std::array<std::array<std::optional<LockType>, kCells>, kOwners> held_{};
};

// Checks, independently of the model, that `locks` is canonical (header invariants 1-3) and sorted.
void ExpectCanonical(const std::vector<HeldLock>& locks) {
  std::map<uint64_t, std::vector<HeldLock>> by_owner;
  for (size_t i = 0; i < locks.size(); ++i) {
    EXPECT_LT(locks[i].range.start, locks[i].range.end) << "empty lock at " << i;
    if (i > 0) {
      EXPECT_TRUE(std::tie(locks[i - 1].range.start, locks[i - 1].owner) <
                  std::tie(locks[i].range.start, locks[i].owner))
          << "locks() not sorted at " << i;
    }
    by_owner[locks[i].owner].push_back(locks[i]);
  }
  for (const auto& [owner, mine] : by_owner) {
    for (size_t i = 1; i < mine.size(); ++i) {
      EXPECT_LE(mine[i - 1].range.end, mine[i].range.start) << "owner " << owner << " overlaps";
      if (mine[i - 1].range.end == mine[i].range.start) {
        EXPECT_NE(mine[i - 1].type, mine[i].type) << "owner " << owner << " not merged";
      }
    }
  }
}

class LockTableModelTest : public ::testing::TestWithParam<std::tuple<uint64_t, uint64_t>> {
 protected:
  // A range aligned to the model's cells: mostly short, sometimes to EOF, rarely empty.
  LockRange RandomRange() {
    const uint64_t base = std::get<1>(GetParam());
    const int start = static_cast<int>(rng_() % (kBytes + 1));
    const int pick = static_cast<int>(rng_() % 16);
    if (pick == 0) return {base + start, base + start};  // empty
    if (start == kBytes || pick < 4) return {base + start, kToEnd};
    const int room = kBytes - start;
    const int length = pick < 10 ? 1 + static_cast<int>(rng_() % std::min(room, 4))
                                 : 1 + static_cast<int>(rng_() % room);
    return {base + start, base + start + length};
  }
  LockType RandomType() { return rng_() % 3 == 0 ? W : R; }
  int RandomOwner() { return static_cast<int>(rng_() % kOwners); }

  std::mt19937_64 rng_;
};

std::string Describe(const char* op, uint64_t owner, LockRange range) {
  std::ostringstream os;
  os << op << " owner " << owner << " ";
  PrintTo(range, &os);
  return os.str();
}

TEST_P(LockTableModelTest, AgreesWithByteModel) {
  const auto [seed, base] = GetParam();
  rng_.seed(seed);
  // Owner ids like the kernel's: scrambled 64-bit values whose order is not the index order.
  const std::array<uint64_t, kOwners> owners = {0xd1b54a32d192ed03, 0x0123456789abcdef,
                                                0xffffffffffffffff, 0x8000000000000000};
  Model model(base, owners);
  FileLockState state;
  constexpr int kSteps = 10000;
  int granted = 0, refused = 0, unlocks = 0, closes = 0;
  size_t most_locks = 0;

  for (int step = 0; step < kSteps; ++step) {
    const int owner = RandomOwner();
    const int dice = static_cast<int>(rng_() % 20);
    std::string op;
    if (dice < 11) {
      const LockType type = RandomType();
      const LockRange range = RandomRange();
      op = Describe(type == W ? "lock W" : "lock R", owners[owner], range);
      const std::optional<HeldLock> expected = model.conflict(owner, type, range);
      const std::optional<HeldLock> got =
          state.try_lock(owners[owner], type, range, Model::Pid(owner));
      EXPECT_EQ(got, expected) << op;
      if (!expected) {
        model.set(owner, range, type);
        ++granted;
      } else {
        ++refused;
      }
    } else if (dice < 18) {
      const LockRange range = RandomRange();
      op = Describe("unlock", owners[owner], range);
      state.unlock(owners[owner], range);
      model.set(owner, range, std::nullopt);
      ++unlocks;
    } else {
      op = Describe("unlock_all", owners[owner], {});
      state.unlock_all(owners[owner]);
      model.clear(owner);
      ++closes;
    }

    // The whole table, lock for lock.
    const std::vector<HeldLock> locks = state.locks();
    most_locks = std::max(most_locks, locks.size());
    EXPECT_EQ(locks, model.locks());
    ExpectCanonical(locks);
    // Byte by byte: who holds what, rebuilt from locks() alone.
    std::array<std::array<std::optional<LockType>, kCells>, kOwners> bytes{};
    for (const HeldLock& held : locks) {
      const int p =
          static_cast<int>(std::find(owners.begin(), owners.end(), held.owner) - owners.begin());
      ASSERT_LT(p, kOwners) << "unknown owner " << held.owner;
      EXPECT_EQ(held.pid, Model::Pid(p));
      const auto [first, last] = model.cells(held.range);
      for (int c = first; c < last; ++c) {
        EXPECT_FALSE(bytes[p][c].has_value()) << "owner " << held.owner << " twice on cell " << c;
        bytes[p][c] = held.type;
      }
    }
    for (int p = 0; p < kOwners; ++p) {
      for (int c = 0; c < kCells; ++c) {
        EXPECT_EQ(bytes[p][c], model.at(p, c)) << "owner " << owners[p] << " cell " << c;
      }
      EXPECT_EQ(state.owner_holds(owners[p]), model.holds(p));
    }
    EXPECT_EQ(state.empty(), locks.empty());
    // Probes that change nothing.
    for (int probe = 0; probe < 4; ++probe) {
      const int who = RandomOwner();
      const LockType type = RandomType();
      const LockRange range = RandomRange();
      EXPECT_EQ(state.conflict(owners[who], type, range), model.conflict(who, type, range))
          << Describe(type == W ? "probe W" : "probe R", owners[who], range);
      EXPECT_EQ(state.strongest_in(range), model.strongest_in(range));
    }
    // A probe by an owner that holds nothing sees every conflicting lock.
    const LockRange everything{base, kToEnd};
    EXPECT_EQ(state.conflict(42, R, everything).has_value(), model.strongest_in(everything) == W);

    if (HasFailure()) {
      FAIL() << "seed " << seed << " base " << base << " step " << step << ": " << op;
    }
  }
  // The operation mix really exercised the table.
  EXPECT_GT(granted, kSteps / 4);
  EXPECT_GT(refused, kSteps / 20);
  EXPECT_GT(unlocks, kSteps / 5);
  EXPECT_GT(closes, kSteps / 40);
  EXPECT_GE(most_locks, 12u);  // fragmented states were reached, not just one lock at a time
  RecordProperty("operations", kSteps);
  RecordProperty("most_locks", static_cast<int>(most_locks));
}

INSTANTIATE_TEST_SUITE_P(
    Seeds, LockTableModelTest,
    ::testing::Combine(::testing::Values(1, 2, 3, 42, 1234, 0xdeadbeef),
                       // File start, SQLite's lock page, and the last bytes below OFFSET_MAX.
                       ::testing::Values(uint64_t{0}, uint64_t{0x40000000 - 8},
                                         uint64_t{INT64_MAX} - kBytes + 1)));

}  // namespace
}  // namespace leasefs::lock
