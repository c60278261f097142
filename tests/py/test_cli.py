"""The leasefs command as a user meets it: help and version, every kind of bad input (one clear
line on stderr, non-zero exit, nothing mounted), daemon mode returning only once the mount works,
clean shutdown on signals and on umount, and the mount(8) helper with a real fstab line.
"""
import os
import shutil
import signal
import socket
import subprocess
import textwrap
import unittest

from harness import Mount, binary, mount_type, mounted_pair, temp_root, unmount, wait_for

BUILD_DIR = os.path.dirname(os.environ.get("LEASEFS_BIN", "/nonexistent/leasefs"))


def run(*args, **kwargs):
    return subprocess.run([binary(), *args], capture_output=True, text=True, timeout=30, **kwargs)


def daemon_pids(source):
    """PIDs of leasefs daemons serving `source` (found through /proc, no pid files needed)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            with open(f"/proc/{entry}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and argv and argv[0].endswith(b"leasefs") and source.encode() in argv:
            pids.append(int(entry))
    return pids


class HelpAndVersion(unittest.TestCase):
    def test_version(self):
        r = run("--version")
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout.strip(), r"^leasefs \d+\.\d+\.\d+$")

    def test_help(self):
        r = run("--help")
        self.assertEqual(r.returncode, 0)
        self.assertIn("mount", r.stdout)
        r = run("mount", "--help")
        self.assertEqual(r.returncode, 0)
        for option in ("--foreground", "--attr-timeout", "--lease-store", "-o key=value"):
            self.assertIn(option, r.stdout)


class BadInput(unittest.TestCase):
    def setUp(self):
        self.root_cm = temp_root()
        self.root = self.root_cm.__enter__()
        self.src = os.path.join(self.root, "src")
        self.mnt = os.path.join(self.root, "mnt")
        os.makedirs(os.path.join(self.src, "inner"))
        os.makedirs(self.mnt)
        open(os.path.join(self.root, "file"), "w").close()

    def tearDown(self):
        self.root_cm.__exit__(None, None, None)

    def assert_rejected(self, args, fragment, code=None, **kwargs):
        r = run(*args, **kwargs)
        self.assertNotEqual(r.returncode, 0, r)
        if code is not None:
            self.assertEqual(r.returncode, code, r.stderr)
        lines = r.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, f"expected one line, got: {r.stderr!r}")
        self.assertTrue(lines[0].startswith("leasefs: error: "), lines[0])
        self.assertIn(fragment, lines[0])
        self.assertIsNone(mount_type(self.mnt), "a failed mount left something mounted")

    def test_usage_errors_exit_2(self):
        self.assert_rejected([], "subcommand", code=2)
        self.assert_rejected(["frobnicate"], "frobnicate", code=2)
        self.assert_rejected(["mount", "--bogus", self.src, self.mnt], "--bogus", code=2)
        self.assert_rejected(["mount", "--attr-timeout", "soon", self.src, self.mnt],
                             "attr-timeout", code=2)
        self.assert_rejected(["mount", "--threads", "0", self.src, self.mnt], "threads", code=2)
        self.assert_rejected(["mount", "--lease-duration", "0", self.src, self.mnt],
                             "lease-duration", code=2)
        self.assert_rejected(["mount", "-o", "bogus=1", self.src, self.mnt],
                             "unknown mount option 'bogus=1'", code=2)
        self.assert_rejected(["mount", self.src], "mountpoint", code=2)

    def test_unusable_paths_exit_1(self):
        j = os.path.join
        self.assert_rejected(["mount", j(self.root, "nope"), self.mnt], "does not exist", code=1)
        self.assert_rejected(["mount", j(self.root, "file"), self.mnt], "is not a directory", code=1)
        self.assert_rejected(["mount", self.src, j(self.root, "nope")], "does not exist", code=1)
        self.assert_rejected(["mount", self.src, j(self.root, "file")], "is not a directory", code=1)
        self.assert_rejected(["mount", self.src, self.src], "same directory", code=1)
        self.assert_rejected(["mount", j(self.src, "inner"), self.src], "is inside mountpoint",
                             code=1)
        self.assert_rejected(["mount", self.src, j(self.src, "inner")], "is inside source", code=1)
        self.assert_rejected(["mount", "--lease-store", "dynamodb://t?region=x", self.src,
                              self.mnt], "table name 't' must be 3 to 255 characters", code=1)
        self.assert_rejected(["mount", "--lease-store", "dynamodb://leases", self.src, self.mnt],
                             "region", code=1)
        self.assert_rejected(["mount", "--lease-store", "etcd://x", self.src, self.mnt],
                             "expected local, local:PATH or none", code=1)
        self.assert_rejected(["mount", "--lease-store", "local:/proc/nope/leases.db", self.src,
                              self.mnt], "cannot create lease store directory", code=1)

    def test_busy_mountpoint(self):
        other = os.path.join(self.root, "other")
        os.makedirs(other)
        with Mount(other, self.mnt):
            r = run("mount", self.src, self.mnt)
            self.assertEqual(r.returncode, 1)
            self.assertIn("is busy: fuse.leasefs is already mounted there", r.stderr)
            self.assertEqual(len(r.stderr.strip().splitlines()), 1)

    def test_status_needs_a_leasefs_mount(self):
        # The attribute alone proves nothing: anyone may set it on a directory of theirs.
        forged = b'{"session":"forged","databases":[{"path":"x.db"}]}'
        os.setxattr(self.mnt, "user.leasefs.status", forged)
        os.setxattr(self.src, "user.leasefs.status", forged)  # never shown through a mount
        for args in (["status", self.mnt], ["status", "--json", self.mnt]):
            self.assert_rejected(args, f"{self.mnt} is not a leasefs mount", code=1)
        self.assert_rejected(["status", os.path.join(self.root, "nope")], "cannot access",
                             code=1)
        with Mount(self.src, self.mnt, "--lease-store", "none"):
            # Not the mount point itself, and a mount without cluster locking has no status.
            r = run("status", os.path.join(self.mnt, "inner"))
            self.assertEqual((r.returncode, r.stderr.strip()), (1, "leasefs: error: "
                             f"{os.path.join(self.mnt, 'inner')} is not a leasefs mount"))
            r = run("status", self.mnt)
            self.assertEqual((r.returncode, r.stderr.strip()), (1, f"leasefs: error: {self.mnt} "
                             "has no status: it was mounted without cluster locking"))

    def test_no_dev_fuse(self):
        # A private mount namespace whose /dev has no fuse device.
        script = f"mount -t tmpfs tmpfs /dev && exec {binary()} mount {self.src} {self.mnt}"
        r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertEqual(r.stderr.strip(),
                         "leasefs: error: cannot open /dev/fuse: No such file or directory "
                         "(load the fuse kernel module; in a container, pass the /dev/fuse device)")


    def test_dev_fuse_only_for_root(self):
        # A private /dev whose fuse device only root may open; the mount attempted as nobody.
        os.chmod(self.src, 0o777)
        os.chmod(self.mnt, 0o777)
        program = os.path.join(self.root, "leasefs")  # where nobody can reach it
        shutil.copy(binary(), program)
        script = (f"mount -t tmpfs tmpfs /dev && mknod -m 0600 /dev/fuse c 10 229 && "
                  f"exec setpriv --reuid=65534 --regid=65534 --clear-groups {program} mount "
                  f"--lease-store none {self.src} {self.mnt}")
        r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertEqual(r.stderr.strip(),
                         "leasefs: error: cannot open /dev/fuse: Permission denied (only root may "
                         "use it here: mount as root, or let users open it, mode 0666 as Debian's "
                         "fuse3 package sets it)")


class Lifecycle(unittest.TestCase):
    def test_daemon_mode_returns_when_usable_and_exits_on_umount(self):
        with temp_root() as root:
            src, mnt = os.path.join(root, "src"), os.path.join(root, "mnt")
            os.makedirs(src)
            os.makedirs(mnt)
            r = run("mount", src, mnt)
            try:
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual(r.stderr, "")
                # Usable the moment the command returned: no waiting.
                self.assertEqual(mount_type(mnt), "fuse.leasefs")
                with open(os.path.join(mnt, "hello"), "w") as f:
                    f.write("world")
                with open(os.path.join(src, "hello")) as f:
                    self.assertEqual(f.read(), "world")
                pids = daemon_pids(src)
                self.assertEqual(len(pids), 1, pids)
                self.assertEqual(subprocess.run(["umount", mnt]).returncode, 0)
                wait_for(lambda: not daemon_pids(src), 10, "the daemon to exit after umount")
            finally:
                unmount(mnt)

    def test_umount_and_mount_again_reuses_the_metrics_port(self):
        """`umount && mount` with the same --metrics-addr: the old daemon may still be giving up
        its claims when the new one starts; the new one must wait for the port, not fail."""
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        with temp_root() as root:
            src, mnt = os.path.join(root, "src"), os.path.join(root, "mnt")
            os.makedirs(src)
            os.makedirs(mnt)
            args = ["mount", "--lease-store", "local:" + os.path.join(root, "store", "leases.db"),
                    "--metrics-addr", str(port), src, mnt]
            try:
                for attempt in range(4):
                    r = run(*args)
                    self.assertEqual(r.returncode, 0, f"attempt {attempt}: {r.stderr}")
                    # A bare port listens on loopback only.
                    listening = subprocess.run(["ss", "-Hltn", f"sport = :{port}"],
                                               capture_output=True, text=True).stdout
                    self.assertIn(f"127.0.0.1:{port}", listening)
                    self.assertNotIn(f"*:{port}", listening)
                    self.assertNotIn(f"0.0.0.0:{port}", listening)
                    self.assertEqual(subprocess.run(["umount", mnt]).returncode, 0)
            finally:
                unmount(mnt)
                wait_for(lambda: not daemon_pids(src), 15, "the daemons to exit")

    def test_daemon_logs_to_syslog(self):
        """Daemonized, leasefs logs through syslog(3): catch it on our own /dev/log socket, in a
        private mount namespace whose /dev holds just null, fuse and that socket."""
        with temp_root() as root:
            src, mnt = os.path.join(root, "src"), os.path.join(root, "mnt")
            os.makedirs(src)
            os.makedirs(mnt)
            log_path = os.path.join(root, "log.sock")
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.bind(log_path)
            sock.settimeout(10)
            old_dev = os.path.join(root, "olddev")
            os.makedirs(old_dev)
            script = textwrap.dedent(f"""\
                set -e
                mount --rbind /dev {old_dev}
                mount -t tmpfs tmpfs /dev
                for node in null fuse log; do touch /dev/$node; done
                mount --bind {old_dev}/null /dev/null
                mount --bind {old_dev}/fuse /dev/fuse
                mount --bind {log_path} /dev/log
                {binary()} mount {src} {mnt}
                umount {mnt}
                """)
            r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                                script], capture_output=True, text=True, timeout=60)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stderr, "", "a daemonized mount must not write to the terminal")
            messages = []
            while not any("unmounted" in m for m in messages):
                messages.append(sock.recv(4096).decode(errors="replace"))
            sock.close()
            joined = "\n".join(messages)
            self.assertRegex(joined, rf"leasefs\[\d+\]: serving {src} on {mnt}")
            self.assertIn(f"unmounted {mnt}", joined)

    def test_signals_stop_cleanly(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            with self.subTest(signal=sig.name), temp_root() as root:
                m = mounted_pair(root)
                m.process.send_signal(sig)
                code = m.process.wait(timeout=15)
                self.assertEqual(code, 0, m.log())
                self.assertIsNone(mount_type(m.mountpoint))
                m.stop()

    def test_many_cached_files_never_exhaust_descriptors(self):
        """The daemon holds a descriptor per cached inode: started with a soft limit of 128 (the
        hard one as inherited), it must raise its own soft limit rather than fail with EMFILE
        when thousands of files are in use."""
        with temp_root() as root:
            src, mnt = os.path.join(root, "src"), os.path.join(root, "mnt")
            os.makedirs(src)
            os.makedirs(mnt)
            import resource
            hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            self.assertGreater(hard, 4000, "the test needs a hard limit above 4000")
            r = subprocess.run(["prlimit", f"--nofile=128:{hard}", binary(), "mount", src, mnt],
                               capture_output=True, text=True, timeout=30)
            try:
                self.assertEqual(r.returncode, 0, r.stderr)
                for i in range(2000):
                    with open(os.path.join(mnt, f"f{i}"), "w") as f:
                        f.write("x")
                names = os.listdir(mnt)
                self.assertEqual(len(names), 2000)
                for name in names:  # every inode looked up and held by the kernel at once
                    os.stat(os.path.join(mnt, name))
            finally:
                unmount(mnt)
                wait_for(lambda: not daemon_pids(src), 10, "the daemon to exit")

    def test_file_removed_on_the_source_is_not_kept_allocated(self):
        """The daemon holds an O_PATH descriptor per file the kernel knows. A file removed on
        SOURCE directly (another host, a cleanup job) must not stay allocated for as long as
        the kernel caches its name: within a few seconds the daemon lets go of it, unless a
        process has it open (as a local disk keeps an open file)."""
        with temp_root() as root:
            src, mnt = os.path.join(root, "src"), os.path.join(root, "mnt")
            os.makedirs(src)
            os.makedirs(mnt)
            with Mount(src, mnt, "--lease-store", "none", "--entry-timeout", "3600",
                       "--attr-timeout", "3600") as m:
                for name in ("gone", "kept-open"):
                    with open(os.path.join(mnt, name), "wb") as f:
                        f.write(b"x" * (1 << 20))
                    os.stat(os.path.join(mnt, name))  # the kernel caches it for an hour
                holder = open(os.path.join(mnt, "kept-open"), "rb")
                try:
                    os.unlink(os.path.join(src, "gone"))
                    os.unlink(os.path.join(src, "kept-open"))

                    def deleted_held():
                        held = set()
                        fd_dir = f"/proc/{m.process.pid}/fd"
                        for fd in os.listdir(fd_dir):
                            try:
                                target = os.readlink(os.path.join(fd_dir, fd))
                            except OSError:
                                continue
                            if target.endswith(" (deleted)"):
                                held.add(os.path.basename(target[:-len(" (deleted)")]))
                        return held

                    self.assertEqual(deleted_held(), {"gone", "kept-open"})
                    wait_for(lambda: deleted_held() == {"kept-open"}, 15,
                             "the daemon to let go of the removed file")
                    self.assertFalse(os.path.exists(os.path.join(mnt, "gone")))
                    self.assertEqual(len(holder.read()), 1 << 20)  # the open one still reads
                finally:
                    holder.close()

    def test_mount_helper_convention(self):
        helper = os.path.join(BUILD_DIR, "mount.fuse.leasefs")
        with temp_root() as root:
            src, mnt = os.path.join(root, "src"), os.path.join(root, "mnt")
            os.makedirs(src)
            os.makedirs(mnt)
            try:
                r = subprocess.run([helper, src, mnt, "-n", "-o",
                                    "rw,_netdev,nofail,noatime,attr_timeout=2,x-systemd.automount"],
                                   capture_output=True, text=True, timeout=30)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual(mount_type(mnt), "fuse.leasefs")
                with open("/proc/self/mountinfo") as f:
                    line = next(l for l in f if l.split()[4] == mnt)
                self.assertIn("noatime", line.split()[5])
                # -f: mount(8)'s "fake" mode does nothing.
                unmount(mnt)
                wait_for(lambda: not daemon_pids(src), 10, "the daemon to exit")
                r = subprocess.run([helper, src, mnt, "-f"], capture_output=True, timeout=30)
                self.assertEqual(r.returncode, 0)
                self.assertIsNone(mount_type(mnt))
            finally:
                unmount(mnt)

    def test_fstab_line_through_mount8(self):
        """mount(8) with an fstab line runs /sbin/mount.fuse.leasefs; done in a private mount
        namespace where /sbin holds only our helper, so the host's /sbin is left alone."""
        with temp_root() as root:
            src, mnt = os.path.join(root, "src"), os.path.join(root, "mnt")
            sbin = os.path.join(root, "sbin")
            for d in (src, mnt, sbin):
                os.makedirs(d)
            os.symlink(binary(), os.path.join(sbin, "mount.fuse.leasefs"))
            with open(os.path.join(src, "marker"), "w") as f:
                f.write("from-source")
            fstab = os.path.join(root, "fstab")
            with open(fstab, "w") as f:
                f.write(f"{src} {mnt} fuse.leasefs _netdev,noatime,attr_timeout=1 0 0\n")
            script = textwrap.dedent(f"""\
                set -e
                mount --bind {sbin} /sbin
                mount -T {fstab} {mnt}
                cat {mnt}/marker
                echo
                umount {mnt}
                """)
            r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                                script], capture_output=True, text=True, timeout=60)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stdout.strip(), "from-source")
            wait_for(lambda: not daemon_pids(src), 10, "the daemon to exit after umount")


