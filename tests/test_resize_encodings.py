"""Resized images in every encoding (`--encode webp:Q`, `png`, a named recipe's copied PNG): each record names what its
bytes are (TFRecord's `image/format`, WebDataset's member extension), every format's real reader reads the pixels
stored, `verify` checks each image against the encoding its record and the manifest's recipe say, and a format that
cannot hold an encoding (TFDS: WebP) is refused before anything is written."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fixtures import builders
from helpers import ROOT, convert_small, run_cli, run_cli_out
from test_docs_snippets import fenced_blocks
from tiny import A, B, write_tiny

from streamprep.errors import ImageError
from streamprep.outputs.tfrecord.write import frame, read_records
from streamprep.records.image import encoding_of, prepared
from streamprep.records.resize import parse
from streamprep.records.spec import RecordSpec

SIDE = 40  # the short edge the general recipes resize to
FORMATS = "tfrecord,webdataset,parquet,mds"


def spec_of(member: str) -> RecordSpec:
    return RecordSpec(member, 1, A, "tench", f"train.tar!{member}", 0, 0, np.zeros((0, 4), np.float32), None)


def _encoded(fmt: str, **options) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.full((6, 9, 3), 90, np.uint8)).save(out, fmt, **options)
    return out.getvalue()


def pixels_digest(image: Image.Image | np.ndarray) -> str:
    """The sha1 of an image's RGB pixels (height x width x 3, uint8), to compare what two readers decode."""
    array = np.asarray(image.convert("RGB")) if isinstance(image, Image.Image) else np.asarray(image, np.uint8)
    return hashlib.sha1(np.ascontiguousarray(array).tobytes() + repr(array.shape).encode()).hexdigest()


# --------------------------------------------------------------------------- the encoding, from the bytes

def test_an_images_encoding_is_read_from_its_signature_jpeg_png_webp_and_nothing_else():
    assert encoding_of(builders.jpeg(9, 6)) == "JPEG"
    assert encoding_of(builders.png(9, 6)) == "PNG"
    assert encoding_of(_encoded("WEBP", quality=80)) == "WEBP"
    for other in (_encoded("GIF"), _encoded("BMP"), b"", b"RIFF\0\0\0\0WAVE", b"\x89PNG"):
        assert encoding_of(other) is None


@pytest.mark.parametrize("how, expected", [("jpeg:90", "JPEG"), ("webp:80", "WEBP"), ("png", "PNG")])
def test_a_general_recipes_image_names_the_encoding_it_was_written_in(how, expected):
    image = prepared(spec_of(f"{A}_1.JPEG"), builders.jpeg(120, 90, seed=1), parse("short-edge=30", how))
    assert image.encoding == expected == encoding_of(image.data)
    assert prepared(spec_of(f"{A}_1.JPEG"), builders.jpeg(120, 90, seed=1)).encoding == "JPEG"  # byte-exact


def test_a_named_recipe_names_a_copied_png_png_and_refuses_a_copied_file_no_format_can_name():
    small_png = builders.png(100, 80, seed=3)
    image = prepared(spec_of(f"{A}_png.JPEG"), small_png, parse("21k-p-224"))
    assert (image.data, image.encoding, image.height, image.width) == (small_png, "PNG", 80, 100)
    with pytest.raises(ImageError, match="neither a JPEG, a PNG nor a WebP.*--on-bad-image skip"):
        prepared(spec_of(f"{A}_bmp.JPEG"), _encoded("BMP"), parse("21k-p-224"))  # OpenCV reads it, the script copies


# --------------------------------------------------------------------------- whole conversions

def _write_downloads(folder: Path, png: bool = False) -> dict[str, Path]:
    classes = {A: {f"{A}_{i}.JPEG": builders.jpeg(60 + 37 * i, 50 + 21 * i, seed=i) for i in range(3)},
               B: {f"{B}_{i}.JPEG": builders.jpeg(80 + 11 * i, 90, seed=10 + i) for i in range(2)}}
    if png:  # the classic's kind of PNG named .JPEG, small: a named recipe copies it
        classes[A][f"{A}_png.JPEG"] = builders.png(100, 80, seed=5)
    val = {f"ILSVRC2012_val_{i:08d}.JPEG": builders.jpeg(70, 50 + 10 * i, seed=40 + i) for i in (1, 2, 3)}
    xmls = {f"{A}/{A}_1.xml": builders.voc_xml(f"{A}_1", 97, 71, [(5, 5, 50, 40)])}
    return write_tiny(folder, classes, val, [A, B, A], xmls)


