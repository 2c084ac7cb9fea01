"""WebDataset shards judged by their real readers: the `webdataset` library, GNU tar, timm's `_info.json` rules.

The TFRecord shards written in the same pass are the reference: same images, same order, same labels.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import webdataset as wds
from PIL import Image

from helpers import SMALL_LAYOUT, convert_args, is_result, result_files, run_cli
from fixtures import builders
from hypothesis import given, settings
from hypothesis import strategies as st
from streamprep.outputs.webdataset.write import escape, fitted, member_header
from tiny import A, B, write_tiny


def tfrecords(path: Path) -> list[tf.train.Example]:
    return [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(str(path))]


def feature(example: tf.train.Example, key: str):
    f = example.features.feature[key]
    return getattr(f, f.WhichOneof("kind")).value


def samples(path: Path) -> list[dict]:
    return list(wds.WebDataset(str(path), shardshuffle=False, empty_check=False))


@pytest.mark.parametrize("split, shards", [("train", 4), ("validation", 2)])
def test_webdataset_library_reads_the_same_images_labels_and_order_as_the_tfrecord_shards(both, split, shards):
    seen = 0
    for k in range(shards):
        name = f"{split}-{k:05d}-of-{shards:05d}"
        records, got = tfrecords(both / name), samples(both / f"{name}.tar")
        assert len(got) == len(records) > 0
        for example, sample in zip(records, got):
            assert sample["jpg"] == feature(example, "image/encoded")[0]
            label = feature(example, "image/class/label")[0]
            assert int(sample["cls"]) == label - 1  # timm's and torchvision's numbering
            meta = json.loads(sample["json"])
            filename = feature(example, "image/filename")[0].decode()
            assert meta["filename"] == filename and meta["label"] == label and meta["cls"] == label - 1
            assert meta["synset"] == feature(example, "image/class/synset")[0].decode()
            assert meta["text"] == feature(example, "image/class/text")[0].decode()
            assert (meta["height"], meta["width"]) == (feature(example, "image/height")[0],
                                                       feature(example, "image/width")[0])
            boxes = np.array(meta["boxes"], np.float32).reshape(-1, 4)
            for column, key in enumerate(("xmin", "ymin", "xmax", "ymax")):
                assert boxes[:, column].tolist() == list(feature(example, f"image/object/bbox/{key}"))
            stem = escape(filename.rsplit(".", 1)[0])
            assert sample["__key__"] == fitted(stem if split == "validation" else f"{meta['synset']}/{stem}")
            with Image.open(io.BytesIO(sample["jpg"])) as image:
                assert image.convert("RGB").size == (meta["width"], meta["height"])
            seen += 1
    assert seen == {"train": 31, "validation": 13}[split]


def test_escape_is_the_identity_on_imagenet_names_and_percent_encodes_everything_else():
    assert escape("n01440764_10026") == "n01440764_10026"
    assert escape("ILSVRC2012_val_00000001") == "ILSVRC2012_val_00000001"
    assert escape("a.b c%/\u00e9") == "a%2Eb%20c%25%2F%C3%A9"


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.text(min_size=1, max_size=130), st.integers(0, 2**40))
def test_member_headers_are_what_pythons_tarfile_writes(name, size):
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime, info.uid, info.gid, info.uname, info.gname = size, 0o444, 0, 0, 0, "", ""
    assert member_header(name, size) == info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def test_webdataset_decodes_every_sample_with_pillow_and_keys_are_unique(both):
    shards = sorted(str(p) for p in both.glob("*.tar"))
    dataset = wds.WebDataset(shards, shardshuffle=False, empty_check=False).decode("pil").to_tuple(
        "__key__", "jpg", "cls", "json")
    keys = []
    for key, image, cls, meta in dataset:
        assert image.mode == "RGB" and image.size == (meta["width"], meta["height"])
        assert cls == meta["cls"]
        keys.append(key)
    assert len(keys) == 44 == len(set(keys))


def test_gnu_tar_lists_the_shards_and_every_member_is_deterministic(both):
    listing = subprocess.run(["tar", "tvf", str(both / "train-00000-of-00004.tar")], capture_output=True, text=True,
                             check=True).stdout.splitlines()
    assert listing and all(line.startswith("-r--r--r-- 0/0") and " 1970-01-01 00:00 " in line for line in listing)
    with tarfile.open(both / "train-00000-of-00004.tar") as tar:
        members = tar.getmembers()
    assert [m.name.rsplit(".", 1)[1] for m in members] == ["jpg", "cls", "json"] * (len(members) // 3)
    assert all(m.uname == m.gname == "" and m.mtime == 0 for m in members)
    assert (both / "train-00000-of-00004.tar").stat().st_size % 10240 == 0


def test_info_json_is_what_timms_reader_needs_to_train_from_the_folder_alone(both):
    info = json.loads((both / "_info.json").read_text())
    for split, shards in (("train", 4), ("validation", 2)):
        entry = info["splits"][split]
        assert entry["name"] == split
        assert entry["filenames"] == [f"{split}-{k:05d}-of-{shards:05d}.tar" for k in range(shards)]
        assert entry["shard_lengths"] == [len(samples(both / f)) for f in entry["filenames"]]
        assert entry["num_samples"] == sum(entry["shard_lengths"])


TIMM_READ = """
import json, sys
from timm.data import create_dataset
got = {}
for split in sys.argv[2:]:
    dataset = create_dataset("wds/imagenet", root=sys.argv[1], split=split, is_training=False)
    got[split] = {"len": len(dataset), "samples": [[target, list(image.size)] for image, target in dataset]}
