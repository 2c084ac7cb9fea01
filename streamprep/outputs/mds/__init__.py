"""MosaicML streaming's MDS shards, a registry entry: as its ImageNet converter writes them, for `StreamingDataset`.

Files, in a folder of the format's own, `mds/`, one folder a split below it as the converter lays them out
(`--splits train,val`): `mds/train/train-00000-of-01024.mds` ... and `mds/val/validation-00000-of-00128.mds` ...,
one MDS file a shard of the plan (the records, order and shards of the classic's TFRecord shard of that name, so
`--format tfrecord,mds` writes both in one read), and each split folder's `index.json`, which is all
`streaming.StreamingDataset(local=OUT/"mds", split="train")` needs. The folder of its own keeps every file of it
apart from other formats' (LitData's `litdata/train/index.json`), so all are written in one run. Each sample holds
the converter's columns (`vision/convert/imagenet.py`): `i` (int), `x` (jpeg: the image's bytes) and `y` (int,
0..N-1); `write.py` says how they are framed, byte for byte as streaming's `MDSWriter` writes them. Writing needs
the `xxhash` package (the converter's xxh64 hashes in index.json); no DALI index; no boxes.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

from ...plan import SHARD_STEM, Plan, ShardSpec
from .. import registry
from ..format import Format, ShardEncoder
from ..manifest import ShardEntry
from .write import (FOLDER, FOLDERS, INDEX_JSON, SAMPLE_OVERHEAD, SUFFIX, Encoder, header_size, index_json,
                    shard_file, split_folder)


# `mds/train/train-00000-of-01024.mds`, `mds/val/validation-00000-of-00128.mds`: each split in its own folder
SHARD_PATTERN = (re.escape(FOLDER) + r"/(?=train/train-|val/validation-)(?:train|val)/" + SHARD_STEM
                 + re.escape(SUFFIX))


@registry.register
class MDSFormat(Format):
    """MDS shards `mds/train/train-00000-of-01024.mds` and each split's `index.json` (see the module docstring)."""

    name = "mds"
    checks, reads = "check:MDSChecker", "inspect:MDSReader"  # verify, inspect
    rank = 50
    summary = "MosaicML streaming's MDS shards for StreamingDataset, under mds/, a folder a split with its index.json"
    no_dali_index = "DALI does not read MDS shards"
    shard_pattern = SHARD_PATTERN
    side_pattern = re.escape(FOLDER) + "/(?:" + "|".join(FOLDERS.values()) + ")/" + re.escape(INDEX_JSON)
    folders = {FOLDER: 2}  # mds/SPLIT/FILE
    stores_boxes = False  # the converter's samples hold no boxes
    stored_label = ("y", 1)  # 0..N-1

    @classmethod
    def needs(cls, options: Any) -> list[tuple[str, str, str | None, str]]:
        return [("xxhash", "xxhash", "mds", "--format mds (the xxh64 hashes of index.json)")]

    def file_name(self, shard: ShardSpec) -> str:
        return shard_file(shard)

    def encoder(self, shard: ShardSpec) -> ShardEncoder:
        raise NotImplementedError("an MDS file's offsets table comes from the plan: encoder_for(plan, shard)")

    def encoder_for(self, plan: Plan, shard: ShardSpec) -> ShardEncoder:
        return Encoder(plan, shard, shard_file(shard), self.resize)

    def size_bounds(self, plan: Plan, shard: ShardSpec) -> tuple[int, int]:
        """The file's exact size, a fix-up file counted at its size in the download (`plan` shows those apart)."""
        split = plan.splits[shard.split]
        images = split.index.sizes[split.order[shard.start:shard.stop]]
        size = header_size(len(images)) + int(images.sum()) + SAMPLE_OVERHEAD * len(images)
        return size, size

    def most_bytes(self, plan: Plan, shards: Sequence[ShardSpec]) -> int:
        """The files' sizes, a re-encoded fix-up file taken as up to 4 times its size (as `Format.most_bytes`)."""
        return sum(self.size_bounds(plan, s)[1] for s in shards) + sum(3 * size for _, size in plan.fixup_sizes())

    def side_files(self, plan: Plan, entries: Sequence[ShardEntry]) -> dict[str, bytes]:
        """Each split's index.json, as MDSWriter writes it once its last shard is flushed (a resized output's with its
        recipe)."""
        resize = self.resize.describe() if self.resize else None
        return {f"{split_folder(split)}/{INDEX_JSON}": index_json(plan, entries, split, resize)
                for split in plan.splits}

    def side_file_names(self) -> list[str]:
        return [f"{split_folder(split)}/{INDEX_JSON}" for split in FOLDERS]
