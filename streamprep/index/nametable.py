"""Many short strings in one bytes object, a run's shared prefix and suffix kept once; a lookup without a dict."""

from __future__ import annotations

import bisect
import os
import zlib
from typing import Iterable, Iterator, Sequence

import numpy as np

OFFSETS_32 = 2 ** 32  # below this many bytes the offsets of a table's names are uint32 (4 bytes a name, not 8)


def encode(name: str) -> bytes:
    """A name as the tables hold it: UTF-8, with the bytes of an undecodable archive name kept as they were."""
    return name.encode("utf-8", "surrogateescape")


def offsets_type(nbytes: int) -> type:
    """The narrowest type that holds offsets up to `nbytes`: uint32, or int64 for 4 GiB of names or more."""
    return np.uint32 if nbytes < OFFSETS_32 else np.int64


def _cumulative(lengths: Iterable[int], count: int) -> np.ndarray:
    """0 and the running sums of `count` lengths: the starts of names laid end to end."""
    sums = np.fromiter(lengths, dtype=np.int64, count=count).cumsum()
    starts = np.zeros(count + 1, dtype=offsets_type(int(sums[-1]) if count else 0))
    starts[1:] = sums
    return starts


def _common_suffix(names: Sequence[bytes], most: int) -> bytes:
    """The longest suffix of at most `most` bytes that every name ends with."""
    suffix = names[0][len(names[0]) - most:] if most > 0 else b""
    for name in names:
        while suffix and not name.endswith(suffix):
            suffix = suffix[1:]
        if not suffix:
            break
    return suffix


class Affixes:
    """The prefix and suffix each segment of a table's rows shares (a class's images: `n01440764_` and `.JPEG`):
    segment k is rows `rows[k]` to `rows[k + 1]`, each name there `prefixes[k] + its own bytes + suffixes[k]`."""

    def __init__(self, rows: np.ndarray, prefixes: Sequence[bytes], suffixes: Sequence[bytes]) -> None:
        self.rows, self.prefixes, self.suffixes = rows, tuple(prefixes), tuple(suffixes)
        self.bounds = rows.tolist()  # for bisect: a name's segment found in well under a microsecond

    def __len__(self) -> int:
        return len(self.prefixes)

    def segment(self, i: int) -> int:
        """The segment of row `i`."""
        return bisect.bisect_right(self.bounds, i) - 1

    def of_rows(self, rows: np.ndarray) -> np.ndarray:
        """The segment of each of `rows`."""
        return np.searchsorted(self.rows, rows, side="right") - 1

    def lengths(self) -> np.ndarray:
        """Bytes each segment adds to each of its names."""
        return np.fromiter((len(p) + len(s) for p, s in zip(self.prefixes, self.suffixes)), np.int64, len(self))


