"""The index: every image the classic (or TFDS's builder) uses, where its bytes sit, every box; nothing decoded."""

from __future__ import annotations

import bisect
import ctypes
import logging
import posixpath
import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, TypeVar

import numpy as np

from ..archives.storage import Source, sequential_reader
from ..archives.walk import inner_members, members
from ..datasets import ILSVRC2012, Dataset
from .boxes import BoxTable
from .nametable import Filler, NameTable
from ..errors import ArchiveError
from .labels import LabelData
from ..progress import Callback, Phase, check_stop
from ..archives.tarscan import ReadAt, TarMember, normalize

# The walks below take the dataset's rules (which names are images, which class tar holds which synset, which image a
# validation label line labels) from the entry they are given (`datasets`), ILSVRC2012's by default.
VALIDATION_NAME = ILSVRC2012.members.validation_image  # the default dataset's, for the classic folder layout
EXAMPLES_KEPT = 5
SIZES_32 = 2 ** 32  # image sizes below this are held as uint32
log = logging.getLogger(__name__)
T, R = TypeVar("T"), TypeVar("R")


@dataclass
class Ignored:
    """Members left out on purpose because the classic would not use them: counted by reason, a few examples each."""

    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, ref: str, reason: str) -> None:
        """Count one; the examples kept are the first few by name, whatever order threads add them in."""
        with self._lock:
            self.counts[reason] += 1
            kept = self.examples[reason]
            if len(kept) < EXAMPLES_KEPT or ref < kept[-1]:
                bisect.insort(kept, ref)
                del kept[EXAMPLES_KEPT:]

    def merge(self, other: "Ignored") -> None:
        with self._lock:
            for reason, count in other.counts.items():
                self.counts[reason] += count
                self.examples[reason] = sorted(self.examples[reason] + other.examples[reason])[:EXAMPLES_KEPT]

    def state(self) -> dict[str, Any]:
        """Plain data (JSON, pickle): to save with the index, or to send from another process or worker."""
        with self._lock:
            return {"counts": dict(self.counts), "examples": {k: list(v) for k, v in self.examples.items()}}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "Ignored":
        ignored = cls()
        ignored.counts.update(state["counts"])
        ignored.examples.update({k: list(v) for k, v in state["examples"].items()})
        return ignored


@dataclass
class Skipped:
    """Bad input files left out under a skip policy (`on_bad_image`/`on_bad_xml` = skip): every one listed."""

    items: list[dict[str, str]] = field(default_factory=list)  # {"member": archive!member, "reason": ...}
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, ref: str, reason: str) -> None:
        with self._lock:
            self.items.append({"member": ref, "reason": reason})

    def merge(self, other: "Skipped") -> None:
        with self._lock:
            self.items.extend(other.items)


@dataclass(frozen=True, eq=False)
class SplitIndex:
    """One split's images in the classic's list order: by synset-file order, then file name."""

    split: str
    archive: str
    names: NameTable
    labels: np.ndarray  # int32, 1-based classic labels
    offsets: np.ndarray  # int64, where each image's bytes start in the archive
    sizes: np.ndarray  # uint32 (int64 if one is 4 GiB or more)
    containers: dict[int, str] = field(default_factory=dict)  # label -> inner tar member (train)

    def __len__(self) -> int:
        return len(self.names)

    def member(self, i: int, name: str | None = None, label: int | None = None) -> str:
        """`archive!container!name` of image `i` (its name and label, where the caller has them, not looked up)."""
        container = self.containers.get(int(self.labels[i]) if label is None else label)
        inner = f"!{container}" if container else ""
        return f"{self.archive}{inner}!{self.names[i] if name is None else name}"

    def present_labels(self) -> list[int]:
        return [int(x) for x in np.unique(self.labels)]


