"""The dataset seam: one registry from a name (`--dataset`) to its entry; ILSVRC2012 the first, another pluggable."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from helpers import SMALL_LAYOUT, convert_args, result_files, run_cli
from streamprep import datasets
from streamprep.datasets import ILSVRC2012

OFFICIAL = {"train": "ILSVRC2012_img_train.tar", "val": "ILSVRC2012_img_val.tar",
            "bbox": "ILSVRC2012_bbox_train_v2.tar.gz"}


def test_the_registry_lists_ilsvrc2012_with_its_three_downloads_under_their_official_names():
    entry = datasets.get("ilsvrc2012")

    assert "ilsvrc2012" in datasets.names() and datasets.DEFAULT == "ilsvrc2012" and entry is ILSVRC2012
    assert {d.role: d.name for d in entry.downloads if d.required} == OFFICIAL
    assert all(len(d.md5) == 32 and int(d.md5, 16) >= 0 for d in entry.downloads)
    assert [(d.role, d.name, d.required) for d in entry.downloads if not d.required] == \
        [("bbox_val", "ILSVRC2012_bbox_val_v3.tgz", False)]  # --bbox-val, optional
    assert entry.download("train").md5 == "1d675b47d978889d74fa0da5fadfb00e"  # the download page's
    assert (entry.plan.train_shards, entry.plan.validation_shards, entry.plan.classic_threads) == (1024, 128, 8)
    assert len(entry.fixups.png) == 1 and len(entry.fixups.cmyk) == 22 and len(entry.fixups.names) == 23
    assert [f.option for f in entry.labels] == ["labels_file", "metadata_file", "validation_labels_file"]
    assert entry.members.validation_image % 7 == "ILSVRC2012_val_00000007.JPEG"
    assert entry.members.class_synset("n01440764.tar") == "n01440764"
    assert entry.members.class_synset("n01440764/x.tar") is None and entry.members.class_synset("README") is None
    assert entry.members.is_image("n01440764_1.JPEG") and not entry.members.is_image("n01440764_5.jpeg")
    assert entry.boxes.download == "bbox" and entry.boxes.split == "train"


def test_the_defaults_of_the_option_table_are_the_default_datasets():
    from streamprep import Options

    options = Options(downloads="dl", out="o")
    assert options.dataset == "ilsvrc2012" and options.public()["dataset"] == "ilsvrc2012"
    assert (options.train, options.val, options.bbox) == tuple(f"dl/{OFFICIAL[k]}" for k in ("train", "val", "bbox"))
    assert (options.train_shards, options.validation_shards, options.classic_threads) == (1024, 128, 8)


def test_an_unknown_dataset_is_a_one_line_error_naming_the_known_ones(tmp_path):
    from streamprep import ConfigError, Options

    code, err = run_cli("convert", tmp_path, "--dataset", "imagenet-x", "--out", tmp_path / "out")

    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert "dataset (--dataset) 'imagenet-x' is not a registered dataset; known: ilsvrc2012, imagenet21k" in err
    assert not (tmp_path / "out").exists()
    with pytest.raises(ConfigError, match="known: ilsvrc2012"):
        Options(downloads="dl", out="o", dataset="ILSVRC 2012")


def test_a_name_is_registered_once_and_the_default_stays():
    with pytest.raises(ValueError, match="registered already"):
        datasets.register(dataclasses.replace(ILSVRC2012, title="another"))
    with pytest.raises(ValueError, match="stays registered"):
        datasets.unregister("ilsvrc2012")
    assert datasets.register(ILSVRC2012) is ILSVRC2012  # the same entry again: harmless


# --------------------------------------------------------------------------------------------- a dataset of the test's

RENAMED = {"train": "tiny_train.tar", "val": "tiny_val.tar", "bbox": "tiny_boxes.tar.gz"}


def any_case_jpeg(name: str) -> bool:
    return name.lower().endswith(".jpeg")


@pytest.fixture
def registered():
    """Register test entries through the public API; unregister them after the test."""
    names = []

    def register(entry: datasets.Dataset) -> datasets.Dataset:
        names.append(datasets.register(entry).name)
        return entry

    yield register
    for name in names:
        datasets.unregister(name)


def renamed_downloads(sample: dict[str, Path], folder: Path) -> Path:
    """The sample downloads in one folder under the test dataset's official names."""
    folder.mkdir()
    for role, name in RENAMED.items():
        shutil.copyfile(sample[role], folder / name)
    return folder


