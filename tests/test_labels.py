"""The label files shipped as package data, and flags that override them."""

from __future__ import annotations

import hashlib

import pytest

from streamprep.datasets import ILSVRC2012
from streamprep.errors import LabelDataError
from streamprep.index.labels import (METADATA_FILE, SYNSETS_FILE, VALIDATION_LABELS_FILE, load_label_data, shipped)

# sha256 of the files in the tensorflow-datasets and timm wheels they were copied from (docs/label-data.md).
SHIPPED = {
    SYNSETS_FILE: "70002b0ff5de60a3a17a82dbfcff291931f96225ddf941ad2e182fc39e183d15",
    VALIDATION_LABELS_FILE: "313fc3f23c864dde9183c9a368809065765dd1b657a6904fded44e3e46d34604",
    METADATA_FILE: "1b8babda187421a4bde0c9c5a197c36f6bdda962f7ca11ffb2813806cbb2178f",
}


@pytest.mark.parametrize("name", sorted(SHIPPED), ids=sorted(SHIPPED))
def test_shipped_label_file_has_the_published_sha256(name):
    with open(shipped(name), "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == SHIPPED[name]


def test_the_ilsvrc2012_entry_lists_the_shipped_label_files_each_with_its_flag():
    assert sorted(f.shipped for f in ILSVRC2012.labels) == sorted(SHIPPED)
    assert {f.role: f.option for f in ILSVRC2012.labels} == {
        "labels": "labels_file", "metadata": "metadata_file", "validation": "validation_labels_file"}
    assert load_label_data().sources == {f.role: shipped(f.shipped) for f in ILSVRC2012.labels}


def test_shipped_label_data_has_the_classic_shape():
    labels = load_label_data()
    assert len(labels.synsets) == 1000 and list(labels.synsets) == sorted(labels.synsets)
    assert labels.label("n01440764") == 1 and labels.label("n15075141") == 1000
    assert len(labels.validation) == 50_000 and labels.validation[0] == "n01751748"
    assert set(labels.validation) == set(labels.synsets)
    assert all(labels.text(s) for s in labels.synsets)
    assert labels.text("n01440764") == "tench, Tinca tinca"


def test_flags_override_each_label_file(tmp_path):
    (tmp_path / "s.txt").write_text("n2\nn1\n")
    (tmp_path / "m.txt").write_text("n1\tone\nn2\ttwo, 2\n")
    (tmp_path / "v.txt").write_text("n1\nn2\nn1\n\n")
    labels = load_label_data(str(tmp_path / "s.txt"), str(tmp_path / "m.txt"), str(tmp_path / "v.txt"))
    assert labels.synsets == ("n2", "n1") and labels.label("n1") == 2 and labels.label("n3") is None
    assert labels.text("n2") == "two, 2"
    assert labels.validation == ("n1", "n2", "n1")


@pytest.mark.parametrize("content, message", [
    ("n1\nn2\nn1\n", "twice"),
    ("n1\n\nn2\n", "empty line"),
], ids=["duplicate-synset", "blank-line"])
def test_bad_synsets_file_is_refused_with_its_name(tmp_path, content, message):
    path = tmp_path / "synsets.txt"
    path.write_text(content)
    with pytest.raises(LabelDataError, match=message) as e:
        load_label_data(str(path))
    assert str(path) in str(e.value)


def test_metadata_line_without_a_tab_is_refused(tmp_path):
    path = tmp_path / "meta.txt"
    path.write_text("n1\tone\nn2 two\n")
    with pytest.raises(LabelDataError, match="line 2"):
        load_label_data(metadata_file=str(path))


def test_missing_text_for_a_synset_names_the_fix(tmp_path):
    path = tmp_path / "meta.txt"
    path.write_text("n1\tone\n")
    labels = load_label_data(metadata_file=str(path))
    with pytest.raises(LabelDataError, match="--metadata-file"):
        labels.text("n01440764")


def test_missing_label_file_is_a_clear_error(tmp_path):
    with pytest.raises(LabelDataError, match="not found"):
        load_label_data(validation_labels_file=str(tmp_path / "nope.txt"))
