"""A local HTTP/1.1 server of a folder that waits before answering each request (HEAD, single-range GETs)."""

from __future__ import annotations

import http.client
import re
import threading
import time
import urllib.parse
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

from .httplog import Stats

RANGE = re.compile(r"bytes=(\d*)-(\d*)")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    server_version = "streamprep-remote-bench/1"
    disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms Nagle/delayed-ACK stall
    server: "LatencyServer"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    def setup(self) -> None:
        super().setup()
        self.server.stats.connected()

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    def _serve(self, head: bool) -> None:
        arrived = time.monotonic()
        stats = self.server.stats
        stats.enter()
        name, asked, sent, status, start = "?", 0, 0, 0, 0
        try:
            time.sleep(self.server.latency)
            name, asked, sent, status, start = self._respond(head)
        finally:
            stats.leave(arrived, self.command, name, asked, sent, status, start)

    def _respond(self, head: bool) -> tuple[str, int, int, int, int]:
        rel = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path).lstrip("/")
        path = (self.server.root / rel).resolve()
        if self.server.root not in path.parents or not path.is_file():
            self.send_error(404)
            return rel, 0, 0, 404, 0
        size = path.stat().st_size
        start, stop, status = 0, size, 200  # stop is exclusive
        header = self.headers.get("Range")
        match = RANGE.fullmatch(header.strip()) if header else None  # other forms (several ranges): whole file
        if match and (match[1] or match[2]) and not (match[1] and match[2] and int(match[2]) < int(match[1])):
            if match[1]:
                start = int(match[1])
                stop = min(int(match[2]) + 1, size) if match[2] else size
            else:  # bytes=-N: the last N bytes
                start = max(0, size - int(match[2]))
            if start >= size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return rel, 0, 0, 416, 0
            status = 206
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(stop - start))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{stop - 1}/{size}")
        self.send_header("Last-Modified", self.date_time_string(int(path.stat().st_mtime)))
        self.end_headers()
        if head:
            return rel, stop - start, 0, status, start
        sent = 0
        try:
            with open(path, "rb") as f:  # zero-copy from the page cache: the server should not be the bottleneck
                sent = self.connection.sendfile(f, offset=start, count=stop - start)
        except (BrokenPipeError, ConnectionResetError):  # the client hung up (e.g. stopped reading a stream)
            self.close_connection = True
            with self.server.stats.lock:
                self.server.stats.aborted += 1
        return rel, stop - start, sent, status, start


class LatencyServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(self, root: Path, latency: float) -> None:
        self.root, self.latency, self.stats = root.resolve(), latency, Stats()
        super().__init__(("127.0.0.1", 0), Handler)


def check_server(port: int, folder: Path, name: str) -> dict[str, Any]:
    """A HEAD and a Range GET against the server, compared with the file on disk."""
    data = (folder / name).read_bytes()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("HEAD", f"/{name}")
        r = conn.getresponse()
        r.read()
        assert r.status == 200 and int(r.getheader("Content-Length")) == len(data), (r.status, r.getheaders())
        assert r.getheader("Accept-Ranges") == "bytes"
        a, b = 1000, 1511
        t0 = time.monotonic()
        conn.request("GET", f"/{name}", headers={"Range": f"bytes={a}-{b}"})  # same connection: keep-alive
        r = conn.getresponse()
        body = r.read()
        took = time.monotonic() - t0
        assert r.status == 206, r.status
        assert r.getheader("Content-Range") == f"bytes {a}-{b}/{len(data)}", r.getheader("Content-Range")
        assert int(r.getheader("Content-Length")) == b - a + 1 and body == data[a:b + 1]
        conn.request("GET", f"/{name}", headers={"Range": f"bytes={len(data)}-"})
        r = conn.getresponse()
        r.read()
        assert r.status == 416, r.status
    finally:
        conn.close()
    return {"ok": True, "range_request_ms": round(took * 1e3, 1)}


@contextmanager
def serving(folder: Path, latency: float) -> Iterator[LatencyServer]:
    """`folder` served on 127.0.0.1 (port: `server.server_address[1]`) from a thread, until the block ends."""
    server = LatencyServer(folder, latency)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
