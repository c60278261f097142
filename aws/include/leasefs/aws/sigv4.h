// leasefs/aws/sigv4.h — AWS Signature Version 4 (header signing), with OpenSSL.
//
// Sign() adds X-Amz-Date (and X-Amz-Security-Token when the credentials carry a session token,
// and X-Amz-Content-Sha256 when asked — S3 requires it) and an Authorization header to a request.
// Every header present when Sign() is called is signed, plus Host (added from the URL when
// missing). The intermediate steps are exposed because the official test suite
// (shared/testdata/aws-sigv4-testsuite) checks each of them.
//
// Canonical URI: for every service but S3, the path is normalized (RFC 3986 remove_dot_segments,
// duplicate slashes collapsed) and each segment URI-encoded; S3 uses the path as given, encoded
// once (bytes that are not yet percent-escaped are escaped, existing %XX escapes are kept, so an
// already-encoded S3 key is not encoded twice). Query parameters are percent-decoded, re-encoded
// and sorted by encoded name then value; header values are trimmed and inner runs of whitespace
// (spaces, tabs, folded line breaks) collapsed to one space; duplicate headers are joined with ','.
//
// Sign() may be called again on a request it signed: it first removes the headers it adds
// (Authorization, X-Amz-Date, and X-Amz-Security-Token / X-Amz-Content-Sha256 when it is about to
// add them), so a retry's re-signing does not sign the previous signature. The headers it adds are
// appended after the caller's, in this order and spelling (those of the test suite's reference
// signer): X-Amz-Security-Token, X-Amz-Date, x-amz-content-sha256, Authorization.
// Sign() throws std::runtime_error only if OpenSSL itself fails (no SHA-256/HMAC available).
#pragma once

#include <string>
#include <string_view>

#include "leasefs/aws/credentials.h"
#include "leasefs/aws/http.h"

namespace leasefs::aws {

struct SigningScope {
  std::string region;   // us-east-1
  std::string service;  // dynamodb, s3, sts
  WallTime time;        // the request time (X-Amz-Date)
};

struct SigningOptions {
  bool s3_style_path = false;        // do not normalize/double-encode the path (S3)
  bool add_content_sha256 = false;   // add X-Amz-Content-Sha256 (S3)
  // Add X-Amz-Security-Token without signing it (services such as IoT that want the token added
  // after signing; the test suite's post-sts-header-after case). DynamoDB, S3 and STS sign it.
  bool unsigned_session_token = false;
};

struct SigningSteps {
  std::string canonical_request;
  std::string string_to_sign;
  std::string signature;      // hex
  std::string authorization;  // the Authorization header value
};

// Signs `request` in place. Returns the intermediate steps (for tests and debug logging).
SigningSteps Sign(HttpRequest& request, const Credentials& credentials, const SigningScope& scope,
                  const SigningOptions& options = {});

// Helpers shared with the clients.
std::string Sha256Hex(std::string_view data);
std::string UriEncode(std::string_view text, bool encode_slash);
std::string AmzDate(WallTime time);  // 20150830T123600Z

}  // namespace leasefs::aws