class NameTable:
    """Many short strings in one bytes object (`blob`) plus where each starts (`starts`, uint32 below 4 GiB), and,
    with `affixes`, the prefix and suffix each segment of rows shares stored once: an ImageNet-21k image name,
    `n01440764_10026.JPEG`, then takes its 5 own bytes and 4 for its start. `raw(i)` and `names[i]` give the whole
    name either way; `blob` and `starts` are the stored parts only (use `lengths`, `rows_containing`, `in`)."""

    def __init__(self, blob: bytes, starts: np.ndarray, affixes: Affixes | None = None) -> None:
        self.blob, self.starts, self.affixes = blob, starts, affixes

    @classmethod
    def of(cls, names: list[str]) -> "NameTable":
        """The names, the prefix and suffix they all share (if any) stored once."""
        return cls.of_encoded([encode(n) for n in names])

    @classmethod
    def of_encoded(cls, encoded: list[bytes]) -> "NameTable":
        """`of` for names already encoded."""
        if not encoded:
            return cls(b"", np.zeros(1, dtype=np.uint32))
        prefix = os.path.commonprefix(encoded)
        suffix = _common_suffix(encoded, min(map(len, encoded)) - len(prefix))
        if not prefix and not suffix:
            return cls.plain(encoded)
        cut, end = len(prefix), len(suffix)
        blob = b"".join([e[cut:len(e) - end] for e in encoded])
        return cls(blob, _cumulative((len(e) - cut - end for e in encoded), len(encoded)),
                   Affixes(np.array([0, len(encoded)], dtype=np.int64), [prefix], [suffix]))

    @classmethod
    def plain(cls, encoded: list[bytes]) -> "NameTable":
        """The names as they are, no affixes."""
        return cls(b"".join(encoded), _cumulative(map(len, encoded), len(encoded)))

    @classmethod
    def concat(cls, tables: list["NameTable"]) -> "NameTable":
        """The tables' names one after another (each table's affixes kept for its rows)."""
        tables = [t for t in tables if len(t)]
        total = sum(len(t.blob) for t in tables)
        starts = np.zeros(sum(len(t) for t in tables) + 1, dtype=offsets_type(total))
        at = base = 0
        for t in tables:
            starts[at + 1:at + len(t) + 1] = t.starts[1:].astype(np.int64) + base
            at, base = at + len(t), base + len(t.blob)
        return cls(b"".join(t.blob for t in tables), starts, _concat_affixes(tables))

    def __len__(self) -> int:
        return len(self.starts) - 1

    def __getitem__(self, i: int) -> str:
        return self.raw(i).decode("utf-8", "surrogateescape")

    def __contains__(self, needle: bytes) -> bool:
        """Whether some name holds `needle` (`rows_containing` says which)."""
        return bool(self.rows_containing(needle))

    def raw(self, i: int) -> bytes:
        """Name `i`, encoded (no decoding)."""
        starts, affixes = self.starts, self.affixes
        own = self.blob[starts.item(i):starts.item(i + 1)]
        if affixes is None:
            return own
        k = bisect.bisect_right(affixes.bounds, i) - 1
        return affixes.prefixes[k] + own + affixes.suffixes[k]

    def raw_many(self, rows: np.ndarray) -> list[bytes]:
        """Names `rows`, encoded: `raw` of each, the offsets looked up at once."""
        if self.affixes is not None:
            return [self.raw(i) for i in rows.tolist()]
        blob, rows = self.blob, rows.astype(np.int64)
        return [blob[a:b] for a, b in zip(self.starts[rows].tolist(), self.starts[rows + 1].tolist())]

    def raws(self) -> Iterator[bytes]:
        """Every name, encoded, in order."""
        blob, starts = self.blob, self.starts.tolist()
        if self.affixes is None:
            yield from (blob[a:b] for a, b in zip(starts, starts[1:]))
            return
        a = self.affixes
        for k, (prefix, suffix) in enumerate(zip(a.prefixes, a.suffixes)):
            first, stop = a.bounds[k], a.bounds[k + 1]
            yield from (prefix + blob[x:y] + suffix for x, y in zip(starts[first:stop], starts[first + 1:stop + 1]))

    def lengths(self, rows: np.ndarray | None = None) -> np.ndarray:
        """The byte length of each name at `rows` (of every name by default), affixes included."""
        rows = np.arange(len(self)) if rows is None else np.asarray(rows, dtype=np.int64)
        own = self.starts[rows + 1].astype(np.int64) - self.starts[rows]
        if self.affixes is None:
            return own
        return own + self.affixes.lengths()[self.affixes.of_rows(rows)]

    def take(self, first: int, stop: int) -> "NameTable":
        """Names `first` to `stop` as a table of their own (their affixes kept)."""
        a, b = int(self.starts[first]), int(self.starts[stop])
        starts = (self.starts[first:stop + 1].astype(np.int64) - a).astype(offsets_type(b - a))
        return NameTable(self.blob[a:b], starts, _sliced_affixes(self.affixes, first, stop))

    def rows_containing(self, needle: bytes) -> list[int]:
        """The rows whose whole name (affixes included) holds `needle`, ascending. Where it lies within a name's own
        bytes, or ends in its suffix, one search of all the stored bytes finds it; where it starts in a segment's
        prefix, or lies in the prefix or the suffix, that segment is looked at on its own."""
        if not needle:
            return list(range(len(self)))
        found = set(_own_hits(self, needle, 0, len(self), False, False))  # within a name's own bytes
        if self.affixes is None:
            return sorted(found)
        a = self.affixes
        by_suffix: dict[bytes, set[int]] = {}  # the segments whose rows it may end in, by their suffix
        for k, (prefix, suffix) in enumerate(zip(a.prefixes, a.suffixes)):
            first, stop = a.bounds[k], a.bounds[k + 1]
            if needle in prefix or needle in suffix:
                found.update(range(first, stop))
                continue
            by_suffix.setdefault(suffix, set()).add(k)
            for head in _heads(needle, prefix):
                for tail in (b"", *_tails(needle, suffix)):
                    own = needle[len(head):len(needle) - len(tail)]
                    if own or tail:
                        found.update(_own_hits(self, own, first, stop, True, bool(tail)))
        for suffix, segments in by_suffix.items():
            for tail in _tails(needle, suffix):
                hits = _own_hits(self, needle[:len(needle) - len(tail)], 0, len(self), False, True)
                found.update(r for r, k in zip(hits, a.of_rows(np.array(hits, dtype=np.int64)).tolist())
                             if k in segments)
        return sorted(found)


