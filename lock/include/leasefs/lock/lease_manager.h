// leasefs/lock/lease_manager.h — sessions, claims and handoff: the cluster side of locking.
//
// THE PICTURE
//   Each mount is one *session* (a host, to the cluster). A session holds *claims* on the lock
//   *regions* of databases: mode R (shared) or W (exclusive), in the lease store, in one record
//   per database. The host lock table (lock_table.h) arbitrates between the processes of one
//   host; this class makes sure that whatever the host's processes hold, the host holds a claim
//   covering it, so POSIX semantics hold cluster-wide at region granularity.
//
// RECORDS (JSON bodies in the LeaseStore; the store's revision guards every write)
//   session/<id>  {"name","state":"alive"|"dead","token"}
//       Rewritten every L/4 (the renewal). Its revision is the heartbeat counter.
//   db/<id>       {"version":N, "claims":{session:{region:"r"|"w"}}, "demand":{session:{region:
//                  "r"|"w"}}, "by", "hot", "token"}
//       `version` counts releases of W claims that wrote: the data version used for coherence.
//   Every body carries a token unique to that write, so an ambiguous write is settled by
//   re-reading (token present: it landed).
//
// SESSIONS AND FENCING
//   Renewal is a compare-and-set of our own session record. Its deadline is
//       sent_time_of_last_successful_renewal + L·(1−2ρ) − margin      (our monotonic clock)
//   and nothing this host does to leased files is admitted past it (fenced()). A renewal that
//   fails with a conflict means another host declared us dead: every claim is gone, and the
//   session is over. REJOINING: while dead, every acquire is refused (kFenced) and may_write()
//   is false, so the local processes that held locks in the lost session get errors (SQLite:
//   SQLITE_BUSY, SQLITE_IOERR) and end their transactions. Only once no local lock is left on
//   any database (use() empty everywhere) does the manager open a new session under a new id,
//   with every database's claims and version forgotten, so the first lock taken in the new
//   session drops the kernel's caches. A process can therefore never carry a lock, or a cache,
//   from the lost session into the new one. A lock held forever keeps the mount fenced (and
//   says so in the log) rather than risk that. A store that is replaced under a running mount
//   (LeaseStore::generation: the local store's file deleted) loses the session the same way, at
//   once: from then on no cached claim grants a lock, since nobody else sees it.
//   RECORDS LOST. Nobody removes a live session's claims from a database record (reaping needs
//   the session declared dead, which its renewal notices), and a record's revision never goes
//   back. So a record read with our claims missing under local use, or with a revision below
//   the one we last saw while holding claims, was deleted or edited outside the protocol (by
//   hand, a restored backup): the session is lost at once, as above. This is noticed at the
//   next read of the record (a lock request, or the demand check every L/4 at the latest), not
//   prevented: another host may have created the record afresh in between.
//   Another host declares us dead only after seeing our session record's revision unchanged for
//   a full L on ITS clock, by a compare-and-set on the revision it saw (so a renewal that races
//   it wins). Because our deadline ran from a renewal sent before its observation, we stopped
//   writing before it can take over. No clock is shared; only durations on local clocks count.
//
// CLAIMS, CACHING, HANDOFF
//   acquire() makes the host's claims cover what its processes need. A cached claim (held, no
//   local process using it) is kept, so a lone busy host costs the store nothing per
//   transaction. Conflicts with a live session record *demand* in the database record and answer
//   kBusy (the caller returns EAGAIN; SQLite retries). A holder learns of demand by reading the
//   records of the databases where it holds claims: every poll_interval where it has seen
//   another session recently, else every demand_check_interval (default L/4, the heartbeat's
//   cadence: a cost per unit of time, never per transaction), and yields every demanded claim no
//   local process uses at that moment. Idle claims are also released after idle_release even
//   without demand. Before a W claim is released or downgraded, the listener flushes the database's
//   backing files to stable storage, and if the host wrote, the version is bumped in the same
//   write.
//   Competition is seen in a database record as another session's claim or demand, or as
//   another live session having written the record last ("by"): the trace a host that just
//   yielded leaves. A host that competes and holds a W claim yields it as soon as its last local
//   lock on the database goes (an *eager handoff*), without waiting for demand: when two hosts
//   take turns, the next one then finds the claims free and a turn costs three store requests
//   (the yield, the next host's read, its claim) instead of a demand, polls and a re-read.
//   Whether a yield helped is known at the host's next claim: if nobody wrote the record in
//   between, it was wasted, and the host waits longer (`linger`, doubling, up to idle_release)
//   after its last lock before the next eager handoff; a useful yield resets the wait to zero.
//   So a busy host next to a rare writer keeps its claims between its own transactions.
//   Every write that yields claims also hands them over: a waiting session whose demand no
//   remaining claim conflicts with is granted it in the same write, so the waiter's next read
//   finds the claim its own, with nothing left to write. A waiter keeps reading its database
//   record (poll_interval) while its demand stands, so a claim handed to it is never unknown to
//   it; a claim it learns of that way drops its caches first if the version moved, exactly as
//   its own grant would.
//   Writer priority, SQLite's PENDING lock stretched across hosts: locally, a writer holding
//   PENDING keeps new readers out until it has EXCLUSIVE. Across hosts, while another live
//   session demands PENDING as W, no local process newly enters PENDING as R (every transaction
//   starts so): acquire() refuses it (kBusy) even where a cached claim covers it, so the host's
//   use of PENDING drains and the claim can be yielded. Without this, readers on a host that
//   caches PENDING take it in overlapping turns and a writer elsewhere waits for ever. A process
//   refused this way holds nothing yet; a writer's PENDING as W, the step that finishes its
//   transaction, is never refused, so the rule closes no wait cycle. (RESERVED gets no such
//   rule: two writers each waiting for the other's demand to be served would hold each other
//   off, and a claim handed to one would be refused to it because of the other's demand.)
//   Every demand write also hands whatever no claim holds to the sessions waiting for it
//   (writers first), so a free region never waits behind a demand nobody else would serve: the
//   waiter that gets it and no longer needs it yields it at the next demand. The host learns of
//   demand from every record it reads; a refusal always re-reads, so stale knowledge costs one
//   read.
//
// WRITERS' CLAIMS
//   A writer holding RESERVED that is refused PENDING or SHARED as W on its way to EXCLUSIVE
//   (other hosts' readers hold them) sleeps in SQLite's busy handler (1, 2, 5 ... 100 ms) and
//   asks again. Its demand makes the readers' hosts drain and hand the claims over, usually
//   while it sleeps; with no local use of them, and the readers' hosts demanding them back, they
//   were owed straight back before it woke, over and over (issue 12: commits of 350 ms to 2.8 s
//   with one writer and one reader per host, bench/write_phases.py). So while a local writer
//   holding RESERVED waits for them (writer_wanted, renewed by each refusal, bounded by
//   writer_claim_keep), handed PENDING and SHARED claims count as used (use_to_keep). This is
//   SQLite's own rule across hosts: a writer that has asked for PENDING keeps new readers out
//   until it commits. There is one RESERVED holder in the cluster, so no two hosts keep claims
//   for each other; a grant, or its RESERVED going, ends the keep. (Keeping RESERVED the same way
//   for a writer refused at BEGIN cost three mounts of bench/app.py half their throughput, with
//   writes failing after their 5 s busy timeout: the use that decides is the host's, so any
//   refusal on a host with a writer renewed the keep.)
//
// HOT JOURNALS
//   SQLite finds a dead writer's hot journal by looking for the file when it takes SHARED. On
//   shared storage each host's client caches names (NFS keeps "no such file" until the
//   directory's attributes are revalidated, acdirmin 30 s), so a host that looked shortly before
//   the death may not see the journal and read the dead writer's uncommitted pages. The record
//   decides instead of the cache: when a W claim is given up by a holder whose transaction did
//   not end (relinquish() after a local process died mid-write; abandon() after a local writer's
//   write was refused because the lease lapsed; reaping a dead session's W claims), the same
//   write sets `hot` to a new unique mark. A host that learns of a claim from a record carrying
//   a mark it has not yet agreed with calls LeaseListener::revalidate() (forcing its storage
//   client to look again) before the lock is granted, once per mark. The mark is
//   cleared by the next release of a W claim from a host that had agreed with it: that host's
//   SQLite took SHARED after its view agreed, so it rolled the journal back (or found none).
//   A FENCED WRITER is a transaction that did not end either, though nobody died: its writes
//   past the deadline (more pages, the commit, SQLite's own rollback of the journal) are refused,
//   so SQLite leaves the journal hot and unlocks, after the pages it spilled before the deadline
//   reached the database. The session may well survive (the next renewal succeeds) and yield its
//   claims as any other release would, which would tell no other host to look for a journal its
//   client may cache as absent. So a refused write by a process holding a write lock marks the
//   database abandoned (abandon()), as relinquish() does, and the mark stays until a release
//   leaves this host no W claim on the database: every release that drops a W claim until then
//   sets a new `hot` mark. (A session that is lost instead has its W claims reaped, hot.)
//   Where the client cannot be made to look again, LeaseConfig::storage_cache_wait makes the host
//   wait out the client's cache instead (answering busy, so SQLite retries) before it agrees.
//
// COHERENCE
//   When a claim is granted and the database's version differs from the last one this host saw,
//   the listener drops every cache of the database's files before acquire() returns. While the
//   claim is held no other host can write, so caches stay valid.
//
// CLUSTER-WIDE F_GETLK
//   foreign_holder() reports a conflicting claim of another live session. An idle cached claim
//   is reported as held: whether it is idle right now cannot be known without a store write per
//   transaction, and a reader that proceeds because RESERVED is held only reads the database,
//   which a writer cannot have touched without EXCLUSIVE (which the reader's SHARED excludes).
//   The one case where that reasoning fails is a writer that died holding EXCLUSIVE after
//   spilling pages: its host calls relinquish() from the FLUSH that dropped the dead process's
//   write locks, before the FLUSH is answered, so by the time the death is observable no host
//   holds RESERVED and the hot journal is found. (The original plan instead asked the holder to
//   yield on every probe; this costs nothing in the common case.)
//
// THREADS AND LOCK ORDER
//   All public methods are thread-safe. mutex_ guards all state; store I/O happens with it
//   released, under the per-database `busy` flag, so one database's round trip never stalls
//   another's lock calls. Listener callbacks are made without mutex_ held. Two background
//   threads: one renews the session (and notices a replaced store, joins again), one does the
//   claims' work (polls, handoffs, releases, each of which may flush a database to slow storage
//   or wait for a lock request on it): a renewal never waits behind that work, so a live host
//   that reaches its store is not declared dead because it is busy.
#pragma once

