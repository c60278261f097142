/*
 * posix_compare_test: leasefs must be an errno-faithful POSIX passthrough.
 *
 * HOW
 *   Every script below is one function of a Transcript, which knows only a root directory. It is
 *   run twice, literally the same code: (a) on a fresh native temp dir, (b) on the root of a fresh
 *   leasefs mount of another, empty temp dir. Each operation appends one line to the transcript:
 *   the return value or the errno name, and normalized results (stat: type, mode bits, size for
 *   non-directories, nlink, uid, gid, rdev for devices, and atime/mtime only where the script set
 *   them explicitly; never st_dev, st_ino or unset times). The two transcripts must be equal line
 *   for line; a difference is reported with the operation, the native result and the mount result.
 *   Many operations also carry the result POSIX/Linux specifies (e.g. EEXIST); a mismatch there is
 *   reported separately for either side, so a wrong script cannot pass silently on both.
 *
 * WHAT (compared)
 *   create/open flags (O_EXCL, O_TRUNC, O_APPEND, O_DIRECTORY, O_NOFOLLOW, EISDIR, ENOTDIR,
 *   ENAMETOOLONG); read/write/pread/pwrite; truncate/ftruncate; sparse files with data beyond 4 GiB
 *   and SEEK_DATA/SEEK_HOLE; fallocate incl. PUNCH_HOLE|KEEP_SIZE; copy_file_range; fsync/fdatasync
 *   on files and directories; mkdir/rmdir; unlink (incl. open-unlinked files); hard links; symlinks
 *   and readlink; rename incl. RENAME_NOREPLACE and RENAME_EXCHANGE; mknod (FIFO, device, socket);
 *   chmod; chown; utimensat (explicit, UTIME_NOW, UTIME_OMIT); xattrs; readdir (incl. 2,000
 *   entries, seekdir, rewinddir); files created by a non-root user; permission enforcement as uid
 *   65534; setgid-directory group inheritance; suid clearing on write/chown.
 *
 * WHAT (mount only)
 *   statvfs of the mount equals that of its SOURCE (f_bsize, f_frsize, f_blocks); st_ino on the
 *   mount equals st_ino in SOURCE and is stable across stat, open, rename, readdir, inode eviction
 *   and remount; files created through the mount by uid 65534 are owned by 65534 in SOURCE.
 */
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "mount_harness.h"

namespace leasefs::testing {
namespace {

constexpr uid_t kNobody = 65534;
constexpr gid_t kNogroup = 65534;
constexpr off_t kGiB = off_t{1} << 30;

// ---------------------------------------------------------------------------------------------
// Transcript

enum StatFlags : unsigned {
  kPlain = 0,
  kTimes = 1,   // include atime and mtime (only where the script set them explicitly)
  kBlocks = 2,  // include st_blocks (allocation-sensitive scripts)
  kFollow = 4,  // stat() instead of lstat()
};

std::string ErrName(int err) {
  const char* name = strerrorname_np(err);
  return name != nullptr ? name : "errno" + std::to_string(err);
}

std::string Hex(uint64_t v) {
  std::ostringstream out;
  out << std::hex << v;
  return out.str();
}

uint64_t Fnv1a(std::string_view data) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : data) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

// Printable rendering of short contents, a length+hash for long ones.
std::string Summarize(std::string_view data) {
  if (data.size() <= 48) {
    std::string out = "\"";
    for (unsigned char c : data) {
      if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
        out.push_back(static_cast<char>(c));
      } else {
        char buf[8];
        snprintf(buf, sizeof(buf), "\\x%02x", c);
        out += buf;
      }
    }
    return out + "\"";
  }
  return "len=" + std::to_string(data.size()) + " fnv=" + Hex(Fnv1a(data));
}

// A file name with non-printable bytes, spaces and backslashes as \xNN.
std::string EscapeName(std::string_view name) {
  std::string out;
  for (unsigned char c : name) {
    if (c > 0x20 && c < 0x7f && c != '\\') {
      out.push_back(static_cast<char>(c));
    } else {
      char buf[8];
      snprintf(buf, sizeof(buf), "\\x%02x", c);
      out += buf;
    }
  }
  return out;
}

std::string TypeName(mode_t mode) {
  switch (mode & S_IFMT) {
    case S_IFREG:
      return "reg";
    case S_IFDIR:
      return "dir";
    case S_IFLNK:
      return "lnk";
    case S_IFIFO:
      return "fifo";
    case S_IFSOCK:
      return "sock";
    case S_IFCHR:
      return "chr";
    case S_IFBLK:
      return "blk";
    default:
      return "type?";
  }
}

std::string DescribeStat(const struct stat& st, unsigned flags) {
  std::ostringstream out;
  char mode[16];
  snprintf(mode, sizeof(mode), "%04o", static_cast<unsigned>(st.st_mode & 07777));
  out << TypeName(st.st_mode) << " mode=" << mode;
  if (!S_ISDIR(st.st_mode)) out << " size=" << st.st_size;
  out << " nlink=" << st.st_nlink << " uid=" << st.st_uid << " gid=" << st.st_gid;
  if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
    out << " rdev=" << major(st.st_rdev) << "," << minor(st.st_rdev);
  }
  if (flags & kBlocks) out << " blocks=" << st.st_blocks;
  if (flags & kTimes) {
    out << " atime=" << st.st_atim.tv_sec << "." << st.st_atim.tv_nsec
        << " mtime=" << st.st_mtim.tv_sec << "." << st.st_mtim.tv_nsec;
  }
  return out.str();
}

class Transcript {
 public:
  explicit Transcript(std::string root) : root_(std::move(root)) {}

  const std::string& root() const { return root_; }
  // Absolute path of `rel` under the root ("" is the root itself).
  std::string P(std::string_view rel) const {
    return rel.empty() ? root_ : root_ + "/" + std::string(rel);
  }

  // Records "label -> N" or "label -> ENAME" (errno read on entry). With `expect`, a different
  // result is also recorded as a surprise. Returns rc.
  long Rc(std::string_view label, long rc, std::string_view expect = {}) {
    const int err = errno;
    Record(label, rc >= 0 ? std::to_string(rc) : ErrName(err), expect);
    return rc;
  }
  // Like Rc for calls returning a descriptor: success is recorded as "fd".
  int Fd(std::string_view label, int fd, std::string_view expect = {}) {
    const int err = errno;
    Record(label, fd >= 0 ? std::string("fd") : ErrName(err), expect);
    return fd;
  }
  // Records "label -> value".
  void Note(std::string_view label, std::string_view value, std::string_view expect = {}) {
    Record(label, std::string(value), expect);
  }

  void Stat(std::string_view rel, unsigned flags = kPlain, std::string_view expect = {}) {
    struct stat st;
    const int rc =
        fstatat(AT_FDCWD, P(rel).c_str(), &st, (flags & kFollow) ? 0 : AT_SYMLINK_NOFOLLOW);
    const int err = errno;
    Record(std::string((flags & kFollow) ? "stat " : "lstat ") + std::string(rel),
           rc == 0 ? DescribeStat(st, flags) : ErrName(err), expect);
  }
  void FStat(std::string_view label, int fd, unsigned flags = kPlain) {
    struct stat st;
    const int rc = fstat(fd, &st);
    const int err = errno;
    Record("fstat " + std::string(label), rc == 0 ? DescribeStat(st, flags) : ErrName(err), {});
  }

  // Records the whole content of `rel` (short: literal; long: length and hash).
  void Content(std::string_view rel, std::string_view expect = {}) {
    std::string data;
    const int fd = open(P(rel).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      Record("content " + std::string(rel), ErrName(errno), expect);
      return;
    }
    char buf[65536];
    off_t off = 0;
    for (;;) {
      const ssize_t n = pread(fd, buf, sizeof(buf), off);
      if (n < 0) {
        const int err = errno;
        close(fd);
        Record("content " + std::string(rel), "read " + ErrName(err), expect);
        return;
      }
      if (n == 0) break;
      data.append(buf, static_cast<size_t>(n));
      off += n;
    }
    close(fd);
    Record("content " + std::string(rel), Summarize(data), expect);
  }

  // Records pread(fd, len, off): the count or errno, and the bytes.
  void PRead(std::string_view label, int fd, size_t len, off_t off, std::string_view expect = {}) {
    std::string buf(len, '\0');
    const ssize_t n = pread(fd, buf.data(), len, off);
    const int err = errno;
    if (n < 0) {
      Record(label, ErrName(err), expect);
    } else {
      buf.resize(static_cast<size_t>(n));
      Record(label, std::to_string(n) + " " + Summarize(buf), expect);
    }
  }

  // Records the sorted entries of directory `rel` with their d_type.
  void List(std::string_view rel, std::string_view expect = {}) {
    DIR* dir = opendir(P(rel).c_str());
    if (dir == nullptr) {
      Record("readdir " + std::string(rel), ErrName(errno), expect);
      return;
    }
    std::vector<std::pair<std::string, unsigned char>> entries;
    errno = 0;
    while (dirent* e = readdir(dir)) entries.emplace_back(e->d_name, e->d_type);
    const int err = errno;
    closedir(dir);
    std::sort(entries.begin(), entries.end());
    std::string joined;
    for (const auto& [name, type] : entries) {
      if (!joined.empty()) joined += ' ';
      joined += EscapeName(name);
      joined += ':';
      joined += DtypeName(type);
    }
    Record("readdir " + std::string(rel), err != 0 ? ErrName(err) : joined, expect);
  }

  static std::string DtypeName(unsigned char t) {
    switch (t) {
      case DT_REG:
        return "reg";
      case DT_DIR:
        return "dir";
      case DT_LNK:
        return "lnk";
      case DT_FIFO:
        return "fifo";
      case DT_SOCK:
        return "sock";
      case DT_CHR:
        return "chr";
      case DT_BLK:
        return "blk";
      case DT_UNKNOWN:
        return "unknown";
      default:
        return "dtype" + std::to_string(t);
    }
  }

  // Creates `rel` with `data` (O_CREAT|O_TRUNC, mode) and records it as one line.
  void WriteFile(std::string_view rel, std::string_view data, mode_t mode = 0644) {
    const int fd = open(P(rel).c_str(), O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) {
      Record("writefile " + std::string(rel), "open " + ErrName(errno), "ok");
      return;
    }
    size_t done = 0;
    std::string result = "ok";
    while (done < data.size()) {
      const ssize_t n = write(fd, data.data() + done, data.size() - done);
      if (n <= 0) {
        result = "write " + (n < 0 ? ErrName(errno) : std::string("returned 0"));
        break;
      }
      done += static_cast<size_t>(n);
    }
    if (close(fd) != 0 && result == "ok") result = "close " + ErrName(errno);
    Record("writefile " + std::string(rel), result, "ok");
  }

  const std::vector<std::string>& lines() const { return lines_; }
  const std::vector<std::string>& surprises() const { return surprises_; }
  void AppendLine(std::string line) { lines_.push_back(std::move(line)); }
  void AppendSurprise(std::string s) { surprises_.push_back(std::move(s)); }

 private:
  void Record(std::string_view label, const std::string& result, std::string_view expect) {
    std::string line;
    for (unsigned char c : std::string(label) + " -> " + result) {
      if (c >= 0x20 && c < 0x7f) {
        line.push_back(static_cast<char>(c));
      } else {
        char buf[8];
        snprintf(buf, sizeof(buf), "\\x%02x", c);
        line += buf;
      }
    }
    if (!expect.empty() && result != expect) {
      surprises_.push_back("#" + std::to_string(lines_.size()) + " " + line + "   (expected " +
                           std::string(expect) + ")");
    }
    lines_.push_back(std::move(line));
  }

  std::string root_;
  std::vector<std::string> lines_;
  std::vector<std::string> surprises_;
};

// Runs `fn` in a forked child as uid/gid 65534 with no supplementary groups; the lines and
// surprises it records are appended to `t`. Must be called from a single-threaded process.
void RunAsNobody(Transcript& t, const std::function<void(Transcript&)>& fn) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    t.Note("run as nobody", "pipe2 " + ErrName(errno), "ok");
    return;
  }
  const size_t first_line = t.lines().size();
  const size_t first_surprise = t.surprises().size();
  const pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    std::string out;
    if (setgroups(0, nullptr) != 0 || setgid(kNogroup) != 0 || setuid(kNobody) != 0) {
      out = "L run as nobody -> setuid failed " + ErrName(errno) + "\n";
    } else {
      fn(t);
      for (size_t i = first_line; i < t.lines().size(); ++i) out += "L " + t.lines()[i] + "\n";
      for (size_t i = first_surprise; i < t.surprises().size(); ++i) {
        out += "S " + t.surprises()[i] + "\n";
      }
    }
    size_t done = 0;
    while (done < out.size()) {
      const ssize_t n = write(fds[1], out.data() + done, out.size() - done);
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
    _exit(0);
  }
  close(fds[1]);
  if (pid < 0) {
    close(fds[0]);
    t.Note("run as nobody", "fork " + ErrName(errno), "ok");
    return;
  }
  std::string in;
  char buf[4096];
  for (;;) {
    const ssize_t n = read(fds[0], buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    in.append(buf, static_cast<size_t>(n));
  }
  close(fds[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  std::istringstream lines(in);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind("L ", 0) == 0) t.AppendLine(line.substr(2));
    if (line.rfind("S ", 0) == 0) t.AppendSurprise(line.substr(2));
  }
  const bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  t.Note("run as nobody: child status", clean ? "ok" : "status " + std::to_string(status), "ok");
}

std::string Pattern(size_t n, unsigned salt) {
  std::string data(n, '\0');
  for (size_t i = 0; i < n; ++i) {
    data[i] = static_cast<char>((i * 131 + (i >> 9) * 7 + salt) % 251 + 1);
  }
  return data;
}

std::string ReadFd(int fd, size_t len, off_t off) {
  std::string buf(len, '\0');
  const ssize_t n = pread(fd, buf.data(), len, off);
  buf.resize(n > 0 ? static_cast<size_t>(n) : 0);
  return buf;
}

bool SameIno(const std::string& a, const std::string& b) {
  struct stat sa, sb;
  return lstat(a.c_str(), &sa) == 0 && lstat(b.c_str(), &sb) == 0 && sa.st_ino == sb.st_ino;
}

// ---------------------------------------------------------------------------------------------
// Scripts (each runs in an empty root directory, umask 022, as root)

