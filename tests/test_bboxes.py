"""Tests of bounding-box XML parsing and bboxes.csv (streamprep.bboxes) against the classic semantics."""

from __future__ import annotations

import random
import socket
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from classic_reference import write_bboxes_csv
from fixtures.builders import voc_xml
from servers import connection_recorder
from streamprep.index.boxes import BoxTable, XmlBoxes, csv_lines, parse_boxes
from streamprep.index.nametable import NameLookup, NameTable, encode
from streamprep.errors import AnnotationError

WHERE = "ILSVRC2012_bbox_train_v2.tar.gz!n01440764/n01440764_1.xml"


def raw(size: str, *objects: str, head: str = "") -> bytes:
    """A minimal annotation: `size` is the <size> content, each object the <bndbox> content."""
    boxes = "".join(f"<object><name>n1</name><bndbox>{o}</bndbox></object>" for o in objects)
    return f"{head}<annotation><filename>x</filename><size>{size}</size>{boxes}</annotation>".encode()


def box(xmin, ymin, xmax, ymax) -> str:
    return f"<xmin>{xmin}</xmin><ymin>{ymin}</ymin><xmax>{xmax}</xmax><ymax>{ymax}</ymax>"


SIZE = "<width>500</width><height>375</height>"
GOOD = {
    "integers": voc_xml("n01440764_1", 500, 375, [(10, 20, 300, 200)]),
    "float-coordinates": voc_xml("x", 500, 375, [("12.5", "20.9", "300.7", "200.01")]),
    "swapped-min-max": voc_xml("x", 500, 375, [(300, 200, 10, 20)]),
    "outside-the-image": voc_xml("x", 500, 375, [(-50, -10, 600, 400)]),
    "zero-width-box": voc_xml("x", 500, 375, [(10, 20, 10, 200), (1, 2, 3, 4)]),
    "zero-area-after-clamp": voc_xml("x", 500, 375, [(600, 20, 700, 200)]),
    "several-objects": voc_xml("x", 333, 500, [(1, 2, 300, 400), (0, 0, 333, 500), (40, 41, 42, 43)]),
    "minus-one-stops-count": voc_xml("x", 500, 375, [(10, 20, 30, 40), (-1, 5, 6, 7), (50, 60, 70, 80)]),
    "minus-one-float-stops-count": voc_xml("x", 500, 375, [(10, 20, 30, 40), ("-1.7", 5, 6, 7), (1, 2, 3, 4)]),
    "minus-half-does-not-stop": voc_xml("x", 500, 375, [("-0.5", 5, 60, 70)]),
    "no-objects": voc_xml("x", 500, 375, []),
    "size-as-float-text": voc_xml("x", "500.0", "375.9", [(10, 20, 300, 200)]),
    "whitespace-and-exponent": voc_xml("x", " 500\n", "375", [("\n 1e1 ", "2E1", "+300", " 200")]),
    "comment-inside-number": voc_xml("x", "5<!-- c -->00", 375, [("1<!-- one -->2", 20, "3<!---->00", 200)]),
    "missing-ymin-in-last-object": raw(SIZE, box(10, 20, 30, 40), "<xmin>5</xmin><xmax>50</xmax><ymax>60</ymax>"),
    "missing-ymin-shifts-later-ones": raw(SIZE, "<xmin>5</xmin><xmax>50</xmax><ymax>60</ymax>", box(10, 20, 30, 40)),
    "missing-width-counts-as-minus-1": raw("<height>375</height>", box("-0.9", 20, -300, 40)),
    "first-width-wins": raw("<width>100</width><height>100</height><width>7</width>", box(10, 20, 30, 40)),
    "utf8-declaration-non-ascii": raw(SIZE, box(1, 2, 3, 4), head="<?xml version='1.0' encoding='utf-8'?>")
    .replace(b"<filename>x", "<filename>caf\u00e9".encode()),
}


def classic_csv(tmp_path, files: dict[str, bytes]) -> str:
    """bboxes.csv as the classic reference writes it for `folder/name.xml` -> XML bytes."""
    for name, data in files.items():
        path = tmp_path / "bboxes" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    write_bboxes_csv(tmp_path / "bboxes", tmp_path / "bboxes.csv")
    return (tmp_path / "bboxes.csv").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", GOOD, ids=GOOD)
