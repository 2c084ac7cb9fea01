"""`streamprep inspect` on every file streamprep reads or writes, made by real conversions of the sample in each
format: each recognised by its content, each label shown as its file numbers it (read back with TensorFlow, the
`webdataset` library and TensorFlow Datasets), and anything else refused in one line."""

from __future__ import annotations

import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from streamprep.outputs import registry

from helpers import ROOT, convert_args, run_cli
from helpers import run_cli_out as run
from tfds_downloads import tfds_convert_args, write_tfds_downloads
from tiny import write_tiny

VERSION = Path("imagenet2012") / "5.1.0"
CONFIG = ROOT / "configs" / "sample.toml"
SAMPLE = ROOT / "tests" / "fixtures" / "sample"


def inspected(path: Path, *extra: object) -> dict:
    code, out, err = run("inspect", path, "--json", "--limit", "1000", *extra)
    assert code == 0, err
    return json.loads(out)


def label_data():
    from streamprep.index.labels import load_label_data

    return load_label_data()


@pytest.fixture(scope="module")
def tfds_out(tfds_converted, tmp_path_factory) -> dict[str, Path]:
    """The TFDS-valid downloads converted with --format tfds, as TFRecord (conftest's `tfds_converted`) and (2 shards
    a split) as ArrayRecord."""
    base = tmp_path_factory.mktemp("inspect-tfds")
    paths = write_tfds_downloads(base / "dl")
    code, err = run_cli(*tfds_convert_args(paths, base / "array_record", "--file-format", "array_record",
                                           "--tfds-shards", "2"))
    assert code == 0, err
    return {"tfrecord": tfds_converted / VERSION, "array_record": base / "array_record" / VERSION}


FILE_KINDS = [
    ("sample", "ILSVRC2012_img_train.tar", "training tar"),
    ("sample", "ILSVRC2012_img_val.tar", "validation tar"),
    ("sample", "ILSVRC2012_bbox_train_v2.tar.gz", "bounding-box archive"),
    ("both", "train-00001-of-00004", "TFRecord shard"),
    ("both", "train-00001-of-00004.tar", "WebDataset shard"),
    ("both", "train-00001-of-00004.idx", "DALI index of a TFRecord shard"),
    ("both", "train-00001-of-00004.tar.idx", "DALI index of a WebDataset shard"),
    ("both", "manifest.json", "manifest.json"),
    ("both", "_info.json", "timm's _info.json (WebDataset)"),
    ("both", "bboxes.csv", "bboxes.csv"),
    ("tfrecord", "imagenet2012-train.tfrecord-00000-of-00001", "TFDS TFRecord shard (imagenet2012)"),
    ("array_record", "imagenet2012-train.array_record-00001-of-00002", "TFDS ArrayRecord shard (imagenet2012)"),
    ("array_record", "dataset_info.json", "TFDS dataset_info.json"),
    ("tfrecord", "features.json", "TFDS features.json"),
    ("tfrecord", "label.labels.txt", "synsets list (TFDS's label.labels.txt, a --labels-file)"),
]


@pytest.mark.parametrize("where, name, kind", FILE_KINDS, ids=[f"{w}:{n}" for w, n, _ in FILE_KINDS])
def test_every_file_streamprep_reads_or_writes_is_recognised_by_its_content_whatever_its_name(
        both, tfds_out, tmp_path, where, name, kind):
    real = {"both": both, "sample": SAMPLE, **tfds_out}[where] / name  # both: the sample converted (conftest)
    assert inspected(real, "--config", CONFIG)["kind"] == kind
    disguised = tmp_path / "no-name-at-all"
    shutil.copyfile(real, disguised)
    assert inspected(disguised, "--config", CONFIG)["kind"] == kind


