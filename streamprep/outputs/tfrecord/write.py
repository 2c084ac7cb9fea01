"""Writing the classic TFRecord: one tf.train.Example a record, framed as TFRecord (length, CRCs); DALI's index of it.

Each record is encoded with `records.classic` and framed as `tf.io.TFRecordWriter` does, byte for
byte (`frame_parts`, the image passed through uncopied); `read_records` and `dali_index` read the
framing back.
"""

from __future__ import annotations

import struct
from typing import BinaryIO, Iterator, Sequence

import crc32c as _crc32c

from ...records import classic
from ...records.image import Image
from ...records.spec import RecordSpec
from ..format import ShardEncoder


def masked_crc(data: bytes) -> int:
    return _mask(_crc32c.crc32c(data))


def frame(record: bytes) -> bytes:
    """One record as it sits in a TFRecord file."""
    length = struct.pack("<Q", len(record))
    return b"".join((length, struct.pack("<I", masked_crc(length)), record, struct.pack("<I", masked_crc(record))))


def frame_parts(head: bytes, body: bytes, tail: bytes) -> tuple[bytes, bytes, bytes]:
    """`frame(head + body + tail)` as three pieces, the (large) body not copied: the CRC runs over the parts."""
    length = struct.pack("<Q", len(head) + len(body) + len(tail))
    crc = _crc32c.crc32c(tail, _crc32c.crc32c(body, _crc32c.crc32c(head)))
    return length + struct.pack("<I", masked_crc(length)) + head, body, tail + struct.pack("<I", _mask(crc))


def _mask(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def read_records(f: BinaryIO, name: str = "") -> Iterator[bytes]:
    """The records of a TFRecord stream, checking both CRCs."""
    from ...errors import OutputError

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


FRAMING = 16  # bytes a TFRecord adds to a record: length (8), its masked CRC (4), the data's masked CRC (4)
MAX_SIDE = 65500  # the largest height or width an image may have (libjpeg's limit)


class Encoder(ShardEncoder):
    """One shard's records, each framed as it is written, and the DALI index of them."""

    def __init__(self) -> None:
        self.offset = 0
        self.lines: list[bytes] = []

    def record(self, spec: RecordSpec, image: Image) -> Sequence[bytes]:
        pieces = frame_parts(*classic.encode_parts(spec, image))
        length = len(pieces[0]) + len(pieces[1]) + len(pieces[2])
        self.lines.append(b"%d %d\n" % (self.offset, length))
        self.offset += length
        return pieces

    def index(self) -> bytes:
        """DALI's TFRecord index (what its `tfrecord2idx` writes): one line per record, `offset length`, the
        length counting the framing."""
        return b"".join(self.lines)


def dali_index(f: BinaryIO, name: str = "") -> bytes:
    """The DALI index of a TFRecord stream, read from its framing (what DALI's `tfrecord2idx` computes)."""
    lines, offset = [], 0
    while True:
        head = f.read(12)
        if not head:
            return b"".join(lines)
        if len(head) < 12:
            raise ValueError(f"{name}: truncated record header at byte {offset}")
        length = struct.unpack("<Q", head[:8])[0]
        f.seek(length + 4, 1)
        lines.append(b"%d %d\n" % (offset, length + FRAMING))
        offset += length + FRAMING