#include <array>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "leasefs/lock/clock.h"
#include "leasefs/lock/lease_store.h"

namespace leasefs::lock {

struct DatabaseRecord;  // the body of a database's lease record (lease_manager.cc)

enum class Region : uint8_t {
  kPending,   // database file, SQLite PENDING byte
  kReserved,  // database file, RESERVED byte
  kShared,    // database file, SHARED range
  kWal0,      // -shm lock bytes 120..127: kWal0 + i
  kWal1,
  kWal2,
  kWal3,
  kWal4,
  kWal5,
  kWal6,
  kWal7,
  kDms,    // -shm byte 128: held (as W) while a host has the database open in WAL mode
  kWhole,  // any other file: one region for the whole file
  kCount
};
inline constexpr size_t kRegionCount = static_cast<size_t>(Region::kCount);
const char* RegionName(Region region);

enum class Mode : uint8_t { kNone, kRead, kWrite };
using RegionModes = std::array<Mode, kRegionCount>;

struct LeaseConfig {
  std::string session_name;                          // shown in status, e.g. "host:/srv/db"
  Duration lease = std::chrono::seconds(10);         // L
  double drift = 0.001;                              // ρ: bound on relative clock-rate error
  Duration margin = std::chrono::milliseconds(500);  // subtracted from every deadline
  Duration idle_release = std::chrono::seconds(1);   // cached idle claims are released after this
  Duration poll_interval = std::chrono::milliseconds(1);  // demand polling while competing
  // Polls that find the record unchanged double the interval up to this (cost while waiting
  // long); any change, or a new demand of ours, brings it back to poll_interval. Not above
  // poll_interval: no backoff. 16 ms: a host waiting behind a long transaction on the local
  // store costs ~275 store requests/s (SQLite's retries included) instead of ~1,070, and active
  // alternation, where every poll finds a change, is unaffected (bench/README.md).
  Duration poll_interval_max = std::chrono::milliseconds(16);
  // On a conflict, look again this many times, busy_poll apart, before answering kBusy: a holder
  // that yields promptly is caught inside the request instead of after SQLite's busy backoff
  // (which sleeps 1, 2, 5, 10... ms). Bounded by count, not by the clock. Few: every look is a
  // store read that the yielding host's write must get past, and the waiting process could
  // have been asleep instead. 10 (2.5 ms) served two mounts of bench/app.py 618-673 req/s where
  // 20 (5 ms) served 424-484. Fewer served more still (5: 743-859; 2-3: ~900-1,030) but let
  // writers starve behind spinning readers (bench/counter.py 6-40 s instead of 6-8) and one host
  // stall the other for whole seconds: a claim handed to a host whose SQLite is asleep in its
  // busy handler goes back before it wakes.
  int busy_retries = 10;
  Duration busy_poll = std::chrono::microseconds(250);
  Duration competition_memory = std::chrono::seconds(5);  // stop polling after this quiet time
  // While holding claims on a database with no competitor seen, look for demand this often: a
  // host that never goes idle must still hand over. One read per interval, like the heartbeat,
  // never per transaction. Zero means lease / 4, the renewal cadence.
  Duration demand_check_interval = Duration::zero();
  Duration store_timeout = std::chrono::seconds(2);  // bound of one store operation
  // A host that writes a database and finds no other host on it claims PENDING, RESERVED and
  // SHARED as W in one store write, instead of one round trip per SQLite lock step. Worth it
  // where a round trip costs milliseconds (DynamoDB); with the local store the extra handoffs it
  // causes to readers on other hosts cost more than the round trips it saves.
  bool claim_write_set = false;
  // Yield W claims as soon as no local lock uses them while another host competes (see
  // CLAIMS, CACHING, HANDOFF). Off: claims are yielded only on demand or after idle_release.
  bool eager_handoff = true;
  // How long an unlock that starts an eager handoff waits for the yield to be written (see
  // set_use). Bounds what a slow or unreachable store adds to a local unlock.
  Duration handoff_wait = std::chrono::milliseconds(100);
  // PENDING and SHARED handed to this host for a local writer holding RESERVED, asleep in
  // SQLite's busy handler, are kept for it this long after its last refused request (see
  // WRITERS' CLAIMS). SQLite's longest busy sleep is 100 ms.
  Duration writer_claim_keep = std::chrono::milliseconds(250);
  // For storage clients that cannot be made to look again (HOT JOURNALS: neither a forced
  // attribute refresh nor a rename-target lookup reaches their name cache): after a writer died,
  // grant no lock on the database for this long (the client's negative-cache lifetime), answering
  // busy meanwhile. Zero (default): the revalidation suffices (Linux NFS, FUSE clients).
  Duration storage_cache_wait = Duration::zero();
};

// What the lease manager needs from the host side. Called without the manager's lock held,
// from the thread calling acquire() or from the background thread.
class LeaseListener {
 public:
  virtual ~LeaseListener() = default;
  // Make everything this host wrote to the database's files durable on the backing storage.
  virtual void flush(const std::string& db) = 0;
  // Another host may have changed the database: drop every cache of its files.
  virtual void invalidate(const std::string& db) = 0;
  // A writer died inside a transaction (HOT JOURNALS): make this host's view of the storage show
  // every file that exists now, in particular the database's -journal, before a lock is granted.
  virtual void revalidate(const std::string& db) { (void)db; }
  // This host's claims on the database grew, or what other sessions demand of it changed: a lock
  // request waiting for another host (acquire_cached) may be granted now, or must give up. Must
  // not block.
  virtual void claims_changed(const std::string& db) { (void)db; }
};

enum class ClaimResult { kGranted, kBusy, kUnavailable, kFenced };

struct LeaseStats {
  uint64_t store_requests = 0;
  uint64_t handoffs = 0;         // claims yielded: to demand, or eagerly while competing
  uint64_t wasted_handoffs = 0;  // eager yields nobody took before this host claimed again
  uint64_t idle_releases = 0;    // claims released after idle_release
  uint64_t invalidations = 0;
  uint64_t hot_journal_checks = 0;  // storage views made to agree after a writer died (revalidate)
  uint64_t sessions_reaped = 0;
  uint64_t rejoins = 0;  // new sessions opened after this mount's session was declared dead
  uint64_t renewals = 0;
  uint64_t renewal_failures = 0;
  uint64_t store_errors = 0;      // requests answered unavailable or ambiguous
  uint64_t store_latency_ns = 0;  // total time spent in store requests
};

struct DatabaseStatus {
  std::string name;
  RegionModes claims{};
  RegionModes use{};
  uint64_t version = 0;
  bool dirty = false;
  bool competing = false;
};

class LeaseManager {
 public:
  LeaseManager(LeaseStore& store, const Clock& clock, LeaseConfig config, LeaseListener& listener);
  ~LeaseManager();  // stop() if still running

