/*
 * http_client.cc — HttpClient (leasefs/aws/http.h) on libcurl's easy interface.
 *
 * This file carries every HTTP request leasefs makes to AWS: DynamoDB lease operations, STS, the
 * ECS and IMDS credential endpoints. The lease store's safety depends on two things it gets from
 * here — that a call never outlives its deadline, and that `maybe_sent` is never false for a
 * request that could have reached the server — so both are spelled out below, with the libcurl
 * behaviour they rest on.
 *
 * HANDLES AND CONNECTION REUSE
 *
 *   A CURL easy handle is not thread-safe, and its connection cache (the keep-alive connections
 *   it holds between transfers) belongs to it. The client keeps a pool of idle easy handles
 *   under a mutex: send() checks one out, runs the transfer on the calling thread with
 *   curl_easy_perform(), and checks it back in. The pool is a LIFO stack, so a thread that calls
 *   again finds the handle it just used, with its warm connection, and the number of handles is
 *   the peak number of concurrent calls (each handle holds at most CURLOPT_MAXCONNECTS = 5 idle
 *   connections, so it can stay connected to DynamoDB and STS at once). Handles are only freed
 *   by ~HttpClient, which must not run while a call is in progress.
 *
 *   Every handle is attached, once, to a CURLSH share of the DNS cache and TLS session cache,
 *   with one mutex per kind of shared data. The connection cache is deliberately NOT shared:
 *   libcurl documents sharing connections between concurrent threads as unsupported.
 *
 *   curl_easy_reset() runs before and after every transfer, so no option leaks from one request
 *   to the next (a HEAD's NOBODY) and no idle handle keeps pointers into a finished call (the
 *   body, the header list, the callbacks' state); by libcurl's contract a reset keeps live
 *   connections, the DNS and TLS session caches and the share.
 *
 * DEADLINES
 *
 *   CURLOPT_TIMEOUT_MS is the time left to the deadline, rounded down to whole milliseconds; if
 *   less than 1 ms is left (0 would mean "no timeout" to libcurl) send() fails at once with a
 *   transport error and maybe_sent=false, without touching the network. CURLOPT_CONNECTTIMEOUT_MS
 *   is the smaller of HttpClientOptions::connect_timeout and that total. DNS resolution is
 *   covered too: Debian's libcurl uses its threaded resolver, which honours the timeouts even with
 *   CURLOPT_NOSIGNAL.
 *
 *   send_with_retries() never sleeps past the deadline, and does not start a retry the deadline
 *   would likely cut off: a retry is made only if, once its backoff is over, the time left is at
 *   least kRetryHeadroom (2) times what the previous attempt took. Otherwise the last response is
 *   returned as it is. This matters for writes: a retry cut off by the deadline after its request
 *   left would turn a definite answer ("503, nothing written") into an ambiguous one (timeout,
 *   maybe_sent=true) that the lease store then has to settle with an extra read.
 *
 * MAYBE_SENT
 *
 *   `maybe_sent` is true once libcurl has a connection ready for the request: CURLOPT_PREREQ-
 *   FUNCTION runs "after a connection has been established or reused (including TLS) and before
 *   the request is sent", and the transfer records that it ran. Failures before it — DNS,
 *   refused or timed-out connect, TLS handshake — leave maybe_sent=false; any failure after it
 *   (send or receive error, timeout while waiting for the answer, empty or truncated reply) is
 *   ambiguous and reports maybe_sent=true. A response of any status implies maybe_sent=true.
 *   "Maybe" is conservative by design: a request that never left our socket buffer also reports
 *   true, and once set the flag stays set for the rest of the call, even if libcurl then fails to
 *   open the fresh connection for an idempotent re-send (see below).
 *
 *   One libcurl behaviour needs care: when a *reused* keep-alive connection yields no byte at all
 *   (the server closed it just as we sent — or after reading the request), libcurl silently
 *   re-sends the request on a fresh connection. For idempotent methods (RFC 9110: GET, HEAD,
 *   OPTIONS, TRACE, PUT, DELETE) that is allowed. For any other method (POST, which is every
 *   DynamoDB call) the pre-request callback refuses the second transmission, so one send() puts a
 *   request on the wire at most once and the caller sees an ambiguous failure it can settle (the
 *   lease store re-reads) rather than a duplicate write it cannot detect.
 *
 * WHAT GOES ON THE WIRE
 *
 *   HTTP/1.1 only (CURL_HTTP_VERSION_1_1, even over TLS), protocols http and https only, no
 *   redirects followed, no content decoding. The request's headers are sent as given; libcurl adds
 *   Host (unless given — the SigV4 signer gives it), Content-Length and User-Agent (unless given).
 *   Three libcurl defaults are suppressed unless the request sets them: "Expect: 100-continue"
 *   (which would stall large POST bodies for up to a second), the catch-all Accept and, for POST,
 *   the form Content-Type. A header with an empty value is sent empty ("Name;" in libcurl syntax).
 *
 *   Methods: GET and HEAD send no body (a non-empty body turns them into custom requests that
 *   carry it); POST and PUT always send their body with a Content-Length, even when empty (IMDSv2's
 *   token PUT needs "Content-Length: 0"); any other method is sent as a custom request that
 *   carries the body if it is not empty.
 *
 *   Signals: CURLOPT_NOSIGNAL is set on every transfer; libcurl must not touch signal handlers or
 *   use alarm() in a multithreaded daemon. libcurl writes with send(MSG_NOSIGNAL), TLS included
 *   (7.88's OpenSSL BIO writes through that same socket code), so no SIGPIPE either.
 *
 *   Proxies: nothing here configures one, so libcurl's defaults apply unchanged — it honours
 *   http_proxy (lower case only), HTTPS_PROXY/https_proxy, ALL_PROXY/all_proxy and
 *   NO_PROXY/no_proxy from the environment. That lets a site route AWS traffic through its proxy;
 *   such a site must list 169.254.169.254 and 169.254.170.2 (IMDS, ECS) in NO_PROXY.
 *
 * GLOBAL STATE
 *
 *   curl_global_init(CURL_GLOBAL_DEFAULT) runs once per process, under std::call_once, the first
 *   time an HttpClient is constructed; curl_global_cleanup() is never called (other clients may
 *   exist until exit, and the process does not outlive its use of libcurl). If the global init
 *   fails, every send() reports it as a transport error with maybe_sent=false.
 */
