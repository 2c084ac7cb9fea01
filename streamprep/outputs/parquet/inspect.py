"""inspect of a Parquet file (Hugging Face's imagenet-1k layout): its rows, labels 0..N-1 named by its ClassLabel."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from ...archives.storage import Source
from ...index.labels import LabelData
from ...inspection import Inspection, NotRecognised, Reader, read_failed
from .frame import MAGIC
from .write import pyarrow_for

PARQUET_LABELS = ("label as stored: Hugging Face's ClassLabel 0..N-1, 0..999 for ILSVRC2012 (the index in the run's "
                  "synset list; the classic's image/class/label is this + 1)")
BATCH = 256  # rows read at a time


def class_label_names(schema: Any) -> list[str] | None:
    """The names of the file's `label` ClassLabel (its `huggingface` metadata), or None if it gives none."""
    try:
        features = json.loads((schema.metadata or {}).get(b"huggingface", b"null"))["info"]["features"]
        names = features["label"]["names"]
    except (ValueError, TypeError, KeyError):
        return None
    return [str(n) for n in names] if isinstance(names, list) else None


def _entry(row: dict[str, Any], names: list[str] | None, labels: LabelData) -> dict[str, Any]:
    """One row as shown: its path, label (0..N-1), the synset of that line of the synsets file, the class name."""
    image, label = row.get("image") or {}, row.get("label")
    known = isinstance(label, int) and label >= 0
    synset = labels.synsets[label] if known and label < len(labels.synsets) else None
    text = names[label] if known and names and label < len(names) else labels.texts.get(synset or "")
    data = image.get("bytes")
    return {"filename": image.get("path"), "label": label, "synset": synset, "text": text, "height": None,
            "width": None, "bytes": None if data is None else len(data), "boxes": []}


def parquet_file(source: Source, labels: LabelData, limit: int) -> Inspection:
    """A Parquet file of `image` and `label` rows, read with pyarrow."""
    pa = pyarrow_for("inspect of a Parquet file")
    pq = pa.parquet
    found = Inspection(source.url, "Parquet file (Hugging Face imagenet-1k)", source.size,
                       label_numbering=PARQUET_LABELS)
    with source.fs.open(source.path, "rb") as f:
        try:
            parquet = pq.ParquetFile(f)
            columns = {field.name for field in parquet.schema_arrow}
            if not {"image", "label"} <= columns:
                raise NotRecognised(f"a Parquet file, but its columns are {', '.join(sorted(columns))}, not "
                                    "image and label (Hugging Face's imagenet-1k)")
            names = class_label_names(parquet.schema_arrow)
            counted = Counter(parquet.read(columns=["label"]).column("label").to_pylist())
            for batch in parquet.iter_batches(batch_size=max(1, min(limit, BATCH)), columns=["image", "label"]):
                found.entries = [_entry(row, names, labels) for row in batch.to_pylist()[:limit]]
                break
        except (pa.ArrowException, OSError, ValueError) as e:
            raise read_failed(source, "the Parquet file", e) from e
    rows = parquet.metadata.num_rows
    found.facts = {"written by": str(parquet.metadata.created_by),
                   "label": f"ClassLabel of {len(names)} names" if names else "no ClassLabel in its metadata"}
    found.counts = {"rows": rows, "labels": len(counted), "row groups": parquet.num_row_groups}
    found.more = rows - len(found.entries)
    if rows == 0:
        found.notes.append("no rows: convert writes one such file for a split with fewer images than shards")
    return found


class ParquetReader(Reader):
    """Parquet files, by the magic they open with."""

    def binary(self, source: Source, head: bytes, labels: LabelData, limit: int) -> Inspection | None:
        return parquet_file(source, labels, limit) if head[:len(MAGIC)] == MAGIC else None
