"""Remote reading: streamprep reading the downloads over HTTP with added latency, against local disk.

Builds (once, cached) a synthetic ImageNet-shaped download set of real ~100 KB JPEGs, serves its
folder with a small threaded HTTP/1.1 server on 127.0.0.1 that sleeps LATENCY before answering each
request (HEAD and single `Range: bytes=a-b` GETs, 206 + Content-Range), then runs the same
`streamprep convert` twice, on local paths and on http:// URLs, checks that both outputs are
byte-identical and reports wall time, images/s, MB/s of image data, the remote/local throughput
ratio and the HTTP requests and bytes the remote run cost. It then replays those requests with fsspec
alone in a fresh process (the transfer floor: no fsspec client making them is faster here).

    python benchmarks/remote.py [--classes 40] [--images-per-class 50] [--val-images 500]
                                [--latency-ms 20] [--workers N] [--phases] [--write-docs PATH]

--phases adds a third, untimed remote run without --quiet whose progress lines attribute the
HTTP requests to streamprep's phases (bounding boxes, index validation, index train, write ...).
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import hashlib
import http.client
import io
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import threading
import time
import urllib.parse
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SYNSETS = ROOT / "streamprep/data/imagenet_lsvrc_2015_synsets.txt"
TRAIN_TAR, VAL_TAR, BBOX_TARGZ = "ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar", "ILSVRC2012_bbox_train_v2.tar.gz"
VAL_LABELS = "validation_labels.txt"
WIDTH, HEIGHT, QUALITY = 400, 350, 85
XMLS_PER_CLASS = 3
MTIME = 1_300_000_000
SECTION = "## Remote reading (benchmarks/remote.py)"
PHASE_FILE = {"bounding boxes": BBOX_TARGZ, "index validation": VAL_TAR, "write validation": VAL_TAR,
              "index train": TRAIN_TAR, "write train": TRAIN_TAR}  # which download each phase reads
SHARDS = ["--train-shards", "16", "--validation-shards", "8", "--classic-threads", "8"]


# --------------------------------------------------------------------------- the download set

def noise_jpeg(rng, width: int = WIDTH, height: int = HEIGHT) -> bytes:
    """A width x height (default 400x350) RGB noise JPEG of roughly 100 KB at the default size (the noise
    strength, hence the size, varies)."""
    import numpy as np
    from PIL import Image

    base = rng.integers(40, 216, (1, 1, 3))
    pixels = np.clip(base + rng.normal(0, rng.uniform(55, 140), (height, width, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buf, "JPEG", quality=QUALITY)
    return buf.getvalue()


def _info(name: str, size: int, kind: bytes = tarfile.REGTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.type = size, MTIME, kind
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    info.uname = info.gname = "imagenet"
    return info


def voc_xml(synset: str, stem: str, rng, width: int = WIDTH, height: int = HEIGHT) -> bytes:
    objects = []
    for _ in range(int(rng.integers(1, 3))):
        x0, y0 = int(rng.integers(0, width // 2)), int(rng.integers(0, height // 2))
        x1, y1 = int(rng.integers(x0 + 10, width)), int(rng.integers(y0 + 10, height))
        objects.append(f"<object><name>{synset}</name><pose>Unspecified</pose><truncated>0</truncated>"
                       f"<difficult>0</difficult><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax>"
                       f"<ymax>{y1}</ymax></bndbox></object>")
    return (f"<annotation><folder>{synset}</folder><filename>{stem}</filename><source><database>ImageNet database"
            f"</database></source><size><width>{width}</width><height>{height}</height><depth>3</depth></size>"
            f"<segmented>0</segmented>{''.join(objects)}</annotation>\n").encode()


def _dims(rng, size_range: tuple[int, int] | None) -> tuple[int, int]:
    """(width, height): the fixed 400x350, or each side drawn from `size_range` (inclusive pixels)."""
    if size_range is None:  # no draw, so the default data set stays byte-identical to earlier builds
        return WIDTH, HEIGHT
    lo, hi = size_range
    return int(rng.integers(lo, hi + 1)), int(rng.integers(lo, hi + 1))


def build(folder: Path, classes: int, per_class: int, val_images: int, seed: int,
          size_range: tuple[int, int] | None = None) -> dict[str, Any]:
    """Write the three downloads and a validation labels file into `folder`, unless already there.

    JPEGs are 400x350, or with `size_range=(lo, hi)` each side drawn between lo and hi pixels."""
    done = folder / "done.json"
    if done.exists():
        return json.loads(done.read_text())
    import numpy as np

    synsets = SYNSETS.read_text().split()[:classes]
    if len(synsets) < classes:
        raise SystemExit(f"--classes {classes}: the synsets file lists only {len(synsets)}")
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    train_bytes, sizes, names, dims = 0, [], {}, {}
    with tarfile.open(folder / (TRAIN_TAR + ".part"), "w", format=tarfile.GNU_FORMAT) as outer:
        for k, synset in enumerate(synsets):
            rng = np.random.default_rng([seed, 1, k])
            numbers = rng.choice(np.arange(1, 50_000), per_class, replace=False)  # unsorted, as in the real tars
            names[synset] = [f"{synset}_{n}" for n in numbers]
            inner = io.BytesIO()
            with tarfile.open(fileobj=inner, mode="w", format=tarfile.GNU_FORMAT) as tar:
                for stem in names[synset]:
                    dims[stem] = _dims(rng, size_range)
                    jpeg = noise_jpeg(rng, *dims[stem])
                    train_bytes += len(jpeg)
                    sizes.append(len(jpeg))
                    tar.addfile(_info(f"{stem}.JPEG", len(jpeg)), io.BytesIO(jpeg))
            outer.addfile(_info(f"{synset}.tar", inner.tell()), io.BytesIO(inner.getvalue()))
    rng = np.random.default_rng([seed, 2])
    val_labels = [synsets[int(i)] for i in rng.integers(0, classes, val_images)]
    val_bytes = 0
    with tarfile.open(folder / (VAL_TAR + ".part"), "w", format=tarfile.GNU_FORMAT) as tar:
        for i in range(1, val_images + 1):
            jpeg = noise_jpeg(rng, *_dims(rng, size_range))
            val_bytes += len(jpeg)
            sizes.append(len(jpeg))
            tar.addfile(_info(f"ILSVRC2012_val_{i:08d}.JPEG", len(jpeg)), io.BytesIO(jpeg))
    (folder / VAL_LABELS).write_text("".join(f"{s}\n" for s in val_labels))
    rng = np.random.default_rng([seed, 3])
    xml_files = 0
    with open(folder / (BBOX_TARGZ + ".part"), "wb") as raw, \
            gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for synset in synsets:
            tar.addfile(_info(f"{synset}/", 0, tarfile.DIRTYPE))
            for stem in names[synset][:XMLS_PER_CLASS]:
                xml = voc_xml(synset, stem, rng, *dims[stem])
                tar.addfile(_info(f"{synset}/{stem}.xml", len(xml)), io.BytesIO(xml))
                xml_files += 1
    for name in (TRAIN_TAR, VAL_TAR, BBOX_TARGZ):
        os.replace(folder / (name + ".part"), folder / name)
    meta = {
        "classes": classes, "images_per_class": per_class, "val_images": val_images, "seed": seed,
        "train_images": classes * per_class, "images": classes * per_class + val_images, "xml_files": xml_files,
        "train_image_bytes": train_bytes, "val_image_bytes": val_bytes, "image_bytes": train_bytes + val_bytes,
        "jpeg_kb": {"min": round(min(sizes) / 1e3, 1), "mean": round(sum(sizes) / len(sizes) / 1e3, 1),
                    "max": round(max(sizes) / 1e3, 1)},
        "archive_bytes": {n: (folder / n).stat().st_size for n in (TRAIN_TAR, VAL_TAR, BBOX_TARGZ)},
        "build_s": round(time.monotonic() - t0, 1),
    }
    if size_range is not None:
        meta["size_range"] = list(size_range)
    done.write_text(json.dumps(meta, indent=1))
    return meta


# --------------------------------------------------------------------------- the HTTP server

class Stats:
    """Requests served: totals, and a log (arrival time, method, file, bytes, status) for the phases."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.log: list[tuple[float, str, str, int, int, int, int]] = []  # ..., status, first byte
            self.connections = self.in_flight = self.max_in_flight = self.aborted = 0

    def enter(self) -> None:
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def leave(self, arrived: float, method: str, path: str, asked: int, sent: int, status: int, start: int) -> None:
        with self.lock:
            self.in_flight -= 1
            self.log.append((arrived, method, path, asked, sent, status, start))

    def connected(self) -> None:
        with self.lock:
            self.connections += 1

    def summary(self) -> dict[str, Any]:
        with self.lock:
            log = list(self.log)
            out = {"requests": len(log), "bytes": sum(e[4] for e in log), "connections": self.connections,
                   "max_in_flight": self.max_in_flight, "aborted_responses": self.aborted}
        out["mb"] = round(out["bytes"] / 1e6, 1)
        out["by_method"] = _count(log, lambda e: e[1])
        out["by_status"] = _count(log, lambda e: str(e[5]))
        out["by_file"] = {name: _group(entries) for name, entries in _split(log, lambda e: e[2]).items()}
        return out


