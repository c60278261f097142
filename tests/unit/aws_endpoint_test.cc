// Unit tests for region and endpoint resolution (aws/include/leasefs/aws/endpoint.h), the INI
// parser they share with the credential providers (ParseIni, credentials.h), and
// CredentialEnvironment::Process(). The environment is a fake (a map) except in the Process()
// tests; config files are written to a fresh temporary directory per test.
#include <gtest/gtest.h>
#include <pwd.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <string>

#include "leasefs/aws/credentials.h"
#include "leasefs/aws/endpoint.h"

namespace leasefs::aws {
namespace {

namespace fs = std::filesystem;

CredentialEnvironment FakeEnv(std::map<std::string, std::string> vars, std::string home = "") {
  CredentialEnvironment env;
  env.getenv = [vars = std::move(vars)](const std::string& name) -> std::optional<std::string> {
    const auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
  env.home = std::move(home);
  return env;
}

class TempDir : public testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") +
                          "/leasefs-endpoint-test-XXXXXX";
    ASSERT_NE(mkdtemp(pattern.data()), nullptr) << pattern;
    dir_ = pattern;
  }
  void TearDown() override {
    std::error_code ignored;
    if (!dir_.empty()) fs::remove_all(dir_, ignored);
  }
  // Writes `text` at `relative` under the temporary directory; returns the full path.
  std::string Write(const std::string& relative, const std::string& text) {
    const fs::path path = dir_ / relative;
    fs::create_directories(path.parent_path());
    std::ofstream(path, std::ios::binary) << text;
    return path.string();
  }
  fs::path dir_;
};

// --- Region --------------------------------------------------------------------------------------

using RegionTest = TempDir;

TEST_F(RegionTest, Precedence) {
  const std::string home = dir_.string();
  Write(".aws/config", "[default]\nregion = eu-central-1\n");
  const std::map<std::string, std::string> all = {{"AWS_REGION", "eu-west-1"},
                                                  {"AWS_DEFAULT_REGION", "eu-west-2"}};
  EXPECT_EQ(ResolveRegion("ap-south-1", FakeEnv(all, home)), "ap-south-1");
  EXPECT_EQ(ResolveRegion("", FakeEnv(all, home)), "eu-west-1");
  EXPECT_EQ(ResolveRegion("", FakeEnv({{"AWS_DEFAULT_REGION", "eu-west-2"}}, home)), "eu-west-2");
  EXPECT_EQ(ResolveRegion("", FakeEnv({}, home)), "eu-central-1");
  EXPECT_EQ(ResolveRegion("", FakeEnv({}, "")), "");
}

TEST_F(RegionTest, EmptyVariablesCountAsUnset) {
  EXPECT_EQ(ResolveRegion("", FakeEnv({{"AWS_REGION", ""}, {"AWS_DEFAULT_REGION", "us-west-2"}})),
            "us-west-2");
  EXPECT_EQ(ResolveRegion("", FakeEnv({{"AWS_REGION", ""}, {"AWS_DEFAULT_REGION", ""}})), "");
}

TEST_F(RegionTest, NoEnvironmentFunctionAtAll) {
  CredentialEnvironment env;  // getenv empty: nothing is set
  EXPECT_EQ(ResolveRegion("", env), "");
  EXPECT_EQ(ResolveRegion("us-east-2", env), "us-east-2");
}

TEST_F(RegionTest, ProfileFromConfigFile) {
  const std::string home = dir_.string();
  Write(".aws/config",
        "# written by aws configure\n"
        "[default]\n"
        "region = us-east-1\n"
        "output = json\n"
        "\n"
        "[profile dev]\n"
        "  ; indented comment\n"
        "region=eu-north-1\n"
        "s3 =\n"
        "  region = not-this-one\n"
        "\n"
        "[profile   spaced  ]\n"
        "Region = sa-east-1\n"
        "\n"
        "[profile noregion]\n"
        "output = text\n"
        "\n"
        "[bare]\n"  // not a profile section in the config file
        "region = ap-east-1\n");
  EXPECT_EQ(ResolveRegion("", FakeEnv({}, home)), "us-east-1");
  EXPECT_EQ(ResolveRegion("", FakeEnv({{"AWS_PROFILE", "default"}}, home)), "us-east-1");
  EXPECT_EQ(ResolveRegion("", FakeEnv({{"AWS_PROFILE", "dev"}}, home)), "eu-north-1");
  EXPECT_EQ(ResolveRegion("", FakeEnv({{"AWS_PROFILE", "spaced"}}, home)), "sa-east-1");
  EXPECT_EQ(ResolveRegion("", FakeEnv({{"AWS_PROFILE", "noregion"}}, home)), "");
  EXPECT_EQ(ResolveRegion("", FakeEnv({{"AWS_PROFILE", "bare"}}, home)), "");
  EXPECT_EQ(ResolveRegion("", FakeEnv({{"AWS_PROFILE", "missing"}}, home)), "");
  // The environment still wins over the profile.
  EXPECT_EQ(
      ResolveRegion("", FakeEnv({{"AWS_PROFILE", "dev"}, {"AWS_REGION", "me-south-1"}}, home)),
      "me-south-1");
}

TEST_F(RegionTest, ProfileDefaultSpelledAsProfile) {
  Write(".aws/config", "[profile default]\r\nregion = ca-central-1\r\n");  // and CRLF line ends
  EXPECT_EQ(ResolveRegion("", FakeEnv({}, dir_.string())), "ca-central-1");
}

TEST_F(RegionTest, ConfigFileVariableOverridesHome) {
  Write(".aws/config", "[default]\nregion = us-east-1\n");
  const std::string other = Write("elsewhere/config", "[default]\nregion = us-west-1\n");
  EXPECT_EQ(ResolveRegion("", FakeEnv({{"AWS_CONFIG_FILE", other}}, dir_.string())), "us-west-1");
  // ~ in the variable is the home directory, as for the AWS CLI.
  EXPECT_EQ(ResolveRegion("", FakeEnv({{"AWS_CONFIG_FILE", "~/elsewhere/config"}}, dir_.string())),
            "us-west-1");
  // A variable naming a missing file: no region (the home file is not a fallback).
  EXPECT_EQ(
      ResolveRegion("", FakeEnv({{"AWS_CONFIG_FILE", (dir_ / "nope").string()}}, dir_.string())),
      "");
}

// --- Endpoint ------------------------------------------------------------------------------------

TEST(EndpointTest, Precedence) {
  const std::map<std::string, std::string> all = {
      {"AWS_ENDPOINT_URL_DYNAMODB", "http://dynamo.local:8000"},
      {"AWS_ENDPOINT_URL", "http://everything.local:4566"}};
  EXPECT_EQ(ResolveEndpoint("http://explicit:1", "DYNAMODB", "dynamodb", "us-east-1", FakeEnv(all)),
            "http://explicit:1");
  EXPECT_EQ(ResolveEndpoint("", "DYNAMODB", "dynamodb", "us-east-1", FakeEnv(all)),
            "http://dynamo.local:8000");
  EXPECT_EQ(ResolveEndpoint("", "DYNAMODB", "dynamodb", "us-east-1",
                            FakeEnv({{"AWS_ENDPOINT_URL", "http://everything.local:4566"}})),
            "http://everything.local:4566");
  EXPECT_EQ(ResolveEndpoint("", "DYNAMODB", "dynamodb", "us-east-1", FakeEnv({})),
            "https://dynamodb.us-east-1.amazonaws.com");
}

TEST(EndpointTest, ServiceVariableAppliesToItsServiceOnly) {
  const auto env = FakeEnv(
      {{"AWS_ENDPOINT_URL_S3", "http://minio:9000"}, {"AWS_ENDPOINT_URL_STS", "http://sts.local"}});
  EXPECT_EQ(ResolveEndpoint("", "DYNAMODB", "dynamodb", "eu-west-1", env),
            "https://dynamodb.eu-west-1.amazonaws.com");
  EXPECT_EQ(ResolveEndpoint("", "S3", "s3", "eu-west-1", env), "http://minio:9000");
  EXPECT_EQ(ResolveEndpoint("", "STS", "sts", "eu-west-1", env), "http://sts.local");
}

TEST(EndpointTest, EmptyVariablesCountAsUnset) {
  const auto env = FakeEnv({{"AWS_ENDPOINT_URL_DYNAMODB", ""}, {"AWS_ENDPOINT_URL", ""}});
  EXPECT_EQ(ResolveEndpoint("", "DYNAMODB", "dynamodb", "us-west-2", env),
            "https://dynamodb.us-west-2.amazonaws.com");
}

TEST(EndpointTest, ChinaRegions) {
  EXPECT_EQ(ResolveEndpoint("", "DYNAMODB", "dynamodb", "cn-north-1", FakeEnv({})),
            "https://dynamodb.cn-north-1.amazonaws.com.cn");
  EXPECT_EQ(ResolveEndpoint("", "STS", "sts", "cn-northwest-1", FakeEnv({})),
            "https://sts.cn-northwest-1.amazonaws.com.cn");
  // Only a "cn-" prefix is China; other regions merely containing "cn" are not.
  EXPECT_EQ(ResolveEndpoint("", "S3", "s3", "eu-cn-1", FakeEnv({})),
            "https://s3.eu-cn-1.amazonaws.com");
}

TEST(EndpointTest, TrailingSlashesRemoved) {
  EXPECT_EQ(ResolveEndpoint("http://localhost:8000/", "DYNAMODB", "dynamodb", "", FakeEnv({})),
            "http://localhost:8000");
  EXPECT_EQ(ResolveEndpoint("", "DYNAMODB", "dynamodb", "",
                            FakeEnv({{"AWS_ENDPOINT_URL_DYNAMODB", "http://h:1//"}})),
            "http://h:1");
  EXPECT_EQ(ResolveEndpoint("", "DYNAMODB", "dynamodb", "",
                            FakeEnv({{"AWS_ENDPOINT_URL", "http://h:2/prefix/"}})),
            "http://h:2/prefix");
}

TEST(EndpointTest, NoRegionNoEndpoint) {
  EXPECT_EQ(ResolveEndpoint("", "DYNAMODB", "dynamodb", "", FakeEnv({})), "");
  // An override needs no region.
  EXPECT_EQ(ResolveEndpoint("", "DYNAMODB", "dynamodb", "",
                            FakeEnv({{"AWS_ENDPOINT_URL", "http://localhost:8000"}})),
            "http://localhost:8000");
}

// --- ParseIni ------------------------------------------------------------------------------------

TEST(ParseIniTest, SectionsKeysComments) {
  const auto ini = ParseIni(
      "\xEF\xBB\xBF"  // byte-order mark
      "ignored = before any section\n"
      "[default]\n"
      "aws_access_key_id = AKID\n"
      "AWS_Secret_Access_Key=se=cr#et;x \n"  // no inline comments; first '=' separates
      "# comment\n"
      "; comment\n"
      "no equals sign\n"
      "[ profile  two ]\r\n"
      "role_arn = arn:aws:iam::123456789012:role/x\r\n"
      "empty =\n"
      "[default]\n"  // a repeated section adds to the first
      "region = us-east-1\n"
      "[broken\n"
      "lost = yes\n");
  ASSERT_EQ(ini.size(), 2u);
  const auto& def = ini.at("default");
  EXPECT_EQ(def.at("aws_access_key_id"), "AKID");
  EXPECT_EQ(def.at("aws_secret_access_key"), "se=cr#et;x");
  EXPECT_EQ(def.at("region"), "us-east-1");
  EXPECT_EQ(def.size(), 3u);
  const auto& two = ini.at("profile two");
  EXPECT_EQ(two.at("role_arn"), "arn:aws:iam::123456789012:role/x");
  EXPECT_EQ(two.at("empty"), "");
  EXPECT_EQ(two.size(), 2u);
}

TEST(ParseIniTest, NestedValuesAreContinuations) {
  const auto ini = ParseIni(
      "[profile p]\n"
      "s3 =\n"
      "    max_concurrent_requests = 20\n"
      "    addressing_style = path\n"
      "region = us-east-1\n"
      "  indented_key = 1\n"  // deeper than its key line: continues region (as configparser)
      "[q]\n"
      "  a = 1\n"  // indented keys at one level are keys
      "  b = 2\n");
  const auto& p = ini.at("profile p");
  EXPECT_EQ(p.at("s3"), "\nmax_concurrent_requests = 20\naddressing_style = path");
  EXPECT_EQ(p.at("region"), "us-east-1\nindented_key = 1");
  EXPECT_EQ(p.count("max_concurrent_requests"), 0u);
  const auto& q = ini.at("q");
  EXPECT_EQ(q.at("a"), "1");
  EXPECT_EQ(q.at("b"), "2");
}

TEST(ParseIniTest, Empty) {
  EXPECT_TRUE(ParseIni("").empty());
  EXPECT_TRUE(ParseIni("\n\n# nothing\n").empty());
  EXPECT_EQ(ParseIni("[only]").at("only").size(), 0u);
}

// --- CredentialEnvironment::Process() ------------------------------------------------------------

// Sets or unsets a variable for one test and restores it afterwards.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value != nullptr) {
      setenv(name, value, 1);
    } else {
      unsetenv(name);
    }
  }
  ~ScopedEnv() {
    if (old_) {
      setenv(name_.c_str(), old_->c_str(), 1);
    } else {
      unsetenv(name_.c_str());
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::string name_;
  std::optional<std::string> old_;
};

TEST(ProcessEnvironmentTest, GetenvReadsTheProcessEnvironmentAtCallTime) {
  const CredentialEnvironment env = CredentialEnvironment::Process();
  ASSERT_TRUE(env.getenv);
  {
    ScopedEnv set("LEASEFS_ENDPOINT_TEST_VAR", "value");
    EXPECT_EQ(env.getenv("LEASEFS_ENDPOINT_TEST_VAR"), std::optional<std::string>("value"));
  }
  {
    ScopedEnv set("LEASEFS_ENDPOINT_TEST_VAR", "");
    EXPECT_EQ(env.getenv("LEASEFS_ENDPOINT_TEST_VAR"), std::optional<std::string>(""));
  }
  ScopedEnv unset("LEASEFS_ENDPOINT_TEST_VAR", nullptr);
  EXPECT_EQ(env.getenv("LEASEFS_ENDPOINT_TEST_VAR"), std::nullopt);
}

TEST(ProcessEnvironmentTest, HomeFromVariableElsePasswd) {
  {
    ScopedEnv home("HOME", "/some/where");
    EXPECT_EQ(CredentialEnvironment::Process().home, "/some/where");
  }
  const struct passwd* entry = getpwuid(getuid());
  const std::string passwd_home = entry != nullptr && entry->pw_dir != nullptr ? entry->pw_dir : "";
  {
    ScopedEnv home("HOME", nullptr);
    EXPECT_EQ(CredentialEnvironment::Process().home, passwd_home);
  }
  {
    ScopedEnv home("HOME", "");
    EXPECT_EQ(CredentialEnvironment::Process().home, passwd_home);
  }
}

TEST(ProcessEnvironmentTest, ResolvesThroughTheRealEnvironment) {
  ScopedEnv region("AWS_REGION", "eu-south-1");
  ScopedEnv endpoint("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:8000/");
  const CredentialEnvironment env = CredentialEnvironment::Process();
  EXPECT_EQ(ResolveRegion("", env), "eu-south-1");
  EXPECT_EQ(ResolveEndpoint("", "DYNAMODB", "dynamodb", "eu-south-1", env),
            "http://127.0.0.1:8000");
}

}  // namespace
}  // namespace leasefs::aws
