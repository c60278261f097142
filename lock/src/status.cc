#include "leasefs/lock/status.h"

#include <nlohmann/json.hpp>
#include <sstream>

#include "region_json.h"
#include "status_pages.h"

namespace leasefs::lock {
namespace {

using json = nlohmann::json;

int64_t MillisUntil(TimePoint when, const Clock& clock) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(when - clock.now()).count();
}

}  // namespace

StatusReport StatusReportOf(const LeaseManager& leases, const HostLocks& locks, const Clock& clock,
                            uint64_t snapshot,
                            const std::function<bool(const std::string& path)>& path_visible,
                            size_t page_bytes) {
  LeaseStats s = leases.stats();
  HostLocks::Counters c = locks.counters();
  json doc = {
      {"session", leases.session_id()},
      {"store", leases.store_description()},
      {"lease_ms",
       std::chrono::duration_cast<std::chrono::milliseconds>(leases.config().lease).count()},
      {"deadline_in_ms", MillisUntil(leases.deadline(), clock)},
      {"fenced", leases.fenced()},
      {"dead", leases.dead()},
      {"stats",
       {{"store_requests", s.store_requests},
        {"store_errors", s.store_errors},
        {"store_latency_us_total", s.store_latency_ns / 1000},
        {"renewals", s.renewals},
        {"renewal_failures", s.renewal_failures},
        {"handoffs", s.handoffs},
        {"wasted_handoffs", s.wasted_handoffs},
        {"idle_releases", s.idle_releases},
        {"invalidations", s.invalidations},
        {"hot_journal_checks", s.hot_journal_checks},
        {"sessions_reaped", s.sessions_reaped},
        {"rejoins", s.rejoins}}},
      {"locks",
       {{"setlk", c.setlk},
        {"setlk_busy", c.setlk_busy},
        {"setlkw_waits", c.setlkw_waits},
        {"setlk_held", c.setlk_held},
        {"setlk_held_granted", c.setlk_held_granted},
        {"getlk", c.getlk},
        {"flushes", c.flushes},
        {"abandoned_transactions", c.abandoned_transactions},
        {"fenced_writes", c.fenced_writes}}},
  };
  std::vector<json> databases;
  for (const DatabaseStatus& db : leases.databases()) {
    std::string path = locks.path_of(db.name);
    json entry = {{"name", db.name},
                  {"path", path},
                  {"claims", ModesToJson(db.claims)},
                  {"in_use", ModesToJson(db.use)},
                  {"version", db.version},
                  {"dirty", db.dirty},
                  {"competing", db.competing}};
    if (!path_visible(path)) {
      entry["path"] = "";
      entry["hidden"] = true;
    }
    databases.push_back(std::move(entry));
  }
  StatusReport report;
  report.pages = PageJsonArray(std::move(databases), page_bytes);
  doc["snapshot"] = snapshot;
  doc["database_pages"] = report.pages.size();
  report.summary = DumpJson(doc);
  return report;
}

std::string PrometheusText(const LeaseManager& leases, const HostLocks& locks, const Clock& clock) {
  LeaseStats s = leases.stats();
  HostLocks::Counters c = locks.counters();
  std::ostringstream out;
  auto metric = [&](const char* name, const char* type, const char* help, double value) {
    out << "# HELP leasefs_" << name << " " << help << "\n# TYPE leasefs_" << name << " " << type
        << "\nleasefs_" << name << " " << value << "\n";
  };
  metric("lock_requests_total", "counter", "F_SETLK/F_SETLKW requests", c.setlk);
  metric("lock_busy_total", "counter", "Lock requests answered EAGAIN (SQLITE_BUSY)", c.setlk_busy);
  metric("lock_waits_total", "counter", "F_SETLKW requests that had to wait", c.setlkw_waits);
  metric("lock_holds_total", "counter", "F_SETLK requests held while another host hands over",
         c.setlk_held);
  metric("lock_hold_grants_total", "counter", "Held F_SETLK requests granted while held",
         c.setlk_held_granted);
  metric("lock_tests_total", "counter", "F_GETLK requests", c.getlk);
  metric("abandoned_transactions_total", "counter",
         "Closes that found a write transaction still locked (a writer died)",
         c.abandoned_transactions);
  metric("fenced_writes_total", "counter",
         "Writes refused: fenced (EIO), or a lock-less write's wait ran out (EBUSY)",
         c.fenced_writes);
  metric("store_requests_total", "counter", "Lease store requests", s.store_requests);
  metric("store_errors_total", "counter", "Lease store requests unavailable or ambiguous",
         s.store_errors);
  metric("store_request_seconds_total", "counter", "Time spent in lease store requests",
         static_cast<double>(s.store_latency_ns) / 1e9);
  metric("renewals_total", "counter", "Successful session renewals", s.renewals);
  metric("renewal_failures_total", "counter", "Failed session renewals", s.renewal_failures);
  metric("handoffs_total", "counter", "Claims yielded to another host (on demand or eagerly)",
         s.handoffs);
  metric("wasted_handoffs_total", "counter",
         "Eager yields no other host took before this host claimed again", s.wasted_handoffs);
  metric("idle_releases_total", "counter", "Idle cached claims released", s.idle_releases);
  metric("cache_invalidations_total", "counter", "Database caches dropped on a version change",
         s.invalidations);
  metric("hot_journal_checks_total", "counter",
         "Storage views made to show files a writer that died may have left (hot journals)",
         s.hot_journal_checks);
  metric("sessions_reaped_total", "counter", "Dead sessions whose claims were taken over",
         s.sessions_reaped);
  metric("rejoins_total", "counter",
         "New sessions opened after this mount's session was declared dead", s.rejoins);
  metric("lease_deadline_seconds", "gauge", "Seconds until this mount is fenced without renewal",
         static_cast<double>(MillisUntil(leases.deadline(), clock)) / 1000);
  metric("fenced", "gauge", "1 while writes are fenced", leases.fenced() ? 1 : 0);
  return out.str();
}

}  // namespace leasefs::lock