print(json.dumps(got))
"""


@pytest.fixture(scope="module")
def timm_read(both) -> dict[str, dict]:
    """What timm's own WebDataset reader reads of each split of `both`, given nothing but the folder. In a process
    of its own (timm's torch and this module's TensorFlow do not load into one process), one for both splits: the
    import of torch and timm takes seconds."""
    done = subprocess.run([sys.executable, "-c", TIMM_READ, str(both), "train", "validation"], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("split, shards", [("train", 4), ("validation", 2)])
def test_timm_trains_from_the_output_folder_alone(both, timm_read, split, shards):
    """timm's own WebDataset reader, given nothing but the folder: _info.json for the split, .cls for the target."""
    got = timm_read[split]
    expected = [[feature(e, "image/class/label")[0] - 1, [feature(e, "image/width")[0], feature(e, "image/height")[0]]]
                for k in range(shards) for e in tfrecords(both / f"{split}-{k:05d}-of-{shards:05d}")]
    assert got["len"] == len(expected)
    assert got["samples"] == expected


def test_two_formats_in_one_pass_are_byte_identical_to_each_written_alone(sample, both, tmp_path):
    for fmt, pattern in (("tfrecord", "*-of-0000?"), ("webdataset", "*.tar")):
        out = tmp_path / fmt
        code, err = run_cli(*convert_args(sample, out, *SMALL_LAYOUT, "--format", fmt, "--workers", "3", "--quiet"))
        assert code == 0, err
        alone = sorted(out.glob(pattern))
        assert alone and all(p.read_bytes() == (both / p.name).read_bytes() for p in alone)


def test_a_key_never_holds_a_dot_or_space_and_names_shared_by_two_classes_stay_distinct(tmp_path):
    odd = {A: {"odd name.v2.JPEG": builders.jpeg(20, 16, seed=1), "same.JPEG": builders.jpeg(18, 16, seed=2)},
           B: {"same.JPEG": builders.jpeg(16, 16, seed=3), "caf\u00e9%.JPEG": builders.jpeg(16, 18, seed=4)}}
    paths = write_tiny(tmp_path / "in", classes=odd)
    out = tmp_path / "out"
    code, err = run_cli(*convert_args(paths, out, "--train-shards", "1", "--validation-shards", "1",
                                      "--classic-threads", "1", "--format", "webdataset", "--quiet"))
    assert code == 0, err
    got = samples(out / "train-00000-of-00001.tar")
    keys = {s["__key__"]: json.loads(s["json"])["filename"] for s in got}
    assert keys == {f"{A}/odd%20name%2Ev2": "odd name.v2.JPEG", f"{A}/same": "same.JPEG", f"{B}/same": "same.JPEG",
                    f"{B}/caf%C3%A9%25": "caf\u00e9%.JPEG"}
    assert all(set(s) >= {"jpg", "cls", "json"} for s in got)


def test_a_damaged_webdataset_shard_and_a_lost_index_are_written_again_on_rerun(sample, both, tmp_path):
    out = tmp_path / "out"
    args = convert_args(sample, out, *SMALL_LAYOUT, "--format", "tfrecord,webdataset", "--dali-index", "--quiet")
    code, err = run_cli(*args)
    assert code == 0, err
    victim = out / "train-00002-of-00004.tar"
    victim.write_bytes(victim.read_bytes()[:1000])
    (out / "train-00001-of-00004.idx").unlink()
    kept = out / "train-00003-of-00004.tar"
    inode = kept.stat().st_ino
    code, err = run_cli(*args)
    assert code == 0, err
    assert result_files(out) == result_files(both)
    assert kept.stat().st_ino == inode  # a shard complete in every format is kept, not written again
    code, err = run_cli("verify", str(out))
    assert code == 0, err


