"""Database identity across hosts: a database is its file, not one of its names.

Every host must agree on which lease record guards a database, whatever name it reaches the file
by: hard links, a rename while the database is locked, and inode numbers the storage reuses after
a delete must never split one database into two lease records (lost updates) or leave a host
guarding a file under another file's record (false fencing). Two mounts of one SOURCE are two
hosts; each case runs real SQLite clients on both and checks the exact result.
"""
import multiprocessing
import os
import sqlite3
import subprocess
import unittest

import dynamo
from harness import host_mount, temp_root, wait_for
from test_cluster import (can_write, connect, start_cluster, stop_all, store_option,
                          write_is_fenced)


def increment(path, count, journal_mode, results):
    """`count` read-modify-write increments of the counter at `path` (one per transaction)."""
    conn = connect(path)
    conn.execute(f"PRAGMA journal_mode={journal_mode}")
    done = errors = 0
    while done < count:
        try:
            conn.execute("BEGIN IMMEDIATE")
            (n,) = conn.execute("SELECT n FROM counter").fetchone()
            conn.execute("UPDATE counter SET n = ?", (n + 1,))
            conn.execute("COMMIT")
            done += 1
        except sqlite3.OperationalError:
            errors += 1
            if conn.in_transaction:
                conn.execute("ROLLBACK")
    conn.close()
    results.put(errors)


def run_counter(paths, per_process=150, journal_mode="delete"):
    """One incrementing process per path at once; returns the errors they retried."""
    results = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=increment, args=(p, per_process, journal_mode, results))
             for p in paths]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    stuck = [p for p in procs if p.is_alive()]
    for p in stuck:
        p.kill()
    if stuck:
        raise AssertionError(f"{len(stuck)} incrementing process(es) never finished")
    return sum(results.get(timeout=10) for _ in procs)


def create_counter(path):
    conn = connect(path)
    conn.execute("CREATE TABLE counter(n INTEGER)")
    conn.execute("INSERT INTO counter VALUES (0)")
    conn.close()


def counter(path):
    conn = connect(path)
    (n,) = conn.execute("SELECT n FROM counter").fetchone()
    (check,) = conn.execute("PRAGMA integrity_check").fetchone()
    conn.close()
    return n, check


