"""PURE: index -> TFDS's plan (imagenet2012, imagenet21k): its order (md5 of split and key), fix-ups, shard boundaries.

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

ImageNet-21k (`make_synsets_plan`), which no TFDS builder makes, takes TFDS's order and shard rule on keys of its own,
`SYNSET/FILE_NAME`, the labels the classes its recipe kept, and no fix-ups.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Mapping

import numpy as np

from ... import datasets
from ...errors import ArchiveError, ConfigError
from ...index.images import DatasetIndex, SplitIndex
from ...index.labels import LabelData
from ...plan import CMYK_NAMES, PNG_NAME, Plan, ShardSpec, Sharding, SplitPlan, fixup_rows as classic_fixup_rows
from ...records import example as ex
from ...records.resize import Recipe

MIN_SHARD_SIZE = 64 << 20  # shard_utils.DEFAULT_MIN_SHARD_SIZE
MAX_SHARD_SIZE = 1024 << 20  # shard_utils.DEFAULT_MAX_SHARD_SIZE
RECORD_OVERHEAD = 16  # ShardConfig.overhead: TFRecord framing per record
KEY_BLOCK = 1 << 16  # labels turned into Python integers at a time, making imagenet21k's keys
SIZE_BLOCK = 1 << 18  # records whose serialised sizes are computed together (about 150 bytes each meanwhile)


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
    return md5_order(split, map(hash_key, names), len(names), lambda i: hash_key(names[i]))


def md5_order(split: str, keys: Iterable[bytes], n: int, key_at: Callable[[int], bytes]) -> np.ndarray:
    """Positions of the `n` keys (their bytes, in order; `key_at(i)` gives key i again) by md5(split + key) read as a
    128-bit integer, ties by position. The first 8 bytes of each digest sort them, 8 bytes a key; keys whose first 8
    bytes are alike (rare) are then sorted by their whole digests."""
    salt = hashlib.md5(split.encode())

    def digest(key: bytes) -> bytes:
        md5 = salt.copy()
        md5.update(key)
        return md5.digest()

    high = bytearray(8 * n)
    for i, key in enumerate(keys):
        high[8 * i:8 * i + 8] = digest(key)[:8]
    values = np.frombuffer(high, dtype=">u8")
    positions = np.argsort(values, kind="stable")
    ordered = values[positions]
    alike = np.flatnonzero(ordered[1:] == ordered[:-1])
    del ordered
    for start, stop in _runs(alike):  # positions[start:stop] share their first 8 bytes
        run = positions[start:stop].tolist()
        positions[start:stop] = sorted(run, key=lambda i: (digest(key_at(i)), i))
    return positions.astype(np.int64, copy=False)


def _runs(alike: np.ndarray) -> Iterator[tuple[int, int]]:
    """Runs of sorted positions that share a value, as (start, stop), from the positions k where k and k + 1 do."""
    k = 0
    while k < len(alike):
        start = stop = int(alike[k])
        while k < len(alike) and int(alike[k]) == stop:
            stop, k = stop + 1, k + 1
        yield start, stop + 1


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


def varint_lengths(values: np.ndarray) -> np.ndarray:
    """The bytes protobuf's varint of each value (0 or more) takes."""
    lengths = np.ones(values.shape, dtype=np.int64)
    for k in range(1, 10):
        lengths += values >= (1 << (7 * k))
    return lengths


