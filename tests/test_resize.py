"""Resized variants (`--resize`): the named recipes byte for byte against OpenCV run as Alibaba-MIIL's scripts run it,
the general recipes' sizes, metadata and quality, and resized outputs read by their real readers, as a variant of
their own (never resumed into, never mixed with a byte-exact output)."""

from __future__ import annotations

import io
import json
import math
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from fixtures import builders, miil_scripts
from helpers import TYPE_CHECKED, convert_small, run_cli
from tiny import A, B, write_tiny

from streamprep.errors import ConfigError, ImageError
from streamprep.records import resize
from streamprep.records.image import prepared
from streamprep.records.resize import TooSmall, parse
from streamprep.records.spec import RecordSpec

# dB: a general recipe against the float reference (docs/resize.md: lossless 50.5 to 58.9 measured on `photo_like`
# images; JPEG and WebP at 90 within 0.3 of the reference itself encoded alike)
PSNR_LOSSLESS, PSNR_ENCODER_LOSS = 48.0, 1.0


# --------------------------------------------------------------------------- Alibaba-MIIL's scripts, as they run

SCRIPTS = {"21k-p-224": miil_scripts.resize_image, "21k-p-short-256": miil_scripts.resize_image_short_edge}


def script_output(name: str, member: str, data: bytes, tmp_path: Path) -> bytes | None:
    """What the recipe's script writes for this member once extracted (None: it writes nothing)."""
    src, dst = tmp_path / "in" / member, tmp_path / "out" / member
    src.parent.mkdir(exist_ok=True)
    dst.parent.mkdir(exist_ok=True)
    src.write_bytes(data)
    dst.unlink(missing_ok=True)
    SCRIPTS[name](str(src), str(dst))  # writes nothing for a file it cannot read (it prints "general failure")
    return dst.read_bytes() if dst.exists() else None


def spec_of(member: str, fixup: str | None = None) -> RecordSpec:
    return RecordSpec(member, 1, A, "tench", f"train.tar!{member}", 0, 0, np.zeros((0, 4), np.float32), fixup)