@pytest.fixture(scope="module")
def downloads(tmp_path_factory) -> dict[str, Path]:
    return _write_downloads(tmp_path_factory.mktemp("encode-downloads"))



def _resized(downloads, tmp_path_factory, how: str, formats: str = FORMATS, *extra: str) -> Path:
    out = tmp_path_factory.mktemp(f"encode-{how.replace(':', '')}") / "imagenet"
    code, err = convert_small(downloads, out, "--format", formats, "--resize", f"short-edge={SIDE}", "--encode", how,
                         *extra)
    assert code == 0, err
    return out


@pytest.fixture(scope="module")
def webp(downloads, tmp_path_factory) -> Path:
    """The downloads resized to WebP in TFRecord, WebDataset (DALI's indexes, wids' lists), Parquet and MDS."""
    return _resized(downloads, tmp_path_factory, "webp:80", FORMATS, "--dali-index", "--wids-index")


@pytest.fixture(scope="module")
def png(downloads, tmp_path_factory) -> Path:
    return _resized(downloads, tmp_path_factory, "png", FORMATS, "--wids-index")


@pytest.fixture(scope="module")
def png_dali(downloads, tmp_path_factory) -> Path:
    """PNG WebDataset shards with DALI's indexes."""
    return _resized(downloads, tmp_path_factory, "png", "webdataset", "--dali-index")


@pytest.fixture(scope="module")
def litdata_outputs(downloads, tmp_path_factory) -> dict[str, Path]:
    """LitData's chunks (a plan of their own: written alone), WebP and PNG."""
    return {how: _resized(downloads, tmp_path_factory, how, "litdata") for how in ("webp:80", "png")}


def tf_records(folder: Path) -> dict[str, dict]:
    """Each TFRecord record of the folder as TensorFlow reads it (`tf.io.decode_image(..., expand_animations=False)`,
    as docs/resize.md says), with the pixels Pillow decodes from the same bytes, by file name."""
    import tensorflow as tf

    found = {}
    for path in sorted(p for p in folder.iterdir()
                       if p.name.startswith(("train-", "validation-")) and "." not in p.name):
        for raw in tf.data.TFRecordDataset(str(path)):
            f = tf.train.Example.FromString(raw.numpy()).features.feature
            data = f["image/encoded"].bytes_list.value[0]
            decoded = tf.io.decode_image(data, channels=3, expand_animations=False).numpy()
            found[f["image/filename"].bytes_list.value[0].decode()] = {
                "format": f["image/format"].bytes_list.value[0], "signature": encoding_of(data),
                "size": (f["image/height"].int64_list.value[0], f["image/width"].int64_list.value[0]),
                "tf": pixels_digest(decoded), "shape": decoded.shape[:2],
                "pixels": pixels_digest(Image.open(io.BytesIO(data))), "split": path.name.split("-")[0]}
    return found


@pytest.mark.parametrize("output, name", [("webp", "WEBP"), ("png", "PNG")])
def test_tensorflow_reads_each_tfrecord_image_in_the_encoding_its_image_format_names(output, name, request):
    records = tf_records(request.getfixturevalue(output))
    assert len(records) == 8
    for filename, record in records.items():
        assert record["format"] == name.encode() and record["signature"] == name, filename
        assert record["shape"] == record["size"] and min(record["size"]) == SIDE, filename
        assert record["tf"] == record["pixels"], filename  # TensorFlow's pixels are Pillow's


def _members(folder: Path) -> dict[str, bytes]:
    found = {}
    for shard in sorted(folder.glob("*.tar")):
        with tarfile.open(shard) as tar:
            found.update({m.name: tar.extractfile(m).read() for m in tar})
    return found


