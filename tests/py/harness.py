"""Test harness for leasefs integration tests written in Python.

Mount starts `leasefs mount -f` as a child process (stdout/stderr to a log file; the child gets
PR_SET_PDEATHSIG=SIGTERM so a dying test never leaves a daemon behind), waits — polling
/proc/self/mountinfo with a deadline — until the mount is there, and on stop() unmounts, waits
for the daemon to exit and fails if it exited non-zero or its log shows a sanitizer report.

Host clients. By default every mount of a cluster test serves SOURCE directly, so all "hosts"
share one kernel cache of it. On EFS/NFS each host has its own storage client with its own name
cache (negative entries kept until the directory's attributes are revalidated, acdirmin 30 s).

    LEASEFS_TEST_HOST_CLIENTS=bindfs    every host_mount() reaches SOURCE through its own
                                        caching client: `bindfs -o negative_timeout=N,
                                        entry_timeout=E,attr_timeout=0 SOURCE ROOT/clientI`, and
                                        leasefs is mounted on ROOT/clientI with one --namespace
    LEASEFS_TEST_CLIENT_NEGATIVE_TIMEOUT=N  seconds a client keeps "no such file" (default 5)
    LEASEFS_TEST_CLIENT_ENTRY_TIMEOUT=E     seconds a client keeps a name's lookup (default 1)

The defaults keep the suite fast yet really exercise the cache: 5 s of negative caching outlasts
every "read shortly before" in the suite (a host's read and the crash or write it must then see
are milliseconds apart), so a cached absence is always still there when it matters, and no test
waits for it to expire; 1 s of positive caching is much longer than a transaction, so a journal
name seen on one host outlives its deletion by another. Attributes are not cached
(attr_timeout=0), as in issue 10's reproduction: what is exercised is the clients' name caches.
"""
import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import tempfile
import time

LEASEFS_BIN = os.environ.get("LEASEFS_BIN", "")
HOST_CLIENTS = os.environ.get("LEASEFS_TEST_HOST_CLIENTS", "")
CLIENT_NEGATIVE_TIMEOUT = float(os.environ.get("LEASEFS_TEST_CLIENT_NEGATIVE_TIMEOUT", "5"))
CLIENT_ENTRY_TIMEOUT = float(os.environ.get("LEASEFS_TEST_CLIENT_ENTRY_TIMEOUT", "1"))
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer")
PR_SET_PDEATHSIG = 1


def binary():
    if not LEASEFS_BIN or not os.access(LEASEFS_BIN, os.X_OK):
        raise RuntimeError("set LEASEFS_BIN to the leasefs binary under test (ctest does)")
    return LEASEFS_BIN


def _die_with_parent():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def become(uid):
    """Drops this process to `uid` (its group is the same number, no supplementary groups)."""
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)


def mount_type(path):
    """The fstype mounted exactly at `path`, or None."""
    path = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            mount_point = fields[4].encode().decode("unicode_escape")
            if mount_point == path:
                return fields[fields.index("-") + 1]
    return None