def _count(log, key) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for e in log:
        counts[key(e)] += 1
    return dict(sorted(counts.items()))


def _split(log, key) -> dict[str, list]:
    groups: dict[str, list] = defaultdict(list)
    for e in log:
        groups[key(e)].append(e)
    return dict(groups)


def _group(entries: list) -> dict[str, Any]:
    gets = [e for e in entries if e[1] == "GET"]
    sent = sum(e[4] for e in entries)
    return {"requests": len(entries), "head": len(entries) - len(gets), "get": len(gets), "mb": round(sent / 1e6, 2),
            "mean_get_kb": round(sum(e[4] for e in gets) / len(gets) / 1e3, 1) if gets else 0}


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


# --------------------------------------------------------------------------- runs

def convert_cmd(train: str, val: str, bbox: str, labels: Path, out: Path, workers: int | None,
                quiet: bool = True) -> list[str]:
    cmd = [sys.executable, "-m", "streamprep", "convert", "--train", train, "--val", val, "--bbox", bbox,
           "--validation-labels-file", str(labels), "--out", str(out), *SHARDS]
    if workers:
        cmd += ["--workers", str(workers)]
    return cmd + (["--quiet"] if quiet else [])


def run(cmd: list[str], out: Path, timeout: float) -> dict[str, Any]:
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd, cwd=ROOT, stderr=subprocess.PIPE, text=True, timeout=timeout)
        code, err = p.returncode, p.stderr
    except subprocess.TimeoutExpired as e:
        code, err = "timeout", (e.stderr or b"").decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
    wall = time.monotonic() - t0
    if err:
        sys.stderr.write(err)
    return {"wall_s": wall, "returncode": code, "stderr_tail": err[-2000:] if code != 0 else ""}


