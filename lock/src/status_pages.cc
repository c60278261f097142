#include "status_pages.h"

#include <algorithm>

namespace leasefs::lock {
namespace {

using json = nlohmann::json;

// Cuts `text` by at least `excess` bytes (all of it if shorter), never inside a UTF-8 sequence.
void Shorten(std::string& text, size_t excess) {
  size_t keep = text.size() > excess ? text.size() - excess : 0;
  while (keep > 0 && (static_cast<unsigned char>(text[keep]) & 0xC0) == 0x80) keep--;
  text.resize(keep);
}

// `item` serialized in at most `budget` bytes, shortened as the contract says.
std::string Fitted(json item, size_t budget) {
  std::string text = DumpJson(item);
  if (text.size() <= budget) return text;
  if (item.is_object()) {
    item["truncated"] = true;
    for (const char* key : {"path", "name"}) {
      auto it = item.find(key);
      if (it == item.end() || !it->is_string()) continue;
      std::string& value = it->get_ref<std::string&>();
      while ((text = DumpJson(item)).size() > budget && !value.empty()) {
        Shorten(value, text.size() - budget);
      }
      if (text.size() <= budget) return text;
    }
  }
  return DumpJson(json{{"truncated", true}});
}

}  // namespace

std::vector<std::string> PageJsonArray(std::vector<json> items, size_t limit) {
  std::vector<std::string> pages;
  std::string page;
  const size_t budget = limit > 2 ? limit - 2 : 0;  // the brackets
  for (json& item : items) {
    std::string text = Fitted(std::move(item), budget);
    if (!page.empty() && page.size() + 1 + text.size() + 1 > limit) {
      pages.push_back(page + "]");
      page.clear();
    }
    page += page.empty() ? "[" : ",";
    page += text;
  }
  if (!page.empty()) pages.push_back(page + "]");
  return pages;
}

}  // namespace leasefs::lock