#include <curl/curl.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <mutex>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "leasefs/aws/http.h"

namespace leasefs::aws {
namespace {

using Clock = std::chrono::steady_clock;

std::once_flag g_curl_init_once;
CURLcode g_curl_init_result = CURLE_FAILED_INIT;

CURLcode EnsureCurlGlobalInit() {
  std::call_once(g_curl_init_once,
                 [] { g_curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT); });
  return g_curl_init_result;
}

bool IsIdempotent(std::string_view method) {
  return method == "GET" || method == "HEAD" || method == "OPTIONS" || method == "TRACE" ||
         method == "PUT" || method == "DELETE";
}

bool HasHeader(const Headers& headers, std::string_view name) {
  for (const auto& [key, value] : headers) {
    if (key.size() == name.size() &&
        std::equal(key.begin(), key.end(), name.begin(), [](char a, char b) {
          return std::tolower(static_cast<unsigned char>(a)) ==
                 std::tolower(static_cast<unsigned char>(b));
        }))
      return true;
  }
  return false;
}

std::string_view Trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() &&
         (text.back() == ' ' || text.back() == '\t' || text.back() == '\r' || text.back() == '\n'))
    text.remove_suffix(1);
  return text;
}

// State of one curl_easy_perform(), reached from libcurl's callbacks.
struct Transfer {
  HttpResponse* response = nullptr;
  bool allow_resend = false;  // the method is idempotent: libcurl may re-send on a fresh connection
  int prerequests = 0;        // times a connection was ready for the request (CURLOPT_PREREQ...)
  bool resend_refused = false;
};

size_t OnBody(char* data, size_t size, size_t count, void* user) {
  auto* transfer = static_cast<Transfer*>(user);
  transfer->response->body.append(data, size * count);
  return size * count;
}

size_t OnHeader(char* data, size_t size, size_t count, void* user) {
  auto* transfer = static_cast<Transfer*>(user);
  Headers& headers = transfer->response->headers;
  std::string_view line(data, size * count);
  if (line.starts_with("HTTP/")) {
    headers.clear();  // a new status line (after a 1xx): the headers start over
  } else if (!line.empty() && (line.front() == ' ' || line.front() == '\t')) {
    if (!headers.empty()) {  // obsolete line folding: continues the previous value
      headers.back().second += ' ';
      headers.back().second += Trim(line);
    }
  } else if (auto colon = line.find(':'); colon != std::string_view::npos) {
    headers.emplace_back(std::string(Trim(line.substr(0, colon))),
                         std::string(Trim(line.substr(colon + 1))));
  }
  return size * count;
}

int OnPrerequest(void* user, char* /*conn_primary_ip*/, char* /*conn_local_ip*/,
                 int /*conn_primary_port*/, int /*conn_local_port*/) {
  auto* transfer = static_cast<Transfer*>(user);
  if (++transfer->prerequests > 1 && !transfer->allow_resend) {
    transfer->resend_refused = true;
    return CURL_PREREQFUNC_ABORT;
  }
  return CURL_PREREQFUNC_OK;
}

