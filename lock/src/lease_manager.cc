// lease_manager.cc — see lease_manager.h for the protocol. Notes on the implementation:
//
// * Records are parsed fresh from every read: our own claims are whatever the store says, so an
//   ambiguous write that did land is adopted at the next read instead of leaking a claim.
// * A database's store operations are serialized on this host by Database::busy (acquire and
//   release wait for it), and the fast path (claims already cover the use) is taken only when no
//   operation is in flight, so a release in progress can never be overtaken by a grant it would
//   invalidate.
#include "leasefs/lock/lease_manager.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <random>
#include <vector>

#include "region_json.h"

namespace leasefs::lock {
namespace {

using json = nlohmann::json;

// An exhaustive switch: adding a Region without a name fails to compile (-Wswitch, -Werror).
const char* NameOf(Region region) {
  switch (region) {
    case Region::kPending:
      return "pending";
    case Region::kReserved:
      return "reserved";
    case Region::kShared:
      return "shared";
    case Region::kWal0:
      return "wal0";
    case Region::kWal1:
      return "wal1";
    case Region::kWal2:
      return "wal2";
    case Region::kWal3:
      return "wal3";
    case Region::kWal4:
      return "wal4";
    case Region::kWal5:
      return "wal5";
    case Region::kWal6:
      return "wal6";
    case Region::kWal7:
      return "wal7";
    case Region::kDms:
      return "dms";
    case Region::kWhole:
      return "whole";
    case Region::kCount:
      break;
  }
  return "invalid";
}

std::optional<Region> RegionFromName(const std::string& name) {
  for (size_t i = 0; i < kRegionCount; i++) {
    if (name == NameOf(static_cast<Region>(i))) return static_cast<Region>(i);
  }
  return std::nullopt;
}

bool Conflicts(Mode held, Mode wanted) {
  return held != Mode::kNone && wanted != Mode::kNone &&
         (held == Mode::kWrite || wanted == Mode::kWrite);
}

bool Covers(const RegionModes& held, const RegionModes& wanted) {
  for (size_t i = 0; i < kRegionCount; i++) {
    if (held[i] < wanted[i]) return false;
  }
  return true;
}

bool AnyHeld(const RegionModes& modes) {
  return std::any_of(modes.begin(), modes.end(), [](Mode m) { return m != Mode::kNone; });
}

bool AnyWrite(const RegionModes& modes) {
  return std::any_of(modes.begin(), modes.end(), [](Mode m) { return m == Mode::kWrite; });
}

RegionModes ModesFromJson(const json& in) {
  RegionModes modes{};
  if (!in.is_object()) return modes;
  for (const auto& [name, value] : in.items()) {
    auto region = RegionFromName(name);
    if (!region || !value.is_string()) continue;
    modes[static_cast<size_t>(*region)] = value == "w" ? Mode::kWrite : Mode::kRead;
  }
  return modes;
}

constexpr size_t kPendingIndex = static_cast<size_t>(Region::kPending);
constexpr size_t kReservedIndex = static_cast<size_t>(Region::kReserved);

// Writer priority (see the header): entering PENDING as R while another session waits for it as
// W must wait.
bool HeldOffByWriter(const RegionModes& others_want, const RegionModes& entering) {
  return entering[kPendingIndex] == Mode::kRead && others_want[kPendingIndex] == Mode::kWrite;
}

}  // namespace

// The body of db/<id>.
// The strongest mode, per region, that any session but `session` has in `by_session`.
RegionModes StrongestOfOthers(const std::map<std::string, RegionModes>& by_session,
                              const std::string& session) {
  RegionModes strongest{};
  for (const auto& [other, modes] : by_session) {
    if (other == session) continue;
    for (size_t i = 0; i < kRegionCount; i++) strongest[i] = std::max(strongest[i], modes[i]);
  }
  return strongest;
}

struct DatabaseRecord {
  uint64_t version = 0;
  std::map<std::string, RegionModes> claims;
  std::map<std::string, RegionModes> demand;
  std::string by;  // the session that wrote this revision
  // Non-empty (a unique id) from the moment a W claim was given up by a holder whose
  // transaction did not end (a process or a host died): a hot journal may exist that a host's
  // storage client does not show yet (see HOT JOURNALS). Cleared by the next clean release of
  // a W claim by a host that made its storage view agree.
  std::string hot;

  static bool Parse(const std::string& body, DatabaseRecord* out) {
    *out = DatabaseRecord{};
    if (body.empty()) return true;
    json doc = json::parse(body, nullptr, /*allow_exceptions=*/false);
    if (!doc.is_object()) return false;
    out->version = doc.value("version", uint64_t{0});
    out->by = doc.value("by", std::string());
    if (auto hot = doc.find("hot"); hot != doc.end() && hot->is_string()) {
      out->hot = hot->get<std::string>();
    }
    for (const char* field : {"claims", "demand"}) {
      auto it = doc.find(field);
      if (it == doc.end() || !it->is_object()) continue;
      auto& target = std::string(field) == "claims" ? out->claims : out->demand;
      for (const auto& [session, modes] : it->items()) {
        RegionModes parsed = ModesFromJson(modes);
        if (AnyHeld(parsed)) target[session] = parsed;
      }
    }
    return true;
  }

  std::string Serialize(const std::string& by_session, const std::string& token) const {
    json doc = {{"version", version}, {"by", by_session}, {"token", token}};
    if (!hot.empty()) doc["hot"] = hot;
    doc["claims"] = json::object();
    doc["demand"] = json::object();
    for (const auto& [session, modes] : claims) {
      if (AnyHeld(modes)) doc["claims"][session] = ModesToJson(modes);
    }
    for (const auto& [session, modes] : demand) {
      if (AnyHeld(modes)) doc["demand"][session] = ModesToJson(modes);
    }
    return doc.dump();
  }

  RegionModes mine(const std::string& session) const {
    auto it = claims.find(session);
    return it == claims.end() ? RegionModes{} : it->second;
  }

  // Hands every waiting session (other than `except`) the claims it demands that no claim in the
  // record conflicts with, in this same write. Returns whether anything was handed over.
  // Writers first (HeldOffByWriter): a demand for PENDING as R is not granted while one for
  // PENDING as W still waits.
  bool hand_over(const std::string& except) {
    bool handed = false;
    for (bool writers : {true, false}) {
      for (auto it = demand.begin(); it != demand.end();) {
        const std::string& waiter = it->first;
        const Mode pending = it->second[kPendingIndex];
        bool free = waiter != except && (pending == Mode::kWrite) == writers &&
                    !HeldOffByWriter(others_want(waiter), it->second);
        for (const auto& [holder, modes] : claims) {
          if (holder == waiter || !free) continue;
          for (size_t i = 0; i < kRegionCount && free; i++) {
            free = !Conflicts(modes[i], it->second[i]);
          }
        }
        if (!free) {
          ++it;
          continue;
        }
        RegionModes& granted = claims[waiter];
        for (size_t i = 0; i < kRegionCount; i++) granted[i] = std::max(granted[i], it->second[i]);
        it = demand.erase(it);
        handed = true;
      }
    }
    return handed;
  }

  // The strongest mode any session other than `session` demands, per region.
  RegionModes others_want(const std::string& session) const {
    return StrongestOfOthers(demand, session);
  }

