#!/usr/bin/env python3
"""bench/app.py — a web application's SQLite traffic on several leasefs mounts (issue 12).

The workload is shaped like gunicorn/Django workers behind a load balancer: on each mount ("host")
--workers processes, each with ONE persistent sqlite3 connection (busy_timeout 5000 ms), loop
requests back to back for --seconds (after --warmup-seconds of the same loop, not measured):

  read  (100 - --write-percent % of requests):  BEGIN; SELECT one item by a random id;
        SELECT the 10 newest log rows; COMMIT
  write (--write-percent %, default 10):  BEGIN IMMEDIATE; UPDATE the counter row (n = n + 1);
        INSERT a log row (worker, time, text); COMMIT

--connection-per-request opens and closes a connection around every request instead. The
database (1000 items, a counter row, a log table) is created fresh in --journal-mode (DELETE by
default; TRUNCATE, PERSIST or WAL) with synchronous=--synchronous (FULL: what applications get).
Workers are separate processes, started and connected before the timed window; requests/s counts
the requests that succeeded and ended inside the window, over its length. No request starts after
the window; latencies (per successful request, opening and closing the connection included with
--connection-per-request) and errors (counted by message) cover every request that overlaps the
window, so a stall across either edge is not lost.

The same workload runs three times in one invocation, each on a fresh directory and lease store:

  plain     a plain directory (one host, kernel locks), --workers x --mounts workers
  1 mount   ONE leasefs mount with the same total number of workers
  N mounts  --mounts leasefs mounts of one SOURCE, --workers each (skipped when --mounts is 1)

and the N-mount totals are printed as ratios to both, with each mount's share of the total.

Per leasefs mount, from its Prometheus metrics (--metrics-addr; names in lock/src/status.cc)
over the window: lease-store requests/s (leasefs_store_requests_total), SQLITE_BUSY answers
(leasefs_lock_busy_total), handoffs (leasefs_handoffs_total) and renewals
(leasefs_renewals_total). A thread per mount samples the metrics every --sample-ms (50) during the
run: the largest and the p99 gap between two observed renewals (the renewal interval, +- one
sample), and the smallest leasefs_lease_deadline_seconds seen (how close the mount came to being
fenced).

At the end the data is checked on every configuration: the counter equals the number of
successful writes (window, warm-up and requests in flight at the end alike), equals the number of
log rows, each worker's log rows equal its successful writes, and PRAGMA integrity_check is ok;
read through the last mount while mounted and again from SOURCE after unmounting. Any mismatch
prints a loud FAILED line and the exit status is 1.

--store dynamodb keeps the leases in DynamoDB's API: dynalite (the pinned npm package) behind the
tests' fault proxy (tests/py/dynamo.py) adding --latency-ms (5) to every request, a fresh table per
configuration; the proxy's request counts per DynamoDB operation are reported too.

The issue's targets are printed with "met" / "NOT met": N mounts >= 0.8x one mount (two mounts;
three: >= 0.7x; DynamoDB two mounts: >= 0.5x), each mount >= 25 % of the total, p99 <= 50 ms
reads / <= 100 ms writes, max <= 1 s, zero errors. They are checked, not enforced: the exit
status reflects the data check and failures of the benchmark itself only.

Usage: bench/app.py [--build-dir DIR] [--work-dir DIR] [--seconds S] [--warmup-seconds S]
                    [--workers K] [--mounts N] [--write-percent P]
                    [--journal-mode delete|truncate|persist|wal] [--synchronous MODE]
                    [--store local|dynamodb] [--latency-ms MS] [--connection-per-request]
                    [--no-baselines] [--json OUT]
Every mount and process it starts is cleaned up, also on failure or Ctrl-C (exit 128+signal).
"""
import argparse
import collections
import datetime
import json
import math
import multiprocessing
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "py"))

ITEMS = 1000
BUSY_TIMEOUT_S = 5.0
MOUNTS = []    # (mountpoint, daemon, log) of this run's mounts, unmounted in reverse order
WORKERS = []   # live worker processes, killed before any unmount


class Interrupted(BaseException):
    """Raised from a signal handler; not an Exception, so no error handling swallows it."""

    def __init__(self, signum):
        super().__init__(f"interrupted by signal {signum}")
        self.signum = signum


class CheckFailed(Exception):
    """The data did not add up: lost or phantom writes, or a damaged database."""


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# --- mounts -----------------------------------------------------------------------------------
# Each daemon runs in the foreground as our child (as bench/run.py does): in its own session, so a
# terminal's Ctrl-C reaches this script and not the daemons, which are stopped after the workers;
# with PR_SET_PDEATHSIG, so even a killed script leaves no daemon serving; and waited for after
# its unmount, because a daemon's last act is to release its session in the lease store, which
# lives in the work directory that is removed next.