void ScriptCreateOpen(Transcript& t) {
  int fd =
      t.Fd("open f O_CREAT|O_WRONLY 0644", open(t.P("f").c_str(), O_CREAT | O_WRONLY, 0644), "fd");
  t.Rc("write f", write(fd, "hello", 5), "5");
  t.Rc("close", close(fd), "0");
  t.Stat("f");
  t.Fd("open f O_CREAT|O_EXCL", open(t.P("f").c_str(), O_CREAT | O_EXCL | O_WRONLY, 0644),
       "EEXIST");
  fd = t.Fd("open f O_CREAT existing", open(t.P("f").c_str(), O_CREAT | O_RDWR, 0600), "fd");
  t.Rc("close", close(fd), "0");
  t.Stat("f");
  t.Content("f", "\"hello\"");
  t.Fd("open missing", open(t.P("missing").c_str(), O_RDONLY), "ENOENT");
  t.Fd("open f/x", open(t.P("f/x").c_str(), O_RDONLY), "ENOTDIR");
  t.Fd("open f/x O_CREAT", open(t.P("f/x").c_str(), O_CREAT | O_WRONLY, 0644), "ENOTDIR");
  t.Fd("open nodir/x O_CREAT", open(t.P("nodir/x").c_str(), O_CREAT | O_WRONLY, 0644), "ENOENT");
  t.Fd("open f O_DIRECTORY", open(t.P("f").c_str(), O_RDONLY | O_DIRECTORY), "ENOTDIR");

  t.Rc("mkdir d", mkdir(t.P("d").c_str(), 0755), "0");
  t.Fd("open d O_WRONLY", open(t.P("d").c_str(), O_WRONLY), "EISDIR");
  t.Fd("open d O_RDWR", open(t.P("d").c_str(), O_RDWR), "EISDIR");
  t.Fd("open d O_CREAT|O_RDONLY", open(t.P("d").c_str(), O_CREAT | O_RDONLY, 0644), "EISDIR");
  fd = t.Fd("open d O_RDONLY", open(t.P("d").c_str(), O_RDONLY), "fd");
  t.Rc("close", close(fd), "0");
  fd = t.Fd("open d O_DIRECTORY", open(t.P("d").c_str(), O_RDONLY | O_DIRECTORY), "fd");
  t.Rc("close", close(fd), "0");
  fd = t.Fd("open . O_DIRECTORY", open(t.P("").c_str(), O_RDONLY | O_DIRECTORY), "fd");
  t.Rc("close", close(fd), "0");

  fd = t.Fd("open f O_WRONLY|O_TRUNC", open(t.P("f").c_str(), O_WRONLY | O_TRUNC), "fd");
  t.FStat("f after O_TRUNC", fd);
  t.Rc("write abc", write(fd, "abc", 3), "3");
  t.Rc("close", close(fd), "0");
  fd = t.Fd("open f O_WRONLY|O_APPEND", open(t.P("f").c_str(), O_WRONLY | O_APPEND), "fd");
  t.Rc("lseek 0", lseek(fd, 0, SEEK_SET), "0");
  t.Rc("write de (append)", write(fd, "de", 2), "2");
  t.Rc("lseek cur after append", lseek(fd, 0, SEEK_CUR), "5");
  t.Rc("pwrite Z at 0 (append)", pwrite(fd, "Z", 1, 0), "1");
  t.FStat("f after appends", fd);
  t.Rc("close", close(fd), "0");
  t.Content("f", "\"abcdeZ\"");
  fd = t.Fd("open f O_RDWR|O_APPEND", open(t.P("f").c_str(), O_RDWR | O_APPEND), "fd");
  t.PRead("pread O_APPEND fd at 1", fd, 3, 1, "3 \"bcd\"");
  t.Rc("close", close(fd), "0");

  fd = t.Fd("open g O_CREAT 0777", open(t.P("g").c_str(), O_CREAT | O_WRONLY, 0777), "fd");
  t.Rc("close", close(fd), "0");
  t.Stat("g");  // 0755 after umask 022
  fd = t.Fd("open h O_CREAT 0400 O_RDWR", open(t.P("h").c_str(), O_CREAT | O_RDWR, 0400), "fd");
  t.Rc("write to new 0400 file via creating fd", write(fd, "x", 1), "1");
  t.Rc("close", close(fd), "0");
  t.Stat("h");

  t.Rc("symlink nowhere dl", symlink("nowhere", t.P("dl").c_str()), "0");
  t.Fd("open dl O_CREAT|O_EXCL", open(t.P("dl").c_str(), O_CREAT | O_EXCL | O_WRONLY, 0644),
       "EEXIST");
  fd = t.Fd("open dl O_CREAT (creates target)", open(t.P("dl").c_str(), O_CREAT | O_WRONLY, 0644),
            "fd");
  t.Rc("close", close(fd), "0");
  t.Stat("nowhere");
  t.Rc("symlink f sl", symlink("f", t.P("sl").c_str()), "0");
  t.Fd("open sl O_NOFOLLOW", open(t.P("sl").c_str(), O_RDONLY | O_NOFOLLOW), "ELOOP");
  fd = t.Fd("open sl O_PATH|O_NOFOLLOW", open(t.P("sl").c_str(), O_PATH | O_NOFOLLOW), "fd");
  t.Rc("close", close(fd), "0");

  const std::string long_name(256, 'n');
  t.Fd("open 256-char name O_CREAT", open(t.P(long_name).c_str(), O_CREAT | O_WRONLY, 0644),
       "ENAMETOOLONG");
  t.Fd("open 256-char name", open(t.P(long_name).c_str(), O_RDONLY), "ENAMETOOLONG");
  const std::string max_name(255, 'm');
  fd = t.Fd("open 255-char name O_CREAT", open(t.P(max_name).c_str(), O_CREAT | O_WRONLY, 0644),
            "fd");
  t.Rc("close", close(fd), "0");
  t.List("");
}

void ScriptReadWrite(Transcript& t) {
  const std::string data = Pattern(300000, 1);
  int fd = t.Fd("open data", open(t.P("data").c_str(), O_CREAT | O_RDWR | O_TRUNC, 0644), "fd");
  t.Rc("write 300000", write(fd, data.data(), data.size()), "300000");
  t.Note("pread 4096 at 123457 matches",
         ReadFd(fd, 4096, 123457) == data.substr(123457, 4096) ? "yes" : "no", "yes");
  t.Rc("pwrite XYZ at 1000", pwrite(fd, "XYZ", 3, 1000), "3");
  t.PRead("pread 5 at 999", fd, 5, 999);
  t.Rc("lseek cur (pwrite keeps offset)", lseek(fd, 0, SEEK_CUR), "300000");
  t.Rc("lseek end-10", lseek(fd, -10, SEEK_END), "299990");
  char buf[100];
  t.Rc("read 100 at end-10", read(fd, buf, sizeof(buf)), "10");
  t.Rc("read at EOF", read(fd, buf, sizeof(buf)), "0");
  t.PRead("pread beyond EOF", fd, 10, 500000, "0 \"\"");
  t.Rc("lseek 400000", lseek(fd, 400000, SEEK_SET), "400000");
  t.Rc("write E past EOF", write(fd, "E", 1), "1");
  t.FStat("data", fd);
  t.PRead("pread in gap", fd, 8, 350000, "8 \"\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\"");
  t.Rc("lseek negative", lseek(fd, -1, SEEK_SET), "EINVAL");
  t.PRead("pread negative offset", fd, 1, -1, "EINVAL");

  int ro = t.Fd("open data O_RDONLY", open(t.P("data").c_str(), O_RDONLY), "fd");
  t.Rc("write on O_RDONLY fd", write(ro, "x", 1), "EBADF");
  t.Rc("pwrite XYZW at 0 via rw fd", pwrite(fd, "QRST", 4, 0), "4");
  t.PRead("read via other fd sees it", ro, 4, 0, "4 \"QRST\"");
  int wo = t.Fd("open data O_WRONLY", open(t.P("data").c_str(), O_WRONLY), "fd");
  t.Rc("read on O_WRONLY fd", read(wo, buf, 1), "EBADF");
  t.Rc("close", close(wo), "0");
  t.Rc("close", close(ro), "0");
  t.Rc("close", close(fd), "0");
  t.Content("data");

  t.Rc("mkdir d", mkdir(t.P("d").c_str(), 0755), "0");
  fd = t.Fd("open d", open(t.P("d").c_str(), O_RDONLY | O_DIRECTORY), "fd");
  t.Rc("read on dir fd", read(fd, buf, 1), "EISDIR");
  t.Rc("close", close(fd), "0");

  // Many small writes then one read back.
  fd = t.Fd("open small", open(t.P("small").c_str(), O_CREAT | O_RDWR | O_TRUNC, 0644), "fd");
  std::string expected;
  bool all_ok = true;
  for (int i = 0; i < 500; ++i) {
    const std::string piece = std::to_string(i) + ",";
    if (write(fd, piece.data(), piece.size()) != static_cast<ssize_t>(piece.size())) all_ok = false;
    expected += piece;
  }
  t.Note("500 small writes", all_ok ? "ok" : "short", "ok");
  t.Note("read back matches", ReadFd(fd, expected.size() + 10, 0) == expected ? "yes" : "no",
         "yes");
  t.Rc("close", close(fd), "0");

  const std::string big = Pattern(8 << 20, 5);
  fd = t.Fd("open big", open(t.P("big").c_str(), O_CREAT | O_RDWR | O_TRUNC, 0644), "fd");
  t.Rc("write 8 MiB in one call", write(fd, big.data(), big.size()), "8388608");
  t.Note("read back 8 MiB matches", ReadFd(fd, big.size(), 0) == big ? "yes" : "no", "yes");
  t.Rc("close", close(fd), "0");

  fd = t.Fd("open direct O_DIRECT", open(t.P("direct").c_str(), O_CREAT | O_RDWR | O_DIRECT, 0644),
            "fd");
  void* aligned = aligned_alloc(4096, 8192);
  memset(aligned, 'D', 8192);
  t.Rc("O_DIRECT pwrite 8192 at 4096", pwrite(fd, aligned, 8192, 4096), "8192");
  memset(aligned, 0, 8192);
  t.Rc("O_DIRECT pread 8192 at 4096", pread(fd, aligned, 8192, 4096), "8192");
  t.Note("O_DIRECT data",
         std::string(static_cast<char*>(aligned), 8192) == std::string(8192, 'D') ? "ok" : "bad",
         "ok");
  free(aligned);
  t.FStat("direct", fd);
  t.Rc("close", close(fd), "0");
  t.Content("direct");
}

void ScriptTruncate(Transcript& t) {
  t.WriteFile("t", std::string(1000, 'a'));
  t.Rc("truncate grow 100000", truncate(t.P("t").c_str(), 100000), "0");
  t.Stat("t");
  t.Content("t");
  int fd = t.Fd("open t O_RDWR", open(t.P("t").c_str(), O_RDWR), "fd");
  t.Rc("ftruncate shrink 10", ftruncate(fd, 10), "0");
  t.FStat("t", fd);
  t.Content("t", "\"aaaaaaaaaa\"");
  t.Rc("truncate 0", truncate(t.P("t").c_str(), 0), "0");
  t.Stat("t");
  t.Rc("truncate missing", truncate(t.P("missing").c_str(), 0), "ENOENT");
  t.Rc("mkdir d", mkdir(t.P("d").c_str(), 0755), "0");
  t.Rc("truncate dir", truncate(t.P("d").c_str(), 0), "EISDIR");
  t.Rc("truncate negative", truncate(t.P("t").c_str(), -1), "EINVAL");
  const int ro = t.Fd("open t O_RDONLY", open(t.P("t").c_str(), O_RDONLY), "fd");
  t.Rc("ftruncate O_RDONLY fd", ftruncate(ro, 5), "EINVAL");

  // Truncation seen through another open descriptor (page cache must not serve stale data).
  t.Rc("pwrite 4096 b", pwrite(fd, std::string(4096, 'b').data(), 4096, 0), "4096");
  t.PRead("pread 4096 via O_RDONLY fd", ro, 4096, 0);
  t.Rc("truncate path 100", truncate(t.P("t").c_str(), 100), "0");
  t.PRead("pread 4096 after truncate", ro, 4096, 0);
  t.Rc("ftruncate grow 8192", ftruncate(fd, 8192), "0");
  t.PRead("pread 16 at 4000 (zeros)", ro, 16, 4000);
  t.Rc("ftruncate 5 GiB + 1", ftruncate(fd, 5 * kGiB + 1), "0");
  t.FStat("t", fd);
  t.PRead("pread at 5 GiB", ro, 4, 5 * kGiB, "1 \"\\x00\"");
  t.Rc("close", close(ro), "0");
  t.Rc("close", close(fd), "0");
  t.Rc("truncate to 2^44 + 1 (beyond ext4's limit)",
       truncate(t.P("t").c_str(), (off_t{1} << 44) + 1));
  fd = t.Fd("open t O_RDWR", open(t.P("t").c_str(), O_RDWR), "fd");
  t.Rc("pwrite at 2^44 (beyond ext4's limit)", pwrite(fd, "x", 1, off_t{1} << 44));
  t.Rc("close", close(fd), "0");
  t.Rc("symlink t ts", symlink("t", t.P("ts").c_str()), "0");
  t.Rc("truncate via symlink", truncate(t.P("ts").c_str(), 7), "0");
  t.Stat("t");
}

