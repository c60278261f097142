#!/usr/bin/env python3
"""bench/write_phases.py — where a write transaction's time goes, phase by phase.

Two mounts (hosts) of one directory share a fresh local lease store. Each mount runs one writer
(BEGIN IMMEDIATE; an UPDATE and an INSERT; COMMIT, then PAUSE ms of sleep) and one reader
(SELECTs as fast as it can, persistent connection), rollback journal, busy_timeout 5 s. Prints,
over all writers, p50/p90/p99/max of the three phases: BEGIN (RESERVED: waits for the other
host's writer), the body, and COMMIT (EXCLUSIVE: waits for every reader's SHARED), and lists the
transactions slower than --slow-ms with their phases and start times, to find them in the
daemons' logs (`--keep-logs DIR -- --log-level trace` keeps them, with every store request).
Fails if a write fails or the counter is not exact.

  bench/write_phases.py --build-dir build [--writes 300] [--pause-ms 30] [-- MOUNT_ARGS]

The trace behind DESIGN 3.5 "Writers' claims": with a build from before them, COMMIT max was
350-660 ms and the first BEGIN on the second mount took 1.5 s every run; after, both stayed under
0.2 s. Arguments after `--` go to every `leasefs mount`.
"""
import multiprocessing
import os
import shutil
import sqlite3
import sys
import time

from cluster_bench import parse_command_line


def reader(path, stop):
    conn = sqlite3.connect(path, timeout=5)
    while not stop.is_set():
        conn.execute("SELECT count(*) FROM t").fetchone()
        conn.execute("SELECT v FROM c").fetchone()
    conn.close()


def writer(path, writes, pause, results):
    conn = sqlite3.connect(path, timeout=5, isolation_level=None)
    phases, errors = [], []
    for i in range(writes):
        t0 = time.time()
        try:
            conn.execute("BEGIN IMMEDIATE")
            t1 = time.time()
            conn.execute("UPDATE c SET v = v + 1")
            conn.execute("INSERT INTO t VALUES (?)", (i,))
            t2 = time.time()
            conn.execute("COMMIT")
            t3 = time.time()
        except sqlite3.Error as e:
            errors.append(f"{path}: write {i}: {e}")
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            continue
        phases.append((t0, t1 - t0, t2 - t1, t3 - t2))
        time.sleep(pause)
    conn.close()
    results.put((path, phases, errors))


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(p * len(values)))]


def add_arguments(parser):
    parser.add_argument("--writes", type=int, default=300, help="write transactions per writer")
    parser.add_argument("--pause-ms", type=float, default=30, help="sleep after each commit")
    parser.add_argument("--slow-ms", type=float, default=300, help="list transactions slower")
    parser.add_argument("--keep-logs", help="copy the mounts' daemon logs into this directory")


def main():
    args, mount_args, binary = parse_command_line(__doc__, add_arguments)
    if args.writes < 1 or args.pause_ms < 0:
        sys.exit("write_phases.py: --writes must be at least 1 and --pause-ms not negative")
    from harness import temp_root
    from test_cluster import start_cluster, stop_all

    print(f"# bench/write_phases.py {' '.join(sys.argv[1:])}")
    print(f"# 2 mounts x (1 writer: {args.writes} writes, {args.pause_ms:g} ms apart; 1 reader), "
          f"journal_mode=delete, leasefs {binary}")
    with temp_root() as root:
        mounts = start_cluster(root, 2, *mount_args)
        stop = multiprocessing.Event()
        processes = []
        try:
            paths = [os.path.join(m.mountpoint, "phases.db") for m in mounts]
            conn = sqlite3.connect(paths[0])
            conn.executescript("CREATE TABLE t(x); CREATE TABLE c(v); INSERT INTO c VALUES (0);")
            conn.close()
            results = multiprocessing.Queue()
            processes = [multiprocessing.Process(target=reader, args=(p, stop)) for p in paths]
            for p in processes:
                p.start()
            time.sleep(1)  # the readers hold their claims before the first write
            writers = [multiprocessing.Process(target=writer, args=(p, args.writes,
                                                                   args.pause_ms / 1000, results))
                       for p in paths]
            processes += writers
            for w in writers:
                w.start()
            outcomes = [results.get(timeout=600) for _ in writers]
            stop.set()
            for p in processes:
                p.join(timeout=60)
            conn = sqlite3.connect(paths[1])
            counter = conn.execute("SELECT v FROM c").fetchone()[0]
            check = conn.execute("PRAGMA integrity_check").fetchone()[0]
            conn.close()
        finally:
            stop.set()
            for p in processes:
                if p.is_alive():
                    p.kill()
                    p.join()
            stop_all(mounts)
            if args.keep_logs:
                os.makedirs(args.keep_logs, exist_ok=True)
                for i, m in enumerate(mounts):
                    shutil.copy(m.log_path, os.path.join(args.keep_logs, f"mount{i}.log"))
    phases = [ph for _, got, _ in outcomes for ph in got]
    errors = [e for _, _, errs in outcomes for e in errs]
    for k, name in ((1, "BEGIN"), (2, "body"), (3, "COMMIT")):
        values = [ph[k] * 1000 for ph in phases]
        print(f"{name:7} ms  p50 {percentile(values, .5):7.1f}  p90 {percentile(values, .9):7.1f}"
              f"  p99 {percentile(values, .99):7.1f}  max {max(values):7.1f}")
    for path, got, _ in outcomes:
        for index, (t0, begin, body, commit) in enumerate(got):
            if (begin + body + commit) * 1000 > args.slow_ms:
                print(f"slow: {os.path.basename(os.path.dirname(path))} write {index} at "
                      f"{time.strftime('%H:%M:%S', time.gmtime(t0))}.{int(t0 % 1 * 1000):03d} UTC: "
                      f"BEGIN {begin * 1000:.0f} ms, body {body * 1000:.0f}, COMMIT {commit * 1000:.0f}")
    for e in errors:
        print("error:", e)
    exact = counter == len(phases) and check == "ok" and not errors
    print(f"counter {counter} = {len(phases)} commits, integrity_check {check}: "
          f"{'ok' if exact else 'WRONG'}")
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main())
