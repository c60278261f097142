// Unit tests for the status report's transport: the database list cut into pages that each fit
// an extended attribute (lock/src/status_pages.h), the snapshots and page names the passthrough
// serves them under, and which database paths a caller may see (fuse/src/status_snapshots.h).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "mount_harness.h"
#include "status_pages.h"
#include "status_snapshots.h"

namespace leasefs {
namespace {

using json = nlohmann::json;

json Database(int i, std::string path = "") {
  if (path.empty()) path = "dir/database-" + std::to_string(i) + ".db";
  return {{"name", "/srv/ns/ino:" + std::to_string(1000 + i)},
          {"path", path},
          {"claims", {{"shared", "r"}}},
          {"in_use", json::object()},
          {"version", i},
          {"dirty", false},
          {"competing", false}};
}

// Every page within the limit and an array; the pages' items in order.
std::vector<json> Reassemble(const std::vector<std::string>& pages, size_t limit) {
  std::vector<json> items;
  for (const std::string& page : pages) {
    EXPECT_LE(page.size(), limit);
    json array = json::parse(page);
    EXPECT_TRUE(array.is_array());
    EXPECT_FALSE(array.empty());
    for (json& item : array) items.push_back(std::move(item));
  }
  return items;
}

TEST(StatusPages, NoDatabasesNoPages) {
  EXPECT_TRUE(lock::PageJsonArray({}, 1000).empty());
}

TEST(StatusPages, ManyDatabasesFillPagesInOrder) {
  std::vector<json> items;
  for (int i = 0; i < 2000; i++) items.push_back(Database(i));
  const size_t limit = 32 * 1024;
  std::vector<std::string> pages = lock::PageJsonArray(items, limit);
  EXPECT_EQ(Reassemble(pages, limit), items);
  // Full pages: each but the last could not have taken the next item.
  size_t at = 0;
  for (size_t k = 0; k + 1 < pages.size(); k++) {
    at += json::parse(pages[k]).size();
    EXPECT_GT(pages[k].size() + 1 + lock::DumpJson(items[at]).size(), limit) << "page " << k;
  }
}

TEST(StatusPages, AnItemExactlyAtTheLimitFits) {
  json item = Database(1);
  const size_t limit = lock::DumpJson(item).size() + 2;
  std::vector<std::string> pages = lock::PageJsonArray({item, item}, limit);
  ASSERT_EQ(pages.size(), 2u);
  EXPECT_EQ(Reassemble(pages, limit), (std::vector<json>{item, item}));
}

TEST(StatusPages, AnItemTooLongForAPageIsShortenedNotSplit) {
  const size_t limit = 600;
  // Multibyte characters, so a cut in the middle of one would show as invalid UTF-8.
  std::string huge;
  for (int i = 0; i < 1000; i++) huge += "d\xc3\xa9j\xc3\xa0/";
  std::vector<json> items = {Database(0), Database(1, huge), Database(2)};
  std::vector<std::string> pages = lock::PageJsonArray(items, limit);
  std::vector<json> out = Reassemble(pages, limit);
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0], items[0]);
  EXPECT_EQ(out[2], items[2]);
  EXPECT_TRUE(out[1].value("truncated", false));
  const std::string path = out[1]["path"];
  EXPECT_FALSE(path.empty());
  EXPECT_EQ(huge.compare(0, path.size(), path), 0) << "not a prefix: " << path;
  EXPECT_NO_THROW(json(path).dump());  // whole characters only
  EXPECT_EQ(out[1]["version"], 1);
  EXPECT_EQ(out[1]["name"], items[1]["name"]);
}

TEST(StatusPages, EscapesAndInvalidUtf8NeverThrow) {
  std::string controls(3000, '\x01');      // each byte is six in JSON (\u0001)
  std::string invalid = "bad\xff\xfe.db";  // a file name is bytes
  std::vector<std::string> pages;
  ASSERT_NO_THROW(pages = lock::PageJsonArray({Database(0, controls), Database(1, invalid)}, 4096));
  std::vector<json> out = Reassemble(pages, 4096);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_TRUE(out[0].value("truncated", false));
  EXPECT_EQ(out[1]["path"], "bad\xef\xbf\xbd\xef\xbf\xbd.db");  // U+FFFD each
}

using fuse::Caller;
using fuse::StatusSnapshot;
using fuse::StatusSnapshots;

