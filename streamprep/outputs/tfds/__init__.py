"""TFDS's datasets, a registry entry: `imagenet2012` (5.1.0) as `tfds build imagenet2012` writes it; `imagenet21k`.

Files of ILSVRC2012, under `OUT/imagenet2012/5.1.0/` (what `tfds.builder("imagenet2012", data_dir=OUT)` looks for):
`imagenet2012-train.tfrecord-00000-of-01024` ... (or `.array_record-`), `dataset_info.json` (the
splits with their shard lengths and sizes; the rest as TensorFlow Datasets 4.9.10 writes it),
`features.json` and `label.labels.txt` (the labels file). The downloads are walked by TFDS's member
rules; the order of the records and the shard boundaries are TFDS's (`plan.py`); each record is
TFDS's Example (`records.tfds_example`). `--dataset imagenet21k` gives `OUT/imagenet21k/1.0.0/`, a dataset no TFDS
builder makes, described as `tfds.folder_dataset.write_metadata` describes one (`imagenet21k.py`): the same three
features, the classes the split recipe kept, TFDS's order and shard rule on its keys (`plan.make_synsets_plan`), the
images as stored. ArrayRecord files are written by the `array-record`
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
from .write import (ARRAY_RECORD, FILE_FORMATS, FOLDERS, IMAGENET2012, SHARD_PATTERN, SIDE_PATTERN, TFDS_DATASETS,
                    check_release, encoder, metadata_files, shard_file)


@registry.register
class TFDSFormat(Format):
    """TFDS's prepared imagenet2012, or imagenet21k (see the module docstring); its own order and sharding
    (`plan.py`)."""

    name = "tfds"
    checks, reads = "check:TFDSShardChecker", "inspect:TFDSReader"  # verify, inspect
    rank = 20
    summary = "TensorFlow Datasets' prepared imagenet2012 (or imagenet21k), under NAME/VERSION/"
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
    folders = FOLDERS  # imagenet2012/VERSION/FILE, imagenet21k/VERSION/FILE
    own_order = "TFDS's"
    walk = {"tfds": True, "complete_validation": False}  # TFDS's member rules; validation images labelled by position
    stores_boxes = False  # TFDS's imagenet2012 has no boxes (nor has ImageNet-21k)
    stored_label = ("TFDS label", 1)  # 0..N-1

    def __init__(self, dali_index: bool = False, file_format: str = FILE_FORMATS[0], dataset: str = IMAGENET2012.source,
                 recipe: dict[str, Any] | None = None) -> None:
        super().__init__(dali_index)
        self.file_format = file_format
        self.dataset = TFDS_DATASETS[dataset]  # the TFDS dataset it writes, by --dataset
        self.recipe = dict(recipe or {})  # the dataset's own options (ImageNet-21k's split recipe), for its metadata

    @classmethod
    def from_options(cls, options: Any) -> "TFDSFormat":
        dataset = options.dataset if options.dataset in TFDS_DATASETS else IMAGENET2012.source
        return cls(options.dali_index, options.file_format, dataset, options.dataset_options())

    @classmethod
    def refuse_dataset(cls, dataset: str) -> str | None:
        """It writes ILSVRC2012 as `tfds build imagenet2012` does, and ImageNet-21k as a dataset of its own."""
        if dataset in TFDS_DATASETS:
            return None
        return (f"writes TFDS's {' and '.join(d.name for d in TFDS_DATASETS.values())} (--dataset "
                f"{' or '.join(TFDS_DATASETS)}), not --dataset {dataset}")

    @classmethod
    def check_options(cls, options: Any, chosen: bool) -> None:
        if options.file_format not in FILE_FORMATS:
            raise ConfigError(f"file_format (--file-format) must be {' or '.join(FILE_FORMATS)}, got "
                              f"{options.file_format!r}")
        if chosen and options.tfds_shards < 0:  # not chosen, it is refused as given without --format tfds
            raise ConfigError(f"tfds_shards (--tfds-shards) must be 0 (TFDS's rule) or more, got {options.tfds_shards}")
        recipe = options.recipe if chosen else None
        if recipe is not None and "WEBP" in recipe.encodings() and not recipe.exact:
            raise ConfigError(f"--format tfds holds JPEG or PNG images, not --encode {recipe.encode}: TFDS's Image "
                              "feature decodes a WebP to frames x height x width, which as_dataset refuses; use "
                              "--encode jpeg:QUALITY or png")
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
        (`index.images.index_train_tfds`): the members it left out TFDS skips too. imagenet21k, which no `tfds build`
        makes: TFDS's order and shard rule on its own keys (`plan.make_synsets_plan`)."""
        from .plan import make_synsets_plan, make_tfds_plan, refuse_empty

        if self.dataset is not IMAGENET2012:
            return make_synsets_plan(index, inputs.labels, options.tfds_shards, options.sharding, self.resize)
        check_release()
        refuse_empty(index)
        return make_tfds_plan(index, inputs.labels, _fixed_sizes(inputs, index), options.tfds_shards, options.sharding,
                              self.resize)

    def file_name(self, shard: ShardSpec) -> str:
        return shard_file(shard.split, self.file_format, shard.number, shard.of, self.dataset)

    def encoder(self, shard: ShardSpec) -> ShardEncoder:
        return encoder(self.file_format)

    def prepare(self, spec: RecordSpec, data: bytes) -> Image:
        """imagenet2012's image as TFDS's: the member's bytes as they are, whatever they hold (its Image feature stores
        a file's bytes unread: a README or a PNG is a record too), a file TFDS fixes up (`plan.fixup_kind`)
        re-encoded; its records hold no height or width. imagenet21k's, which no `tfds build` decides, as every other
        format's: the image as stored, the decoder's checks made (`--on-bad-image` takes what fails them); so is a
        resized one (`--resize`: an image is decoded to be resized)."""
        if self.dataset is not IMAGENET2012 or self.resize is not None:
            return super().prepare(spec, data)
        return Image(fixups.apply(spec.fixup, data, spec.member) if spec.fixup else data, 0, 0)

    def side_files(self, plan: Plan, entries: Sequence[ShardEntry]) -> dict[str, bytes]:
        """dataset_info.json, features.json and label.labels.txt, as `tfds build` writes them (and imagenet21k's
        metadata.json, as `tfds.folder_dataset.write_metadata` writes them); a resized output's recipe in
        dataset_info.json's description."""
        return metadata_files(plan, entries, self.file_format, self.file_name, self.dataset, self.recipe,
                              self.resize.describe() if self.resize else None)

    def side_file_names(self) -> list[str]:
        return [f"{self.dataset.folder}/{n}" for n in self.dataset.side_files]


def _fixed_sizes(inputs: Any, index: Any) -> dict[str, int]:
    """The re-encoded size of each training file TFDS fixes up (by file name), read and re-encoded now; a file that
    cannot be is counted as it is stored (the writer reports it, or skips it, as it reports any bad image)."""
    from .plan import fixup_kind, fixup_rows

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
                fixed[name] = len(data)
    return fixed
