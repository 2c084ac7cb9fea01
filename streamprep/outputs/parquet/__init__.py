"""Parquet files as Hugging Face's `imagenet-1k` dataset lays them out, a registry entry: `datasets.load_dataset(OUT)`.

One file per shard, named as `push_to_hub` names a split's files, `data/train-00000-of-01024.parquet`
(`data/validation-...`), each holding the same images in the same order as the TFRecord shard of
that name. A row per image: `image` (the Image feature's storage: `bytes`, the image the classic's
record holds, fix-up files re-encoded as the classic does; `path`, its file name,
`n01440764_10026.JPEG`, `ILSVRC2012_val_00000001.JPEG`) and `label` (a ClassLabel, int64 0..N-1 in
the synsets file's order, named as the hub names its classes: `write.class_names`). The schema's
`huggingface` metadata holds the features, so `datasets` needs nothing but the folder; pyarrow and
polars read the files as they are. Each file is what `datasets`' own writer writes for its rows
(`write.py`): row groups as `push_to_hub` sizes them, the image uncompressed and PLAIN, the label
snappy; deterministic for a given pyarrow release, whose version the footer's `created_by` names.
Needs pyarrow 21 or later (`pip install 'streamprep[parquet]'`); no DALI index; no boxes.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from ...errors import MissingDependencyError
from ...plan import Plan, ShardSpec
from .. import registry
from ..format import Format, ShardEncoder
from .write import (FOLDER, SHARD_PATTERN, Encoder, Images, arrow_schema, class_names, features_json, file_name,
                    pyarrow_problem, row_group_rows)


DATA_BYTES = 8  # a row's bytes beyond its image and name: the two PLAIN lengths
FOOTER_BYTES = 64 << 10  # a file's footer beyond its features and pages: its columns' and row groups' metadata
# A page's header and page index entries take at most PAGE_BYTES; a page holds 256 KiB or more (content-defined
# chunking's smallest chunk) but the last of a column chunk: besides those, a page per CHUNK_BYTES of images at most.
PAGE_BYTES, CHUNK_BYTES = 512, 256 << 10


@registry.register
class ParquetFormat(Format):
    """Hugging Face's imagenet-1k Parquet files (see the module docstring), `datasets.load_dataset`'s."""

    name = "parquet"
    checks, reads = "check:ParquetChecker", "inspect:ParquetReader"  # verify, inspect
    rank = 30
    summary = "Hugging Face datasets' imagenet-1k Parquet files, under data/"
    shard_pattern = SHARD_PATTERN
    folders = {FOLDER: 1}  # data/FILE
    no_dali_index = "DALI does not read Parquet"
    stores_boxes = False  # imagenet-1k has no boxes
    stored_label = ("label", 1)  # 0..N-1

    def __init__(self, dali_index: bool = False) -> None:
        super().__init__(dali_index)
        self._made_for: dict[tuple[int, str], tuple[Plan, list[str], Any, int]] = {}
        self._held = threading.local()  # each writing thread's `Images`, kept from shard to shard of this run

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_made_for": {}, "_held": None}  # pickled (Beam's workers) without what it holds

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _held=threading.local())

    @classmethod
    def needs(cls, options: Any) -> list[tuple[str, str, str | None, str]]:
        return [("pyarrow", "pyarrow", "parquet", f"--format {cls.name}")]

    def refuse(self, labels: Any) -> None:
        """Class names the hub's rule cannot make unique, a synset without a text (`write.class_names`), or a pyarrow
        too old to write as `datasets` does: refused before anything is read or written."""
        class_names(labels)
        problem = pyarrow_problem()
        if problem:
            raise MissingDependencyError(problem)

    def file_name(self, shard: ShardSpec) -> str:
        return file_name(shard.name)

    def encoder(self, shard: ShardSpec) -> ShardEncoder:
        raise NotImplementedError(f"--format {self.name} makes its encoders from the plan: encoder_for(plan, shard)")

    def encoder_for(self, plan: Plan, shard: ShardSpec) -> ShardEncoder:
        """The plan's class names (the schema's features), and its split's image sizes (the rows of a row group)."""
        names, schema, rows = self._made(plan, shard.split)
        if not hasattr(self._held, "images"):
            self._held.images = Images()
        return Encoder(names, rows, schema, self._held.images)

    def _made(self, plan: Plan, split: str) -> tuple[list[str], Any, int]:
        """The class names, the schema and a split's rows a row group, made once per plan and split (every shard of
        it has the same), not per shard."""
        key = (id(plan), split)
        if key not in self._made_for:
            names = class_names(plan.labels)
            self._made_for[key] = (plan, names, arrow_schema(names), row_group_rows(plan.splits[split].index.sizes))
        return self._made_for[key][1:]  # the plan is held with them: its id names no other plan meanwhile

    def most_bytes(self, plan: Plan, shards: Any) -> int:
        """The default bound (images, a generous allowance a row, the fix-up files' growth) and each file's footer: its
        features twice (as metadata and in the stored Arrow schema, base64) and the rest of the footer."""
        features = len(features_json(class_names(plan.labels)))
        pages = sum(int(self._sizes(plan, s).sum()) for s in shards) // CHUNK_BYTES
        return super().most_bytes(plan, shards) + len(shards) * (3 * features + FOOTER_BYTES) + pages * PAGE_BYTES

    def size_bounds(self, plan: Plan, shard: ShardSpec) -> tuple[int, int]:
        """(smallest, largest) bytes of the shard's file: at least its images, names and their lengths, and its
        features twice (as metadata, and at 4/3 their size in the stored Arrow schema); at most `most_bytes`."""
        split = plan.splits[shard.split]
        rows = split.order[shard.start:shard.stop]
        data = int(split.index.sizes[rows].sum()) + int(split.index.names.lengths(rows).sum())
        features = len(features_json(class_names(plan.labels)))
        return data + DATA_BYTES * len(rows) + 2 * features, self.most_bytes(plan, [shard])

    @staticmethod
    def _sizes(plan: Plan, shard: ShardSpec) -> np.ndarray:
        split = plan.splits[shard.split]
        return split.index.sizes[split.order[shard.start:shard.stop]]
