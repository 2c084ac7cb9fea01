"""bboxes.csv beside the shards: the classic's box list, written whole under its final name."""

from __future__ import annotations

import hashlib

from ..archives.output import Output
from ..plan import Plan
from .manifest import FileEntry

BBOXES_CSV = "bboxes.csv"


def write_bboxes(plan: Plan, output: Output) -> FileEntry:
    """bboxes.csv, complete, under its final name; its manifest entry."""
    with output.atomic(BBOXES_CSV) as f:
        f.write(plan.boxes.csv)
    return FileEntry(BBOXES_CSV, len(plan.boxes.csv), hashlib.sha256(plan.boxes.csv).hexdigest(), plan.boxes.count,
                     plan.boxes.files)
