"""Pure planning: the index and the sharding in, frozen shard specs (which image goes where) out."""

from __future__ import annotations

import dataclasses
import random
from array import array
from dataclasses import dataclass, field

import numpy as np

from . import datasets
from .datasets import ILSVRC2012, Fixups
from .errors import ConfigError
from .index.boxes import BoxTable
from .index.images import DatasetIndex, SplitIndex
from .index.labels import LabelData

SHUFFLE_SEED = 12345
# A shard's name stem, `train-00000-of-01024` (split, number, count): the one pattern the formats' file names,
# the manifest's entries, resume and verify all match.
SHARD_STEM = r"(train|validation)-(\d{5})-of-(\d{5})"
MAX_SHARDS = 100_000  # per split: every shard is a file, even an empty one (the classic writes 1024 and 128)
# The classic's 23 files that are not RGB JPEGs, re-encoded (`records.fixups`): which ones is decided by name.
(PNG_NAME,) = ILSVRC2012.fixups.png
CMYK_NAMES = ILSVRC2012.fixups.cmyk


@dataclass(frozen=True)
class Sharding:
    """How each split is cut: shard counts, and the thread count that places the classic's cuts; or, with `equal`
    (`--equal-shards`), the balanced cut, shards of counts that differ by at most one (`equal_bounds`)."""

    train_shards: int = 1024
    validation_shards: int = 128
    classic_threads: int = 8
    equal: bool = False

    def shards(self, split: str) -> int:
        return self.train_shards if split == "train" else self.validation_shards

    def bounds(self, split: str, n: int) -> list[tuple[int, int]]:
        """Start and stop of each shard of a split of `n` records: the classic's cut, or the balanced one."""
        if self.equal:
            return equal_bounds(n, self.shards(split))
        return shard_bounds(n, self.shards(split), self.classic_threads)

    def layout(self) -> dict[str, int | bool]:
        """What the run record (the manifest's `run`) holds of the layout: the counts and what places the cuts. A
        classic run's is the one it always was (its outputs still resume); an equal-count run's names that cut,
        and not the threads, which place none of its cuts."""
        if self.equal:
            return {"train_shards": self.train_shards, "validation_shards": self.validation_shards,
                    "equal_shards": True}
        return {"train_shards": self.train_shards, "validation_shards": self.validation_shards,
                "classic_threads": self.classic_threads}

    def every_shard(self) -> list["ShardSpec"]:
        """Every shard of both splits, without its slice: for names (what a killed run may have left)."""
        return [ShardSpec(split, i, self.shards(split), 0, 0)
                for split in ("validation", "train") for i in range(self.shards(split))]

    def check(self) -> None:
        for flag, value in (("--train-shards", self.train_shards), ("--validation-shards", self.validation_shards),
                            ("--classic-threads", self.classic_threads)):
            if not 1 <= value <= MAX_SHARDS:
                raise ConfigError(f"{flag[2:].replace('-', '_')} ({flag}) must be from 1 to {MAX_SHARDS:,}, got {value}")
        if self.equal:  # the balanced cut takes any count
            return
        for flag, value in (("--train-shards", self.train_shards), ("--validation-shards", self.validation_shards)):
            if value % self.classic_threads:
                raise ConfigError(f"{flag} {value} is not a multiple of --classic-threads {self.classic_threads}, "
                                  "as the classic's sharding requires; change one of them (or pass --equal-shards, "
                                  "whose cut takes any count)")


@dataclass(frozen=True)
class ShardSpec:
    """One output shard: its split, its number of `of` shards, and the slice of the shuffled order it holds."""

    split: str
    number: int
    of: int  # shards in the split
    start: int
    stop: int

    @property
    def name(self) -> str:
        """The classic's name, `train-00000-of-01024`: the stem every output format names its file after."""
        return "%s-%.5d-of-%.5d" % (self.split, self.number, self.of)

    @property
    def images(self) -> int:
        return self.stop - self.start


def fixup_kind(filename: str, fixups: Fixups = ILSVRC2012.fixups) -> str | None:
    """'png', 'cmyk' or None, by the classic's own tests (a substring test for the PNG) on a dataset's fix-up names
    (ILSVRC2012's unless given: another dataset's may be none)."""
    if any(png in filename for png in fixups.png):
        return "png"
    if filename in fixups.cmyk:
        return "cmyk"
    return None


def fixup_rows(split_index: SplitIndex, fixups: Fixups = ILSVRC2012.fixups) -> list[int]:
    """The rows of a split's images the classic re-encodes, found by searching the names' stored bytes
    (`NameTable.rows_containing`: no loop over every image)."""
    names = split_index.names
    rows: set[int] = set()
    for fixup in fixups.names:
        rows.update(names.rows_containing(fixup.encode()))
    return [i for i in sorted(rows) if fixup_kind(names[i], fixups)]


