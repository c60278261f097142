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

// The body of db/<id>.
struct DatabaseRecord {
  uint64_t version = 0;
  std::map<std::string, RegionModes> claims;
  std::map<std::string, RegionModes> demand;

  static bool Parse(const std::string& body, DatabaseRecord* out) {
    *out = DatabaseRecord{};
    if (body.empty()) return true;
    json doc = json::parse(body, nullptr, /*allow_exceptions=*/false);
    if (!doc.is_object()) return false;
    out->version = doc.value("version", uint64_t{0});
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

  std::string Serialize(const std::string& token) const {
    json doc = {{"version", version}, {"token", token}};
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
  return result;
}

StoreResult LeaseManager::store_put(const std::string& key, uint64_t revision,
                                    const std::string& body) {
  TimePoint started = clock_.now();
  StoreResult result = store_.put(key, revision, body, store_deadline());
  count_request(started, result);
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
    spdlog::error("lease session {} was declared dead by another host; all claims are lost",
                  session_id_);
    dead_ = true;
    next_rejoin_ = clock_.now();
    for (auto& [name, db] : databases_) db.claims = RegionModes{};
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
  }
  dead_ = false;
  stats_.rejoins++;
  spdlog::warn("joined again as session {} (session {} was declared dead)", session_id_, old_id);
}

bool LeaseManager::fenced() const {
  std::lock_guard<std::mutex> guard(mutex_);
  return dead_ || clock_.now() >= deadline_;
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
  if (dead_ || clock_.now() >= deadline_) return false;
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

void LeaseManager::unlock_database(Database& db) {
  db.busy = false;
  changed_.notify_all();
}

ClaimResult LeaseManager::acquire(const std::string& name, const RegionModes& use) {
  std::unique_lock<std::mutex> lock(mutex_);
  if (dead_ || clock_.now() >= deadline_) return ClaimResult::kFenced;
  Database& db = databases_[name];
  db.last_used = clock_.now();
  if (!db.busy && Covers(db.claims, use)) {
    db.use = use;
    return ClaimResult::kGranted;
  }
  lock_database(lock, db);
  if (Covers(db.claims, use)) {  // a concurrent acquire got what we need while we waited
    db.use = use;
    unlock_database(db);
    return ClaimResult::kGranted;
  }
  lock.unlock();
  ClaimResult result = acquire_from_store(name, use);
  for (int retry = 0; result == ClaimResult::kBusy && retry < config_.busy_retries; retry++) {
    std::this_thread::sleep_for(config_.busy_poll);  // real time: the holder is real, too
    result = acquire_from_store(name, use);
  }
  lock.lock();
  if (result == ClaimResult::kGranted) db.use = use;
  unlock_database(db);
  return result;
}

// Called with databases_[name].busy held by us and mutex_ released.
ClaimResult LeaseManager::acquire_from_store(const std::string& name, const RegionModes& use) {
  const std::string key = DatabaseKey(name);
  for (int attempt = 0; attempt < 16; attempt++) {
    StoreResult read = store_get(key);
    if (!read.ok()) return ClaimResult::kUnavailable;
    DatabaseRecord record;
    if (!DatabaseRecord::Parse(read.record.body, &record)) {
      spdlog::error("lease record {} is not valid JSON; refusing to use it", key);
      return ClaimResult::kUnavailable;
    }

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
        if (wrote) record.version++;  // it may have written: everyone must revalidate
        changed = true;
        std::lock_guard<std::mutex> guard(mutex_);
        stats_.sessions_reaped++;
        spdlog::warn("took over the claims of dead session {} on {}", session, name);
      } else {
        live_conflict = true;
      }
    }
    const bool others = record.has_others(session_id_);

    if (live_conflict) {
      RegionModes& wanted = record.demand[session_id_];
      for (size_t i = 0; i < kRegionCount; i++) {
        if (use[i] > wanted[i]) {
          wanted[i] = use[i];
          changed = true;
        }
      }
      if (changed) {
        std::string token = next_token();
        StoreResult w =
            settle(key, store_put(key, read.record.revision, record.Serialize(token)), token);
        if (w.outcome == StoreOutcome::kConflict) continue;
        if (!w.ok()) return ClaimResult::kUnavailable;
      }
      std::lock_guard<std::mutex> guard(mutex_);
      Database& db = databases_[name];
      db.claims = record.mine(session_id_);
      db.competing = true;
      db.competitor_seen = db.demand_checked = clock_.now();
      return ClaimResult::kBusy;
    }

    RegionModes mine = record.mine(session_id_);
    for (size_t i = 0; i < kRegionCount; i++) mine[i] = std::max(mine[i], use[i]);
    // A writer alone on a database claims the whole write set at once: a transaction goes
    // through PENDING, SHARED, RESERVED and EXCLUSIVE, and each step would otherwise be its own
    // store round trip. "A writer" is a host that wrote this database before, or is taking a
    // write lock now; pure readers claim only what they use, so readers on many hosts share
    // without a handoff. A claim held beyond use is only cached: demand takes it back.
    bool writer_host;
    {
      std::lock_guard<std::mutex> guard(mutex_);
      Database& db = databases_[name];
      db.writer |= UsesDatabaseRegions(use, Mode::kWrite);
      writer_host = db.writer;
    }
    if (config_.claim_write_set && !others && writer_host &&
        UsesDatabaseRegions(use, Mode::kRead)) {
      for (Region r : {Region::kPending, Region::kReserved, Region::kShared})
        mine[static_cast<size_t>(r)] = Mode::kWrite;
    }
    const bool unchanged = !changed && record.claims.count(session_id_) &&
                           record.claims[session_id_] == mine && !record.demand.count(session_id_);
    if (!unchanged) {  // granted to us already (handed over by the holder): nothing to write
      record.claims[session_id_] = mine;
      record.demand.erase(session_id_);
      std::string token = next_token();
      StoreResult w =
          settle(key, store_put(key, read.record.revision, record.Serialize(token)), token);
      if (w.outcome == StoreOutcome::kConflict) continue;
      if (!w.ok()) return ClaimResult::kUnavailable;
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
      if (others) {
        db.competing = true;
        db.competitor_seen = clock_.now();
      }
      if (invalidate) stats_.invalidations++;
    }
    if (invalidate) listener_.invalidate(name);
    // A grant is only as good as the session behind it.
    std::lock_guard<std::mutex> guard(mutex_);
    if (dead_ || clock_.now() >= deadline_) return ClaimResult::kFenced;
    return ClaimResult::kGranted;
  }
  return ClaimResult::kBusy;  // the record kept changing under us: let the caller retry
}

