// sigv4.cc — AWS Signature Version 4, header signing. The contract is in sigv4.h.
//
// WHAT A SIGNATURE IS
//
// A SigV4 signature proves that the holder of a secret key produced this request, for this
// region and service, on this day. The signer and AWS compute it independently from the request
// as it travels, and AWS accepts the request only when both computations agree. Every step below
// must therefore be reproduced byte for byte: a difference of one space somewhere in the
// canonical request is a 403 SignatureDoesNotMatch, and AWS's error does not say which byte. That
// is why the intermediate results are returned (SigningSteps) and checked against the official
// test suite, case by case (tests/unit/aws_sigv4_test.cc).
//
// THE FOUR STEPS
//
//   1. The canonical request, a normalized rendering of the request:
//
//          METHOD '\n'
//          CANONICAL-URI '\n'
//          CANONICAL-QUERY '\n'
//          CANONICAL-HEADERS           one "name:value\n" line per signed header
//          '\n'
//          SIGNED-HEADERS '\n'         the same names, joined with ';'
//          HEX(SHA256(body))
//
//   2. The string to sign:
//
//          "AWS4-HMAC-SHA256" '\n' AMZ-DATE '\n' SCOPE '\n' HEX(SHA256(canonical request))
//
//      where AMZ-DATE is the X-Amz-Date header (20150830T123600Z) and SCOPE is
//      "YYYYMMDD/region/service/aws4_request".
//
//   3. The signing key, a chain of HMAC-SHA256, each step keyed by the previous result:
//
//          kDate    = HMAC("AWS4" + secret, YYYYMMDD)
//          kRegion  = HMAC(kDate, region)
//          kService = HMAC(kRegion, service)
//          kSigning = HMAC(kService, "aws4_request")
//
//      The secret itself never appears in the request; a leaked kSigning is good for one day,
//      one region and one service only.
//
//   4. signature = HEX(HMAC(kSigning, string to sign)), sent in the Authorization header with the
//      access key id, the scope and the signed header names:
//
//          AWS4-HMAC-SHA256 Credential=AKID/SCOPE, SignedHeaders=a;b;c, Signature=HEX
//
// THE CANONICAL FORMS
//
// Canonical URI. The URL's path as it goes on the wire (already percent-encoded). For all
// services but S3 it is normalized — "." segments dropped, ".." removing the segment before it,
// runs of '/' collapsed, a trailing '/' kept, always one leading '/' — and then URI-encoded
// *again*, '/' excepted: those services verify the signature against the encoded path, so an
// escape "%20" in the URL appears as "%2520" here. S3 verifies against the decoded key, so its
// path is neither normalized nor re-encoded: bytes that are not yet escaped are escaped (a raw
// space becomes "%20") and existing "%XX" escapes are kept. On the test suite's paths, which
// contain no '%', the two encodings agree, so its "unnormalized" cases exercise the S3 mode.
//
// Canonical query. Parameters split on '&' and at the first '='; each name and value is
// percent-decoded and re-encoded with UriEncode (so "%E1%88%B4" and the raw UTF-8 bytes give the
// same result, and '/' becomes "%2F"); a parameter without '=' has an empty value; the pairs are
// sorted by encoded name, then encoded value, and joined "name=value&...".
//
// Canonical headers. Names lower-cased; values trimmed, inner runs of whitespace (including the
// line breaks of folded values) collapsed to one space; repeated headers joined with ',' in the
// order they appear in the request; sorted by name (byte order).
//
// UriEncode. Every byte but the unreserved characters A-Z a-z 0-9 - . _ ~ (and '/' when asked)
// becomes "%XX", upper-case hex, byte by byte (so UTF-8 is encoded per byte).
//
// INVARIANTS
//
// * What is signed is what is sent: the canonical request is computed from the request's own
//   fields after every header but Authorization has been added, and Sign() changes nothing but
//   headers afterwards. Headers the HTTP layer adds later (User-Agent, Expect) are simply not
//   signed, which AWS allows; a header the HTTP layer would rewrite must not be set before
//   signing.
// * Re-signing is safe: the headers Sign() adds are removed first, so a retry (http.h signs a
//   fresh copy per attempt anyway) never signs an old Authorization or X-Amz-Date.
// * No hand-written cryptography: SHA-256 is EVP_Digest, HMAC is OpenSSL 3's EVP_MAC. The
//   "AWS4"+secret buffer and the signing key are wiped (OPENSSL_cleanse) once used — a best
//   effort: the secret also lives in Credentials, and copies may linger in freed stack.
// * Sign() is reentrant: it keeps no state but the EVP_MAC algorithm handle, fetched once and
//   shared read-only (each call has its own EVP_MAC_CTX).
#include "leasefs/aws/sigv4.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <strings.h>

