// text.h — small ASCII helpers shared by the aws/ sources (internal).
#pragma once

#include <string>
#include <string_view>

namespace leasefs::aws {

// ASCII lower case (header names, INI keys): locale-independent on purpose.
inline std::string AsciiLower(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

}  // namespace leasefs::aws