def test_csv_lines_equal_classic(tmp_path, name):
    expected = classic_csv(tmp_path, {"n01440764/n01440764_1.xml": GOOD[name]})
    assert csv_lines("n01440764_1", parse_boxes(GOOD[name], WHERE)) == expected


def test_float_text_is_truncated_and_boxes_keep_document_order():
    assert parse_boxes(GOOD["float-coordinates"], WHERE) == [(12 / 500, 20 / 375, 300 / 500, 200 / 375)]
    assert len(parse_boxes(GOOD["minus-one-stops-count"], WHERE)) == 1
    assert csv_lines("s", [(0.1, 0.2, 0.3, 0.4), (0.0, 0.0, 1.0, 1.0)]) == \
        "s.JPEG,0.1000,0.2000,0.3000,0.4000\ns.JPEG,0.0000,0.0000,1.0000,1.0000\n"


BAD = {
    "non-numeric-xmin": voc_xml("x", 500, 375, [("abc", 2, 3, 4)]),
    "non-numeric-ymax": voc_xml("x", 500, 375, [(1, 2, 3, "4px")]),
    "non-numeric-width": voc_xml("x", "wide", 375, [(1, 2, 3, 4)]),
    "nan-coordinate": voc_xml("x", 500, 375, [(1, "nan", 3, 4)]),
    "inf-coordinate": voc_xml("x", 500, 375, [(1, 2, "inf", 4)]),
    "empty-xmin": raw(SIZE, "<xmin></xmin><ymin>1</ymin><xmax>2</xmax><ymax>3</ymax>"),
    "self-closed-ymin": raw(SIZE, "<xmin>1</xmin><ymin/><xmax>2</xmax><ymax>3</ymax>"),
    "width-0": voc_xml("x", 0, 375, [(1, 2, 3, 4)]),
    "height-below-1": voc_xml("x", 500, "0.5", [(1, 2, 3, 4)]),
    "malformed-xml": b"<annotation><size><width>500</width></annotation>",
    "empty-file": b"",
    "not-xml": b"\xff\xd8\xff\xe0 a JPEG maybe",
}


@pytest.mark.parametrize("name", BAD, ids=BAD)
def test_unusable_xml_raises_annotation_error_naming_where(name):
    with pytest.raises(AnnotationError) as err:
        parse_boxes(BAD[name], WHERE)
    assert WHERE in str(err.value)


@pytest.fixture
def listener():
    """A TCP server on 127.0.0.1 that records every connection it gets."""
    with connection_recorder() as recorder:
        yield recorder


LAUGHS = "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10))
HOSTILE = {
    "internal-entity": '<!DOCTYPE annotation [<!ENTITY w "500">]>',
    "billion-laughs": f'<!DOCTYPE annotation [<!ENTITY l0 "lol">{LAUGHS}]>',
    "external-http": '<!DOCTYPE annotation [<!ENTITY w SYSTEM "http://127.0.0.1:{port}/x">]>',
    "external-file": '<!DOCTYPE annotation [<!ENTITY w SYSTEM "file:///etc/passwd">]>',
    "external-parameter-entity": '<!DOCTYPE annotation [<!ENTITY % p SYSTEM "http://127.0.0.1:{port}/p"> %p;]>',
    # an external DTD that is never read: its entities are undefined, and a reference inside a number must not
    # leave the text before it (5) as the value
    "external-dtd-undefined-reference": '<!DOCTYPE annotation SYSTEM "http://127.0.0.1:{port}/a.dtd">',
    "external-dtd-reference-inside-a-number": '<!DOCTYPE annotation SYSTEM "a.dtd">',
}
USES = {"billion-laughs": "&l9;", "external-parameter-entity": "500", "external-dtd-reference-inside-a-number": "5&u;00"}


@pytest.mark.parametrize("name", HOSTILE, ids=HOSTILE)
def test_entities_are_refused_quickly_without_fetching(listener, name):
    port, connections = listener
    doctype = HOSTILE[name].replace("{port}", str(port))
    data = raw(f"<width>{USES.get(name, '&w;')}</width><height>375</height>", box(1, 2, 3, 4), head=doctype)
    start = time.monotonic()
    with pytest.raises(AnnotationError, match="entit") as err:
        parse_boxes(data, WHERE)
    assert time.monotonic() - start < 2
    assert WHERE in str(err.value)
    time.sleep(0.2)
    assert connections == []
    socket.create_connection(("127.0.0.1", port)).close()  # the listener does see a real connection
    deadline = time.monotonic() + 2
    while not connections and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(connections) == 1


