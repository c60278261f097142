/*
 * leasefs-metabench: a metadata-heavy workload, measured with plain syscalls.
 *
 * Inside a fresh directory DIR/metabench.<pid> it spreads N small files over D subdirectories
 * (file i lives in subdirectory i % D) and times four phases, one pass over all files each:
 *
 *   create  open(O_CREAT|O_EXCL|O_WRONLY), write SIZE bytes, close
 *   stat    stat() and check the size
 *   read    open(O_RDONLY), read SIZE bytes, close
 *   unlink  unlink()
 *
 * Caches are whatever the previous phase left (warm), as an application would see them: for a
 * FUSE filesystem this measures the round trips it cannot avoid plus those its entry/attribute
 * timeouts and open flags make the kernel send. Creating and removing the subdirectories is not
 * timed. The result is one JSON object on stdout with ops/s per phase; errors go to stderr and
 * the exit status is 1.
 *
 * Usage: leasefs-metabench --dir DIR [--files N] [--dirs D] [--size BYTES]
 */
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace {

struct Options {
  std::string dir;
  unsigned long files = 20000;
  unsigned long dirs = 4;
  unsigned long size = 1024;
};

[[noreturn]] void Fail(const std::string& what, const std::string& path, int err) {
  throw std::runtime_error(what + " " + path + ": " + std::strerror(err));
}

void Usage() {
  std::fprintf(stderr,
               "usage: leasefs-metabench --dir DIR [--files N] [--dirs D] [--size BYTES]\n");
}

unsigned long ParseCount(std::string_view flag, const char* value, unsigned long min) {
  char* end = nullptr;
  errno = 0;
  unsigned long v = std::strtoul(value, &end, 10);
  if (errno != 0 || end == value || *end != '\0' || v < min) {
    throw std::runtime_error("bad value for " + std::string(flag) + ": " + value);
  }
  return v;
}

Options ParseArgs(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "-h" || a == "--help") {
      Usage();
      std::exit(0);
    }
    if (i + 1 >= argc) throw std::runtime_error("missing value for " + std::string(a));
    const char* v = argv[++i];
    if (a == "--dir") {
      o.dir = v;
    } else if (a == "--files") {
      o.files = ParseCount(a, v, 1);
    } else if (a == "--dirs") {
      o.dirs = ParseCount(a, v, 1);
    } else if (a == "--size") {
      o.size = ParseCount(a, v, 0);
    } else {
      throw std::runtime_error("unknown option " + std::string(a));
    }
  }
  if (o.dir.empty()) throw std::runtime_error("--dir is required");
  return o;
}

void WriteAll(int fd, const char* buf, size_t len, const std::string& path) {
  while (len > 0) {
    ssize_t n = ::write(fd, buf, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      Fail("write", path, errno);
    }
    buf += n;
    len -= static_cast<size_t>(n);
  }
}

size_t ReadAll(int fd, char* buf, size_t len, const std::string& path) {
  size_t total = 0;
  while (total < len) {
    ssize_t n = ::read(fd, buf + total, len - total);
    if (n < 0) {
      if (errno == EINTR) continue;
      Fail("read", path, errno);
    }
    if (n == 0) break;
    total += static_cast<size_t>(n);
  }
  return total;
}

// Runs op(i) for every file and returns the elapsed wall time in seconds.
double TimePhase(unsigned long n, const std::function<void(unsigned long)>& op) {
  auto start = std::chrono::steady_clock::now();
  for (unsigned long i = 0; i < n; ++i) op(i);
  std::chrono::duration<double> d = std::chrono::steady_clock::now() - start;
  return d.count();
}

int Run(const Options& o) {
  const std::string root = o.dir + "/metabench." + std::to_string(::getpid());
  if (::mkdir(root.c_str(), 0755) != 0) Fail("mkdir", root, errno);
  std::vector<std::string> subdirs;
  for (unsigned long d = 0; d < o.dirs; ++d) {
    subdirs.push_back(root + "/d" + std::to_string(d));
    if (::mkdir(subdirs.back().c_str(), 0755) != 0) Fail("mkdir", subdirs.back(), errno);
  }
  std::vector<std::string> paths;
  paths.reserve(o.files);
  for (unsigned long i = 0; i < o.files; ++i) {
    paths.push_back(subdirs[i % o.dirs] + "/f" + std::to_string(i));
  }
  std::vector<char> data(o.size, 'x');
  std::vector<char> buf(o.size + 1);

  double create_s = TimePhase(o.files, [&](unsigned long i) {
    const std::string& p = paths[i];
    int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) Fail("create", p, errno);
    WriteAll(fd, data.data(), data.size(), p);
    if (::close(fd) != 0) Fail("close", p, errno);
  });

  double stat_s = TimePhase(o.files, [&](unsigned long i) {
    const std::string& p = paths[i];
    struct stat st {};
    if (::stat(p.c_str(), &st) != 0) Fail("stat", p, errno);
    if (static_cast<unsigned long>(st.st_size) != o.size) Fail("stat (wrong size)", p, EIO);
  });

  double read_s = TimePhase(o.files, [&](unsigned long i) {
    const std::string& p = paths[i];
    int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) Fail("open", p, errno);
    // Ask for one byte more than the size so a short file and a long file are both caught.
    size_t n = ReadAll(fd, buf.data(), buf.size(), p);
    if (n != o.size) Fail("read (wrong length)", p, EIO);
    if (::close(fd) != 0) Fail("close", p, errno);
  });

  double unlink_s = TimePhase(o.files, [&](unsigned long i) {
    if (::unlink(paths[i].c_str()) != 0) Fail("unlink", paths[i], errno);
  });

  for (const std::string& d : subdirs) {
    if (::rmdir(d.c_str()) != 0) Fail("rmdir", d, errno);
  }
  if (::rmdir(root.c_str()) != 0) Fail("rmdir", root, errno);

  auto rate = [&](double s) { return s > 0 ? static_cast<double>(o.files) / s : 0.0; };
  std::printf(
      "{\"files\": %lu, \"dirs\": %lu, \"size\": %lu, "
      "\"create_s\": %.6f, \"stat_s\": %.6f, \"read_s\": %.6f, \"unlink_s\": %.6f, "
      "\"create_ops_s\": %.1f, \"stat_ops_s\": %.1f, \"read_ops_s\": %.1f, "
      "\"unlink_ops_s\": %.1f}\n",
      o.files, o.dirs, o.size, create_s, stat_s, read_s, unlink_s, rate(create_s), rate(stat_s),
      rate(read_s), rate(unlink_s));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return Run(ParseArgs(argc, argv));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "leasefs-metabench: %s\n", e.what());
    return 1;
  }
}
