#include "status_snapshots.h"

#include <fcntl.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace leasefs::fuse {

bool Caller::in_group(gid_t group) const {
  return group == gid || std::binary_search(groups.begin(), groups.end(), group);
}

bool MaySearch(const struct stat& st, const Caller& caller) {
  if (caller.uid == 0) return true;
  if (!S_ISDIR(st.st_mode)) return false;
  if (st.st_uid == caller.uid) return st.st_mode & S_IXUSR;
  if (caller.in_group(st.st_gid)) return st.st_mode & S_IXGRP;
  return st.st_mode & S_IXOTH;
}

bool PathVisible(int root_fd, const std::string& path, const Caller& caller,
                 std::map<std::string, bool>* seen) {
  if (caller.uid == 0 || path.empty()) return true;
  if (path[0] == '#' || path[0] == '/') return false;  // not a name below SOURCE
  auto searchable = [&](const std::string& dir) {
    auto [it, inserted] = seen->try_emplace(dir, false);
    if (!inserted) return it->second;
    const size_t slash = dir.rfind('/');
    const std::string last = slash == std::string::npos ? dir : dir.substr(slash + 1);
    struct stat st;
    if (dir.empty()) {
      it->second = fstat(root_fd, &st) == 0 && MaySearch(st, caller);
    } else if (last.empty() || last == "." || last == "..") {
      it->second = false;  // never in a canonical path: refuse rather than resolve
    } else {
      it->second =
          fstatat(root_fd, dir.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && MaySearch(st, caller);
    }
    return it->second;
  };
  // The root, then every directory above the file: "a" and "a/b" for "a/b/c.db".
  if (!searchable("")) return false;
  for (size_t slash = path.find('/'); slash != std::string::npos;
       slash = path.find('/', slash + 1)) {
    if (!searchable(path.substr(0, slash))) return false;
  }
  return true;
}

std::optional<std::pair<uint64_t, size_t>> ParseStatusPageName(const char* name) {
  const size_t prefix = std::strlen(kStatusXattr);
  if (std::strncmp(name, kStatusXattr, prefix) != 0 || name[prefix] != '.') return std::nullopt;
  // Digits only (strtoull would take signs and spaces), and no more than fit.
  auto number = [](const char*& p, char stop, uint64_t* value) {
    const char* start = p;
    uint64_t v = 0;
    while (*p >= '0' && *p <= '9') {
      uint64_t digit = static_cast<uint64_t>(*p - '0');
      if (v > (UINT64_MAX - digit) / 10) return false;
      v = v * 10 + digit;
      p++;
    }
    if (p == start || *p != stop) return false;
    *value = v;
    return true;
  };
  const char* p = name + prefix + 1;
  uint64_t id = 0, page = 0;
  if (!number(p, '.', &id)) return std::nullopt;
  p++;
  if (!number(p, '\0', &page)) return std::nullopt;
  return std::pair{id, static_cast<size_t>(page)};
}

std::string StatusSnapshots::take(const Caller& caller,
                                  const std::function<StatusSnapshot(uint64_t id)>& make,
                                  Clock::time_point now) {
  uint64_t id;
  {
    std::lock_guard<std::mutex> guard(mutex_);
    id = next_id_++;
  }
  StatusSnapshot snapshot = make(id);
  Entry entry{id, caller, now, std::move(snapshot.pages), 0};
  for (const std::string& page : entry.pages) entry.bytes += page.size();
  std::lock_guard<std::mutex> guard(mutex_);
  bytes_ += entry.bytes;
  entries_.push_back(std::move(entry));
  expire(now);
  return std::move(snapshot.summary);
}

int StatusSnapshots::page(uint64_t id, size_t page, const Caller& caller, std::string* out,
                          Clock::time_point now) {
  std::lock_guard<std::mutex> guard(mutex_);
  expire(now);
  for (const Entry& entry : entries_) {
    if (entry.id != id) continue;
    if ((caller.uid != 0 && !(caller == entry.caller)) || page >= entry.pages.size()) {
      return ENODATA;
    }
    *out = entry.pages[page];
    return 0;
  }
  return ENODATA;
}

size_t StatusSnapshots::size() const {
  std::lock_guard<std::mutex> guard(mutex_);
  return entries_.size();
}

void StatusSnapshots::expire(Clock::time_point now) {
  while (!entries_.empty()) {
    const bool old = now - entries_.front().taken > kLifetime;
    // The newest stays unless expired, whatever its size: its reader is about to ask for it.
    if (!old && (entries_.size() == 1 || (entries_.size() <= kKept && bytes_ <= max_bytes_))) break;
    bytes_ -= entries_.front().bytes;
    entries_.pop_front();
  }
}

}  // namespace leasefs::fuse
