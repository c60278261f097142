// Unit tests for the DynamoDB lease store, against a real dynalite (the pinned npm package in
// package.json; `npm ci` at the repository root installs it, and CI does). The tests start it on
// a free port from the suite's fixture and always stop it (PR_SET_PDEATHSIG covers a crash). If
// node_modules/.bin/dynalite is missing, every test that needs it is skipped with a message that
// says so; with LEASEFS_REQUIRE_NODE_SERVERS=1 (CI sets it) they fail instead.
//
// Contents: the LeaseStore contract shared with the local store (lease_store_contract.h), then
// what is particular to DynamoDB: the URI, the table check at open, table creation, the errors a
// user sees for a bad table, a wrong endpoint or no credentials, Scan pagination, deadlines; and
// the failure modes dynalite cannot produce (5xx after a write landed, timeouts after sending,
// throttling, dropped connections), injected by a proxy in front of it (FaultProxy).
// Credentials: static keys through the environment provider, read from an injected
// CredentialEnvironment (never the process's environment); dynalite does not check signatures.
#include "leasefs/lock/dynamodb_store.h"

#include <gtest/gtest.h>
#include <strings.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "http_test_server.h"
#include "lease_store_contract.h"
#include "leasefs/aws/dynamodb.h"
#include "mount_harness.h"
#include "node_server.h"

