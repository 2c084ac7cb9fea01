"""inspect of an MDS shard (its samples: i, the label as y holds it, x's size) and of a split's index.json."""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np

from ...archives.storage import Source
from ...index.labels import LabelData
from ...inspection import Inspection, NotRecognised, Reader, read_failed
from .check import MAX_CONFIG
from .write import SAMPLE_OVERHEAD

MDS_LABELS = ("y as stored: 0..N-1, 0..999 for ILSVRC2012 (the synset's line in the run's synset list, less one; "
              "the classic's image/class/label is this + 1)")


def _opening(source: Source, head: bytes) -> tuple[np.ndarray, dict[str, Any]] | None:
    """An MDS file's offsets table and config, or None when the file does not open as one."""
    if len(head) < 8:
        return None
    count, first = struct.unpack_from("<II", head)
    table_end = 4 + 4 * (count + 1)
    if not table_end < first <= table_end + MAX_CONFIG or first > source.size:
        return None
    opening = head if len(head) >= first else source.read_at(0, first)
    offsets = np.frombuffer(opening[4:table_end], "<u4").astype(np.int64)
    try:
        config = json.loads(opening[table_end:first])
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(config, dict) or config.get("format") != "mds":
        return None
    return offsets, config


def mds_shard(source: Source, offsets: np.ndarray, config: dict[str, Any], labels: LabelData,
              limit: int) -> Inspection:
    """An MDS shard's samples (its first `limit` read): `i`, the label as `y` holds it (0..N-1), x's size."""
    columns = config.get("column_names") or []
    found = Inspection(source.url, "MDS shard (MosaicML streaming)", source.size, label_numbering=MDS_LABELS,
                       facts={"columns": ", ".join(f"{n}: {e}" for n, e in zip(columns, config.get("column_encodings")
                                                                             or [])),
                              "size_limit": str(config.get("size_limit"))})
    if columns != ["i", "x", "y"]:
        raise NotRecognised(f"an MDS shard of other columns ({found.facts['columns']}) than streaming's ImageNet "
                            "converter's (i: int, x: jpeg, y: int)")
    samples = len(offsets) - 1
    found.counts = {"samples": samples}
    for k in range(min(samples, limit)):
        start, size = int(offsets[k]), int(offsets[k + 1] - offsets[k])
        data = source.read_at(start, size) if SAMPLE_OVERHEAD <= size <= source.size - start else b""
        if size < SAMPLE_OVERHEAD or len(data) != size or size != SAMPLE_OVERHEAD + struct.unpack_from("<I", data)[0]:
            raise read_failed(source, f"sample {k}", ValueError(f"the file holds no sample of {size:,} bytes at "
                                                                f"byte {start:,}, where its offsets table says"))
        found.entries.append(_entry(data, labels))
    found.more = samples - len(found.entries)
    if samples == 0:
        found.notes.append("no samples: convert writes one as the shard of a split with fewer images than shards, and "
                           "leaves it out of index.json")
    return found


def _entry(data: bytes, labels: LabelData) -> dict[str, Any]:
    """A sample as shown: `i` in place of a file name (the converter's samples hold none), its y, x's size."""
    x_size, i = struct.unpack_from("<Iq", data)
    (y,) = struct.unpack_from("<q", data, 12 + x_size)
    synset = labels.synsets[y] if 0 <= y < len(labels.synsets) else None
    return {"filename": f"i {i}", "label": y, "synset": synset, "text": labels.texts.get(synset or ""),
            "height": None, "width": None, "bytes": x_size, "boxes": []}


def mds_index(source: Source, data: dict[str, Any], limit: int) -> Inspection:
    """A split's index.json: its shards, their samples and sizes."""
    shards = data["shards"]
    found = Inspection(source.url, "MDS index.json (MosaicML streaming)", source.size,
                       facts={"columns": ", ".join(f"{n}: {e}" for n, e in zip(shards[0].get("column_names", []),
                                                                             shards[0].get("column_encodings", [])))
                              if shards else ""})
    found.counts = {"samples": sum(int(s.get("samples", 0)) for s in shards), "shards": len(shards)}
    for shard in shards[:limit]:
        raw = shard.get("raw_data") or {}
        found.entries.append({"name": raw.get("basename"), "records": int(shard.get("samples", 0)),
                              "bytes": raw.get("bytes")})
    found.more = len(shards) - len(found.entries)
    return found


class MDSReader(Reader):
    """MDS shards (by their count, offsets table and config) and index.json (version 2, shards of format mds)."""

    def binary(self, source: Source, head: bytes, labels: LabelData, limit: int) -> Inspection | None:
        opening = _opening(source, head)
        return None if opening is None else mds_shard(source, *opening, labels, limit)

    def json(self, source: Source, data: dict[str, Any], limit: int) -> Inspection | None:
        shards = data.get("shards")
        if data.get("version") == 2 and isinstance(shards, list) and shards and all(
                isinstance(s, dict) and s.get("format") == "mds" for s in shards):
            return mds_index(source, data, limit)
        return None
