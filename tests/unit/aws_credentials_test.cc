// Unit tests for the credential chain and cache (leasefs/aws/credentials.h).
//
// The environment is always a fake CredentialEnvironment (the process environment is never read
// or changed); files live in a TempDir; the HTTP providers talk to a local HttpTestServer playing
// STS, the ECS agent or IMDS, which checks the requests it gets. Cache timing is real time but
// short (expiries a few tens of milliseconds past the refresh window) and every wait is a bounded
// wait for a condition, never a sleep that hopes something happened meanwhile.
#include <gtest/gtest.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "credentials_internal.h"
#include "http_test_server.h"
#include "leasefs/aws/credentials.h"
#include "leasefs/aws/http.h"
#include "mount_harness.h"

namespace leasefs::aws {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using namespace std::chrono_literals;

constexpr auto kBound = 10s;  // upper bound of every wait; reached only when a test fails

// ---- fakes and helpers ------------------------------------------------------------------------

// A fake environment whose variables the test may change after the providers were made.
struct FakeEnv {
  std::shared_ptr<std::map<std::string, std::string>> vars =
      std::make_shared<std::map<std::string, std::string>>();
  std::string home;

  CredentialEnvironment get() const {
    CredentialEnvironment env;
    env.getenv = [vars = vars](const std::string& name) -> std::optional<std::string> {
      auto it = vars->find(name);
      if (it == vars->end()) return std::nullopt;
      return it->second;
    };
    env.home = home;
    return env;
  }
  std::string& operator[](const std::string& name) { return (*vars)[name]; }
};

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  ASSERT_TRUE(out.good()) << path;
}

Deadline Soon() {
  return std::chrono::steady_clock::now() + 5s;
}

// Polls `condition` until it holds or kBound passes. For state with no notification of its own
// (what the cache holds); everything a fake does is waited for on its condition variable.
bool WaitUntil(const std::function<bool()>& condition) {
  auto limit = std::chrono::steady_clock::now() + kBound;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > limit) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

Credentials Creds(const std::string& id, std::optional<WallTime> expires = std::nullopt) {
  Credentials creds;
  creds.access_key_id = id;
  creds.secret_access_key = "secret-" + id;
  creds.session_token = "token-" + id;
  creds.expires = expires;
  return creds;
}

// A provider whose answers the test scripts, which records when it was called and can hold a
// call at a gate until the test opens it.
class FakeProvider final : public CredentialProvider {
 public:
  using Script = std::function<std::optional<Credentials>(int call, std::string* why)>;

  struct State {
    std::mutex mutex;
    std::condition_variable changed;
    int calls = 0;                     // calls entered
    std::vector<WallTime> call_times;  // system_clock time each call entered
    std::set<int> gated;               // calls that wait for `open`
    bool open = false;
    Script script;

    bool WaitForCalls(int n) {
      std::unique_lock<std::mutex> lock(mutex);
      return changed.wait_for(lock, kBound, [&] { return calls >= n; });
    }
    void Open() {
      {
        std::lock_guard<std::mutex> guard(mutex);
        open = true;
      }
      changed.notify_all();
    }
    int Calls() {
      std::lock_guard<std::mutex> guard(mutex);
      return calls;
    }
    std::vector<WallTime> CallTimes() {
      std::lock_guard<std::mutex> guard(mutex);
      return call_times;
    }
  };

  explicit FakeProvider(std::shared_ptr<State> state) : state_(std::move(state)) {}

  std::optional<Credentials> fetch(Deadline, std::string* why) override {
    int call;
    Script script;
    {
      std::unique_lock<std::mutex> lock(state_->mutex);
      call = ++state_->calls;
      state_->call_times.push_back(std::chrono::system_clock::now());
      script = state_->script;
      state_->changed.notify_all();
      if (state_->gated.count(call)) {
        // Bounded: a failing test must not hang here; it then fails on what it checks.
        state_->changed.wait_for(lock, kBound, [&] { return state_->open; });
      }
    }
    return script(call, why);
  }
  std::string name() const override { return "fake"; }

 private:
  std::shared_ptr<State> state_;
};

// Opens the fake's gate however the test leaves its scope, so no cache destructor waits on it.
struct OpenOnExit {
  std::shared_ptr<FakeProvider::State> state;
  ~OpenOnExit() { state->Open(); }
};

std::pair<std::unique_ptr<FakeProvider>, std::shared_ptr<FakeProvider::State>> MakeFake(
    FakeProvider::Script script) {
  auto state = std::make_shared<FakeProvider::State>();
  state->script = std::move(script);
  return {std::make_unique<FakeProvider>(state), state};
}

std::string CurrentId(const CredentialCache& cache) {
  std::optional<Credentials> creds = cache.current();
  return creds ? creds->access_key_id : std::string("<none>");
}

// ---- helpers of credentials_internal.h --------------------------------------------------------

TEST(CredentialsInternal, ParsesIso8601AsAwsWritesIt) {
  using internal::ParseIso8601;
  std::optional<WallTime> t = ParseIso8601("2024-05-17T15:09:54Z");
  ASSERT_TRUE(t);
  EXPECT_EQ(std::chrono::duration_cast<seconds>(t->time_since_epoch()).count(), 1715958594);
  EXPECT_EQ(internal::FormatIso8601(*t), "2024-05-17T15:09:54Z");
  EXPECT_EQ(ParseIso8601("2024-05-17T15:09:54.250Z"), *t + 250ms);
  EXPECT_EQ(ParseIso8601("2024-05-17T17:09:54+02:00"), *t);
  EXPECT_EQ(ParseIso8601("2024-05-17T10:09:54-0500"), *t);
  EXPECT_EQ(ParseIso8601(" 2024-05-17T15:09:54Z\n"), *t);
  EXPECT_FALSE(ParseIso8601("2024-05-17T15:09:54"));  // no zone: refused, not guessed
  EXPECT_FALSE(ParseIso8601("2024-02-30T00:00:00Z"));
  EXPECT_FALSE(ParseIso8601("2024-05-17 junk"));
  EXPECT_FALSE(ParseIso8601(""));
}

TEST(CredentialsInternal, ExtractsXmlTextAndDecodesEntities) {
  std::string xml =
      "<R><Credentials><AccessKeyId>AK</AccessKeyId><SecretAccessKey>a&amp;b&lt;c&#47;d"
      "</SecretAccessKey></Credentials><Code/></R>";
  EXPECT_EQ(internal::XmlText(xml, "AccessKeyId"), "AK");
  EXPECT_EQ(internal::XmlText(xml, "SecretAccessKey"), "a&b<c/d");
  EXPECT_EQ(internal::XmlText(xml, "Code"), "");
  EXPECT_EQ(internal::XmlText(xml, "Credential"), std::nullopt);  // prefix of another tag
  EXPECT_EQ(internal::XmlText(xml, "Missing"), std::nullopt);
}