namespace leasefs::lock {
namespace {

using leasefs::testing::NodeBin;
using leasefs::testing::NodeModulesDir;
using leasefs::testing::NodeServer;
using std::chrono::milliseconds;
using std::chrono::seconds;
using SteadyTime = std::chrono::steady_clock;

constexpr const char* kRegion = "us-east-1";
// Tables stay CREATING this long in dynalite, so every test's table creation (and the open check
// right after it) goes through the wait-until-ACTIVE path.
constexpr int kCreateTableMs = 150;

// A CredentialEnvironment with `vars` as its whole environment and an empty home.
aws::CredentialEnvironment FakeEnvironment(std::map<std::string, std::string> vars,
                                           std::string home) {
  aws::CredentialEnvironment env;
  env.getenv = [vars = std::move(vars)](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
  env.home = std::move(home);
  return env;
}

std::map<std::string, std::string> StaticKeys() {
  return {{"AWS_ACCESS_KEY_ID", "AKIDLEASEFSTEST"},
          {"AWS_SECRET_ACCESS_KEY", "leasefs/test/secret/key"},
          {"AWS_EC2_METADATA_DISABLED", "true"}};
}

std::string SkipMessage() {
  return NodeModulesDir() +
         "/.bin/dynalite is missing: run `npm ci` at the repository root (scripts/dev deps does; "
         "CI must, and sets LEASEFS_REQUIRE_NODE_SERVERS=1 to make this a failure)";
}

// Skips the test (fails it under LEASEFS_REQUIRE_NODE_SERVERS) when dynalite is not installed.
#define SKIP_WITHOUT_DYNALITE()                      \
  do {                                               \
    if (NodeBin("dynalite").empty()) {               \
      if (leasefs::testing::NodeServersRequired()) { \
        FAIL() << SkipMessage();                     \
      }                                              \
      GTEST_SKIP() << SkipMessage();                 \
    }                                                \
  } while (0)

// A table name unique in this process, from the running test's name.
std::string UniqueTableName() {
  static std::atomic<int> counter{0};
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = "leasefs_" + std::to_string(counter++) + "_";
  for (char c : std::string(info ? info->name() : "test")) {
    name += (std::isalnum(static_cast<unsigned char>(c)) || c == '_') ? c : '_';
  }
  return name.substr(0, 200);
}

// The shared dynalite, started once per test suite (= once per process under ctest).
struct Dynalite {
  static inline std::unique_ptr<NodeServer> server;
  static inline std::string start_error;
  static void Start() {
    if (NodeBin("dynalite").empty() || server) return;
    server = NodeServer::StartDynalite(&start_error, kCreateTableMs);
  }
  static void Stop() { server.reset(); }
};

// The contract's backend: a fresh table on the shared dynalite per test.
struct DynamoBackend {
  static constexpr int kIncrements = 40;
  static void SetUpTestSuite() { Dynalite::Start(); }
  static void TearDownTestSuite() { Dynalite::Stop(); }

  void SetUp() {
    SKIP_WITHOUT_DYNALITE();
    ASSERT_NE(Dynalite::server, nullptr) << Dynalite::start_error;
    config_.table = UniqueTableName();
    config_.region = kRegion;
    config_.endpoint = Dynalite::server->endpoint();
    TableCreateResult created = CreateDynamoTable(config_, Deps());
    ASSERT_TRUE(created.ok) << created.message;
  }
  DynamoStoreDeps Deps(std::map<std::string, std::string> vars = StaticKeys()) const {
    DynamoStoreDeps deps;
    deps.env = FakeEnvironment(std::move(vars), home_.path());
    deps.setup_timeout = seconds(10);
    return deps;
  }
  std::unique_ptr<LeaseStore> Open(DynamoStoreDeps deps) {
    std::string error;
    auto store = OpenDynamoStore(config_, clock_, &error, std::move(deps));
    EXPECT_NE(store, nullptr) << error;
    return store;
  }
  std::unique_ptr<LeaseStore> Open() { return Open(Deps()); }
  const Clock& clock() const { return clock_; }

  SteadyClock clock_;
  leasefs::testing::TempDir home_;  // an empty ~ for the credential chain
  DynamoStoreConfig config_;
};

INSTANTIATE_TYPED_TEST_SUITE_P(Dynamo, LeaseStoreContract, DynamoBackend);

// DynamoDB specifics, on the same fixture (a fresh table per test).
class DynamoStoreTest : public LeaseStoreContract<DynamoBackend> {
 protected:
  const DynamoStoreConfig& config() const { return backend_.config_; }
  DynamoStoreDeps Deps() const { return backend_.Deps(); }

  // A raw client on the shared dynalite, for setting up what the store must refuse.
  std::unique_ptr<aws::DynamoClient> RawClient() {
    aws::DynamoOptions options;
    options.region = kRegion;
    options.endpoint = Dynalite::server->endpoint();
    auto credentials = std::make_shared<aws::CredentialCache>(
        aws::MakeEnvironmentProvider(FakeEnvironment(StaticKeys(), backend_.home_.path())));
    std::string why;
    EXPECT_TRUE(credentials->start(&why)) << why;
    return std::make_unique<aws::DynamoClient>(options, std::make_shared<aws::HttpClient>(),
                                               credentials);
  }
};

TEST_F(DynamoStoreTest, DescribeNamesTableRegionAndEndpoint) {
  EXPECT_EQ(store_->describe(), "dynamodb://" + config().table +
                                    "?region=us-east-1&endpoint=" + Dynalite::server->endpoint());
}

TEST_F(DynamoStoreTest, ItemLayoutIsKeyRevBody) {
  const std::string body = "{\"owner\":\"h\\u00e9te \\\"quoted\\\"\",\"n\":[1,2]}";
  ASSERT_TRUE(store_->put("db/x", 0, body, Soon()).ok());
  ASSERT_TRUE(store_->put("db/x", 1, body, Soon()).ok());
  auto client = RawClient();
  aws::DynamoResult r = client->get_item({{"TableName", config().table},
                                          {"Key", {{"key", {{"S", "db/x"}}}}},
                                          {"ConsistentRead", true}},
                                         SteadyTime::now() + seconds(5));
  ASSERT_TRUE(r.ok()) << r.message;
  EXPECT_EQ(r.body["Item"]["key"]["S"], "db/x");
  EXPECT_EQ(r.body["Item"]["rev"]["N"], "2");
  EXPECT_EQ(r.body["Item"]["body"]["S"], body);
  EXPECT_EQ(store_->get("db/x", Soon()).record.body, body);
}

TEST_F(DynamoStoreTest, ListReadsEveryPage) {
  DynamoStoreDeps deps = Deps();
  deps.scan_page_size = 2;
  auto store = backend_.Open(std::move(deps));
  ASSERT_NE(store, nullptr);
  for (int i = 6; i >= 0; i--) {
    ASSERT_TRUE(store->put("p/" + std::to_string(i), 0, std::to_string(i), Soon()).ok());
  }
  for (const char* other : {"q/1", "p", "a/p/1"})
    ASSERT_TRUE(store->put(other, 0, "", Soon()).ok());
  std::vector<Record> records;
  StoreResult r = store->list("p/", &records, Soon());
  ASSERT_TRUE(r.ok()) << r.error;
  ASSERT_EQ(records.size(), 7u);
  for (int i = 0; i < 7; i++) {
    EXPECT_EQ(records[i].key, "p/" + std::to_string(i));
    EXPECT_EQ(records[i].body, std::to_string(i));
    EXPECT_EQ(records[i].revision, 1u);
  }
}

TEST_F(DynamoStoreTest, PassedDeadlineSendsNothing) {
  ASSERT_TRUE(store_->put("k", 0, "{}", Soon()).ok());
  TimePoint past = backend_.clock().now() - milliseconds(1);
  StoreResult r = store_->put("k", 1, "{\"late\":1}", past);
  EXPECT_EQ(r.outcome, StoreOutcome::kUnavailable);
  EXPECT_NE(r.error.find("deadline"), std::string::npos) << r.error;
  EXPECT_EQ(store_->get("k", past).outcome, StoreOutcome::kUnavailable);
  EXPECT_EQ(store_->remove("k", 1, past).outcome, StoreOutcome::kUnavailable);
  StoreResult now = store_->get("k", Soon());
  EXPECT_EQ(now.record.revision, 1u);
  EXPECT_EQ(now.record.body, "{}");
}

TEST_F(DynamoStoreTest, OpenRefusesAMissingTable) {
  DynamoStoreConfig missing = config();
  missing.table = "no_such_table";
  std::string error;
  EXPECT_EQ(OpenDynamoStore(missing, backend_.clock(), &error, Deps()), nullptr);
  EXPECT_NE(error.find("table no_such_table not found in region us-east-1"), std::string::npos)
      << error;
  EXPECT_NE(error.find("leasefs table create no_such_table"), std::string::npos) << error;
}

TEST_F(DynamoStoreTest, OpenRefusesTheWrongKeySchema) {
  auto client = RawClient();
  const auto deadline = SteadyTime::now() + seconds(5);
  const std::string wrong_key_name = config().table + "_id", with_sort_key = config().table + "_sk";
  // A differently named key, and the right key plus a sort key.
  aws::DynamoResult r =
      client->call("CreateTable",
                   {{"TableName", wrong_key_name},
                    {"AttributeDefinitions", {{{"AttributeName", "id"}, {"AttributeType", "S"}}}},
                    {"KeySchema", {{{"AttributeName", "id"}, {"KeyType", "HASH"}}}},
                    {"BillingMode", "PAY_PER_REQUEST"}},
                   deadline);
  ASSERT_TRUE(r.ok()) << r.message;
  r = client->call("CreateTable",
                   {{"TableName", with_sort_key},
                    {"AttributeDefinitions",
                     {{{"AttributeName", "key"}, {"AttributeType", "S"}},
                      {{"AttributeName", "sk"}, {"AttributeType", "S"}}}},
                    {"KeySchema",
                     {{{"AttributeName", "key"}, {"KeyType", "HASH"}},
                      {{"AttributeName", "sk"}, {"KeyType", "RANGE"}}}},
                    {"BillingMode", "PAY_PER_REQUEST"}},
                   deadline);
  ASSERT_TRUE(r.ok()) << r.message;
  for (const std::string& table : {wrong_key_name, with_sort_key}) {
    DynamoStoreConfig wrong = config();
    wrong.table = table;
    std::string error;
    EXPECT_EQ(OpenDynamoStore(wrong, backend_.clock(), &error, Deps()), nullptr);
    EXPECT_NE(error.find("wrong key schema"), std::string::npos) << error;
    // Creating it is refused too: it exists, with another schema.
    TableCreateResult created = CreateDynamoTable(wrong, Deps());
    EXPECT_FALSE(created.ok);
    EXPECT_NE(created.message.find("wrong key schema"), std::string::npos) << created.message;
  }
}

TEST_F(DynamoStoreTest, CreateTableIsIdempotent) {
  DynamoStoreConfig fresh = config();
  fresh.table = config().table + "_fresh";
  TableCreateResult first = CreateDynamoTable(fresh, Deps());
  ASSERT_TRUE(first.ok) << first.message;
  EXPECT_TRUE(first.created);
  EXPECT_NE(first.message.find("created table " + fresh.table), std::string::npos) << first.message;
  TableCreateResult second = CreateDynamoTable(fresh, Deps());
  ASSERT_TRUE(second.ok) << second.message;
  EXPECT_FALSE(second.created);
  EXPECT_NE(second.message.find("already exists"), std::string::npos) << second.message;
  std::string error;
  EXPECT_NE(OpenDynamoStore(fresh, backend_.clock(), &error, Deps()), nullptr) << error;
}

TEST_F(DynamoStoreTest, OpenWaitsForATableThatIsStillCreating) {
  auto client = RawClient();
  aws::DynamoResult r =
      client->call("CreateTable",
                   {{"TableName", config().table + "_creating"},
                    {"AttributeDefinitions", {{{"AttributeName", "key"}, {"AttributeType", "S"}}}},
                    {"KeySchema", {{{"AttributeName", "key"}, {"KeyType", "HASH"}}}},
                    {"BillingMode", "PAY_PER_REQUEST"}},
                   SteadyTime::now() + seconds(5));
  ASSERT_TRUE(r.ok()) << r.message;
  EXPECT_EQ(r.body["TableDescription"]["TableStatus"], "CREATING");
  DynamoStoreConfig creating = config();
  creating.table += "_creating";
  std::string error;
  auto store = OpenDynamoStore(creating, backend_.clock(), &error, Deps());
  ASSERT_NE(store, nullptr) << error;
  EXPECT_TRUE(store->put("k", 0, "{}", Soon()).ok());
}

TEST_F(DynamoStoreTest, NoCredentialsIsOneClearError) {
  std::string error;
  auto deps = backend_.Deps({{"AWS_EC2_METADATA_DISABLED", "true"}});
  deps.setup_timeout = seconds(5);
  auto started = SteadyTime::now();
  EXPECT_EQ(OpenDynamoStore(config(), backend_.clock(), &error, std::move(deps)), nullptr);
  EXPECT_LT(SteadyTime::now() - started, seconds(8));
  EXPECT_EQ(error.rfind("no credentials: ", 0), 0u) << error;
}

// No server of its own: an endpoint where nothing listens.
TEST(DynamoStoreEndpoint, UnreachableEndpointFailsOpenQuickly) {
  leasefs::testing::TempDir home;
  DynamoStoreDeps deps;
  deps.env = FakeEnvironment(StaticKeys(), home.path());
  deps.setup_timeout = seconds(3);
  const std::string endpoint = "http://127.0.0.1:" + std::to_string(leasefs::testing::UnusedPort());
  SteadyClock clock;
  std::string error;
  auto started = SteadyTime::now();
  EXPECT_EQ(OpenDynamoStore("dynamodb://leases?region=eu-west-1&endpoint=" + endpoint, clock,
                            &error, std::move(deps)),
            nullptr);
  EXPECT_LT(SteadyTime::now() - started, seconds(5));
  EXPECT_NE(error.find("cannot reach endpoint " + endpoint), std::string::npos) << error;
}

// Its own dynalite, stopped under an open store: connection refused means nothing was sent, so
// every call answers kUnavailable (never kAmbiguous), and by its deadline.
TEST(DynamoStoreEndpoint, RefusedConnectionsAreUnavailableWithinTheDeadline) {
  SKIP_WITHOUT_DYNALITE();
  std::string start_error;
  auto server = NodeServer::StartDynalite(&start_error);
  ASSERT_NE(server, nullptr) << start_error;
  leasefs::testing::TempDir home;
  DynamoStoreDeps deps;
  deps.env = FakeEnvironment(StaticKeys(), home.path());
  DynamoStoreConfig config{"leases", "eu-west-1", server->endpoint()};
  TableCreateResult created = CreateDynamoTable(config, deps);
  ASSERT_TRUE(created.ok) << created.message;
  SteadyClock clock;
  std::string error;
  auto store = OpenDynamoStore(config, clock, &error, deps);
  ASSERT_NE(store, nullptr) << error;
  ASSERT_TRUE(store->put("k", 0, "{}", clock.now() + seconds(5)).ok());

  server->Stop();
  for (int op = 0; op < 4; op++) {
    auto started = clock.now();
    TimePoint deadline = started + milliseconds(600);
    std::vector<Record> records;
    StoreResult r = op == 0   ? store->put("k", 1, "{\"v\":2}", deadline)
                    : op == 1 ? store->remove("k", 1, deadline)
                    : op == 2 ? store->get("k", deadline)
                              : store->list("", &records, deadline);
    EXPECT_EQ(r.outcome, StoreOutcome::kUnavailable) << "op " << op << ": " << r.error;
    EXPECT_NE(r.error.find("cannot reach " + server->endpoint()), std::string::npos) << r.error;
    EXPECT_LT(clock.now() - started, milliseconds(600 + 400)) << "op " << op;
  }
}

// A proxy in front of the shared dynalite that lets a test decide, per request, to forward it,
// answer in dynalite's place, or both (forward, then answer something else: a write that landed
// but whose answer was lost). Requests are recorded by the server (requests()).
class FaultProxy {
 public:
  using Forward = std::function<leasefs::testing::HttpTestReply()>;
  // Gets the operation (GetItem, PutItem, ...), how many requests of that operation came before
  // this one, and a function that forwards this request to dynalite and returns its answer.
  using Policy = std::function<leasefs::testing::HttpTestReply(const std::string& operation,
                                                               int nth, const Forward& forward)>;

  explicit FaultProxy(std::string upstream)
      : upstream_(std::move(upstream)),
        server_(
            [this](const leasefs::testing::HttpTestRequest& request) { return handle(request); }) {}

  void set_policy(Policy policy) {
    std::lock_guard<std::mutex> guard(mutex_);
    policy_ = std::move(policy);
    counts_.clear();
  }
  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(server_.port()); }
  int count(const std::string& operation) const {
    int n = 0;
    for (const auto& request : server_.requests()) n += Operation(request) == operation;
    return n;
  }
  std::vector<leasefs::testing::HttpTestRequest> requests() const { return server_.requests(); }

  static std::string Operation(const leasefs::testing::HttpTestRequest& request) {
    std::string target = request.header("X-Amz-Target");
    auto dot = target.find('.');
    return dot == std::string::npos ? target : target.substr(dot + 1);
  }
  static leasefs::testing::HttpTestReply Error(int status, const std::string& type) {
    return {status,
            {{"Content-Type", "application/x-amz-json-1.0"}},
            nlohmann::json{{"__type", "com.amazonaws.dynamodb.v20120810#" + type},
                           {"message", "injected " + type}}
                .dump()};
  }

 private:
  leasefs::testing::HttpTestReply forward(const leasefs::testing::HttpTestRequest& request) {
    aws::HttpRequest upstream{request.method, upstream_ + request.target, {}, request.body};
    for (const auto& [name, value] : request.headers) {
      if (strcasecmp(name.c_str(), "Host") != 0 &&
          strcasecmp(name.c_str(), "Content-Length") != 0 &&
          strcasecmp(name.c_str(), "Connection") != 0) {
        upstream.headers.emplace_back(name, value);
      }
    }
    aws::HttpResponse response = client_.send(upstream, SteadyTime::now() + seconds(5));
    if (response.status == 0) return Error(502, "ProxyUpstreamFailed");
    return {static_cast<int>(response.status),
            {{"Content-Type", aws::FindHeader(response.headers, "Content-Type")}},
            response.body};
  }

  leasefs::testing::HttpTestReply handle(const leasefs::testing::HttpTestRequest& request) {
    std::string operation = Operation(request);
    Policy policy;
    int nth;
    {
      std::lock_guard<std::mutex> guard(mutex_);
      policy = policy_;
      nth = counts_[operation]++;
    }
    Forward forward_this = [this, &request] { return forward(request); };
    return policy ? policy(operation, nth, forward_this) : forward_this();
  }

  std::string upstream_;
  aws::HttpClient client_;
  std::mutex mutex_;
  Policy policy_;
  std::map<std::string, int> counts_;
  leasefs::testing::HttpTestServer server_;  // last: stopped first, before what it uses
};

// A store on the test's table, reached through a FaultProxy.
class DynamoFaultTest : public DynamoStoreTest {
 protected:
  void SetUp() override {
    DynamoStoreTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    proxy_ = std::make_unique<FaultProxy>(Dynalite::server->endpoint());
    DynamoStoreConfig through = config();
    through.endpoint = proxy_->endpoint();
    DynamoStoreDeps deps = Deps();
    deps.retry.base_backoff = milliseconds(5);
    deps.retry.max_backoff = milliseconds(50);
    std::string error;
    faulty_ = OpenDynamoStore(through, backend_.clock(), &error, std::move(deps));
    ASSERT_NE(faulty_, nullptr) << error;
  }
  void TearDown() override {
    faulty_.reset();  // its connections close before the proxy stops
    proxy_.reset();
    DynamoStoreTest::TearDown();
  }
  // Every request of `operation` gets `reply` (after forwarding it if `forward_first`).
  void Always(const std::string& operation, leasefs::testing::HttpTestReply reply,
              bool forward_first = false) {
    proxy_->set_policy([=](const std::string& op, int, const FaultProxy::Forward& forward) {
      if (op != operation) return forward();
      if (forward_first) forward();
      return reply;
    });
  }

