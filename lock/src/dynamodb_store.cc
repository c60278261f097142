// dynamodb_store.cc — LeaseStore on one DynamoDB table.
//
// RECORD LAYOUT
//
// One item per record, in a table whose only key is the string partition key `key`:
//
//   key   S   the record's key, as the lease protocol names it ("session/...", "db/...")
//   rev   N   the record's revision: 1 when created, +1 on every write
//   body  S   the record's JSON text, opaque here
//
// A missing item is a record at revision 0. Deleting a record deletes its item, so a record
// created again starts at revision 1 again (as in the local store); the lease protocol never
// relies on revisions being unique across a deletion, only on compare-and-set.
//
// COMPARE-AND-SET
//
// Every write is one conditional request, so DynamoDB's per-item serialization is the store's
// linearizability (conditions are evaluated against the item as it is when the write applies):
//
//   put(k, 0, b)      PutItem {k, rev 1, b}        if attribute_not_exists(#k)
//   put(k, n, b)      PutItem {k, rev n+1, b}      if #r = :n
//   remove(k, 0)      DeleteItem k                 if attribute_not_exists(#k)   (a no-op then)
//   remove(k, n)      DeleteItem k                 if #r = :n
//   get(k)            GetItem k, ConsistentRead
//   list(prefix)      Scan, ConsistentRead, begins_with(#k, :p), every page; sorted by key here
//
// Attribute names are always aliased (#k, #r): "key" is a DynamoDB reserved word.
//
// OUTCOMES
//
//   DynamoDB answer                       get / list        put / remove
//   ------------------------------------  ----------------  ---------------------------------
//   200                                   kOk               kOk (record: the new revision)
//   ConditionalCheckFailedException       -                 kConflict, record = current item
//   error, nothing sent or refused        kUnavailable      kUnavailable
//   (4xx, throttled after retries,
//   connection refused, no credentials)
//   write may have landed: timeout or     -                 kAmbiguous (the caller re-reads)
//   5xx after sending, or a condition
//   failure on a retry of such an attempt
//   transport failure / 5xx on a read     kUnavailable      -
//
// kConflict carries the current record. Writes ask for ReturnValuesOnConditionCheckFailure=ALL_OLD,
// so DynamoDB returns the current item with the failure; when the answer has no item (the item
// does not exist, or the server — dynalite — ignores the parameter) the store reads it with a
// consistent GetItem. If that read fails the answer is kUnavailable: nothing was written, and the
// caller's next compare-and-set finds out the rest.
//
// DEADLINES
//
// Deadlines are on the lease manager's Clock; each call converts the time left into a steady-clock
// deadline for the HTTP client, which never starts an attempt or a backoff sleep the deadline cuts
// off. A call whose deadline has passed sends nothing and answers kUnavailable. Retries (transport
// errors before sending, throttling, 5xx) happen inside the DynamoDB client, inside the deadline.
//
// The store keeps no state between calls beyond its connection, so it is safe from any thread.
#include "leasefs/lock/dynamodb_store.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <thread>
#include <utility>

#include "leasefs/aws/dynamodb.h"
#include "leasefs/aws/endpoint.h"

