/*
 * leasefs-fsx: randomized data-integrity checking of one file.
 *
 * WHAT IT CHECKS
 *   That every byte read back from the file -- through pread(2) and through a MAP_SHARED mapping
 *   -- is exactly what the sequence of operations so far says it must be, and that fstat(2) reports
 *   the size the operations imply. The operations are drawn at random (deterministically from the
 *   seed) from:
 *     write       pwrite at a random offset and length; may extend the file, leaving a zero gap
 *     read        pread and compare; sometimes reads across or beyond EOF (must come back short)
 *     truncate    ftruncate to a random size, shrinking or growing (grown bytes must read as zero)
 *     mapread     mmap(PROT_READ, MAP_SHARED) a range inside the file and compare it; if the range
 *                 reaches EOF, the rest of the last page must read as zeros (POSIX requires it)
 *     mapwrite    mmap(PROT_WRITE, MAP_SHARED) a range inside the file, memcpy new data,
 *                 msync(MS_SYNC), munmap -- so no dirty mapping survives into the next operation
 *     fallocate   mode 0 (may extend), KEEP_SIZE, PUNCH_HOLE|KEEP_SIZE (range reads as zero),
 *                 ZERO_RANGE (range reads as zero, may extend); a variant that fails with
 *                 EOPNOTSUPP is disabled for the rest of the run and noted in the report
 *     copy_range  copy_file_range between two non-overlapping ranges of the file itself; EXDEV,
 *                 EOPNOTSUPP or ENOSYS on the first chunk disables it (noted in the report)
 *     fsync, fdatasync, reopen (close and open again)
 *   After every operation that may change the size (and before every mapping) the fstat size is
 *   compared with the model. Every kFullCheckInterval operations, and at the end, the whole file is
 *   read back and compared, and a read at EOF must return nothing.
 *
 * THE MODEL
 *   A byte vector whose length is the file size and whose contents are the file contents. Each
 *   operation is applied to the model exactly as POSIX/Linux define its effect on the file, only
 *   after the syscall succeeded (for copy_file_range, per successful chunk). Regions that appear
 *   by growing (truncate up, write past EOF, fallocate without KEEP_SIZE) are zero, as are punched
 *   and zeroed ranges.
 *
 * THE DATA
 *   Byte x written by operation n is Pattern(n, x): never zero, and different for neighbouring
 *   operations and for offsets a page (or any distance below 251 bytes) apart, so a lost write, a
 *   stale page, or data landing at the wrong offset all show up. On a mismatch the report looks
 *   through the recent operations for one whose pattern matches what was actually read.
 *
 * DETERMINISM AND BOUNDS
 *   One splitmix64 stream drives every choice, so a seed (plus the same options and the same
 *   filesystem answering the same way about unsupported features) replays the same run. At most
 *   Options::operations operations run; there are no sleeps and nothing waits on time. Any
 *   unexpected syscall error ends the run with ok=false and the errno in the report.
 */
#include "fsx.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <deque>
#include <exception>
#include <string>
#include <vector>

namespace leasefs::fsx {
namespace {

constexpr size_t kLogDepth = 30;                // operations kept for the report
constexpr uint64_t kFullCheckInterval = 1000;   // operations between whole-file verifications
constexpr size_t kFullCheckChunk = 256 * 1024;  // read size of the whole-file verification
constexpr size_t kHintBytes = 16;               // bytes compared when guessing a culprit op
constexpr uint64_t kMaxFileSizeLimit = 1ULL << 40;

unsigned long long ull(uint64_t v) {
  return static_cast<unsigned long long>(v);
}

__attribute__((format(printf, 1, 2))) std::string Format(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  va_list ap2;
  va_copy(ap2, ap);
  char small[256];
  const int n = vsnprintf(small, sizeof small, fmt, ap);
  va_end(ap);
  std::string out;
  if (n >= 0 && static_cast<size_t>(n) < sizeof small) {
    out.assign(small, static_cast<size_t>(n));
  } else if (n >= 0) {
    out.resize(static_cast<size_t>(n) + 1);
    vsnprintf(out.data(), out.size(), fmt, ap2);
    out.resize(static_cast<size_t>(n));
  }
  va_end(ap2);
  return out;
}

std::string ErrnoText(int err) {
  const char* name = strerrorname_np(err);
  return Format("errno %d (%s: %s)", err, name != nullptr ? name : "?", strerror(err));
}

// The byte operation `op` writes at file offset `off`: never zero, so a lost write is visible on
// every byte; the offset term has period 251, so data shifted by a page (or less) is visible.
uint8_t Pattern(uint64_t op, uint64_t off) {
  return static_cast<uint8_t>((off % 251 + op * 101) % 255 + 1);
}

// splitmix64: tiny, fast, and the same on every platform (unlike std:: distributions).
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  // Uniform in [0, n); n must be > 0. The modulo bias is negligible for our n.
  uint64_t Below(uint64_t n) { return Next() % n; }
  bool OneIn(uint64_t n) { return Below(n) == 0; }