def wait_for(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def unmount(path):
    """Unmount `path` if mounted; lazy as a last resort. Never raises."""
    for attempt in range(20):
        if mount_type(path) is None:
            return
        r = subprocess.run(["fusermount3", "-u", path], capture_output=True)
        if r.returncode == 0:
            return
        time.sleep(0.05 * (attempt + 1))
    subprocess.run(["fusermount3", "-u", "-z", path], capture_output=True)


def host_clients_selected():
    if HOST_CLIENTS not in ("", "bindfs"):
        raise RuntimeError(f"LEASEFS_TEST_HOST_CLIENTS={HOST_CLIENTS!r}: only 'bindfs' is known")
    return HOST_CLIENTS == "bindfs"


class CachingClient:
    """One host's own caching client of SOURCE: `bindfs -f` at `mountpoint`, whose kernel keeps
    "no such file" for negative_timeout s and names for entry_timeout s, as an NFS client does.
    A child of the test (dies with it); stop() unmounts it and reaps it."""

    def __init__(self, source, mountpoint, negative_timeout=None, entry_timeout=None):
        self.source = source
        self.mountpoint = mountpoint
        self.negative_timeout = (CLIENT_NEGATIVE_TIMEOUT if negative_timeout is None
                                 else negative_timeout)
        self.entry_timeout = CLIENT_ENTRY_TIMEOUT if entry_timeout is None else entry_timeout
        self.log_path = mountpoint.rstrip("/") + ".log"
        os.makedirs(mountpoint, exist_ok=True)
        options = (f"negative_timeout={self.negative_timeout},"
                   f"entry_timeout={self.entry_timeout},attr_timeout=0,subtype=bindfs")
        log = open(self.log_path, "wb")
        self.process = subprocess.Popen(["bindfs", "-f", "-o", options, source, mountpoint],
                                        stdout=log, stderr=subprocess.STDOUT,
                                        preexec_fn=_die_with_parent)
        log.close()
        try:
            wait_for(lambda: mount_type(mountpoint) == "fuse.bindfs" or
                     self.process.poll() is not None, 10, f"bindfs on {mountpoint}")
            if self.process.poll() is not None:
                with open(self.log_path, errors="replace") as f:
                    raise AssertionError(f"bindfs exited with {self.process.returncode}:\n"
                                         f"{f.read()}")
        except BaseException:
            self.stop()
            raise

    def stop(self):
        unmount(self.mountpoint)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Mount:
    """`leasefs mount -f` of source at mountpoint (the daemon as `uid`, default this process's).
    With `client` (a CachingClient whose mountpoint is `source`), the mount owns it: stop()
    unmounts leasefs, then the client."""

    def __init__(self, source, mountpoint, *extra_args, log_path=None, client=None, uid=None):
        self.source = source
        self.mountpoint = mountpoint
        self.client = client
        self.log_path = log_path or mountpoint.rstrip("/") + ".log"
        try:
            log = open(self.log_path, "wb")
            def prepare():
                _die_with_parent()
                if uid is not None:
                    become(uid)
            self.process = subprocess.Popen(
                [binary(), "mount", "-f", *extra_args, source, mountpoint],
                stdout=log, stderr=subprocess.STDOUT, preexec_fn=prepare)
            log.close()
        except BaseException:
            if client is not None:
                client.stop()
            raise
        try:
            wait_for(lambda: mount_type(mountpoint) == "fuse.leasefs" or
                     self.process.poll() is not None, 10, f"mount on {mountpoint}")
            if self.process.poll() is not None:
                raise AssertionError(f"leasefs exited with {self.process.returncode}:\n{self.log()}")
        except BaseException:
            self.stop(check=False)
            raise

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def stop(self, check=True):
        unmount(self.mountpoint)
        try:
            code = self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        if self.client is not None:  # after leasefs, which holds descriptors on it
            self.client.stop()
        if check:
            log = self.log()
            if code != 0:
                raise AssertionError(f"leasefs exited with status {code}:\n{log}")
            for marker in SANITIZER_MARKERS:
                if marker in log:
                    raise AssertionError(f"sanitizer report in the daemon log:\n{log}")

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.stop(check=exc_type is None)


@contextlib.contextmanager
def temp_root(prefix="leasefs-py-"):
    root = tempfile.mkdtemp(prefix=prefix)
    os.chmod(root, 0o755)
    try:
        yield root
    finally:
        # Newest first: a leasefs mount holds its caching client (mounted before it) busy.
        with open("/proc/self/mountinfo") as f:
            mounts = [line.split()[4] for line in f]
        for mp in reversed(mounts):
            if mp.startswith(root):
                unmount(mp)
        shutil.rmtree(root, ignore_errors=True)


def mounted_pair(root, *extra_args):
    """Creates root/src and root/mnt and mounts; returns the Mount."""
    src, mnt = os.path.join(root, "src"), os.path.join(root, "mnt")
    os.makedirs(src, exist_ok=True)
    os.makedirs(mnt, exist_ok=True)
    return Mount(src, mnt, *extra_args)


def host_mount(root, source, mountpoint, index, *extra_args, caching_client=None,
               negative_timeout=None, entry_timeout=None):
    """Mounts leasefs as host `index` of a cluster over `source`. With a caching client
    (caching_client=True, or None and LEASEFS_TEST_HOST_CLIENTS=bindfs) the host reaches
    `source` through its own client at root/client{index}, and every host names the directory
    `source` in the lease store (--namespace: what the local store defaults to without
    clients); otherwise leasefs serves `source` itself. The timeouts override the client's
    defaults."""
    if caching_client is None:
        caching_client = host_clients_selected()
    if not caching_client:
        return Mount(source, mountpoint, *extra_args)
    client = CachingClient(source, os.path.join(root, f"client{index}"),
                           negative_timeout=negative_timeout, entry_timeout=entry_timeout)
    return Mount(client.mountpoint, mountpoint, "--namespace", os.path.realpath(source),
                 *extra_args, client=client)
