"""`streamprep inspect`: what a download or a shard holds, as plain values (the CLI prints them, or JSON).

A download is recognised by its content, not its name: a gzip file is the bounding-box archive, a
tar of `nXXXXXXXX.tar` members the training tar, a tar of JPEGs the validation tar, and a file
whose first record has a valid TFRecord length CRC a shard (streamprep's or the classic
procedure's). Downloads are walked as convert walks them (headers only for the image tars).
"""

from __future__ import annotations

import json
import struct
import tarfile
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from ..archives.storage import Source
from ..archives.walk import members
from ..errors import ArchiveError, OutputUnreadableError
from ..index.boxwalk import index_boxes
from ..index.images import Ignored, class_images, class_tars, regular_file
from ..index.labels import LabelData
from ..archives.tarscan import normalize
from .tfrecord import masked_crc, read_records
from .webdataset_check import MAX_SMALL_MEMBER, MEMBERS

SHOWN = 20  # records or members listed by default


@dataclass
class Inspection:
    """What `inspect` found: the kind of file, counts, the first entries, and members left out and why."""

    url: str
    kind: str  # "training tar", "validation tar", "bounding-box archive", "TFRecord shard", "WebDataset shard"
    size: int
    counts: dict[str, int] = field(default_factory=dict)
    per_class: dict[str, int] = field(default_factory=dict)  # synset -> images (a download)
    entries: list[dict[str, Any]] = field(default_factory=list)  # the first records or members
    ignored: dict[str, dict[str, Any]] = field(default_factory=dict)  # reason -> {"count", "examples"}
    more: int = 0  # entries not listed

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _ignored(ignored: Ignored) -> dict[str, dict[str, Any]]:
    return {reason: {"count": n, "examples": ignored.examples[reason]} for reason, n in sorted(ignored.counts.items())}


def inspect(url: str, labels: LabelData, storage_options: dict[str, Any] | None = None,
            limit: int = SHOWN) -> Inspection:
    """Look inside `url` (a path or fsspec URL): a download or a shard."""
    source = Source(url, storage_options or {})
    try:
        head = source.read_at(0, 512)
        if head[:2] == b"\x1f\x8b":
            return _bboxes(source, limit)
        if _is_tfrecord(head):
            return _shard(source, limit)
        return _tar(source, labels, limit)
    finally:
        source.close()


def _is_tfrecord(head: bytes) -> bool:
    return len(head) >= 12 and masked_crc(head[:8]) == struct.unpack("<I", head[8:12])[0]


def _tar(source: Source, labels: LabelData, limit: int) -> Inspection:
    first = next(iter(members(source)), None)
    if first is None:
        raise ArchiveError(f"{source.url}: empty, or neither a download streamprep knows (a tar, the bounding-box "
                           "tar.gz) nor a TFRecord shard")
    if normalize(first.name).endswith(".tar"):
        return _training(source, labels, limit)
    if normalize(first.name).rpartition(".")[2] in MEMBERS:
        return _webdataset_shard(source, limit)
    return _validation(source, labels, limit)


def _training(source: Source, labels: LabelData, limit: int) -> Inspection:
    ignored, containers = Ignored(), {}
    found = Inspection(source.url, "training tar", source.size)
    for label, outer in class_tars(source, labels, ignored, containers):
        group = class_images(source, outer, ignored)
        synset = labels.synsets[label - 1]
        found.per_class[synset] = len(group.names)
        for i in range(min(len(group.names), max(0, limit - len(found.entries)))):
            found.entries.append({"member": f"{outer.name}!{group.names[i]}", "label": label, "synset": synset,
                                  "bytes": int(group.sizes[i])})
    found.counts = {"classes": len(found.per_class), "images": sum(found.per_class.values())}
    found.more = found.counts["images"] - len(found.entries)
    found.ignored = _ignored(ignored)
    return found


def _validation(source: Source, labels: LabelData, limit: int) -> Inspection:
    from ..index.images import VALIDATION_PATTERN

    listed = {f"ILSVRC2012_val_{i + 1:08d}.JPEG": synset for i, synset in enumerate(labels.validation)}
    ignored = Ignored()
    found = Inspection(source.url, "validation tar", source.size)
    per_class: Counter = Counter()
    images = 0
    for m in members(source):
        name = normalize(m.name)
        ref = f"{source.url}!{m.name}"
        if m.is_dir:
            continue
        if "/" in name or not name.endswith(".JPEG"):
            ignored.add(ref, "not a *.JPEG at the top of the validation tar")
            continue
        if not regular_file(m, source.url, ignored):
            continue
        synset = listed.get(name)
        if synset is None:
            ignored.add(ref, "not listed in the validation labels file" if VALIDATION_PATTERN.fullmatch(name)
                        else "not named ILSVRC2012_val_NNNNNNNN.JPEG")
            continue
        if labels.label(synset) is None:
            ignored.add(ref, "validation image of a synset not in the labels file")
            continue
        images += 1
        per_class[synset] += 1
        if len(found.entries) < limit:
            found.entries.append({"member": m.name, "label": labels.label(synset), "synset": synset, "bytes": m.size})
    found.per_class = dict(sorted(per_class.items()))
    found.counts = {"classes": len(per_class), "images": images, "listed in the labels file": len(listed)}
    found.more = images - len(found.entries)
    found.ignored = _ignored(ignored)
    return found


