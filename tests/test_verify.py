"""`streamprep verify`: a finished output checked record by record, and against its manifest.json."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path
from typing import Callable

import fsspec
import pytest
import tensorflow as tf
import xxhash

from helpers import convert_args, run_cli
from streamprep.cli import main
from streamprep.outputs.tfrecord.write import frame, read_records

LAYOUT = ("--train-shards", "8", "--validation-shards", "4", "--classic-threads", "2")
SHARD = "train-00001-of-00008"  # 4 records, one of them the fixed-up PNG


def verify_cli(*argv: object) -> tuple[int, str, str]:
    """Run `streamprep verify` in-process; (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    code = main(["verify", *(str(a) for a in argv)], stderr=err, stdout=out)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def converted(sample, tmp_path_factory) -> Path:
    """streamprep's output of the sample, with its manifest.json (never modified: copy it first)."""
    out = tmp_path_factory.mktemp("verify") / "out"
    code, err = run_cli(*convert_args(sample, out, *LAYOUT, "--quiet"))
    assert code == 0, err
    assert (out / "manifest.json").exists()
    return out


@pytest.fixture
def copy(converted, tmp_path) -> Path:
    return Path(shutil.copytree(converted, tmp_path / "out"))


# Damage helpers: each returns the texts that the report must hold.

def records(path: Path) -> list[tuple[int, bytes]]:
    """(byte offset, record bytes) of every record of a shard."""
    out, offset = [], 0
    with open(path, "rb") as f:
        for data in read_records(f, str(path)):
            out.append((offset, data))
            offset += 16 + len(data)
    return out


def filename_of(data: bytes) -> str:
    return tf.train.Example.FromString(data).features.feature["image/filename"].bytes_list.value[0].decode()


def flip(path: Path, position: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[position] ^= 0x40
    path.write_bytes(bytes(raw))


def rewrite_record(path: Path, number: int, change: Callable[[tf.train.Example], None]) -> str:
    """Change one record's Example and frame it again with correct CRCs; the record's image filename."""
    framed = []
    for i, (_, data) in enumerate(records(path)):
        if i == number:
            example = tf.train.Example.FromString(data)
            name = filename_of(data)
            change(example)
            data = example.SerializeToString(deterministic=True)
        framed.append(frame(data))
    path.write_bytes(b"".join(framed))
    return name


def data_crc(out: Path) -> list[str]:
    offset, data = records(out / SHARD)[1]
    encoded = tf.train.Example.FromString(data).features.feature["image/encoded"].bytes_list.value[0]
    flip(out / SHARD, offset + 12 + data.index(encoded) + len(encoded) // 2)
    return [f"{SHARD}: record 1 at byte {offset} ({filename_of(data)}): data CRC mismatch",
            f"{SHARD}: xxh3-128"]


def length_field(out: Path) -> list[str]:
    offset, _ = records(out / SHARD)[2]
    flip(out / SHARD, offset + 1)
    return [f"{SHARD}: record 2 at byte {offset}: length CRC mismatch", "cannot be read"]


def truncated(out: Path) -> list[str]:
    path = out / SHARD
    offset, _ = records(path)[-1]
    size = path.stat().st_size
    path.write_bytes(path.read_bytes()[:-10])
    return [f"{SHARD}: record 3 at byte {offset}: truncated", f"{SHARD}: holds {size - 10:,} bytes, manifest.json lists {size:,}"]


def missing_shard(out: Path) -> list[str]:
    (out / "validation-00002-of-00004").unlink()
    return ["validation-00002-of-00004: missing: listed in manifest.json"]


def extra_shard(out: Path) -> list[str]:
    shutil.copyfile(out / "train-00000-of-00008", out / "train-00008-of-00009")
    return ["train-00008-of-00009: not listed in manifest.json"]


def swapped_shards(out: Path) -> list[str]:
    a, b = out / "train-00000-of-00008", out / "train-00002-of-00008"  # 3 and 4 records
    data_a, data_b = a.read_bytes(), b.read_bytes()
    a.write_bytes(data_b)
    b.write_bytes(data_a)
    return ["train-00000-of-00008: xxh3-128", "train-00002-of-00008: xxh3-128",
            "train-00000-of-00008: holds 4 records, manifest.json lists 3",
            "train-00002-of-00008: holds 3 records, manifest.json lists 4"]


def label_out_of_range(out: Path) -> list[str]:
    def change(example):
        example.features.feature["image/class/label"].int64_list.value[:] = [1001]
        example.features.feature["image/object/bbox/label"].int64_list.value[:] = [
            1001] * len(example.features.feature["image/object/bbox/label"].int64_list.value)

    name = rewrite_record(out / SHARD, 2, change)
    return [f"{SHARD}: record 2 at byte", f"({name}): image/class/label 1001 is out of range 1..1000",
            "train: label counts differ from manifest.json"]


def missing_feature(out: Path) -> list[str]:
    name = rewrite_record(out / SHARD, 0, lambda e: e.features.feature.pop("image/class/text"))
    return [f"{SHARD}: record 0 at byte 0 ({name}): missing feature image/class/text"]


def wrong_type(out: Path) -> list[str]:
    def change(example):
        example.features.feature["image/height"].CopyFrom(tf.train.Feature(float_list=tf.train.FloatList(value=[3.0])))

    name = rewrite_record(out / SHARD, 3, change)
    return [f"({name}): image/height is a float_list, expected a int64_list"]


def unknown_feature(out: Path) -> list[str]:
    def change(example):
        example.features.feature["image/extra"].bytes_list.value.append(b"x")

    name = rewrite_record(out / SHARD, 1, change)
    return [f"({name}): unknown feature image/extra"]


def garbage_jpeg(out: Path) -> list[str]:
    def change(example):
        example.features.feature["image/encoded"].bytes_list.value[:] = [b"\xff\xd8\xff\xe0" + b"garbage" * 50]

    name = rewrite_record(out / SHARD, 0, change)
    return [f"{SHARD}: record 0 at byte 0 ({name}): image/encoded does not decode as a JPEG"]


def png_as_jpeg(out: Path) -> list[str]:
    def change(example):
        height = example.features.feature["image/height"].int64_list.value[0]
        width = example.features.feature["image/width"].int64_list.value[0]
        png = tf.io.encode_png(tf.zeros((height, width, 3), tf.uint8)).numpy()
        example.features.feature["image/encoded"].bytes_list.value[:] = [png]

    name = rewrite_record(out / SHARD, 0, change)
    return [f"({name}): image/encoded is not a JPEG (it starts with 89 50 4e 47)"]


def wrong_size(out: Path) -> list[str]:
    def change(example):
        example.features.feature["image/width"].int64_list.value[:] = [7]

    name = rewrite_record(out / SHARD, 1, change)
    return [f"({name}): the image decodes to", "but image/width x image/height say 7x"]


def bboxes_modified(out: Path) -> list[str]:
    with open(out / "bboxes.csv", "a") as f:
        f.write("n01440764_1.JPEG,0.1000,0.1000,0.2000,0.2000\n")
    return ["bboxes.csv: holds", "bboxes.csv: xxh3-128"]


def incomplete(out: Path) -> list[str]:
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["complete"] = False
    (out / "manifest.json").write_text(json.dumps(manifest))
    return ["manifest.json: incomplete conversion: rerun the same convert command to finish it"]


DAMAGE = [
    (data_crc, ()), (length_field, ()), (truncated, ()), (missing_shard, ()), (extra_shard, ()),
    (swapped_shards, ()), (label_out_of_range, ()), (missing_feature, ()), (wrong_type, ()), (unknown_feature, ()),
    (garbage_jpeg, ("--decode",)), (png_as_jpeg, ("--decode",)), (wrong_size, ("--decode",)),
    (bboxes_modified, ()), (incomplete, ()),
]


def test_streamprep_output_with_its_manifest_passes(converted):
    code, out, err = verify_cli(converted, "--decode")
    assert code == 0, out + err
    assert out.startswith("streamprep verify: OK:")
    assert "44 records in 12 shards" in out and "44 images decoded" in out
    assert "counts and xxh3-128 against manifest.json" in out
    assert "verify: started" in err and "verify: done, 44 records" in err


def test_classic_output_without_a_manifest_passes_and_says_what_was_not_checked(classic):
    reference = classic(8, 4, 2)
    assert not (reference / "manifest.json").exists()
    code, out, _ = verify_cli(reference, "--decode", "--quiet")
    assert code == 0, out
    assert "note: no manifest.json" in out and "digests were not checked" in out
    assert "streamprep verify: OK:" in out and "44 records in 12 shards" in out and "44 images decoded" in out


@pytest.mark.parametrize("damage, flags", DAMAGE, ids=[d.__name__ for d, _ in DAMAGE])
def test_damaged_output_fails_naming_the_shard_and_record(copy, damage, flags):
    expected = damage(copy)
    code, out, err = verify_cli(copy, "--quiet", *flags)
    assert code == 1, out + err
    for text in expected:
        assert text in out, f"{text!r} not in:\n{out}"
    assert out.splitlines()[-1].startswith("streamprep verify: FAILED:")
    assert err == ""


def test_a_bad_image_is_found_only_with_decode(copy):
    garbage_jpeg(copy)
    manifest = json.loads((copy / "manifest.json").read_text())  # make the manifest agree with the damage
    for entry in manifest["shards"]:
        if entry["name"] == SHARD:
            entry["bytes"] = (copy / SHARD).stat().st_size
            entry["xxh3-128"] = xxhash.xxh3_128((copy / SHARD).read_bytes()).hexdigest()
    (copy / "manifest.json").write_text(json.dumps(manifest))
    assert verify_cli(copy, "--quiet")[0] == 0
    assert verify_cli(copy, "--quiet", "--decode")[0] == 1


def test_damaged_records_do_not_stop_the_rest_of_the_shard(copy):
    path = copy / SHARD
    intact = records(path)
    for number in (0, 2):
        offset, data = intact[number]
        encoded = tf.train.Example.FromString(data).features.feature["image/encoded"].bytes_list.value[0]
        flip(path, offset + 12 + data.index(encoded) + 10)
    code, out, _ = verify_cli(copy, "--quiet")
    assert code == 1
    damaged = [line for line in out.splitlines() if "data CRC mismatch" in line]
    assert [line.split(":")[1].split(" at ")[0] for line in damaged] == [" record 0", " record 2"]


@pytest.mark.parametrize("damage, texts", [
    (lambda out: (out / "train-00004-of-00008").unlink(), ["train: 1 of 8 shard(s) missing in the folder: "
                                                           "train-00004-of-00008"]),
    (lambda out: shutil.copyfile(out / "train-00000-of-00008", out / "train-00000-of-00016"),
     ["train: shard names of two or more shard counts in the folder: -of-00008, -of-00016"]),
    (data_crc, [f"{SHARD}: record 1 at byte", "data CRC mismatch"]),
    (length_field, [f"{SHARD}: record 2 at byte", "length CRC mismatch"]),
], ids=["missing-shard", "two-layouts", "data-crc", "length-field"])
def test_damaged_classic_output_fails_too(classic, tmp_path, damage, texts):
    out = Path(shutil.copytree(classic(8, 4, 2), tmp_path / "out"))
    damage(out)
    code, report, _ = verify_cli(out, "--quiet")
    assert code == 1
    for text in texts:
        assert text in report, report


def test_problems_with_the_manifest_skip_no_other_check(copy):
    (copy / "manifest.json").write_text("{not json")
    missing_shard(copy)
    code, out, _ = verify_cli(copy, "--quiet")
    assert code == 1
    assert "manifest.json: unusable" in out and "validation: 1 of 4 shard(s) missing in the folder" in out


def test_a_killed_conversion_is_reported_incomplete_and_its_finished_shards_checked(copy):
    manifest = json.loads((copy / "manifest.json").read_text())  # as convert leaves it when killed mid-run
    manifest.update(complete=False, shards=manifest["shards"][:5])
    for key in ("splits", "bboxes_csv", "fixups", "skipped", "ignored"):
        manifest.pop(key)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    (copy / "train-00007-of-00008").unlink()
    flip(copy / "validation-00003-of-00004", 1)  # not listed yet: checked for framing still
    code, out, _ = verify_cli(copy, "--quiet")
    assert code == 1
    assert out.splitlines()[:2] == [
        "manifest.json: incomplete conversion: rerun the same convert command to finish it",
        "validation-00003-of-00004: record 0 at byte 0: length CRC mismatch: the record framing is damaged; "
        "the rest of this shard cannot be read"]
    assert "note: the conversion is incomplete: 5 shard(s) listed in manifest.json were checked against it; " \
        "6 unlisted shard(s) for framing, schema and labels only" in out


def test_hidden_files_are_ignored(copy):
    (copy / ".train-00000-of-00008.123-abcdef01.tmp").write_bytes(b"partial")
    (copy / ".streamprep").mkdir(exist_ok=True)
    assert verify_cli(copy, "--quiet")[0] == 0


@pytest.mark.parametrize("make, message", [
    (lambda tmp: tmp / "nowhere", "not found; pass the folder a conversion wrote"),
    (lambda tmp: (tmp / "file").write_bytes(b"x") and tmp / "file", "is a file, not a folder"),
    (lambda tmp: (tmp / "empty").mkdir() or tmp / "empty", "holds neither manifest.json nor shards"),
], ids=["missing", "a-file", "empty-folder"])
def test_out_that_cannot_be_verified_exits_2_with_the_fix(tmp_path, make, message):
    code, out, err = verify_cli(make(tmp_path), "--quiet")
    assert code == 2 and out == ""
    assert err.startswith("streamprep: error:") and message in err


def test_fsspec_urls_are_verified_like_folders(converted):
    from streamprep.progress import Event
    from streamprep.outputs.verify import verify

    fs = fsspec.filesystem("memory")
    for path in converted.iterdir():
        if path.is_file():
            fs.pipe_file(f"/verify-test/{path.name}", path.read_bytes())
    events: list[Event] = []
    try:
        report = verify("memory://verify-test", workers=3, progress=events.append)
    finally:
        fs.rm("/verify-test", recursive=True)
    assert report.ok and report.manifest and report.records == 44, report.lines()
    assert [e.kind for e in events][0] == "start" and events[-1].kind == "end"
    assert sum(e.items for e in events) == 44
    assert sum(e.nbytes for e in events) == sum(p.stat().st_size for p in converted.glob("*-of-*"))


def test_num_classes_sets_the_label_range(converted):
    code, out, _ = verify_cli(converted, "--quiet", "--num-classes", "100")
    assert code == 1
    assert "image/class/label 151 is out of range 1..100" in out


def test_help_lists_verify():
    out = io.StringIO()
    with pytest.raises(SystemExit), contextlib.redirect_stdout(out):
        main(["verify", "--help"])
    assert "--decode" in out.getvalue() and "(default: the num_classes manifest.json records, else 1000)" in " ".join(out.getvalue().split())


# Label numbering: every message says a label in the numbering its format stores. `tfds_converted` (conftest's):
# --format tfds of TFDS-valid downloads (tests/tfds_downloads.py), one TFRecord shard a split.

TFDS_TRAIN = "imagenet2012/5.1.0/imagenet2012-train.tfrecord-00000-of-00001"


def rewrite_tfds_label(shard: Path, number: int, label: int) -> tuple[str, int]:
    """Give record `number` of a TFDS shard another label, framed again with correct CRCs; its file name and old
    label."""
    framed = []
    for i, (_, data) in enumerate(records(shard)):
        if i == number:
            example = tf.train.Example.FromString(data)
            feature = example.features.feature
            name, old = feature["file_name"].bytes_list.value[0].decode(), feature["label"].int64_list.value[0]
            feature["label"].int64_list.value[:] = [label]
            data = example.SerializeToString(deterministic=True)
        framed.append(frame(data))
    shard.write_bytes(b"".join(framed))
    return name, old


def test_the_summary_names_each_formats_label_range_in_its_own_numbering(both, tfds_converted):
    code, out, _ = verify_cli(tfds_converted, "--quiet")
    summary = out.splitlines()[-1]
    assert code == 0 and "checked framing, schema, labels (TFDS label 0..999), counts" in summary, out
    assert "1..1000" not in summary
    code, out, _ = verify_cli(both, "--quiet")
    assert code == 0 and "labels (image/class/label 1..1000; .cls 0..999)" in out.splitlines()[-1], out


def test_a_tfds_label_out_of_range_is_reported_against_0_to_999(tfds_converted, tmp_path):
    out = Path(shutil.copytree(tfds_converted, tmp_path / "out"))
    name, _ = rewrite_tfds_label(out / TFDS_TRAIN, 1, 1000)
    code, report, _ = verify_cli(out, "--quiet")
    assert code == 1 and f"{TFDS_TRAIN}: record 1 at byte" in report
    assert f"({name}): label 1000 is out of range 0..999" in report


def test_a_tfds_label_count_that_differs_from_the_manifest_is_named_as_tfds_numbers_it(tfds_converted, tmp_path):
    out = Path(shutil.copytree(tfds_converted, tmp_path / "out"))
    _, old = rewrite_tfds_label(out / TFDS_TRAIN, 0, 5)  # TFDS label 5 (n01491361): no image of the downloads has it
    code, report, _ = verify_cli(out, "--quiet")
    assert code == 1
    line = next(line for line in report.splitlines() if "label counts differ" in line)
    assert "TFDS label 5: 1 in the records, 0 listed" in line
    assert f"TFDS label {old}: 3 in the records, 4 listed" in line
    assert "manifest.json's class_counts key is 1 more, the classic's label" in line


def test_a_webdataset_json_label_numbered_like_cls_is_reported_with_both_numberings(both, tmp_path):
    import tarfile

    out = Path(shutil.copytree(both, tmp_path / "out"))
    shard = out / "validation-00000-of-00002.tar"
    with tarfile.open(shard) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    name, data = next((m.name, d) for m, d in members if m.name.endswith(".json"))
    meta = json.loads(data)
    meta["label"] = meta["cls"]  # the 0-based class where the classic's 1-based label belongs
    with tarfile.open(shard, "w", format=tarfile.PAX_FORMAT) as tar:
        for member, data in members:
            data = json.dumps(meta).encode() if member.name == name else data
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    code, report, _ = verify_cli(out, "--quiet")
    cls = meta["cls"]
    assert code == 1
    assert (f"sample '{name[:-5]}': .json says cls {cls} and label {cls}, .cls says {cls} (so cls {cls} and the "
            f"classic's label {cls + 1})") in report
