"""Real servers for the remote-storage tests, on 127.0.0.1 only, started and stopped by the tests.

- `moto_s3_server()`: moto's standalone S3 server (`moto_server -H 127.0.0.1 -p PORT`), as s3fs's own tests run it.
- `nginx_server(folder, workdir)`: nginx serving `folder` (HTTP range requests, HEAD) from a throw-away config.
- `FaultProxy(host, port, ...)`: a threaded HTTP reverse proxy that answers 503 for every Nth request and/or for
  every request matching a path / Range rule, counting what it forwarded and what it refused.

Each is a context manager; leaving it stops the server and its children, whatever happened inside.
No pytest fixtures live here (they are in conftest.py); `pytest.skip`/`pytest.fail` are only used
when nginx is not installed.
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterator, Union

HOST = "127.0.0.1"
START_TIMEOUT = 30.0  # seconds for a server to answer on its port
STOP_TIMEOUT = 10.0  # seconds for a server to exit after SIGTERM, before SIGKILL

Rule = Union[str, "re.Pattern[str]", Callable[[str], bool], None]


# --------------------------------------------------------------------------------------------- processes

def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _port_answers(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def _log_tail(path: Path, limit: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError:
        return ""


def wait_until_serving(proc: subprocess.Popen, port: int, what: str, log: Path,
                       probe: Callable[[], bool] | None = None, timeout: float = START_TIMEOUT) -> None:
    """Return once `port` answers (and `probe()` is true); raise with the server's log if it exits or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode} before serving on port {port}:\n"
                               f"{_log_tail(log)}")
        if _port_answers(port) and (probe is None or probe()):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not answer on port {port} within {timeout:.0f} s:\n{_log_tail(log)}")


def stop_process(proc: subprocess.Popen) -> None:
    """SIGTERM the process group the server leads (it was started in its own session), SIGKILL if it lingers."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
    # Also whatever children are left in the group (nginx workers, werkzeug reloaders): the group is ours.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:  # pragma: no cover - a process that survives SIGKILL
        pass


@contextmanager
def _server_process(argv: list[str], log: Path, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    try:
        yield proc
    finally:
        stop_process(proc)


# --------------------------------------------------------------------------------------------- moto (S3)

def moto_server_executable() -> str:
    """`moto_server` installed next to this Python (the virtual environment's bin/), else on PATH."""
    beside = Path(sys.executable).parent / "moto_server"
    if beside.exists():
        return str(beside)
    found = shutil.which("moto_server")
    if found:
        return found
    raise FileNotFoundError("moto_server not found next to the Python interpreter nor on PATH; "
                            "pip install 'moto[server]>=5' (it is in streamprep's [test] extra)")


def _http_ok(url: str) -> Callable[[], bool]:
    def probe() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return 200 <= r.status < 500
        except urllib.error.HTTPError as e:
            return e.code < 500
        except OSError:
            return False
    return probe


@contextmanager
def moto_s3_server(log_dir: Path, attempts: int = 3) -> Iterator[str]:
    """moto's S3 server on a free 127.0.0.1 port; yields its endpoint URL, e.g. `http://127.0.0.1:41234`."""
    exe = moto_server_executable()
    env = dict(os.environ, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
               AWS_DEFAULT_REGION="us-east-1")
    log = Path(log_dir) / "moto_server.log"
    for attempt in range(attempts):  # the free port can be taken between choosing it and binding it
        port = free_port()
        endpoint = f"http://{HOST}:{port}"
        with _server_process([exe, "-H", HOST, "-p", str(port)], log, env) as proc:
            try:
                wait_until_serving(proc, port, "moto_server", log, probe=_http_ok(f"{endpoint}/moto-api/"))
            except RuntimeError:
                if attempt == attempts - 1 or proc.poll() is None:
                    raise
                continue
            yield endpoint
            return


# --------------------------------------------------------------------------------------------- a listening port

@contextmanager
def connection_recorder() -> Iterator[tuple[int, list]]:
    """A TCP port on 127.0.0.1 that records every connection made to it: (port, peers). Anything fetched
    while parsing hostile input would show up here."""
    server = socket.create_server((HOST, 0))
    server.settimeout(0.05)
    connections: list = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, peer = server.accept()
            except OSError:
                continue
            connections.append(peer)
            conn.close()

    thread = threading.Thread(target=serve, name="connection-recorder", daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1], connections
    finally:
        stop.set()
        thread.join()
        server.close()


# --------------------------------------------------------------------------------------------- nginx (HTTP)

NGINX = "nginx"


def nginx_executable() -> str | None:
    return shutil.which(NGINX) or next((p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx",
                                                     "/usr/local/nginx/sbin/nginx") if os.access(p, os.X_OK)), None)


