/*
 * http_test_server: a local HTTP/1.1 server (civetweb) for tests that need an endpoint to talk
 * to — playing STS, ECS, IMDS or DynamoDB, or injecting faults in front of one.
 *
 * Contract:
 *   - It listens on 127.0.0.1 on an ephemeral port (url() / port()), keep-alive on, from
 *     construction to destruction. The constructor throws std::runtime_error if it cannot start.
 *   - Every request is recorded (requests()) when it arrives, before the handler runs, so a
 *     request that was answered late, dropped or timed out by the client is still there. Each
 *     record carries the number of the TCP connection it came on (1 for the first accepted), so
 *     tests can check connection reuse; connections() counts connections accepted.
 *   - The handler runs on civetweb's worker threads, possibly several at once, and without any
 *     lock of the server held (it may call requests() or set_handler()). An exception it throws
 *     becomes a 500 carrying the message.
 *   - The reply can wait `delay` first, then answer, or drop the connection instead: kBeforeReply
 *     closes it without sending a byte (the client sees an empty reply), kMidBody sends the status
 *     line, the headers with the full Content-Length and the first half of the body (give it a
 *     body of 2 bytes or more), then closes (a truncated reply). Destroying the server cuts
 *     delays short and drops those connections.
 *   - Content-Length is added unless the reply's headers have it; HEAD replies carry no body.
 *   - Destroy clients (which close their keep-alive connections) before the server: civetweb
 *     notices a client that stays connected only within ~2 s, and destruction waits for that.
 */
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

struct mg_context;
struct mg_connection;

namespace leasefs::testing {

using HttpHeaderList = std::vector<std::pair<std::string, std::string>>;

struct HttpTestRequest {
  std::string method;
  std::string target;  // path and query exactly as sent: "/a%2Fb?x=1"
  HttpHeaderList headers;
  std::string body;
  int connection = 0;  // which TCP connection it came on: 1, 2, ... in order of acceptance

  // The first value of header `name` (case-insensitive), or "" when absent.
  std::string header(std::string_view name) const;
};

struct HttpTestReply {
  enum class Drop { kNo, kBeforeReply, kMidBody };

  int status = 200;
  HttpHeaderList headers;
  std::string body;
  std::chrono::milliseconds delay{0};  // wait this long before answering (or dropping)
  Drop drop = Drop::kNo;
};

class HttpTestServer {
 public:
  using Handler = std::function<HttpTestReply(const HttpTestRequest&)>;

  // An empty handler answers every request 200 with an empty body. `threads` bounds the
  // connections served at once: an idle keep-alive connection holds one of them.
  explicit HttpTestServer(Handler handler = {}, int threads = 8);
  ~HttpTestServer();
  HttpTestServer(const HttpTestServer&) = delete;
  HttpTestServer& operator=(const HttpTestServer&) = delete;

  int port() const { return port_; }
  // "http://127.0.0.1:PORT" followed by `target`.
  std::string url(std::string_view target = "/") const;

  void set_handler(Handler handler);

  std::vector<HttpTestRequest> requests() const;  // in order of arrival
  int connections() const;
  // Waits until at least `count` requests have arrived; false if `timeout` passed first.
  bool wait_for_requests(size_t count, std::chrono::milliseconds timeout) const;

 private:
  static int OnConnection(const mg_connection* connection, void** connection_data);
  static int OnRequest(mg_connection* connection);
  int serve(mg_connection* connection);

  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;  // a request arrived, or stopping_ was set
  Handler handler_;
  std::vector<HttpTestRequest> requests_;
  int connections_ = 0;
  bool stopping_ = false;
  mg_context* context_ = nullptr;
  int port_ = 0;
};

}  // namespace leasefs::testing