 private:
  uint64_t state_;
};

enum class Op {
  kWrite,
  kRead,
  kTruncate,
  kMapRead,
  kMapWrite,
  kFallocate,
  kCopyRange,
  kFsync,
  kFdatasync,
  kReopen,
};

struct OpWeight {
  Op op;
  uint64_t weight;
};
constexpr OpWeight kOpWeights[] = {
    {Op::kWrite, 24},    {Op::kRead, 16},      {Op::kTruncate, 6},  {Op::kMapRead, 10},
    {Op::kMapWrite, 10}, {Op::kFallocate, 10}, {Op::kCopyRange, 8}, {Op::kFsync, 2},
    {Op::kFdatasync, 2}, {Op::kReopen, 2},
};

struct FallocVariant {
  const char* name;
  int mode;
  bool keep_size;  // the file size never changes
  bool zeroes;     // the range reads as zero afterwards
};
constexpr FallocVariant kFallocVariants[] = {
    {"plain", 0, false, false},
    {"KEEP_SIZE", FALLOC_FL_KEEP_SIZE, true, false},
    {"PUNCH_HOLE|KEEP_SIZE", FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, true, true},
    {"ZERO_RANGE", FALLOC_FL_ZERO_RANGE, false, true},
};
constexpr size_t kNumFallocVariants = sizeof kFallocVariants / sizeof kFallocVariants[0];

struct LogEntry {
  uint64_t n = 0;
  bool writes_pattern = false;  // write or mapwrite: [off, off+len) holds Pattern(n, .)
  uint64_t off = 0;
  uint64_t len = 0;
  std::string text;
};

class Tester {
 public:
  explicit Tester(const Options& options) : o_(options), rng_(options.seed) {}
  Tester(const Tester&) = delete;
  Tester& operator=(const Tester&) = delete;
  ~Tester() {
    if (fd_ >= 0) close(fd_);
  }

  Result Run();

 private:
  uint64_t Size() const { return model_.size(); }

  // Random choices.
  Op ChooseOp();
  uint64_t RandOffset(uint64_t limit);  // in [0, limit), limit > 0; sometimes page aligned
  uint64_t RandLen(uint64_t max);       // in [1, max], max > 0; often small or whole pages

  // Operations; each returns false after recording a failure.
  bool DoWrite();
  bool DoRead();
  bool DoTruncate();
  bool DoMapRead();
  bool DoMapWrite();
  bool DoFallocate();
  bool DoCopyRange();
  bool DoSync(bool data_only);
  bool DoReopen();
  bool InjectCorruption();

  // Checks.
  bool CheckSize(const char* when);
  bool FullCheck(const char* why);
  bool Compare(const char* what, uint64_t off, const uint8_t* expected, const uint8_t* actual,
               size_t len);
  bool PreadFully(uint64_t off, uint8_t* buf, size_t len, size_t* got);
  bool PwriteFully(uint64_t off, const uint8_t* buf, size_t len);

  // Model updates.
  void ModelResize(uint64_t size) { model_.resize(size); }  // growth reads as zero
  void ModelZero(uint64_t off, uint64_t len);

  // Log and report.
  void Log(bool writes_pattern, uint64_t off, uint64_t len, std::string text);
  void Note(std::string note);
  void Fail(const std::string& headline, const std::string& details);
  void FailErrno(const std::string& call, int err);
  std::string Hints(uint64_t bad_off, const uint8_t* actual, size_t avail) const;
  std::string LogText() const;
  std::string ReproduceLine() const;

