"""The prepared TFDS dataset `imagenet2012` (5.1.0), as `tfds build imagenet2012` writes it, in TFRecord or ArrayRecord.

Files, under `OUT/imagenet2012/5.1.0/` (what `tfds.builder("imagenet2012", data_dir=OUT)` looks for):
`imagenet2012-train.tfrecord-00000-of-01024` ... (or `.array_record-`), `dataset_info.json` (the
splits with their shard lengths and sizes; the rest as TensorFlow Datasets 4.9.10 writes it),
`features.json` and `label.labels.txt` (the labels file). The order of the records and the shard
boundaries are TFDS's (`tfds_plan`); each record is TFDS's Example (`records.tfds_example`).
ArrayRecord files are written by the `array-record` package (TFDS's own writer, options
`group_size:1`), which needs a local path: each shard is written to a local temporary file first
(`streamprep-PID-XXXXXXXX.array_record` in TMPDIR, removed by the next run if its process was
killed), then copied into place (any fsspec `--out`).
"""

from __future__ import annotations

import json
import logging
import os
from importlib import metadata, resources
from typing import Iterator, Sequence

from ..errors import MissingDependencyError, OutputError
from ..plan import Plan, RecordSpec, ShardSpec
from ..records import fixups, tfds_example
from ..records.image import Image
from ..tfds_plan import image_size
from .files import local_temporary
from .format import Format, ShardEncoder
from .manifest import ShardEntry
from .tfrecord import frame_parts

log = logging.getLogger("streamprep")

DATASET, VERSION = "imagenet2012", "5.1.0"
TFDS_RELEASE = "4.9.10"  # the tensorflow-datasets release whose `tfds build imagenet2012` this reproduces
FOLDER = f"{DATASET}/{VERSION}"
FILE_FORMATS = ("tfrecord", "array_record")
CHUNK = 8 << 20  # bytes of an ArrayRecord temporary file handed to the writer at a time


def shard_file(split: str, file_format: str, number: int, of: int) -> str:
    """`{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}` under the version folder."""
    return f"{FOLDER}/{DATASET}-{split}.{file_format}-{number:05d}-of-{of:05d}"


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
        return OutputError(f"{self.path}: cannot write the local ArrayRecord file that becomes a shard ({e}); ArrayRecord "
                           "writes to local disk first: free space in the temporary folder (TMPDIR)")

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
    if all(".tfrecord-" in e.name for e in files):
        return sum(e.bytes - 16 * e.records for e in files)
    skipped = {s["member"] for e in files for s in e.skipped}
    index = plan.splits[split].index
    return sum(tfds_example.size(int(index.labels[i]) - 1, index.names[i], image_size(plan.fixed_sizes, index, i))
               for i in range(len(index)) if not skipped or index.member(i) not in skipped)


class TFDSFormat(Format):
    """TFDS's prepared imagenet2012 (see the module docstring); its own order and sharding (`tfds_plan`)."""

    name = "tfds"
    stores_boxes = False  # TFDS's imagenet2012 has no boxes

    def __init__(self, dali_index: bool = False, file_format: str = "tfrecord") -> None:
        super().__init__(dali_index)
        self.file_format = file_format

    def file_name(self, shard: ShardSpec) -> str:
        return shard_file(shard.split, self.file_format, shard.number, shard.of)

    def encoder(self, shard: ShardSpec) -> ShardEncoder:
        return _ArrayRecordEncoder() if self.file_format == "array_record" else _TFRecordEncoder()

    def index_name(self, shard: ShardSpec) -> str | None:
        return None  # DALI reads TFRecord shards with the classic's schema; TFDS's need no index beside them

    def prepare(self, spec: RecordSpec, data: bytes) -> Image:
        """TFDS's image: the member's bytes as they are, whatever they hold (its Image feature stores a file's bytes
        unread: a README or a PNG is a record too), a file TFDS fixes up (`tfds_plan.fixup_kind`) re-encoded. Its
        records hold no height or width."""
        return Image(fixups.apply(spec.fixup, data, spec.member) if spec.fixup else data, 0, 0)

    def side_files(self, plan: Plan, entries: Sequence[ShardEntry]) -> dict[str, bytes]:
        """dataset_info.json, features.json and label.labels.txt, as `tfds build` writes them."""
        folder = resources.files("streamprep") / "data" / "tfds"
        info = json.loads((folder / "imagenet2012-dataset_info.json").read_text())
        info["fileFormat"] = self.file_format
        info["splits"] = []
        for name in ("train", "validation"):  # TFDS's split order
            if name not in plan.splits:
                continue
            mine = {e.name: e for e in entries if e.split == name}
            files = [mine[self.file_name(s)] for s in plan.splits[name].shards if self.file_name(s) in mine]
            info["splits"].append({"filepathTemplate": "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}", "name": name,
                                   "numBytes": str(_records_size(plan, name, files)),
                                   "shardLengths": [str(e.records) for e in files]})
        features = (folder / "imagenet2012-features.json").read_bytes()
        labels = "".join(f"{s}\n" for s in plan.labels.synsets).encode()
        return {f"{FOLDER}/dataset_info.json": json.dumps(info, indent=2, sort_keys=True).encode(),
                f"{FOLDER}/features.json": features, f"{FOLDER}/label.labels.txt": labels}

    def side_file_names(self) -> list[str]:
        return [f"{FOLDER}/{n}" for n in ("dataset_info.json", "features.json", "label.labels.txt")]
