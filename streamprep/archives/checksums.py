"""`--check-md5`: the three downloads against the MD5 sums published for ILSVRC2012."""

from __future__ import annotations

import hashlib
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from .storage import Source, sequential_reader
from ..errors import ArchiveError
from ..progress import Callback, Phase

GIB, MIB = 1 << 30, 1 << 20
PIECE = 4 << 20
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Published:
    """One download as the ImageNet site lists it: name, MD5 and rounded size."""

    name: str
    md5: str
    about: float  # bytes, as rounded on the download page
    shown: str

    def plausible(self, size: int) -> bool:
        return abs(size - self.about) <= 0.05 * self.about


# From the download page (../shared/seed/imagenet-data-preparation.md, step 1).
PUBLISHED = {
    "train": Published("ILSVRC2012_img_train.tar", "1d675b47d978889d74fa0da5fadfb00e", 138 * GIB, "138 GB"),
    "val": Published("ILSVRC2012_img_val.tar", "29b22e2961454d5413ddabcf34fc5622", 6.3 * GIB, "6.3 GB"),
    "bbox": Published("ILSVRC2012_bbox_train_v2.tar.gz", "9271167e2176350e65cfe4e546f14b17", 20 * MIB, "20 MB"),
}


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


def check(sources: dict[str, Source], known: dict[str, str], progress: Callback | None = None) -> dict[str, str]:
    """MD5 of each official download, compared with the published sum; a mismatch raises, nothing is written.

    `known` holds sums computed by an earlier run for the same (unchanged) files. A download that is
    not the official file (another name, or a size far from the published one) is not checked, with
    a warning: the published sums do not apply to it.
    """
    todo: dict[str, Source] = {}
    official: set[str] = set()
    for key, source in sources.items():
        published = PUBLISHED[key]
        name = source.url.rstrip("/").rsplit("/", 1)[-1]
        if name != published.name or not published.plausible(source.size):
            log.warning(f"{source.url} is not the official {published.name} ({source.size:,} bytes; the official "
                           f"file is {published.shown}): the published MD5 does not apply, so it is not checked")
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
        published = PUBLISHED[key]
        if got != published.md5:
            raise ArchiveError(f"{sources[key].url}: MD5 is {got}, the published MD5 of {published.name} is "
                               f"{published.md5}; the download is corrupt or incomplete. Nothing was written; "
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