@dataclass(frozen=True, eq=False)
class DatasetIndex:
    """Both splits' images, the bounding boxes, and the members ignored or skipped while walking."""

    splits: tuple[SplitIndex, ...]
    boxes: BoxTable
    ignored: Ignored
    skipped: Skipped = field(default_factory=Skipped)
    split_boxes: dict[str, BoxTable] = field(default_factory=dict)  # a split's own boxes (--bbox-val: validation)
    dataset: str = ILSVRC2012.name  # whose rules walked it: the plan applies that dataset's fix-ups
    synsets: tuple[str, ...] | None = None  # the classes its labels number (label k: synsets[k - 1]) when the walk
    # chose them (ImageNet-21k's recipe keeps classes by their counts); None: the label data's synsets


@dataclass
class _Group:
    """The images of one synset, sorted by name."""

    names: NameTable
    offsets: np.ndarray  # int64
    sizes: np.ndarray  # uint32 (int64 if one is 4 GiB or more: `sizes_array`)

    @classmethod
    def of(cls, found: dict[str, TarMember]) -> "_Group":
        names = sorted(found)
        return cls(NameTable.of(names), np.fromiter((found[n].offset for n in names), np.int64, len(names)),
                   sizes_array([found[n].size for n in names]))

    @classmethod
    def listed(cls, found: list[tuple[str, TarMember]]) -> "_Group":
        """From (name, member) pairs, sorted by name; a name held twice is kept twice (for the plan to refuse)."""
        found = sorted(found, key=lambda item: item[0])
        n = len(found)
        return cls(NameTable.of([name for name, _ in found]), np.fromiter((m.offset for _, m in found), np.int64, n),
                   sizes_array([m.size for _, m in found]))


def sizes_array(sizes: list[int]) -> np.ndarray:
    """Image sizes as an index holds them: uint32 (4 bytes an image), int64 if one is 4 GiB or more."""
    return np.array(sizes, dtype=np.uint32 if not sizes or max(sizes) < SIZES_32 else np.int64)


def assemble(split: str, archive: str, groups: dict[int, _Group], containers: dict[int, str]) -> SplitIndex:
    labels = sorted(groups)
    parts = [groups[k] for k in labels]
    return SplitIndex(
        split, archive,
        NameTable.concat([g.names for g in parts]),
        np.concatenate([np.full(len(g.names), k, np.int32) for k, g in zip(labels, parts)] or [np.zeros(0, np.int32)]),
        np.concatenate([g.offsets for g in parts] or [np.zeros(0, np.int64)]),
        np.concatenate([g.sizes for g in parts] or [np.zeros(0, np.uint32)]),
        containers)


class SplitFill:
    """One split's arrays, allocated once for all its images and filled a class's rows at a time (`add`), where
    `assemble` concatenates whole groups: so the groups can be let go of as they are copied, and the split is never
    held twice while it is built (at ImageNet-21k's 12 M images, hundreds of MB)."""

    def __init__(self, images: int, nbytes: int, sizes_type: Any) -> None:
        self.names = Filler(images, nbytes)
        self.labels = np.empty(images, dtype=np.int32)
        self.offsets = np.empty(images, dtype=np.int64)
        self.sizes = np.empty(images, dtype=sizes_type)
        self.at = 0

    def add(self, label: int, group: _Group, first: int, stop: int) -> None:
        """Images `first` to `stop` of `group`, with `label`, next."""
        count = stop - first
        self.names.add(group.names, first, stop)
        self.labels[self.at:self.at + count] = label
        self.offsets[self.at:self.at + count] = group.offsets[first:stop]
        self.sizes[self.at:self.at + count] = group.sizes[first:stop]
        self.at += count

    def index(self, split: str, archive: str, containers: dict[int, str]) -> SplitIndex:
        return SplitIndex(split, archive, self.names.table(), self.labels, self.offsets, self.sizes, containers)


