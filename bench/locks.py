#!/usr/bin/env python3
"""bench/locks.py — what cluster locking costs (issue 3's targets), measured on real mounts.

1. Cached lock cost: one F_SETLK on a leasefs mount whose claim is cached, in units of one plain
   FUSE round trip (fgetxattr of a missing attribute) on the same mount. Target: <= 2.
2. Alternating writers: two leasefs mounts of one SOURCE (two hosts, one local lease store),
   one process on each, strictly taking turns (a token passed through a pipe), each turn one
   write transaction (BEGIN IMMEDIATE; UPDATE; COMMIT). Reports transactions/s combined, the
   lock wait (time BEGIN IMMEDIATE took) p50/p99, and handoffs/s from the mounts' metrics.
   Run with synchronous=FULL (what applications get by default: the disk's fsync dominates)
   and synchronous=OFF (what the locking protocol itself allows). Target: >= 200 tx/s.
   Measured after --warmup-seconds of the same turns: the hosts' first meeting (the first
   holder has never seen another host, so it yields only at its idle release) is not the
   steady state the target is about.

3. With --store dynamodb: the same alternating writers with leases in DynamoDB's API (dynalite, the
   pinned npm package, behind the tests' fault proxy adding --latency-ms to every request, 5 ms by
   default: a same-region DynamoDB round trip). Also reports DynamoDB requests per transaction and
   per handoff, counted by the proxy, and the requests of one idle mount over --idle-seconds (the
   heartbeat), from which bench/README.md estimates the monthly cost. Target: >= 30 tx/s, aim
   <= 3 requests per handoff.

4. Three hosts: py_cluster's concurrency workload (tests/py/test_cluster.py) as a rate. Three
   mounts; on each a BEGIN IMMEDIATE writer, a deferred-BEGIN writer and a reader looping read
   transactions; --three-hosts-per-writer commits per writer. Reports commits/s (the hosts' first
   meeting included, as in the test) and checks the counter. 0 skips it.

Usage: bench/locks.py [--build-dir DIR] [--work-dir DIR] [--seconds S] [--warmup-seconds S]
                      [--store local|dynamodb] [--latency-ms MS] [--idle-seconds S]
                      [--three-hosts-per-writer N]
Every mount and process it starts is cleaned up, also on failure or Ctrl-C.
"""
import argparse
import json
import multiprocessing
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "py"))

MOUNTS = []


def mount(binary, source, mountpoint, *extra):
    os.makedirs(mountpoint, exist_ok=True)
    subprocess.run([binary, "mount", *extra, source, mountpoint], check=True)
    MOUNTS.append(mountpoint)


