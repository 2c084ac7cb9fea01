"""Tar header walking without extraction: ustar, GNU and PAX headers, data left in place."""

from __future__ import annotations

import math
import zlib
from typing import Callable, Iterator, NamedTuple

from ..errors import ArchiveError

BLOCK = 512
REGULAR_TYPES = frozenset(b"0\x007")
LINK_TYPES = frozenset(b"12")
DEVICE_TYPES = frozenset(b"346")  # character device, block device, FIFO
# Entry types that never have data blocks after the header (as in tarfile and GNU tar).
NO_DATA_TYPES = frozenset(b"123456")
# Largest PAX or GNU long-name record read into memory (libarchive's limit too): real ones hold a path or two.
# Also the most extended-header bytes held before one member, and of global headers in all.
MAX_EXTENDED = 1 << 20

ReadAt = Callable[[int, int], bytes]


class TarMember(NamedTuple):
    """One archive entry: its name, where its data starts and how long it is. A named tuple: made once per header
    (1.28 M in the training tar), it is made in half the time a frozen dataclass takes."""

    name: str
    offset: int
    size: int
    type: int
    mtime: float  # seconds; PAX headers may give a fraction
    mode: int
    linkname: str = ""

    @property
    def is_file(self) -> bool:
        return self.type in REGULAR_TYPES

    @property
    def is_dir(self) -> bool:
        return self.type == ord("5")

    @property
    def is_link(self) -> bool:
        return self.type in LINK_TYPES

    @property
    def is_device(self) -> bool:
        return self.type in DEVICE_TYPES


def _number(field: bytes) -> int:
    """A numeric header field: octal text, or GNU base-256 when the top bit is set."""
    if field[:1] and field[0] & 0x80:
        value = int.from_bytes(field[1:], "big")
        if field[0] == 0xFF:  # negative base-256
            value -= 1 << (8 * (len(field) - 1))
        return value
    text = field.split(b"\0", 1)[0].strip()
    return int(text, 8) if text else 0


def _text(field: bytes) -> str:
    return field.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _byte_sum(data: bytes) -> int:
    """The sum of up to 256 bytes' values: Adler-32's first half (1 + the sum, modulo 65521, which 256 x 255
    stays under), in C where Python's `sum` walks the bytes one object at a time (a tenth of the time)."""
    return (zlib.adler32(data) & 0xFFFF) - 1


def _checksum_ok(block: bytes) -> bool:
    try:
        stored = _number(block[148:156])
    except ValueError:
        return False
    # every byte but the checksum field, which counts as 8 spaces
    unsigned = _byte_sum(block[:148]) + _byte_sum(block[156:356]) + _byte_sum(block[356:]) + 8 * 32
    if stored == unsigned:
        return True
    # Some old tar programs summed signed bytes.
    rest = block[:148] + block[156:]
    return stored == unsigned - 256 * sum(1 for b in rest if b > 127)


