"""The validation boxes (`--bbox-val`): the records' boxes, bboxes_validation.csv, resume, verify, plan, inspect."""

from __future__ import annotations

import io
import json
import os
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from helpers import SMALL_LAYOUT, run_cli, run_cli_out

OFFICIAL = "ILSVRC2012_bbox_val_v3.tgz"


def voc(stem: str, width: int, height: int, *boxes: tuple[int, int, int, int]) -> bytes:
    """One validation XML file as the real archive holds it (`val/ILSVRC2012_val_00000001.xml`)."""
    objects = "".join(
        f"\t<object>\n\t\t<name>n01440764</name>\n\t\t<pose>Unspecified</pose>\n\t\t<truncated>0</truncated>\n"
        f"\t\t<difficult>0</difficult>\n\t\t<bndbox>\n\t\t\t<xmin>{a}</xmin>\n\t\t\t<ymin>{b}</ymin>\n"
        f"\t\t\t<xmax>{c}</xmax>\n\t\t\t<ymax>{d}</ymax>\n\t\t</bndbox>\n\t</object>\n" for a, b, c, d in boxes)
    return (f"<annotation>\n\t<folder>val</folder>\n\t<filename>{stem}</filename>\n\t<source>\n"
            f"\t\t<database>ILSVRC_2012</database>\n\t</source>\n\t<size>\n\t\t<width>{width}</width>\n\t\t<height>{height}</height>\n"
            f"\t\t<depth>3</depth>\n\t</size>\n\t<segmented>0</segmented>\n{objects}</annotation>\n").encode()


XMLS = {  # the sample's validation images 1..14 are records (but 7, of a synset not in the labels file)
    "ILSVRC2012_val_00000001": voc("ILSVRC2012_val_00000001", 96, 72, (10, 12, 50, 60)),
    "ILSVRC2012_val_00000002": voc("ILSVRC2012_val_00000002", 96, 72, (10, 12, 50, 60), (60, 5, 20, 70),  # reversed
                                   (0, 0, 96, 72)),  # several objects
    "ILSVRC2012_val_00000003": voc("ILSVRC2012_val_00000003", 80, 80, (-10, 20, 120, 90)),  # partly outside: clipped
    "ILSVRC2012_val_00000004": voc("ILSVRC2012_val_00000004", 80, 80, (100, 100, 150, 150), (5, 5, 40, 40)),  # one out
    "ILSVRC2012_val_00000005": voc("ILSVRC2012_val_00000005", 64, 48, (90, 10, 120, 30)),  # wholly outside: no box
    "ILSVRC2012_val_00000099": voc("ILSVRC2012_val_00000099", 96, 72, (1, 2, 30, 40)),  # no such image in the tar
}


def classic_boxes(data: bytes) -> list[tuple[float, float, float, float]]:
    """`process_bounding_boxes.py`'s `ProcessXMLAnnotation` and its scaling, written again with ElementTree:
    `<size>` divides, min/max swapped, clamped to [0, 1], a box empty after clamping left out."""
    root = ET.fromstring(data)

    def number(tag: str, index: int = 0) -> int:
        found = root.iter(tag)
        for _ in range(index):
            next(found)
        return int(float(next(found).text))

    width, height = number("width"), number("height")
    out = []
    for index in range(len(root.findall("object"))):
        xmin, xmax = sorted((number("xmin", index) / width, number("xmax", index) / width))
        ymin, ymax = sorted((number("ymin", index) / height, number("ymax", index) / height))
        box = tuple(min(max(v, 0.0), 1.0) for v in (xmin, ymin, xmax, ymax))
        if box[0] < box[2] and box[1] < box[3]:
            out.append(box)
    return out


def expected_csv(xmls: dict[str, bytes]) -> bytes:
    return "".join("%s.JPEG,%.4f,%.4f,%.4f,%.4f\n" % (stem, *box)
                   for stem in sorted(xmls) for box in classic_boxes(xmls[stem])).encode()


def expected_records() -> dict[str, list[list[float]]]:
    """Each record's boxes as the classic's records hold them: bboxes.csv's %.4f text, as float32."""
    return {f"{stem}.JPEG": [[float(np.float32(float("%.4f" % v))) for v in box] for box in classic_boxes(data)]
            for stem, data in XMLS.items()}