def require_nginx() -> str:
    """The nginx binary; without it the test fails under CI (CI is set) and is skipped elsewhere."""
    import pytest

    exe = nginx_executable()
    if exe is None:
        message = "nginx is not installed: apt-get install -y nginx"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI is set, so this is a failure, not a skip)")
        pytest.skip(message)
    return exe


NGINX_CONF = """\
daemon off;
{user}worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{
    worker_connections 256;
}}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/client_body_temp;
    proxy_temp_path {prefix}/proxy_temp;
    fastcgi_temp_path {prefix}/fastcgi_temp;
    uwsgi_temp_path {prefix}/uwsgi_temp;
    scgi_temp_path {prefix}/scgi_temp;
    default_type application/octet-stream;
    sendfile on;
    server {{
        listen {host}:{port};
        root {root};
        location / {{
        }}
    }}
}}
"""


@contextmanager
def nginx_server(root: Path, workdir: Path, exe: str | None = None, attempts: int = 3) -> Iterator[str]:
    """nginx serving the files under `root` (Range and HEAD supported); yields its base URL, no trailing slash.

    Config, pid file, logs and temp folders all live in `workdir`. As root, the worker runs as root too:
    pytest's temporary folders are private to their owner, so nginx's default `nobody` could not read them.
    """
    exe = exe or require_nginx()
    prefix = Path(workdir).resolve()
    prefix.mkdir(parents=True, exist_ok=True)
    user = "user root;\n" if os.geteuid() == 0 else ""
    log = prefix / "nginx.stderr.log"
    for attempt in range(attempts):
        port = free_port()
        conf = prefix / "nginx.conf"
        conf.write_text(NGINX_CONF.format(user=user, prefix=prefix, host=HOST, port=port, root=Path(root).resolve()))
        # -e: the error log from the very start (before the config is read) is ours too, not /var/log/nginx.
        argv = [exe, "-c", str(conf), "-p", str(prefix), "-e", str(prefix / "error.log")]
        with _server_process(argv, log) as proc:
            try:
                wait_until_serving(proc, port, "nginx", prefix / "error.log")
            except RuntimeError:
                if attempt == attempts - 1 or proc.poll() is None:
                    raise
                continue
            yield f"http://{HOST}:{port}"
            return


# --------------------------------------------------------------------------------------------- fault proxy

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "trailers",
              "transfer-encoding", "upgrade", "proxy-connection"}
NOT_FORWARDED = HOP_BY_HOP | {"expect"}  # the proxy already answered `100-continue` and holds the whole body
CHUNK = 64 * 1024


def _matches(rule: Rule, value: str | None) -> bool:
    if rule is None:
        return True
    if value is None:
        return False
    if isinstance(rule, str):
        return value == rule
    if isinstance(rule, re.Pattern):
        return rule.search(value) is not None
    return bool(rule(value))


def range_starts_at(offsets) -> Callable[[str], bool]:
    """A Range rule: true for `bytes=A-B` whose A is one of `offsets`."""
    wanted = set(int(o) for o in offsets)

    def rule(value: str) -> bool:
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", value.strip())
        return bool(m) and int(m.group(1)) in wanted
    return rule


@dataclass(frozen=True)
class Seen:
    """One request the proxy received, and the status it answered with."""

    method: str
    path: str
    range: str | None
    status: int
    injected: bool = False