TEST(CredentialsInternal, FormEncodesReservedCharacters) {
  EXPECT_EQ(internal::FormEncode("arn:aws:iam::1:role/a b+c=d&e~f"),
            "arn%3Aaws%3Aiam%3A%3A1%3Arole%2Fa%20b%2Bc%3Dd%26e~f");
}

// ---- environment provider ---------------------------------------------------------------------

TEST(EnvironmentProvider, ReadsKeysAndSessionToken) {
  FakeEnv env;
  env["AWS_ACCESS_KEY_ID"] = "AKID";
  env["AWS_SECRET_ACCESS_KEY"] = "SECRET";
  env["AWS_SESSION_TOKEN"] = "SESSION";
  std::string why;
  std::optional<Credentials> creds = MakeEnvironmentProvider(env.get())->fetch(Soon(), &why);
  ASSERT_TRUE(creds) << why;
  EXPECT_EQ(creds->access_key_id, "AKID");
  EXPECT_EQ(creds->secret_access_key, "SECRET");
  EXPECT_EQ(creds->session_token, "SESSION");
  EXPECT_FALSE(creds->expires);
}

TEST(EnvironmentProvider, RefusesIncompleteKeysAndSaysWhy) {
  FakeEnv env;
  auto provider = MakeEnvironmentProvider(env.get());
  std::string why;
  EXPECT_FALSE(provider->fetch(Soon(), &why));
  EXPECT_EQ(why, "AWS_ACCESS_KEY_ID is not set");
  env["AWS_ACCESS_KEY_ID"] = "AKID";
  EXPECT_FALSE(provider->fetch(Soon(), &why));
  EXPECT_EQ(why, "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not");
  env["AWS_SECRET_ACCESS_KEY"] = "";  // empty counts as unset
  EXPECT_FALSE(provider->fetch(Soon(), &why));
  env["AWS_SECRET_ACCESS_KEY"] = "SECRET";
  std::optional<Credentials> creds = provider->fetch(Soon(), &why);
  ASSERT_TRUE(creds);
  EXPECT_EQ(creds->session_token, "");
}

// ---- shared-file provider ---------------------------------------------------------------------

class SharedFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    env.home = dir.path();
    std::filesystem::create_directories(dir.path() + "/.aws");
  }
  std::string CredentialsPath() const { return dir.path() + "/.aws/credentials"; }
  std::string ConfigPath() const { return dir.path() + "/.aws/config"; }
  std::optional<Credentials> Fetch(std::string* why) {
    return MakeSharedFileProvider(env.get())->fetch(Soon(), why);
  }

  leasefs::testing::TempDir dir;
  FakeEnv env;
};

TEST_F(SharedFileTest, DefaultProfileFromCredentialsFile) {
  WriteFile(CredentialsPath(),
            "[default]\naws_access_key_id = AKDEFAULT\naws_secret_access_key = SDEFAULT\n"
            "aws_session_token = TDEFAULT\n\n[other]\naws_access_key_id = AKOTHER\n"
            "aws_secret_access_key = SOTHER\n");
  std::string why;
  std::optional<Credentials> creds = Fetch(&why);
  ASSERT_TRUE(creds) << why;
  EXPECT_EQ(creds->access_key_id, "AKDEFAULT");
  EXPECT_EQ(creds->secret_access_key, "SDEFAULT");
  EXPECT_EQ(creds->session_token, "TDEFAULT");
  EXPECT_FALSE(creds->expires);
}

TEST_F(SharedFileTest, AwsProfileSelectsTheProfile) {
  WriteFile(CredentialsPath(),
            "[default]\naws_access_key_id = AKDEFAULT\naws_secret_access_key = SDEFAULT\n"
            "[other]\naws_access_key_id = AKOTHER\naws_secret_access_key = SOTHER\n");
  env["AWS_PROFILE"] = "other";
  std::string why;
  std::optional<Credentials> creds = Fetch(&why);
  ASSERT_TRUE(creds) << why;
  EXPECT_EQ(creds->access_key_id, "AKOTHER");
  EXPECT_EQ(creds->session_token, "");
}

TEST_F(SharedFileTest, ConfigFileUsesProfilePrefixExceptForDefault) {
  WriteFile(ConfigPath(),
            "[default]\naws_access_key_id = AKCFGDEFAULT\naws_secret_access_key = S1\n"
            "[dev]\naws_access_key_id = AKWRONG\naws_secret_access_key = S2\n"
            "[profile   dev]\naws_access_key_id = AKCFGDEV\naws_secret_access_key = S3\n");
  std::string why;
  std::optional<Credentials> creds = Fetch(&why);
  ASSERT_TRUE(creds) << why;
  EXPECT_EQ(creds->access_key_id, "AKCFGDEFAULT");
  env["AWS_PROFILE"] = "dev";
  creds = Fetch(&why);
  ASSERT_TRUE(creds) << why;
  EXPECT_EQ(creds->access_key_id, "AKCFGDEV");  // [dev] is not a profile in config
}

TEST_F(SharedFileTest, CredentialsFileWinsOverConfig) {
  WriteFile(CredentialsPath(), "[dev]\naws_access_key_id = AKCREDS\naws_secret_access_key = S\n");
  WriteFile(ConfigPath(),
            "[profile dev]\naws_access_key_id = AKCONFIG\naws_secret_access_key = S\n"
            "region = eu-west-1\n");
  env["AWS_PROFILE"] = "dev";
  std::string why;
  std::optional<Credentials> creds = Fetch(&why);
  ASSERT_TRUE(creds) << why;
  EXPECT_EQ(creds->access_key_id, "AKCREDS");
}

TEST_F(SharedFileTest, ConfigServesAProfileTheCredentialsFileLacks) {
  WriteFile(CredentialsPath(), "[default]\naws_access_key_id = AKD\naws_secret_access_key = S\n");
  WriteFile(ConfigPath(),
            "[profile dev]\naws_access_key_id = AKCONFIG\naws_secret_access_key = S\n");
  env["AWS_PROFILE"] = "dev";
  std::string why;
  std::optional<Credentials> creds = Fetch(&why);
  ASSERT_TRUE(creds) << why;
  EXPECT_EQ(creds->access_key_id, "AKCONFIG");
}

