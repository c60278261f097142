// headers.cc — header lookup shared by the HTTP client and the signer.
#include <strings.h>

#include "leasefs/aws/http.h"

namespace leasefs::aws {

std::string FindHeader(const Headers& headers, std::string_view name) {
  for (const auto& [key, value] : headers) {
    if (key.size() == name.size() && strncasecmp(key.data(), name.data(), name.size()) == 0)
      return value;
  }
  return {};
}

}  // namespace leasefs::aws
