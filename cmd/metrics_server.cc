#include "metrics_server.h"

#include <civetweb.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

namespace leasefs::cmd {
namespace {

// Binds a socket to `address` (HOST:PORT or [IPV6]:PORT) and lets it go again: 0, or the errno
// that a listener there would meet. civetweb only says "Failed to setup server ports".
int TryBind(const std::string& address) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos) return EINVAL;
  std::string host = address.substr(0, colon);
  const std::string port = address.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), port.c_str(), &hints, &found) != 0 || !found) return EADDRNOTAVAIL;
  int error = 0;
  int fd = socket(found->ai_family, found->ai_socktype | SOCK_CLOEXEC, found->ai_protocol);
  if (fd < 0) {
    error = errno;
  } else {
    int on = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);  // as civetweb does
    if (bind(fd, found->ai_addr, found->ai_addrlen) != 0) error = errno;
    close(fd);
  }
  freeaddrinfo(found);
  return error;
}

}  // namespace

std::unique_ptr<MetricsServer> MetricsServer::Start(const std::string& address,
                                                    std::function<std::string()> render,
                                                    std::string* error) {
  // A daemon unmounted a moment ago may still be finishing (flushing, giving up its claims) with
  // the port bound: `umount && mount` waits for it rather than fail.
  int bind_error = TryBind(address);
  for (int waited_ms = 0; bind_error == EADDRINUSE && waited_ms < 10000; waited_ms += 100) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    bind_error = TryBind(address);
  }
  if (bind_error != 0) {
    *error = "cannot serve metrics on " + address + ": " +
             (bind_error == EADDRINUSE ? std::string("the port is in use by another program")
                                       : std::strerror(bind_error));
    return nullptr;
  }
  std::unique_ptr<MetricsServer> server(new MetricsServer);
  server->render_ = std::move(render);
  mg_init_library(0);
  const char* options[] = {"listening_ports", address.c_str(), "num_threads", "2", nullptr};
  mg_callbacks callbacks;
  std::memset(&callbacks, 0, sizeof callbacks);
  mg_init_data init{&callbacks, server.get(), options};
  char text[256] = "";
  unsigned code = 0;
  mg_error_data failure{&code, text, sizeof text};
  server->context_ = mg_start2(&init, &failure);
  if (!server->context_) {
    *error = "cannot serve metrics on " + address + ": " + (text[0] ? text : "failed to start");
    return nullptr;
  }
  mg_set_request_handler(
      server->context_, "/metrics",
      [](mg_connection* connection, void* data) -> int {
        std::string body = static_cast<MetricsServer*>(data)->render_();
        mg_send_http_ok(connection, "text/plain; version=0.0.4; charset=utf-8",
                        static_cast<long long>(body.size()));
        mg_write(connection, body.data(), body.size());
        return 200;
      },
      server.get());
  return server;
}

MetricsServer::~MetricsServer() {
  if (context_) mg_stop(context_);
}

}  // namespace leasefs::cmd
