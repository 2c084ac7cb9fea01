"""--check-md5: the downloads against the sums their dataset's entry publishes (ILSVRC2012's); a mismatch writes
nothing."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import random

import pytest

from helpers import SMALL_LAYOUT, run_cli
from fixtures import builders
from streamprep import datasets
from streamprep.datasets import ILSVRC2012
from tiny import A, write_tiny

MIB = 1 << 20


@pytest.fixture(scope="module")
def official_sized_bbox(tmp_path_factory):
    """Tiny downloads whose bbox tar.gz has the official name and about the official size (20 MB)."""
    folder = tmp_path_factory.mktemp("md5")
    paths = write_tiny(folder)
    padding = random.Random(0).randbytes(20 * MIB - 40_000)  # incompressible: the .tar.gz stays ~20 MB
    members = {f"{A}/": b"", f"{A}/{A}_1.xml": builders.voc_xml(f"{A}_1", 17, 12, [(1, 1, 10, 10)]),
               f"{A}/padding.bin": padding}
    paths["bbox"].write_bytes(gzip.compress(builders.tar_bytes(members), compresslevel=1))
    assert ILSVRC2012.download("bbox").plausible(paths["bbox"].stat().st_size)
    return paths


def convert(paths, out, *extra):
    return run_cli("convert", "--train", paths["train"], "--val", paths["val"], "--bbox", paths["bbox"],
                   "--validation-labels-file", paths["val_labels"], "--out", out, "--check-md5", *SMALL_LAYOUT,
                   *extra)


def test_a_download_whose_md5_differs_from_the_published_one_stops_the_run_before_anything_is_written(
        official_sized_bbox, tmp_path):
    out = tmp_path / "out"
    code, err = convert(official_sized_bbox, out)
    assert code == 2
    assert "ILSVRC2012_bbox_train_v2.tar.gz: MD5 is" in err
    assert ILSVRC2012.download("bbox").md5 in err and "fetch it again" in err and "Nothing was written" in err
    assert not out.exists()


def test_files_that_are_not_the_official_downloads_get_a_warning_and_are_not_checked(tmp_path):
    paths = write_tiny(tmp_path / "dl")
    code, err = convert(paths, tmp_path / "out")
    assert code == 0, err
    for name in ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar", "ILSVRC2012_bbox_train_v2.tar.gz"):
        assert f"{name} is not the official {name}" in err
    assert "the published MD5 does not apply" in err
    assert "checking MD5" not in err
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["md5"] == {}


@pytest.fixture
def published_as_this_bbox(official_sized_bbox):
    """ILSVRC2012 as a dataset entry whose published bbox sum is this test file's, registered for the test."""
    real = hashlib.md5(official_sized_bbox["bbox"].read_bytes()).hexdigest()
    # The published sum stands for "the official file"; here the official file is this one.
    downloads = tuple(dataclasses.replace(d, md5=real) if d.role == "bbox" else d for d in ILSVRC2012.downloads)
    entry = datasets.register(dataclasses.replace(ILSVRC2012, name="ilsvrc2012-md5-test", downloads=downloads))
    yield entry
    datasets.unregister(entry.name)


def test_a_matching_md5_is_recorded_in_the_manifest_and_not_computed_again_on_a_rerun(
        official_sized_bbox, published_as_this_bbox, tmp_path):
    real = published_as_this_bbox.download("bbox").md5
    out = tmp_path / "out"

    code, err = convert(official_sized_bbox, out, "--dataset", published_as_this_bbox.name)

    assert code == 0, err
    assert "checking MD5: done" in err
    assert json.loads((out / "manifest.json").read_text())["md5"]["bbox"]["md5"] == real
    code, err = convert(official_sized_bbox, out, "--dataset", published_as_this_bbox.name)
    assert code == 0, err
    assert "checking MD5" not in err  # the sum of the unchanged file was taken from the manifest
