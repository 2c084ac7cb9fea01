"""PURE: index -> TFDS's imagenet2012 plan: its order (md5 of split and file name), fix-ups and shard boundaries.

`tfds build imagenet2012` (tensorflow-datasets 4.9.10, dataset version 5.1.0) keys each example by
its file name, sorts a split by `md5(split name + key)` read as a 128-bit integer
(`core/hashing.py`, `core/shuffle.py`), counts shards from the split's serialised size
(`core/utils/shard_utils.py`: 1024 when that keeps shards between 64 MiB and 1 GiB, else a power of
two that does; `DownloadConfig(num_shards=N)` overrides it) and cuts them at
`round(examples * k / shards)`; with `--equal-shards`, into `--train-shards` and `--validation-shards`
shards by the balanced cut (`plan.equal_bounds`), TFDS's order kept. The index holds the members TFDS
reads, with its file names and labels (walked by TFDS's rules: `index.images.index_train_tfds`,
`index_validation_tfds`); the plan refuses what makes `tfds build` fail once they are all known (two
images of a split under one key, a name that is not UTF-8) and fixes up the files TFDS fixes up
(`fixup_kind`). The plan is a `plan.Plan`, so the shared writer writes it like any other.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from ...errors import ArchiveError, ConfigError
from ...index.images import DatasetIndex, SplitIndex
from ...index.labels import LabelData
from ...plan import CMYK_NAMES, PNG_NAME, Plan, ShardSpec, Sharding, SplitPlan, fixup_rows as classic_fixup_rows
from ...records import tfds_example

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
        md5.update(hash_key(name))
        keys.append((int.from_bytes(md5.digest(), "big"), i))
    keys.sort()
    return np.asarray([i for _, i in keys], dtype=np.int64)


def hash_key(name: str) -> bytes:
    """The bytes TFDS hashes for a key (`core/hashing.py`: `\\` read as `/`, then UTF-8: `UnicodeEncodeError` for a
    name that is not UTF-8, as in TFDS)."""
    return name.replace("\\", "/").encode("utf-8")


def fixup_kind(split: str, file_name: str) -> str | None:
    """'png', 'cmyk' or None, as TFDS's `_fix_image` decides: only training images (the validation split is written
    as read), under exactly a fix-up file's name (`n01739381_1309.JPEG`, not `sub/n01739381_1309.JPEG`)."""
    if split != "train":
        return None
    return "png" if file_name == PNG_NAME else "cmyk" if file_name in CMYK_NAMES else None


def fixup_rows(split_index: SplitIndex) -> list[int]:
    """The rows of a split's images TFDS re-encodes (`fixup_kind`)."""
    return [i for i in classic_fixup_rows(split_index) if fixup_kind(split_index.split, split_index.names[i])]


@dataclass(frozen=True, eq=False)
class TFDSPlan(Plan):
    """TFDS's plan: its records fixed up as TFDS fixes them up (`fixup_kind`), not as the classic does."""

    def fixup_kind(self, split: str, name: str) -> str | None:
        return fixup_kind(split, name)


def image_size(fixed_sizes: Mapping[str, int], index: SplitIndex, i: int) -> int:
    """The bytes of image `i` of a split as its TFDS record holds them: `fixed_sizes` (by file name) for a file TFDS
    fixes up, else its size in the download."""
    name, size = index.names[i], int(index.sizes[i])
    return fixed_sizes.get(name, size) if fixup_kind(index.split, name) else size


def refuse_empty(index: DatasetIndex) -> None:
    """Stop on a split without images: what is wrong is the download, not a shard count (TFDS's rule gives one)."""
    for split_index in index.splits:
        if not len(split_index):
            archive, which = split_index.archive, "training" if split_index.split == "train" else "validation"
            raise ConfigError(f"{archive}: holds no {which} images, and no split of TFDS's imagenet2012 may be empty "
                              "(`tfds build` stops with 'No examples were yielded'), so --format tfds cannot give it: "
                              f"check that this is the {which} download (`streamprep inspect {archive}` shows what "
                              "it holds), or write another format")


def refuse_keys(split_index: SplitIndex, names: list[str]) -> None:
    """Stop on what makes `tfds build` fail once a split's keys are known: a file name that is not UTF-8 (TFDS's
    file_name feature and key hash encode it), two images under one key (its shuffler's DuplicatedKeysError)."""
    seen: dict[bytes, int] = {}
    for i, name in enumerate(names):
        try:
            key = hash_key(name)
        except UnicodeEncodeError:
            raise ArchiveError(f"{split_index.member(i)}: the file name is not UTF-8, and `tfds build` fails encoding "
                               "it (UnicodeEncodeError), so --format tfds cannot give its dataset: rename it, or "
                               "write another format") from None
        if key in seen:
            other = names[seen[key]]
            same = f"named {name}" if other == name else f"named {other} and {name}, one key to TFDS (\\ is /)"
            where = "in two class tars, or twice in one" if split_index.split == "train" else "in the validation tar"
            raise ArchiveError(f"{split_index.archive}: two images of the {split_index.split} split are {same} "
                               f"({where}; TFDS keys examples by file name); `tfds build` fails on this, so --format "
                               "tfds cannot give its dataset: rename one, or write another format")
        seen[key] = i


def cut(split_index: SplitIndex, names: list[str], fixed_sizes: Mapping[str, int], num_shards: int,
        equal: Sharding | None) -> list[tuple[int, int]]:
    """Start and stop of each shard of a split: TFDS's count and cut, or `equal`'s count and balanced cut; refused
    when a shard would be empty (TFDS writes none)."""
    split, n = split_index.split, len(names)
    if equal is not None:
        count, flag = equal.shards(split), f"{split}_shards (--{split}-shards)"
        bounds = equal.bounds(split, n)
    else:
        total = sum(tfds_example.size(int(split_index.labels[i]) - 1, name, image_size(fixed_sizes, split_index, i))
                    for i, name in enumerate(names))
        count, flag = num_shards or number_of_shards(total, n), "tfds_shards (--tfds-shards)"
        cuts = [0, *boundaries(n, count)]
        bounds = [(cuts[k], cuts[k + 1]) for k in range(count)]
    if n < count:
        raise ConfigError(f"{flag} {count}: the {split} split has only {n:,} images; TFDS needs at least one a shard")
    return bounds


def make_tfds_plan(index: DatasetIndex, labels: LabelData, fixed_sizes: Mapping[str, int],
                   num_shards: int = 0, sharding: Sharding | None = None) -> TFDSPlan:
    """TFDS's plan of both splits, from an index walked by TFDS's rules. `fixed_sizes` are the re-encoded sizes of
    the training images TFDS fixes up (by file name), which count in a split's size; `num_shards` (0: TFDS's own
    rule) is `DownloadConfig(num_shards=...)`. A `sharding` with `equal` (`--equal-shards`) cuts TFDS's order into
    its counts instead (`--train-shards`, `--validation-shards`), shards that differ by at most one
    (`plan.equal_bounds`)."""
    equal = sharding if sharding is not None and sharding.equal else None
    splits = {}
    for split_index in index.splits:
        names = [split_index.names[i] for i in range(len(split_index))]
        refuse_keys(split_index, names)
        bounds = cut(split_index, names, fixed_sizes, num_shards, equal)
        shards = tuple(ShardSpec(split_index.split, k, len(bounds), a, b) for k, (a, b) in enumerate(bounds))
        splits[split_index.split] = SplitPlan(split_index, order(split_index.split, names), shards)
    return TFDSPlan(splits, labels, index.boxes, equal or Sharding(), dict(fixed_sizes))