def give_back_freed_memory() -> None:
    """Hand the heap's free pages back to the system (glibc's `malloc_trim`; nothing elsewhere). A walk frees a
    class's arrays once they are copied into the split's, and those small blocks lie between others the process
    keeps, so the allocator holds on to them: at ImageNet-21k's 14 M images, some 300 MB that every forked writer
    would then map too."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _add_unique(found: dict[str, TarMember], name: str, member: TarMember, where: str) -> None:
    if name in found:
        raise ArchiveError(f"{where}!{member.name}: the archive holds this name twice; "
                           "extraction would keep only one, so streamprep stops. Repack the archive without duplicates")
    found[name] = member


def regular_file(member: TarMember, where: str, ignored: Ignored) -> bool:
    """Whether a wanted member is a regular file: links are refused, other entry types ignored."""
    if member.is_link:
        raise ArchiveError(f"{where}!{member.name}: is a link, not a file; streamprep reads regular files only. "
                           "Repack the archive with the file itself")
    if not member.is_file:
        ignored.add(f"{where}!{member.name}", "not a regular file")
        return False
    return True


def class_images(source: Source, outer: TarMember, ignored: Ignored, read_at: ReadAt | None = None,
                 dataset: Dataset = ILSVRC2012) -> _Group:
    """The images at the top of one class tar (the dataset's `is_image` names), by name; other members ignored."""
    where = f"{source.url}!{outer.name}"
    is_image, reason = dataset.members.is_image, f"not a {dataset.members.image_glob} file at the top of a class tar"
    found: dict[str, TarMember] = {}
    for m in inner_members(source, outer, read_at):
        name = normalize(m.name)
        if m.is_dir:
            continue
        if "/" in name or not is_image(name):
            ignored.add(f"{where}!{m.name}", reason)
            continue
        if regular_file(m, where, ignored):
            _add_unique(found, name, m, where)
    return _Group.of(found)


def walk_class_tars(source: Source, tars: Callable[[ReadAt | None], Iterable[T]],
                    walk: Callable[[T, ReadAt | None], R], workers: int, stop: threading.Event | None) -> list[R]:
    """`walk(item, read_at)` of every item `tars(read_at)` gives (a class tar), in that order.

    Locally the class tars are walked in parallel, header by header. Remotely the whole tar
    streams through one `Readahead` and is walked in order: requests overlap, nothing waits on a
    chain of round trips.
    """
    if source.remote:
        with sequential_reader(source) as read_at:
            return [walk(item, read_at) for item in tars(read_at)]
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="index") as pool:
        try:
            futures = []
            for item in tars(None):
                check_stop(stop)
                futures.append(pool.submit(walk, item, None))
            return [f.result() for f in futures]
        except BaseException:  # an error or Ctrl-C: drop the class tars not yet walked
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def index_train(source: Source, labels: LabelData, ignored: Ignored, workers: int = 4,
                progress: Callback | None = None, stop: threading.Event | None = None,
                tfds: bool = False, dataset: Dataset = ILSVRC2012) -> SplitIndex:
    """Walk the outer training tar and each per-class tar inside it (`walk_class_tars`) by the dataset's member
    rules; with `tfds`, by TFDS's (`index_train_tfds`)."""
    if tfds:
        return index_train_tfds(source, labels, ignored, workers, progress, stop)
    containers: dict[int, str] = {}
    with Phase(progress, "index train", total_bytes=source.size, unit="images") as phase:

        def walk(item: tuple[int, TarMember], read_at: ReadAt | None) -> tuple[int, _Group]:
            check_stop(stop)
            label, outer = item
            group = class_images(source, outer, ignored, read_at, dataset)
            phase.advance(len(group.names), outer.size + 512)
            return label, group

        groups = dict(walk_class_tars(
            source, lambda read_at: class_tars(source, labels, ignored, containers, read_at, dataset), walk, workers,
            stop))
    if not containers:
        raise ArchiveError(no_class_tars_message(source, ignored, dataset))
    groups = {k: g for k, g in groups.items() if len(g.names)}
    return assemble("train", source.url, groups, containers)


