"""The DynamoDB lease store misbehaving: latency, throttling, 5xx, connection resets, writes that
land but whose answer is lost, and the store down for longer than the lease — plus bad
configuration. Runs only with LEASEFS_TEST_LEASE_STORE=dynamodb (ctest: py_faults_dynamodb).

What must hold under every fault: the counter equals the committed transactions, integrity_check
is ok, no reader sees a torn state; a mount that cannot renew stops writing before its lease could
pass to anyone else, and everything recovers by itself once the store answers again.
"""
import os
import sqlite3
import subprocess
import tempfile
import time
import unittest

import dynamo
from harness import binary, temp_root, wait_for
from test_cluster import (can_write, connect, counter_value, create_counter,
                          run_counter_workload, start_cluster, stop_all, write_is_fenced)


def require_dynamodb(test):
    return unittest.skipUnless(dynamo.selected(),
                               "needs LEASEFS_TEST_LEASE_STORE=dynamodb (ctest py_faults_dynamodb)")(test)


@require_dynamodb
class StoreFaults(unittest.TestCase):
    """Two mounts, two writers and a reader on each, with one fault injected on a share of all
    DynamoDB requests for the whole workload."""

    def run_with_fault(self, mode, fault_rate=0.3, latency=None, per_writer=8):
        proxy = dynamo.backend().proxy
        with temp_root() as root:
            mounts = start_cluster(root, 2, "--lease-duration", "4")
            try:
                paths = [os.path.join(m.mountpoint, "c.db") for m in mounts]
                create_counter(paths[0], "delete")
                before = proxy.snapshot()
                proxy.set(mode, latency=latency, fault_rate=fault_rate)
                try:
                    committed, reads, torn, codes = run_counter_workload(paths, per_writer)
                finally:
                    proxy.set("pass", latency=0)
                after = proxy.snapshot()
                requests = sum(after.values()) - sum(before.values())
                print(f"\n{mode} on {fault_rate:.0%}: {committed} tx, {requests} store requests, "
                      f"{reads} reads")
                self.assertEqual(codes, [0] * len(codes))
                self.assertEqual(committed, 2 * 2 * per_writer)
                self.assertEqual(torn, 0)
                for path in paths:
                    self.assertEqual(counter_value(path), (committed, "ok"))
            finally:
                stop_all(mounts)

    def test_added_latency(self):
        self.run_with_fault("pass", latency=0.02)

    def test_throttling(self):
        self.run_with_fault("throttle")

    def test_server_errors(self):
        self.run_with_fault("error500")

    def test_connection_resets(self):
        self.run_with_fault("reset")

    def test_writes_that_land_but_whose_answer_is_lost(self):
        # The ambiguous case: settled by re-reading the record, never by guessing.
        self.run_with_fault("apply_then_drop", fault_rate=0.2)

    def test_store_down_longer_than_the_lease(self):
        lease = 2
        proxy = dynamo.backend().proxy
        with temp_root() as root:
            a, b = start_cluster(root, 2, "--lease-duration", str(lease))
            try:
                db_a = os.path.join(a.mountpoint, "down.db")
                db_b = os.path.join(b.mountpoint, "down.db")
                conn = connect(db_a, timeout=0)
                conn.execute("CREATE TABLE t(x)")
                conn.execute("INSERT INTO t VALUES (1)")
                proxy.set("down")
                try:
                    cut = time.monotonic()

                    wait_for(lambda: write_is_fenced(conn, "INSERT INTO t VALUES (2)"), lease * 3,
                             "writes on A to be fenced")
                    self.assertLess(time.monotonic() - cut, lease)
                    # B cannot take over while nobody can reach the store either.
                    other = connect(db_b, timeout=0)
                    with self.assertRaises(sqlite3.OperationalError):
                        other.execute("INSERT INTO t VALUES (3)")
                    other.close()
                    time.sleep(lease * 2)  # an outage longer than the lease, on purpose
                finally:
                    proxy.set("pass")
                conn.close()

                wait_for(lambda: can_write(db_a, "INSERT INTO t VALUES (4)"), lease * 10,
                         "A to write again after the outage")
                wait_for(lambda: can_write(db_b, "INSERT INTO t VALUES (5)"), lease * 10,
                         "B to write again after the outage")
                check = connect(db_a)
                self.assertEqual(check.execute("PRAGMA integrity_check").fetchone(), ("ok",))
                values = sorted(x for (x,) in check.execute("SELECT x FROM t"))
                check.close()
                self.assertIn(1, values)
                self.assertIn(4, values)
                self.assertIn(5, values)
                self.assertNotIn(3, values)
            finally:
                proxy.set("pass")
                stop_all([a, b])


@require_dynamodb
class BadConfiguration(unittest.TestCase):
    """One clear line and exit status 1 from `leasefs mount`, never a hang or a half mount."""

    def setUp(self):
        self.backend = dynamo.backend()
        self.root_cm = temp_root()
        self.root = self.root_cm.__enter__()
        self.src = os.path.join(self.root, "src")
        self.mnt = os.path.join(self.root, "mnt")
        os.makedirs(self.src)
        os.makedirs(self.mnt)

    def tearDown(self):
        self.root_cm.__exit__(None, None, None)

    def mount(self, store, env=None):
        r = subprocess.run([binary(), "mount", "--lease-store", store, self.src, self.mnt],
                           capture_output=True, text=True, timeout=60,
                           env=env if env is not None else os.environ)
        lines = r.stderr.strip().splitlines()
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertEqual(len(lines), 1, r.stderr)
        self.assertFalse(os.path.ismount(self.mnt))
        return lines[0]

    def test_unknown_table(self):
        line = self.mount(f"dynamodb://no-such-table?region={dynamo.REGION}"
                          f"&endpoint={self.backend.dynalite.endpoint}")
        self.assertIn("no-such-table", line)
        self.assertIn("not found", line)

    def test_wrong_region(self):
        # No endpoint override: the region names AWS's endpoint, which does not exist.
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
        line = self.mount("dynamodb://t?region=moon-north-1", env)
        self.assertIn("moon-north-1", line)

    def test_no_credentials(self):
        home = tempfile.mkdtemp(dir=self.root)
        env = {"PATH": os.environ["PATH"], "HOME": home, "AWS_EC2_METADATA_DISABLED": "true"}
        table = self.backend.new_table()
        line = self.mount(f"dynamodb://{table}?region={dynamo.REGION}"
                          f"&endpoint={self.backend.dynalite.endpoint}", env)
        self.assertIn("credentials", line)

    def test_unreachable_endpoint(self):
        line = self.mount(f"dynamodb://t?region={dynamo.REGION}&endpoint=http://127.0.0.1:1")
        self.assertIn("127.0.0.1:1", line)

    def test_malformed_uri(self):
        line = self.mount(f"dynamodb://?region={dynamo.REGION}")
        self.assertIn("dynamodb://", line)


if __name__ == "__main__":
    unittest.main()
