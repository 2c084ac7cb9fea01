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
from typing import Iterable

from ..archives.storage import Source, sequential_reader
from ..archives.walk import gzip_members, inner_members, members
from ..errors import ArchiveError, OutputError
from ..index.images import VALIDATION_NAME
from ..index.labels import LabelData
from ..plan import RecordSpec
from ..progress import Callback, Phase
from ..archives.tarscan import ReadAt, TarMember, normalize

TRAIN_DIR, VAL_DIR, BBOX_DIR, BBOXES_CSV = "ILSVRC2012_img_train", "ILSVRC2012_img_val", "bboxes", "bboxes.csv"
TEMPORARY = re.compile(r"\..+\.[0-9a-f]{8}\.streamprep-tmp")


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
    """The member's path components, refusing anything that could land outside the target folder."""
    ref = f"{where}!{member.name}"
    if member.is_link:
        raise ArchiveError(f"{ref}: is a link (to {member.linkname!r}); streamprep refuses links when writing the "
                           "folder layout. Repack the archive with regular files")
    if member.is_device:
        raise ArchiveError(f"{ref}: is a device or FIFO entry; streamprep refuses it. Repack the archive")
    name = member.name
    if name.startswith("/") or "\\" in name:
        raise ArchiveError(f"{ref}: absolute or Windows-style path; streamprep refuses to write it. Repack the archive")
    parts = [p for p in normalize(name).split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ArchiveError(f"{ref}: path contains '..'; streamprep refuses to write outside the target folder")
    if not parts and not member.is_dir:  # a directory entry `./` is the target folder itself
        raise ArchiveError(f"{ref}: empty member name; the archive is corrupt")
    return parts


class Tree:
    """A local folder receiving files under their final names only when complete, with tar's mtimes."""

    def __init__(self, base: str) -> None:
        self.base = os.path.abspath(base)
        self._dirs: dict[str, float] = {}
        self._swept: set[str] = set()
        self._lock = threading.Lock()

    def _sweep(self, folder: str) -> None:
        """Remove temporary files an interrupted run left in `folder` (once per folder and run)."""
        with self._lock:
            if folder in self._swept:
                return
            self._swept.add(folder)
        for name in os.listdir(folder):
            if TEMPORARY.fullmatch(name):
                os.unlink(os.path.join(folder, name))

    def path(self, parts: Iterable[str]) -> str:
        path = os.path.join(self.base, *parts)
        if os.path.commonpath([self.base, os.path.abspath(path)]) != self.base:  # defence in depth
            raise OutputError(f"{path}: outside {self.base}; refused")
        return path

    def complete(self, path: str, size: int, mtime: float) -> bool:
        """Whether a previous run already wrote this file completely (as `tar --keep-newer` judges: size, mtime)."""
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return False
        return st.st_size == size and abs(st.st_mtime - mtime) < 1e-6

    def write(self, parts: list[str], data: bytes, mtime: float) -> None:
        path = self.path(parts)
        folder = os.path.dirname(path)
        try:
            os.makedirs(folder, exist_ok=True)
            self._sweep(folder)
            tmp = os.path.join(folder, f".{parts[-1]}.{uuid.uuid4().hex[:8]}.streamprep-tmp")
            try:
                with open(tmp, "wb") as f:
                    f.write(data)
                os.utime(tmp, (mtime, mtime))
                os.replace(tmp, path)
            except BaseException:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                raise
        except OSError as e:
            raise OutputError(f"{path}: cannot write ({e}); check free space and permissions of --materialize") from e

    def directory(self, parts: list[str], mtime: float) -> None:
        """A directory entry of an archive: created now, its mtime set at the end (as tar does)."""
        path = self.path(parts)
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as e:
            raise OutputError(f"{path}: cannot create ({e}); check --materialize") from e
        self._dirs[path] = mtime

    def finish(self) -> None:
        for path, mtime in sorted(self._dirs.items(), reverse=True):
            os.utime(path, (mtime, mtime))


def _extract(tree: Tree, member: TarMember, parts: list[str], read, summary: PartSummary, phase: Phase) -> None:
    done = tree.complete(tree.path(parts), member.size, member.mtime)
    if not done:
        tree.write(parts, read(member), member.mtime)
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


def _bboxes(tree: Tree, source: Source, csv: bytes, summary: FolderTreeSummary, progress: Callback | None) -> None:
    part = summary.parts.setdefault("bboxes", PartSummary())
    with Phase(progress, "materialize bboxes", total_bytes=source.size, unit="files") as phase:
        for m, data, _ in gzip_members(source):
            parts = [BBOX_DIR, *safe_parts(m, source.url)]
            if m.is_dir:
                tree.directory(parts, m.mtime)
            elif m.is_file:
                _extract(tree, m, parts, lambda _: data, part, phase)
    tree.write([BBOXES_CSV], csv, time.time())


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
                tree.directory([VAL_DIR, *parts], m.mtime)
                continue
            if not m.is_file:
                continue
            synset = listed.get(parts[0]) if len(parts) == 1 else None
            if synset is None:  # the classic's re-organisation leaves it where tar put it
                if len(parts) == 1 and parts[0].endswith(".JPEG"):
                    summary.unlisted_validation.append(parts[0])
                _extract(tree, m, [VAL_DIR, *parts], read, part, phase)
            else:
                _extract(tree, m, [VAL_DIR, synset, parts[0]], read, part, phase)


def _train(tree: Tree, source: Source, workers: int, summary: FolderTreeSummary, progress: Callback | None) -> None:
    """The training tar: class tars walked in parallel locally, in order through one readahead remotely."""
    part = summary.parts.setdefault("train", PartSummary())
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
                        tree.directory(parts, m.mtime)
                    elif m.is_file:
                        _extract(tree, m, parts, read, part, phase)

        read = _member_reader(source, read_at, source.url)
        futures = []
        try:
            for m in members(source, read_at):
                parts = safe_parts(m, source.url)
                if m.is_dir:
                    tree.directory([TRAIN_DIR, *parts], m.mtime)
                elif m.is_file and len(parts) == 1 and parts[0].endswith(".tar"):
                    # The manual route extracts each nXXXXXXXX.tar into nXXXXXXXX/; the tar is never written.
                    folder = [TRAIN_DIR, parts[0][:-len(".tar")]]
                    if source.remote:
                        class_tar(m, folder, read_at)
                    else:
                        futures.append(pool.submit(class_tar, m, folder))
                elif m.is_file:
                    _extract(tree, m, [TRAIN_DIR, *parts], read, part, phase)
            for f in futures:
                f.result()
        except BaseException:  # an error or Ctrl-C: drop the class tars not yet started
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def materialize(base: str, train: Source, val: Source, bbox: Source, labels: LabelData, bboxes_csv: bytes,
                workers: int = 2, progress: Callback | None = None) -> FolderTreeSummary:
    """Write the classic folder layout under `base` (a local folder); rerunning completes an interrupted run."""
    tree = Tree(base)
    summary = FolderTreeSummary(tree.base)
    _bboxes(tree, bbox, bboxes_csv, summary, progress)
    _validation(tree, val, labels, summary, progress)
    _train(tree, train, workers, summary, progress)
    tree.finish()
    return summary


def tree_path(base: str, spec: RecordSpec, split: str) -> str:
    """Where the folder tree holds a record's image."""
    return os.path.join(base, TRAIN_DIR if split == "train" else VAL_DIR, spec.synset, spec.filename)