def _bboxes(source: Source, limit: int) -> Inspection:
    ignored = Ignored()
    table = index_boxes(source, ignored)
    found = Inspection(source.url, "bounding-box archive", source.size,
                       {"XML files": table.files, "boxes": table.count})
    for image, boxes in table.entries():  # in bboxes.csv order; nothing here splits text a name could hold
        for box in boxes:
            found.entries.append({"image": image, "box": [round(float(v), 4) for v in box]})
        if len(found.entries) >= limit:
            del found.entries[limit:]
            break
    found.more = table.count - len(found.entries)
    found.ignored = _ignored(ignored)
    return found


def _shard(source: Source, limit: int) -> Inspection:
    from .example_proto import example_type as message_type

    example_type = message_type()
    found = Inspection(source.url, "TFRecord shard", source.size)
    records = boxes = 0
    labels: Counter = Counter()
    with source.fs.open(source.path, "rb") as f:
        try:
            for data in read_records(f, source.url):
                records += 1
                values = _values(example_type.FromString(data))
                labels[values.get("label")] += 1
                boxes += len(values.get("boxes", []))
                if len(found.entries) < limit:
                    found.entries.append(values)
        except Exception as e:  # noqa: BLE001 - damaged framing or a record that is no Example: said, then stop
            raise OutputUnreadableError(f"{source.url}: record {records} cannot be read ({e}); "
                                        "`streamprep verify` says what is wrong with it") from e
    found.counts = {"records": records, "labels": len(labels), "boxes": boxes}
    found.more = records - len(found.entries)
    return found


def _webdataset_shard(source: Source, limit: int) -> Inspection:
    """A WebDataset shard's samples, shown as a TFRecord shard's records are (the label the classic's, cls + 1)."""
    found = Inspection(source.url, "WebDataset shard", source.size)
    samples = boxes = 0
    labels: Counter = Counter()
    current: dict[str, Any] = {}

    def close() -> None:
        nonlocal samples, boxes
        meta = current.get("json") or {}
        values = {"filename": meta.get("filename"), "label": meta.get("label"), "synset": meta.get("synset"),
                  "text": meta.get("text"), "height": meta.get("height"), "width": meta.get("width"),
                  "bytes": current.get("jpg"), "boxes": _boxes(meta.get("boxes"))}
        samples += 1
        labels[values["label"]] += 1
        boxes += len(values["boxes"])
        if len(found.entries) < limit:
            found.entries.append(values)

    key = None
    with source.fs.open(source.path, "rb") as f:
        try:
            with tarfile.open(fileobj=f, mode="r|") as tar:  # type: ignore[call-overload]
                for member in tar:
                    stem, _, ext = member.name.rpartition(".")
                    if stem != key and key is not None:
                        close()
                        current = {}
                    key = stem
                    if ext == "jpg":
                        current["jpg"] = member.size
                    elif ext == "json" and member.isfile() and member.size <= MAX_SMALL_MEMBER:
                        reader = tar.extractfile(member)
                        try:
                            meta = json.loads(reader.read()) if reader else {}
                        except (ValueError, RecursionError):
                            meta = {}
                        current["json"] = meta if isinstance(meta, dict) else {}
            if key is not None:
                close()
        except (tarfile.TarError, ValueError, EOFError) as e:
            raise OutputUnreadableError(f"{source.url}: sample {samples} cannot be read ({e}); "
                                        "`streamprep verify` says what is wrong with it") from e
    found.counts = {"samples": samples, "labels": len(labels), "boxes": boxes}
    found.more = samples - len(found.entries)
    return found


def _boxes(found: Any) -> list[list[float]]:
    """A .json's boxes as shown, or none if they are not a list of four numbers each."""
    if not isinstance(found, list) or not all(isinstance(b, list) and len(b) == 4 and
                                              all(isinstance(v, (int, float)) for v in b) for b in found):
        return []
    return [[round(v, 4) for v in b] for b in found]


def _values(example: Any) -> dict[str, Any]:
    """A record's features as plain values (the image as its size in bytes)."""
    feature = example.features.feature

    def one(key: str, kind: str) -> Any:
        values = getattr(feature[key], kind).value if key in feature else []
        return values[0] if len(values) == 1 else None

    def text(key: str) -> str | None:
        value = one(key, "bytes_list")
        return None if value is None else value.decode("utf-8", "backslashreplace")

    lists = {k: list(feature[f"image/object/bbox/{k}"].float_list.value) if f"image/object/bbox/{k}" in feature else []
             for k in ("xmin", "ymin", "xmax", "ymax")}
    if "file_name" in feature and "image" in feature:  # TFDS's imagenet2012 record: file_name, image, label 0..N-1
        image = one("image", "bytes_list")
        return {"filename": text("file_name"), "label": one("label", "int64_list"), "synset": None, "text": None,
                "height": None, "width": None, "bytes": None if image is None else len(image), "boxes": []}
    encoded = one("image/encoded", "bytes_list")
    return {"filename": text("image/filename"), "label": one("image/class/label", "int64_list"),
            "synset": text("image/class/synset"), "text": text("image/class/text"),
            "height": one("image/height", "int64_list"), "width": one("image/width", "int64_list"),
            "bytes": None if encoded is None else len(encoded),
            "boxes": [[round(v, 4) for v in box] for box in zip(lists["xmin"], lists["ymin"], lists["xmax"],
                                                               lists["ymax"])]}
