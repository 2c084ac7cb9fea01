"""`--engine beam` for ImageNet-21k (an archive of per-synset tars, or a folder of them, split by a recipe) and for
the validation boxes (`--bbox-val`): every file the Beam pipeline writes equals the local engine's, byte for byte.

Beam is slow to start, so three DirectRunner runs prove it: the archive with ImageNet-21K-P's recipe (small
thresholds, so the recipe drops classes and moves images to validation), the folder with `--split-recipe all`, and
ILSVRC2012's sample with the validation boxes found in DOWNLOADS. Each writes TFRecord and WebDataset; webdataset
reads the shards back.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest

from helpers import SMALL_LAYOUT, TYPE_CHECKED, result_files, run_cli
from test_bbox_val import OFFICIAL, XMLS, expected_csv, voc, write_tgz
from test_imagenet21k import (CORRUPT, RECIPE_OPTIONS, _classes, _write_archive, _write_folder,
                              expected_by_the_script, read_webdataset)

FORMATS = ("--format", "tfrecord,webdataset")
BAD_XML = "ILSVRC2012_val_00000006"  # a validation XML whose <xmax> is no number: skipped by --on-bad-xml skip


@pytest.fixture(scope="module")
def beam():
    """Skipped without Apache Beam, except in CI, where the Beam tests must run."""
    if os.environ.get("CI"):
        import apache_beam  # noqa: F401 - CI installs the test extra, which includes it: fail, never skip
    else:
        pytest.importorskip("apache_beam", reason="pip install 'streamprep[beam]' to run the Beam tests")


@pytest.fixture(scope="module")
def synset_tars(tmp_path_factory) -> dict[str, Path]:
    """test_imagenet21k's five per-synset tars with the awkward cases, as fall11_whole.tar and as a folder."""
    base = tmp_path_factory.mktemp("beam-i21k")
    classes = _classes()
    return {"archive": _write_archive(base / "fall11_whole.tar", classes),
            "folder": _write_folder(base / "synsets", classes), "base": base}


def on_both_engines(base: Path, *argv: object) -> tuple[Path, Path]:
    """`streamprep convert *argv` on the local engine, then on Beam's DirectRunner: their two output folders."""
    local, beam_out = base / "local", base / "beam"
    code, err = run_cli("convert", *argv, "--out", local, "--quiet")
    assert code == 0, err
    code, err = run_cli("convert", *argv, "--out", beam_out, "--quiet", "--engine", "beam", "--", *TYPE_CHECKED)
    assert code == 0, err
    return local, beam_out


def assert_byte_identical(local: Path, beam_out: Path) -> dict:
    """Every shard and side file equal, and manifest.json (each file's sha256) equal but for `options.out`: the
    manifest, parsed."""
    files = result_files(local)
    assert {n for n in files if n.endswith(".tar")} and {n for n in files if n.startswith("train-0")}
    assert result_files(beam_out) == files
    manifest, theirs = (local / "manifest.json").read_bytes(), (beam_out / "manifest.json").read_bytes()
    assert manifest.replace(json.dumps(str(local)).encode(), json.dumps(str(beam_out)).encode(), 1) == theirs
    hidden = [p.name for p in beam_out.iterdir() if p.name.startswith(".") and p.name != ".streamprep"]
    assert not hidden, f"temporary files left: {hidden}"
    return json.loads(theirs)


def test_the_archive_split_as_21k_p_on_beam_gives_the_local_engines_files_and_processing_script_shs_split(
        beam, synset_tars, tmp_path):
    local, out = on_both_engines(tmp_path, synset_tars["archive"], *RECIPE_OPTIONS, *FORMATS, "--on-bad-image", "skip")

    manifest = assert_byte_identical(local, out)
    assert {s: manifest["splits"][s]["images"] for s in ("train", "validation")} == {"train": 15, "validation": 5}
    assert manifest["ignored"]["class tar of 3 or fewer *.JPEG files (--split-recipe 21k-p drops the class)"][
        "count"] == 2
    assert len(manifest["skipped"]) == 1  # the corrupt JPEG, among a class's first by name
    expected = expected_by_the_script(synset_tars["archive"], tmp_path / "extracted")
    assert read_webdataset(out) == {k: v for k, v in expected.items() if v[1] != CORRUPT}