def no_class_tars_message(source: Source, ignored: Ignored, dataset: Dataset = ILSVRC2012) -> str:
    """Why a training tar without a single usable class tar is the wrong file."""
    examples = [ref.rsplit("!", 1)[-1] for refs in ignored.examples.values() for ref in refs
                if ref.startswith(f"{source.url}!") and ref.count("!") == source.url.count("!") + 1]
    train, rules = dataset.download("train").name, dataset.members
    if any(rules.is_validation_image(normalize(e)) for e in examples):
        return (f"{source.url}: holds validation images (e.g. {examples[0]}), not class tars: this is the validation "
                f"tar; pass {train} as --train")
    if not examples:
        return f"{source.url}: the archive is empty; the download is incomplete, fetch {train} again"
    return (f"{source.url}: holds no class tar ({rules.class_tar_glob}) of a synset in the labels file (first member: "
            f"{examples[0]}); pass {train} as --train, or a --labels-file that matches it")


def class_tars(source: Source, labels: LabelData, ignored: Ignored, containers: dict[int, str],
               read_at: ReadAt | None = None, dataset: Dataset = ILSVRC2012) -> Iterator[tuple[int, TarMember]]:
    """The class tars of the outer training tar (the dataset's `class_synset` names) with their labels, in archive
    order; others recorded as ignored.

    Once the walk is done, a file outside the class tars that the classic's extraction would put in a class
    tar's folder (`n01440764/x.JPEG` beside `n01440764.tar`, or a file named `n01440764`) is refused: the
    classic would take it as an image of that class (or fail), streamprep would not, so neither is right.
    """
    loose: list[TarMember] = []  # files outside class tars whose path starts with a synset: checked at the end
    class_synset, reason = dataset.members.class_synset, f"not a class tar ({dataset.members.class_tar_glob}) in the " \
                                                         "training tar"
    for m in members(source, read_at):
        name = normalize(m.name)
        if m.is_dir:
            continue
        synset = class_synset(name)
        if synset is None:
            ignored.add(f"{source.url}!{m.name}", reason)
            if not m.is_dir and labels.label(name.split("/", 1)[0]) is not None:
                loose.append(m)
            continue
        label = labels.label(synset)
        if label is None:
            ignored.add(f"{source.url}!{m.name}", "class tar of a synset not in the labels file")
            continue
        if not regular_file(m, source.url, ignored):
            continue
        if label in containers:
            raise ArchiveError(f"{source.url}!{m.name}: the training tar holds this class tar twice; "
                               "repack the archive without duplicates")
        containers[label] = m.name
        yield label, m
    folders = {normalize(name)[:-len(".tar")] for name in containers.values()}
    for m in loose:
        folder = normalize(m.name).split("/", 1)[0]
        if folder in folders:
            raise ArchiveError(f"{source.url}!{m.name}: lands in {folder}/, the folder class tar {folder}.tar extracts "
                               "into, where the classic would take it as an image of that class; repack the archive "
                               "without it")


def _validation_members(source: Source, labels: LabelData, ignored: Ignored, progress: Callback | None,
                        stop: threading.Event | None, dataset: Dataset) -> dict[str, TarMember]:
    """The validation tar's images at its top (the dataset's `is_image` names), by name; other members ignored (or
    refused) and why."""
    is_image, glob = dataset.members.is_image, dataset.members.image_glob
    not_named = f"validation member not named {glob}"
    found: dict[str, TarMember] = {}
    with Phase(progress, "index validation", total_bytes=source.size) as phase:
        for m in members(source):
            check_stop(stop)
            phase.advance(0, m.size + 512)
            name = normalize(m.name)
            if m.is_dir:
                continue
            if "/" in name:
                if labels.label(name.split("/", 1)[0]) is not None and is_image(name):
                    raise ArchiveError(f"{source.url}!{m.name}: lands in the folder of synset {name.split('/')[0]}, "
                                       "where the classic would take it as a validation image of that class; repack "
                                       "the archive without it")
                ignored.add(f"{source.url}!{m.name}", "validation member not at the top of the archive")
                continue
            if not is_image(name):
                ignored.add(f"{source.url}!{m.name}", not_named)
            elif regular_file(m, source.url, ignored):
                _add_unique(found, name, m, source.url)
                phase.advance(1)
    if not found:
        val = dataset.download("val").name
        if any(ref.endswith(".tar") for ref in ignored.examples.get(not_named, [])):
            raise ArchiveError(f"{source.url}: holds tars, not validation images: this looks like the training tar; "
                               f"pass {val} as --val")
        raise ArchiveError(f"{source.url}: holds no validation image ({glob}); the download is incomplete or not "
                           f"{val}, fetch it again")
    return found