  // The strongest mode any session other than `session` holds, per region.
  RegionModes others_hold(const std::string& session) const {
    return StrongestOfOthers(claims, session);
  }

  bool has_others(const std::string& session) const {
    for (const auto& [other, modes] : claims) {
      if (other != session) return true;
    }
    for (const auto& [other, modes] : demand) {
      if (other != session) return true;
    }
    return false;
  }
};

namespace {

std::string SessionBody(const std::string& name, bool alive, const std::string& token) {
  return json{{"name", name}, {"state", alive ? "alive" : "dead"}, {"token", token}}.dump();
}

bool BodyHasToken(const std::string& body, const std::string& token) {
  json doc = json::parse(body, nullptr, false);
  return doc.is_object() && doc.value("token", std::string()) == token;
}

bool SessionBodyIsAlive(const std::string& body) {
  json doc = json::parse(body, nullptr, false);
  return doc.is_object() && doc.value("state", std::string()) == "alive";
}

std::string RandomHex() {
  std::random_device device;
  uint64_t value = (static_cast<uint64_t>(device()) << 32) ^ device();
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(value));
  return text;
}

std::string DatabaseKey(const std::string& db) {
  return "db/" + db;
}
std::string SessionKey(const std::string& session) {
  return "session/" + session;
}

// Whether `use` locks a database file's SQLite regions at all (`mode` kRead), or writes them
// (kWrite: RESERVED or EXCLUSIVE). Not its -shm, not another file.
bool UsesDatabaseRegions(const RegionModes& use, Mode mode) {
  for (Region r : {Region::kPending, Region::kReserved, Region::kShared}) {
    if (use[static_cast<size_t>(r)] >= mode) return true;
  }
  return false;
}

}  // namespace

const char* RegionName(Region region) {
  return NameOf(region);
}

LeaseManager::LeaseManager(LeaseStore& store, const Clock& clock, LeaseConfig config,
                           LeaseListener& listener)
    : store_(store), clock_(clock), config_(std::move(config)), listener_(listener) {
  if (config_.demand_check_interval == Duration::zero()) {
    config_.demand_check_interval = config_.lease / 4;
  }
  session_id_ = config_.session_name + "#" + RandomHex();
  session_key_ = SessionKey(session_id_);
}

LeaseManager::~LeaseManager() {
  stop();
}

std::string LeaseManager::session_id() const {
  std::lock_guard<std::mutex> guard(mutex_);
  return session_id_;
}

std::string LeaseManager::next_token() {
  std::lock_guard<std::mutex> guard(mutex_);
  return session_id_ + "/" + std::to_string(++token_counter_);
}

TimePoint LeaseManager::store_deadline() const {
  return clock_.now() + config_.store_timeout;
}

void LeaseManager::count_request(TimePoint started, const StoreResult& result) {
  std::lock_guard<std::mutex> guard(mutex_);
  stats_.store_requests++;
  stats_.store_latency_ns += static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(clock_.now() - started).count());
  if (result.outcome == StoreOutcome::kUnavailable || result.outcome == StoreOutcome::kAmbiguous) {
    stats_.store_errors++;
  }
}

StoreResult LeaseManager::store_get(const std::string& key) {
  TimePoint started = clock_.now();
  StoreResult result = store_.get(key, store_deadline());
  count_request(started, result);
  spdlog::trace("store get {}: rev {} {}", key, result.record.revision,
                static_cast<int>(result.outcome));
  return result;
}

StoreResult LeaseManager::store_put(const std::string& key, uint64_t revision,
                                    const std::string& body) {
  TimePoint started = clock_.now();
  StoreResult result = store_.put(key, revision, body, store_deadline());
  count_request(started, result);
  spdlog::trace("store put {} on rev {}: {} rev {} {}", key, revision,
                static_cast<int>(result.outcome), result.record.revision, body);
  return result;
}

std::vector<DatabaseStatus> LeaseManager::databases() const {
  std::lock_guard<std::mutex> guard(mutex_);
  std::vector<DatabaseStatus> out;
  for (const auto& [name, db] : databases_) {
    out.push_back({name, db.claims, db.use, db.last_version, db.dirty, db.competing});
  }
  return out;
}

// Settles a kAmbiguous write by reading: kOk if our token is there, kConflict if someone else's
// write is, kUnavailable if nothing changed (or the read failed too: treated as not applied;
// the next compare-and-set will find out either way).
StoreResult LeaseManager::settle(const std::string& key, const StoreResult& attempt,
                                 const std::string& token) {
  if (attempt.outcome != StoreOutcome::kAmbiguous) return attempt;
  StoreResult read = store_get(key);
  if (!read.ok()) return read;
  if (read.record.revision != 0 && BodyHasToken(read.record.body, token)) return read;
  read.outcome = StoreOutcome::kConflict;
  return read;
}

bool LeaseManager::start(std::string* error) {
  store_generation_ = store_.generation();
  TimePoint sent = clock_.now();
  std::string token = next_token();
  StoreResult r =
      settle(session_key_,
             store_put(session_key_, 0, SessionBody(config_.session_name, true, token)), token);
  if (!r.ok()) {
    *error = "cannot create session in lease store " + store_.describe() + ": " +
             (r.error.empty() ? "session already exists" : r.error);
    return false;
  }
  std::lock_guard<std::mutex> guard(mutex_);
  session_revision_ = r.record.revision;
  deadline_ = sent + std::chrono::duration_cast<Duration>(config_.lease * (1 - 2 * config_.drift)) -
              config_.margin;
  next_renewal_ = sent + config_.lease / 4;
  return true;
}

bool LeaseManager::renew() {
  TimePoint sent = clock_.now();
  uint64_t revision;
  {
    std::lock_guard<std::mutex> guard(mutex_);
    if (dead_) return false;
    revision = session_revision_;
  }
  std::string token = next_token();
  StoreResult r = settle(
      session_key_,
      store_put(session_key_, revision, SessionBody(config_.session_name, true, token)), token);
  if (r.outcome == StoreOutcome::kConflict && r.record.revision != 0 &&
      SessionBodyIsAlive(r.record.body)) {
    // Only this session ever writes "alive" to its record: an earlier ambiguous renewal landed.
    std::lock_guard<std::mutex> guard(mutex_);
    session_revision_ = r.record.revision;
    next_renewal_ = clock_.now();  // renew again at once from the adopted revision
    return true;
  }
  std::lock_guard<std::mutex> guard(mutex_);
  if (r.ok()) {
    session_revision_ = r.record.revision;
    TimePoint renewed =
        sent + std::chrono::duration_cast<Duration>(config_.lease * (1 - 2 * config_.drift)) -
        config_.margin;
    deadline_ = std::max(deadline_, renewed);
    next_renewal_ = sent + config_.lease / 4;
    stats_.renewals++;
    return true;
  }
  if (r.outcome == StoreOutcome::kConflict) {
    if (r.record.revision == 0) {
      spdlog::error(
          "lease session {} is gone from the lease store (was the store replaced or its data "
          "deleted?); all claims are lost",
          session_id_);
    } else {
      spdlog::error("lease session {} was declared dead by another host; all claims are lost",
                    session_id_);
    }
    lose_session();
    return false;
  }
  stats_.renewal_failures++;
  spdlog::warn(
      "lease renewal failed ({}); fenced in {} ms unless it succeeds", r.error,
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - clock_.now()).count());
  next_renewal_ =
      clock_.now() + std::min<Duration>(config_.lease / 16, std::chrono::milliseconds(500));
  return false;
}