  std::unique_ptr<FaultProxy> proxy_;
  std::unique_ptr<LeaseStore> faulty_;
};

TEST_F(DynamoFaultTest, RequestsAreSignedJson10) {
  ASSERT_TRUE(faulty_->put("k", 0, "{}", Soon()).ok());
  std::vector<leasefs::testing::HttpTestRequest> puts;
  for (const auto& request : proxy_->requests()) {
    if (FaultProxy::Operation(request) == "PutItem") puts.push_back(request);
  }
  ASSERT_EQ(puts.size(), 1u);
  const auto& put = puts[0];
  EXPECT_EQ(put.method, "POST");
  EXPECT_EQ(put.target, "/");
  EXPECT_EQ(put.header("X-Amz-Target"), "DynamoDB_20120810.PutItem");
  EXPECT_EQ(put.header("Content-Type"), "application/x-amz-json-1.0");
  EXPECT_FALSE(put.header("X-Amz-Date").empty());
  EXPECT_EQ(put.header("Authorization").rfind("AWS4-HMAC-SHA256 Credential=AKIDLEASEFSTEST/", 0),
            0u)
      << put.header("Authorization");
  EXPECT_NE(put.header("Authorization").find("/us-east-1/dynamodb/aws4_request"),
            std::string::npos);
  auto body = nlohmann::json::parse(put.body);
  EXPECT_EQ(body["TableName"], config().table);
  EXPECT_EQ(body["ConditionExpression"], "attribute_not_exists(#k)");
  EXPECT_EQ(body["ExpressionAttributeNames"]["#k"], "key");
  EXPECT_EQ(body["Item"]["rev"]["N"], "1");
  EXPECT_EQ(body["ReturnValuesOnConditionCheckFailure"], "ALL_OLD");
}

TEST_F(DynamoFaultTest, AWriteThatLandedBeforeA500IsAmbiguous) {
  // The first PutItem reaches dynalite, but the answer is a 500; the client's retry then fails
  // its own condition. Reporting that as a conflict would be a lie: it is ambiguous.
  proxy_->set_policy([](const std::string& op, int nth, const FaultProxy::Forward& forward) {
    if (op != "PutItem" || nth > 0) return forward();
    forward();
    return FaultProxy::Error(500, "InternalServerError");
  });
  StoreResult r = faulty_->put("k", 0, "{\"token\":\"mine\"}", Soon());
  EXPECT_EQ(r.outcome, StoreOutcome::kAmbiguous) << r.error;
  EXPECT_FALSE(r.error.empty());
  EXPECT_GE(proxy_->count("PutItem"), 2);
  // Settled by reading, as the lease manager does: it landed.
  StoreResult read = store_->get("k", Soon());
  EXPECT_EQ(read.record.revision, 1u);
  EXPECT_EQ(read.record.body, "{\"token\":\"mine\"}");
}

TEST_F(DynamoFaultTest, A500ThatDidNotApplyIsRetriedToSuccess) {
  proxy_->set_policy([](const std::string& op, int nth, const FaultProxy::Forward& forward) {
    if (op == "PutItem" && nth < 2) return FaultProxy::Error(500, "InternalServerError");
    return forward();
  });
  StoreResult r = faulty_->put("k", 0, "{}", Soon());
  EXPECT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.record.revision, 1u);
  EXPECT_EQ(proxy_->count("PutItem"), 3);
}

TEST_F(DynamoFaultTest, ATimeoutAfterSendingIsAmbiguousByTheDeadline) {
  ASSERT_TRUE(faulty_->put("k", 0, "{}", Soon()).ok());
  proxy_->set_policy([](const std::string& op, int, const FaultProxy::Forward& forward) {
    auto reply = forward();
    if (op == "PutItem") reply.delay = milliseconds(3000);
    return reply;
  });
  auto started = backend_.clock().now();
  StoreResult r = faulty_->put("k", 1, "{\"v\":2}", started + milliseconds(500));
  EXPECT_LT(backend_.clock().now() - started, milliseconds(900));
  EXPECT_EQ(r.outcome, StoreOutcome::kAmbiguous) << r.error;
  EXPECT_EQ(store_->get("k", Soon()).record.revision, 2u);  // it had landed
  proxy_->set_policy({});
}

TEST_F(DynamoFaultTest, AConnectionDroppedAfterSendingIsAmbiguousForWritesOnly) {
  ASSERT_TRUE(faulty_->put("k", 0, "{}", Soon()).ok());
  leasefs::testing::HttpTestReply drop;
  drop.drop = leasefs::testing::HttpTestReply::Drop::kBeforeReply;
  Always("PutItem", drop);
  StoreResult r = faulty_->put("k", 1, "{\"v\":2}", Soon());
  EXPECT_EQ(r.outcome, StoreOutcome::kAmbiguous) << r.error;
  EXPECT_EQ(proxy_->count("PutItem"), 2);  // never resent: it may have landed
  Always("DeleteItem", drop);
  EXPECT_EQ(faulty_->remove("k", 1, Soon()).outcome, StoreOutcome::kAmbiguous);
  Always("GetItem", drop);
  StoreResult read = faulty_->get("k", backend_.clock().now() + milliseconds(500));
  EXPECT_EQ(read.outcome, StoreOutcome::kUnavailable) << read.error;
  proxy_->set_policy({});
  EXPECT_EQ(store_->get("k", Soon()).record.revision, 1u);  // nothing was written
}

TEST_F(DynamoFaultTest, ThrottlingIsRetriedInsideTheDeadline) {
  proxy_->set_policy([](const std::string& op, int nth, const FaultProxy::Forward& forward) {
    if (op == "PutItem" && nth < 2) {
      return FaultProxy::Error(400, "ProvisionedThroughputExceededException");
    }
    if (op == "GetItem" && nth < 3) return FaultProxy::Error(400, "ThrottlingException");
    return forward();
  });
  StoreResult r = faulty_->put("k", 0, "{}", Soon());
  EXPECT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(proxy_->count("PutItem"), 3);
  r = faulty_->get("k", Soon());
  EXPECT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.record.revision, 1u);
  EXPECT_EQ(proxy_->count("GetItem"), 4);

