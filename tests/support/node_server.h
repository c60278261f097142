/*
 * node_server: run a local AWS API server from the repository's pinned npm packages (package.json
 * at the repository root: dynalite for DynamoDB, s3rver for S3) from a GoogleTest test.
 *
 * Contract:
 *   - NodeModulesDir() is $LEASEFS_NODE_MODULES if set, else <source dir>/node_modules (installed
 *     by `npm ci`, which `scripts/dev deps` runs). NodeBin("dynalite") is NodeModulesDir() +
 *     "/.bin/dynalite"; "" if it is not executable. The caller then GTEST_SKIPs, saying how to
 *     install it — unless NodeServersRequired() ($LEASEFS_REQUIRE_NODE_SERVERS set and not "0"),
 *     which CI sets: there a missing server is a failure, not a silent pass.
 *   - NodeServer::Start runs `BIN ARGS...` with every "{port}" in ARGS replaced by a free TCP port
 *     on 127.0.0.1, stdout+stderr in a log file, and waits (bounded) until the log shows
 *     `ready_marker`. A port taken between choosing and binding (EADDRINUSE) is retried with
 *     another. On failure it returns nullptr with the reason (and the log) in *error.
 *   - The child gets PR_SET_PDEATHSIG(SIGKILL): it dies with the thread that started it, even if
 *     the test process crashes. Stop() (and the destructor) sends SIGTERM, waits (bounded), then
 *     SIGKILL, and always reaps it. Start it from a thread that outlives it (the main thread, e.g.
 *     in SetUpTestSuite).
 */
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

namespace leasefs::testing {

std::string NodeModulesDir();
std::string NodeBin(const std::string& name);
bool NodeServersRequired();

class NodeServer {
 public:
  static std::unique_ptr<NodeServer> Start(const std::string& bin, std::vector<std::string> args,
                                           const std::string& ready_marker, std::string* error);
  // Dynalite, in memory, on 127.0.0.1:{port}. Tables stay CREATING for create_table_ms.
  static std::unique_ptr<NodeServer> StartDynalite(std::string* error, int create_table_ms = 0);

  ~NodeServer();
  NodeServer(const NodeServer&) = delete;
  NodeServer& operator=(const NodeServer&) = delete;

  // Stops the server (SIGTERM, then SIGKILL) and reaps it. Idempotent.
  void Stop();

  int port() const { return port_; }
  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port_); }
  pid_t pid() const { return pid_; }
  std::string log() const;

 private:
  NodeServer() = default;

  pid_t pid_ = -1;
  int port_ = 0;
  std::string log_path_;
};

// A TCP port on 127.0.0.1 nothing listens on right now (bound, then released).
int UnusedPort();

}  // namespace leasefs::testing