def test_external_dtd_is_not_fetched(listener):
    port, connections = listener
    data = raw(SIZE, box(1, 2, 3, 4), head=f'<!DOCTYPE annotation SYSTEM "http://127.0.0.1:{port}/a.dtd">')
    assert parse_boxes(data, WHERE) == [(1 / 500, 2 / 375, 3 / 500, 4 / 375)]
    time.sleep(0.2)
    assert connections == []


FILES = {
    ("n01440764", "n01440764_2.xml"): voc_xml("x", 500, 375, [(10, 20, 300, 200), (0, 0, 499, 374)]),
    ("n01440764", "n01440764_10.xml"): voc_xml("x", 200, 100, [(300, 200, 10, 20)]),
    ("n01440764", "n01440764_3.xml"): voc_xml("x", 500, 375, []),
    ("n01443537", "n01440764_2.xml"): voc_xml("x", 500, 375, [(1, 2, 3, 4)]),  # same image, second folder
    ("n01443537-x", "n01443537_1.xml"): voc_xml("x", 640, 480, [(5, 6, 600, 470)]),
    ("n01443537", "n09999999_1.xml"): voc_xml("x", 640, 480, [("1.5", 6, 600, 470)]),  # no such image: kept
}


def _table(seed: int) -> BoxTable:
    items = [XmlBoxes.of(*key, parse_boxes(data, "/".join(key))) for key, data in FILES.items()]
    random.Random(seed).shuffle(items)
    return BoxTable.build(items)


@pytest.mark.parametrize("seed", [0, 1, 2], ids=["order-0", "order-1", "order-2"])
def test_box_table_csv_is_sorted_by_folder_then_file_and_equals_classic(tmp_path, seed):
    expected = classic_csv(tmp_path, {f"{folder}/{name}": data for (folder, name), data in FILES.items()})
    assert _table(seed).csv.decode() == expected
    assert expected.index("n01443537_1.JPEG") > expected.index("n09999999_1.JPEG")  # n01443537 < n01443537-x


def test_boxes_of_are_float32_of_the_csv_text_in_csv_order():
    table = _table(0)
    by_image: dict[str, list[list[float]]] = {}
    for line in table.csv.decode().splitlines():
        name, *fields = line.split(",")
        by_image.setdefault(name, []).append([float(f) for f in fields])
    assert len(by_image["n01440764_2.JPEG"]) == 3                          # two folders' files, both used
    for name, rows in by_image.items():
        got = table.boxes_of(name)
        assert got.dtype == np.float32 and got.shape == (len(rows), 4)
        np.testing.assert_array_equal(got, np.asarray(rows, dtype=np.float32))


@pytest.mark.parametrize("name", ["n01440764_3.JPEG", "n01440764_99.JPEG", "n01440764_2.xml"],
                         ids=["xml-without-kept-boxes", "no-xml", "not-an-image-name"])
def test_image_without_boxes_gets_empty_float32_array(name):
    got = _table(0).boxes_of(name)
    assert got.shape == (0, 4) and got.dtype == np.float32


def test_empty_table_has_no_csv_and_no_boxes():
    table = BoxTable.build([])
    assert table.csv == b"" and table.boxes_of("a.JPEG").shape == (0, 4)