def unmount_all():
    while MOUNTS:
        mp = MOUNTS.pop()
        for _ in range(20):
            if subprocess.run(["fusermount3", "-u", mp], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        else:
            subprocess.run(["fusermount3", "-u", "-z", mp], capture_output=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metric(port, name):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise KeyError(name)


def cached_lock_cost(build, work):
    src, mnt = os.path.join(work, "lock-src"), os.path.join(work, "lock-mnt")
    os.makedirs(src)
    mount(os.path.join(build, "leasefs"), src, mnt, "--lease-store",
          f"local:{os.path.join(work, 'leases-lock.db')}")
    out = subprocess.run([os.path.join(build, "leasefs-lockbench"), os.path.join(mnt, "f"),
                          "50000"], capture_output=True, text=True, check=True).stdout
    unmount_all()
    return json.loads(out)


def turn_taker(path, synchronous, first, my_turn, their_turn, deadline, results):
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    conn.execute(f"PRAGMA synchronous={synchronous}")
    waits, done = [], 0
    if not first:
        my_turn.recv()
    while True:
        if time.monotonic() >= deadline:
            their_turn.send("stop")
            break
        started = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        waits.append(time.perf_counter() - started)
        conn.execute("UPDATE counter SET n = n + 1")
        conn.execute("COMMIT")
        done += 1
        their_turn.send("go")
        if my_turn.recv() == "stop":
            break
    conn.close()
    results.put((done, waits))


def store_uri(work, tag, dynamo):
    if dynamo is None:
        return "local:" + os.path.join(work, f"leases-{tag}.db")
    return dynamo.store_uri(dynamo.new_table())


def idle_requests(build, work, seconds, dynamo):
    """Store requests of one mount at rest, after its idle release: the heartbeat."""
    src, mnt = os.path.join(work, "idle-src"), os.path.join(work, "idle-mnt")
    os.makedirs(src)
    mount(os.path.join(build, "leasefs"), src, mnt, "--lease-store", store_uri(work, "idle", dynamo))
    conn = sqlite3.connect(os.path.join(mnt, "idle.db"), isolation_level=None)
    conn.execute("CREATE TABLE t(x)")
    conn.execute("INSERT INTO t VALUES (1)")
    # Start once the mount has released its claims (idle_release after the INSERT) and a second
    # passes without any request but its heartbeat (one every 2.5 s).
    give_up = time.monotonic() + 60
    while time.monotonic() < give_up:
        status = json.loads(subprocess.run([os.path.join(build, "leasefs"), "status", "--json", mnt],
                                           capture_output=True, text=True, check=True).stdout)
        if not any(db["claims"] for db in status["databases"]):
            break
        time.sleep(0.1)
    quiet_since, last = time.monotonic(), sum(dynamo.proxy.snapshot().values())
    give_up = time.monotonic() + 60
    while time.monotonic() - quiet_since < 1.0 and time.monotonic() < give_up:
        time.sleep(0.1)
        now = sum(dynamo.proxy.snapshot().values())
        if now != last:
            quiet_since, last = time.monotonic(), now
    before = dynamo.proxy.snapshot()
    time.sleep(seconds)  # measuring idleness: nothing to wait for but time
    after = dynamo.proxy.snapshot()
    conn.close()
    unmount_all()
    return {op: (after.get(op, 0) - before.get(op, 0)) / seconds for op in after}


def three_hosts(build, work, per_writer, dynamo):
    """py_cluster's 3-mount workload; (commits, reads, torn, seconds)."""
    from test_cluster import counter_value, create_counter, run_counter_workload
    src = os.path.join(work, "three-src")
    os.makedirs(src)
    store = store_uri(work, "three", dynamo)
    mounts = []
    for i in range(3):
        mounts.append(os.path.join(work, f"three-mnt{i}"))
        mount(os.path.join(build, "leasefs"), src, mounts[-1], "--lease-store", store)
    paths = [os.path.join(m, "counter.db") for m in mounts]
    create_counter(paths[0], "delete")
    started = time.monotonic()
    committed, reads, torn, codes = run_counter_workload(paths, per_writer)
    elapsed = time.monotonic() - started
    value = counter_value(paths[0])
    unmount_all()
    if codes != [0] * len(codes) or value != (committed, "ok"):
        raise RuntimeError(f"three hosts: exit codes {codes}, counter {value}, {committed} commits")
    return committed, reads, torn, elapsed


def take_turns(mounts, synchronous, seconds):
    """One process per mount taking strict turns for `seconds`; [(transactions, waits)]."""
    a_to_b_recv, a_to_b_send = multiprocessing.Pipe(duplex=False)
    b_to_a_recv, b_to_a_send = multiprocessing.Pipe(duplex=False)
    results = multiprocessing.Queue()
    deadline = time.monotonic() + seconds
    procs = [
        multiprocessing.Process(target=turn_taker, args=(
            os.path.join(mounts[0], "alt.db"), synchronous, True, b_to_a_recv, a_to_b_send,
            deadline, results)),
        multiprocessing.Process(target=turn_taker, args=(
            os.path.join(mounts[1], "alt.db"), synchronous, False, a_to_b_recv, b_to_a_send,
            deadline, results)),
    ]
    for p in procs:
        p.start()
    try:
        return [results.get(timeout=seconds + 120) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()


def alternating(build, work, seconds, synchronous, dynamo=None, warmup=2.0):
    tag = f"alt-{synchronous.lower()}"
    src = os.path.join(work, f"{tag}-src")
    os.makedirs(src)
    store = store_uri(work, tag, dynamo)
    ports = [free_port(), free_port()]
    mounts = [os.path.join(work, f"{tag}-host{i}") for i in range(2)]
    for mp, port in zip(mounts, ports):
        mount(os.path.join(build, "leasefs"), src, mp, "--lease-store", store,
              "--metrics-addr", f"127.0.0.1:{port}")
    setup = sqlite3.connect(os.path.join(mounts[0], "alt.db"), isolation_level=None)
    setup.execute("PRAGMA journal_mode=delete")
    setup.execute("CREATE TABLE counter(n INTEGER)")
    setup.execute("INSERT INTO counter VALUES (0)")
    setup.close()
    # Warm up first: the hosts' first meeting (the first holder, never having seen another
    # host, yields only at its idle release or its look for demand, up to L/4) is not the steady
    # state the targets are about.
    warmed_up = sum(o[0] for o in take_turns(mounts, synchronous, warmup))
    ops_before = dynamo.proxy.snapshot() if dynamo else {}
    handoffs_before = sum(metric(p, "leasefs_handoffs_total") for p in ports)
    requests_before = sum(metric(p, "leasefs_store_requests_total") for p in ports)
    started = time.monotonic()
    outcomes = take_turns(mounts, synchronous, seconds)
    elapsed = time.monotonic() - started
    handoffs = sum(metric(p, "leasefs_handoffs_total") for p in ports) - handoffs_before
    requests = sum(metric(p, "leasefs_store_requests_total") for p in ports) - requests_before
    ops_after = dynamo.proxy.snapshot() if dynamo else {}
    check = sqlite3.connect(os.path.join(mounts[1], "alt.db"))
    (n,) = check.execute("SELECT n FROM counter").fetchone()
    check.close()
    unmount_all()
    done = sum(o[0] for o in outcomes)
    per_op = {op: (ops_after[op] - ops_before.get(op, 0)) / max(done, 1) for op in ops_after}
    waits = sorted(w for o in outcomes for w in o[1])
    if n != done + warmed_up:
        raise SystemExit(f"lost updates in the benchmark: counter {n}, "
                         f"committed {done + warmed_up}")
    return {
        "synchronous": synchronous,
        "tx_per_s": done / elapsed,
        "lock_wait_p50_ms": 1000 * statistics.median(waits),
        "lock_wait_p99_ms": 1000 * waits[min(len(waits) - 1, int(len(waits) * 0.99))],
        "handoffs_per_s": handoffs / elapsed,
        "transactions": done,
        "requests_per_tx": requests / max(done, 1),
        "requests_per_handoff": requests / max(handoffs, 1),
        "requests_per_tx_by_operation": per_op,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build-dir", default="build")
    parser.add_argument("--work-dir", default=None)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--warmup-seconds", type=float, default=2,
                        help="alternate this long before measuring")
    parser.add_argument("--store", choices=("local", "dynamodb"), default="local")
    parser.add_argument("--latency-ms", type=float, default=5,
                        help="with --store dynamodb: latency added to every request")
    parser.add_argument("--three-hosts-per-writer", type=int, default=40,
                        help="commits per writer in the three-host workload (0: skip it)")
    parser.add_argument("--idle-seconds", type=float, default=30,
                        help="with --store dynamodb: how long to count an idle mount's requests")
    args = parser.parse_args()
    build = os.path.abspath(args.build_dir)
    dynamo = None
    if args.store == "dynamodb":
        os.environ["LEASEFS_BIN"] = os.path.join(build, "leasefs")  # before importing harness
        import dynamo as dynamo_module  # tests/py/dynamo.py: dynalite + the fault proxy
        dynamo = dynamo_module.backend()
        dynamo.proxy.set("pass", latency=args.latency_ms / 1000)
    work = tempfile.mkdtemp(prefix="leasefs-locks-", dir=args.work_dir)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        if dynamo is None:
            cost = cached_lock_cost(build, work)
            print(f"cached lock call: {cost['lock_ns'] / 1000:.1f} us; FUSE round trip: "
                  f"{cost['roundtrip_ns'] / 1000:.1f} us; "
                  f"ratio {cost['lock_ns'] / cost['roundtrip_ns']:.2f} (target <= 2)")
        else:
            print(f"store: dynalite behind a proxy adding {args.latency_ms:g} ms per request")
        if dynamo is not None:  # first: no other mount's shutdown can fall into its window
            rates = idle_requests(build, work, args.idle_seconds, dynamo)
            total = sum(rates.values())
            print(f"idle mount: {total:.3f} DynamoDB requests/s over {args.idle_seconds:g} s "
                  f"({total * 86400 * 30:.0f} per 30-day month): " + ", ".join(
                      f"{op} {n:.3f}/s" for op, n in sorted(rates.items()) if n))
        target = ">= 200 tx/s" if dynamo is None else ">= 30 tx/s, <= 3 requests/handoff"
        for synchronous in ("FULL", "OFF"):
            r = alternating(build, work, args.seconds, synchronous, dynamo, args.warmup_seconds)
            print(f"alternating writers, synchronous={synchronous}: {r['tx_per_s']:.0f} tx/s "
                  f"({r['transactions']} tx), lock wait p50 {r['lock_wait_p50_ms']:.2f} ms "
                  f"p99 {r['lock_wait_p99_ms']:.2f} ms, {r['handoffs_per_s']:.0f} handoffs/s, "
                  f"{r['requests_per_tx']:.2f} store requests/tx, "
                  f"{r['requests_per_handoff']:.2f} per handoff (target {target})")
            if r["requests_per_tx_by_operation"]:
                print("  DynamoDB requests per transaction: " + ", ".join(
                    f"{op} {n:.2f}" for op, n in sorted(r["requests_per_tx_by_operation"].items())
                    if n))
        if args.three_hosts_per_writer > 0:
            committed, reads, torn, elapsed = three_hosts(build, work, args.three_hosts_per_writer,
                                                          dynamo)
            print(f"three hosts, 2 writers + 1 reader each: {committed} commits in {elapsed:.1f} s "
                  f"({committed / elapsed:.0f} tx/s, first meeting included), {reads} reads, "
                  f"{torn} torn")
    finally:
        unmount_all()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
