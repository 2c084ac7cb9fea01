"""The index's name table keeps a class's shared prefix and suffix once and still gives back every whole name, finds
every name holding a string, and the plan's order is the classic's shuffle in 4 bytes an image."""

from __future__ import annotations

import random

import numpy as np

from streamprep.index.images import SplitFill, _Group, sizes_array
from streamprep.index.nametable import Filler, NameTable, encode
from streamprep.plan import classic_order

PIECES = ["n0", "1", "_", "a", "B", ".JPEG", ".jpeg", "é", "\udcff", "x"]  # \udcff: an undecodable archive byte


def _random_names(rnd: random.Random) -> list[str]:
    """A class's names: a shared start and end around random middles (some empty), or no shared part at all."""
    def piece() -> str:
        return "".join(rnd.choice(PIECES) for _ in range(rnd.randint(0, 4)))

    start, end = piece(), rnd.choice(["", ".JPEG", "x", "é"])
    return [start + piece() + end for _ in range(rnd.randint(0, 7))]


def _random_tables(seed: int) -> tuple[list[NameTable], list[bytes]]:
    rnd = random.Random(seed)
    classes = [_random_names(rnd) for _ in range(rnd.randint(1, 5))]
    return [NameTable.of(names) for names in classes], [encode(n) for names in classes for n in names]


def test_a_class_table_stores_the_shared_prefix_and_suffix_once_and_gives_back_every_whole_name():
    names = [f"n01440764_{k}.JPEG" for k in (10026, 9, 1, 12345)]
    table = NameTable.of(names)
    assert table.blob == b"10026" + b"9" + b"1" + b"12345"  # the synset and `.JPEG` are not repeated
    assert table.starts.dtype == np.uint32 and table.starts.tolist() == [0, 5, 6, 7, 12]
    assert [table[i] for i in range(len(table))] == names
    assert list(table.raws()) == [encode(n) for n in names]
    assert table.lengths().tolist() == [len(n) for n in names]
    assert table.lengths(np.array([3, 1])).tolist() == [20, 16]


def test_tables_concatenated_cut_and_filled_give_back_exactly_the_names_put_in():
    for seed in range(200):
        tables, encoded = _random_tables(seed)
        whole = NameTable.concat(tables)
        assert list(whole.raws()) == encoded and [whole.raw(i) for i in range(len(whole))] == encoded
        assert whole.lengths().tolist() == [len(e) for e in encoded]
        for first in range(len(whole) + 1):
            stop = random.Random(first).randint(first, len(whole))
            assert list(whole.take(first, stop).raws()) == encoded[first:stop], (seed, first, stop)
        filler = Filler(len(whole), len(whole.blob))
        for table in tables:
            filler.add(table, 0, len(table))
        assert list(filler.table().raws()) == encoded


def test_rows_containing_finds_every_name_holding_a_string_across_prefix_stored_bytes_and_suffix():
    for seed in range(200):
        _, encoded = _random_tables(seed)
        rnd = random.Random(seed)
        whole = NameTable.concat(_random_tables(seed)[0])
        needles = [e[a:b] for e in encoded for a in range(len(e) + 1) for b in (rnd.randint(a, len(e)),)]
        needles += [encode("".join(rnd.choice(PIECES) for _ in range(3))) for _ in range(10)]
        for needle in needles:
            found = [i for i, e in enumerate(encoded) if needle in e]
            assert whole.rows_containing(needle) == found, (seed, needle)
            assert (needle in whole) is bool(found)


def test_a_string_spanning_two_names_is_not_found_in_either():
    table = NameTable.plain([b"n01_1.JP", b"EGn01_2.JPEG"])
    assert table.rows_containing(b".JPEG") == [1] and b"JPEGn" not in table


def test_a_split_filled_class_by_class_holds_the_rows_asked_for_with_their_labels():
    rnd = random.Random(7)
    groups = []
    for _ in range(6):
        names = sorted(set(_random_names(rnd)))
        groups.append(_Group(NameTable.of(names), np.arange(len(names), dtype=np.int64) * 1024,
                             sizes_array([100 + k for k in range(len(names))])))
    cuts = [min(2, len(g.names)) for g in groups]
    fill = SplitFill(sum(len(g.names) - c for g, c in zip(groups, cuts)),
                     sum(int(g.names.starts[-1]) - int(g.names.starts[c]) for g, c in zip(groups, cuts)), np.uint32)
    for label, (group, cut) in enumerate(zip(groups, cuts), 1):
        fill.add(label, group, cut, len(group.names))
    split = fill.index("train", "a.tar", {})
    want = [(g.names.raw(i), label, int(g.offsets[i]), int(g.sizes[i]))
            for label, (g, cut) in enumerate(zip(groups, cuts), 1) for i in range(cut, len(g.names))]
    assert [(split.names.raw(i), int(split.labels[i]), int(split.offsets[i]), int(split.sizes[i]))
            for i in range(len(split))] == want
    assert split.sizes.dtype == np.uint32 and split.offsets.dtype == np.int64


def test_image_sizes_of_4_gib_or_more_are_held_as_int64():
    assert sizes_array([1, 2]).dtype == np.uint32 and sizes_array([2 ** 32]).dtype == np.int64


def test_the_plan_order_is_python_shuffle_of_a_range_with_the_classic_seed_in_4_bytes_an_image():
    for n in (0, 1, 2, 1000, 65_537):
        expected = list(range(n))
        random.Random(12345).shuffle(expected)
        order = classic_order(n)
        assert order.dtype == np.uint32 and order.tolist() == expected