  Options o_;
  Rng rng_;
  int fd_ = -1;
  uint64_t page_ = 4096;
  uint64_t n_ = 0;  // number of the operation in progress (1-based)
  std::vector<uint8_t> model_;
  std::vector<uint8_t> buf_;
  std::deque<LogEntry> log_;
  std::vector<std::string> notes_;
  bool falloc_enabled_[kNumFallocVariants] = {true, true, true, true};
  bool copy_enabled_ = true;
  bool injection_pending_ = false;
  std::string report_;
};

// ---------------------------------------------------------------------------------------------
// Random choices

Op Tester::ChooseOp() {
  bool any_falloc = false;
  for (bool e : falloc_enabled_) any_falloc = any_falloc || e;
  auto usable = [&](Op op) {
    switch (op) {
      case Op::kWrite:
      case Op::kRead:
      case Op::kTruncate:
        return true;
      case Op::kMapRead:
      case Op::kMapWrite:
        return o_.use_mmap && Size() > 0;
      case Op::kFallocate:
        return o_.use_fallocate && any_falloc;
      case Op::kCopyRange:
        return o_.use_copy_range && copy_enabled_ && Size() > 0;
      case Op::kFsync:
      case Op::kFdatasync:
        return o_.use_fsync;
      case Op::kReopen:
        return o_.reopen;
    }
    return false;
  };
  uint64_t total = 0;
  for (const auto& w : kOpWeights) total += usable(w.op) ? w.weight : 0;
  uint64_t r = rng_.Below(total);
  for (const auto& w : kOpWeights) {
    if (!usable(w.op)) continue;
    if (r < w.weight) return w.op;
    r -= w.weight;
  }
  return Op::kWrite;  // not reached
}

uint64_t Tester::RandOffset(uint64_t limit) {
  uint64_t off = rng_.Below(limit);
  if (rng_.OneIn(4)) off -= off % page_;
  return off;
}

uint64_t Tester::RandLen(uint64_t max) {
  switch (rng_.Below(4)) {
    case 0:  // small
      return 1 + rng_.Below(std::min<uint64_t>(max, 512));
    case 1:  // whole pages
      if (max >= page_) return page_ * (1 + rng_.Below(max / page_));
      return 1 + rng_.Below(max);
    default:
      return 1 + rng_.Below(max);
  }
}

// ---------------------------------------------------------------------------------------------
// Operations

bool Tester::DoWrite() {
  uint64_t off;
  if (rng_.OneIn(4)) {  // around EOF: extend, or overwrite the tail
    off = Size() + rng_.Below(2 * page_);
    off = off >= page_ ? off - page_ : 0;
  } else {
    off = RandOffset(o_.max_file_size);
  }
  off = std::min(off, o_.max_file_size - 1);
  const uint64_t len = RandLen(std::min(o_.max_op_size, o_.max_file_size - off));
  const uint64_t new_size = std::max(Size(), off + len);
  Log(true, off, len,
      Format("write      [0x%08llx, 0x%08llx) len 0x%llx, size 0x%llx -> 0x%llx", ull(off),
             ull(off + len), ull(len), ull(Size()), ull(new_size)));
  for (uint64_t i = 0; i < len; ++i) buf_[i] = Pattern(n_, off + i);
  if (!PwriteFully(off, buf_.data(), len)) return false;
  ModelResize(new_size);
  std::memcpy(model_.data() + off, buf_.data(), len);
  return CheckSize("after write");
}

bool Tester::DoRead() {
  uint64_t off;
  uint64_t len;
  if (Size() == 0 || rng_.OneIn(16)) {  // at or beyond EOF: must return nothing
    off = Size() + rng_.Below(2 * page_);
    len = RandLen(o_.max_op_size);
  } else {
    off = RandOffset(Size());
    len = RandLen(o_.max_op_size);
    if (!rng_.OneIn(8)) len = std::min(len, Size() - off);  // else it may cross EOF
  }
  const uint64_t expect = off < Size() ? std::min(len, Size() - off) : 0;
  Log(false, off, len,
      Format("read       [0x%08llx, 0x%08llx) len 0x%llx, expect 0x%llx bytes", ull(off),
             ull(off + len), ull(len), ull(expect)));
  size_t got = 0;
  if (!PreadFully(off, buf_.data(), len, &got)) return false;
  if (got != expect) {
    Fail(Format("read returned the wrong length at op #%llu", ull(n_)),
         Format("  pread [0x%llx, 0x%llx) returned 0x%llx bytes in total, the model says 0x%llx "
                "(model file size 0x%llx)\n",
                ull(off), ull(off + len), ull(got), ull(expect), ull(Size())));
    return false;
  }
  return expect == 0 || Compare("read", off, model_.data() + off, buf_.data(), expect);
}

bool Tester::DoTruncate() {
  uint64_t size;
  if (rng_.OneIn(2)) {
    size = rng_.Below(o_.max_file_size + 1);
  } else {  // near the current size
    const uint64_t d = RandLen(o_.max_op_size);
    size = rng_.OneIn(2) ? Size() + d : (Size() > d ? Size() - d : 0);
  }
  size = std::min(size, o_.max_file_size);
  if (rng_.OneIn(4)) size -= size % page_;
  Log(false, size, 0,
      Format("truncate   size 0x%llx -> 0x%llx (%s)", ull(Size()), ull(size),
             size > Size()   ? "grow"
             : size < Size() ? "shrink"
                             : "same"));
  if (ftruncate(fd_, static_cast<off_t>(size)) != 0) {
    FailErrno(Format("ftruncate(0x%llx)", ull(size)), errno);
    return false;
  }
  ModelResize(size);
  return CheckSize("after truncate");
}

bool Tester::DoMapRead() {
  const uint64_t off = RandOffset(Size());
  const uint64_t len = RandLen(std::min(o_.max_op_size, Size() - off));
  const uint64_t map_off = off - off % page_;
  const uint64_t map_len = off - map_off + len;
  const bool to_eof = off + len == Size();
  Log(false, off, len,
      Format("mapread    [0x%08llx, 0x%08llx) len 0x%llx, map at 0x%llx len 0x%llx%s", ull(off),
             ull(off + len), ull(len), ull(map_off), ull(map_len), to_eof ? ", to EOF" : ""));
  if (!CheckSize("before mmap")) return false;  // a wrong size would turn into SIGBUS
  void* p = mmap(nullptr, map_len, PROT_READ, MAP_SHARED, fd_, static_cast<off_t>(map_off));
  if (p == MAP_FAILED) {
    FailErrno(Format("mmap(PROT_READ, off 0x%llx, len 0x%llx)", ull(map_off), ull(map_len)), errno);
    return false;
  }
  const auto* base = static_cast<const uint8_t*>(p);
  bool ok = Compare("mapread", off, model_.data() + off, base + (off - map_off), len);
  // The part of the last page beyond EOF is mapped too, and must read as zeros.
  const uint64_t tail = Size() % page_ == 0 ? 0 : page_ - Size() % page_;
  if (ok && to_eof && tail > 0) {
    const std::vector<uint8_t> zeros(tail, 0);
    ok = Compare("mapread of the page beyond EOF", Size(), zeros.data(), base + map_len, tail);
  }
  if (munmap(p, map_len) != 0 && ok) {
    FailErrno("munmap", errno);
    return false;
  }
  return ok;
}

bool Tester::DoMapWrite() {
  const uint64_t off = RandOffset(Size());
  const uint64_t len = RandLen(std::min(o_.max_op_size, Size() - off));
  const uint64_t map_off = off - off % page_;
  const uint64_t map_len = off - map_off + len;
  Log(true, off, len,
      Format("mapwrite   [0x%08llx, 0x%08llx) len 0x%llx, map at 0x%llx len 0x%llx", ull(off),
             ull(off + len), ull(len), ull(map_off), ull(map_len)));
  if (!CheckSize("before mmap")) return false;
  void* p =
      mmap(nullptr, map_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, static_cast<off_t>(map_off));
  if (p == MAP_FAILED) {
    FailErrno(Format("mmap(PROT_WRITE, off 0x%llx, len 0x%llx)", ull(map_off), ull(map_len)),
              errno);
    return false;
  }
  auto* base = static_cast<uint8_t*>(p);
  for (uint64_t i = 0; i < len; ++i) base[off - map_off + i] = Pattern(n_, off + i);
  if (msync(p, map_len, MS_SYNC) != 0) {
    const int err = errno;
    munmap(p, map_len);
    FailErrno("msync(MS_SYNC)", err);
    return false;
  }
  if (munmap(p, map_len) != 0) {
    FailErrno("munmap", errno);
    return false;
  }
  for (uint64_t i = 0; i < len; ++i) model_[off + i] = Pattern(n_, off + i);
  return CheckSize("after mapwrite");
}

bool Tester::DoFallocate() {
  size_t enabled[kNumFallocVariants];
  size_t count = 0;
  for (size_t i = 0; i < kNumFallocVariants; ++i) {
    if (falloc_enabled_[i]) enabled[count++] = i;
  }
  const size_t vi = enabled[rng_.Below(count)];
  const FallocVariant& v = kFallocVariants[vi];
  // Mostly inside the file (where punching and zeroing matter), sometimes anywhere.
  const uint64_t off =
      Size() > 0 && !rng_.OneIn(4) ? RandOffset(Size()) : RandOffset(o_.max_file_size);
  const uint64_t len = RandLen(std::min(o_.max_op_size, o_.max_file_size - off));
  const uint64_t new_size = v.keep_size ? Size() : std::max(Size(), off + len);
  Log(false, off, len,
      Format("fallocate  [0x%08llx, 0x%08llx) len 0x%llx %s, size 0x%llx -> 0x%llx", ull(off),
             ull(off + len), ull(len), v.name, ull(Size()), ull(new_size)));
  if (fallocate(fd_, v.mode, static_cast<off_t>(off), static_cast<off_t>(len)) != 0) {
    const int err = errno;
    if (err == EOPNOTSUPP) {
      falloc_enabled_[vi] = false;
      Note(
          Format("fallocate(%s) is not supported here (EOPNOTSUPP at op #%llu); that variant was "
                 "disabled for the rest of the run",
                 v.name, ull(n_)));
      return CheckSize("after unsupported fallocate");
    }
    FailErrno(Format("fallocate(%s, 0x%llx, 0x%llx)", v.name, ull(off), ull(len)), err);
    return false;
  }
  ModelResize(new_size);
  if (v.zeroes) ModelZero(off, len);
  return CheckSize("after fallocate");
}

bool Tester::DoCopyRange() {
  const uint64_t src = RandOffset(Size());
  const uint64_t len = RandLen(std::min(o_.max_op_size, Size() - src));
  // Source and destination must not overlap (the kernel refuses that within one file).
  uint64_t dst = 0;
  bool found = false;
  for (int attempt = 0; attempt < 8 && !found; ++attempt) {
    if (rng_.OneIn(4)) {  // around EOF
      dst = Size() + rng_.Below(2 * page_);
      dst = dst >= page_ ? dst - page_ : 0;
    } else {
      dst = RandOffset(o_.max_file_size);
    }
    found = dst + len <= o_.max_file_size && (dst + len <= src || src + len <= dst);
  }
  if (!found) {
    Log(false, src, len,
        Format("copy_range [0x%08llx, 0x%08llx) skipped: no non-overlapping destination found",
               ull(src), ull(src + len)));
    return true;
  }
  const uint64_t new_size = std::max(Size(), dst + len);
  Log(false, dst, len,
      Format("copy_range [0x%08llx, 0x%08llx) -> [0x%08llx, 0x%08llx) len 0x%llx, size 0x%llx -> "
             "0x%llx",
             ull(src), ull(src + len), ull(dst), ull(dst + len), ull(len), ull(Size()),
             ull(new_size)));
  loff_t in = static_cast<loff_t>(src);
  loff_t out = static_cast<loff_t>(dst);
  uint64_t done = 0;
  while (done < len) {
    const uint64_t chunk_in = static_cast<uint64_t>(in);
    const uint64_t chunk_out = static_cast<uint64_t>(out);
    const ssize_t r = copy_file_range(fd_, &in, fd_, &out, len - done, 0);
    if (r < 0) {
      const int err = errno;
      if (done == 0 && (err == EXDEV || err == EOPNOTSUPP || err == ENOSYS)) {
        copy_enabled_ = false;
        Note(
            Format("copy_file_range is not usable here (%s at op #%llu); it was disabled for the "
                   "rest of the run",
                   ErrnoText(err).c_str(), ull(n_)));
        return CheckSize("after unusable copy_file_range");
      }
      FailErrno(Format("copy_file_range([0x%llx, +0x%llx) -> 0x%llx) after 0x%llx bytes copied",
                       ull(chunk_in), ull(len - done), ull(chunk_out), ull(done)),
                err);
      return false;
    }
    if (r == 0) {
      Fail(Format("copy_file_range stopped early at op #%llu", ull(n_)),
           Format("  copy_file_range returned 0 at source offset 0x%llx with 0x%llx of 0x%llx "
                  "bytes left, but the model's file size is 0x%llx\n",
                  ull(chunk_in), ull(len - done), ull(len), ull(Size())));
      return false;
    }
    const uint64_t n = static_cast<uint64_t>(r);
    if (chunk_out + n > Size()) ModelResize(chunk_out + n);
    std::memmove(model_.data() + chunk_out, model_.data() + chunk_in, n);
    done += n;
  }
  return CheckSize("after copy_file_range");
}

bool Tester::DoSync(bool data_only) {
  Log(false, 0, 0, data_only ? "fdatasync" : "fsync");
  if ((data_only ? fdatasync(fd_) : fsync(fd_)) != 0) {
    FailErrno(data_only ? "fdatasync" : "fsync", errno);
    return false;
  }
  return true;
}

bool Tester::DoReopen() {
  Log(false, 0, 0, "reopen     close and open again");
  const int fd = fd_;
  fd_ = -1;
  if (close(fd) != 0) {
    FailErrno("close", errno);
    return false;
  }
  fd_ = open(o_.path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd_ < 0) {
    FailErrno("open(" + o_.path + ", O_RDWR)", errno);
    return false;
  }
  return CheckSize("after reopen");
}

bool Tester::InjectCorruption() {
  const uint64_t off = rng_.Below(Size());
  uint8_t byte = 0;
  size_t got = 0;
  if (!PreadFully(off, &byte, 1, &got)) return false;
  byte = static_cast<uint8_t>(byte ^ 0xff);
  if (!PwriteFully(off, &byte, 1)) return false;
  Log(false, off, 1,
      Format("INJECT     flipped the byte at 0x%llx behind the model's back", ull(off)));
  Note(Format("injected corruption at offset %llu (0x%llx) after op #%llu (test hook)", ull(off),
              ull(off), ull(n_)));
  return FullCheck("full check after the injected corruption");
}

// ---------------------------------------------------------------------------------------------
// Checks

bool Tester::PreadFully(uint64_t off, uint8_t* buf, size_t len, size_t* got) {
  *got = 0;
  while (*got < len) {
    const ssize_t r = pread(fd_, buf + *got, len - *got, static_cast<off_t>(off + *got));
    if (r < 0) {
      FailErrno(Format("pread(0x%llx, len 0x%llx)", ull(off + *got), ull(len - *got)), errno);
      return false;
    }
    if (r == 0) break;  // EOF
    *got += static_cast<size_t>(r);
  }
  return true;
}

bool Tester::PwriteFully(uint64_t off, const uint8_t* buf, size_t len) {
  size_t done = 0;
  while (done < len) {
    const ssize_t r = pwrite(fd_, buf + done, len - done, static_cast<off_t>(off + done));
    if (r < 0) {
      FailErrno(Format("pwrite(0x%llx, len 0x%llx)", ull(off + done), ull(len - done)), errno);
      return false;
    }
    if (r == 0) {
      Fail(Format("pwrite made no progress at op #%llu", ull(n_)),
           Format("  pwrite(0x%llx, len 0x%llx) returned 0\n", ull(off + done), ull(len - done)));
      return false;
    }
    done += static_cast<size_t>(r);
  }
  return true;
}

bool Tester::CheckSize(const char* when) {
  struct stat st {};
  if (fstat(fd_, &st) != 0) {
    FailErrno("fstat", errno);
    return false;
  }
  if (static_cast<uint64_t>(st.st_size) != Size()) {
    Fail(Format("file size mismatch %s (op #%llu)", when, ull(n_)),
         Format("  fstat says st_size = %lld (0x%llx), the model says %llu (0x%llx)\n",
                static_cast<long long>(st.st_size), static_cast<unsigned long long>(st.st_size),
                ull(Size()), ull(Size())));
    return false;
  }
  return true;
}

bool Tester::FullCheck(const char* why) {
  if (!CheckSize(why)) return false;
  std::vector<uint8_t> chunk(kFullCheckChunk);
  uint64_t off = 0;
  while (off < Size()) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(chunk.size(), Size() - off));
    size_t got = 0;
    if (!PreadFully(off, chunk.data(), want, &got)) return false;
    if (got != want) {
      Fail(Format("%s: file ends early (op #%llu)", why, ull(n_)),
           Format("  pread at 0x%llx returned 0x%llx bytes in total, expected 0x%llx; model file "
                  "size 0x%llx\n",
                  ull(off), ull(got), ull(want), ull(Size())));
      return false;
    }
    if (!Compare(why, off, model_.data() + off, chunk.data(), want)) return false;
    off += want;
  }
  size_t extra = 0;
  if (!PreadFully(Size(), chunk.data(), 1, &extra)) return false;
  if (extra != 0) {
    Fail(Format("%s: data beyond EOF (op #%llu)", why, ull(n_)),
         Format("  pread at the model's EOF 0x%llx returned data (byte 0x%02x)\n", ull(Size()),
                chunk[0]));
    return false;
  }
  return true;
}

