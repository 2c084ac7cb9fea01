"""inspect of a WebDataset shard (its samples, the label as its .cls holds it), its DALI index, timm's _info.json and
the wids shard list."""

from __future__ import annotations

import json
import re
import tarfile
from collections import Counter
from typing import Any, Callable

from ...archives.storage import Source
from ...index.labels import LabelData
from ...inspection import Inspection, Lines, NotRecognised, Reader, read_failed, rounded, shard_beside
from .check import IMAGES, MAX_SMALL_MEMBER, MEMBERS
from .write import WIDS_KIND

WEBDATASET_LABELS = (".cls as stored: 0..N-1, 0..999 for ILSVRC2012 (the synset's index in the run's synset "
                     "list; the classic's image/class/label is this + 1)")
INDEX_HEAD = re.compile(r"v1\.2 \d+")  # DALI's wds2idx: `v1.2 SAMPLES`


def webdataset_shard(source: Source, labels: LabelData, limit: int) -> Inspection:
    """A WebDataset shard's samples: the label as its `.cls` holds it (0..N-1), the rest from its `.json`."""
    found = Inspection(source.url, "WebDataset shard", source.size, label_numbering=WEBDATASET_LABELS)
    samples = boxes = 0
    counted: Counter = Counter()
    current: dict[str, Any] = {}
    key: str | None = None

    def close() -> None:
        nonlocal samples, boxes
        entry = _entry(key, current, labels)
        samples += 1
        counted[entry["label"]] += 1
        boxes += len(entry["boxes"])
        if len(found.entries) < limit:
            found.entries.append(entry)

    with source.fs.open(source.path, "rb") as f:
        try:
            with tarfile.open(fileobj=f, mode="r|") as tar:  # type: ignore[call-overload]
                for member in tar:
                    stem, _, ext = member.name.rpartition(".")
                    if stem != key and key is not None:
                        close()
                        current = {}
                    key = stem
                    _member(tar, member, ext, current)
            if key is not None:
                close()
        except (tarfile.TarError, ValueError, EOFError, OSError) as e:
            raise read_failed(source, f"sample {samples}", e) from e
    found.counts = {"samples": samples, "labels": len(counted), "boxes": boxes}
    found.more = samples - len(found.entries)
    if samples == 0:
        found.notes.append("an empty tar: convert writes one as the shard of a split with fewer images than shards")
    return found


def _member(tar: tarfile.TarFile, member: tarfile.TarInfo, ext: str, current: dict[str, Any]) -> None:
    """One member of the sample being read: the image's size (`.jpg`, a resized output's `.png` or `.webp`), the
    .cls's class, the .json's object."""
    if ext in IMAGES:
        current["image"] = member.size
    elif ext in ("cls", "json") and member.isfile() and member.size <= MAX_SMALL_MEMBER:
        reader = tar.extractfile(member)
        data = reader.read() if reader else b""
        if ext == "cls":
            current["cls"] = int(data) if data.strip().isdigit() else None
        else:
            try:
                meta = json.loads(data)
            except (ValueError, RecursionError):
                meta = {}
            current["json"] = meta if isinstance(meta, dict) else {}


def _entry(key: str | None, current: dict[str, Any], labels: LabelData) -> dict[str, Any]:
    """A sample as shown: its key, the label its .cls holds, the rest from its .json (or the label data)."""
    meta = current.get("json") or {}
    cls = current.get("cls")
    synset = meta.get("synset") if isinstance(meta.get("synset"), str) else (
        labels.synsets[cls] if cls is not None and cls < len(labels.synsets) else None)
    text = meta.get("text") if isinstance(meta.get("text"), str) else labels.texts.get(synset or "")
    return {"key": key, "filename": meta.get("filename", key), "label": cls, "synset": synset, "text": text,
            "height": meta.get("height"), "width": meta.get("width"), "bytes": current.get("image"),
            "boxes": _boxes(meta.get("boxes"))}