def status(mountpoint):
    import json
    out = subprocess.run([os.environ["LEASEFS_BIN"], "status", "--json", mountpoint],
                         capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        raise AssertionError(out.stderr)
    return json.loads(out.stdout)


class TwoHosts(unittest.TestCase):
    """Two mounts (hosts) of root/src: self.a and self.b."""

    def setUp(self):
        self._root = temp_root()
        self.root = self._root.__enter__()
        self.mounts = start_cluster(self.root, 2)
        self.a, self.b = self.mounts
        self.src = os.path.join(self.root, "src")

    def tearDown(self):
        try:
            stop_all(self.mounts)
        finally:
            self._root.__exit__(None, None, None)

    def on(self, mount, name):
        return os.path.join(mount.mountpoint, name)


class Identity(TwoHosts):
    def test_hard_links_are_one_database(self):
        create_counter(self.on(self.a, "hl1.db"))
        os.link(os.path.join(self.src, "hl1.db"), os.path.join(self.src, "hl2.db"))
        run_counter([self.on(self.a, "hl1.db"), self.on(self.b, "hl2.db")])
        self.assertEqual(counter(os.path.join(self.src, "hl1.db")), (300, "ok"))

    def test_rename_while_locked_keeps_the_lock(self):
        create_counter(self.on(self.a, "rn1.db"))
        holder = connect(self.on(self.a, "rn1.db"))
        holder.execute("BEGIN IMMEDIATE")  # RESERVED through A
        holder.execute("UPDATE counter SET n = n + 1")
        os.rename(self.on(self.a, "rn1.db"), self.on(self.a, "rn2.db"))
        other = connect(self.on(self.b, "rn2.db"), timeout=0.5)
        with self.assertRaisesRegex(sqlite3.OperationalError, "locked"):
            other.execute("BEGIN IMMEDIATE")
        other.close()
        holder.execute("COMMIT")
        holder.close()
        other = connect(self.on(self.b, "rn2.db"), timeout=10)
        other.execute("BEGIN IMMEDIATE")  # free now
        other.execute("UPDATE counter SET n = n + 1")
        other.execute("COMMIT")
        other.close()
        self.assertEqual(counter(self.on(self.b, "rn2.db")), (2, "ok"))

    def test_reused_inode_number_is_a_new_database(self):
        # A locks old.db, so A knows its file; old.db is deleted through A and new.db created in
        # SOURCE until the storage hands it old.db's inode number again (ext4 does within a few
        # tries). A must guard new.db as new.db, and both hosts must serialize on one record.
        old = self.on(self.a, "old.db")
        create_counter(old)
        self.assertEqual(counter(old), (0, "ok"))
        inode = os.stat(os.path.join(self.src, "old.db")).st_ino
        os.unlink(old)
        new_src = os.path.join(self.src, "new.db")
        for attempt in range(2000):
            with open(new_src, "wb"):
                pass
            if os.stat(new_src).st_ino == inode:
                break
            tmp = os.path.join(self.src, f"spare{attempt}")
            os.rename(new_src, tmp)  # keep the number from being handed out again
        else:
            self.skipTest("the backing filesystem did not reuse the inode number")
        for attempt in range(2000):
            spare = os.path.join(self.src, f"spare{attempt}")
            if os.path.exists(spare):
                os.unlink(spare)
        create_counter(self.on(self.b, "new.db"))
        errors = run_counter([self.on(self.a, "new.db"), self.on(self.b, "new.db")],
                             journal_mode="memory")
        self.assertEqual(counter(new_src), (300, "ok"))
        paths = [d.get("path") for d in status(self.a.mountpoint)["databases"]]
        self.assertNotIn("old.db", paths)
        print(f"\nreused inode {inode}: {errors} retried errors")

    def test_journals_are_fenced_by_their_own_database(self):
        # A writes a database, then B takes it over (A's write claim goes), then A creates the
        # next database: its journal gets the inode number the previous journal just freed. A
        # write to a journal is fenced by the database it belongs to now, never by the one an
        # earlier file of that number belonged to ("fenced: ... refused", disk I/O error).
        failures = []
        for i in range(12):
            path_a, path_b = self.on(self.a, f"db{i}.db"), self.on(self.b, f"db{i}.db")
            try:
                conn = connect(path_a, timeout=10)
                conn.execute("CREATE TABLE t(x)")
                conn.execute("INSERT INTO t VALUES (?)", (i,))
                conn.close()
                conn = connect(path_b, timeout=10)
                conn.execute("INSERT INTO t VALUES (?)", (i,))
                conn.close()
            except sqlite3.Error as e:
                failures.append(f"db{i}.db: {e}")
        self.assertEqual(failures, [])
        fenced = [status(m.mountpoint)["locks"]["fenced_writes"] for m in self.mounts]
        self.assertEqual(fenced, [0, 0])

    def test_attach_transfers_across_two_databases(self):
        for name in ("acct_a.db", "acct_b.db"):
            conn = connect(self.on(self.a, name))
            conn.execute("CREATE TABLE balance(n INTEGER)")
            conn.execute("INSERT INTO balance VALUES (500)")
            conn.close()
        results = multiprocessing.Queue()
        procs = [multiprocessing.Process(target=transfer, args=(m.mountpoint, 100, results))
                 for m in self.mounts]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=300)
        self.assertEqual([p.exitcode for p in procs], [0, 0])
        total = 0
        for name in ("acct_a.db", "acct_b.db"):
            conn = connect(os.path.join(self.src, name))
            total += conn.execute("SELECT n FROM balance").fetchone()[0]
            self.assertEqual(conn.execute("PRAGMA integrity_check").fetchone(), ("ok",))
            conn.close()
        self.assertEqual(total, 1000)