TEST(StatusPageNames, OnlyIdAndPageNumbers) {
  auto parsed = fuse::ParseStatusPageName("user.leasefs.status.1733572000123456.7");
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed->first, 1733572000123456u);
  EXPECT_EQ(parsed->second, 7u);
  parsed = fuse::ParseStatusPageName("user.leasefs.status.18446744073709551615.0");
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed->first, 18446744073709551615u);
  for (const char* bad :
       {"user.leasefs.status", "user.leasefs.status.", "user.leasefs.status.1",
        "user.leasefs.status.1.", "user.leasefs.status..1", "user.leasefs.status.1.2.3",
        "user.leasefs.status.-1.0", "user.leasefs.status. 1.0", "user.leasefs.status.1.+2",
        "user.leasefs.status.18446744073709551616.0", "user.leasefs.statusx.1.2",
        "user.leasefs.other.1.2", "user.leasefs.status.1.2x"}) {
    EXPECT_FALSE(fuse::ParseStatusPageName(bad)) << bad;
  }
}

TEST(StatusVisibility, ModeBitsOfOwnerElseGroupElseOther) {
  struct stat st {};
  st.st_mode = S_IFDIR | 0701;
  st.st_uid = 1000;
  st.st_gid = 100;
  const Caller owner{1000, 1000, {}}, member{2000, 2000, {50, 100}}, stranger{2000, 2000, {50}};
  EXPECT_TRUE(fuse::MaySearch(st, owner));
  EXPECT_FALSE(fuse::MaySearch(st, member));  // group bits decide for a member, not other's
  EXPECT_TRUE(fuse::MaySearch(st, stranger));
  st.st_mode = S_IFDIR | 0610;
  EXPECT_FALSE(fuse::MaySearch(st, owner));  // owner bits decide for the owner
  EXPECT_TRUE(fuse::MaySearch(st, member));
  EXPECT_TRUE(fuse::MaySearch(st, Caller{2000, 100, {}}));  // the primary group counts
  EXPECT_FALSE(fuse::MaySearch(st, stranger));
  st.st_mode = S_IFDIR | 0000;
  EXPECT_TRUE(fuse::MaySearch(st, Caller{0, 0, {}}));
  st.st_mode = S_IFREG | 0777;
  EXPECT_FALSE(fuse::MaySearch(st, stranger));  // not a directory
}

TEST(StatusVisibility, EveryDirectoryFromTheRootDown) {
  leasefs::testing::TempDir temp;
  const std::string root = temp.path();
  auto make_dir = [&](const std::string& path, mode_t mode) {
    ASSERT_EQ(mkdir((root + "/" + path).c_str(), 0700), 0) << path;
    ASSERT_EQ(chmod((root + "/" + path).c_str(), mode), 0) << path;
  };
  ASSERT_EQ(chmod(root.c_str(), 0755), 0);
  make_dir("open", 0755);
  make_dir("open/inner", 0711);
  make_dir("closed", 0700);
  make_dir("closed/wide", 0755);
  make_dir("group", 0750);  // the test process's own group
  ASSERT_EQ(symlink("open", (root + "/link").c_str()), 0);
  int root_fd = open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(root_fd, 0);
  const uid_t other_uid = getuid() == 65534 ? 65533 : 65534;
  const Caller stranger{other_uid, other_uid, {}}, member{other_uid, other_uid, {getgid()}};
  const Caller root_caller{0, 0, {}};
  auto visible = [&](const std::string& path, const Caller& caller) {
    std::map<std::string, bool> seen;
    return fuse::PathVisible(root_fd, path, caller, &seen);
  };
  for (const char* path : {"top.db", "open/a.db", "open/inner/b.db", ""}) {
    EXPECT_TRUE(visible(path, stranger)) << path;
  }
  for (const char* path :
       {"closed/a.db", "closed/wide/b.db", "group/c.db", "missing/d.db", "link/e.db", "open//f.db",
        "open/../closed/g.db", "#64:12", "/abs.db", "top.db/h.db"}) {
    EXPECT_FALSE(visible(path, stranger)) << path;
    EXPECT_TRUE(visible(path, root_caller)) << path;
  }
  EXPECT_TRUE(visible("group/c.db", member));
  // Directories are looked at once per caller: the cache answers for the next path.
  std::map<std::string, bool> seen;
  EXPECT_TRUE(fuse::PathVisible(root_fd, "open/inner/b.db", stranger, &seen));
  EXPECT_EQ(seen, (std::map<std::string, bool>{{"", true}, {"open", true}, {"open/inner", true}}));
  seen["open"] = false;
  EXPECT_FALSE(fuse::PathVisible(root_fd, "open/a.db", stranger, &seen));
  // Closed at the root: nothing below it.
  ASSERT_EQ(chmod(root.c_str(), 0700), 0);
  EXPECT_FALSE(visible("top.db", stranger));
  EXPECT_FALSE(visible("open/a.db", stranger));
  ASSERT_EQ(chmod(root.c_str(), 0755), 0);
  close(root_fd);
}

