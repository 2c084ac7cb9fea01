"""Writing TFDS's datasets (imagenet2012, imagenet21k): their file names, records in TFRecord or ArrayRecord, metadata.

See the package's docstring (`outputs.tfds`) for the files and where they lie.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from importlib import metadata, resources
from typing import Any, Callable, Iterator, Sequence

from ... import datasets
from ...errors import MissingDependencyError, OutputError
from ...plan import Plan
from ...records import tfds_example
from ...records.image import Image
from ...records.spec import RecordSpec
from ..files import local_temporary
from ..format import ShardEncoder
from ..manifest import ShardEntry
from ..tfrecord.write import FRAMING, frame_parts
from . import imagenet21k
from .plan import image_size, records_size

log = logging.getLogger("streamprep")

TFDS_RELEASE = "4.9.10"  # the tensorflow-datasets release whose `tfds build imagenet2012` this reproduces
ARRAY_RECORD = "array_record"
FILE_FORMATS = ("tfrecord", ARRAY_RECORD)  # --file-format: tfds.load's, tfds.data_source's (and Grain's)
METADATA = ("dataset_info.json", "features.json", "label.labels.txt")  # what every TFDS dataset here has


@dataclass(frozen=True)
class TFDSDataset:
    """One TFDS dataset --format tfds writes: its TFDS name and version (its folder `NAME/VERSION/` and its files'
    prefix), the streamprep dataset (`--dataset`) it is written from, and its metadata files."""

    name: str
    version: str
    source: str
    side_files: tuple[str, ...] = METADATA

    @property
    def folder(self) -> str:
        return f"{self.name}/{self.version}"


# imagenet2012 5.1.0 as `tfds build` writes it; imagenet21k, which no TFDS builder makes, as
# `tfds.folder_dataset.write_metadata` describes records written outside TFDS (`imagenet21k.py`).
IMAGENET2012 = TFDSDataset("imagenet2012", "5.1.0", datasets.ILSVRC2012.name)
IMAGENET21K = TFDSDataset(imagenet21k.NAME, imagenet21k.VERSION, datasets.IMAGENET21K.name,
                          (*METADATA, imagenet21k.METADATA_JSON))
TFDS_DATASETS = {d.source: d for d in (IMAGENET2012, IMAGENET21K)}  # by --dataset
FOLDER = IMAGENET2012.folder
# Its file names: `{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}` and the metadata files, under `NAME/VERSION/`.
# Only the versions streamprep writes: another version's folder (a `tfds build` of another release, in a
# `~/tensorflow_datasets` given as --out) is not streamprep's, never removed or refused.
SHARD_PATTERN = ("(?:" + "|".join(re.escape(d.folder) + "/" + d.name for d in TFDS_DATASETS.values())
                 + r")-(train|validation)\.(?:" + "|".join(FILE_FORMATS) + r")-(\d{5})-of-(\d{5})")
SIDE_PATTERN = "(?:" + "|".join(re.escape(d.folder) + "/(?:" + "|".join(map(re.escape, d.side_files)) + ")"
                                for d in TFDS_DATASETS.values()) + ")"
FOLDERS = {d.name: 2 for d in TFDS_DATASETS.values()}  # NAME/VERSION/FILE
CHUNK = 8 << 20  # bytes of an ArrayRecord temporary file handed to the writer at a time


def shard_file(split: str, file_format: str, number: int, of: int, dataset: TFDSDataset = IMAGENET2012) -> str:
    """`{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}` under the dataset's version folder."""
    return f"{dataset.folder}/{dataset.name}-{split}.{file_format}-{number:05d}-of-{of:05d}"


def is_array_record(name: str) -> bool:
    """Whether a shard file's name is an ArrayRecord shard's (`--file-format array_record`)."""
    return f".{ARRAY_RECORD}-" in name.rpartition("/")[2]


def encoder(file_format: str) -> ShardEncoder:
    """A fresh encoder of one shard's records, in TFRecord or ArrayRecord."""
    return _ArrayRecordEncoder() if file_format == ARRAY_RECORD else _TFRecordEncoder()


def check_release() -> None:
    """Warn if the installed tensorflow-datasets is not the release this output reproduces."""
    try:
        installed = metadata.version("tensorflow-datasets")
    except metadata.PackageNotFoundError:
        return
    if installed != TFDS_RELEASE:
        log.warning("--format tfds writes imagenet2012 %s as tensorflow-datasets %s builds it; %s is installed: "
                    "tfds.load reads it, but `tfds build` of this release may order or shard it differently",
                    IMAGENET2012.version, TFDS_RELEASE, installed)


class _TFRecordEncoder(ShardEncoder):
    def record(self, spec: RecordSpec, image: Image) -> Sequence[bytes]:
        return frame_parts(*tfds_example.encode_parts(spec.label - 1, spec.filename, image))


