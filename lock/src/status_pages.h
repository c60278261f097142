// status_pages.h — the database list of a status report cut into pages. Internal to lock/.
//
// Contract: PageJsonArray(items, limit) returns JSON arrays that, concatenated, hold every item
// in order, each array at most `limit` bytes when serialized (as it is returned). A page holds
// as many whole items as fit; no item is ever split across pages. An item that cannot fit in a
// page by itself is shortened — its "path", then its "name", cut (and "truncated": true added)
// until it fits — so one huge name can neither fail the report nor push a page over the limit.
// No items: no pages. Strings are serialized with invalid UTF-8 replaced (U+FFFD), never thrown
// on: a file name is bytes, not text.
//
// Why pages: the report travels as extended attributes (fuse/passthrough.h kStatusXattr), and the
// kernel refuses any value over XATTR_SIZE_MAX (64 KiB) with E2BIG — a few hundred databases.
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace leasefs::lock {

// `limit` must leave room for a minimal item (a few hundred bytes).
std::vector<std::string> PageJsonArray(std::vector<nlohmann::json> items, size_t limit);

// The serialization used for the report: compact, invalid UTF-8 replaced.
inline std::string DumpJson(const nlohmann::json& value) {
  return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace leasefs::lock
