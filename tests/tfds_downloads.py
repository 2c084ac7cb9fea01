"""Small downloads that `--format tfds` (and `tfds build`) takes, as tests/test_tfds.py builds them: only *.JPEG
members of known synsets, and validation images 1..N labelled by the shipped validation labels file."""

from __future__ import annotations

from pathlib import Path

from fixtures import builders
from tiny import write_tiny

SYNSETS = ("n01440764", "n01739381", "n02105855", "n04596742")  # the classic's labels 1, 60, 231, 910
VALIDATION_IMAGES = 5


def write_tfds_downloads(folder: Path) -> dict[str, Path]:
    classes = {synset: {f"{synset}_{i}.JPEG": builders.jpeg(20 + i, 16 + 3 * k, seed=11 * k + i)
                        for i in range(4, 0, -1)} for k, synset in enumerate(SYNSETS)}
    val = {f"ILSVRC2012_val_{i:08d}.JPEG": builders.jpeg(24, 20 + i, seed=300 + i)
           for i in range(VALIDATION_IMAGES, 0, -1)}
    return write_tiny(folder, classes=classes, val=val, val_labels=["n01440764"] * VALIDATION_IMAGES)


def tfds_convert_args(paths: dict[str, Path], out: Path, *extra: str) -> list[str]:
    """`convert --format tfds` of these downloads, validation labels from the shipped file (TFDS's own)."""
    return ["convert", "--train", paths["train"], "--val", paths["val"], "--bbox", paths["bbox"], "--out", out,
            "--format", "tfds", "--quiet", *extra]
