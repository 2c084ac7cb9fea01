"""A gzipped tar (winter21_whole.tar.gz) read in place: one pass records checkpoints, then any range is read from one.

A gzip stream has no seek points: byte N of the tar inside is known only by decompressing everything before it.
`GzippedSource` is a `Source` whose offsets are those of the decompressed tar, so the index, the plan and the
writers work on it as on a plain tar:

- The index's walk reads it forward once (`forward`: the walks read it as they read a remote archive, in order
  through one reader). That pass decompresses it with rapidgzip (in parallel, the `gzip` extra) and keeps its
  checkpoints: every `SPACING` bytes of output, the compressed position in bits and the window of up to 32 KiB of
  output before it that the data after it refers back to, with every byte it does not refer to zeroed and the whole
  zlib-compressed (rapidgzip's sparse windows: 70 to 120 bytes each on JPEG-like data, not 32 KiB).
- Every later read (`read_ranges`) inflates with the standard library's zlib from the checkpoint before its first
  byte (reached through an empty deflate block ending at its bit), the window as the preset dictionary: on average
  half a spacing of wasted output per image, and nothing held per reader but the checkpoints' arrays.
- `keep` saves the checkpoints beside the saved index (`.streamprep/`, written then renamed) and `restore` reads
  them back, so a rerun after a kill reuses them and decompresses nothing from the start.

Offsets are unknown before the pass ends: `size` is None until then (the walks take a tar of unknown length), and
a read starting beyond the end of the decompressed data is the truncation of a member that runs past it.
"""

from __future__ import annotations

import bisect
import hashlib
import io
import json
import re
import struct
import threading
import zlib
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
from fsspec.implementations.local import LocalFileSystem

from ..errors import ArchiveError, MissingDependencyError, StreamprepError
from .output import STATE_DIR, Output
from .storage import Readahead, Source
from .tarscan import ReadAt

SUFFIXES = (".tar.gz", ".tgz")
EXTRA, PACKAGE = "gzip", "rapidgzip"  # pip install 'streamprep[gzip]' brings rapidgzip
SPACING = 256 << 10  # decompressed bytes between checkpoints (rapidgzip's chunk size): docs/performance.md
FORMAT = "streamprep-gzip-checkpoints/1"
STATE = f"{STATE_DIR}/checkpoints-%s.npz"  # per download role: checkpoints-train.npz
GZTOOL_MAGIC = b"\0" * 8 + b"gzipindx"
RAW, GZIP = -15, 31  # zlib's wbits: a raw deflate stream; a gzip member, header and trailer included


def named(url: str) -> bool:
    """Whether a download's name says it is a gzipped tar."""
    return url.rstrip("/").lower().endswith(SUFFIXES)


