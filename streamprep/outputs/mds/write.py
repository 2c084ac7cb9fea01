"""Writing MDS shards as MosaicML streaming's `MDSWriter` writes them, the image bytes framed uncopied; each index.json.

An MDS file (streaming 0.13, `base/format/mds/writer.py`, `MDSWriter.encode_joint_shard`) is

    num_samples (uint32) | offsets (num_samples + 1 uint32, from the file's start) | config (JSON) | samples

    num_samples = np.uint32(len(self.new_samples))
    sizes = list(map(len, self.new_samples))
    offsets = np.array([0] + sizes).cumsum().astype(np.uint32)
    offsets += len(num_samples.tobytes()) + len(offsets.tobytes()) + len(self.config_data)

and a sample (`MDSWriter.encode_sample`) is the uint32 sizes of its variable-size columns, then every column in
name order. The columns are those of streaming's ImageNet converter (`vision/convert/imagenet.py`:
`columns = {'i': 'int', 'x': 'jpeg', 'y': 'int'}`), so a sample is

    len(x) (uint32) | i (int64) | x (the JPEG's bytes) | y (int64)

`x` holds the record's image as the other formats do (the converter writes each file's bytes as read:
`x = open(filenames[i], 'rb').read()`, which `mds_encode` passes through); `y` is the class 0..N-1 (the classic's
label - 1); `i` the image's place in its split's file list before the shuffle (synset by synset, files sorted by
name: the converter's `i`, an index into `sorted(glob(split/*/*))`). Because the offsets come first, `start` works
them out before the first sample from the plan: every image's size is known from the index but a fix-up file's
(re-encoded), which `start` has the shard's reader prepare ahead and keep for its turn (at most the classic's 23
files in a whole run, each re-encoded once). Nothing of a shard is held but its offsets: each sample goes out as it
comes. The config is the converter's (`--hashes` sha1,xxh64, no compression), with `size_limit` null: a shard is the
plan's, not cut by size (docs/format-mds.md).
"""

from __future__ import annotations

import hashlib
import json
import struct
from typing import Any, Sequence

import numpy as np

from ...errors import OutputError
from ...plan import Plan, ShardSpec
from ...records.image import Image
from ...records.resize import Recipe
from ...records.spec import RecordSpec
from ..format import Reader, ShardEncoder, written_sizes
from ..manifest import ShardEntry

SUFFIX = ".mds"
INDEX_JSON = "index.json"  # streaming.base.format.index.get_index_basename()
FOLDER = "mds"  # the format's own folder below `out`: `StreamingDataset(local=OUT/"mds", split="train")`
FOLDERS = {"train": "train", "validation": "val"}  # each split's folder in it, as the converter's --splits train,val
COLUMNS = {"i": "int", "x": "jpeg", "y": "int"}  # the converter's columns
COLUMN_SIZES = {"int": 8, "jpeg": None}  # `get_mds_encoded_size`: int is an int64, jpeg of any size
HASHES = ["sha1", "xxh64"]  # the converter's --hashes default, in MDSWriter's (sorted) order
# `MDSWriter.get_config()` with the converter's settings, but for size_limit: null, MDSWriter's "no limit".
CONFIG = {"version": 2, "format": "mds", "compression": None, "hashes": HASHES, "size_limit": None,
          "column_names": sorted(COLUMNS), "column_encodings": [COLUMNS[c] for c in sorted(COLUMNS)],
          "column_sizes": [COLUMN_SIZES[COLUMNS[c]] for c in sorted(COLUMNS)]}
CONFIG_DATA = json.dumps(CONFIG, sort_keys=True).encode("utf-8")  # as `MDSWriter.__init__` makes `config_data`
SAMPLE_OVERHEAD = 4 + 8 + 8  # a sample's bytes beyond its image: len(x), i, y
MAX_FILE = 2 ** 32 - 1  # offsets are uint32 (MDSWriter refuses a size_limit of 2**32 or more for this reason)


def header_size(samples: int) -> int:
    """Bytes before the first sample: the count, the offsets, the config."""
    return 4 + 4 * (samples + 1) + len(CONFIG_DATA)


def header(image_sizes: Sequence[int], name: str) -> bytes:
    """A file's opening for samples of these image sizes, as `MDSWriter.encode_joint_shard` makes it."""
    offsets = np.cumsum([header_size(len(image_sizes)), *(SAMPLE_OVERHEAD + s for s in image_sizes)], dtype=np.int64)
    if offsets[-1] > MAX_FILE:
        raise OutputError(f"{name}: {int(offsets[-1]):,} bytes, more than an MDS file's uint32 offsets reach "
                          f"({MAX_FILE:,}); convert with more shards (--train-shards, --validation-shards)")
    return struct.pack("<I", len(image_sizes)) + offsets.astype("<u4").tobytes() + CONFIG_DATA


def sample_head(x_size: int, i: int) -> bytes:
    """What precedes `x` in a sample: its size (uint32), then `i` (int64)."""
    return struct.pack("<Iq", x_size, i)


