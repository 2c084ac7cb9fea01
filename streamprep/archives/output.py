"""The output folder as storage (beside `storage.Source`): files appear under their final name only when complete."""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from typing import Any, BinaryIO, Iterator

from fsspec.implementations.local import LocalFileSystem

from . import retry
from .storage import protocol_of, rejected_options, resolve
from ..errors import OutputError

STATE_DIR = ".streamprep"  # streamprep's own state in `out` (saved index, lock): hidden from tools globbing shards
NOFOLLOW, CLOEXEC = getattr(os, "O_NOFOLLOW", 0), getattr(os, "O_CLOEXEC", 0)  # POSIX (O_EXCL alone elsewhere)


class Output:
    """A folder (local or remote) that receives shards and bboxes.csv."""

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None, create: bool = True) -> None:
        self.url = url
        self.storage_options = storage_options or {}
        self.fs, self.root = resolve(url, self.storage_options)
        self.local = protocol_of(url) == "file" and isinstance(self.fs, LocalFileSystem)
        cache = getattr(self.fs, "dircache", None)
        if not self.local and hasattr(cache, "use_listings_cache"):
            # What an output folder holds is asked of the store each time, never answered from a listing made
            # earlier: s3fs (2026.6) keeps a glob's prefix-filtered listing as the folder's whole listing, and a
            # file written since, or left out of it, would then be taken for missing (the lease, a shard on resume).
            cache.use_listings_cache = False
            cache.clear()
        if create:
            self.create()

    def create(self) -> None:
        url = self.url
        try:
            self.fs.makedirs(self.root, exist_ok=True)
        except TypeError as e:
            raise rejected_options(url, e) from e
        except OSError as e:
            raise OutputError(f"{url}: cannot create the output folder ({e}); choose a writable --out") from e

    def probe(self) -> None:
        """Check up front that the folder can be written: create it if needed, write and remove a hidden file."""
        self.create()
        name = self.path(f".streamprep-probe-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        try:
            if self.local:
                os.close(create_new(name))
                os.unlink(name)
            else:
                with self.fs.open(name, "wb") as f:
                    f.write(b"")
                self.fs.rm(name)
        except OSError as e:
            raise OutputError(f"{self.url}: cannot write into the output folder ({e}); choose a writable --out") from e

    def path(self, name: str) -> str:
        return f"{self.root.rstrip('/')}/{name}"

    def refuse_links(self, folder: str) -> None:
        """On a local `out`, refuse to use a symbolic link among `folder`'s parts below it (one left there before
        the run would take a file written, or read back, outside `out`): `OutputError`."""
        if not folder or protocol_of(self.url) != "file":
            return
        current = self.root.rstrip("/")
        for part in folder.split("/"):
            current = f"{current}/{part}"
            if os.path.islink(current):
                raise OutputError(f"{current}: is a symbolic link; streamprep writes only inside {self.url} and will "
                                  "not follow it. Remove the link")

    def is_link(self, name: str) -> bool:
        """Whether `name` itself is a symbolic link on a local `out`: never a finished file of a run (what it points
        to may lie outside `out`), so it is neither kept nor read back; a write replaces the link itself."""
        return self.local and os.path.islink(self.path(name))

    @contextmanager
    def atomic(self, name: str, durable: bool = False) -> Iterator[BinaryIO]:
        """Write `name` through a hidden temporary file beside it, renamed to `name` once closed without error.

        The one way files of `out` are written. On local disk the temporary file is created new inside `out`
        (`O_EXCL`, never through a link: `O_NOFOLLOW`) and renamed with `os.replace`, which replaces a link or a
        file at `name` (the link, never what it points to) and never moves into a folder; a folder at `name` is
        an `OutputError`. Elsewhere it is copied onto `name` as one object (`cp_file`: no folder rules) and
        removed. `durable`: on local disk the file and its folder are flushed to the disk (fsync) before this
        returns (the journal)."""
        folder, _, base = name.rpartition("/")
        self.refuse_links(folder)
        if folder:
            self.fs.makedirs(self.path(folder), exist_ok=True)
        final = self.path(name)
        if self.local and os.path.isdir(final) and not os.path.islink(final):
            raise OutputError(f"{final}: is a folder, where streamprep writes a file; remove it, or choose another "
                              "--out")
        tmp = self.path(f"{folder}{'/' if folder else ''}.{base}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
        try:
            if self.local:
                with open(tmp, "wb", opener=lambda path, _: create_new(path)) as f:  # its `name` the path
                    yield f
                    if durable:
                        f.flush()
                        os.fsync(f.fileno())
                os.replace(tmp, final)
                if durable:
                    _fsync_folder(os.path.dirname(final))
            else:
                with self.fs.open(tmp, "wb") as f:
                    yield f
                self._rename(tmp, final)
        except BaseException as e:
            try:
                if self.local:
                    os.unlink(tmp)
                elif self.fs.exists(tmp):
                    self.fs.rm(tmp)
            except OSError:
                pass
            if isinstance(e, OSError) and not retry.transient(e):  # transient ones: the caller's retry decides
                raise OutputError(f"{self.path(name)}: cannot write ({e}); check free space and permissions "
                                  "of --out; finished files are kept") from e
            raise

    def _rename(self, tmp: str, final: str) -> None:
        """A remote store's rename: the object copied to its final key, then removed (fsspec's `mv` would move it
        into a "folder" of keys below the final name)."""
        try:
            self.fs.cp_file(tmp, final)
        except NotImplementedError:
            self.fs.mv(tmp, final)
            return
        self.fs.rm_file(tmp)


def create_new(path: str, mode: int = 0o666) -> int:
    """A new file, opened for writing: refused if anything (a file, a link) is at `path` already."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW | CLOEXEC, mode)


def _fsync_folder(folder: str) -> None:
    """Make a rename in `folder` durable (its entry written to the disk)."""
    try:
        fd = os.open(folder or ".", os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # a file system that cannot sync a folder: the rename is as durable as it makes it
    finally:
        os.close(fd)