void LeaseManager::lose_session() {
  dead_ = true;
  next_rejoin_ = clock_.now();
  for (auto& [name, db] : databases_) {
    db.claims = RegionModes{};
    db.demand_pending = false;  // the dead session's demand is nothing to poll for
    db.unsettled = false;
  }
}

bool LeaseManager::record_lost(const std::string& name, const Record& seen,
                               const DatabaseRecord& record) {
  std::lock_guard<std::mutex> guard(mutex_);
  if (dead_) return false;
  Database& db = databases_[name];
  const bool went_back = seen.revision < db.known.revision && AnyHeld(db.claims);
  const bool claims_gone = !Covers(record.mine(session_id_), db.use);
  if (!went_back && !claims_gone) return false;
  spdlog::error(
      "lease record {} no longer holds the claims this host's processes use ({}); was it deleted "
      "or edited outside leasefs? Another host may hold them now: all claims are lost",
      DatabaseKey(name),
      went_back ? "its revision went back from " + std::to_string(db.known.revision) + " to " +
                      std::to_string(seen.revision)
                : "claims missing");
  lose_session();
  return true;
}

void LeaseManager::rejoin() {
  std::string old_id;
  {
    std::lock_guard<std::mutex> guard(mutex_);
    size_t holding = 0;
    bool busy = false;  // a store operation reading session_id_ is in flight: try again soon
    for (const auto& [name, db] : databases_) {
      holding += AnyHeld(db.use) ? 1 : 0;
      busy |= db.busy;
    }
    if (busy) {
      next_rejoin_ = clock_.now() + config_.poll_interval;
      return;
    }
    if (holding > 0) {
      spdlog::warn(
          "session lost: waiting for local processes to release their locks on {} "
          "database(s) before joining again (writes stay fenced)",
          holding);
      next_rejoin_ = clock_.now() + config_.lease;
      return;
    }
    old_id = session_id_;
    store_generation_ = store_.generation();  // a session in the store as it is now
    session_id_ = config_.session_name + "#" + RandomHex();
    session_key_ = SessionKey(session_id_);
  }
  TimePoint sent = clock_.now();
  std::string token = next_token();
  StoreResult r =
      settle(session_key_,
             store_put(session_key_, 0, SessionBody(config_.session_name, true, token)), token);
  std::lock_guard<std::mutex> guard(mutex_);
  if (!r.ok()) {
    next_rejoin_ =
        clock_.now() + std::min<Duration>(config_.lease / 16, std::chrono::milliseconds(500));
    return;
  }
  session_revision_ = r.record.revision;
  deadline_ = sent + std::chrono::duration_cast<Duration>(config_.lease * (1 - 2 * config_.drift)) -
              config_.margin;
  next_renewal_ = sent + config_.lease / 4;
  for (auto& [name, db] : databases_) {
    db.claims = RegionModes{};
    db.seen_version = false;  // the first claim in the new session drops every cache
    db.dirty = false;
    db.competing = false;
    db.yield_now = false;
    db.demand_pending = false;
    db.writer = false;
    db.known = Record{};
    db.others_want = RegionModes{};
    db.others_hold = RegionModes{};
    db.unsettled = false;
    db.handoff_at.reset();
    db.linger = Duration::zero();
    db.handoff_revision = 0;
  }
  dead_ = false;
  stats_.rejoins++;
  spdlog::warn("joined again as session {} (session {} was declared dead)", session_id_, old_id);
}

bool LeaseManager::fenced() const {
  std::lock_guard<std::mutex> guard(mutex_);
  return dead_ || clock_.now() >= deadline_ || store_replaced();
}

bool LeaseManager::dead() const {
  std::lock_guard<std::mutex> guard(mutex_);
  return dead_;
}

TimePoint LeaseManager::deadline() const {
  std::lock_guard<std::mutex> guard(mutex_);
  return deadline_;
}

LeaseStats LeaseManager::stats() const {
  std::lock_guard<std::mutex> guard(mutex_);
  return stats_;
}

RegionModes LeaseManager::held(const std::string& db) const {
  std::lock_guard<std::mutex> guard(mutex_);
  auto it = databases_.find(db);
  return it == databases_.end() ? RegionModes{} : it->second.claims;
}

bool LeaseManager::may_write(const std::string& db) const {
  std::lock_guard<std::mutex> guard(mutex_);
  if (dead_ || clock_.now() >= deadline_ || store_replaced()) return false;
  auto it = databases_.find(db);
  if (it == databases_.end()) return false;
  const RegionModes& c = it->second.claims;
  auto w = [&](Region r) { return c[static_cast<size_t>(r)] == Mode::kWrite; };
  if (w(Region::kReserved) || w(Region::kShared) || w(Region::kWhole)) return true;
  for (size_t i = static_cast<size_t>(Region::kWal0); i <= static_cast<size_t>(Region::kWal7);
       i++) {
    if (c[i] == Mode::kWrite) return true;
  }
  return false;
}

void LeaseManager::mark_dirty(const std::string& db) {
  std::lock_guard<std::mutex> guard(mutex_);
  databases_[db].dirty = true;
}

void LeaseManager::lock_database(std::unique_lock<std::mutex>& lock, Database& db) {
  changed_.wait(lock, [&] { return !db.busy; });
  db.busy = true;
}

bool LeaseManager::lock_database_unless_fenced(std::unique_lock<std::mutex>& lock, Database& db) {
  auto fenced_now = [&] { return dead_ || clock_.now() >= deadline_ || store_replaced(); };
  while (db.busy) {
    if (fenced_now()) return false;
    changed_.wait_for(lock, std::chrono::milliseconds(10));  // re-check the deadline meanwhile
  }
  if (fenced_now()) return false;
  db.busy = true;
  return true;
}

void LeaseManager::unlock_database(Database& db) {
  db.busy = false;
  changed_.notify_all();
}

ClaimResult LeaseManager::acquire(const std::string& name, const RegionModes& use) {
  RegionModes entering{};
  {
    std::lock_guard<std::mutex> guard(mutex_);
    const RegionModes& current = databases_[name].use;
    for (size_t i = 0; i < kRegionCount; i++) {
      if (current[i] == Mode::kNone) entering[i] = use[i];
    }
  }
  return acquire(name, use, entering);
}

ClaimResult LeaseManager::acquire(const std::string& name, const RegionModes& use,
                                  const RegionModes& entering) {
  return acquire_looking(name, use, entering, config_.busy_retries);
}

ClaimResult LeaseManager::acquire_once(const std::string& name, const RegionModes& use,
                                       const RegionModes& entering) {
  return acquire_looking(name, use, entering, 0);
}