#include <algorithm>
#include <array>
#include <ctime>
#include <map>
#include <memory>
#include <stdexcept>
#include <utility>
#include <vector>

#include "text.h"

namespace leasefs::aws {
namespace {

constexpr std::string_view kAlgorithm = "AWS4-HMAC-SHA256";
constexpr std::string_view kTerminator = "aws4_request";

using Digest = std::array<unsigned char, 32>;  // SHA-256 / HMAC-SHA256 output

std::string Hex(const unsigned char* bytes, size_t size) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(size * 2);
  for (size_t i = 0; i < size; i++) {
    out.push_back(kDigits[bytes[i] >> 4]);
    out.push_back(kDigits[bytes[i] & 0xf]);
  }
  return out;
}

// HMAC-SHA256(key, data) with OpenSSL 3's EVP_MAC.
Digest HmacSha256(const unsigned char* key, size_t key_size, std::string_view data) {
  // Fetched once, shared by every thread (an EVP_MAC is immutable; contexts are per call), and
  // never freed: it lives as long as the process.
  static EVP_MAC* const mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  if (mac == nullptr) throw std::runtime_error("sigv4: OpenSSL has no HMAC");
  std::unique_ptr<EVP_MAC_CTX, decltype(&EVP_MAC_CTX_free)> ctx(EVP_MAC_CTX_new(mac),
                                                                &EVP_MAC_CTX_free);
  char digest_name[] = "SHA256";
  const OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest_name, 0),
      OSSL_PARAM_construct_end()};
  Digest out{};
  size_t out_size = 0;
  const auto* bytes = reinterpret_cast<const unsigned char*>(data.data());
  const bool ok = ctx && EVP_MAC_init(ctx.get(), key, key_size, params) == 1 &&
                  EVP_MAC_update(ctx.get(), bytes, data.size()) == 1 &&
                  EVP_MAC_final(ctx.get(), out.data(), &out_size, out.size()) == 1 &&
                  out_size == out.size();
  if (!ok) throw std::runtime_error("sigv4: HMAC-SHA256 failed in OpenSSL");
  return out;
}

Digest HmacSha256(const Digest& key, std::string_view data) {
  return HmacSha256(key.data(), key.size(), data);
}

bool IsUnreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

bool IsHexDigit(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return c - 'A' + 10;
}

void AppendEscaped(std::string& out, unsigned char c) {
  static constexpr char kDigits[] = "0123456789ABCDEF";
  out.push_back('%');
  out.push_back(kDigits[c >> 4]);
  out.push_back(kDigits[c & 0xf]);
}

// Decodes the valid "%XX" escapes of `text`; anything else (including '+') is kept as is.
std::string PercentDecode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); i++) {
    if (text[i] == '%' && i + 2 < text.size() && IsHexDigit(text[i + 1]) &&
        IsHexDigit(text[i + 2])) {
      out.push_back(static_cast<char>(HexValue(text[i + 1]) * 16 + HexValue(text[i + 2])));
      i += 2;
    } else {
      out.push_back(text[i]);
    }
  }
  return out;
}

// S3's canonical path: escapes what is not escaped yet, keeps valid "%XX" escapes and '/'.
std::string EncodeOnce(std::string_view path) {
  std::string out;
  out.reserve(path.size());
  for (size_t i = 0; i < path.size(); i++) {
    const auto c = static_cast<unsigned char>(path[i]);
    if (IsUnreserved(c) || c == '/') {
      out.push_back(static_cast<char>(c));
    } else if (c == '%' && i + 2 < path.size() && IsHexDigit(path[i + 1]) &&
               IsHexDigit(path[i + 2])) {
      out.append(path.substr(i, 3));
      i += 2;
    } else {
      AppendEscaped(out, c);
    }
  }
  return out;
}

// RFC 3986 remove_dot_segments with empty segments dropped too, as AWS normalizes: the result
// starts with exactly one '/', and ends with '/' when `path` did (and has segments).
std::string NormalizePath(std::string_view path) {
  std::vector<std::string_view> segments;
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    const std::string_view segment = path.substr(start, end - start);
    if (segment == "..") {
      if (!segments.empty()) segments.pop_back();
    } else if (!segment.empty() && segment != ".") {
      segments.push_back(segment);
    }
    start = end + 1;
  }
  std::string out = "/";
  for (size_t i = 0; i < segments.size(); i++) {
    out.append(segments[i]);
    if (i + 1 < segments.size() || path.ends_with('/')) out.push_back('/');
  }
  return out;
}

