#include "metrics_server.h"

#include <civetweb.h>

#include <cstring>

namespace leasefs::cmd {

std::unique_ptr<MetricsServer> MetricsServer::Start(const std::string& address,
                                                    std::function<std::string()> render,
                                                    std::string* error) {
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