ClaimResult LeaseManager::acquire_looking(const std::string& name, const RegionModes& use,
                                          const RegionModes& entering, int looks_again) {
  std::unique_lock<std::mutex> lock(mutex_);
  if (dead_ || clock_.now() >= deadline_ || store_replaced()) return ClaimResult::kFenced;
  Database& db = databases_[name];
  db.last_used = clock_.now();
  db.handoff_at.reset();    // a local lock again: no eager handoff until it goes
  if (db.hot_wait_until) {  // a writer died: the storage client may not show its journal yet
    if (clock_.now() < *db.hot_wait_until) return ClaimResult::kBusy;
    db.hot_wait_until.reset();
    db.agreed_hot = db.pending_hot;
  }
  // Granted from the claims here, with no store request: they cover the use, and no writer
  // elsewhere waits for what we would enter (else the store decides: writer priority).
  auto claims_here_suffice = [&] {
    return !HeldOffByWriter(db.others_want, entering) && Covers(db.claims, use);
  };
  if (!db.busy && claims_here_suffice()) {
    db.use = use;
    return ClaimResult::kGranted;
  }
  // A store operation on this database is in flight (a demand check, a release): wait for it,
  // but never past the deadline. With the store unreachable that operation takes its whole
  // store_timeout, and a lock request must be answered kFenced once the session may have lapsed,
  // not when the store lets go.
  if (!lock_database_unless_fenced(lock, db)) return ClaimResult::kFenced;
  if (claims_here_suffice()) {  // a concurrent acquire got it while we waited
    db.use = use;
    unlock_database(db);
    return ClaimResult::kGranted;
  }
  // The background thread plans no visit to a database where it saw no claims: when this
  // request brings the first, wake it to plan the idle release and demand checks (else they
  // waited for its next renewal-paced step, lease / 4: a first writer elsewhere waited 1.5 s).
  const bool had_claims = AnyHeld(db.claims);
  lock.unlock();
  bool held_off = false;
  ClaimResult result = acquire_from_store(name, use, entering, &held_off);
  lock.lock();
  // Busy: look again a few times before SQLite's busy handler takes over. Between looks the
  // database is NOT kept busy: other local requests that the claims cover go ahead, and the
  // background thread can yield what another host waits for. (Holding it across the sleeps made
  // every local request and every yield of the database queue behind one waiting request: a
  // convoy that halved two mounts' throughput, bench/README.md.)
  for (int retry = 0; result == ClaimResult::kBusy && !held_off && retry < looks_again; retry++) {
    unlock_database(db);
    lock.unlock();
    std::this_thread::sleep_for(config_.busy_poll);  // real time: the holder is real, too
    lock.lock();
    if (!lock_database_unless_fenced(lock, db)) return ClaimResult::kFenced;
    if (claims_here_suffice()) {  // handed to us meanwhile (the background thread adopted it)
      result = ClaimResult::kGranted;
      break;
    }
    lock.unlock();
    result = acquire_from_store(name, use, entering, &held_off);
    lock.lock();
  }
  if (result == ClaimResult::kGranted) db.use = use;
  note_writer_wait(db, use, result);
  if (db.competing || (!had_claims && AnyHeld(db.claims))) {
    // Demand to poll for a hand-over, or claims others may want: the background thread must
    // look at this database within poll_interval, whenever it last planned to wake.
    wake_background_ = true;
  }
  unlock_database(db);  // notifies changed_
  return result;
}

ClaimResult LeaseManager::acquire_cached(const std::string& name, const RegionModes& use,
                                         const RegionModes& entering) {
  std::lock_guard<std::mutex> guard(mutex_);
  if (dead_ || clock_.now() >= deadline_ || store_replaced()) return ClaimResult::kFenced;
  Database& db = databases_[name];
  db.last_used = clock_.now();  // a request waits for it: not idle (no idle release, demand stays)
  db.handoff_at.reset();
  if (db.busy || db.hot_wait_until || HeldOffByWriter(db.others_want, entering) ||
      !Covers(db.claims, use)) {
    note_writer_wait(db, use, ClaimResult::kBusy);
    return ClaimResult::kBusy;
  }
  db.use = use;
  note_writer_wait(db, use, ClaimResult::kGranted);
  return ClaimResult::kGranted;
}

void LeaseManager::note_writer_wait(Database& db, const RegionModes& use, ClaimResult result) {
  auto mode = [&](Region r) { return use[static_cast<size_t>(r)]; };
  if (result == ClaimResult::kGranted) db.writer_wanted = {};
  // Only a committing writer's refusals count: RESERVED held, PENDING or SHARED asked as W.
  if (result != ClaimResult::kBusy || mode(Region::kReserved) != Mode::kWrite ||
      (mode(Region::kPending) != Mode::kWrite && mode(Region::kShared) != Mode::kWrite)) {
    return;
  }
  db.writer_wanted = {};
  for (Region r : {Region::kPending, Region::kShared}) {
    if (mode(r) == Mode::kWrite) db.writer_wanted[static_cast<size_t>(r)] = Mode::kWrite;
  }
  db.writer_wanted_until = clock_.now() + config_.writer_claim_keep;
}

RegionModes LeaseManager::use_to_keep(const Database& db) const {
  RegionModes keep = db.use;
  // Only while the writer still holds RESERVED: its transaction is not over.
  if (clock_.now() >= db.writer_wanted_until ||
      db.use[static_cast<size_t>(Region::kReserved)] != Mode::kWrite) {
    return keep;
  }
  for (size_t i = 0; i < kRegionCount; i++) keep[i] = std::max(keep[i], db.writer_wanted[i]);
  return keep;
}

RegionModes LeaseManager::others_want(const std::string& name) const {
  std::lock_guard<std::mutex> guard(mutex_);
  auto it = databases_.find(name);
  return it == databases_.end() ? RegionModes{} : it->second.others_want;
}

bool LeaseManager::note_others(Database& db, const DatabaseRecord& record) {
  const RegionModes wanted = record.others_want(session_id_);
  const RegionModes held = record.others_hold(session_id_);
  const bool changed = wanted != db.others_want || held != db.others_hold;
  db.others_want = wanted;
  db.others_hold = held;
  if (changed) {
    // Whoever read it (a lock request, too), the claims' thread decides at once whether we now
    // owe another host a claim no local process uses, instead of at its next poll.
    db.owed_check = true;
    wake_background_ = true;
    changed_.notify_all();
  }
  return changed;
}

RegionModes LeaseManager::others_hold(const std::string& name) const {
  std::lock_guard<std::mutex> guard(mutex_);
  auto it = databases_.find(name);
  return it == databases_.end() ? RegionModes{} : it->second.others_hold;
}

void LeaseManager::remember(const std::string& name, const Record& record) {
  std::lock_guard<std::mutex> guard(mutex_);
  databases_[name].known = record;
}

void LeaseManager::adopt(const std::string& name, const RegionModes& mine, uint64_t version,
                         const std::string& hot) {
  bool invalidate;
  {
    std::lock_guard<std::mutex> guard(mutex_);
    Database& db = databases_[name];
    const bool gains = !Covers(db.claims, mine);
    invalidate = gains && (!db.seen_version || db.last_version != version);
    if (!gains) {
      db.claims = mine;
      return;
    }
    if (invalidate) stats_.invalidations++;
  }
  if (invalidate) listener_.invalidate(name);
  agree_on_hot_journal(name, hot);
  {
    std::lock_guard<std::mutex> guard(mutex_);
    Database& db = databases_[name];
    db.claims = mine;
    db.last_version = version;
    db.seen_version = true;
  }
  listener_.claims_changed(name);
}

StoreResult LeaseManager::write_record(const std::string& name, uint64_t revision,
                                       const DatabaseRecord& record) {
  const std::string key = DatabaseKey(name);
  const std::string token = next_token();
  const std::string body = record.Serialize(session_id_, token);
  StoreResult w = settle(key, store_put(key, revision, body), token);
  if (w.ok()) remember(name, Record{key, w.record.revision, body});
  return w;
}

