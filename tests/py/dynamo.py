"""DynamoDB for the Python suites: a real dynalite (the pinned npm package) behind a fault proxy.

    LEASEFS_TEST_LEASE_STORE=dynamodb   run the cluster suites against DynamoDB's API (dynalite)
                                        instead of the local SQLite store (the default).

Dynalite runs in memory on a free port; FaultProxy sits between the mounts and it and plays the
network and the service misbehaving, which dynalite itself cannot: added latency, throttling
(HTTP 400 ThrottlingException), 5xx, connection resets, "success then timeout" (the request is
forwarded and applied, the answer never arrives), and the store being down altogether. Each fault
is a mode the test sets and clears; the proxy counts what it saw per DynamoDB operation.

Every process started here is killed at exit (atexit, and PR_SET_PDEATHSIG for the server), and
the table is created with `leasefs table create`, so that command is exercised by every run.
"""
import atexit
import ctypes
import http.client
import http.server
import os
import random
import signal
import socket
import subprocess
import threading
import time

from harness import binary

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NODE_MODULES = os.environ.get("LEASEFS_NODE_MODULES", os.path.join(REPO, "node_modules"))
DYNALITE = os.path.join(NODE_MODULES, ".bin", "dynalite")
REGION = "us-east-1"

# Static keys: dynalite accepts any signature; the daemons sign with these from the environment.
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "AKIDLEASEFSTEST",
    "AWS_SECRET_ACCESS_KEY": "leasefs-test-secret",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def selected():
    return os.environ.get("LEASEFS_TEST_LEASE_STORE", "local") == "dynamodb"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent():
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class Dynalite:
    """One in-memory dynalite process."""

    def __init__(self):
        if not os.access(DYNALITE, os.X_OK):
            raise RuntimeError(f"{DYNALITE} is missing: run `npm ci` in {REPO} "
                               "(scripts/dev deps does)")
        self.port = _free_port()
        self.process = subprocess.Popen([DYNALITE, "--port", str(self.port)],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                         preexec_fn=_die_with_parent)
        atexit.register(self.stop)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("dynalite did not start")
                time.sleep(0.05)

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def stop(self):
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


class FaultProxy:
    """An HTTP proxy in front of DynamoDB that injects the faults named in the module doc."""

    MODES = ("pass", "down", "throttle", "error500", "reset", "apply_then_drop")

    def __init__(self, upstream_port):
        self.upstream_port = upstream_port
        self.mode = "pass"
        self.latency = 0.0          # seconds added before forwarding each request
        self.fault_rate = 1.0       # share of requests the mode applies to
        self.counts = {}            # operation -> requests seen
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in separate writes: with Nagle's algorithm against the
            # client's delayed ACK, every answer would wait 40 ms.
            disable_nagle_algorithm = True

            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                target = self.headers.get("X-Amz-Target", "")
                operation = target.rsplit(".", 1)[-1]
                with proxy.lock:
                    proxy.counts[operation] = proxy.counts.get(operation, 0) + 1
                    mode, latency = proxy.mode, proxy.latency
                    if mode != "pass" and random.random() >= proxy.fault_rate:
                        mode = "pass"
                if latency:
                    time.sleep(latency)
                if mode == "down":  # nothing answers: the request hangs until the store is back
                    give_up = time.monotonic() + 120
                    while proxy.mode == "down" and time.monotonic() < give_up:
                        time.sleep(0.02)
                    self.close_connection = True
                    self.connection.close()
                    return
                if mode == "reset":  # the connection breaks at once (RST)
                    self.close_connection = True
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                               b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    self.connection.close()
                    return
                if mode == "throttle":
                    return self.answer(400, b'{"__type":"com.amazonaws.dynamodb.v20120810#'
                                            b'ThrottlingException","message":"Rate exceeded"}')
                if mode == "error500":
                    return self.answer(500, b'{"__type":"com.amazonaws.dynamodb.v20120810#'
                                            b'InternalServerError","message":"injected"}')
                upstream = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=30)
                upstream.connect()
                upstream.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                headers["Host"] = f"127.0.0.1:{proxy.upstream_port}"
                upstream.request("POST", self.path, body=body, headers=headers)
                response = upstream.getresponse()
                data = response.read()
                upstream.close()
                if mode == "apply_then_drop":  # the write landed; its answer is lost
                    self.close_connection = True
                    self.connection.close()
                    return
                self.answer(response.status, data,
                            response.getheader("Content-Type", "application/x-amz-json-1.0"))

            def answer(self, status, data, content_type="application/x-amz-json-1.0"):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        atexit.register(self.stop)

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def set(self, mode="pass", latency=None, fault_rate=1.0):
        assert mode in self.MODES, mode
        with self.lock:
            self.mode = mode
            self.fault_rate = fault_rate
            if latency is not None:
                self.latency = latency

    def snapshot(self):
        with self.lock:
            return dict(self.counts)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class DynamoBackend:
    """A dynalite, a proxy, and a fresh table per cluster; what start_cluster needs."""

    def __init__(self):
        os.environ.update(AWS_ENV)
        self.dynalite = Dynalite()
        self.proxy = FaultProxy(self.dynalite.port)
        self.tables = 0

    def new_table(self):
        self.tables += 1
        name = f"leasefs-test-{os.getpid()}-{self.tables}"
        r = subprocess.run([binary(), "table", "create", name, "--region", REGION,
                            "--endpoint", self.dynalite.endpoint],
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise AssertionError(f"leasefs table create failed: {r.stderr}")
        return name

    def store_uri(self, table):
        return f"dynamodb://{table}?region={REGION}&endpoint={self.proxy.endpoint}"


_backend = None


def backend():
    """The process-wide DynamoBackend, started on first use."""
    global _backend
    if _backend is None:
        _backend = DynamoBackend()
    return _backend
