// Unit tests for `leasefs mount` argument handling: long options, -o key=value, the mount(8)
// helper convention, and the checks made before mounting.
#include "mount_options.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "mount_checks.h"
#include "mount_harness.h"

namespace leasefs::cmd {
namespace {

// Parses `args` (the words after "mount") as main() does; returns the error line if any.
std::optional<std::string> Parse(std::vector<std::string> args, MountOptions& options,
                                 bool sloppy = false) {
  CLI::App app;
  CLI::App* mount = app.add_subcommand("mount");
  AddMountOptions(*mount, options);
  if (auto error = ExpandDashO(*mount, args, options, sloppy)) return error;
  args.insert(args.begin(), "mount");
  std::reverse(args.begin(), args.end());
  try {
    app.parse(args);
  } catch (const CLI::ParseError& e) {
    return std::string(e.what());
  }
  return std::nullopt;
}

TEST(MountOptions, LongOptionsAndPositionals) {
  MountOptions o;
  ASSERT_EQ(Parse({"-f", "--attr-timeout", "2.5", "--threads", "4", "/src", "/mnt"}, o),
            std::nullopt);
  EXPECT_TRUE(o.foreground);
  EXPECT_DOUBLE_EQ(o.attr_timeout, 2.5);
  EXPECT_EQ(o.threads, 4u);
  EXPECT_EQ(o.source, "/src");
  EXPECT_EQ(o.mountpoint, "/mnt");
  EXPECT_FALSE(o.allow_other.has_value());
}

TEST(MountOptions, EveryLongOptionWorksAsDashO) {
  MountOptions o;
  ASSERT_EQ(Parse({"-o", "attr_timeout=3,entry_timeout=0.5,max_threads=8,allow_other,ro",
                   "-olog_level=debug", "/src", "/mnt"},
                  o),
            std::nullopt);
  EXPECT_DOUBLE_EQ(o.attr_timeout, 3);
  EXPECT_DOUBLE_EQ(o.entry_timeout, 0.5);
  EXPECT_EQ(o.threads, 8u);
  EXPECT_EQ(o.allow_other, std::optional<bool>(true));
  EXPECT_TRUE(o.read_only);
  EXPECT_EQ(o.log_level, "debug");
}

TEST(MountOptions, KernelFlagsPassThroughAndBookkeepingIsIgnored) {
  MountOptions o;
  ASSERT_EQ(Parse({"-o", "_netdev,nofail,noatime,nosuid,x-systemd.requires=efs.mount,defaults,rw",
                   "/src", "/mnt"},
                  o),
            std::nullopt);
  EXPECT_EQ(o.kernel_options, (std::vector<std::string>{"noatime", "nosuid"}));
}

TEST(MountOptions, EscapedCommaStaysInValue) {
  MountOptions o;
  ASSERT_EQ(Parse({"-o", "lease_store=dynamodb://t?a=1\\,2", "/s", "/m"}, o), std::nullopt);
  EXPECT_EQ(o.lease_store, "dynamodb://t?a=1,2");
}

TEST(MountOptions, BadInputIsOneClearError) {
  MountOptions o;
  EXPECT_EQ(Parse({"-o", "bogus", "/s", "/m"}, o),
            "unknown mount option 'bogus' (see leasefs mount --help)");
  MountOptions o2;
  EXPECT_EQ(Parse({"-o", "allow_other=1", "/s", "/m"}, o2),
            "mount option 'allow_other' takes no value");
  MountOptions o3;
  EXPECT_EQ(Parse({"-o", "attr_timeout", "/s", "/m"}, o3),
            "mount option 'attr_timeout' needs a value: attr_timeout=...");
  MountOptions o4;
  EXPECT_NE(Parse({"--attr-timeout", "-1", "/s", "/m"}, o4), std::nullopt);
  MountOptions o5;
  EXPECT_NE(Parse({"--threads", "0", "/s", "/m"}, o5), std::nullopt);
  MountOptions o6;
  EXPECT_NE(Parse({"--log-level", "loud", "/s", "/m"}, o6), std::nullopt);
  MountOptions o7;
  EXPECT_NE(Parse({"/s"}, o7), std::nullopt);
  MountOptions o8;
  EXPECT_EQ(Parse({"-o"}, o8), "-o needs a list of options, e.g. -o allow_other,ro");
}

// Every number is finite and in range, however it is spelled, and a bad one is one short line.
TEST(MountOptions, NumbersAreValidatedWithOneLine) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--lease-duration", "nan"},
       "--lease-duration: must be a number of seconds from 1 to 3600, not 'nan'"},
      {{"-o", "lease_duration=nan"},
       "--lease-duration: must be a number of seconds from 1 to 3600, not 'nan'"},
      {{"--lease-duration", "abc"},
       "--lease-duration: must be a number of seconds from 1 to 3600, not 'abc'"},
      {{"--lease-duration", "inf"},
       "--lease-duration: must be a number of seconds from 1 to 3600, not 'inf'"},
      {{"--attr-timeout", "-1"},
       "--attr-timeout: must be a number of seconds from 0 to 86400, not '-1'"},
      {{"--attr-timeout", "nan"},
       "--attr-timeout: must be a number of seconds from 0 to 86400, not 'nan'"},
      {{"--entry-timeout", "1e999"},
       "--entry-timeout: must be a number of seconds from 0 to 86400, not '1e999'"},
      {{"--negative-timeout", "2s"},
       "--negative-timeout: must be a number of seconds from 0 to 86400, not '2s'"},
      {{"--threads", "0"}, "--threads: must be a whole number from 1 to 1024, not '0'"},
      {{"--threads", "4.5"}, "--threads: must be a whole number from 1 to 1024, not '4.5'"},
      {{"--metrics-addr", "99999"},
       "--metrics-addr: must be PORT, HOST:PORT or [IPV6]:PORT with a port from 1 to 65535, not "
       "'99999'"},
      {{"--metrics-addr", "::1:80"},
       "--metrics-addr: must be PORT, HOST:PORT or [IPV6]:PORT, not '::1:80'"},
  };
  for (const auto& [args, expected] : cases) {
    MountOptions o;
    std::vector<std::string> full = args;
    full.insert(full.end(), {"/s", "/m"});
    auto error = Parse(full, o);
    ASSERT_TRUE(error.has_value()) << args[0] << " " << args[1];
    EXPECT_EQ(*error, expected);
    EXPECT_EQ(error->find('\n'), std::string::npos);
  }
}