class FaultProxy:
    """A reverse proxy to `target_host:target_port` that injects `503 Service Unavailable`.

    - `delay=S`: every request waits S seconds before it is answered or forwarded (a slow network).
    - `fail_every=N` (N > 0): the Nth, 2Nth, ... request received (counting all requests) gets a 503.
    - `fail_path` and/or `fail_range`: every request whose path (without the query) and Range header both match
      gets a 503, always (a persistent error). A rule is an exact string, a compiled regex (searched) or a
      callable; a rule left at None matches anything, but at least one of them must be set for this to apply.
      A `fail_range` rule never matches a request without a Range header.

    Everything else is forwarded as it came (method, path, headers including Range, body) and the answer is
    streamed back with its status and headers. `requests`, `faults` and `seen` tell what happened.
    Rules may be changed while it runs (`proxy.fail_every = 0`). `faults` counts injected 503s only.
    """

    def __init__(self, target_host: str, target_port: int, fail_every: int = 0, fail_path: Rule = None,
                 fail_range: Rule = None, delay: float = 0.0) -> None:
        self.target = (target_host, int(target_port))
        self.fail_every, self.fail_path, self.fail_range = fail_every, fail_path, fail_range
        self.delay = delay  # seconds each request waits before it is forwarded (a slow network)
        self._lock = threading.Lock()
        self.requests = 0
        self.faults = 0
        self.seen: list[Seen] = []
        self._sockets: set[socket.socket] = set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def to(cls, url: str, **rules) -> "FaultProxy":
        """A proxy in front of `http://HOST:PORT`."""
        host, _, port = url.split("://", 1)[1].rstrip("/").partition(":")
        return cls(host, int(port or 80), **rules)

    # --- lifecycle
    @property
    def url(self) -> str:
        assert self._server is not None, "the proxy is not running"
        return f"http://{HOST}:{self._server.server_address[1]}"

    def start(self) -> "FaultProxy":
        proxy = self

        class Handler(_ProxyHandler):
            owner = proxy

        self._server = _QuietServer((HOST, 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fault-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            sockets = list(self._sockets)
        for s in sockets:  # kept-alive client connections: end them so that no handler thread waits on them
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- decisions
    def decide(self, path: str, range_header: str | None) -> bool:
        """Count one request; whether it gets a 503."""
        with self._lock:
            self.requests += 1
            n = self.requests
            every = self.fail_every
            rules = (self.fail_path, self.fail_range)
        if every and n % every == 0:
            return True
        if rules != (None, None) and _matches(rules[0], path.split("?", 1)[0]) and _matches(rules[1], range_header):
            return True
        return False

    def record(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)
            if seen.injected:
                self.faults += 1


class _QuietServer(ThreadingHTTPServer):
    """A client that hangs up mid-answer (a killed conversion) is expected, not an error to print."""

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class _ProxyHandler(BaseHTTPRequestHandler):
    owner: FaultProxy
    protocol_version = "HTTP/1.1"  # keep-alive, as aiohttp and botocore expect
    timeout = 60

    def setup(self) -> None:
        super().setup()
        with self.owner._lock:
            self.owner._sockets.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.owner._lock:
                self.owner._sockets.discard(self.connection)

    def log_message(self, format: str, *args) -> None:  # quiet
        pass

    def _body(self) -> bytes | None:
        length = self.headers.get("Content-Length")
        if length:
            return self.rfile.read(int(length))
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(parts)
        return None

    def _handle(self) -> None:
        range_header = self.headers.get("Range")
        body = self._body()
        if self.owner.delay:
            time.sleep(self.owner.delay)
        if self.owner.decide(self.path, range_header):
            payload = b"Service Unavailable (injected by the test proxy)\n"
            self.send_response_only(503, "Service Unavailable")
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(payload) if self.command != "HEAD" else 0))
            # recorded before any byte of the answer leaves: a client that has its answer finds it counted
            self.owner.record(Seen(self.command, self.path, range_header, 503, injected=True))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)
            self.wfile.flush()
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in NOT_FORWARDED}
        upstream = http.client.HTTPConnection(*self.owner.target, timeout=30)
        try:
            try:
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
            except (OSError, http.client.HTTPException) as e:  # the target is down: say so, as a proxy does
                payload = f"Bad Gateway: {self.owner.target[0]}:{self.owner.target[1]}: {e}\n".encode()
                self.send_response_only(502, "Bad Gateway")
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(payload)))
                self.owner.record(Seen(self.command, self.path, range_header, 502))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)
                self.wfile.flush()
                return
            self.send_response_only(response.status, response.reason)
            length = response.getheader("Content-Length")
            for key, value in response.getheaders():
                if key.lower() not in HOP_BY_HOP:
                    self.send_header(key, value)
            no_body = self.command == "HEAD" or response.status in (204, 304) or 100 <= response.status < 200
            if length is None and not no_body:  # unknown length: the end of the body is the end of the connection
                self.send_header("Connection", "close")
                self.close_connection = True
            self.owner.record(Seen(self.command, self.path, range_header, response.status))  # before any byte leaves
            self.end_headers()
            if not no_body:
                while True:
                    chunk = response.read(CHUNK)
                    if not chunk:
                        break
                    self.wfile.write(chunk)
            self.wfile.flush()
        finally:
            upstream.close()

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_OPTIONS = do_PATCH = _handle


