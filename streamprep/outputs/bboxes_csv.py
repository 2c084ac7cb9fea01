"""bboxes.csv beside the shards: the classic's box list, written whole under its final name; and, with the
validation boxes (`--bbox-val`), bboxes_validation.csv in the same format."""

from __future__ import annotations

from ..archives.output import Output
from ..index.boxes import BoxTable
from ..plan import Plan
from . import checksum as checksums
from .manifest import FileEntry

BBOXES_CSV = "bboxes.csv"
SPLIT_CSV = "bboxes_%s.csv"  # a split's own boxes: bboxes_validation.csv


def write_bboxes(plan: Plan, output: Output, checksum: str = checksums.DEFAULT) -> FileEntry:
    """bboxes.csv, complete, under its final name; its manifest entry (its digest under `checksum`)."""
    return _write(BBOXES_CSV, plan.boxes, output, checksum)


def write_split_bboxes(plan: Plan, output: Output, checksum: str = checksums.DEFAULT) -> list[FileEntry]:
    """bboxes_<split>.csv of each split with boxes of its own (`--bbox-val`), as bboxes.csv is written; their
    manifest entries (none without them)."""
    return [_write(SPLIT_CSV % split, table, output, checksum) for split, table in sorted(plan.split_boxes.items())]


def _write(name: str, table: BoxTable, output: Output, checksum: str) -> FileEntry:
    with output.atomic(name) as f:
        f.write(table.csv)
    return FileEntry(name, len(table.csv), checksums.digest(checksum, table.csv), table.count, table.files, checksum)
