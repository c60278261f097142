// Tests of leasefs::aws::HttpClient against the local HttpTestServer.
//
// Timing assertions compare against deadlines and server delays chosen so that a correct client
// lands far inside the bounds (a 300 ms deadline against a 10 s server delay, checked within
// [deadline - 5 ms, deadline + 1 s]); the slack is generous (at least 300 ms) because test
// machines are shared and loaded. Nothing waits on a sleep and hopes.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "http_test_server.h"
#include "leasefs/aws/http.h"

namespace leasefs::aws {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using leasefs::testing::HttpTestReply;
using leasefs::testing::HttpTestRequest;
using leasefs::testing::HttpTestServer;

Deadline In(std::chrono::milliseconds duration) {
  return Clock::now() + duration;
}

std::chrono::milliseconds Since(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
}

HttpTestReply Reply(int status, std::string body = {}) {
  HttpTestReply reply;
  reply.status = status;
  reply.body = std::move(body);
  return reply;
}

// Answers the i-th request (0-based) with statuses[i], and 200 after the last.
HttpTestServer::Handler Statuses(std::vector<int> statuses) {
  auto next = std::make_shared<std::atomic<size_t>>(0);
  return [statuses = std::move(statuses), next](const HttpTestRequest&) {
    size_t i = (*next)++;
    return Reply(i < statuses.size() ? statuses[i] : 200, "reply " + std::to_string(i));
  };
}

RetryPolicy FastRetries(int max_attempts = 8) {
  RetryPolicy policy;
  policy.base_backoff = 1ms;
  policy.max_backoff = 5ms;
  policy.max_attempts = max_attempts;
  return policy;
}

class HttpClientTest : public ::testing::Test {
 protected:
  HttpRequest Get(const std::string& target) {
    HttpRequest request;
    request.method = "GET";
    request.url = server_.url(target);
    return request;
  }
  HttpRequest Post(const std::string& target, std::string body) {
    HttpRequest request;
    request.method = "POST";
    request.url = server_.url(target);
    request.body = std::move(body);
    return request;
  }

  // Declared first, destroyed last: the client closes its connections before the server stops.
  HttpTestServer server_;
  HttpClient client_;
};

TEST_F(HttpClientTest, GetRoundTripsTargetHeadersAndBody) {
  server_.set_handler([](const HttpTestRequest&) {
    HttpTestReply reply = Reply(200, "hello");
    reply.headers = {{"X-Reply", "yes"}, {"Content-Type", "text/plain"}};
    return reply;
  });
  HttpRequest request = Get("/path/a%2Fb?x=1&y=%20z");
  request.headers = {{"X-Custom", "abc"}, {"X-Empty", ""}};
  HttpResponse response = client_.send(request, In(5s));

  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.body, "hello");
  EXPECT_EQ(FindHeader(response.headers, "x-reply"), "yes");
  EXPECT_EQ(FindHeader(response.headers, "Content-Length"), "5");
  EXPECT_TRUE(response.transport_error.empty());
  EXPECT_TRUE(response.maybe_sent);

  auto seen = server_.requests();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].method, "GET");
  EXPECT_EQ(seen[0].target, "/path/a%2Fb?x=1&y=%20z");
  EXPECT_EQ(seen[0].header("X-Custom"), "abc");
  bool has_empty = false;
  for (const auto& [name, value] : seen[0].headers) {
    if (name == "X-Empty") has_empty = value.empty();
  }
  EXPECT_TRUE(has_empty) << "a header with an empty value is sent empty";
  EXPECT_EQ(seen[0].header("User-Agent"), "leasefs");
  EXPECT_EQ(seen[0].header("Host"), "127.0.0.1:" + std::to_string(server_.port()));
  EXPECT_EQ(seen[0].header("Accept"), "") << "libcurl's default Accept is suppressed";
  EXPECT_EQ(seen[0].body, "");
}

