"""Test harness for leasefs integration tests written in Python.

Mount starts `leasefs mount -f` as a child process (stdout/stderr to a log file; the child gets
PR_SET_PDEATHSIG=SIGTERM so a dying test never leaves a daemon behind), waits — polling
/proc/self/mountinfo with a deadline — until the mount is there, and on stop() unmounts, waits
for the daemon to exit and fails if it exited non-zero or its log shows a sanitizer report.
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
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer")
PR_SET_PDEATHSIG = 1


def binary():
    if not LEASEFS_BIN or not os.access(LEASEFS_BIN, os.X_OK):
        raise RuntimeError("set LEASEFS_BIN to the leasefs binary under test (ctest does)")
    return LEASEFS_BIN


def _die_with_parent():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


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


class Mount:
    def __init__(self, source, mountpoint, *extra_args, log_path=None):
        self.source = source
        self.mountpoint = mountpoint
        self.log_path = log_path or mountpoint.rstrip("/") + ".log"
        log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [binary(), "mount", "-f", *extra_args, source, mountpoint],
            stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        log.close()
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
        with open("/proc/self/mountinfo") as f:
            for line in f:
                mp = line.split()[4]
                if mp.startswith(root):
                    unmount(mp)
        shutil.rmtree(root, ignore_errors=True)


def mounted_pair(root, *extra_args):
    """Creates root/src and root/mnt and mounts; returns the Mount."""
    src, mnt = os.path.join(root, "src"), os.path.join(root, "mnt")
    os.makedirs(src, exist_ok=True)
    os.makedirs(mnt, exist_ok=True)
    return Mount(src, mnt, *extra_args)
