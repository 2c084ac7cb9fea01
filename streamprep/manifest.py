"""The output's manifest.json: what was converted from what, and every shard's count, size and sha256."""

from __future__ import annotations

import datetime
import hashlib
import json
import threading
import time
from typing import Any, Callable

from . import __version__
from .archives import Source
from .errors import OutputError
from .output import Output

MANIFEST = "manifest.json"
FORMAT = "streamprep-manifest/1"
FLUSH_INTERVAL = 1.0  # seconds between rewrites of the manifest while shards finish (at most a second of work lost)
MTIME_KEYS = ("mtime", "LastModified", "last_modified", "updated", "Last-Modified", "modified")
ETAG_KEYS = ("ETag", "etag")


def identity(source: Source) -> dict[str, Any]:
    """What identifies a download's content without reading it: URL, size, and mtime and/or ETag."""
    info = source.info
    mtime = next((info[k] for k in MTIME_KEYS if info.get(k) is not None), None)
    etag = next((info[k] for k in ETAG_KEYS if info.get(k)), None)
    if isinstance(mtime, datetime.datetime):
        mtime = mtime.timestamp()
    try:  # one spelling per file: a relative path and its absolute form are the same download
        url = source.fs.unstrip_protocol(source.path)
    except Exception:  # noqa: BLE001 - a backend without it: the URL as given
        url = source.url
    return {"url": url, "size": source.size, "mtime": mtime if mtime is None else str(mtime),
            "etag": None if etag is None else str(etag).strip('"')}


def identifiable(identities: dict[str, dict[str, Any]]) -> bool:
    """Whether every input has an mtime or an ETag: without one a change could go unnoticed."""
    return all(i["mtime"] is not None or i["etag"] is not None for i in identities.values())


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load(output: Output) -> dict[str, Any] | None:
    """The manifest in the output folder, or None if there is none or it is not one of ours."""
    try:
        with output.fs.open(output.path(MANIFEST), "rb") as f:
            data = json.loads(f.read())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None  # unreadable or half-written by something else: nothing is reused
    return data if isinstance(data, dict) and data.get("format") == FORMAT else None


def reusable(previous: dict[str, Any] | None, run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Shard entries of an earlier run with the same inputs, labels, layout and policies, by name."""
    if not previous or previous.get("run") != run:
        return {}
    return {s["name"]: s for s in previous.get("shards", []) if isinstance(s, dict) and "name" in s}


def file_matches(output: Output, entry: dict[str, Any]) -> bool:
    """Whether the finished file named by a manifest entry is there with its recorded size and sha256."""
    path = output.path(entry["name"])
    try:
        if output.fs.size(path) != entry.get("bytes"):
            return False
        digest = hashlib.sha256()
        with output.fs.open(path, "rb") as f:
            while chunk := f.read(8 << 20):
                digest.update(chunk)
    except FileNotFoundError:
        return False
    except OSError as e:
        raise OutputError(f"{path}: cannot read it back to check it ({e}); check --out") from None
    return digest.hexdigest() == entry.get("sha256")


class Journal:
    """The manifest of a conversion in progress: rewritten (atomically) as shards finish, complete at the end.

    A run killed at any moment leaves a manifest listing the shards finished before its last
    rewrite; the next run keeps those (after checking them) and writes the rest.
    """

    def __init__(self, output: Output, head: dict[str, Any], kept: list[dict[str, Any]],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.output, self.head, self.clock = output, head, clock
        self.shards: dict[str, dict[str, Any]] = {s["name"]: s for s in kept}
        self.lock = threading.Lock()
        self.last = clock()
        self.write(complete=False)

    def finished(self, entry: dict[str, Any]) -> None:
        with self.lock:
            self.shards[entry["name"]] = entry
            due = self.clock() - self.last >= FLUSH_INTERVAL
        if due:
            self.write(complete=False)

    def write(self, complete: bool, tail: dict[str, Any] | None = None) -> None:
        with self.lock:
            self.last = self.clock()
            # No timestamp: the same conversion gives the same manifest, byte for byte.
            body = {"format": FORMAT, "streamprep": __version__, "complete": complete, **self.head, **(tail or {}),
                    "shards": [self.shards[k] for k in sorted(self.shards)]}
            text = json.dumps(body, indent=1, sort_keys=False).encode() + b"\n"
            with self.output.atomic(MANIFEST) as f:
                f.write(text)
