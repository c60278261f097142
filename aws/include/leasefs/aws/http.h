// leasefs/aws/http.h — HTTP requests over libcurl, with bounded retries.
//
// Contract:
//  - HttpClient::send() performs one request and returns what happened, never throws. It reuses
//    connections (one CURL easy handle per concurrent call, kept in a pool by the client, so
//    keep-alive connections survive between calls) and never waits past the deadline given. It
//    puts a non-idempotent request (POST) on the wire at most once.
//  - A response of any status is a response (`status` != 0); transport failures have status 0 and
//    `transport_error` set. `maybe_sent` tells whether any byte of the request may have reached
//    the server (connect succeeded): a non-idempotent request that failed with maybe_sent=true is
//    *ambiguous* — the caller must settle it (the lease store re-reads; see lease_store.h).
//  - send_with_retries() retries what the RetryPolicy calls retryable (transport errors before
//    sending, throttling, 5xx; the classifier is the caller's, see RetryPolicy) with full-jitter
//    exponential backoff: before retry n (n = 1 for the second attempt) it sleeps
//    uniform(0, min(max_backoff, base_backoff * 2^(n-1))), and never starts a sleep or an attempt
//    that the deadline cuts off (a retry needs, after its sleep, twice the previous attempt's
//    duration left). `sign` runs before every attempt (a retry gets a fresh X-Amz-Date).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace leasefs::aws {

using Deadline = std::chrono::steady_clock::time_point;

// Header names keep their case as given; lookups are case-insensitive.
using Headers = std::vector<std::pair<std::string, std::string>>;

struct HttpRequest {
  std::string method = "GET";  // GET, PUT, POST, DELETE, HEAD
  std::string url;             // absolute: scheme://host[:port]/path[?query]
  Headers headers;
  std::string body;
};

struct HttpResponse {
  long status = 0;              // 0: no response (see transport_error)
  Headers headers;
  std::string body;
  std::string transport_error;  // empty when a response arrived
  bool maybe_sent = false;      // the request may have reached the server
  int attempts = 0;             // set by send_with_retries
};

// First value of header `name` (case-insensitive), or "" when absent.
std::string FindHeader(const Headers& headers, std::string_view name);

struct RetryPolicy {
  std::chrono::milliseconds base_backoff{25};
  std::chrono::milliseconds max_backoff{1000};
  int max_attempts = 8;
  // Whether `response` (to attempt number `response.attempts`, 1-based) should be retried. Default:
  // transport errors with maybe_sent=false, HTTP 429, 500, 502, 503, 504. The DynamoDB client adds
  // its throttling error codes (HTTP 400 with a throttling __type).
  std::function<bool(const HttpRequest&, const HttpResponse&)> retryable;
};

struct HttpClientOptions {
  std::chrono::milliseconds connect_timeout{2000};
  std::string user_agent = "leasefs";
};

class HttpClient {
 public:
  explicit HttpClient(HttpClientOptions options = {});
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // One attempt, bounded by `deadline` (the transfer's total timeout is the time left).
  HttpResponse send(const HttpRequest& request, Deadline deadline);

  // Attempts until success, a non-retryable answer, max_attempts or the deadline. `sign` (may be
  // empty) is applied to a copy of `request` before each attempt.
  HttpResponse send_with_retries(const HttpRequest& request, Deadline deadline,
                                 const RetryPolicy& policy,
                                 const std::function<void(HttpRequest&)>& sign = {});

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The default classifier of RetryPolicy (used when policy.retryable is empty).
bool DefaultRetryable(const HttpRequest& request, const HttpResponse& response);

}  // namespace leasefs::aws