TEST_F(SharedFileTest, FileLocationsFromTheEnvironment) {
  WriteFile(dir.path() + "/creds.ini",
            "[default]\naws_access_key_id = AKELSEWHERE\naws_secret_access_key = S\n");
  WriteFile(CredentialsPath(),
            "[default]\naws_access_key_id = AKHOME\naws_secret_access_key = S\n");
  env["AWS_SHARED_CREDENTIALS_FILE"] = "~/creds.ini";  // ~ is the environment's home
  std::string why;
  std::optional<Credentials> creds = Fetch(&why);
  ASSERT_TRUE(creds) << why;
  EXPECT_EQ(creds->access_key_id, "AKELSEWHERE");

  env["AWS_SHARED_CREDENTIALS_FILE"] = dir.path() + "/none";
  env["AWS_CONFIG_FILE"] = dir.path() + "/config.ini";
  WriteFile(dir.path() + "/config.ini",
            "[default]\naws_access_key_id = AKCONFIGFILE\naws_secret_access_key = S\n");
  creds = Fetch(&why);
  ASSERT_TRUE(creds) << why;
  EXPECT_EQ(creds->access_key_id, "AKCONFIGFILE");
}

TEST_F(SharedFileTest, RefusalNamesBothFilesAndTheProfile) {
  WriteFile(CredentialsPath(), "[default]\naws_access_key_id = AKD\naws_secret_access_key = S\n");
  env["AWS_PROFILE"] = "prod";
  std::string why;
  EXPECT_FALSE(Fetch(&why));
  EXPECT_EQ(
      why, "no profile \"prod\" in " + CredentialsPath() + "; " + ConfigPath() + " does not exist");
}

TEST_F(SharedFileTest, UnsupportedProfileKindsAreNamed) {
  WriteFile(ConfigPath(),
            "[profile proc]\ncredential_process = /bin/creds\n"
            "[profile half]\naws_access_key_id = AK\n");
  env["AWS_PROFILE"] = "proc";
  std::string why;
  EXPECT_FALSE(Fetch(&why));
  EXPECT_NE(why.find("credential_process, which leasefs does not support"), std::string::npos)
      << why;
  env["AWS_PROFILE"] = "half";
  EXPECT_FALSE(Fetch(&why));
  EXPECT_NE(why.find("only one of aws_access_key_id and aws_secret_access_key"), std::string::npos)
      << why;
  EXPECT_EQ(why.find("AK\""), std::string::npos);  // values are never quoted
}

// ---- the chain (local providers) --------------------------------------------------------------

TEST_F(SharedFileTest, ChainPrefersEnvironmentOverSharedFile) {
  WriteFile(CredentialsPath(),
            "[default]\naws_access_key_id = AKFILE\naws_secret_access_key = S\n");
  env["AWS_ACCESS_KEY_ID"] = "AKENV";
  env["AWS_SECRET_ACCESS_KEY"] = "SENV";
  env["AWS_EC2_METADATA_DISABLED"] = "true";
  auto chain = MakeDefaultChain(env.get(), nullptr);
  std::string why;
  std::optional<Credentials> creds = chain->fetch(Soon(), &why);
  ASSERT_TRUE(creds) << why;
  EXPECT_EQ(creds->access_key_id, "AKENV");
  EXPECT_EQ(chain->name(), "chain(environment)");

  FakeEnv without_env_keys;
  without_env_keys.home = env.home;
  without_env_keys["AWS_EC2_METADATA_DISABLED"] = "true";
  chain = MakeDefaultChain(without_env_keys.get(), nullptr);
  creds = chain->fetch(Soon(), &why);
  ASSERT_TRUE(creds) << why;
  EXPECT_EQ(creds->access_key_id, "AKFILE");
  EXPECT_EQ(chain->name(), "chain(shared-file)");
}

TEST_F(SharedFileTest, ChainExplainsEveryRefusal) {
  env["AWS_EC2_METADATA_DISABLED"] = "TRUE";
  auto chain = MakeDefaultChain(env.get(), nullptr);
  std::string why;
  EXPECT_FALSE(chain->fetch(Soon(), &why));
  EXPECT_EQ(why,
            "environment: AWS_ACCESS_KEY_ID is not set; "
            "web-identity: AWS_WEB_IDENTITY_TOKEN_FILE is not set (nor web_identity_token_file in "
            "profile \"default\"); "
            "shared-file: " +
                CredentialsPath() + " does not exist; " + ConfigPath() +
                " does not exist; "
                "ecs: AWS_CONTAINER_CREDENTIALS_RELATIVE_URI and _FULL_URI are not set; "
                "imds: disabled by AWS_EC2_METADATA_DISABLED");
  EXPECT_EQ(chain->name(), "chain");
}

TEST_F(SharedFileTest, ChainSticksToTheProviderThatYielded) {
  WriteFile(CredentialsPath(),
            "[default]\naws_access_key_id = AKFILE\naws_secret_access_key = S\n");
  env["AWS_ACCESS_KEY_ID"] = "AKENV";
  env["AWS_SECRET_ACCESS_KEY"] = "SENV";
  env["AWS_EC2_METADATA_DISABLED"] = "true";
  auto chain = MakeDefaultChain(env.get(), nullptr);
  std::string why;
  ASSERT_TRUE(chain->fetch(Soon(), &why));
  env.vars->erase("AWS_ACCESS_KEY_ID");
  // The environment no longer yields; the chain does not switch identity to the shared file.
  EXPECT_FALSE(chain->fetch(Soon(), &why));
  EXPECT_EQ(why, "environment: AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not");
}

// ---- the cache --------------------------------------------------------------------------------

CredentialCache::Options FastOptions() {
  CredentialCache::Options options;
  options.refresh_before = 300s;
  options.retry_min = 10ms;
  options.retry_max = 40ms;
  return options;
}

TEST(CredentialCache, StartFailsWithTheProvidersReason) {
  auto [provider, state] = MakeFake([](int, std::string* why) {
    *why = "nothing configured";
    return std::nullopt;
  });
  CredentialCache cache(std::move(provider), FastOptions());
  std::string why;
  EXPECT_FALSE(cache.start(&why));
  EXPECT_EQ(why, "nothing configured");
  EXPECT_FALSE(cache.current());
}

TEST(CredentialCache, StartRefusesExpiredCredentials) {
  auto [provider, state] = MakeFake(
      [](int, std::string*) { return Creds("OLD", std::chrono::system_clock::now() - 1s); });
  CredentialCache cache(std::move(provider), FastOptions());
  std::string why;
  EXPECT_FALSE(cache.start(&why));
  EXPECT_NE(why.find("expired"), std::string::npos) << why;
}

