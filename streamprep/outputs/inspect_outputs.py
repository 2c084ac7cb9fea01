"""`inspect` of the files convert writes: shards of every format, DALI indexes, and the files beside the shards."""

from __future__ import annotations

import json
import re
import shutil
import tarfile
import tempfile
from collections import Counter
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator

from ..archives.storage import Source
from ..errors import MissingDependencyError, OutputError, OutputUnreadableError
from ..index.images import VALIDATION_NAME
from ..index.labels import LabelData
from .inspection import (CLASSIC_LABELS, MANIFEST_LABELS, SYNSET_LIST_LABELS, TFDS_LABELS, WEBDATASET_LABELS,
                         Inspection, NotRecognised, rounded)
from .manifest import MANIFEST, Manifest
from .tfrecord import read_records
from .webdataset_check import MAX_SMALL_MEMBER

TFDS_LABEL_NAMES = "label.labels.txt"  # beside TFDS's shards: its label names, line k+1 = label k
ARRAY_RECORD_BATCH = 256  # ArrayRecord records read at a time
SYNSET = re.compile(r"n\d{8}")


def _read_failed(source: Source, what: str, e: BaseException) -> OutputUnreadableError:
    """A damaged file's one-line error: where reading stopped, and where to learn more."""
    why = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
    return OutputUnreadableError(f"{source.url}: {what} cannot be read ({why}); `streamprep verify` on its folder says "
                                 "what is wrong with it")


# --- TFRecord and ArrayRecord shards: the classic's Examples, or TFDS's ---------------------------------------------

def example_kind(feature: Any) -> str | None:
    """"classic" or "tfds" by an Example's features, or None for another dataset's record."""
    if "image/encoded" in feature:
        return "classic"
    if {"file_name", "image", "label"} <= set(feature.keys()):
        return "tfds"
    return None


def _one(feature: Any, key: str, kind: str) -> Any:
    values = getattr(feature[key], kind).value if key in feature else []
    return values[0] if len(values) == 1 else None


def _text(feature: Any, key: str) -> str | None:
    value = _one(feature, key, "bytes_list")
    return None if value is None else value.decode("utf-8", "backslashreplace")


def _classic_values(feature: Any) -> dict[str, Any]:
    """A classic record's features as plain values (the image as its size in bytes); the label as stored, 1..1000."""
    lists = [list(feature[f"image/object/bbox/{k}"].float_list.value) if f"image/object/bbox/{k}" in feature else []
             for k in ("xmin", "ymin", "xmax", "ymax")]
    encoded = _one(feature, "image/encoded", "bytes_list")
    return {"filename": _text(feature, "image/filename"), "label": _one(feature, "image/class/label", "int64_list"),
            "synset": _text(feature, "image/class/synset"), "text": _text(feature, "image/class/text"),
            "height": _one(feature, "image/height", "int64_list"), "width": _one(feature, "image/width", "int64_list"),
            "bytes": None if encoded is None else len(encoded), "boxes": [rounded(box) for box in zip(*lists)]}


class _TFDSNames:
    """TFDS's label names (label.labels.txt beside the shard, else the synsets file) and their texts."""

    def __init__(self, source: Source, labels: LabelData) -> None:
        folder = source.path.rstrip("/").rpartition("/")[0]
        beside = f"{folder}/{TFDS_LABEL_NAMES}"
        synsets: list[str] | None = None
        try:
            if source.fs.isfile(beside):
                with source.fs.open(beside, "rb") as f:
                    synsets = [line.strip() for line in f.read(1 << 20).decode("utf-8", "replace").splitlines()]
        except OSError:
            synsets = None
        if synsets and all(SYNSET.fullmatch(s) for s in synsets):
            self.synsets, self.source = synsets, f"{TFDS_LABEL_NAMES} beside the shard"
        else:
            self.synsets = list(labels.synsets)
            self.source = (f"the synsets file {labels.sources.get('labels', '')} (no {TFDS_LABEL_NAMES} beside the "
                           "shard)")
        self.texts = labels.texts

    def values(self, feature: Any) -> dict[str, Any]:
        label = _one(feature, "label", "int64_list")
        synset = self.synsets[label] if label is not None and 0 <= label < len(self.synsets) else None
        image = _one(feature, "image", "bytes_list")
        return {"filename": _text(feature, "file_name"), "label": label, "synset": synset,
                "text": self.texts.get(synset) if synset else None, "height": None, "width": None,
                "bytes": None if image is None else len(image), "boxes": []}


