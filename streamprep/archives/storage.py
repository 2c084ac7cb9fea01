"""Opening inputs through fsspec: sizes, byte ranges, per-thread handles, read-ahead on remote storage."""

from __future__ import annotations

import asyncio
import io
import os
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Iterator

import fsspec
from fsspec.core import url_to_fs

from ..errors import ArchiveError, ConfigError, MissingDependencyError
from ..extras import BACKENDS
from . import retry
from .tarscan import ReadAt



def protocol_of(url: str) -> str:
    return url.split("://", 1)[0] if "://" in url else "file"


TIMEOUTS = "timeouts"  # the storage options' entry `Options` fills: {"connect": s, "read": s}, for every protocol
REQUEST_FACTOR = 5  # a whole HTTP request may take this many idle-read timeouts (5 minutes by default)


def options_for(url: str, storage_options: dict[str, Any] | None) -> dict[str, Any]:
    """The options given for this URL's protocol (`{"s3": {...}, "gs": {...}}` holds them per protocol), with the
    connect and idle-read timeouts turned into the backend's own settings unless given there already."""
    options = storage_options or {}
    protocol = protocol_of(url)
    aliases = {"s3a": "s3", "gcs": "gs", "https": "http"}
    merged = dict(options.get(aliases.get(protocol, protocol), {}))
    merged.update(options.get(protocol, {}))
    timeouts = options.get(TIMEOUTS)
    if timeouts:
        _with_timeouts(aliases.get(protocol, protocol), merged, timeouts["connect"], timeouts["read"])
    return merged


def _with_timeouts(protocol: str, options: dict[str, Any], connect: float, read: float) -> None:
    """Bound every wait on a server: connecting, and each read (a server that stops answering mid-response)."""
    if protocol == "http":
        import aiohttp

        client = dict(options.get("client_kwargs") or {})
        # Idle reads bounded, and the whole request too: a server trickling a byte now and then never goes idle.
        client.setdefault("timeout", aiohttp.ClientTimeout(total=REQUEST_FACTOR * read + connect, sock_connect=connect,
                                                           sock_read=read))
        options["client_kwargs"] = client
    elif protocol == "s3":
        config = dict(options.get("config_kwargs") or {})
        config.setdefault("connect_timeout", connect)
        config.setdefault("read_timeout", read)
        # botocore's own retries, and s3fs's around them, would run under ours (6 x 5 x 5 attempts): one attempt
        # each, ours decide (retry.call, with the server's no-progress budget).
        config.setdefault("retries", {"mode": "standard", "max_attempts": 1})
        options["config_kwargs"] = config
    elif protocol == "gs":
        options.setdefault("timeout", read)  # gcsfs: one timeout for the whole request


def patience_for(url: str, storage_options: dict[str, Any] | None) -> retry.Patience | None:
    """The shared no-progress budget of the server `url` is on (by scheme and host), from the run's --timeout."""
    timeouts = (storage_options or {}).get(TIMEOUTS)
    if not timeouts:
        return None
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0]  # the host of an HTTP URL, the bucket of an S3 or GCS one
    return retry.for_server(f"{scheme}://{host}", float(timeouts["read"]))