  // Creates this session's record. On failure returns false and one line in *error.
  bool start(std::string* error);
  // Starts the background thread (renewal, demand polling, idle release).
  void run_background();
  // Releases every claim (flushing as needed) and deletes the session record.
  void stop();

  // `use` is what this host's processes will hold on `db`, per region, once the lock being
  // requested is granted. Makes the host's claims cover it; on kGranted records it as the local
  // use. The caller serializes acquire() and set_use() per database and applies the lock to its
  // table before its next call for that database, so the local use never runs ahead of claims.
  // `entering` is what the requesting process newly locks: the regions it held nothing in
  // before this request, in the mode it asks for (writer priority, see the protocol comment).
  ClaimResult acquire(const std::string& db, const RegionModes& use, const RegionModes& entering);
  // The same, with `entering` taken as whatever `use` adds to the host's current use (exact
  // when one process per host locks the database, as in tests).
  ClaimResult acquire(const std::string& db, const RegionModes& use);
  // acquire() with one store attempt, without looking again (busy_retries) before kBusy: for a
  // held request, whose retries come from the lock layer's own waiter thread.
  ClaimResult acquire_once(const std::string& db, const RegionModes& use,
                           const RegionModes& entering);
  // acquire() without store I/O, for a request that already went through acquire() and waits
  // for another host (LeaseListener::claims_changed says when to try again): kGranted if the
  // claims this host holds cover `use` and writer priority lets it in, else kBusy (kFenced when
  // fenced). The background thread keeps polling the record while our demand stands, so claims
  // handed to this host arrive without a request of its own.
  ClaimResult acquire_cached(const std::string& db, const RegionModes& use,
                             const RegionModes& entering);
  // The strongest mode other sessions demanded of each region in the last record read of `db`,
  // and the strongest they held.
  RegionModes others_want(const std::string& db) const;
  RegionModes others_hold(const std::string& db) const;
  // After locks were dropped: what this host's processes now hold on `db`. Claims beyond it
  // become cached; where another session waits they are yielded promptly. When the last local
  // lock goes while another host is taking turns with this one, waits (up to handoff_wait) for
  // the background thread to write the yield.
  void set_use(const std::string& db, const RegionModes& use);
  // The mode of a conflicting claim another live session holds on `region` for a lock of
  // `mode`, or kNone. May read the store.
  Mode foreign_holder(const std::string& db, Region region, Mode mode);
  // The host wrote to the database's files (its W claim will bump the version on release).
  void mark_dirty(const std::string& db);
  // A local process died (or closed the file) inside a write transaction: `use` is what this
  // host's processes hold now (instead of set_use). Gives up every claim on `db` beyond it now,
  // synchronously (flushed, version bumped if written), marking the record hot (HOT JOURNALS).
  void relinquish(const std::string& db, const RegionModes& use);
  // A write to `db` by a local process holding a write lock was refused (fenced): its transaction
  // may end without its rollback. Like relinquish(), makes the release of this host's W claims
  // mark the record hot (HOT JOURNALS, A FENCED WRITER), but releases nothing now: the process
  // still holds its locks, and the store may be unreachable.
  void abandon(const std::string& db);
  // True if this host may write to `db` now: holds W on RESERVED or SHARED (or a WAL write
  // byte or the whole-file region) and is not fenced.
  bool may_write(const std::string& db) const;
  // The claims this host holds (cached or in use) on `db`.
  RegionModes held(const std::string& db) const;