TEST_F(HttpClientTest, PostSendsLargeBodyWithoutExpectContinue) {
  server_.set_handler([](const HttpTestRequest& request) {
    return Reply(200, "got " + std::to_string(request.body.size()));
  });
  // Large enough for libcurl to add "Expect: 100-continue" by default (over 1 MiB).
  std::string body(2 * 1024 * 1024 + 17, 'x');
  for (size_t i = 0; i < body.size(); i += 997) body[i] = static_cast<char>('a' + i % 26);
  HttpRequest request = Post("/", body);
  request.headers = {{"Content-Type", "application/x-amz-json-1.0"},
                     {"X-Amz-Target", "DynamoDB_20120810.GetItem"}};

  HttpResponse response = client_.send(request, In(10s));
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.body, "got " + std::to_string(body.size()));

  auto seen = server_.requests();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].method, "POST");
  EXPECT_EQ(seen[0].body, body);
  EXPECT_EQ(seen[0].header("Expect"), "");
  EXPECT_EQ(seen[0].header("Content-Type"), "application/x-amz-json-1.0");
  EXPECT_EQ(seen[0].header("X-Amz-Target"), "DynamoDB_20120810.GetItem");
  EXPECT_EQ(seen[0].header("Content-Length"), std::to_string(body.size()));
}

TEST_F(HttpClientTest, PostWithoutContentTypeSendsNone) {
  HttpResponse response = client_.send(Post("/", "Action=AssumeRoleWithWebIdentity"), In(5s));
  EXPECT_EQ(response.status, 200);
  auto seen = server_.requests();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].header("Content-Type"), "") << "no form Content-Type added by libcurl";
  EXPECT_EQ(seen[0].body, "Action=AssumeRoleWithWebIdentity");
}

TEST_F(HttpClientTest, OtherMethods) {
  server_.set_handler([](const HttpTestRequest& request) {
    HttpTestReply reply = Reply(200, request.method + ":" + request.body);
    reply.headers = {{"X-Method", request.method}};
    return reply;
  });
  HttpRequest put = Get("/latest/api/token");
  put.method = "PUT";
  put.headers = {{"X-aws-ec2-metadata-token-ttl-seconds", "21600"}};
  HttpResponse response = client_.send(put, In(5s));
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.body, "PUT:");

  HttpRequest put_body = put;
  put_body.body = "data";
  EXPECT_EQ(client_.send(put_body, In(5s)).body, "PUT:data");

  HttpRequest del = Get("/thing");
  del.method = "DELETE";
  EXPECT_EQ(client_.send(del, In(5s)).body, "DELETE:");

  HttpRequest head = Get("/thing");
  head.method = "HEAD";
  response = client_.send(head, In(5s));
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.body, "");
  EXPECT_EQ(FindHeader(response.headers, "X-Method"), "HEAD");

  auto seen = server_.requests();
  ASSERT_EQ(seen.size(), 4u);
  EXPECT_EQ(seen[0].method, "PUT");
  EXPECT_EQ(seen[0].header("Content-Length"), "0") << "IMDSv2's token PUT needs it";
  EXPECT_EQ(seen[0].header("X-aws-ec2-metadata-token-ttl-seconds"), "21600");
  EXPECT_EQ(seen[1].body, "data");
  EXPECT_EQ(seen[2].method, "DELETE");
  EXPECT_EQ(seen[3].method, "HEAD");
}

TEST_F(HttpClientTest, ErrorStatusIsAResponse) {
  server_.set_handler([](const HttpTestRequest&) { return Reply(404, "no such thing"); });
  HttpResponse response = client_.send(Get("/missing"), In(5s));
  EXPECT_EQ(response.status, 404);
  EXPECT_EQ(response.body, "no such thing");
  EXPECT_TRUE(response.transport_error.empty());
}