class _ArrayRecordEncoder(ShardEncoder):
    """Collects the shard's records in a local ArrayRecord file; `finish` hands over its bytes."""

    def __init__(self) -> None:
        try:
            from array_record.python import array_record_module
        except ImportError as e:
            raise MissingDependencyError(f"--file-format array_record needs the array-record package ({e}); "
                                         "pip install 'streamprep[tfds]'") from e
        self.path = local_temporary(".array_record")  # named after this process: swept once it is gone
        try:
            self.writer = array_record_module.ArrayRecordWriter(self.path, "group_size:1")
        except RuntimeError as e:
            self.close()
            raise self._error(e) from e

    def _error(self, e: BaseException) -> OutputError:
        return OutputError(f"{self.path}: cannot write the local ArrayRecord file that becomes a shard ({e}); "
                           "ArrayRecord writes to local disk first: free space in the temporary folder (TMPDIR)")

    def record(self, spec: RecordSpec, image: Image) -> Sequence[bytes]:
        try:
            self.writer.write(b"".join(tfds_example.encode_parts(spec.label - 1, spec.filename, image)))
        except RuntimeError as e:
            raise self._error(e) from e
        return ()

    def finish(self) -> Iterator[bytes]:
        try:
            self.writer.close()
        except RuntimeError as e:
            raise self._error(e) from e
        with open(self.path, "rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk

    def close(self) -> None:
        """The local file removed, whatever happened to the shard (called by the writer, error or not)."""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def _records_size(plan: Plan, split: str, files: Sequence[ShardEntry]) -> int:
    """The serialised size of a split's records (TFDS's `numBytes`): what the files hold without TFRecord's
    framing; for ArrayRecord (compressed), computed from the plan, less the images left out (`--on-bad-image skip`)."""
    if not any(is_array_record(e.name) for e in files):
        return sum(e.bytes - FRAMING * e.records for e in files)
    index = plan.splits[split].index
    total = records_size(index, plan.fixed_sizes)
    skipped = {s["member"] for e in files for s in e.skipped}
    if skipped:
        tails = {member.rpartition("!")[2].encode("utf-8", "surrogateescape") for member in skipped}
        for i, raw in enumerate(index.names.raws()):  # a member's name ends it: their last parts after "!" agree
            if raw.rpartition(b"!")[2] in tails and index.member(i) in skipped:
                total -= tfds_example.size(int(index.labels[i]) - 1, index.names[i],
                                           image_size(plan.fixed_sizes, index, i))
    return total


def _splits(plan: Plan, entries: Sequence[ShardEntry],
            file_name: Callable[[Any], str]) -> list[tuple[str, int, list[int]]]:
    """Each split's name, `numBytes` and shard lengths, in TFDS's split order; a split without shards (ImageNet-21k's
    validation under `--split-recipe all`) is not one."""
    found = []
    for name in ("train", "validation"):
        if name not in plan.splits or not plan.splits[name].shards:
            continue
        mine = {e.name: e for e in entries if e.split == name}
        files = [mine[file_name(s)] for s in plan.splits[name].shards if file_name(s) in mine]
        found.append((name, _records_size(plan, name, files), [e.records for e in files]))
    return found


def metadata_files(plan: Plan, entries: Sequence[ShardEntry], file_format: str, file_name: Callable[[Any], str],
                   dataset: TFDSDataset = IMAGENET2012, recipe: dict[str, Any] | None = None,
                   resize: dict[str, Any] | None = None) -> dict[str, bytes]:
    """The dataset's metadata files under its folder: imagenet2012's as `tfds build` writes them, imagenet21k's as
    `tfds.folder_dataset.write_metadata` does (`imagenet21k.py`; `recipe`: its split recipe's options); a resized
    output's `--resize` recipe (`resize`: `Recipe.describe`) in dataset_info.json's description (`described`)."""
    files = _metadata_files(plan, entries, file_format, file_name, dataset, recipe)
    if resize:
        name = f"{dataset.folder}/dataset_info.json"
        files[name] = described(files[name], resize)
    return files


RESIZED = "Resized by streamprep (convert --resize): "  # what opens the recipe's paragraph in the description


def described(dataset_info: bytes, resize: dict[str, Any]) -> bytes:
    """dataset_info.json with the recipe (`Recipe.describe`, as JSON) in a last paragraph of its `description`, which
    TFDS keeps (`builder.info.description`)."""
    info = json.loads(dataset_info)
    info["description"] = (info.get("description", "").rstrip() + "\n\n" + RESIZED
                           + json.dumps(resize, sort_keys=True)).lstrip()
    return json.dumps(info, indent=2, sort_keys=True).encode()


def _metadata_files(plan: Plan, entries: Sequence[ShardEntry], file_format: str, file_name: Callable[[Any], str],
                    dataset: TFDSDataset, recipe: dict[str, Any] | None) -> dict[str, bytes]:
    splits = _splits(plan, entries, file_name)
    if dataset is IMAGENET21K:
        synsets = plan.labels.synsets
        files = imagenet21k.metadata_files(file_format, [imagenet21k.split_info(*s) for s in splits], synsets,
                                           [plan.labels.text(s) for s in synsets], recipe or {})
        return {f"{dataset.folder}/{name}": data for name, data in files.items()}
    folder = resources.files("streamprep") / "data" / "tfds"
    info = json.loads((folder / "imagenet2012-dataset_info.json").read_text())
    info["fileFormat"] = file_format
    info["splits"] = [{"filepathTemplate": "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}", "name": name,
                       "numBytes": str(size), "shardLengths": [str(n) for n in lengths]}
                      for name, size, lengths in splits]
    features = (folder / "imagenet2012-features.json").read_bytes()
    labels = "".join(f"{s}\n" for s in plan.labels.synsets).encode()
    return {f"{FOLDER}/dataset_info.json": json.dumps(info, indent=2, sort_keys=True).encode(),
            f"{FOLDER}/features.json": features, f"{FOLDER}/label.labels.txt": labels}
