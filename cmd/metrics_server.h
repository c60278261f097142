// metrics_server.h — Prometheus metrics over HTTP (GET /metrics) on --metrics-addr, served by
// civetweb (Debian's libcivetweb) on its own threads, never on the FUSE request path.
#pragma once

#include <functional>
#include <memory>
#include <string>

struct mg_context;  // civetweb's server handle

namespace leasefs::cmd {

class MetricsServer {
 public:
  // `address` is HOST:PORT (IPv6 as [::1]:PORT). On failure returns nullptr, one line in *error.
  static std::unique_ptr<MetricsServer> Start(const std::string& address,
                                              std::function<std::string()> render,
                                              std::string* error);
  ~MetricsServer();

 private:
  MetricsServer() = default;
  ::mg_context* context_ = nullptr;
  std::function<std::string()> render_;
};

}  // namespace leasefs::cmd
