"""Where things are: the repository, streamprep's data files, the download names, the tests' helpers."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent  # benchmarks/
ROOT = BENCH.parent
CACHE = BENCH / ".cache"
DATA = ROOT / "streamprep/data"
SYNSETS = DATA / "imagenet_lsvrc_2015_synsets.txt"
METADATA = DATA / "imagenet_metadata.txt"
VALIDATION_LABELS = DATA / "imagenet_2012_validation_synset_labels.txt"  # streamprep's default, all 50,000
TRAIN_TAR, VAL_TAR, BBOX_TARGZ = "ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar", "ILSVRC2012_bbox_train_v2.tar.gz"
VAL_LABELS = "validation_labels.txt"
ARCHIVES = (TRAIN_TAR, VAL_TAR, BBOX_TARGZ)
TFDS_DATASET = "imagenet2012/5.1.0"  # under `tfds build`'s data_dir, and under `streamprep convert --format tfds --out`


def synsets() -> list[str]:
    """The 1000 training synsets, in the order of streamprep's synsets file."""
    return SYNSETS.read_text().split()


def tests_importable() -> None:
    """Put tests/ on sys.path, for `fixtures.builders` and `classic_reference`."""
    tests = str(ROOT / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
