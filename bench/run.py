#!/usr/bin/env python3
"""Side-by-side benchmark: native directory vs bindfs vs leasefs.

Runs the same workloads on three targets that all live in one work directory (so on the same
backing filesystem):

  native   WORK/native                       plain directory
  bindfs   WORK/bindfs-mnt  over WORK/bindfs-src   (bindfs with default options)
  leasefs  WORK/leasefs-mnt over WORK/leasefs-src  (BUILD/leasefs mount -f ..., default options)

Workloads (names for --workloads; "fio", "meta" and "sqlite" select groups):

  fio-seqread fio-seqwrite fio-randread fio-randwrite
      fio, psync, buffered, 1 MiB (seq) / 4 KiB (random) blocks, time_based, one file of
      --fio-size per target that is laid out once (untimed) and then reused by all fio jobs.
  meta
      bench/tools/metabench.cc: create / stat / read / unlink many 1 KiB files.
  sqlite-delete sqlite-wal sqlite-read
      bench/tools/sqlitebench.cc: single-writer upsert transactions with synchronous=FULL in
      rollback-journal (DELETE) and WAL mode; read-only autocommit SELECTs in rollback mode.

Every run is preceded by `sync; echo 3 > /proc/sys/vm/drop_caches` (when we are root), so no run
inherits a cache another run warmed: the native page cache, the FUSE page cache and the backing page
cache under a FUSE mount are all emptied. During a fio read run the fio file is mapped and
mlock()ed through the backing directory (not through the mount; --cold-fio skips this), so its
bytes are in RAM for every target alike, safe from reclaim, and fio measures the filesystem path,
not the VM's disk. Write runs start cold: their block-aligned writes never read the old data.
fio runs with invalidate=0, so pages a target caches during the run stay cached for the rest of
that run. For each workload the targets run interleaved (R rounds; the order rotates each round)
and the table reports medians, ratios of medians and the median of per-round leasefs/bindfs.

Every mount is made by a foreground daemon we start in its own session and is unmounted with
`fusermount3 -u` in a finally block; SIGINT/SIGTERM/SIGHUP raise an exception so that block runs.
Only the standard library is used.
"""

import argparse
import ctypes
import datetime
import json
import mmap
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALL_TARGETS = ["native", "bindfs", "leasefs"]
FIO_WORKLOADS = ["fio-seqread", "fio-seqwrite", "fio-randread", "fio-randwrite"]
SQLITE_WORKLOADS = ["sqlite-delete", "sqlite-wal", "sqlite-read"]
ALL_WORKLOADS = FIO_WORKLOADS + ["meta"] + SQLITE_WORKLOADS
GROUPS = {"fio": FIO_WORKLOADS, "meta": ["meta"], "sqlite": SQLITE_WORKLOADS,
          "all": ALL_WORKLOADS}

# Per-workload result rows: (metric key, table label).
ROWS = {
    "fio-seqread": [("bw_mib_s", "fio seqread MiB/s")],
    "fio-seqwrite": [("bw_mib_s", "fio seqwrite MiB/s")],
    "fio-randread": [("iops", "fio randread 4k IOPS")],
    "fio-randwrite": [("iops", "fio randwrite 4k IOPS")],
    "meta": [("create_ops_s", "meta create ops/s"), ("stat_ops_s", "meta stat ops/s"),
             ("read_ops_s", "meta open+read ops/s"), ("unlink_ops_s", "meta unlink ops/s")],
    "sqlite-delete": [("tx_per_s", "sqlite DELETE tx/s")],
    "sqlite-wal": [("tx_per_s", "sqlite WAL tx/s")],
    "sqlite-read": [("tx_per_s", "sqlite read tx/s")],
}


class Interrupted(BaseException):
    """Raised from a signal handler; not an Exception, so workload error handling lets it pass."""

    def __init__(self, signum):
        super().__init__(f"interrupted by signal {signum}")
        self.signum = signum


class RunFailed(Exception):
    pass


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Mounts