def sample_tail(y: int) -> bytes:
    return struct.pack("<q", y)


def plan_rows(plan: Plan, shard: ShardSpec, specs: Sequence[RecordSpec]) -> list[int]:
    """Each record's row in its split's index (its place in the file list before the shuffle: `i`); `specs` are the
    shard's records in the plan's order, less any left out."""
    split = plan.splits[shard.split]
    planned = split.order[shard.start:shard.stop].tolist()
    if len(specs) == len(planned):
        return planned
    rows, at = [], 0
    for spec in specs:  # a subsequence of the planned records: the members tell which
        while split.index.member(planned[at]) != spec.member:
            at += 1
        rows.append(planned[at])
        at += 1
    return rows


class Encoder(ShardEncoder):
    """One shard's MDS file: the opening from the plan (`start`), then each sample as it comes; its sha1 and xxh64."""

    opens_with_records = True

    def __init__(self, plan: Plan, shard: ShardSpec, name: str, recipe: Recipe | None = None) -> None:
        import xxhash  # the converter's xxh64 (`needs` checked it is there before anything was read)

        self.plan, self.shard, self.name, self.recipe = plan, shard, name, recipe
        self.hashes = {"sha1": hashlib.sha1(), "xxh64": xxhash.xxh64()}
        self.expected: list[tuple[RecordSpec, int, int]] = []  # (record, i, image size), as the opening says
        self.written = 0

    def _hashed(self, pieces: Sequence[bytes]) -> Sequence[bytes]:
        for piece in pieces:
            for digest in self.hashes.values():
                digest.update(piece)
        return pieces

    def start(self, specs: Sequence[RecordSpec], read: Reader) -> Sequence[bytes]:
        sizes = written_sizes(specs, read, self.plan.fixed_sizes, self.recipe)
        self.expected = list(zip(specs, plan_rows(self.plan, self.shard, specs), sizes))
        return self._hashed([header(sizes, self.name)])

    def record(self, spec: RecordSpec, image: Image) -> Sequence[bytes]:
        k = self.written
        if k >= len(self.expected) or self.expected[k][0] is not spec or self.expected[k][2] != len(image.data):
            raise OutputError(f"{self.name}: sample {k} ({spec.member}, {len(image.data):,} bytes) is not the one "
                              "its offsets table, written first, counted; this is a bug in streamprep: please "
                              "report it with this message")
        self.written += 1
        return self._hashed((sample_head(len(image.data), self.expected[k][1]), image.data,
                             sample_tail(spec.label - 1)))

    def finish(self) -> Sequence[bytes]:
        if self.written != len(self.expected):
            raise OutputError(f"{self.name}: {self.written:,} samples written, its offsets table counts "
                              f"{len(self.expected):,}; this is a bug in streamprep: please report it")
        return ()

    def facts(self) -> dict[str, Any]:
        """The file's hashes as index.json lists them (`raw_data.hashes`)."""
        return {algo: digest.hexdigest() for algo, digest in self.hashes.items()}


def split_folder(split: str) -> str:
    """`mds/train`, `mds/val`: a split's folder below `out`, where its files and its index.json lie."""
    return f"{FOLDER}/{FOLDERS[split]}"


def shard_file(shard: ShardSpec) -> str:
    """`mds/train/train-00000-of-01024.mds`, `mds/val/validation-00000-of-00128.mds`."""
    return f"{split_folder(shard.split)}/{shard.name}{SUFFIX}"


def index_entry(entry: ShardEntry) -> dict[str, Any]:
    """One shard as index.json lists it (`JointWriter.flush_shard`'s object, MDSWriter's config merged in)."""
    missing = [algo for algo in HASHES if not isinstance(entry.facts.get(algo), str)]
    if missing:
        raise OutputError(f"{entry.name}: its manifest entry lacks its {' and '.join(missing)}, which index.json "
                          "lists; remove that file and run the same command again")
    return {"samples": entry.records, "zip_data": None, **CONFIG,
            "raw_data": {"basename": entry.name.rpartition("/")[2], "bytes": entry.bytes,
                         "hashes": {algo: entry.facts[algo] for algo in HASHES}}}


def index_json(plan: Plan, entries: Sequence[ShardEntry], split: str, resize: dict[str, Any] | None = None) -> bytes:
    """A split's index.json as `MDSWriter._write_index` writes it (`json.dump(obj, out, sort_keys=True)`): its
    shards in order, those with no samples left out (MDSWriter never writes an empty shard); a resized output's
    `--resize` recipe (`Recipe.describe`) as a top-level `resize`, which streaming's reader leaves alone."""
    mine = {e.name: e for e in entries}
    listed = [index_entry(e) for s in plan.splits[split].shards if (e := mine.get(shard_file(s))) and e.records]
    return json.dumps({"version": 2, "shards": listed, **({"resize": resize} if resize else {})},
                      sort_keys=True).encode("utf-8")