def run_with_phases(cmd: list[str], out: Path, timeout: float) -> tuple[dict[str, Any], list[tuple[float, str]]]:
    """Run without --quiet; stderr is not a terminal, so each phase logs `NAME: started` / `NAME: done, ...`."""
    shutil.rmtree(out, ignore_errors=True)
    lines: list[tuple[float, str]] = []
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, text=True)

    def pump() -> None:
        for line in p.stderr:  # type: ignore[union-attr]
            lines.append((time.monotonic(), line.rstrip("\n")))

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        code: Any = p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        code = "timeout"
    reader.join(5)
    return {"wall_s": time.monotonic() - t0, "returncode": code,
            "stderr_tail": "\n".join(l for _, l in lines)[-2000:] if code != 0 else ""}, lines


REPLAY = """
import json, sys
import fsspec
requests = json.load(open(sys.argv[1]))
fs = fsspec.filesystem("http")
for method, url, start, stop in requests:
    if method == "HEAD":
        fs.info(url)
gets = [r for r in requests if r[0] == "GET"]
data = fs.cat_ranges([r[1] for r in gets], [r[2] for r in gets], [r[3] for r in gets], batch_size=int(sys.argv[2]))
assert all(len(d) == r[3] - r[2] for d, r in zip(data, gets)), "short read"
"""