  bool fenced() const;
  bool dead() const;
  TimePoint deadline() const;
  std::string session_id() const;  // changes when the host joins again after being declared dead
  LeaseStats stats() const;
  std::vector<DatabaseStatus> databases() const;
  std::string store_description() const { return store_.describe(); }
  const LeaseConfig& config() const { return config_; }

  // One step of the background work, for tests: session_step() then claims_step() (the two
  // background threads call one each, in a loop). Returns when the next step is due.
  TimePoint tick();

 private:
  struct Observation {
    uint64_t revision = 0;
    TimePoint since;    // when we first saw `revision`
    TimePoint checked;  // when we last read the session record
    bool dead = false;  // gone or declared dead: session ids are never reused, so for good
  };
  struct Database {
    RegionModes claims{};  // what the store says we hold
    RegionModes use{};     // what local processes hold (never more than claims)
    uint64_t last_version = 0;
    bool seen_version = false;
    bool dirty = false;
    bool busy = false;          // a store operation for this database is in flight
    TimePoint last_used;        // last time any local use or acquire touched it
    TimePoint competitor_seen;  // last time another session appeared in its record
    TimePoint demand_checked;   // last time its record was read for demand
    bool competing = false;
    bool yield_now = false;       // local use dropped while competing: poll at once
    bool writer = false;          // this host has taken a write lock on it: claim the write set
    bool demand_pending = false;  // our demand stands in the record: poll it for a handover
    bool owed_check = false;      // others_want changed: see whether we owe a claim now
    Duration poll_backoff{};      // the current poll period (see poll_interval_max)
    // The strongest mode other sessions demand, per region, in the last record we read.
    RegionModes others_want{};
    RegionModes others_hold{};  // the strongest mode other sessions hold, per region, likewise
    // The record as of our last read or write of it: a release is first tried as a
    // compare-and-set on it, without reading (a stale copy only costs the conflict).
    Record known;
    // Eager handoff: when to yield (set while competing and no local lock is held), how long to
    // wait after the last local lock (adapted to whether yields help), and the revision our last
    // eager yield wrote (0: none to judge).
    std::optional<TimePoint> handoff_at;
    Duration linger = Duration::zero();
    uint64_t handoff_revision = 0;
    uint64_t releases = 0;  // release_claims() calls finished (set_use waits on it)
    // A write of ours to the record failed without a settled outcome: it may or may not have
    // landed, so the store may hold claims or demand of ours we do not believe in. The
    // background thread reads the record (and adopts or releases what it finds) until a read
    // succeeds; nothing else would ever look, and another host would wait on them for ever.
    bool unsettled = false;
    // The record's `hot` mark this host last made its storage view agree with (revalidate()).
    std::string agreed_hot;
    // A mark being waited out (LeaseConfig::storage_cache_wait): no lock is granted before.
    std::string pending_hot;
    std::optional<TimePoint> hot_wait_until;
    // A local process died inside a write transaction (relinquish), or a write of a local
    // writer was refused (abandon): every release of W claims marks the record hot, whichever
    // release writes it, until one leaves this host no W claim.
    bool abandoned = false;
    // WRITERS' CLAIMS: what a local writer holding RESERVED was last refused (PENDING, SHARED
    // as W), and until when such a claim handed to us is kept for it.
    RegionModes writer_wanted{};
    TimePoint writer_wanted_until;
  };
  enum class Release {
    kAll,     // everything beyond local use (idle release, relinquish, stop)
    kDemand,  // only if another session's demand conflicts with a claim (polling)
    kHandoff  // everything beyond local use, because another host competes (eager handoff)
  };

