"""`streamprep plan` (what convert would do, nothing written but the index) and `streamprep inspect` (what a
download or a shard holds), read back with TensorFlow where records are concerned."""

from __future__ import annotations

import json
import os

import pytest

from helpers import SMALL_LAYOUT, convert_args, run_cli
from helpers import run_cli_out as run
from tiny import A, write_tiny


def plan_args(sample, out, *extra):
    return ["plan", *convert_args(sample, out, *SMALL_LAYOUT, *extra)[1:]]


def test_plan_writes_nothing_but_the_index_and_convert_then_reuses_it(sample, tmp_path):
    out = tmp_path / "out"
    code, text, err = run(*plan_args(sample, out, "--quiet"))
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == [".streamprep"]
    assert "validation        13 images" in text and "train             31 images" in text
    assert "4 shards to write" in text and "saved the index" in text

    code, err = run_cli(*convert_args(sample, out, *SMALL_LAYOUT))
    assert code == 0, err
    assert "reused the one saved by an earlier run" in err and "index train: started" not in err


def test_the_planned_size_holds_every_shard_written_but_the_fix_up_ones(sample, tmp_path):
    out = tmp_path / "out"
    code, text, err = run(*plan_args(sample, out, "--json", "--quiet"))
    assert code == 0, err
    report = json.loads(text)
    assert run_cli(*convert_args(sample, out, *SMALL_LAYOUT, "--quiet"))[0] == 0
    written = {p.name: p.stat().st_size for p in out.iterdir() if p.name.startswith(("train-", "validation-"))}
    validation = sum(v for k, v in written.items() if k.startswith("validation-"))
    split = report["splits"]["validation"]  # no fix-up file in the sample's validation split
    assert split["bytes_low"] <= validation <= split["bytes_high"]
    assert report["fixups"] == {"cmyk_to_rgb": ["n01739381_1309.JPEG", "n02077923_14822.JPEG"],
                                "png_to_jpeg": ["n02105855_2933.JPEG"]}
    assert {d["role"] for d in report["downloads"]} == {"train", "val", "bbox"}
    assert not any(d["official"] for d in report["downloads"])
    assert report["free_bytes"] > 0


def test_plan_after_a_finished_run_lists_every_shard_as_kept_and_nothing_to_write(sample, tmp_path):
    out = tmp_path / "out"
    assert run_cli(*convert_args(sample, out, *SMALL_LAYOUT, "--quiet"))[0] == 0
    code, text, _ = run(*plan_args(sample, out, "--json", "--quiet"))
    report = json.loads(text)
    assert code == 0 and report["out_state"] == "the same conversion, finished"
    assert all(s["shards_kept"] == s["shards"] and s["bytes_high"] == 0 for s in report["splits"].values())


def test_plan_says_convert_would_refuse_an_out_holding_another_conversion(sample, tmp_path):
    out = tmp_path / "out"
    assert run_cli(*convert_args(sample, out, *SMALL_LAYOUT, "--quiet"))[0] == 0
    code, text, _ = run("plan", *convert_args(sample, out, "--train-shards", "8", "--validation-shards", "2",
                                              "--classic-threads", "2", "--quiet")[1:])
    assert code == 0 and "convert would stop:" in text and "another conversion" in text, text


def _tfrecords(path):
    from classic_reference import read_examples

    return read_examples(path)


@pytest.mark.parametrize("role, kind", [("train", "training tar"), ("val", "validation tar"),
                                        ("bbox", "bounding-box archive")])
def test_inspect_recognises_each_download_by_content_and_counts_it(tmp_path, role, kind):
    paths = write_tiny(tmp_path / "dl")
    disguised = tmp_path / "download.bin"  # the name says nothing
    disguised.write_bytes(paths[role].read_bytes())
    code, text, err = run("inspect", disguised, "--json", "--validation-labels-file", paths["val_labels"])
    assert code == 0, err
    found = json.loads(text)
    assert found["kind"] == kind
    expected = {"train": {"classes": 2, "images": 8}, "val": {"classes": 2, "images": 3},
                "bbox": {"XML files": 1, "boxes": 1}}[role]
    assert {k: found["counts"][k] for k in expected} == expected


def test_inspect_of_a_training_tar_names_what_convert_leaves_out_and_why(tmp_path):
    from tiny import tiny_classes

    classes = tiny_classes()
    classes[A]["notes.txt"] = b"hello"
    paths = write_tiny(tmp_path / "dl", classes=classes)
    code, text, _ = run("inspect", paths["train"], "--limit", "2")
    assert code == 0
    assert "training tar" in text and "not a *.JPEG file at the top of a class tar\n        e.g. notes.txt" in text
    assert text.count(".JPEG  label") == 2 and "... and 6 more" in text
    assert max(len(line) for line in text.splitlines()[1:]) <= 80


def test_inspect_of_a_classic_shard_gives_what_tensorflow_reads(classic):
    shard = sorted((classic(8, 4, 2)).glob("train-*"))[1]
    code, text, err = run("inspect", shard, "--json", "--limit", "100")
    assert code == 0, err
    found = json.loads(text)
    examples = _tfrecords(shard)
    assert found["kind"] == "TFRecord shard" and found["counts"]["records"] == len(examples)
    for entry, example in zip(found["entries"], examples):
        feature = example.features.feature
        assert entry["filename"] == feature["image/filename"].bytes_list.value[0].decode()
        assert entry["label"] == feature["image/class/label"].int64_list.value[0]
        assert entry["bytes"] == len(feature["image/encoded"].bytes_list.value[0])
        assert len(entry["boxes"]) == len(feature["image/object/bbox/xmin"].float_list.value)


def test_inspect_of_something_else_is_a_one_line_error(tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(os.urandom(2000))
    code, _, err = run("inspect", junk)
    assert code == 2 and err.startswith("streamprep: error:") and err.count("\n") == 1, err