def transfer(mountpoint, count, results):
    """`count` transfers of 1 between two databases in one transaction (ATTACH)."""
    conn = connect(os.path.join(mountpoint, "acct_a.db"))
    conn.execute("ATTACH ? AS other", (os.path.join(mountpoint, "acct_b.db"),))
    done = 0
    while done < count:
        try:
            conn.execute("BEGIN IMMEDIATE")
            (a,) = conn.execute("SELECT n FROM main.balance").fetchone()
            (b,) = conn.execute("SELECT n FROM other.balance").fetchone()
            conn.execute("UPDATE main.balance SET n = ?", (a - 1,))
            conn.execute("UPDATE other.balance SET n = ?", (b + 1,))
            conn.execute("COMMIT")
            done += 1
        except sqlite3.OperationalError:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
    conn.close()
    results.put(done)


if __name__ == "__main__":
    unittest.main()


class RemovingAndReplacing(TwoHosts):
    """Unlink, rename and replace of a database and its journal work like any file's: the host
    takes the claim it needs for the operation (waiting as a lock would), never EIO while the
    store is reachable; and SQLite's chown of its journals is not a write to fence."""

    def test_remove_rename_and_replace_a_database_no_one_uses(self):
        create_counter(self.on(self.a, "app.db"))
        create_counter(self.on(self.b, "other.db"))
        self.assertEqual(counter(self.on(self.b, "app.db")), (0, "ok"))  # B holds claims too
        os.rename(self.on(self.a, "app.db"), self.on(self.a, "moved.db"))
        self.assertEqual(counter(self.on(self.b, "moved.db")), (0, "ok"))
        os.replace(self.on(self.b, "other.db"), self.on(self.b, "moved.db"))  # replace
        os.unlink(self.on(self.a, "moved.db"))
        self.assertEqual(sorted(os.listdir(self.src)), [])
        for m in self.mounts:
            self.assertEqual(status(m.mountpoint)["locks"]["fenced_writes"], 0)

    def test_removing_a_database_waits_for_a_writer_on_another_host(self):
        create_counter(self.on(self.a, "busy.db"))
        holder = connect(self.on(self.a, "busy.db"))
        holder.execute("BEGIN IMMEDIATE")
        holder.execute("UPDATE counter SET n = 1")
        result = multiprocessing.Queue()
        remover = multiprocessing.Process(target=remove_and_report,
                                          args=(self.on(self.b, "busy.db-journal"), result))
        remover.start()
        try:
            remover.join(timeout=1)
            self.assertTrue(remover.is_alive(), "the journal was removed under a live writer")
            holder.execute("COMMIT")  # DELETE mode: the journal goes with the commit
        finally:
            holder.close()
            remover.join(timeout=30)
        self.assertEqual(result.get(timeout=5), "ENOENT")  # waited, then found it gone
        self.assertEqual(counter(self.on(self.b, "busy.db")), (1, "ok"))

    def test_chown_of_a_journal_is_not_a_write(self):
        # SQLite running as root chowns every journal it opens to the database's owner, on hosts
        # that hold no write claim too: a change of owner is metadata, never fenced.
        create_counter(self.on(self.a, "owned.db"))
        self.assertEqual(counter(self.on(self.b, "owned.db")), (0, "ok"))  # B locked it too
        holder = connect(self.on(self.a, "owned.db"))
        try:
            holder.execute("BEGIN IMMEDIATE")
            holder.execute("UPDATE counter SET n = 1")  # the journal exists now
            # Without a lock B's name lookups are only as fresh as its storage client (with
            # per-host caching clients it may remember "no journal" for a while).
            journal_b = self.on(self.b, "owned.db-journal")
            wait_for(lambda: os.path.exists(journal_b), 30, "B to see A's journal")
            os.chown(journal_b, 65534, 65534)
            holder.execute("COMMIT")
        finally:
            holder.close()
        run_counter([self.on(self.a, "owned.db"), self.on(self.b, "owned.db")], per_process=50)
        self.assertEqual(counter(self.on(self.a, "owned.db")), (101, "ok"))
        for m in self.mounts:
            self.assertEqual(status(m.mountpoint)["locks"]["fenced_writes"], 0)