namespace leasefs::lock {
namespace {

using aws::DynamoResult;
using aws::DynamoStatus;
using nlohmann::json;

constexpr const char* kKeyAttribute = "key";

bool ValidTableName(const std::string& name) {
  if (name.size() < 3 || name.size() > 255) return false;
  return std::all_of(name.begin(), name.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '_' || c == '-' || c == '.';
  });
}

bool ValidRegion(const std::string& region) {
  if (region.empty() || !std::islower(static_cast<unsigned char>(region[0]))) return false;
  return std::all_of(region.begin(), region.end(), [](unsigned char c) {
    return std::islower(c) || std::isdigit(c) || c == '-';
  });
}

bool ValidEndpoint(const std::string& endpoint) {
  for (std::string_view scheme : {"http://", "https://"}) {
    if (endpoint.rfind(scheme, 0) == 0) {
      std::string_view rest = std::string_view(endpoint).substr(scheme.size());
      return !rest.empty() && rest[0] != '/' && rest.find_first_of("?# ") == std::string::npos;
    }
  }
  return false;
}

// Percent-decodes `text`; false on a malformed escape.
bool PercentDecode(std::string_view text, std::string* out) {
  out->clear();
  for (size_t i = 0; i < text.size(); i++) {
    if (text[i] != '%') {
      out->push_back(text[i]);
      continue;
    }
    int value = 0;
    if (i + 2 >= text.size() ||
        std::from_chars(text.data() + i + 1, text.data() + i + 3, value, 16).ptr !=
            text.data() + i + 3) {
      return false;
    }
    out->push_back(static_cast<char>(value));
    i += 2;
  }
  return true;
}

bool IsDefaultEndpoint(const std::string& endpoint) {
  return endpoint.rfind("https://dynamodb.", 0) == 0 &&
         endpoint.find(".amazonaws.com") != std::string::npos;
}

json KeyOf(const std::string& key) {
  return {{kKeyAttribute, {{"S", key}}}};
}

// Parses an item {key: S, rev: N, body: S} into *record; false with *error if malformed.
bool ParseItem(const json& item, Record* record, std::string* error) {
  auto string_of = [&](const char* name, const char* type, std::string* out) {
    auto attribute = item.find(name);
    if (attribute == item.end() || !attribute->is_object()) return false;
    auto value = attribute->find(type);
    if (value == attribute->end() || !value->is_string()) return false;
    *out = value->get<std::string>();
    return true;
  };
  std::string key, rev, body;
  if (!item.is_object() || !string_of(kKeyAttribute, "S", &key) || !string_of("rev", "N", &rev) ||
      !string_of("body", "S", &body)) {
    *error = "malformed item (want key S, rev N, body S): " + item.dump();
    return false;
  }
  uint64_t revision = 0;
  auto [end, ec] = std::from_chars(rev.data(), rev.data() + rev.size(), revision);
  if (ec != std::errc() || end != rev.data() + rev.size() || revision == 0) {
    *error = "malformed revision '" + rev + "' in item " + key;
    return false;
  }
  *record = Record{std::move(key), revision, std::move(body)};
  return true;
}

// Whether a DescribeTable answer's table has exactly the key schema leasefs needs.
bool HasLeaseKeySchema(const json& table, std::string* actual) {
  const json& schema = table.value("KeySchema", json::array());
  const json& definitions = table.value("AttributeDefinitions", json::array());
  std::string described;
  bool right = schema.is_array() && schema.size() == 1;
  if (schema.is_array()) {
    for (const auto& element : schema) {
      std::string name = element.value("AttributeName", "");
      std::string kind = element.value("KeyType", "");
      std::string type = "?";
      if (definitions.is_array()) {
        for (const auto& definition : definitions) {
          if (definition.value("AttributeName", "") == name) {
            type = definition.value("AttributeType", "?");
          }
        }
      }
      if (!described.empty()) described += ", ";
      described += name + " (" + kind + ", " + type + ")";
      if (name != kKeyAttribute || kind != "HASH" || type != "S") right = false;
    }
  }
  *actual = described.empty() ? "no key schema" : described;
  return right;
}

// Resolved region and endpoint, credentials and the client: what the store and table creation
// both need.
struct Connection {
  std::string table, region, endpoint;
  std::shared_ptr<aws::HttpClient> http;
  std::shared_ptr<aws::CredentialCache> credentials;
  std::unique_ptr<aws::DynamoClient> client;