def index_validation(source: Source, labels: LabelData, ignored: Ignored,
                     progress: Callback | None = None, stop: threading.Event | None = None,
                     complete: bool = True, tfds: bool = False, dataset: Dataset = ILSVRC2012) -> SplitIndex:
    """Walk the validation tar and give each listed image its label by image number (line k of the validation labels
    file labels the dataset's `validation_image % k`). With `complete`, every image the validation labels file lists
    must be in the tar. With `tfds`, TFDS's member rules and labels instead (`index_validation_tfds`)."""
    if tfds:
        return index_validation_tfds(source, labels, ignored, progress, stop)
    found = _validation_members(source, labels, ignored, progress, stop, dataset)
    image = dataset.members.validation_image
    listed = {image % (i + 1): synset for i, synset in enumerate(labels.validation)}
    missing = [name for name in listed if name not in found] if complete else []
    if missing:
        raise ArchiveError(
            f"{source.url}: {len(missing)} image(s) listed in the validation labels file "
            f"{labels.sources.get('validation', '')} are not in the archive (first: {missing[0]}); "
            f"pass the complete {dataset.download('val').name} or a --validation-labels-file that matches it")
    by_label: dict[int, dict[str, TarMember]] = defaultdict(dict)
    unlisted = []
    for name, m in found.items():
        synset = listed.get(name)
        if synset is None:
            ignored.add(f"{source.url}!{m.name}", "validation member not listed in the validation labels file")
            unlisted.append(m.name)
            continue
        label = labels.label(synset)
        if label is None:
            ignored.add(f"{source.url}!{m.name}", "validation image of a synset not in the labels file")
            continue
        by_label[label][name] = m
    if unlisted:
        # A few unlisted images are what the classic leaves out too (the summary counts them under "ignored
        # members"); more unlisted than listed looks like a labels file that is not this archive's: a warning.
        level = logging.WARNING if len(unlisted) > len(listed) else logging.INFO
        log.log(level, f"{source.url}: {len(unlisted):,} validation image(s) are not in the validation labels file "
                       f"{labels.sources.get('validation', '')}, which lists {len(listed):,} (e.g. "
                       f"{min(unlisted)}); they are left out, as the classic leaves them. If the labels file is "
                       "short, pass the complete one with --validation-labels-file")
    return assemble("validation", source.url, {k: _Group.of(v) for k, v in by_label.items()}, {})


# TFDS's member rules (`--format tfds`): what `tfds build imagenet2012` (tensorflow-datasets 4.9.10) reads, as its
# builder (`_generate_examples`, `imagenet_common.get_validation_labels`) and `iter_archive`
# (`core/download/extractor.py`: `iter_tar`, `_normpath`) decide it, with Python's tarfile underneath. The training
# and validation tars are read as seekable files (`ExtractMethod.TAR`), each class tar as a stream (`TAR_STREAM`).
# Every member with data is read, whatever its name or content: every file of the training tar is a class tar,
# labelled by its name less its last 4 characters (`label = fname[:-4]`); every file of a class tar or of the
# validation tar is an image whose `file_name` (and key) is its path. Left out: directories, devices and FIFOs (no
# data), names `_normpath` refuses (`tfds_name`), links in a class tar (a stream cannot follow them) and links to
# nothing; a link in the training or validation tar is read as its target. Member types tarfile does not know are
# files to it, and so images here.

TFDS_SKIPPED_NAME = "a name TFDS's iter_archive skips (hidden, ending in ~, absolute or outside the archive)"
TFDS_NO_DATA = "a device or FIFO (TFDS reads no data from it)"
TFDS_STREAM_LINK = "a link in a class tar (TFDS skips links when it streams a class tar)"
TFDS_DANGLING_LINK = "a link to no file of the archive (TFDS skips it)"
TFDS_EMPTY_CLASS_TAR = "a class tar without a member TFDS reads"