ClaimResult LeaseManager::unsettled_write(const std::string& name) {
  std::lock_guard<std::mutex> guard(mutex_);
  databases_[name].unsettled = true;
  wake_background_ = true;
  return ClaimResult::kUnavailable;
}

bool LeaseManager::is_competitor(const std::string& session) {
  std::string me;
  {
    std::lock_guard<std::mutex> guard(mutex_);
    me = session_id_;
  }
  return !session.empty() && session != me && !session_is_dead(session);
}

// Called with databases_[name].busy held by us and mutex_ released.
ClaimResult LeaseManager::acquire_from_store(const std::string& name, const RegionModes& use,
                                             const RegionModes& entering, bool* held_off) {
  const std::string key = DatabaseKey(name);
  *held_off = false;
  std::optional<Record> current;  // the record a failed compare-and-set answered with
  for (int attempt = 0; attempt < 16; attempt++) {
    Record seen;
    bool others_changed = false;
    if (current) {
      seen = std::move(*current);
      current.reset();
    } else {
      StoreResult read = store_get(key);
      if (!read.ok()) return ClaimResult::kUnavailable;
      seen = std::move(read.record);
    }
    DatabaseRecord record;
    if (!DatabaseRecord::Parse(seen.body, &record)) {
      spdlog::error("lease record {} is not valid JSON; refusing to use it", key);
      return ClaimResult::kUnavailable;
    }
    if (record_lost(name, seen, record)) return ClaimResult::kFenced;
    remember(name, seen);

    bool writer_host;
    {
      std::lock_guard<std::mutex> guard(mutex_);
      Database& db = databases_[name];
      // Judge our last eager handoff: if nobody wrote the record since, nobody wanted it.
      if (db.handoff_revision != 0) {
        if (seen.revision == db.handoff_revision) {
          db.linger = std::min<Duration>(std::max<Duration>(2 * db.linger, config_.poll_interval),
                                         config_.idle_release);
          stats_.wasted_handoffs++;
        } else {
          db.linger = Duration::zero();
        }
        db.handoff_revision = 0;
      }
      db.writer |= UsesDatabaseRegions(use, Mode::kWrite);
      writer_host = db.writer;
      others_changed = note_others(db, record);
    }
    if (others_changed) listener_.claims_changed(name);
    // A writer host takes PENDING, RESERVED and SHARED as W together when nobody else is on the
    // database (see LeaseConfig::claim_write_set), and asks for them together when someone is.
    const bool whole_write_set =
        config_.claim_write_set && writer_host && UsesDatabaseRegions(use, Mode::kRead);

    // Who stands in the way? Reap the dead among them.
    bool changed = false, live_conflict = false;
    std::vector<std::string> in_the_way;
    for (const auto& [session, modes] : record.claims) {
      if (session == session_id_) continue;
      for (size_t i = 0; i < kRegionCount; i++) {
        if (Conflicts(modes[i], use[i])) {
          in_the_way.push_back(session);
          break;
        }
      }
    }
    for (const std::string& session : in_the_way) {
      if (session_is_dead(session)) {
        bool wrote = AnyWrite(record.claims[session]);
        record.claims.erase(session);
        record.demand.erase(session);
        if (wrote) {
          record.version++;           // it may have written: everyone must revalidate
          record.hot = next_token();  // and it may have left a hot journal (HOT JOURNALS)
        }
        changed = true;
        std::lock_guard<std::mutex> guard(mutex_);
        stats_.sessions_reaped++;
        spdlog::warn("took over the claims of dead session {} on {}", session, name);
      } else {
        live_conflict = true;
      }
    }
    // Writer priority (see the header): entering PENDING as R waits while another live session
    // waits for it as W, even where a claim of ours covers it. A dead session's demand is
    // dropped.
    if (!live_conflict) {
      std::vector<std::string> writers;
      for (const auto& [session, wanted] : record.demand) {
        if (session != session_id_ && HeldOffByWriter(wanted, entering)) {
          writers.push_back(session);
        }
      }
      for (const std::string& session : writers) {
        if (session_is_dead(session)) {
          record.demand.erase(session);
          changed = true;
        } else {
          live_conflict = true;
          *held_off = true;
        }
      }
    }
    const bool others = record.has_others(session_id_);
    const bool competitor = others || is_competitor(record.by);

    if (live_conflict) {
      RegionModes wanted = use;
      if (whole_write_set) {
        for (Region r : {Region::kPending, Region::kReserved, Region::kShared})
          wanted[static_cast<size_t>(r)] = Mode::kWrite;
      }
      RegionModes& demand = record.demand[session_id_];
      for (size_t i = 0; i < kRegionCount; i++) {
        if (wanted[i] > demand[i]) {
          demand[i] = wanted[i];
          changed = true;
        }
      }
      // Whatever no claim holds goes to the sessions waiting for it, in this same write: when
      // the region we are held off from is free (its holder died, or yielded without a waiter
      // then), nobody else would ever write the hand-over, and two writers each waiting for
      // the other's demand to be served would wait for ever.
      changed |= record.hand_over(session_id_);
      uint64_t version = record.version;
      if (changed) {
        StoreResult w = write_record(name, seen.revision, record);
        if (w.outcome == StoreOutcome::kConflict) {
          current = std::move(w.record);
          continue;
        }
        if (!w.ok()) return unsettled_write(name);
      }
      adopt(name, record.mine(session_id_), version, record.hot);
      std::lock_guard<std::mutex> guard(mutex_);
      Database& db = databases_[name];
      db.competing = true;
      db.competitor_seen = db.demand_checked = clock_.now();
      db.demand_pending = true;
      if (changed) db.poll_backoff = Duration::zero();  // a new demand: the turn may come soon
      return ClaimResult::kBusy;
    }

    RegionModes mine = record.mine(session_id_);
    for (size_t i = 0; i < kRegionCount; i++) mine[i] = std::max(mine[i], use[i]);
    // Pure readers claim only what they use, so readers on many hosts share without a handoff.
    // A claim held beyond use is only cached: demand takes it back.
    if (whole_write_set && !others) {
      for (Region r : {Region::kPending, Region::kReserved, Region::kShared})
        mine[static_cast<size_t>(r)] = Mode::kWrite;
    }
    const bool unchanged = !changed && record.claims.count(session_id_) &&
                           record.claims[session_id_] == mine && !record.demand.count(session_id_);
    if (!unchanged) {  // granted to us already (handed over by the holder): nothing to write
      record.claims[session_id_] = mine;
      record.demand.erase(session_id_);
      StoreResult w = write_record(name, seen.revision, record);
      if (w.outcome == StoreOutcome::kConflict) {
        current = std::move(w.record);
        continue;
      }
      if (!w.ok()) return unsettled_write(name);
    }

    bool invalidate;
    {
      std::lock_guard<std::mutex> guard(mutex_);
      Database& db = databases_[name];
      invalidate = !db.seen_version || db.last_version != record.version;
      db.claims = mine;
      db.last_version = record.version;
      db.seen_version = true;
      db.demand_checked = clock_.now();
      db.demand_pending = false;
      if (competitor) {
        db.competing = true;
        db.competitor_seen = clock_.now();
      }
      if (invalidate) stats_.invalidations++;
    }
    if (invalidate) listener_.invalidate(name);
    if (!agree_on_hot_journal(name, record.hot)) return ClaimResult::kBusy;  // storage_cache_wait
    listener_.claims_changed(name);  // what this grant added may serve other waiting requests
    // A grant is only as good as the session behind it.
    std::lock_guard<std::mutex> guard(mutex_);
    if (dead_ || clock_.now() >= deadline_) return ClaimResult::kFenced;
    return ClaimResult::kGranted;
  }
  return ClaimResult::kBusy;  // the record kept changing under us: let the caller retry
}

