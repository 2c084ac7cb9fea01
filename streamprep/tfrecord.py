"""TFRecord framing: length, masked CRC32C of the length, data, masked CRC32C of the data."""

from __future__ import annotations

import struct
from typing import BinaryIO, Iterator

import crc32c as _crc32c


def masked_crc(data: bytes) -> int:
    return _mask(_crc32c.crc32c(data))


def frame(record: bytes) -> bytes:
    """One record as it sits in a TFRecord file."""
    length = struct.pack("<Q", len(record))
    return b"".join((length, struct.pack("<I", masked_crc(length)), record, struct.pack("<I", masked_crc(record))))


def frame_parts(parts: tuple[bytes, ...]) -> list[bytes]:
    """`frame(b"".join(parts))` as pieces, without joining them (the CRC runs over them in turn)."""
    length = struct.pack("<Q", sum(len(p) for p in parts))
    crc = 0
    for part in parts:
        crc = _crc32c.crc32c(part, crc)
    return [length, struct.pack("<I", masked_crc(length)), *parts, struct.pack("<I", _mask(crc))]


def _mask(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def read_records(f: BinaryIO, name: str = "") -> Iterator[bytes]:
    """The records of a TFRecord stream, checking both CRCs."""
    from .errors import OutputError

    while True:
        head = f.read(12)
        if not head:
            return
        if len(head) < 12:
            raise OutputError(f"{name}: truncated record header")
        length, length_crc = struct.unpack("<QI", head)
        if masked_crc(head[:8]) != length_crc:
            raise OutputError(f"{name}: bad length CRC")
        data = f.read(length)
        tail = f.read(4)
        if len(data) < length or len(tail) < 4:
            raise OutputError(f"{name}: truncated record")
        if masked_crc(data) != struct.unpack("<I", tail)[0]:
            raise OutputError(f"{name}: bad data CRC")
        yield data
