// ini.cc — ParseIni (credentials.h): the INI dialect of ~/.aws/config and ~/.aws/credentials.
//
// What the AWS CLI (Python's configparser) accepts and these files use:
//  - "[name]" starts a section; the name is trimmed and inner runs of whitespace become one space,
//    so "[profile   dev]" is "profile dev". A later section of the same name adds to the first.
//  - "key = value": key and value trimmed, keys lower-cased (configparser's default); a later key
//    replaces an earlier one. Only '=' separates (values such as ARNs contain ':').
//  - Lines whose first non-blank character is '#' or ';' are comments. There are no inline
//    comments: "key = a # b" has the value "a # b", as in configparser, so a secret containing '#'
//    survives.
//  - A line indented deeper than the key line before it continues that key's value (the CLI's
//    nested settings: "s3 =" then an indented "max_concurrent_requests = 10"), as in configparser:
//    it is appended to the value after a '\n' and never read as a key of its own.
//  - Lines outside any section, lines without '=', and malformed section lines are ignored.
//    CRLF line ends and a UTF-8 byte-order mark are accepted.
#include <map>
#include <string>
#include <string_view>

#include "leasefs/aws/credentials.h"
#include "text.h"

namespace leasefs::aws {
namespace {

bool IsBlank(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

std::string_view Trim(std::string_view text) {
  while (!text.empty() && IsBlank(text.front())) text.remove_prefix(1);
  while (!text.empty() && IsBlank(text.back())) text.remove_suffix(1);
  return text;
}

std::string CollapseBlanks(std::string_view text) {
  std::string out;
  for (const char c : text) {
    if (IsBlank(c)) {
      if (!out.empty() && out.back() != ' ') out.push_back(' ');
    } else {
      out.push_back(c);
    }
  }
  return out;
}

}  // namespace

std::map<std::string, std::map<std::string, std::string>> ParseIni(const std::string& text) {
  std::map<std::string, std::map<std::string, std::string>> sections;
  std::map<std::string, std::string>* section = nullptr;  // nullptr: before any valid section
  std::string* value = nullptr;                           // the value a continuation extends
  size_t value_indent = 0;                                // the indentation of its key line

  std::string_view rest = text;
  if (rest.starts_with("\xEF\xBB\xBF")) rest.remove_prefix(3);
  while (!rest.empty()) {
    const size_t newline = rest.find('\n');
    std::string_view line = rest.substr(0, newline);
    rest.remove_prefix(newline == std::string_view::npos ? rest.size() : newline + 1);
    const std::string_view trimmed = Trim(line);

    if (trimmed.empty() || trimmed.front() == '#' || trimmed.front() == ';') continue;
    const size_t indent = static_cast<size_t>(trimmed.data() - line.data());
    if (value != nullptr && indent > value_indent) {
      value->append("\n").append(trimmed);
      continue;
    }
    value = nullptr;
    if (trimmed.front() == '[') {
      const size_t close = trimmed.find(']');
      if (close == std::string_view::npos) {
        section = nullptr;
        continue;
      }
      section = &sections[CollapseBlanks(Trim(trimmed.substr(1, close - 1)))];
      continue;
    }
    const size_t equals = trimmed.find('=');
    if (section == nullptr || equals == std::string_view::npos) continue;
    const std::string key = AsciiLower(Trim(trimmed.substr(0, equals)));
    if (key.empty()) continue;
    value = &(*section)[key];
    value_indent = indent;
    *value = std::string(Trim(trimmed.substr(equals + 1)));
  }
  return sections;
}

}  // namespace leasefs::aws
