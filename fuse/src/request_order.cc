// request_order.cc — see request_order.h.
#include "request_order.h"

#include <linux/fuse.h>

#include <algorithm>
#include <cstring>
#include <limits>

namespace leasefs::fuse {
namespace {

constexpr uint64_t kWholeFile = std::numeric_limits<uint64_t>::max();

// The argument that follows the header, if the request is long enough to hold it.
template <typename T>
bool argument(const void* request, size_t size, T* out) {
  if (size < sizeof(fuse_in_header) + sizeof(T)) return false;
  std::memcpy(out, static_cast<const char*>(request) + sizeof(fuse_in_header), sizeof(T));
  return true;
}

uint64_t end_of(uint64_t offset, uint64_t length) {
  return length > kWholeFile - offset ? kWholeFile : offset + length;
}

}  // namespace

RequestOrder::Ticket RequestOrder::admit(const void* request, size_t size) {
  Ticket t;
  if (size < sizeof(fuse_in_header)) return t;
  fuse_in_header header;
  std::memcpy(&header, request, sizeof header);
  t.node = header.nodeid;
  switch (header.opcode) {
    case FUSE_READ: {
      fuse_read_in in;
      if (!argument(request, size, &in)) return t;
      t.kind = Ticket::kRead;
      t.begin = in.offset;
      t.end = end_of(in.offset, in.size);
      break;
    }
    case FUSE_WRITE: {
      fuse_write_in in;
      if (!argument(request, size, &in)) return t;
      t.kind = Ticket::kChange;
      t.begin = in.offset;
      t.end = end_of(in.offset, in.size);
      break;
    }
    case FUSE_FALLOCATE: {
      fuse_fallocate_in in;
      if (!argument(request, size, &in)) return t;
      t.kind = Ticket::kChange;
      t.begin = in.offset;
      t.end = end_of(in.offset, in.length);
      break;
    }
    case FUSE_COPY_FILE_RANGE: {
      fuse_copy_file_range_in in;
      if (!argument(request, size, &in)) return t;
      t.kind = Ticket::kChange;
      t.node = in.nodeid_out;
      t.begin = in.off_out;
      t.end = end_of(in.off_out, in.len);
      break;
    }
    case FUSE_SETATTR: {
      fuse_setattr_in in;
      if (!argument(request, size, &in) || !(in.valid & FATTR_SIZE)) return t;
      t.kind = Ticket::kChange;  // a truncation: everything from the shorter length on
      t.begin = 0;
      t.end = kWholeFile;
      break;
    }
    default:
      return t;
  }
  if (t.begin >= t.end) {
    t.kind = Ticket::kOther;
    return t;
  }
  std::lock_guard<std::mutex> guard(mutex_);
  t.seq = next_seq_++;
  if (t.kind == Ticket::kChange) {
    changes_[t.node].push_back({t.seq, t.begin, t.end});
  } else {
    t.must_wait = overlapped_locked(t);
  }
  return t;
}

bool RequestOrder::overlapped_locked(const Ticket& t) const {
  auto it = changes_.find(t.node);
  if (it == changes_.end()) return false;
  return std::any_of(it->second.begin(), it->second.end(), [&](const Change& c) {
    return c.seq < t.seq && c.begin < t.end && t.begin < c.end;
  });
}

void RequestOrder::wait(const Ticket& t) {
  if (t.kind != Ticket::kRead || !t.must_wait) return;
  std::unique_lock<std::mutex> lock(mutex_);
  completed_.wait(lock, [&] { return !overlapped_locked(t); });
}

void RequestOrder::complete(const Ticket& t) {
  if (t.kind != Ticket::kChange) return;
  {
    std::lock_guard<std::mutex> guard(mutex_);
    auto it = changes_.find(t.node);
    if (it == changes_.end()) return;
    auto& list = it->second;
    list.erase(
        std::remove_if(list.begin(), list.end(), [&](const Change& c) { return c.seq == t.seq; }),
        list.end());
    if (list.empty()) changes_.erase(it);
  }
  completed_.notify_all();
}

size_t RequestOrder::pending() const {
  std::lock_guard<std::mutex> guard(mutex_);
  size_t n = 0;
  for (const auto& [node, list] : changes_) n += list.size();
  return n;
}

}  // namespace leasefs::fuse