// Liveness of another session, judged only by durations on our own clock (see header). A
// session whose record we read lately and saw renewed lately is alive without another read:
// declaring it dead needs its revision unchanged for a full lease, and skipping a read only
// ever delays that, by at most lease / 8.
bool LeaseManager::session_is_dead(const std::string& session) {
  const std::string key = SessionKey(session);
  {
    std::lock_guard<std::mutex> guard(mutex_);
    TimePoint now = clock_.now();
    auto seen = observations_.find(session);
    if (seen != observations_.end() && seen->second.dead) return true;
    if (seen != observations_.end() && now - seen->second.checked < config_.lease / 8 &&
        now - seen->second.since < config_.lease / 2) {
      return false;
    }
  }
  StoreResult read = store_get(key);
  if (!read.ok()) return false;  // cannot tell: assume alive
  if (read.record.revision == 0 || !SessionBodyIsAlive(read.record.body)) {
    std::lock_guard<std::mutex> guard(mutex_);
    observations_[session].dead = true;
    return true;
  }
  TimePoint now = clock_.now();
  {
    std::lock_guard<std::mutex> guard(mutex_);
    Observation& seen = observations_[session];
    seen.checked = now;
    if (seen.revision != read.record.revision) {
      seen.revision = read.record.revision;
      seen.since = now;
      return false;
    }
    if (now - seen.since < config_.lease) return false;
  }
  // Unrenewed for a full lease on our clock: declare it dead, unless it renews first.
  std::string token = next_token();
  std::string name;
  {
    json doc = json::parse(read.record.body, nullptr, false);
    name = doc.is_object() ? doc.value("name", std::string()) : std::string();
  }
  StoreResult w =
      settle(key, store_put(key, read.record.revision, SessionBody(name, false, token)), token);
  if (w.ok()) {
    spdlog::warn("declared session {} dead: unrenewed for {} ms", session,
                 std::chrono::duration_cast<std::chrono::milliseconds>(config_.lease).count());
    std::lock_guard<std::mutex> guard(mutex_);
    observations_[session].dead = true;
    return true;
  }
  if (w.outcome == StoreOutcome::kConflict) {
    if (w.record.revision == 0 || !SessionBodyIsAlive(w.record.body)) {
      std::lock_guard<std::mutex> guard(mutex_);
      observations_[session].dead = true;
      return true;
    }
    std::lock_guard<std::mutex> guard(mutex_);
    TimePoint later = clock_.now();
    observations_[session] = Observation{w.record.revision, later, later};
  }
  return false;
}

void LeaseManager::relinquish(const std::string& name, const RegionModes& use) {
  {
    std::lock_guard<std::mutex> guard(mutex_);
    Database& db = databases_[name];
    db.use = use;
    db.last_used = clock_.now();
    db.handoff_at.reset();
    db.abandoned = true;
  }
  release_claims(name, Release::kAll);
}

void LeaseManager::abandon(const std::string& name) {
  std::lock_guard<std::mutex> guard(mutex_);
  databases_[name].abandoned = true;
}

bool LeaseManager::agree_on_hot_journal(const std::string& name, const std::string& hot) {
  if (hot.empty()) return true;
  {
    std::lock_guard<std::mutex> guard(mutex_);
    Database& db = databases_[name];
    if (db.agreed_hot == hot) return true;
    if (db.pending_hot == hot) return false;  // still waiting (acquire() ends the wait)
  }
  listener_.revalidate(name);
  std::lock_guard<std::mutex> guard(mutex_);
  Database& db = databases_[name];
  stats_.hot_journal_checks++;
  if (config_.storage_cache_wait > Duration::zero()) {
    db.pending_hot = hot;
    db.hot_wait_until = clock_.now() + config_.storage_cache_wait;
    return false;
  }
  db.agreed_hot = hot;
  return true;
}

Mode LeaseManager::foreign_holder(const std::string& name, Region region, Mode mode) {
  const size_t i = static_cast<size_t>(region);
  {
    std::lock_guard<std::mutex> guard(mutex_);
    auto it = databases_.find(name);
    if (it != databases_.end() && !it->second.busy && !dead_) {
      Mode mine = it->second.claims[i];
      // Our W excludes every other claim; our R excludes every other W.
      if (mine == Mode::kWrite || (mine == Mode::kRead && mode == Mode::kRead)) return Mode::kNone;
    }
  }
  StoreResult read = store_get(DatabaseKey(name));
  DatabaseRecord record;
  if (!read.ok() || !DatabaseRecord::Parse(read.record.body, &record)) {
    return Mode::kWrite;  // cannot tell: say "locked", never let a live journal look hot
  }
  for (const auto& [session, modes] : record.claims) {
    if (session == session_id_ || !Conflicts(modes[i], mode)) continue;
    if (session_is_dead(session)) continue;
    return modes[i];
  }
  return Mode::kNone;
}

void LeaseManager::set_use(const std::string& name, const RegionModes& use) {
  std::unique_lock<std::mutex> lock(mutex_);
  Database& db = databases_[name];
  TimePoint now = clock_.now();
  db.use = use;
  db.last_used = now;
  // No writer holds RESERVED here (its transaction ended): none waits to commit.
  if (use[static_cast<size_t>(Region::kReserved)] != Mode::kWrite) db.writer_wanted = {};
  bool wait_for_handoff = false;
  if (AnyHeld(use)) {
    db.handoff_at.reset();
  } else if (config_.eager_handoff && db.competing && AnyWrite(db.claims)) {
    db.handoff_at = now + db.linger;
    db.yield_now = true;  // wake the background thread to (re)schedule
    changed_.notify_all();
    // Yields are being taken: the other host is about to ask. Answer the unlock only once the
    // claims are yielded (bounded by handoff_wait), so the next host, which SQLite's caller may
    // signal the moment this returns, finds them free instead of racing the yield.
    wait_for_handoff = db.linger == Duration::zero() && background_running_;
  }
  if (db.competing && !Covers(use, db.claims)) {
    db.yield_now = true;
    changed_.notify_all();
  }
  if (wait_for_handoff) {
    const uint64_t releases = db.releases;
    changed_.wait_for(lock, config_.handoff_wait,
                      [&] { return db.releases != releases || stopping_; });
  }
}