def _boxes(found: Any) -> list[list[float]]:
    """A .json's boxes as shown, or none if they are not a list of four numbers each."""
    if not isinstance(found, list) or not all(isinstance(b, list) and len(b) == 4 and
                                              all(isinstance(v, (int, float)) for v in b) for b in found):
        return []
    return [rounded(b) for b in found]


def webdataset_index(source: Source, lines: Lines, limit: int) -> Inspection:
    """DALI's index of a WebDataset shard (`wds2idx`, v1.2): `v1.2 SAMPLES`, then per sample `ext offset size name`
    for each member."""
    found = Inspection(source.url, "DALI index of a WebDataset shard", source.size,
                       facts={"shard": shard_beside(source)})
    samples = declared = 0
    for number, line in lines:
        parts = line.split(" ")
        if number == 1:
            declared = int(parts[1])
            continue
        if len(parts) % 4 or not parts or not all(p.isdigit() for p in parts[1::4] + parts[2::4]):
            raise NotRecognised(f"a DALI index of a WebDataset shard up to line {number}, which is not "
                                "'EXT OFFSET SIZE NAME ...'")
        samples += 1
        if len(found.entries) < limit:
            members = [{"ext": parts[k], "offset": int(parts[k + 1]), "size": int(parts[k + 2])}
                       for k in range(0, len(parts), 4)]
            found.entries.append({"key": parts[3].rpartition(".")[0], "members": members})
    found.counts = {"samples": samples}
    found.more = samples - len(found.entries)
    if declared != samples:
        found.notes.append(f"its first line says {declared:,} samples, it lists {samples:,}")
    return found


def timm_info(source: Source, data: dict[str, Any], limit: int) -> Inspection:
    """timm's _info.json: per split its samples and shard files."""
    found = Inspection(source.url, "timm's _info.json (WebDataset)", source.size,
                       facts={"name": str(data.get("name"))})
    for name, split in data["splits"].items():
        found.counts |= {f"{name} samples": split.get("num_samples", 0), f"{name} shards": len(split["filenames"])}
        for file, n in zip(split["filenames"], split.get("shard_lengths", [])):
            if len(found.entries) < limit:
                found.entries.append({"name": file, "records": n})
            else:
                found.more += 1
    return found


def wids_index(source: Source, data: dict[str, Any], limit: int) -> Inspection:
    """A `wids` shard list (wids-shard-index-v1): its shards and their sample counts."""
    found = Inspection(source.url, "wids shard list (WebDataset)", source.size,
                       facts={"name": str(data.get("name"))})
    shards = [s for s in data["shardlist"] if isinstance(s, dict)]
    found.counts = {"samples": sum(s.get("nsamples", 0) for s in shards if isinstance(s.get("nsamples"), int)),
                    "shards": len(shards)}
    found.entries = [{"name": s.get("url"), "records": s.get("nsamples")} for s in shards[:limit]]
    found.more = len(shards) - len(found.entries)
    return found


class WebDatasetReader(Reader):
    """WebDataset shards (a tar of `KEY.jpg` (`.png`, `.webp`), `KEY.cls`, `KEY.json`; an empty tar), DALI's index of
    them, timm's `_info.json`, the wids shard list (`train.wids.json`)."""

    def tar(self, source: Source, member: str | None, labels: LabelData, limit: int) -> Inspection | None:
        if member is None or member.rpartition("/")[2].partition(".")[2] in MEMBERS:
            return webdataset_shard(source, labels, limit)  # an empty tar: an empty WebDataset shard
        return None

    def text(self, source: Source, first: str, lines: Callable[[], Lines], limit: int) -> Inspection | None:
        return webdataset_index(source, lines(), limit) if INDEX_HEAD.fullmatch(first) else None

    def json(self, source: Source, data: dict[str, Any], limit: int) -> Inspection | None:
        if data.get("__kind__") == WIDS_KIND and isinstance(data.get("shardlist"), list):
            return wids_index(source, data, limit)
        splits = data.get("splits")
        if isinstance(splits, dict) and all(isinstance(s, dict) and isinstance(s.get("filenames"), list)
                                            for s in splits.values()):
            return timm_info(source, data, limit)
        return None
