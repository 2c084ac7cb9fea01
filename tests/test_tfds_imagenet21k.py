"""`--dataset imagenet21k --format tfds`: a TFDS dataset no TFDS builder makes, judged by TensorFlow Datasets itself.

The small archive (i21k_archive.py) is converted to TFRecord files (conftest's `tfds_i21k_converted`) and, with
`--split-recipe all`, to ArrayRecord files. TFDS loads them with `tfds.builder_from_directory`, `tfds.builder` /
`tfds.load` by name in the data_dir and `tfds.data_source`; every image's bytes and label must be those the recipe
gives (worked out from the archive's files) and those of the WebDataset output; the metadata files must be what
`tfds.folder_dataset.write_metadata` writes for the same values; the order must be TFDS's shuffler's.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import tensorflow_datasets as tfds  # noqa: E402
from tensorflow_datasets.core.utils import shard_utils  # noqa: E402

from helpers import run_cli, run_cli_out  # noqa: E402
from i21k_archive import CORRUPT, NAMES, OVER, PER, RECIPE, classes, expected, kept  # noqa: E402

VERSION_DIR = Path("imagenet21k") / "1.0.0"
METADATA_FILES = ("dataset_info.json", "features.json", "label.labels.txt", "metadata.json")
SKIP = {"image": tfds.decode.SkipDecoding()}  # the image feature's stored bytes, not decoded


def convert(archive: Path, out: Path, *extra: object) -> tuple[int, str]:
    return run_cli("convert", archive, "--out", out, *RECIPE, "--on-bad-image", "skip", "--quiet", *extra)


def example(raw: bytes) -> tuple[str, int, bytes]:
    """(file_name, label, image bytes) of one serialised record, parsed by TensorFlow."""
    feature = tf.train.Example.FromString(raw).features.feature
    assert set(feature) == {"file_name", "image", "label"}
    return (feature["file_name"].bytes_list.value[0].decode(), feature["label"].int64_list.value[0],
            feature["image"].bytes_list.value[0])


def raw_records(path: Path) -> list[bytes]:
    """A shard's records as its own reader gives them: TFRecord's, or array_record's `ArrayRecordReader`."""
    if ".array_record-" in path.name:
        from array_record.python import array_record_module

        reader = array_record_module.ArrayRecordReader(str(path))
        try:
            return reader.read_all()
        finally:
            reader.close()
    return [raw.numpy() for raw in tf.data.TFRecordDataset(str(path))]


def shuffler_order(split: str, names: list[str], folder: Path) -> list[str]:
    """`names` in the order TFDS's shuffler gives examples keyed `SYNSET/FILE_NAME` (salted by the split name)."""
    from tensorflow_datasets.core import shuffle

    shuffler = shuffle.Shuffler(dirpath=str(folder), hash_salt=split)
    for name in names:
        shuffler.add(f"{name.rsplit('_', 1)[0]}/{name}", name.encode())
    return [data.decode() for _, data in shuffler]


