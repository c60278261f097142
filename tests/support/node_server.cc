/*
 * node_server.cc: starting and stopping the npm test servers (see node_server.h).
 *
 * The server is a direct child (fork + execv) so waitpid() reaps it; it sets PR_SET_PDEATHSIG and
 * re-checks its parent after, closing the race where the parent died between fork and prctl.
 * Readiness is a poll of the log file for the server's "listening" line against a deadline.
 */
#include "node_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#ifndef LEASEFS_SOURCE_DIR
#error "LEASEFS_SOURCE_DIR must be defined (tests/support/CMakeLists.txt)"
#endif

namespace leasefs::testing {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr auto kStartTimeout = 20s;
constexpr auto kStopTimeout = 5s;
constexpr auto kPollInterval = 10ms;
constexpr int kPortAttempts = 5;

std::string ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

std::string TmpRoot() {
  const char* tmp = getenv("TMPDIR");
  return (tmp != nullptr && tmp[0] == '/') ? std::string(tmp) : std::string("/tmp");
}

// waitpid with a bound; true once reaped (status in *status).
bool ReapWithin(pid_t pid, Clock::duration bound, int* status) {
  auto deadline = Clock::now() + bound;
  for (;;) {
    pid_t r = waitpid(pid, status, WNOHANG);
    if (r == pid || (r < 0 && errno == ECHILD)) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(kPollInterval);
  }
}

}  // namespace

std::string NodeModulesDir() {
  const char* dir = getenv("LEASEFS_NODE_MODULES");
  if (dir != nullptr && dir[0] != '\0') return dir;
  return std::string(LEASEFS_SOURCE_DIR) + "/node_modules";
}

std::string NodeBin(const std::string& name) {
  std::string path = NodeModulesDir() + "/.bin/" + name;
  return access(path.c_str(), X_OK) == 0 ? path : "";
}

bool NodeServersRequired() {
  const char* value = getenv("LEASEFS_REQUIRE_NODE_SERVERS");
  return value != nullptr && value[0] != '\0' && std::string(value) != "0";
}

int UnusedPort() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t length = sizeof address;
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0) {
    port = ntohs(address.sin_port);
  }
  close(fd);
  return port;
}

std::unique_ptr<NodeServer> NodeServer::Start(const std::string& bin, std::vector<std::string> args,
                                              const std::string& ready_marker, std::string* error) {
  std::string failures;
  for (int attempt = 0; attempt < kPortAttempts; attempt++) {
    std::unique_ptr<NodeServer> server(new NodeServer());
    server->port_ = UnusedPort();
    if (server->port_ == 0) {
      *error = "no free TCP port on 127.0.0.1: " + std::string(strerror(errno));
      return nullptr;
    }
    std::vector<std::string> argv_strings{bin};
    for (std::string arg : args) {
      for (size_t at; (at = arg.find("{port}")) != std::string::npos;) {
        arg.replace(at, 6, std::to_string(server->port_));
      }
      argv_strings.push_back(arg);
    }
    std::string log_template = TmpRoot() + "/leasefs-node-server-XXXXXX";
    int log_fd = mkostemp(log_template.data(), O_CLOEXEC);
    if (log_fd < 0) {
      *error = "mkostemp(" + log_template + "): " + strerror(errno);
      return nullptr;
    }
    server->log_path_ = log_template;
    std::vector<char*> argv;
    for (auto& s : argv_strings) argv.push_back(s.data());
    argv.push_back(nullptr);

    const pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
      close(log_fd);
      *error = std::string("fork: ") + strerror(errno);
      return nullptr;
    }
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(127);
      int null_fd = open("/dev/null", O_RDONLY);
      if (null_fd >= 0) dup2(null_fd, STDIN_FILENO);
      dup2(log_fd, STDOUT_FILENO);
      dup2(log_fd, STDERR_FILENO);
      execv(argv[0], argv.data());
      dprintf(STDERR_FILENO, "execv %s: %s\n", argv[0], strerror(errno));
      _exit(127);
    }
    close(log_fd);
    server->pid_ = pid;

    auto deadline = Clock::now() + kStartTimeout;
    bool exited = false;
    for (;;) {
      if (server->log().find(ready_marker) != std::string::npos) return server;
      int status = 0;
      if (waitpid(pid, &status, WNOHANG) == pid) {
        server->pid_ = -1;
        exited = true;
        break;
      }
      if (Clock::now() >= deadline) break;
      std::this_thread::sleep_for(kPollInterval);
    }
    std::string log = server->log();
    server->Stop();
    if (exited && log.find("EADDRINUSE") != std::string::npos) {
      failures += "port " + std::to_string(server->port_) + " was taken; ";
      continue;
    }
    *error = failures + bin + (exited ? " exited before it was ready" : " was not ready in time") +
             "; its output:\n" + log;
    return nullptr;
  }
  *error = failures + "giving up";
  return nullptr;
}

std::unique_ptr<NodeServer> NodeServer::StartDynalite(std::string* error, int create_table_ms) {
  std::string bin = NodeBin("dynalite");
  if (bin.empty()) {
    *error = NodeModulesDir() + "/.bin/dynalite is missing: run `npm ci` at the repository root";
    return nullptr;
  }
  std::string ms = std::to_string(create_table_ms);
  return Start(
      bin,
      {"--port", "{port}", "--createTableMs", ms, "--deleteTableMs", "0", "--updateTableMs", "0"},
      "Listening at", error);
}

NodeServer::~NodeServer() {
  Stop();
  if (!log_path_.empty()) unlink(log_path_.c_str());
}

void NodeServer::Stop() {
  if (pid_ <= 0) return;
  int status = 0;
  kill(pid_, SIGTERM);
  if (!ReapWithin(pid_, kStopTimeout, &status)) {
    kill(pid_, SIGKILL);
    ReapWithin(pid_, kStopTimeout, &status);
  }
  pid_ = -1;
}

std::string NodeServer::log() const {
  return log_path_.empty() ? "" : ReadWholeFile(log_path_);
}

}  // namespace leasefs::testing