# --------------------------------------------------------------------------------------------- a misbehaving server

class Misbehaving:
    """An HTTP/1.1 server on 127.0.0.1 serving files of `root`, misbehaving as `mode` says:

    - "silent": accepts connections and never answers anything;
    - "hang-get": answers HEAD (size, Accept-Ranges), never answers a GET;
    - "no-range": answers every GET with 200 and the whole file, whatever Range asked;
    - "too-long": answers a range GET with 206 and a Content-Length, then sends more bytes than it said;
    - "trickle": answers a range GET with 206, then one byte every 0.2 s (never idle, never done);
    - "forbidden": answers everything with 403.
    Held connections are closed when the server stops (a context manager)."""

    def __init__(self, root: Path, mode: str) -> None:
        self.root, self.mode = Path(root), mode
        self.server = socket.create_server((HOST, 0))
        self.server.settimeout(0.05)
        self.port = self.server.getsockname()[1]
        self.stop = threading.Event()
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, name=f"misbehaving-{mode}", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def __enter__(self) -> "Misbehaving":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()
        for conn in self.held:
            conn.close()
        self.server.close()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.server.accept()
            except OSError:
                continue
            self.held.append(conn)
            if self.mode != "silent":
                threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        conn.settimeout(0.2)
        reader = conn.makefile("rb")
        while not self.stop.is_set():
            try:
                request = reader.readline()
            except OSError:
                continue
            if not request:
                return
            headers = {}
            while True:
                line = reader.readline()
                if line in (b"\r\n", b"\n", b""):
                    break
                key, _, value = line.decode("latin-1").partition(":")
                headers[key.strip().lower()] = value.strip()
            method, path = request.decode("latin-1").split()[:2]
            target = self.root / path.lstrip("/")
            if not target.is_file():
                conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                continue
            data = target.read_bytes()
            if self.mode == "forbidden":
                conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                continue
            if method == "HEAD":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nAccept-Ranges: bytes\r\n\r\n" % len(data))
                continue
            if self.mode == "hang-get":
                return  # holds the connection, never answers
            m = re.match(r"bytes=(\d+)-(\d*)", headers.get("range", ""))
            if self.mode == "no-range" or not m:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(data) + data)
                continue
            start, stop = int(m[1]), int(m[2] or len(data) - 1) + 1
            body = data[start:stop]
            if self.mode == "trickle":
                conn.sendall(b"HTTP/1.1 206 Partial Content\r\nContent-Length: %d\r\n\r\n" % len(body))
                for byte in body:
                    if self.stop.is_set():
                        return
                    try:
                        conn.sendall(bytes([byte]))
                    except OSError:
                        return
                    time.sleep(0.2)
                continue
            conn.sendall(b"HTTP/1.1 206 Partial Content\r\nContent-Length: %d\r\nContent-Range: bytes %d-%d/%d\r\n\r\n"
                         % (len(body), start, stop - 1, len(data)) + body + b"x" * 100)  # "too-long": 100 more
