"""Cluster-wide locking: several leasefs mounts of one SOURCE are several hosts (one session
each, one shared local lease store), with real SQLite clients on every mount.

What must hold: no committed transaction is lost, integrity_check is ok, readers never see a
torn state, caches are coherent across mounts, a crashed client's or daemon's transaction is
recovered elsewhere, and a mount that cannot renew its lease stops writing before anyone else
could take over. The control case — the same workload with leasefs's cluster locking switched
off — must lose updates, so the test is known to be able to fail.
"""
import contextlib
import errno
import fcntl
import json
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import unittest

import dynamo
from harness import Mount, become, host_clients_selected, host_mount, temp_root, wait_for


def store_option(root):
    """The --lease-store of a new cluster: a fresh local store file under root, or (with
    LEASEFS_TEST_LEASE_STORE=dynamodb) a fresh table in dynalite, reached through the proxy."""
    if dynamo.selected():
        backend = dynamo.backend()
        return backend.store_uri(backend.new_table())
    return "local:" + os.path.join(root, "leases.db")


@contextlib.contextmanager
def store_outage(root):
    """The lease store stops answering until the block ends."""
    if dynamo.selected():
        proxy = dynamo.backend().proxy
        proxy.set("down")
        try:
            yield
        finally:
            proxy.set("pass")
        return
    # The local store: hold SQLite's write lock on it.
    blocker = sqlite3.connect(os.path.join(root, "leases.db"), timeout=0, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()


def start_cluster(root, count, *extra, **client):
    """`count` hosts of root/src sharing a fresh lease store; `client` is passed to
    harness.host_mount (each host's own caching storage client and its cache times)."""
    src = os.path.join(root, "src")
    os.makedirs(src, exist_ok=True)
    store = store_option(root)
    mounts = []
    try:
        for i in range(count):
            mnt = os.path.join(root, f"host{i}")
            os.makedirs(mnt, exist_ok=True)
            mounts.append(host_mount(root, src, mnt, i, "--lease-store", store, *extra, **client))
    except BaseException:
        for m in reversed(mounts):
            m.stop(check=False)
        raise
    return mounts


def stop_all(mounts):
    errors = []
    for m in mounts:
        try:
            m.stop()
        except AssertionError as e:
            errors.append(str(e))
    if errors:
        raise AssertionError("\n".join(errors))


def connect(path, timeout=60, **kwargs):
    return sqlite3.connect(path, timeout=timeout, isolation_level=None, **kwargs)


def write_is_fenced(conn, sql):
    """Whether the write fails the way a fenced mount fails it (EIO, or BUSY at the lock)."""
    try:
        conn.execute(sql)
        return False
    except sqlite3.OperationalError as e:
        return "disk I/O error" in str(e) or "locked" in str(e)


def can_write(path, sql, params=()):
    """Whether a fresh connection can commit `sql` now."""
    try:
        conn = connect(path, timeout=5)
        conn.execute(sql, params)
        conn.close()
        return True
    except sqlite3.OperationalError:
        return False


def create_counter(path, journal_mode):
    conn = connect(path)
    conn.execute(f"PRAGMA journal_mode={journal_mode}")
    conn.execute("CREATE TABLE counter(id INTEGER PRIMARY KEY, n INTEGER, mirror INTEGER)")
    conn.execute("INSERT INTO counter VALUES (1, 0, 0)")
    conn.close()


def writer(path, count, immediate, results):
    """Read-modify-write increments; counts only transactions whose COMMIT succeeded, and every
    error other than BUSY (which a deferred BEGIN's upgrade may meet) by its message."""
    conn = connect(path)
    committed = 0
    errors = {}
    while committed < count:
        try:
            conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
            (n,) = conn.execute("SELECT n FROM counter WHERE id = 1").fetchone()
            conn.execute("UPDATE counter SET n = ?, mirror = ? WHERE id = 1", (n + 1, n + 1))
            conn.execute("COMMIT")
            committed += 1
        except sqlite3.OperationalError as e:
            if "locked" not in str(e):
                errors[str(e)] = errors.get(str(e), 0) + 1
            if conn.in_transaction:
                conn.execute("ROLLBACK")
    conn.close()
    results.put(("committed", committed, errors))


def reader(path, stop, results):
    """Read transactions that must always see n == mirror (never a torn update)."""
    conn = connect(path)
    reads = torn = 0
    while not stop.is_set():
        try:
            conn.execute("BEGIN")
            n, mirror = conn.execute("SELECT n, mirror FROM counter WHERE id = 1").fetchone()
            conn.execute("COMMIT")
            reads += 1
            torn += n != mirror
        except sqlite3.OperationalError:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
    conn.close()
    results.put(("reads", reads, torn))


def run_counter_workload(paths, per_writer, with_readers=True, errors=None):
    """Two writers per path (one BEGIN IMMEDIATE, one deferred BEGIN) and a reader per path.
    The writers' errors other than BUSY are added to the dict `errors`, by message."""
    results = multiprocessing.Queue()
    stop = multiprocessing.Event()
    writers = []
    for path in paths:
        for immediate in (True, False):
            writers.append(multiprocessing.Process(target=writer,
                                                   args=(path, per_writer, immediate, results)))
    readers = [multiprocessing.Process(target=reader, args=(p, stop, results))
               for p in paths] if with_readers else []
    for p in writers + readers:
        p.start()
    for p in writers:
        p.join(timeout=600)
    stop.set()
    for p in readers:
        p.join(timeout=60)
    stuck = [("writer" if p in writers else "reader") for p in writers + readers if p.is_alive()]
    for p in writers + readers:
        if p.is_alive():
            p.kill()
    if stuck:  # a lock that never came (SQLite's busy timeout is 60 s): a liveness failure
        raise AssertionError(f"{len(stuck)} process(es) still waiting at the end: {stuck}")
    committed = reads = torn = 0
    for _ in writers + readers:
        item = results.get(timeout=30)
        if item[0] == "committed":
            committed += item[1]
            for message, n in item[2].items():
                if errors is not None:
                    errors[message] = errors.get(message, 0) + n
        else:
            reads += item[1]
            torn += item[2]
    return committed, reads, torn, [p.exitcode for p in writers + readers]


def counter_value(path):
    conn = connect(path)
    (n,) = conn.execute("SELECT n FROM counter").fetchone()
    (check,) = conn.execute("PRAGMA integrity_check").fetchone()
    conn.close()
    return n, check


SQLITE_PENDING_BYTE = 0x40000000  # SQLite's lock bytes start here (os_unix.c)

# A writer in its own process (POSIX locks are per process): BEGIN IMMEDIATE and an INSERT,
# "reserved" on stdout, then COMMIT, which waits (busy timeout 30 s) for readers' SHARED.
LOCAL_WRITER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
conn.execute("INSERT INTO t VALUES (1)")
print("reserved", flush=True)
conn.execute("COMMIT")
"""


class LockHolder:
    """A process holding a write lock on one byte of `path` until release() (or the block's
    end): POSIX locks belong to processes, so a lock of this one would not conflict with the
    test's own SQLite connections."""

    def __init__(self, path, offset):
        self.process = subprocess.Popen(
            [sys.executable, "-c",
             "import fcntl, os, sys\n"
             "fd = os.open(sys.argv[1], os.O_RDWR)\n"
             "fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, int(sys.argv[2]))\n"
             "print('locked', flush=True)\n"
             "sys.stdin.readline()\n",
             path, str(offset)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if self.process.stdout.readline().strip() != "locked":
            self.process.kill()
            self.process.wait()
            raise AssertionError("the lock holder could not take its lock")

    def release(self):
        if self.process.poll() is None:
            self.process.stdin.write("\n")
            self.process.stdin.flush()
            self.process.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.process.stdin.close()
        self.process.stdout.close()


class ConcurrencyAcrossMounts(unittest.TestCase):
    def run_mode(self, journal_mode):
        with temp_root() as root:
            mounts = start_cluster(root, 3)
            try:
                paths = [os.path.join(m.mountpoint, "counter.db") for m in mounts]
                create_counter(paths[0], journal_mode)
                # Fewer against dynalite: its handoffs are round trips through the fault proxy.
                per_writer = 10 if dynamo.selected() else 40
                committed, reads, torn, codes = run_counter_workload(paths, per_writer)
                self.assertEqual(codes, [0] * len(codes))
                self.assertEqual(committed, 3 * 2 * per_writer)
                self.assertGreater(reads, 0)
                self.assertEqual(torn, 0, "a reader saw a half-applied transaction")
                for path in paths:  # every host sees the same, complete result
                    self.assertEqual(counter_value(path), (committed, "ok"))
            finally:
                stop_all(mounts)
            self.assertEqual(counter_value(os.path.join(root, "src", "counter.db")),
                             (committed, "ok"))

    def test_delete(self):
        self.run_mode("delete")

    # The journal modes differ in how SQLite ends a transaction on the shared files, not in what
    # the lease store sees: against dynalite (slow handoffs, CI's time budget) DELETE suffices.
    @unittest.skipIf(dynamo.selected(), "journal mode is independent of the store: py_cluster")
    def test_truncate(self):
        self.run_mode("truncate")

    @unittest.skipIf(dynamo.selected(), "journal mode is independent of the store: py_cluster")
    def test_persist(self):
        self.run_mode("persist")


class WithoutClusterLocking(unittest.TestCase):
    @unittest.skipIf(dynamo.selected() or host_clients_selected(),
                     "no lease store or host client involved: py_cluster runs it")
    def test_updates_are_lost(self):
        """The control: host-local locks only (--lease-store none) on two mounts lose updates.
        If this ever passes with nothing lost, the concurrency tests above prove nothing.
        Rounds repeat (at most five) until a loss shows: it is probabilistic, not guaranteed."""
        with temp_root() as root:
            src = os.path.join(root, "src")
            os.makedirs(src)
            mounts = []
            for i in range(2):
                mnt = os.path.join(root, f"host{i}")
                os.makedirs(mnt)
                mounts.append(Mount(src, mnt, "--lease-store", "none"))
            try:
                paths = [os.path.join(m.mountpoint, "lost.db") for m in mounts]
                create_counter(paths[0], "delete")
                committed = 0
                for _ in range(5):
                    done, _, _, _ = run_counter_workload(paths, per_writer=150,
                                                         with_readers=False)
                    committed += done
                    conn = connect(os.path.join(src, "lost.db"))
                    (n,) = conn.execute("SELECT n FROM counter").fetchone()
                    conn.close()
                    if n < committed:
                        break
            finally:
                stop_all(mounts)
            print(f"\nwithout cluster locking: {committed} committed, counter {n}")
            self.assertLess(n, committed)


class Coherence(unittest.TestCase):
    def test_writes_on_one_mount_are_read_at_once_on_another(self):
        with temp_root() as root:
            a, b = start_cluster(root, 2)
            try:
                db_a = os.path.join(a.mountpoint, "c.db")
                db_b = os.path.join(b.mountpoint, "c.db")
                journal_b = db_b + "-journal"
                conn_a = connect(db_a)
                conn_a.execute("CREATE TABLE kv(k INTEGER PRIMARY KEY, v BLOB)")
                conn_b = connect(db_b)  # long-lived: its pages stay in B's kernel cache
                for round in range(30):
                    blob = os.urandom(3000 + round * 700)  # grows the file: size must follow
                    conn_a.execute("BEGIN IMMEDIATE")
                    conn_a.execute("INSERT INTO kv VALUES (?, ?)", (round, blob))
                    # Unlocked, so only as fresh as B's storage client: with per-host caching
                    # clients (EFS) a name is guaranteed fresh under a lock, not here.
                    if not host_clients_selected():
                        self.assertTrue(os.path.exists(journal_b),
                                        "B must see A's live journal by name")
                    conn_a.execute("COMMIT")
                    (got,) = conn_b.execute("SELECT v FROM kv WHERE k = ?", (round,)).fetchone()
                    self.assertEqual(got, blob)
                    self.assertEqual(os.stat(db_b).st_size, os.stat(db_a).st_size)
                    if not host_clients_selected():
                        self.assertFalse(os.path.exists(journal_b))
                conn_a.close()
                conn_b.close()
            finally:
                stop_all([a, b])


class HeldLockRequests(unittest.TestCase):
    """A lock request that waits only for another host's claim is held in the daemon
    (`--lock-hold`) and granted the moment the claim arrives, instead of answered EAGAIN at
    once: SQLite's busy handler would sleep 1, 2, 5, 10... ms between attempts whatever the
    handoff took. The connections here have busy_timeout 0, so SQLite makes one attempt: what
    they get is exactly what the daemon answered."""

    def test_reader_is_let_in_when_the_writer_on_another_host_commits(self):
        with temp_root() as root:
            a, b = start_cluster(root, 2, "--lock-hold", "5")
            try:
                conn_a = connect(os.path.join(a.mountpoint, "h.db"), check_same_thread=False)
                conn_a.execute("CREATE TABLE t(x)")
                conn_a.execute("INSERT INTO t VALUES (0)")
                conn_b = connect(os.path.join(b.mountpoint, "h.db"), timeout=0)
                self.assertEqual(conn_b.execute("SELECT count(*) FROM t").fetchone(), (1,))
                conn_a.execute("BEGIN EXCLUSIVE")  # no reader anywhere until COMMIT
                conn_a.execute("INSERT INTO t VALUES (1)")
                committed = []

                def commit_later():
                    time.sleep(0.5)
                    conn_a.execute("COMMIT")
                    committed.append(time.monotonic())

                t = threading.Thread(target=commit_later)
                started = time.monotonic()
                t.start()
                try:
                    # Held until A's claims are handed over, then it reads A's commit.
                    got = conn_b.execute("SELECT count(*) FROM t").fetchone()
                    granted = time.monotonic()
                finally:
                    t.join()
                self.assertEqual(got, (2,))
                self.assertGreaterEqual(granted, committed[0])
                self.assertLess(granted - started, 4, "held past the handoff")
                print(f"\nlet in {1000 * (granted - committed[0]):.1f} ms after the commit",
                      file=sys.stderr)
                held = json.loads(status(b.mountpoint, "--json").stdout)["locks"]
                self.assertGreaterEqual(held["setlk_held_granted"], 1, held)
                conn_a.close()
                conn_b.close()
            finally:
                stop_all([a, b])

    def test_hold_is_bounded(self):
        # A process on A holds SQLite's PENDING byte as W (as a writer on its way to EXCLUSIVE
        # does) and never lets go: B's reader, holding nothing, is held for the whole hold and
        # then answered busy. (A writer's own RESERVED would not do: B's BEGIN IMMEDIATE takes
        # SHARED first, and a request holding SHARED is never held.)
        with temp_root() as root:
            a, b = start_cluster(root, 2, "--lock-hold", "0.5")
            try:
                path_a = os.path.join(a.mountpoint, "h.db")
                conn_a = connect(path_a)
                conn_a.execute("CREATE TABLE t(x)")
                conn_a.close()
                conn_b = connect(os.path.join(b.mountpoint, "h.db"), timeout=0)
                fd = os.open(path_a, os.O_RDWR)
                try:
                    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, SQLITE_PENDING_BYTE)
                    started = time.monotonic()
                    with self.assertRaisesRegex(sqlite3.OperationalError, "database is locked"):
                        conn_b.execute("SELECT count(*) FROM t").fetchone()
                    waited = time.monotonic() - started
                finally:
                    os.close(fd)
                self.assertGreaterEqual(waited, 0.45)
                self.assertLess(waited, 3)
                self.assertEqual(conn_b.execute("SELECT count(*) FROM t").fetchone(), (0,))
                conn_b.close()
            finally:
                stop_all([a, b])

    def test_reader_upgrading_does_not_hold_up_the_writer(self):
        # B reads inside a transaction (SHARED) and then wants to write (RESERVED), while A
        # holds RESERVED and commits (EXCLUSIVE needs B's SHARED gone). On one disk SQLite
        # answers B "database is locked" at once so that B rolls back and A can commit; B's
        # request must not be held for A's RESERVED while A waits for B's SHARED.
        with temp_root() as root:
            a, b = start_cluster(root, 2, "--lock-hold", "10")
            try:
                conn_a = connect(os.path.join(a.mountpoint, "h.db"), timeout=30,
                                 check_same_thread=False)
                conn_a.execute("CREATE TABLE t(x)")
                conn_a.execute("INSERT INTO t VALUES (0)")
                conn_b = connect(os.path.join(b.mountpoint, "h.db"), timeout=0)
                conn_b.execute("BEGIN")
                self.assertEqual(conn_b.execute("SELECT count(*) FROM t").fetchone(), (1,))
                conn_a.execute("BEGIN IMMEDIATE")
                conn_a.execute("INSERT INTO t VALUES (1)")
                commit = {}

                def commit_a():
                    conn_a.execute("COMMIT")  # waits (busy handler) for B's SHARED
                    commit["at"] = time.monotonic()

                t = threading.Thread(target=commit_a)
                t.start()
                try:
                    started = time.monotonic()
                    with self.assertRaisesRegex(sqlite3.OperationalError, "database is locked"):
                        conn_b.execute("INSERT INTO t VALUES (2)")
                    refused = time.monotonic() - started
                    conn_b.execute("ROLLBACK")
                finally:
                    t.join(timeout=60)
                self.assertFalse(t.is_alive())
                self.assertIn("at", commit)
                self.assertLess(refused, 5, "B's upgrade was held while A waited for it")
                self.assertEqual(conn_b.execute("SELECT count(*) FROM t").fetchone(), (2,))
                conn_a.close()
                conn_b.close()
            finally:
                stop_all([a, b])


    def test_request_behind_a_local_lock_is_held_until_it_goes(self):
        # Another process on the SAME mount holds SQLite's PENDING byte as W (a writer on its way
        # to EXCLUSIVE): a reader holding nothing is held and let in the moment it goes, not
        # answered busy at once (its busy handler would sleep 1, 2, 5... ms, and with
        # busy_timeout 0 fail).
        with temp_root() as root:
            (a,) = start_cluster(root, 1, "--local-lock-hold", "5")
            try:
                path = os.path.join(a.mountpoint, "h.db")
                conn = connect(path)
                conn.execute("CREATE TABLE t(x)")
                conn.close()
                reader = connect(path, timeout=0)
                try:
                    with LockHolder(path, SQLITE_PENDING_BYTE) as holder:
                        started = time.monotonic()
                        release = threading.Timer(0.4, holder.release)
                        release.start()
                        try:
                            self.assertEqual(reader.execute("SELECT count(*) FROM t").fetchone(),
                                             (0,))
                            waited = time.monotonic() - started
                        finally:
                            release.join()
                finally:
                    reader.close()
                self.assertGreaterEqual(waited, 0.35)
                self.assertLess(waited, 4, "not granted when the local lock went")
            finally:
                stop_all([a])

    def test_local_reader_upgrading_is_not_held(self):
        # test_reader_upgrading_does_not_hold_up_the_writer on one mount: the writer is another
        # process here, and its RESERVED a local lock. The reader's upgrade must get "database
        # is locked" at once, or the writer's COMMIT (waiting for the reader's SHARED) and the
        # reader's upgrade (waiting for the writer's RESERVED) would wait for each other.
        with temp_root() as root:
            (a,) = start_cluster(root, 1, "--local-lock-hold", "10")
            try:
                path = os.path.join(a.mountpoint, "h.db")
                conn = connect(path, timeout=0)
                conn.execute("CREATE TABLE t(x)")
                conn.execute("INSERT INTO t VALUES (0)")
                conn.execute("BEGIN")
                self.assertEqual(conn.execute("SELECT count(*) FROM t").fetchone(), (1,))
                writer = subprocess.Popen(
                    [sys.executable, "-c", LOCAL_WRITER, path], stdout=subprocess.PIPE, text=True)
                try:
                    self.assertEqual(writer.stdout.readline().strip(), "reserved")
                    started = time.monotonic()
                    with self.assertRaisesRegex(sqlite3.OperationalError, "database is locked"):
                        conn.execute("INSERT INTO t VALUES (2)")
                    refused = time.monotonic() - started
                    conn.execute("ROLLBACK")
                    self.assertEqual(writer.wait(timeout=60), 0)
                finally:
                    if writer.poll() is None:
                        writer.kill()
                        writer.wait()
                    writer.stdout.close()
                self.assertLess(refused, 5, "the upgrade was held while the writer waited for it")
                self.assertEqual(conn.execute("SELECT count(*) FROM t").fetchone(), (2,))
                conn.close()
            finally:
                stop_all([a])

    def test_held_request_takes_over_from_a_dead_holder(self):
        # A held request must not only wait for a claim to be handed to it: a holder that dies
        # hands nothing, and only a request to the store reaps its claims (DESIGN 3.4). Held
        # requests that retried from the claims here alone waited out their whole hold although
        # the claim was theirs to take after the lease; the same starved held writers under load
        # (a claim handed to them and yielded again before the retry).
        lease = 2
        with temp_root() as root:
            a, b = start_cluster(root, 2, "--lease-duration", str(lease), "--lock-hold", "20")
            try:
                conn_a = connect(os.path.join(a.mountpoint, "h.db"))
                conn_a.execute("CREATE TABLE t(x)")
                conn_a.execute("BEGIN IMMEDIATE")  # A's claims stay in the record when it dies
                conn_a.execute("INSERT INTO t VALUES (1)")
                a.process.send_signal(signal.SIGKILL)
                a.process.wait()
                conn_b = connect(os.path.join(b.mountpoint, "h.db"), timeout=0)
                started = time.monotonic()
                conn_b.execute("BEGIN IMMEDIATE")  # one attempt, held in B's daemon
                waited = time.monotonic() - started
                conn_b.execute("INSERT INTO t VALUES (2)")
                conn_b.execute("COMMIT")
                self.assertEqual(conn_b.execute("SELECT x FROM t").fetchall(), [(2,)])
                self.assertGreaterEqual(waited, lease * 0.9)
                self.assertLess(waited, lease * 5, "held past the dead holder's lease")
                conn_b.close()
                try:
                    conn_a.close()
                except sqlite3.Error:
                    pass
            finally:
                a.stop(check=False)  # killed on purpose; its mount is gone
                b.stop()

class WalDatabases(unittest.TestCase):
    def test_wal_database_is_open_on_one_host_at_a_time(self):
        with temp_root() as root:
            a, b = start_cluster(root, 2)
            try:
                conn_a = connect(os.path.join(a.mountpoint, "w.db"))
                conn_a.execute("PRAGMA journal_mode=wal")
                conn_a.execute("CREATE TABLE t(x)")
                conn_a.execute("INSERT INTO t VALUES (1)")
                conn_b = connect(os.path.join(b.mountpoint, "w.db"), timeout=0.5)
                # "database is locked" if B meets A's claims at the database file; if it gets
                # past them (they were handed over), SQLite meets A's DMS claim at the -shm and
                # retries on its own for ~10 s before "locking protocol" (WAL across hosts is
                # issue 13).
                with self.assertRaisesRegex(sqlite3.OperationalError,
                                            "database is locked|locking protocol"):
                    conn_b.execute("SELECT count(*) FROM t").fetchone()
                conn_b.close()
                conn_a.close()  # A's last connection: WAL checkpointed, DMS released
                conn_b = connect(os.path.join(b.mountpoint, "w.db"), timeout=30)
                self.assertEqual(conn_b.execute("SELECT count(*) FROM t").fetchone(), (1,))
                conn_b.execute("INSERT INTO t VALUES (2)")
                conn_b.close()
            finally:
                stop_all([a, b])

    def test_wal_left_by_a_killed_writer_is_seen_where_its_absence_was_cached(self):
        # B reads the database in rollback mode, so its kernel remembers that "w.db-wal" does
        # not exist (for the entry timeout: 60 s here, so the test does not race it). A then
        # switches the database to WAL, commits, and is killed before any checkpoint: the
        # committed rows live only in the -wal. B's kernel still says there is no -wal, yet
        # B's SQLite must find it through the database header and recover every row.
        with temp_root() as root:
            a, b = start_cluster(root, 2, "--entry-timeout", "60")
            writer = None
            try:
                db_a = os.path.join(a.mountpoint, "w.db")
                db_b = os.path.join(b.mountpoint, "w.db")
                conn = connect(db_a)
                conn.execute("CREATE TABLE t(x)")
                conn.close()
                conn_b = connect(db_b)
                self.assertEqual(conn_b.execute("SELECT count(*) FROM t").fetchone(), (0,))
                conn_b.close()
                self.assertFalse(os.path.exists(db_b + "-wal"))
                writer = start_in_transaction(WAL_WRITER, db_a, ready="committed")
                end_writer(writer)  # kill -9 before any checkpoint
                writer = None
                self.assertTrue(os.path.exists(os.path.join(a.source, "w.db-wal")))
                self.assertFalse(os.path.exists(db_b + "-wal"),
                                 "B's kernel must still remember the absence (else this test "
                                 "does not exercise the cache)")
                conn_b = connect(db_b)
                self.assertEqual(conn_b.execute("SELECT count(*) FROM t").fetchone(), (50,))
                self.assertEqual(conn_b.execute("PRAGMA integrity_check").fetchone(), ("ok",))
                conn_b.close()
            finally:
                if writer is not None:
                    end_writer(writer)
                stop_all([a, b])


WAL_WRITER = r"""
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA journal_mode=wal")
conn.execute("PRAGMA wal_autocheckpoint=0")  # the rows stay in the -wal only
for i in range(50):
    conn.execute("INSERT INTO t VALUES (?)", (i,))
print("committed", flush=True)
sys.stdin.read()  # killed here, before any checkpoint
"""


CRASH_WRITER = r"""
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA cache_size=2")  # spill dirty pages into the database file mid-transaction
conn.execute("BEGIN IMMEDIATE")
conn.execute("UPDATE big SET v = zeroblob(900) || 'x'")
print("in-transaction", flush=True)
sys.stdin.read()  # hold the transaction open until killed
"""


PAUSED_WRITER = r"""
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=0)
conn.execute("PRAGMA cache_size=2")  # spill: EXCLUSIVE held, database file already written
conn.execute("BEGIN IMMEDIATE")
conn.execute("UPDATE big SET v = zeroblob(900) || 'x'")
print("in-transaction", flush=True)
sys.stdin.readline()  # resumed: try to write more and commit
try:
    conn.execute("UPDATE big SET v = zeroblob(900) || 'y'")
    conn.execute("COMMIT")
    print("committed", flush=True)
except sqlite3.Error as e:
    print("failed: " + str(e), flush=True)
"""


def start_in_transaction(script, db, ready="in-transaction"):
    """Runs a writer script (CRASH_WRITER, PAUSED_WRITER, WAL_WRITER) on db; returns once it
    printed `ready` (for the first two: it is inside its write transaction)."""
    proc = subprocess.Popen(["python3", "-c", script, db],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    if line != ready:
        end_writer(proc)
        raise AssertionError(f"writer did not start its transaction: {line!r}")
    return proc


def end_writer(proc):
    """Kills the writer if it still runs (kill -9), reaps it and closes its pipes."""
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    proc.stdin.close()
    proc.stdout.close()


def create_big(path, rows=400):
    conn = connect(path)
    conn.execute("CREATE TABLE big(id INTEGER PRIMARY KEY, v BLOB)")
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO big VALUES (?, ?)", ((i, b"a" * 900) for i in range(rows)))
    conn.execute("COMMIT")
    conn.close()


def big_state(path):
    conn = connect(path)
    rows = conn.execute("SELECT count(*), sum(length(v)), min(v) FROM big").fetchone()
    (check,) = conn.execute("PRAGMA integrity_check").fetchone()
    conn.close()
    return rows, check


class Crashes(unittest.TestCase):
    def test_killed_client_is_rolled_back_by_another_host(self):
        with temp_root() as root:
            a, b = start_cluster(root, 2)
            try:
                db_a = os.path.join(a.mountpoint, "big.db")
                create_big(db_a)
                before = big_state(db_a)
                proc = start_in_transaction(CRASH_WRITER, db_a)
                self.assertTrue(os.path.exists(db_a + "-journal"))
                end_writer(proc)  # kill -9 in the middle of the write transaction
                # Another host opens the database: it must roll the hot journal back.
                self.assertEqual(big_state(os.path.join(b.mountpoint, "big.db")), before)
                conn = connect(os.path.join(b.mountpoint, "big.db"))
                conn.execute("UPDATE big SET v = 'after' WHERE id = 0")
                conn.close()
                self.assertEqual(big_state(db_a)[1], "ok")
            finally:
                stop_all([a, b])

    def test_killed_daemon_hands_over_after_the_lease(self):
        lease = 2
        with temp_root() as root:
            a, b = start_cluster(root, 2, "--lease-duration", str(lease))
            try:
                db_a = os.path.join(a.mountpoint, "big.db")
                create_big(db_a)
                conn = connect(db_a)
                for i in range(20):  # committed through A: none of this may be lost
                    conn.execute("UPDATE big SET v = ? WHERE id = ?", (b"committed", i))
                conn.close()
                committed = big_state(db_a)
                proc = start_in_transaction(CRASH_WRITER, db_a)
                a.process.send_signal(signal.SIGKILL)  # the daemon dies holding claims
                a.process.wait()
                end_writer(proc)
                started = time.monotonic()
                db_b = os.path.join(b.mountpoint, "big.db")
                self.assertEqual(big_state(db_b), committed)
                waited = time.monotonic() - started
                # Not before the lease could have run out, and not much after.
                self.assertGreaterEqual(waited, lease * 0.9)
                self.assertLess(waited, lease * 10)
                conn = connect(db_b)
                conn.execute("UPDATE big SET v = 'b' WHERE id = 399")
                conn.close()
            finally:
                a.stop(check=False)  # killed on purpose; its mount is gone
                b.stop()


    def test_paused_daemon_is_fenced_when_it_wakes(self):
        """A daemon frozen (SIGSTOP: a long GC pause, a suspended VM) in the middle of a spilled
        write transaction loses its lease to another host, which rolls the transaction back and
        commits its own; when the frozen daemon wakes, its client's writes must fail, never land
        on the other host's data, and the mount must recover by itself."""
        lease = 2
        with temp_root() as root:
            a, b = start_cluster(root, 2, "--lease-duration", str(lease))
            proc = None
            try:
                db_a = os.path.join(a.mountpoint, "big.db")
                db_b = os.path.join(b.mountpoint, "big.db")
                create_big(db_a)
                committed = big_state(db_a)
                proc = start_in_transaction(PAUSED_WRITER, db_a)
                a.process.send_signal(signal.SIGSTOP)
                try:
                    started = time.monotonic()
                    self.assertEqual(big_state(db_b), committed)  # B rolled A's journal back
                    self.assertGreaterEqual(time.monotonic() - started, lease * 0.9)
                    conn = connect(db_b)
                    conn.execute("UPDATE big SET v = 'b' WHERE id = 399")
                    conn.close()
                    after_b = big_state(db_b)
                finally:
                    a.process.send_signal(signal.SIGCONT)
                proc.stdin.write("go\n")
                proc.stdin.flush()
                outcome = proc.stdout.readline().strip()
                proc.wait(timeout=60)
                self.assertTrue(outcome.startswith("failed"), outcome)
                self.assertEqual(big_state(db_b), after_b)
                conn = connect(db_b)
                self.assertEqual(conn.execute("SELECT v FROM big WHERE id = 399").fetchone(),
                                 ("b",))
                conn.close()

                wait_for(lambda: can_write(db_a, "UPDATE big SET v = 'a' WHERE id = 398"),
                         lease * 10, "the woken mount to write again")
                rows, check = big_state(db_b)
                self.assertEqual(check, "ok")
                self.assertEqual(rows[0], 400)
            finally:
                if proc is not None:
                    end_writer(proc)
                a.process.send_signal(signal.SIGCONT)
                stop_all([a, b])


class Fencing(unittest.TestCase):
    def test_unreachable_store_fences_writes_then_recovers(self):
        lease = 2
        with temp_root() as root:
            (a,) = start_cluster(root, 1, "--lease-duration", str(lease))
            try:
                db = os.path.join(a.mountpoint, "f.db")
                conn = connect(db, timeout=0)
                conn.execute("CREATE TABLE t(x)")
                conn.execute("INSERT INTO t VALUES (1)")
                with store_outage(root):
                    cut = time.monotonic()

                    wait_for(lambda: write_is_fenced(conn, "INSERT INTO t VALUES (2)"), lease * 3,
                             "writes to be fenced")
                    # Fenced before the lease could be taken over by anyone else.
                    self.assertLess(time.monotonic() - cut, lease)
                conn.close()

                wait_for(lambda: can_write(db, "INSERT INTO t VALUES (3)"), lease * 5,
                         "writes to work again once the store is back")
                check = connect(db)
                self.assertEqual(check.execute("PRAGMA integrity_check").fetchone(), ("ok",))
                self.assertIn((3,), check.execute("SELECT x FROM t").fetchall())
                check.close()
            finally:
                stop_all([a])

    def test_reads_never_fail_with_an_io_error_while_fenced(self):
        """Issue 12 part 6: reads on a fenced mount failed with "disk I/O error". SQLite steps
        down from EXCLUSIVE to SHARED (an F_RDLCK on the SHARED range) at the end of every
        transaction that held EXCLUSIVE, a SELECT that rolled back a hot journal included, and
        reports a refused step down as SQLITE_IOERR_RDLOCK. The mount refused it while fenced,
        because every lock request went to the lease manager. A step down needs no claim: the
        transaction ends. A read that needs a claim while fenced is busy, never an I/O error."""
        lease = 2
        with temp_root() as root:
            (a,) = start_cluster(root, 1, "--lease-duration", str(lease))
            conns = []
            try:
                db = os.path.join(a.mountpoint, "r.db")
                conn, fresh = connect(db, timeout=0), connect(db, timeout=0.2)
                conns += [conn, fresh]
                conn.execute("CREATE TABLE t(x)")
                conn.execute("INSERT INTO t VALUES (1)")
                with store_outage(root):
                    conn.execute("BEGIN EXCLUSIVE")  # holds EXCLUSIVE while the mount is fenced
                    self.assertEqual(conn.execute("SELECT x FROM t").fetchall(), [(1,)])
                    wait_for(lambda: json.loads(status(a.mountpoint, "--json").stdout)["fenced"],
                             lease * 3, "the mount to be fenced")
                    conn.execute("COMMIT")  # it only read: it ends as on a local disk
                    # A new read needs a claim the fenced mount cannot get: busy, not an I/O error.
                    with self.assertRaisesRegex(sqlite3.OperationalError, "database is locked"):
                        fresh.execute("SELECT x FROM t").fetchall()
                wait_for(lambda: can_write(db, "INSERT INTO t VALUES (2)"), lease * 5,
                         "writes to work again once the store is back")
                self.assertEqual(fresh.execute("SELECT x FROM t").fetchall(), [(1,), (2,)])
            finally:
                for c in conns:
                    c.close()
                stop_all([a])


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metrics(port):
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.split()
            values[name] = float(value)
    return values


class StatusAndMetrics(unittest.TestCase):
    def test_lone_mount_costs_the_store_nothing_per_transaction(self):
        """Steady state on one active mount: store requests are heartbeats (a renewal per L/4,
        a demand check per 100 ms on the local store), never per transaction. Read from the
        Prometheus endpoint."""
        port = free_port()
        with temp_root() as root:
            (a,) = start_cluster(root, 1, "--metrics-addr", f"127.0.0.1:{port}")
            try:
                db = os.path.join(a.mountpoint, "cost.db")
                conn = connect(db)
                conn.execute("CREATE TABLE t(x)")
                conn.execute("INSERT INTO t VALUES (0)")  # claims acquired: steady state begins
                before = metrics(port)
                started = time.monotonic()
                transactions = 1000
                for i in range(transactions):
                    conn.execute("BEGIN IMMEDIATE")
                    conn.execute("UPDATE t SET x = ?", (i,))
                    conn.execute("COMMIT")
                elapsed = time.monotonic() - started
                after = metrics(port)
                conn.close()
                requests = after["leasefs_store_requests_total"] - before["leasefs_store_requests_total"]
                locks = after["leasefs_lock_requests_total"] - before["leasefs_lock_requests_total"]
                # L = 10 s: a renewal every 2.5 s; the local store's demand check every 0.1 s.
                heartbeats = (int(elapsed / 2.5) + 1) + (int(elapsed / 0.1) + 1)
                print(f"\n{transactions} tx in {elapsed:.2f} s: {locks:.0f} lock calls, "
                      f"{requests:.0f} store requests (heartbeat bound {heartbeats})")
                self.assertGreaterEqual(locks, 4 * transactions)
                self.assertLessEqual(requests, heartbeats)
                self.assertEqual(after["leasefs_fenced"], 0)
                self.assertGreater(after["leasefs_lease_deadline_seconds"], 5)
            finally:
                stop_all([a])

    def test_status_shows_sessions_claims_and_versions(self):
        with temp_root() as root:
            a, b = start_cluster(root, 2)
            try:
                conn = connect(os.path.join(a.mountpoint, "s.db"))
                conn.execute("CREATE TABLE t(x)")
                conn.close()
                out = subprocess.run([os.environ["LEASEFS_BIN"], "status", "--json", a.mountpoint],
                                     capture_output=True, text=True, timeout=30)
                self.assertEqual(out.returncode, 0, out.stderr)
                import json
                status = json.loads(out.stdout)
                self.assertIn(a.mountpoint, status["session"])
                self.assertFalse(status["fenced"])
                (db,) = [d for d in status["databases"] if d["path"] == "s.db"]
                self.assertEqual(db["claims"].get("reserved"), "w")
                human = subprocess.run([os.environ["LEASEFS_BIN"], "status", b.mountpoint],
                                       capture_output=True, text=True, timeout=30)
                self.assertEqual(human.returncode, 0, human.stderr)
                self.assertIn("deadline in", human.stdout)
            finally:
                stop_all([a, b])

    def test_status_lists_thousands_of_databases_quickly(self):
        """Status with far more databases than one extended attribute can hold (64 KiB, about
        360 of them): the list travels in pages, and both outputs show every database."""
        count = 2000
        with temp_root() as root:
            (a,) = start_cluster(root, 1)
            try:
                os.mkdir(os.path.join(a.mountpoint, "many"))
                paths = {f"many/database-{i:04d}.db" for i in range(count)}
                for path in paths:
                    conn = connect(os.path.join(a.mountpoint, path))
                    conn.execute("CREATE TABLE t(x)")
                    conn.close()
                for as_json in (True, False):
                    started = time.monotonic()
                    out = status(a.mountpoint, *(["--json"] if as_json else []))
                    elapsed = time.monotonic() - started
                    self.assertEqual(out.returncode, 0, out.stderr)
                    self.assertLess(elapsed, 3, "status of 2,000 databases is slow")
                    if as_json:
                        doc = json.loads(out.stdout)
                        listed = [d["path"] for d in doc["databases"]]
                        self.assertEqual(len(listed), count)
                        self.assertEqual(set(listed), paths)
                        self.assertNotIn("snapshot", doc)
                        self.assertNotIn("database_pages", doc)
                    else:
                        for path in paths:
                            self.assertIn(f"  {path} (", out.stdout)
            finally:
                stop_all([a])

    def test_status_hides_paths_the_caller_could_not_reach(self):
        """A caller other than root sees a database's path only if it may search every directory
        above it (mode bits: owner, group, other); the entry itself stays, without its path."""
        with temp_root() as root:
            (a,) = start_cluster(root, 1)
            try:
                j = lambda *p: os.path.join(a.mountpoint, *p)
                for name, mode, gid in (("secret", 0o700, 0), ("group", 0o750, NOBODY),
                                        ("listless", 0o711, 0), ("other", 0o750, 0)):
                    os.mkdir(j(name))
                    os.chown(j(name), 0, gid)
                    os.chmod(j(name), mode)
                os.mkdir(j("secret", "inner"), 0o755)
                visible = {"open.db", "group/by-group.db", "listless/searchable.db"}
                hidden = {"secret/hidden.db", "secret/inner/deeper.db", "other/unreachable.db"}
                for path in visible | hidden:
                    conn = connect(j(path))
                    conn.execute("CREATE TABLE t(x)")
                    conn.close()
                as_root = json.loads(status(a.mountpoint, "--json").stdout)
                self.assertEqual({d["path"] for d in as_root["databases"]}, visible | hidden)
                self.assertFalse(any(d.get("hidden") for d in as_root["databases"]))

                try:
                    out = status(a.mountpoint, "--json", uid=NOBODY)
                except PermissionError:
                    self.skipTest(f"uid {NOBODY} cannot run {os.environ['LEASEFS_BIN']}: a "
                                  "directory above it is private (run from a checkout other "
                                  "users can reach)")
                self.assertEqual(out.returncode, 0, out.stderr)
                doc = json.loads(out.stdout)
                shown = [d for d in doc["databases"] if not d.get("hidden")]
                concealed = [d for d in doc["databases"] if d.get("hidden")]
                self.assertEqual({d["path"] for d in shown}, visible)
                self.assertEqual(len(concealed), len(hidden))
                self.assertEqual({d["path"] for d in concealed}, {""})
                self.assertEqual(doc["locks"], as_root["locks"])  # counters are everyone's
                human = status(a.mountpoint, uid=NOBODY)
                self.assertEqual(human.returncode, 0, human.stderr)
                self.assertIn("group/by-group.db", human.stdout)
                self.assertEqual(human.stdout.count("(hidden: "), len(hidden))
                for text in (out.stdout, human.stdout):
                    for name in ("hidden.db", "inner", "deeper.db", "unreachable.db"):
                        self.assertNotIn(name, text)

                # A snapshot's pages are for the caller it was taken for.
                summary = json.loads(os.getxattr(a.mountpoint, "user.leasefs.status"))
                page = f"user.leasefs.status.{summary['snapshot']}.0"
                self.assertIn(b"secret/hidden.db", os.getxattr(a.mountpoint, page))
                self.assertEqual(xattr_errno_as(NOBODY, a.mountpoint, page), errno.ENODATA)
            finally:
                stop_all([a])


NOBODY = 65534


def xattr_errno_as(uid, path, name):
    """The errno of getxattr(path, name) in a child process running as `uid` (0: it worked)."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            become(uid)
            os.getxattr(path, name)
        except OSError as e:
            code = e.errno
        finally:
            os._exit(code)
    _, wait_status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(wait_status)


def status(mountpoint, *args, uid=None):
    """`leasefs status ARGS MOUNTPOINT`, as `uid` if given."""
    return subprocess.run([os.environ["LEASEFS_BIN"], "status", *args, mountpoint],
                          capture_output=True, text=True, timeout=30,
                          preexec_fn=(lambda: become(uid)) if uid is not None else None)


if __name__ == "__main__":
    unittest.main()