void ScriptSparse(Transcript& t) {
  int fd = t.Fd("open sparse", open(t.P("sparse").c_str(), O_CREAT | O_RDWR, 0644), "fd");
  const off_t data_at = 5 * kGiB;
  const off_t tail_at = 6 * kGiB + 12345;
  t.Rc("pwrite head at 0", pwrite(fd, "head", 4, 0), "4");
  t.Rc("pwrite 64 KiB at 5 GiB", pwrite(fd, std::string(65536, 'x').data(), 65536, data_at),
       "65536");
  t.Rc("pwrite tail at 6 GiB+12345", pwrite(fd, "tail", 4, tail_at), "4");
  t.FStat("sparse", fd, kBlocks);
  t.PRead("pread at 0", fd, 8, 0);
  t.PRead("pread at 2 GiB (hole)", fd, 8, 2 * kGiB);
  t.PRead("pread at 5 GiB - 2", fd, 4, data_at - 2, "4 \"\\x00\\x00xx\"");
  t.PRead("pread at 5 GiB + 64 KiB - 2", fd, 4, data_at + 65534, "4 \"xx\\x00\\x00\"");
  t.PRead("pread tail", fd, 10, tail_at, "4 \"tail\"");
  const off_t size = tail_at + 4;
  t.Rc("SEEK_DATA 0", lseek(fd, 0, SEEK_DATA), "0");
  t.Rc("SEEK_HOLE 0", lseek(fd, 0, SEEK_HOLE));
  t.Rc("SEEK_DATA 4096", lseek(fd, 4096, SEEK_DATA), std::to_string(data_at));
  t.Rc("SEEK_DATA 1 GiB", lseek(fd, kGiB, SEEK_DATA), std::to_string(data_at));
  t.Rc("SEEK_HOLE 5 GiB", lseek(fd, data_at, SEEK_HOLE), std::to_string(data_at + 65536));
  t.Rc("SEEK_DATA 5 GiB + 64 KiB", lseek(fd, data_at + 65536, SEEK_DATA));
  t.Rc("SEEK_HOLE tail", lseek(fd, tail_at, SEEK_HOLE), std::to_string(size));
  t.Rc("SEEK_DATA at EOF", lseek(fd, size, SEEK_DATA), "ENXIO");
  t.Rc("SEEK_HOLE past EOF", lseek(fd, size + 1, SEEK_HOLE), "ENXIO");
  t.Rc("SEEK_END", lseek(fd, 0, SEEK_END), std::to_string(size));
  t.Rc("close", close(fd), "0");
  t.Stat("sparse", kBlocks);
}

void ScriptFallocate(Transcript& t) {
  constexpr off_t kMiB = 1 << 20;
  int fd = t.Fd("open fa", open(t.P("fa").c_str(), O_CREAT | O_RDWR, 0644), "fd");
  t.Rc("fallocate 0..1 MiB", fallocate(fd, 0, 0, kMiB), "0");
  t.FStat("fa", fd, kBlocks);
  t.PRead("pread allocated (zeros)", fd, 4, 1000, "4 \"\\x00\\x00\\x00\\x00\"");
  t.Rc("pwrite 1 MiB y", pwrite(fd, std::string(kMiB, 'y').data(), kMiB, 0), std::to_string(kMiB));
  t.Rc("PUNCH_HOLE|KEEP_SIZE 256K+128K",
       fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 256 * 1024, 128 * 1024), "0");
  t.FStat("fa after punch", fd, kBlocks);
  t.PRead("pread in punched range", fd, 4, 256 * 1024 + 100, "4 \"\\x00\\x00\\x00\\x00\"");
  t.PRead("pread just before", fd, 2, 256 * 1024 - 2, "2 \"yy\"");
  t.PRead("pread just after", fd, 2, 384 * 1024, "2 \"yy\"");
  t.Rc("SEEK_HOLE 0", lseek(fd, 0, SEEK_HOLE), std::to_string(256 * 1024));
  t.Rc("SEEK_DATA 256K", lseek(fd, 256 * 1024, SEEK_DATA), std::to_string(384 * 1024));
  t.Rc("fallocate KEEP_SIZE 1..2 MiB", fallocate(fd, FALLOC_FL_KEEP_SIZE, kMiB, kMiB), "0");
  t.FStat("fa after KEEP_SIZE", fd, kBlocks);
  t.Rc("PUNCH_HOLE without KEEP_SIZE", fallocate(fd, FALLOC_FL_PUNCH_HOLE, 0, 4096), "EOPNOTSUPP");
  t.Rc("fallocate extend to 2 MiB + 4 KiB", fallocate(fd, 0, 2 * kMiB, 4096), "0");
  t.FStat("fa after extend", fd, kBlocks);
  t.Rc("fallocate len 0", fallocate(fd, 0, 0, 0), "EINVAL");
  t.Rc("fallocate negative offset", fallocate(fd, 0, -1, 10), "EINVAL");
  t.Rc("close", close(fd), "0");
  const int ro = t.Fd("open fa O_RDONLY", open(t.P("fa").c_str(), O_RDONLY), "fd");
  t.Rc("fallocate on O_RDONLY fd", fallocate(ro, 0, 0, 4096), "EBADF");
  t.Rc("close", close(ro), "0");
  t.Content("fa");
}

// copy_file_range until `len` bytes are done or a call returns <= 0; records the total.
void CopyAll(Transcript& t, std::string_view label, int in, loff_t* in_off, int out,
             loff_t* out_off, size_t len, std::string_view expect) {
  size_t total = 0;
  ssize_t n = 0;
  int err = 0;
  while (total < len) {
    n = copy_file_range(in, in_off, out, out_off, len - total, 0);
    if (n <= 0) {
      err = errno;
      break;
    }
    total += static_cast<size_t>(n);
  }
  if (n < 0 && total == 0) {
    t.Note(label, ErrName(err), expect);
  } else {
    t.Note(label, std::to_string(total), expect);
  }
}

void ScriptCopyFileRange(Transcript& t) {
  const std::string data = Pattern(200000, 2);
  t.WriteFile("src", data);
  const int in = t.Fd("open src", open(t.P("src").c_str(), O_RDONLY), "fd");
  const int out =
      t.Fd("open dst", open(t.P("dst").c_str(), O_CREAT | O_RDWR | O_TRUNC, 0644), "fd");
  loff_t in_off = 1000, out_off = 0;
  CopyAll(t, "copy 100000 from 1000 to 0", in, &in_off, out, &out_off, 100000, "100000");
  t.Note("offsets after", std::to_string(in_off) + "," + std::to_string(out_off), "101000,100000");
  t.Note("copied bytes match", ReadFd(out, 100000, 0) == data.substr(1000, 100000) ? "yes" : "no",
         "yes");
  t.Rc("lseek src 50", lseek(in, 50, SEEK_SET), "50");
  t.Rc("lseek dst end", lseek(out, 0, SEEK_END), "100000");
  CopyAll(t, "copy 10 at file positions", in, nullptr, out, nullptr, 10, "10");
  t.Rc("src position after", lseek(in, 0, SEEK_CUR), "60");
  t.Rc("dst position after", lseek(out, 0, SEEK_CUR), "100010");
  in_off = 300000;
  out_off = 0;
  t.Rc("copy from beyond EOF", copy_file_range(in, &in_off, out, &out_off, 100, 0), "0");
  in_off = 0;
  out_off = 150000;
  CopyAll(t, "copy past dst EOF (extends)", in, &in_off, out, &out_off, 1000, "1000");
  t.FStat("dst", out);
  loff_t a = 0, b = 100;
  t.Rc("overlapping copy in one file", copy_file_range(out, &a, out, &b, 1000, 0), "EINVAL");
  a = 0;
  b = 0;
  t.Rc("flags=1", copy_file_range(in, &a, out, &b, 10, 1), "EINVAL");
  const int wo = t.Fd("open src O_WRONLY", open(t.P("src").c_str(), O_WRONLY), "fd");
  a = 0;
  b = 0;
  t.Rc("copy from O_WRONLY fd", copy_file_range(wo, &a, out, &b, 10, 0), "EBADF");
  t.Rc("copy to O_RDONLY fd", copy_file_range(out, &a, in, &b, 10, 0), "EBADF");
  const int app = t.Fd("open dst O_APPEND", open(t.P("dst").c_str(), O_WRONLY | O_APPEND), "fd");
  t.Rc("copy to O_APPEND fd", copy_file_range(in, &a, app, &b, 10, 0), "EBADF");
  t.Rc("mkdir d", mkdir(t.P("d").c_str(), 0755), "0");
  const int dir = t.Fd("open d", open(t.P("d").c_str(), O_RDONLY | O_DIRECTORY), "fd");
  t.Rc("copy from dir fd", copy_file_range(dir, &a, out, &b, 10, 0), "EISDIR");
  for (int fd : {in, out, wo, app, dir}) t.Rc("close", close(fd), "0");
  t.Content("dst");
}

void ScriptFsync(Transcript& t) {
  int fd = t.Fd("open s", open(t.P("s").c_str(), O_CREAT | O_RDWR, 0644), "fd");
  t.Rc("write", write(fd, "sync me", 7), "7");
  t.Rc("fsync file", fsync(fd), "0");
  t.Rc("fdatasync file", fdatasync(fd), "0");
  t.Rc("sync_file_range", sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE), "0");
  t.Rc("syncfs", syncfs(fd), "0");
  t.Rc("close", close(fd), "0");
  fd = t.Fd("open s O_RDONLY", open(t.P("s").c_str(), O_RDONLY), "fd");
  t.Rc("fsync O_RDONLY file", fsync(fd), "0");
  t.Rc("close", close(fd), "0");
  fd = t.Fd("open root dir", open(t.P("").c_str(), O_RDONLY | O_DIRECTORY), "fd");
  t.Rc("fsync dir", fsync(fd), "0");
  t.Rc("fdatasync dir", fdatasync(fd), "0");
  t.Rc("close", close(fd), "0");
  t.Rc("mkdir sub", mkdir(t.P("sub").c_str(), 0755), "0");
  fd = t.Fd("open sub", open(t.P("sub").c_str(), O_RDONLY | O_DIRECTORY), "fd");
  t.Rc("fsync subdir", fsync(fd), "0");
  t.Rc("close", close(fd), "0");
  fd = t.Fd("open s O_PATH", open(t.P("s").c_str(), O_PATH), "fd");
  t.Rc("fsync O_PATH fd", fsync(fd), "EBADF");
  t.Rc("close", close(fd), "0");
  t.Content("s", "\"sync me\"");
}

void ScriptMkdirRmdir(Transcript& t) {
  t.Rc("mkdir d", mkdir(t.P("d").c_str(), 0755), "0");
  t.Stat("d");
  t.Rc("mkdir d again", mkdir(t.P("d").c_str(), 0755), "EEXIST");
  t.Rc("mkdir a/b", mkdir(t.P("a/b").c_str(), 0755), "ENOENT");
  t.WriteFile("f", "x");
  t.Rc("mkdir f/x", mkdir(t.P("f/x").c_str(), 0755), "ENOTDIR");
  t.Rc("mkdir f", mkdir(t.P("f").c_str(), 0755), "EEXIST");
  t.Rc("mkdir d/e 0700", mkdir(t.P("d/e").c_str(), 0700), "0");
  t.Stat("d");
  t.Stat("d/e");
  t.Rc("mkdir m 0777", mkdir(t.P("m").c_str(), 0777), "0");
  t.Stat("m");
  t.Rc("mkdir sv 01777", mkdir(t.P("sv").c_str(), 01777), "0");
  t.Stat("sv");
  t.Stat("");
  t.Rc("mkdir 256-char name", mkdir(t.P(std::string(256, 'd')).c_str(), 0755), "ENAMETOOLONG");
  t.Rc("rmdir d (not empty)", rmdir(t.P("d").c_str()), "ENOTEMPTY");
  t.Rc("rmdir d/e/.", rmdir(t.P("d/e/.").c_str()), "EINVAL");
  t.Rc("rmdir d/e/..", rmdir(t.P("d/e/..").c_str()), "ENOTEMPTY");
  t.Rc("rmdir missing", rmdir(t.P("missing").c_str()), "ENOENT");
  t.Rc("rmdir f", rmdir(t.P("f").c_str()), "ENOTDIR");
  t.Rc("rmdir f/x", rmdir(t.P("f/x").c_str()), "ENOTDIR");
  t.Rc("rmdir d/e", rmdir(t.P("d/e").c_str()), "0");
  t.Stat("d");
  t.Stat("d/e", kPlain, "ENOENT");
  t.WriteFile("d/.hidden", "");
  t.Rc("rmdir d with .hidden", rmdir(t.P("d").c_str()), "ENOTEMPTY");
  t.Rc("unlink d/.hidden", unlink(t.P("d/.hidden").c_str()), "0");
  t.Rc("rmdir d", rmdir(t.P("d").c_str()), "0");
  t.Stat("d", kPlain, "ENOENT");
  t.Stat("");
  t.Rc("mkdir d again after rmdir", mkdir(t.P("d").c_str(), 0711), "0");
  t.Stat("d");
  t.List("");
}

void ScriptUnlink(Transcript& t) {
  t.Rc("unlink missing", unlink(t.P("missing").c_str()), "ENOENT");
  t.Rc("mkdir d", mkdir(t.P("d").c_str(), 0755), "0");
  t.Rc("unlink dir", unlink(t.P("d").c_str()), "EISDIR");
  t.WriteFile("f", "keep");
  t.Rc("unlink f/x", unlink(t.P("f/x").c_str()), "ENOTDIR");
  const int fd = t.Fd("open f O_RDWR", open(t.P("f").c_str(), O_RDWR), "fd");
  t.Rc("unlink f (open)", unlink(t.P("f").c_str()), "0");
  t.Stat("f", kPlain, "ENOENT");
  t.FStat("open unlinked f", fd);
  t.PRead("pread open unlinked", fd, 10, 0, "4 \"keep\"");
  t.Rc("pwrite open unlinked", pwrite(fd, "MORE", 4, 4), "4");
  t.FStat("open unlinked f after write", fd);
  t.PRead("pread open unlinked again", fd, 10, 0, "8 \"keepMORE\"");
  t.Rc("ftruncate open unlinked", ftruncate(fd, 6), "0");
  t.Rc("fchmod open unlinked", fchmod(fd, 0604), "0");
  const timespec times[2] = {{1000000000, 1}, {1000000000, 2}};
  t.Rc("futimens open unlinked", futimens(fd, times), "0");
  t.Rc("fsetxattr open unlinked", fsetxattr(fd, "user.u", "v", 1, 0), "0");
  t.Rc("fgetxattr open unlinked", fgetxattr(fd, "user.u", nullptr, 0), "1");
  t.FStat("open unlinked f after f-ops", fd, kTimes);
  t.WriteFile("f", "new");
  t.PRead("old fd still sees old file", fd, 10, 0, "6 \"keepMO\"");
  t.Content("f", "\"new\"");
  t.Rc("close", close(fd), "0");
  t.Rc("symlink f s", symlink("f", t.P("s").c_str()), "0");
  t.Rc("unlink s", unlink(t.P("s").c_str()), "0");
  t.Stat("s", kPlain, "ENOENT");
  t.Stat("f");
  t.Rc("unlinkat dir AT_REMOVEDIR", unlinkat(AT_FDCWD, t.P("d").c_str(), AT_REMOVEDIR), "0");
  t.Rc("unlink f", unlink(t.P("f").c_str()), "0");
  t.List("");
}

