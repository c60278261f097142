"""POSIX lock semantics through a leasefs mount, beyond what SQLite exercises: F_GETLK reports the
conflicting lock, F_SETLKW waits for the holder (also on another mount) and a signal interrupts
it with EINTR, close() drops a process's locks, and OFD locks go with their last descriptor.
"""
import errno
import fcntl
import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
import unittest

from harness import Mount, temp_root, wait_for
from test_cluster import store_option

# struct flock on x86_64 Linux: short l_type, short l_whence, off_t l_start, off_t l_len, pid_t
FLOCK = "hhqqi4x"
F_OFD_GETLK, F_OFD_SETLK = 36, 37


def flock(kind, start, length):
    return struct.pack(FLOCK, kind, os.SEEK_SET, start, length, 0)


def getlk(fd, kind, start, length, cmd=fcntl.F_GETLK):
    result = fcntl.fcntl(fd, cmd, flock(kind, start, length))
    l_type, _, l_start, l_len, l_pid = struct.unpack(FLOCK, result)
    return l_type, l_start, l_len, l_pid


HOLDER = textwrap.dedent("""\
    import fcntl, struct, sys, os
    fd = os.open(sys.argv[1], os.O_RDWR)
    fcntl.fcntl(fd, fcntl.F_SETLK, struct.pack("hhqqi4x", fcntl.F_WRLCK, 0, 100, 10, 0))
    print("locked", flush=True)
    sys.stdin.readline()       # hold until told
    os.close(fd)               # close drops the lock
    print("released", flush=True)
    sys.stdin.readline()
    """)


def start_holder(path):
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, path], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def finish(proc):
    proc.stdin.close()
    proc.wait(timeout=10)
    proc.stdout.close()


class LockSemantics(unittest.TestCase):
    def setUp(self):
        self.root_cm = temp_root()
        root = self.root_cm.__enter__()
        src = os.path.join(root, "src")
        os.makedirs(src)
        store = store_option(root)
        self.mounts = []
        for name in ("a", "b"):
            os.makedirs(os.path.join(root, name))
            self.mounts.append(Mount(src, os.path.join(root, name), "--lease-store", store))
        self.path_a = os.path.join(self.mounts[0].mountpoint, "f")
        self.path_b = os.path.join(self.mounts[1].mountpoint, "f")
        with open(self.path_a, "wb") as f:
            f.write(b"x" * 4096)

    def tearDown(self):
        for m in self.mounts:
            m.stop()
        self.root_cm.__exit__(None, None, None)

    def test_getlk_reports_the_conflict_locally_and_across_mounts(self):
        holder = start_holder(self.path_a)
        try:
            fd = os.open(self.path_a, os.O_RDWR)
            l_type, l_start, l_len, l_pid = getlk(fd, fcntl.F_WRLCK, 0, 0)
            self.assertEqual((l_type, l_start, l_len, l_pid), (fcntl.F_WRLCK, 100, 10, holder.pid))
            self.assertEqual(getlk(fd, fcntl.F_RDLCK, 0, 100)[0], fcntl.F_UNLCK)  # no overlap
            os.close(fd)
            fd = os.open(self.path_b, os.O_RDWR)  # another host sees a conflict too
            self.assertNotEqual(getlk(fd, fcntl.F_WRLCK, 100, 1)[0], fcntl.F_UNLCK)
            with self.assertRaises(OSError) as raised:
                fcntl.fcntl(fd, fcntl.F_SETLK, flock(fcntl.F_RDLCK, 105, 1))
            self.assertIn(raised.exception.errno, (errno.EAGAIN, errno.EACCES))
            os.close(fd)
        finally:
            holder.stdin.write("\n")
            holder.stdin.flush()
            finish(holder)

    def test_setlkw_waits_for_the_holder_on_another_mount(self):
        holder = start_holder(self.path_a)
        fd = os.open(self.path_b, os.O_RDWR)
        started = time.monotonic()
        released_at = []

        def release_soon():
            time.sleep(0.3)
            released_at.append(time.monotonic())
            holder.stdin.write("\n")
            holder.stdin.flush()
        import threading
        threading.Thread(target=release_soon).start()
        fcntl.fcntl(fd, fcntl.F_SETLKW, flock(fcntl.F_WRLCK, 100, 10))  # blocks until released
        got_it = time.monotonic()
        self.assertTrue(released_at and got_it >= released_at[0], "granted before the release")
        self.assertLess(got_it - started, 10)
        os.close(fd)
        finish(holder)

    def test_setlkw_is_interrupted_by_a_signal(self):
        holder = start_holder(self.path_a)
        try:
            fd = os.open(self.path_a, os.O_RDWR)
            def interrupt(*_):  # Python retries an interrupted call (PEP 475) unless we raise
                raise InterruptedError("alarm")
            previous = signal.signal(signal.SIGALRM, interrupt)
            signal.setitimer(signal.ITIMER_REAL, 0.3)
            started = time.monotonic()
            with self.assertRaises(InterruptedError):
                fcntl.fcntl(fd, fcntl.F_SETLKW, flock(fcntl.F_WRLCK, 100, 10))
            self.assertLess(time.monotonic() - started, 5)
            # Nothing was granted: the holder still holds it.
            self.assertEqual(getlk(fd, fcntl.F_WRLCK, 100, 10)[0], fcntl.F_WRLCK)
            os.close(fd)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
            holder.stdin.write("\n")
            holder.stdin.flush()
            finish(holder)

    def test_ofd_lock_goes_with_its_last_descriptor(self):
        fd = os.open(self.path_a, os.O_RDWR)
        fcntl.fcntl(fd, F_OFD_SETLK, flock(fcntl.F_WRLCK, 0, 10))
        other = os.open(self.path_a, os.O_RDWR)
        with self.assertRaises(OSError):  # another open file description conflicts
            fcntl.fcntl(other, F_OFD_SETLK, flock(fcntl.F_WRLCK, 0, 10))
        os.close(fd)

        def free():
            try:
                fcntl.fcntl(other, F_OFD_SETLK, flock(fcntl.F_WRLCK, 0, 10))
                return True
            except OSError:
                return False
        wait_for(free, 5, "the OFD lock to go with its descriptor")  # RELEASE is asynchronous
        os.close(other)


if __name__ == "__main__":
    unittest.main()
