"""The output location: any fsspec URL; files appear under their final name only when complete."""

from __future__ import annotations

import os
import re
import uuid
from contextlib import contextmanager
from typing import Any, BinaryIO, Iterator

from ..archives import retry
from ..archives.storage import protocol_of, rejected_options, resolve
from ..errors import OutputError


class Output:
    """A folder (local or remote) that receives shards and bboxes.csv."""

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None, create: bool = True) -> None:
        self.url = url
        self.storage_options = storage_options or {}
        self.fs, self.root = resolve(url, self.storage_options)
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

    @contextmanager
    def atomic(self, name: str) -> Iterator[BinaryIO]:
        """Write `name` through a hidden temporary file, renamed to `name` once closed without error."""
        folder, _, base = name.rpartition("/")
        self.refuse_links(folder)
        if folder:
            self.fs.makedirs(self.path(folder), exist_ok=True)
        tmp = self.path(f"{folder}{'/' if folder else ''}.{base}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
        try:
            with self.fs.open(tmp, "wb") as f:
                yield f
            self.fs.mv(tmp, self.path(name))
        except BaseException as e:
            try:
                if self.fs.exists(tmp):
                    self.fs.rm(tmp)
            except OSError:
                pass
            if isinstance(e, OSError) and not retry.transient(e):  # transient ones: the caller's retry decides
                raise OutputError(f"{self.path(name)}: cannot write ({e}); check free space and permissions "
                                  "of --out; finished files are kept") from e
            raise


TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)-[0-9a-f]{8}\.tmp$")


def sweep(output: Output, names: set[str]) -> list[str]:
    """Remove temporary files that runs killed before finishing left for any of `names` (which may lie in
    folders below `out`); their paths."""
    removed = []
    by_folder: dict[str, set[str]] = {}
    for name in names:
        folder, _, base = name.rpartition("/")
        by_folder.setdefault(folder, set()).add(base)
    for folder, bases in sorted(by_folder.items()):
        try:
            listing = output.fs.ls(output.path(folder) if folder else output.root, detail=False)
        except FileNotFoundError:
            continue
        for path in listing:
            m = TEMPORARY.match(path.rstrip("/").rsplit("/", 1)[-1])
            if m and m["name"] in bases and int(m["pid"]) != os.getpid():
                try:
                    output.fs.rm(path)
                    removed.append(path)
                except FileNotFoundError:
                    pass
    return removed