@dataclass(frozen=True, eq=False)
class Checkpoints:
    """Where decompression can start: point k is at decompressed offset `outs[k]`, compressed bit `bits[k]`, its
    window zlib-compressed at `windows[starts[k]:starts[k + 1]]` (empty: no window); `size`, the decompressed size."""

    size: int
    outs: np.ndarray  # int64, increasing
    bits: np.ndarray  # int64
    starts: np.ndarray  # int64, len(outs) + 1
    windows: np.ndarray  # uint8

    @classmethod
    def from_gztool(cls, data: bytes | memoryview) -> "Checkpoints":
        """Read rapidgzip's export in gztool's format: a header, the point count, then per point its decompressed
        and compressed byte offsets and the bits of the byte before it still to read (big-endian), its compressed
        window; then the decompressed size."""
        if data[:16] != GZTOOL_MAGIC:
            raise ValueError("not a gztool index")
        count = struct.unpack_from(">Q", data, 16)[0]
        outs, bits, spans = np.zeros(count, np.int64), np.zeros(count, np.int64), []
        pos = 32
        for k in range(count):
            out, byte, unread, length = struct.unpack_from(">QQII", data, pos)
            outs[k], bits[k] = out, byte * 8 - unread
            spans.append((pos + 24, pos + 24 + length))
            pos += 24 + length
        size = struct.unpack_from(">Q", data, pos)[0]
        starts = np.zeros(count + 1, np.int64)
        np.cumsum([b - a for a, b in spans], out=starts[1:])
        windows = np.frombuffer(b"".join(data[a:b] for a, b in spans), np.uint8)
        return cls(int(size), outs, bits, starts, windows)

    def point(self, offset: int) -> int:
        """The last checkpoint at or before decompressed `offset`."""
        return max(0, bisect.bisect_right(self.outs, offset) - 1)

    def window(self, k: int) -> bytes:
        """The output before checkpoint k that the data after it refers back to (zeros elsewhere)."""
        packed = self.windows[self.starts[k]:self.starts[k + 1]]
        return zlib.decompress(packed.tobytes()) if len(packed) else b""

    def span(self, k: int, end: int, compressed_size: int) -> tuple[int, int]:
        """The compressed bytes that decompressing from checkpoint k up to decompressed offset `end` reads: up to the
        first checkpoint at or after `end` (all of the output before it comes from the bits before it)."""
        after = bisect.bisect_left(self.outs, end, lo=k + 1)
        stop = (int(self.bits[after]) + 7) // 8 + 1 if after < len(self.outs) else compressed_size
        return int(self.bits[k]) // 8, min(stop, compressed_size)

    def arrays(self, identity: dict[str, Any]) -> dict[str, np.ndarray]:
        """What `keep` saves: the arrays, the archive's identity, and a digest of both."""
        meta = json.dumps({"format": FORMAT, "identity": identity, "size": self.size, "spacing": SPACING},
                          sort_keys=True).encode()
        arrays = {"outs": self.outs, "bits": self.bits, "starts": self.starts, "windows": self.windows,
                  "meta": np.frombuffer(meta, np.uint8)}
        arrays["digest"] = np.frombuffer(_digest(arrays).encode(), np.uint8)
        return arrays

    @classmethod
    def of_arrays(cls, arrays: dict[str, np.ndarray], identity: dict[str, Any]) -> "Checkpoints | None":
        """The checkpoints `arrays` saved for this archive, or None when they are another archive's, another
        version's or damaged."""
        meta = json.loads(arrays["meta"].tobytes())
        if meta.get("format") != FORMAT or meta.get("identity") != identity or \
                arrays["digest"].tobytes().decode() != _digest(arrays):
            return None
        found = cls(int(meta["size"]), *(arrays[k] for k in ("outs", "bits", "starts", "windows")))
        n = len(found.outs)
        fits = (n >= 1 and found.outs[0] == 0 and found.bits.shape == (n,) and found.starts.shape == (n + 1,)
                and found.starts[0] == 0 and found.starts[-1] == len(found.windows)
                and bool(np.all(np.diff(found.outs) >= 0)) and bool(np.all(np.diff(found.starts) >= 0)))
        return found if fits else None


def _digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(k for k in arrays if k != "digest"):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(a.reshape(-1).view(np.uint8))
    return h.hexdigest()