TEST(MountOptions, BareMetricsPortListensOnLoopbackOnly) {
  MountOptions o;
  ASSERT_EQ(Parse({"--metrics-addr", "19187", "/s", "/m"}, o), std::nullopt);
  EXPECT_EQ(o.metrics_addr, "127.0.0.1:19187");
  MountOptions all;
  ASSERT_EQ(Parse({"--metrics-addr", "0.0.0.0:19187", "/s", "/m"}, all), std::nullopt);
  EXPECT_EQ(all.metrics_addr, "0.0.0.0:19187");
  MountOptions v6;
  ASSERT_EQ(Parse({"--metrics-addr", "[::1]:19187", "/s", "/m"}, v6), std::nullopt);
  EXPECT_EQ(v6.metrics_addr, "[::1]:19187");
}

TEST(MountOptions, SloppyIgnoresUnknownKeys) {
  MountOptions o;
  EXPECT_EQ(Parse({"-o", "bogus,noexec", "/s", "/m"}, o, /*sloppy=*/true), std::nullopt);
  EXPECT_EQ(o.kernel_options, std::vector<std::string>{"noexec"});
}

TEST(MountHelper, TranslatesMountConvention) {
  HelperInvocation h;
  ASSERT_EQ(ParseHelperArgs({"/sbin/mount.fuse.leasefs", "/efs/db", "/srv/db", "-n", "-o",
                             "rw,_netdev,attr_timeout=2"},
                            &h),
            std::nullopt);
  EXPECT_FALSE(h.fake);
  EXPECT_EQ(h.mount_args,
            (std::vector<std::string>{"-o", "rw,_netdev,attr_timeout=2", "/efs/db", "/srv/db"}));
}

TEST(MountHelper, FakeSloppyAndErrors) {
  HelperInvocation h;
  ASSERT_EQ(ParseHelperArgs({"mount.leasefs", "/a", "/b", "-fsv", "-t", "fuse.leasefs"}, &h),
            std::nullopt);
  EXPECT_TRUE(h.fake);
  EXPECT_TRUE(h.sloppy);
  HelperInvocation h2;
  EXPECT_EQ(ParseHelperArgs({"mount.leasefs", "/a"}, &h2),
            "usage: mount.leasefs SOURCE MOUNTPOINT [-o OPTIONS]");
  HelperInvocation h3;
  EXPECT_EQ(ParseHelperArgs({"mount.leasefs", "/a", "/b", "-q"}, &h3),
            "unknown mount helper flag -q");
}