TEST(CredentialCache, CredentialsWithoutExpiryAreFetchedOnce) {
  auto [provider, state] = MakeFake([](int, std::string*) { return Creds("STATIC"); });
  {
    CredentialCache cache(std::move(provider), FastOptions());
    std::string why;
    ASSERT_TRUE(cache.start(&why)) << why;
    EXPECT_EQ(CurrentId(cache), "STATIC");
    EXPECT_TRUE(cache.start(&why));  // a second start is a no-op
  }
  EXPECT_EQ(state->Calls(), 1);
}

TEST(CredentialCache, RefreshesInTheBackgroundBeforeExpiry) {
  const WallTime first_expiry = std::chrono::system_clock::now() + 300s + 100ms;
  auto [provider, state] = MakeFake([&](int call, std::string*) {
    return call == 1 ? Creds("FIRST", first_expiry)
                     : Creds("SECOND", std::chrono::system_clock::now() + 1h);
  });
  CredentialCache cache(std::move(provider), FastOptions());
  std::string why;
  ASSERT_TRUE(cache.start(&why)) << why;
  EXPECT_EQ(CurrentId(cache), "FIRST");
  ASSERT_TRUE(state->WaitForCalls(2));
  // The refresh began inside the window and long before the old credentials expired.
  EXPECT_LT(state->CallTimes()[1], first_expiry - 200s);
  EXPECT_GE(state->CallTimes()[1], first_expiry - 300s);
  ASSERT_TRUE(WaitUntil([&] { return CurrentId(cache) == "SECOND"; }));
  EXPECT_EQ(cache.current()->secret_access_key, "secret-SECOND");
  EXPECT_EQ(state->Calls(), 2);  // the next refresh is ~55 minutes away
}

TEST(CredentialCache, CurrentNeverWaitsForARefreshInProgress) {
  auto [provider, state] = MakeFake([](int call, std::string*) {
    return call == 1 ? Creds("OLD", std::chrono::system_clock::now() + 300s + 20ms)
                     : Creds("NEW", std::chrono::system_clock::now() + 1h);
  });
  state->gated.insert(2);  // the refresh blocks until the test opens the gate
  OpenOnExit open_on_exit{state};
  CredentialCache cache(std::move(provider), FastOptions());
  std::string why;
  ASSERT_TRUE(cache.start(&why)) << why;
  ASSERT_TRUE(state->WaitForCalls(2));  // the refresher is now inside fetch(), held at the gate

  // current() from another thread, so that a current() that blocked would fail this test (after
  // the bound) instead of deadlocking it.
  for (int i = 0; i < 3; i++) {
    auto result = std::async(std::launch::async, [&] { return CurrentId(cache); });
    ASSERT_EQ(result.wait_for(kBound), std::future_status::ready) << "current() blocked";
    EXPECT_EQ(result.get(), "OLD");
  }
  EXPECT_EQ(CurrentId(cache), "OLD");
  state->Open();
  ASSERT_TRUE(WaitUntil([&] { return CurrentId(cache) == "NEW"; }));
}

TEST(CredentialCache, FailedRefreshKeepsOldCredentialsAndRetriesWithBackoff) {
  auto [provider, state] = MakeFake([](int call, std::string* why) -> std::optional<Credentials> {
    if (call == 1) return Creds("OLD", std::chrono::system_clock::now() + 300s + 20ms);
    if (call <= 4) {
      *why = "service unavailable";
      return std::nullopt;
    }
    return Creds("NEW", std::chrono::system_clock::now() + 1h);
  });
  CredentialCache cache(std::move(provider), FastOptions());
  std::string why;
  ASSERT_TRUE(cache.start(&why)) << why;
  ASSERT_TRUE(state->WaitForCalls(3));
  EXPECT_EQ(CurrentId(cache), "OLD");  // still valid: kept through the failures
  ASSERT_TRUE(state->WaitForCalls(5));
  ASSERT_TRUE(WaitUntil([&] { return CurrentId(cache) == "NEW"; }));
  // Failures at calls 2, 3, 4 were followed by waits of retry_min, 2*retry_min, then retry_max.
  std::vector<WallTime> times = state->CallTimes();
  ASSERT_GE(times.size(), 5u);
  EXPECT_GE(times[2] - times[1], 10ms);
  EXPECT_GE(times[3] - times[2], 20ms);
  EXPECT_GE(times[4] - times[3], 40ms);
}