bool Tester::Compare(const char* what, uint64_t off, const uint8_t* expected, const uint8_t* actual,
                     size_t len) {
  if (len == 0 || std::memcmp(expected, actual, len) == 0) return true;
  size_t first = 0;
  while (expected[first] == actual[first]) ++first;
  size_t last = first;
  size_t bad = 0;
  for (size_t i = first; i < len; ++i) {
    if (expected[i] != actual[i]) {
      ++bad;
      last = i;
    }
  }
  const uint64_t bad_off = off + first;
  std::string d;
  d += Format("  mismatch at offset %llu (0x%llx): expected 0x%02x, actual 0x%02x\n", ull(bad_off),
              ull(bad_off), expected[first], actual[first]);
  d += Format(
      "  %llu bad byte(s) in the checked range [0x%llx, 0x%llx), the last at 0x%llx; model "
      "file size 0x%llx; page size %llu\n",
      ull(bad), ull(off), ull(off + len), ull(off + last), ull(Size()), ull(page_));
  d += Hints(bad_off, actual + first, len - first);
  // Hexdump of a window around the first bad byte: 16-byte rows aligned to file offsets, two
  // rows before it and four from it on, clipped to what was checked.
  const uint64_t row0 = bad_off - bad_off % 16;
  const uint64_t begin = std::max(row0 >= 32 ? row0 - 32 : 0, off - off % 16);
  const uint64_t end = std::min(off + len, row0 + 64);
  d += "  window ('*' marks rows that differ; '..' bytes lie outside the checked range):\n";
  d += "    offset      expected                                         actual\n";
  for (uint64_t row = begin; row < end; row += 16) {
    std::string e;
    std::string a;
    bool differs = false;
    for (uint64_t x = row; x < row + 16; ++x) {
      if (x >= off && x < end) {
        const size_t i = static_cast<size_t>(x - off);
        e += Format(" %02x", expected[i]);
        a += Format(" %02x", actual[i]);
        differs = differs || expected[i] != actual[i];
      } else {
        e += " ..";
        a += " ..";
      }
    }
    d += Format("   %c0x%08llx %s  %s\n", differs ? '*' : ' ', ull(row), e.c_str(), a.c_str());
  }
  Fail(Format("data mismatch in %s at op #%llu", what, ull(n_)), d);
  return false;
}