TEST_F(HttpClientTest, ReusesOneConnectionForSequentialRequests) {
  for (int i = 0; i < 6; ++i) {
    HttpResponse response = i % 2 ? client_.send(Post("/p", "body"), In(5s))
                                  : client_.send(Get("/g?i=" + std::to_string(i)), In(5s));
    ASSERT_EQ(response.status, 200) << response.transport_error;
  }
  // An error status does not cost the connection either.
  server_.set_handler([](const HttpTestRequest&) { return Reply(503); });
  EXPECT_EQ(client_.send(Get("/"), In(5s)).status, 503);
  server_.set_handler({});
  EXPECT_EQ(client_.send(Get("/"), In(5s)).status, 200);

  EXPECT_EQ(server_.connections(), 1);
  for (const auto& request : server_.requests()) EXPECT_EQ(request.connection, 1);
}

TEST_F(HttpClientTest, ConcurrentCallersUseAtMostOneConnectionEach) {
  constexpr int kThreads = 4;
  constexpr int kRequests = 20;
  std::atomic<int> failures = 0;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kRequests; ++i) {
        HttpResponse response =
            client_.send(Post("/t" + std::to_string(t), std::to_string(i)), In(10s));
        if (response.status != 200) ++failures;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(server_.requests().size(), static_cast<size_t>(kThreads * kRequests));
  EXPECT_GE(server_.connections(), 1);
  EXPECT_LE(server_.connections(), kThreads);
}

TEST_F(HttpClientTest, DeadlineBoundsASlowServer) {
  server_.set_handler([](const HttpTestRequest&) {
    HttpTestReply reply = Reply(200, "too late");
    reply.delay = 10s;
    return reply;
  });
  auto start = Clock::now();
  HttpResponse response = client_.send(Post("/slow", "{}"), start + 300ms);
  auto elapsed = Since(start);

  EXPECT_GE(elapsed, 295ms);
  EXPECT_LT(elapsed, 1300ms);
  EXPECT_EQ(response.status, 0);
  EXPECT_FALSE(response.transport_error.empty());
  EXPECT_TRUE(response.maybe_sent) << "the server had the request: " << response.transport_error;
  EXPECT_EQ(server_.requests().size(), 1u);
}

TEST_F(HttpClientTest, DeadlineAlsoBoundsAReusedConnection) {
  ASSERT_EQ(client_.send(Get("/warm"), In(5s)).status, 200);
  server_.set_handler([](const HttpTestRequest&) {
    HttpTestReply reply;
    reply.delay = 10s;
    return reply;
  });
  auto start = Clock::now();
  HttpResponse response = client_.send(Get("/slow"), start + 200ms);
  auto elapsed = Since(start);
  EXPECT_GE(elapsed, 195ms);
  EXPECT_LT(elapsed, 1200ms);
  EXPECT_EQ(response.status, 0);
  EXPECT_TRUE(response.maybe_sent);
}

TEST_F(HttpClientTest, PassedDeadlineSendsNothing) {
  auto start = Clock::now();
  HttpResponse response = client_.send(Get("/"), start - 1ms);
  EXPECT_LT(Since(start), 500ms);
  EXPECT_EQ(response.status, 0);
  EXPECT_FALSE(response.transport_error.empty());
  EXPECT_FALSE(response.maybe_sent);

  response = client_.send_with_retries(Get("/"), start - 1ms, FastRetries());
  EXPECT_EQ(response.attempts, 1);
  EXPECT_FALSE(response.maybe_sent);
  EXPECT_EQ(server_.requests().size(), 0u);
}