def write_tgz(path: Path, xmls: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz", format=tarfile.GNU_FORMAT) as tar:
        folder = tarfile.TarInfo("val")
        folder.type, folder.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(folder)
        for stem, data in xmls.items():
            info = tarfile.TarInfo(f"val/{stem}.xml")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(scope="module")
def downloads(sample, tmp_path_factory) -> Path:
    """A DOWNLOADS folder: the sample's three downloads and the validation boxes, under their official names."""
    folder = tmp_path_factory.mktemp("downloads")
    for role in ("train", "val", "bbox"):
        os.symlink(sample[role], folder / Path(sample[role]).name)
    write_tgz(folder / OFFICIAL, XMLS)
    return folder


@pytest.fixture(scope="module")
def converted(sample, downloads, tmp_path_factory) -> Path:
    """The sample converted to TFRecord and WebDataset with the validation boxes found in DOWNLOADS."""
    out = tmp_path_factory.mktemp("bbox-val") / "out"
    code, err = run_cli("convert", downloads, "--validation-labels-file", sample["val_labels"], "--out", out,
                        "--format", "tfrecord,webdataset", *SMALL_LAYOUT, "--quiet")
    assert code == 0, err
    return out


def test_bboxes_validation_csv_holds_every_validation_xml_scaled_as_the_classic_scales_training_boxes(converted):
    written = (converted / "bboxes_validation.csv").read_bytes()

    assert written == expected_csv(XMLS)
    assert b"ILSVRC2012_val_00000099.JPEG" in written  # kept, as the classic keeps training XMLs without an image
    assert b"ILSVRC2012_val_00000005.JPEG" not in written  # its only box is outside the image


def test_bboxes_csv_and_the_training_shards_stay_byte_identical_with_the_validation_boxes(converted, converted_sample):
    assert (converted / "bboxes.csv").read_bytes() == (converted_sample / "bboxes.csv").read_bytes()
    for shard in sorted(converted_sample.glob("train-*")):
        assert (converted / shard.name).read_bytes() == shard.read_bytes()
    validation = sorted(converted_sample.glob("validation-*"))
    assert validation and all((converted / s.name).read_bytes() != s.read_bytes() for s in validation)


def test_tensorflow_reads_each_validation_records_boxes_from_the_classic_box_fields(converted):
    import tensorflow as tf

    found = {}
    for raw in tf.data.TFRecordDataset(sorted(str(p) for p in converted.glob("validation-*-of-00002"))):
        example = tf.train.Example.FromString(raw.numpy())
        feature = example.features.feature
        name = feature["image/filename"].bytes_list.value[0].decode()
        coords = [list(feature[f"image/object/bbox/{k}"].float_list.value) for k in ("xmin", "ymin", "xmax", "ymax")]
        found[name] = [list(box) for box in zip(*coords)]
        assert list(feature["image/object/bbox/label"].int64_list.value) == \
            [feature["image/class/label"].int64_list.value[0]] * len(found[name])
    expected = expected_records()
    assert len(found) == 13 and "ILSVRC2012_val_00000099.JPEG" not in found
    assert {n: b for n, b in found.items() if b} == {n: b for n, b in expected.items() if b and n in found}
    assert len(found["ILSVRC2012_val_00000002.JPEG"]) == 3 and found["ILSVRC2012_val_00000005.JPEG"] == []


def test_webdataset_reads_each_validation_records_boxes_from_its_json(converted):
    import webdataset as wds

    shards = sorted(str(p) for p in converted.glob("validation-*.tar"))
    found = {json.loads(s["json"])["filename"]: [[float(np.float32(v)) for v in box]  # the float32's shortest text
                                                 for box in json.loads(s["json"]).get("boxes", [])]
             for s in wds.WebDataset(shards, shardshuffle=False, empty_check=False)}
    expected = expected_records()

    assert len(found) == 13
    assert {n: b for n, b in found.items() if b} == {n: b for n, b in expected.items() if b and n in found}


def test_verify_passes_and_the_manifest_lists_the_validation_boxes(converted):
    code, out, err = run_cli_out("verify", converted)
    manifest = json.loads((converted / "manifest.json").read_text())
    entry = next(f for f in manifest["files"] if f["name"] == "bboxes_validation.csv")

    assert code == 0, err
    assert entry["boxes"] == 7 and entry["files"] == 6
    assert manifest["splits"]["validation"]["boxes"] == 6  # the records' boxes (ILSVRC2012_val_00000099 has none)
    assert manifest["run"]["inputs"]["bbox_val"]["url"].endswith(OFFICIAL)


def test_a_rerun_keeps_every_shard_and_a_changed_bboxes_validation_csv_is_reported_by_verify(sample, downloads,
                                                                                             converted, tmp_path):
    code, out, err = run_cli_out("convert", downloads, "--validation-labels-file", sample["val_labels"], "--out",
                                 converted, "--format", "tfrecord,webdataset", *SMALL_LAYOUT)
    assert code == 0, err
    assert "6 of 6 shards were already complete" in out + err
    copy = tmp_path / "copy"
    copy.mkdir()
    for p in converted.iterdir():
        if p.is_file():
            (copy / p.name).write_bytes(p.read_bytes())
    (copy / "bboxes_validation.csv").write_bytes(b"ILSVRC2012_val_00000001.JPEG,0.0,0.0,1.0,1.0\n")
    code, out, err = run_cli_out("verify", copy)
    assert code != 0 and "bboxes_validation.csv" in out + err


def test_without_the_validation_boxes_the_run_record_and_the_files_are_todays(sample, converted_sample):
    manifest = json.loads((converted_sample / "manifest.json").read_text())

    assert set(manifest["run"]["inputs"]) == {"train", "val", "bbox"} and "bbox_val" not in manifest["options"]
    assert not (converted_sample / "bboxes_validation.csv").exists()
    assert manifest["splits"]["validation"]["boxes"] == 0


@pytest.mark.parametrize("policy", ["fail", "skip"])
def test_an_unusable_validation_xml_is_handled_by_on_bad_xml_as_a_training_one_is(sample, tmp_path, policy):
    bad = {**XMLS, "ILSVRC2012_val_00000006": voc("ILSVRC2012_val_00000006", 96, 72, (10, 12, 50, 60))
           .replace(b"<xmax>50</xmax>", b"<xmax>fifty</xmax>")}
    tgz = write_tgz(tmp_path / "boxes.tgz", bad)
    code, out, err = run_cli_out("convert", "--train", sample["train"], "--val", sample["val"], "--bbox",
                                 sample["bbox"], "--validation-labels-file", sample["val_labels"], "--bbox-val", tgz,
                                 "--out", tmp_path / "out", *SMALL_LAYOUT, "--on-bad-xml", policy)
    if policy == "fail":
        assert code == 2 and "boxes.tgz!val/ILSVRC2012_val_00000006.xml: <xmax> is 'fifty', not a number" in err
        return
    assert code == 0, err
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [s["member"] for s in manifest["skipped"]] == [f"{tgz}!val/ILSVRC2012_val_00000006.xml"]
    assert (tmp_path / "out" / "bboxes_validation.csv").read_bytes() == expected_csv(XMLS)


def test_plan_lists_the_validation_boxes_download_and_inspect_reads_it(sample, downloads, tmp_path):
    code, out, err = run_cli_out("plan", downloads, "--validation-labels-file", sample["val_labels"], "--out",
                                 tmp_path / "out", *SMALL_LAYOUT, "--json")
    assert code == 0, err
    roles = {d["role"]: d["url"] for d in json.loads(out)["downloads"]}
    assert set(roles) == {"train", "val", "bbox", "bbox_val"} and roles["bbox_val"].endswith(OFFICIAL)

    code, out, err = run_cli_out("inspect", downloads / OFFICIAL)
    assert code == 0, err
    assert "bounding-box archive" in out and "ILSVRC2012_val_00000002.JPEG" in out


def test_the_folder_layout_holds_the_validation_xml_files_and_bboxes_validation_csv(sample, downloads, converted,
                                                                                     tmp_path):
    tree, out = tmp_path / "tree", tmp_path / "out"

    code, err = run_cli("convert", downloads, "--validation-labels-file", sample["val_labels"], "--out", out,
                        "--materialize", tree, "--format", "tfrecord,webdataset", *SMALL_LAYOUT, "--quiet")

    assert code == 0, err
    with tarfile.open(downloads / OFFICIAL) as tgz:  # what `tar -xzf ... -C bboxes_validation` would give
        members = {m.name: tgz.extractfile(m).read() for m in tgz if m.isfile()}
    extracted = {str(p.relative_to(tree / "bboxes_validation")): p.read_bytes()
                 for p in (tree / "bboxes_validation").rglob("*") if p.is_file()}
    assert extracted == members and len(members) == len(XMLS)
    assert (tree / "bboxes_validation.csv").read_bytes() == expected_csv(XMLS)
    assert (tree / "bboxes.csv").read_bytes() == (converted / "bboxes.csv").read_bytes()
    shards = sorted(p.name for p in converted.iterdir() if p.name.startswith(("train-", "validation-")))
    assert shards and all((out / n).read_bytes() == (converted / n).read_bytes() for n in shards)