TEST(CredentialCache, ExpiredCredentialsAreNotReturned) {
  // A wall clock the test moves, so expiry needs no waiting. The refresher sleeps (in real
  // time) until the refresh window this clock puts ~55 minutes away, so it never runs here.
  auto clock = std::make_shared<std::atomic<int64_t>>(1'700'000'000);
  auto now = [clock] { return WallTime(seconds(clock->load())); };
  auto [provider, state] = MakeFake([now](int, std::string*) { return Creds("A", now() + 1h); });
  CredentialCache::Options options = FastOptions();
  options.now = now;
  CredentialCache cache(std::move(provider), options);
  std::string why;
  ASSERT_TRUE(cache.start(&why)) << why;
  EXPECT_EQ(CurrentId(cache), "A");
  clock->fetch_add(3599);
  EXPECT_EQ(CurrentId(cache), "A");
  clock->fetch_add(1);
  EXPECT_FALSE(cache.current());
  EXPECT_EQ(state->Calls(), 1);
}

TEST(CredentialCache, ShortLivedCredentialsAreRefreshedBeforeTheyExpire) {
  // Lifetime (1 s) shorter than refresh_before (300 s): refreshed at half the time left.
  auto [provider, state] = MakeFake([](int call, std::string*) {
    return Creds(call == 1 ? "SHORT" : "NEXT", std::chrono::system_clock::now() + 1s);
  });
  CredentialCache cache(std::move(provider), FastOptions());
  std::string why;
  ASSERT_TRUE(cache.start(&why)) << why;
  ASSERT_TRUE(state->WaitForCalls(2));
  std::vector<WallTime> times = state->CallTimes();
  EXPECT_GE(times[1] - times[0], 400ms);
  EXPECT_LT(times[1] - times[0], 1s);
}

// ---- providers over HTTP, against a local server playing the service ---------------------------

using leasefs::testing::HttpTestReply;
using leasefs::testing::HttpTestRequest;
using leasefs::testing::HttpTestServer;

std::map<std::string, std::string> ParseForm(const std::string& body) {
  auto decode = [](const std::string& text) {
    std::string out;
    for (size_t i = 0; i < text.size(); i++) {
      if (text[i] == '+') {
        out += ' ';
      } else if (text[i] == '%' && i + 2 < text.size()) {
        out += static_cast<char>(std::stoi(text.substr(i + 1, 2), nullptr, 16));
        i += 2;
      } else {
        out += text[i];
      }
    }
    return out;
  };
  std::map<std::string, std::string> form;
  size_t pos = 0;
  while (pos <= body.size()) {
    size_t end = body.find('&', pos);
    if (end == std::string::npos) end = body.size();
    std::string pair = body.substr(pos, end - pos);
    size_t eq = pair.find('=');
    if (!pair.empty())
      form[decode(pair.substr(0, eq))] = eq == std::string::npos ? "" : decode(pair.substr(eq + 1));
    pos = end + 1;
  }
  return form;
}

HttpTestReply Reply(int status, std::string body, std::string content_type = "application/json") {
  HttpTestReply reply;
  reply.status = status;
  reply.body = std::move(body);
  reply.headers = {{"Content-Type", std::move(content_type)}};
  return reply;
}

std::string StsAnswer(const std::string& id, const std::string& expiration) {
  return "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n"
         "  <AssumeRoleWithWebIdentityResult>\n"
         "    "
         "<SubjectFromWebIdentityToken>system:serviceaccount:ns:sa</SubjectFromWebIdentityToken>\n"
         "    <Audience>sts.amazonaws.com</Audience>\n"
         "    <AssumedRoleUser>\n"
         "      <Arn>arn:aws:sts::123456789012:assumed-role/leasefs/node-1</Arn>\n"
         "      <AssumedRoleId>AROA:node-1</AssumedRoleId>\n"
         "    </AssumedRoleUser>\n"
         "    <Credentials>\n"
         "      <SessionToken>FwoGZXIvYXdzE&amp;session</SessionToken>\n"
         "      <SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCYsecret</SecretAccessKey>\n"
         "      <Expiration>" +
         expiration +
         "</Expiration>\n"
         "      <AccessKeyId>" +
         id +
         "</AccessKeyId>\n"
         "    </Credentials>\n"
         "    <Provider>oidc.example.com</Provider>\n"
         "  </AssumeRoleWithWebIdentityResult>\n"
         "  <ResponseMetadata><RequestId>1</RequestId></ResponseMetadata>\n"
         "</AssumeRoleWithWebIdentityResponse>\n";
}

std::string JsonCredentials(const std::string& id, const std::string& expiration) {
  nlohmann::json doc = {{"AccessKeyId", id},
                        {"SecretAccessKey", "secret-" + id},
                        {"Token", "token-" + id},
                        {"Expiration", expiration}};
  return doc.dump();
}

// An STS, ECS agent and IMDS all in one local server; each test installs the handler it needs.
class RemoteTest : public ::testing::Test {
 protected:
  void SetUp() override {
    env.home = dir.path();
    std::filesystem::create_directories(dir.path() + "/.aws");
    // Whatever a test configures, no provider ever reaches for the real link-local services.
    env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = server.url("/no-imds");
    env["LEASEFS_ECS_CONTAINER_ENDPOINT"] = server.url("/no-ecs");
  }
  void TearDown() override { http.reset(); }  // clients go before the server (see its header)

  std::optional<Credentials> Fetch(CredentialProvider& provider, std::string* why) {
    return provider.fetch(Soon(), why);
  }
  std::string Path(const std::string& name) const { return dir.path() + "/" + name; }

  leasefs::testing::TempDir dir;
  FakeEnv env;
  HttpTestServer server;
  std::shared_ptr<HttpClient> http = std::make_shared<HttpClient>();
};

const char kRoleArn[] = "arn:aws:iam::123456789012:role/leasefs";
const char kExpiration[] = "2030-01-02T03:04:05Z";

// STS that answers only a well-formed AssumeRoleWithWebIdentity carrying `token`.
HttpTestServer::Handler Sts(std::string token, std::string session_name) {
  return [token, session_name](const HttpTestRequest& request) {
    std::map<std::string, std::string> form = ParseForm(request.body);
    std::vector<std::string> wrong;
    if (request.method != "POST") wrong.push_back("method " + request.method);
    if (request.target != "/") wrong.push_back("target " + request.target);
    if (request.header("Content-Type").rfind("application/x-www-form-urlencoded", 0) != 0)
      wrong.push_back("content type " + request.header("Content-Type"));
    if (!request.header("Authorization").empty()) wrong.push_back("signed");
    if (form["Action"] != "AssumeRoleWithWebIdentity") wrong.push_back("Action");
    if (form["Version"] != "2011-06-15") wrong.push_back("Version");
    if (form["RoleArn"] != kRoleArn) wrong.push_back("RoleArn " + form["RoleArn"]);
    if (session_name.empty() ? form["RoleSessionName"].rfind("leasefs-", 0) != 0
                             : form["RoleSessionName"] != session_name)
      wrong.push_back("RoleSessionName " + form["RoleSessionName"]);
    if (form["WebIdentityToken"] != token) wrong.push_back("WebIdentityToken");
    if (!wrong.empty()) {
      std::string what;
      for (const auto& w : wrong) what += w + ";";
      return Reply(400,
                   "<ErrorResponse><Error><Type>Sender</Type><Code>TestMismatch</Code><Message>" +
                       what + "</Message></Error></ErrorResponse>",
                   "text/xml");
    }
    return Reply(200, StsAnswer("ASIASTS", kExpiration), "text/xml");
  };
}

TEST_F(RemoteTest, WebIdentityExchangesTheTokenAtSts) {
  const std::string token = "eyJhbGciOi.JSUzI1+NiIs/In=R5cCI6";
  WriteFile(Path("token"), token + "\n");
  env["AWS_WEB_IDENTITY_TOKEN_FILE"] = Path("token");
  env["AWS_ROLE_ARN"] = kRoleArn;
  env["AWS_ROLE_SESSION_NAME"] = "node-1";
  env["AWS_ENDPOINT_URL_STS"] = server.url("/");
  server.set_handler(Sts(token, "node-1"));
  std::string why;
  auto provider = MakeWebIdentityProvider(env.get(), http);
  std::optional<Credentials> creds = Fetch(*provider, &why);
  ASSERT_TRUE(creds) << why;
  EXPECT_EQ(creds->access_key_id, "ASIASTS");
  EXPECT_EQ(creds->secret_access_key, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYsecret");
  EXPECT_EQ(creds->session_token, "FwoGZXIvYXdzE&session");
  ASSERT_TRUE(creds->expires);
  EXPECT_EQ(*creds->expires, WallTime(seconds(1893553445)));  // 2030-01-02T03:04:05Z
  ASSERT_EQ(server.requests().size(), 1u);
  std::map<std::string, std::string> form = ParseForm(server.requests()[0].body);
  EXPECT_EQ(form["WebIdentityToken"], token);
  EXPECT_EQ(form["RoleArn"], kRoleArn);
  EXPECT_EQ(form.size(), 5u);
}

TEST_F(RemoteTest, WebIdentityFromTheProfileWithADefaultSessionName) {
  WriteFile(Path("token"), "profile-token");
  WriteFile(Path(".aws/config"), "[profile ci]\nweb_identity_token_file = ~/token\nrole_arn = " +
                                     std::string(kRoleArn) + "\n");
  env["AWS_PROFILE"] = "ci";
  env["AWS_ENDPOINT_URL"] = server.url("/");  // the generic override serves STS too
  server.set_handler(Sts("profile-token", ""));
  std::string why;
  std::optional<Credentials> creds = Fetch(*MakeWebIdentityProvider(env.get(), http), &why);
  ASSERT_TRUE(creds) << why;
  EXPECT_EQ(creds->access_key_id, "ASIASTS");
}

TEST_F(RemoteTest, WebIdentityReportsStsErrorsWithoutTheToken) {
  WriteFile(Path("token"), "secret-oidc-token");
  env["AWS_WEB_IDENTITY_TOKEN_FILE"] = Path("token");
  env["AWS_ROLE_ARN"] = kRoleArn;
  env["AWS_ENDPOINT_URL_STS"] = server.url("/");
  server.set_handler([](const HttpTestRequest&) {
    return Reply(403,
                 "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error>"
                 "<Type>Sender</Type><Code>AccessDenied</Code><Message>Not authorized to perform "
                 "sts:AssumeRoleWithWebIdentity</Message></Error><RequestId>x</RequestId>"
                 "</ErrorResponse>",
                 "text/xml");
  });
  std::string why;
  EXPECT_FALSE(Fetch(*MakeWebIdentityProvider(env.get(), http), &why));
  EXPECT_NE(why.find("HTTP 403 AccessDenied: Not authorized to perform "
                     "sts:AssumeRoleWithWebIdentity"),
            std::string::npos)
      << why;
  EXPECT_EQ(why.find("secret-oidc-token"), std::string::npos) << why;
  EXPECT_EQ(server.requests().size(), 1u);  // 403 is not retried
}

TEST_F(RemoteTest, WebIdentityNeedsARoleArn) {
  WriteFile(Path("token"), "t");
  env["AWS_WEB_IDENTITY_TOKEN_FILE"] = Path("token");
  std::string why;
  EXPECT_FALSE(Fetch(*MakeWebIdentityProvider(env.get(), http), &why));
  EXPECT_EQ(why, "AWS_WEB_IDENTITY_TOKEN_FILE is set but AWS_ROLE_ARN is not");
  EXPECT_TRUE(server.requests().empty());
}

// The ECS agent: answers `path` only with Authorization `token`.
HttpTestServer::Handler Ecs(std::string path, std::string token) {
  return [path, token](const HttpTestRequest& request) {
    if (request.method != "GET" || request.target != path) return Reply(404, "");
    if (request.header("Authorization") != token)
      return Reply(401, "{\"message\": \"bad authorization\"}");
    return Reply(200, JsonCredentials("ASIAECS", kExpiration));
  };
}

TEST_F(RemoteTest, EcsRelativeUriWithAuthorizationToken) {
  env["LEASEFS_ECS_CONTAINER_ENDPOINT"] = server.url("");
  env["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"] = "/v2/credentials/8f1e";
  env["AWS_CONTAINER_AUTHORIZATION_TOKEN"] = "Basic ecs-token";
  server.set_handler(Ecs("/v2/credentials/8f1e", "Basic ecs-token"));
  std::string why;
  std::optional<Credentials> creds = Fetch(*MakeEcsProvider(env.get(), http), &why);
  ASSERT_TRUE(creds) << why;
  EXPECT_EQ(creds->access_key_id, "ASIAECS");
  EXPECT_EQ(creds->secret_access_key, "secret-ASIAECS");
  EXPECT_EQ(creds->session_token, "token-ASIAECS");
  EXPECT_EQ(creds->expires, internal::ParseIso8601(kExpiration));
}

TEST_F(RemoteTest, EcsFullUriWithTokenFileWhichWinsOverTheVariable) {
  WriteFile(Path("eks-token"), "eks-pod-identity-token\n");
  env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] = server.url("/v1/credentials");
  env["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"] = Path("eks-token");
  env["AWS_CONTAINER_AUTHORIZATION_TOKEN"] = "stale-variable-token";
  server.set_handler(Ecs("/v1/credentials", "eks-pod-identity-token"));
  auto provider = MakeEcsProvider(env.get(), http);
  std::string why;
  std::optional<Credentials> creds = Fetch(*provider, &why);
  ASSERT_TRUE(creds) << why;
  EXPECT_EQ(creds->access_key_id, "ASIAECS");

  // The file is read at every fetch: a rotated token is used by the next refresh.
  WriteFile(Path("eks-token"), "rotated-token");
  server.set_handler(Ecs("/v1/credentials", "rotated-token"));
  EXPECT_TRUE(Fetch(*provider, &why)) << why;
}

TEST_F(RemoteTest, EcsRejectionIsReportedWithoutTheToken) {
  env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] = server.url("/v1/credentials");
  env["AWS_CONTAINER_AUTHORIZATION_TOKEN"] = "wrong-token";
  server.set_handler(Ecs("/v1/credentials", "right-token"));
  std::string why;
  EXPECT_FALSE(Fetch(*MakeEcsProvider(env.get(), http), &why));
  EXPECT_NE(why.find("HTTP 401"), std::string::npos) << why;
  EXPECT_EQ(why.find("wrong-token"), std::string::npos) << why;
}

