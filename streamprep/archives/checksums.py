"""`--check-md5`: the downloads against the MD5 sums their dataset's entry publishes (`datasets`)."""

from __future__ import annotations

import hashlib
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Mapping, Protocol

from .storage import Source, sequential_reader
from ..errors import ArchiveError
from ..progress import Callback, Phase

PIECE = 4 << 20
log = logging.getLogger(__name__)


class Published(Protocol):
    """One download as its publisher lists it: a dataset entry's `datasets.Download` (name, MD5, rounded size)."""

    name: str
    md5: str
    shown: str

    def plausible(self, size: int) -> bool: ...


def md5_of(source: Source, phase: Phase | None = None) -> str:
    """The MD5 of a whole download, read front to back (read ahead on remote storage)."""
    digest = hashlib.md5()
    with sequential_reader(source) as read_at:
        offset = 0
        while offset < source.size:
            piece = read_at(offset, PIECE)
            if not piece:
                raise ArchiveError(f"{source.url}: ended at byte {offset}, before its size {source.size}; "
                                   "the file changed while it was read, run again")
            digest.update(piece)
            offset += len(piece)
            if phase:
                phase.advance(0, len(piece))
    return digest.hexdigest()


def check(sources: dict[str, Source], known: dict[str, str], progress: Callback | None = None, *,
          published: Mapping[str, Published]) -> dict[str, str]:
    """MD5 of each official download, compared with the published sum; a mismatch raises, nothing is written.

    `published` is the dataset's downloads by role (`datasets.Dataset.published`). `known` holds sums computed by
    an earlier run for the same (unchanged) files. A download that is not the official file (another name, or a
    size far from the published one) is not checked, with a warning: the published sums do not apply to it.
    """
    todo: dict[str, Source] = {}
    official: set[str] = set()
    for key, source in sources.items():
        listed = published[key]
        name = source.url.rstrip("/").rsplit("/", 1)[-1]
        if name != listed.name or not listed.plausible(source.size):
            log.warning(f"{source.url} is not the official {listed.name} ({source.size:,} bytes; the official "
                        f"file is {listed.shown}): the published MD5 does not apply, so it is not checked")
            continue
        official.add(key)
        if key not in known:
            todo[key] = source
    sums = {k: v for k, v in known.items() if k in official}
    if todo:
        with Phase(progress, "checking MD5", total_bytes=sum(s.size for s in todo.values()), unit="files") as phase, \
                ThreadPoolExecutor(len(todo), thread_name_prefix="md5") as pool:
            futures = {k: pool.submit(md5_of, s, phase) for k, s in todo.items()}
            sums.update({k: f.result() for k, f in futures.items()})
    for key, got in sums.items():
        listed = published[key]
        if got != listed.md5:
            raise ArchiveError(f"{sources[key].url}: MD5 is {got}, the published MD5 of {listed.name} is "
                               f"{listed.md5}; the download is corrupt or incomplete. Nothing was written; "
                               "fetch it again")
    return sums


def known_sums(recorded: dict[str, Any] | None, identities: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Sums an earlier run's manifest recorded (its `md5`) for downloads whose identity has not changed."""
    recorded = recorded or {}
    out = {}
    for key, entry in recorded.items():
        current = identities.get(key)
        if isinstance(entry, dict) and current and entry.get("identity") == current \
                and (current.get("mtime") is not None or current.get("etag") is not None):
            out[key] = entry.get("md5")
    return out
