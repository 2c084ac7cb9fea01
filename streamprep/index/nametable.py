"""Many short strings in one bytes object, and a lookup from a string to its positions without a dict."""

from __future__ import annotations

import zlib
from typing import Iterable

import numpy as np


def encode(name: str) -> bytes:
    """A name as the tables hold it: UTF-8, with the bytes of an undecodable archive name kept as they were."""
    return name.encode("utf-8", "surrogateescape")


class NameTable:
    """Many short strings in one bytes object plus offsets (about 30 bytes a name)."""

    def __init__(self, blob: bytes, starts: np.ndarray) -> None:
        self.blob, self.starts = blob, starts

    @classmethod
    def of(cls, names: list[str]) -> "NameTable":
        encoded = [encode(n) for n in names]
        starts = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(e) for e in encoded], out=starts[1:])
        return cls(b"".join(encoded), starts)

    @classmethod
    def concat(cls, tables: list["NameTable"]) -> "NameTable":
        blobs, starts, base = [], [np.zeros(1, dtype=np.int64)], 0
        for t in tables:
            blobs.append(t.blob)
            starts.append(t.starts[1:] + base)
            base += len(t.blob)
        return cls(b"".join(blobs), np.concatenate(starts))

    def __len__(self) -> int:
        return len(self.starts) - 1

    def __getitem__(self, i: int) -> str:
        return self.raw(i).decode("utf-8", "surrogateescape")

    def raw(self, i: int) -> bytes:
        """Name `i` as stored (no decoding)."""
        return self.blob[self.starts[i]:self.starts[i + 1]]

    def raws(self) -> Iterable[bytes]:
        """Every name as stored, in order."""
        blob, starts = self.blob, self.starts.tolist()
        return (blob[a:b] for a, b in zip(starts, starts[1:]))


class NameLookup:
    """The positions of each name of a `NameTable`: the names' CRC-32s sorted, each with its position (8 bytes a
    name, where a dict of the same names costs about 140). A CRC is only a hint: every hit is checked against
    the stored name, so names that share one are told apart."""

    def __init__(self, crcs: np.ndarray, positions: np.ndarray) -> None:
        self.crcs, self.positions = crcs, positions  # uint32 sorted; int64, ascending among equal CRCs

    @classmethod
    def of(cls, table: NameTable) -> "NameLookup":
        crcs = np.fromiter((zlib.crc32(r) for r in table.raws()), dtype=np.uint32, count=len(table))
        positions = np.argsort(crcs, kind="stable")
        return cls(crcs[positions], positions.astype(np.int64))

    def find(self, table: NameTable, names: list[bytes]) -> list[list[int]]:
        """For each encoded name, its positions in `table`, ascending (none for a name it does not hold)."""
        if not len(self.crcs) or not names:
            return [[] for _ in names]
        keys = np.fromiter((zlib.crc32(n) for n in names), dtype=np.uint32, count=len(names))
        lows = np.searchsorted(self.crcs, keys, side="left").tolist()
        highs = np.searchsorted(self.crcs, keys, side="right").tolist()
        out: list[list[int]] = []
        for name, low, high in zip(names, lows, highs):
            if low == high:
                out.append([])
                continue
            out.append([p for p in self.positions[low:high].tolist() if table.raw(p) == name])
        return out
