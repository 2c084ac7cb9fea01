"""The classic folder layout (`--materialize`), written straight from the archives: safe and resumable."""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ..archives.storage import Source, sequential_reader
from ..archives.walk import gzip_members, inner_members, members
from ..errors import ArchiveError, OutputError
from ..index.images import VALIDATION_NAME
from ..index.labels import LabelData
from ..records.spec import RecordSpec
from ..progress import Callback, Phase
from ..archives.tarscan import ReadAt, TarMember, normalize
from .bboxes_csv import BBOXES_CSV, SPLIT_CSV
from .names import component, local_path

TRAIN_DIR, VAL_DIR, BBOX_DIR = "ILSVRC2012_img_train", "ILSVRC2012_img_val", "bboxes"
# Temporary files: `.<16 hex>.streamprep-tmp`, or `.<name>.<8 hex>.streamprep-tmp` from older versions.
TEMPORARY = re.compile(r"\.(.+\.[0-9a-f]{8}|[0-9a-f]{16})\.streamprep-tmp")


@dataclass
class PartSummary:
    """Files written, and files found already complete (a resumed run), for one part of the folder tree."""

    written: int = 0
    kept: int = 0
    nbytes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count(self, written: bool, nbytes: int) -> None:
        with self._lock:
            if written:
                self.written += 1
                self.nbytes += nbytes
            else:
                self.kept += 1


@dataclass
class FolderTreeSummary:
    """What `--materialize` wrote: files per part, and validation images the labels file does not list."""

    base: str
    parts: dict[str, PartSummary] = field(default_factory=dict)
    unlisted_validation: list[str] = field(default_factory=list)


def safe_parts(member: TarMember, where: str) -> list[str]:
    """The member's path components, each checked by `names.component`; links, devices and absolute paths refused."""
    ref = f"{where}!{member.name}"
    if member.is_link:
        raise ArchiveError(f"{ref}: is a link (to {member.linkname!r}); streamprep refuses links when writing the "
                           "folder layout. Repack the archive with regular files")
    if member.is_device:
        raise ArchiveError(f"{ref}: is a device or FIFO entry; streamprep refuses it. Repack the archive")
    name = member.name
    if name.startswith("/"):
        raise ArchiveError(f"{ref}: absolute path; streamprep refuses to write it. Repack the archive")
    parts = [component(p, ref) for p in normalize(name).split("/") if p not in ("", ".")]
    if not parts and not member.is_dir:  # a directory entry `./` is the target folder itself
        raise ArchiveError(f"{ref}: empty member name; the archive is corrupt")
    return parts


class Tree:
    """A local folder receiving files under their final names only when complete, with tar's mtimes.

    Every path is built by `names.local_path` from checked components; a file and a folder of the
    same name, or a time no file can have, are the archive's fault and reported as such.
    """

    def __init__(self, base: str) -> None:
        self.base = os.path.abspath(base)
        self._dirs: dict[str, float] = {}
        self._swept: set[str] = set()
        self._made: set[str] = set()  # folders made (or found) below base, none of them a link
        self._lock = threading.Lock()
        if os.path.lexists(self.base) and not os.path.isdir(self.base):
            raise OutputError(f"{self.base}: is a file, not a folder; choose a folder for --materialize")
        try:
            os.makedirs(self.base, exist_ok=True)
        except OSError as e:
            raise OutputError(f"{self.base}: cannot create it ({e}); choose a writable --materialize folder") from e

    def _folders(self, path: str, ref: str) -> None:
        """Make the folders from base down to `path`, one at a time: a link among them (one that was there before
        the run) is refused, so nothing is ever written outside base through it."""
        if path in self._made:
            return
        current = self.base
        for part in os.path.relpath(path, self.base).split(os.sep):
            if part in ("", "."):
                continue
            current = os.path.join(current, part)
            if current in self._made:
                continue
            if os.path.islink(current):
                raise OutputError(f"{current}: is a symbolic link; streamprep writes only inside "
                                  f"{self.base} and will not follow it ({ref}). Remove the link, or choose another "
                                  "--materialize folder")
            try:
                os.mkdir(current)
            except FileExistsError:
                if not os.path.isdir(current):
                    raise
            with self._lock:
                self._made.add(current)

    def _sweep(self, folder: str) -> None:
        """Remove temporary files an interrupted run left in `folder` (once per folder and run)."""
        with self._lock:
            if folder in self._swept:
                return
            self._swept.add(folder)
        for name in os.listdir(folder):
            if TEMPORARY.fullmatch(name):
                os.unlink(os.path.join(folder, name))

    def path(self, parts: list[str], ref: str) -> str:
        path = local_path(self.base, parts, ref)
        if os.path.commonpath([self.base, os.path.abspath(path)]) != self.base:  # defence in depth
            raise OutputError(f"{path}: outside {self.base}; refused")
        return path

    def complete(self, path: str, size: int, mtime: float) -> bool:
        """Whether a previous run already wrote this file completely (as `tar --keep-newer` judges: size, mtime)."""
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            return False
        return st.st_size == size and abs(st.st_mtime - mtime) < 1e-6

    def write(self, parts: list[str], data: bytes, mtime: float, ref: str) -> None:
        path = self.path(parts, ref)
        folder = os.path.dirname(path)
        try:
            self._folders(folder, ref)
            if os.path.islink(path):
                raise OutputError(f"{path}: is a symbolic link; streamprep will not replace or follow it ({ref}). "
                                  "Remove the link, or choose another --materialize folder")
            self._sweep(folder)
            # Not derived from the name: a name of NAME_MAX bytes still gets a temporary name that fits.
            tmp = os.path.join(folder, f".{uuid.uuid4().hex[:16]}.streamprep-tmp")
            try:
                with open(tmp, "wb") as f:
                    f.write(data)
                os.utime(tmp, (mtime, mtime))
                os.replace(tmp, path)
            except BaseException:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                raise
        except (FileExistsError, NotADirectoryError, IsADirectoryError) as e:
            raise ArchiveError(f"{ref}: a file and a folder of the same name ({path}) in the archives; "
                               "extraction cannot hold both. Repack the archive") from e
        except (OverflowError, ValueError) as e:
            raise ArchiveError(f"{ref}: modification time {mtime} is out of range for a file; the archive is "
                               "corrupt") from e
        except OSError as e:
            raise OutputError(f"{path}: cannot write ({e}); check free space and permissions of --materialize") from e

    def directory(self, parts: list[str], mtime: float, ref: str) -> None:
        """A directory entry of an archive: created now, its mtime set at the end (as tar does)."""
        path = self.path(parts, ref)
        try:
            self._folders(path, ref)
        except (FileExistsError, NotADirectoryError) as e:
            raise ArchiveError(f"{ref}: a file and a folder of the same name ({path}) in the archives; "
                               "extraction cannot hold both. Repack the archive") from e
        except OSError as e:
            raise OutputError(f"{path}: cannot create ({e}); check --materialize") from e
        self._dirs[path] = mtime

    def finish(self) -> None:
        for path, mtime in sorted(self._dirs.items(), reverse=True):
            try:
                os.utime(path, (mtime, mtime))
            except (OverflowError, ValueError) as e:
                raise ArchiveError(f"{path}: the archive gives this folder the modification time {mtime}, out of "
                                   "range; the archive is corrupt") from e


