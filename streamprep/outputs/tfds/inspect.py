"""inspect of TFDS's files: a TFRecord or ArrayRecord shard (labels 0..N-1, named by label.labels.txt), its metadata."""

from __future__ import annotations

import re
import shutil
import tempfile
from contextlib import contextmanager
from typing import Any, Iterator

from ...archives.storage import Source
from ...errors import MissingDependencyError
from ...index.labels import LabelData
from ...inspection import Inspection, Reader, read_failed
from ..tfrecord.inspect import examples, first_example, is_tfrecord, one, text, tfrecord_shard
from .write import IMAGENET2012, SHARD_PATTERN, is_array_record

TFDS_LABELS = ("label as stored: TFDS's 0..999 (the index in label.labels.txt; the classic's image/class/label is "
               "this + 1)")
TFDS_21K_LABELS = ("label as stored: TFDS's 0..N-1 (the index in label.labels.txt, the synsets the split recipe kept, "
                   "sorted; WebDataset's .cls numbering)")
TFDS_LABEL_NAMES = "label.labels.txt"  # beside TFDS's shards: its label names, line k+1 = label k
ARRAY_RECORD_BATCH = 256  # ArrayRecord records read at a time
SYNSET = re.compile(r"n\d{8}")
SHARD_AT_END = re.compile(SHARD_PATTERN + "$")  # a shard's path ends with its name, its folder included
SHARD_OF = re.compile(r"([A-Za-z0-9_]+)-(?:train|validation)\.")  # a shard's file name: its dataset's name first
# Riegeli's file signature, with which every ArrayRecord file opens (Riegeli's file format: "file signature").
RIEGELI_SIGNATURE = bytes.fromhex("83af70d10d884a3f0000000000000000400000000000000091bac23c9287e1a9"
                                  "0000000000000000e19f13c0e9b1c37273000000000000000000000000000000")


def is_tfds(feature: Any) -> bool:
    """Whether an Example is TFDS's imagenet2012 or imagenet21k one (file_name, image, label)."""
    return {"file_name", "image", "label"} <= set(feature.keys())


def dataset_of(source: Source) -> str:
    """The TFDS dataset a shard belongs to, by its file name (`imagenet21k-train.tfrecord-...`); imagenet2012's
    features, if the name does not say."""
    found = SHARD_OF.match(source.path.rstrip("/").rpartition("/")[2])
    return found[1] if found else IMAGENET2012.name


def numbering(dataset: str) -> str:
    """How a shard of this TFDS dataset numbers its labels."""
    return TFDS_LABELS if dataset == IMAGENET2012.name else TFDS_21K_LABELS


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
        label = one(feature, "label", "int64_list")
        synset = self.synsets[label] if label is not None and 0 <= label < len(self.synsets) else None
        image = one(feature, "image", "bytes_list")
        return {"filename": text(feature, "file_name"), "label": label, "synset": synset,
                "text": self.texts.get(synset) if synset else None, "height": None, "width": None,
                "bytes": None if image is None else len(image), "boxes": []}


def tfds_tfrecord_shard(source: Source, labels: LabelData, limit: int) -> Inspection:
    """A TFDS TFRecord shard (`tfds.load`'s)."""
    names = _TFDSNames(source, labels)
    dataset = dataset_of(source)
    found = Inspection(source.url, f"TFDS TFRecord shard ({dataset})", source.size, label_numbering=numbering(dataset))
    found.facts["synsets from"] = names.source
    return tfrecord_shard(source, found, names.values, is_tfds, limit, boxes_counted=False)


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
    dataset = dataset_of(source)
    found = Inspection(source.url, f"TFDS ArrayRecord shard ({dataset})", source.size,
                       label_numbering=numbering(dataset),
                       facts={"synsets from": names.source})
    with _local_path(source) as path:
        try:
            reader = array_record_module.ArrayRecordReader(path)
        except (RuntimeError, ValueError, OSError) as e:
            raise read_failed(source, "the ArrayRecord file", e) from e
        if not reader.ok():  # the reader says why only when closed
            try:
                reader.close()
            except (RuntimeError, ValueError, OSError) as e:
                raise read_failed(source, "the ArrayRecord file", e) from e
            raise read_failed(source, "the ArrayRecord file", OSError("its reader refuses it"))
        try:
            def datas() -> Iterator[bytes]:
                try:
                    total = reader.num_records()
                    for start in range(0, total, ARRAY_RECORD_BATCH):
                        yield from reader.read(start, min(total, start + ARRAY_RECORD_BATCH))
                except (RuntimeError, ValueError, OSError) as e:
                    raise read_failed(source, "the ArrayRecord file", e) from e

            examples(found, datas(), names.values, is_tfds, limit, boxes_counted=False)
        finally:
            try:
                reader.close()
            except (RuntimeError, ValueError, OSError):
                pass  # a damaged file: the error reading it, if any, is the one to show
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


def tfds_metadata(source: Source, data: dict[str, Any], limit: int) -> Inspection:
    """imagenet21k's metadata.json (`builder.info.metadata`): the split recipe and each label's WordNet name."""
    names = data["wordnet_names"]
    found = Inspection(source.url, "TFDS metadata.json (imagenet21k)", source.size, {"classes": len(names)},
                       {k: str(v) for k, v in data.items() if k != "wordnet_names"},
                       label_numbering="wordnet_names[label]: the name of TFDS's label 0..N-1")
    for label, name in enumerate(names):
        if len(found.entries) < limit:
            found.entries.append({"synset": f"label {label}", "text": name})
        else:
            found.more += 1
    return found


class TFDSReader(Reader):
    """TFDS's shards (TFRecord, by their framing and first Example; ArrayRecord, by Riegeli's signature), its
    dataset_info.json, features.json and imagenet21k's metadata.json (its label.labels.txt is a synsets list, which
    inspect reads itself)."""

    def binary(self, source: Source, head: bytes, labels: LabelData, limit: int) -> Inspection | None:
        if head[:len(RIEGELI_SIGNATURE)] == RIEGELI_SIGNATURE:
            return array_record_shard(source, labels, limit)
        if is_tfrecord(head) and is_tfds(first_example(source)):
            return tfds_tfrecord_shard(source, labels, limit)
        return None

    def json(self, source: Source, data: dict[str, Any], limit: int) -> Inspection | None:
        splits = data.get("splits")
        if isinstance(splits, list) and all(isinstance(s, dict) and "shardLengths" in s for s in splits):
            return tfds_info(source, data, limit)
        if isinstance(data.get("featuresDict"), dict):
            return tfds_features(source, data)
        names = data.get("wordnet_names")
        if isinstance(names, list) and all(isinstance(n, str) for n in names):
            return tfds_metadata(source, data, limit)
        return None

    def empty(self, source: Source, labels: LabelData, limit: int) -> Inspection | None:
        name = source.path.rstrip("/")
        if SHARD_AT_END.search(name) and not is_array_record(name):
            return tfds_tfrecord_shard(source, labels, limit)
        return None