void ScriptHardLinks(Transcript& t) {
  t.WriteFile("f", "one");
  t.Rc("link f g", link(t.P("f").c_str(), t.P("g").c_str()), "0");
  t.Stat("f");
  t.Stat("g");
  t.Note("same st_ino f g", SameIno(t.P("f"), t.P("g")) ? "yes" : "no", "yes");
  t.Rc("link f g again", link(t.P("f").c_str(), t.P("g").c_str()), "EEXIST");
  t.Rc("link missing h", link(t.P("missing").c_str(), t.P("h").c_str()), "ENOENT");
  t.Rc("mkdir d", mkdir(t.P("d").c_str(), 0755), "0");
  t.Rc("link dir", link(t.P("d").c_str(), t.P("dl").c_str()), "EPERM");
  t.Rc("link into missing dir", link(t.P("f").c_str(), t.P("nodir/x").c_str()), "ENOENT");
  t.WriteFile("g", "two!");
  t.Content("f", "\"two!\"");
  t.Rc("link f d/h", link(t.P("f").c_str(), t.P("d/h").c_str()), "0");
  t.Stat("d/h");
  t.Note("same st_ino f d/h", SameIno(t.P("f"), t.P("d/h")) ? "yes" : "no", "yes");
  t.Rc("chmod f 0600 (one name)", chmod(t.P("f").c_str(), 0600), "0");
  t.Stat("d/h");  // the other name must show the new mode at once
  t.Rc("truncate d/h 2 (other name)", truncate(t.P("d/h").c_str(), 2), "0");
  t.Stat("f");
  t.Content("f", "\"tw\"");
  t.Rc("chmod d/h 0644", chmod(t.P("d/h").c_str(), 0644), "0");
  t.Rc("unlink f", unlink(t.P("f").c_str()), "0");
  t.Stat("g");
  t.Rc("rename g d/h (same inode)", rename(t.P("g").c_str(), t.P("d/h").c_str()), "0");
  t.Stat("g");
  t.Stat("d/h");
  t.Rc("symlink g s", symlink("g", t.P("s").c_str()), "0");
  t.Rc("link s s2 (no follow)", link(t.P("s").c_str(), t.P("s2").c_str()), "0");
  t.Stat("s2");
  t.Rc("linkat s s3 AT_SYMLINK_FOLLOW",
       linkat(AT_FDCWD, t.P("s").c_str(), AT_FDCWD, t.P("s3").c_str(), AT_SYMLINK_FOLLOW), "0");
  t.Stat("s3");
  t.Stat("g");
  t.Note("same st_ino g s3", SameIno(t.P("g"), t.P("s3")) ? "yes" : "no", "yes");
  t.List("");
}

void ScriptSymlinks(Transcript& t) {
  t.Rc("symlink target s", symlink("target", t.P("s").c_str()), "0");
  char buf[8192];
  ssize_t n = t.Rc("readlink s", readlink(t.P("s").c_str(), buf, sizeof(buf)), "6");
  t.Note("readlink s value", n > 0 ? std::string(buf, static_cast<size_t>(n)) : "", "target");
  t.Stat("s");
  t.Stat("s", kFollow, "ENOENT");
  t.Fd("open dangling", open(t.P("s").c_str(), O_RDONLY), "ENOENT");
  t.WriteFile("target", "via link");
  t.Stat("s", kFollow);
  t.Content("s", "\"via link\"");
  t.Rc("symlink over existing", symlink("x", t.P("s").c_str()), "EEXIST");
  t.Rc("readlink regular file", readlink(t.P("target").c_str(), buf, sizeof(buf)), "EINVAL");
  t.Rc("readlink missing", readlink(t.P("missing").c_str(), buf, sizeof(buf)), "ENOENT");
  n = t.Rc("readlink into 3-byte buffer", readlink(t.P("s").c_str(), buf, 3), "3");
  t.Note("truncated value", n > 0 ? std::string(buf, static_cast<size_t>(n)) : "", "tar");
  t.Rc("mkdir d", mkdir(t.P("d").c_str(), 0755), "0");
  t.Rc("symlink d sd", symlink("d", t.P("sd").c_str()), "0");
  t.Stat("sd", kFollow);
  t.WriteFile("sd/inner", "in d");
  t.Content("d/inner", "\"in d\"");
  t.Rc("symlink ../target d/up", symlink("../target", t.P("d/up").c_str()), "0");
  t.Content("d/up", "\"via link\"");
  t.Rc("symlink l2 l1", symlink("l2", t.P("l1").c_str()), "0");
  t.Rc("symlink l1 l2", symlink("l1", t.P("l2").c_str()), "0");
  t.Fd("open loop", open(t.P("l1").c_str(), O_RDONLY), "ELOOP");
  t.Stat("l1", kFollow, "ELOOP");
  const std::string long_target(1000, 'L');
  t.Rc("symlink 1000-char target", symlink(long_target.c_str(), t.P("long").c_str()), "0");
  n = t.Rc("readlink long", readlink(t.P("long").c_str(), buf, sizeof(buf)), "1000");
  t.Note("long value intact", n == 1000 && std::string(buf, 1000) == long_target ? "yes" : "no",
         "yes");
  t.Stat("long");
  const std::string max_target(4095, 'M');
  t.Rc("symlink 4095-char target", symlink(max_target.c_str(), t.P("max").c_str()), "0");
  n = t.Rc("readlink 4095", readlink(t.P("max").c_str(), buf, sizeof(buf)), "4095");
  t.Note("4095 value intact", n == 4095 && std::string(buf, 4095) == max_target ? "yes" : "no",
         "yes");
  const std::string too_long(4096, 'T');
  t.Rc("symlink 4096-char target", symlink(too_long.c_str(), t.P("toolong").c_str()),
       "ENAMETOOLONG");
  t.Rc("symlink absolute", symlink("/nonexistent/abs", t.P("abs").c_str()), "0");
  n = t.Rc("readlink absolute", readlink(t.P("abs").c_str(), buf, sizeof(buf)), "16");
  t.Rc("symlink empty target", symlink("", t.P("empty").c_str()), "ENOENT");
  t.Rc("symlink in missing dir", symlink("x", t.P("nodir/s").c_str()), "ENOENT");
  t.List("");
}

void ScriptRename(Transcript& t) {
  t.WriteFile("a", "A");
  t.WriteFile("b", "B");
  t.Rc("rename a b (over file)", rename(t.P("a").c_str(), t.P("b").c_str()), "0");
  t.Stat("a", kPlain, "ENOENT");
  t.Content("b", "\"A\"");
  t.Rc("mkdir d1", mkdir(t.P("d1").c_str(), 0755), "0");
  t.WriteFile("d1/inside", "i");
  t.Rc("mkdir d2", mkdir(t.P("d2").c_str(), 0700), "0");
  t.Rc("rename d1 d2 (dir over empty dir)", rename(t.P("d1").c_str(), t.P("d2").c_str()), "0");
  t.Stat("d1", kPlain, "ENOENT");
  t.Stat("d2");
  t.Content("d2/inside", "\"i\"");
  t.Rc("mkdir d3", mkdir(t.P("d3").c_str(), 0755), "0");
  t.WriteFile("d3/x", "x");
  t.Rc("rename d2 d3 (dir over non-empty dir)", rename(t.P("d2").c_str(), t.P("d3").c_str()),
       "ENOTEMPTY");
  t.WriteFile("f", "F");
  t.Rc("rename f d3 (file over dir)", rename(t.P("f").c_str(), t.P("d3").c_str()), "EISDIR");
  t.Rc("rename d3 f (dir over file)", rename(t.P("d3").c_str(), t.P("f").c_str()), "ENOTDIR");
  t.WriteFile("x", "X");
  t.WriteFile("y", "Y");
  t.Rc("RENAME_NOREPLACE onto existing",
       renameat2(AT_FDCWD, t.P("x").c_str(), AT_FDCWD, t.P("y").c_str(), RENAME_NOREPLACE),
       "EEXIST");
  t.Rc("RENAME_NOREPLACE to new name",
       renameat2(AT_FDCWD, t.P("x").c_str(), AT_FDCWD, t.P("z").c_str(), RENAME_NOREPLACE), "0");
  t.Content("z", "\"X\"");
  t.Stat("x", kPlain, "ENOENT");
  t.WriteFile("p", "P");
  t.WriteFile("q", "QQ");
  t.Rc("RENAME_EXCHANGE p q",
       renameat2(AT_FDCWD, t.P("p").c_str(), AT_FDCWD, t.P("q").c_str(), RENAME_EXCHANGE), "0");
  t.Content("p", "\"QQ\"");
  t.Content("q", "\"P\"");
  t.Rc("RENAME_EXCHANGE file and dir",
       renameat2(AT_FDCWD, t.P("p").c_str(), AT_FDCWD, t.P("d3").c_str(), RENAME_EXCHANGE), "0");
  t.Stat("p");
  t.Stat("d3");
  t.Content("d3", "\"QQ\"");
  t.Content("p/x", "\"x\"");
  t.Rc("RENAME_EXCHANGE with missing",
       renameat2(AT_FDCWD, t.P("q").c_str(), AT_FDCWD, t.P("nope").c_str(), RENAME_EXCHANGE),
       "ENOENT");
  t.Rc("RENAME_EXCHANGE|NOREPLACE",
       renameat2(AT_FDCWD, t.P("q").c_str(), AT_FDCWD, t.P("z").c_str(),
                 RENAME_EXCHANGE | RENAME_NOREPLACE),
       "EINVAL");
  t.Rc("rename missing", rename(t.P("missing").c_str(), t.P("m2").c_str()), "ENOENT");
  t.Rc("rename into own subdir", rename(t.P("p").c_str(), t.P("p/sub").c_str()), "EINVAL");
  t.Rc("rename to itself", rename(t.P("q").c_str(), t.P("q").c_str()), "0");
  t.Content("q", "\"P\"");
  t.Rc("rename into missing dir", rename(t.P("q").c_str(), t.P("nodir/q").c_str()), "ENOENT");
  t.Rc("mkdir s1", mkdir(t.P("s1").c_str(), 0755), "0");
  t.Rc("mkdir s2", mkdir(t.P("s2").c_str(), 0755), "0");
  t.Rc("mkdir s1/sub", mkdir(t.P("s1/sub").c_str(), 0755), "0");
  t.WriteFile("s1/m", "M");
  t.Rc("rename s1/m s2/m (across dirs)", rename(t.P("s1/m").c_str(), t.P("s2/m").c_str()), "0");
  t.Rc("rename s1/sub s2/sub (dir across dirs)",
       rename(t.P("s1/sub").c_str(), t.P("s2/sub").c_str()), "0");
  t.Stat("s1");
  t.Stat("s2");
  t.Content("s2/m", "\"M\"");
  const int fd = t.Fd("open r1", open(t.P("r1").c_str(), O_CREAT | O_RDWR, 0644), "fd");
  t.Rc("rename r1 r2 while open", rename(t.P("r1").c_str(), t.P("r2").c_str()), "0");
  t.Rc("write via old fd", write(fd, "renamed", 7), "7");
  t.Rc("close", close(fd), "0");
  t.Content("r2", "\"renamed\"");
  t.Rc("symlink b sb", symlink("b", t.P("sb").c_str()), "0");
  t.Rc("rename symlink", rename(t.P("sb").c_str(), t.P("sb2").c_str()), "0");
  t.Stat("sb2");
  t.Content("sb2", "\"A\"");
  t.List("");
}

void ScriptMknod(Transcript& t) {
  t.Rc("mknod fifo p", mknod(t.P("p").c_str(), S_IFIFO | 0644, 0), "0");
  t.Stat("p");
  t.Rc("mkfifo p again", mkfifo(t.P("p").c_str(), 0644), "EEXIST");
  t.Fd("open fifo O_WRONLY|O_NONBLOCK without reader",
       open(t.P("p").c_str(), O_WRONLY | O_NONBLOCK), "ENXIO");
  const int r = t.Fd("open fifo reader", open(t.P("p").c_str(), O_RDONLY | O_NONBLOCK), "fd");
  const int w = t.Fd("open fifo writer", open(t.P("p").c_str(), O_WRONLY | O_NONBLOCK), "fd");
  t.Rc("write fifo", write(w, "ping", 4), "4");
  char buf[16];
  const ssize_t n = t.Rc("read fifo", read(r, buf, sizeof(buf)), "4");
  t.Note("fifo data", n > 0 ? std::string(buf, static_cast<size_t>(n)) : "", "ping");
  t.Rc("close", close(w), "0");
  t.Rc("close", close(r), "0");
  t.Stat("p");
  t.Rc("mknod regular", mknod(t.P("r").c_str(), S_IFREG | 0600, 0), "0");
  t.Stat("r");
  t.Rc("mknod char 1,3", mknod(t.P("c").c_str(), S_IFCHR | 0600, makedev(1, 3)), "0");
  t.Stat("c");
  t.Rc("mknod block 7,0", mknod(t.P("b").c_str(), S_IFBLK | 0600, makedev(7, 0)), "0");
  t.Stat("b");
  t.Rc("mknod socket", mknod(t.P("sock").c_str(), S_IFSOCK | 0755, 0), "0");
  t.Stat("sock");
  t.Rc("mknod dir type", mknod(t.P("dirnode").c_str(), S_IFDIR | 0755, 0), "EPERM");
  t.Rc("mknod in missing dir", mknod(t.P("nodir/p").c_str(), S_IFIFO | 0644, 0), "ENOENT");
  t.Rc("mknod fifo 0777 (umask)", mknod(t.P("p2").c_str(), S_IFIFO | 0777, 0), "0");
  t.Stat("p2");
  t.List("");
}

