"""The output formats by the name a user gives them (`--format tfrecord,webdataset`)."""

from __future__ import annotations

from typing import Sequence

from .format import Format

NAMES = ("tfrecord", "webdataset")  # in the order their files are written and listed


def parse(text: str) -> tuple[str, ...]:
    """The format names of a `--format` value, in `NAMES` order; `ValueError` saying what is wrong."""
    given = [part.strip().lower() for part in text.split(",")]
    if not all(given):
        raise ValueError(f"an empty name in {text!r}")
    unknown = [n for n in given if n not in NAMES]
    if unknown:
        raise ValueError(f"unknown format {unknown[0]!r}; known: {', '.join(NAMES)}")
    if len(set(given)) < len(given):
        raise ValueError(f"a format named twice in {text!r}")
    return tuple(n for n in NAMES if n in given)


def make(names: Sequence[str], dali_index: bool = False) -> list[Format]:
    """The formats of these names, each writing DALI's index beside its shards if asked."""
    from .tfrecord import TFRecordFormat
    from .webdataset import WebDatasetFormat

    kinds = {"tfrecord": TFRecordFormat, "webdataset": WebDatasetFormat}
    return [kinds[n](dali_index) for n in names]
