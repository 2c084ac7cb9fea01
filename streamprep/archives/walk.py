"""Walking tar archives in place: a plain tar, a tar nested in it, a gzipped tar read forward."""

from __future__ import annotations

import gzip
import zlib
from typing import BinaryIO, Callable, Iterator

from ..errors import ArchiveError
from .storage import Source, forward_file, sequential_reader
from .tarscan import ReadAt, TarMember, iter_members


def members(source: Source, read_at: ReadAt | None = None) -> Iterator[TarMember]:
    """The members of a plain tar archive, read header by header (through `read_at` if given)."""
    if read_at is not None:
        yield from iter_members(read_at, source.url, source.size)
        return
    with sequential_reader(source) as read_at:
        yield from iter_members(read_at, source.url, source.size)


def inner_members(source: Source, outer: TarMember, read_at: ReadAt | None = None) -> Iterator[TarMember]:
    """The members of a tar nested in `source` as `outer`; offsets are absolute in `source`.

    Locally each header is one small read; remotely see `Readahead`.
    """
    end = outer.offset + outer.size
    if read_at is None:  # a reader that never reads past `end` itself
        with sequential_reader(source, end) as own:
            yield from iter_members(own, f"{source.url}!{outer.name}", outer.size, base=outer.offset)
        return

    def bounded(offset: int, length: int) -> bytes:  # never past the inner tar's end
        return read_at(offset, max(0, min(length, end - offset)))

    yield from iter_members(bounded, f"{source.url}!{outer.name}", outer.size, base=outer.offset)


class _Sequential:
    """`read_at` over a forward-only stream (a gzip member), skipping by reading. The stream is read a MiB at a
    time and each header and member is a slice of that: one `read` of a GzipFile (Python code) per header costs
    more than parsing the header."""

    CHUNK = 1 << 20

    def __init__(self, stream: BinaryIO, url: str) -> None:
        self.stream, self.url, self.pos = stream, url, 0
        self.buf, self.cut = b"", 0  # what was read and not yet used: buf[cut:] holds the stream from pos on

    def drain(self) -> None:
        while self.read_at(self.pos, self.CHUNK):
            pass

    def read_at(self, offset: int, length: int) -> bytes:
        if offset < self.pos:
            raise ArchiveError(f"{self.url}: tar data out of order at byte {offset}; the archive is corrupt")
        parts = []
        try:
            while self.pos < offset:
                step = min(len(self.buf) - self.cut, offset - self.pos)
                if not step and not self._fill():
                    return b""
                self.cut += step
                self.pos += step
            while length > 0:  # in bounded reads: a header may claim far more than the stream holds
                step = min(len(self.buf) - self.cut, length)
                if not step:
                    if not self._fill():
                        break
                    continue
                parts.append(self.buf[self.cut:self.cut + step])
                self.cut += step
                self.pos += step
                length -= step
        except (gzip.BadGzipFile, EOFError, zlib.error) as e:  # other OSErrors are storage trouble: retried
            raise ArchiveError(
                f"{self.url}: cannot decompress ({e}); the file is not a valid .tar.gz or is truncated, "
                "fetch it again") from e
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _fill(self) -> bool:
        """The next chunk of the stream into the buffer (the last one used up); False at its end."""
        self.buf, self.cut = self.stream.read(self.CHUNK), 0
        return bool(self.buf)


class _Counted:
    """A forward-only file read through, counting the bytes it gave: the compressed position for progress
    without a `tell()` per member (a system call that lets go of the interpreter lock, which another thread
    then holds for up to its switch interval: 544,546 of them made the bounding-box walk twice as slow)."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw, self.pos = raw, 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.pos += len(data)
        return data


MAX_GZIP_MEMBER = 32 << 20  # bytes of one .tar.gz member read into memory; bounding-box XML files are a few KB


def gzip_members(source: Source, max_member: int = MAX_GZIP_MEMBER,
                 keep: Callable[[TarMember], bool] | None = None) -> Iterator[tuple[TarMember, bytes | None, int]]:
    """Members of a gzipped tar with their data and the compressed bytes read so far, in one forward pass.

    The data of a file member is read into memory only if `keep(member)` (default: every file); the
    others come with None and are skipped by reading forward a MiB at a time. A kept member over
    `max_member` bytes is refused before it is read: a gzip bomb, or a header claiming gigabytes,
    cannot fill the memory.
    """
    with forward_file(source) as raw:
        if raw.read(2) != b"\x1f\x8b":
            raise ArchiveError(f"{source.url}: not a gzip file; pass ILSVRC2012_bbox_train_v2.tar.gz as downloaded")
        raw.seek(0)
        counted = _Counted(raw)
        with gzip.GzipFile(fileobj=counted, mode="rb") as stream:  # type: ignore[arg-type]
            reader = _Sequential(stream, source.url)
            for m in iter_members(reader.read_at, source.url):
                if m.is_file and keep is not None and not keep(m):
                    yield m, None, counted.pos
                    continue
                if m.is_file and m.size > max_member:
                    raise ArchiveError(
                        f"{source.url}!{m.name}: member of {m.size} bytes, over the {max_member} bytes streamprep "
                        "reads from a .tar.gz (bounding-box XML files are a few KB); the archive is corrupt or "
                        "not ILSVRC2012_bbox_train_v2.tar.gz, fetch it again")
                data = reader.read_at(m.offset, m.size) if m.is_file else b""
                if len(data) < m.size:
                    raise ArchiveError(
                        f"{source.url}!{m.name}: truncated member; the download is incomplete, fetch it again")
                yield m, data, counted.pos
            reader.drain()  # read to the end so that gzip checks its CRC and length trailer