def _records(found: Inspection, datas: Iterable[bytes], values: Callable[[Any], dict[str, Any]], kind: str,
             limit: int, what: str) -> None:
    """Count the records (each an Example of `kind`) and keep the first `limit` as plain values."""
    from .example_proto import example_type

    parse = example_type().FromString
    records = boxes = 0
    labels: Counter = Counter()
    for data in datas:
        try:
            feature = parse(data).features.feature
        except Exception as e:  # noqa: BLE001 - protobuf's DecodeError (its module differs between builds)
            raise OutputUnreadableError(f"{found.url}: {what} {records} does not parse as a tf.train.Example ({e}); "
                                        "`streamprep verify` on its folder says what is wrong with it") from e
        if example_kind(feature) != kind:
            if records == 0:
                raise NotRecognised(f"{what}s, but its first is neither the classic's Example (image/encoded ...) nor "
                                    "TFDS's imagenet2012 one (file_name, image, label)")
            raise OutputUnreadableError(f"{found.url}: {what} {records} is not an Example like the ones before it; "
                                        "`streamprep verify` on its folder says what is wrong with it")
        entry = values(feature)
        records += 1
        labels[entry["label"]] += 1
        boxes += len(entry["boxes"])
        if len(found.entries) < limit:
            found.entries.append(entry)
    found.counts = {"records": records, "labels": len(labels)}
    if kind == "classic":
        found.counts["boxes"] = boxes
    found.more = records - len(found.entries)


def tfrecord_shard(source: Source, labels: LabelData, limit: int, kind: str) -> Inspection:
    """A TFRecord shard: the classic's (streamprep's or the classic procedure's) or TFDS's imagenet2012."""
    if kind == "tfds":
        names = _TFDSNames(source, labels)
        found = Inspection(source.url, "TFDS TFRecord shard (imagenet2012)", source.size, label_numbering=TFDS_LABELS)
        found.facts["synsets from"] = names.source
        values = names.values
    else:
        found = Inspection(source.url, "TFRecord shard", source.size, label_numbering=CLASSIC_LABELS)
        values = _classic_values
    with source.fs.open(source.path, "rb") as f:

        def datas() -> Iterator[bytes]:
            read = 0
            try:
                for data in read_records(f, source.url):
                    yield data
                    read += 1
            except (OutputError, OSError, ValueError) as e:  # a bad CRC, a cut: verify says more
                raise _read_failed(source, f"record {read}", OutputError(str(e).rpartition(": ")[2])) from e

        _records(found, datas(), values, kind, limit, "record")
    return found


@contextmanager
def _local_path(source: Source) -> Iterator[str]:
    """A local path of the file: its own, or a temporary copy (ArrayRecord's reader takes local paths only)."""
    if getattr(source.fs, "protocol", None) in ("file", ("file", "local")):
        yield source.fs._strip_protocol(source.path)
        return
    with tempfile.NamedTemporaryFile(prefix="streamprep-inspect-", suffix=".array_record") as local:
        with source.fs.open(source.path, "rb") as f:
            shutil.copyfileobj(f, local, 8 << 20)
        local.flush()
        yield local.name