class GzippedSource(Source):
    """A gzipped tar whose offsets are those of the tar inside (see the module's docstring). `info` is the compressed
    file's (its size, mtime, ETag: what identifies the download); `size` the decompressed size, None until the one
    pass has ended or saved checkpoints were restored. Reads go through `inner`, the compressed file's `Source`."""

    def __post_init__(self) -> None:
        self._adopt(Source(self.url, self.storage_options))

    @classmethod
    def around(cls, inner: Source) -> "GzippedSource":
        """The gzipped tar `inner` holds (opened already: no second look-up of its size)."""
        source = object.__new__(cls)
        source.url, source.storage_options = inner.url, inner.storage_options
        source._adopt(inner)
        return source

    def _adopt(self, inner: Source) -> None:
        self.inner, self.fs, self.path, self.info = inner, inner.fs, inner.path, inner.info
        # Read forward by the walks, as a remote archive is (one reader, in order), and by writer threads that read
        # ahead: every read here costs a decompression from a checkpoint, as a remote read costs a request.
        self.remote, self.patience = True, None
        self.size: int | None = None  # type: ignore[assignment]
        self.checkpoints: Checkpoints | None = None
        self._pass: _Pass | None = None
        self._lock = threading.Lock()

    def use(self, checkpoints: Checkpoints) -> None:
        """Read from these checkpoints (restored from an earlier run's, or just recorded)."""
        self.checkpoints, self.size = checkpoints, checkpoints.size

    @contextmanager
    def forward(self, end: int | None = None) -> Iterator[ReadAt]:
        """`read_at` for a walk moving forward: the one pass while there are no checkpoints (they are taken from
        it once the walk ends without error), else decompression forward from the checkpoints."""
        if self.checkpoints is not None:
            reader = _Inflating(self)
            yield reader.read_at
            return
        with self._lock:
            self._pass = self._pass or _Pass(self)
        try:
            yield self._pass.read_at
        except BaseException:
            self._close_pass()
            raise
        self._finish()

    def _finish(self) -> Checkpoints:
        """The pass read on to the end of the stream (its CRC-32 checked), its checkpoints taken, rapidgzip closed."""
        with self._lock:
            if self.checkpoints is None:
                if self._pass is None:
                    self._pass = _Pass(self)  # read before any walk: the pass alone
                try:
                    self.use(self._pass.finish())
                finally:
                    self._close_pass()
            return self.checkpoints  # type: ignore[return-value]

    def _close_pass(self) -> None:
        running, self._pass = self._pass, None
        if running is not None:
            running.close()

    def read_at(self, offset: int, length: int) -> bytes:
        checkpoints = self.checkpoints or self._finish()
        length = max(0, min(length, checkpoints.size - offset))
        return self.read_ranges([(offset, length)])[0] if length else b""

    def read_ranges(self, ranges: list[tuple[int, int]]) -> list[bytes]:
        """The decompressed bytes of each (offset, length), in offset order: ranges that follow each other closely
        enough (the next one's checkpoint at or before the end of the one before) are decompressed in one run."""
        checkpoints = self.checkpoints or self._finish()
        out: list[bytes] = [b""] * len(ranges)
        runs = _runs(checkpoints, ranges)
        spans = [checkpoints.span(k, end, self.inner.size) for k, _, end in runs]
        fetched = self.inner.read_ranges([(a, b - a) for a, b in spans])  # concurrently on remote storage
        for (k, members, _), (start, _), data in zip(runs, spans, fetched):
            inflating = _Inflating(self, k, data, start)
            for i in members:
                offset, length = ranges[i]
                out[i] = inflating.read_at(offset, length)
                if len(out[i]) != length:
                    raise ArchiveError(f"{self.url}: expected {length} bytes at offset {offset} of the tar inside, got "
                                       f"{len(out[i])}; the archive changed or is truncated, fetch it again")
        return out

    def advise(self, ranges: list[tuple[int, int]]) -> None:
        checkpoints = self.checkpoints
        if checkpoints is None or self.inner.remote:
            return
        spans = [checkpoints.span(checkpoints.point(o), o + n, self.inner.size) for o, n in ranges]
        self.inner.advise([(a, b - a) for a, b in spans])

    def close(self) -> None:
        with self._lock:
            self._close_pass()
        self.inner.close()


def _runs(checkpoints: Checkpoints, ranges: list[tuple[int, int]]) -> list[tuple[int, list[int], int]]:
    """The ranges (by index) in offset order, as runs decompressed from one checkpoint each: (checkpoint, the
    ranges, the run's end). A range joins the run before it when its own checkpoint is not after that run's end:
    decompressing on from there costs no more than starting at its checkpoint."""
    runs: list[tuple[int, list[int], int]] = []
    for i in sorted(range(len(ranges)), key=lambda i: ranges[i]):
        offset, length = ranges[i]
        k = checkpoints.point(offset)
        if runs and checkpoints.outs[k] <= runs[-1][2]:
            start, members, end = runs[-1]
            members.append(i)
            runs[-1] = (start, members, max(end, offset + length))
        else:
            runs.append((k, [i], offset + length))
    return runs


INFLATE_STEP = 1 << 20  # bytes asked of zlib (and, beyond a run's span, of storage) at a time
CODE_LENGTH_ORDER = (16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1)  # RFC 1951 3.2.7, 18 of its 19