def _extract(tree: Tree, member: TarMember, parts: list[str], read, summary: PartSummary, phase: Phase,
             where: str) -> None:
    ref = f"{where}!{member.name}"
    done = tree.complete(tree.path(parts, ref), member.size, member.mtime)
    if not done:
        tree.write(parts, read(member), member.mtime, ref)
    summary.count(not done, member.size)
    phase.advance(1, member.size)


def _member_reader(source: Source, read_at: ReadAt, where: str):
    """A member's data through the same forward reader as the headers (one chunked stream remotely)."""
    def read(member: TarMember) -> bytes:
        data = read_at(member.offset, member.size)
        if len(data) != member.size:
            raise ArchiveError(f"{where}!{member.name}: truncated member; the download is incomplete")
        return data
    return read


def _bboxes(tree: Tree, source: Source, csv: bytes, summary: FolderTreeSummary, progress: Callback | None,
            folder: str = BBOX_DIR, csv_name: str = BBOXES_CSV) -> None:
    """A box archive extracted into `folder` (as `tar -xzf ARCHIVE -C folder` would), and its CSV beside it."""
    part = summary.parts.setdefault(folder, PartSummary())
    with Phase(progress, f"materialize {folder}", total_bytes=source.size, unit="files") as phase:
        for m, data, _ in gzip_members(source):
            parts = [folder, *safe_parts(m, source.url)]
            if m.is_dir:
                tree.directory(parts, m.mtime, f"{source.url}!{m.name}")
            elif m.is_file:
                _extract(tree, m, parts, lambda _: data, part, phase, source.url)
    tree.write([csv_name], csv, time.time(), csv_name)


def _validation(tree: Tree, source: Source, labels: LabelData, summary: FolderTreeSummary,
                progress: Callback | None) -> None:
    part = summary.parts.setdefault("validation", PartSummary())
    listed = {VALIDATION_NAME % (i + 1): synset for i, synset in enumerate(labels.validation)}
    with Phase(progress, "materialize validation", total_bytes=source.size, unit="files") as phase, \
            sequential_reader(source) as read_at:
        read = _member_reader(source, read_at, source.url)
        for m in members(source, read_at):
            parts = safe_parts(m, source.url)
            if m.is_dir:
                tree.directory([VAL_DIR, *parts], m.mtime, f"{source.url}!{m.name}")
                continue
            if not m.is_file:
                continue
            synset = listed.get(parts[0]) if len(parts) == 1 else None
            if synset is None:  # the classic's re-organisation leaves it where tar put it
                if len(parts) == 1 and parts[0].endswith(".JPEG"):
                    summary.unlisted_validation.append(parts[0])
                _extract(tree, m, [VAL_DIR, *parts], read, part, phase, source.url)
            else:  # the synset folder comes from the labels file: checked as any other name
                _extract(tree, m, [VAL_DIR, synset, parts[0]], read, part, phase, source.url)


