"""A download given as a folder of its parts (ImageNet-21k's per-synset tars), read in place as one archive of them.

The parts, sorted by the bytes of their names, are laid end to end in one address space: part k's bytes are at
offsets `starts[k]` to `starts[k + 1]`, so an index keeps one offset per image as for a single archive, and a read
goes to the part that holds it. Nothing is copied or extracted.
"""

from __future__ import annotations

import bisect
import fnmatch
import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from ..errors import ArchiveError
from .storage import Source, patience_for, resolve
from .tarscan import TarMember

MTIME_KEYS = ("mtime", "LastModified", "last_modified", "updated", "Last-Modified", "modified")
REGULAR = ord("0")
# Parts a thread keeps open at once, the least recently used closed past it: a folder of fall11's 21,841 per-synset
# tars is more files than a process may have open (20,000 here), whatever the number of threads.
MAX_OPEN = 64


def open_download(url: str, storage_options: dict[str, Any], official: str, glob: str) -> Source:
    """A download a folder may stand for: `url` itself when it is a file; in a folder, the file of its official
    name when the folder holds one; else the folder's files matching `glob`, as one `FolderSource`."""
    fs, path = resolve(url, storage_options)
    try:
        is_folder = bool(fs.isdir(path))
    except Exception:  # noqa: BLE001 - not known to be a folder: opened as a file, with that error's message
        is_folder = False
    if not is_folder:
        return Source(url, storage_options)
    inner = f"{url.rstrip('/')}/{official}"
    if fs.exists(f"{path.rstrip('/')}/{official}"):
        return Source(inner, storage_options)
    return FolderSource(url.rstrip("/"), storage_options, glob)


def _name(entry: dict[str, Any]) -> str:
    return str(entry["name"]).rstrip("/").rsplit("/", 1)[-1]


@dataclass
class FolderSource(Source):
    """The files of one folder (local, or an fsspec URL prefix) whose names match `glob`, read as one archive:
    `parts` (name, size) sorted by the bytes of the names, `starts` where each begins; `others`, the folder's
    other entries by name. `member(k)` is part k as the member of a tar of the parts would be."""

    glob: str = "*"

    def __post_init__(self) -> None:
        self.fs, self.path = resolve(self.url, self.storage_options)
        self.remote = bool(getattr(self.fs, "async_impl", False))
        self.patience = patience_for(self.url, self.storage_options) if self.remote else None
        try:
            listing = self.fs.ls(self.path, detail=True)
        except FileNotFoundError as e:
            raise ArchiveError(f"{self.url}: not found; check the path or URL") from e
        entries = sorted(listing, key=lambda e: _name(e).encode("utf-8", "surrogateescape"))
        wanted = [e for e in entries if e.get("type") == "file" and fnmatch.fnmatchcase(_name(e), self.glob)]
        self.others = [_name(e) for e in entries if e not in wanted]
        if not wanted:
            raise ArchiveError(f"{self.url}: a folder holding no {self.glob} file; pass the archive itself, or a "
                               f"folder of {self.glob} files")
        self.parts = [(_name(e), int(e["size"])) for e in wanted]
        self.paths = [str(e["name"]) for e in wanted]
        self.starts = [0]
        for _, size in self.parts:
            self.starts.append(self.starts[-1] + size)
        self.size = self.starts[-1]
        self.info = {"type": "directory", "size": self.size, "ETag": _digest(wanted)}
        self._local = threading.local()
        self._parts = threading.local()  # this thread's open parts, by number, least recently used first
        self._tables: list[OrderedDict[int, Source]] = []  # every thread's, for `close`
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.url, "storage_options": self.storage_options, "glob": self.glob}

    def member(self, k: int) -> TarMember:
        """Part k as a member of the archive of the parts (a regular file at its start)."""
        name, size = self.parts[k]
        return TarMember(name, self.starts[k], size, REGULAR, 0.0, 0o644)

    def part(self, k: int) -> Source:
        """Part k as a `Source` of its own (offsets from its start; messages name it), this thread's: kept open
        among the thread's `MAX_OPEN` most recently used parts, the least recently used one closed past them."""
        table = getattr(self._parts, "table", None)
        if table is None:
            table = self._parts.table = OrderedDict()
            with self._lock:
                self._tables.append(table)
        source = table.get(k)
        if source is not None:
            table.move_to_end(k)
            return source
        source = table[k] = object.__new__(Source)
        source.url, source.storage_options = f"{self.url}/{self.parts[k][0]}", self.storage_options
        source.fs, source.path, source.remote, source.patience = self.fs, self.paths[k], self.remote, self.patience
        source.size, source.info, source._local = self.parts[k][1], {"size": self.parts[k][1]}, threading.local()
        if len(table) > MAX_OPEN:
            table.popitem(last=False)[1].close()
        return source

    def release(self, k: int) -> None:
        """Close this thread's part k now (a walk reads each part once: none is left open when its thread ends)."""
        table = getattr(self._parts, "table", None)
        source = table.pop(k, None) if table is not None else None
        if source is not None:
            source.close()

    def _locate(self, offset: int, length: int) -> tuple[int, int]:
        """The part holding bytes `offset` to `offset + length` and the offset within it; a range over two parts
        is an index that does not fit the folder."""
        k = bisect.bisect_right(self.starts, offset) - 1
        if not 0 <= k < len(self.parts) or offset + length > self.starts[k + 1]:
            raise ArchiveError(f"{self.url}: bytes {offset:,} to {offset + length:,} are not within one of its "
                               f"{self.glob} files; the folder changed since it was indexed, run again")
        return k, offset - self.starts[k]

    def read_at(self, offset: int, length: int) -> bytes:
        end = min(offset + length, self.size)
        if end <= offset:
            return b""
        k, local = self._locate(offset, 0)
        return self.part(k).read_at(local, min(end, self.starts[k + 1]) - offset)

    def read_ranges(self, ranges: list[tuple[int, int]]) -> list[bytes]:
        by_part: dict[int, list[tuple[int, int, int]]] = {}
        for at, (offset, length) in enumerate(ranges):
            k, local = self._locate(offset, length)
            by_part.setdefault(k, []).append((at, local, length))
        out: list[bytes] = [b""] * len(ranges)
        for k, wanted in by_part.items():
            for (at, _, _), data in zip(wanted, self.part(k).read_ranges([(o, n) for _, o, n in wanted])):
                out[at] = data
        return out

    def advise(self, ranges: list[tuple[int, int]]) -> None:
        for offset, length in ranges:
            k, local = self._locate(offset, length)
            self.part(k).advise([(local, length)])

    def close(self) -> None:
        with self._lock:
            tables, self._tables = self._tables, []
        self._parts = threading.local()
        for table in tables:
            for source in list(table.values()):
                source.close()
            table.clear()


def _digest(entries: list[dict[str, Any]]) -> str:
    """What identifies the folder's content without reading it: every part's name, size and mtime or ETag."""
    h = hashlib.sha256()
    for e in entries:
        stamp = next((e[k] for k in (*MTIME_KEYS, "ETag", "etag") if e.get(k) is not None), "")
        h.update(f"{_name(e)}\0{e.get('size')}\0{stamp}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()