def test_verify_finds_a_damaged_webdataset_shard_and_a_wrong_index(both, tmp_path, capsys):
    out = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(both), str(out)], check=True)
    tar = out / "validation-00001-of-00002.tar"
    data = bytearray(tar.read_bytes())
    at = data.index(b".cls") + 512 - data.index(b".cls") % 512  # the first .cls member's data block
    data[at] = ord("x")
    tar.write_bytes(bytes(data))
    idx = out / "train-00000-of-00004.tar.idx"
    idx.write_bytes(idx.read_bytes().replace(b"jpg 512 ", b"jpg 1024 ", 1))
    code, _ = run_cli("verify", str(out))
    report = capsys.readouterr().out
    assert code == 1
    assert "validation-00001-of-00002.tar: record 0: sample 'ILSVRC2012_val_00000012': .cls is b'x'" in report
    assert "train-00000-of-00004.tar.idx: does not match train-00000-of-00004.tar (from line 2)" in report


def test_inspect_shows_a_webdataset_shards_samples_as_a_tfrecord_shards_records_with_the_cls_label(both, capsys):
    """The same first record (file name, size, bytes, boxes), its label as each file stores it: the classic's
    1..1000 in the TFRecord, `.cls`'s 0..999 in the WebDataset shard, one less."""
    code, _ = run_cli("inspect", str(both / "validation-00000-of-00002.tar"), "--limit", "1")
    tar_report = capsys.readouterr().out
    code2, _ = run_cli("inspect", str(both / "validation-00000-of-00002"), "--limit", "1")
    tfrecord_report = capsys.readouterr().out
    assert code == code2 == 0
    assert "WebDataset shard" in tar_report and "samples" in tar_report
    pattern = re.compile(r"^(\s+\S+)\s+label (\d+) (.*)$")
    tf_first = next(pattern.match(line) for line in tfrecord_report.splitlines() if pattern.match(line))
    tar_first = next(pattern.match(line) for line in tar_report.splitlines() if pattern.match(line))
    assert (tar_first[1], tar_first[3]) == (tf_first[1], tf_first[3])
    assert int(tar_first[2]) == int(tf_first[2]) - 1


def test_webdataset_shards_and_indexes_written_to_s3_equal_a_local_run(sample, both, s3, s3_endpoint):
    s3.mkdir("wds-out")
    out = "s3://wds-out/imagenet"
    code, err = run_cli(*convert_args(sample, out, *SMALL_LAYOUT, "--format", "tfrecord,webdataset", "--dali-index",
                                      "--storage-option", f"s3.endpoint_url={s3_endpoint}",
                                      "--storage-option", "s3.key=testing", "--storage-option", "s3.secret=testing",
                                      "--quiet"))
    assert code == 0, err
    s3.invalidate_cache()
    remote = {k.split("/imagenet/", 1)[1]: k for k in s3.find(out)}
    assert {n: s3.cat(k) for n, k in remote.items() if is_result(n)} == result_files(both)
    code, err = run_cli("verify", out, "--storage-option", f"s3.endpoint_url={s3_endpoint}",
                        "--storage-option", "s3.key=testing", "--storage-option", "s3.secret=testing")
    assert code == 0, err


def test_verify_reports_a_sample_whose_members_come_back_after_other_samples(tmp_path, capsys):
    def add(tar, name, data):
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))

    jpeg = builders.jpeg(16, 16, seed=1)
    meta = json.dumps({"cls": 0, "label": 1, "boxes": []}).encode()
    with tarfile.open(tmp_path / "validation-00000-of-00001.tar", "w") as tar:
        for key in ("a", "b", "a"):
            add(tar, f"{key}.jpg", jpeg)
            add(tar, f"{key}.cls", b"0")
            add(tar, f"{key}.json", meta)
    code, _ = run_cli("verify", str(tmp_path))
    assert code == 1 and "sample 'a' appears again after other samples" in capsys.readouterr().out


@pytest.mark.parametrize("filename", ["n01440764_1.JPEG", "é\u2028\"\\.JPEG", "x\udcff\udcfe.JPEG"])
def test_sample_json_is_valid_utf8_json_that_reads_back_the_same_name(filename):
    from streamprep.outputs.webdataset.write import metadata
    from streamprep.records.spec import RecordSpec
    from streamprep.records.image import Image as Prepared

    spec = RecordSpec(filename, 1, "n01440764", "tench", "a.tar!" + filename, 0, 3,
                      np.asarray([[0.1, 0.2, 0.3, 0.4]], np.float32), None)
    raw = metadata(spec, Prepared(b"abc", 5, 7))
    parsed = json.loads(raw.decode("utf-8"))  # strict: bytes that are not UTF-8 (from a non-UTF-8 name) fail here
    assert parsed["filename"] == filename  # the same str, lone surrogates included, as the archive's name decodes
    assert parsed["boxes"] == [[0.1, 0.2, 0.3, 0.4]] and (parsed["height"], parsed["width"]) == (5, 7)