def transfer_floor(log: list, port: int, workdir: Path, timeout: float, concurrency: int = 128) -> dict[str, Any]:
    """The same requests the remote run made, replayed by fsspec alone in a fresh process: every GET in one
    concurrent `cat_ranges` (`concurrency` in flight), nothing parsed, encoded or written. No fsspec client
    reading these bytes from this server can do the remote run in less time than this."""
    requests = [[e[1], f"http://127.0.0.1:{port}/{e[2]}", e[6], e[6] + e[3]] for e in log if e[5] in (200, 206)]
    listing = workdir / "replay.json"
    listing.write_text(json.dumps(requests))
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-c", REPLAY, str(listing), str(concurrency)], stderr=subprocess.PIPE,
                       text=True, timeout=timeout)
    wall = time.monotonic() - t0
    listing.unlink()
    if p.returncode != 0:
        sys.stderr.write(p.stderr)
    return {"wall_s": wall, "returncode": p.returncode, "requests": len(requests), "concurrency": concurrency}


def attribute(log: list, lines: list[tuple[float, str]]) -> dict[str, Any]:
    """Requests per phase, by arrival time between a phase's `started` and `done` lines."""
    spans: list[list[Any]] = []
    for t, line in lines:
        m = re.match(r"^(.+?): (started|done)\b", line)
        if not m:
            continue
        if m[2] == "started":
            spans.append([m[1], t, None])
        else:
            for span in reversed(spans):
                if span[0] == m[1] and span[2] is None:
                    span[2] = t
                    break
    phases: dict[str, list] = defaultdict(list)
    for e in log:  # phases run side by side (the bounding boxes beside the index walks): match the file too
        live = [s[0] for s in spans if s[1] <= e[0] <= (s[2] if s[2] is not None else float("inf"))]
        name = next((n for n in live if PHASE_FILE.get(n) == e[2]), live[0] if live else "outside phases")
        phases[name].append(e)
    order = [s[0] for s in spans] + ["outside phases"]
    return {name: {**_group(phases[name]), "seconds": round(s[2] - s[1], 2) if (s := next(
        (x for x in spans if x[0] == name and x[2] is not None), None)) else None}
        for name in order if name in phases}


def digests(folder: Path) -> dict[str, str]:
    out = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            out[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def compare(a: Path, b: Path) -> dict[str, Any]:
    da, db = digests(a), digests(b)
    differ = sorted(k for k in set(da) | set(db) if da.get(k) != db.get(k))
    return {"identical": not differ and bool(da), "files": len(da), "differing": differ[:10]}


# --------------------------------------------------------------------------- report

def machine() -> dict[str, Any]:
    mem = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = round(int(line.split()[1]) / 1024 ** 2, 1)
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "mem_total_gib": mem, "python": platform.python_version(),
            "system": f"{platform.system()} {platform.release()} {platform.machine()}"}


def table(r: dict[str, Any]) -> str:
    lat = r["latency_ms"]
    rows = ["| run | wall s | images/s | MB/s of images | HTTP requests | MB served |",
            "| --- | ---: | ---: | ---: | ---: | ---: |"]
    loc, rem = r["local"], r["remote"]
    rows.append(f"| local disk | {loc['wall_s']:.2f} | {loc['images_per_s']:,.0f} | {loc['mb_per_s']:.1f} | | |")
    rows.append(f"| HTTP, {lat:g} ms per request | {rem['wall_s']:.2f} | {rem['images_per_s']:,.0f} | "
                f"{rem['mb_per_s']:.1f} | {rem['http']['requests']:,} | {rem['http']['mb']:,.1f} |")
    fl = r["floor"]
    rows.append(f"| same requests, fsspec alone, nothing else ({fl['concurrency']} in flight) | {fl['wall_s']:.2f} | "
                f"{fl['images_per_s']:,.0f} | {fl['mb_per_s']:.1f} | {fl['http']['requests']:,} | "
                f"{fl['http']['mb']:,.1f} |")
    rows.append(f"| **remote / local throughput** | | **{r['ratio']:.2f}** | | | |")
    rows.append(f"| the same ratio for the transfer alone: the best an fsspec client can reach here | | "
                f"{r['floor_ratio']:.2f} | | | |")
    return "\n".join(rows)


