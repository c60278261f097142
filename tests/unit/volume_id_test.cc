// Volume identity: one id per shared directory, whichever host creates it.
#include "leasefs/lock/volume_id.h"

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>
#include <vector>

#include "mount_harness.h"

namespace leasefs::lock {
namespace {

TEST(VolumeId, CreatedOnceThenReadBack) {
  leasefs::testing::TempDir dir;
  std::string first, second, error;
  ASSERT_TRUE(ReadOrCreateVolumeId(dir.path(), &first, &error)) << error;
  EXPECT_EQ(first.size(), 32u);
  ASSERT_TRUE(ReadOrCreateVolumeId(dir.path(), &second, &error)) << error;
  EXPECT_EQ(first, second);
}

TEST(VolumeId, DifferentDirectoriesGetDifferentIds) {
  leasefs::testing::TempDir a, b;
  std::string id_a, id_b, error;
  ASSERT_TRUE(ReadOrCreateVolumeId(a.path(), &id_a, &error)) << error;
  ASSERT_TRUE(ReadOrCreateVolumeId(b.path(), &id_b, &error)) << error;
  EXPECT_NE(id_a, id_b);
}

// Racing creators (hosts mounting at the same moment) all end with the winner's id, and no
// temporary file is left behind.
TEST(VolumeId, RacingCreatorsAgree) {
  for (int round = 0; round < 20; round++) {
    leasefs::testing::TempDir dir;
    std::vector<std::string> ids(8);
    std::vector<std::thread> threads;
    std::atomic<int> failures{0};
    for (size_t i = 0; i < ids.size(); i++) {
      threads.emplace_back([&, i] {
        std::string error;
        if (!ReadOrCreateVolumeId(dir.path(), &ids[i], &error)) failures++;
      });
    }
    for (auto& t : threads) t.join();
    ASSERT_EQ(failures.load(), 0);
    EXPECT_EQ(std::set<std::string>(ids.begin(), ids.end()).size(), 1u) << "round " << round;
    int entries = 0;
    for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {
      (void)entry;
      entries++;
    }
    EXPECT_EQ(entries, 1) << "temporary files left behind";
  }
}

TEST(VolumeId, MalformedMarkerIsAnErrorNotReplaced) {
  leasefs::testing::TempDir dir;
  std::ofstream(dir.path() + "/.leasefs-volume") << "not an id\n";
  std::string id, error;
  EXPECT_FALSE(ReadOrCreateVolumeId(dir.path(), &id, &error));
  EXPECT_NE(error.find("not a leasefs volume id"), std::string::npos) << error;
  std::ifstream in(dir.path() + "/.leasefs-volume");
  std::string content;
  std::getline(in, content);
  EXPECT_EQ(content, "not an id");
}

TEST(VolumeId, MissingSourceIsAClearError) {
  std::string id, error;
  EXPECT_FALSE(ReadOrCreateVolumeId("/nonexistent/leasefs-volume-test", &id, &error));
  EXPECT_NE(error.find("/nonexistent/leasefs-volume-test"), std::string::npos) << error;
}

}  // namespace
}  // namespace leasefs::lock