def record_sizes(labels: np.ndarray, name_lengths: np.ndarray, image_sizes: np.ndarray) -> np.ndarray:
    """`records.tfds_example.size` of many records at once (labels 0..N-1, file names' lengths in bytes, images'
    sizes), without a Python step per record: the label's and the file name's map entries by their distinct values,
    the image's entry and the Example's head from the varint lengths of the sizes they frame."""
    labels, name_lengths, sizes = (np.asarray(a, dtype=np.int64) for a in (labels, name_lengths, image_sizes))
    distinct, at = np.unique(labels, return_inverse=True)
    label_entry = np.array([len(ex.int64_entry("label", int(v))) for v in distinct], dtype=np.int64)[at]
    distinct, at = np.unique(name_lengths, return_inverse=True)
    name_entry = np.array([len(ex.entry("file_name", ex.bytes_feature(b"n" * int(v)))) for v in distinct],
                          dtype=np.int64)[at]
    key = 2 + len("image")  # the map entry's key field: tag, length, "image"
    value = 1 + varint_lengths(sizes)  # BytesList.value's tag and length
    feature = 1 + varint_lengths(value + sizes)  # Feature.bytes_list's
    entry_value = 1 + varint_lengths(feature + value + sizes)  # the map entry's value field's
    body = key + entry_value + feature + value + sizes
    entries = label_entry + 1 + varint_lengths(body) + body + name_entry
    return 1 + varint_lengths(entries) + entries  # Example.features' tag and length


def resized_sizes(sizes: np.ndarray, recipe: Recipe | None) -> np.ndarray:
    """Each image's bytes as the shard rule counts them: as stored, or with a `--resize` recipe its estimate of one
    image (`Recipe.most_bytes`; a named recipe's at least the download's, since it copies small images)."""
    if recipe is None:
        return sizes
    most = recipe.most_bytes(np.zeros(1, np.int64))
    return np.maximum(sizes, most) if recipe.exact else np.full_like(sizes, most)


def records_size(split_index: SplitIndex, fixed_sizes: Mapping[str, int], recipe: Recipe | None = None) -> int:
    """The serialised size of a split's records (what TFDS's shard rule counts): each image's as its record holds it
    (`image_size`; resized, `resized_sizes`), with its label and file name; `record_sizes` a block of records at a
    time (its arrays of a block are all it holds)."""
    sizes = split_index.sizes.astype(np.int64)
    for i in fixup_rows(split_index) if fixed_sizes else ():
        sizes[i] = image_size(fixed_sizes, split_index, i)
    sizes = resized_sizes(sizes, recipe)
    names, total = iter(split_index.names.raws()), 0
    for start in range(0, len(split_index), SIZE_BLOCK):
        stop = min(len(split_index), start + SIZE_BLOCK)
        lengths = np.fromiter((len(next(names)) for _ in range(start, stop)), dtype=np.int64, count=stop - start)
        total += int(record_sizes(split_index.labels[start:stop].astype(np.int64) - 1, lengths,
                                  sizes[start:stop]).sum())
    return total


def cut(split_index: SplitIndex, fixed_sizes: Mapping[str, int], num_shards: int,
        equal: Sharding | None, recipe: Recipe | None = None) -> list[tuple[int, int]]:
    """Start and stop of each shard of a split: TFDS's count (of the images' sizes, or a `--resize` recipe's estimate
    of them) and cut, or `equal`'s count and balanced cut; refused when a shard would be empty (TFDS writes none)."""
    split, n = split_index.split, len(split_index)
    if equal is not None:
        count, flag = equal.shards(split), f"{split}_shards (--{split}-shards)"
        bounds = equal.bounds(split, n)
    else:
        count = num_shards or number_of_shards(records_size(split_index, fixed_sizes, recipe), n)
        flag = "tfds_shards (--tfds-shards)"
        cuts = [0, *boundaries(n, count)]
        bounds = [(cuts[k], cuts[k + 1]) for k in range(count)]
    if n < count:
        raise ConfigError(f"{flag} {count}: the {split} split has only {n:,} images; TFDS needs at least one a shard")
    return bounds