// A port on 127.0.0.1 that refuses connections: bound, never listening, for the test's lifetime.
class RefusingPort {
 public:
  RefusingPort() {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    if (fd_ < 0 || bind(fd_, reinterpret_cast<sockaddr*>(&address), length) != 0 ||
        getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
      ADD_FAILURE() << "cannot bind a socket on 127.0.0.1";
    }
    port_ = ntohs(address.sin_port);
  }
  ~RefusingPort() {
    if (fd_ >= 0) close(fd_);
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/"; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

TEST_F(HttpClientTest, ConnectionRefusedWasNotSent) {
  RefusingPort refusing;
  HttpRequest request = Post("/", "{}");
  request.url = refusing.url();
  auto start = Clock::now();
  HttpResponse response = client_.send(request, In(5s));
  EXPECT_LT(Since(start), 1000ms);
  EXPECT_EQ(response.status, 0);
  EXPECT_FALSE(response.transport_error.empty());
  EXPECT_FALSE(response.maybe_sent) << response.transport_error;

  // Not sent, so retryable: every attempt is made.
  response = client_.send_with_retries(request, In(5s), FastRetries(3));
  EXPECT_EQ(response.attempts, 3);
  EXPECT_FALSE(response.maybe_sent);
}

TEST_F(HttpClientTest, UnresolvableHostWasNotSent) {
  HttpRequest request = Get("/");
  request.url = "http://nonexistent.invalid/";  // RFC 6761: never resolves
  HttpResponse response = client_.send(request, In(5s));
  EXPECT_EQ(response.status, 0);
  EXPECT_FALSE(response.maybe_sent) << response.transport_error;
}

TEST_F(HttpClientTest, DroppedBeforeReplyMaybeSent) {
  server_.set_handler([](const HttpTestRequest&) {
    HttpTestReply reply;
    reply.drop = HttpTestReply::Drop::kBeforeReply;
    return reply;
  });
  HttpResponse response = client_.send(Post("/", "{}"), In(5s));
  EXPECT_EQ(response.status, 0);
  EXPECT_FALSE(response.transport_error.empty());
  EXPECT_TRUE(response.maybe_sent) << response.transport_error;
  EXPECT_EQ(server_.requests().size(), 1u);

  // Sent, so not retried by default.
  response = client_.send_with_retries(Post("/", "{}"), In(5s), FastRetries());
  EXPECT_EQ(response.attempts, 1);
  EXPECT_TRUE(response.maybe_sent);
  EXPECT_EQ(server_.requests().size(), 2u);
}

TEST_F(HttpClientTest, DroppedMidResponseMaybeSent) {
  server_.set_handler([](const HttpTestRequest&) {
    HttpTestReply reply = Reply(200, std::string(1000, 'z'));
    reply.drop = HttpTestReply::Drop::kMidBody;
    return reply;
  });
  HttpResponse response = client_.send(Get("/"), In(5s));
  EXPECT_EQ(response.status, 0);
  EXPECT_TRUE(response.body.empty());
  EXPECT_FALSE(response.transport_error.empty());
  EXPECT_TRUE(response.maybe_sent) << response.transport_error;
}

TEST_F(HttpClientTest, PostDroppedOnReusedConnectionIsNotResent) {
  ASSERT_EQ(client_.send(Post("/warm", "1"), In(5s)).status, 200);
  server_.set_handler([](const HttpTestRequest&) {
    HttpTestReply reply;
    reply.drop = HttpTestReply::Drop::kBeforeReply;
    return reply;
  });
  HttpResponse response = client_.send(Post("/write", "2"), In(5s));
  EXPECT_EQ(response.status, 0);
  EXPECT_TRUE(response.maybe_sent) << response.transport_error;
  auto seen = server_.requests();
  ASSERT_EQ(seen.size(), 2u) << "the POST reached the server once";
  EXPECT_EQ(seen[1].connection, 1);
}

TEST_F(HttpClientTest, GetDroppedOnReusedConnectionIsResentByLibcurl) {
  ASSERT_EQ(client_.send(Get("/warm"), In(5s)).status, 200);
  std::atomic<int> calls = 0;
  server_.set_handler([&](const HttpTestRequest&) {
    HttpTestReply reply = Reply(200, "second try");
    if (calls++ == 0) reply.drop = HttpTestReply::Drop::kBeforeReply;
    return reply;
  });
  HttpResponse response = client_.send(Get("/read"), In(5s));
  EXPECT_EQ(response.status, 200) << response.transport_error;
  EXPECT_EQ(response.body, "second try");
  auto seen = server_.requests();
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[1].connection, 1);
  EXPECT_EQ(seen[2].connection, 2);
}

TEST_F(HttpClientTest, RetriesA503ThenSucceeds) {
  server_.set_handler(Statuses({503}));
  HttpResponse response = client_.send_with_retries(Post("/", "{}"), In(5s), FastRetries());
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.attempts, 2);
  EXPECT_EQ(response.body, "reply 1");
  EXPECT_EQ(server_.requests().size(), 2u);
}