void ScriptChmod(Transcript& t) {
  t.WriteFile("f", "mode");
  t.Rc("chmod 0600", chmod(t.P("f").c_str(), 0600), "0");
  t.Stat("f");
  t.Rc("chmod 04755", chmod(t.P("f").c_str(), 04755), "0");
  t.Stat("f");
  t.Rc("chmod 02755", chmod(t.P("f").c_str(), 02755), "0");
  t.Stat("f");
  t.Rc("chmod 07777", chmod(t.P("f").c_str(), 07777), "0");
  t.Stat("f");
  t.Rc("chmod 0", chmod(t.P("f").c_str(), 0), "0");
  t.Stat("f");
  const int fd = t.Fd("root opens mode-0 file O_RDWR", open(t.P("f").c_str(), O_RDWR), "fd");
  t.Rc("fchmod 0640", fchmod(fd, 0640), "0");
  t.FStat("f", fd);
  t.Rc("close", close(fd), "0");
  t.Rc("mkdir d", mkdir(t.P("d").c_str(), 0755), "0");
  t.Rc("chmod dir 01777", chmod(t.P("d").c_str(), 01777), "0");
  t.Stat("d");
  t.Rc("chmod missing", chmod(t.P("missing").c_str(), 0644), "ENOENT");
  t.Rc("symlink f s", symlink("f", t.P("s").c_str()), "0");
  t.Rc("chmod via symlink", chmod(t.P("s").c_str(), 0700), "0");
  t.Stat("f");
  t.Stat("s");
  t.Rc("fchmodat symlink AT_SYMLINK_NOFOLLOW",
       fchmodat(AT_FDCWD, t.P("s").c_str(), 0600, AT_SYMLINK_NOFOLLOW), "EOPNOTSUPP");
  t.Rc("chmod with type bits", chmod(t.P("f").c_str(), S_IFDIR | 0644), "0");
  t.Stat("f");
}

void ScriptChown(Transcript& t) {
  t.WriteFile("f", "owner");
  t.Rc("chown f 65534:65534", chown(t.P("f").c_str(), kNobody, kNogroup), "0");
  t.Stat("f");
  t.Rc("chown f -1:0", chown(t.P("f").c_str(), static_cast<uid_t>(-1), 0), "0");
  t.Stat("f");
  int fd = t.Fd("open f", open(t.P("f").c_str(), O_RDONLY), "fd");
  t.Rc("fchown 0:-1", fchown(fd, 0, static_cast<gid_t>(-1)), "0");
  t.FStat("f", fd);
  t.Rc("close", close(fd), "0");
  t.Rc("symlink f s", symlink("f", t.P("s").c_str()), "0");
  t.Rc("lchown s 65534:65534", lchown(t.P("s").c_str(), kNobody, kNogroup), "0");
  t.Stat("s");
  t.Stat("f");
  t.Rc("chown via symlink 1234:1234", chown(t.P("s").c_str(), 1234, 1234), "0");
  t.Stat("f");
  t.Rc("chown missing", chown(t.P("missing").c_str(), 0, 0), "ENOENT");
  t.Rc("chmod f 06755", chmod(t.P("f").c_str(), 06755), "0");
  t.Rc("chown f 0:0 (clears suid/sgid)", chown(t.P("f").c_str(), 0, 0), "0");
  t.Stat("f");
  t.Rc("chmod f 04755", chmod(t.P("f").c_str(), 04755), "0");
  t.Rc("chown f -1:-1", chown(t.P("f").c_str(), static_cast<uid_t>(-1), static_cast<gid_t>(-1)),
       "0");
  t.Stat("f");
  t.Rc("mkdir d", mkdir(t.P("d").c_str(), 02755), "0");
  t.Rc("chmod d 02755", chmod(t.P("d").c_str(), 02755), "0");
  t.Rc("chown d 65534:65534 (dir keeps sgid)", chown(t.P("d").c_str(), kNobody, kNogroup), "0");
  t.Stat("d");
}

void ScriptUtimens(Transcript& t) {
  t.WriteFile("f", "times");
  const timespec explicit_times[2] = {{1000000000, 123456789}, {1500000000, 987654321}};
  t.Rc("utimensat explicit", utimensat(AT_FDCWD, t.P("f").c_str(), explicit_times, 0), "0");
  t.Stat("f", kTimes);
  const timespec omit_atime[2] = {{0, UTIME_OMIT}, {1600000000, 5}};
  t.Rc("utimensat UTIME_OMIT atime", utimensat(AT_FDCWD, t.P("f").c_str(), omit_atime, 0), "0");
  t.Stat("f", kTimes);
  const timespec mtime_now[2] = {{0, UTIME_OMIT}, {0, UTIME_NOW}};
  timespec before, after;
  clock_gettime(CLOCK_REALTIME_COARSE, &before);
  t.Rc("utimensat UTIME_NOW mtime", utimensat(AT_FDCWD, t.P("f").c_str(), mtime_now, 0), "0");
  clock_gettime(CLOCK_REALTIME, &after);
  struct stat st;
  if (lstat(t.P("f").c_str(), &st) == 0) {
    t.Note("atime kept",
           std::to_string(st.st_atim.tv_sec) + "." + std::to_string(st.st_atim.tv_nsec),
           "1000000000.123456789");
    const bool now =
        st.st_mtim.tv_sec >= before.tv_sec - 1 && st.st_mtim.tv_sec <= after.tv_sec + 1;
    t.Note("mtime is now", now ? "yes" : "no", "yes");
  } else {
    t.Note("lstat f", ErrName(errno), "ok");
  }
  const int fd = t.Fd("open f", open(t.P("f").c_str(), O_RDWR), "fd");
  const timespec other[2] = {{2000000000, 1}, {1700000000, 999999999}};
  t.Rc("futimens explicit", futimens(fd, other), "0");
  t.FStat("f", fd, kTimes);
  t.Rc("write after explicit times", pwrite(fd, "X", 1, 0), "1");
  if (fstat(fd, &st) == 0) {
    t.Note("write changed mtime", st.st_mtim.tv_sec != 1700000000 ? "yes" : "no", "yes");
  }
  t.Rc("close", close(fd), "0");
  t.Rc("mkdir d", mkdir(t.P("d").c_str(), 0755), "0");
  t.Rc("utimensat dir", utimensat(AT_FDCWD, t.P("d").c_str(), explicit_times, 0), "0");
  t.Stat("d", kTimes);
  t.WriteFile("target", "t");
  t.Rc("utimensat target", utimensat(AT_FDCWD, t.P("target").c_str(), explicit_times, 0), "0");
  t.Rc("symlink target s", symlink("target", t.P("s").c_str()), "0");
  t.Rc("utimensat symlink NOFOLLOW",
       utimensat(AT_FDCWD, t.P("s").c_str(), other, AT_SYMLINK_NOFOLLOW), "0");
  t.Stat("s", kTimes);
  t.Stat("target", kTimes);
  t.Rc("utimensat via symlink", utimensat(AT_FDCWD, t.P("s").c_str(), omit_atime, 0), "0");
  t.Stat("target", kTimes);
  t.Rc("chmod target (keeps atime/mtime)", chmod(t.P("target").c_str(), 0600), "0");
  t.Stat("target", kTimes);
  t.Rc("truncate target", truncate(t.P("target").c_str(), 0), "0");
  if (lstat(t.P("target").c_str(), &st) == 0) {
    t.Note("truncate changed mtime", st.st_mtim.tv_sec != 1600000000 ? "yes" : "no", "yes");
  }
  t.Rc("utimensat missing", utimensat(AT_FDCWD, t.P("missing").c_str(), explicit_times, 0),
       "ENOENT");
  const timespec bad[2] = {{0, 1000000000}, {0, 0}};
  t.Rc("utimensat nsec out of range", utimensat(AT_FDCWD, t.P("f").c_str(), bad, 0), "EINVAL");
  const timespec epoch[2] = {{0, 0}, {0, 0}};
  t.Rc("utimensat epoch", utimensat(AT_FDCWD, t.P("target").c_str(), epoch, 0), "0");
  t.Stat("target", kTimes);
  const timespec pre_epoch[2] = {{-1000, 500}, {-86400, 0}};
  t.Rc("utimensat before epoch", utimensat(AT_FDCWD, t.P("target").c_str(), pre_epoch, 0), "0");
  t.Stat("target", kTimes);
}

std::string ListXattrs(const std::string& path) {
  char buf[4096];
  const ssize_t n = llistxattr(path.c_str(), buf, sizeof(buf));
  if (n < 0) return ErrName(errno);
  std::vector<std::string> names;
  for (ssize_t i = 0; i < n;) {
    const std::string name(buf + i);
    names.push_back(name);
    i += static_cast<ssize_t>(name.size()) + 1;
  }
  std::sort(names.begin(), names.end());
  std::string out = "[";
  for (const auto& name : names) out += (out.size() > 1 ? "," : "") + name;
  return out + "]";
}

void ScriptXattrs(Transcript& t) {
  t.WriteFile("f", "x");
  const std::string f = t.P("f");
  char buf[8192];
  t.Rc("setxattr user.a v1", setxattr(f.c_str(), "user.a", "v1", 2, 0), "0");
  t.Rc("getxattr size probe", getxattr(f.c_str(), "user.a", nullptr, 0), "2");
  ssize_t n = t.Rc("getxattr user.a", getxattr(f.c_str(), "user.a", buf, sizeof(buf)), "2");
  t.Note("user.a value", n > 0 ? std::string(buf, static_cast<size_t>(n)) : "", "v1");
  t.Rc("XATTR_CREATE existing", setxattr(f.c_str(), "user.a", "v2", 2, XATTR_CREATE), "EEXIST");
  t.Rc("XATTR_REPLACE missing", setxattr(f.c_str(), "user.missing", "v", 1, XATTR_REPLACE),
       "ENODATA");
  t.Rc("getxattr missing", getxattr(f.c_str(), "user.missing", buf, sizeof(buf)), "ENODATA");
  t.Rc("getxattr missing size probe", getxattr(f.c_str(), "user.missing", nullptr, 0), "ENODATA");
  t.Rc("XATTR_REPLACE existing", setxattr(f.c_str(), "user.a", "value2", 6, XATTR_REPLACE), "0");
  n = t.Rc("getxattr user.a", getxattr(f.c_str(), "user.a", buf, sizeof(buf)), "6");
  t.Note("user.a value", n > 0 ? std::string(buf, static_cast<size_t>(n)) : "", "value2");
  t.Rc("getxattr buffer too small", getxattr(f.c_str(), "user.a", buf, 2), "ERANGE");
  t.Rc("XATTR_CREATE new empty value", setxattr(f.c_str(), "user.b", "", 0, XATTR_CREATE), "0");
  t.Rc("getxattr empty value", getxattr(f.c_str(), "user.b", buf, sizeof(buf)), "0");
  const std::string big = Pattern(3000, 3);
  t.Rc("setxattr 3000-byte value", setxattr(f.c_str(), "user.big", big.data(), big.size(), 0), "0");
  n = t.Rc("getxattr 3000-byte value", getxattr(f.c_str(), "user.big", buf, sizeof(buf)), "3000");
  t.Note("big value intact", n == 3000 && std::string(buf, 3000) == big ? "yes" : "no", "yes");
  const std::string huge(65537, 'h');
  t.Rc("setxattr > 64 KiB", setxattr(f.c_str(), "user.huge", huge.data(), huge.size(), 0), "E2BIG");
  t.Rc("setxattr 256-char name",
       setxattr(f.c_str(), ("user." + std::string(251, 'n')).c_str(), "v", 1, 0), "ERANGE");
  t.Rc("listxattr size probe", listxattr(f.c_str(), nullptr, 0), "23");
  t.Rc("listxattr buffer too small", listxattr(f.c_str(), buf, 1), "ERANGE");
  t.Note("listxattr", ListXattrs(f), "[user.a,user.b,user.big]");
  t.Rc("removexattr user.a", removexattr(f.c_str(), "user.a"), "0");
  t.Rc("removexattr user.a again", removexattr(f.c_str(), "user.a"), "ENODATA");
  t.Note("listxattr after remove", ListXattrs(f), "[user.b,user.big]");
  t.Rc("setxattr bad namespace", setxattr(f.c_str(), "bogus.x", "v", 1, 0), "EOPNOTSUPP");
  t.Rc("setxattr trusted.t (root)", setxattr(f.c_str(), "trusted.t", "tv", 2, 0), "0");
  n = t.Rc("getxattr trusted.t", getxattr(f.c_str(), "trusted.t", buf, sizeof(buf)), "2");
  t.Rc("removexattr trusted.t", removexattr(f.c_str(), "trusted.t"), "0");
  const int fd = t.Fd("open f", open(f.c_str(), O_RDONLY), "fd");
  t.Rc("fsetxattr user.fd", fsetxattr(fd, "user.fd", "F", 1, 0), "0");
  t.Rc("fgetxattr user.fd", fgetxattr(fd, "user.fd", buf, sizeof(buf)), "1");
  t.Rc("flistxattr size", flistxattr(fd, nullptr, 0), "24");
  t.Rc("fremovexattr user.fd", fremovexattr(fd, "user.fd"), "0");
  t.Rc("close", close(fd), "0");
  t.Rc("mkdir d", mkdir(t.P("d").c_str(), 0755), "0");
  t.Rc("setxattr on dir", setxattr(t.P("d").c_str(), "user.dir", "D", 1, 0), "0");
  t.Rc("getxattr on dir", getxattr(t.P("d").c_str(), "user.dir", buf, sizeof(buf)), "1");
  t.Note("listxattr dir", ListXattrs(t.P("d")), "[user.dir]");
  t.Rc("symlink f s", symlink("f", t.P("s").c_str()), "0");
  t.Rc("getxattr via symlink", getxattr(t.P("s").c_str(), "user.b", buf, sizeof(buf)), "0");
  t.Rc("lsetxattr user.* on symlink", lsetxattr(t.P("s").c_str(), "user.l", "v", 1, 0), "EPERM");
  t.Rc("lgetxattr on symlink", lgetxattr(t.P("s").c_str(), "user.b", buf, sizeof(buf)), "ENODATA");
  t.Note("llistxattr symlink", ListXattrs(t.P("s")), "[]");
  t.Rc("getxattr on missing file", getxattr(t.P("missing").c_str(), "user.a", buf, sizeof(buf)),
       "ENOENT");
}