MAX_LOOSE_FILES = 100_000  # regular files of the outer training tar outside class tars held back (real: none)


def _train(tree: Tree, source: Source, workers: int, summary: FolderTreeSummary, progress: Callback | None) -> None:
    """The training tar: class tars walked in parallel locally, in order through one readahead remotely.

    Other regular files of the outer tar are extracted last, once every class tar is known: one
    that would land in a class tar's folder (`n01440764/x.JPEG` beside `n01440764.tar`, or a file
    named `n01440764`) is refused, since which file wins would depend on the order of extraction.
    """
    part = summary.parts.setdefault("train", PartSummary())
    loose: list[tuple[TarMember, list[str]]] = []
    class_folders: set[str] = set()
    with Phase(progress, "materialize train", total_bytes=source.size, unit="files") as phase, \
            sequential_reader(source) as read_at, \
            ThreadPoolExecutor(max(1, workers), thread_name_prefix="materialize") as pool:

        def class_tar(outer: TarMember, folder: list[str], class_read_at: ReadAt | None = None) -> None:
            where = f"{source.url}!{outer.name}"
            with contextlib.ExitStack() as stack:
                if class_read_at is None:
                    class_read_at = stack.enter_context(sequential_reader(source, outer.offset + outer.size))
                read = _member_reader(source, class_read_at, where)
                for m in inner_members(source, outer, class_read_at):
                    parts = [*folder, *safe_parts(m, where)]
                    if m.is_dir:
                        tree.directory(parts, m.mtime, f"{where}!{m.name}")
                    elif m.is_file:
                        _extract(tree, m, parts, read, part, phase, where)

        futures = []
        try:
            for m in members(source, read_at):
                parts = safe_parts(m, source.url)
                ref = f"{source.url}!{m.name}"
                if m.is_dir:
                    tree.directory([TRAIN_DIR, *parts], m.mtime, ref)
                elif m.is_file and len(parts) == 1 and parts[0].endswith(".tar"):
                    # The manual route extracts each nXXXXXXXX.tar into nXXXXXXXX/; the tar is never written.
                    folder = component(parts[0][:-len(".tar")], ref)
                    class_folders.add(folder)
                    if source.remote:
                        class_tar(m, [TRAIN_DIR, folder], read_at)
                    else:
                        futures.append(pool.submit(class_tar, m, [TRAIN_DIR, folder]))
                elif m.is_file:
                    if len(loose) >= MAX_LOOSE_FILES:
                        raise ArchiveError(f"{ref}: more than {MAX_LOOSE_FILES:,} files outside class tars; this is "
                                           "not ILSVRC2012_img_train.tar (which holds only class tars)")
                    loose.append((m, parts))
            for f in futures:
                f.result()
        except BaseException:  # an error or Ctrl-C: drop the class tars not yet started
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        _loose_files(tree, source, loose, class_folders, part, phase)


def _loose_files(tree: Tree, source: Source, loose: list[tuple[TarMember, list[str]]], class_folders: set[str],
                 part: PartSummary, phase: Phase) -> None:
    """The outer training tar's regular files outside class tars, each refused if it meets a class folder."""
    for m, parts in loose:
        if parts[0] in class_folders:
            raise ArchiveError(f"{source.url}!{m.name}: lands in {parts[0]}/, the folder class tar {parts[0]}.tar "
                               "extracts into, so which file wins would depend on the order of extraction; repack "
                               "the archive without it")
    read = lambda m: source.read_ranges([(m.offset, m.size)])[0]  # noqa: E731 - random reads, after the walk
    for m, parts in loose:
        _extract(tree, m, [TRAIN_DIR, *parts], read, part, phase, source.url)


def materialize(base: str, train: Source, val: Source, bbox: Source, labels: LabelData, bboxes_csv: bytes,
                workers: int = 2, progress: Callback | None = None,
                split_boxes: dict[str, tuple[Source, bytes]] | None = None) -> FolderTreeSummary:
    """Write the classic folder layout under `base` (a local folder); rerunning completes an interrupted run.
    `split_boxes`: a split's own box archive and CSV (`--bbox-val`: "validation"), extracted into
    `bboxes_validation/` with `bboxes_validation.csv` beside `bboxes.csv`."""
    tree = Tree(base)
    summary = FolderTreeSummary(tree.base)
    _bboxes(tree, bbox, bboxes_csv, summary, progress)
    for split, (source, csv) in sorted((split_boxes or {}).items()):
        _bboxes(tree, source, csv, summary, progress, f"{BBOX_DIR}_{split}", SPLIT_CSV % split)
    _validation(tree, val, labels, summary, progress)
    _train(tree, train, workers, summary, progress)
    tree.finish()
    return summary


def tree_path(base: str, spec: RecordSpec, split: str) -> str:
    """Where the folder tree holds a record's image (its names checked as when it was written)."""
    return local_path(base, [TRAIN_DIR if split == "train" else VAL_DIR, spec.synset, spec.filename], spec.member)
