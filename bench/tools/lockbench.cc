// lockbench.cc — the cost of one lock operation on a file, next to the cost of one plain FUSE
// round trip on the same file, so the two can be compared on any mount.
//
//   leasefs-lockbench FILE [ITERATIONS]
//
// lock:      F_SETLK F_RDLCK then F_UNLCK on SQLite's SHARED range, as a reader's transaction
//            does; once the first lock has cached the mount's claim, every call is "cached".
// roundtrip: fgetxattr() of an attribute that does not exist. The kernel never caches xattrs, so
//            each call is exactly one FUSE request and reply.
// Prints one JSON object: nanoseconds per lock call and per round trip.
#include <fcntl.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>

namespace {

double NanosPerCall(int iterations, int calls_per_iteration, auto&& body) {
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < iterations; i++) body();
  auto elapsed = std::chrono::steady_clock::now() - start;
  return static_cast<double>(
             std::chrono::duration_cast<std::chrono::nanoseconds>(elapsed).count()) /
         (static_cast<double>(iterations) * calls_per_iteration);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: leasefs-lockbench FILE [ITERATIONS]\n");
    return 2;
  }
  const int iterations = argc > 2 ? std::atoi(argv[2]) : 20000;
  int fd = open(argv[1], O_RDWR | O_CREAT, 0644);
  if (fd < 0 || iterations <= 0) {
    std::perror(argv[1]);
    return 1;
  }
  struct flock lock = {};
  lock.l_whence = SEEK_SET;
  lock.l_start = 0x40000002;  // SQLite's SHARED range
  lock.l_len = 510;
  bool failed = false;
  auto lock_unlock = [&] {
    lock.l_type = F_RDLCK;
    if (fcntl(fd, F_SETLK, &lock) != 0) failed = true;
    lock.l_type = F_UNLCK;
    if (fcntl(fd, F_SETLK, &lock) != 0) failed = true;
  };
  lock_unlock();  // the first call may take a claim from the store: not "cached"
  char value[8];
  auto round_trip = [&] { (void)fgetxattr(fd, "user.leasefs-bench-absent", value, sizeof value); };
  // Interleave the two measurements so machine noise hits both alike.
  double lock_ns = 0, trip_ns = 0;
  for (int round = 0; round < 5; round++) {
    lock_ns += NanosPerCall(iterations / 5, 2, lock_unlock);
    trip_ns += NanosPerCall(iterations / 5, 1, round_trip);
  }
  close(fd);
  if (failed) {
    std::fprintf(stderr, "a lock call failed\n");
    return 1;
  }
  std::printf("{\"lock_ns\": %.0f, \"roundtrip_ns\": %.0f}\n", lock_ns / 5, trip_ns / 5);
  return 0;
}