void ScriptReaddir(Transcript& t) {
  t.List("", ".:dir ..:dir");
  for (const char* name : {"b", "a", "c"}) t.WriteFile(name, name);
  t.Rc("mkdir sub", mkdir(t.P("sub").c_str(), 0755), "0");
  t.Rc("symlink a ln", symlink("a", t.P("ln").c_str()), "0");
  t.Rc("mkfifo fifo", mkfifo(t.P("fifo").c_str(), 0644), "0");
  for (const char* name : {"with space", "new\nline", "\xff\xfe-not-utf8", "-dash", "trailing.",
                           "back\\slash", "tab\there", "..."}) {
    t.WriteFile(name, name);
  }
  t.List("");
  t.Content("new\nline", "\"new\\x0aline\"");
  t.List("sub", ".:dir ..:dir");
  t.List("a", "ENOTDIR");
  t.List("missing", "ENOENT");

  t.Rc("mkdir big", mkdir(t.P("big").c_str(), 0755), "0");
  std::set<std::string> expected = {".", ".."};
  int failures = 0;
  for (int i = 0; i < 2000; ++i) {
    char name[32];
    snprintf(name, sizeof(name), "entry-%04d", i);
    const int fd = open(t.P(std::string("big/") + name).c_str(), O_CREAT | O_WRONLY, 0644);
    if (fd < 0 || close(fd) != 0) ++failures;
    expected.insert(name);
  }
  t.Note("create 2000 entries failures", std::to_string(failures), "0");
  DIR* dir = opendir(t.P("big").c_str());
  if (dir == nullptr) {
    t.Note("opendir big", ErrName(errno), "ok");
    return;
  }
  std::vector<std::string> seen;
  long resume_pos = -1;
  std::vector<std::string> after_resume;
  while (dirent* e = readdir(dir)) {
    seen.push_back(e->d_name);
    if (seen.size() == 1000) resume_pos = telldir(dir);
    if (seen.size() > 1000 && after_resume.size() < 10) after_resume.push_back(e->d_name);
  }
  std::set<std::string> seen_set(seen.begin(), seen.end());
  t.Note("big: entries", std::to_string(seen.size()), "2002");
  t.Note("big: duplicates", std::to_string(seen.size() - seen_set.size()), "0");
  t.Note("big: names are exactly the expected set", seen_set == expected ? "yes" : "no", "yes");
  std::string joined;
  for (const auto& n : seen_set) joined += n + "/";
  t.Note("big: sorted names", "fnv=" + Hex(Fnv1a(joined)));
  {
    t.Rc("mkdir longnames", mkdir(t.P("longnames").c_str(), 0755), "0");
    int long_failures = 0;
    for (int i = 0; i < 300; ++i) {
      const std::string name = std::to_string(i) + std::string(255 - std::to_string(i).size(), 'L');
      const int lfd = open(t.P("longnames/" + name).c_str(), O_CREAT | O_WRONLY, 0644);
      if (lfd < 0 || close(lfd) != 0) ++long_failures;
    }
    t.Note("create 300 255-byte names failures", std::to_string(long_failures), "0");
    DIR* ldir = opendir(t.P("longnames").c_str());
    std::set<std::string> lnames;
    size_t lcount = 0;
    while (ldir != nullptr && readdir(ldir) != nullptr) ++lcount;
    if (ldir != nullptr) {
      rewinddir(ldir);
      while (dirent* e = readdir(ldir)) lnames.insert(e->d_name);
      closedir(ldir);
    }
    t.Note("longnames: entries, distinct",
           std::to_string(lcount) + "," + std::to_string(lnames.size()), "302,302");
  }
  seekdir(dir, resume_pos);
  std::vector<std::string> resumed;
  while (resumed.size() < after_resume.size()) {
    dirent* e = readdir(dir);
    if (e == nullptr) break;
    resumed.push_back(e->d_name);
  }
  t.Note("big: seekdir(telldir) resumes at the same entry", resumed == after_resume ? "yes" : "no",
         "yes");
  const int fd = open(t.P("big/late-entry").c_str(), O_CREAT | O_WRONLY, 0644);
  t.Rc("create late-entry", fd >= 0 ? close(fd) : -1, "0");
  rewinddir(dir);
  size_t count = 0;
  bool late_seen = false;
  while (dirent* e = readdir(dir)) {
    ++count;
    if (std::string(e->d_name) == "late-entry") late_seen = true;
  }
  t.Note("big: entries after rewinddir", std::to_string(count), "2003");
  t.Note("big: rewinddir shows late-entry", late_seen ? "yes" : "no", "yes");
  closedir(dir);
  t.Stat("big");
  failures = 0;
  for (const auto& name : expected) {
    if (name != "." && name != ".." && unlink(t.P("big/" + name).c_str()) != 0) ++failures;
  }
  t.Rc("unlink late-entry", unlink(t.P("big/late-entry").c_str()), "0");
  t.Note("unlink 2000 entries failures", std::to_string(failures), "0");
  t.List("big", ".:dir ..:dir");

  // A directory removed while open reads as empty.
  t.Rc("mkdir gone", mkdir(t.P("gone").c_str(), 0755), "0");
  dir = opendir(t.P("gone").c_str());
  t.Note("opendir gone", dir != nullptr ? "ok" : ErrName(errno), "ok");
  t.Rc("rmdir gone while open", rmdir(t.P("gone").c_str()), "0");
  if (dir != nullptr) {
    count = 0;
    errno = 0;
    while (readdir(dir) != nullptr) ++count;
    t.Note("readdir of removed dir", std::to_string(count) + " " + (errno ? ErrName(errno) : "ok"),
           "0 ok");
    closedir(dir);
  }
}

void ScriptNonRootCreate(Transcript& t) {
  t.Rc("mkdir pub 0777", mkdir(t.P("pub").c_str(), 0777), "0");
  t.Rc("chmod pub 0777", chmod(t.P("pub").c_str(), 0777), "0");
  RunAsNobody(t, [](Transcript& u) {
    const int fd =
        u.Fd("open pub/f O_CREAT", open(u.P("pub/f").c_str(), O_CREAT | O_WRONLY, 0644), "fd");
    u.Rc("write", write(fd, "mine", 4), "4");
    u.Rc("close", close(fd), "0");
    u.Rc("mkdir pub/d", mkdir(u.P("pub/d").c_str(), 0755), "0");
    u.Rc("symlink pub/s", symlink("f", u.P("pub/s").c_str()), "0");
    u.Rc("mkfifo pub/p", mkfifo(u.P("pub/p").c_str(), 0644), "0");
    u.Rc("mknod pub/r", mknod(u.P("pub/r").c_str(), S_IFREG | 0640, 0), "0");
    u.Rc("link pub/f pub/h", link(u.P("pub/f").c_str(), u.P("pub/h").c_str()), "0");
    u.Rc("mknod char as nobody", mknod(u.P("pub/c").c_str(), S_IFCHR | 0600, makedev(1, 3)),
         "EPERM");
    u.Rc("chmod own file", chmod(u.P("pub/f").c_str(), 0600), "0");
    u.Rc("chown own file to root", chown(u.P("pub/f").c_str(), 0, 0), "EPERM");
    u.Rc("chown own file -1:65534", chown(u.P("pub/f").c_str(), static_cast<uid_t>(-1), kNogroup),
         "0");
    const timespec times[2] = {{1000000000, 0}, {1000000000, 0}};
    u.Rc("utimensat explicit on own file", utimensat(AT_FDCWD, u.P("pub/f").c_str(), times, 0),
         "0");
    u.Rc("setxattr user.* on own file", setxattr(u.P("pub/f").c_str(), "user.u", "v", 1, 0), "0");
    u.Rc("setxattr trusted.* as nobody", setxattr(u.P("pub/f").c_str(), "trusted.t", "v", 1, 0),
         "EPERM");
    u.Stat("pub/f");
    u.Stat("pub/d");
    u.Stat("pub/s");
    u.Stat("pub/p");
    u.Stat("pub/r");
    u.Rc("rename own file", rename(u.P("pub/h").c_str(), u.P("pub/h2").c_str()), "0");
    u.Rc("unlink own file", unlink(u.P("pub/h2").c_str()), "0");
    u.Rc("rmdir own dir", rmdir(u.P("pub/d").c_str()), "0");
    // Creating with a mode that forbids writing still returns a writable descriptor.
    int rofd = u.Fd("create pub/ro 0444 O_WRONLY",
                    open(u.P("pub/ro").c_str(), O_CREAT | O_WRONLY, 0444), "fd");
    u.Rc("write to new 0444 file", write(rofd, "abc", 3), "3");
    // Descriptor-based operations keep working after the mode forbids them by path.
    u.Rc("chmod pub/ro 0000 while open", chmod(u.P("pub/ro").c_str(), 0), "0");
    u.Rc("ftruncate via open fd", ftruncate(rofd, 1), "0");
    u.Rc("write via open fd", write(rofd, "d", 1), "1");
    u.Rc("fallocate via open fd", fallocate(rofd, 0, 0, 8192), "0");
    u.Rc("fsync via open fd", fsync(rofd), "0");
    u.FStat("pub/ro", rofd);
    u.Rc("close", close(rofd), "0");
    u.Fd("open pub/ro O_RDONLY (mode 0000)", open(u.P("pub/ro").c_str(), O_RDONLY), "EACCES");
    u.Rc("truncate pub/ro by path (mode 0000)", truncate(u.P("pub/ro").c_str(), 0), "EACCES");
    u.Rc("chmod pub/ro 0600", chmod(u.P("pub/ro").c_str(), 0600), "0");
    u.Content("pub/ro");
  });
  t.Stat("pub/f");
  t.Stat("pub/s");
  t.Stat("pub/p");
  t.Stat("pub/r");
  t.List("pub");
}

void ScriptPermissions(Transcript& t) {
  t.WriteFile("secret", "s", 0600);
  t.WriteFile("public", "p", 0644);
  t.WriteFile("ww", "w", 0666);
  t.Rc("chmod ww 0666", chmod(t.P("ww").c_str(), 0666), "0");
  t.Rc("mkdir rootdir 0755", mkdir(t.P("rootdir").c_str(), 0755), "0");
  t.WriteFile("rootdir/file", "r");
  t.Rc("mkdir private 0700", mkdir(t.P("private").c_str(), 0700), "0");
  t.WriteFile("private/x", "x");
  t.Rc("mkdir sticky", mkdir(t.P("sticky").c_str(), 0755), "0");
  t.Rc("chmod sticky 01777", chmod(t.P("sticky").c_str(), 01777), "0");
  t.WriteFile("sticky/rootfile", "rf");
  t.Rc("chmod sticky/rootfile 0666", chmod(t.P("sticky/rootfile").c_str(), 0666), "0");
  t.WriteFile("suid", "0123456789");
  t.Rc("chmod suid 06777", chmod(t.P("suid").c_str(), 06777), "0");
  t.WriteFile("noexec", "#!/bin/sh\n", 0644);
  RunAsNobody(t, [](Transcript& u) {
    u.Fd("open secret O_RDONLY", open(u.P("secret").c_str(), O_RDONLY), "EACCES");
    int fd = u.Fd("open public O_RDONLY", open(u.P("public").c_str(), O_RDONLY), "fd");
    u.PRead("read public", fd, 10, 0, "1 \"p\"");
    u.Rc("close", close(fd), "0");
    u.Fd("open public O_WRONLY", open(u.P("public").c_str(), O_WRONLY), "EACCES");
    u.Fd("open rootdir/new O_CREAT", open(u.P("rootdir/new").c_str(), O_CREAT | O_WRONLY, 0644),
         "EACCES");
    u.Rc("mkdir rootdir/nd", mkdir(u.P("rootdir/nd").c_str(), 0755), "EACCES");
    u.Rc("symlink in rootdir", symlink("x", u.P("rootdir/sl").c_str()), "EACCES");
    u.Rc("mkfifo in rootdir", mkfifo(u.P("rootdir/p").c_str(), 0644), "EACCES");
    u.Rc("unlink rootdir/file", unlink(u.P("rootdir/file").c_str()), "EACCES");
    u.Rc("rename rootdir/file", rename(u.P("rootdir/file").c_str(), u.P("rootdir/f2").c_str()),
         "EACCES");
    u.Stat("private/x", kPlain, "EACCES");
    u.List("private", "EACCES");
    u.Rc("unlink sticky/rootfile", unlink(u.P("sticky/rootfile").c_str()), "EPERM");
    u.Rc("rename sticky/rootfile", rename(u.P("sticky/rootfile").c_str(), u.P("sticky/x").c_str()),
         "EPERM");
    fd =
        u.Fd("open sticky/rootfile O_WRONLY", open(u.P("sticky/rootfile").c_str(), O_WRONLY), "fd");
    u.Rc("write sticky/rootfile", write(fd, "RF", 2), "2");
    u.Rc("close", close(fd), "0");
    u.Rc("chmod public", chmod(u.P("public").c_str(), 0666), "EPERM");
    u.Rc("chown public", chown(u.P("public").c_str(), kNobody, kNogroup), "EPERM");
    const timespec times[2] = {{1000000000, 0}, {1000000000, 0}};
    u.Rc("utimensat explicit on root's file", utimensat(AT_FDCWD, u.P("ww").c_str(), times, 0),
         "EPERM");
    u.Rc("utimensat now on writable root file", utimensat(AT_FDCWD, u.P("ww").c_str(), nullptr, 0),
         "0");
    u.Rc("utimensat now on read-only root file",
         utimensat(AT_FDCWD, u.P("public").c_str(), nullptr, 0), "EACCES");
    u.Rc("truncate public", truncate(u.P("public").c_str(), 0), "EACCES");
    u.Rc("truncate ww", truncate(u.P("ww").c_str(), 0), "0");
    u.Rc("setxattr user.* on public", setxattr(u.P("public").c_str(), "user.x", "v", 1, 0),
         "EACCES");
    u.Rc("access secret R_OK", access(u.P("secret").c_str(), R_OK), "EACCES");
    u.Rc("access public R_OK", access(u.P("public").c_str(), R_OK), "0");
    u.Rc("access public W_OK", access(u.P("public").c_str(), W_OK), "EACCES");
    u.Rc("access noexec X_OK", access(u.P("noexec").c_str(), X_OK), "EACCES");
    u.Rc("access rootdir X_OK", access(u.P("rootdir").c_str(), X_OK), "0");
    u.Rc("access rootdir W_OK", access(u.P("rootdir").c_str(), W_OK), "EACCES");
    u.Rc("link secret (protected_hardlinks)", link(u.P("secret").c_str(), u.P("sticky/ln").c_str()),
         "EPERM");
    fd = u.Fd("open suid O_WRONLY", open(u.P("suid").c_str(), O_WRONLY), "fd");
    u.Rc("write suid (clears suid/sgid)", write(fd, "ab", 2), "2");
    u.Rc("close", close(fd), "0");
    u.Stat("suid");
  });
  t.Stat("suid");
  t.Content("suid", "\"ab23456789\"");
  t.Content("sticky/rootfile", "\"RF\"");
  t.Stat("ww");
  t.Content("ww", "\"\"");
  t.WriteFile("suid2", "x");
  t.Rc("chmod suid2 04777", chmod(t.P("suid2").c_str(), 04777), "0");
  RunAsNobody(t, [](Transcript& u) {
    u.Rc("truncate suid2 (clears suid)", truncate(u.P("suid2").c_str(), 0), "0");
  });
  t.Stat("suid2");
  // root (CAP_FSETID) writing does not clear the bits
  t.Rc("chmod suid 06777", chmod(t.P("suid").c_str(), 06777), "0");
  const int fd = t.Fd("open suid as root", open(t.P("suid").c_str(), O_WRONLY), "fd");
  t.Rc("write suid as root", write(fd, "r", 1), "1");
  t.Rc("close", close(fd), "0");
  t.Stat("suid");
}