def _empty_block(shift: int) -> tuple[bytes, int]:
    """A deflate block that outputs nothing and is `8 * n + shift` bits long, packed (its last `shift` bits in the
    low bits of the last byte), and n: put before the file's byte holding a checkpoint, with that byte's bits from
    `shift` up, it has zlib start at the checkpoint's bit, on the file's own byte boundaries (which stored blocks and
    gzip trailers need). It is a dynamic-Huffman block whose one literal/length code is end-of-block, of one bit
    (the one incomplete code zlib accepts), with 257 + e lengths: 330 + e bits, e chosen for the length wanted."""
    extra = (shift - 330) % 8
    bits: list[int] = []

    def put(value: int, count: int) -> None:
        bits.extend((value >> i) & 1 for i in range(count))

    put(0, 1), put(2, 2), put(extra, 5), put(0, 5), put(len(CODE_LENGTH_ORDER) - 4, 4)  # not last; dynamic; counts
    for symbol in CODE_LENGTH_ORDER:  # code lengths 0 and 1 coded in one bit each ("0", "1"), no others
        put(1 if symbol in (0, 1) else 0, 3)
    bits += [int(i == 256) for i in range(257 + extra)]  # lengths: end-of-block 1, every other literal/length 0
    bits += [0, 0]  # the one distance code: length 0; then the block's data: end-of-block ("0")
    packed = bytearray((len(bits) + 7) // 8)
    for i, bit in enumerate(bits):
        packed[i // 8] |= bit << (i % 8)
    return bytes(packed), len(bits) // 8


EMPTY_BLOCKS = {shift: _empty_block(shift) for shift in range(1, 8)}


class _Inflating:
    """Decompression forward from checkpoint k with zlib: the bytes at increasing offsets.

    zlib reads a raw deflate stream from the checkpoint, its window as the preset dictionary, the file's bytes as
    they are: a checkpoint inside a byte is reached through an empty block ending at its bit (`_empty_block`). At
    the end of a gzip member the next one follows its 8-byte trailer, read as a gzip member. The compressed bytes
    come from `data` (a run's span, fetched with the others, starting at file offset `data_at`) while it holds
    them, then from storage.
    """

    def __init__(self, source: GzippedSource, k: int | None = None, data: bytes = b"", data_at: int = 0) -> None:
        self.source, self.checkpoints = source, source.checkpoints
        self.data, self.data_at = data, data_at
        self.inflater: Any = None
        if k is not None:
            self._start(k)

    def _start(self, k: int) -> None:
        cp = self.checkpoints
        self.pos, bit = int(cp.outs[k]), int(cp.bits[k])
        self.next = bit // 8  # the file offset of the next compressed byte to fetch
        window = cp.window(k)
        self.inflater = zlib.decompressobj(RAW, zdict=window) if window else zlib.decompressobj(RAW)
        self.pending, self.raw = b"", True  # a raw deflate stream to the end of the checkpoint's member
        if bit % 8:
            block, whole = EMPTY_BLOCKS[bit % 8]
            first = self._raw(self.next, 1)
            if not first:
                raise self.error("the compressed data ends first")
            self.pending = block[:whole] + bytes([block[whole] | (first[0] & (0xFF << bit % 8) & 0xFF)])
            self.next += 1

    def read_at(self, offset: int, length: int) -> bytes:
        cp = self.checkpoints
        length = max(0, min(length, cp.size - offset))
        k = cp.point(offset)
        if self.inflater is None or offset < self.pos or int(cp.outs[k]) > self.pos:
            self._start(k)  # behind, or a checkpoint nearer than decompressing on
        while self.pos < offset:
            self.pos += len(self._inflate(min(offset - self.pos, INFLATE_STEP)))
        parts, wanted = [], length
        while wanted > 0:
            part = self._inflate(min(wanted, INFLATE_STEP))
            parts.append(part)
            wanted -= len(part)
            self.pos += len(part)
        return b"".join(parts)

    def _inflate(self, most: int) -> bytes:
        """Up to `most` bytes of output, at least one (an error if the compressed data ends first)."""
        while True:
            try:
                out = self.inflater.decompress(self.pending, most)
            except zlib.error as e:
                raise self.error(str(e)) from e
            # At the end of a member what is left is in `unused_data` (`unconsumed_tail` may still hold it too)
            self.pending = b"" if self.inflater.eof else self.inflater.unconsumed_tail
            if out:
                return out
            if self.inflater.eof:  # the next gzip member: after this one's 8-byte trailer (read by zlib but in
                rest, trailer = self.inflater.unused_data, 8 if self.raw else 0  # the checkpoint's own member)
                while len(rest) < trailer and (more := self._fetch()):
                    rest += more
                self.inflater, self.pending, self.raw = zlib.decompressobj(GZIP), rest[trailer:], False
                continue
            more = self._fetch()
            if not more:
                raise self.error("the compressed data ends first")
            self.pending += more

    def _raw(self, offset: int, length: int) -> bytes:
        """Compressed bytes of the file (fewer at its end): from the run's span while it holds them."""
        if self.data_at <= offset < self.data_at + len(self.data):
            return self.data[offset - self.data_at:offset - self.data_at + length]
        return self.source.inner.read_at(offset, length)

    def _fetch(self) -> bytes:
        raw = self._raw(self.next, INFLATE_STEP)
        self.next += len(raw)
        return raw

    def error(self, why: str) -> ArchiveError:
        return ArchiveError(f"{self.source.url}: cannot decompress near byte {self.pos:,} of the tar inside ({why}); "
                            "the archive changed since it was indexed, or is corrupt: fetch it again and run again")


SKIP_BUFFER = 4 << 20  # bytes of output read at a time over what the walk skips


class _Pass:
    """The one pass: rapidgzip decompresses the compressed file forward (in parallel), the walk reads tar headers
    through `read_at`, and `finish` reads on to the end of the stream and takes the checkpoints rapidgzip recorded.

    The output is read contiguously, what the walk skips into a scratch buffer: rapidgzip checks the stream's
    CRC-32 only over output read in order (after a seek over data it checks nothing)."""

    def __init__(self, source: GzippedSource) -> None:
        try:
            import rapidgzip
        except ImportError as e:
            raise MissingDependencyError(f"{source.url}: a gzipped tar is read in place with {PACKAGE}, which is not "
                                         f"installed; install streamprep[{EXTRA}] (pip install "
                                         f"'streamprep[{EXTRA}]'), then run the command again") from e
        self.source, self.rapidgzip = source, rapidgzip
        inner = source.inner
        local = isinstance(inner.fs, LocalFileSystem)
        self.file = None if local else _CompressedFile(inner)
        self.position, self.scratch = 0, bytearray(SKIP_BUFFER)
        try:
            self.reader = rapidgzip.RapidgzipFile(inner.path if local else self.file, parallelization=0,
                                                  chunk_size=SPACING)
        except Exception as e:  # noqa: BLE001 - rapidgzip's own error classes: what it says goes in the message
            raise self.error(e, 0) from e

    def read_at(self, offset: int, length: int) -> bytes:
        try:
            if offset < self.position:  # never in a walk (headers come in order): read there, unchecked
                self.position = self.reader.seek(offset)
            self._skip(offset - self.position)
            data = self.reader.read(length)
        except StreamprepError:
            raise
        except Exception as e:  # noqa: BLE001 - rapidgzip's own error classes
            raise self.error(e, offset) from e
        self.position += len(data)
        if self.position < offset:  # a member claims bytes beyond the end of the decompressed data
            raise ArchiveError(f"{self.source.url}: the tar inside ends at byte {self.position:,}, but a member runs "
                               f"on to byte {offset:,} at least; the archive is truncated, fetch it again")
        return data

    def _skip(self, count: int) -> None:
        """Read `count` bytes of output into the scratch buffer (fewer at the end of the stream)."""
        view = memoryview(self.scratch)
        while count > 0:
            got = self.reader.readinto(view[:min(count, len(view))])
            if not got:
                return
            self.position += got
            count -= got

    def finish(self) -> Checkpoints:
        try:
            self._skip(1 << 62)  # to the end of the stream: its CRC-32 checked there
            exported = io.BytesIO()
            self.reader.export_index(exported, self.rapidgzip.IndexFormat.GZTOOL)
        except StreamprepError:
            raise
        except Exception as e:  # noqa: BLE001
            raise self.error(e, None) from e
        self.close()  # rapidgzip's own copy of the checkpoints (about 500 bytes each) let go before they are read
        checkpoints = Checkpoints.from_gztool(exported.getbuffer())
        if checkpoints.size != self.position:
            raise ArchiveError(f"{self.source.url}: rapidgzip's checkpoints end at byte {checkpoints.size:,}, the "
                               f"stream at {self.position:,}; report this with the archive's size")
        return checkpoints

    def error(self, error: Exception, offset: int | None) -> ArchiveError:
        """What rapidgzip's error means, in one line naming the archive."""
        text = re.sub(r"\[[^\]]*\]\s*", "", " ".join(str(error).split()))  # less rapidgzip's [Class][Thread N]
        text = re.split(r"(?<=[!.])\s", text, maxsplit=1)[0]  # its first sentence
        at = f" at decompressed byte {offset:,}" if offset else ""
        if "valid file format" in text:
            return ArchiveError(f"{self.source.url}: not a gzip file, though named like one; pass the archive as "
                                "downloaded (a plain tar named .tar.gz: rename it to .tar)")
        if "CRC32" in text:
            return ArchiveError(f"{self.source.url}: the decompressed data does not match the gzip stream's CRC-32; "
                                "the archive is corrupt, fetch it again")
        return ArchiveError(f"{self.source.url}: cannot decompress{at} (rapidgzip: {text[:160]}); the archive is "
                            "truncated or corrupt, fetch it again")

    def close(self) -> None:
        self.reader.close()  # its threads stopped (one left running aborts the interpreter at exit); again: nothing
        if self.file is not None:
            self.file.close()


BLOCK = 4 << 20  # bytes fetched at a time for rapidgzip from storage that is not a local file
BLOCKS_KEPT = 8  # its reads stay within about 1.4 MB of the furthest one: a few blocks serve them all


class _CompressedFile(io.RawIOBase):
    """The compressed file as the seekable file object rapidgzip reads from storage other than a local disk: fixed
    blocks through the inner `Source` (streamed ahead on remote storage, retried), the last few kept."""

    def __init__(self, inner: Source) -> None:
        super().__init__()
        self.inner, self.position = inner, 0
        self.ahead = Readahead(inner, inner.size, chunk=BLOCK) if inner.remote else None
        self.blocks: OrderedDict[int, bytes] = OrderedDict()
        self.lock = threading.Lock()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.inner.size}[whence]
        self.position = max(0, base + offset)
        return self.position

    def tell(self) -> int:
        return self.position

    def readinto(self, buffer: Any) -> int:
        with self.lock:
            view, done = memoryview(buffer).cast("B"), 0
            while done < len(view) and self.position < self.inner.size:
                block = self._block(self.position // BLOCK)
                piece = block[self.position % BLOCK:self.position % BLOCK + len(view) - done]
                if not piece:
                    break
                view[done:done + len(piece)] = piece
                done += len(piece)
                self.position += len(piece)
            return done

    def _block(self, n: int) -> bytes:
        block = self.blocks.get(n)
        if block is None:
            read = self.ahead.read_at if self.ahead is not None else self.inner.read_at
            block = self.blocks[n] = read(n * BLOCK, BLOCK)
            while len(self.blocks) > BLOCKS_KEPT:
                self.blocks.popitem(last=False)
        self.blocks.move_to_end(n)
        return block

    def close(self) -> None:
        if self.ahead is not None:
            self.ahead.close()
        super().close()


def gzipped_sources(sources: dict[str, Source]) -> dict[str, GzippedSource]:
    return {role: s for role, s in sources.items() if isinstance(s, GzippedSource)}


def keep(output: Output, sources: dict[str, Source], identities: dict[str, dict[str, Any]]) -> None:
    """Save each gzipped download's checkpoints in `output`'s state folder (written, then renamed), the pass read
    to its end first if the walk stopped short of it."""
    for role, source in gzipped_sources(sources).items():
        arrays = source._finish().arrays(identities[role])
        with output.atomic(STATE % role) as f:
            np.savez(f, **arrays)


def restore(output: Output, sources: dict[str, Source], identities: dict[str, dict[str, Any]]) -> bool:
    """Read back each gzipped download's saved checkpoints into it; False if one is missing or unusable (another
    archive's, another version's, damaged): then the downloads are walked again, and the pass records them anew."""
    for role, source in gzipped_sources(sources).items():
        if source.checkpoints is not None:
            continue
        checkpoints = _load(output, STATE % role, identities[role])
        if checkpoints is None:
            return False
        source.use(checkpoints)
    return True


def _load(output: Output, name: str, identity: dict[str, Any]) -> Checkpoints | None:
    try:
        if output.is_link(name):
            return None
        with output.fs.open(output.path(name), "rb") as f, np.load(f, allow_pickle=False) as z:
            return Checkpoints.of_arrays({k: z[k] for k in z.files}, identity)
    except FileNotFoundError:
        return None
    except Exception:  # noqa: BLE001 - any damage means the same: the pass records them again
        return None


__all__ = ["Checkpoints", "GzippedSource", "SPACING", "keep", "named", "restore"]