  std::string where() const {
    return IsDefaultEndpoint(endpoint) ? "in region " + region
                                       : "in region " + region + " at " + endpoint;
  }
};

std::optional<Connection> Connect(const DynamoStoreConfig& config, DynamoStoreDeps& deps,
                                  std::string* error) {
  if (!ValidTableName(config.table)) {
    *error = "bad DynamoDB table name '" + config.table +
             "': 3 to 255 characters of letters, digits, '_', '-' and '.'";
    return std::nullopt;
  }
  Connection c;
  c.table = config.table;
  c.region = aws::ResolveRegion(config.region, deps.env);
  if (c.region.empty()) {
    *error = "no AWS region for DynamoDB table " + config.table +
             ": give one (region=REGION, --region) or set AWS_REGION";
    return std::nullopt;
  }
  if (!ValidRegion(c.region)) {
    *error = "bad AWS region '" + c.region + "'";
    return std::nullopt;
  }
  c.endpoint = aws::ResolveEndpoint(config.endpoint, "DYNAMODB", "dynamodb", c.region, deps.env);
  if (!ValidEndpoint(c.endpoint)) {
    *error =
        "bad DynamoDB endpoint '" + c.endpoint + "': expected http://HOST[:PORT] or https://...";
    return std::nullopt;
  }
  c.http = deps.http ? deps.http : std::make_shared<aws::HttpClient>();
  if (deps.credentials) {
    c.credentials = deps.credentials;
  } else {
    aws::CredentialCache::Options options;
    options.fetch_timeout = deps.setup_timeout;
    c.credentials =
        std::make_shared<aws::CredentialCache>(aws::MakeDefaultChain(deps.env, c.http), options);
    std::string why;
    if (!c.credentials->start(&why)) {
      *error = "no credentials: " + (why.empty() ? "no provider in the chain yielded any" : why);
      return std::nullopt;
    }
  }
  aws::DynamoOptions options;
  options.region = c.region;
  options.endpoint = c.endpoint;
  options.retry = deps.retry;
  c.client = std::make_unique<aws::DynamoClient>(options, c.http, c.credentials);
  return c;
}

// One line for a failed control-plane call (DescribeTable, CreateTable).
std::string ExplainFailure(const Connection& c, const std::string& operation,
                           const DynamoResult& r) {
  switch (r.status) {
    case DynamoStatus::kNotFound:
      return "table " + c.table + " not found " + c.where() + " (create it with: leasefs table " +
             "create " + c.table + " --region " + c.region + ")";
    case DynamoStatus::kNoCredentials:
      return "no credentials: " + r.message;
    case DynamoStatus::kAccessDenied:
      return "DynamoDB " + c.where() + " refused the credentials for " + operation + " on " +
             c.table + ": " + r.error_type + ": " + r.message;
    case DynamoStatus::kUnavailable:
    case DynamoStatus::kAmbiguous:
      if (r.error_type == "transport") {
        return "cannot reach endpoint " + c.endpoint + ": " + r.message;
      }
      return "DynamoDB " + c.where() + " unavailable (" + operation + " " + c.table +
             "): " + r.message;
    case DynamoStatus::kThrottled:
      return "DynamoDB " + c.where() + " throttled " + operation + " " + c.table + ": " + r.message;
    default:
      if (r.error_type.empty()) {  // no DynamoDB error document: something else answered
        return "endpoint " + c.endpoint + " does not answer like DynamoDB (" + operation + ": " +
               r.message + ")";
      }
      return "DynamoDB " + c.where() + " rejected " + operation + " " + c.table + ": " +
             r.error_type + ": " + r.message;
  }
}

enum class TableState { kReady, kMissing, kPending, kFailed };

// DescribeTable, then: kReady (ACTIVE/UPDATING with the right key schema), kMissing,
// kPending (CREATING) or kFailed with *error.
TableState DescribeLeaseTable(Connection& c, aws::Deadline deadline, std::string* error) {
  DynamoResult r = c.client->call("DescribeTable", {{"TableName", c.table}}, deadline);
  if (r.status == DynamoStatus::kNotFound) {
    *error = ExplainFailure(c, "DescribeTable", r);
    return TableState::kMissing;
  }
  if (!r.ok()) {
    *error = ExplainFailure(c, "DescribeTable", r);
    return TableState::kFailed;
  }
  const json& table = r.body.value("Table", json::object());
  std::string actual;
  if (!HasLeaseKeySchema(table, &actual)) {
    *error = "table " + c.table + " " + c.where() + " has the wrong key schema: " + actual +
             "; leasefs needs a table whose only key is the partition key 'key' of type S "
             "(leasefs table create makes one)";
    return TableState::kFailed;
  }
  std::string status = table.value("TableStatus", "");
  if (status == "ACTIVE" || status == "UPDATING") return TableState::kReady;
  if (status == "CREATING") {
    *error = "table " + c.table + " " + c.where() + " is still CREATING";
    return TableState::kPending;
  }
  *error = "table " + c.table + " " + c.where() + " is " +
           (status.empty() ? "in no state" : status) + ", not ACTIVE";
  return TableState::kFailed;
}

// Sleeps `period`, or until `deadline`; false if the deadline has come.
bool PauseUntil(aws::Deadline deadline, std::chrono::milliseconds period) {
  auto now = std::chrono::steady_clock::now();
  if (now >= deadline) return false;
  std::this_thread::sleep_until(std::min<aws::Deadline>(deadline, now + period));
  return std::chrono::steady_clock::now() < deadline;
}

class DynamoStore final : public LeaseStore {
 public:
  DynamoStore(Connection connection, const Clock& clock, int scan_page_size)
      : c_(std::move(connection)), clock_(clock), scan_page_size_(scan_page_size) {
    describe_ = "dynamodb://" + c_.table + "?region=" + c_.region;
    if (!IsDefaultEndpoint(c_.endpoint)) describe_ += "&endpoint=" + c_.endpoint;
  }