void ScriptSetgidDir(Transcript& t) {
  t.Rc("mkdir sg", mkdir(t.P("sg").c_str(), 0755), "0");
  t.Rc("chown sg 0:65534", chown(t.P("sg").c_str(), 0, kNogroup), "0");
  t.Rc("chmod sg 02775", chmod(t.P("sg").c_str(), 02775), "0");
  t.Stat("sg");
  int fd = t.Fd("create sg/f 0644", open(t.P("sg/f").c_str(), O_CREAT | O_WRONLY, 0644), "fd");
  t.Rc("close", close(fd), "0");
  t.Stat("sg/f");
  t.Rc("mkdir sg/sub", mkdir(t.P("sg/sub").c_str(), 0755), "0");
  t.Stat("sg/sub");
  t.Rc("mkfifo sg/p", mkfifo(t.P("sg/p").c_str(), 0644), "0");
  t.Stat("sg/p");
  t.Rc("symlink sg/l", symlink("f", t.P("sg/l").c_str()), "0");
  t.Stat("sg/l");
  t.Rc("mknod sg/r", mknod(t.P("sg/r").c_str(), S_IFREG | 0600, 0), "0");
  t.Stat("sg/r");
  t.WriteFile("outside", "o");
  t.Rc("rename into sg keeps gid", rename(t.P("outside").c_str(), t.P("sg/moved").c_str()), "0");
  t.Stat("sg/moved");
  RunAsNobody(t, [](Transcript& u) {
    const int ufd =
        u.Fd("nobody creates sg/n", open(u.P("sg/n").c_str(), O_CREAT | O_WRONLY, 0644), "fd");
    u.Rc("close", close(ufd), "0");
    u.Rc("nobody mkdir sg/nd", mkdir(u.P("sg/nd").c_str(), 0755), "0");
  });
  t.Stat("sg/n");
  t.Stat("sg/nd");
  t.Rc("mkdir sg2", mkdir(t.P("sg2").c_str(), 0755), "0");
  t.Rc("chmod sg2 02777", chmod(t.P("sg2").c_str(), 02777), "0");
  t.Stat("sg2");
  RunAsNobody(t, [](Transcript& u) {
    const int ufd = u.Fd("nobody creates sg2/x 02755 (not in group 0)",
                         open(u.P("sg2/x").c_str(), O_CREAT | O_WRONLY, 02755), "fd");
    u.Rc("close", close(ufd), "0");
    u.Rc("nobody mkdir sg2/y", mkdir(u.P("sg2/y").c_str(), 0755), "0");
    u.Rc("nobody chmod own file 02755 (not in its group)", chmod(u.P("sg2/x").c_str(), 02755), "0");
    u.Stat("sg2/x");
  });
  t.Stat("sg2/x");
  t.Stat("sg2/y");
}

// A system.posix_acl_* xattr value (linux/posix_acl_xattr.h layout).
std::string AclXattr(const std::vector<std::tuple<uint16_t, uint16_t, uint32_t>>& entries) {
  std::string v;
  auto put = [&v](uint64_t x, int bytes) {
    for (int i = 0; i < bytes; ++i) v.push_back(static_cast<char>((x >> (8 * i)) & 0xff));
  };
  put(2, 4);  // POSIX_ACL_XATTR_VERSION
  for (const auto& [tag, perm, id] : entries) {
    put(tag, 2);
    put(perm, 2);
    put(id, 4);
  }
  return v;
}

constexpr uint16_t kAclUserObj = 0x01, kAclUser = 0x02, kAclGroupObj = 0x04, kAclMask = 0x10,
                   kAclOther = 0x20;
constexpr uint32_t kAclUndefinedId = 0xffffffff;

// POSIX ACLs stored on the backing filesystem must grant and deny exactly as natively.
void ScriptPosixAcl(Transcript& t) {
  t.WriteFile("secret", "s", 0600);
  const std::string read_for_nobody = AclXattr({{kAclUserObj, 6, kAclUndefinedId},
                                                {kAclUser, 4, kNobody},
                                                {kAclGroupObj, 0, kAclUndefinedId},
                                                {kAclMask, 4, kAclUndefinedId},
                                                {kAclOther, 0, kAclUndefinedId}});
  t.Rc("set access ACL user:65534:r-- on 0600 secret",
       setxattr(t.P("secret").c_str(), "system.posix_acl_access", read_for_nobody.data(),
                read_for_nobody.size(), 0),
       "0");
  t.Stat("secret");
  t.Rc("getxattr ACL size", getxattr(t.P("secret").c_str(), "system.posix_acl_access", nullptr, 0),
       "44");
  t.Rc("mkdir shared 0755", mkdir(t.P("shared").c_str(), 0755), "0");
  const std::string dir_acl = AclXattr({{kAclUserObj, 7, kAclUndefinedId},
                                        {kAclUser, 7, kNobody},
                                        {kAclGroupObj, 5, kAclUndefinedId},
                                        {kAclMask, 7, kAclUndefinedId},
                                        {kAclOther, 5, kAclUndefinedId}});
  t.Rc(
      "set access ACL user:65534:rwx on shared",
      setxattr(t.P("shared").c_str(), "system.posix_acl_access", dir_acl.data(), dir_acl.size(), 0),
      "0");
  t.Rc("set default ACL on shared",
       setxattr(t.P("shared").c_str(), "system.posix_acl_default", dir_acl.data(), dir_acl.size(),
                0),
       "0");
  t.Stat("shared");
  const int fd = t.Fd("root creates shared/f 0666 (default ACL, no umask)",
                      open(t.P("shared/f").c_str(), O_CREAT | O_WRONLY, 0666), "fd");
  t.Rc("close", close(fd), "0");
  t.Stat("shared/f");
  t.Rc("mkdir shared/sub 0777", mkdir(t.P("shared/sub").c_str(), 0777), "0");
  t.Stat("shared/sub");
  RunAsNobody(t, [](Transcript& u) {
    u.Rc("access secret R_OK (granted by ACL)", access(u.P("secret").c_str(), R_OK), "0");
    const int rfd =
        u.Fd("open secret O_RDONLY (granted by ACL)", open(u.P("secret").c_str(), O_RDONLY), "fd");
    u.PRead("read secret", rfd, 4, 0, "1 \"s\"");
    if (rfd >= 0) close(rfd);
    u.Fd("open secret O_WRONLY (not granted)", open(u.P("secret").c_str(), O_WRONLY), "EACCES");
    const int cfd = u.Fd("create shared/mine (dir ACL grants w)",
                         open(u.P("shared/mine").c_str(), O_CREAT | O_WRONLY, 0644), "fd");
    if (cfd >= 0) close(cfd);
    u.Stat("shared/mine");
  });
}

void ScriptSpecialFiles(Transcript& t) {
  t.Rc("mkfifo fifo", mkfifo(t.P("fifo").c_str(), 0644), "0");
  t.Rc("mknod sock", mknod(t.P("sock").c_str(), S_IFSOCK | 0644, 0), "0");
  t.Rc("mknod chr 1,3", mknod(t.P("chr").c_str(), S_IFCHR | 0644, makedev(1, 3)), "0");
  const timespec times[2] = {{1100000000, 11}, {1200000000, 22}};
  char buf[64];
  // None of these may open the node (opening a FIFO would block).
  for (const std::string name : {"fifo", "sock", "chr"}) {
    const std::string p = t.P(name);
    t.Rc("chmod " + name, chmod(p.c_str(), 0600), "0");
    t.Rc("chown " + name, chown(p.c_str(), kNobody, kNogroup), "0");
    t.Rc("utimensat " + name, utimensat(AT_FDCWD, p.c_str(), times, 0), "0");
    t.Stat(name, kTimes);
    t.Rc("truncate " + name, truncate(p.c_str(), 0), "EINVAL");
    t.Rc("setxattr user.x " + name, setxattr(p.c_str(), "user.x", "v", 1, 0), "EPERM");
    t.Rc("getxattr user.x " + name, getxattr(p.c_str(), "user.x", buf, sizeof(buf)), "ENODATA");
    t.Rc("setxattr trusted.x " + name, setxattr(p.c_str(), "trusted.x", "v", 1, 0), "0");
    t.Rc("getxattr trusted.x " + name, getxattr(p.c_str(), "trusted.x", buf, sizeof(buf)), "1");
    t.Rc("removexattr trusted.x " + name, removexattr(p.c_str(), "trusted.x"), "0");
    t.Rc("link " + name, link(p.c_str(), (p + "-link").c_str()), "0");
    t.Stat(name);
    t.Rc("rename link of " + name, rename((p + "-link").c_str(), (p + "-moved").c_str()), "0");
    t.Stat(name + "-moved");
    t.Rc("unlink moved link of " + name, unlink((p + "-moved").c_str()), "0");
    t.Stat(name);
  }
  t.List("");
}

void ScriptDirFds(Transcript& t) {
  t.Rc("mkdir a", mkdir(t.P("a").c_str(), 0755), "0");
  t.Rc("mkdir a/b", mkdir(t.P("a/b").c_str(), 0755), "0");
  const int dfd = t.Fd("open a/b", open(t.P("a/b").c_str(), O_RDONLY | O_DIRECTORY), "fd");
  t.Rc("rename a z", rename(t.P("a").c_str(), t.P("z").c_str()), "0");
  int fd = t.Fd("openat(b, f, O_CREAT) after parent rename",
                openat(dfd, "f", O_CREAT | O_WRONLY, 0644), "fd");
  t.Rc("write", write(fd, "relative", 8), "8");
  t.Rc("close", close(fd), "0");
  t.Content("z/b/f", "\"relative\"");
  t.Rc("mkdir x", mkdir(t.P("x").c_str(), 0755), "0");
  t.Rc("rename z/b x/b2", rename(t.P("z/b").c_str(), t.P("x/b2").c_str()), "0");
  struct stat st;
  t.Note("fstatat(b, f) after move", fstatat(dfd, "f", &st, AT_SYMLINK_NOFOLLOW) == 0
                                         ? DescribeStat(st, kPlain)
                                         : ErrName(errno));
  t.Rc("mkdirat(b, sub)", mkdirat(dfd, "sub", 0755), "0");
  t.Rc("symlinkat(b, sl)", symlinkat("f", dfd, "sl"), "0");
  t.Rc("renameat(b, f, b, g)", renameat(dfd, "f", dfd, "g"), "0");
  t.Rc("linkat(b, g, b, h)", linkat(dfd, "g", dfd, "h", 0), "0");
  t.List("x/b2");
  fd = t.Fd("openat(b, ..)", openat(dfd, "..", O_RDONLY | O_DIRECTORY), "fd");
  t.Note("parent of b is x", fstatat(fd, "b2", &st, AT_SYMLINK_NOFOLLOW) == 0 ? "yes" : "no",
         "yes");
  t.Rc("close", close(fd), "0");
  for (const char* name : {"g", "h", "sl"}) t.Rc("unlinkat", unlinkat(dfd, name, 0), "0");
  t.Rc("unlinkat sub", unlinkat(dfd, "sub", AT_REMOVEDIR), "0");
  t.Rc("rmdir x/b2 while open", rmdir(t.P("x/b2").c_str()), "0");
  t.Fd("openat(removed dir, new, O_CREAT)", openat(dfd, "new", O_CREAT | O_WRONLY, 0644), "ENOENT");
  t.Rc("mkdirat(removed dir, nd)", mkdirat(dfd, "nd", 0755), "ENOENT");
  t.FStat("removed dir", dfd);
  t.Rc("close", close(dfd), "0");

  // A chain of directories whose absolute path is longer than PATH_MAX.
  int cur = open(t.P("").c_str(), O_RDONLY | O_DIRECTORY);
  int failures = 0;
  std::string full = t.P("");
  for (int i = 0; i < 25; ++i) {
    const std::string name = std::to_string(i) + std::string(200, 'p');
    full += "/" + name;
    if (mkdirat(cur, name.c_str(), 0755) != 0) ++failures;
    const int next = openat(cur, name.c_str(), O_RDONLY | O_DIRECTORY);
    close(cur);
    cur = next;
    if (cur < 0) {
      ++failures;
      break;
    }
  }
  t.Note("mkdirat chain of 25 x 203 bytes", failures == 0 ? "ok" : "failed", "ok");
  if (cur >= 0) {
    fd = t.Fd("openat deep file", openat(cur, "deep", O_CREAT | O_RDWR, 0644), "fd");
    t.Rc("write deep", write(fd, "bottom", 6), "6");
    t.Note("read deep", ReadFd(fd, 16, 0), "bottom");
    t.Rc("close", close(fd), "0");
    t.Note("fstatat deep", fstatat(cur, "deep", &st, AT_SYMLINK_NOFOLLOW) == 0
                               ? DescribeStat(st, kPlain)
                               : ErrName(errno));
    t.Rc("renameat deep", renameat(cur, "deep", cur, "deeper"), "0");
    t.Rc("unlinkat deeper", unlinkat(cur, "deeper", 0), "0");
    close(cur);
  }
  t.Fd("open by absolute path > PATH_MAX", open((full + "/x").c_str(), O_RDONLY), "ENAMETOOLONG");
}

struct NamedScript {
  const char* name;
  void (*fn)(Transcript&);
};

void PrintTo(const NamedScript& script, std::ostream* os) {
  *os << script.name;
}