StatusSnapshot Snapshot(uint64_t id, std::vector<std::string> pages) {
  return {"{\"snapshot\":" + std::to_string(id) + "}", std::move(pages)};
}

TEST(StatusSnapshots, PagesOfASnapshotForItsCaller) {
  StatusSnapshots snapshots(500);
  const Caller alice{1000, 1000, {27}}, bob{1001, 1001, {}}, alice_less{1000, 1000, {}};
  uint64_t made = 0;
  std::string summary = snapshots.take(alice, [&](uint64_t id) {
    made = id;
    return Snapshot(id, {"[1]", "[2]"});
  });
  EXPECT_EQ(made, 500u);
  EXPECT_EQ(summary, "{\"snapshot\":500}");
  std::string page;
  EXPECT_EQ(snapshots.page(500, 0, alice, &page), 0);
  EXPECT_EQ(page, "[1]");
  EXPECT_EQ(snapshots.page(500, 1, alice, &page), 0);
  EXPECT_EQ(page, "[2]");
  EXPECT_EQ(snapshots.page(500, 2, alice, &page), ENODATA);
  EXPECT_EQ(snapshots.page(501, 0, alice, &page), ENODATA);
  EXPECT_EQ(snapshots.page(500, 0, bob, &page), ENODATA);
  EXPECT_EQ(snapshots.page(500, 0, alice_less, &page), ENODATA);  // other groups, other view
  EXPECT_EQ(snapshots.page(500, 1, Caller{0, 0, {}}, &page), 0);  // root reads any
  snapshots.take(bob, [](uint64_t id) { return Snapshot(id, {}); });
  EXPECT_EQ(snapshots.page(501, 0, bob, &page), ENODATA);  // no databases, no page 0
  EXPECT_EQ(snapshots.page(500, 0, alice, &page), 0);      // still there for alice
}

TEST(StatusSnapshots, KeptForAWhileAndOnlyTheLastFew) {
  StatusSnapshots snapshots(1);
  const Caller user{1000, 1000, {}};
  auto start = StatusSnapshots::Clock::now();
  auto make = [](uint64_t id) { return Snapshot(id, {"[" + std::to_string(id) + "]"}); };
  std::string page;
  snapshots.take(user, make, start);
  EXPECT_EQ(snapshots.page(1, 0, user, &page, start + StatusSnapshots::kLifetime), 0);
  EXPECT_EQ(snapshots.page(1, 0, user, &page,
                           start + StatusSnapshots::kLifetime + std::chrono::milliseconds(1)),
            ENODATA);
  EXPECT_EQ(snapshots.size(), 0u);
  for (size_t i = 0; i < StatusSnapshots::kKept + 3; i++) snapshots.take(user, make, start);
  EXPECT_EQ(snapshots.size(), StatusSnapshots::kKept);
  EXPECT_EQ(snapshots.page(2, 0, user, &page, start), ENODATA);  // pushed out by newer ones
  const uint64_t last = 2 + StatusSnapshots::kKept + 2;
  EXPECT_EQ(snapshots.page(last, 0, user, &page, start), 0);
  EXPECT_EQ(page, "[" + std::to_string(last) + "]");
  EXPECT_EQ(snapshots.page(last - StatusSnapshots::kKept + 1, 0, user, &page, start), 0);
  EXPECT_EQ(snapshots.page(last - StatusSnapshots::kKept, 0, user, &page, start), ENODATA);
}

TEST(StatusSnapshots, BoundedInBytesButTheNewestStays) {
  const size_t max_bytes = 1000;
  StatusSnapshots snapshots(1, max_bytes);
  const Caller user{1000, 1000, {}};
  const std::string big(max_bytes / 2 + 1, 'x');
  auto make = [&](uint64_t id) { return Snapshot(id, {big}); };
  snapshots.take(user, make);
  snapshots.take(user, make);  // the two together are over the bound: the older goes
  EXPECT_EQ(snapshots.size(), 1u);
  std::string page;
  EXPECT_EQ(snapshots.page(1, 0, user, &page), ENODATA);
  EXPECT_EQ(snapshots.page(2, 0, user, &page), 0);
  const std::string huge(max_bytes + 1, 'y');
  snapshots.take(user, [&](uint64_t id) { return Snapshot(id, {huge}); });
  EXPECT_EQ(snapshots.size(), 1u);
  EXPECT_EQ(snapshots.page(3, 0, user, &page), 0);
  EXPECT_EQ(page.size(), huge.size());
}

}  // namespace
}  // namespace leasefs
