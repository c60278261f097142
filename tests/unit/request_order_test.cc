// Unit tests for RequestOrder (fuse/src/request_order.h): a READ waits for the WRITEs,
// truncations, fallocates and copies admitted before it on the same bytes of the same node, and
// for nothing else.
#include "request_order.h"

#include <gtest/gtest.h>
#include <linux/fuse.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

namespace leasefs::fuse {
namespace {

template <typename Arg>
std::vector<char> Request(uint32_t opcode, uint64_t node, const Arg& arg) {
  fuse_in_header header{};
  header.opcode = opcode;
  header.nodeid = node;
  header.len = sizeof header + sizeof arg;
  std::vector<char> bytes(header.len);
  std::memcpy(bytes.data(), &header, sizeof header);
  std::memcpy(bytes.data() + sizeof header, &arg, sizeof arg);
  return bytes;
}

std::vector<char> Read(uint64_t node, uint64_t offset, uint32_t size) {
  fuse_read_in in{};
  in.offset = offset;
  in.size = size;
  return Request(FUSE_READ, node, in);
}

std::vector<char> Write(uint64_t node, uint64_t offset, uint32_t size) {
  fuse_write_in in{};
  in.offset = offset;
  in.size = size;
  return Request(FUSE_WRITE, node, in);
}

RequestOrder::Ticket Admit(RequestOrder& order, const std::vector<char>& request) {
  return order.admit(request.data(), request.size());
}

TEST(RequestOrderTest, ReadAfterOverlappingWriteWaitsUntilItCompletes) {
  RequestOrder order;
  auto write = Admit(order, Write(7, 4096, 1048));
  auto read = Admit(order, Read(7, 0, 16384));
  EXPECT_EQ(write.kind, RequestOrder::Ticket::kChange);
  EXPECT_EQ(read.kind, RequestOrder::Ticket::kRead);
  EXPECT_TRUE(read.must_wait);

  std::atomic<bool> done{false};
  std::thread reader([&] {
    order.wait(read);
    done = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(done) << "the READ was let through before the WRITE sent before it completed";
  order.complete(write);
  reader.join();
  EXPECT_TRUE(done);
  EXPECT_EQ(order.pending(), 0u);
}

TEST(RequestOrderTest, ReadAdmittedBeforeTheWriteDoesNotWait) {
  RequestOrder order;
  auto read = Admit(order, Read(7, 0, 4096));
  auto write = Admit(order, Write(7, 0, 4096));
  EXPECT_FALSE(read.must_wait);
  order.wait(read);  // returns at once
  order.complete(write);
}

TEST(RequestOrderTest, OtherBytesOrOtherNodesDoNotWait) {
  RequestOrder order;
  auto write = Admit(order, Write(7, 8192, 4096));
  EXPECT_FALSE(Admit(order, Read(7, 0, 8192)).must_wait);      // ends where the write begins
  EXPECT_FALSE(Admit(order, Read(7, 12288, 4096)).must_wait);  // begins where it ends
  EXPECT_FALSE(Admit(order, Read(8, 8192, 4096)).must_wait);   // another file
  EXPECT_TRUE(Admit(order, Read(7, 12287, 1)).must_wait);
  order.complete(write);
  EXPECT_FALSE(Admit(order, Read(7, 8192, 4096)).must_wait);
}

TEST(RequestOrderTest, TruncationFallocateAndCopyAreChanges) {
  RequestOrder order;
  fuse_setattr_in truncate{};
  truncate.valid = FATTR_SIZE;
  auto t = Admit(order, Request(FUSE_SETATTR, 3, truncate));
  EXPECT_EQ(t.kind, RequestOrder::Ticket::kChange);
  EXPECT_TRUE(Admit(order, Read(3, 1 << 30, 4096)).must_wait);
  order.complete(t);

  fuse_setattr_in chmod{};
  chmod.valid = FATTR_MODE;
  EXPECT_EQ(Admit(order, Request(FUSE_SETATTR, 3, chmod)).kind, RequestOrder::Ticket::kOther);

  fuse_fallocate_in punch{};
  punch.offset = 4096;
  punch.length = 4096;
  auto f = Admit(order, Request(FUSE_FALLOCATE, 3, punch));
  EXPECT_TRUE(Admit(order, Read(3, 0, 8192)).must_wait);
  order.complete(f);

  fuse_copy_file_range_in copy{};
  copy.nodeid_out = 9;
  copy.off_out = 0;
  copy.len = 100;
  auto c = Admit(order, Request(FUSE_COPY_FILE_RANGE, 3, copy));
  EXPECT_EQ(c.node, 9u);
  EXPECT_TRUE(Admit(order, Read(9, 0, 4096)).must_wait);
  EXPECT_FALSE(Admit(order, Read(3, 0, 4096)).must_wait);
  order.complete(c);
  EXPECT_EQ(order.pending(), 0u);
}

TEST(RequestOrderTest, ShortOrForeignRequestsAreLeftAlone) {
  RequestOrder order;
  auto read = Read(7, 0, 4096);
  EXPECT_EQ(order.admit(read.data(), sizeof(fuse_in_header)).kind, RequestOrder::Ticket::kOther);
  EXPECT_EQ(order.admit(read.data(), 3).kind, RequestOrder::Ticket::kOther);
  fuse_getattr_in getattr{};
  auto other = Admit(order, Request(FUSE_GETATTR, 7, getattr));
  EXPECT_EQ(other.kind, RequestOrder::Ticket::kOther);
  order.wait(other);
  order.complete(other);
  EXPECT_EQ(order.pending(), 0u);
}

}  // namespace
}  // namespace leasefs::fuse
