#include "http_test_server.h"

#include <arpa/inet.h>
#include <civetweb.h>
#include <netinet/in.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <thread>

namespace leasefs::testing {
namespace {

bool SameName(std::string_view a, std::string_view b) {
  return a.size() == b.size() && strncasecmp(a.data(), b.data(), a.size()) == 0;
}

bool HasHeader(const HttpHeaderList& headers, std::string_view name) {
  for (const auto& header : headers) {
    if (SameName(header.first, name)) return true;
  }
  return false;
}

// Connects to 127.0.0.1:port and hangs up at once: wakes civetweb's accept loop, which otherwise
// notices a stop request only every 2 s.
void Poke(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  (void)connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address);
  close(fd);
}

}  // namespace

std::string HttpTestRequest::header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (SameName(key, name)) return value;
  }
  return {};
}

HttpTestServer::HttpTestServer(Handler handler, int threads) : handler_(std::move(handler)) {
  mg_init_library(0);
  const std::string thread_count = std::to_string(threads);
  // Idle connections stay open for the whole test (keep_alive_timeout_ms), so the server never
  // closes one under a client that is about to reuse it; the target is recorded as sent, not
  // percent-decoded (decode_url).
  const char* options[] = {"listening_ports",
                           "127.0.0.1:0",
                           "num_threads",
                           thread_count.c_str(),
                           "enable_keep_alive",
                           "yes",
                           "keep_alive_timeout_ms",
                           "600000",
                           "tcp_nodelay",
                           "1",
                           "decode_url",
                           "no",
                           nullptr};
  mg_callbacks callbacks;
  std::memset(&callbacks, 0, sizeof callbacks);
  callbacks.begin_request = &HttpTestServer::OnRequest;
  callbacks.init_connection = &HttpTestServer::OnConnection;
  mg_init_data init{&callbacks, this, options};
  char text[256] = "";
  unsigned code = 0;
  mg_error_data failure{&code, text, sizeof text};
  context_ = mg_start2(&init, &failure);
  if (!context_) {
    mg_exit_library();
    throw std::runtime_error(std::string("HttpTestServer: civetweb did not start: ") +
                             (text[0] ? text : "unknown error"));
  }
  mg_server_port ports[1];
  std::memset(ports, 0, sizeof ports);
  if (mg_get_server_ports(context_, 1, ports) < 1 || ports[0].port <= 0) {
    mg_stop(context_);
    mg_exit_library();
    throw std::runtime_error("HttpTestServer: no listening port");
  }
  port_ = ports[0].port;
}

HttpTestServer::~HttpTestServer() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();  // cuts delays short
  std::atomic<bool> stopped = false;
  std::thread stopper([&] {
    mg_stop(context_);
    stopped = true;
  });
  while (!stopped) {
    Poke(port_);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  stopper.join();
  mg_exit_library();
}

std::string HttpTestServer::url(std::string_view target) const {
  return "http://127.0.0.1:" + std::to_string(port_) + std::string(target);
}

void HttpTestServer::set_handler(Handler handler) {
  std::lock_guard lock(mutex_);
  handler_ = std::move(handler);
}

std::vector<HttpTestRequest> HttpTestServer::requests() const {
  std::lock_guard lock(mutex_);
  return requests_;
}

int HttpTestServer::connections() const {
  std::lock_guard lock(mutex_);
  return connections_;
}

bool HttpTestServer::wait_for_requests(size_t count, std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mutex_);
  return changed_.wait_for(lock, timeout, [&] { return requests_.size() >= count; });
}

int HttpTestServer::OnConnection(const mg_connection* connection, void** connection_data) {
  auto* server = static_cast<HttpTestServer*>(mg_get_user_context_data(connection));
  std::lock_guard lock(server->mutex_);
  *connection_data = reinterpret_cast<void*>(static_cast<uintptr_t>(++server->connections_));
  return 0;
}

int HttpTestServer::OnRequest(mg_connection* connection) {
  return static_cast<HttpTestServer*>(mg_get_user_context_data(connection))->serve(connection);
}

int HttpTestServer::serve(mg_connection* connection) {
  const mg_request_info* info = mg_get_request_info(connection);
  HttpTestRequest request;
  request.method = info->request_method ? info->request_method : "";
  request.target = info->request_uri ? info->request_uri : "";
  if (info->query_string) request.target += std::string("?") + info->query_string;
  for (int i = 0; i < info->num_headers; ++i) {
    request.headers.emplace_back(info->http_headers[i].name, info->http_headers[i].value);
  }
  char buffer[16384];
  for (int n; (n = mg_read(connection, buffer, sizeof buffer)) > 0;) {
    request.body.append(buffer, static_cast<size_t>(n));
  }
  request.connection =
      static_cast<int>(reinterpret_cast<uintptr_t>(mg_get_user_connection_data(connection)));

  Handler handler;
  {
    std::lock_guard lock(mutex_);
    requests_.push_back(request);
    handler = handler_;
  }
  changed_.notify_all();

  HttpTestReply reply;
  if (handler) {
    try {
      reply = handler(request);
    } catch (const std::exception& error) {
      reply = HttpTestReply{};
      reply.status = 500;
      reply.body = std::string("handler threw: ") + error.what();
    }
  }
  if (reply.delay > std::chrono::milliseconds(0)) {
    std::unique_lock lock(mutex_);
    if (changed_.wait_for(lock, reply.delay, [&] { return stopping_; })) {
      reply.drop = HttpTestReply::Drop::kBeforeReply;
    }
  }
  if (reply.drop == HttpTestReply::Drop::kBeforeReply) {
    mg_disable_connection_keep_alive(connection);
    return reply.status > 0 ? reply.status : 1;
  }

  const char* reason = mg_get_response_code_text(connection, reply.status);
  std::string head =
      "HTTP/1.1 " + std::to_string(reply.status) + " " + (reason ? reason : "") + "\r\n";
  for (const auto& [name, value] : reply.headers) {
    head += name + ": " + value + "\r\n";
    if (SameName(name, "Connection") && SameName(value, "close")) {
      mg_disable_connection_keep_alive(connection);
    }
  }
  if (!HasHeader(reply.headers, "Content-Length") &&
      !HasHeader(reply.headers, "Transfer-Encoding")) {
    head += "Content-Length: " + std::to_string(reply.body.size()) + "\r\n";
  }
  head += "\r\n";
  const bool head_only = request.method == "HEAD";
  if (reply.drop == HttpTestReply::Drop::kMidBody) {
    head.append(reply.body, 0, reply.body.size() / 2);
    mg_write(connection, head.data(), head.size());
    mg_disable_connection_keep_alive(connection);
  } else {
    if (!head_only) head += reply.body;
    mg_write(connection, head.data(), head.size());
  }
  return reply.status > 0 ? reply.status : 1;
}

}  // namespace leasefs::testing