def test_a_tfrecord_shards_labels_are_its_image_class_label_1_to_1000_as_tensorflow_reads_it(both):
    import tensorflow as tf

    for shard in sorted(both.glob("*-of-0000?")):
        found = inspected(shard)
        assert "1..1000" in found["label_numbering"] and "0 is background" in found["label_numbering"]
        examples = [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(str(shard))]
        assert found["counts"]["records"] == len(examples) == len(found["entries"]) > 0
        for entry, example in zip(found["entries"], examples):
            feature = example.features.feature
            assert entry["label"] == feature["image/class/label"].int64_list.value[0]
            assert entry["synset"] == feature["image/class/synset"].bytes_list.value[0].decode()
            assert entry["text"] == feature["image/class/text"].bytes_list.value[0].decode()
            assert entry["filename"] == feature["image/filename"].bytes_list.value[0].decode()


def test_a_webdataset_samples_label_is_what_its_cls_holds_as_the_webdataset_library_reads_it(both):
    import webdataset as wds

    labels = label_data()
    seen = 0
    for shard in sorted(both.glob("*.tar")):
        found = inspected(shard)
        assert found["kind"] == "WebDataset shard" and "0..999" in found["label_numbering"]
        samples = list(wds.WebDataset(str(shard), shardshuffle=False, empty_check=False))
        assert found["counts"]["samples"] == len(samples) == len(found["entries"]) > 0
        classic = {e["filename"]: e for e in inspected(both / shard.name.removesuffix(".tar"))["entries"]}
        for entry, sample in zip(found["entries"], samples):
            cls = int(sample["cls"])
            assert entry["label"] == cls  # the .cls as stored: `label 59` for a .cls of 59, never 60
            assert entry["synset"] == labels.synsets[cls] == json.loads(sample["json"])["synset"]
            assert entry["text"] == labels.texts[entry["synset"]]
            assert classic[entry["filename"]]["label"] == cls + 1  # the same image in the classic's numbering
            seen += 1
    assert seen == 31 + 13


def test_the_report_says_which_numbering_each_label_is_in(both):
    code, text, _ = run("inspect", both / "train-00001-of-00004.tar", "--limit", "1")
    assert code == 0 and "labels: .cls as stored: 0..N-1, 0..999 for ILSVRC2012" in text
    code, text, _ = run("inspect", both / "train-00001-of-00004", "--limit", "1")
    assert code == 0 and "labels: image/class/label as stored: the classic's 1..N, 1..1000 for" in text
    code, text, _ = run("inspect", SAMPLE / "ILSVRC2012_img_train.tar", "--limit", "1")
    assert code == 0 and "labels: as convert gives them: the classic's 1..1000" in text
    assert "n01440764.tar!n01440764_1.JPEG  label 1 n01440764" in text and "      tench, Tinca tinca" in text


def _tfds_label_names(data_dir: Path):
    import tensorflow_datasets as tfds

    return tfds.builder("imagenet2012", data_dir=str(data_dir)).info.features["label"]


def test_a_tfds_records_label_is_shown_0_to_999_with_the_synset_tfds_names_it(tfds_out):
    import tensorflow as tf

    folder = tfds_out["tfrecord"]
    names = _tfds_label_names(folder.parent.parent)
    texts = label_data().texts
    for shard in sorted(folder.glob("imagenet2012-*.tfrecord-*")):
        found = inspected(shard)
        assert found["kind"] == "TFDS TFRecord shard (imagenet2012)" and "TFDS's 0..999" in found["label_numbering"]
        assert found["facts"]["synsets from"] == "label.labels.txt beside the shard"
        records = [tf.train.Example.FromString(r.numpy()).features.feature
                   for r in tf.data.TFRecordDataset(str(shard))]
        assert len(found["entries"]) == len(records) > 0
        for entry, feature in zip(found["entries"], records):
            assert entry["label"] == feature["label"].int64_list.value[0]
            assert entry["filename"] == feature["file_name"].bytes_list.value[0].decode()
            assert entry["synset"] == names.int2str(entry["label"])
            assert entry["text"] == texts[entry["synset"]]


def test_an_array_record_shard_is_read_as_tfds_data_source_reads_it(tfds_out):
    import tensorflow_datasets as tfds

    folder = tfds_out["array_record"]
    names = _tfds_label_names(folder.parent.parent)
    for split in ("train", "validation"):
        source = tfds.data_source("imagenet2012", split=split, data_dir=str(folder.parent.parent))
        entries = [e for k in range(2)
                   for e in inspected(folder / f"imagenet2012-{split}.array_record-{k:05d}-of-00002")["entries"]]
        assert len(entries) == len(source) > 0
        for k, entry in enumerate(entries):
            assert (entry["filename"], entry["label"]) == (source[k]["file_name"].decode(), int(source[k]["label"]))
            assert entry["synset"] == names.int2str(entry["label"])