@pytest.fixture(scope="module")
def webdataset_out(i21k_archive, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("i21k-wds")
    code, err = convert(i21k_archive, out, "--format", "webdataset", "--train-shards", "2", "--validation-shards", "2",
                        "--classic-threads", "1")
    assert code == 0, err
    return out


@pytest.fixture(scope="module")
def array_record_all(i21k_archive, tmp_path_factory) -> Path:
    """The archive as ArrayRecord files, every class and image as training (`--split-recipe all`), in 2 shards."""
    out = tmp_path_factory.mktemp("i21k-ar") / "out"
    code, err = convert(i21k_archive, out, "--format", "tfds", "--file-format", "array_record", "--tfds-shards", "2",
                        "--split-recipe", "all")
    assert code == 0, err
    return out


def read_webdataset(out: Path) -> dict[tuple[str, str], tuple[int, bytes]]:
    import webdataset as wds

    found = {}
    for split in ("train", "validation"):
        urls = sorted(str(p) for p in out.glob(f"{split}-*.tar"))
        for sample in wds.WebDataset(urls, shardshuffle=False, empty_check=False):
            found[(split, json.loads(sample["json"])["filename"])] = (int(sample["cls"]), sample["jpg"])
    return found


def test_builder_from_directory_gives_every_image_byte_for_byte_as_the_webdataset_output_with_its_label(
        tfds_i21k_converted, webdataset_out):
    builder = tfds.builder_from_directory(str(tfds_i21k_converted / VERSION_DIR))
    assert (builder.info.name, str(builder.info.version), builder.info.file_format.value) == \
        ("imagenet21k", "1.0.0", "tfrecord")
    assert builder.info.features["label"].names == kept()  # the synsets kept, sorted: label k is names[k]
    assert builder.info.supervised_keys == ("image", "label")
    found = {}
    for split in ("train", "validation"):
        for e in builder.as_dataset(split=split, decoders=SKIP).as_numpy_iterator():
            found[(split, e["file_name"].decode())] = (int(e["label"]), e["image"])
    assert found == expected() == read_webdataset(webdataset_out)
    assert {split: builder.info.splits[split].num_examples for split in ("train", "validation")} == \
        {split: sum(s == split for s, _ in found) for split in ("train", "validation")}
    for e in builder.as_dataset(split="validation").as_numpy_iterator():  # decoded by TFDS: height x width x 3
        width, height = Image.open(io.BytesIO(found[("validation", e["file_name"].decode())][1])).size
        assert e["image"].shape == (height, width, 3)


def test_the_metadata_files_are_byte_for_byte_what_tfds_write_metadata_writes_for_the_same_dataset(
        tfds_i21k_converted, tmp_path):
    mine = tfds_i21k_converted / VERSION_DIR
    info = json.loads((mine / "dataset_info.json").read_text())
    extra = json.loads((mine / "metadata.json").read_text())
    theirs = tmp_path / "imagenet21k" / "1.0.0"
    theirs.mkdir(parents=True)
    for shard in mine.glob("imagenet21k-*"):
        shutil.copyfile(shard, theirs / shard.name)
    splits = [tfds.core.SplitInfo(name=s["name"], shard_lengths=[int(n) for n in s["shardLengths"]],
                                  num_bytes=int(s["numBytes"])) for s in info["splits"]]
    features = tfds.features.FeaturesDict({"image": tfds.features.Image(encoding_format="jpeg"),
                                           "label": tfds.features.ClassLabel(names=kept()),
                                           "file_name": tfds.features.Text()})
    tfds.folder_dataset.write_metadata(
        data_dir=str(theirs), features=features, split_infos=splits, description=info["description"],
        homepage="https://image-net.org/", citation=info["citation"], supervised_keys=("image", "label"),
        metadata=tfds.core.MetadataDict(extra), check_data=True)

    assert sorted(p.name for p in theirs.iterdir()) == sorted(p.name for p in mine.iterdir())
    for name in METADATA_FILES:
        assert (mine / name).read_bytes() == (theirs / name).read_bytes(), name
    # what they say, from the records and the recipe: shard lengths, the records' serialised size, the names
    for split in info["splits"]:
        shards = sorted(mine.glob(f"imagenet21k-{split['name']}.tfrecord-*"))
        records = [raw_records(path) for path in shards]
        assert split["shardLengths"] == [str(len(r)) for r in records]
        assert int(split["numBytes"]) == sum(len(raw) for r in records for raw in r)
    assert "moduleName" not in info and "21K-P" in info["description"]
    assert extra == {"split_recipe": "21k-p", "keep_classes_over": OVER, "validation_per_class": PER,
                     "wordnet_names": [NAMES[s] for s in kept()]}


def test_tfds_builder_and_load_find_it_by_name_in_its_data_dir(tfds_i21k_converted):
    builder = tfds.builder("imagenet21k", data_dir=str(tfds_i21k_converted))  # no builder: read from the files
    assert str(builder.info.version) == "1.0.0"
    assert builder.info.metadata["wordnet_names"] == [NAMES[s] for s in kept()]
    pairs = tfds.load("imagenet21k", split="train+validation", data_dir=str(tfds_i21k_converted), download=False,
                      as_supervised=True)
    assert sorted(int(label) for _, label in pairs.as_numpy_iterator()) == sorted(v[0] for v in expected().values())


def test_each_split_is_in_tfds_shufflers_order_of_synset_and_file_name_keys(tfds_i21k_converted, tmp_path):
    for split in ("train", "validation"):
        (shard,) = sorted((tfds_i21k_converted / VERSION_DIR).glob(f"imagenet21k-{split}.tfrecord-*"))
        names = [example(raw)[0] for raw in raw_records(shard)]
        assert names == shuffler_order(split, names, tmp_path) and len(names) >= 4


def test_array_record_files_are_read_by_tfds_data_source_and_by_array_records_own_reader(array_record_all, tmp_path):
    mine = array_record_all / VERSION_DIR
    builder = tfds.builder_from_directory(str(mine))
    assert list(builder.info.splits) == ["train"]  # --split-recipe all: no validation split, no empty one
    assert builder.info.features["label"].names == kept("all") and builder.info.file_format.value == "array_record"
    want = {name: value for (_, name), value in expected("all").items()}
    source = tfds.data_source("imagenet21k", split="train", data_dir=str(array_record_all), download=False,
                              decoders=SKIP)
    assert len(source) == len(want) == len(builder.as_data_source(split="train"))
    assert {source[k]["file_name"].decode(): (int(source[k]["label"]), source[k]["image"])
            for k in range(len(source))} == want

    shards = sorted(mine.glob("imagenet21k-train.array_record-*"))
    raws = [raw_records(path) for path in shards]
    read = [[example(raw) for raw in r] for r in raws]
    (split,) = json.loads((mine / "dataset_info.json").read_text())["splits"]  # numBytes: the records written
    assert int(split["numBytes"]) == sum(len(raw) for r in raws for raw in r)
    assert [p.name[-14:] for p in shards] == ["00000-of-00002", "00001-of-00002"]
    manifest = {e["name"].rsplit("/", 1)[-1]: e for e in json.loads((array_record_all / "manifest.json").read_text())
                ["shards"]}
    planned = [len(r) + len(manifest[p.name]["skipped"]) for r, p in zip(read, shards)]  # the corrupt one counts
    ends = shard_utils.get_shard_boundaries(len(want) + 1, 2)  # TFDS's cut of every image the recipe takes
    assert planned == [ends[0], ends[1] - ends[0]]
    names = [name for r in read for name, _, _ in r]
    assert names == shuffler_order("train", names, tmp_path)
    assert {name: (label, image) for r in read for name, label, image in r} == want
    assert not list(mine.glob("imagenet21k-validation*"))


def test_verify_and_inspect_read_both_outputs(tfds_i21k_converted, array_record_all):
    for out, classes_kept in ((tfds_i21k_converted, len(kept())), (array_record_all, len(kept("all")))):
        code, report, err = run_cli_out("verify", out, "--quiet")
        assert code == 0 and f"TFDS label 0..{classes_kept - 1}" in report, report + err
    for shard, kind in ((next((tfds_i21k_converted / VERSION_DIR).glob("imagenet21k-train.*")), "TFRecord"),
                        (next((array_record_all / VERSION_DIR).glob("imagenet21k-train.*")), "ArrayRecord")):
        code, report, _ = run_cli_out("inspect", shard, "--limit", "2")
        assert code == 0 and f"TFDS {kind} shard (imagenet21k)" in report, report
        assert "synsets from: label.labels.txt" in report and "TFDS's 0..N-1" in report
    code, report, _ = run_cli_out("inspect", array_record_all / VERSION_DIR / "metadata.json")
    assert code == 0 and "TFDS metadata.json (imagenet21k)" in report and "split_recipe: all" in report
    assert f"label 0  {NAMES[kept('all')[0]]}" in report


def test_the_corrupt_image_is_skipped_and_listed_or_stops_the_run_naming_it(tfds_i21k_converted, i21k_archive,
                                                                           tmp_path):
    (corrupt,) = [n for files in classes().values() for n, data in files.items() if data == CORRUPT]
    skipped = json.loads((tfds_i21k_converted / "manifest.json").read_text())["skipped"]
    assert [s["member"].rsplit("!", 1)[-1] for s in skipped] == [corrupt]

    code, err = run_cli("convert", i21k_archive, "--out", tmp_path / "out", *RECIPE, "--format", "tfds", "--quiet")
    assert code != 0 and err.count("\n") == 1 and f".tar!{corrupt}: cannot read the image size" in err, err
    assert not list((tmp_path / "out").rglob("imagenet21k-validation*"))


def test_a_lost_shard_and_metadata_file_are_written_again_byte_identical(tfds_i21k_converted, i21k_archive, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(tfds_i21k_converted, out)
    before = {p.name: p.read_bytes() for p in (out / VERSION_DIR).iterdir()}
    (out / VERSION_DIR / "imagenet21k-train.tfrecord-00000-of-00001").unlink()
    (out / VERSION_DIR / "metadata.json").unlink()

    code, err = convert(i21k_archive, out, "--format", "tfds")

    assert code == 0, err
    assert {p.name: p.read_bytes() for p in (out / VERSION_DIR).iterdir()} == before


def test_a_dataset_the_format_cannot_write_is_refused_by_name():
    from streamprep.outputs import registry

    assert registry.get("tfds").refuse_dataset("imagenet21k") is None
    assert registry.get("tfds").refuse_dataset("mini") == \
        "writes TFDS's imagenet2012 and imagenet21k (--dataset ilsvrc2012 or imagenet21k), not --dataset mini"


def test_record_sizes_are_the_serialised_examples_lengths_at_every_varint_edge():
    """`record_sizes` (all records at once, used for TFDS's shard rule and numBytes) against protobuf's own ByteSize of
    the Example, and the per-record `tfds_example.size` where an image that large is too costly to build here."""
    from streamprep.outputs.tfds.plan import record_sizes
    from streamprep.records import tfds_example

    edges = [0, 1, 126, 127, 128, 129, *range(16_383 - 40, 16_384 + 40), *range(2**21 - 40, 2**21 + 40)]
    cases = [(label, length, size) for label in (0, 1, 127, 128, 16_383, 16_384, 21_842) for length in (0, 20, 128)
             for size in edges[::3]]
    labels, lengths, sizes = (np.array(column) for column in zip(*cases))
    got = record_sizes(labels, lengths, sizes)
    for (label, length, size), n in zip(cases, got.tolist()):
        features = {"label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
                    "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"\xff" * size])),
                    "file_name": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"n" * length]))}
        assert n == tf.train.Example(features=tf.train.Features(feature=features)).ByteSize(), (label, length, size)
    big = [(21_842, 25, size) for size in (2**28 - 30, 2**28 - 1, 2**28, 2**28 + 5, 2**35)]
    assert record_sizes(*map(np.array, zip(*big))).tolist() == [tfds_example.size(*c[:1], "n" * c[1], c[2]) for c in big]


def test_keys_alike_in_their_first_digest_bytes_keep_md5_order_and_then_their_positions():
    from streamprep.outputs.tfds.plan import md5_order

    keys = [b"n1/a.JPEG", b"n1/b.JPEG", b"n1/a.JPEG", b"n2/c.JPEG", b"n1/a.JPEG"]  # the same key thrice: alike digests
    order = md5_order("train", iter(keys), len(keys), keys.__getitem__).tolist()

    def digest(key: bytes) -> int:
        return int.from_bytes(hashlib.md5(b"train" + key).digest(), "big")

    assert order == sorted(range(len(keys)), key=lambda i: (digest(keys[i]), i))
    assert [i for i in order if keys[i] == b"n1/a.JPEG"] == [0, 2, 4]