def test_a_folder_of_per_synset_tars_with_recipe_all_on_beam_gives_the_local_engines_files(beam, synset_tars,
                                                                                            tmp_path):
    local, out = on_both_engines(tmp_path, synset_tars["folder"], *RECIPE_OPTIONS, *FORMATS, "--split-recipe", "all",
                                 "--on-bad-image", "skip")

    manifest = assert_byte_identical(local, out)
    assert manifest["splits"]["validation"]["images"] == 0 and manifest["splits"]["train"]["classes"] == 5
    assert manifest["ignored"]["not a class tar (nXXXXXXXX.tar) in the folder"]["examples"][0].endswith("!notes.txt")
    found = read_webdataset(out)
    assert {split for split, _, _ in found} == {"train"} and len(found) == manifest["splits"]["train"]["images"]


def test_the_validation_boxes_found_in_downloads_on_beam_give_the_local_engines_records_and_csv(beam, sample,
                                                                                                  tmp_path):
    import webdataset as wds

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    for role in ("train", "val", "bbox"):
        os.symlink(sample[role], downloads / Path(sample[role]).name)
    bad = voc(BAD_XML, 96, 72, (10, 12, 50, 60)).replace(b"<xmax>50</xmax>", b"<xmax>fifty</xmax>")
    write_tgz(downloads / OFFICIAL, {**XMLS, BAD_XML: bad})

    local, out = on_both_engines(tmp_path, downloads, "--validation-labels-file", sample["val_labels"], *SMALL_LAYOUT,
                                 *FORMATS, "--on-bad-xml", "skip")

    manifest = assert_byte_identical(local, out)
    assert (out / "bboxes_validation.csv").read_bytes() == expected_csv(XMLS)
    assert manifest["run"]["inputs"]["bbox_val"]["url"].endswith(OFFICIAL)
    assert [s["member"] for s in manifest["skipped"]] == [f"{downloads / OFFICIAL}!val/{BAD_XML}.xml"]
    shards = sorted(str(p) for p in out.glob("validation-*.tar"))
    boxes = {json.loads(s["json"])["filename"]: json.loads(s["json"]).get("boxes", [])
             for s in wds.WebDataset(shards, shardshuffle=False, empty_check=False)}
    assert len(boxes["ILSVRC2012_val_00000002.JPEG"]) == 3 and manifest["splits"]["validation"]["boxes"] == 6


def test_a_gzipped_archive_of_per_synset_tars_is_refused_on_beam_in_one_line(beam, tmp_path):
    from fixtures.builders import jpeg, tar_bytes

    archive = tmp_path / "winter21_whole.tar.gz"
    archive.write_bytes(gzip.compress(tar_bytes({"n00004475.tar": tar_bytes({"n00004475_1.JPEG": jpeg(8, 8)})})))

    code, err = run_cli("convert", archive, "--dataset", "imagenet21k", "--out", tmp_path / "out", "--engine", "beam")

    assert code == 2 and err.count("\n") == 1, err
    assert "does not read a gzipped archive; pass the extracted tar or a folder of the per-synset tars" in err
    assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file() and ".streamprep" not in p.parts]


def test_a_gzipped_ilsvrc2012_training_tar_is_refused_on_beam_in_one_line(beam, sample, tmp_path):
    train = tmp_path / "ILSVRC2012_img_train.tar.gz"
    train.write_bytes(gzip.compress(Path(sample["train"]).read_bytes(), compresslevel=1))

    code, err = run_cli("convert", "--train", train, "--val", sample["val"], "--bbox", sample["bbox"],
                        "--validation-labels-file", sample["val_labels"], "--out", tmp_path / "out",
                        "--engine", "beam")

    assert code == 2 and err.count("\n") == 1, err
    assert f"{train}: engine beam (--engine beam) does not read a gzipped archive; pass the extracted tar," in err
    assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file() and ".streamprep" not in p.parts]


def test_a_per_synset_tar_changed_after_the_launcher_listed_the_folder_stops_its_walk_naming_it(beam, synset_tars,
                                                                                                  tmp_path):
    from streamprep.engines.beam import ClassTar, WalkClassTar, launch
    from streamprep.engines.driver import Conversion
    from streamprep.errors import ArchiveError
    from streamprep.options import make_options

    folder = tmp_path / "synsets"
    folder.mkdir()
    for p in synset_tars["folder"].iterdir():
        (folder / p.name).write_bytes(p.read_bytes())
    options = make_options({"train": str(folder), "dataset": "imagenet21k", "out": str(tmp_path / "out"),
                            "engine": "beam"})
    with Conversion(options).started() as run:
        bj = launch(run)
    first = next(e for e in bj.outer if isinstance(e, ClassTar))
    (folder / first.member.name).write_bytes((folder / first.member.name).read_bytes() + b"\0" * 512)

    with pytest.raises(ArchiveError, match=f"!{first.member.name}: the folder changed since the pipeline listed it"):
        list(WalkClassTar(bj).process(first))
