"""Opening inputs through fsspec and reading tar members in place, nested or gzipped."""

from __future__ import annotations

import asyncio
import gzip
import io
import os
import threading
import zlib
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Iterator

import fsspec
from fsspec.core import url_to_fs

from . import retry
from .errors import ArchiveError, BackendMissingError
from .tarscan import ReadAt, TarMember, iter_members

# Which pip extra brings the backend a URL scheme needs.
EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs", "http": "http", "https": "http"}


def protocol_of(url: str) -> str:
    return url.split("://", 1)[0] if "://" in url else "file"


def options_for(url: str, storage_options: dict[str, Any] | None) -> dict[str, Any]:
    """The options given for this URL's protocol (`{"s3": {...}, "gs": {...}}` holds them per protocol)."""
    options = storage_options or {}
    protocol = protocol_of(url)
    aliases = {"s3a": "s3", "gcs": "gs", "https": "http"}
    merged = dict(options.get(aliases.get(protocol, protocol), {}))
    merged.update(options.get(protocol, {}))
    return merged


def resolve(url: str, storage_options: dict[str, Any] | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """`fsspec.core.url_to_fs` with this protocol's options; a missing backend names the extra to install."""
    try:
        return url_to_fs(url, **options_for(url, storage_options))
    except ImportError as e:
        scheme = protocol_of(url)
        extra = EXTRAS.get(scheme)
        hint = f"install streamprep[{extra}]" if extra else f"install the fsspec backend for '{scheme}://'"
        raise BackendMissingError(f"{url}: no fsspec backend for '{scheme}://' ({e}); {hint}") from None
    except ValueError as e:
        raise BackendMissingError(f"{url}: unknown URL scheme ({e}); use a path or a URL fsspec knows") from None


@dataclass
class Source:
    """One input archive: where it is, how big it is, and per-thread handles to read it."""

    url: str
    storage_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.fs, self.path = resolve(self.url, self.storage_options)
        self.remote = bool(getattr(self.fs, "async_impl", False))  # S3, GCS, HTTP...: every read is a request
        try:
            info = retry.call(lambda: f"{self.url}: cannot read its size", self._info)
        except FileNotFoundError:
            raise ArchiveError(f"{self.url}: not found; check the path or URL") from None
        if info.get("type") == "directory":
            raise ArchiveError(f"{self.url}: is a directory, not an archive; pass the downloaded file")
        if info.get("size") is None:
            raise ArchiveError(f"{self.url}: the server does not report the file's size; streamprep needs a server "
                               "that answers HEAD with Content-Length and supports range requests")
        self.size: int = int(info["size"])
        self.info: dict[str, Any] = info
        self._local = threading.local()

    def _info(self) -> dict[str, Any]:
        try:
            return self.fs.info(self.path)
        except FileNotFoundError as e:
            # fsspec's HTTP backend reports any failed HEAD/GET as not found, keeping the HTTP error as the
            # cause: a 5xx there is unavailability, to be retried, not absence.
            if self.remote and e.__cause__ is not None and retry.transient(e.__cause__):
                self.fs.invalidate_cache(self.path)
                raise ConnectionError(f"unavailable: {e.__cause__}") from e
            raise

    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.url, "storage_options": self.storage_options}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    def handle(self) -> BinaryIO:
        """This thread's open handle on the archive (opened once, closed by `close`)."""
        f = getattr(self._local, "f", None)
        if f is None:
            f = self._local.f = self.fs.open(self.path, "rb")
            handles = self.__dict__.setdefault("_handles", [])
            handles.append(f)
        return f

    def read_at(self, offset: int, length: int) -> bytes:
        """Up to `length` bytes at `offset` (fewer at the end of the file)."""
        end = min(offset + length, self.size)
        if end <= offset:
            return b""
        if self.remote:  # one ranged request, no read-ahead cache
            return retry.call(lambda: f"{self.url} bytes {offset}-{end - 1}",
                              lambda: self.fs.cat_file(self.path, start=offset, end=end))
        fd = getattr(self._local, "fd", None)
        if fd is None:
            f = self.handle()
            try:  # a file with a descriptor (local disk): one pread, no seek, no buffer copy
                fd = self._local.fd = f.fileno()
            except (AttributeError, OSError, io.UnsupportedOperation):
                fd = self._local.fd = -1
        if fd >= 0:
            return os.pread(fd, end - offset, offset)
        f = self.handle()
        f.seek(offset)
        return f.read(end - offset)

    def read_ranges(self, ranges: list[tuple[int, int]]) -> list[bytes]:
        """Bytes of several (offset, length) ranges; remote backends fetch them concurrently."""
        if not ranges:
            return []
        if self.remote:
            out = self._cat_ranges(ranges)
        else:  # a synchronous backend would open the file once per range: reuse this thread's handle
            out = [self.read_at(offset, length) for offset, length in ranges]
        for (offset, length), data in zip(ranges, out):
            if len(data) != length:
                raise ArchiveError(
                    f"{self.url}: expected {length} bytes at offset {offset}, got {len(data)}; "
                    "the archive changed or is truncated, fetch it again")
        return out

    def _cat_ranges(self, ranges: list[tuple[int, int]]) -> list[bytes]:
        """All ranges requested concurrently; those that fail transiently are requested again."""
        out: list[bytes | None] = [None] * len(ranges)
        todo = list(range(len(ranges)))
        for attempt in range(retry.ATTEMPTS):
            got = self.fs.cat_ranges([self.path] * len(todo), [ranges[i][0] for i in todo],
                                     [ranges[i][0] + ranges[i][1] for i in todo], on_error="return")
            failed = []
            for i, data in zip(todo, got):
                if isinstance(data, BaseException):
                    if not retry.transient(data):
                        raise data
                    failed.append((i, data))
                else:
                    out[i] = data
            if not failed:
                return out  # type: ignore[return-value]
            todo = [i for i, _ in failed]
            if attempt < retry.ATTEMPTS - 1:
                retry.pause(attempt)
        i, error = failed[0]
        offset, length = ranges[i]
        raise retry.exhausted(ArchiveError, f"{self.url} bytes {offset}-{offset + length - 1}: "
                              f"{type(error).__name__}: {str(error)[:200]}") from error

    def close(self) -> None:
        for f in self.__dict__.pop("_handles", []):
            f.close()
        self._local = threading.local()


