"""The index: every image the classic would use, where its bytes sit, and every box; nothing decoded."""

from __future__ import annotations

import bisect
import logging
import re
import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from ..archives.storage import Source, sequential_reader
from ..archives.walk import inner_members, members
from .boxes import BoxTable
from .nametable import NameTable
from ..errors import ArchiveError
from .labels import LabelData
from ..progress import Callback, Phase, check
from ..archives.tarscan import ReadAt, TarMember, normalize

VALIDATION_NAME = "ILSVRC2012_val_%08d.JPEG"
VALIDATION_PATTERN = re.compile(r"ILSVRC2012_val_\d{8}\.JPEG")
EXAMPLES_KEPT = 5
log = logging.getLogger(__name__)


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
    sizes: np.ndarray  # int64
    containers: dict[int, str] = field(default_factory=dict)  # label -> inner tar member (train)

    def __len__(self) -> int:
        return len(self.names)

    def member(self, i: int) -> str:
        container = self.containers.get(int(self.labels[i]))
        inner = f"!{container}" if container else ""
        return f"{self.archive}{inner}!{self.names[i]}"

    def present_labels(self) -> list[int]:
        return [int(x) for x in np.unique(self.labels)]


@dataclass(frozen=True, eq=False)
class DatasetIndex:
    """Both splits' images, the bounding boxes, and the members ignored or skipped while walking."""

    splits: tuple[SplitIndex, ...]
    boxes: BoxTable
    ignored: Ignored
    skipped: Skipped = field(default_factory=Skipped)


@dataclass
class _Group:
    """The images of one synset, sorted by name."""

    names: NameTable
    offsets: np.ndarray
    sizes: np.ndarray

    @classmethod
    def of(cls, found: dict[str, TarMember]) -> "_Group":
        names = sorted(found)
        return cls(NameTable.of(names), np.fromiter((found[n].offset for n in names), np.int64, len(names)),
                   np.fromiter((found[n].size for n in names), np.int64, len(names)))


def assemble(split: str, archive: str, groups: dict[int, _Group], containers: dict[int, str]) -> SplitIndex:
    labels = sorted(groups)
    parts = [groups[k] for k in labels]
    return SplitIndex(
        split, archive,
        NameTable.concat([g.names for g in parts]),
        np.concatenate([np.full(len(g.names), k, np.int32) for k, g in zip(labels, parts)] or [np.zeros(0, np.int32)]),
        np.concatenate([g.offsets for g in parts] or [np.zeros(0, np.int64)]),
        np.concatenate([g.sizes for g in parts] or [np.zeros(0, np.int64)]),
        containers)


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


def class_images(source: Source, outer: TarMember, ignored: Ignored, read_at: ReadAt | None = None) -> _Group:
    where = f"{source.url}!{outer.name}"
    found: dict[str, TarMember] = {}
    for m in inner_members(source, outer, read_at):
        name = normalize(m.name)
        if m.is_dir:
            continue
        if "/" in name or not name.endswith(".JPEG"):
            ignored.add(f"{where}!{m.name}", "not a *.JPEG file at the top of a class tar")
            continue
        if regular_file(m, where, ignored):
            _add_unique(found, name, m, where)
    return _Group.of(found)


def index_train(source: Source, labels: LabelData, ignored: Ignored, workers: int = 4,
                progress: Callback | None = None, stop: threading.Event | None = None) -> SplitIndex:
    """Walk the outer training tar and each per-class tar inside it.

    Locally the class tars are walked in parallel, header by header. Remotely the whole tar
    streams through one `Readahead` and is walked in order: requests overlap, nothing waits on a
    chain of round trips.
    """
    containers: dict[int, str] = {}
    groups: dict[int, _Group] = {}
    with Phase(progress, "index train", total_bytes=source.size, unit="images") as phase:

        def walk(outer: TarMember, read_at: ReadAt | None = None) -> _Group:
            check(stop)
            group = class_images(source, outer, ignored, read_at)
            phase.advance(len(group.names), outer.size + 512)
            return group

        if source.remote:
            with sequential_reader(source) as read_at:
                for label, outer in class_tars(source, labels, ignored, containers, read_at):
                    groups[label] = walk(outer, read_at)
        else:
            with ThreadPoolExecutor(max(1, workers), thread_name_prefix="index") as pool:
                try:
                    futures = {}
                    for label, outer in class_tars(source, labels, ignored, containers):
                        check(stop)
                        futures[label] = pool.submit(walk, outer)
                    groups = {label: f.result() for label, f in futures.items()}
                except BaseException:  # an error or Ctrl-C: drop the class tars not yet walked
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
    if not containers:
        raise ArchiveError(no_class_tars_message(source, ignored))
    groups = {k: g for k, g in groups.items() if len(g.names)}
    return assemble("train", source.url, groups, containers)


