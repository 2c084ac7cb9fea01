"""inspect of a LitData chunk (its items: class, image size) and of a split's index.json; both told by their content.

A chunk is recognised by its header (an item count, then offsets: the first the header's size, the last the
file's) and its first item (leaf sizes `(jpeg, 8)` filling it): another format with such a header (MosaicML's
MDS) lays out its items otherwise. A chunk without items (8 bytes: `0`, then the offset `8`) says nothing of
its items, so it is told by its name (`*.bin`).
"""

from __future__ import annotations

import struct
from collections import Counter
from typing import Any, BinaryIO

from ...archives.storage import Source
from ...index.labels import LabelData
from ...inspection import Inspection, Reader, read_failed
from .write import DATA_FORMAT, ITEM_OVERHEAD, LABEL, OFFSET, SIZES

CHUNK_LABELS = ("class as stored: 0..N-1, 0..999 for ILSVRC2012 (the synset's index in the run's synset list; the "
                "classic's image/class/label is this + 1)")


def _offsets(source: Source, head: bytes) -> list[int] | None:
    """A chunk's offsets, if the file opens with a LitData chunk's header whose first item is `(jpeg, int)`."""
    if len(head) < 2 * OFFSET:
        return None
    n, first = struct.unpack_from("<II", head)
    if first != OFFSET * (n + 2) or first > source.size:
        return None
    table = head[OFFSET:first] if len(head) >= first else source.read_at(OFFSET, first - OFFSET)
    offsets = list(struct.unpack(f"<{n + 1}I", table))
    if offsets[-1] != source.size:
        return None
    if n == 0:
        return offsets if source.path.endswith(".bin") else None
    if offsets[1] - first < ITEM_OVERHEAD:
        return None
    item = head[first:first + SIZES.size] if len(head) >= first + SIZES.size else source.read_at(first, SIZES.size)
    image_size, label_size = SIZES.unpack(item)
    return offsets if label_size == LABEL.size and SIZES.size + image_size + LABEL.size == offsets[1] - first else None


def _entry(f: BinaryIO, k: int, offset: int, span: int, labels: LabelData) -> dict[str, Any]:
    """Item `k` as shown: its class (and the synset and text the label data give it), its image's size. A sample
    holds no file name: the item is named by its place."""
    data = f.read(span)
    image_size, _ = SIZES.unpack_from(data)
    (cls,) = LABEL.unpack_from(data, SIZES.size + image_size)
    synset = labels.synsets[cls] if 0 <= cls < len(labels.synsets) else None
    return {"filename": f"item {k} (byte {offset:,})", "label": cls, "synset": synset,
            "text": labels.texts.get(synset or ""), "height": None, "width": None, "bytes": image_size, "boxes": []}


def chunk(source: Source, offsets: list[int], labels: LabelData, limit: int) -> Inspection:
    """A chunk's items, read in order."""
    found = Inspection(source.url, "LitData chunk", source.size, label_numbering=CHUNK_LABELS,
                       facts={"data format": ", ".join(DATA_FORMAT) + " (a sample: the tuple (image, class))"})
    counted: Counter = Counter()
    k = 0
    with source.fs.open(source.path, "rb") as f:
        try:
            f.seek(offsets[0])
            for k in range(len(offsets) - 1):
                entry = _entry(f, k, offsets[k], offsets[k + 1] - offsets[k], labels)
                counted[entry["label"]] += 1
                if len(found.entries) < limit:
                    found.entries.append(entry)
        except (struct.error, OSError, ValueError) as e:
            raise read_failed(source, f"item {k}", e) from e
    found.counts = {"items": len(offsets) - 1, "labels": len(counted)}
    found.more = len(offsets) - 1 - len(found.entries)
    if len(offsets) == 1:
        found.notes.append("a chunk without items: convert writes one for a split with fewer images than shards, and "
                           "leaves it out of index.json")
    return found


def index_json(source: Source, data: dict[str, Any], limit: int) -> Inspection:
    """A split's index.json: its config and its chunks, each with its items and bytes."""
    config = data["config"]
    found = Inspection(source.url, "LitData index.json", source.size,
                       facts={"data format": ", ".join(map(str, config.get("data_format") or [])),
                              "item loader": str(config.get("item_loader")),
                              "compression": str(config.get("compression")),
                              "updated_at": str(data.get("updated_at"))})
    chunks = [c for c in data["chunks"] if isinstance(c, dict)]
    found.counts = {"chunks": len(chunks), "items": sum(int(c.get("chunk_size") or 0) for c in chunks),
                    "chunk bytes": sum(int(c.get("chunk_bytes") or 0) for c in chunks)}
    found.entries = [{"name": c.get("filename"), "records": c.get("chunk_size"), "bytes": c.get("chunk_bytes")}
                     for c in chunks[:limit]]
    found.more = len(chunks) - len(found.entries)
    return found


class LitDataReader(Reader):
    """LitData's chunks (by their header and first item) and a split's index.json (by its chunks and config)."""

    def binary(self, source: Source, head: bytes, labels: LabelData, limit: int) -> Inspection | None:
        offsets = _offsets(source, head)
        return None if offsets is None else chunk(source, offsets, labels, limit)

    def json(self, source: Source, data: dict[str, Any], limit: int) -> Inspection | None:
        config = data.get("config")
        if isinstance(data.get("chunks"), list) and isinstance(config, dict) and "data_format" in config:
            return index_json(source, data, limit)
        return None
