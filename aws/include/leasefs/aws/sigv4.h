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
// once. Query parameters are sorted by encoded name then value; header values are trimmed and
// inner runs of spaces collapsed; duplicate headers are joined with ','.
#pragma once

#include <string>

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