// Called from the background thread (and stop(), relinquish()) with mutex_ released.
bool LeaseManager::release_claims(const std::string& name, Release reason) {
  std::unique_lock<std::mutex> lock(mutex_);
  Database& db = databases_[name];
  lock_database(lock, db);
  // A release is tried first against the record as we last saw it: usually nobody wrote it
  // since (we hold the claims), and a stale copy only costs the conflict, which answers with
  // the current record. A poll for demand must read.
  std::optional<Record> current;
  if (reason != Release::kDemand && db.known.revision != 0) current = db.known;
  bool from_known = current.has_value();  // only the first attempt may use the remembered copy
  lock.unlock();
  const std::string key = DatabaseKey(name);
  bool ok = false;
  bool flushed = false;  // flushed while no W claim stayed: nothing local can write since
  for (int attempt = 0; attempt < 8; attempt++, from_known = false) {
    Record seen;
    const bool fresh = !current;
    if (current) {
      seen = std::move(*current);
      current.reset();
    } else {
      StoreResult read = store_get(key);
      if (!read.ok()) break;
      seen = std::move(read.record);
    }
    DatabaseRecord record;
    if (!DatabaseRecord::Parse(seen.body, &record)) break;
    if (fresh) {
      if (record_lost(name, seen, record)) break;
      std::lock_guard<std::mutex> guard(mutex_);
      // A poll that finds the record as it was waits longer before the next (up to
      // poll_interval_max); any change brings the pace back (see LeaseConfig).
      const bool unchanged = seen.revision == db.known.revision;
      db.poll_backoff = unchanged && reason == Release::kDemand
                            ? std::min<Duration>(2 * poll_period(db), config_.poll_interval_max)
                            : Duration::zero();
      db.known = seen;
      db.unsettled = false;  // what this read shows is adopted or released below
    }
    RegionModes mine = record.mine(session_id_);
    // Claims handed to us that we have not adopted yet: adopt them first (dropping our caches if
    // the version moved), or releasing them below would record their version as one our caches
    // have seen. A record read from the store is current; the remembered copy may not be.
    if (!from_known) adopt(name, mine, record.version, record.hot);
    const bool others = record.has_others(session_id_);
    const bool competitor = fresh && (others || is_competitor(record.by));
    RegionModes use;
    bool dirty;
    std::string agreed_hot;
    bool abandoned;
    bool others_changed;
    {
      std::lock_guard<std::mutex> guard(mutex_);
      use = use_to_keep(db);
      dirty = db.dirty;
      agreed_hot = db.agreed_hot;
      abandoned = db.abandoned;
      others_changed = note_others(db, record);
      if (fresh) db.demand_checked = clock_.now();
      if (competitor) {
        db.competing = true;
        db.competitor_seen = clock_.now();
      }
    }
    if (others_changed) listener_.claims_changed(name);
    // On demand, the claims another session waits for go if no local process uses them. If
    // they all go, so does every other idle claim: the waiter's SQLite will want PENDING, SHARED
    // and RESERVED in turn, so a turn costs one handoff, not three. If one must stay (in use),
    // the waiter cannot proceed anyway, and the rest stays too: yielding it would only make
    // this host's own next transactions claim it again, round trip by round trip, while its
    // local writer waits behind them.
    std::array<bool, kRegionCount> wanted_elsewhere{};
    for (const auto& [session, wanted] : record.demand) {
      if (session == session_id_) continue;
      for (size_t i = 0; i < kRegionCount; i++) {
        wanted_elsewhere[i] = wanted_elsewhere[i] || Conflicts(mine[i], wanted[i]);
      }
    }
    RegionModes keep = mine;
    if (reason != Release::kDemand) {
      for (size_t i = 0; i < kRegionCount; i++) keep[i] = std::min(keep[i], use[i]);
    } else {
      for (size_t i = 0; i < kRegionCount; i++) {
        if (wanted_elsewhere[i]) keep[i] = std::min(keep[i], use[i]);
      }
      bool turn_passes = true;
      for (const auto& [session, wanted] : record.demand) {
        if (session == session_id_) continue;
        for (size_t i = 0; i < kRegionCount; i++) {
          turn_passes = turn_passes && !Conflicts(keep[i], wanted[i]);
        }
      }
      const bool any_wanted =
          std::any_of(wanted_elsewhere.begin(), wanted_elsewhere.end(), [](bool w) { return w; });
      if (any_wanted && turn_passes) {
        for (size_t i = 0; i < kRegionCount; i++) keep[i] = std::min(keep[i], use[i]);
      }
    }
    // Nobody here uses the database any more: a demand of ours still standing is stale.
    const bool withdraw =
        reason == Release::kAll && !AnyHeld(use) && record.demand.count(session_id_) > 0;
    if (keep == mine && !withdraw) {
      if (!fresh) continue;  // judged on our old copy: look at the real record
      ok = true;             // (what the record gives us was adopted above)
      std::lock_guard<std::mutex> guard(mutex_);
      db.demand_pending = record.demand.count(session_id_) > 0;
      break;
    }
    bool dropping_write = false;
    for (size_t i = 0; i < kRegionCount; i++) {
      if (mine[i] == Mode::kWrite && keep[i] != Mode::kWrite) dropping_write = true;
    }
    if (dropping_write) {
      // Durable before anyone else may see the data. Again on a later attempt if this one keeps
      // a W claim: it may be written through in between.
      if (!flushed) listener_.flush(name);
      flushed = !AnyWrite(keep);
      if (dirty) record.version++;
      if (abandoned) {
        record.hot = next_token();
      } else if (!record.hot.empty() && agreed_hot == record.hot) {
        record.hot.clear();  // a transaction ended cleanly where the hot journal was visible
      }
    }
    if (AnyHeld(keep)) {
      record.claims[session_id_] = keep;
    } else {
      record.claims.erase(session_id_);
    }
    if (withdraw) record.demand.erase(session_id_);
    const bool handed = record.hand_over(session_id_);
    StoreResult w = write_record(name, seen.revision, record);
    if (w.outcome == StoreOutcome::kConflict) {
      current = std::move(w.record);
      continue;
    }
    if (!w.ok()) {
      // The write may have landed (ambiguous, unsettled) and handed our claims to someone else:
      // stop believing in what we tried to give up. Believing in less is always safe; a later
      // read gives back whatever did not go.
      std::lock_guard<std::mutex> guard(mutex_);
      RegionModes believed = db.claims;
      for (size_t i = 0; i < kRegionCount; i++) believed[i] = std::min(believed[i], keep[i]);
      db.claims = believed;
      db.unsettled = true;
      break;
    }
    std::lock_guard<std::mutex> guard(mutex_);
    db.claims = keep;
    db.demand_pending = record.demand.count(session_id_) > 0;
    if (dropping_write) {
      db.last_version = record.version;
      // A W claim we keep may be written through at any moment (mark_dirty() since our
      // snapshot included): the next release of it must bump the version again.
      if (!AnyWrite(keep)) db.dirty = false;
      // The record now says so (HOT JOURNALS), once no W claim is left through which the
      // abandoned transaction's pages could still reach another host unmarked.
      if (abandoned && !AnyWrite(keep)) db.abandoned = false;
    }
    if (reason == Release::kAll) {
      stats_.idle_releases++;
    } else {
      stats_.handoffs++;
    }
    // Judged at our next claim (wasted if nobody wrote the record since), unless it was handed
    // over in this very write: then it was taken, though the taker may never need to write.
    if (reason == Release::kHandoff && !handed) db.handoff_revision = w.record.revision;
    ok = true;
    break;
  }
  lock.lock();
  db.releases++;
  unlock_database(db);
  return ok;
}

Duration LeaseManager::poll_period(const Database& db) const {
  return std::max(db.poll_backoff, config_.poll_interval);
}