TEST_F(RemoteTest, EcsRefusesPlainHttpToOtherHosts) {
  env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] = "http://198.51.100.7/creds";
  env["AWS_CONTAINER_AUTHORIZATION_TOKEN"] = "token";
  std::string why;
  EXPECT_FALSE(Fetch(*MakeEcsProvider(env.get(), http), &why));
  EXPECT_NE(why.find("plain http"), std::string::npos) << why;
}

const char kImdsToken[] = "AQAEAImdsSessionToken==";
const char kImdsRole[] = "/latest/meta-data/iam/security-credentials/";

// IMDSv2: a session token first, then every metadata GET must carry it.
HttpTestServer::Handler Imds(std::function<std::string()> credentials) {
  return [credentials](const HttpTestRequest& request) {
    if (request.target == "/latest/api/token") {
      if (request.method != "PUT") return Reply(405, "");
      if (request.header("X-aws-ec2-metadata-token-ttl-seconds") != "21600") return Reply(400, "");
      return Reply(200, kImdsToken, "text/plain");
    }
    if (request.method != "GET") return Reply(405, "");
    if (request.header("X-aws-ec2-metadata-token") != kImdsToken) return Reply(401, "");
    if (request.target == kImdsRole) return Reply(200, "leasefs-node-role\n", "text/plain");
    if (request.target == std::string(kImdsRole) + "leasefs-node-role")
      return Reply(200, credentials());
    return Reply(404, "");
  };
}