std::string Tester::Hints(uint64_t bad_off, const uint8_t* actual, size_t avail) const {
  const size_t k = std::min(avail, kHintBytes);
  std::string h;
  bool zero = true;
  for (size_t i = 0; i < k; ++i) zero = zero && actual[i] == 0;
  if (zero) {
    h += Format(
        "  hint: the %llu byte(s) read from 0x%llx on are zero: a lost write, or a hole or "
        "truncated range where data should be\n",
        ull(k), ull(bad_off));
  }
  for (const LogEntry& e : log_) {
    if (!e.writes_pattern || bad_off < e.off || bad_off >= e.off + e.len) continue;
    const size_t span = static_cast<size_t>(std::min<uint64_t>(k, e.off + e.len - bad_off));
    bool match = span > 0;
    for (size_t i = 0; i < span && match; ++i) match = actual[i] == Pattern(e.n, bad_off + i);
    if (match) {
      h += Format(
          "  hint: the bytes read at 0x%llx are the data op #%llu wrote there (stale or "
          "reordered data?)\n",
          ull(bad_off), ull(e.n));
    }
  }
  return h;
}

// ---------------------------------------------------------------------------------------------
// Model, log and report

void Tester::ModelZero(uint64_t off, uint64_t len) {
  if (off >= Size()) return;
  const uint64_t end = std::min(Size(), off + len);
  std::memset(model_.data() + off, 0, end - off);
}