def array_record_shard(source: Source, labels: LabelData, limit: int) -> Inspection:
    """A TFDS ArrayRecord shard (`--file-format array_record`), read with ArrayRecord's own reader."""
    try:
        from array_record.python import array_record_module
    except ImportError as e:
        raise MissingDependencyError(f"{source.url} is an ArrayRecord file; reading it needs the array-record package "
                                     f"({e}): pip install 'streamprep[tfds]'") from e
    names = _TFDSNames(source, labels)
    found = Inspection(source.url, "TFDS ArrayRecord shard (imagenet2012)", source.size, label_numbering=TFDS_LABELS,
                       facts={"synsets from": names.source})
    with _local_path(source) as path:
        try:
            reader = array_record_module.ArrayRecordReader(path)
        except (RuntimeError, ValueError, OSError) as e:
            raise _read_failed(source, "the ArrayRecord file", e) from e
        if not reader.ok():  # the reader says why only when closed
            try:
                reader.close()
            except (RuntimeError, ValueError, OSError) as e:
                raise _read_failed(source, "the ArrayRecord file", e) from e
            raise _read_failed(source, "the ArrayRecord file", OSError("its reader refuses it"))
        try:
            def datas() -> Iterator[bytes]:
                try:
                    total = reader.num_records()
                    for start in range(0, total, ARRAY_RECORD_BATCH):
                        yield from reader.read(start, min(total, start + ARRAY_RECORD_BATCH))
                except (RuntimeError, ValueError, OSError) as e:
                    raise _read_failed(source, "the ArrayRecord file", e) from e

            _records(found, datas(), names.values, "tfds", limit, "record")
        finally:
            try:
                reader.close()
            except (RuntimeError, ValueError, OSError):
                pass  # a damaged file: the error reading it, if any, is the one to show
    return found


# --- WebDataset shards -----------------------------------------------------------------------------------------------

def webdataset_shard(source: Source, labels: LabelData, limit: int) -> Inspection:
    """A WebDataset shard's samples: the label as its `.cls` holds it (0..999), the rest from its `.json`."""
    found = Inspection(source.url, "WebDataset shard", source.size, label_numbering=WEBDATASET_LABELS)
    samples = boxes = 0
    counted: Counter = Counter()
    current: dict[str, Any] = {}
    key: str | None = None

    def close() -> None:
        nonlocal samples, boxes
        meta = current.get("json") or {}
        cls = current.get("cls")
        synset = meta.get("synset") if isinstance(meta.get("synset"), str) else (
            labels.synsets[cls] if cls is not None and cls < len(labels.synsets) else None)
        text = meta.get("text") if isinstance(meta.get("text"), str) else labels.texts.get(synset or "")
        entry = {"key": key, "filename": meta.get("filename", key), "label": cls, "synset": synset, "text": text,
                 "height": meta.get("height"), "width": meta.get("width"), "bytes": current.get("jpg"),
                 "boxes": _boxes(meta.get("boxes"))}
        samples += 1
        counted[cls] += 1
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
                    if ext == "jpg":
                        current["jpg"] = member.size
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
            if key is not None:
                close()
        except (tarfile.TarError, ValueError, EOFError, OSError) as e:
            raise _read_failed(source, f"sample {samples}", e) from e
    found.counts = {"samples": samples, "labels": len(counted), "boxes": boxes}
    found.more = samples - len(found.entries)
    if samples == 0:
        found.notes.append("an empty tar: convert writes one as the shard of a split with fewer images than shards")
    return found


def _boxes(found: Any) -> list[list[float]]:
    """A .json's boxes as shown, or none if they are not a list of four numbers each."""
    if not isinstance(found, list) or not all(isinstance(b, list) and len(b) == 4 and
                                              all(isinstance(v, (int, float)) for v in b) for b in found):
        return []
    return [rounded(b) for b in found]


# --- DALI indexes ----------------------------------------------------------------------------------------------------

def _shard_beside(source: Source) -> str:
    shard = source.path.removesuffix(".idx")
    name = shard.rpartition("/")[2]
    try:
        return f"{name} (beside it)" if source.fs.isfile(shard) else f"{name} (not beside it)"
    except OSError:
        return name