std::string ImdsCredentials(const std::string& id, const std::string& expiration) {
  nlohmann::json doc = nlohmann::json::parse(JsonCredentials(id, expiration));
  doc["Code"] = "Success";
  doc["LastUpdated"] = "2029-12-31T21:00:00Z";
  doc["Type"] = "AWS-HMAC";
  return doc.dump();
}

TEST_F(RemoteTest, ImdsV2TokenFlow) {
  env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = server.url("/");
  server.set_handler(Imds([] { return ImdsCredentials("ASIAIMDS", kExpiration); }));
  std::string why;
  std::optional<Credentials> creds = Fetch(*MakeImdsProvider(env.get(), http), &why);
  ASSERT_TRUE(creds) << why;
  EXPECT_EQ(creds->access_key_id, "ASIAIMDS");
  EXPECT_EQ(creds->session_token, "token-ASIAIMDS");
  EXPECT_EQ(creds->expires, internal::ParseIso8601(kExpiration));
  std::vector<HttpTestRequest> requests = server.requests();
  ASSERT_EQ(requests.size(), 3u);
  EXPECT_EQ(requests[0].method + " " + requests[0].target, "PUT /latest/api/token");
  EXPECT_EQ(requests[1].method + " " + requests[1].target, std::string("GET ") + kImdsRole);
  EXPECT_EQ(requests[2].method + " " + requests[2].target,
            std::string("GET ") + kImdsRole + "leasefs-node-role");
  EXPECT_EQ(requests[2].header("X-aws-ec2-metadata-token"), kImdsToken);
}

TEST_F(RemoteTest, ImdsDisabledSendsNothing) {
  env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = server.url("/");
  env["AWS_EC2_METADATA_DISABLED"] = "true";
  server.set_handler(Imds([] { return ImdsCredentials("ASIAIMDS", kExpiration); }));
  std::string why;
  EXPECT_FALSE(Fetch(*MakeImdsProvider(env.get(), http), &why));
  EXPECT_EQ(why, "disabled by AWS_EC2_METADATA_DISABLED");
  EXPECT_TRUE(server.requests().empty());
}

TEST_F(RemoteTest, ImdsWithoutARole) {
  env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = server.url("/");
  server.set_handler([](const HttpTestRequest& request) {
    if (request.target == "/latest/api/token") return Reply(200, kImdsToken, "text/plain");
    return Reply(404, "");
  });
  std::string why;
  EXPECT_FALSE(Fetch(*MakeImdsProvider(env.get(), http), &why));
  EXPECT_NE(why.find("no IAM role"), std::string::npos) << why;
}

TEST_F(RemoteTest, ImdsIsV2Only) {
  // A token request refused (IMDSv1-only or a hop limit too low): no unauthenticated fallback.
  env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = server.url("/");
  server.set_handler([](const HttpTestRequest&) { return Reply(403, ""); });
  std::string why;
  EXPECT_FALSE(Fetch(*MakeImdsProvider(env.get(), http), &why));
  EXPECT_NE(why.find("no IMDSv2 session token"), std::string::npos) << why;
  EXPECT_EQ(server.requests().size(), 1u);
}

TEST_F(RemoteTest, ImdsGivesUpQuicklyWhenNothingAnswers) {
  env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = server.url("/");
  server.set_handler([](const HttpTestRequest&) {
    HttpTestReply reply = Reply(200, kImdsToken, "text/plain");
    reply.delay = 30s;  // cut short when the server goes
    return reply;
  });
  std::string why;
  auto start = std::chrono::steady_clock::now();
  // The caller's deadline is far; the provider's own 1 s per request is what ends it.
  EXPECT_FALSE(MakeImdsProvider(env.get(), http)->fetch(start + 60s, &why));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s) << why;
  EXPECT_NE(why.find("no IMDSv2 session token"), std::string::npos) << why;
}

// ---- the chain over all five ------------------------------------------------------------------

TEST_F(RemoteTest, ChainOrderWebIdentityBeforeSharedFile) {
  WriteFile(Path("token"), "tok");
  WriteFile(Path(".aws/credentials"),
            "[default]\naws_access_key_id = AKFILE\n"
            "aws_secret_access_key = S\n");
  env["AWS_WEB_IDENTITY_TOKEN_FILE"] = Path("token");
  env["AWS_ROLE_ARN"] = kRoleArn;
  env["AWS_ROLE_SESSION_NAME"] = "s";
  env["AWS_ENDPOINT_URL_STS"] = server.url("/");
  server.set_handler(Sts("tok", "s"));
  auto chain = MakeDefaultChain(env.get(), http);
  std::string why;
  std::optional<Credentials> creds = chain->fetch(Soon(), &why);
  ASSERT_TRUE(creds) << why;
  EXPECT_EQ(creds->access_key_id, "ASIASTS");
  EXPECT_EQ(chain->name(), "chain(web-identity)");
}

TEST_F(RemoteTest, ChainOrderSharedFileBeforeEcsAndImds) {
  WriteFile(Path(".aws/credentials"),
            "[default]\naws_access_key_id = AKFILE\n"
            "aws_secret_access_key = S\n");
  env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] = server.url("/ecs");
  env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = server.url("/");
  std::string why;
  std::optional<Credentials> creds = MakeDefaultChain(env.get(), http)->fetch(Soon(), &why);
  ASSERT_TRUE(creds) << why;
  EXPECT_EQ(creds->access_key_id, "AKFILE");
  EXPECT_TRUE(server.requests().empty());
}

TEST_F(RemoteTest, ChainOrderEcsBeforeImds) {
  env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] = server.url("/ecs");
  env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = server.url("/");
  auto imds = Imds([] { return ImdsCredentials("ASIAIMDS", kExpiration); });
  server.set_handler([imds](const HttpTestRequest& request) {
    if (request.target == "/ecs") return Reply(200, JsonCredentials("ASIAECS", kExpiration));
    return imds(request);
  });
  auto chain = MakeDefaultChain(env.get(), http);
  std::string why;
  std::optional<Credentials> creds = chain->fetch(Soon(), &why);
  ASSERT_TRUE(creds) << why;
  EXPECT_EQ(creds->access_key_id, "ASIAECS");
  ASSERT_EQ(server.requests().size(), 1u);

  // Without ECS, IMDS is the last resort.
  env.vars->erase("AWS_CONTAINER_CREDENTIALS_FULL_URI");
  chain = MakeDefaultChain(env.get(), http);
  creds = chain->fetch(Soon(), &why);
  ASSERT_TRUE(creds) << why;
  EXPECT_EQ(creds->access_key_id, "ASIAIMDS");
  EXPECT_EQ(chain->name(), "chain(imds)");
}

