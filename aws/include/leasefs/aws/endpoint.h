// leasefs/aws/endpoint.h — region and endpoint resolution.
//
// Region: the explicit value if given, else AWS_REGION, else AWS_DEFAULT_REGION, else the
// profile's `region` in ~/.aws/config (AWS_PROFILE / "default"); empty if none (callers report
// it). Endpoint for a service: the explicit value if given, else AWS_ENDPOINT_URL_<SERVICE> (e.g.
// AWS_ENDPOINT_URL_DYNAMODB, AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL_STS), else AWS_ENDPOINT_URL,
// else https://<service>.<region>.amazonaws.com (.amazonaws.com.cn in cn-* regions).
#pragma once

#include <string>

#include "leasefs/aws/credentials.h"

namespace leasefs::aws {

std::string ResolveRegion(const std::string& explicit_region, const CredentialEnvironment& env);

// `service_env_name` is the upper-case service id used in the variable name (DYNAMODB, S3, STS);
// `host_prefix` the endpoint host's first label (dynamodb, s3, sts).
std::string ResolveEndpoint(const std::string& explicit_endpoint, const std::string& service_env_name,
                            const std::string& host_prefix, const std::string& region,
                            const CredentialEnvironment& env);

}  // namespace leasefs::aws
