"""PURE: index -> TFDS's imagenet2012 plan: its order (md5 of split and file name), labels and shard boundaries.

`tfds build imagenet2012` (tensorflow-datasets 4.9.10, dataset version 5.1.0) keys each example by
its file name, sorts a split by `md5(split name + key)` read as a 128-bit integer
(`core/hashing.py`, `core/shuffle.py`), counts shards from the split's serialised size
(`core/utils/shard_utils.py`: 1024 when that keeps shards between 64 MiB and 1 GiB, else a power of
two that does; `DownloadConfig(num_shards=N)` overrides it) and cuts them at
`round(examples * k / shards)`. Validation labels are TFDS's too: the k-th file name in sorted order
takes line k of the validation labels file (`imagenet_common.get_validation_labels`), which is the
classic's rule (line k is image k) whenever the tar holds images 1..N. The plan is a `plan.Plan`, so
the shared writer writes it like any other.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Mapping

import numpy as np

from .errors import ConfigError
from .index.images import DatasetIndex, SplitIndex
from .index.labels import LabelData
from .plan import Plan, ShardSpec, Sharding, SplitPlan
from .records import tfds_example

MIN_SHARD_SIZE = 64 << 20  # shard_utils.DEFAULT_MIN_SHARD_SIZE
MAX_SHARD_SIZE = 1024 << 20  # shard_utils.DEFAULT_MAX_SHARD_SIZE
RECORD_OVERHEAD = 16  # ShardConfig.overhead: TFRecord framing per record


def number_of_shards(total_size: int, num_examples: int) -> int:
    """`ShardConfig.calculate_number_shards`, with TFDS's defaults (which its DownloadConfig sizes do not change)."""
    total_size += num_examples * RECORD_OVERHEAD
    most, least = total_size // MIN_SHARD_SIZE, total_size // MAX_SHARD_SIZE
    if least <= 1024 <= most and num_examples >= 1024:
        return 1024
    if least > 1024:
        n = 2048
        while not (n >= least and num_examples >= n):
            n += 1024
        return n
    for n in (512, 256, 128, 64, 32, 16, 8, 4, 2):
        if least <= n <= most and num_examples >= n:
            return n
    return 1


def boundaries(num_examples: int, shards: int) -> list[int]:
    """`shard_utils.get_shard_boundaries`: where each shard ends."""
    return [round(num_examples * k / shards) for k in range(1, shards + 1)]


def order(split: str, names: list[str]) -> np.ndarray:
    """Positions of `names` sorted as TFDS's shuffler sorts keys: by md5(split + key) as an integer."""
    salt = hashlib.md5(split.encode())
    keys = []
    for i, name in enumerate(names):
        md5 = salt.copy()
        md5.update(name.replace("\\", "/").encode("utf-8", "surrogateescape"))
        keys.append((int.from_bytes(md5.digest(), "big"), i))
    keys.sort()
    return np.asarray([i for _, i in keys], dtype=np.int64)


def positional_labels(split_index: SplitIndex, labels: LabelData) -> SplitIndex:
    """The validation split with TFDS's labels: the k-th name in sorted order takes the k-th validation label."""
    names = [split_index.names[i] for i in range(len(split_index))]
    ranks = np.empty(len(names), dtype=np.int64)
    ranks[np.argsort(np.asarray(names, dtype=object), kind="stable")] = np.arange(len(names))
    found = np.zeros(len(names), dtype=np.int32)
    for i, rank in enumerate(ranks):
        if rank >= len(labels.validation):
            raise ConfigError(f"{split_index.archive}: holds more validation images than the validation labels "
                              f"file has lines ({len(labels.validation):,}); TFDS would fail on "
                              f"{names[i]}: pass a --validation-labels-file with a line for each image")
        label = labels.label(labels.validation[rank])
        if label is None:
            raise ConfigError(f"{split_index.archive}!{names[i]}: its TFDS label, line {rank + 1} of the validation "
                              f"labels file ({labels.validation[rank]}), is not in the labels file")
        found[i] = label
    return dataclasses.replace(split_index, labels=found)


def make_tfds_plan(index: DatasetIndex, labels: LabelData, fixed_sizes: Mapping[str, int],
                   num_shards: int = 0) -> Plan:
    """TFDS's plan of both splits. `fixed_sizes` are the re-encoded sizes of the fix-up files (by file name),
    which count in a split's size; `num_shards` (0: TFDS's own rule) is `DownloadConfig(num_shards=...)`."""
    splits = {}
    for split_index in index.splits:
        if split_index.split == "validation":
            split_index = positional_labels(split_index, labels)
        names = [split_index.names[i] for i in range(len(split_index))]
        n = len(names)
        if len(set(names)) < n:
            seen: set[str] = set()
            twice = next(name for name in names if name in seen or seen.add(name))  # type: ignore[func-returns-value]
            raise ConfigError(f"{split_index.archive}: two images of the {split_index.split} split are named {twice} "
                              "(in two classes); TFDS keys examples by file name and `tfds build` fails on this, so "
                              "--format tfds cannot give its dataset: rename one, or write another format")
        total = sum(tfds_example.size(int(split_index.labels[i]) - 1, name,
                                      fixed_sizes.get(name, int(split_index.sizes[i]))) for i, name in enumerate(names))
        count = num_shards or number_of_shards(total, n)
        if n < count:
            raise ConfigError(f"tfds_shards (--tfds-shards) {count}: the {split_index.split} split has only {n:,} "
                              "images; TFDS needs at least one a shard")
        cuts = [0, *boundaries(n, count)]
        shards = tuple(ShardSpec(split_index.split, k, count, cuts[k], cuts[k + 1]) for k in range(count))
        splits[split_index.split] = SplitPlan(split_index, order(split_index.split, names), shards)
    return Plan(splits, labels, index.boxes, Sharding(), dict(fixed_sizes))