TimePoint LeaseManager::tick() {
  TimePoint next = session_step();
  return std::min(next, claims_step());
}

TimePoint LeaseManager::session_step() {
  TimePoint now = clock_.now();
  bool renew_due, rejoin_due;
  {
    std::lock_guard<std::mutex> guard(mutex_);
    if (!dead_ && store_replaced()) {
      spdlog::error(
          "lease session {} was in a lease store that has been replaced; all claims "
          "are lost",
          session_id_);
      lose_session();
    }
    renew_due = !dead_ && now >= next_renewal_;
    rejoin_due = dead_ && now >= next_rejoin_;
  }
  if (renew_due) renew();
  if (rejoin_due) rejoin();
  std::lock_guard<std::mutex> guard(mutex_);
  return dead_ ? next_rejoin_ : next_renewal_;
}

TimePoint LeaseManager::claims_step() {
  TimePoint now;
  struct Work {
    std::string name;
    Release reason;
  };
  std::vector<Work> work;
  TimePoint next;
  {
    std::lock_guard<std::mutex> guard(mutex_);
    now = clock_.now();
    // Without databases to look after, sleep until woken (or a renewal's time: cheap, and a
    // bound on anything missed).
    next = now + config_.lease / 4;
    wake_background_ = false;  // this visit plans for every database
    for (auto& [name, db] : databases_) {
      const bool woken = db.yield_now;        // a local lock went while competing
      db.yield_now = false;                   // this visit is the wakeup it asked for
      const bool owed_check = db.owed_check;  // what others want changed (note_others)
      db.owed_check = false;
      if (!AnyHeld(db.claims) && !db.demand_pending && !db.unsettled) continue;
      if (db.busy) {  // a store operation is in flight: look again soon, not at the next renewal
        next = std::min(next, now + config_.poll_interval);
        continue;
      }
      if (db.unsettled) {  // look at the record until a read succeeds (see Database::unsettled)
        if (now - db.demand_checked >= config_.poll_interval) {
          work.push_back({name, Release::kDemand});
          db.demand_checked = now;
        }
        next = std::min(next, db.demand_checked + config_.poll_interval);
        continue;
      }
      if (db.competing && now - db.competitor_seen > config_.competition_memory)
        db.competing = false;
      const bool idle = !AnyHeld(db.use);
      const bool cached_beyond_use = !Covers(db.use, db.claims);
      if (idle && now - db.last_used >= config_.idle_release) {
        work.push_back({name, Release::kAll});
        db.handoff_at.reset();
      } else if (idle && db.handoff_at && now >= *db.handoff_at) {
        work.push_back({name, Release::kHandoff});
        db.handoff_at.reset();
      } else if (db.competing && (cached_beyond_use || db.demand_pending)) {
        // Someone may be waiting for what we cache, or handing us what we wait for: look, once
        // per poll_interval (a cost per unit of time, not per transaction), and at once when a
        // local lock went while our yields are being taken (linger zero: the other host is
        // actively taking turns). While a transaction runs that will end in an eager handoff
        // anyway, only a reader held up by our cached W is worth a look, so look rarely.
        const bool handoff_coming = config_.eager_handoff && AnyHeld(db.use) &&
                                    AnyWrite(db.claims) && db.linger == Duration::zero();
        // What others wait for (as last read) and local use no longer needs: yield it now.
        bool owed = false;
        const RegionModes kept = use_to_keep(db);
        for (size_t i = 0; i < kRegionCount; i++) {
          owed = owed || (Conflicts(db.claims[i], db.others_want[i]) &&
                          !Conflicts(kept[i], db.others_want[i]));
        }
        const Duration poll = handoff_coming ? 10 * poll_period(db) : poll_period(db);
        if (((woken || owed_check) && owed) ||
            (woken && !handoff_coming && db.linger == Duration::zero()) ||
            now - db.demand_checked >= poll) {
          work.push_back({name, Release::kDemand});
          db.demand_checked = now;
        }
        next = std::min(next, db.demand_checked + poll);
      } else if (!db.competing && now - db.demand_checked >= config_.demand_check_interval) {
        // Nobody seen here lately, but someone may be waiting for a host that never goes idle.
        work.push_back({name, Release::kDemand});
        db.demand_checked = now;
        next = std::min(next, now + config_.demand_check_interval);
      } else {
        next = std::min(next, db.competing ? now + poll_period(db)
                                           : db.demand_checked + config_.demand_check_interval);
      }
      if (db.handoff_at) next = std::min(next, *db.handoff_at);
      // Local use may end without waking this thread (set_use() wakes it only while competing:
      // an unlock is on every transaction's path), so look again within idle_release.
      next =
          std::min(next, idle ? db.last_used + config_.idle_release : now + config_.idle_release);
    }
  }
  for (const Work& w : work) release_claims(w.name, w.reason);
  return next;
}

void LeaseManager::run_background() {
  {
    std::lock_guard<std::mutex> guard(mutex_);
    background_running_ = true;
  }
  // The session has a thread of its own: nothing the claims' work waits for (a flush to slow
  // storage, a database busy with a lock request, many databases to visit) may delay a renewal.
  renewer_ = std::thread([this] {
    std::unique_lock<std::mutex> lock(mutex_);
    while (!stopping_) {
      lock.unlock();
      TimePoint next = session_step();
      lock.lock();
      auto wait = std::max<Duration>(next - clock_.now(), Duration::zero());
      renewer_wakeup_.wait_for(lock, wait, [&] { return stopping_; });
    }
  });
  background_ = std::thread([this] {
    std::unique_lock<std::mutex> lock(mutex_);
    while (!stopping_) {
      lock.unlock();
      TimePoint next = claims_step();
      lock.lock();
      // Real time only here: the background thread sleeps on the steady clock until the next
      // step the (possibly injected) clock says is due, or until set_use() asks for a yield.
      auto wait = std::max<Duration>(next - clock_.now(), Duration::zero());
      bool yield_pending = wake_background_;
      for (auto& [name, db] : databases_) yield_pending |= db.yield_now;
      if (!yield_pending) {
        changed_.wait_for(lock, wait, [&] {
          if (stopping_ || wake_background_) return true;
          for (auto& [name, db] : databases_) {
            if (db.yield_now) return true;
          }
          return false;
        });
      }
    }
  });
}

void LeaseManager::stop() {
  {
    std::lock_guard<std::mutex> guard(mutex_);
    if (stopping_) return;
    stopping_ = true;
    changed_.notify_all();
    renewer_wakeup_.notify_all();
  }
  if (renewer_.joinable()) renewer_.join();
  if (background_.joinable()) background_.join();
  std::vector<std::string> names;
  bool dead;
  uint64_t revision;
  {
    std::lock_guard<std::mutex> guard(mutex_);
    dead = dead_;
    revision = session_revision_;
    for (auto& [name, db] : databases_) {
      db.use = RegionModes{};
      if (AnyHeld(db.claims)) names.push_back(name);
    }
  }
  if (dead || revision == 0) return;
  for (const std::string& name : names) release_claims(name, Release::kAll);
  {
    std::lock_guard<std::mutex> guard(mutex_);
    revision = session_revision_;
  }
  StoreResult r = store_.remove(session_key_, revision, store_deadline());
  if (!r.ok()) spdlog::warn("could not remove session record {}: {}", session_key_, r.error);
}

}  // namespace leasefs::lock
