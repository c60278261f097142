#!/usr/bin/env python3
"""bench/wait_cost.py — what a mount that waits for a database costs its lease store.

Two mounts of one directory share a fresh local lease store. A process on mount 0 holds
`BEGIN IMMEDIATE` open for --hold seconds; a process on mount 1 runs `BEGIN IMMEDIATE` with a
busy timeout longer than that, so its SQLite retries the whole time. Prints mount 1's lease-store
requests per second over the middle of the wait (leasefs_store_requests_total from its
Prometheus metrics) and how long the waiter took.

  bench/wait_cost.py --build-dir build [--hold 12]
"""
import argparse
import multiprocessing
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request


def metric(port, name):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith(name + " ") or line.startswith(name + "{"))


def hold(path, seconds):
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO t VALUES (1)")
    time.sleep(seconds)
    conn.execute("COMMIT")


def wait(path, seconds):
    conn = sqlite3.connect(path, timeout=seconds + 10, isolation_level=None)
    started = time.monotonic()
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("COMMIT")
    print(f"waiter got the lock after {time.monotonic() - started:.2f} s", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build-dir", required=True, help="where leasefs is (DIR/leasefs)")
    parser.add_argument("--hold", type=float, default=12.0, help="seconds mount 0 holds the lock")
    parser.add_argument("--ports", default="19301,19302", help="metrics ports of the two mounts")
    args = parser.parse_args()
    binary = os.path.abspath(os.path.join(args.build_dir, "leasefs"))
    if not os.access(binary, os.X_OK):
        sys.exit(f"wait_cost.py: no leasefs binary at {binary}")
    if args.hold < 4:
        sys.exit("wait_cost.py: --hold must be at least 4 seconds")
    ports = [int(p) for p in args.ports.split(",")]
    root = tempfile.mkdtemp(prefix="leasefs-waitcost-")
    os.chmod(root, 0o755)
    src = os.path.join(root, "src")
    os.makedirs(src)
    store = "local:" + os.path.join(root, "store", "leases.db")
    mounts, workers = [], []
    try:
        for i, port in enumerate(ports[:2]):
            mp = os.path.join(root, f"m{i}")
            os.makedirs(mp)
            subprocess.run([binary, "mount", "--lease-store", store, "--metrics-addr",
                            f"127.0.0.1:{port}", src, mp], check=True)
            mounts.append(mp)
        db0, db1 = (os.path.join(mp, "t.db") for mp in mounts)
        conn = sqlite3.connect(db0)
        conn.execute("CREATE TABLE t(x)")
        conn.commit()
        conn.close()
        workers.append(multiprocessing.Process(target=hold, args=(db0, args.hold)))
        workers[-1].start()
        time.sleep(1)
        workers.append(multiprocessing.Process(target=wait, args=(db1, args.hold)))
        workers[-1].start()
        time.sleep(1)
        before, started = metric(ports[1], "leasefs_store_requests_total"), time.monotonic()
        time.sleep(args.hold - 4)
        after, ended = metric(ports[1], "leasefs_store_requests_total"), time.monotonic()
        print(f"waiting mount: {(after - before) / (ended - started):.1f} store requests/s "
              f"over {ended - started:.1f} s", flush=True)
        for w in workers:
            w.join()
    finally:
        for w in workers:
            if w.is_alive():
                w.terminate()
        for mp in reversed(mounts):
            subprocess.run(["umount", mp], check=False)
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