  // `held_off` is set when the answer is kBusy because of writer priority: our own use of the
  // region must drain first, so retrying at once is pointless.
  // The session's thread: renewal, noticing a replaced store, joining again after a lost session.
  TimePoint session_step();
  // The claims' thread: demand polls, eager handoffs, idle releases, settling unsettled writes.
  TimePoint claims_step();
  // What release and the owed-yield decision must keep of `db`'s claims: the local use, and
  // while it lasts what a local writer waits for (WRITERS' CLAIMS).
  RegionModes use_to_keep(const Database& db) const;
  // After acquire() or acquire_cached() answered `result` for `use`: records or forgets what a
  // local writer waits for (WRITERS' CLAIMS).
  void note_writer_wait(Database& db, const RegionModes& use, ClaimResult result);
  // acquire() and acquire_once(): after a busy store attempt, looks `looks_again` more times
  // (busy_poll apart) before answering kBusy.
  ClaimResult acquire_looking(const std::string& db, const RegionModes& use,
                              const RegionModes& entering, int looks_again);
  ClaimResult acquire_from_store(const std::string& db, const RegionModes& use,
                                 const RegionModes& entering, bool* held_off);
  bool renew();
  // Our session is gone (declared dead, or its store replaced): every claim is dropped and the
  // manager waits to join again (see REJOINING). Called with mutex_ held.
  void lose_session();
  // A database record just read from the store shows that it was deleted or edited outside the
  // protocol (see RECORDS LOST): it lacks claims our local processes use, or its revision went
  // back. Loses the session (fence) and answers true. Called with mutex_ released.
  bool record_lost(const std::string& name, const Record& seen, const DatabaseRecord& record);
  // The store was replaced since our session was created in it (LeaseStore::generation).
  bool store_replaced() const { return store_.generation() != store_generation_; }
  // While dead_ and no database has local use: opens a new session. Called from tick().
  void rejoin();
  bool session_is_dead(const std::string& session);  // may mark it dead in the store
  // Gives up claims on `db` beyond local use (see Release), handing them to waiting sessions in
  // the same write. Returns false if the store could not be reached.
  bool release_claims(const std::string& db, Release reason);
  // Takes `mine` from a record just read as our claims on `db`; drops the caches first if that
  // grants claims we did not know of and the version moved. Called with db.busy held.
  void adopt(const std::string& name, const RegionModes& mine, uint64_t version,
             const std::string& hot);
  // The record says a hot journal may exist (`hot`, see HOT JOURNALS) and this host has not made
  // its storage view agree since it was set: LeaseListener::revalidate(). Called before a lock
  // covered by a newly learned claim is granted, with mutex_ released. False while the view may
  // still lag (storage_cache_wait): the lock must not be granted yet.
  bool agree_on_hot_journal(const std::string& name, const std::string& hot);
  void remember(const std::string& name, const Record& record);
  // How often a competing database's record is read.
  Duration poll_period(const Database& db) const;
  // Records what other sessions demand and hold (from a record just read); true if it changed.
  bool note_others(Database& db, const DatabaseRecord& record);
  // Writes `record` as db/<name> over `revision` (compare-and-set, settled by re-reading if
  // ambiguous) and remembers it if it landed. kConflict carries the current record.
  StoreResult write_record(const std::string& name, uint64_t revision,
                           const DatabaseRecord& record);
  // A claim or demand write of acquire() failed unsettled: marks the database (see
  // Database::unsettled) and answers kUnavailable.
  ClaimResult unsettled_write(const std::string& name);
  // Whether `session` (not ours) counts as competing: in claims or demand, or the last writer
  // of a record while still alive.
  bool is_competitor(const std::string& session);
  void count_request(TimePoint started, const StoreResult& result);
  StoreResult store_get(const std::string& key);
  StoreResult store_put(const std::string& key, uint64_t revision, const std::string& body);
  StoreResult settle(const std::string& key, const StoreResult& attempt, const std::string& token);
  std::string next_token();
  TimePoint store_deadline() const;
  void lock_database(std::unique_lock<std::mutex>& lock, Database& db);
  // lock_database(), giving up (false, nothing taken) once the session is fenced.
  bool lock_database_unless_fenced(std::unique_lock<std::mutex>& lock, Database& db);
  void unlock_database(Database& db);

  LeaseStore& store_;
  const Clock& clock_;
  LeaseConfig config_;
  LeaseListener& listener_;
  std::string session_id_;
  std::string session_key_;

  mutable std::mutex mutex_;
  std::condition_variable changed_;  // database busy flags, and the background thread's wakeups
  std::map<std::string, Database> databases_;
  std::map<std::string, Observation> observations_;  // other sessions' liveness, by session id
  uint64_t session_revision_ = 0;
  uint64_t store_generation_ = 0;  // the store's generation when our session was created
  TimePoint deadline_{};
  TimePoint next_renewal_{};
  bool dead_ = false;
  TimePoint next_rejoin_{};  // while dead_: when to try (or log) next
  bool stopping_ = false;
  uint64_t token_counter_ = 0;
  LeaseStats stats_;
  // acquire() saw competition the background thread may not know of yet (it may be asleep
  // until the next renewal): look at every database now.
  bool wake_background_ = false;
  bool background_running_ = false;         // run_background() was called: set_use may wait for it
  std::thread background_;                  // claims_step()
  std::thread renewer_;                     // session_step()
  std::condition_variable renewer_wakeup_;  // stop()
};

}  // namespace leasefs::lock