def threshold_images() -> dict[str, bytes]:
    """Images on both sides of each named recipe's threshold (longer side 223/224/225, 255/256/257), landscape and
    portrait with the short side shorter, gray, CMYK, a PNG named .JPEG, an EXIF-rotated and a progressive JPEG."""
    images = {}
    for long in (223, 224, 225, 255, 256, 257):
        images[f"{A}_land{long}.JPEG"] = builders.jpeg(long, long * 3 // 4, seed=long)
        images[f"{A}_port{long}.JPEG"] = builders.jpeg(long // 2 + 1, long, seed=long + 1)
    images[f"{A}_gray.JPEG"] = builders.jpeg(300, 241, mode="L", seed=3)
    images[f"{A}_graysmall.JPEG"] = builders.jpeg(200, 150, mode="L", seed=4)
    images[f"{A}_cmyk.JPEG"] = builders.jpeg(260, 230, mode="CMYK", seed=5)
    images[f"{A}_cmyksmall.JPEG"] = builders.jpeg(120, 100, mode="CMYK", seed=6)
    images[f"{A}_png.JPEG"] = builders.png(281, 233, seed=7)
    images[f"{A}_pngsmall.JPEG"] = builders.png(100, 90, seed=8)
    images[f"{A}_exif.JPEG"] = builders.jpeg(320, 240, exif=True, seed=9)
    images[f"{A}_progressive.JPEG"] = builders.jpeg(301, 400, progressive=True, icc=True, seed=10)
    return images


# --------------------------------------------------------------------------- the named recipes, byte for byte

@pytest.mark.parametrize("name", sorted(resize.NAMED))
def test_a_named_recipe_gives_the_bytes_its_script_writes_for_the_extracted_file(name, tmp_path):
    recipe = parse(name)
    copied = resized = 0
    for member, data in threshold_images().items():
        expected = script_output(name, member, data, tmp_path)
        image = prepared(spec_of(member), data, recipe)
        assert expected is not None and image.data == expected, member
        decoded = cv2.imdecode(np.frombuffer(image.data, np.uint8), cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
        assert (image.height, image.width) == decoded.shape[:2], member
        copied += image.data == data
        resized += image.data != data
    assert copied >= 5 and resized >= 5  # both sides of the threshold were met


def test_a_named_recipe_copies_a_small_jpeg_without_decoding_it(monkeypatch):
    """The copy rule is decided from the header: a small JPEG's bytes are kept even where OpenCV is never asked."""
    data = builders.jpeg(223, 100, seed=1)
    monkeypatch.setattr(cv2, "imdecode", lambda *a: pytest.fail("decoded an image the recipe copies"))
    image = prepared(spec_of(f"{A}_1.JPEG"), data, parse("21k-p-224"))
    assert (image.data, image.height, image.width) == (data, 100, 223)


@pytest.mark.parametrize("name", sorted(resize.NAMED))
def test_an_image_opencv_cannot_read_is_an_image_error_never_a_copy(name, tmp_path):
    bad = b"\xff\xd8\xff\xe0 not really a jpeg" + bytes(100)
    assert script_output(name, f"{A}_bad.JPEG", bad, tmp_path) is None  # the script writes nothing for it
    with pytest.raises(ImageError, match=f"{A}_bad.JPEG: OpenCV cannot read"):
        prepared(spec_of(f"{A}_bad.JPEG"), bad, parse(name))


def test_a_named_recipe_ignores_the_classics_fixups_and_reads_the_members_own_bytes(tmp_path):
    data = builders.jpeg(400, 300, mode="CMYK", seed=2)
    image = prepared(spec_of(f"{A}_cmyk.JPEG", fixup="cmyk"), data, parse("21k-p-short-256"))
    assert image.data == script_output("21k-p-short-256", f"{A}_cmyk.JPEG", data, tmp_path)
    assert (image.height, image.width) == (256, 341)


# --------------------------------------------------------------------------- the general recipes

@pytest.mark.parametrize("spec, size, expected", [
    ("short-edge=256", (480, 640), (256, 341)),  # 640 * 256 / 480 = 341.33
    ("short-edge=256", (640, 480), (341, 256)),
    ("short-edge=256", (300, 301), (256, 257)),  # 256.85: rounded to the nearest pixel
    ("short-edge=256", (200, 900), (200, 900)),  # never enlarged
    ("short-edge=256", (256, 999), (256, 999)),
    ("max-side=256", (480, 640), (192, 256)),
    ("max-side=256", (1000, 3), (256, 1)),  # 0.77: at least one pixel
    ("max-side=256", (100, 200), (100, 200)),
    ("squish=224x200", (480, 640), (200, 224)),  # W x H
    ("squish=224x200", (100, 640), (100, 224)),  # each side never enlarged
])
def test_a_general_recipe_gives_the_stated_size_and_never_enlarges(spec, size, expected):
    recipe = parse(spec)
    assert recipe.target(*size) == expected
    data = builders.jpeg(size[1], size[0], seed=sum(size))
    image = prepared(spec_of(f"{A}_1.JPEG"), data, recipe)
    assert (image.height, image.width) == expected
    with Image.open(io.BytesIO(image.data)) as decoded:
        assert (decoded.height, decoded.width, decoded.format, decoded.mode) == (*expected, "JPEG", "RGB")


def test_a_general_recipe_removes_exif_icc_and_every_other_metadata():
    data = builders.jpeg(400, 300, exif=True, icc=True, seed=3)
    with Image.open(io.BytesIO(data)) as given:
        assert given.info.get("exif") and given.info.get("icc_profile")  # the input holds both
    for how in ("jpeg:90", "webp:80", "png"):
        out = prepared(spec_of(f"{A}_1.JPEG"), data, parse("short-edge=128", how)).data
        with Image.open(io.BytesIO(out)) as image:
            assert image.format == {"jpeg": "JPEG", "webp": "WEBP", "png": "PNG"}[how.split(":")[0]]
            assert not image.info.get("exif") and not image.info.get("icc_profile") and not image.getexif()
            assert image.size == (171, 128)
        assert b"Exif" not in out and b"ICC_PROFILE" not in out


def _area_weights(source: int, target: int) -> np.ndarray:
    """(target, source): how much of each source pixel each target pixel covers, over the target pixel's area."""
    edges = np.arange(target + 1) * (source / target)
    starts, ends = np.arange(source), np.arange(source) + 1
    overlap = np.clip(np.minimum(edges[1:, None], ends) - np.maximum(edges[:-1, None], starts), 0, None)
    return overlap / (source / target)


def float_reference(data: bytes, height: int, width: int) -> np.ndarray:
    """The reference: a full decode (Pillow, no DCT scaling), then area averaging computed in float64."""
    with Image.open(io.BytesIO(data)) as image:
        rgb = np.asarray(image.convert("RGB"), dtype=np.float64)
    rows, cols = _area_weights(rgb.shape[0], height), _area_weights(rgb.shape[1], width)
    return np.stack([rows @ rgb[..., c] @ cols.T for c in range(3)], axis=-1)


def psnr(got: np.ndarray, reference: np.ndarray) -> float:
    mse = float(np.mean((got.astype(np.float64) - reference) ** 2))
    return 10 * math.log10(255 ** 2 / mse)


def photo_like(height: int, width: int, seed: int) -> bytes:
    """Smooth shapes and a little noise, as a photograph at quality 95 (noise alone measures the encoder, not the
    resize)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([128 + 100 * np.sin(x / 17.0 + y / 29.0), 128 + 100 * np.cos(y / 13.0),
                       x * y / (height * width) * 255], axis=-1) + rng.normal(0, 4, (height, width, 3))
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB").save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def _pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


@pytest.mark.parametrize("size, edge", [((300, 400), 256), ((375, 500), 256), ((1100, 800), 256), ((1100, 1500), 256),
                                        ((1100, 1500), 128)])
def test_a_general_recipes_pixels_are_within_the_stated_psnr_of_a_float_reference(size, edge):
    """Lossless (png): above `PSNR_LOSSLESS`; lossy: at most `PSNR_ENCODER_LOSS` below the float reference itself
    encoded the same way (what the encoder loses is not the resize's). Resampled bilinear, bilinear, by area, by area
    after 1/2 DCT scaling, by area after 1/4."""
    data = photo_like(*size, seed=sum(size))
    for how in ("png", "jpeg:90", "webp:90"):
        image = prepared(spec_of(f"{A}_1.JPEG"), data, parse(f"short-edge={edge}", how))
        reference = float_reference(data, image.height, image.width)
        got = psnr(_pixels(image.data), reference)
        if how == "png":
            assert got > PSNR_LOSSLESS
        else:
            encoded = resize.encode(np.clip(np.rint(reference), 0, 255).astype(np.uint8), how)
            assert got > psnr(_pixels(encoded), reference) - PSNR_ENCODER_LOSS, how


def test_min_side_drops_an_image_smaller_than_it_whatever_the_recipe():
    data = builders.jpeg(40, 31, seed=4)
    for spec in ("short-edge=256", "21k-p-224"):
        with pytest.raises(TooSmall, match="40x31 pixels, smaller than --min-side 32"):
            prepared(spec_of(f"{A}_1.JPEG"), data, parse(spec, None, 32))
    assert prepared(spec_of(f"{A}_1.JPEG"), data, parse("short-edge=256", None, 31)).width == 40


@pytest.mark.parametrize("given, message", [
    (("short-edge=0",), "is no recipe"), (("squish=224",), "is no recipe"), (("half",), "is no recipe"),
    (("short-edge=256", "jpeg:101"), "QUALITY 1 to 100"), (("short-edge=256", "gif"), "use jpeg:QUALITY"),
    (("21k-p-224", "jpeg:90"), "encodes as its script does"), ((None, "png"), "--encode png is an option of --resize"),
    ((None, None, 32), "--min-side 32 is an option of --resize"), (("max-side=9", None, -1), "--min-side must be"),
])
def test_a_recipe_that_names_nothing_is_a_config_error(given, message):
    with pytest.raises(ConfigError, match=message):
        parse(*given)


def test_the_size_estimate_bounds_the_encoders_worst_case():
    """Uniform noise, the costliest pixels to encode, at each recipe's pixel count stays within `most_bytes`."""
    rng = np.random.default_rng(5)
    for spec, how, (height, width) in [("squish=224x224", "jpeg:100", (224, 224)), ("max-side=64", "png", (64, 64)),
                                       ("short-edge=32", "webp:100", (32, 64)), ("max-side=1", "jpeg:100", (1, 1))]:
        recipe = parse(spec, how)
        noise = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        assert len(resize.encode(noise, how)) <= recipe.most_bytes(np.array([10**9]))
    assert parse("21k-p-224").most_bytes(np.array([500_000, 10])) == 500_000 + resize.BYTES_PER_IMAGE + \
        math.ceil(resize.BYTES_PER_PIXEL * 224 * 224)


# --------------------------------------------------------------------------- resized outputs, read by their readers

def _downloads(folder: Path) -> dict[str, Path]:
    """A tiny download set of images past the recipes' thresholds: the threshold images in class A, a few in B
    (one of them smaller than 32 px), and validation images."""
    images = threshold_images()
    classes = {A: {k: v for k, v in images.items() if "png" not in k},  # the classic's checks refuse a PNG
               B: {f"{B}_{i}.JPEG": builders.jpeg(30 + 97 * i, 260 - 40 * i, seed=20 + i) for i in range(4)}}
    val = {f"ILSVRC2012_val_{i:08d}.JPEG": builders.jpeg(300 - 20 * i, 200 + 10 * i, seed=40 + i) for i in (1, 2, 3)}
    xmls = {f"{A}/{A}_land257.xml": builders.voc_xml(f"{A}_land257", 257, 192, [(10, 20, 200, 150)]),
            f"{A}/{A}_port224.xml": builders.voc_xml(f"{A}_port224", 113, 224, [(1, 1, 100, 220)])}
    return write_tiny(folder, classes, val, [A, B, A], xmls)


@pytest.fixture(scope="module")
def downloads(tmp_path_factory) -> dict[str, Path]:
    return _downloads(tmp_path_factory.mktemp("resize-downloads"))



@pytest.fixture(scope="module")
def resized(downloads, tmp_path_factory) -> Path:
    """The tiny downloads resized short-edge=64 to TFRecord, WebDataset and MDS, images under 32 px left out."""
    out = tmp_path_factory.mktemp("resized") / "out"
    code, err = convert_small(downloads, out, "--format", "tfrecord,webdataset,mds", "--resize", "short-edge=64",
                         "--min-side", "32")
    assert code == 0, err
    return out


@pytest.fixture(scope="module")
def exact(downloads, tmp_path_factory) -> Path:
    """The tiny downloads as classic TFRecord shards: the boxes the resized ones must keep."""
    out = tmp_path_factory.mktemp("exact") / "out"
    code, err = convert_small(downloads, out)
    assert code == 0, err
    return out


def tf_read(folder: Path) -> dict[str, dict]:
    """Each record of the folder's TFRecord shards as TensorFlow reads and decodes it, by file name."""
    import tensorflow as tf

    found = {}
    for path in sorted(p for p in folder.iterdir() if p.name.startswith(("train-", "validation-")) and "." not in p.name):
        for raw in tf.data.TFRecordDataset(str(path)):
            f = tf.train.Example.FromString(raw.numpy()).features.feature
            image = tf.io.decode_image(f["image/encoded"].bytes_list.value[0], channels=3).numpy()
            found[f["image/filename"].bytes_list.value[0].decode()] = {
                "shape": list(image.shape), "height": f["image/height"].int64_list.value[0],
                "width": f["image/width"].int64_list.value[0],
                "boxes": [list(f[f"image/object/bbox/{k}"].float_list.value) for k in ("xmin", "ymin", "xmax", "ymax")]}
    return found


@pytest.fixture(scope="module")
def tf_records(resized, exact) -> tuple[dict[str, dict], dict[str, dict]]:
    """The resized and the classic TFRecord records, as TensorFlow reads them."""
    return tf_read(resized), tf_read(exact)


def test_tensorflow_decodes_each_resized_record_to_its_stated_size_and_the_boxes_are_the_classics(tf_records):
    got, classic = tf_records
    assert set(got) == set(classic) - {f"{B}_0.JPEG"}  # 30 px wide: under --min-side 32
    for name, record in got.items():
        assert record["shape"] == [record["height"], record["width"], 3], name
        assert min(record["height"], record["width"]) <= 64, name
        assert record["boxes"] == classic[name]["boxes"], name  # normalized: unchanged by the resize
        assert all(0 <= v <= 1 for side in record["boxes"] for v in side), name
    assert got[f"{A}_land257.JPEG"]["boxes"][0] and (got[f"{A}_land257.JPEG"]["height"],
                                                    got[f"{A}_land257.JPEG"]["width"]) == (64, 86)


def test_a_min_side_drop_is_listed_in_the_manifest_and_never_stops_the_run(resized):
    manifest = json.loads((resized / "manifest.json").read_text())
    assert [s["member"].rsplit("!", 1)[1] for s in manifest["skipped"]] == [f"{B}_0.JPEG"]
    assert "smaller than --min-side 32" in manifest["skipped"][0]["reason"]
    assert manifest["options"]["resize"] == "short-edge=64" and manifest["options"]["min_side"] == 32
    assert manifest["run"]["resize"]["recipe"] == "short-edge=64"
    assert manifest["run"]["resize"]["codecs"]["opencv"] == cv2.__version__


TORCH_READ = r"""
import json, sys
import webdataset as wds
from streaming import StreamingDataset
from streaming.base.util import clean_stale_shared_memory
from timm.data import create_dataset
folder, shards = sys.argv[1], sorted(sys.argv[2:])
out = {"wds": [], "timm": [], "mds": []}
for key, image, meta in wds.WebDataset(shards, shardshuffle=False, empty_check=False).decode("pil").to_tuple(
        "__key__", "jpg", "json"):
    out["wds"].append([list(image.size), meta["width"], meta["height"]])
out["timm"] = [list(image.size) for image, target in create_dataset("wds/imagenet", root=folder, split="train",
                                                                     is_training=False)]
clean_stale_shared_memory()
data = StreamingDataset(local=folder + "/mds", split="train", shuffle=False, batch_size=1)
out["mds"] = [list(data[k]["x"].size) for k in range(data.num_samples)]
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def torch_read(resized) -> dict[str, list]:
    """What webdataset, timm (given the folder alone) and MosaicML streaming read of the resized output: in one process
    of their own (torch and TensorFlow do not load into one process)."""
    shards = [str(p) for p in resized.glob("*.tar")]
    done = subprocess.run([sys.executable, "-c", TORCH_READ, str(resized), *shards], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_webdataset_and_timm_read_the_resized_images_and_info_json_names_the_recipe(resized, tf_records, torch_read):
    assert len(torch_read["wds"]) == len(tf_records[0])
    assert all(size == [width, height] and min(size) <= 64 for size, width, height in torch_read["wds"])
    train = [r for name, r in tf_records[0].items() if not name.startswith("ILSVRC2012_val")]
    assert sorted(torch_read["timm"]) == sorted([r["width"], r["height"]] for r in train)
    info = json.loads((resized / "_info.json").read_text())
    assert info["resize"]["recipe"] == "short-edge=64" and info["resize"]["encode"] == "jpeg:90"


def test_mds_writes_resized_images_its_offsets_table_counted(tf_records, torch_read):
    """MDS's offsets table is written before the samples: it counts the resized sizes, and streaming reads them."""
    train = [r for name, r in tf_records[0].items() if not name.startswith("ILSVRC2012_val")]
    assert sorted(torch_read["mds"]) == sorted([r["width"], r["height"]] for r in train)


def test_a_resized_output_is_its_own_conversion_never_resumed_into(downloads, resized, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(resized, out)
    for other in (("--resize", "short-edge=48"), ("--resize", "short-edge=64", "--encode", "jpeg:80"), ()):
        code, err = convert_small(downloads, out, "--format", "tfrecord,webdataset,mds", *other)
        assert code == 2 and "--overwrite" in err, (other, err)
    code, err = convert_small(downloads, out, "--format", "tfrecord,webdataset,mds", "--resize", "short-edge=48",
                         "--overwrite")
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["run"]["resize"]["recipe"] == "short-edge=48"
    for shard in out.glob("*.tar"):  # the images of the new recipe (webdataset's .json holds their size)
        with tarfile.open(shard) as tar:
            sizes = [json.loads(tar.extractfile(m).read()) for m in tar if m.name.endswith(".json")]
        assert all(min(s["height"], s["width"]) <= 48 for s in sizes)
    code, err = convert_small(downloads, out, "--format", "tfrecord,webdataset,mds", "--resize", "short-edge=48")
    assert code == 0, err  # the same conversion again: resumed (every shard kept)


def test_a_resize_into_a_byte_exact_output_is_refused_without_overwrite(downloads, exact, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(exact, out)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    code, err = convert_small(downloads, out, "--resize", "short-edge=64")
    assert code == 2 and "--overwrite" in err, err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before  # nothing touched


def test_a_named_recipe_conversion_holds_the_scripts_bytes_for_every_member(downloads, tmp_path):
    out = tmp_path / "out"
    code, err = convert_small(downloads, out, "--format", "webdataset", "--resize", "21k-p-short-256")
    assert code == 0, err
    members = {}
    for shard in sorted(out.glob("*.tar")):
        with tarfile.open(shard) as tar:
            members.update({m.name: tar.extractfile(m).read() for m in tar if m.name.endswith(".jpg")})
    originals = {**threshold_images()}
    checked = 0
    for key, data in members.items():
        name = key.rsplit("/", 1)[-1][:-len(".jpg")] + ".JPEG"
        if name in originals:
            assert data == script_output("21k-p-short-256", name, originals[name], tmp_path), name
            checked += 1
    assert checked == len([k for k in originals if "png" not in k])


def test_plan_estimates_a_resized_outputs_size_at_least_what_is_written(downloads, resized, tmp_path):
    from streamprep.engines.preview import preview
    from streamprep.options import make_options

    options = make_options({"train": str(downloads["train"]), "val": str(downloads["val"]),
                            "bbox": str(downloads["bbox"]), "validation_labels_file": str(downloads["val_labels"]),
                            "out": str(tmp_path / "new"), "train_shards": 2, "validation_shards": 1,
                            "classic_threads": 1, "format": "tfrecord,webdataset,mds", "resize": "short-edge=64",
                            "min_side": 32})
    shown = preview(options)
    manifest = json.loads((resized / "manifest.json").read_text())
    written = sum(e["bytes"] for e in manifest["shards"])
    low = sum(s.bytes_low for s in shown.splits.values())
    high = sum(s.bytes_high for s in shown.splits.values())
    assert low <= written <= high <= shown.space_check_bytes


def test_the_beam_engine_writes_the_same_resized_bytes_as_the_local_engine(downloads, resized, tmp_path):
    pytest.importorskip("apache_beam", reason="pip install 'streamprep[beam]' to run the Beam tests")
    out = tmp_path / "beam"
    code, err = convert_small(downloads, out, "--format", "tfrecord,webdataset,mds", "--resize", "short-edge=64",
                         "--min-side", "32", "--engine", "beam", "--", *TYPE_CHECKED)
    assert code == 0, err

    def files(folder: Path) -> dict[str, bytes]:  # every file below it, but manifest.json and .streamprep/
        return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
                and p.name != "manifest.json" and not p.relative_to(folder).as_posix().startswith(".")}

    expected = files(resized)
    assert any(name.endswith(".mds") for name in expected) and "_info.json" in expected
    assert files(out) == expected
    assert json.loads((out / "manifest.json").read_text())["skipped"] == \
        json.loads((resized / "manifest.json").read_text())["skipped"]


def test_one_writer_thread_writes_the_same_resized_bytes_as_forked_writer_processes(downloads, resized, tmp_path):
    """`--workers 1` writes in a thread of this process (with its own resize threads), the fixture in forked processes."""
    out = tmp_path / "one"
    code, err = convert_small(downloads, out, "--format", "tfrecord,webdataset,mds", "--resize", "short-edge=64",
                         "--min-side", "32", "--workers", "1")
    assert code == 0, err

    def files(folder: Path) -> dict[str, bytes]:  # every file below it, but manifest.json and .streamprep/
        return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
                and p.name != "manifest.json" and not p.relative_to(folder).as_posix().startswith(".")}

    expected = files(resized)
    assert any(name.endswith(".mds") for name in expected)
    assert files(out) == expected


def test_verify_decode_finds_every_resized_image_decodes_to_its_stated_size(resized):
    """`verify --decode`: TensorFlow decodes every image of every format, and TFRecord's image/height and width and
    WebDataset's .json say the size it decodes to."""
    code, err = run_cli("verify", "--decode", resized)
    assert code == 0, err


def test_resize_without_opencv_names_the_extra_before_anything_is_written(downloads, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)  # as if opencv-python-headless were not installed
    code, err = convert_small(downloads, tmp_path / "out", "--resize", "21k-p-224")
    assert code == 2 and "--resize 21k-p-224 needs opencv-python-headless" in err and "streamprep[resize]" in err, err
    assert not (tmp_path / "out").exists()
