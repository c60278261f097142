"""Under load, a live mount keeps renewing on time and `leasefs status` keeps answering.

Three mounts of one SOURCE, two worker processes on each running a write-heavy SQLite mix on one
shared database (every host contends for it all the time), plus one busy-looping process per CPU:
the shape in which a mount used to renew 4 times in 41 s while the others renewed 10 times, was
declared dead and lost its database (issue 12). Renewals run on a thread of their own, so their
interval must hold: its p99 at most L/4 + 100 ms on every mount. `leasefs status` must answer
within 100 ms (p90; every answer within 1 s) while the load runs.

The lease is 2 s (L/4 = 0.5 s) so that a 12 s run sees about 24 renewals per mount. Renewals are
observed by sampling each mount's Prometheus counter every 20 ms, so an interval is measured to
within 20 ms; the bound allows for that.
"""
import multiprocessing
import os
import random
import sqlite3
import subprocess
import threading
import time
import unittest

from harness import host_mount, temp_root
from test_cluster import free_port, metrics, stop_all, store_option

LEASE_SECONDS = 2.0
RUN_SECONDS = 12.0
SAMPLE_SECONDS = 0.02


def worker(path, seed, stop_at, errors):
    """Transactions back to back until stop_at: half writes, half reads."""
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    rng = random.Random(seed)
    while time.time() < stop_at:
        try:
            if rng.random() < 0.5:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("UPDATE counter SET n = n + 1")
                conn.execute("COMMIT")
            else:
                conn.execute("SELECT n FROM counter").fetchone()
        except sqlite3.OperationalError as e:
            errors.put(str(e))
            if conn.in_transaction:
                conn.execute("ROLLBACK")
    conn.close()


def burn(stop_at):
    while time.time() < stop_at:
        pass


class RenewalsAndStatusUnderLoad(unittest.TestCase):
    def test_renewal_interval_and_status_latency(self):
        ports = [free_port() for _ in range(3)]
        with temp_root() as root:
            mounts = []
            try:
                src = os.path.join(root, "src")
                os.makedirs(src)
                store = store_option(root)
                for i, port in enumerate(ports):  # each with its own metrics port
                    mnt = os.path.join(root, f"host{i}")
                    os.makedirs(mnt)
                    mounts.append(host_mount(root, src, mnt, i, "--lease-store", store,
                                             "--lease-duration", str(LEASE_SECONDS),
                                             "--metrics-addr", f"127.0.0.1:{port}"))
                db = "load.db"
                conn = sqlite3.connect(os.path.join(mounts[0].mountpoint, db),
                                       isolation_level=None)
                conn.execute("CREATE TABLE counter(n)")
                conn.execute("INSERT INTO counter VALUES (0)")
                conn.close()

                renewals = {port: [] for port in ports}  # times the counter was seen to move
                sampling = threading.Event()

                def sample():
                    last = {port: None for port in ports}
                    while not sampling.is_set():
                        for port in ports:
                            value = metrics(port)["leasefs_renewals_total"]
                            if last[port] is not None and value > last[port]:
                                renewals[port].append(time.monotonic())
                            last[port] = value
                        time.sleep(SAMPLE_SECONDS)

                sampler = threading.Thread(target=sample)
                sampler.start()
                stop_at = time.time() + RUN_SECONDS
                ctx = multiprocessing.get_context("fork")
                errors = ctx.Queue()
                load = [ctx.Process(target=worker, args=(os.path.join(m.mountpoint, db),
                                                         i * 10 + k, stop_at, errors))
                        for i, m in enumerate(mounts) for k in range(2)]
                load += [ctx.Process(target=burn, args=(stop_at,))
                         for _ in range(os.cpu_count() or 1)]
                for p in load:
                    p.start()
                status_times = []
                try:
                    while time.time() < stop_at - 0.5:
                        for m in mounts:
                            started = time.monotonic()
                            out = subprocess.run([os.environ["LEASEFS_BIN"], "status", "--json",
                                                  m.mountpoint], capture_output=True, text=True,
                                                 timeout=30)
                            status_times.append(time.monotonic() - started)
                            self.assertEqual(out.returncode, 0, out.stderr)
                        time.sleep(0.2)
                finally:
                    for p in load:
                        p.join(timeout=RUN_SECONDS + 60)
                    sampling.set()
                    sampler.join()

                bound = LEASE_SECONDS / 4 + 0.1 + SAMPLE_SECONDS
                report = []
                for port in ports:
                    times = renewals[port]
                    gaps = sorted(b - a for a, b in zip(times, times[1:]))
                    self.assertGreaterEqual(len(gaps), RUN_SECONDS / (LEASE_SECONDS / 4) - 4,
                                            f"too few renewals seen: {len(times)}")
                    p99 = gaps[min(len(gaps) - 1, int(len(gaps) * 0.99))]
                    report.append(f"{len(gaps)} intervals, p99 {1000 * p99:.0f} ms, "
                                  f"max {1000 * gaps[-1]:.0f} ms")
                    self.assertLessEqual(p99, bound, f"renewal interval p99 on port {port}")
                status_times.sort()
                p90 = status_times[int(len(status_times) * 0.9)]
                print(f"\nrenewals: {'; '.join(report)} (bound {1000 * bound:.0f} ms); "
                      f"status: {len(status_times)} answers, p90 {1000 * p90:.0f} ms, "
                      f"max {1000 * status_times[-1]:.0f} ms", flush=True)
                self.assertLessEqual(p90, 0.1)
                self.assertLessEqual(status_times[-1], 1.0)
                for m in mounts:
                    self.assertEqual(metrics(ports[mounts.index(m)])["leasefs_fenced"], 0)
            finally:
                stop_all(mounts)


if __name__ == "__main__":
    unittest.main()
