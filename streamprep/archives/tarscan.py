"""Tar header walking without extraction: ustar, GNU and PAX headers, data left in place."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator

from ..errors import ArchiveError

BLOCK = 512
REGULAR_TYPES = frozenset(b"0\x007")
LINK_TYPES = frozenset(b"12")
DEVICE_TYPES = frozenset(b"346")  # character device, block device, FIFO
# Entry types that never have data blocks after the header (as in tarfile and GNU tar).
NO_DATA_TYPES = frozenset(b"123456")
# Largest PAX or GNU long-name record read into memory (libarchive's limit too): real ones hold a path or two.
MAX_EXTENDED = 1 << 20

ReadAt = Callable[[int, int], bytes]


@dataclass(frozen=True, slots=True)
class TarMember:
    """One archive entry: its name, where its data starts and how long it is."""

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


def _checksum_ok(block: bytes) -> bool:
    try:
        stored = _number(block[148:156])
    except ValueError:
        return False
    unsigned = sum(block) - sum(block[148:156]) + 8 * 32  # the checksum field itself counts as spaces
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
    global_pax: dict[str, str] = {}
    pending_pax: dict[str, str] = {}
    long_name: str | None = None
    long_link: str | None = None
    last = ""
    while True:
        if size is not None and pos >= size:
            return  # end of data without end-of-archive blocks: accepted, as tar does
        block = read_at(base + pos, BLOCK)
        if not block:
            return
        if len(block) < BLOCK:
            after = f" (after member {last!r})" if last else ""
            raise ArchiveError(f"{archive}: truncated tar header at byte {pos}{after}; "
                               "the download is incomplete, fetch it again")
        if block == ZERO_BLOCK:
            return
        where = _Where(archive, pos)
        if not _checksum_ok(block):
            after = f" after member {last!r}" if last else ""
            raise ArchiveError(f"{where}: bad tar header checksum{after}; the archive is corrupt or not a tar file")
        try:
            type_ = block[156]
            member_size = _number(block[124:136])
            mtime = _number(block[136:148])
            mode = _number(block[100:108])
        except ValueError:
            raise ArchiveError(f"{where}: unreadable tar header field; the archive is corrupt")
        if member_size < 0:  # the walk would step back and read the same headers forever
            raise ArchiveError(f"{where}: negative member size {member_size}; the archive is corrupt")
        name = _text(block[0:100])
        if block[257:263] == b"ustar\0":  # POSIX ustar: name may be split with a prefix
            prefix = _text(block[345:500])
            if prefix:
                name = f"{prefix}/{name}"
        linkname = _text(block[157:257])
        data_offset = pos + BLOCK
        if type_ in EXTENDED_TYPES:
            if member_size > MAX_EXTENDED:
                raise ArchiveError(f"{where}: extended header of {member_size} bytes (at most {MAX_EXTENDED} "
                                   "expected); the archive is corrupt")
            data = read_at(base + data_offset, member_size)
            if len(data) < member_size:
                raise ArchiveError(f"{where}: truncated extended header; the download is incomplete")
            if type_ == ord("x"):
                pending_pax.update(_pax_records(data, where))
            elif type_ == ord("g"):
                global_pax.update(_pax_records(data, where))
            elif type_ == ord("L"):
                long_name = data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            else:
                long_link = data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            pos = data_offset + _padded(member_size)
            continue
        if type_ == ord("S"):
            raise ArchiveError(f"{where}: GNU sparse member {name!r} is not supported; repack the archive")
        if long_name is not None:
            name = long_name
        if long_link is not None:
            linkname = long_link
        if global_pax or pending_pax:
            pax = {**global_pax, **pending_pax}
            name = pax.get("path", name)
            linkname = pax.get("linkpath", linkname)
            try:
                if "size" in pax:
                    member_size = int(pax["size"])
                if "mtime" in pax:
                    mtime = float(pax["mtime"])
            except ValueError:
                raise ArchiveError(f"{where}: malformed PAX size or mtime; the archive is corrupt")
            if member_size < 0 or not math.isfinite(mtime):  # as GNU tar, refuse what no file can have
                raise ArchiveError(f"{where}: PAX size {member_size} or mtime {mtime} of {name!r} is out of range; "
                                   "the archive is corrupt")
            pending_pax = {}
        long_name = long_link = None
        if type_ == 0 and name.endswith("/"):  # pre-POSIX tars mark directories by the trailing slash only
            type_ = ord("5")
        has_data = type_ not in NO_DATA_TYPES
        length = member_size if has_data else 0
        if size is not None and data_offset + length > size:
            raise ArchiveError(
                f"{archive}!{name}: member runs past the end of the archive (needs {data_offset + length} "
                f"bytes, archive has {size}); the download is truncated, fetch it again")
        yield TarMember(name, base + data_offset, length, type_, mtime, mode, linkname)
        last = name
        pos = data_offset + _padded(length)


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
    """A member name as extraction would place it: leading `./` and trailing `/` dropped."""
    while name.startswith("./"):
        name = name[2:]
    return name.rstrip("/")
