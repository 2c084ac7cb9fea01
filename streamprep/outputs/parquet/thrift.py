"""The Thrift compact protocol, encoding only: the bytes of a Parquet file's page headers, page index and footer.

Parquet describes its metadata in Thrift (`parquet.thrift`) and writes it with the compact protocol
(Apache Thrift's `thrift-compact-protocol.md`). A struct is its fields in increasing id order, each
a header byte (the id's delta from the previous field's in the high nibble when it is 1..15, else
the id as a zigzag varint after the byte; the field's type in the low nibble), then its value, and a
stop byte (0). Integers are zigzag varints; binary and strings a varint length then the bytes; a
list a header (its size in the high nibble when under 15, else 15 and a varint) then its elements; a
bool field's value is its type (1 true, 2 false). Only what Parquet's metadata uses is here. A
struct is built as bytes (`struct`), so a struct in a field or a list is those bytes as they are.
"""

from __future__ import annotations

from typing import Any, Iterable

BOOL, I16, I32, I64, BINARY, LIST, STRUCT = "bool", 4, 5, 6, 8, 9, 12  # field types (bool: 1 true, 2 false)
TRUE, FALSE, STOP = 1, 2, 0


def varint(n: int) -> bytes:
    """An unsigned LEB128 varint."""
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def zigzag(n: int) -> bytes:
    """A signed integer (i16, i32, i64) as the compact protocol writes it."""
    return varint((n << 1) ^ (n >> 63))


def value(kind: int, item: Any) -> bytes:
    """One value of type `kind` (not a bool: a bool field's value is its header)."""
    if kind in (I16, I32, I64):
        return zigzag(item)
    if kind == BINARY:
        data = item.encode("utf-8") if isinstance(item, str) else bytes(item)
        return varint(len(data)) + data
    if kind == STRUCT:  # already encoded, by `struct`
        return item
    if kind == LIST:
        element, items = item
        size = len(items)
        head = bytes([size << 4 | element]) if size < 15 else bytes([0xF0 | element]) + varint(size)
        return head + b"".join(value(element, x) for x in items)
    raise ValueError(f"no compact encoding here for Thrift type {kind}")


def struct(fields: Iterable[tuple[int, Any, Any]]) -> bytes:
    """A struct from its (id, type, value) fields, in increasing id order; a field whose value is None is left out.
    A list field's value is (element type, items)."""
    out, last = bytearray(), 0
    for number, kind, item in fields:
        if item is None:
            continue
        if number <= last:
            raise ValueError(f"Thrift field {number} after field {last}: fields go in increasing id order")
        code = (TRUE if item else FALSE) if kind == BOOL else kind
        delta = number - last
        out += bytes([delta << 4 | code]) if delta <= 15 else bytes([code]) + zigzag(number)
        if kind != BOOL:
            out += value(kind, item)
        last = number
    out.append(STOP)
    return bytes(out)