def classic_order(n: int) -> np.ndarray:
    """The classic's shuffle: `random.seed(12345); random.shuffle(list(range(n)))`, as uint32 (4 bytes an entry;
    int64 from 2**32 images)."""
    wide = n >= 2 ** 32
    order = array("q" if wide else "I")
    order.frombytes(memoryview(np.arange(n, dtype=np.int64 if wide else np.uint32)).cast("B"))
    # the same swaps as on a list (shuffle only indexes it), 4 bytes an entry, not 36, and no copy of it after
    rng = random.Random(SHUFFLE_SEED)
    rng.shuffle(order)
    return np.frombuffer(order, dtype=np.int64 if wide else np.uint32)


def shard_bounds(n: int, shards: int, threads: int) -> list[tuple[int, int]]:
    """Start and stop of each shard, cut as the classic's threads cut them."""
    spacing = np.linspace(0, n, threads + 1).astype(int)
    per_thread = shards // threads
    bounds = []
    for t in range(threads):
        cuts = np.linspace(spacing[t], spacing[t + 1], per_thread + 1).astype(int)
        bounds.extend((int(cuts[s]), int(cuts[s + 1])) for s in range(per_thread))
    return bounds


def equal_bounds(n: int, shards: int) -> list[tuple[int, int]]:
    """Start and stop of each shard, cut so that their counts differ by at most one (`--equal-shards`): shard `j`
    holds records `[j*n//shards, (j+1)*n//shards)` of the split's order. The larger shards are spread evenly (not
    put first, as `numpy.array_split` puts them), so that any run of consecutive shards differs by at most one
    from another run as long."""
    return [(j * n // shards, (j + 1) * n // shards) for j in range(shards)]


@dataclass(frozen=True, eq=False)
class SplitPlan:
    index: SplitIndex
    order: np.ndarray
    shards: tuple[ShardSpec, ...]


@dataclass(frozen=True, eq=False)
class Plan:
    """Which image goes into which shard, in which position; picklable, so any process can write any shard."""

    splits: dict[str, SplitPlan]
    labels: LabelData
    boxes: BoxTable
    sharding: Sharding
    fixed_sizes: dict[str, int] = field(default_factory=dict)  # re-encoded fix-up files' sizes, when known
    split_boxes: dict[str, BoxTable] = field(default_factory=dict)  # a split's own boxes (--bbox-val: validation)
    fixups: Fixups = ILSVRC2012.fixups  # the names re-encoded: the walked dataset's (`DatasetIndex.dataset`)
    dataset: str = ILSVRC2012.name  # the walked dataset (`datasets.get(plan.dataset)`)
    # each split's rows with a fix-up name, found once (`streamprep plan` asks for every shard's bounds)
    _fixup_rows: dict[str, tuple[SplitIndex, Fixups, list[int]]] = field(default_factory=dict, repr=False)

    def boxes_of(self, split: str) -> BoxTable:
        """The boxes a split's records carry: its own (`split_boxes`), else the classic's, looked up by name."""
        return self.split_boxes.get(split, self.boxes)

    @property
    def shards(self) -> tuple[ShardSpec, ...]:
        return tuple(s for split in self.splits.values() for s in split.shards)

    def fixup_kind(self, split: str, name: str) -> str | None:
        """What image `name` of `split` is re-encoded as ('png', 'cmyk') or None: the classic's rule
        (`fixup_kind`) on the dataset's names; a plan of another order may have its own (TFDS's)."""
        return fixup_kind(name, self.fixups)

    def fixup_sizes(self) -> list[tuple[str, int]]:
        """(file name, size in the download) of every image this plan re-encodes."""
        return [(split.index.names[i], int(split.index.sizes[i])) for split in self.splits.values()
                for i in self.rows_with_fixup_names(split.index)
                if self.fixup_kind(split.index.split, split.index.names[i])]

    def rows_with_fixup_names(self, index: SplitIndex) -> list[int]:
        """`fixup_rows` of a split's index, searched once per plan."""
        found = self._fixup_rows.get(index.split)
        if found is None or found[0] is not index or found[1] is not self.fixups:
            found = self._fixup_rows[index.split] = (index, self.fixups, fixup_rows(index, self.fixups))
        return found[2]

    def archive(self, split: str) -> str:
        return self.splits[split].index.archive


def make_plan(index: DatasetIndex, labels: LabelData, sharding: Sharding) -> Plan:
    """Shuffle each split as the classic does and cut it into shards as the classic does, or with `sharding.equal`
    into shards whose counts differ by at most one (the same order either way). The fix-ups are the walked
    dataset's; the labels number `index.synsets` when the walk chose the classes (ImageNet-21k's recipe)."""
    sharding.check()
    if index.synsets is not None:
        labels = dataclasses.replace(labels, synsets=index.synsets)
    splits = {}
    for split_index in index.splits:
        n, count = len(split_index), sharding.shards(split_index.split)
        bounds = sharding.bounds(split_index.split, n)
        shards = tuple(ShardSpec(split_index.split, k, count, a, b) for k, (a, b) in enumerate(bounds))
        splits[split_index.split] = SplitPlan(split_index, classic_order(n), shards)
    for split_index in index.splits:
        for label in split_index.present_labels():
            labels.text(labels.synsets[label - 1])  # fail before writing if a text is missing
    return Plan(splits, labels, index.boxes, sharding, split_boxes=dict(index.split_boxes),
                fixups=datasets.get(index.dataset).fixups, dataset=index.dataset)
