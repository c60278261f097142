"""Real SQLite clients on a leasefs mount: the sqlite3 shell and Python's sqlite3 module.

Each case writes through the mount, reads back through the mount, checks PRAGMA integrity_check,
then unmounts and checks the very same database directly in SOURCE, so data that only lived in a
cache would be caught.
"""
import multiprocessing
import os
import sqlite3
import subprocess
import unittest

from harness import mounted_pair, temp_root


def sqlite_shell(db, sql):
    r = subprocess.run(["sqlite3", "-bail", db], input=sql, capture_output=True, text=True,
                       timeout=120)
    if r.returncode != 0:
        raise AssertionError(f"sqlite3 failed ({r.returncode}): {r.stderr}")
    return r.stdout.strip()


def increment_worker(db, count, results):
    conn = sqlite3.connect(db, timeout=30, isolation_level=None)
    done = 0
    for _ in range(count):
        conn.execute("BEGIN IMMEDIATE")
        (value,) = conn.execute("SELECT n FROM counter").fetchone()
        conn.execute("UPDATE counter SET n = ?", (value + 1,))
        conn.execute("COMMIT")
        done += 1
    conn.close()
    results.put(done)


class SqliteShellOnMount(unittest.TestCase):
    def run_journal_mode(self, mode):
        with temp_root() as root:
            m = mounted_pair(root)
            with m:
                db = os.path.join(m.mountpoint, f"{mode}.db")
                rows = "".join(f"INSERT INTO t(v) VALUES ('row{i}');\n" for i in range(2000))
                sqlite_shell(db, f"PRAGMA journal_mode={mode};\n"
                                 "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);\n"
                                 f"BEGIN;\n{rows}COMMIT;\n")
                for i in range(50):  # many small transactions: journal/WAL created and retired
                    sqlite_shell(db, f"PRAGMA journal_mode={mode};"
                                     f"UPDATE t SET v = 'u{i}' WHERE id = {i + 1};")
                out = sqlite_shell(db, "SELECT count(*), sum(length(v)) FROM t;"
                                       "PRAGMA integrity_check;")
                self.assertEqual(out.splitlines()[-1], "ok")
                through_mount = out.splitlines()[0]
                self.assertTrue(through_mount.startswith("2000|"), through_mount)
            # The same database, read directly from SOURCE after unmount.
            direct = sqlite_shell(os.path.join(m.source, f"{mode}.db"),
                                  "SELECT count(*), sum(length(v)) FROM t; PRAGMA integrity_check;")
            self.assertEqual(direct.splitlines(), [through_mount, "ok"])

    def test_rollback_delete(self):
        self.run_journal_mode("delete")

    def test_rollback_truncate(self):
        self.run_journal_mode("truncate")

    def test_rollback_persist(self):
        self.run_journal_mode("persist")

    def test_wal(self):
        self.run_journal_mode("wal")


class PythonSqliteOnMount(unittest.TestCase):
    def test_concurrent_writers_on_one_mount_lose_nothing(self):
        """Processes on one mount serialize through the kernel's locks on the FUSE file."""
        for mode in ("delete", "wal"):
            with self.subTest(mode=mode), temp_root() as root:
                with mounted_pair(root) as m:
                    db = os.path.join(m.mountpoint, "counter.db")
                    conn = sqlite3.connect(db, isolation_level=None)
                    conn.execute(f"PRAGMA journal_mode={mode}")
                    conn.execute("CREATE TABLE counter(n INTEGER)")
                    conn.execute("INSERT INTO counter VALUES (0)")
                    conn.close()
                    results = multiprocessing.Queue()
                    workers = [multiprocessing.Process(target=increment_worker,
                                                       args=(db, 150, results)) for _ in range(4)]
                    for w in workers:
                        w.start()
                    for w in workers:
                        w.join(timeout=300)
                        self.assertEqual(w.exitcode, 0)
                    committed = sum(results.get(timeout=5) for _ in workers)
                    conn = sqlite3.connect(db)
                    (n,) = conn.execute("SELECT n FROM counter").fetchone()
                    (check,) = conn.execute("PRAGMA integrity_check").fetchone()
                    conn.close()
                    self.assertEqual(committed, 600)
                    self.assertEqual(n, committed)
                    self.assertEqual(check, "ok")

    def test_blob_round_trip_and_vacuum(self):
        with temp_root() as root:
            with mounted_pair(root) as m:
                db = os.path.join(m.mountpoint, "blobs.db")
                conn = sqlite3.connect(db)
                conn.execute("CREATE TABLE b(k INTEGER PRIMARY KEY, v BLOB)")
                blobs = {k: os.urandom(1000 + k * 37) for k in range(300)}
                conn.executemany("INSERT INTO b VALUES (?, ?)", blobs.items())
                conn.commit()
                conn.execute("DELETE FROM b WHERE k % 2 = 0")
                conn.commit()
                conn.execute("VACUUM")
                got = dict(conn.execute("SELECT k, v FROM b"))
                self.assertEqual(conn.execute("PRAGMA integrity_check").fetchone()[0], "ok")
                conn.close()
                self.assertEqual(got, {k: v for k, v in blobs.items() if k % 2})


if __name__ == "__main__":
    unittest.main()
