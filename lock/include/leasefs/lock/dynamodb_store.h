// leasefs/lock/dynamodb_store.h — the lease store in one Amazon DynamoDB table.
//
// Named by a URI:  dynamodb://TABLE?region=REGION[&endpoint=URL]
//   TABLE     3–255 characters of [A-Za-z0-9_.-] (DynamoDB's rule);
//   region    required, e.g. us-east-1 — every host of a cluster must name the same table in the
//             same region (keep the table single-region: global tables are last-writer-wins);
//   endpoint  optional http(s) URL overriding https://dynamodb.REGION.amazonaws.com (tests point
//             it at dynalite); AWS_ENDPOINT_URL_DYNAMODB / AWS_ENDPOINT_URL also override it.
// Values may be percent-encoded. Credentials come from the standard chain (credentials.h).
//
// The table has a single string partition key named `key` (no sort key); items are
// {key: S, rev: N, body: S}. CreateDynamoTable makes one (on-demand capacity) and is what
// `leasefs table create` runs. OpenDynamoStore checks at open that the table exists, is usable
// and has that key schema, so a bad configuration fails the mount with one clear line.
// Protocol and outcome mapping: the comment at the top of dynamodb_store.cc.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "leasefs/aws/credentials.h"
#include "leasefs/aws/http.h"
#include "leasefs/lock/clock.h"
#include "leasefs/lock/lease_store.h"

namespace leasefs::lock {

struct DynamoStoreConfig {
  std::string table;
  std::string region;    // empty: resolved from the environment (endpoint.h), else an error
  std::string endpoint;  // empty: AWS_ENDPOINT_URL_DYNAMODB, AWS_ENDPOINT_URL, else AWS's
};

// Parses and validates a dynamodb:// URI. nullopt with one line in *error when it is not valid.
std::optional<DynamoStoreConfig> ParseDynamoStoreUri(const std::string& uri, std::string* error);

// What the store reads from and talks through. Defaults are the process's; tests inject theirs.
struct DynamoStoreDeps {
  // Where the credential chain, region and endpoint resolution read variables and ~/.aws.
  aws::CredentialEnvironment env = aws::CredentialEnvironment::Process();
  // null: a cache over the default chain (aws::MakeDefaultChain(env, http)), started at open.
  // Given: used as is (it must have been started).
  std::shared_ptr<aws::CredentialCache> credentials;
  std::shared_ptr<aws::HttpClient> http;  // null: a new client
  aws::RetryPolicy retry;                 // the DynamoDB client fills in its classifier
  // Bound of what open (credentials + DescribeTable) or table creation may take.
  std::chrono::milliseconds setup_timeout{15000};
  int scan_page_size = 0;  // list(): items per Scan page; 0 = DynamoDB's (1 MB pages)
};

// Opens the store: resolves region and endpoint, obtains credentials, and checks the table with
// DescribeTable (exists, ACTIVE or UPDATING — waits while it is CREATING —, key schema). On
// failure returns nullptr and one line in *error, e.g. "table T not found in region R",
// "no credentials: ...", "cannot reach endpoint URL: ...". `clock` (the lease manager's) must
// outlive the store; the deadlines passed to the store are on it.
std::unique_ptr<LeaseStore> OpenDynamoStore(const DynamoStoreConfig& config, const Clock& clock,
                                            std::string* error, DynamoStoreDeps deps = {});
std::unique_ptr<LeaseStore> OpenDynamoStore(const std::string& uri, const Clock& clock,
                                            std::string* error, DynamoStoreDeps deps = {});

struct TableCreateResult {
  bool ok = false;
  bool created = false;  // false with ok: the table already existed with the right key schema
  std::string message;   // one line for the user, on success and on failure
};

// Creates config.table (PAY_PER_REQUEST, partition key `key` of type S) and waits until it is
// ACTIVE, within deps.setup_timeout. Idempotent: a table that exists with the right key schema
// is success (created = false); one with another key schema is an error. Another creator racing
// this one is fine (ResourceInUseException means: go and look at what exists).
TableCreateResult CreateDynamoTable(const DynamoStoreConfig& config, DynamoStoreDeps deps = {});

}  // namespace leasefs::lock
