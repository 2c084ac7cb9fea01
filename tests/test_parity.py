"""Record-for-record parity with the classic procedure run on the same downloads."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import tensorflow as tf

from classic_reference import read_examples
from helpers import convert_args, result_files, run_cli
from streamprep.outputs.tfrecord.write import read_records

LAYOUTS = [(8, 4, 2), (6, 3, 3), (4, 4, 4), (1024, 128, 8), (2, 1, 1)]


def _records(shard: Path) -> int:
    """How many records a shard frames: counted only where its bytes equal TensorFlow's own shard of that name."""
    with open(shard, "rb") as f:
        return sum(1 for _ in read_records(f, str(shard)))


def shard_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(("train-", "validation-")))


@pytest.mark.parametrize("workers", [1, 4], ids=["workers1", "workers4"])
@pytest.mark.parametrize("layout", LAYOUTS, ids=[f"train{a}-val{b}-threads{c}" for a, b, c in LAYOUTS])
def test_shards_equal_the_classic_record_for_record(sample, classic, tmp_path, layout, workers):
    train_shards, validation_shards, threads = layout
    reference = classic(*layout)
    out = tmp_path / "out"
    code, err = run_cli(*convert_args(sample, out, "--train-shards", train_shards, "--validation-shards",
                                      validation_shards, "--classic-threads", threads, "--workers", workers, "--quiet"))
    assert code == 0, err
    names = shard_files(out)
    assert names == shard_files(reference)
    assert len(names) == train_shards + validation_shards
    total = 0
    for name in names:
        if (out / name).read_bytes() == (reference / name).read_bytes():  # the same bytes: the same records
            total += _records(out / name)
            continue
        mine, theirs = read_examples(out / name), read_examples(reference / name)
        assert len(mine) == len(theirs), name
        for position, (a, b) in enumerate(zip(mine, theirs)):
            assert a == b, f"{name} record {position}: {a.features.feature['image/filename']}"
        total += len(mine)
    assert total == 31 + 13
    assert (out / "bboxes.csv").read_bytes() == (reference / "bboxes.csv").read_bytes()


def test_records_are_serialised_deterministically(sample, tmp_path):
    out = tmp_path / "out"
    assert run_cli(*convert_args(sample, out, "--train-shards", 2, "--validation-shards", 1,
                                 "--classic-threads", 1, "--quiet"))[0] == 0
    for path in out.glob("*-of-*"):
        for raw in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
            assert tf.train.Example.FromString(raw).SerializeToString(deterministic=True) == raw


@pytest.mark.parametrize("workers", [1, 3], ids=["workers1", "workers3"])
def test_two_runs_give_byte_identical_shards(sample, tmp_path, workers):
    digests = []
    for run in ("a", "b"):
        out = tmp_path / run
        assert run_cli(*convert_args(sample, out, "--train-shards", 8, "--validation-shards", 4,
                                     "--classic-threads", 2, "--workers", workers, "--quiet"))[0] == 0
        digests.append({name: hashlib.sha256(data).hexdigest() for name, data in result_files(out).items()})
    assert digests[0] == digests[1]
    assert len(digests[0]) == 8 + 4 + 1