void Tester::Log(bool writes_pattern, uint64_t off, uint64_t len, std::string text) {
  if (log_.size() == kLogDepth) log_.pop_front();
  log_.push_back(LogEntry{n_, writes_pattern, off, len, std::move(text)});
}

void Tester::Note(std::string note) {
  notes_.push_back(std::move(note));
}

void Tester::Fail(const std::string& headline, const std::string& details) {
  if (!report_.empty()) return;  // keep the first failure
  report_ =
      "fsx: FAILED: " + headline + Format(" (seed %llu, file %s)\n", ull(o_.seed), o_.path.c_str());
  report_ += details;
  for (const std::string& n : notes_) report_ += "  note: " + n + "\n";
  report_ += LogText();
  report_ += "reproduce: " + ReproduceLine() + "\n";
}

void Tester::FailErrno(const std::string& call, int err) {
  Fail(Format("%s failed at op #%llu", call.c_str(), ull(n_)),
       Format("  %s: %s\n", call.c_str(), ErrnoText(err).c_str()));
}

std::string Tester::LogText() const {
  std::string s = Format("last %zu operation(s), oldest first:\n", log_.size());
  for (const LogEntry& e : log_) s += Format("  #%-8llu %s\n", ull(e.n), e.text.c_str());
  return s;
}