class VolumeMarker(unittest.TestCase):
    """SOURCE/.leasefs-volume names the shared directory in a cluster-wide lease store; two ids
    for one directory would split the cluster, so the mount hides the marker entirely."""

    def test_marker_is_hidden_and_protected(self):
        with temp_root() as root:
            src = os.path.join(root, "src")
            os.makedirs(src)
            marker_text = "0123456789abcdef0123456789abcdef\n"
            with open(os.path.join(src, ".leasefs-volume"), "w") as f:
                f.write(marker_text)
            os.makedirs(os.path.join(src, "sub"))
            with open(os.path.join(src, "sub", ".leasefs-volume"), "w") as f:
                f.write("only the root's is special\n")
            with mounted_pair(root) as m:
                marker = os.path.join(m.mountpoint, ".leasefs-volume")
                self.assertNotIn(".leasefs-volume", os.listdir(m.mountpoint))
                self.assertFalse(os.path.lexists(marker))
                with self.assertRaises(FileNotFoundError):
                    os.unlink(marker)
                with self.assertRaises(PermissionError):
                    open(marker, "w")
                with self.assertRaises(PermissionError):
                    os.mkdir(marker)
                other = os.path.join(m.mountpoint, "other")
                open(other, "w").close()
                with self.assertRaises(PermissionError):
                    os.rename(other, marker)
                with self.assertRaises(PermissionError):
                    os.link(other, marker)
                # The same name elsewhere is an ordinary file.
                sub_marker = os.path.join(m.mountpoint, "sub", ".leasefs-volume")
                self.assertIn(".leasefs-volume", os.listdir(os.path.join(m.mountpoint, "sub")))
                with open(sub_marker) as f:
                    self.assertEqual(f.read(), "only the root's is special\n")
            with open(os.path.join(src, ".leasefs-volume")) as f:
                self.assertEqual(f.read(), marker_text)


