"""tf.train.Example serialisation, byte-identical to protobuf's deterministic (sorted-key) output."""

from __future__ import annotations

import struct
from typing import Sequence

_SMALL = [bytes([n]) if n < 0x80 else bytes([(n & 0x7F) | 0x80, n >> 7]) for n in range(1 << 14)]


def _varint(n: int) -> bytes:
    if 0 <= n < 1 << 14:
        return _SMALL[n]
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
    return _SMALL[number << 3 | 2] + _varint(len(payload)) + payload


def bytes_feature(*values: bytes) -> bytes:
    """Feature{bytes_list: BytesList{value: values}}."""
    return _field(1, b"".join([_field(1, v) for v in values]))


def int64_feature(*values: int) -> bytes:
    """Feature{int64_list: Int64List{value: values}} (packed)."""
    return _field(3, _field(1, b"".join([_varint(v) for v in values])) if values else b"")


def float_feature(values: bytes) -> bytes:
    """Feature{float_list: FloatList{value}} from little-endian float32 bytes (packed)."""
    return _field(2, _field(1, values) if values else b"")


def float32_bytes(values: Sequence[float]) -> bytes:
    return struct.pack(f"<{len(values)}f", *values)


class Schema:
    """A fixed set of feature keys, pre-encoded, so that each record only encodes its values."""

    def __init__(self, keys: Sequence[str]) -> None:
        self.keys = tuple(sorted(keys))
        self._key_fields = [_field(1, k.encode()) for k in self.keys]

    def serialize(self, features: dict[str, bytes]) -> bytes:
        """Example{features: Features{feature: map}}, map entries in sorted key order.

        `features` maps each key of the schema to an encoded Feature (see the *_feature helpers).
        """
        entries = b"".join([_field(1, kf + _field(2, features[k])) for k, kf in zip(self.keys, self._key_fields)])
        return _field(1, entries)


def serialize(features: dict[str, bytes]) -> bytes:
    """Serialise any feature map (sorted keys), for callers without a fixed schema."""
    return Schema(list(features)).serialize(features)