def tfrecord_index(source: Source, lines: Iterable[tuple[int, str]], limit: int) -> Inspection:
    """DALI's index of a TFRecord shard (`tfrecord2idx`): a line per record, `offset length`."""
    found = Inspection(source.url, "DALI index of a TFRecord shard", source.size,
                       facts={"shard": _shard_beside(source)})
    records = end = 0
    for number, line in lines:
        parts = line.split(" ")
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            raise NotRecognised(f"a DALI index of a TFRecord shard up to line {number}, which is not 'OFFSET LENGTH'")
        offset, length = int(parts[0]), int(parts[1])
        if offset != end:
            found.notes.append(f"line {number}: record at byte {offset:,}, but the one before ends at {end:,}")
        records, end = records + 1, offset + length
        if len(found.entries) < limit:
            found.entries.append({"offset": offset, "length": length})
    found.counts = {"records": records, "shard bytes": end}
    found.more = records - len(found.entries)
    return found


def webdataset_index(source: Source, lines: Iterable[tuple[int, str]], limit: int) -> Inspection:
    """DALI's index of a WebDataset shard (`wds2idx`, v1.2): `v1.2 SAMPLES`, then per sample `ext offset size name`
    for each member."""
    found = Inspection(source.url, "DALI index of a WebDataset shard", source.size,
                       facts={"shard": _shard_beside(source)})
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


# --- manifest.json, _info.json, TFDS's metadata ----------------------------------------------------------------------

def manifest(source: Source, data: dict[str, Any], limit: int) -> Inspection:
    """streamprep's manifest.json: the run, its formats, each split's totals and the files it lists."""
    try:
        m = Manifest.parse(data)
    except ValueError as e:
        raise OutputUnreadableError(f"{source.url}: a streamprep {MANIFEST}, but unusable ({str(e)[:300]}); rerun "
                                    "the convert command that wrote its folder") from e
    formats = m.options.get("format") or ",".join(m.run.get("formats", []))
    if "tfds" in str(formats):
        formats = f"{formats} ({m.options.get('file_format', 'tfrecord')} files)"
    if m.options.get("dali_index"):
        formats += ", with DALI indexes"
    found = Inspection(source.url, MANIFEST, source.size, label_numbering=MANIFEST_LABELS,
                       facts={"written by": f"streamprep {m.streamprep}", "formats": str(formats),
                              "complete": "yes" if m.complete else
                              "no: rerun the same convert command to finish the conversion"})
    found.counts = {"files listed": len(m.shards)}
    for name, split in (m.totals.splits.items() if m.totals else []):
        found.counts |= {f"{name} images": split.images, f"{name} shards": split.shards,
                         f"{name} classes": split.classes, f"{name} boxes": split.boxes}
    if m.totals and m.totals.bboxes_csv:
        found.counts["bboxes.csv boxes"] = m.totals.bboxes_csv.boxes
    for entry in sorted(m.shards.values(), key=lambda e: e.name):
        if len(found.entries) < limit:
            found.entries.append({"name": entry.name, "records": entry.records, "bytes": entry.bytes,
                                  "index": entry.index.name if entry.index else None})
    found.more = len(m.shards) - len(found.entries)
    if m.totals:
        fixed = sum(len(v) for v in m.totals.fixups.values())
        found.notes.append(f"{fixed:,} fix-up(s) applied, {len(m.totals.skipped):,} bad input file(s) skipped, "
                           f"{sum(e.get('count', 0) for e in m.totals.ignored.values()):,} member(s) of the downloads "
                           "ignored")
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


def tfds_info(source: Source, data: dict[str, Any], limit: int) -> Inspection:
    """TFDS's dataset_info.json: the version, the file format and each split's shard lengths."""
    file_format = str(data.get("fileFormat", "tfrecord"))
    found = Inspection(source.url, "TFDS dataset_info.json", source.size,
                       facts={"dataset": f"{data.get('name')} {data.get('version')}", "file format": file_format})
    for split in data["splits"]:
        lengths = [int(n) for n in split.get("shardLengths", [])]
        found.counts |= {f"{split.get('name')} records": sum(lengths), f"{split.get('name')} shards": len(lengths)}
        for k, n in enumerate(lengths):
            if len(found.entries) < limit:
                found.entries.append({"name": f"{data.get('name')}-{split.get('name')}.{file_format}-{k:05d}-of-"
                                              f"{len(lengths):05d}", "records": n})
            else:
                found.more += 1
    return found