def phases_table(phases: dict[str, Any]) -> str:
    rows = ["| phase | s | requests | GET | HEAD | MB served | mean GET KB |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, p in phases.items():
        secs = "" if p["seconds"] is None else f"{p['seconds']:.2f}"
        rows.append(f"| {name} | {secs} | {p['requests']:,} | {p['get']:,} | {p['head']:,} | {p['mb']:,.2f} | "
                    f"{p['mean_get_kb']:,.1f} |")
    return "\n".join(rows)


def section(r: dict[str, Any]) -> str:
    s, m = r["scale"], r["machine"]
    text = [SECTION, "",
            f"streamprep reading the three downloads over HTTP from a local threaded server that waits "
            f"{r['latency_ms']:g} ms before answering each request, against reading them from local disk: same "
            f"conversion (16 train / 8 validation shards), byte-identical output "
            f"({'checked' if r['identical'] else 'NOT identical'}, {r['files_compared']} files).",
            f"Scale: {s['classes']} classes x {s['images_per_class']} images + {s['val_images']} validation images "
            f"({s['images']:,} JPEGs, {s['image_bytes'] / 1e6:,.0f} MB, {s['jpeg_kb']['mean']:.0f} KB on average); "
            f"streamprep workers: {r['workers'] or 'default'}.",
            "The third row replays the remote run's requests (logged by the server) with fsspec alone in a fresh "
            "process, every GET in one concurrent `cat_ranges`, nothing parsed, encoded or written: the transfer "
            "floor of this client and server on this machine.", "", table(r), ""]
    if r.get("phases"):
        text += ["HTTP requests per phase (a separate run without `--quiet`, whose progress lines mark the phases):", "",
                 phases_table(r["phases"]), ""]
    text += ["```bash", r["command"], "```", "",
             f"Measured {r['date']} on {m['nproc']} CPUs, {m['mem_total_gib']} GiB memory, {m['system']}, "
             f"Python {m['python']}.", ""]
    return "\n".join(text)


def write_docs(path: Path, text: str, heading: str = SECTION) -> None:
    """Replace the section `heading` (up to the next `## ` heading) or append it."""
    lines = path.read_text().splitlines(keepends=True) if path.exists() else []
    start = next((i for i, l in enumerate(lines) if l.rstrip() == heading), None)
    if start is None:
        body = "".join(lines)
        body = body.rstrip("\n") + "\n\n" if body.strip() else ""
        path.write_text(body + text)
        return
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    tail = "".join(lines[end:])
    path.write_text("".join(lines[:start]) + text + ("\n" + tail if tail else ""))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--classes", type=int, default=40, help="training classes (the first N synsets)")
    ap.add_argument("--images-per-class", type=int, default=50)
    ap.add_argument("--val-images", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--latency-ms", type=float, default=20.0, help="sleep before answering each HTTP request")
    ap.add_argument("--workers", type=int, default=None, help="passed to streamprep --workers (default: its own)")
    ap.add_argument("--cache", type=Path, default=ROOT / "benchmarks/.cache/remote")
    ap.add_argument("--phases", action="store_true",
                    help="also run remote once more without --quiet to count requests per phase (untimed)")
    ap.add_argument("--keep-outputs", action="store_true", help="keep the shard folders under the cache")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds allowed per streamprep run")
    ap.add_argument("--write-docs", type=Path, metavar="PATH",
                    help=f"append or replace the section '{SECTION}' in this Markdown file")
    args = ap.parse_args()

    folder = args.cache / f"c{args.classes}-i{args.images_per_class}-v{args.val_images}-s{args.seed}"
    meta = build(folder, args.classes, args.images_per_class, args.val_images, args.seed)
    labels = folder / VAL_LABELS
    outs = {k: args.cache / f"out-{k}" for k in ("local", "remote", "phases")}

    server = LatencyServer(folder, args.latency_ms / 1e3)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    result: dict[str, Any] = {}
    try:
        check = check_server(port, folder, VAL_TAR)
        local_cmd = convert_cmd(*(str(folder / n) for n in (TRAIN_TAR, VAL_TAR, BBOX_TARGZ)), labels, outs["local"],
                                args.workers)
        urls = [f"http://127.0.0.1:{port}/{n}" for n in (TRAIN_TAR, VAL_TAR, BBOX_TARGZ)]
        remote_cmd = convert_cmd(*urls, labels, outs["remote"], args.workers)
        local = run(local_cmd, outs["local"], args.timeout)
        server.stats.reset()
        remote = run(remote_cmd, outs["remote"], args.timeout)
        remote["http"] = server.stats.summary()
        with server.stats.lock:
            remote_log = list(server.stats.log)
        server.stats.reset()
        floor = transfer_floor(remote_log, port, args.cache, args.timeout)
        floor["http"] = server.stats.summary()
        phases, phases_check = None, None
        if args.phases and remote["returncode"] == 0:
            server.stats.reset()
            info, lines = run_with_phases(convert_cmd(*urls, labels, outs["phases"], args.workers, quiet=False),
                                          outs["phases"], args.timeout)
            with server.stats.lock:
                log = list(server.stats.log)
            phases = attribute(log, lines)
            phases_check = {"wall_s": round(info["wall_s"], 2), "returncode": info["returncode"],
                            **({"identical": compare(outs["local"], outs["phases"])["identical"]}
                               if info["returncode"] == 0 else {"stderr_tail": info["stderr_tail"]})}
    finally:
        server.shutdown()
        server.server_close()

    ok = local["returncode"] == 0 and remote["returncode"] == 0 and floor["returncode"] == 0
    same = compare(outs["local"], outs["remote"]) if ok else {"identical": False, "files": 0, "differing": []}
    images, nbytes = meta["images"], meta["image_bytes"]
    ratio = local["wall_s"] / remote["wall_s"]  # (images / remote wall) / (images / local wall)
    for r in (local, remote, floor):
        r["images_per_s"] = round(images / r["wall_s"], 1)
        r["mb_per_s"] = round(nbytes / 1e6 / r["wall_s"], 2)
        r["wall_s"] = round(r["wall_s"], 2)
        if not r.get("stderr_tail"):
            r.pop("stderr_tail", None)
    result = {
        "scale": {k: meta[k] for k in ("classes", "images_per_class", "val_images", "train_images", "images",
                                       "xml_files", "image_bytes", "jpeg_kb", "archive_bytes")},
        "latency_ms": args.latency_ms, "workers": args.workers, "server_check": check,
        "local": local, "remote": remote, "floor": floor,
        "ratio": round(ratio, 3), "floor_ratio": round(local["wall_s"] / floor["wall_s"], 3),
        "identical": same["identical"], "files_compared": same["files"],
        **({"differing": same["differing"]} if same["differing"] else {}),
        **({"phases": phases, "phases_run": phases_check} if phases is not None else {}),
        "command": "python benchmarks/remote.py" + (" " + shlex.join(sys.argv[1:]) if sys.argv[1:] else ""),
        "local_command": shlex.join(local_cmd), "remote_command": shlex.join(remote_cmd),
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"), "machine": machine(),
    }
    print(json.dumps(result, indent=1))
    print()
    print(table(result))
    if phases:
        print()
        print(phases_table(phases))
    if args.write_docs and ok:
        write_docs(args.write_docs, section(result))
        print(f"\nwrote the section '{SECTION}' in {args.write_docs}")
    if not args.keep_outputs:
        for out in outs.values():
            shutil.rmtree(out, ignore_errors=True)
    if not ok or not same["identical"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