def no_class_tars_message(source: Source, ignored: Ignored) -> str:
    """Why a training tar without a single usable class tar is the wrong file."""
    examples = [ref.rsplit("!", 1)[-1] for refs in ignored.examples.values() for ref in refs
                if ref.startswith(f"{source.url}!") and ref.count("!") == source.url.count("!") + 1]
    if any(VALIDATION_PATTERN.fullmatch(normalize(e)) for e in examples):
        return (f"{source.url}: holds validation images (e.g. {examples[0]}), not class tars: this is the validation "
                "tar; pass ILSVRC2012_img_train.tar as --train")
    if not examples:
        return f"{source.url}: the archive is empty; the download is incomplete, fetch ILSVRC2012_img_train.tar again"
    return (f"{source.url}: holds no class tar (nXXXXXXXX.tar) of a synset in the labels file (first member: "
            f"{examples[0]}); pass ILSVRC2012_img_train.tar as --train, or a --labels-file that matches it")


def class_tars(source: Source, labels: LabelData, ignored: Ignored, containers: dict[int, str],
                read_at: ReadAt | None = None) -> Iterator[tuple[int, TarMember]]:
    """The class tars of the outer training tar with their labels, in archive order; others recorded as ignored.

    Once the walk is done, a file outside the class tars that the classic's extraction would put in a class
    tar's folder (`n01440764/x.JPEG` beside `n01440764.tar`, or a file named `n01440764`) is refused: the
    classic would take it as an image of that class (or fail), streamprep would not, so neither is right.
    """
    loose: list[TarMember] = []  # files outside class tars whose path starts with a synset: checked at the end
    for m in members(source, read_at):
        name = normalize(m.name)
        if m.is_dir:
            continue
        synset = name[:-len(".tar")] if name.endswith(".tar") and "/" not in name else None
        if synset is None:
            ignored.add(f"{source.url}!{m.name}", "not a class tar (nXXXXXXXX.tar) in the training tar")
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
                        stop: threading.Event | None) -> dict[str, TarMember]:
    """The validation tar's images at its top, by name; other members ignored (or refused) and why."""
    found: dict[str, TarMember] = {}
    with Phase(progress, "index validation", total_bytes=source.size) as phase:
        for m in members(source):
            check(stop)
            phase.advance(0, m.size + 512)
            name = normalize(m.name)
            if m.is_dir:
                continue
            if "/" in name:
                if labels.label(name.split("/", 1)[0]) is not None and name.endswith(".JPEG"):
                    raise ArchiveError(f"{source.url}!{m.name}: lands in the folder of synset {name.split('/')[0]}, "
                                       "where the classic would take it as a validation image of that class; repack "
                                       "the archive without it")
                ignored.add(f"{source.url}!{m.name}", "validation member not at the top of the archive")
                continue
            if not name.endswith(".JPEG"):
                ignored.add(f"{source.url}!{m.name}", "validation member not named *.JPEG")
            elif regular_file(m, source.url, ignored):
                _add_unique(found, name, m, source.url)
                phase.advance(1)
    if not found:
        if any(ref.endswith(".tar") for ref in ignored.examples.get("validation member not named *.JPEG", [])):
            raise ArchiveError(f"{source.url}: holds tars, not validation images: this looks like the training tar; "
                               "pass ILSVRC2012_img_val.tar as --val")
        raise ArchiveError(f"{source.url}: holds no validation image (*.JPEG); the download is incomplete or not "
                           "ILSVRC2012_img_val.tar, fetch it again")
    return found


def index_validation(source: Source, labels: LabelData, ignored: Ignored,
                     progress: Callback | None = None, stop: threading.Event | None = None,
                     complete: bool = True) -> SplitIndex:
    """Walk the validation tar and give each listed image its label by image number. With `complete`, every image
    the validation labels file lists must be in the tar (TFDS's layout does not ask it: it labels by position)."""
    found = _validation_members(source, labels, ignored, progress, stop)
    listed = {VALIDATION_NAME % (i + 1): synset for i, synset in enumerate(labels.validation)}
    missing = [name for name in listed if name not in found] if complete else []
    if missing:
        raise ArchiveError(
            f"{source.url}: {len(missing)} image(s) listed in the validation labels file "
            f"{labels.sources.get('validation', '')} are not in the archive (first: {missing[0]}); "
            "pass the complete ILSVRC2012_img_val.tar or a --validation-labels-file that matches it")
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