def make_tfds_plan(index: DatasetIndex, labels: LabelData, fixed_sizes: Mapping[str, int],
                   num_shards: int = 0, sharding: Sharding | None = None, recipe: Recipe | None = None) -> TFDSPlan:
    """TFDS's plan of both splits, from an index walked by TFDS's rules. `fixed_sizes` are the re-encoded sizes of
    the training images TFDS fixes up (by file name), which count in a split's size; `num_shards` (0: TFDS's own
    rule) is `DownloadConfig(num_shards=...)`. A `sharding` with `equal` (`--equal-shards`) cuts TFDS's order into
    its counts instead (`--train-shards`, `--validation-shards`), shards that differ by at most one
    (`plan.equal_bounds`). With a `--resize` recipe, TFDS's count is of the recipe's estimate (`resized_sizes`)."""
    equal = sharding if sharding is not None and sharding.equal else None
    splits = {}
    for split_index in index.splits:
        names = [split_index.names[i] for i in range(len(split_index))]
        refuse_keys(split_index, names)
        bounds = cut(split_index, fixed_sizes, num_shards, equal, recipe)
        shards = tuple(ShardSpec(split_index.split, k, len(bounds), a, b) for k, (a, b) in enumerate(bounds))
        splits[split_index.split] = SplitPlan(split_index, order(split_index.split, names), shards)
    return TFDSPlan(splits, labels, index.boxes, equal or Sharding(), dict(fixed_sizes))


def synset_key(synset: str, name: bytes) -> bytes:
    """The key an imagenet21k example is sorted by: its path once extracted, `SYNSET/FILE_NAME` (a class tar holds a
    name once, so no two are alike), the name's bytes as the tar holds them."""
    return synset.encode() + b"/" + name


def make_synsets_plan(index: DatasetIndex, labels: LabelData, num_shards: int = 0,
                      sharding: Sharding | None = None, recipe: Recipe | None = None) -> Plan:
    """The plan of a dataset whose walk chose the classes (ImageNet-21k's recipe), written as a TFDS dataset no TFDS
    builder makes: labels numbered by the classes kept (`index.synsets`), each split in TFDS's order (md5 of the
    split and `synset_key`) cut by TFDS's shard rule (`num_shards`, or `sharding`'s equal cut), the images as stored
    (the dataset's fix-ups: none for ImageNet-21k). A split without images has no shards (TFDS has no empty split);
    no images at all is refused."""
    if index.synsets is not None:
        labels = dataclasses.replace(labels, synsets=index.synsets)
    equal = sharding if sharding is not None and sharding.equal else None
    if not any(len(split_index) for split_index in index.splits):
        archive = index.splits[0].archive if index.splits else "the download"
        raise ConfigError(f"{archive}: no image is left to write (the split recipe kept no class), and a TFDS dataset "
                          "needs at least one split of images: lower --keep-classes-over, or check the download")
    splits = {split_index.split: _synsets_split(split_index, labels, num_shards, equal, recipe)
              for split_index in index.splits}
    return Plan(splits, labels, index.boxes, equal or Sharding(), split_boxes=dict(index.split_boxes),
                fixups=datasets.get(index.dataset).fixups, dataset=index.dataset)


def _synsets_split(split_index: SplitIndex, labels: LabelData, num_shards: int, equal: Sharding | None,
                   recipe: Recipe | None = None) -> SplitPlan:
    """One split of `make_synsets_plan`: its order, its shards (none without images); a missing text fails here."""
    synsets = labels.synsets
    bounds = cut(split_index, {}, num_shards, equal, recipe) if len(split_index) else []
    shards = tuple(ShardSpec(split_index.split, k, len(bounds), a, b) for k, (a, b) in enumerate(bounds))
    for label in split_index.present_labels():
        labels.text(synsets[label - 1])  # fail before writing if a text is missing
    def key_at(i: int) -> bytes:
        return synset_key(synsets[int(split_index.labels[i]) - 1], split_index.names.raw(i))

    order = md5_order(split_index.split, synset_keys(split_index, synsets), len(split_index), key_at)
    return SplitPlan(split_index, order, shards)


def synset_keys(split_index: SplitIndex, synsets: tuple[str, ...]) -> Iterator[bytes]:
    """`synset_key` of each image of a split, in its order (labels read a block at a time, not one by one)."""
    prefixes = [synset_key(synset, b"") for synset in synsets]
    names = iter(split_index.names.raws())
    for start in range(0, len(split_index), KEY_BLOCK):
        for label in split_index.labels[start:start + KEY_BLOCK].tolist():
            yield prefixes[label - 1] + next(names)