  StoreResult get(const std::string& key, TimePoint deadline) override {
    aws::Deadline until;
    if (!to_aws(deadline, &until)) return expired("GetItem");
    StoreResult result;
    if (!read(key, until, &result)) return result;
    result.outcome = StoreOutcome::kOk;
    return result;
  }

  StoreResult put(const std::string& key, uint64_t expected_revision, const std::string& body,
                  TimePoint deadline) override {
    aws::Deadline until;
    if (!to_aws(deadline, &until)) return expired("PutItem");
    json request = {{"TableName", c_.table},
                    {"Item",
                     {{kKeyAttribute, {{"S", key}}},
                      {"rev", {{"N", std::to_string(expected_revision + 1)}}},
                      {"body", {{"S", body}}}}}};
    add_condition(&request, expected_revision);
    DynamoResult r = c_.client->put_item(request, until);
    if (r.ok()) {
      StoreResult result;
      result.outcome = StoreOutcome::kOk;
      result.record = Record{key, expected_revision + 1, body};
      return result;
    }
    return write_failed("PutItem", key, r, until);
  }

  StoreResult remove(const std::string& key, uint64_t expected_revision,
                     TimePoint deadline) override {
    aws::Deadline until;
    if (!to_aws(deadline, &until)) return expired("DeleteItem");
    json request = {{"TableName", c_.table}, {"Key", KeyOf(key)}};
    add_condition(&request, expected_revision);
    DynamoResult r = c_.client->delete_item(request, until);
    if (r.ok()) {
      StoreResult result;
      result.outcome = StoreOutcome::kOk;
      result.record = Record{key, 0, ""};
      return result;
    }
    return write_failed("DeleteItem", key, r, until);
  }

  StoreResult list(const std::string& prefix, std::vector<Record>* out,
                   TimePoint deadline) override {
    out->clear();
    aws::Deadline until;
    if (!to_aws(deadline, &until)) return expired("Scan");
    json request = {{"TableName", c_.table}, {"ConsistentRead", true}};
    if (!prefix.empty()) {
      request["FilterExpression"] = "begins_with(#k, :p)";
      request["ExpressionAttributeNames"] = {{"#k", kKeyAttribute}};
      request["ExpressionAttributeValues"] = {{":p", {{"S", prefix}}}};
    }
    if (scan_page_size_ > 0) request["Limit"] = scan_page_size_;
    for (;;) {
      DynamoResult r = c_.client->call("Scan", request, until);
      if (!r.ok()) return failed(StoreOutcome::kUnavailable, "Scan", r);
      for (const auto& item : r.body.value("Items", json::array())) {
        Record record;
        std::string why;
        if (!ParseItem(item, &record, &why)) return failed(StoreOutcome::kUnavailable, "Scan", why);
        // A filter is applied after reading, so check it here too (a server without one).
        if (record.key.compare(0, prefix.size(), prefix) == 0) out->push_back(std::move(record));
      }
      auto last = r.body.find("LastEvaluatedKey");
      if (last == r.body.end() || last->empty()) break;
      request["ExclusiveStartKey"] = *last;
    }
    std::sort(out->begin(), out->end(),
              [](const Record& a, const Record& b) { return a.key < b.key; });
    StoreResult result;
    result.outcome = StoreOutcome::kOk;
    return result;
  }

  std::string describe() const override { return describe_; }

 private:
  // Converts a deadline on the lease clock to one on the steady clock; false if it has passed.
  bool to_aws(TimePoint deadline, aws::Deadline* out) const {
    Duration left = deadline - clock_.now();
    if (left <= Duration::zero()) return false;
    *out = std::chrono::steady_clock::now() +
           std::chrono::duration_cast<std::chrono::steady_clock::duration>(left);
    return true;
  }