TEST(MountChecks, PathIsWithin) {
  EXPECT_TRUE(PathIsWithin("/a/b", "/a"));
  EXPECT_TRUE(PathIsWithin("/a", "/a"));
  EXPECT_FALSE(PathIsWithin("/ab", "/a"));
  EXPECT_FALSE(PathIsWithin("/a", "/a/b"));
  EXPECT_TRUE(PathIsWithin("/x", "/"));
}

TEST(MountChecks, MountinfoParsingUnescapes) {
  const std::string info =
      "22 1 0:21 / /proc rw,nosuid - proc proc rw\n"
      "40 22 0:50 / /srv/my\\040db rw,relatime shared:5 - fuse.leasefs /efs rw,user_id=0\n";
  std::string type;
  EXPECT_TRUE(IsMountPoint("/srv/my db", &type, &info));
  EXPECT_EQ(type, "fuse.leasefs");
  EXPECT_TRUE(IsMountPoint("/proc", &type, &info));
  EXPECT_EQ(type, "proc");
  EXPECT_FALSE(IsMountPoint("/srv", &type, &info));
}

TEST(MountChecks, MountinfoNamesTheMountOnTop) {
  const std::string info =
      "40 22 0:50 / /srv/db rw - fuse.leasefs /efs rw,user_id=0\n"
      "41 40 0:51 / /srv/db rw - tmpfs tmpfs rw\n";
  std::string type;
  EXPECT_TRUE(IsMountPoint("/srv/db", &type, &info));
  EXPECT_EQ(type, "tmpfs");
}

class MountCheckDirs : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = temp_.path();
    std::filesystem::create_directories(root_ + "/src/inner");
    std::filesystem::create_directories(root_ + "/mnt");
  }
  std::optional<std::string> Check(const std::string& source, const std::string& mountpoint) {
    MountOptions o;
    o.source = source;
    o.mountpoint = mountpoint;
    return CheckMountRequest(o);
  }
  leasefs::testing::TempDir temp_;  // first: removed last, after everything using it
  std::string root_;
};

TEST_F(MountCheckDirs, AcceptsAGoodPairAndCanonicalizes) {
  MountOptions o;
  o.source = root_ + "/src/../src";
  o.mountpoint = root_ + "/mnt/";
  ASSERT_EQ(CheckMountRequest(o), std::nullopt);
  EXPECT_EQ(o.source, root_ + "/src");
  EXPECT_EQ(o.mountpoint, root_ + "/mnt");
}

TEST_F(MountCheckDirs, RejectsEachBadRequestWithItsReason) {
  EXPECT_EQ(Check(root_ + "/nope", root_ + "/mnt"),
            "source directory '" + root_ + "/nope' does not exist");
  EXPECT_EQ(Check(root_ + "/src", root_ + "/nope"),
            "mountpoint '" + root_ + "/nope' does not exist");
  EXPECT_EQ(Check(root_ + "/src", root_ + "/src"), "source and mountpoint are the same directory");
  EXPECT_EQ(Check(root_ + "/src/inner", root_ + "/src"),
            "source '" + root_ + "/src/inner' is inside mountpoint '" + root_ + "/src'");
  EXPECT_EQ(Check(root_ + "/src", root_ + "/src/inner"),
            "mountpoint '" + root_ + "/src/inner' is inside source '" + root_ +
                "/src'; the filesystem would serve itself");
  ASSERT_EQ(system(("touch " + root_ + "/file").c_str()), 0);
  EXPECT_EQ(Check(root_ + "/file", root_ + "/mnt"),
            "source '" + root_ + "/file' is not a directory");
  EXPECT_EQ(Check(root_ + "/src", root_ + "/file"),
            "mountpoint '" + root_ + "/file' is not a directory");
  EXPECT_EQ(Check("/", "/proc"), "mountpoint '/proc' is busy: proc is already mounted there");
  MountOptions o;
  o.source = root_ + "/src";
  o.mountpoint = root_ + "/mnt";
  o.replica = "s3://bucket/db";
  EXPECT_EQ(CheckMountRequest(o), "--replica is not yet supported by this version of leasefs");
}

}  // namespace
}  // namespace leasefs::cmd