def counter_free_check(path):
    """(integrity_check, rows of t) of a database, read on a fresh connection."""
    conn = connect(path)
    try:
        return (conn.execute("PRAGMA integrity_check").fetchone()[0],
                conn.execute("SELECT x FROM t ORDER BY x").fetchall())
    finally:
        conn.close()


def remove_and_report(path, result):
    try:
        os.unlink(path)
        result.put("removed")
    except OSError as e:
        import errno
        result.put(errno.errorcode.get(e.errno, str(e.errno)))


class LeaseStoreReplaced(unittest.TestCase):
    @unittest.skipIf(dynamo.selected(), "the local store's file")
    def test_store_deleted_under_a_mount_is_not_split(self):
        """The local store's file deleted while a mount runs, then a second mount with the same
        path: the first must notice that the file it renews into is no longer the store the
        others use (fence, drop its claims, join again), or the two serialize on nothing."""
        with temp_root() as root:
            (a,) = start_cluster(root, 1)
            try:
                create_counter(os.path.join(a.mountpoint, "c.db"))
                for name in os.listdir(root):
                    if name.startswith("leases.db"):
                        os.unlink(os.path.join(root, name))
                mnt = os.path.join(root, "host1")
                os.makedirs(mnt)
                b = host_mount(root, os.path.join(root, "src"), mnt, 1,  # the same path
                               "--lease-store", store_option(root))
                try:
                    run_counter([os.path.join(a.mountpoint, "c.db"),
                                 os.path.join(b.mountpoint, "c.db")])
                    self.assertEqual(counter(os.path.join(root, "src", "c.db")), (300, "ok"))
                finally:
                    stop_all([b])
            finally:
                stop_all([a])
            self.assertIn("was replaced or deleted", a.log())

    @unittest.skipIf(dynamo.selected(), "the local store's file")
    def test_store_made_immutable_is_an_outage_not_a_crash(self):
        """`chattr +i` on the local store's files: its writes fail with EPERM (and a store that
        mapped a file shared, as SQLite's WAL index is, would die of SIGBUS). A store that
        cannot be written is an unreachable store: fence, say so, recover when it is writable."""
        lease = 2
        with temp_root() as root:
            (a,) = start_cluster(root, 1, "--lease-duration", str(lease))
            frozen = []
            try:
                db = os.path.join(a.mountpoint, "f.db")
                conn = connect(db, timeout=0)
                conn.execute("CREATE TABLE t(x)")
                conn.execute("INSERT INTO t VALUES (1)")
                frozen = [os.path.join(root, n) for n in os.listdir(root)
                          if n.startswith("leases.db")]
                self.assertNotIn("leases.db-shm", [os.path.basename(f) for f in frozen],
                                 "the local store must not map a file shared (SIGBUS)")
                subprocess.run(["chattr", "+i", *frozen], check=True)
                wait_for(lambda: write_is_fenced(conn, "INSERT INTO t VALUES (2)"), lease * 3,
                         "writes to be fenced")
                self.assertIsNone(a.process.poll(), "the daemon died:\n" + a.log())
                subprocess.run(["chattr", "-i", *frozen], check=True)
                frozen = []
                conn.close()
                wait_for(lambda: can_write(db, "INSERT INTO t VALUES (3)"), lease * 5,
                         "writes to work again once the store is writable")
                # (2) went in while the lease still ran, as many times as before the fence.
                check, rows = counter_free_check(db)
                self.assertEqual(check, "ok")
                self.assertEqual((rows[0], rows[-1]), ((1,), (3,)))
                self.assertEqual(set(rows[1:-1]), {(2,)} if len(rows) > 2 else set())
            finally:
                if frozen:
                    subprocess.run(["chattr", "-i", *frozen])
                stop_all([a])