def test_the_validation_tar_inspected_with_the_sample_config_counts_what_convert_converts(tmp_path):
    found = inspected(SAMPLE / "ILSVRC2012_img_val.tar", "--config", CONFIG)
    code, err = run_cli("convert", "--config", CONFIG, "--out", tmp_path / "out", "--quiet")
    assert code == 0, err
    converted = json.loads((tmp_path / "out" / "manifest.json").read_text())["splits"]["validation"]
    assert (found["counts"]["images"], found["counts"]["classes"]) == (converted["images"], converted["classes"]) \
        == (13, 5)
    labels = label_data()
    assert {str(labels.label(s)): n for s, n in found["per_class"].items()} == converted["class_counts"]
    assert found["notes"] == []


def test_without_the_config_the_validation_tar_is_labelled_by_the_shipped_file_and_the_report_says_convert_stops():
    found = inspected(SAMPLE / "ILSVRC2012_img_val.tar")
    assert (found["counts"]["images"], found["counts"]["listed in the labels file"]) == (15, 50_000)
    assert len(found["notes"]) == 1 and "49,985 image(s)" in found["notes"][0]
    assert "convert stops on them" in found["notes"][0] and "--validation-labels-file" in found["notes"][0]


def test_a_label_flag_overrides_the_config_as_it_does_for_convert():
    from streamprep.index.labels import VALIDATION_LABELS_FILE, shipped

    found = inspected(SAMPLE / "ILSVRC2012_img_val.tar", "--config", CONFIG, "--validation-labels-file",
                      shipped(VALIDATION_LABELS_FILE))
    assert found["counts"]["images"] == 15


def _tar_of_other_files(path: Path) -> Path:
    with tarfile.open(path, "w") as tar:
        tar.add(ROOT / "README.md", arcname="README.md")
    return path


def _gzip_of_text(path: Path) -> Path:
    import gzip

    path.write_bytes(gzip.compress(b"hello\n"))
    return path


@pytest.mark.parametrize("make, said", [
    (lambda p: ROOT / "README.md", "text, but neither JSON streamprep writes, bboxes.csv, a DALI index nor a label "
                                   "file (its first line: '# streamprep')"),
    (lambda p: CONFIG, "text, but neither"),
    (lambda p: p.write_bytes(os.urandom(3000)) and p, "binary data (it starts with"),
    (_tar_of_other_files, "a tar, but neither a download"),
    (_gzip_of_text, "gzip, but not a gzipped tar"),
    (lambda p: p.write_bytes(b"") or p, "an empty file"),
], ids=["README.md", "a config file", "random bytes", "a tar of other files", "a gzip of text", "an empty file"])
def test_any_other_file_is_refused_in_one_line_saying_what_it_is_not_and_what_inspect_takes(tmp_path, make, said):
    path = make(tmp_path / "some.file")
    code, out, err = run("inspect", path)
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert err.startswith(f"streamprep: error: {path}: not a file streamprep reads or writes: {said}")
    assert "; inspect takes the training tar, the validation tar, the bounding-box tar.gz, a shard or metadata file of " \
           f"any output format ({', '.join(registry.names())}), a DALI .idx, manifest.json" in err


def test_a_folder_is_refused_in_one_line_pointing_to_verify(both):
    code, _, err = run("inspect", both)
    assert code == 2 and err.count("\n") == 1 and "a folder; inspect looks at one file" in err