// Liveness of another session, judged only by durations on our own clock (see header).
bool LeaseManager::session_is_dead(const std::string& session) {
  const std::string key = SessionKey(session);
  StoreResult read = store_get(key);
  if (!read.ok()) return false;  // cannot tell: assume alive
  if (read.record.revision == 0 || !SessionBodyIsAlive(read.record.body)) return true;
  TimePoint now = clock_.now();
  {
    std::lock_guard<std::mutex> guard(mutex_);
    Observation& seen = observations_[session];
    if (seen.revision != read.record.revision) {
      seen = Observation{read.record.revision, now};
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
    observations_.erase(session);
    return true;
  }
  if (w.outcome == StoreOutcome::kConflict) {
    if (w.record.revision == 0 || !SessionBodyIsAlive(w.record.body)) return true;
    std::lock_guard<std::mutex> guard(mutex_);
    observations_[session] = Observation{w.record.revision, clock_.now()};
  }
  return false;
}

void LeaseManager::relinquish(const std::string& name) {
  release_claims(name, /*only_if_demand=*/false);
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
  std::lock_guard<std::mutex> guard(mutex_);
  Database& db = databases_[name];
  db.use = use;
  db.last_used = clock_.now();
  if (db.competing && !Covers(use, db.claims)) {
    db.yield_now = true;
    changed_.notify_all();
  }
}

// Called from the background thread (and stop()) with mutex_ released.
bool LeaseManager::release_claims(const std::string& name, bool only_if_demand) {
  std::unique_lock<std::mutex> lock(mutex_);
  Database& db = databases_[name];
  lock_database(lock, db);
  lock.unlock();
  const std::string key = DatabaseKey(name);
  bool ok = false;
  for (int attempt = 0; attempt < 8; attempt++) {
    StoreResult read = store_get(key);
    if (!read.ok()) break;
    DatabaseRecord record;
    if (!DatabaseRecord::Parse(read.record.body, &record)) break;
    RegionModes mine = record.mine(session_id_);
    RegionModes use;
    bool dirty;
    {
      std::lock_guard<std::mutex> guard(mutex_);
      use = db.use;
      dirty = db.dirty;
      db.demand_checked = clock_.now();
      if (record.has_others(session_id_)) {
        db.competing = true;
        db.competitor_seen = clock_.now();
      }
    }
    // Another session waiting on any region of this database will want the others next
    // (SQLite takes PENDING, SHARED, RESERVED in turn): yield every idle claim at once, so a
    // turn costs one handoff, not three.
    bool demanded = false;
    for (const auto& [session, wanted] : record.demand) {
      if (session == session_id_) continue;
      for (size_t i = 0; i < kRegionCount; i++) demanded |= Conflicts(mine[i], wanted[i]);
    }
    RegionModes keep = mine;
    if (!only_if_demand || demanded) {
      for (size_t i = 0; i < kRegionCount; i++) keep[i] = std::min(keep[i], use[i]);
    }
    if (keep == mine) {
      ok = true;
      std::lock_guard<std::mutex> guard(mutex_);
      db.claims = mine;
      break;
    }
    bool dropping_write = false;
    for (size_t i = 0; i < kRegionCount; i++) {
      if (mine[i] == Mode::kWrite && keep[i] != Mode::kWrite) dropping_write = true;
    }
    if (dropping_write) {
      listener_.flush(name);  // our writes are durable before anyone else may see the data
      if (dirty) record.version++;
    }
    if (AnyHeld(keep)) {
      record.claims[session_id_] = keep;
    } else {
      record.claims.erase(session_id_);
    }
    std::string token = next_token();
    StoreResult w =
        settle(key, store_put(key, read.record.revision, record.Serialize(token)), token);
    if (w.outcome == StoreOutcome::kConflict) continue;
    if (!w.ok()) break;
    std::lock_guard<std::mutex> guard(mutex_);
    db.claims = keep;
    if (dropping_write) {
      db.dirty = false;
      db.last_version = record.version;
    }
    if (only_if_demand) {
      stats_.handoffs++;
    } else {
      stats_.idle_releases++;
    }
    ok = true;
    break;
  }
  lock.lock();
  unlock_database(db);
  return ok;
}

TimePoint LeaseManager::tick() {
  TimePoint now = clock_.now();
  bool renew_due, rejoin_due;
  {
    std::lock_guard<std::mutex> guard(mutex_);
    renew_due = !dead_ && now >= next_renewal_;
    rejoin_due = dead_ && now >= next_rejoin_;
  }
  if (renew_due) renew();
  if (rejoin_due) rejoin();

  struct Work {
    std::string name;
    bool idle_release;
  };
  std::vector<Work> work;
  TimePoint next;
  {
    std::lock_guard<std::mutex> guard(mutex_);
    now = clock_.now();
    next = dead_ ? next_rejoin_ : next_renewal_;
    for (auto& [name, db] : databases_) {
      if (db.busy || !AnyHeld(db.claims)) continue;
      if (db.competing && now - db.competitor_seen > config_.competition_memory)
        db.competing = false;
      bool cached_beyond_use = !Covers(db.use, db.claims);
      if (!AnyHeld(db.use) && now - db.last_used >= config_.idle_release) {
        work.push_back({name, true});
      } else if (db.competing && cached_beyond_use) {
        work.push_back({name, false});
        db.yield_now = false;
        next = std::min(next, now + config_.poll_interval);
      } else if (!db.competing && now - db.demand_checked >= config_.demand_check_interval) {
        // Nobody seen here lately, but someone may be waiting for a host that never goes idle.
        work.push_back({name, false});
        db.demand_checked = now;
        next = std::min(next, now + config_.demand_check_interval);
      } else {
        next = std::min(next, db.competing ? now + config_.poll_interval
                                           : db.demand_checked + config_.demand_check_interval);
      }
      if (!AnyHeld(db.use)) next = std::min(next, db.last_used + config_.idle_release);
    }
  }
  for (const Work& w : work) release_claims(w.name, !w.idle_release);
  return next;
}

void LeaseManager::run_background() {
  background_ = std::thread([this] {
    std::unique_lock<std::mutex> lock(mutex_);
    while (!stopping_) {
      lock.unlock();
      TimePoint next = tick();
      lock.lock();
      // Real time only here: the background thread sleeps on the steady clock until the next
      // step the (possibly injected) clock says is due, or until set_use() asks for a yield.
      auto wait = std::max<Duration>(next - clock_.now(), Duration::zero());
      bool yield_pending = false;
      for (auto& [name, db] : databases_) yield_pending |= db.yield_now;
      if (!yield_pending) {
        changed_.wait_for(lock, wait, [&] {
          if (stopping_) return true;
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
  }
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
  for (const std::string& name : names) release_claims(name, /*only_if_demand=*/false);
  {
    std::lock_guard<std::mutex> guard(mutex_);
    revision = session_revision_;
  }
  StoreResult r = store_.remove(session_key_, revision, store_deadline());
  if (!r.ok()) spdlog::warn("could not remove session record {}: {}", session_key_, r.error);
}

}  // namespace leasefs::lock
