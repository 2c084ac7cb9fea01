"""Where a shard's image bytes come from: their byte ranges in the download, or the folder tree `--materialize` wrote."""

from __future__ import annotations

from ..archives.storage import Source
from ..errors import OutputError
from ..outputs.format import Reader
from ..outputs.materialize import tree_path
from ..records.spec import RecordSpec


class ArchiveReader:
    """Image bytes from their byte ranges in the download; `ahead` has the kernel read the next batch's ranges
    of a local download in the background, those not in memory already (on a cold page cache they are
    random reads all over the archive)."""

    def __init__(self, source: Source) -> None:
        self.source = source

    def __call__(self, batch: list[RecordSpec]) -> list[bytes]:
        return self.source.read_ranges([(s.offset, s.size) for s in batch])

    def ahead(self, batch: list[RecordSpec]) -> None:
        self.source.advise([(s.offset, s.size) for s in batch])


def archive_reader(source: Source) -> Reader:
    """Image bytes from their byte ranges in the download."""
    return ArchiveReader(source)


def tree_reader(base: str, split: str) -> Reader:
    """Image bytes from the classic folder tree that `--materialize` wrote (same bytes, local disk)."""
    def read(batch: list[RecordSpec]) -> list[bytes]:
        out = []
        for spec in batch:
            path = tree_path(base, spec, split)
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except OSError as e:
                raise OutputError(f"{path}: cannot read the materialized image ({e}); rerun to complete the "
                                  "folder tree") from e
            if len(data) != spec.size:
                raise OutputError(f"{path}: {len(data)} bytes, the archive's {spec.member} has {spec.size}; "
                                  "the folder tree was changed, delete the file and rerun")
            out.append(data)
        return out
    return read


__all__ = ["ArchiveReader", "archive_reader", "tree_reader"]