  // Throttled for good: nothing was written (a throttled request is refused), by the deadline.
  Always("PutItem", FaultProxy::Error(400, "RequestLimitExceeded"));
  auto started = backend_.clock().now();
  r = faulty_->put("k", 1, "{\"v\":2}", started + milliseconds(400));
  EXPECT_EQ(r.outcome, StoreOutcome::kUnavailable) << r.error;
  EXPECT_NE(r.error.find("RequestLimitExceeded"), std::string::npos) << r.error;
  EXPECT_LT(backend_.clock().now() - started, milliseconds(800));
}

TEST_F(DynamoFaultTest, ReadsAreNeverAmbiguous) {
  Always("GetItem", FaultProxy::Error(500, "InternalServerError"));
  auto started = backend_.clock().now();
  StoreResult r = faulty_->get("k", started + milliseconds(400));
  EXPECT_EQ(r.outcome, StoreOutcome::kUnavailable) << r.error;
  EXPECT_LT(backend_.clock().now() - started, milliseconds(800));
  EXPECT_GE(proxy_->count("GetItem"), 2);  // retried
  std::vector<Record> records;
  Always("Scan", FaultProxy::Error(503, "ServiceUnavailable"));
  EXPECT_EQ(faulty_->list("", &records, backend_.clock().now() + milliseconds(400)).outcome,
            StoreOutcome::kUnavailable);
}