@pytest.mark.parametrize("output, ext, name", [("webp", "webp", "WEBP"), ("png", "png", "PNG")])
def test_a_webdataset_samples_image_member_and_dali_index_line_take_the_encodings_extension(output, ext, name,
                                                                                           request):
    folder = request.getfixturevalue(output)
    members = _members(folder)
    images = {k: v for k, v in members.items() if not k.endswith((".cls", ".json"))}
    assert len(images) == 8 and all(k.endswith(f".{ext}") and encoding_of(v) == name for k, v in images.items())
    assert max(len(k) for k in members) <= 100
    if output == "webp":  # written with --dali-index
        lines = [line for idx in folder.glob("*.tar.idx") for line in idx.read_text().splitlines()[1:]]
        assert len(lines) == 8 and all(line.startswith(f"{ext} ") and f".{ext} cls " in line for line in lines)
    shard = folder / "validation-00000-of-00001.tar"
    code, shown, err = run_cli_out("inspect", shard)  # each sample's image bytes, from its .png or .webp member
    sizes = {k: len(v) for k, v in members.items() if k.startswith("ILSVRC") and k.endswith(f".{ext}")}
    assert code == 0 and all(f"{size:,} bytes" in shown for size in sizes.values()) and len(sizes) == 3, shown + err


TORCH_READ = r"""
import hashlib, json, sys
import numpy as np
import webdataset as wds
import wids
from datasets import load_dataset
from PIL import Image
from streaming import StreamingDataset
from streaming.base.util import clean_stale_shared_memory
from timm.data import create_dataset
import litdata

def digest(array):
    array = np.ascontiguousarray(np.asarray(array, np.uint8))
    return hashlib.sha1(array.tobytes() + repr(array.shape).encode()).hexdigest()

def rgb(image):
    return digest(image.convert("RGB"))

out = {}
for folder in sys.argv[1:]:
    if folder.startswith("litdata:"):  # (image C x H x W tensor, class) items
        data = litdata.StreamingDataset(folder[len("litdata:"):] + "/litdata/train")
        out[folder] = sorted(digest(data[k][0].permute(1, 2, 0).numpy()) for k in range(len(data)))
        continue
    info = json.load(open(folder + "/_info.json"))["splits"]["train"]
    shards = [f"{folder}/{name}" for name, size in zip(info["filenames"], info["shard_lengths"]) if size]
    got = out[folder] = {}
    got["webdataset"] = sorted(rgb(image) for image, meta in wds.WebDataset(shards, shardshuffle=False).decode(
        "pil").to_tuple("jpg;png;webp", "json"))
    got["timm"] = sorted(rgb(image) for image, target in create_dataset("wds/imagenet", root=folder, split="train",
                                                                         is_training=False))
    train = wids.ShardListDataset(folder + "/train.wids.json", localname=str)
    images = [next(train[k][e] for e in (".jpg", ".png", ".webp") if e in train[k]) for k in range(len(train))]
    got["wids"] = sorted(rgb(i if isinstance(i, Image.Image) else Image.open(i)) for i in images)  # decoded by wids
    parquet = load_dataset("parquet", data_files=folder + "/data/train-*.parquet", split="train")
    got["parquet"] = sorted(rgb(row["image"]) for row in parquet)
    clean_stale_shared_memory()
    mds = StreamingDataset(local=folder + "/mds", split="train", shuffle=False, batch_size=1)
    got["mds"] = sorted(rgb(mds[k]["x"]) for k in range(mds.num_samples))
print(json.dumps(out))
"""


def _torch_side(code: str, *args: str) -> dict:
    """What a script prints as its last line, run in a process of its own (torch and TensorFlow do not load into one
    process)."""
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def torch_read(webp, png, litdata_outputs) -> dict:
    """What webdataset, timm, wids, datasets, streaming and LitData decode of the WebP and PNG outputs (LitData's as
    `litdata:FOLDER`), pixel digests by folder and reader."""
    return _torch_side(TORCH_READ, str(webp), str(png), *(f"litdata:{f}" for f in litdata_outputs.values()))