def resolve(url: str, storage_options: dict[str, Any] | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """`fsspec.core.url_to_fs` with this protocol's options; a missing backend names the extra to install."""
    try:
        fs, path = url_to_fs(url, **options_for(url, storage_options))
    except ImportError as e:
        scheme = protocol_of(url)
        extra = BACKENDS.get(scheme, (None, None))[1]
        hint = f"install streamprep[{extra}]" if extra else f"install the fsspec backend for '{scheme}://'"
        raise MissingDependencyError(f"{url}: no fsspec backend for '{scheme}://' ({e}); {hint}") from e
    except ValueError as e:
        raise MissingDependencyError(f"{url}: unknown URL scheme ({e}); use a path or a URL fsspec knows") from e
    if protocol_of(url) in ("s3", "s3a") and isinstance(getattr(fs, "retries", None), int):
        fs.retries = 1  # s3fs's own retries (a class attribute, 5) would run under ours: one attempt, ours decide
    return fs, path


def rejected_options(url: str, error: TypeError) -> ConfigError:
    """The error for storage options the backend does not take (fsspec backends only find out on first use)."""
    return ConfigError(f"{url}: the storage options given for '{protocol_of(url)}' are not accepted by its fsspec "
                       f"backend ({error}); check the --storage-option keys (or the [storage-options] table)")


@dataclass
class Source:
    """One input archive: where it is, how big it is, and per-thread handles to read it."""

    url: str
    storage_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.fs, self.path = resolve(self.url, self.storage_options)
        self.remote = bool(getattr(self.fs, "async_impl", False))  # S3, GCS, HTTP...: every read is a request
        self.patience = patience_for(self.url, self.storage_options) if self.remote else None
        try:
            info = retry.call(lambda: f"{self.url}: cannot read its size", self._info, patience=self.patience)
        except (TypeError, AttributeError) as e:  # a backend given settings of a shape it does not take
            raise rejected_options(self.url, e) from e
        except FileNotFoundError as e:
            status = retry.status_of(e.__cause__)  # fsspec's HTTP backend calls any failed HEAD not found
            if status in (401, 403):
                raise ArchiveError(f"{self.url}: access denied (HTTP {status}); check the URL's credentials or "
                                   "signature, or the server's permissions") from e
            if e.__cause__ is not None and status != 404 and retry.foreign(e.__cause__):
                raise ArchiveError(f"{self.url}: the server's answer could not be used ({retry.describe(e.__cause__)}); "
                                   "check the URL and the server") from e
            raise ArchiveError(f"{self.url}: not found; check the path or URL") from e
        except PermissionError as e:
            raise ArchiveError(f"{self.url}: access denied ({e}); check the credentials and the bucket's "
                               "permissions") from e
        except Exception as e:
            hint = retry.permanent_hint(e)
            if hint is None:
                raise
            raise ArchiveError(f"{self.url}: {hint}") from e
        if info.get("type") == "directory":
            raise ArchiveError(f"{self.url}: is a directory, not an archive; pass the downloaded file")
        if info.get("size") is None:
            raise ArchiveError(f"{self.url}: the server does not report the file's size; streamprep needs a server "
                               "that answers HEAD with Content-Length and supports range requests")
        self.size: int = int(info["size"])
        self.info: dict[str, Any] = info
        self._local = threading.local()

    def deadline(self) -> dict[str, Any]:
        """The keyword that bounds one blocking call to an async backend by what is left of its server's budget
        (`retry.Patience`; fsspec's `sync` takes `timeout` and cancels the request when it passes); none locally."""
        if self.patience is None:
            return {}
        return {"timeout": max(self.patience.remaining(), 0.05)}

    def _info(self) -> dict[str, Any]:
        try:
            return self.fs.info(self.path, **self.deadline())
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

    def _fd(self) -> int:
        """This thread's file descriptor on a local archive (-1 if it has none: one pread, no seek, no copy)."""
        fd = getattr(self._local, "fd", None)
        if fd is None:
            f = self.handle()
            try:
                fd = self._local.fd = f.fileno()
            except (AttributeError, OSError, io.UnsupportedOperation):
                fd = self._local.fd = -1
        return fd

    def advise(self, ranges: list[tuple[int, int]]) -> None:
        """Tell the kernel the ranges of a local archive that are not in memory will be read soon
        (POSIX_FADV_WILLNEED): it reads them in the background, many at once, while the current ones are being
        written. A range counts as in memory if its first byte is (a read with RWF_NOWAIT, about a microsecond):
        on a warm page cache the advice itself would cost more than it saves. Nothing for remote archives."""
        if self.remote or not hasattr(os, "posix_fadvise"):
            return
        fd = self._fd()
        if fd < 0:
            return
        probe = getattr(self._local, "probe", None)
        if probe is None:
            probe = self._local.probe = [bytearray(1)]
        for offset, length in ranges:
            try:
                if hasattr(os, "RWF_NOWAIT"):
                    try:
                        os.preadv(fd, probe, offset, os.RWF_NOWAIT)
                        continue  # in memory
                    except BlockingIOError:
                        pass
                os.posix_fadvise(fd, offset, length, os.POSIX_FADV_WILLNEED)
            except OSError:
                return  # only advice: a file system that takes neither reads as before

    def read_at(self, offset: int, length: int) -> bytes:
        """Up to `length` bytes at `offset` (fewer at the end of the file)."""
        end = min(offset + length, self.size)
        if end <= offset:
            return b""
        if self.remote:  # one ranged request, no read-ahead cache
            data = retry.call(lambda: f"{self.url} bytes {offset}-{end - 1}",
                              lambda: self.fs.cat_file(self.path, start=offset, end=end, **self.deadline()),
                              patience=self.patience)
            return self.ranged(data, offset, end - offset)
        fd = self._fd()
        if fd >= 0:
            return os.pread(fd, end - offset, offset)
        f = self.handle()
        f.seek(offset)
        return f.read(end - offset)

    def ranged(self, data: bytes, offset: int, length: int) -> bytes:
        """`data` as a server answered a request for `length` bytes at `offset`: more means it ignored the range."""
        if len(data) > length:
            raise ArchiveError(f"{self.url}: the server ignored a range request (asked for {length:,} bytes at offset "
                               f"{offset:,}, it sent {len(data):,}): streamprep reads byte ranges and needs a server "
                               "that supports HTTP range requests (206 Partial Content)")
        return data

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
            started = time.monotonic()
            try:
                got = self.fs.cat_ranges([self.path] * len(todo), [ranges[i][0] for i in todo],
                                         [ranges[i][0] + ranges[i][1] for i in todo], on_error="return",
                                         **self.deadline())
            except Exception as e:  # noqa: BLE001 - the whole batch past its deadline (fsspec's FSTimeoutError)
                if not retry.transient(e):
                    raise
                got = [e] * len(todo)
            if self.patience is not None and any(not isinstance(data, BaseException) for data in got):
                self.patience.progressed()
            failed = []
            for i, data in zip(todo, got):
                if isinstance(data, BaseException):
                    if not retry.transient(data):
                        if retry.foreign(data):
                            offset, length = ranges[i]
                            raise ArchiveError(f"{self.url} bytes {offset}-{offset + length - 1}: "
                                               f"{retry.describe(data)}; check the URL and the server") from data
                        raise data
                    failed.append((i, data))
                else:
                    out[i] = self.ranged(data, ranges[i][0], ranges[i][1])
            if not failed:
                return out  # type: ignore[return-value]
            todo = [i for i, _ in failed]
            i, error = failed[0]
            offset, length = ranges[i]
            if self.patience is not None:
                self.patience.failed(started)
                if self.patience.spent():
                    raise self.patience.exhausted(ArchiveError, f"{self.url} bytes {offset}-{offset + length - 1}",
                                                  error) from error
            if attempt < retry.ATTEMPTS - 1 and not all(retry.timed_out(e) for _, e in failed):
                retry.pause(attempt)
        raise retry.exhausted(ArchiveError, f"{self.url} bytes {offset}-{offset + length - 1}: "
                              f"{retry.describe(error)}") from error

    @contextmanager
    def forward(self, end: int | None = None) -> Iterator[ReadAt]:
        """`read_at` for reads that move forward up to `end` on remote storage (`sequential_reader`): a `Readahead`.
        A source whose reads cost more one by one than in order says how it is read forward (a gzipped tar's)."""
        reader = Readahead(self, self.size if end is None else end)
        try:
            yield reader.read_at
        finally:
            reader.close()

    def close(self) -> None:
        for f in self.__dict__.pop("_handles", []):
            f.close()
        self._local = threading.local()


@contextmanager
def sequential_reader(source: Source, end: int | None = None) -> Iterator[ReadAt]:
    """`read_at` for reads that move forward through the archive up to `end`, never past it: read ahead on remote
    storage; locally, headers close together are read many at once (`DenseReads`)."""
    if not source.remote:
        yield DenseReads(source.read_at, source.size if end is None else end)
        return
    with source.forward(end) as read_at:
        if end is None:
            yield read_at
            return

        def bounded(offset: int, length: int) -> bytes:  # a source's own `forward` may read on past `end`
            return read_at(offset, max(0, min(length, end - offset)))

        yield bounded


DENSE_READ = 64 << 10  # bytes read at once where a walk's headers are close together (small members)
DENSE_GAP = 8 << 10  # "close together": the walk's last read was at most this far back


class DenseReads:
    """`read_at` for a forward walk over a local file: where its small reads (tar headers) come close together, as
    in a tar of small files, one read of `DENSE_READ` bytes serves the next ones from memory; where they are far
    apart (a tar of ImageNet's 110 KB images), every read is the one asked for, and no image byte is copied.
    A tar of tiny members costs one system call per header otherwise: a third of walking 1.28 M of them."""

    __slots__ = ("read", "end", "data", "start", "last")

    def __init__(self, read: ReadAt, end: int) -> None:
        self.read, self.end = read, end
        self.data, self.start, self.last = b"", 0, -DENSE_GAP - 1

    def __call__(self, offset: int, length: int) -> bytes:
        length = max(0, min(length, self.end - offset))  # never past `end`
        start, data = self.start, self.data
        dense = 0 <= offset - self.last <= DENSE_GAP
        self.last = offset
        if start <= offset and offset + length <= start + len(data):
            return data[offset - start:offset - start + length]
        if not dense or length >= DENSE_READ:
            return self.read(offset, length)
        self.data, self.start = self.read(offset, max(length, min(DENSE_READ, self.end - offset))), offset
        return self.data[:length]


@contextmanager
def forward_file(source: Source) -> Iterator[BinaryIO]:
    """A file object reading `source` forward from its start: the file itself when local; on remote storage the
    read-ahead, so every request is retried and bounded by the server's budget (fsspec's own file object is
    neither)."""
    if not source.remote:
        with source.fs.open(source.path, "rb") as f:
            yield f
        return
    with sequential_reader(source) as read_at:
        yield io.BufferedReader(_ForwardRaw(read_at, source.size), buffer_size=1 << 20)


class _ForwardRaw(io.RawIOBase):
    """`read_at` as a raw file read from the start (what `forward_file` buffers)."""

    def __init__(self, read_at: ReadAt, size: int) -> None:
        self.read_at, self.size, self.position = read_at, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True  # a read elsewhere restarts the read-ahead there

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        self.position = max(0, base + offset)
        return self.position

    def tell(self) -> int:
        return self.position

    def readinto(self, buffer: Any) -> int:
        data = self.read_at(self.position, min(len(buffer), self.size - self.position))
        buffer[:len(data)] = data
        self.position += len(data)
        return len(data)


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
        self.pending: dict[int, tuple[Future, float]] = {}  # chunk start -> its bytes, when it was requested
        self.frontier = 0  # the next chunk start to request
        self.data, self.data_start = b"", 0  # the chunk being read

    def _request(self, start: int) -> Future:
        fs = self.source.fs
        coro = fs._cat_file(self.source.path, start=start, end=min(start + self.chunk, self.end))
        return asyncio.run_coroutine_threadsafe(coro, fs.loop)

    def _take(self, start: int) -> bytes:
        """Chunk `start`, requesting it and the ones after it as needed."""
        if not (start in self.pending or self.frontier == start):  # outside the window: start one here
            self.close()
            self.frontier = start
        while self.frontier < self.end and len(self.pending) < self.depth:
            self.pending[self.frontier] = self._request(self.frontier), time.monotonic()
            self.frontier += self.chunk
        future, requested = self.pending.pop(start)
        length = min(self.chunk, self.end - start)
        patience = self.source.patience
        try:
            data = future.result(timeout=self.source.deadline().get("timeout"))
        except Exception as e:  # noqa: BLE001 - asked again through the retrying path, which names the URL and range
            future.cancel()  # past the server's budget: the retrying path decides
            if patience is not None and (retry.transient(e) or isinstance(e, FutureTimeout)):
                patience.failed(requested)  # the time it waited counts against the server's budget
            return self.source.read_at(start, length)
        if patience is not None:
            patience.progressed()
        return self.source.ranged(data, start, length)

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
        for future, _ in self.pending.values():
            future.cancel()
        self.pending = {}