LINE_BOUNDARIES = ["\n", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029", "\r\n"]


@pytest.mark.parametrize("boundary", LINE_BOUNDARIES, ids=[repr(b) for b in LINE_BOUNDARIES])
def test_a_name_holding_a_line_boundary_shifts_no_box_onto_another_image(boundary):
    """str.splitlines breaks at these; nothing may frame or count by a character a name can hold."""
    odd = XmlBoxes.of("n01440764", f"n01440764_1{boundary}x.xml", [(0.1, 0.2, 0.3, 0.4), (0.5, 0.5, 0.6, 0.6)])
    after = XmlBoxes.of("n01440764", "n01440764_2.xml", [(0.25, 0.25, 0.75, 0.75)])
    later = XmlBoxes.of("n01443537", "n01443537_1.xml", [(0.0, 0.0, 1.0, 1.0)])

    table = BoxTable.build([later, after, odd])

    np.testing.assert_array_equal(table.boxes_of("n01440764_2.JPEG"), np.asarray([[0.25, 0.25, 0.75, 0.75]], np.float32))
    np.testing.assert_array_equal(table.boxes_of("n01443537_1.JPEG"), np.asarray([[0.0, 0.0, 1.0, 1.0]], np.float32))
    assert table.boxes_of(f"n01440764_1{boundary}x.JPEG").shape == (2, 4)
    assert table.count == 4 and table.files == 3


def test_boxes_reach_the_right_records_when_an_xml_name_holds_u2028(tmp_path):
    """End to end: the image after the odd name gets its own boxes in the shard (the classic's csv is the judge)."""
    from classic_reference import read_examples
    from helpers import run_cli
    from tiny import A, write_tiny

    xmls = {f"{A}/{A}_1\u2028x.xml": voc_xml("x", 17, 12, [(1, 1, 10, 10), (2, 2, 5, 5)]),
            f"{A}/{A}_2.xml": voc_xml("x", 18, 14, [(9, 7, 18, 14)])}
    paths = write_tiny(tmp_path / "dl", xmls=xmls)
    code, err = run_cli("convert", tmp_path / "dl", "--validation-labels-file", paths["val_labels"], "--out",
                        tmp_path / "out", "--train-shards", "1", "--validation-shards", "1", "--classic-threads", "1",
                        "--quiet")
    assert code == 0, err
    records = {r.features.feature["image/filename"].bytes_list.value[0].decode(): r.features.feature
               for r in read_examples(tmp_path / "out" / "train-00000-of-00001")}
    got = records[f"{A}_2.JPEG"]
    assert list(got["image/object/bbox/xmin"].float_list.value) == pytest.approx([0.5])
    assert list(got["image/object/bbox/ymax"].float_list.value) == pytest.approx([1.0])
    assert len(records[f"{A}_1.JPEG"]["image/object/bbox/xmin"].float_list.value) == 0  # no XML of its own
    csv = (tmp_path / "out" / "bboxes.csv").read_text(encoding="utf-8")
    assert csv.count(".JPEG,") == 3


@settings(max_examples=150, deadline=None)
@given(names=st.lists(st.sampled_from(["plumless", "buckeroo", "a.JPEG", "a.JPEG", "\n", "é", "\udcff", ""])
                      | st.text(max_size=12), max_size=40),
       queries=st.lists(st.text(max_size=12) | st.sampled_from(["plumless", "buckeroo", "a.JPEG"]), max_size=10))
def test_name_lookup_finds_every_position_of_a_name_and_nothing_else(names, queries):
    # "plumless" and "buckeroo" share a CRC-32: the lookup must tell them apart by the stored name.
    table = NameTable.of(names)
    lookup = NameLookup.of(table)
    asked = [*names, *queries, "plumless", "buckeroo"]
    found = lookup.find(table, [encode(q) for q in asked])
    assert found == [[i for i, n in enumerate(names) if n == q] for q in asked]


def test_an_image_named_in_two_folders_gets_both_files_boxes_in_csv_order_and_a_crc_twin_none():
    first = XmlBoxes.of("n01440764", "plumless.xml", [(0.1, 0.1, 0.2, 0.2)])
    second = XmlBoxes.of("n01443537", "plumless.xml", [(0.3, 0.3, 0.4, 0.4), (0.5, 0.5, 0.6, 0.6)])
    table = BoxTable.build([second, first])
    np.testing.assert_array_equal(table.boxes_of("plumless.JPEG"),
                                  np.asarray([[0.1, 0.1, 0.2, 0.2], [0.3, 0.3, 0.4, 0.4], [0.5, 0.5, 0.6, 0.6]],
                                             np.float32))
    assert table.boxes_of("buckeroo.JPEG").shape == (0, 4)  # the same CRC-32 as plumless.JPEG, another name
    assert [name for name, _ in table.entries()] == ["plumless.JPEG", "plumless.JPEG"]