def test_the_empty_shards_of_a_split_with_fewer_images_than_shards_are_shown_empty(tmp_path):
    paths = write_tiny(tmp_path / "dl")  # 3 validation images
    out = tmp_path / "out"
    code, err = run_cli(*convert_args(paths, out, "--train-shards", "2", "--validation-shards", "4",
                                      "--classic-threads", "2", "--format", "tfrecord,webdataset", "--dali-index",
                                      "--quiet"))
    assert code == 0, err
    empty = next(p for p in sorted(out.glob("validation-*-of-00004")) if p.stat().st_size == 0)
    for suffix, kind, count in (("", "TFRecord shard", "records"), (".tar", "WebDataset shard", "samples"),
                                (".idx", "DALI index of a TFRecord shard", "records"),
                                (".tar.idx", "DALI index of a WebDataset shard", "samples")):
        found = inspected(Path(f"{empty}{suffix}"))
        assert (found["kind"], found["counts"][count], found["entries"]) == (kind, 0, [])


def test_the_manifest_is_shown_with_its_formats_splits_and_listed_files(both):
    found = inspected(both / "manifest.json")
    manifest = json.loads((both / "manifest.json").read_text())
    assert found["facts"]["complete"] == "yes" and found["facts"]["formats"] == "tfrecord,webdataset, with DALI indexes"
    assert found["counts"]["files listed"] == len(manifest["shards"]) == len(found["entries"])
    assert found["counts"]["train images"] == 31 and found["counts"]["validation images"] == 13
    assert "1..1000" in found["label_numbering"]  # class_counts are the classic's labels, whatever the format
    assert found["facts"]["checksum"].startswith(f"{manifest['checksum']} ")  # the algorithm its digests are under


def test_a_dali_index_is_shown_line_for_line_and_names_its_shard(both):
    found = inspected(both / "train-00001-of-00004.tar.idx")
    lines = (both / "train-00001-of-00004.tar.idx").read_text().splitlines()
    assert found["facts"]["shard"] == "train-00001-of-00004.tar (beside it)"
    assert found["counts"]["samples"] == int(lines[0].split()[1]) == len(lines) - 1
    first = lines[1].split()
    assert found["entries"][0]["members"][0] == {"ext": first[0], "offset": int(first[1]), "size": int(first[2])}
    found = inspected(both / "train-00001-of-00004.idx")
    assert [f"{e['offset']} {e['length']}" for e in found["entries"]] == \
        (both / "train-00001-of-00004.idx").read_text().splitlines()
    assert found["counts"]["shard bytes"] == (both / "train-00001-of-00004").stat().st_size


def test_bboxes_csv_is_shown_box_by_box(both):
    found = inspected(both / "bboxes.csv")
    lines = (both / "bboxes.csv").read_text().splitlines()
    assert found["counts"]["boxes"] == len(lines) == len(found["entries"])
    assert found["counts"]["images"] == len({line.rsplit(",", 4)[0] for line in lines})
    assert found["entries"][0]["image"] == lines[0].rsplit(",", 4)[0]



def test_a_tfds_shard_away_from_its_dataset_folder_takes_its_synsets_from_the_synsets_file(tfds_out, tmp_path):
    moved = tmp_path / "imagenet2012-train.tfrecord-00000-of-00001"
    shutil.copyfile(tfds_out["tfrecord"] / moved.name, moved)
    found, beside = inspected(moved), inspected(tfds_out["tfrecord"] / moved.name)
    assert found["facts"]["synsets from"].startswith("the synsets file ") and "no label.labels.txt" in \
        found["facts"]["synsets from"]
    assert found["entries"] == beside["entries"]  # TFDS's label names are the synsets file, in its order


@pytest.mark.parametrize("where, name, said", [
    ("both", "train-00001-of-00004", "cannot be read (truncated record"),
    ("both", "train-00001-of-00004.tar", "cannot be read (unexpected end of data)"),
    ("array_record", "imagenet2012-train.array_record-00000-of-00002", "the ArrayRecord file cannot be read"),
], ids=["tfrecord", "webdataset", "array_record"])
def test_a_shard_cut_short_is_a_one_line_error_pointing_to_verify(both, tfds_out, tmp_path, where, name, said):
    cut = tmp_path / name
    data = ({"both": both, **tfds_out}[where] / name).read_bytes()
    cut.write_bytes(data[:len(data) * 2 // 3] if where == "both" else data[:300])
    code, out, err = run("inspect", cut)
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert said in err and err.rstrip().endswith("`streamprep verify` on its folder says what is wrong with it")