TEST_F(HttpClientTest, RetriesThrottlingAndServerErrors) {
  server_.set_handler(Statuses({429, 500, 502, 504}));
  HttpResponse response = client_.send_with_retries(Post("/", "{}"), In(5s), FastRetries());
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.attempts, 5);
}

TEST_F(HttpClientTest, DoesNotRetryAClientError) {
  server_.set_handler(Statuses({400, 400}));
  HttpResponse response = client_.send_with_retries(Post("/", "{}"), In(5s), FastRetries());
  EXPECT_EQ(response.status, 400);
  EXPECT_EQ(response.attempts, 1);
  EXPECT_EQ(server_.requests().size(), 1u);
}

TEST_F(HttpClientTest, StopsAtMaxAttempts) {
  server_.set_handler([](const HttpTestRequest&) { return Reply(503, "busy"); });
  HttpResponse response = client_.send_with_retries(Post("/", "{}"), In(5s), FastRetries(3));
  EXPECT_EQ(response.status, 503);
  EXPECT_EQ(response.body, "busy");
  EXPECT_EQ(response.attempts, 3);
  EXPECT_EQ(server_.requests().size(), 3u);
}

TEST_F(HttpClientTest, CustomClassifier) {
  std::atomic<int> calls = 0;
  server_.set_handler([&](const HttpTestRequest&) {
    return calls++ == 0 ? Reply(400, R"({"__type":"x#ThrottlingException"})") : Reply(200);
  });
  RetryPolicy policy = FastRetries();
  policy.retryable = [](const HttpRequest& request, const HttpResponse& response) {
    return DefaultRetryable(request, response) ||
           (response.status == 400 &&
            response.body.find("ThrottlingException") != std::string::npos);
  };
  HttpResponse response = client_.send_with_retries(Post("/", "{}"), In(5s), policy);
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.attempts, 2);
}

TEST_F(HttpClientTest, BackoffNeverSleepsPastTheDeadline) {
  // Fast 503s and backoffs capped at 100, 200, 400, ... ms against a 400 ms deadline: a client
  // that slept past the deadline would return long after it, and long after its last attempt.
  server_.set_handler([](const HttpTestRequest&) { return Reply(503); });
  RetryPolicy policy;
  policy.base_backoff = 100ms;
  policy.max_backoff = 10s;
  policy.max_attempts = 1000;
  for (int run = 0; run < 3; ++run) {
    std::vector<Clock::time_point> attempts;
    auto start = Clock::now();
    const Deadline deadline = start + 400ms;
    HttpResponse response = client_.send_with_retries(
        Post("/", "{}"), deadline, policy, [&](HttpRequest&) { attempts.push_back(Clock::now()); });
    auto end = Clock::now();
    SCOPED_TRACE("run " + std::to_string(run) + ": " + std::to_string(response.attempts) +
                 " attempts, last " + std::to_string(response.status) + " " +
                 response.transport_error);
    EXPECT_LT(end - start, 400ms + 300ms);
    ASSERT_EQ(attempts.size(), static_cast<size_t>(response.attempts));
    EXPECT_LT(attempts.back(), deadline) << "no attempt starts after the deadline";
    EXPECT_LT(end - attempts.back(), 300ms) << "no sleep after the last attempt";
  }
  // A first backoff drawn from [0, 60 s] against a 300 ms deadline: almost always not taken, and
  // when it is, the call still ends in time.
  policy.base_backoff = 60s;
  policy.max_backoff = 60s;
  auto start = Clock::now();
  HttpResponse response = client_.send_with_retries(Post("/", "{}"), start + 300ms, policy);
  EXPECT_LT(Since(start), 300ms + 300ms);
  EXPECT_GE(response.attempts, 1);
}

