"""Parquet files as Hugging Face's `imagenet-1k` dataset lays them out, a registry entry: `datasets.load_dataset(OUT)`.

One file per shard, named as `push_to_hub` names a split's files, `data/train-00000-of-01024.parquet`
(`data/validation-...`), each holding the same images in the same order as the TFRecord shard of
that name. A row per image: `image` (the Image feature's storage: `bytes`, the image the classic's
record holds, fix-up files re-encoded as the classic does; `path`, its file name,
`n01440764_10026.JPEG`, `ILSVRC2012_val_00000001.JPEG`) and `label` (a ClassLabel, int64 0..N-1 in
the synsets file's order, named as the hub names its classes: `write.class_names`), in row groups of
as many rows as `push_to_hub` puts in one. The schema's `huggingface` metadata holds the features,
so `datasets` needs nothing but the folder; pyarrow and polars read the files as they are.

Two writers (`--parquet-writer`), the same table read back from either: `streamprep` (the default,
`framed.py`) frames each file itself, as every other format is written, the images passed through
uncopied, pages cut by size, nothing compressed, no pyarrow needed; `datasets` (`datasets_writer.py`)
has pyarrow write each file byte for byte as `datasets`' own writer does (content-defined chunking,
so the Hub's storage deduplicates it against files `datasets` writes; pyarrow 21 or later,
`pip install 'streamprep[parquet]'`). verify and inspect read either with pyarrow. No DALI index; no
boxes.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import numpy as np

from ...errors import ConfigError, MissingDependencyError
from ...plan import Plan, ShardSpec
from .. import registry
from ..format import Format, FormatOption, ShardEncoder
from .write import FOLDER, SHARD_PATTERN, WRITERS, arrow_schema, class_names, features_json, file_name, row_group_rows

DATASETS = WRITERS[1]  # the writer that is pyarrow's, as `datasets` sets it up
DATA_BYTES = 8  # --parquet-writer datasets: a row's bytes beyond its image and name: the two PLAIN lengths
RECIPE_KEY = "streamprep"  # a resized output's footer metadata: {"resize": the recipe} (`ParquetFormat._recipe`)
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
    options = {
        "parquet_writer": FormatOption(
            WRITERS[0], metavar="WRITER",
            help="who writes --format parquet's files: streamprep (its own framing, the images uncopied, no pyarrow "
                 "needed) or datasets (pyarrow, byte for byte as datasets' to_parquet writes them, content-defined "
                 "chunking; needs pyarrow 21 or later); pyarrow reads the same table from either"),
    }
    shard_pattern = SHARD_PATTERN
    folders = {FOLDER: 1}  # data/FILE
    no_dali_index = "DALI does not read Parquet"
    stores_boxes = False  # imagenet-1k has no boxes
    stored_label = ("label", 1)  # 0..N-1

    def __init__(self, dali_index: bool = False, writer: str = WRITERS[0]) -> None:
        super().__init__(dali_index)
        self.writer = writer
        self._made_for: dict[tuple[int, str], tuple[Plan, list[str], str, int]] = {}
        self._bounds: dict[tuple[int, str, int], tuple[int, int]] = {}  # by plan and shard: `plan` asks twice
        self._held = threading.local()  # each writing thread's `Images` (datasets' writer), kept between shards

    def __getstate__(self) -> dict[str, Any]:  # pickled (Beam's workers) without what it holds
        return {**self.__dict__, "_made_for": {}, "_bounds": {}, "_held": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _held=threading.local())

    @classmethod
    def from_options(cls, options: Any) -> "ParquetFormat":
        return cls(options.dali_index, options.parquet_writer)

    @classmethod
    def check_options(cls, options: Any, chosen: bool) -> None:
        if options.parquet_writer not in WRITERS:
            raise ConfigError(f"parquet_writer (--parquet-writer) must be {' or '.join(WRITERS)}, got "
                              f"{options.parquet_writer!r}")

    @classmethod
    def describe(cls, options: dict[str, Any]) -> str:
        return f"{cls.name} (written by {options.get('parquet_writer', WRITERS[0])})"

    @classmethod
    def needs(cls, options: Any) -> list[tuple[str, str, str | None, str]]:
        if options.parquet_writer == DATASETS:
            return [("pyarrow", "pyarrow", "parquet", f"--format {cls.name} --parquet-writer {DATASETS}")]
        return []

    def refuse(self, labels: Any) -> None:
        """Class names the hub's rule cannot make unique, a synset without a text (`write.class_names`), or (the
        `datasets` writer) a pyarrow too old to write as `datasets` does: refused before anything is read or
        written."""
        class_names(labels)
        if self.writer == DATASETS:
            from .datasets_writer import pyarrow_problem

            problem = pyarrow_problem()
            if problem:
                raise MissingDependencyError(problem)

    def file_name(self, shard: ShardSpec) -> str:
        return file_name(shard.name)

    def encoder(self, shard: ShardSpec) -> ShardEncoder:
        raise NotImplementedError(f"--format {self.name} makes its encoders from the plan: encoder_for(plan, shard)")

    def encoder_for(self, plan: Plan, shard: ShardSpec) -> ShardEncoder:
        """The plan's class names (the schema's features), its split's rows a row group, and (framed) the fix-up
        files' sizes where the plan knows them and the run's `--resize` recipe (every image's size then prepared
        ahead)."""
        names, features, rows = self._made(plan, shard.split)
        if self.writer != DATASETS:
            from .framed import Encoder

            return Encoder(features, rows, self.file_name(shard), plan.fixed_sizes, self.resize, self._recipe())
        from .datasets_writer import Encoder as DatasetsEncoder, Images

        if not hasattr(self._held, "images"):
            self._held.images = Images()
        schema = arrow_schema(names)
        return DatasetsEncoder(names, rows, schema.with_metadata({**schema.metadata, **self._recipe()}),
                               self._held.images)

    def _recipe(self) -> dict[str, str]:
        """A resized output's footer key-value metadata beside `huggingface`: `streamprep`, `{"resize": RECIPE}`
        (`Recipe.describe`, as JSON); none for a byte-exact output."""
        return {RECIPE_KEY: json.dumps({"resize": self.resize.describe()}, sort_keys=True)} if self.resize else {}

    def _made(self, plan: Plan, split: str) -> tuple[list[str], str, int]:
        """The class names, the features and a split's rows a row group, made once per plan and split (every shard
        of it has the same), not per shard."""
        key = (id(plan), split)
        if key not in self._made_for:
            names = class_names(plan.labels)
            self._made_for[key] = (plan, names, features_json(names), row_group_rows(plan.splits[split].index.sizes))
        return self._made_for[key][1:]  # the plan is held with them: its id names no other plan meanwhile

    def most_bytes(self, plan: Plan, shards: Any) -> int:
        """Framed: each file's largest size (`size_bounds`). datasets' writer: the default bound (images, a generous
        allowance a row, the fix-up files' growth) and each file's footer: its features twice (as metadata and in
        the stored Arrow schema, base64) and the rest of the footer."""
        if self.writer != DATASETS:
            return sum(self.size_bounds(plan, shard)[1] for shard in shards)
        features = len(features_json(class_names(plan.labels)))
        pages = sum(int(self._sizes(plan, s).sum()) for s in shards) // CHUNK_BYTES
        return super().most_bytes(plan, shards) + len(shards) * (3 * features + FOOTER_BYTES) + pages * PAGE_BYTES

    def size_bounds(self, plan: Plan, shard: ShardSpec) -> tuple[int, int]:
        """(smallest, largest) bytes of the shard's file. Framed: its exact size, laid out from the plan as it will be
        written (`framed.planned_bounds`), within bounds only around a fix-up file whose re-encoded size the plan
        does not know. datasets' writer: at least its images, names and their lengths, and its features twice (as
        metadata, and at 4/3 their size in the stored Arrow schema); at most `most_bytes`."""
        if self.writer != DATASETS:
            key = (id(plan), shard.split, shard.number)
            if key not in self._bounds:
                from .framed import planned_bounds

                _, features, rows = self._made(plan, shard.split)  # holds the plan: its id stays its own
                self._bounds[key] = planned_bounds(plan, shard, rows, features)
            return self._bounds[key]
        split = plan.splits[shard.split]
        rows = split.order[shard.start:shard.stop]
        data = int(split.index.sizes[rows].sum()) + int(split.index.names.lengths(rows).sum())
        features = len(features_json(class_names(plan.labels)))
        return data + DATA_BYTES * len(rows) + 2 * features, self.most_bytes(plan, [shard])

    @staticmethod
    def _sizes(plan: Plan, shard: ShardSpec) -> np.ndarray:
        split = plan.splits[shard.split]
        return split.index.sizes[split.order[shard.start:shard.stop]]