HttpResponse TransportError(std::string what, bool maybe_sent) {
  HttpResponse response;
  response.transport_error = std::move(what);
  response.maybe_sent = maybe_sent;
  return response;
}

// The backoff before retry number `retry` (1 for the first): uniform in [0, cap] with
// cap = min(max_backoff, base_backoff * 2^(retry - 1)).
std::chrono::microseconds Backoff(const RetryPolicy& policy, int retry) {
  using std::chrono::microseconds;
  const double base_us = static_cast<double>(microseconds(policy.base_backoff).count());
  const double max_us = static_cast<double>(microseconds(policy.max_backoff).count());
  const double cap_us = std::min(max_us, std::ldexp(base_us, std::min(retry - 1, 60)));
  if (!(cap_us > 0)) return microseconds(0);
  thread_local std::mt19937_64 random(std::random_device{}());
  std::uniform_int_distribution<int64_t> uniform(0, static_cast<int64_t>(cap_us));
  return microseconds(uniform(random));
}

// A retry starts only if, after its backoff, the time left is at least this many times what the
// previous attempt took (see DEADLINES above).
constexpr int kRetryHeadroom = 2;

}  // namespace

struct HttpClient::Impl {
  explicit Impl(HttpClientOptions client_options) : options(std::move(client_options)) {
    init_result = EnsureCurlGlobalInit();
    if (init_result != CURLE_OK) return;
    share = curl_share_init();
    if (!share) return;
    curl_share_setopt(share, CURLSHOPT_USERDATA, this);
    curl_share_setopt(share, CURLSHOPT_LOCKFUNC, &Impl::Lock);
    curl_share_setopt(share, CURLSHOPT_UNLOCKFUNC, &Impl::Unlock);
    curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
  }

  ~Impl() {
    for (CURL* handle : idle) curl_easy_cleanup(handle);
    if (share) curl_share_cleanup(share);
  }

  static void Lock(CURL*, curl_lock_data data, curl_lock_access, void* user) {
    static_cast<Impl*>(user)->share_locks[static_cast<size_t>(data) % kLocks].lock();
  }
  static void Unlock(CURL*, curl_lock_data data, void* user) {
    static_cast<Impl*>(user)->share_locks[static_cast<size_t>(data) % kLocks].unlock();
  }

  // An idle handle (the most recently used), or a new one attached to the share; nullptr if
  // libcurl cannot allocate one.
  CURL* checkout() {
    {
      std::lock_guard lock(pool_mutex);
      if (!idle.empty()) {
        CURL* handle = idle.back();
        idle.pop_back();
        return handle;
      }
    }
    CURL* handle = curl_easy_init();
    if (handle && share) curl_easy_setopt(handle, CURLOPT_SHARE, share);
    return handle;
  }

  void checkin(CURL* handle) {
    std::lock_guard lock(pool_mutex);
    idle.push_back(handle);
  }

  static constexpr size_t kLocks = CURL_LOCK_DATA_LAST;

  HttpClientOptions options;
  CURLcode init_result = CURLE_FAILED_INIT;
  CURLSH* share = nullptr;
  std::array<std::mutex, kLocks> share_locks;
  std::mutex pool_mutex;
  std::vector<CURL*> idle;  // LIFO: back() is the most recently returned
};

HttpClient::HttpClient(HttpClientOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}

HttpClient::~HttpClient() = default;

