"""tf.train.Example serialisation, byte-identical to protobuf's deterministic (sorted-key) output."""

from __future__ import annotations

import struct
from typing import Sequence, Union

FeatureValue = Union[bytes, Sequence[int], Sequence[float]]


def _varint(n: int) -> bytes:
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def bytes_feature(*values: bytes) -> bytes:
    """Feature{bytes_list: BytesList{value: values}}."""
    return _field(1, b"".join(_field(1, v) for v in values))


def int64_feature(*values: int) -> bytes:
    """Feature{int64_list: Int64List{value: values}} (packed)."""
    packed = b"".join(_varint(v) for v in values)
    return _field(3, _field(1, packed) if values else b"")


def float_feature(values: bytes) -> bytes:
    """Feature{float_list: FloatList{value}} from little-endian float32 bytes (packed)."""
    return _field(2, _field(1, values) if values else b"")


def float32_bytes(values: Sequence[float]) -> bytes:
    return struct.pack(f"<{len(values)}f", *values)


def serialize(features: dict[str, bytes]) -> bytes:
    """Example{features: Features{feature: map}} with map entries in sorted key order.

    `features` maps a key to an already encoded Feature message (see the *_feature helpers).
    """
    entries = b"".join(
        _field(1, _field(1, key.encode()) + _field(2, features[key])) for key in sorted(features))
    return _field(1, entries)
