// leasefs/aws/endpoint.h — region and endpoint resolution.
//
// Region: the explicit value if given, else AWS_REGION, else AWS_DEFAULT_REGION, else the
// profile's `region` in ~/.aws/config (AWS_CONFIG_FILE overrides the path; profile AWS_PROFILE or
// "default", section "[profile NAME]", or "[default]" for the default profile); empty if none
// (callers report it).
//
// Endpoint for a service: the explicit value if given, else AWS_ENDPOINT_URL_<SERVICE> (e.g.
// AWS_ENDPOINT_URL_DYNAMODB, AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL_STS), else AWS_ENDPOINT_URL,
// else https://<service>.<region>.amazonaws.com (.amazonaws.com.cn in cn-* regions). Empty
// variables count as unset. Trailing '/' are removed from the result (callers append the path),
// and the result is empty when no endpoint is configured and the region is empty (callers report
// it, as for the region).
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