HttpResponse HttpClient::send(const HttpRequest& request, Deadline deadline) {
  using std::chrono::milliseconds;
  if (impl_->init_result != CURLE_OK) {
    return TransportError(
        std::string("curl_global_init failed: ") + curl_easy_strerror(impl_->init_result), false);
  }
  const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
  if (left < milliseconds(1)) {
    return TransportError("deadline passed before the request was sent", false);
  }
  const milliseconds connect_timeout = impl_->options.connect_timeout > milliseconds(0)
                                           ? std::min(impl_->options.connect_timeout, left)
                                           : left;

  CURL* handle = impl_->checkout();
  if (!handle) return TransportError("curl_easy_init failed", false);

  // Request headers, with the libcurl defaults we do not want suppressed ("Name:" removes one).
  curl_slist* header_list = nullptr;
  bool header_list_ok = true;
  auto add_header = [&](const std::string& line) {
    curl_slist* extended = curl_slist_append(header_list, line.c_str());
    if (!extended)
      header_list_ok = false;
    else
      header_list = extended;
  };
  for (const auto& [name, value] : request.headers) {
    add_header(value.empty() ? name + ";" : name + ": " + value);
  }
  for (const char* name : {"Expect", "Accept", "Content-Type"}) {
    if (!HasHeader(request.headers, name)) add_header(std::string(name) + ":");
  }

  HttpResponse response;
  Transfer transfer;
  transfer.response = &response;
  transfer.allow_resend = IsIdempotent(request.method);
  char error_text[CURL_ERROR_SIZE] = "";

  curl_easy_reset(handle);
  curl_easy_setopt(handle, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(handle, CURLOPT_URL, request.url.c_str());
  curl_easy_setopt(handle, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(handle, CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_1_1));
  curl_easy_setopt(handle, CURLOPT_TIMEOUT_MS, static_cast<long>(left.count()));
  curl_easy_setopt(handle, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(connect_timeout.count()));
  curl_easy_setopt(handle, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(handle, CURLOPT_USERAGENT, impl_->options.user_agent.c_str());
  curl_easy_setopt(handle, CURLOPT_HTTPHEADER, header_list);
  curl_easy_setopt(handle, CURLOPT_ERRORBUFFER, error_text);
  curl_easy_setopt(handle, CURLOPT_WRITEFUNCTION, &OnBody);
  curl_easy_setopt(handle, CURLOPT_WRITEDATA, &transfer);
  curl_easy_setopt(handle, CURLOPT_HEADERFUNCTION, &OnHeader);
  curl_easy_setopt(handle, CURLOPT_HEADERDATA, &transfer);
  curl_easy_setopt(handle, CURLOPT_PREREQFUNCTION, &OnPrerequest);
  curl_easy_setopt(handle, CURLOPT_PREREQDATA, &transfer);

  const std::string& method = request.method;
  const bool sends_body = method == "POST" || method == "PUT" || !request.body.empty();
  if (method == "GET" && !sends_body) {
    curl_easy_setopt(handle, CURLOPT_HTTPGET, 1L);
  } else if (method == "HEAD" && !sends_body) {
    curl_easy_setopt(handle, CURLOPT_NOBODY, 1L);
  } else {
    if (sends_body) {
      curl_easy_setopt(handle, CURLOPT_POST, 1L);
      curl_easy_setopt(handle, CURLOPT_POSTFIELDSIZE_LARGE,
                       static_cast<curl_off_t>(request.body.size()));
      curl_easy_setopt(handle, CURLOPT_POSTFIELDS, request.body.data());
    }
    if (method != "POST") curl_easy_setopt(handle, CURLOPT_CUSTOMREQUEST, method.c_str());
  }

  CURLcode result = header_list_ok ? curl_easy_perform(handle) : CURLE_OUT_OF_MEMORY;
  long status = 0;
  if (result == CURLE_OK) curl_easy_getinfo(handle, CURLINFO_RESPONSE_CODE, &status);
  // Drop the options that point into this frame before the handle goes back to the pool.
  curl_easy_reset(handle);
  curl_slist_free_all(header_list);
  impl_->checkin(handle);

  if (result == CURLE_OK && status > 0) {
    response.status = status;
    response.maybe_sent = true;
    return response;
  }
  std::string what = result == CURLE_OK ? std::string("no HTTP status in the response")
                                        : std::string(curl_easy_strerror(result));
  if (transfer.resend_refused) {
    what = "connection closed without a response; not re-sending a " + method + " (not idempotent)";
  } else if (error_text[0] && what != error_text) {
    what += ": ";
    what += error_text;
  }
  what += " (curl " + std::to_string(static_cast<int>(result)) + ")";
  return TransportError(std::move(what), transfer.prerequests > 0);
}

HttpResponse HttpClient::send_with_retries(const HttpRequest& request, Deadline deadline,
                                           const RetryPolicy& policy,
                                           const std::function<void(HttpRequest&)>& sign) {
  const int max_attempts = std::max(1, policy.max_attempts);
  for (int attempt = 1;; ++attempt) {
    HttpRequest attempt_request = request;
    if (sign) sign(attempt_request);
    const auto started = Clock::now();
    HttpResponse response = send(attempt_request, deadline);
    response.attempts = attempt;
    const auto took = Clock::now() - started;
    const bool retryable = policy.retryable ? policy.retryable(attempt_request, response)
                                            : DefaultRetryable(attempt_request, response);
    if (!retryable || attempt >= max_attempts) return response;
    const auto backoff = Backoff(policy, attempt);
    if (Clock::now() + backoff + kRetryHeadroom * took >= deadline) return response;
    spdlog::debug("http: {} {} attempt {} got {}; retrying in {} us", request.method, request.url,
                  attempt,
                  response.status ? std::to_string(response.status) : response.transport_error,
                  backoff.count());
    std::this_thread::sleep_for(backoff);
    if (Clock::now() >= deadline) return response;
  }
}

bool DefaultRetryable(const HttpRequest& /*request*/, const HttpResponse& response) {
  switch (response.status) {
    case 0:
      return !response.maybe_sent;
    case 429:
    case 500:
    case 502:
    case 503:
    case 504:
      return true;
    default:
      return false;
  }
}

}  // namespace leasefs::aws