def _pax_records(data: bytes, where: str) -> dict[str, str]:
    """Parse PAX extended header records (`LEN key=value\\n`)."""
    records: dict[str, str] = {}
    pos = 0
    while pos < len(data) and data[pos:pos + 1] not in (b"", b"\0"):
        space = data.find(b" ", pos)
        try:
            length = int(data[pos:space])
        except ValueError:
            raise ArchiveError(f"{where}: malformed PAX extended header; the archive is corrupt")
        record = data[space + 1:pos + length - 1]
        if length <= 0 or pos + length > len(data) or b"=" not in record:
            raise ArchiveError(f"{where}: malformed PAX extended header; the archive is corrupt")
        key, value = record.split(b"=", 1)
        records[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return records


ZERO_BLOCK = bytes(BLOCK)
EXTENDED_TYPES = frozenset(b"xgLK")


def iter_members(read_at: ReadAt, archive: str, size: int | None = None, base: int = 0) -> Iterator[TarMember]:
    """Yield the members of the tar readable through `read_at(offset, length)`.

    `size` is the tar's length when known (an inner tar, a local or remote file); a member
    whose data would run past it is reported as truncation. Only headers are read here,
    plus the data of GNU long-name and PAX records. The tar starts at byte `base` of what
    `read_at` reads (a tar nested in another), and the members' offsets count from there too.
    """
    pos = 0
    extended = _Extended()
    last = ""
    while True:
        block = _header_block(read_at, archive, size, base, pos, last)
        if block is None:
            return
        where = _Where(archive, pos)
        type_, member_size, mtime, mode = _header_fields(block, where, last)
        data_offset = pos + BLOCK
        if type_ in EXTENDED_TYPES:
            extended.read(type_, _extended_data(read_at, base + data_offset, member_size, where), where)
            pos = data_offset + _padded(member_size)
            continue
        name, linkname = _names(block)
        if type_ == ord("S"):
            raise ArchiveError(f"{where}: {name!r} is a GNU sparse member (as `tar --sparse` writes them): its data is "
                               "stored with the holes left out, and streamprep does not rebuild it. Repack the archive "
                               "without --sparse")
        if extended.waiting:
            name, linkname, member_size, mtime = extended.apply(name, linkname, member_size, mtime, where)
        if type_ == 0 and name.endswith("/"):  # pre-POSIX tars mark directories by the trailing slash only
            type_ = ord("5")
        length = member_size if type_ not in NO_DATA_TYPES else 0
        if size is not None and data_offset + length > size:
            raise ArchiveError(
                f"{archive}!{name}: member runs past the end of the archive (needs {data_offset + length} "
                f"bytes, archive has {size}); the download is truncated, fetch it again")
        yield TarMember(name, base + data_offset, length, type_, mtime, mode, linkname)
        last = name
        pos = data_offset + _padded(length)


def _header_block(read_at: ReadAt, archive: str, size: int | None, base: int, pos: int, last: str) -> bytes | None:
    """The header block at `pos`, or None where the archive ends; a short block is truncation."""
    if size is not None and pos >= size:
        return None  # end of data without end-of-archive blocks: accepted, as tar does
    block = read_at(base + pos, BLOCK)
    if not block:
        return None
    if len(block) < BLOCK:
        after = f" (after member {last!r})" if last else ""
        raise ArchiveError(f"{archive}: truncated tar header at byte {pos}{after}; "
                           "the download is incomplete, fetch it again")
    if block == ZERO_BLOCK:
        return None
    return block


def _header_fields(block: bytes, where: _Where, last: str) -> tuple[int, int, float, int]:
    """Check a header block's checksum and read its numeric fields: type, size (bytes), mtime (seconds), mode."""
    if not _checksum_ok(block):
        after = f" after member {last!r}" if last else ""
        raise ArchiveError(f"{where}: bad tar header checksum{after}; the archive is corrupt or not a tar file")
    try:
        size = _number(block[124:136])
        mtime = _number(block[136:148])
        mode = _number(block[100:108])
    except ValueError:
        raise ArchiveError(f"{where}: unreadable tar header field; the archive is corrupt")
    if size < 0:  # the walk would step back and read the same headers forever
        raise ArchiveError(f"{where}: negative member size {size}; the archive is corrupt")
    # A plain tuple, not a frozen dataclass: this runs once per header, and building one (~0.5 µs)
    # slowed the whole walk by ~8%.
    return block[156], size, mtime, mode


def _names(block: bytes) -> tuple[str, str]:
    """The member name and link target a header block gives."""
    name = _text(block[0:100])
    if block[257:263] == b"ustar\0":  # POSIX ustar: name may be split with a prefix
        prefix = _text(block[345:500])
        if prefix:
            name = f"{prefix}/{name}"
    return name, _text(block[157:257])


def _extended_data(read_at: ReadAt, offset: int, length: int, where: _Where) -> bytes:
    """The data of a GNU long-name or PAX header, refused when implausibly large or cut short."""
    if length > MAX_EXTENDED:
        raise ArchiveError(f"{where}: extended header of {length} bytes (at most {MAX_EXTENDED} "
                           "expected); the archive is corrupt")
    data = read_at(offset, length)
    if len(data) < length:
        raise ArchiveError(f"{where}: truncated extended header; the download is incomplete")
    return data


class _Extended:
    """GNU long-name and PAX records read so far, waiting for the member header they apply to."""

    __slots__ = ("global_pax", "pending_pax", "long_name", "long_link", "waiting", "pending_bytes", "global_bytes")

    def __init__(self) -> None:
        self.global_pax: dict[str, str] = {}  # from `g` headers: every later member
        self.pending_pax: dict[str, str] = {}  # from `x` headers: the next member only
        self.long_name: str | None = None
        self.long_link: str | None = None
        # One flag for the hot path: most headers have nothing waiting for them.
        self.waiting = False
        self.pending_bytes = 0  # extended-header bytes read since the last member
        self.global_bytes = 0  # bytes of `g` headers read so far

    def read(self, type_: int, data: bytes, where: _Where) -> None:
        """Keep the records of one extended header (`x`, `g`, `L` or `K`) for the members after it.

        The memory they hold is bounded in total, not only per header: at most MAX_EXTENDED bytes of
        extended headers before one member, and MAX_EXTENDED bytes of global headers in all.
        """
        self.pending_bytes += len(data)
        if type_ == ord("g"):
            self.global_bytes += len(data)
        if self.pending_bytes > MAX_EXTENDED or self.global_bytes > MAX_EXTENDED:
            raise ArchiveError(f"{where}: more than {MAX_EXTENDED} bytes of extended (PAX or GNU long-name) headers "
                               "in a row; real archives hold a path or two. The archive is corrupt or hostile")
        if type_ == ord("x"):
            self.pending_pax.update(_pax_records(data, where))
        elif type_ == ord("g"):
            self.global_pax.update(_pax_records(data, where))
        elif type_ == ord("L"):
            self.long_name = _text(data)
        else:
            self.long_link = _text(data)
        self.waiting = True

    def apply(self, name: str, linkname: str, size: int, mtime: float,
              where: _Where) -> tuple[str, str, int, float]:
        """A member's name, link target, size and mtime with the records applied; only global ones stay."""
        if self.long_name is not None:
            name = self.long_name
        if self.long_link is not None:
            linkname = self.long_link
        self.pending_bytes = 0
        if self.global_pax or self.pending_pax:
            pax = {**self.global_pax, **self.pending_pax}
            if any(key.startswith("GNU.sparse.") for key in pax):
                raise ArchiveError(f"{where}: {pax.get('GNU.sparse.name', pax.get('path', name))!r} is a sparse file "
                                   "(GNU.sparse PAX records, as `tar --sparse` writes them): its data is stored with "
                                   "the holes left out, and streamprep does not rebuild it. Repack the archive "
                                   "without --sparse")
            name = pax.get("path", name)
            linkname = pax.get("linkpath", linkname)
            try:
                if "size" in pax:
                    size = int(pax["size"])
                if "mtime" in pax:
                    mtime = float(pax["mtime"])
            except ValueError:
                raise ArchiveError(f"{where}: malformed PAX size or mtime; the archive is corrupt")
            if size < 0 or not math.isfinite(mtime):  # as GNU tar, refuse what no file can have
                raise ArchiveError(f"{where}: PAX size {size} or mtime {mtime} of {name!r} is out of range; "
                                   "the archive is corrupt")
            self.pending_pax = {}
        self.long_name = self.long_link = None
        self.waiting = bool(self.global_pax)
        return name, linkname, size, mtime


class _Where:
    """`archive (header at byte N)` for messages, formatted only when one is written."""

    __slots__ = ("archive", "pos")

    def __init__(self, archive: str, pos: int) -> None:
        self.archive, self.pos = archive, pos

    def __str__(self) -> str:
        return f"{self.archive} (header at byte {self.pos})"

    def __format__(self, spec: str) -> str:
        return str(self)


def _padded(n: int) -> int:
    return (n + BLOCK - 1) // BLOCK * BLOCK


def normalize(name: str) -> str:
    """A member name as extraction would place it: empty and `.` parts dropped, so a leading `/` or `./`, a
    trailing `/`, `a//b` and `a/./b` all name the file `tar` writes (`..` parts are kept, for the caller to
    refuse)."""
    if "//" not in name and "/." not in name and not name.startswith(("/", "./")) and not name.endswith("/"):
        return name  # the usual name, unchanged (checked without splitting it)
    return "/".join(part for part in name.split("/") if part not in ("", "."))
