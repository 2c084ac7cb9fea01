"""Shared test fixtures: the sample downloads, the classic reference run, and a CLI runner."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from fixtures import make_fixtures  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "streamprep" / "data"
SYNSETS = DATA / "imagenet_lsvrc_2015_synsets.txt"
METADATA = DATA / "imagenet_metadata.txt"


@pytest.fixture(scope="session")
def sample(tmp_path_factory) -> dict[str, Path]:
    """The sample downloads, freshly built (train, val, bbox, val_labels)."""
    return make_fixtures.build_sample(tmp_path_factory.mktemp("sample"))


SMALL_LAYOUT = ("--train-shards", "4", "--validation-shards", "2", "--classic-threads", "2")


@pytest.fixture(scope="session")
def both(sample, tmp_path_factory) -> Path:
    """The sample converted once to TFRecord and WebDataset with DALI's indexes (`SMALL_LAYOUT`); read it, never
    change it (copy it first)."""
    out = tmp_path_factory.mktemp("both")
    code, err = run_cli(*convert_args(sample, out, *SMALL_LAYOUT, "--format", "tfrecord,webdataset", "--dali-index",
                                      "--quiet"))
    assert code == 0, err
    return out


def run_cli(*argv: str) -> tuple[int, str]:
    """Run `streamprep` in-process; returns (exit status, stderr text)."""
    from streamprep.cli import main

    err = io.StringIO()
    code = main([str(a) for a in argv], stderr=err)
    return code, err.getvalue()


def is_result(name: str) -> bool:
    """Shards and bboxes.csv: the files that must be byte-identical between runs (not manifest.json, whose
    paths and time differ, nor the hidden .streamprep/ state)."""
    return not name.startswith(".") and name != "manifest.json"


def result_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and is_result(p.name)}


def convert_args(paths: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return ["convert", "--train", paths["train"], "--val", paths["val"], "--bbox", paths["bbox"],
            "--validation-labels-file", paths["val_labels"], "--out", out, *extra]


_classic_cache: dict[tuple, Path] = {}


@pytest.fixture(scope="session")
def classic(sample, tmp_path_factory):
    """classic(train_shards, validation_shards, threads) -> folder of the reference procedure's output."""
    from classic_reference import run_classic

    def run(train_shards: int, validation_shards: int, threads: int) -> Path:
        key = (train_shards, validation_shards, threads)
        if key not in _classic_cache:
            base = tmp_path_factory.mktemp("classic")
            run_classic(sample["train"], sample["val"], sample["bbox"], base / "processed", work_dir=base / "work",
                        synsets_file=SYNSETS, metadata_file=METADATA,
                        validation_labels_file=sample["val_labels"], train_shards=train_shards,
                        validation_shards=validation_shards, num_threads=threads)
            _classic_cache[key] = base / "processed"
        return _classic_cache[key]

    return run
