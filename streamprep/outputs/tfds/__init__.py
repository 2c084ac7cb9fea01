"""TFDS's prepared `imagenet2012` (5.1.0), a registry entry: as `tfds build imagenet2012` writes it.

Files, under `OUT/imagenet2012/5.1.0/` (what `tfds.builder("imagenet2012", data_dir=OUT)` looks for):
`imagenet2012-train.tfrecord-00000-of-01024` ... (or `.array_record-`), `dataset_info.json` (the
splits with their shard lengths and sizes; the rest as TensorFlow Datasets 4.9.10 writes it),
`features.json` and `label.labels.txt` (the labels file). The downloads are walked by TFDS's member
rules; the order of the records and the shard boundaries are TFDS's (`plan.py`); each record is
TFDS's Example (`records.tfds_example`). ArrayRecord files are written by the `array-record`
package (TFDS's own writer, options `group_size:1`), which needs a local path: each shard is
written to a local temporary file first (`streamprep-PID-XXXXXXXX.array_record` in TMPDIR, removed
by the next run if its process was killed), then copied into place (any fsspec `--out`). Its
options: `--file-format`, `--tfds-shards`; no DALI index; the local engine only.
"""

from __future__ import annotations

from typing import Any, Sequence

from ...errors import ConfigError, ImageError
from ...plan import Plan, ShardSpec
from ...records import fixups
from ...records.image import Image
from ...records.spec import RecordSpec
from .. import registry
from ..format import Format, FormatOption, ShardEncoder
from ..manifest import ShardEntry
from .write import (ARRAY_RECORD, DATASET, FILE_FORMATS, FOLDER, SHARD_PATTERN, SIDE_FILES, SIDE_PATTERN,
                    check_release, encoder, metadata_files, shard_file)


@registry.register
class TFDSFormat(Format):
    """TFDS's prepared imagenet2012 (see the module docstring); its own order and sharding (`plan.py`)."""

    name = "tfds"
    checks, reads = "check:TFDSShardChecker", "inspect:TFDSReader"  # verify, inspect
    rank = 20
    summary = "TensorFlow Datasets' prepared imagenet2012, under imagenet2012/5.1.0/"
    options = {
        "file_format": FormatOption(
            FILE_FORMATS[0], metavar="FORMAT",
            help="the files of --format tfds: tfrecord (tfds.load) or array_record (tfds.data_source and Grain)"),
        "tfds_shards": FormatOption(
            0, metavar="N", default_text="0: TFDS's own rule (1024 train, 64 validation for ImageNet)",
            help="shards of each split of --format tfds, as tfds.download.DownloadConfig(num_shards=N)"),
    }
    no_dali_index = "DALI does not read TFDS's records"  # DALI reads TFRecord shards with the classic's schema
    local_only = True
    shard_pattern = SHARD_PATTERN
    side_pattern = SIDE_PATTERN
    folders = {DATASET: 2}  # imagenet2012/VERSION/FILE
    own_order = "TFDS's"
    walk = {"tfds": True, "complete_validation": False}  # TFDS's member rules; validation images labelled by position
    stores_boxes = False  # TFDS's imagenet2012 has no boxes
    stored_label = ("TFDS label", 1)  # 0..N-1

    def __init__(self, dali_index: bool = False, file_format: str = FILE_FORMATS[0]) -> None:
        super().__init__(dali_index)
        self.file_format = file_format

    @classmethod
    def from_options(cls, options: Any) -> "TFDSFormat":
        return cls(options.dali_index, options.file_format)

    @classmethod
    def check_options(cls, options: Any, chosen: bool) -> None:
        if options.file_format not in FILE_FORMATS:
            raise ConfigError(f"file_format (--file-format) must be {' or '.join(FILE_FORMATS)}, got "
                              f"{options.file_format!r}")
        if chosen and options.tfds_shards < 0:  # not chosen, it is refused as given without --format tfds
            raise ConfigError(f"tfds_shards (--tfds-shards) must be 0 (TFDS's rule) or more, got {options.tfds_shards}")
        if chosen and options.tfds_shards and options.equal_shards:  # equal shards take --train/--validation-shards
            raise ConfigError(f"tfds_shards (--tfds-shards {options.tfds_shards}) and --equal-shards both set the shard "
                              "counts; with --equal-shards pass --train-shards and --validation-shards instead")

    @classmethod
    def describe(cls, options: dict[str, Any]) -> str:
        return f"{cls.name} ({options.get('file_format', FILE_FORMATS[0])} files)"

    @classmethod
    def needs(cls, options: Any) -> list[tuple[str, str, str | None, str]]:
        if options.file_format == ARRAY_RECORD:
            return [("array_record.python.array_record_module", "array-record", "tfds", "--file-format array_record")]
        return []

    def plan(self, options: Any, inputs: Any, index: Any) -> Plan:
        """TFDS's plan (`plan.make_tfds_plan`), whose shard count counts the fix-up files' re-encoded sizes, so
        those few files are read and re-encoded first. A TFDS index holds exactly the members `tfds build` reads
        (`index.images.index_train_tfds`): the members it left out TFDS skips too."""
        from .plan import fixup_kind, fixup_rows, make_tfds_plan, refuse_empty

        check_release()
        refuse_empty(index)
        keys = {"train": "train", "validation": "val"}
        fixed = {}
        for split_index in index.splits:
            source = inputs.sources[keys[split_index.split]]
            for i in fixup_rows(split_index):  # TFDS's: training files under exactly a fix-up name
                data = source.read_at(int(split_index.offsets[i]), int(split_index.sizes[i]))
                name = split_index.names[i]
                try:
                    fixed[name] = len(fixups.apply(fixup_kind(split_index.split, name) or "png", data,
                                                   split_index.member(i)))
                except ImageError:
                    fixed[name] = len(data)  # the writer reports it (or skips it) as it reports any bad image
        return make_tfds_plan(index, inputs.labels, fixed, options.tfds_shards, options.sharding)

    def file_name(self, shard: ShardSpec) -> str:
        return shard_file(shard.split, self.file_format, shard.number, shard.of)

    def encoder(self, shard: ShardSpec) -> ShardEncoder:
        return encoder(self.file_format)

    def prepare(self, spec: RecordSpec, data: bytes) -> Image:
        """TFDS's image: the member's bytes as they are, whatever they hold (its Image feature stores a file's bytes
        unread: a README or a PNG is a record too), a file TFDS fixes up (`plan.fixup_kind`) re-encoded. Its
        records hold no height or width."""
        return Image(fixups.apply(spec.fixup, data, spec.member) if spec.fixup else data, 0, 0)

    def side_files(self, plan: Plan, entries: Sequence[ShardEntry]) -> dict[str, bytes]:
        """dataset_info.json, features.json and label.labels.txt, as `tfds build` writes them."""
        return metadata_files(plan, entries, self.file_format, self.file_name)

    def side_file_names(self) -> list[str]:
        return [f"{FOLDER}/{n}" for n in SIDE_FILES]
