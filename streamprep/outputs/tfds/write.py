"""Writing TFDS's prepared imagenet2012: its file names, its records in TFRecord or ArrayRecord, its metadata files.

See the package's docstring (`outputs.tfds`) for the files and where they lie.
"""

from __future__ import annotations

import json
import logging
import os
import re
from importlib import metadata, resources
from typing import Any, Callable, Iterator, Sequence

from ...errors import MissingDependencyError, OutputError
from ...plan import Plan
from ...records import tfds_example
from ...records.image import Image
from ...records.spec import RecordSpec
from ..files import local_temporary
from ..format import ShardEncoder
from ..manifest import ShardEntry
from ..tfrecord.write import FRAMING, frame_parts
from .plan import image_size

log = logging.getLogger("streamprep")

DATASET, VERSION = "imagenet2012", "5.1.0"
TFDS_RELEASE = "4.9.10"  # the tensorflow-datasets release whose `tfds build imagenet2012` this reproduces
FOLDER = f"{DATASET}/{VERSION}"
ARRAY_RECORD = "array_record"
FILE_FORMATS = ("tfrecord", ARRAY_RECORD)  # --file-format: tfds.load's, tfds.data_source's (and Grain's)
SIDE_FILES = ("dataset_info.json", "features.json", "label.labels.txt")
# Its file names: `{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}` and the metadata files, under
# `imagenet2012/VERSION/`. Only the version streamprep writes: another version's folder (a `tfds build` of
# another release, in a `~/tensorflow_datasets` given as --out) is not streamprep's, never removed or refused.
FOLDER_PATTERN = DATASET + "/" + re.escape(VERSION) + "/"
SHARD_PATTERN = (FOLDER_PATTERN + DATASET + r"-(train|validation)\.(?:" + "|".join(FILE_FORMATS)
                 + r")-(\d{5})-of-(\d{5})")
SIDE_PATTERN = FOLDER_PATTERN + "(?:" + "|".join(map(re.escape, SIDE_FILES)) + ")"
CHUNK = 8 << 20  # bytes of an ArrayRecord temporary file handed to the writer at a time


def shard_file(split: str, file_format: str, number: int, of: int) -> str:
    """`{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}` under the version folder."""
    return f"{FOLDER}/{DATASET}-{split}.{file_format}-{number:05d}-of-{of:05d}"


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
                    VERSION, TFDS_RELEASE, installed)


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
    framing; for ArrayRecord (compressed), computed from the plan."""
    if not any(is_array_record(e.name) for e in files):
        return sum(e.bytes - FRAMING * e.records for e in files)
    skipped = {s["member"] for e in files for s in e.skipped}
    index = plan.splits[split].index
    return sum(tfds_example.size(int(index.labels[i]) - 1, index.names[i], image_size(plan.fixed_sizes, index, i))
               for i in range(len(index)) if not skipped or index.member(i) not in skipped)


def metadata_files(plan: Plan, entries: Sequence[ShardEntry], file_format: str,
                   file_name: Callable[[Any], str]) -> dict[str, bytes]:
    """dataset_info.json, features.json and label.labels.txt, as `tfds build` writes them."""
    folder = resources.files("streamprep") / "data" / "tfds"
    info = json.loads((folder / "imagenet2012-dataset_info.json").read_text())
    info["fileFormat"] = file_format
    info["splits"] = []
    for name in ("train", "validation"):  # TFDS's split order
        if name not in plan.splits:
            continue
        mine = {e.name: e for e in entries if e.split == name}
        files = [mine[file_name(s)] for s in plan.splits[name].shards if file_name(s) in mine]
        info["splits"].append({"filepathTemplate": "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}", "name": name,
                               "numBytes": str(_records_size(plan, name, files)),
                               "shardLengths": [str(e.records) for e in files]})
    features = (folder / "imagenet2012-features.json").read_bytes()
    labels = "".join(f"{s}\n" for s in plan.labels.synsets).encode()
    return {f"{FOLDER}/dataset_info.json": json.dumps(info, indent=2, sort_keys=True).encode(),
            f"{FOLDER}/features.json": features, f"{FOLDER}/label.labels.txt": labels}