  static void add_condition(json* request, uint64_t expected_revision) {
    if (expected_revision == 0) {
      (*request)["ConditionExpression"] = "attribute_not_exists(#k)";
      (*request)["ExpressionAttributeNames"] = {{"#k", kKeyAttribute}};
    } else {
      (*request)["ConditionExpression"] = "#r = :expected";
      (*request)["ExpressionAttributeNames"] = {{"#r", "rev"}};
      (*request)["ExpressionAttributeValues"] = {
          {":expected", {{"N", std::to_string(expected_revision)}}}};
    }
    (*request)["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD";
  }

  // Consistent read of `key` into result->record (revision 0 if missing). False with *result
  // filled as kUnavailable on failure.
  bool read(const std::string& key, aws::Deadline until, StoreResult* result) {
    json request = {{"TableName", c_.table}, {"Key", KeyOf(key)}, {"ConsistentRead", true}};
    DynamoResult r = c_.client->get_item(request, until);
    if (!r.ok()) {
      *result = failed(StoreOutcome::kUnavailable, "GetItem", r);
      return false;
    }
    auto item = r.body.find("Item");
    if (item == r.body.end() || item->empty()) {
      result->record = Record{key, 0, ""};
      return true;
    }
    std::string why;
    if (!ParseItem(*item, &result->record, &why)) {
      *result = failed(StoreOutcome::kUnavailable, "GetItem", why);
      return false;
    }
    return true;
  }

  StoreResult write_failed(const char* operation, const std::string& key, const DynamoResult& r,
                           aws::Deadline until) {
    if (r.status == DynamoStatus::kAmbiguous) return failed(StoreOutcome::kAmbiguous, operation, r);
    if (r.status != DynamoStatus::kConditionFailed) {
      return failed(StoreOutcome::kUnavailable, operation, r);
    }
    StoreResult result;
    auto item = r.body.find("Item");
    std::string why;
    if (item != r.body.end() && !item->empty() && ParseItem(*item, &result.record, &why)) {
      // ReturnValuesOnConditionCheckFailure gave us the current item.
    } else if (!read(key, until, &result)) {
      result.error = std::string(operation) + ": the condition failed, then " + result.error;
      return result;
    }
    result.outcome = StoreOutcome::kConflict;
    return result;
  }

  StoreResult failed(StoreOutcome outcome, const char* operation, const DynamoResult& r) const {
    std::string what = r.status == DynamoStatus::kNoCredentials ? "no credentials: " : "";
    if (r.error_type == "transport") what += "cannot reach " + c_.endpoint + ": ";
    what += r.message;
    if (r.error_type != "transport" && !r.error_type.empty() &&
        r.status != DynamoStatus::kNoCredentials) {
      what = r.error_type + ": " + what;
    }
    return failed(outcome, operation, what);
  }

  StoreResult failed(StoreOutcome outcome, const char* operation, const std::string& why) const {
    StoreResult result;
    result.outcome = outcome;
    result.error = describe_ + ": " + operation + ": " + why;
    return result;
  }

  StoreResult expired(const char* operation) const {
    return failed(StoreOutcome::kUnavailable, operation, "deadline passed before sending");
  }

  Connection c_;
  const Clock& clock_;
  int scan_page_size_;
  std::string describe_;
};

}  // namespace

std::optional<DynamoStoreConfig> ParseDynamoStoreUri(const std::string& uri, std::string* error) {
  constexpr std::string_view kScheme = "dynamodb://";
  const std::string usage = "expected dynamodb://TABLE?region=REGION[&endpoint=URL]";
  auto bad = [&](const std::string& why) {
    *error = "bad lease store '" + uri + "': " + why;
    return std::nullopt;
  };
  if (uri.rfind(kScheme, 0) != 0) return bad(usage);
  std::string_view rest = std::string_view(uri).substr(kScheme.size());
  auto question = rest.find('?');
  DynamoStoreConfig config;
  if (!PercentDecode(rest.substr(0, question), &config.table)) {
    return bad("bad %-escape in the table name");
  }
  if (config.table.empty()) return bad("the TABLE is missing; " + usage);
  if (!ValidTableName(config.table)) {
    return bad("table name '" + config.table +
               "' must be 3 to 255 characters of letters, digits, '_', '-' and '.'");
  }
  bool have_region = false, have_endpoint = false;
  if (question != std::string_view::npos) {
    std::string_view query = rest.substr(question + 1);
    while (!query.empty()) {
      auto amp = query.find('&');
      std::string_view pair = query.substr(0, amp);
      query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
      if (pair.empty()) continue;
      auto equals = pair.find('=');
      if (equals == std::string_view::npos) {
        return bad("parameter '" + std::string(pair) + "' is not NAME=VALUE");
      }
      std::string name(pair.substr(0, equals)), value;
      if (!PercentDecode(pair.substr(equals + 1), &value)) {
        return bad("bad %-escape in '" + std::string(pair) + "'");
      }
      if (name == "region") {
        if (have_region) return bad("region given twice");
        if (!ValidRegion(value)) return bad("bad region '" + value + "' (e.g. us-east-1)");
        config.region = value;
        have_region = true;
      } else if (name == "endpoint") {
        if (have_endpoint) return bad("endpoint given twice");
        if (!ValidEndpoint(value)) {
          return bad("bad endpoint '" + value + "': expected http://HOST[:PORT] or https://...");
        }
        config.endpoint = value;
        have_endpoint = true;
      } else {
        return bad("unknown parameter '" + name + "'; " + usage);
      }
    }
  }
  if (!have_region) return bad("the region is missing; " + usage);
  return config;
}

std::unique_ptr<LeaseStore> OpenDynamoStore(const DynamoStoreConfig& config, const Clock& clock,
                                            std::string* error, DynamoStoreDeps deps) {
  aws::Deadline deadline = std::chrono::steady_clock::now() + deps.setup_timeout;
  std::optional<Connection> c = Connect(config, deps, error);
  if (!c) return nullptr;
  for (;;) {
    TableState state = DescribeLeaseTable(*c, deadline, error);
    if (state == TableState::kReady) break;
    if (state != TableState::kPending || !PauseUntil(deadline, std::chrono::milliseconds(250))) {
      return nullptr;
    }
  }
  return std::make_unique<DynamoStore>(std::move(*c), clock, deps.scan_page_size);
}

std::unique_ptr<LeaseStore> OpenDynamoStore(const std::string& uri, const Clock& clock,
                                            std::string* error, DynamoStoreDeps deps) {
  std::optional<DynamoStoreConfig> config = ParseDynamoStoreUri(uri, error);
  if (!config) return nullptr;
  return OpenDynamoStore(*config, clock, error, std::move(deps));
}

TableCreateResult CreateDynamoTable(const DynamoStoreConfig& config, DynamoStoreDeps deps) {
  TableCreateResult result;
  aws::Deadline deadline = std::chrono::steady_clock::now() + deps.setup_timeout;
  std::optional<Connection> c = Connect(config, deps, &result.message);
  if (!c) return result;
  const json create = {
      {"TableName", c->table},
      {"AttributeDefinitions", {{{"AttributeName", kKeyAttribute}, {"AttributeType", "S"}}}},
      {"KeySchema", {{{"AttributeName", kKeyAttribute}, {"KeyType", "HASH"}}}},
      {"BillingMode", "PAY_PER_REQUEST"}};
  // Look, create if missing, look again until ACTIVE: a racing creator, an ambiguous CreateTable
  // and DynamoDB's CREATING phase all settle by looking.
  bool tried_create = false, created = false;
  for (;;) {
    std::string why;
    TableState state = DescribeLeaseTable(*c, deadline, &why);
    if (state == TableState::kReady) {
      result.ok = true;
      result.created = created;
      result.message = created ? "created table " + c->table + " " + c->where()
                               : "table " + c->table + " " + c->where() +
                                     " already exists with the right key schema";
      return result;
    }
    if (state == TableState::kFailed) {
      result.message = why;
      return result;
    }
    if (state == TableState::kMissing && !tried_create) {
      tried_create = true;
      DynamoResult r = c->client->call("CreateTable", create, deadline);
      // ResourceInUseException: someone else is creating it; ambiguous: look and see.
      if (!r.ok() && r.status != DynamoStatus::kAmbiguous &&
          r.error_type != "ResourceInUseException") {
        result.message =
            "cannot create table " + c->table + ": " + ExplainFailure(*c, "CreateTable", r);
        return result;
      }
      created = r.ok() || r.status == DynamoStatus::kAmbiguous;
      continue;
    }
    if (!PauseUntil(deadline, std::chrono::milliseconds(250))) {
      result.message =
          "gave up waiting for table " + c->table + " " + c->where() + " to become ACTIVE: " + why;
      return result;
    }
  }
}

}  // namespace leasefs::lock
