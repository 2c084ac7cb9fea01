"""The output-format seam: a format's registry entry (`Format`), its `ShardEncoder`; `write_or_keep` does one shard.

A format (`Format`, one entry of `outputs.registry`) decides the file's name, how each record is
encoded and framed, what comes after the last record, a reader's index of the file (DALI's), files
beside the shards (timm's `_info.json`), and holds the rest of what is known of it: its options,
file-name patterns, plan, checker and reader. The code around it is the same for every format and
every engine: read the shard's images a batch at a time, prepare each image once
(`records.image.prepared`), hand it to each format's `ShardEncoder`, write the pieces it returns
(the image bytes are passed through, never copied into a record), hash them, and rename each file
into place when it is complete. Several formats are written from one read of the images. The
classic TFRecord (`outputs.tfrecord.TFRecordFormat`) is the first entry, WebDataset
(`outputs.webdataset`) the second, TFDS's (`outputs.tfds`) the third.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import threading
from abc import ABC, abstractmethod
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, ClassVar, Iterator, Sequence

from ..archives import retry
from ..archives.output import Output
from ..datasets import DEFAULT as DEFAULT_DATASET
from ..datasets.entry import OwnOption
from ..errors import ImageError, OutputError, reason
from ..plan import Plan, ShardSpec
from ..records.spec import RecordSpec, record_specs
from ..progress import Phase, check_stop
from ..records import fixups
from ..records.image import Image, prepared
from ..records.resize import Recipe
from . import checksum as checksums
from .manifest import FileRef, ShardEntry, recheck

if TYPE_CHECKING:
    from ..inspection import Reader
    from .checker import ShardChecker

BATCH = 64  # images fetched together (one concurrent range request batch on remote storage)
RESIZE_THREADS = 2  # threads preparing resized images (`--resize`) for each process or thread that writes shards
# Bytes a record may take beyond its image: the classic's Example (17 features, its text, file name and boxes)
# and TFRecord framing take 300-600 bytes; an image with many boxes a few more.
RECORD_ALLOWANCE = 2048
INDEX_LINE_ALLOWANCE = 1024  # a record's line in a DALI index: offsets, sizes and (webdataset) member names

# The image bytes of a batch of records, in order. A reader may also have an `ahead(batch)` method: asked
# for the next batch while this one is written (local disk: the kernel reads it meanwhile).
Reader = Callable[[list[RecordSpec]], list[bytes]]


class ShardEncoder(ABC):
    """Encodes the records of one shard, in order; a new one per shard (it may keep state, such as offsets)."""

    # Whether the file opens with what its records decide (a count and an offsets table, as MDS's, from `start`):
    # such a shard is written again from its start, without them, when images turn out unusable while it is
    # written (--on-bad-image skip), since its opening counted them.
    opens_with_records: ClassVar[bool] = False

    def attach(self, put: Callable[[Sequence[bytes]], int]) -> None:
        """Given once the shard's file is open, before `start`: what writes pieces into it at once, hashed and counted
        like those the other methods return. An encoder whose library writes the file itself (pyarrow's) passes its
        bytes on as they come, instead of holding them until `record` or `finish` returns. Nothing by default."""

    def start(self, specs: Sequence[RecordSpec], read: Reader) -> Sequence[bytes]:
        """Bytes that open the file before its first record (none for TFRecord), given the records that will follow,
        in order; `read` fetches images ahead (a fix-up file's re-encoded size is not in the plan), and its
        `read.prepared(specs)` gives them prepared, each kept for its record's turn (prepared once)."""
        return ()

    def facts(self) -> dict[str, Any]:
        """What the manifest keeps of the file besides its size and digest, once `finish` was called: its entry's
        `facts`, handed back to `Format.side_files` (MDS's sha1 and xxh64 for its index.json); none by default."""
        return {}

    @abstractmethod
    def record(self, spec: RecordSpec, image: Image) -> Sequence[bytes]:
        """The bytes of one record as pieces to write in order; `image.data` should be one of them, uncopied."""

    def finish(self) -> Sequence[bytes]:
        """Bytes that close the file after its last record (none for TFRecord)."""
        return ()

    def index(self) -> bytes:
        """A reader's index of the file written (DALI's), once `finish` was called; only asked for when the format
        writes one (`Format.index_name`)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the encoder holds (a local temporary file, say); called once the shard is done or failed."""


# A format's own option: `datasets.entry.OwnOption`, the one shape a dataset's and a format's own options share.
FormatOption = OwnOption


class Format(ABC):
    """One output format: ONE entry of the registry (`outputs.registry`), everything about the format in one place.

    Its name and options; the names of its files (shards, DALI indexes, files beside the shards), from which
    resume, --overwrite, the sweep of what killed runs left, stale-file detection and verify's unlisted-file
    check all follow; its plan, where its record order and shards are not the classic's; its encoder; its
    checker for `verify`; its reader for `inspect`; the size bounds `plan` shows. A format lives in a package
    of its own (`outputs/tfrecord/`: the entry in `__init__.py`, `write.py`, `check.py`, `inspect.py`) and
    registers its entry with `@registry.register`; nothing else names it.
    """

    name: ClassVar[str]  # as the user names it (`--format NAME`), e.g. "tfrecord"
    rank: ClassVar[int] = 100  # its place among the formats: their files are written and listed in this order
    summary: ClassVar[str] = ""  # what it is, in a few words (`--format`'s help)

    # Its options: each becomes a field of `options.Options` (a flag, a config key, a manifest entry), refused by
    # `registry.check` without the format and checked by `check_options` with it.
    options: ClassVar[dict[str, FormatOption]] = {}  # the options only it reads, by field name
    no_dali_index: ClassVar[str | None] = None  # why it has no DALI index (`--dali-index` refused), or None
    local_only: ClassVar[bool] = False  # runs on the local engine only (`--engine beam` refused)

    # The names of its files, relative to `out`.
    shard_pattern: ClassVar[str]  # a regex of every name `file_name` gives; its groups 1, 2, 3: split, number, of
    side_pattern: ClassVar[str | None] = None  # a regex of the files `side_files` writes, any version of them
    folders: ClassVar[dict[str, int]] = {}  # folders below `out` its files lie in, each with how deep they go

    # Its plan: the classic's, unless it has an order and sharding of its own (then it is written alone).
    own_order: ClassVar[str | None] = None  # whose order and sharding its `plan` follows ("TFDS's"), or None
    walk: ClassVar[dict[str, Any]] = {}  # how the downloads are walked for it (`index.build.build_index` keywords)

    # Its checker for `verify` and its reader for `inspect`, as "module:Class" in its own package ("check:X"),
    # imported only when asked for (or override `checker()` / `reader()`).
    checks: ClassVar[str | None] = None
    reads: ClassVar[str | None] = None

    # Its records.
    allowance: ClassVar[int] = RECORD_ALLOWANCE  # at most how many bytes a record takes beyond its image
    stores_boxes: ClassVar[bool] = True  # whether a record holds the image's bounding boxes (counted in the manifest)
    stored_label: ClassVar[tuple[str, int]] = ("image/class/label", 0)  # its label, and how far below the classic's
    resize: Recipe | None = None  # the run's `--resize` recipe (set by `registry.make`): what `prepare` does to images

    def __init__(self, dali_index: bool = False) -> None:
        self.dali_index = dali_index

    @classmethod
    def from_options(cls, options: Any) -> "Format":
        """The format as these `options.Options` ask for it (`--dali-index`, and its own options)."""
        return cls(options.dali_index)

    @classmethod
    def check_options(cls, options: Any, chosen: bool) -> None:
        """Raise `ConfigError` for a value of one of its own options that no run takes, whether the format is
        `chosen` or not (the registry refuses its options without it, `--dali-index` and the engine)."""

    @classmethod
    def describe(cls, options: dict[str, Any]) -> str:
        """The format as `inspect` shows a manifest's: its name, and what its own options chose there."""
        return cls.name

    @classmethod
    def needs(cls, options: Any) -> list[tuple[str, str, str | None, str]]:
        """The optional packages a run with these options needs for it (`extras.Need`'s module, pip name, extra,
        and what asks for it), all checked before anything is read."""
        return []

    def plan(self, options: Any, inputs: Any, index: Any) -> Plan | None:
        """Its own plan of the index (`own_order`: record order, shard boundaries, fix-ups), or None for the
        classic's (`plan.make_plan`). `inputs` are the engines' `pipeline.Inputs` (the label data, the downloads)."""
        return None

    @classmethod
    def parse_name(cls, name: str) -> tuple[str, int, int] | None:
        """(split, number, of) of one of its shard file names, or None for any other name."""
        m = re.fullmatch(cls.shard_pattern, name)
        return (m[1], int(m[2]), int(m[3])) if m else None

    @classmethod
    def checker(cls) -> type[ShardChecker]:
        """The class that reads and checks its shards for `verify` (a subclass of `checker.ShardChecker`): the one
        `checks` names, imported on first use."""
        if cls.checks is None:
            raise NotImplementedError(f"format {cls.name} has no checker")
        return _named(cls, cls.checks)

    @classmethod
    def reader(cls) -> Reader:
        """What takes its files for `inspect` (an `inspection.Reader`): an instance of the class `reads` names."""
        if cls.reads is None:
            raise NotImplementedError(f"format {cls.name} has no reader")
        return _named(cls, cls.reads)()

    @abstractmethod
    def file_name(self, shard: ShardSpec) -> str:
        """The shard's file name in the output folder (one `shard_pattern` matches)."""

    @abstractmethod
    def encoder(self, shard: ShardSpec) -> ShardEncoder:
        """A fresh encoder for this shard's records."""

    def encoder_for(self, plan: Plan, shard: ShardSpec) -> ShardEncoder:
        """A fresh encoder for this shard, made by `write_shard` with the run's plan: a format whose files hold what
        the whole plan decides (every class's name, a split's size) overrides this; by default `encoder(shard)`."""
        return self.encoder(shard)

    def index_name(self, shard: ShardSpec) -> str | None:
        """The name of the shard's DALI index file (its file name + `.idx`), or None when none is written."""
        return self.file_name(shard) + ".idx" if self.dali_index and self.no_dali_index is None else None

    def file_names(self, shards: Sequence[ShardSpec]) -> list[str]:
        """Every file these shards become: shard files and their index files."""
        names = [self.file_name(s) for s in shards]
        return names + [n for s in shards if (n := self.index_name(s))]

    def most_bytes(self, plan: Plan, shards: Sequence[ShardSpec]) -> int:
        """At most how many bytes these shards' files take: the images plus a generous allowance per record for
        the format's framing and metadata (and index line), and a re-encoded fix-up file taken as up to 4 times
        its size."""
        total = 0
        for shard in shards:
            split = plan.splits[shard.split]
            rows = split.order[shard.start:shard.stop]
            per_record = self.allowance + (INDEX_LINE_ALLOWANCE if self.dali_index else 0)
            total += int(split.index.sizes[rows].sum()) + per_record * len(rows)
        for name, size in plan.fixup_sizes():
            total += 3 * size
        return total

    def size_bounds(self, plan: Plan, shard: ShardSpec) -> tuple[int, int]:
        """(smallest, largest) bytes the shard's file may take, as `streamprep plan` shows them: at least its
        images, at most `most_bytes`."""
        split = plan.splits[shard.split]
        images = int(split.index.sizes[split.order[shard.start:shard.stop]].sum())
        return images, self.most_bytes(plan, [shard])

    def side_files(self, plan: Plan, entries: Sequence[ShardEntry]) -> dict[str, bytes]:
        """Files the format writes beside the shards once all are finished (their names and bytes)."""
        return {}

    def side_file_names(self) -> list[str]:
        """The names `side_files` may write (for sweeping and removing)."""
        return []

    def prepare(self, spec: RecordSpec, data: bytes) -> Image:
        """The image this format's records hold, made once per image: by default the classic's
        (`records.image.prepared`: its fix-ups and its decoder's checks). Formats written together prepare alike; a
        format with a rule of its own (TFDS's) is written alone."""
        return prepared(spec, data, self.resize)

    def refuse(self, labels: Any) -> None:
        """Raise (`LabelDataError`, `ConfigError`) before anything is read or written if the format cannot hold what
        these label data (`index.labels.LabelData`) would give it faithfully; nothing by default."""

    @classmethod
    def refuse_dataset(cls, dataset: str) -> str | None:
        """Why it cannot write `--dataset` `dataset` (words that follow "--format NAME"), or None. By default a format
        with an order of its own (`own_order`) writes only the default dataset's own build."""
        if cls.own_order and dataset != DEFAULT_DATASET:
            return (f"writes {DEFAULT_DATASET}'s own build ({cls.own_order} members and order), not --dataset "
                    f"{dataset}")
        return None


def planned_bounds(fmt: Format, plan: Plan, shard: ShardSpec) -> tuple[int, int]:
    """`fmt.size_bounds` as `plan` shows them: with a `--resize` recipe, each image's download bytes replaced by
    (none, the recipe's estimate, `Recipe.most_bytes`), with 8 bytes a record for the lengths that change with it."""
    low, high = fmt.size_bounds(plan, shard)
    if fmt.resize is None:
        return low, high
    sizes = _shard_sizes(plan, shard)
    estimate = fmt.resize.most_bytes(sizes)
    return max(0, low - int(sizes.sum()) - 8 * len(sizes)), high - int(sizes.sum()) + estimate + 8 * len(sizes)


def planned_bytes(fmt: Format, plan: Plan, shards: Sequence[ShardSpec]) -> int:
    """`fmt.most_bytes` as the space check takes it: with a `--resize` recipe, each image's download bytes replaced
    by the recipe's estimate (`Recipe.most_bytes`)."""
    total = fmt.most_bytes(plan, shards)
    if fmt.resize is None:
        return total
    for shard in shards:
        sizes = _shard_sizes(plan, shard)
        total += fmt.resize.most_bytes(sizes) - int(sizes.sum()) + 8 * len(sizes)
    return total


def _shard_sizes(plan: Plan, shard: ShardSpec) -> Any:
    split = plan.splits[shard.split]
    return split.index.sizes[split.order[shard.start:shard.stop]]


def _named(fmt: type[Format], where: str) -> Any:
    """The class `where` ("module:Class") names, its module taken in the format's own package."""
    module, _, name = where.partition(":")
    return getattr(importlib.import_module(f".{module}", fmt.__module__), name)


def prepare_split(plan: Plan, split: str) -> None:
    """Called once before a split's shards are written, in the process that writes them: if the split holds a
    fix-up file name, check that this machine's codecs re-encode fix-up files as TensorFlow does (a warning if
    not)."""
    if fixups.named_in(plan.splits[split].index.names):  # a NameTable: `in` searches whole names
        fixups.check_codecs()


@dataclass
class ShardResult:
    """One shard done, its file in every format: written by this run, or kept from an earlier one (`kept`)."""

    shard: ShardSpec
    entries: list[ShardEntry]  # one per format, in the order of the formats
    kept: bool = False
    checked: str | None = None  # kept: the checksum its files were checked with (the earlier manifest's)

    @property
    def records(self) -> int:
        return self.entries[0].records

    @property
    def bytes(self) -> int:
        return sum(e.bytes for e in self.entries)


def _batches(specs: list[RecordSpec], read: Reader, prefetch: bool) -> Iterator[tuple[list[RecordSpec], list[bytes]]]:
    """The shard's images a batch at a time; with `prefetch`, the next batch is fetched while this one is encoded."""
    batches = [specs[i:i + BATCH] for i in range(0, len(specs), BATCH)]
    if not prefetch or len(batches) < 2:
        ahead = getattr(read, "ahead", None)  # a reader that can have the next batch read in the background
        for i, batch in enumerate(batches):
            if ahead is not None and i + 1 < len(batches):
                ahead(batches[i + 1])
            yield batch, read(batch)
        return
    with ThreadPoolExecutor(1, thread_name_prefix="prefetch") as pool:
        pending = pool.submit(read, batches[0])
        for i, batch in enumerate(batches):
            datas = pending.result()
            if i + 1 < len(batches):
                pending = pool.submit(read, batches[i + 1])
            yield batch, datas


Check = Callable[[RecordSpec, bytes], None]  # raises ImageError for an image that may not be written


@dataclass
class _File:
    """One format's file of the shard being written."""

    fmt: Format
    encoder: ShardEncoder
    entry: ShardEntry
    out: BinaryIO
    digest: checksums.Hasher  # under the entry's checksum

    def put(self, pieces: Sequence[bytes]) -> int:
        n = 0
        for piece in pieces:  # the image bytes are written as read, never copied into a record
            self.out.write(piece)
            self.digest.update(piece)
            n += len(piece)
        self.entry.bytes += n
        return n


def write_shard(fmts: Sequence[Format], plan: Plan, shard: ShardSpec, output: Output, read: Reader,
                phase: Phase | None = None, prefetch: bool = False, skip_bad_images: bool = False,
                stop: threading.Event | None = None, check_image: Check | None = None,
                checksum: str = checksums.DEFAULT) -> list[ShardEntry]:
    """Write one shard in every format, each file complete under its final name (and its index, if the format
    writes one); their manifest entries, each file's digest under `checksum`. Needs only the plan and a reader:
    each image is read once.

    An image that cannot be used (`records.image.prepared` or `check_image` raises `ImageError`) stops
    the run, or with `skip_bad_images` is left out of every format and listed. A file that opens with what its
    records decide (`ShardEncoder.opens_with_records`) cannot leave out a record it counted: the shard is then
    written again from its start without the unusable images (their images read twice; rare).
    """
    left_out: dict[str, dict[str, str]] = {}  # member -> its `skipped` entry: unusable images an earlier pass found
    while True:
        try:
            return _write_pass(fmts, plan, shard, output, read, phase, prefetch, skip_bad_images, stop, check_image,
                               left_out, checksum)
        except _LeftOut:
            continue  # `left_out` grew: each pass leaves out more images, so this ends


class _LeftOut(Exception):
    """A pass found images unusable that a file's opening counted (`left_out` holds them): write the shard again."""


def _usable(fmt: Format, spec: RecordSpec, data: bytes, check_image: Check | None) -> Image:
    """The image a record holds; `ImageError` if it may not be written."""
    if check_image is not None:
        check_image(spec, data)
    return fmt.prepare(spec, data)


class _Early:
    """The shard's reader as `ShardEncoder.start` gets it: called, it reads; `prepared(specs)` also prepares those
    records' images as the pass does (`_usable`, with its first format), each kept for its record's turn, so an image
    an encoder needs ahead (a fix-up file, re-encoded for its size) is prepared once in the pass, not twice.

    With a `--resize` recipe the images are prepared by the writer's resize threads (`_resize_pool`: decoding,
    resampling and encoding release the interpreter lock) while the pass frames and writes the records before them:
    `batch` hands a batch's images to the threads and returns, `usable` waits for each at its record's turn."""

    def __init__(self, read: Reader, fmt: Format, check_image: Check | None) -> None:
        self.read, self.fmt, self.check_image = read, fmt, check_image
        # by id(spec): the pass's specs live until it ends; a Future while the resize threads prepare it
        self.kept: dict[int, Image | ImageError | Future] = {}

    def __call__(self, specs: list[RecordSpec]) -> list[bytes]:
        return self.read(specs)

    def prepared(self, specs: list[RecordSpec]) -> list[Image | ImageError]:
        """Each record's image, or the `ImageError` that makes it unusable (raised again at the record's turn)."""
        todo = [s for s in specs if id(s) not in self.kept]
        datas = self.read(todo) if todo else []
        self.batch(todo, datas)  # with a recipe, on the resize threads
        for spec, data in zip(todo, datas):
            if id(spec) not in self.kept:
                self.kept[id(spec)] = self._prepare(spec, data)
        return [self._settled(id(s)) for s in specs]

    def batch(self, specs: list[RecordSpec], datas: list[bytes]) -> None:
        """With a `--resize` recipe, a batch's images handed to the resize threads, each kept for its record's turn;
        nothing otherwise (each is prepared at its turn)."""
        if self.fmt.resize is None:
            return
        pool = _resize_pool()
        for spec, data in zip(specs, datas):
            if id(spec) not in self.kept:
                self.kept[id(spec)] = pool.submit(self._prepare, spec, data)

    def _prepare(self, spec: RecordSpec, data: bytes) -> Image | ImageError:
        try:
            return _usable(self.fmt, spec, data, self.check_image)
        except ImageError as e:
            return e

    def _settled(self, key: int) -> Image | ImageError:
        found = self.kept[key]
        if isinstance(found, Future):
            found = self.kept[key] = found.result()
        return found

    def usable(self, spec: RecordSpec, data: bytes) -> Image:
        """The record's image at its turn: as prepared ahead, else now; `ImageError` if it may not be written."""
        if id(spec) not in self.kept:
            return _usable(self.fmt, spec, data, self.check_image)
        found = self._settled(id(spec))
        del self.kept[id(spec)]
        if isinstance(found, ImageError):
            raise found
        return found


_local = threading.local()


def _resize_pool() -> ThreadPoolExecutor:
    """The `RESIZE_THREADS` threads that prepare resized images for the calling writer (a forked process, or a thread
    of the threads engine), made on first use and kept for all its shards: threads do not survive a fork, so a
    process makes its own."""
    pool = getattr(_local, "pool", None)
    if pool is None or _local.pid != os.getpid():
        _local.pool, _local.pid = ThreadPoolExecutor(RESIZE_THREADS, thread_name_prefix="resize"), os.getpid()
    return _local.pool


def written_sizes(specs: Sequence[RecordSpec], read: Any, known: dict[str, int] | None = None,
                  recipe: Recipe | None = None) -> list[int]:
    """Each record's image size as it will be written, for a format whose file opens with its records' sizes (MDS's
    offsets, Parquet's page headers): the download's; a fix-up file's once re-encoded, as the plan knows it
    (`known`, `Plan.fixed_sizes`, by member) or else prepared ahead; with a `--resize` recipe, every image's, prepared
    ahead. Prepared by the shard's reader where it can (`read.prepared`, `_Early`: each kept for its record's turn,
    so made once), else read and prepared here. An image that cannot be prepared keeps its download's size: it is
    found again at its turn, and the run stops or the shard is written again without it."""
    known = known or {}
    fixed: dict[int, int] = {} if recipe is not None else {id(s): known[s.member] for s in specs
                                                            if s.fixup and s.member in known}
    ahead = [s for s in specs if (s.fixup or recipe is not None) and id(s) not in fixed]
    for spec, image in zip(ahead, _prepared_ahead(ahead, read, recipe) if ahead else []):
        if isinstance(image, Image):
            fixed[id(spec)] = len(image.data)
    return [fixed.get(id(s), s.size) for s in specs]


def _prepared_ahead(specs: list[RecordSpec], read: Any, recipe: Recipe | None) -> list[Image | ImageError]:
    """These records' images as prepared for writing (or why each cannot be): by the shard's reader where it prepares
    them (`read.prepared`), else read and prepared here."""
    early = getattr(read, "prepared", None)
    if early is not None:
        return early(specs)
    images: list[Image | ImageError] = []
    for spec, data in zip(specs, read(specs)):
        try:
            images.append(prepared(spec, data, recipe))
        except ImageError as e:
            images.append(e)
    return images


def _skip(files: list[_File], spec: RecordSpec, error: ImageError, skip_bad_images: bool) -> dict[str, str]:
    """An unusable image, listed as left out in every file (unless `skip_bad_images`: then `error` is raised)."""
    if not skip_bad_images and not getattr(error, "always_skipped", False):  # --min-side's drops: always listed
        raise error
    skipped = {"member": spec.member, "reason": reason(spec.member, error)}
    for file in files:
        file.entry.skipped.append(dict(skipped))
    return skipped


def _put_record(files: list[_File], spec: RecordSpec, image: Image) -> int:
    """One record into every format's file; the bytes written."""
    nbytes = 0
    for file in files:
        nbytes += file.put(file.encoder.record(spec, image))
        file.entry.records += 1
        file.entry.boxes += len(spec.boxes) if file.fmt.stores_boxes else 0
        if spec.fixup:
            file.entry.fixups.append(spec.filename)
    return nbytes


def _open_file(fmt: Format, plan: Plan, shard: ShardSpec, output: Output, stack: contextlib.ExitStack,
               skipped: list[dict[str, str]], checksum: str) -> _File:
    """One format's file of the shard, open under its temporary name until `stack` closes, hashed with `checksum`."""
    encoder = fmt.encoder_for(plan, shard)
    stack.callback(encoder.close)
    entry = ShardEntry(fmt.file_name(shard), shard.split, 0, 0, "", skipped=[dict(s) for s in skipped],
                       checksum=checksum)
    file = _File(fmt, encoder, entry, stack.enter_context(output.atomic(fmt.file_name(shard))),
                 checksums.hasher(checksum))
    encoder.attach(file.put)
    return file


def _write_pass(fmts: Sequence[Format], plan: Plan, shard: ShardSpec, output: Output, read: Reader,
                phase: Phase | None, prefetch: bool, skip_bad_images: bool, stop: threading.Event | None,
                check_image: Check | None, left_out: dict[str, dict[str, str]], checksum: str) -> list[ShardEntry]:
    """`write_shard` without the images in `left_out`; `_LeftOut` (and `left_out` grown) if it finds unusable
    images that a file's opening counted, then no file is put in place."""
    specs = [s for s in record_specs(plan, shard) if s.member not in left_out]
    with contextlib.ExitStack() as stack:
        files = [_open_file(fmt, plan, shard, output, stack, list(left_out.values()), checksum) for fmt in fmts]
        early = _Early(read, fmts[0], check_image)
        for file in files:
            file.put(file.encoder.start(specs, early))
        counted = any(file.encoder.opens_with_records for file in files)
        found = False  # unusable images the files' openings counted: this pass only looks for the others
        for batch, datas in _batches(specs, read, prefetch):
            check_stop(stop)
            nbytes = 0
            early.batch(batch, datas)
            for spec, data in zip(batch, datas):
                try:
                    image = early.usable(spec, data)
                except ImageError as e:
                    skipped = _skip(files, spec, e, skip_bad_images)
                    if counted:
                        left_out[spec.member], found = skipped, True
                    continue
                if not found:
                    nbytes += _put_record(files, spec, image)
            if phase:
                phase.advance(len(batch), nbytes)
        if found:
            raise _LeftOut  # inside the stack: no file of this pass is put in place
        for file in files:
            file.put(file.encoder.finish())
            file.entry.digest = file.digest.hexdigest()
            file.entry.facts = file.encoder.facts()
    for file in files:  # each index after its shard is in place: an index never describes a file not yet there
        name = file.fmt.index_name(shard)
        if name:
            data = file.encoder.index()
            with output.atomic(name) as f:
                f.write(data)
            file.entry.index = FileRef(name, len(data), checksums.digest(checksum, data), checksum)
    return [file.entry for file in files]


def write_or_keep(fmts: Sequence[Format], plan: Plan, shard: ShardSpec, output: Output, read: Reader,
                  keep: dict[str, ShardEntry], phase: Phase | None = None, prefetch: bool = False,
                  skip_bad_images: bool = False, stop: threading.Event | None = None,
                  check_image: Check | None = None, checksum: str = checksums.DEFAULT) -> ShardResult:
    """One shard, by either engine: kept if an earlier run finished its file in every format (each with the size
    and digest of its manifest entry, its index too), else written in every format; a write that storage fails
    in a way a retry may cure starts the shard again. Every entry returned holds digests under `checksum`: a kept
    file checked against an earlier manifest of another algorithm is hashed with both in one read."""
    kept = _kept(output, [keep.get(fmt.file_name(shard)) for fmt in fmts], checksum)
    if kept is not None:
        if phase:
            phase.advance(kept[0].records + len(kept[0].skipped), sum(e.bytes for e in kept), kept=True)
        return ShardResult(shard, kept, kept=True, checked=keep[kept[0].name].checksum)
    check_stop(stop)
    written = retry.call(lambda: f"{output.path(fmts[0].file_name(shard))}: cannot write",
                         lambda: write_shard(fmts, plan, shard, output, read, phase, prefetch, skip_bad_images, stop,
                                             check_image, checksum),
                         error=OutputError)
    return ShardResult(shard, written)


def _kept(output: Output, entries: list[ShardEntry | None], checksum: str) -> list[ShardEntry] | None:
    """The entries of a shard's files an earlier run finished, each checked and its digests under `checksum`; None
    as soon as one is not there as recorded (then the shard is written)."""
    found = []
    for entry in entries:
        again = None if entry is None else recheck(output, entry, checksum)
        if again is None:
            return None
        found.append(again)
    return found