struct UrlParts {
  std::string_view scheme;
  std::string_view authority;  // [userinfo@]host[:port]
  std::string_view path;       // as on the wire, may be empty
  std::string_view query;      // after '?', before '#'
};

UrlParts SplitUrl(std::string_view url) {
  UrlParts parts;
  std::string_view rest = url;
  if (const size_t colon = rest.find("://"); colon != std::string_view::npos) {
    parts.scheme = rest.substr(0, colon);
    rest.remove_prefix(colon + 3);
    const size_t end = std::min(rest.find_first_of("/?#"), rest.size());
    parts.authority = rest.substr(0, end);
    rest.remove_prefix(end);
  }
  rest = rest.substr(0, rest.find('#'));
  const size_t question = rest.find('?');
  parts.path = rest.substr(0, question);
  if (question != std::string_view::npos) parts.query = rest.substr(question + 1);
  return parts;
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && strncasecmp(a.data(), b.data(), a.size()) == 0;
}

// The Host header for `parts`: the authority without userinfo, and without the port when it is
// the scheme's default (what libcurl would send).
std::string HostHeader(const UrlParts& parts) {
  std::string_view host = parts.authority;
  if (const size_t at = host.rfind('@'); at != std::string_view::npos) host.remove_prefix(at + 1);
  const size_t bracket = host.rfind(']');  // IPv6 literal: the port follows the ']'
  const size_t colon = host.rfind(':');
  if (colon != std::string_view::npos && (bracket == std::string_view::npos || colon > bracket)) {
    const std::string_view port = host.substr(colon + 1);
    if ((EqualsIgnoreCase(parts.scheme, "http") && port == "80") ||
        (EqualsIgnoreCase(parts.scheme, "https") && port == "443") || port.empty()) {
      host = host.substr(0, colon);
    }
  }
  return std::string(host);
}

std::string CanonicalQuery(std::string_view query) {
  std::vector<std::pair<std::string, std::string>> params;
  size_t start = 0;
  while (start <= query.size()) {
    size_t end = query.find('&', start);
    if (end == std::string_view::npos) end = query.size();
    const std::string_view param = query.substr(start, end - start);
    if (!param.empty()) {
      const size_t equals = param.find('=');
      const std::string_view name = param.substr(0, equals);
      const std::string_view value =
          equals == std::string_view::npos ? std::string_view() : param.substr(equals + 1);
      params.emplace_back(UriEncode(PercentDecode(name), true),
                          UriEncode(PercentDecode(value), true));
    }
    start = end + 1;
  }
  std::sort(params.begin(), params.end());
  std::string out;
  for (const auto& [name, value] : params) {
    if (!out.empty()) out.push_back('&');
    out.append(name).append("=").append(value);
  }
  return out;
}

bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

// Trims `value` and collapses inner runs of whitespace to one space.
std::string CanonicalHeaderValue(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  bool pending_space = false;
  for (const char c : value) {
    if (IsSpace(c)) {
      pending_space = !out.empty();
      continue;
    }
    if (pending_space) out.push_back(' ');
    pending_space = false;
    out.push_back(c);
  }
  return out;
}

void RemoveHeader(Headers& headers, std::string_view name) {
  std::erase_if(headers, [&](const auto& header) { return EqualsIgnoreCase(header.first, name); });
}

}  // namespace

std::string Sha256Hex(std::string_view data) {
  Digest digest{};
  unsigned int size = 0;
  if (EVP_Digest(data.data(), data.size(), digest.data(), &size, EVP_sha256(), nullptr) != 1 ||
      size != digest.size()) {
    throw std::runtime_error("sigv4: SHA-256 failed in OpenSSL");
  }
  return Hex(digest.data(), digest.size());
}

std::string UriEncode(std::string_view text, bool encode_slash) {
  std::string out;
  out.reserve(text.size());
  for (const char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (IsUnreserved(c) || (c == '/' && !encode_slash)) {
      out.push_back(ch);
    } else {
      AppendEscaped(out, c);
    }
  }
  return out;
}

