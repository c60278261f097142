// leasefs-fsx: command-line front end of the randomized file-integrity tester (see fsx.cc).
//
//   leasefs-fsx [-n OPS] [-S SEED] [-l MAXLEN] [-o MAXOPLEN] [--no-mmap] [--no-fallocate]
//               [--no-copy-range] [--no-reopen] [--no-fsync] FILE
//
// Exit status: 0 and one summary line on stdout when every check passed; 1 with the report on
// stderr when a check failed or a syscall failed unexpectedly; 2 with one message on bad arguments.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <string>

#include "fsx.h"

int main(int argc, char** argv) {
  leasefs::fsx::Options o;
  bool no_mmap = false;
  bool no_fallocate = false;
  bool no_copy_range = false;
  bool no_reopen = false;
  bool no_fsync = false;

  // CLI11 would wrap "-5" around to a huge unsigned value; refuse it instead.
  const CLI::Validator not_negative(
      [](std::string& value) {
        return value.find('-') != std::string::npos ? std::string("must not be negative")
                                                    : std::string();
      },
      "", "not_negative");

  CLI::App app{"Randomized data-integrity tester: exercises FILE and checks it against a model.",
               "leasefs-fsx"};
  app.add_option("-n,--operations", o.operations, "number of operations")
      ->default_val(o.operations)
      ->check(not_negative);
  app.add_option("-S,--seed", o.seed, "random seed")->default_val(o.seed)->check(not_negative);
  app.add_option("-l,--max-file-size", o.max_file_size, "largest file size in bytes")
      ->default_val(o.max_file_size)
      ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 40));
  app.add_option("-o,--max-op-size", o.max_op_size, "largest read/write/map length in bytes")
      ->default_val(o.max_op_size)
      ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 30));
  app.add_flag("--no-mmap", no_mmap, "no mmap reads and writes");
  app.add_flag("--no-fallocate", no_fallocate, "no fallocate");
  app.add_flag("--no-copy-range", no_copy_range, "no copy_file_range");
  app.add_flag("--no-reopen", no_reopen, "never close and reopen the file");
  app.add_flag("--no-fsync", no_fsync, "no fsync or fdatasync");
  app.add_option("FILE", o.path, "file to create (truncated if it exists) and exercise")
      ->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::fputs(app.help().c_str(), stdout);
    return 0;
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "leasefs-fsx: %s (see --help)\n", e.what());
    return 2;
  }
  o.use_mmap = !no_mmap;
  o.use_fallocate = !no_fallocate;
  o.use_copy_range = !no_copy_range;
  o.reopen = !no_reopen;
  o.use_fsync = !no_fsync;

  const leasefs::fsx::Result r = leasefs::fsx::run(o);
  if (!r.ok) {
    std::fputs(r.report.c_str(), stderr);
    return 1;
  }
  // One line: notes (unsupported fallocate variants, copy_file_range off) are joined into it.
  std::string notes;
  for (char c : r.report) {
    if (c == '\n') {
      notes += "; ";
    } else {
      notes += c;
    }
  }
  while (!notes.empty() && (notes.back() == ' ' || notes.back() == ';')) notes.pop_back();
  std::printf("leasefs-fsx: ok: %llu operations, seed %llu, file %s%s%s\n",
              static_cast<unsigned long long>(r.operations_done),
              static_cast<unsigned long long>(o.seed), o.path.c_str(), notes.empty() ? "" : "; ",
              notes.c_str());
  return 0;
}
