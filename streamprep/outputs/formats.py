"""The output formats by the name a user gives them (`--format tfrecord,webdataset`, `--format tfds`)."""

from __future__ import annotations

from typing import Sequence

from .format import Format

NAMES = ("tfrecord", "webdataset", "tfds")  # in the order their files are written and listed
ALONE = ("tfds",)  # formats with an order of their own (TFDS's), written by themselves


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
    alone = [n for n in given if n in ALONE]
    if alone and len(given) > 1:
        raise ValueError(f"{alone[0]} has an order and sharding of its own (TFDS's), so it is written by itself; "
                         "run it as a separate conversion")
    return tuple(n for n in NAMES if n in given)


def make(names: Sequence[str], dali_index: bool = False, file_format: str = "tfrecord") -> list[Format]:
    """The formats of these names, each writing DALI's index beside its shards if asked; `file_format` is the
    tfds format's (tfrecord or array_record)."""
    from .tfds import TFDSFormat
    from .tfrecord import TFRecordFormat
    from .webdataset import WebDatasetFormat

    made: list[Format] = []
    for name in names:
        made.append(TFDSFormat(dali_index, file_format) if name == "tfds" else
                    {"tfrecord": TFRecordFormat, "webdataset": WebDatasetFormat}[name](dali_index))
    return made