@contextmanager
def sequential_reader(source: Source, end: int | None = None) -> Iterator[ReadAt]:
    """`read_at` for reads that move forward through the archive up to `end`: read ahead on remote storage."""
    if not source.remote:
        yield source.read_at
        return
    reader = Readahead(source, source.size if end is None else end)
    try:
        yield reader.read_at
    finally:
        reader.close()


def members(source: Source, read_at: ReadAt | None = None) -> Iterator[TarMember]:
    """The members of a plain tar archive, read header by header (through `read_at` if given)."""
    if read_at is not None:
        yield from iter_members(read_at, source.url, source.size)
        return
    with sequential_reader(source) as read_at:
        yield from iter_members(read_at, source.url, source.size)


READAHEAD_CHUNK = 4 << 20  # bytes per request
READAHEAD_DEPTH = 16  # requests in flight: 64 MB of buffers at most


class Readahead:
    """Forward reads over a remote archive, its next chunks requested concurrently before they are needed.

    A header-by-header walk would cost one round trip per image, in sequence. Instead the bytes up
    to `end` stream in as fixed chunks, `depth` requests in flight, so a walk of the training tar
    and all its class tars waits on bandwidth, not latency. A read beyond the window (a large
    member skipped) restarts it there. Needs an async fsspec backend (`source.remote`).
    """

    def __init__(self, source: Source, end: int, chunk: int = READAHEAD_CHUNK, depth: int = READAHEAD_DEPTH) -> None:
        self.source, self.end, self.chunk, self.depth = source, min(end, source.size), chunk, depth
        self.pending: dict[int, Future] = {}  # chunk start -> its bytes
        self.frontier = 0  # the next chunk start to request
        self.data, self.data_start = b"", 0  # the chunk being read

    def _request(self, start: int) -> Future:
        fs = self.source.fs
        coro = fs._cat_file(self.source.path, start=start, end=min(start + self.chunk, self.end))
        return asyncio.run_coroutine_threadsafe(coro, fs.loop)

    def _take(self, start: int) -> bytes:
        """Chunk `start`, requesting it and the ones after it as needed."""
        if not (start in self.pending or self.frontier == start):  # outside the window: start one here
            for future in self.pending.values():
                future.cancel()
            self.pending, self.frontier = {}, start
        while self.frontier < self.end and len(self.pending) < self.depth:
            self.pending[self.frontier] = self._request(self.frontier)
            self.frontier += self.chunk
        future = self.pending.pop(start)
        try:
            return future.result()
        except Exception:  # noqa: BLE001 - asked again through the retrying path, which names the URL and range
            return self.source.read_at(start, min(self.chunk, self.end - start))

    def read_at(self, offset: int, length: int) -> bytes:
        stop = min(offset + length, self.end)
        parts = []
        while offset < stop:
            start = offset - offset % self.chunk
            if start != self.data_start or not self.data:
                self.data, self.data_start = self._take(start), start
            piece = self.data[offset - start:stop - start]
            if not piece:
                break  # the file is shorter than it was: the caller reports the truncation
            parts.append(piece)
            offset += len(piece)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def close(self) -> None:
        for future in self.pending.values():
            future.cancel()
        self.pending = {}