const NamedScript kScripts[] = {
    {"CreateOpen", ScriptCreateOpen},
    {"ReadWrite", ScriptReadWrite},
    {"Truncate", ScriptTruncate},
    {"Sparse", ScriptSparse},
    {"Fallocate", ScriptFallocate},
    {"CopyFileRange", ScriptCopyFileRange},
    {"Fsync", ScriptFsync},
    {"MkdirRmdir", ScriptMkdirRmdir},
    {"Unlink", ScriptUnlink},
    {"HardLinks", ScriptHardLinks},
    {"Symlinks", ScriptSymlinks},
    {"Rename", ScriptRename},
    {"Mknod", ScriptMknod},
    {"Chmod", ScriptChmod},
    {"Chown", ScriptChown},
    {"Utimens", ScriptUtimens},
    {"Xattrs", ScriptXattrs},
    {"Readdir", ScriptReaddir},
    {"NonRootCreate", ScriptNonRootCreate},
    {"Permissions", ScriptPermissions},
    {"SetgidDir", ScriptSetgidDir},
    {"SpecialFiles", ScriptSpecialFiles},
    {"DirFds", ScriptDirFds},
    {"PosixAcl", ScriptPosixAcl},
};

// ---------------------------------------------------------------------------------------------
// Comparison

::testing::AssertionResult SameTranscripts(const Transcript& native, const Transcript& mounted) {
  std::ostringstream msg;
  size_t differences = 0;
  const auto& a = native.lines();
  const auto& b = mounted.lines();
  const size_t n = std::max(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    const std::string& la = i < a.size() ? a[i] : "<missing>";
    const std::string& lb = i < b.size() ? b[i] : "<missing>";
    if (la != lb) {
      ++differences;
      msg << "\n  #" << i << "\n    native: " << la << "\n    mount:  " << lb;
    }
  }
  if (differences == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << differences << " of " << n
         << " transcript lines differ (native vs leasefs mount):" << msg.str();
}

std::string Join(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += "\n  " + l;
  return out;
}

class PosixCompareTest : public ::testing::TestWithParam<NamedScript> {
 protected:
  void SetUp() override {
    umask(022);
    if (geteuid() != 0) GTEST_SKIP() << "the comparison scripts need root (chown, uid 65534)";
  }
};

TEST_P(PosixCompareTest, SameAsNative) {
  const NamedScript& script = GetParam();
  TempDir native_dir;
  Transcript native(native_dir.path());
  script.fn(native);
  if (getenv("LEASEFS_DUMP_TRANSCRIPTS") != nullptr) {
    std::cout << "native transcript of " << script.name << ":" << Join(native.lines()) << "\n";
  }
  EXPECT_TRUE(native.surprises().empty())
      << "native run of " << script.name
      << " disagrees with the expected POSIX results (a script bug):" << Join(native.surprises());

  TempDir source;
  TempDir mountpoint;
  auto mount = LeasefsMount::Start(source.path(), mountpoint.path(), {"--acl"});
  ASSERT_NE(mount, nullptr);
  Transcript mounted(mountpoint.path());
  script.fn(mounted);
  EXPECT_TRUE(SameTranscripts(native, mounted)) << "script " << script.name;
  EXPECT_TRUE(mounted.surprises().empty())
      << "leasefs run of " << script.name
      << " disagrees with the expected POSIX results:" << Join(mounted.surprises());
  EXPECT_TRUE(mount->Stop());
}

INSTANTIATE_TEST_SUITE_P(Scripts, PosixCompareTest, ::testing::ValuesIn(kScripts),
                         [](const ::testing::TestParamInfo<NamedScript>& param_info) {
                           return std::string(param_info.param.name);
                         });

// ---------------------------------------------------------------------------------------------
// Mount-only checks

class MountOnlyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    umask(022);
    if (geteuid() != 0) GTEST_SKIP() << "needs root";
    mount_ = LeasefsMount::Start(source_.path(), mountpoint_.path(), {"--acl"});
    ASSERT_NE(mount_, nullptr);
  }
  void TearDown() override {
    if (mount_) {
      EXPECT_TRUE(mount_->Stop());
    }
  }
  std::string M(const std::string& rel) const { return mountpoint_.path() + "/" + rel; }
  std::string S(const std::string& rel) const { return source_.path() + "/" + rel; }

  TempDir source_;
  TempDir mountpoint_;
  std::unique_ptr<LeasefsMount> mount_;
};

ino_t Ino(const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) {
    ADD_FAILURE() << "lstat " << path << ": " << ErrName(errno);
    return 0;
  }
  return st.st_ino;
}

TEST_F(MountOnlyTest, StatvfsMatchesSource) {
  struct statvfs on_mount, on_source;
  ASSERT_EQ(statvfs(mountpoint_.path().c_str(), &on_mount), 0) << ErrName(errno);
  ASSERT_EQ(statvfs(source_.path().c_str(), &on_source), 0) << ErrName(errno);
  EXPECT_EQ(on_mount.f_bsize, on_source.f_bsize);
  EXPECT_EQ(on_mount.f_frsize, on_source.f_frsize);
  EXPECT_EQ(on_mount.f_blocks, on_source.f_blocks);
  EXPECT_EQ(on_mount.f_namemax, on_source.f_namemax);
}

TEST_F(MountOnlyTest, InodeNumbersMatchSourceAndAreStable) {
  ASSERT_EQ(mkdir(M("d").c_str(), 0755), 0) << ErrName(errno);
  const int fd = open(M("d/f").c_str(), O_CREAT | O_RDWR, 0644);
  ASSERT_GE(fd, 0) << ErrName(errno);
  ASSERT_EQ(symlink("f", M("d/s").c_str()), 0) << ErrName(errno);
  ASSERT_EQ(mkfifo(M("d/p").c_str(), 0644), 0) << ErrName(errno);
  ASSERT_EQ(link(M("d/f").c_str(), M("d/h").c_str()), 0) << ErrName(errno);
  {  // created behind the mount's back, in SOURCE
    const int sfd = open(S("behind").c_str(), O_CREAT | O_WRONLY, 0644);
    ASSERT_GE(sfd, 0) << ErrName(errno);
    close(sfd);
  }
  const std::vector<std::string> names = {"d", "d/f", "d/s", "d/p", "d/h", "behind"};
  std::map<std::string, ino_t> ino;
  for (const auto& name : names) {
    ino[name] = Ino(S(name));
    EXPECT_EQ(Ino(M(name)), ino[name]) << "st_ino of " << name << " on the mount vs in SOURCE";
  }
  EXPECT_EQ(Ino(mountpoint_.path()), Ino(source_.path()))
      << "st_ino of the mount root vs the SOURCE directory";
  EXPECT_EQ(ino["d/f"], ino["d/h"]) << "hard links share st_ino";
  for (int i = 0; i < 5; ++i) EXPECT_EQ(Ino(M("d/f")), ino["d/f"]) << "repeated stat " << i;
  struct stat st;
  ASSERT_EQ(fstat(fd, &st), 0);
  EXPECT_EQ(st.st_ino, ino["d/f"]) << "fstat of the creating fd";
  close(fd);
  const int fd2 = open(M("d/h").c_str(), O_RDONLY);
  ASSERT_GE(fd2, 0) << ErrName(errno);
  ASSERT_EQ(fstat(fd2, &st), 0);
  EXPECT_EQ(st.st_ino, ino["d/f"]) << "fstat via the other hard link";
  close(fd2);

  // readdir's d_ino agrees with st_ino.
  DIR* dir = opendir(M("d").c_str());
  ASSERT_NE(dir, nullptr) << ErrName(errno);
  while (dirent* e = readdir(dir)) {
    const std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    EXPECT_EQ(e->d_ino, ino["d/" + name]) << "d_ino of d/" << name;
  }
  closedir(dir);

  // Renames keep the inode number, on the mount and in SOURCE.
  ASSERT_EQ(rename(M("d/f").c_str(), M("f-renamed").c_str()), 0) << ErrName(errno);
  EXPECT_EQ(Ino(M("f-renamed")), ino["d/f"]);
  EXPECT_EQ(Ino(S("f-renamed")), ino["d/f"]);
  ASSERT_EQ(rename(M("d").c_str(), M("d-renamed").c_str()), 0) << ErrName(errno);
  EXPECT_EQ(Ino(M("d-renamed")), ino["d"]);
  EXPECT_EQ(Ino(M("d-renamed/h")), ino["d/h"]);

  // After the kernel evicts its inodes (FORGET to the daemon), the numbers must not change.
  sync();
  if (FILE* drop = fopen("/proc/sys/vm/drop_caches", "w")) {
    fputs("2\n", drop);
    fclose(drop);
  }
  EXPECT_EQ(Ino(M("f-renamed")), ino["d/f"]) << "after dropping dentries and inodes";
  EXPECT_EQ(Ino(M("d-renamed/s")), ino["d/s"]) << "after dropping dentries and inodes";
  EXPECT_EQ(Ino(M("behind")), ino["behind"]) << "after dropping dentries and inodes";

  // And across a remount.
  const ::testing::AssertionResult stopped = mount_->Stop();
  mount_.reset();
  ASSERT_TRUE(stopped);
  mount_ = LeasefsMount::Start(source_.path(), mountpoint_.path(), {"--acl"});
  ASSERT_NE(mount_, nullptr);
  EXPECT_EQ(Ino(M("f-renamed")), ino["d/f"]) << "after remount";
  EXPECT_EQ(Ino(M("d-renamed")), ino["d"]) << "after remount";
  EXPECT_EQ(Ino(M("d-renamed/p")), ino["d/p"]) << "after remount";
}

// Appends every path below base/rel (relative to base, symlinks not followed) to `out`.
void ListTree(const std::string& base, const std::string& rel, std::vector<std::string>* out) {
  DIR* dir = opendir((base + "/" + rel).c_str());
  if (dir == nullptr) return;
  std::vector<std::string> subdirs;
  while (dirent* e = readdir(dir)) {
    const std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    const std::string child = rel.empty() ? name : rel + "/" + name;
    out->push_back(child);
    struct stat st;
    if (lstat((base + "/" + child).c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
      subdirs.push_back(child);
    }
  }
  closedir(dir);
  for (const auto& d : subdirs) ListTree(base, d, out);
}

// After a mix of operations through the mount, lstat of every path through the mount equals lstat
// of the same path in SOURCE in every field a passthrough reports (not st_dev, st_blksize or
// st_atime, which the kernel may legitimately cache across reads).
TEST_F(MountOnlyTest, StatMatchesSourceForEveryPath) {
  const std::vector<std::pair<std::string, void (*)(Transcript&)>> scripts = {
      {"rename", ScriptRename},    {"links", ScriptHardLinks},      {"symlinks", ScriptSymlinks},
      {"chown", ScriptChown},      {"special", ScriptSpecialFiles}, {"sparse", ScriptSparse},
      {"falloc", ScriptFallocate}, {"utimens", ScriptUtimens},      {"setgid", ScriptSetgidDir}};
  for (const auto& [dir, fn] : scripts) {
    ASSERT_EQ(mkdir(M(dir).c_str(), 0755), 0) << ErrName(errno);
    Transcript t(M(dir));
    fn(t);
  }
  std::vector<std::string> paths = {""};
  ListTree(source_.path(), "", &paths);
  EXPECT_GT(paths.size(), 50u);
  for (const auto& rel : paths) {
    struct stat m, s;
    ASSERT_EQ(lstat(M(rel).c_str(), &m), 0) << rel << ": " << ErrName(errno);
    ASSERT_EQ(lstat(S(rel).c_str(), &s), 0) << rel << ": " << ErrName(errno);
    EXPECT_EQ(m.st_ino, s.st_ino) << rel;
    EXPECT_EQ(m.st_mode, s.st_mode) << rel;
    EXPECT_EQ(m.st_nlink, s.st_nlink) << rel;
    EXPECT_EQ(m.st_uid, s.st_uid) << rel;
    EXPECT_EQ(m.st_gid, s.st_gid) << rel;
    EXPECT_EQ(m.st_rdev, s.st_rdev) << rel;
    EXPECT_EQ(m.st_size, s.st_size) << rel;
    EXPECT_EQ(m.st_blocks, s.st_blocks) << rel;
    EXPECT_EQ(m.st_mtim.tv_sec, s.st_mtim.tv_sec) << rel;
    EXPECT_EQ(m.st_mtim.tv_nsec, s.st_mtim.tv_nsec) << rel;
    EXPECT_EQ(m.st_ctim.tv_sec, s.st_ctim.tv_sec) << rel;
    EXPECT_EQ(m.st_ctim.tv_nsec, s.st_ctim.tv_nsec) << rel;
  }
}

TEST_F(MountOnlyTest, NonRootCreatesAreOwnedByCallerInSource) {
  ASSERT_EQ(mkdir(M("pub").c_str(), 0777), 0) << ErrName(errno);
  ASSERT_EQ(chmod(M("pub").c_str(), 0777), 0) << ErrName(errno);
  Transcript t(mountpoint_.path());
  RunAsNobody(t, [](Transcript& u) {
    const int fd = u.Fd("create", open(u.P("pub/f").c_str(), O_CREAT | O_WRONLY, 0640), "fd");
    u.Rc("close", close(fd), "0");
    u.Rc("mkdir", mkdir(u.P("pub/d").c_str(), 0750), "0");
    u.Rc("symlink", symlink("f", u.P("pub/s").c_str()), "0");
    u.Rc("mkfifo", mkfifo(u.P("pub/p").c_str(), 0600), "0");
    u.Rc("mknod reg", mknod(u.P("pub/r").c_str(), S_IFREG | 0600, 0), "0");
  });
  EXPECT_TRUE(t.surprises().empty()) << Join(t.surprises()) << "\ntranscript:" << Join(t.lines());
  for (const char* name : {"pub/f", "pub/d", "pub/s", "pub/p", "pub/r"}) {
    struct stat st;
    ASSERT_EQ(lstat(S(name).c_str(), &st), 0) << name << ": " << ErrName(errno);
    EXPECT_EQ(st.st_uid, kNobody) << "owner of " << name << " in SOURCE";
    EXPECT_EQ(st.st_gid, kNogroup) << "group of " << name << " in SOURCE";
    ASSERT_EQ(lstat(M(name).c_str(), &st), 0) << name << ": " << ErrName(errno);
    EXPECT_EQ(st.st_uid, kNobody) << "owner of " << name << " on the mount";
    EXPECT_EQ(st.st_gid, kNogroup) << "group of " << name << " on the mount";
  }
}

}  // namespace
}  // namespace leasefs::testing