def _unescape_mount_field(s):
    # /proc/mounts escapes space, tab, newline and backslash as \ooo.
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\" and i + 4 <= len(s) and s[i + 1:i + 4].isdigit():
            out.append(chr(int(s[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def mounted_at(path):
    """The fstype mounted exactly at path, or None. Reads /proc/self/mounts (never stats path)."""
    path = os.path.realpath(path)
    found = None
    with open("/proc/self/mounts") as f:
        for line in f:
            fields = line.split()
            if len(fields) >= 3 and _unescape_mount_field(fields[1]) == path:
                found = fields[2]
    return found


def fs_type_of(path):
    """The fstype of the mount containing path (longest prefix match in /proc/self/mounts)."""
    path = os.path.realpath(path)
    best, best_len = "?", -1
    with open("/proc/self/mounts") as f:
        for line in f:
            fields = line.split()
            if len(fields) < 3:
                continue
            mnt = _unescape_mount_field(fields[1])
            if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) > best_len:
                best, best_len = fields[2], len(mnt)
    return best


class Target:
    """A place to run workloads: `path` is where they run, `backing` where the bytes live."""

    def __init__(self, name, work):
        self.name = name
        self.work = work
        self.proc = None
        self.log_path = None
        self.dead = None  # reason, once the target is unusable
        if name == "native":
            self.path = self.backing = os.path.join(work, "native")
        else:
            self.backing = os.path.join(work, f"{name}-src")
            self.path = os.path.join(work, f"{name}-mnt")

    def mount_command(self, args):
        if self.name == "bindfs":
            return ["bindfs", "-f"] + args.bindfs_arg + [self.backing, self.path]
        if self.name == "leasefs":
            return [args.leasefs, "mount", "-f"] + args.leasefs_arg + [self.backing, self.path]
        return None

    def start(self, args):
        os.makedirs(self.backing, exist_ok=True)
        os.makedirs(self.path, exist_ok=True)
        cmd = self.mount_command(args)
        if cmd is None:
            return
        if mounted_at(self.path):
            raise RunFailed(f"{self.path} is already a mount point")
        self.log_path = os.path.join(self.work, f"{self.name}.log")
        logf = open(self.log_path, "wb")
        try:
            # Own session: a Ctrl-C on the terminal reaches us, not the daemon; we unmount it.
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            logf.close()
        deadline = time.monotonic() + args.mount_timeout
        while not mounted_at(self.path):
            if self.proc.poll() is not None:
                raise RunFailed(f"{self.name}: `{' '.join(cmd)}` exited with status "
                                f"{self.proc.returncode} before mounting:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RunFailed(f"{self.name}: not mounted after {args.mount_timeout} s:\n"
                                f"{self.log_tail()}")
            time.sleep(0.05)
        log(f"mounted {self.name}: {' '.join(cmd)} (pid {self.proc.pid})")

    def log_tail(self, n=20):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def alive(self):
        return self.proc is None or self.proc.poll() is None

    def stop(self):
        """Unmount and reap the daemon. Never raises; returns a list of problems."""
        problems = []
        if self.name == "native":
            return problems
        for attempt in range(10):
            if not mounted_at(self.path):
                break
            lazy = ["-z"] if attempt >= 5 else []
            r = subprocess.run(["fusermount3", "-u"] + lazy + [self.path],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            if r.returncode == 0:
                break
            time.sleep(0.2 * (attempt + 1))
        if mounted_at(self.path):
            problems.append(f"{self.name}: {self.path} is still mounted")
        if self.proc is not None:
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                problems.append(f"{self.name}: daemon pid {self.proc.pid} did not exit after "
                                f"unmount; killing it")
                self.proc.kill()
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    problems.append(f"{self.name}: pid {self.proc.pid} survived SIGKILL")
            if self.proc.returncode not in (0, None):
                problems.append(f"{self.name}: daemon exited with status {self.proc.returncode}; "
                                f"log tail:\n{self.log_tail()}")
            self.proc = None
        if mounted_at(self.path):
            # The daemon is gone but the kernel still has the mount: lazy unmount.
            subprocess.run(["fusermount3", "-u", "-z", self.path],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if mounted_at(self.path) and f"{self.name}: {self.path} is still mounted" not in problems:
            problems.append(f"{self.name}: {self.path} is still mounted")
        return problems


# ---------------------------------------------------------------------------------------------
# Workloads

def drop_caches(args):
    if not args.drop_caches:
        return
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError as e:
        log(f"warning: cannot drop caches ({e}); continuing without (use --no-drop-caches "
            f"to silence)")
        args.drop_caches = False


def run_tool(cmd, timeout):
    try:
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RunFailed(f"timed out after {timeout:.0f} s: {' '.join(cmd)}")
    if r.returncode != 0:
        detail = r.stderr.strip()[-1500:] or r.stdout.strip()[-500:]
        raise RunFailed(f"exit status {r.returncode}: {' '.join(cmd)}\n{detail}")
    out = r.stdout
    start = out.find("{")  # fio may print warnings before its JSON
    if start < 0:
        raise RunFailed(f"no JSON in output of {' '.join(cmd)}:\n{out}\n{r.stderr}")
    try:
        return json.loads(out[start:])
    except json.JSONDecodeError as e:
        raise RunFailed(f"bad JSON from {' '.join(cmd)}: {e}\n{out[:2000]}")


def fio_prepare(target, args):
    """Lays out the fio file once per target, through the backing directory (untimed)."""
    size = args.fio_size_mib << 20
    backing_file = os.path.join(target.backing, "fio.dat")
    try:
        if os.path.getsize(backing_file) == size:
            return
    except OSError:
        pass
    chunk = os.urandom(1 << 20)
    with open(backing_file, "wb") as f:
        for _ in range(args.fio_size_mib):
            f.write(chunk)
        f.flush()
        os.fsync(f.fileno())


class PinnedInBackingCache:
    """Context manager: the file's pages stay in the backing page cache while it is active.

    It maps the file through the backing directory (MAP_SHARED, read only) and mlock()s the
    mapping, which reads the whole file in and makes its page-cache pages unevictable. For native
    that is the target's own page cache; for a FUSE target it is the cache under the daemon, while
    the FUSE page cache above starts cold (drop_caches just emptied it) and is the target's own
    business. Either way the bytes are in RAM and no read run depends on the disk or on memory
    reclaim: this VM runs DAMON proactive reclaim (pageout of regions idle for ~60 s, 128 MiB/s),
    which otherwise evicts a freshly read file at random and makes read runs bimodal. When mlock
    is not allowed (no root, small RLIMIT_MEMLOCK) the file is just read once, with a warning.
    """

    def __init__(self, path):
        self.path = path
        self.addr = None
        self.size = 0

    def __enter__(self):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                              ctypes.c_int, ctypes.c_long]
        libc.mlock.argtypes = libc.munlock.argtypes = libc.munmap.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t]
        self.libc = libc
        fd = os.open(self.path, os.O_RDONLY)
        try:
            self.size = os.fstat(fd).st_size
            addr = libc.mmap(None, self.size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
            if addr is None or addr == ctypes.c_void_p(-1).value:
                raise OSError(ctypes.get_errno(), "mmap failed")
            self.addr = addr
            if libc.mlock(ctypes.c_void_p(addr), self.size) != 0:
                err = ctypes.get_errno()
                log(f"warning: cannot mlock {self.path} ({os.strerror(err)}); reading it once "
                    f"instead, read runs may hit the disk")
                libc.munmap(ctypes.c_void_p(addr), self.size)
                self.addr = None
                while os.read(fd, 1 << 20):
                    pass
        finally:
            os.close(fd)
        return self

    def __exit__(self, *exc):
        if self.addr is not None:
            self.libc.munlock(ctypes.c_void_p(self.addr), self.size)
            self.libc.munmap(ctypes.c_void_p(self.addr), self.size)
            self.addr = None
        return False


def run_fio(workload, target, args):
    fio_prepare(target, args)
    rw, bs = {"fio-seqread": ("read", "1M"), "fio-seqwrite": ("write", "1M"),
              "fio-randread": ("randread", "4k"), "fio-randwrite": ("randwrite", "4k")}[workload]
    cmd = ["fio", "--name=" + workload, "--filename=" + os.path.join(target.path, "fio.dat"),
           f"--size={args.fio_size_mib}M", f"--rw={rw}", f"--bs={bs}", "--ioengine=psync",
           "--direct=0", "--invalidate=0", "--fallocate=none", "--numjobs=1", "--time_based=1",
           f"--runtime={int(args.fio_runtime * 1000)}ms", "--output-format=json"]
    drop_caches(args)
    if rw.endswith("read") and not args.cold_fio:
        with PinnedInBackingCache(os.path.join(target.backing, "fio.dat")):
            res = run_tool(cmd, timeout=args.fio_runtime + 120)
    else:
        res = run_tool(cmd, timeout=args.fio_runtime + 120)
    job = res["jobs"][0]
    if job.get("error"):
        raise RunFailed(f"fio job error {job['error']}: {' '.join(cmd)}")
    side = job["read"] if rw.endswith("read") else job["write"]
    return {"bw_mib_s": side["bw_bytes"] / (1 << 20), "iops": side["iops"],
            "runtime_ms": side["runtime"], "io_mib": side["io_bytes"] / (1 << 20)}


def run_meta(target, args):
    cmd = [args.metabench, "--dir", target.path, "--files", str(args.meta_files),
           "--dirs", str(args.meta_dirs), "--size", "1024"]
    drop_caches(args)
    return run_tool(cmd, timeout=600)


def run_sqlite(workload, target, args):
    mode = workload.split("-", 1)[1]
    cmd = [args.sqlitebench, "--db", os.path.join(target.path, "bench.db"), "--mode", mode,
           "--seconds", str(args.sqlite_seconds), "--rows", str(args.sqlite_rows)]
    drop_caches(args)
    return run_tool(cmd, timeout=args.sqlite_seconds + 300)


def run_workload(workload, target, args):
    if workload in FIO_WORKLOADS:
        return run_fio(workload, target, args)
    if workload == "meta":
        return run_meta(target, args)
    return run_sqlite(workload, target, args)


# ---------------------------------------------------------------------------------------------
# Reporting

def fmt_value(v):
    if v is None:
        return "n/a"
    if isinstance(v, str):
        return v
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}"


def fmt_ratio(a, b):
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or b == 0:
        return "-"
    return f"{a / b:.2f}"


def summarize(results, workloads, targets, missing):
    """results[workload][target] = list of metric dicts (or error strings)."""
    rows = []
    for w in workloads:
        for key, label in ROWS[w]:
            row = {"label": label, "median": {}, "spread": {}, "runs": {}, "paired": None}
            for t in ALL_TARGETS:
                if t in missing:
                    row["median"][t] = missing[t]
                    continue
                if t not in targets:
                    row["median"][t] = None
                    continue
                runs = results.get(w, {}).get(t, [])
                vals = [r[key] for r in runs if isinstance(r, dict)]
                row["runs"][t] = vals
                if runs and len(vals) < len(runs):
                    row["median"][t] = "FAIL"
                elif vals:
                    med = statistics.median(vals)
                    row["median"][t] = med
                    if len(vals) > 1:
                        row["spread"][t] = (max(vals) - min(vals)) / med if med else 0.0
                else:
                    row["median"][t] = None
            # leasefs/bindfs per round (the two ran minutes apart at most), then the median: less
            # sensitive to slow drifts in machine load than the ratio of the two medians.
            per = results.get(w, {})
            if "leasefs" in per and "bindfs" in per:
                pairs = [a[key] / b[key] for a, b in zip(per["leasefs"], per["bindfs"])
                         if isinstance(a, dict) and isinstance(b, dict) and b[key]]
                if pairs:
                    row["paired"] = statistics.median(pairs)
            rows.append(row)
    return rows


def print_table(rows, out=sys.stdout):
    print(f"{'workload':<24}{'native':>11}{'bindfs':>11}{'leasefs':>11}"
          f"{'leasefs/bindfs':>16}{'leasefs/native':>16}{'bindfs/native':>15}{'spread':>8}"
          f"{'l/b paired':>12}", file=out)
    for r in rows:
        m = r["median"]
        spread = f"{max(r['spread'].values()) * 100:.0f}%" if r["spread"] else "-"
        paired = f"{r['paired']:.2f}" if r["paired"] is not None else "-"
        print(f"{r['label']:<24}{fmt_value(m['native']):>11}{fmt_value(m['bindfs']):>11}"
              f"{fmt_value(m['leasefs']):>11}"
              f"{fmt_ratio(m['leasefs'], m['bindfs']):>16}"
              f"{fmt_ratio(m['leasefs'], m['native']):>16}"
              f"{fmt_ratio(m['bindfs'], m['native']):>15}"
              f"{spread:>8}{paired:>12}", file=out)
    print("spread: (max - min) / median over the runs of the noisiest target in that row", file=out)
    print("l/b paired: median over rounds of leasefs/bindfs within the same round", file=out)


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def tool_version(cmd):
    try:
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=10)
        return r.stdout.strip().splitlines()[0] if r.stdout.strip() else "?"
    except (OSError, subprocess.TimeoutExpired):
        return "?"


# ---------------------------------------------------------------------------------------------
# Main

def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Benchmark native vs bindfs vs leasefs (see bench/README.md).")
    p.add_argument("--build-dir", default=os.path.join(REPO, "build"),
                   help="CMake build directory (default: %(default)s); leasefs is BUILD/leasefs, "
                        "the tools BUILD/leasefs-{metabench,sqlitebench} or BUILD/bench/...")
    p.add_argument("--leasefs", help="leasefs binary (default: BUILD/leasefs)")
    p.add_argument("--tools-dir", help="directory with leasefs-metabench and leasefs-sqlitebench "
                                       "(default: BUILD or BUILD/bench, the newer)")
    p.add_argument("--quick", action="store_true",
                   help="short smoke run (about 20 s): small sizes, 0.5 s per run, 1 round")
    p.add_argument("--repeat", type=int, help="rounds per workload (default 5, --quick 1)")
    p.add_argument("--workloads", default="all",
                   help="comma-separated: " + ",".join(ALL_WORKLOADS) + " or groups fio, meta, "
                        "sqlite, all (default: all)")
    p.add_argument("--targets", default="native,bindfs,leasefs",
                   help="comma-separated subset of native,bindfs,leasefs")
    p.add_argument("--work-dir", help="directory on the filesystem to test (default: a fresh "
                                      "directory under /var/tmp); removed afterwards unless "
                                      "--keep")
    p.add_argument("--keep", action="store_true", help="keep the work directory contents")
    p.add_argument("--json", dest="json_out", help="also write all raw results to this file")
    p.add_argument("--no-drop-caches", dest="drop_caches", action="store_false",
                   help="do not drop the page cache before each run")
    p.add_argument("--cold-fio", action="store_true",
                   help="do not pin the fio file in the backing page cache during read runs "
                        "(fio then measures the disk as well, which is very noisy on a VM)")
    p.add_argument("--fio-size-mib", type=int, help="fio file size (default 512, --quick 32)")
    p.add_argument("--fio-runtime", type=float,
                   help="seconds per fio run (default 10, --quick 0.5)")
    p.add_argument("--meta-files", type=int, help="files for meta (default 20000, --quick 1000)")
    p.add_argument("--meta-dirs", type=int, default=4, help="subdirectories for meta (default 4)")
    p.add_argument("--sqlite-seconds", type=float,
                   help="seconds per sqlite run (default 5, --quick 0.5)")
    p.add_argument("--sqlite-rows", type=int, default=1000, help="rows in the sqlite table")
    p.add_argument("--bindfs-arg", action="append", default=[],
                   help="extra argument for bindfs (repeatable), e.g. --bindfs-arg=--multithreaded")
    p.add_argument("--leasefs-arg", action="append", default=[],
                   help="extra argument for `leasefs mount` (repeatable)")
    p.add_argument("--mount-timeout", type=float, default=20.0)
    args = p.parse_args(argv)

    q = args.quick
    defaults = {"repeat": (5, 1), "fio_size_mib": (512, 32), "fio_runtime": (10.0, 0.5),
                "meta_files": (20000, 1000), "sqlite_seconds": (5.0, 0.5)}
    for k, (full, quick) in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, quick if q else full)
    if args.repeat < 1:
        p.error("--repeat must be at least 1")

    workloads = []
    for w in args.workloads.split(","):
        w = w.strip()
        if not w:
            continue
        names = GROUPS.get(w, [w])
        for n in names:
            if n not in ALL_WORKLOADS:
                p.error(f"unknown workload {w!r}")
            if n not in workloads:
                workloads.append(n)
    args.workload_list = [w for w in ALL_WORKLOADS if w in workloads]
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    for t in targets:
        if t not in ALL_TARGETS:
            p.error(f"unknown target {t!r}")
    args.target_list = [t for t in ALL_TARGETS if t in targets]

    args.build_dir = os.path.abspath(args.build_dir)
    if args.leasefs is None:
        args.leasefs = os.path.join(args.build_dir, "leasefs")
    args.leasefs = os.path.abspath(args.leasefs)
    # The project build puts executables in BUILD (CMAKE_RUNTIME_OUTPUT_DIRECTORY); a standalone
    # build of bench/ puts them in BUILD/bench. If both exist, take the newer.
    tools_dirs = [args.tools_dir] if args.tools_dir else [args.build_dir,
                                                          os.path.join(args.build_dir, "bench")]
    for tool in ("metabench", "sqlitebench"):
        cands = [os.path.abspath(os.path.join(d, f"leasefs-{tool}")) for d in tools_dirs]
        cands = [c for c in cands if os.path.isfile(c) and os.access(c, os.X_OK)]
        setattr(args, tool, max(cands, key=os.path.getmtime) if cands else None)
    return args


def check_prerequisites(args):
    """Returns {target: reason} for targets that cannot run; exits on missing workload tools."""
    errors = []
    if any(w in FIO_WORKLOADS for w in args.workload_list) and not shutil.which("fio"):
        errors.append("fio not found in PATH (apt-get install fio)")
    if "meta" in args.workload_list and not args.metabench:
        errors.append("leasefs-metabench not found; build it: "
                      f"cmake --build {args.build_dir} --target leasefs-metabench")
    if any(w in SQLITE_WORKLOADS for w in args.workload_list) and not args.sqlitebench:
        errors.append("leasefs-sqlitebench not found; build it: "
                      f"cmake --build {args.build_dir} --target leasefs-sqlitebench")
    if errors:
        for e in errors:
            log("error: " + e)
        sys.exit(2)
    missing = {}
    have_fusermount = shutil.which("fusermount3") is not None
    if "bindfs" in args.target_list and not (shutil.which("bindfs") and have_fusermount):
        missing["bindfs"] = "n/a"
        log("bindfs target skipped: bindfs or fusermount3 not found in PATH")
    if "leasefs" in args.target_list and not os.access(args.leasefs, os.X_OK):
        missing["leasefs"] = "pending"
        log(f"leasefs target skipped: no executable at {args.leasefs} "
            f"(build it, or pass --leasefs PATH / --build-dir DIR)")
    if "leasefs" in args.target_list and "leasefs" not in missing and not have_fusermount:
        missing["leasefs"] = "n/a"
        log("leasefs target skipped: fusermount3 not found in PATH")
    return missing


def main(argv):
    args = parse_args(argv)
    missing = check_prerequisites(args)
    run_targets = [t for t in args.target_list if t not in missing]
    if not run_targets:
        log("error: no target to run")
        return 2

    if args.work_dir:
        base = os.path.abspath(args.work_dir)
        os.makedirs(base, exist_ok=True)
        work = tempfile.mkdtemp(prefix="leasefs-bench.", dir=base)
    else:
        work = tempfile.mkdtemp(prefix="leasefs-bench.", dir="/var/tmp")

    started = datetime.datetime.now().astimezone()
    print(f"# leasefs bench {started.isoformat(timespec='seconds')}")
    print(f"# command: {' '.join([os.path.relpath(sys.argv[0], os.getcwd())] + argv)}")
    print(f"# host: {platform.node()}  cpus: {os.cpu_count()}  kernel: {platform.release()}  "
          f"load average: {loadavg()}")
    print(f"# work dir: {work} ({fs_type_of(work)})  drop caches: "
          f"{'yes' if args.drop_caches else 'no'}  fio file pinned in backing cache for reads: "
          f"{'no' if args.cold_fio else 'yes'}  rounds: {args.repeat}")
    print(f"# fio: {tool_version(['fio', '--version'])}, {args.fio_size_mib} MiB file, "
          f"{args.fio_runtime:g} s/run;  meta: {args.meta_files} files in {args.meta_dirs} dirs; "
          f"sqlite: {args.sqlite_seconds:g} s/run, {args.sqlite_rows} rows")
    bindfs_desc = "not run"
    if "bindfs" in run_targets:
        bindfs_desc = tool_version(["bindfs", "--version"]) + (
            " " + " ".join(args.bindfs_arg) if args.bindfs_arg else " (default options)")
    leasefs_desc = (missing.get("leasefs") or "not run") if "leasefs" not in run_targets else (
        args.leasefs + (" " + " ".join(args.leasefs_arg) if args.leasefs_arg else ""))
    print(f"# bindfs: {bindfs_desc};  leasefs: {leasefs_desc}")
    sys.stdout.flush()

    targets = {}
    results = {}
    problems = []
    old_handlers = {}
    interrupted = None

    def on_signal(signum, _frame):
        raise Interrupted(signum)

    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        old_handlers[s] = signal.signal(s, on_signal)
    try:
        for name in run_targets:
            t = Target(name, work)
            targets[name] = t
            try:
                t.start(args)
            except RunFailed as e:
                log(f"error: {e}")
                t.dead = "mount failed"
                missing[name] = "FAIL"
        live = [n for n in run_targets if targets[n].dead is None]

        for w in args.workload_list:
            results[w] = {n: [] for n in live}
            for rnd in range(args.repeat):
                order = live[rnd % len(live):] + live[:rnd % len(live)] if live else []
                for name in order:
                    t = targets[name]
                    if t.dead:
                        results[w][name].append(f"skipped: {t.dead}")
                        continue
                    t0 = time.monotonic()
                    try:
                        res = run_workload(w, t, args)
                        results[w][name].append(res)
                        shown = ", ".join(f"{k}={fmt_value(res[k])}" for k, _ in ROWS[w])
                        log(f"[{w} {rnd + 1}/{args.repeat}] {name:<8} {shown}  "
                            f"({time.monotonic() - t0:.1f} s)")
                    except RunFailed as e:
                        results[w][name].append(f"error: {e}")
                        log(f"[{w} {rnd + 1}/{args.repeat}] {name:<8} FAILED: {e}")
                        if not t.alive():
                            t.dead = f"daemon exited with status {t.proc.returncode}"
                            log(f"{name}: {t.dead}; skipping it from now on. Log tail:\n"
                                f"{t.log_tail()}")
                        elif "timed out" in str(e):
                            t.dead = "a run timed out"
                            log(f"{name}: a run timed out; skipping it from now on")
    except Interrupted as e:
        interrupted = e
        log(f"\n{e}; cleaning up")
    finally:
        # No second signal may cut the cleanup short.
        for s in old_handlers:
            signal.signal(s, signal.SIG_IGN)
        for name in reversed(list(targets)):
            problems += targets[name].stop()
        still = [t.path for t in targets.values() if mounted_at(t.path)]
        if still:
            problems.append(f"mounts left behind (not removing {work}): {still}")
        elif not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        for s, h in old_handlers.items():
            signal.signal(s, h)

    for p in problems:
        log("cleanup problem: " + p)
    if interrupted is not None:
        return 128 + interrupted.signum

    rows = summarize(results, args.workload_list, run_targets, missing)
    elapsed = datetime.datetime.now().astimezone() - started
    print(f"# finished after {elapsed.total_seconds():.0f} s; load average: {loadavg()}")
    print()
    print_table(rows)
    failed = [(w, n, r) for w, per in results.items() for n, runs in per.items() for r in runs
              if not isinstance(r, dict)]
    if failed:
        print("\nfailures (details above, on stderr):")
        seen = {}
        for w, n, r in failed:
            line = f"{w} on {n}: {r.splitlines()[0]}"
            seen[line] = seen.get(line, 0) + 1
        for line, count in seen.items():
            print(f"  {line}" + (f"  (x{count})" if count > 1 else ""))
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"started": started.isoformat(timespec="seconds"), "argv": argv,
                       "cpus": os.cpu_count(), "kernel": platform.release(),
                       "settings": {k: getattr(args, k) for k in (
                           "repeat", "cold_fio", "fio_size_mib", "fio_runtime", "meta_files",
                           "meta_dirs",
                           "sqlite_seconds", "sqlite_rows", "drop_caches", "bindfs_arg",
                           "leasefs_arg", "leasefs")},
                       "results": results,
                       "table": [{"label": r["label"], "median": r["median"], "runs": r["runs"],
                                  "leasefs_bindfs_paired": r["paired"]}
                                 for r in rows]}, f, indent=1)
    return 1 if (failed or problems) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