std::string Tester::ReproduceLine() const {
  std::string s = Format("leasefs-fsx -S %llu -n %llu -l %llu -o %llu", ull(o_.seed),
                         ull(o_.operations), ull(o_.max_file_size), ull(o_.max_op_size));
  if (!o_.use_mmap) s += " --no-mmap";
  if (!o_.use_fallocate) s += " --no-fallocate";
  if (!o_.use_copy_range) s += " --no-copy-range";
  if (!o_.reopen) s += " --no-reopen";
  if (!o_.use_fsync) s += " --no-fsync";
  s += " " + o_.path;
  if (o_.inject_corruption_for_test) s += "   (plus Options::inject_corruption_for_test)";
  return s;
}

// ---------------------------------------------------------------------------------------------
// Driver

Result Tester::Run() {
  Result result;
  if (o_.path.empty()) {
    result.report = "fsx: no file path given\n";
    return result;
  }
  if (o_.max_file_size == 0 || o_.max_file_size > kMaxFileSizeLimit) {
    result.report = Format("fsx: max_file_size must be in [1, %llu], got %llu\n",
                           ull(kMaxFileSizeLimit), ull(o_.max_file_size));
    return result;
  }
  if (o_.max_op_size == 0) {
    result.report = "fsx: max_op_size must be at least 1\n";
    return result;
  }
  o_.max_op_size = std::min(o_.max_op_size, o_.max_file_size);
  if (const long ps = sysconf(_SC_PAGESIZE); ps > 0) page_ = static_cast<uint64_t>(ps);
  buf_.assign(o_.max_op_size, 0);

  fd_ = open(o_.path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  bool ok = fd_ >= 0;
  if (!ok) FailErrno("open(" + o_.path + ", O_RDWR|O_CREAT|O_TRUNC)", errno);
  ok = ok && CheckSize("after open");
  const uint64_t inject_after = std::max<uint64_t>(1, o_.operations / 2);
  while (ok && result.operations_done < o_.operations) {
    n_ = result.operations_done + 1;
    switch (ChooseOp()) {
      case Op::kWrite:
        ok = DoWrite();
        break;
      case Op::kRead:
        ok = DoRead();
        break;
      case Op::kTruncate:
        ok = DoTruncate();
        break;
      case Op::kMapRead:
        ok = DoMapRead();
        break;
      case Op::kMapWrite:
        ok = DoMapWrite();
        break;
      case Op::kFallocate:
        ok = DoFallocate();
        break;
      case Op::kCopyRange:
        ok = DoCopyRange();
        break;
      case Op::kFsync:
        ok = DoSync(false);
        break;
      case Op::kFdatasync:
        ok = DoSync(true);
        break;
      case Op::kReopen:
        ok = DoReopen();
        break;
    }
    if (!ok) break;
    result.operations_done = n_;
    if (o_.inject_corruption_for_test && n_ == inject_after) injection_pending_ = true;
    if (injection_pending_ && Size() > 0) {
      injection_pending_ = false;
      ok = InjectCorruption();
    }
    if (ok && n_ % kFullCheckInterval == 0) ok = FullCheck("periodic full-file check");
  }
  if (ok) ok = FullCheck("final full-file check");
  if (ok && fd_ >= 0) {
    const int fd = fd_;
    fd_ = -1;
    if (close(fd) != 0) {
      FailErrno("close", errno);
      ok = false;
    }
  }
  result.ok = ok;
  if (ok) {
    for (const std::string& n : notes_) result.report += "note: " + n + "\n";
  } else {
    result.report = report_;
  }
  return result;
}

}  // namespace

Result run(const Options& options) {
  try {
    Tester tester(options);
    return tester.Run();
  } catch (const std::exception& e) {  // e.g. std::bad_alloc for a huge model
    Result result;
    result.report = std::string("fsx: internal error: ") + e.what() + "\n";
    return result;
  }
}

}  // namespace leasefs::fsx
