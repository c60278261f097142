// Self-test of leasefs-fsx on the local disk: clean runs pass, and a corrupted file is caught.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <string>

#include "fsx.h"

namespace leasefs::fsx {
namespace {

// A fresh directory under the test temp dir (local disk), removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::path(::testing::TempDir()) / "fsx-selftest-XXXXXX");
    if (mkdtemp(tmpl.data()) != nullptr) path_ = tmpl;
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

TEST(FsxSelfTest, CleanRunsPass) {
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  for (uint64_t seed : {1u, 20240611u}) {
    Options o;
    o.path = dir.path() / "file";
    o.seed = seed;
    o.operations = 3000;
    o.max_file_size = 256 * 1024;
    o.max_op_size = 32 * 1024;
    const Result r = run(o);
    EXPECT_TRUE(r.ok) << "seed " << seed << ":\n" << r.report;
    EXPECT_EQ(r.operations_done, o.operations) << "seed " << seed;
  }
}

TEST(FsxSelfTest, SameSeedSameRun) {
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  Options o;
  o.path = dir.path() / "file";
  o.seed = 7;
  o.operations = 500;
  o.inject_corruption_for_test = true;  // the failure report pins down the whole history
  const Result a = run(o);
  const Result b = run(o);
  ASSERT_FALSE(a.ok);
  EXPECT_EQ(a.report, b.report);
}

TEST(FsxSelfTest, InjectedCorruptionIsCaught) {
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  Options o;
  o.path = dir.path() / "file";
  o.seed = 3;
  o.operations = 2000;
  o.inject_corruption_for_test = true;
  const Result r = run(o);
  ASSERT_FALSE(r.ok) << r.report;
  EXPECT_LT(r.operations_done, o.operations);

  const std::string marker = "injected corruption at offset ";
  const size_t at = r.report.find(marker);
  ASSERT_NE(at, std::string::npos) << r.report;
  const size_t digits = at + marker.size();
  const std::string offset =
      r.report.substr(digits, r.report.find_first_not_of("0123456789", digits) - digits);
  ASSERT_FALSE(offset.empty()) << r.report;
  EXPECT_NE(r.report.find("mismatch at offset " + offset + " "), std::string::npos) << r.report;
  EXPECT_NE(r.report.find("last 30 operation(s)"), std::string::npos) << r.report;
  EXPECT_NE(r.report.find("reproduce: leasefs-fsx -S 3 -n 2000"), std::string::npos) << r.report;
}

TEST(FsxSelfTest, SyscallErrorsAreReportedNotFatal) {
  Options o;
  o.path = "/nonexistent-dir-for-fsx-selftest/file";
  const Result r = run(o);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.report.find("ENOENT"), std::string::npos) << r.report;
}

}  // namespace
}  // namespace leasefs::fsx