def _die_with_parent():
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def mounted(path):
    path = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


def log_tail(path, lines=20):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


def mount(binary, source, mountpoint, *extra):
    os.makedirs(mountpoint, exist_ok=True)
    log_path = mountpoint + ".log"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen([binary, "mount", "-f", *extra, source, mountpoint],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, preexec_fn=_die_with_parent)
    MOUNTS.append((mountpoint, proc, log_path))
    deadline = time.monotonic() + 15
    while not mounted(mountpoint):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"leasefs did not mount {mountpoint} (status {proc.poll()}):\n"
                               + log_tail(log_path))
        time.sleep(0.02)


def unmount_all():
    """Unmounts newest first and waits for each daemon; returns the problems seen."""
    problems = []
    while MOUNTS:
        mp, proc, log_path = MOUNTS.pop()
        for _ in range(20):
            if not mounted(mp) or subprocess.run(["fusermount3", "-u", mp],
                                                 capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        else:
            subprocess.run(["fusermount3", "-u", "-z", mp], capture_output=True)
        try:
            code = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
            problems.append(f"leasefs on {mp} did not exit after its unmount: killed")
        if code != 0:
            problems.append(f"leasefs on {mp} exited with status {code}:\n{log_tail(log_path)}")
    return problems


def stop_workers(grace=0.0):
    """Ends every worker: those that finished get `grace` seconds to exit on their own."""
    deadline = time.monotonic() + grace
    while WORKERS:
        p = WORKERS.pop()
        p.join(timeout=max(0.0, deadline - time.monotonic()))
        if p.is_alive():
            p.terminate()
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
                p.join(timeout=10)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_metrics(port):
    """Every leasefs_* sample of one mount: {name: value}."""
    out = {}
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("leasefs_"):
                name, value = line.split()[:2]
                out[name] = float(value)
    return out


class Sampler(threading.Thread):
    """Reads one mount's metrics every `period` seconds until stopped: [(monotonic, {name: v})]."""

    def __init__(self, port, period):
        super().__init__(daemon=True)
        self.port, self.period = port, period
        self.samples, self.failures = [], 0
        self.done = threading.Event()

    def run(self):
        next_at = time.monotonic()
        while not self.done.is_set():
            t = time.monotonic()
            try:
                self.samples.append((t, read_metrics(self.port)))
            except Exception:  # noqa: BLE001 - counted and reported; the next sample may work
                self.failures += 1
            next_at += self.period
            self.done.wait(max(0.0, next_at - time.monotonic()))

    def stop(self):
        self.done.set()
        self.join(timeout=10)


# --- the workload ------------------------------------------------------------------------------

def create_database(path, journal_mode):
    conn = sqlite3.connect(path, isolation_level=None)
    mode = conn.execute(f"PRAGMA journal_mode={journal_mode}").fetchone()[0]
    if mode.lower() != journal_mode:
        raise RuntimeError(f"journal_mode={journal_mode} not taken: {mode}")
    conn.execute("BEGIN")
    conn.execute("CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT, value INTEGER)")
    conn.execute("CREATE TABLE counter(id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
    conn.execute("CREATE TABLE log(id INTEGER PRIMARY KEY, worker INTEGER NOT NULL, "
                 "at REAL NOT NULL, note TEXT)")
    conn.executemany("INSERT INTO items VALUES (?, ?, ?)",
                     ((i, f"item {i}", i * 7 % 1000) for i in range(1, ITEMS + 1)))
    conn.execute("INSERT INTO counter VALUES (1, 0)")
    conn.execute("COMMIT")
    conn.close()


def connect(path, journal_mode, synchronous):
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    try:
        if journal_mode in ("truncate", "persist"):  # per connection; DELETE is the default, WAL
            conn.execute(f"PRAGMA journal_mode={journal_mode}")  # is kept in the database file
        conn.execute(f"PRAGMA synchronous={synchronous}")
    except BaseException:
        conn.close()
        raise
    return conn


def read_request(conn, rng):
    conn.execute("BEGIN")
    conn.execute("SELECT name, value FROM items WHERE id = ?",
                 (rng.randint(1, ITEMS),)).fetchall()
    conn.execute("SELECT id, worker, at, note FROM log ORDER BY id DESC LIMIT 10").fetchall()
    conn.execute("COMMIT")


def write_request(conn, worker_id, state):
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("UPDATE counter SET n = n + 1 WHERE id = 1")
    conn.execute("INSERT INTO log(worker, at, note) VALUES (?, ?, ?)",
                 (worker_id, time.time(), "request served"))
    state["stage"] = "commit"
    conn.execute("COMMIT")


def worker(worker_id, path, opts, ready, go, schedule, results):
    """One application worker; puts one result dict into `results` when the window is over."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the parent stops us (Ctrl-C reaches it too)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the parent's handler: terminate() ends us
    rng = random.Random(worker_id * 7919 + 1)
    per_request = opts["connection_per_request"]
    conn = None
    setup_error = None
    if not per_request:
        try:
            conn = connect(path, opts["journal_mode"], opts["synchronous"])
        except sqlite3.Error as e:  # e.g. WAL open on another host: retried in the loop
            setup_error = str(e)
    ready.put(worker_id)
    go.wait()
    begin, window_start, window_end = schedule[:]
    while time.monotonic() < begin:
        time.sleep(max(0.0, begin - time.monotonic()))

    latencies = {"read": [], "write": []}  # successful requests that overlap the window
    completed = {"read": 0, "write": 0}      # successful requests that ended inside it
    errors = collections.Counter()          # "read: database is locked" -> count, in the window
    warmup_errors = collections.Counter()
    per_second = collections.Counter()      # second of the window -> requests completed in it
    committed = 0                           # successful writes, window or not
    commit_errors = 0                       # writes whose COMMIT itself failed (outcome unsure)
    while time.monotonic() < window_end:    # no request starts after the window
        kind = "write" if rng.random() * 100 < opts["write_percent"] else "read"
        t0 = time.perf_counter()
        state = {"stage": "open"}
        error = None
        try:
            if conn is None:
                conn = connect(path, opts["journal_mode"], opts["synchronous"])
            state["stage"] = "request"
            if kind == "read":
                read_request(conn, rng)
            else:
                write_request(conn, worker_id, state)
                committed += 1
        except sqlite3.Error as e:
            error = f"{kind}: {e}"
            if state["stage"] == "open":
                if conn is not None:
                    conn.close()
                conn = None
            elif conn.in_transaction:  # e.g. COMMIT answered SQLITE_BUSY: nothing was written
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            elif state["stage"] == "commit":  # COMMIT failed and ended the transaction
                commit_errors += 1
        if per_request and conn is not None:
            conn.close()  # part of the request: it drops the locks
            conn = None
        elapsed = time.perf_counter() - t0
        ended = time.monotonic()
        if ended <= window_start:
            if error:
                warmup_errors[error] += 1
        elif error:
            errors[error] += 1
        else:
            latencies[kind].append(elapsed)
            if ended <= window_end:
                completed[kind] += 1
                per_second[int(ended - window_start)] += 1
    if conn is not None:
        conn.close()
    results.put({"worker": worker_id, "latencies": latencies, "completed": completed,
                 "errors": dict(errors),
                 "warmup_errors": dict(warmup_errors), "committed": committed,
                 "commit_errors": commit_errors,
                 "setup_error": setup_error, "per_second": dict(per_second)})


# --- one configuration -------------------------------------------------------------------------

def percentile(sorted_values, p):
    """Nearest-rank percentile of an ascending list (None when empty)."""
    if not sorted_values:
        return None
    return sorted_values[max(0, math.ceil(p / 100 * len(sorted_values)) - 1)]


def latency_summary(values):
    values = sorted(values)
    ms = lambda v: None if v is None else 1000 * v  # noqa: E731
    return {"count": len(values), "p50_ms": ms(percentile(values, 50)),
            "p99_ms": ms(percentile(values, 99)), "max_ms": ms(values[-1] if values else None)}


def window_metrics(samples, window_start, window_end):
    """Counters over the window from one mount's samples, and the renewal gaps."""
    inside = [(t, m) for t, m in samples if window_start <= t <= window_end]
    if len(inside) < 2:
        return None
    (t0, first), (t1, last) = inside[0], inside[-1]
    span = t1 - t0
    delta = lambda name: last.get(name, 0) - first.get(name, 0)  # noqa: E731
    renewed_at = [t for (_, a), (t, b) in zip(inside, inside[1:])
                  if b.get("leasefs_renewals_total", 0) > a.get("leasefs_renewals_total", 0)]
    gaps = sorted(b - a for a, b in zip(renewed_at, renewed_at[1:]))
    # The time since the last renewal seen is a gap too (still open at the end): it bounds the max.
    open_gap = t1 - (renewed_at[-1] if renewed_at else t0)
    margins = [m["leasefs_lease_deadline_seconds"] for _, m in inside
               if "leasefs_lease_deadline_seconds" in m]
    return {
        "span_s": span,
        "samples": len(inside),
        "store_requests": delta("leasefs_store_requests_total"),
        "store_requests_per_s": delta("leasefs_store_requests_total") / span,
        "store_errors": delta("leasefs_store_errors_total"),
        "store_seconds": delta("leasefs_store_request_seconds_total"),
        "lock_requests": delta("leasefs_lock_requests_total"),
        "lock_busy": delta("leasefs_lock_busy_total"),
        "lock_holds": delta("leasefs_lock_holds_total"),
        "lock_hold_grants": delta("leasefs_lock_hold_grants_total"),
        "handoffs": delta("leasefs_handoffs_total"),
        "handoffs_per_s": delta("leasefs_handoffs_total") / span,
        "wasted_handoffs": delta("leasefs_wasted_handoffs_total"),
        "renewals": delta("leasefs_renewals_total"),
        "renewal_failures": delta("leasefs_renewal_failures_total"),
        "renewal_gap_max_s": max(gaps + [open_gap]),
        "renewal_gap_p99_s": percentile(gaps, 99),
        "lease_margin_min_s": min(margins) if margins else None,
        "fenced_writes": delta("leasefs_fenced_writes_total"),
    }


def check_data(path, outcomes, where):
    """Raises CheckFailed unless the database holds exactly the writes the workers committed."""
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        conn.execute("BEGIN")
        (n,) = conn.execute("SELECT n FROM counter WHERE id = 1").fetchone()
        (rows,) = conn.execute("SELECT count(*) FROM log").fetchone()
        per_worker = dict(conn.execute("SELECT worker, count(*) FROM log GROUP BY worker"))
        conn.execute("COMMIT")
        integrity = [r[0] for r in conn.execute("PRAGMA integrity_check")]
    finally:
        conn.close()
    committed = sum(o["committed"] for o in outcomes)
    problems = []
    if n != committed:
        problems.append(f"counter {n} != {committed} successful writes")
    if rows != n:
        problems.append(f"{rows} log rows != counter {n}")
    for o in outcomes:
        if per_worker.get(o["worker"], 0) != o["committed"]:
            problems.append(f"worker {o['worker']}: {per_worker.get(o['worker'], 0)} log rows != "
                            f"{o['committed']} successful writes")
    if integrity != ["ok"]:
        problems.append(f"integrity_check: {'; '.join(integrity[:5])}")
    unsure = sum(o["commit_errors"] for o in outcomes)
    if problems and unsure:
        problems.append(f"({unsure} COMMITs failed with the transaction ended: their outcome "
                        "is unknown to the application)")
    if problems:
        raise CheckFailed(f"{where}: " + "; ".join(problems))
    return {"counter": n, "log_rows": rows, "integrity": "ok"}


def run_config(name, opts, work, dynamo, leasefs, mounts, workers_per_host):
    """Runs the workload on `mounts` leasefs mounts (0: a plain directory) with
    `workers_per_host` workers on each; returns the result dict."""
    tag = name.replace(" ", "-")
    source = os.path.join(work, f"{tag}-src")
    os.makedirs(source)
    hosts, ports, store = [], [], None
    if mounts == 0:
        hosts = [source]
    else:
        store = ("local:" + os.path.join(work, f"{tag}-leases.db") if dynamo is None
                 else dynamo.store_uri(dynamo.new_table()))
        for i in range(mounts):
            hosts.append(os.path.join(work, f"{tag}-host{i}"))
            ports.append(free_port())
            mount(leasefs, source, hosts[-1], "--lease-store", store,
                  "--metrics-addr", f"127.0.0.1:{ports[-1]}", *opts["mount_args"])
    db = "app.db"
    create_database(os.path.join(hosts[0], db), opts["journal_mode"])

    ctx = multiprocessing.get_context("fork")
    ready, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    schedule = ctx.Array("d", 3, lock=False)
    host_of = {}
    for h, host in enumerate(hosts):
        for k in range(workers_per_host):
            wid = len(host_of) + 1
            host_of[wid] = h
            p = ctx.Process(target=worker, name=f"app-worker-{wid}",
                            args=(wid, os.path.join(host, db), opts, ready, go, schedule, results))
            p.start()
            WORKERS.append(p)
    n_workers = len(host_of)
    for i in range(n_workers):
        try:
            ready.get(timeout=60)
        except Exception:  # queue.Empty
            raise RuntimeError(f"{name}: only {i} of {n_workers} workers started") from None
    samplers = [Sampler(port, opts["sample_ms"] / 1000) for port in ports]
    for s in samplers:
        s.start()
    begin = time.monotonic() + 0.3
    window_start = begin + opts["warmup_seconds"]
    window_end = window_start + opts["seconds"]
    schedule[:] = [begin, window_start, window_end]
    proxy_before = proxy_after = None
    outcomes = []
    go.set()
    try:
        if dynamo is not None:  # the proxy's counts over the window (workers report after it)
            time.sleep(max(0.0, window_start - time.monotonic()))
            proxy_before = dynamo.proxy.snapshot()
            time.sleep(max(0.0, window_end - time.monotonic()))
            proxy_after = dynamo.proxy.snapshot()
        deadline = window_end + BUSY_TIMEOUT_S + 60
        while len(outcomes) < n_workers:
            try:
                outcomes.append(results.get(timeout=1))
            except Exception:  # queue.Empty
                dead = [p.name for p in WORKERS if p.exitcode not in (None, 0)]
                if dead or time.monotonic() > deadline:
                    raise RuntimeError(f"{name}: workers {dead or 'timed out'} "
                                       f"({len(outcomes)} of {n_workers} reported)")
    finally:
        for s in samplers:
            s.stop()
        stop_workers(grace=10 if len(outcomes) == n_workers else 0)

    result = {"name": name, "mounts": mounts, "workers_per_host": workers_per_host,
              "workers": n_workers, "seconds": opts["seconds"], "hosts": []}
    for h in range(len(hosts)):
        mine = [o for o in outcomes if host_of[o["worker"]] == h]
        reads = [v for o in mine for v in o["latencies"]["read"]]
        writes = [v for o in mine for v in o["latencies"]["write"]]
        errors = collections.Counter()
        for o in mine:
            errors.update(o["errors"])
        per_second = collections.Counter()
        for o in mine:
            per_second.update({int(k): v for k, v in o["per_second"].items()})
        n_reads = sum(o["completed"]["read"] for o in mine)
        n_writes = sum(o["completed"]["write"] for o in mine)
        host = {
            "host": h,
            "requests_per_s": (n_reads + n_writes) / opts["seconds"],
            "reads_per_s": n_reads / opts["seconds"],
            "writes_per_s": n_writes / opts["seconds"],
            "errors": dict(errors),
            "errors_total": sum(errors.values()),
            "warmup_errors": sum(sum(o["warmup_errors"].values()) for o in mine),
            "read_latency": latency_summary(reads),
            "write_latency": latency_summary(writes),
            # requests completed in the window's slowest whole second: a stall shows as ~0
            "slowest_second_requests": min((per_second.get(i, 0)
                                            for i in range(int(opts["seconds"]))), default=None),
            "setup_errors": [o["setup_error"] for o in mine if o["setup_error"]],
        }
        if ports:
            host["metrics"] = window_metrics(samplers[h].samples, window_start, window_end)
            host["metric_sample_failures"] = samplers[h].failures
        result["hosts"].append(host)
    result["requests_per_s"] = sum(h["requests_per_s"] for h in result["hosts"])
    result["errors_total"] = sum(h["errors_total"] for h in result["hosts"])
    for h in result["hosts"]:
        h["share"] = (h["requests_per_s"] / result["requests_per_s"]
                      if result["requests_per_s"] else 0.0)
    all_reads = [v for o in outcomes for v in o["latencies"]["read"]]
    all_writes = [v for o in outcomes for v in o["latencies"]["write"]]
    result["read_latency"] = latency_summary(all_reads)
    result["write_latency"] = latency_summary(all_writes)
    if dynamo is not None:
        window = max(1e-9, opts["seconds"])
        result["dynamodb_requests_per_s"] = {
            op: (proxy_after.get(op, 0) - proxy_before.get(op, 0)) / window
            for op in proxy_after if proxy_after.get(op, 0) - proxy_before.get(op, 0)}

    # The data check: through the last mount (another host than the one that created it), then
    # from SOURCE itself once nothing is mounted.
    check = {}
    try:
        check["through_mount"] = check_data(os.path.join(hosts[-1], db), outcomes,
                                            f"{name}, read through {hosts[-1]}")
    finally:
        result["daemon_problems"] = unmount_all()
    check["source"] = check_data(os.path.join(source, db), outcomes, f"{name}, read from SOURCE")
    result["check"] = check
    result["committed"] = check["source"]["counter"]
    return result


# --- report ------------------------------------------------------------------------------------

def fmt(v, digits=1):
    return "-" if v is None else f"{v:.{digits}f}"


def print_config(r):
    print(f"\n== {r['name']}: {r['workers']} workers"
          + (f" ({r['workers_per_host']} per mount)" if r["mounts"] > 1 else "") + " ==")
    header = (f"{'host':<9}{'req/s':>8}{'reads/s':>9}{'writes/s':>9}{'share':>7}{'min 1s':>7}"
              f"{'errors':>7}"
              f"   {'read ms p50/p99/max':<21}{'write ms p50/p99/max':<22}")
    has_metrics = r["mounts"] > 0
    if has_metrics:
        header += (f"{'store/s':>8}{'busy/s':>8}{'held/s':>8}{'handoffs/s':>11}{'renewals':>9}"
                   f"{'gap max/p99 s':>15}{'margin s':>9}")
    print(header.rstrip())
    rows = [(f"{'mount ' + str(h['host']) if has_metrics else 'plain'}", h) for h in r["hosts"]]
    for label, h in rows:
        rl, wl = h["read_latency"], h["write_latency"]
        line = (f"{label:<9}{h['requests_per_s']:>8.1f}{h['reads_per_s']:>9.1f}"
                f"{h['writes_per_s']:>9.1f}{100 * h['share']:>6.0f}%"
                f"{fmt(h['slowest_second_requests'], 0):>7}{h['errors_total']:>7}   "
                f"{fmt(rl['p50_ms']) + '/' + fmt(rl['p99_ms']) + '/' + fmt(rl['max_ms'], 0):<21}"
                f"{fmt(wl['p50_ms']) + '/' + fmt(wl['p99_ms']) + '/' + fmt(wl['max_ms'], 0):<22}")
        m = h.get("metrics")
        if has_metrics and m:
            span = m["span_s"]
            line += (f"{m['store_requests_per_s']:>8.1f}{m['lock_busy'] / span:>8.1f}"
                     f"{m['lock_holds'] / span:>8.1f}"
                     f"{m['handoffs_per_s']:>11.1f}{m['renewals']:>9.0f}"
                     f"{fmt(m['renewal_gap_max_s'], 2) + '/' + fmt(m['renewal_gap_p99_s'], 2):>15}"
                     f"{fmt(m['lease_margin_min_s'], 2):>9}")
        elif has_metrics:
            line += "   (no metrics samples)"
        print(line.rstrip())
    if len(r["hosts"]) > 1:
        rl, wl = r["read_latency"], r["write_latency"]
        print(f"{'total':<9}{r['requests_per_s']:>8.1f}"
              f"{sum(h['reads_per_s'] for h in r['hosts']):>9.1f}"
              f"{sum(h['writes_per_s'] for h in r['hosts']):>9.1f}{'':>14}{r['errors_total']:>7}   "
              f"{fmt(rl['p50_ms']) + '/' + fmt(rl['p99_ms']) + '/' + fmt(rl['max_ms'], 0):<21}"
              f"{fmt(wl['p50_ms']) + '/' + fmt(wl['p99_ms']) + '/' + fmt(wl['max_ms'], 0)}")
    for h in r["hosts"]:
        for msg, n in sorted(h["errors"].items(), key=lambda kv: -kv[1]):
            print(f"  {'mount ' + str(h['host']) if has_metrics else 'plain'} error x{n}: {msg}")
        if h["warmup_errors"]:
            print(f"  (plus {h['warmup_errors']} errors during the warm-up)")
        if h["setup_errors"]:
            print(f"  connection errors before the window: {h['setup_errors']}")
        if h.get("metric_sample_failures"):
            print(f"  metrics: {h['metric_sample_failures']} samples failed")
    if r.get("dynamodb_requests_per_s"):
        print("  DynamoDB requests/s (proxy, all mounts): " + ", ".join(
            f"{op} {n:.1f}" for op, n in sorted(r["dynamodb_requests_per_s"].items())))
    c = r["check"]["source"]
    where = "through the last mount and from SOURCE" if r["mounts"] else "in the directory"
    print(f"  data check: ok (counter {c['counter']} = successful writes = log rows, per worker "
          f"too; integrity_check ok; {where})")


def targets(multi, one, store):
    """[(description, met?)] for issue 12's targets that apply to this run."""
    out = []
    n = multi["mounts"]
    if one is not None:
        need = 0.5 if store == "dynamodb" else {2: 0.8, 3: 0.7}.get(n)
        if need is not None:
            ratio = multi["requests_per_s"] / one["requests_per_s"]
            out.append((f"{n} mounts >= {need}x one mount: {ratio:.2f}x", ratio >= need))
    if store == "dynamodb":
        return out
    shares = [h["share"] for h in multi["hosts"]]
    out.append((f"each mount >= 25 % of the total: "
                f"{', '.join(f'{100 * s:.0f} %' for s in shares)}", min(shares) >= 0.25))
    rl, wl = multi["read_latency"], multi["write_latency"]
    out.append((f"p99 reads <= 50 ms: {fmt(rl['p99_ms'])} ms",
                rl["p99_ms"] is not None and rl["p99_ms"] <= 50))
    out.append((f"p99 writes <= 100 ms: {fmt(wl['p99_ms'])} ms",
                wl["p99_ms"] is not None and wl["p99_ms"] <= 100))
    worst = max(v for v in (rl["max_ms"], wl["max_ms"]) if v is not None)
    out.append((f"max latency <= 1 s: {worst:.0f} ms", worst <= 1000))
    out.append((f"zero errors: {multi['errors_total']}", multi["errors_total"] == 0))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build-dir", default="build", help="where leasefs is (DIR/leasefs)")
    parser.add_argument("--work-dir", default=None,
                        help="where to create the directories (default: a fresh one in $TMPDIR)")
    parser.add_argument("--seconds", type=float, default=30, help="measured window per config")
    parser.add_argument("--warmup-seconds", type=float, default=2,
                        help="the same loop before the window, not measured")
    parser.add_argument("--workers", type=int, default=2, help="worker processes per mount")
    parser.add_argument("--mounts", type=int, default=2, help="leasefs mounts (hosts)")
    parser.add_argument("--write-percent", type=float, default=10)
    parser.add_argument("--journal-mode", default="delete",
                        choices=("delete", "truncate", "persist", "wal"))
    parser.add_argument("--synchronous", default="FULL", choices=("OFF", "NORMAL", "FULL"))
    parser.add_argument("--store", choices=("local", "dynamodb"), default="local")
    parser.add_argument("--latency-ms", type=float, default=5,
                        help="with --store dynamodb: latency the proxy adds to every request")
    parser.add_argument("--connection-per-request", action="store_true",
                        help="open a connection per request instead of one per worker")
    parser.add_argument("--sample-ms", type=float, default=50, help="metrics sampling period")
    parser.add_argument("--no-baselines", action="store_true",
                        help="skip the plain-directory and one-mount runs (no ratios)")
    parser.add_argument("--json", metavar="OUT", help="write every figure to OUT")
    parser.add_argument("--mount-arg", action="append", default=[], metavar="ARG",
                        help="pass ARG to every `leasefs mount` (repeat for several, e.g. "
                             "--mount-arg=--lock-hold --mount-arg=0)")
    args = parser.parse_args()
    if args.workers < 1 or args.mounts < 1 or not 0 <= args.write_percent <= 100 \
            or args.seconds <= 0 or args.warmup_seconds < 0:
        parser.error("--workers and --mounts >= 1, 0 <= --write-percent <= 100, --seconds > 0")
    build = os.path.abspath(args.build_dir)
    leasefs = os.path.join(build, "leasefs")
    if not os.access(leasefs, os.X_OK):
        parser.error(f"{leasefs} is missing")
    opts = {"seconds": args.seconds, "warmup_seconds": args.warmup_seconds,
            "write_percent": args.write_percent, "journal_mode": args.journal_mode,
            "synchronous": args.synchronous, "connection_per_request": args.connection_per_request,
            "sample_ms": args.sample_ms, "mount_args": args.mount_arg}
    total = args.workers * args.mounts
    configs = []
    if not args.no_baselines:
        configs += [("plain directory", 0, total), ("1 mount", 1, total)]
    if args.mounts > 1 or args.no_baselines:
        configs.append((f"{args.mounts} mounts", args.mounts, args.workers))

    started = datetime.datetime.now(datetime.timezone.utc)
    print(f"# leasefs app bench {started:%Y-%m-%dT%H:%M:%SZ}")
    print(f"# command: {' '.join([sys.argv[0]] + sys.argv[1:])}")
    print(f"# host: {socket.gethostname()}  cpus: {os.cpu_count()}  load average: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}  SQLite {sqlite3.sqlite_version}")
    connections = ("a connection per request" if args.connection_per_request
                   else "one connection per worker")
    print(f"# workload: {args.workers} workers x {args.mounts} mounts, "
          f"{100 - args.write_percent:g} % reads / {args.write_percent:g} % writes, "
          f"journal_mode={args.journal_mode}, synchronous={args.synchronous}, {connections}"
          f", busy_timeout {BUSY_TIMEOUT_S * 1000:.0f} ms, {args.seconds:g} s measured after "
          f"{args.warmup_seconds:g} s warm-up")
    store_desc = ("local (a fresh SQLite store per configuration)" if args.store == "local"
                  else f"dynamodb (dynalite behind the fault proxy, +{args.latency_ms:g} ms "
                  "per request, a fresh table per configuration)")
    print(f"# lease store: {store_desc};  leasefs: {leasefs}")
    sys.stdout.flush()

    old_handlers, results, interrupted, failure, proxy_errors = {}, [], None, None, []

    def on_signal(signum, _frame):
        raise Interrupted(signum)

    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        old_handlers[s] = signal.signal(s, on_signal)
    work = tempfile.mkdtemp(prefix="leasefs-app-", dir=args.work_dir)
    os.chmod(work, 0o755)
    dynamo = None
    try:
        if args.store == "dynamodb":
            os.environ["LEASEFS_BIN"] = leasefs  # before importing harness (via dynamo)
            import dynamo as dynamo_module  # tests/py/dynamo.py: dynalite + the fault proxy
            dynamo = dynamo_module.backend()
            dynamo.proxy.set("pass", latency=args.latency_ms / 1000)
            # Counted, not printed: a terminal's Ctrl-C ends dynalite too, and the daemons' last
            # requests would then print a traceback each.
            dynamo.proxy.server.handle_error = lambda *_: proxy_errors.append(sys.exc_info()[1])
        for name, mounts, per_host in configs:
            log(f"[{datetime.datetime.now(datetime.timezone.utc):%H:%M:%S}] {name}: "
                f"{mounts or 'no'} mount(s), {per_host} workers each ...")
            r = run_config(name, opts, work, dynamo, leasefs, mounts, per_host)
            results.append(r)
            print_config(r)
            sys.stdout.flush()
            if r["daemon_problems"]:
                raise RuntimeError("; ".join(r["daemon_problems"]))
            if proxy_errors:
                raise RuntimeError(f"the DynamoDB proxy failed {len(proxy_errors)} requests: "
                                   f"{proxy_errors[0]!r}")
    except Interrupted as e:
        interrupted = e
        log(f"\n{e}; cleaning up")

    except CheckFailed as e:
        failure = f"DATA CHECK FAILED: {e}"
    except Exception as e:  # noqa: BLE001 - reported, then the exit status says it failed
        failure = f"benchmark failed: {type(e).__name__}: {e}"
    finally:
        for s in old_handlers:  # no second signal may cut the cleanup short
            signal.signal(s, signal.SIG_IGN)
        stop_workers()
        for problem in unmount_all():
            log(f"cleanup: {problem}")
        still = [os.path.join(work, d) for d in os.listdir(work)
                 if mounted(os.path.join(work, d))]
        if still:
            log(f"mounts left behind (not removing {work}): {still}")
        else:
            shutil.rmtree(work, ignore_errors=True)
        if dynamo is not None:
            dynamo.proxy.stop()
            dynamo.dynalite.stop()
        for s, h in old_handlers.items():
            signal.signal(s, h)
    if interrupted is not None:
        return 128 + interrupted.signum

    summary = {}
    by_mounts = {r["mounts"]: r for r in results}
    multi = by_mounts.get(args.mounts) if args.mounts > 1 else None
    if multi is not None:
        one, plain = by_mounts.get(1), by_mounts.get(0)
        print(f"\n== {args.mounts} mounts against the baselines "
              f"(same workload, {total} workers) ==")
        if one is not None:
            summary["ratio_to_one_mount"] = multi["requests_per_s"] / one["requests_per_s"]
            print(f"total req/s, {args.mounts} mounts / 1 mount:  "
                  f"{summary['ratio_to_one_mount']:.2f}  "
                  f"({multi['requests_per_s']:.1f} / {one['requests_per_s']:.1f})")
        if plain is not None:
            summary["ratio_to_plain"] = multi["requests_per_s"] / plain["requests_per_s"]
            print(f"total req/s, {args.mounts} mounts / plain:    "
                  f"{summary['ratio_to_plain']:.2f}  "
                  f"({multi['requests_per_s']:.1f} / {plain['requests_per_s']:.1f})")
        if one is not None and plain is not None:
            print(f"total req/s, 1 mount / plain:        "
                  f"{one['requests_per_s'] / plain['requests_per_s']:.2f}")
        summary["shares"] = [h["share"] for h in multi["hosts"]]
        print("each mount's share of the total: " + ", ".join(
            f"mount {i} {100 * s:.1f} %" for i, s in enumerate(summary["shares"])))
        summary["targets"] = [{"target": t, "met": ok} for t, ok in
                              targets(multi, one, args.store)]
        print("issue 12 targets (measured, not enforced):")
        for t in summary["targets"]:
            print(f"  {'met    ' if t['met'] else 'NOT met'}  {t['target']}")
    finished = datetime.datetime.now(datetime.timezone.utc)
    print(f"# finished after {(finished - started).total_seconds():.0f} s; load average: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"started": started.isoformat(), "argv": sys.argv, "options": vars(args),
                       "configs": results, "summary": summary, "failure": failure}, f, indent=1)
    if failure:
        print(f"\n*** {failure} ***", flush=True)
        out, err = os.fstat(1), os.fstat(2)
        if (out.st_dev, out.st_ino) != (err.st_dev, err.st_ino):  # not shown there yet
            print(f"*** {failure} ***", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
