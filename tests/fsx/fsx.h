// leasefs-fsx: a randomized data-integrity tester for one file (in the spirit of xfstests'
// ltp/fsx.c). It drives a file with random writes, reads, truncates, mmap reads and writes,
// fallocate variants, copy_file_range, fsync and reopen, and checks every byte it reads back
// against an in-memory model of what the file must contain. See fsx.cc for the details.
#pragma once
#include <cstdint>
#include <string>

namespace leasefs::fsx {

struct Options {
  std::string path;  // file to create and exercise (created/truncated at start)
  uint64_t seed = 1;
  uint64_t operations = 10000;
  uint64_t max_file_size = 1 << 20;  // bytes; file never grows past this
  uint64_t max_op_size = 64 * 1024;  // largest single read/write/map length
  bool use_mmap = true;              // MAP_SHARED reads and writes (msync before other ops)
  bool use_fallocate = true;   // fallocate: plain, KEEP_SIZE, PUNCH_HOLE|KEEP_SIZE, ZERO_RANGE
  bool use_copy_range = true;  // copy_file_range within the file
  bool reopen = true;          // occasionally close and reopen the file
  bool use_fsync = true;
  // Test hook: halfway through the run, flip one byte of the file behind the model's back (the
  // report then says "injected corruption at offset N") and verify the whole file at once, so the
  // run must fail with "mismatch at offset N". Only for proving that the checker can fail.
  bool inject_corruption_for_test = false;
};

struct Result {
  bool ok = false;
  uint64_t operations_done = 0;
  std::string report;  // on failure: the mismatch (offset, expected vs actual bytes, hexdump of a
                       // window) plus the last ~30 operations, enough to reproduce with the seed
};

// Runs the whole test; never throws for filesystem errors (they make ok false, with errno in the
// report). On success, report holds notes such as fallocate variants the filesystem does not
// support (they are disabled for the rest of the run).
Result run(const Options& options);

}  // namespace leasefs::fsx