def tfds_features(source: Source, data: dict[str, Any]) -> Inspection:
    """TFDS's features.json: the features of each record and the number of classes."""
    features = data["featuresDict"].get("features", {})
    found = Inspection(source.url, "TFDS features.json", source.size, facts={"features": ", ".join(features)})
    classes = features.get("label", {}).get("classLabel", {}).get("numClasses")
    if classes is not None:
        found.facts["label"] = f"TFDS's ClassLabel of {classes} classes, 0..{int(classes) - 1}"
    return found


def json_file(source: Source, data: Any, limit: int) -> Inspection:
    """One of the JSON files streamprep writes, by its keys."""
    if isinstance(data, dict):
        if str(data.get("format", "")).startswith("streamprep-manifest"):
            return manifest(source, data, limit)
        splits = data.get("splits")
        if isinstance(splits, dict) and all(isinstance(s, dict) and isinstance(s.get("filenames"), list)
                                            for s in splits.values()):
            return timm_info(source, data, limit)
        if isinstance(splits, list) and all(isinstance(s, dict) and "shardLengths" in s for s in splits):
            return tfds_info(source, data, limit)
        if isinstance(data.get("featuresDict"), dict):
            return tfds_features(source, data)
    raise NotRecognised("JSON, but not manifest.json, timm's _info.json or TFDS's dataset_info.json or features.json")


# --- text: bboxes.csv and the label files ----------------------------------------------------------------------------

def box_line(line: str) -> tuple[str, list[float]] | None:
    image, *coords = line.rsplit(",", 4)
    try:
        return (image, [float(c) for c in coords]) if len(coords) == 4 and image else None
    except ValueError:
        return None


def bboxes_csv(source: Source, lines: Iterable[tuple[int, str]], limit: int) -> Inspection:
    """bboxes.csv: a line per box, `image,xmin,ymin,xmax,ymax`, relative to the image."""
    found = Inspection(source.url, "bboxes.csv", source.size)
    boxes = images = 0
    last = None
    for number, line in lines:
        parsed = box_line(line)
        if parsed is None:
            raise NotRecognised(f"bboxes.csv up to line {number}, which is not 'IMAGE,XMIN,YMIN,XMAX,YMAX'")
        image, box = parsed
        boxes += 1
        images += image != last
        last = image
        if len(found.entries) < limit:
            found.entries.append({"image": image, "box": rounded(box)})
    found.counts = {"boxes": boxes, "images": images}
    found.more = boxes - len(found.entries)
    return found


def label_file(source: Source, lines: list[tuple[int, str]], labels: LabelData, limit: int) -> Inspection:
    """A synsets list (TFDS's label.labels.txt, a --labels-file), a validation labels file or a metadata file."""
    if all("\t" in line for _, line in lines):
        found = Inspection(source.url, "metadata file (synset<TAB>text)", source.size, {"synsets": len(lines)})
        found.entries = [dict(zip(("synset", "text"), line.split("\t", 1))) for _, line in lines[:limit]]
        found.more = len(lines) - len(found.entries)
        return found
    bad = next((n for n, line in lines if not SYNSET.fullmatch(line)), None)
    if bad is not None:
        raise NotRecognised(f"a list of synsets up to line {bad}, which is not one")
    synsets = [line for _, line in lines]
    if len(set(synsets)) == len(synsets):
        found = Inspection(source.url, "synsets list (TFDS's label.labels.txt, a --labels-file)", source.size,
                           {"synsets": len(synsets)}, label_numbering=SYNSET_LIST_LABELS)
        found.entries = [{"line": n, "synset": s, "text": labels.texts.get(s)} for n, s in lines[:limit]]
    else:
        found = Inspection(source.url, "validation labels file (line k: the synset of image k)", source.size,
                           {"images": len(synsets), "classes": len(set(synsets))})
        found.entries = [{"line": n, "image": VALIDATION_NAME % n, "synset": s, "text": labels.texts.get(s)}
                         for n, s in lines[:limit]]
    found.more = len(lines) - len(found.entries)
    return found
