"""The default writer of `--format parquet`: each shard's file framed by streamprep (`frame.py`), the images uncopied.

`start` lays the whole file out from the shard's records before the first image is read
(`frame.frame_shard`): every image's size (the plan's; a fix-up file's once re-encoded, prepared
ahead by the shard's reader and kept for its turn, so re-encoded once), name and label. Then each
record is the bytes before its image (a page's header and levels if the image opens a page, the
image's 4-byte length) and the image itself, the very object the record got, never copied; after
the last image of a row group come its `path` and `label` chunks; `finish` writes the footer.
Nothing of a shard is held but that layout (its row groups' `path` and `label` chunks, the pages'
headers): no image, no page. No pyarrow: any Parquet reader reads the file. `planned_bounds` lays
the same file out from the plan alone, for `streamprep plan`: its exact size.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ... import __version__
from ...errors import OutputError
from ...records.image import Image
from ...records.spec import RecordSpec
from ..format import Reader, ShardEncoder, written_sizes
from .frame import MAGIC, PAGE_BYTES, Frame, frame_shard
from .write import utf8_name

CREATED_BY = f"streamprep version {__version__}"  # the footer's created_by: "<application> version <version>"


class Encoder(ShardEncoder):
    """One shard's Parquet file, framed: laid out in `start`, then each image behind what goes before it."""

    # A page's header counts the images it holds before they are written: a shard in which an image turns out
    # unusable (--on-bad-image skip) is written again without it.
    opens_with_records = True

    def __init__(self, features: str, rows: int, name: str, known: dict[str, int] | None = None,
                 recipe: Any = None, metadata: dict[str, str] | None = None) -> None:
        self.metadata = {"huggingface": features, **(metadata or {})}  # the footer's key-value metadata
        self.rows, self.name, self.known, self.recipe = rows, name, known or {}, recipe
        self.specs: list[RecordSpec] = []
        self.sizes: list[int] = []
        self.frame: Frame | None = None
        self.written = 0

    def start(self, specs: Sequence[RecordSpec], read: Reader) -> Sequence[bytes]:
        self.specs = list(specs)
        self.sizes = written_sizes(self.specs, read, self.known, self.recipe)
        names = [utf8_name(spec).encode("utf-8") for spec in self.specs]
        labels = [spec.label - 1 for spec in self.specs]  # ClassLabel: 0..N-1
        self.frame = frame_shard(self.sizes, names, labels, self.rows, self.metadata, CREATED_BY)
        return (MAGIC,)

    def record(self, spec: RecordSpec, image: Image) -> Sequence[bytes]:
        k, frame = self.written, self.frame
        if frame is None or k >= len(self.specs) or self.specs[k] is not spec or self.sizes[k] != len(image.data):
            raise OutputError(f"{self.name}: record {k} ({spec.member}, {len(image.data):,} bytes) is not the one its "
                              "page header, written first, counted; this is a bug in streamprep: please report it "
                              "with this message")
        self.written += 1
        tail = frame.tails.get(k)
        head = frame.before(k, len(image.data))
        return (head, image.data) if tail is None else (head, image.data, tail)

    def finish(self) -> Sequence[bytes]:
        if self.frame is None or self.written != len(self.specs):
            raise OutputError(f"{self.name}: {self.written:,} records written, its pages count {len(self.specs):,}; "
                              "this is a bug in streamprep: please report it")
        return (self.frame.end,)


# Room in `planned_bounds` for what a re-encoded fix-up file of unknown size may change besides its bytes: a page's
# header and offset index entry for each page it may add or remove, and a byte for each number that may grow or shrink
# by one byte (each page's, each chunk's), more than enough.
PAGE_ROOM, CHUNK_ROOM = 128, 64


def planned_bounds(plan: Any, shard: Any, rows: int, features: str) -> tuple[int, int]:
    """(smallest, largest) size of the shard's file, framed: its exact size (`frame.frame_shard` on the plan's sizes,
    names and labels) when the plan knows every image's size, and around it by what the re-encoding of a fix-up file
    of unknown size (`Plan.fixed_sizes` lacks it) may change: it may shrink to nothing or grow fourfold, as
    `Format.most_bytes` takes it."""
    split = plan.splits[shard.split]
    index, order = split.index, split.order[shard.start:shard.stop]
    sizes = index.sizes[order].astype(np.int64)
    fixups = [i for i in plan.rows_with_fixup_names(index) if plan.fixup_kind(shard.split, index.names[i])]
    unknown, files = 0, 0  # the bytes and count of fix-up files of unknown size
    for k in np.flatnonzero(np.isin(order, fixups)).tolist():
        member = index.member(int(order[k]))
        sizes[k] = plan.fixed_sizes.get(member, sizes[k])
        unknown, files = (unknown, files) if member in plan.fixed_sizes else (unknown + int(sizes[k]), files + 1)
    names = [index.names.raw(i) for i in order.tolist()]
    frame = frame_shard(sizes, names, index.labels[order].astype(np.int64) - 1, rows, {"huggingface": features},
                        CREATED_BY)
    if not files:
        return frame.size, frame.size
    room = PAGE_ROOM * (4 * unknown // PAGE_BYTES + 2 * files) + len(frame.heads) + CHUNK_ROOM * len(frame.tails)
    return max(0, frame.size - unknown - room), frame.size + 3 * unknown + room