def tfds_name(name: str) -> str | None:
    """The file name TFDS gives a member (`extractor._normpath`: `os.path.normpath`, so `a/./b`, `a//b` and `a/../b`
    are `a/b`, `a/b` and `b`), or None for one it skips: a name that starts with `.` once normalised (`../x`), an
    absolute one, one ending in `~`, one whose last part starts with `.` (`._x.JPEG`, `.DS_Store`)."""
    if name and "/" not in name and name[0] != "." and name[-1] != "~":
        return name  # the usual name, which normpath leaves as it is (checked without normalising it)
    path = posixpath.normpath(name)
    if path.startswith(".") or posixpath.isabs(path) or path.endswith("~") or posixpath.basename(path).startswith("."):
        return None
    return path


class _LinkTargets:
    """Where tarfile's `extractfile` takes a link's data from in a seekable tar (`_find_link_target`)."""

    def __init__(self, every: list[TarMember]) -> None:
        self.every = every
        self.positions: dict[str, list[int]] | None = None  # normalised name -> positions, made at the first link

    def target(self, at: int, where: str) -> TarMember | None:
        """The member whose data link `every[at]` gives: for a hard link the last member before it with its target's
        name, for a symbolic link the last one of the whole archive with the target's name taken from the link's
        folder (names compared after `os.path.normpath`), followed through further links. None where there is no
        such member or it holds no data (a directory): tarfile gives nothing and TFDS skips the link. A loop makes
        tarfile recurse until Python stops it, and so `tfds build` fails: an error here too."""
        if self.positions is None:
            self.positions = defaultdict(list)
            for k, m in enumerate(self.every):
                self.positions[posixpath.normpath(m.name)].append(k)
        start, seen = at, set()
        while True:
            m = self.every[at]
            if at in seen:
                raise ArchiveError(f"{where}!{self.every[start].name}: a link whose targets lead back to a link "
                                   f"already followed ({m.name}); tarfile follows it forever, so `tfds build` fails "
                                   "on it (RecursionError): replace the link with the file, or write another format")
            seen.add(at)
            if m.type == ord("2"):  # symbolic: the whole archive
                name, limit = posixpath.normpath("/".join(filter(None, (posixpath.dirname(m.name), m.linkname)))), None
            else:  # hard: the members before it
                name, limit = posixpath.normpath(m.linkname), at
            found = [k for k in self.positions.get(name, ()) if limit is None or k < limit]
            if not found:
                return None
            at = found[-1]
            target = self.every[at]
            if not target.is_link:
                return None if target.is_dir or target.is_device else target


def _tfds_data(m: TarMember, ref: str, ignored: Ignored,
               link: Callable[[], TarMember | None] | None) -> TarMember | None:
    """The member whose data TFDS reads for `m` (its link target, from `link`; a link in a stream when `link` is
    None), or None when it reads none (recorded as ignored, directories silently as the classic's walk does)."""
    if m.is_link:
        target = link() if link is not None else None
        if target is None:
            ignored.add(ref, TFDS_DANGLING_LINK if link is not None else TFDS_STREAM_LINK)
        return target
    if m.is_dir:
        return None
    if m.is_device:
        ignored.add(ref, TFDS_NO_DATA)
        return None
    return m