TEST_F(DynamoFaultTest, ClientErrorsOnWritesAreUnavailable) {
  // Refused outright: nothing was written, so kUnavailable (not ambiguous, not a conflict).
  for (const char* type : {"ValidationException", "AccessDeniedException",
                           "UnrecognizedClientException", "ResourceNotFoundException"}) {
    Always("PutItem", FaultProxy::Error(400, type));
    StoreResult r = faulty_->put("k", 0, "{}", Soon());
    EXPECT_EQ(r.outcome, StoreOutcome::kUnavailable) << type << ": " << r.error;
    EXPECT_NE(r.error.find(type), std::string::npos) << r.error;
  }
  EXPECT_EQ(proxy_->count("PutItem"), 4);  // none retried
}

TEST_F(DynamoFaultTest, AConditionFailureCarryingTheItemNeedsNoRead) {
  // Real DynamoDB honours ReturnValuesOnConditionCheckFailure=ALL_OLD (dynalite ignores it).
  auto failure = FaultProxy::Error(400, "ConditionalCheckFailedException");
  auto body = nlohmann::json::parse(failure.body);
  body["Item"] = {{"key", {{"S", "k"}}}, {"rev", {{"N", "7"}}}, {"body", {{"S", "theirs"}}}};
  failure.body = body.dump();
  Always("PutItem", failure);
  StoreResult r = faulty_->put("k", 3, "{}", Soon());
  EXPECT_EQ(r.outcome, StoreOutcome::kConflict) << r.error;
  EXPECT_EQ(r.record.key, "k");
  EXPECT_EQ(r.record.revision, 7u);
  EXPECT_EQ(r.record.body, "theirs");
  EXPECT_EQ(proxy_->count("GetItem"), 0);
}