std::string AmzDate(WallTime time) {
  const std::time_t seconds = std::chrono::system_clock::to_time_t(time);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char text[32];
  const size_t size = std::strftime(text, sizeof(text), "%Y%m%dT%H%M%SZ", &utc);
  return std::string(text, size);
}

SigningSteps Sign(HttpRequest& request, const Credentials& credentials, const SigningScope& scope,
                  const SigningOptions& options) {
  const UrlParts url = SplitUrl(request.url);
  const std::string amz_date = AmzDate(scope.time);
  const std::string date = amz_date.substr(0, 8);
  const std::string payload_hash = Sha256Hex(request.body);
  const bool add_token = !credentials.session_token.empty();

  // The headers this function adds: drop earlier copies (a re-signed request), then append.
  RemoveHeader(request.headers, "Authorization");
  RemoveHeader(request.headers, "X-Amz-Date");
  if (add_token) RemoveHeader(request.headers, "X-Amz-Security-Token");
  if (options.add_content_sha256) RemoveHeader(request.headers, "X-Amz-Content-Sha256");
  if (std::none_of(request.headers.begin(), request.headers.end(),
                   [](const auto& header) { return EqualsIgnoreCase(header.first, "Host"); })) {
    request.headers.emplace_back("Host", HostHeader(url));
  }
  if (add_token) request.headers.emplace_back("X-Amz-Security-Token", credentials.session_token);
  request.headers.emplace_back("X-Amz-Date", amz_date);
  // Lower case as the suite's reference signer (aws-c-auth) writes it; names are case-insensitive.
  if (options.add_content_sha256) {
    request.headers.emplace_back("x-amz-content-sha256", payload_hash);
  }

  // Step 1: the canonical request. A std::map sorts the names in byte order and keeps, for each,
  // the values in request order.
  std::map<std::string, std::string> canonical_headers;
  for (const auto& [name, value] : request.headers) {
    std::string lower_name = AsciiLower(CanonicalHeaderValue(name));
    if (options.unsigned_session_token && lower_name == "x-amz-security-token") continue;
    auto [it, inserted] = canonical_headers.try_emplace(std::move(lower_name));
    if (!inserted) it->second.push_back(',');
    it->second.append(CanonicalHeaderValue(value));
  }
  std::string signed_headers;
  std::string header_block;
  for (const auto& [name, value] : canonical_headers) {
    if (!signed_headers.empty()) signed_headers.push_back(';');
    signed_headers.append(name);
    header_block.append(name).append(":").append(value).append("\n");
  }
  const std::string canonical_uri = options.s3_style_path
                                        ? (url.path.empty() ? "/" : EncodeOnce(url.path))
                                        : UriEncode(NormalizePath(url.path), false);

  SigningSteps steps;
  steps.canonical_request.append(request.method).append("\n");
  steps.canonical_request.append(canonical_uri).append("\n");
  steps.canonical_request.append(CanonicalQuery(url.query)).append("\n");
  steps.canonical_request.append(header_block).append("\n");
  steps.canonical_request.append(signed_headers).append("\n");
  steps.canonical_request.append(payload_hash);

  // Step 2: the string to sign.
  const std::string credential_scope =
      date + "/" + scope.region + "/" + scope.service + "/" + std::string(kTerminator);
  steps.string_to_sign.append(kAlgorithm).append("\n");
  steps.string_to_sign.append(amz_date).append("\n");
  steps.string_to_sign.append(credential_scope).append("\n");
  steps.string_to_sign.append(Sha256Hex(steps.canonical_request));

  // Step 3: the signing key.
  std::string secret = "AWS4" + credentials.secret_access_key;
  Digest key =
      HmacSha256(reinterpret_cast<const unsigned char*>(secret.data()), secret.size(), date);
  OPENSSL_cleanse(secret.data(), secret.size());
  for (const std::string_view part :
       {std::string_view(scope.region), std::string_view(scope.service), kTerminator}) {
    key = HmacSha256(key, part);
  }

  // Step 4: the signature and the Authorization header.
  const Digest signature = HmacSha256(key, steps.string_to_sign);
  OPENSSL_cleanse(key.data(), key.size());
  steps.signature = Hex(signature.data(), signature.size());
  steps.authorization = std::string(kAlgorithm) + " Credential=" + credentials.access_key_id + "/" +
                        credential_scope + ", SignedHeaders=" + signed_headers +
                        ", Signature=" + steps.signature;
  request.headers.emplace_back("Authorization", steps.authorization);
  return steps;
}

}  // namespace leasefs::aws
