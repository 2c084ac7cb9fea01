"""Tests of tests/classic_reference.py on a tiny data set built here with tarfile + Pillow."""

import io
import os
import random
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from classic_reference import read_examples, run_classic
from helpers import METADATA, SYNSETS

A, B = "n01440764", "n01443537"          # labels 1 and 2 in the real synsets file
TRAIN = {A: ["n01440764_10", "n01440764_11", "n01440764_9"],
         B: ["n01443537_20", "n01443537_21", "n01443537_22"]}
VAL_LABELS = [B, A, B]                    # ILSVRC2012_val_00000001..3

XML = """<annotation><folder>{folder}</folder><filename>%s</filename>
<size><width>{w}</width><height>{h}</height><depth>3</depth></size>
{objects}</annotation>"""
OBJ = """<object><name>{folder}</name><bndbox><xmin>{0}</xmin><ymin>{1}</ymin>
<xmax>{2}</xmax><ymax>{3}</ymax></bndbox></object>"""

EXPECTED_CSV = (
    "n01440764_10.JPEG,0.0500,0.2000,0.5500,0.8000\n"   # float text truncated
    "n01440764_10.JPEG,0.2500,0.1000,0.7500,0.9000\n"   # swapped box
    "n01443537_20.JPEG,0.0000,0.0000,1.0000,0.5000\n"   # clamped; degenerate box skipped
    "n01443537_999.JPEG,0.1000,0.1000,0.2000,0.2000\n"  # image does not exist: kept
)


def _jpeg(size, seed, mode="RGB"):
    rng = np.random.default_rng(seed)
    channels = len(mode)
    pixels = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels, mode).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _png(size, seed):
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buf, "PNG")
    return buf.getvalue()


def _tar_bytes(members, mode="w"):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _xml(folder, w, h, boxes):
    objects = "".join(OBJ.format(*b, folder=folder) for b in boxes)
    return XML.format(folder=folder, w=w, h=h, objects=objects).encode()


