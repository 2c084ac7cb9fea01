"""LitData's optimized chunks, a registry entry: `litdata.StreamingDataset(OUT/"litdata"/"train")` reads them as is.

Files, in a folder of the format's own, `litdata/`: `litdata/train/chunk-00000-of-01024.bin` ... and
`litdata/validation/chunk-00000-of-00128.bin` ..., one chunk per shard of the classic's plan (chunk `k`
holds exactly the records of TFRecord shard `k`, in the same order: `--format tfrecord,litdata` is one
read), and each split's `index.json`, written once all its chunks are (`side_files`). The folder of its
own keeps its files apart from other formats' (MosaicML's `mds/train/index.json`), so all are written in
one run. A sample is the tuple `(image, class)` of LitData's own ImageNet example:
the JPEG's bytes passed through (data format `jpeg`: LitData decodes them on read into a uint8 RGB
tensor), the class 0..N-1 (`int`). The chunks are written byte for byte as LitData's `BinaryWriter`
writes the same samples (`write.py`), without LitData; reading them needs `pip install litdata`.
No DALI index (DALI does not read LitData chunks); runs on either engine.
"""

from __future__ import annotations

from typing import Any, Sequence

from ...plan import Plan, ShardSpec, make_plan
from ...records.spec import record_specs
from .. import registry
from ..format import Format, ShardEncoder
from ..manifest import ShardEntry
from .write import (FOLDER, INDEX_JSON, ITEM_OVERHEAD, OFFSET, SHARD_PATTERN, SIDE_PATTERN, SPLITS, Encoder,
                    chunk_file, encoder, index_json, split_folder)


@registry.register
class LitDataFormat(Format):
    """LitData's optimized chunks and index.json, a folder per split (see the module docstring)."""

    name = "litdata"
    checks, reads = "check:ChunkChecker", "inspect:LitDataReader"  # verify, inspect
    rank = 40
    summary = "LitData's optimized chunks, litdata/train/ and litdata/validation/ for litdata.StreamingDataset"
    no_dali_index = "DALI does not read LitData chunks"
    shard_pattern = SHARD_PATTERN  # litdata/train/chunk-00000-of-01024.bin
    side_pattern = SIDE_PATTERN  # litdata/train/index.json, litdata/validation/index.json
    folders = {FOLDER: 2}  # litdata/SPLIT/FILE
    allowance = ITEM_OVERHEAD + 3 * OFFSET  # an item's sizes and class, its offset; the chunk's count and first offset
    stores_boxes = False  # a sample is (image, class); the boxes are in bboxes.csv
    stored_label = ("class", 1)  # 0..N-1

    def __init__(self, dali_index: bool = False, spool: bool = False) -> None:
        super().__init__(dali_index)
        self.spool = spool  # images may be left out (--on-bad-image skip): no header can be written first

    @classmethod
    def from_options(cls, options: Any) -> "LitDataFormat":
        return cls(options.dali_index, options.skip_bad_images)

    def plan(self, options: Any, inputs: Any, index: Any) -> Plan:
        """The classic's plan, with the fix-up files' re-encoded sizes a chunk's header needs first (`plan.py`)."""
        from .plan import sized_plan

        return sized_plan(make_plan(index, inputs.labels, options.sharding), inputs)

    def file_name(self, shard: ShardSpec) -> str:
        return chunk_file(shard.split, shard.number, shard.of)

    def encoder(self, shard: ShardSpec) -> ShardEncoder:
        """Without the plan: the items spooled, the header written after them (the same bytes)."""
        return Encoder(self.file_name(shard), None)

    def encoder_for(self, plan: Plan, shard: ShardSpec) -> ShardEncoder:
        """With the plan (what `write_shard` asks): the header first, from the planned sizes, where they are known."""
        return encoder(plan, shard, self.file_name(shard), self.spool or self.resize is not None)  # resized: unknown

    def size_bounds(self, plan: Plan, shard: ShardSpec) -> tuple[int, int]:
        """The chunk's exact size, a fix-up file counted as its re-encoded size where the plan knows it, else as the
        original's (`plan` shows those apart)."""
        specs = record_specs(plan, shard)
        size = 2 * OFFSET + sum(plan.fixed_sizes.get(s.member, s.size) + ITEM_OVERHEAD + OFFSET for s in specs)
        return size, size

    def side_files(self, plan: Plan, entries: Sequence[ShardEntry]) -> dict[str, bytes]:
        """Each split's index.json (`write.index_json`; a resized output's with its recipe)."""
        resize = self.resize.describe() if self.resize else None
        return {f"{split_folder(split)}/{INDEX_JSON}": index_json(plan, entries, split, resize) for split in SPLITS
                if split in plan.splits}

    def side_file_names(self) -> list[str]:
        return [f"{split_folder(split)}/{INDEX_JSON}" for split in SPLITS]
