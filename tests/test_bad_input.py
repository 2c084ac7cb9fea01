"""Bad input: a clear error naming archive and member, non-zero exit, inputs untouched, finished shards kept."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from classic_reference import read_examples
from conftest import run_cli
from streamprep.plan import classic_order
from fixtures import builders
from tiny import A, B, tiny_classes, write_tiny


def digests(paths: dict[str, Path]) -> dict[str, str]:
    return {k: hashlib.sha256(p.read_bytes()).hexdigest() for k, p in paths.items()}


def convert(paths: dict[str, Path], out: Path, *extra: str) -> tuple[int, str]:
    return run_cli("convert", "--train", paths["train"], "--val", paths["val"], "--bbox", paths["bbox"],
                   "--validation-labels-file", paths["val_labels"], "--out", out, "--quiet", *extra)


def leftovers(out: Path) -> list[str]:
    """Files in the output that are not complete results (temporary names), anywhere below it."""
    return sorted(str(p.relative_to(out)) for p in out.rglob(".*.tmp")) if out.exists() else []


def truncate(path: Path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def corrupt_class(paths, folder):
    classes = tiny_classes()
    classes[B][f"{B}_2.JPEG"] = b"this is not an image"
    return write_tiny(folder, classes=classes)


def duplicate_member(paths, folder):
    classes = tiny_classes()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in [*classes[B].items(), (f"{B}_1.JPEG", builders.jpeg(8, 8))]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    paths["train"].write_bytes(builders.tar_bytes({f"{A}.tar": builders.tar_bytes(classes[A]), f"{B}.tar": buf.getvalue()}))
    return paths


def cut_inside(member: str):
    """Truncate the training tar in the middle of one class tar's data."""
    def damage(paths, folder):
        with tarfile.open(paths["train"]) as tar:
            info = tar.getmember(member)
        truncate(paths["train"], info.offset_data + info.size // 2)
        return paths
    return damage


CASES = {
    "truncated-outer-tar": (cut_inside(f"{B}.tar"), ["ILSVRC2012_img_train.tar", f"{B}.tar", "truncated", "fetch it again"]),
    "truncated-inside-first-class": (cut_inside(f"{A}.tar"), ["ILSVRC2012_img_train.tar", f"{A}.tar", "truncated"]),
    "bbox-not-gzip": (lambda p, f: (p["bbox"].write_bytes(b"plain text"), p)[1],
                      ["ILSVRC2012_bbox_train_v2.tar.gz", "not a gzip file"]),
    "bbox-gzip-cut-short": (lambda p, f: (truncate(p["bbox"], 60), p)[1],
                            ["ILSVRC2012_bbox_train_v2.tar.gz", "fetch it again"]),
    "malformed-xml": (lambda p, f: write_tiny(f, xmls={f"{A}/{A}_1.xml": b"<annotation><size>"}),
                      [f"{A}/{A}_1.xml", "not well-formed XML"]),
    "xml-with-entities": (lambda p, f: write_tiny(f, xmls={f"{A}/{A}_1.xml": b'<!DOCTYPE a [<!ENTITY x "1">]><a>&x;</a>'}),
                          [f"{A}/{A}_1.xml", "entities"]),
    "listed-validation-image-missing": (lambda p, f: write_tiny(f, val_labels=[A, B, A, B], val={
        f"ILSVRC2012_val_{i:08d}.JPEG": builders.jpeg(9, 9) for i in (3, 1, 2, 5)}),
                                        ["ILSVRC2012_val_00000004.JPEG", "--validation-labels-file"]),
    "duplicate-member": (duplicate_member, [f"{B}.tar", f"{B}_1.JPEG", "twice"]),
    "not-a-jpeg": (corrupt_class, [f"ILSVRC2012_img_train.tar!{B}.tar!{B}_2.JPEG", "not a JPEG"]),
}


@pytest.mark.parametrize("case", sorted(CASES), ids=sorted(CASES))
def test_bad_input_is_a_clear_error_and_loses_nothing(tmp_path, case):
    damage, expected = CASES[case]
    paths = damage(write_tiny(tmp_path / "dl"), tmp_path / "dl")
    before = digests(paths)
    code, err = convert(paths, tmp_path / "out")
    assert code == 2
    assert err.startswith("streamprep: error:") and err.count("\n") == 1
    for text in expected:
        assert text in err
    assert digests(paths) == before
    assert leftovers(tmp_path / "out") == []


def test_a_bad_image_keeps_the_shards_finished_before_it(tmp_path):
    classes = tiny_classes(images_per_class=6)
    names = sorted(classes[A]) + sorted(classes[B])  # the classic list order
    order = classic_order(len(names))
    bad_shard = 8
    bad = names[order[bad_shard]]  # one image a shard: this one lands in shard 8 of 12
    classes[bad.split("_")[0]][bad] = b"\x89PNG\r\n\x1a\n not really"
    paths = write_tiny(tmp_path / "dl", classes=classes)
    code, err = convert(paths, tmp_path / "out", "--train-shards", "12", "--validation-shards", "1",
                        "--classic-threads", "1", "--workers", "1")
    assert code == 2 and f".tar!{bad}: cannot read the image size (not a JPEG: a PNG)" in err
    out = tmp_path / "out"
    written = sorted(p.name for p in out.iterdir() if p.name.startswith("train-"))
    assert written == [f"train-{k:05d}-of-00012" for k in range(bad_shard)]
    assert all(len(read_examples(out / name)) == 1 for name in written)
    assert leftovers(out) == []


def test_same_file_as_train_and_val_is_refused(tmp_path):
    paths = write_tiny(tmp_path / "dl")
    paths["val"] = paths["train"]
    code, err = convert(paths, tmp_path / "out")
    assert code == 2 and "same file" in err


def test_unwritable_output_is_an_output_error(tmp_path):
    paths = write_tiny(tmp_path / "dl")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, err = convert(paths, blocker / "out")
    assert code == 2 and "choose a writable --out" in err


def test_missing_archive_is_named(tmp_path):
    paths = write_tiny(tmp_path / "dl")
    paths["bbox"].unlink()
    code, err = convert({**paths}, tmp_path / "out")
    assert code == 2 and "ILSVRC2012_bbox_train_v2.tar.gz: not found" in err


def test_ctrl_c_stops_the_run_promptly_and_leaves_only_complete_shards(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    classes = {synset: {f"{synset}_{i}.JPEG": builders.jpeg(32, 24, seed=i) + os.urandom(150_000)
                        for i in range(400, 0, -1)} for synset in (A, B)}
    paths = write_tiny(tmp_path / "dl", classes=classes)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "streamprep", "convert", "--train", paths["train"], "--val", paths["val"],
               "--bbox", paths["bbox"], "--validation-labels-file", paths["val_labels"], "--out", out,
               "--train-shards", "200", "--validation-shards", "1", "--classic-threads", "1", "--workers", "1"]
    process = subprocess.Popen([str(c) for c in command], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (out.exists() and any(out.glob("train-*"))):
        time.sleep(0.005)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "interrupted" in err
    written = sorted(p.name for p in out.glob("train-*"))
    assert 1 <= len(written) < 200, "the run must stop, not write every queued shard"
    for name in written:
        assert len(read_examples(out / name)) == 4  # 800 images in 200 shards: each complete
    assert leftovers(out) == []
