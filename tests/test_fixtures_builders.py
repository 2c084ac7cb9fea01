"""Tests of the test-data builders and of the committed sample downloads they produce."""

from __future__ import annotations

import gzip
import io
import tarfile
import xml.etree.ElementTree as ET

import pytest
from PIL import Image

from fixtures import builders, make_fixtures

LONG = "n01443537_" + "x" * 100 + ".JPEG"
FORMATS = {
    "ustar": (tarfile.USTAR_FORMAT, {"b_2.JPEG": b"two", "d/": b"", "d/a_1.JPEG": b"one", "caf\u00e9.txt": b""}),
    "gnu": (tarfile.GNU_FORMAT, {LONG: b"long", "caf\u00e9.JPEG": b"\xff\xd8", "a.JPEG": b"a"}),
    "pax": (tarfile.PAX_FORMAT, {"caf\u00e9.JPEG": b"\xff\xd8", LONG: b"long", "a.JPEG": b"a"}),
}


def _open_image(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def _tar_members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name + ("/" if m.isdir() else ""): tar.extractfile(m).read() if m.isfile() else b"" for m in tar}


@pytest.mark.parametrize("fmt, members", FORMATS.values(), ids=FORMATS.keys())
def test_tar_bytes_round_trips_names_bytes_and_order(fmt, members):
    data = builders.tar_bytes(members, format=fmt)
    assert list(_tar_members(data).items()) == list(members.items())
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        infos = tar.getmembers()
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in infos} == {(builders.MTIME, 0, 0, "", "")}
    assert {m.mode for m in infos if m.isfile()} == {0o644}


def test_tar_bytes_is_byte_identical_for_the_same_input():
    members = {"n01440764_1.JPEG": builders.jpeg(16, 16), "caf\u00e9.txt": b"x"}
    assert builders.tar_bytes(members) == builders.tar_bytes(dict(members))


def test_write_train_tar_nests_class_tars_in_dict_order_then_extras(tmp_path):
    classes = {"n2": {"n2_10.JPEG": b"b", "n2_9.JPEG": b"a"}, "n1": {"n1_1.JPEG": b"c"}}
    path = builders.write_train_tar(tmp_path / "t.tar", classes, {"README.txt": b"r"}, inner_format=tarfile.GNU_FORMAT)
    outer = _tar_members(path.read_bytes())
    assert list(outer) == ["n2.tar", "n1.tar", "README.txt"]
    assert _tar_members(outer["n2.tar"]) == classes["n2"]
    assert list(_tar_members(outer["n2.tar"])) == ["n2_10.JPEG", "n2_9.JPEG"]


def test_write_bbox_targz_puts_a_directory_entry_before_each_folder_and_pins_gzip_mtime(tmp_path):
    xmls = {"n2/n2_1.xml": b"<a/>", "n1/n1_1.xml": b"<b/>", "n2/n2_0.xml": b"<c/>"}
    data = builders.write_bbox_targz(tmp_path / "b.tar.gz", xmls).read_bytes()
    assert data[4:8] == b"\0\0\0\0"  # gzip header MTIME
    assert list(_tar_members(gzip.decompress(data))) == ["n2/", "n2/n2_1.xml", "n1/", "n1/n1_1.xml", "n2/n2_0.xml"]


@pytest.mark.parametrize("mode", ["RGB", "L", "CMYK"])
def test_jpeg_has_the_requested_pillow_mode_and_size(mode):
    image = _open_image(builders.jpeg(40, 24, mode=mode))
    assert (image.format, image.mode, image.size) == ("JPEG", mode, (40, 24))


def test_jpeg_options_embed_exif_orientation_icc_profile_and_progressive_scan():
    image = _open_image(builders.jpeg(48, 24, exif=True, icc=True, progressive=True))
    assert image.getexif()[builders.EXIF_ORIENTATION] == 6
    assert image.info["icc_profile"] == builders.srgb_icc_profile()
    assert image.info.get("progressive")
    assert image.size == (48, 24)


def test_jpeg_is_deterministic_per_seed_and_distinct_across_seeds():
    assert builders.jpeg(16, 16, seed=1) == builders.jpeg(16, 16, seed=1)
    assert builders.jpeg(16, 16, seed=1) != builders.jpeg(16, 16, seed=2)


def test_png_is_really_a_png():
    data = builders.png(20, 10)
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert (_open_image(data).format, _open_image(data).size) == ("PNG", (20, 10))


def test_voc_xml_writes_box_items_and_sizes_as_their_str_text():
    root = ET.fromstring(builders.voc_xml("%s", "500.0", 375, [(12.5, 3, 40, 30), (1, 2, 3, 4)], name="n02105855"))
    assert [root.findtext(p) for p in ("folder", "filename", "size/width", "size/height")] == [
        "n02105855", "%s", "500.0", "375",
    ]  # fmt: skip
    assert [e.text for e in root.iter("xmin")] == ["12.5", "1"]
    assert [o.findtext("name") for o in root.iter("object")] == ["n02105855", "n02105855"]


def test_build_sample_is_byte_identical_across_builds(tmp_path):
    first = make_fixtures.build_sample(tmp_path / "a")
    second = make_fixtures.build_sample(tmp_path / "b")
    assert set(first) == {"train", "val", "bbox", "val_labels"}
    for role in first:
        assert first[role].read_bytes() == second[role].read_bytes(), role


def test_committed_sample_equals_a_fresh_build(tmp_path):
    fresh = make_fixtures.build_sample(tmp_path)
    for role, path in fresh.items():
        committed = make_fixtures.SAMPLE_DIR / path.name
        assert committed.read_bytes() == path.read_bytes(), f"rerun tests/fixtures/make_fixtures.py ({path.name})"


def test_sample_holds_the_awkward_cases_it_promises():
    classes = make_fixtures.train_classes()
    assert list(classes) != sorted(classes)
    assert all(list(files) != sorted(files) for syn, files in classes.items() if len(files) > 2)
    assert _open_image(classes["n02105855"]["n02105855_2933.JPEG"]).format == "PNG"
    assert _open_image(classes["n01739381"]["n01739381_1309.JPEG"]).mode == "CMYK"
    assert _open_image(classes["n02077923"]["n02077923_14822.JPEG"]).mode == "CMYK"
    assert len(make_fixtures.LONG_NAME) > 100 and make_fixtures.LONG_NAME in classes["n01443537"]
    labels = make_fixtures.VAL_LABELS
    val = make_fixtures.val_members()
    assert f"ILSVRC2012_val_{len(labels) + 1:08d}.JPEG" in val
    assert all(f"ILSVRC2012_val_{i:08d}.JPEG" in val for i in range(1, len(labels) + 1))
    assert set(labels) - set(classes) == {make_fixtures.NOT_IN_1000}
    xmls = make_fixtures.bbox_xmls()
    assert list(xmls) != sorted(xmls)