def index_validation_tfds(source: Source, labels: LabelData, ignored: Ignored, progress: Callback | None = None,
                          stop: threading.Event | None = None) -> SplitIndex:
    """The validation tar as `tfds build` reads it (the rules above), with TFDS's labels
    (`imagenet_common.get_validation_labels`): the names tarfile lists for the tar (`getnames()`: every member,
    directories and members TFDS skips included), sorted, take the validation labels file's lines in order
    (`dict(zip(names, lines))`: a later one of a name held twice wins), and each image takes the line of its file
    name. An image whose name has no line, or whose line is not a synset of the labels file, makes `tfds build`
    fail (KeyError), and so stops the run here, named."""
    every: list[TarMember] = []
    found: dict[int, list[tuple[str, TarMember]]] = defaultdict(list)
    with Phase(progress, "index validation", total_bytes=source.size) as phase:
        for m in members(source):
            check_stop(stop)
            phase.advance(0, m.size + 512)
            every.append(m)
        lines = labels.validation
        names = sorted(m.name.rstrip("/") if m.is_dir else m.name for m in every)  # tarfile's names of directories
        line_of = {name: k for k, name in enumerate(names[:len(lines)])}
        targets = _LinkTargets(every)
        for at, m in enumerate(every):
            ref = f"{source.url}!{m.name}"
            data = _tfds_data(m, ref, ignored, lambda: targets.target(at, source.url))
            if data is None:
                continue
            name = tfds_name(m.name)
            if name is None:
                ignored.add(ref, TFDS_SKIPPED_NAME)
                continue
            k = line_of.get(name)
            if k is None:
                raise ArchiveError(_no_validation_line(ref, name, names, lines, labels))
            label = labels.label(lines[k])
            if label is None:
                raise ArchiveError(f"{ref}: line {k + 1} of the validation labels file "
                                   f"{labels.sources.get('validation', '')} gives TFDS's label of this image "
                                   f"({lines[k]}), which is not a synset of the labels file, so `tfds build` fails on "
                                   "it (KeyError): pass a validation labels file of synsets, or write another format")
            found[label].append((name, data))
        phase.advance(sum(len(v) for v in found.values()))
    return assemble("validation", source.url, {k: _Group.listed(v) for k, v in found.items()}, {})


def _no_validation_line(ref: str, name: str, names: list[str], lines: tuple[str, ...], labels: LabelData) -> str:
    """Why TFDS finds no line of the validation labels file for this image (the KeyError `tfds build` fails with)."""
    what = "remove such members from the validation tar, or write another format"
    at = bisect.bisect_left(names, name)
    if at == len(names) or names[at] != name:
        return (f"{ref}: TFDS looks its label up under its normalised name {name!r}, which is not a name the tar "
                f"lists, so `tfds build` fails on it (KeyError): repack the validation tar with plain member names, "
                "or write another format")
    return (f"{ref}: TFDS labels the validation tar's member names, sorted, with the lines of the validation labels "
            f"file {labels.sources.get('validation', '')} in order, and this one is name {at + 1:,} of "
            f"{len(names):,} (directories and members TFDS skips count too) where the file has {len(lines):,} lines, "
            f"so `tfds build` fails on it (KeyError): {what}")


def tfds_class_tars(source: Source, ignored: Ignored,
                    read_at: ReadAt | None = None) -> Iterator[tuple[TarMember, TarMember]]:
    """Every file of the training tar TFDS takes for a class tar, as (the member as named, the member whose data
    it is): in archive order, then the links (read as their targets: a symbolic link may point past itself)."""
    every: list[TarMember] = []
    links: list[int] = []
    for m in members(source, read_at):
        every.append(m)
        if m.is_link:
            links.append(len(every) - 1)
            continue
        if _tfds_data(m, f"{source.url}!{m.name}", ignored, None) is None:
            continue
        if tfds_name(m.name) is None:
            ignored.add(f"{source.url}!{m.name}", TFDS_SKIPPED_NAME)
            continue
        yield m, m
    targets = _LinkTargets(every)
    for at in links:
        m = every[at]
        data = _tfds_data(m, f"{source.url}!{m.name}", ignored, lambda: targets.target(at, source.url))
        if data is None:
            continue
        if tfds_name(m.name) is None:
            ignored.add(f"{source.url}!{m.name}", TFDS_SKIPPED_NAME)
            continue
        yield m, data


def _compression(head: bytes) -> str | None:
    """The compression tarfile's `r|*` would find at the start of a class tar (`_StreamProxy.getcomptype`)."""
    if head.startswith(b"\x1f\x8b\x08"):
        return "gzip"
    if head[0:3] == b"BZh" and head[4:10] == b"1AY&SY":
        return "bzip2"
    if head.startswith((b"\x5d\x00\x00\x80", b"\xfd7zXZ")):
        return "xz"
    return None


