/*
 * fsx_mount_test: randomized data integrity through a leasefs mount.
 *
 * Runs leasefs-fsx (tests/fsx: random writes, reads, truncates, MAP_SHARED reads and writes,
 * fallocate variants, copy_file_range, fsync and reopen, every byte checked against a model) on
 * files inside a leasefs mount:
 *   - several seeds, one after another, on files in the mount root;
 *   - two instances at once (threads) on two files of the same mount;
 *   - one instance on a file in a nested subdirectory;
 *   - one run with fsx's corruption-injection hook, which must fail (proves the checker can fail
 *     through the mount).
 * After each scenario the final contents are read through the mount, the mount is stopped (which
 * also checks the daemon's exit status and its log for sanitizer reports), and the SOURCE files
 * must hold exactly those bytes.
 *
 * Operations per run: $LEASEFS_FSX_OPS if set, else kDefaultOperations (sized to finish in well
 * under a minute per run, also under ASan).
 */
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "fsx.h"
#include "mount_harness.h"

namespace leasefs::testing {
namespace {

constexpr uint64_t kDefaultOperations = 8000;

uint64_t Operations() {
  const char* env = getenv("LEASEFS_FSX_OPS");
  if (env != nullptr && env[0] != '\0') {
    char* end = nullptr;
    const unsigned long long v = strtoull(env, &end, 10);
    if (end != nullptr && *end == '\0' && v > 0) return v;
  }
  return kDefaultOperations;
}

// Reads the whole file; on error returns false and sets `error`.
bool ReadWhole(const std::string& path, std::string* data, std::string* error) {
  data->clear();
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    *error = "open " + path + ": " + strerror(errno);
    return false;
  }
  char buf[1 << 16];
  off_t off = 0;
  for (;;) {
    const ssize_t n = pread(fd, buf, sizeof(buf), off);
    if (n < 0) {
      *error = "pread " + path + ": " + strerror(errno);
      close(fd);
      return false;
    }
    if (n == 0) break;
    data->append(buf, static_cast<size_t>(n));
    off += n;
  }
  close(fd);
  return true;
}

::testing::AssertionResult SameBytes(const std::string& what, const std::string& expected,
                                     const std::string& actual) {
  if (expected == actual) return ::testing::AssertionSuccess();
  size_t i = 0;
  while (i < expected.size() && i < actual.size() && expected[i] == actual[i]) ++i;
  return ::testing::AssertionFailure()
         << what << ": SOURCE has " << actual.size() << " bytes, the final read through the mount "
         << "returned " << expected.size() << " bytes; first difference at offset " << i;
}

fsx::Options MakeOptions(const std::string& path, uint64_t seed) {
  fsx::Options options;
  options.path = path;
  options.seed = seed;
  options.operations = Operations();
  return options;
}

class FsxMountTest : public ::testing::Test {
 protected:
  void SetUp() override {
    mount_ = LeasefsMount::Start(source_.path(), mountpoint_.path());
    ASSERT_NE(mount_, nullptr);
  }
  void TearDown() override {
    if (mount_) {
      EXPECT_TRUE(mount_->Stop());
    }
  }

  std::string M(const std::string& rel) const { return mountpoint_.path() + "/" + rel; }
  std::string S(const std::string& rel) const { return source_.path() + "/" + rel; }

  // Remembers what a read through the mount returns now for `rel`.
  void RecordFinal(const std::string& rel) {
    std::string data, error;
    ASSERT_TRUE(ReadWhole(M(rel), &data, &error)) << error;
    final_[rel] = std::move(data);
  }

  // Stops the mount and checks that SOURCE holds exactly the recorded bytes.
  void StopAndCompareSource() {
    ASSERT_TRUE(mount_->Stop());
    ASSERT_FALSE(IsFuseMounted(mountpoint_.path()));
    for (const auto& [rel, expected] : final_) {
      std::string actual, error;
      ASSERT_TRUE(ReadWhole(S(rel), &actual, &error)) << error;
      EXPECT_TRUE(SameBytes(rel, expected, actual));
    }
  }

  TempDir source_;
  TempDir mountpoint_;
  std::unique_ptr<LeasefsMount> mount_;
  std::map<std::string, std::string> final_;
};

TEST_F(FsxMountTest, SeveralSeeds) {
  for (uint64_t seed : {1, 2, 3}) {
    const std::string rel = "fsx-seed-" + std::to_string(seed);
    const fsx::Result result = fsx::run(MakeOptions(M(rel), seed));
    EXPECT_TRUE(result.ok) << "seed " << seed << " after " << result.operations_done
                           << " operations:\n"
                           << result.report;
    EXPECT_EQ(result.operations_done, Operations()) << "seed " << seed;
    RecordFinal(rel);
  }
  StopAndCompareSource();
}

TEST_F(FsxMountTest, TwoConcurrentInstances) {
  // The mount was started on this (the main) thread, which outlives the workers.
  fsx::Result results[2];
  const std::string rels[2] = {"concurrent-a", "concurrent-b"};
  std::vector<std::thread> threads;
  for (int i = 0; i < 2; ++i) {
    threads.emplace_back([&, i] { results[i] = fsx::run(MakeOptions(M(rels[i]), 100 + i)); });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < 2; ++i) {
    EXPECT_TRUE(results[i].ok) << rels[i] << " (seed " << 100 + i << ") after "
                               << results[i].operations_done << " operations:\n"
                               << results[i].report;
    RecordFinal(rels[i]);
  }
  StopAndCompareSource();
}

TEST_F(FsxMountTest, FileInSubdirectory) {
  ASSERT_EQ(mkdir(M("sub").c_str(), 0755), 0) << strerror(errno);
  ASSERT_EQ(mkdir(M("sub/deeper").c_str(), 0700), 0) << strerror(errno);
  const std::string rel = "sub/deeper/fsx-file";
  const fsx::Result result = fsx::run(MakeOptions(M(rel), 7));
  EXPECT_TRUE(result.ok) << "after " << result.operations_done << " operations:\n" << result.report;
  RecordFinal(rel);
  StopAndCompareSource();
}

TEST_F(FsxMountTest, InjectedCorruptionIsDetected) {
  fsx::Options options = MakeOptions(M("corrupt"), 11);
  options.operations = 200;
  options.inject_corruption_for_test = true;
  const fsx::Result result = fsx::run(options);
  EXPECT_FALSE(result.ok) << "fsx did not notice a byte flipped behind its back";
  EXPECT_NE(result.report.find("mismatch"), std::string::npos) << result.report;
  RecordFinal("corrupt");
  StopAndCompareSource();
}

}  // namespace
}  // namespace leasefs::testing
