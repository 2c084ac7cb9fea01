"""The bounding-box walk beside the image walks: on a thread for a small archive, in a process of its own
for a large one (the real archive's case); both give the same output, errors and ignored members."""

from __future__ import annotations

import gzip
import random

import pytest

from conftest import result_files, run_cli
from fixtures import builders
from streamprep.index import boxwalk as boxindex
from tiny import A, B, write_tiny

XMLS = {f"{A}/{A}_1.xml": builders.voc_xml(f"{A}_1", 17, 12, [(1, 1, 10, 10)]),
        f"{B}/{B}_2.xml": builders.voc_xml(f"{B}_2", 20, 14, [(2, 3, 11, 12), (0, 0, 5, 5)])}
PADDING = random.Random(1).randbytes(boxindex.PROCESS_MIN_BYTES + 100_000)  # incompressible


def bbox_archive(xmls: dict[str, bytes], large: bool) -> bytes:
    members: dict[str, bytes] = {}
    for name, data in xmls.items():
        members.setdefault(name.split("/")[0] + "/", b"")
        members[name] = data
    if large:
        members[f"{A}/padding.bin"] = PADDING  # ignored: not an .xml file
    return gzip.compress(builders.tar_bytes(members), compresslevel=1)


def convert(tmp_path, name: str, xmls: dict[str, bytes], large: bool) -> tuple[int, str, dict]:
    paths = write_tiny(tmp_path / name)
    paths["bbox"].write_bytes(bbox_archive(xmls, large))
    assert (paths["bbox"].stat().st_size >= boxindex.PROCESS_MIN_BYTES) == large
    out = tmp_path / f"out-{name}"
    code, err = run_cli("convert", "--train", paths["train"], "--val", paths["val"], "--bbox", paths["bbox"],
                        "--validation-labels-file", paths["val_labels"], "--out", out)
    return code, err, result_files(out) if code == 0 else {}


def test_a_large_bbox_archive_read_in_its_own_process_gives_the_same_shards_as_a_small_one(tmp_path):
    code, err, large = convert(tmp_path, "large", XMLS, large=True)
    assert code == 0, err
    code, small_err, small = convert(tmp_path, "small", XMLS, large=False)
    assert code == 0, small_err
    assert large == small
    assert large["bboxes.csv"].count(b"\n") == 3
    assert "bounding boxes: done, 3 files" in err  # progress relayed from the child process (padding counts)
    assert "1 not a folder/*.xml annotation in the bounding-box archive" in err  # its ignored members too


@pytest.mark.parametrize("large", [True, False], ids=["own-process", "thread"])
def test_a_bad_xml_stops_the_run_with_its_name_whichever_way_it_was_read(tmp_path, large):
    code, err, _ = convert(tmp_path, "bad", {**XMLS, f"{B}/{B}_3.xml": b"<annotation><size>"}, large=large)
    assert code == 2
    assert err.splitlines()[-1].startswith("streamprep: error:") and f"{B}/{B}_3.xml" in err
    assert "not well-formed XML" in err