def converted(out: Path, *argv) -> dict:
    code, err = run_cli(*argv, *SMALL_LAYOUT, "--quiet")
    assert code == 0, err
    return json.loads((out / "manifest.json").read_text())


def test_a_dataset_registered_with_other_official_names_converts_the_sample_byte_identically(
        sample, tmp_path, registered):
    downloads = tuple(dataclasses.replace(d, name=RENAMED[d.role]) for d in ILSVRC2012.downloads if d.required)
    entry = registered(dataclasses.replace(ILSVRC2012, name="tiny-renamed", downloads=downloads))
    folder = renamed_downloads(sample, tmp_path / "downloads")

    manifest = converted(tmp_path / "renamed", "convert", folder, "--dataset", entry.name, "--validation-labels-file",
                         sample["val_labels"], "--out", tmp_path / "renamed")
    converted(tmp_path / "classic", *convert_args(sample, tmp_path / "classic"))

    assert result_files(tmp_path / "renamed") == result_files(tmp_path / "classic")  # every shard, bboxes.csv
    assert manifest["options"]["dataset"] == "tiny-renamed" and manifest["run"]["dataset"] == "tiny-renamed"
    assert manifest["options"]["train"] == str(folder / "tiny_train.tar")  # found under its official name
    code, err = run_cli("convert", folder, "--out", tmp_path / "other", "--quiet")  # ILSVRC2012's names: not there
    assert code == 2 and ("ILSVRC2012_img_val.tar" in err or "ILSVRC2012_img_train.tar" in err), err


def test_a_dataset_registered_with_another_member_rule_takes_its_images_by_that_rule(sample, tmp_path, registered):
    members = dataclasses.replace(ILSVRC2012.members, image_glob="*.jpeg (any case)", is_image=any_case_jpeg)
    entry = registered(dataclasses.replace(ILSVRC2012, name="tiny-any-case", members=members))

    manifest = converted(tmp_path / "any", *convert_args(sample, tmp_path / "any", "--dataset", entry.name))
    classic = converted(tmp_path / "classic", *convert_args(sample, tmp_path / "classic"))

    splits, classic_splits = manifest["splits"], classic["splits"]
    assert splits["train"]["images"] == classic_splits["train"]["images"] + 1  # n01440764_5.jpeg, lower case
    assert splits["validation"]["images"] == classic_splits["validation"]["images"]
    ignored = manifest["ignored"]
    assert "not a *.jpeg (any case) file at the top of a class tar" in ignored  # the rule's own words
    assert "not a *.JPEG file at the top of a class tar" in classic["ignored"]
    assert not any("_5.jpeg" in example for reason in ignored.values() for example in reason["examples"])


def test_a_dataset_whose_walk_the_beam_engine_does_not_run_is_refused_there_in_one_line(registered, tmp_path):
    pytest.importorskip("apache_beam", reason="pip install 'streamprep[beam]' to run the Beam tests")
    entry = registered(dataclasses.replace(ILSVRC2012, name="tiny-other-walk", walk="other"))

    code, err = run_cli("convert", tmp_path, "--dataset", entry.name, "--out", tmp_path / "out", "--engine", "beam")

    assert code == 2 and err.count("\n") == 1, err
    assert "does not run the 'other' walk of --dataset tiny-other-walk; convert with the local engine" in err
    assert not (tmp_path / "out").exists()