def test_webdataset_timm_wids_parquet_and_mds_read_the_pixels_stored_in_webp_and_png(webp, png, torch_read):
    read = torch_read
    for folder in (webp, png):
        stored = sorted(r["pixels"] for r in tf_records(folder).values() if r["split"] == "train")
        assert len(stored) == 5
        for reader, digests in read[str(folder)].items():
            assert digests == stored, (folder.parent.name, reader)


def _litdata_images(folder: Path) -> list[bytes]:
    """The images of LitData's training chunks, read by `streamprep inspect`'s own reading of an item: its sizes
    header, then the image."""
    import struct

    images = []
    for chunk in sorted((folder / "litdata" / "train").glob("*.bin")):
        data = chunk.read_bytes()
        count = struct.unpack_from("<I", data)[0]
        offsets = struct.unpack_from(f"<{count + 1}I", data, 4)
        for start in offsets[:-1]:
            size = struct.unpack_from("<I", data, start)[0]
            images.append(data[start + 8:start + 8 + size])
    return images


def test_litdata_reads_the_pixels_stored_in_webp_and_png(litdata_outputs, torch_read):
    for how, folder in litdata_outputs.items():
        images = _litdata_images(folder)
        assert len(images) == 5 and {encoding_of(i) for i in images} == {"WEBP" if how.startswith("webp") else "PNG"}
        assert torch_read[f"litdata:{folder}"] == sorted(pixels_digest(Image.open(io.BytesIO(i))) for i in images)


@pytest.mark.parametrize("key, output", [("wds.WebDataset(", "webp"), ("fn.readers.webdataset(", "webp"),
                                         ("fn.readers.webdataset(", "png_dali")])
def test_the_webdataset_and_dali_blocks_of_formats_md_read_a_resized_output_as_printed(key, output, request,
                                                                                       tmp_path):
    """docs/formats.md's blocks (the image member `jpg;png;webp`), run exactly as printed from the folder holding
    `imagenet/`: one epoch of the training split, every image decoded (DALI: on the CPU)."""
    (code,) = [c for info, _, c, _ in fenced_blocks(ROOT / "docs" / "formats.md") if info == "python" and key in c]
    (tmp_path / "imagenet").symlink_to(request.getfixturevalue(output), target_is_directory=True)
    (tmp_path / "docs_snippet.py").write_text(code, encoding="utf-8")
    done = subprocess.run([sys.executable, "docs_snippet.py"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "5 images, 2 classes, labels 0..1"


# --------------------------------------------------------------------------- verify

@pytest.mark.parametrize("output", ["webp", "png"])
def test_verify_decode_passes_on_a_webp_and_a_png_output(output, request):
    code, out, err = run_cli_out("verify", "--decode", request.getfixturevalue(output))
    assert code == 0, out + err
    assert "OK" in out and "32 records in 12 shards" in out and "32 images decoded" in out, out  # 8 in each format


def _retyped(data: bytes) -> bytes:
    """The same pixels in another encoding: a WebP's as a PNG, anything else's as a WebP."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    return _encoded_image(image, "PNG" if encoding_of(data) == "WEBP" else "WEBP")


def _encoded_image(image: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()


def _retype_first_tfrecord(shard: Path) -> None:
    """The shard's first record's image/encoded in another encoding, its image/format unchanged, framed again."""
    import tensorflow as tf

    with open(shard, "rb") as f:
        records = list(read_records(f))
    example = tf.train.Example.FromString(records[0])
    encoded = example.features.feature["image/encoded"].bytes_list.value
    encoded[0] = _retyped(encoded[0])
    records[0] = example.SerializeToString()
    shard.write_bytes(b"".join(frame(r) for r in records))


def _retype_first_tar_image(shard: Path) -> None:
    """The shard's first image member in another encoding, its name unchanged."""
    with tarfile.open(shard) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar]
    with tarfile.open(shard, "w", format=tarfile.USTAR_FORMAT) as tar:
        for k, (member, data) in enumerate(members):
            data = _retyped(data) if k == 0 else data
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))


