"""The bounding-box walk beside the image walks: on a thread for a small archive, in a process of its own
for a large one (the real archive's case); both give the same output, errors and ignored members."""

from __future__ import annotations

import gzip
import os
import random
import subprocess
import sys
import tempfile
import time

import pytest

from helpers import SMALL_LAYOUT, result_files, run_cli
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
                        "--validation-labels-file", paths["val_labels"], "--out", out, *SMALL_LAYOUT)
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


PARENT = """
import sys, threading
from streamprep.archives.storage import Source
from streamprep.index.boxwalk import BoxWalk

if __name__ == "__main__":
    walk = BoxWalk(Source(sys.argv[1]), None, False, threading.Event())
    print(walk.process.pid, flush=True)
    walk.result()
"""


def test_the_box_walk_process_ends_and_leaves_no_file_when_its_parent_is_killed(tmp_path):
    xml = builders.voc_xml("x", 10, 10, [(1, 1, 5, 5)])
    many = {f"{A}/{A}_{i}.xml": xml for i in range(60_000)}  # a walk of a few seconds
    archive = tmp_path / "bbox.tar.gz"
    archive.write_bytes(bbox_archive(many, large=True))
    temp = tmp_path / "tmp"
    temp.mkdir()
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    parent = subprocess.Popen([sys.executable, str(script), str(archive)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "TMPDIR": str(temp)})
    child = int(parent.stdout.readline())
    parent.kill()  # kill -9: no chance to stop its child
    parent.wait()
    deadline = time.monotonic() + 30
    while _running(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _running(child), "the box walk outlived the process that started it"
    assert list(temp.iterdir()) == []  # no result file written for a reader that is gone


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return "\nState:\tZ" not in f.read()
    except FileNotFoundError:
        return False


def test_a_result_file_left_by_a_killed_run_is_swept_by_the_next(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    gone = subprocess.Popen(["true"])
    gone.wait()
    stale = tmp_path / f"{boxindex.TEMP_PREFIX}{gone.pid}-x1.pickle"
    mine = tmp_path / f"{boxindex.TEMP_PREFIX}{os.getpid()}-x2.pickle"
    other = tmp_path / "unrelated.pickle"
    for path in (stale, mine, other):
        path.write_bytes(b"x")
    boxindex._DoneInFile.sweep()
    assert not stale.exists() and mine.exists() and other.exists()


@pytest.mark.parametrize("spelling", ["{A}//{A}_1.xml", "/{A}/{A}_1.xml", "{A}/./{A}_1.xml", "./{A}/{A}_1.xml"])
def test_an_xml_name_spelled_as_tar_would_extract_it_to_folder_file_gives_its_boxes(tmp_path, spelling):
    # `tar` writes each of these to A/A_1.xml, where the classic's glob finds it
    name = spelling.format(A=A)
    code, err, files = convert(tmp_path, "odd", {name: XMLS[f"{A}/{A}_1.xml"]}, large=False)
    assert code == 0, err
    assert files["bboxes.csv"].startswith(f"{A}_1.JPEG,".encode()) and files["bboxes.csv"].count(b"\n") == 1