def tfds_class_images(source: Source, named: TarMember, data: TarMember, labels: LabelData, ignored: Ignored,
                      read_at: ReadAt | None = None) -> list[tuple[str, TarMember]]:
    """The images TFDS reads from one class tar (`named`, its data `data`): (file name, member) pairs. A file
    that is no tar makes `tfds build` fail (tarfile.ReadError); so does a class tar holding an image whose label,
    its name less 4 characters, is no synset of the labels file (KeyError). Both stop the run here, named."""
    where = f"{source.url}!{named.name}"
    synset = (tfds_name(named.name) or "")[:-4]
    what = "remove it from the training tar, or write another format"
    if data.size == 0:
        raise ArchiveError(f"{where}: an empty file; `tfds build` opens every file of the training tar as a class "
                           f"tar and fails on this one (tarfile.ReadError: empty file): {what}")
    images: list[tuple[str, TarMember]] = []
    walked = False
    try:
        for m in inner_members(source, data, read_at if named is data else None):
            walked = True
            ref = f"{where}!{m.name}"
            if _tfds_data(m, ref, ignored, None) is None:
                continue
            name = tfds_name(m.name)
            if name is None:
                ignored.add(ref, TFDS_SKIPPED_NAME)
                continue
            images.append((name, m))
    except ArchiveError as e:
        if walked:
            raise  # damage after the first member: tarfile stops there quietly, streamprep refuses the archive
        kind = _compression(source.read_at(data.offset, min(data.size, 10)))
        if kind:
            raise ArchiveError(f"{where}: a {kind}-compressed tar, which `tfds build` reads as a class tar but "
                               "streamprep cannot read in place; store it uncompressed in the training tar, or write "
                               "another format") from e
        reason = str(e).split(": ", 1)[-1].split(";")[0]
        raise ArchiveError(f"{where}: not a tar archive ({reason}); `tfds build` opens every file of the training "
                           f"tar as a class tar and fails on this one (tarfile.ReadError): {what}") from e
    if not images:
        ignored.add(where, TFDS_EMPTY_CLASS_TAR)
        return images
    if labels.label(synset) is None:
        raise ArchiveError(f"{where}: TFDS labels a class tar by its name less its last 4 characters, {synset!r}, "
                           f"which is not a synset of the labels file, so `tfds build` fails on its images (KeyError; "
                           f"first: {min(name for name, _ in images)}): remove it from the training tar (or empty "
                           "it), or write another format")
    return images


def index_train_tfds(source: Source, labels: LabelData, ignored: Ignored, workers: int = 4,
                     progress: Callback | None = None, stop: threading.Event | None = None) -> SplitIndex:
    """The training tar as `tfds build` reads it (the rules above). Two class tars may give one synset (a link, or
    `n01440764.tar` beside `n01440764.TAR`): their images are one class; messages name the first class tar."""
    with Phase(progress, "index train", total_bytes=source.size, unit="images") as phase:

        def walk(item: tuple[TarMember, TarMember], read_at: ReadAt | None) -> tuple[TarMember, list]:
            check_stop(stop)
            named, data = item
            images = tfds_class_images(source, named, data, labels, ignored, read_at)
            phase.advance(len(images), data.size + 512)
            return named, images

        walked = walk_class_tars(source, lambda read_at: tfds_class_tars(source, ignored, read_at), walk, workers,
                                 stop)
    containers: dict[int, str] = {}
    found: dict[int, list[tuple[str, TarMember]]] = defaultdict(list)
    for named, images in walked:
        if images:
            label = labels.label((tfds_name(named.name) or "")[:-4])
            if label is None:  # never: tfds_class_images refuses a class tar of an unknown synset with images
                raise AssertionError(named.name)
            containers.setdefault(label, named.name)
            found[label].extend(images)
    return assemble("train", source.url, {k: _Group.listed(v) for k, v in found.items()}, containers)