TEST_F(HttpClientTest, NoRetryTheDeadlineWouldCutOff) {
  // Every attempt takes 150 ms and answers 503. A retry starts only with at least 300 ms left
  // after its backoff, so none is cut off: the result is the last 503, never a timeout.
  server_.set_handler([](const HttpTestRequest&) {
    HttpTestReply reply = Reply(503, "busy");
    reply.delay = 150ms;
    return reply;
  });
  RetryPolicy policy;
  policy.base_backoff = 100ms;
  policy.max_backoff = 10s;
  policy.max_attempts = 1000;
  for (int run = 0; run < 2; ++run) {
    auto start = Clock::now();
    HttpResponse response = client_.send_with_retries(Post("/", "{}"), start + 1000ms, policy);
    EXPECT_LT(Since(start), 1000ms + 300ms) << "run " << run;
    EXPECT_EQ(response.status, 503) << response.transport_error;
    EXPECT_EQ(response.body, "busy");
    EXPECT_GE(response.attempts, 1);
    EXPECT_LE(response.attempts, 6);
  }
}

TEST_F(HttpClientTest, SignRunsOnAFreshCopyBeforeEveryAttempt) {
  server_.set_handler(Statuses({503, 500}));
  HttpRequest request = Post("/", "{}");
  request.headers = {{"X-Base", "1"}};
  int signs = 0;
  auto sign = [&](HttpRequest& attempt) {
    ++signs;
    EXPECT_EQ(attempt.headers.size(), 1u) << "a fresh copy, not the previous attempt's";
    attempt.headers.emplace_back("X-Attempt", std::to_string(signs));
  };
  HttpResponse response = client_.send_with_retries(request, In(5s), FastRetries(), sign);
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.attempts, 3);
  EXPECT_EQ(signs, 3);
  EXPECT_EQ(request.headers.size(), 1u) << "the caller's request is untouched";
  auto seen = server_.requests();
  ASSERT_EQ(seen.size(), 3u);
  for (size_t i = 0; i < seen.size(); ++i) {
    EXPECT_EQ(seen[i].header("X-Attempt"), std::to_string(i + 1));
    EXPECT_EQ(seen[i].header("X-Base"), "1");
  }
}

TEST_F(HttpClientTest, TimeoutAfterSendingIsNotRetried) {
  server_.set_handler([](const HttpTestRequest&) {
    HttpTestReply reply;
    reply.delay = 10s;
    return reply;
  });
  auto start = Clock::now();
  HttpResponse response = client_.send_with_retries(Post("/", "{}"), start + 300ms, FastRetries());
  EXPECT_LT(Since(start), 1300ms);
  EXPECT_EQ(response.attempts, 1);
  EXPECT_TRUE(response.maybe_sent);
}

TEST(DefaultRetryableTest, Classification) {
  HttpRequest request;
  auto classify = [&](long status, bool maybe_sent = true) {
    HttpResponse response;
    response.status = status;
    response.maybe_sent = maybe_sent;
    if (status == 0) response.transport_error = "failed";
    return DefaultRetryable(request, response);
  };
  EXPECT_TRUE(classify(0, false));
  EXPECT_FALSE(classify(0, true));
  for (long status : {429, 500, 502, 503, 504}) EXPECT_TRUE(classify(status)) << status;
  for (long status : {200, 204, 301, 400, 403, 404, 409, 413, 501, 505})
    EXPECT_FALSE(classify(status)) << status;
}

TEST(HttpClientLifetimeTest, ClientsComeAndGo) {
  HttpTestServer server;
  for (int i = 0; i < 3; ++i) {
    HttpClient client;
    HttpRequest request;
    request.url = server.url("/");
    EXPECT_EQ(client.send(request, In(5s)).status, 200);
  }
  EXPECT_EQ(server.connections(), 3);
}

}  // namespace
}  // namespace leasefs::aws