TEST(DynamoStoreUri, ParsesTableRegionAndEndpoint) {
  std::string error;
  auto config = ParseDynamoStoreUri("dynamodb://leasefs-locks?region=eu-west-3", &error);
  ASSERT_TRUE(config) << error;
  EXPECT_EQ(config->table, "leasefs-locks");
  EXPECT_EQ(config->region, "eu-west-3");
  EXPECT_EQ(config->endpoint, "");

  config = ParseDynamoStoreUri(
      "dynamodb://t.1_x?endpoint=http%3A%2F%2F127.0.0.1%3A4567&region=us-gov-west-1", &error);
  ASSERT_TRUE(config) << error;
  EXPECT_EQ(config->table, "t.1_x");
  EXPECT_EQ(config->region, "us-gov-west-1");
  EXPECT_EQ(config->endpoint, "http://127.0.0.1:4567");

  config = ParseDynamoStoreUri("dynamodb://abc?region=us-east-1&endpoint=https://ddb.example:8443/",
                               &error);
  ASSERT_TRUE(config) << error;
  EXPECT_EQ(config->endpoint, "https://ddb.example:8443/");
}

TEST(DynamoStoreUri, BadUrisAreOneClearError) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"dynamo://t?region=us-east-1", "expected dynamodb://TABLE?region=REGION"},
      {"dynamodb://?region=us-east-1", "the TABLE is missing"},
      {"dynamodb://ab?region=us-east-1", "must be 3 to 255 characters"},
      {"dynamodb://a/b?region=us-east-1", "must be 3 to 255 characters"},
      {"dynamodb://table", "the region is missing"},
      {"dynamodb://table?region=", "bad region ''"},
      {"dynamodb://table?region=US_EAST", "bad region 'US_EAST'"},
      {"dynamodb://table?region=us-east-1&region=us-east-2", "region given twice"},
      {"dynamodb://table?region=us-east-1&endpoint=localhost:4567", "bad endpoint"},
      {"dynamodb://table?region=us-east-1&endpoint=http://", "bad endpoint"},
      {"dynamodb://table?region=us-east-1&profile=x", "unknown parameter 'profile'"},
      {"dynamodb://table?region", "is not NAME=VALUE"},
      {"dynamodb://table?region=us%zzeast", "bad %-escape in 'region=us%zzeast'"},
  };
  for (const auto& [uri, expected] : cases) {
    std::string error;
    EXPECT_FALSE(ParseDynamoStoreUri(uri, &error)) << uri;
    EXPECT_NE(error.find(expected), std::string::npos) << uri << " -> " << error;
    EXPECT_NE(error.find(uri), std::string::npos) << error;
    SteadyClock clock;
    std::string open_error;
    EXPECT_EQ(OpenDynamoStore(uri, clock, &open_error), nullptr);
    EXPECT_EQ(open_error, error);
  }
}

}  // namespace
}  // namespace leasefs::lock