def build_dataset(root, extra_train=None, val_labels=VAL_LABELS):
    """Write the three downloads and a validation labels file under ``root``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    images = {}
    classes = {s: dict() for s in TRAIN}
    for k, (synset, stems) in enumerate(TRAIN.items()):
        for j, stem in enumerate(stems):
            data = _jpeg((20 + 4 * j + k, 10 + 2 * j), seed=10 * k + j)
            classes[synset][stem + ".JPEG"] = data
            images[stem + ".JPEG"] = data
        classes[synset]["readme.txt"] = b"ignored"
        classes[synset][stems[0] + ".jpeg"] = b"ignored: not .JPEG"
    for synset, members in (extra_train or {}).items():
        classes.setdefault(synset, {}).update(members)
        images.update(members)
    outer = {"%s.tar" % s: _tar_bytes(m) for s, m in classes.items()}
    (root / "ILSVRC2012_img_train.tar").write_bytes(_tar_bytes(outer))

    val = {}
    for i in range(4):  # the 4th image is not in the labels file: never used
        name = "ILSVRC2012_val_%08d.JPEG" % (i + 1)
        val[name] = _jpeg((16 + i, 12 + i), seed=100 + i)
        images[name] = val[name]
    (root / "ILSVRC2012_img_val.tar").write_bytes(_tar_bytes(dict(reversed(val.items()))))
    (root / "val_labels.txt").write_text("".join(l + "\n" for l in val_labels))

    xmls = {
        "%s/n01440764_10.xml" % A: _xml(A, 200, 100, [(10.7, 20, 110.9, 80), (150, 90, 50, 10)]),
        "%s/n01443537_999.xml" % B: _xml(B, 30, 30, [(3, 3, 6, 6)]),
        "%s/n01443537_20.xml" % B: _xml(B, 300, 150, [(-30, 0, 400, 75), (60, 10, 60, 20)]),
    }
    (root / "ILSVRC2012_bbox_train_v2.tar.gz").write_bytes(_tar_bytes(xmls, "w:gz"))
    return images


def _run(root, out, **kw):
    run_classic(root / "ILSVRC2012_img_train.tar", root / "ILSVRC2012_img_val.tar",
                root / "ILSVRC2012_bbox_train_v2.tar.gz", out, work_dir=root / "work",
                synsets_file=SYNSETS, metadata_file=METADATA,
                validation_labels_file=root / "val_labels.txt", **kw)


def _value(ex, key):
    f = ex.features.feature[key]
    return list(getattr(f, f.WhichOneof("kind")).value)


def _human(synset):
    for line in METADATA.read_text(encoding="utf-8").splitlines():
        s, text = line.split("\t")
        if s == synset:
            return text.encode()


@pytest.fixture(scope="module")
def classic(tmp_path_factory):
    root = tmp_path_factory.mktemp("classic")
    images = build_dataset(root)
    out = root / "out"
    _run(root, out, num_threads=2, train_shards=4, validation_shards=2)
    return root, out, images


def test_layout_and_bboxes_csv(classic):
    root, out, _ = classic
    assert sorted(os.listdir(out)) == ["bboxes.csv"] + [
        "train-%05d-of-00004" % i for i in range(4)] + [
        "validation-%05d-of-00002" % i for i in range(2)]
    assert (out / "bboxes.csv").read_text() == EXPECTED_CSV
    assert (root / "work" / "bboxes.csv").read_text() == EXPECTED_CSV
    # what the manual steps leave behind
    work = root / "work"
    assert sorted(os.listdir(work / "ILSVRC2012_img_val" / A)) == ["ILSVRC2012_val_00000002.JPEG"]
    assert (work / "ILSVRC2012_img_val" / "ILSVRC2012_val_00000004.JPEG").exists()
    assert (work / "ILSVRC2012_img_train" / (A + ".tar")).exists()
    assert (work / "ILSVRC2012_img_train" / B / "n01443537_21.JPEG").exists()


def test_records(classic):
    _, out, images = classic
    train = [read_examples(out / ("train-%05d-of-00004" % i)) for i in range(4)]
    val = [read_examples(out / ("validation-%05d-of-00002" % i)) for i in range(2)]
    # N=6, T=2, S=4: spacing [0,3,6] -> [0,1,3] and [3,4,6]; N=3, S=2: [0,1,3]
    assert [len(s) for s in train] == [1, 2, 1, 2]
    assert [len(s) for s in val] == [1, 2]

    # records in shard order are the sorted-per-synset list shuffled with seed 12345
    listed = [(A, 1, n + ".JPEG") for n in sorted(TRAIN[A])] + [
        (B, 2, n + ".JPEG") for n in sorted(TRAIN[B])]
    idx = list(range(len(listed)))
    random.seed(12345)
    random.shuffle(idx)
    flat = [ex for shard in train for ex in shard]
    assert [_value(ex, "image/filename")[0].decode() for ex in flat] == [listed[i][2] for i in idx]

    val_names = {"ILSVRC2012_val_%08d.JPEG" % (i + 1): s for i, s in enumerate(VAL_LABELS)}
    for ex in flat + [ex for shard in val for ex in shard]:
        name = _value(ex, "image/filename")[0].decode()
        synset = val_names.get(name, name.split("_")[0])
        label = {A: 1, B: 2}[synset]
        assert sorted(ex.features.feature) == sorted([
            "image/height", "image/width", "image/colorspace", "image/channels",
            "image/class/label", "image/class/synset", "image/class/text",
            "image/object/bbox/xmin", "image/object/bbox/ymin", "image/object/bbox/xmax",
            "image/object/bbox/ymax", "image/object/bbox/label", "image/format",
            "image/filename", "image/encoded"])
        assert _value(ex, "image/class/label") == [label]
        assert _value(ex, "image/class/synset") == [synset.encode()]
        assert _value(ex, "image/class/text") == [_human(synset)]
        assert _value(ex, "image/encoded") == [images[name]]
        width, height = Image.open(io.BytesIO(images[name])).size
        assert _value(ex, "image/height") == [height]
        assert _value(ex, "image/width") == [width]
        assert _value(ex, "image/channels") == [3]
        assert _value(ex, "image/colorspace") == [b"RGB"]
        assert _value(ex, "image/format") == [b"JPEG"]
        boxes = {"n01440764_10.JPEG": [[0.05, 0.2, 0.55, 0.8], [0.25, 0.1, 0.75, 0.9]],
                 "n01443537_20.JPEG": [[0.0, 0.0, 1.0, 0.5]]}.get(name, [])
        for k, key in enumerate(["xmin", "ymin", "xmax", "ymax"]):
            assert ex.features.feature["image/object/bbox/" + key].HasField("float_list")
            assert _value(ex, "image/object/bbox/" + key) == [
                np.float32(b[k]) for b in boxes]
        assert _value(ex, "image/object/bbox/label") == [label] * len(boxes)


def test_empty_shards_and_fixups(tmp_path):
    png, cmyk = "n02105855_2933.JPEG", "n01739381_1309.JPEG"
    extra = {"n02105855": {png: _png((9, 7), 1)},
             "n01739381": {cmyk: _jpeg((11, 5), 2, mode="CMYK")}}
    images = build_dataset(tmp_path, extra_train=extra)
    out = tmp_path / "out"
    _run(tmp_path, out, num_threads=2, train_shards=8, validation_shards=8)
    counts = {n: len(read_examples(out / n)) for n in os.listdir(out) if n != "bboxes.csv"}
    # N=3, T=2, S=8: [0,0,0,0,1] and [1,1,2,2,3]
    assert [counts["validation-%05d-of-00008" % i] for i in range(8)] == [0, 0, 0, 1, 0, 1, 0, 1]
    # N=8, T=2, S=8: [0,1,2,3,4] and [4,5,6,7,8]
    assert [counts["train-%05d-of-00008" % i] for i in range(8)] == [1] * 8

    by_name = {}
    for n in counts:
        for ex in read_examples(out / n):
            by_name[_value(ex, "image/filename")[0].decode()] = ex
    for name, size in [(png, (9, 7)), (cmyk, (11, 5))]:
        ex = by_name[name]
        encoded = _value(ex, "image/encoded")[0]
        assert encoded != images[name] and encoded[:2] == b"\xff\xd8"
        fixed = Image.open(io.BytesIO(encoded))
        assert fixed.mode == "RGB" and fixed.size == size
        assert (_value(ex, "image/width"), _value(ex, "image/height")) == ([size[0]], [size[1]])
    # PNG: the spec says Pillow's decode + quality-100 JPEG at 300 dpi gives TF's bytes
    buf = io.BytesIO()
    Image.open(io.BytesIO(images[png])).convert("RGB").save(buf, "JPEG", quality=100, dpi=(300, 300))
    assert _value(by_name[png], "image/encoded") == [buf.getvalue()]
    assert _value(by_name[cmyk], "image/class/label") == [
        SYNSETS.read_text().split().index("n01739381") + 1]


def test_missing_validation_image_fails(tmp_path):
    build_dataset(tmp_path, val_labels=VAL_LABELS + [A, B])  # 5 listed, 4 in the tar
    with pytest.raises(FileNotFoundError, match="Failed to find"):
        _run(tmp_path, tmp_path / "out", num_threads=2, train_shards=2, validation_shards=2)