class Systemd(unittest.TestCase):
    REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

    def test_notify_ready_only_once_mounted(self):
        with temp_root() as root:
            sock_path = os.path.join(root, "notify.sock")
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.bind(sock_path)
            sock.settimeout(10)
            os.environ["NOTIFY_SOCKET"] = sock_path
            try:
                src, mnt = os.path.join(root, "src"), os.path.join(root, "mnt")
                os.makedirs(src)
                os.makedirs(mnt)
                m = Mount(src, mnt)
            finally:
                del os.environ["NOTIFY_SOCKET"]
            with m:
                message = sock.recv(4096).decode()
                self.assertIn("READY=1", message)
                self.assertEqual(mount_type(mnt), "fuse.leasefs")
                m.process.send_signal(signal.SIGTERM)
                self.assertIn("STOPPING=1", sock.recv(4096).decode())
            sock.close()

    def test_units_verify(self):
        analyze = shutil.which("systemd-analyze")
        self.assertIsNotNone(analyze, "systemd-analyze is needed (apt-get install systemd)")
        with temp_root() as root:
            for name in os.listdir(os.path.join(self.REPO, "systemd")):
                with open(os.path.join(self.REPO, "systemd", name)) as f:
                    text = f.read().replace("/usr/local/bin/leasefs", binary())
                with open(os.path.join(root, name), "w") as f:
                    f.write(text)
            os.rename(os.path.join(root, "leasefs@.service"),
                      os.path.join(root, "leasefs@srv-db.service"))
            r = subprocess.run([analyze, "verify", "leasefs@srv-db.service", "srv-db.mount"],
                               cwd=root, capture_output=True, text=True, timeout=60)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stderr.strip(), "")


if __name__ == "__main__":
    unittest.main()