class Filler:
    """A table of `count` names whose own bytes total `nbytes`, filled from runs of other tables' rows (`add`) into
    arrays allocated once: no list of pieces and no second copy of them all while it is built."""

    def __init__(self, count: int, nbytes: int) -> None:
        self.blob = np.empty(nbytes, dtype=np.uint8)
        self.starts = np.zeros(count + 1, dtype=offsets_type(nbytes))
        self.at = self.byte = 0
        self.rows, self.prefixes, self.suffixes = [0], [], []  # the segments so far

    def add(self, table: NameTable, first: int, stop: int) -> None:
        """Rows `first` to `stop` of `table`, next."""
        count = stop - first
        if count <= 0:
            return
        a, b = int(table.starts[first]), int(table.starts[stop])
        if b > a:
            self.blob[self.byte:self.byte + b - a] = np.frombuffer(table.blob, np.uint8, b - a, a)
        shift = self.byte - a
        self.starts[self.at + 1:self.at + count + 1] = table.starts[first + 1:stop + 1].astype(np.int64) + shift
        affixes = _sliced_affixes(table.affixes, first, stop) or Affixes(np.array([0, count]), [b""], [b""])
        self.rows.extend(self.at + r for r in affixes.bounds[1:])
        self.prefixes.extend(affixes.prefixes)
        self.suffixes.extend(affixes.suffixes)
        self.at, self.byte = self.at + count, self.byte + b - a

    def table(self) -> NameTable:
        """The table filled (its bytes copied once into the `bytes` a table holds)."""
        affixes = None
        if any(self.prefixes) or any(self.suffixes):
            affixes = Affixes(np.array(self.rows, dtype=np.int64), self.prefixes, self.suffixes)
        blob, self.blob = self.blob, np.empty(0, dtype=np.uint8)
        return NameTable(blob.tobytes(), self.starts, affixes)


def _heads(needle: bytes, prefix: bytes) -> list[bytes]:
    """The ends of `prefix` that `needle` starts with (where it may start within the prefix), longest first."""
    heads, j = [], prefix.find(needle[:1])
    while j >= 0:
        if needle.startswith(prefix[j:]):
            heads.append(prefix[j:])
        j = prefix.find(needle[:1], j + 1)
    return heads


def _tails(needle: bytes, suffix: bytes) -> list[bytes]:
    """The starts of `suffix` that `needle` ends with (where it may end within the suffix), shortest first."""
    return [suffix[:j] for j in range(1, len(suffix) + 1) if needle.endswith(suffix[:j])]


def _own_hits(table: NameTable, part: bytes, first: int, stop: int, at_start: bool, at_end: bool) -> list[int]:
    """Rows `first` to `stop` whose own bytes hold `part` (starting them with `at_start`, ending them with
    `at_end`), ascending."""
    starts = table.starts
    if not part:  # only with both ends held: the rows of no bytes of their own
        return [first + int(r) for r in np.flatnonzero(np.diff(starts[first:stop + 1].astype(np.int64)) == 0)]
    rows, end = [], int(starts[stop])
    at = table.blob.find(part, int(starts[first]), end)
    while at >= 0:
        row = int(np.searchsorted(starts, at, side="right")) - 1
        begin, finish = int(starts[row]), int(starts[row + 1])
        if at + len(part) <= finish and (not at_start or at == begin) and (not at_end or at + len(part) == finish):
            rows.append(row)
            at = table.blob.find(part, finish, end)
        else:
            at = table.blob.find(part, at + 1, end)
    return rows


def _concat_affixes(tables: list[NameTable]) -> Affixes | None:
    """The affixes of tables laid end to end (a table without any: one segment of none), or None if none has any."""
    if all(t.affixes is None for t in tables):
        return None
    rows, prefixes, suffixes, base = [0], [], [], 0
    for t in tables:
        a = t.affixes or Affixes(np.array([0, len(t)], dtype=np.int64), [b""], [b""])
        rows.extend(base + r for r in a.bounds[1:])
        prefixes.extend(a.prefixes)
        suffixes.extend(a.suffixes)
        base += len(t)
    return Affixes(np.array(rows, dtype=np.int64), prefixes, suffixes)


def _sliced_affixes(affixes: Affixes | None, first: int, stop: int) -> Affixes | None:
    """The affixes of rows `first` to `stop`, renumbered from 0."""
    if affixes is None or first >= stop:
        return None
    low, high = affixes.segment(first), affixes.segment(stop - 1) + 1
    rows = np.clip(affixes.rows[low:high + 1], first, stop) - first
    return Affixes(rows, affixes.prefixes[low:high], affixes.suffixes[low:high])


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