TEST_F(RemoteTest, ChainMovesPastAFailingProviderAndReportsEveryReason) {
  WriteFile(Path("token"), "tok");
  env["AWS_WEB_IDENTITY_TOKEN_FILE"] = Path("token");
  env["AWS_ROLE_ARN"] = kRoleArn;
  env["AWS_ENDPOINT_URL_STS"] = server.url("/sts");
  env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = server.url("/imds");
  server.set_handler([](const HttpTestRequest&) { return Reply(404, "not here"); });
  auto chain = MakeDefaultChain(env.get(), http);
  std::string why;
  EXPECT_FALSE(chain->fetch(Soon(), &why));
  for (const char* part : {"environment: AWS_ACCESS_KEY_ID is not set; ",
                           "web-identity: STS AssumeRoleWithWebIdentity", "HTTP 404 (not here)",
                           "; shared-file: ", "; ecs: ", "; imds: no IMDSv2 session token"})
    EXPECT_NE(why.find(part), std::string::npos) << part << " not in: " << why;
  EXPECT_EQ(why.find("tok\""), std::string::npos);

  // Once the shared file exists, the chain gets past the still failing STS to it.
  WriteFile(Path(".aws/credentials"),
            "[default]\naws_access_key_id = AKFILE\n"
            "aws_secret_access_key = S\n");
  std::optional<Credentials> creds = chain->fetch(Soon(), &why);
  ASSERT_TRUE(creds) << why;
  EXPECT_EQ(creds->access_key_id, "AKFILE");
}

// 2030-01-02T03:04:05.678Z: IMDS writes whole seconds, but the parser takes fractions, which lets
// the test put an expiry a fraction of a second past the refresh window.
std::string IsoMillis(WallTime time) {
  std::string text = internal::FormatIso8601(time);
  auto millis = std::chrono::duration_cast<milliseconds>(time.time_since_epoch()).count() % 1000;
  char fraction[8];
  std::snprintf(fraction, sizeof fraction, ".%03dZ", static_cast<int>(millis));
  return text.substr(0, text.size() - 1) + fraction;
}

TEST_F(RemoteTest, CacheRefreshesThroughImds) {
  // IMDS hands out credentials ~300 s from expiry first (inside refresh_before), later fresh ones.
  env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = server.url("/");
  auto served = std::make_shared<std::atomic<int>>(0);
  server.set_handler(Imds([served] {
    auto now = std::chrono::system_clock::now();
    return served->fetch_add(1) == 0 ? ImdsCredentials("ASIAOLD", IsoMillis(now + 300s + 100ms))
                                     : ImdsCredentials("ASIANEW", IsoMillis(now + 6h));
  }));
  {
    CredentialCache cache(MakeDefaultChain(env.get(), http), FastOptions());
    std::string why;
    ASSERT_TRUE(cache.start(&why)) << why;
    EXPECT_EQ(CurrentId(cache), "ASIAOLD");
    ASSERT_TRUE(server.wait_for_requests(6, kBound));
    ASSERT_TRUE(WaitUntil([&] { return CurrentId(cache) == "ASIANEW"; }));
  }
}

// Keeps every formatted log line; text() may be read while other threads log.
class CaptureSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  std::string text() {
    std::lock_guard<std::mutex> guard(mutex_);
    return text_;
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& message) override {
    spdlog::memory_buf_t line;
    formatter_->format(message, line);
    text_.append(line.data(), line.size());
  }
  void flush_() override {}

 private:
  std::string text_;
};

TEST_F(RemoteTest, NothingSecretIsLogged) {
  // Everything the library logs, at every level, while providers succeed, fail and refresh.
  auto sink = std::make_shared<CaptureSink>();
  auto previous = spdlog::default_logger();
  auto capture = std::make_shared<spdlog::logger>("capture", sink);
  capture->set_level(spdlog::level::trace);
  spdlog::set_default_logger(capture);
  struct Restore {
    std::shared_ptr<spdlog::logger> logger;
    ~Restore() { spdlog::set_default_logger(logger); }
  } restore{previous};

  WriteFile(Path("token"), "oidc-secret-token");
  env["AWS_WEB_IDENTITY_TOKEN_FILE"] = Path("token");
  env["AWS_ROLE_ARN"] = kRoleArn;
  env["AWS_ROLE_SESSION_NAME"] = "s";
  env["AWS_ENDPOINT_URL_STS"] = server.url("/");
  env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] = server.url("/ecs");
  env["AWS_CONTAINER_AUTHORIZATION_TOKEN"] = "container-secret-token";
  auto sts = Sts("oidc-secret-token", "s");
  auto calls = std::make_shared<std::atomic<int>>(0);
  server.set_handler([sts, calls](const HttpTestRequest& request) {
    if (request.target == "/ecs") return Reply(403, "denied");
    if (request.target.rfind("/no-imds", 0) == 0) return Reply(404, "");
    // STS: fails once (refusal logged), then short-lived credentials, then a refresh.
    int call = calls->fetch_add(1);
    if (call == 0) return Reply(400, "<Error><Code>InvalidIdentityToken</Code></Error>");
    HttpTestReply reply = sts(request);
    if (call == 1)
      reply.body = StsAnswer("ASIASTS", IsoMillis(std::chrono::system_clock::now() + 300s + 50ms));
    return reply;
  });
  {
    CredentialCache cache(MakeDefaultChain(env.get(), http), FastOptions());
    std::string why;
    EXPECT_FALSE(cache.start(&why));  // STS refused, ECS refused: both logged at debug
    ASSERT_TRUE(cache.start(&why)) << why;
    // STS refusal, ECS refusal, IMDS refusal, STS, and the refresh at STS.
    ASSERT_TRUE(server.wait_for_requests(5, kBound));
    ASSERT_TRUE(WaitUntil([&] { return sink->text().find("refreshed") != std::string::npos; }));
  }
  std::string log = sink->text();
  EXPECT_NE(log.find("web-identity"), std::string::npos) << log;
  for (const char* secret :
       {"oidc-secret-token", "container-secret-token", "wJalrXUtnFEMI", "FwoGZXIvYXdzE", "ASIASTS"})
    EXPECT_EQ(log.find(secret), std::string::npos) << secret << " logged:\n" << log;
}
}  // namespace
}  // namespace leasefs::aws
