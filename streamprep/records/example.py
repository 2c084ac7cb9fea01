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


def _prefix(number: int, length: int) -> bytes:
    """The tag and length of a length-delimited field whose payload (of `length` bytes) follows apart."""
    return _SMALL[number << 3 | 2] + _varint(length)


_KEY_FIELDS: dict[str, bytes] = {}


def entry(key: str, feature: bytes) -> bytes:
    """One `Features.feature` map entry: the key and an encoded Feature (see the *_feature helpers)."""
    key_field = _KEY_FIELDS.get(key)
    if key_field is None:
        key_field = _KEY_FIELDS[key] = _field(1, key.encode())
    body_length = len(key_field) + 1 + len(feature)
    feature_length = _varint(len(feature))
    return _SMALL[10] + _varint(body_length + len(feature_length)) + key_field + _SMALL[18] + feature_length + feature


_INT64_ENTRIES: dict[tuple[str, int], bytes] = {}  # an image's height and width: a few hundred values repeat
_MOST_INT64_ENTRIES = 1 << 16


def int64_entry(key: str, value: int) -> bytes:
    """entry(key, int64_feature(value)) for one value, the common case, with fewer steps (remembered)."""
    found = _INT64_ENTRIES.get((key, value))
    if found is None:
        v = _varint(value)
        found = entry(key, _SMALL[26] + _SMALL[len(v) + 2] + _SMALL[10] + _SMALL[len(v)] + v)
        if len(_INT64_ENTRIES) < _MOST_INT64_ENTRIES:
            _INT64_ENTRIES[(key, value)] = found
    return found


def bytes_entry_head(key: str, length: int) -> bytes:
    """The map entry of a single-value bytes feature up to its value, which (`length` bytes) follows apart:
    entry(key, bytes_feature(value)) == bytes_entry_head(key, len(value)) + value."""
    key_field = _KEY_FIELDS.get(key)
    if key_field is None:
        key_field = _KEY_FIELDS[key] = _field(1, key.encode())
    value = _prefix(1, length)  # BytesList.value
    feature = _prefix(1, len(value) + length)  # Feature.bytes_list
    entry_value = _prefix(2, len(feature) + len(value) + length)  # MapEntry.value
    body = len(key_field) + len(entry_value) + len(feature) + len(value) + length
    return _prefix(1, body) + key_field + entry_value + feature + value


def example_head(entries_length: int) -> bytes:
    """Example.features up to its map entries, which (`entries_length` bytes) follow apart."""
    return _prefix(1, entries_length)


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