@pytest.mark.parametrize("output, name", [("webp", "WEBP"), ("png", "PNG")])
def test_verify_fails_on_a_record_whose_bytes_are_another_encoding_than_it_names(output, name, request, tmp_path):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(request.getfixturevalue(output), out)
    _retype_first_tfrecord(out / "train-00000-of-00002")
    _retype_first_tar_image(out / "train-00000-of-00002.tar")
    code, report, err = run_cli_out("verify", out)
    assert code == 1, report + err
    lines = report.splitlines()
    assert any(line.startswith("train-00000-of-00002: record 0") and f"image/encoded is not a {name}" in line
               and f"though the record says {name}" in line for line in lines), report
    assert any(line.startswith("train-00000-of-00002.tar: record 0") and f".{name.lower()} is not a {name}" in line
               and f"though the record says {name}" in line for line in lines), report


def test_verify_fails_on_an_image_of_an_encoding_the_recipe_does_not_write(webp, tmp_path):
    """A record naming its bytes rightly, but PNG in an output whose recipe writes WebP."""
    import shutil

    out = tmp_path / "out"
    shutil.copytree(webp, out)
    shard = out / "train-00000-of-00002.tar"
    with tarfile.open(shard) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar]
    with tarfile.open(shard, "w", format=tarfile.USTAR_FORMAT) as tar:
        for k, (member, data) in enumerate(members):
            if k == 0:
                data = _retyped(data)
                member.name = member.name.rsplit(".", 1)[0] + ".png"
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    code, report, err = run_cli_out("verify", out)
    assert code == 1, report + err
    expected = ": .png is not a WEBP (it starts with 89 50 4e 47) but a PNG; this output holds WEBP images only"
    assert expected in report, report


# --------------------------------------------------------------------------- a named recipe's copied PNG

@pytest.fixture(scope="module")
def named(tmp_path_factory) -> Path:
    downloads = _write_downloads(tmp_path_factory.mktemp("encode-png-downloads"), png=True)
    out = tmp_path_factory.mktemp("encode-named") / "out"
    code, err = convert_small(downloads, out, "--format", "tfrecord,webdataset", "--dali-index",
                              "--resize", "21k-p-224")
    assert code == 0, err
    return out


def test_a_named_recipes_copied_png_is_named_png_in_tfrecord_and_webdataset_and_verify_decodes_it(named):
    records = tf_records(named)
    png = records[f"{A}_png.JPEG"]
    assert (png["format"], png["signature"], png["size"], png["shape"]) == (b"PNG", "PNG", (80, 100), (80, 100))
    assert {r["format"] for name, r in records.items() if name != f"{A}_png.JPEG"} == {b"JPEG"}
    members = _members(named)
    assert encoding_of(members[f"{A}/{A}_png.png"]) == "PNG" and f"{A}/{A}_png.jpg" not in members
    index = "".join(p.read_text() for p in named.glob("train-*.tar.idx"))
    assert "png " in index and f" {A}/{A}_png.png cls " in index
    code, err = run_cli("verify", "--decode", named)
    assert code == 0, err


# --------------------------------------------------------------------------- TFDS

def test_tfds_refuses_webp_before_anything_is_written(downloads, tmp_path):
    out = tmp_path / "out"
    code, err = convert_small(downloads, out, "--format", "tfds", "--resize", f"short-edge={SIDE}",
                              "--encode", "webp:80")
    assert code == 2 and "--format tfds holds JPEG or PNG images, not --encode webp:80" in err, err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