def inner_members(source: Source, outer: TarMember, read_at: ReadAt | None = None) -> Iterator[TarMember]:
    """The members of a tar nested in `source` as `outer`; offsets are absolute in `source`.

    Locally each header is one small read; remotely see `Readahead`.
    """
    end = outer.offset + outer.size
    if read_at is None:
        with sequential_reader(source, end) as read_at:
            yield from inner_members(source, outer, read_at)
        return

    def bounded(offset: int, length: int) -> bytes:  # never past the inner tar's end
        return read_at(offset, max(0, min(length, end - offset)))

    yield from iter_members(bounded, f"{source.url}!{outer.name}", outer.size, base=outer.offset)


class _Sequential:
    """`read_at` over a forward-only stream (a gzip member), skipping by reading."""

    def __init__(self, stream: BinaryIO, url: str) -> None:
        self.stream, self.url, self.pos = stream, url, 0

    def drain(self) -> None:
        while self.read_at(self.pos, 1 << 20):
            pass

    def read_at(self, offset: int, length: int) -> bytes:
        if offset < self.pos:
            raise ArchiveError(f"{self.url}: tar data out of order at byte {offset}; the archive is corrupt")
        try:
            while self.pos < offset:
                skipped = self.stream.read(min(offset - self.pos, 1 << 20))
                if not skipped:
                    return b""
                self.pos += len(skipped)
            parts = []
            while length > 0:  # in bounded reads: a header may claim far more than the stream holds
                part = self.stream.read(min(length, 1 << 20))
                if not part:
                    break
                parts.append(part)
                length -= len(part)
        except (gzip.BadGzipFile, EOFError, zlib.error) as e:  # other OSErrors are storage trouble: retried
            raise ArchiveError(
                f"{self.url}: cannot decompress ({e}); the file is not a valid .tar.gz or is truncated, "
                "fetch it again") from None
        data = b"".join(parts)
        self.pos += len(data)
        return data


MAX_GZIP_MEMBER = 32 << 20  # bytes of one .tar.gz member read into memory; bounding-box XML files are a few KB


def gzip_members(source: Source, max_member: int = MAX_GZIP_MEMBER) -> Iterator[tuple[TarMember, bytes, int]]:
    """Members of a gzipped tar with their data and the compressed bytes read so far, in one forward pass.

    A file member over `max_member` bytes is refused before it is read: a gzip bomb, or a header
    claiming gigabytes, cannot fill the memory.
    """
    with source.fs.open(source.path, "rb") as raw:
        if raw.read(2) != b"\x1f\x8b":
            raise ArchiveError(f"{source.url}: not a gzip file; pass ILSVRC2012_bbox_train_v2.tar.gz as downloaded")
        raw.seek(0)
        with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
            reader = _Sequential(stream, source.url)
            for m in iter_members(reader.read_at, source.url):
                if m.is_file and m.size > max_member:
                    raise ArchiveError(
                        f"{source.url}!{m.name}: member of {m.size} bytes, over the {max_member} bytes streamprep "
                        "reads from a .tar.gz (bounding-box XML files are a few KB); the archive is corrupt or "
                        "not ILSVRC2012_bbox_train_v2.tar.gz, fetch it again")
                data = reader.read_at(m.offset, m.size) if m.is_file else b""
                if len(data) < m.size:
                    raise ArchiveError(
                        f"{source.url}!{m.name}: truncated member; the download is incomplete, fetch it again")
                yield m, data, raw.tell()
            reader.drain()  # read to the end so that gzip checks its CRC and length trailer