@pytest.mark.parametrize("how, name", [("png", "PNG"), ("jpeg:90", "JPEG")])
def test_tfds_reads_a_resized_output_with_builder_from_directory_at_the_resized_size(downloads, tmp_path, how, name):
    import tensorflow_datasets as tfds

    out = tmp_path / "out"
    code, err = convert_small(downloads, out, "--format", "tfds", "--resize", f"short-edge={SIDE}", "--encode", how)
    assert code == 0, err
    builder = tfds.builder_from_directory(str(next((out / "imagenet2012").iterdir())))
    recipe = json.loads((out / "manifest.json").read_text())["run"]["resize"]
    assert builder.info.description.endswith("\n\nResized by streamprep (convert --resize): "
                                             + json.dumps(recipe, sort_keys=True))  # kept by TFDS
    found = {}
    for split in ("train", "validation"):
        for example in builder.as_dataset(split=split):
            found[example["file_name"].numpy().decode()] = example["image"].numpy()
    classic = {}
    for path in out.glob("imagenet2012/*/*.tfrecord-*"):
        import tensorflow as tf

        for raw in tf.data.TFRecordDataset(str(path)):
            f = tf.train.Example.FromString(raw.numpy()).features.feature
            classic[f["file_name"].bytes_list.value[0].decode()] = f["image"].bytes_list.value[0]
    assert len(found) == 8 and set(found) == set(classic)
    for filename, image in found.items():
        assert encoding_of(classic[filename]) == name and min(image.shape[:2]) == SIDE, filename
        stored = np.asarray(Image.open(io.BytesIO(classic[filename])).convert("RGB"), np.int16)
        assert image.shape == stored.shape, filename  # PNG: Pillow's pixels; JPEG: within IDCT rounding of them
        assert np.abs(image - stored).max() <= (0 if name == "PNG" else 8), filename
    code, err = run_cli("verify", "--decode", out)
    assert code == 0, err


# --------------------------------------------------------------------------- the recipe in each format's metadata

def _recipe(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())["run"]["resize"]


def test_mds_and_litdata_index_json_hold_the_recipe_their_readers_read_past(webp, litdata_outputs):
    """An extra top-level `resize` in each split's index.json: streaming and LitData read these folders above."""
    for folder, splits in ((webp / "mds", ("train", "val")), (litdata_outputs["webp:80"] / "litdata",
                                                              ("train", "validation"))):
        for split in splits:
            index = json.loads((folder / split / "index.json").read_text())
            assert index["resize"] == _recipe(folder.parent) and index["resize"]["encode"] == "webp:80", folder


@pytest.mark.parametrize("writer", ["streamprep", "datasets"])
def test_parquets_footer_holds_the_recipe_beside_the_features_and_datasets_still_reads_them(downloads, tmp_path,
                                                                                            writer):
    import datasets
    import pyarrow.parquet as pq

    out = tmp_path / "out"
    code, err = convert_small(downloads, out, "--format", "parquet", "--parquet-writer", writer, "--resize",
                         f"short-edge={SIDE}", "--encode", "png")
    assert code == 0, err
    files = sorted((out / "data").glob("*.parquet"))
    for path in files:
        metadata = pq.read_metadata(path).metadata
        assert json.loads(metadata[b"streamprep"]) == {"resize": _recipe(out)} and b"huggingface" in metadata
    loaded = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "hf-cache"))
    assert isinstance(loaded["train"].features["image"], datasets.Image) and len(loaded["train"]) == 5
    assert all(min(row["image"].size) == SIDE and row["image"].format == "PNG" for row in loaded["train"])
    code, report, err = run_cli_out("verify", "--decode", out)
    assert code == 0, report + err


def test_tfds_counts_a_resized_outputs_shards_from_the_recipes_estimate_not_the_downloads():
    """ILSVRC2012's training split (1,281,167 images, 147.9 GB): TFDS's rule gives 1024 shards of its downloads; of a
    64x64 squish's estimate (14,336 bytes an image at most), 256; a named recipe counts at least each download."""
    from streamprep.outputs.tfds.plan import number_of_shards, resized_sizes

    downloads = np.array([110_000, 500, 300_000], np.int64)
    assert resized_sizes(downloads, None) is downloads
    assert resized_sizes(downloads, parse("squish=64x64")).tolist() == [14_336] * 3
    assert resized_sizes(downloads, parse("21k-p-224")).tolist() == [164_096, 164_096, 300_000]
    n = 1_281_167
    assert number_of_shards(147_897_477_120, n) == 1024
    assert number_of_shards(int(resized_sizes(np.zeros(n, np.int64), parse("squish=64x64")).sum()), n) == 256
