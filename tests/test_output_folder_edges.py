"""The output folder at the edges an independent attack found: links at finished files, a folder at a final name
during --overwrite, another TFDS version beside ours, a journal at the end of a failed run, verify without a
format's reader package, an empty image under --decode, and abbreviated flags."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from helpers import ROOT, SMALL_LAYOUT, convert_args, result_files, run_cli, run_python

FORMATS = ("--format", "tfrecord,webdataset", "--dali-index")


@pytest.fixture()
def finished(sample, tmp_path) -> tuple[Path, dict[str, bytes]]:
    out = tmp_path / "out"
    code, err = run_cli(*convert_args(sample, out, *SMALL_LAYOUT, *FORMATS, "--quiet"))
    assert code == 0, err
    return out, result_files(out)


def test_links_at_a_finished_shard_and_its_index_are_written_again_and_replaced_never_kept(sample, finished,
                                                                                           tmp_path):
    out, before = finished
    outside = tmp_path / "outside"
    outside.mkdir()
    for name in ("train-00002-of-00004", "train-00002-of-00004.tar.idx"):
        shutil.copy(out / name, outside / name)  # the same bytes: a link a check by size and sha256 would pass
        (out / name).unlink()
        (out / name).symlink_to(outside / name)
    kept_outside = {p.name: p.read_bytes() for p in outside.iterdir()}

    code, err = run_cli(*convert_args(sample, out, *SMALL_LAYOUT, *FORMATS, "--quiet"))

    assert code == 0, err
    for name in kept_outside:
        assert not (out / name).is_symlink() and (out / name).is_file(), f"{name} is still a link"
    assert result_files(out) == before
    assert {p.name: p.read_bytes() for p in outside.iterdir()} == kept_outside  # never written through


def test_a_saved_index_reached_through_a_link_is_not_read_back(sample, finished, tmp_path):
    out, before = finished
    saved = next((out / ".streamprep").glob("index-*"))
    copy = tmp_path / saved.name
    shutil.copy(saved, copy)
    saved.unlink()
    saved.symlink_to(copy)
    (out / "train-00001-of-00004").unlink()

    code, err = run_cli(*convert_args(sample, out, *SMALL_LAYOUT, *FORMATS))

    assert code == 0, err
    assert "symbolic link" in err and "walking the downloads again" in err, err
    assert "reused the one saved by an earlier run" not in err
    assert result_files(out) == before


def test_overwrite_that_meets_a_folder_at_a_final_name_changes_nothing(sample, finished):
    out, before = finished
    (out / "train-00003-of-00004").unlink()
    (out / "train-00003-of-00004").mkdir()
    untouched = {n: b for n, b in before.items() if n != "train-00003-of-00004"}

    code, err = run_cli(*convert_args(sample, out, "--train-shards", "8", "--validation-shards", "2",
                                      "--classic-threads", "2", *FORMATS, "--overwrite", "--quiet"))

    assert code == 2 and err.count("\n") == 1, err
    assert "train-00003-of-00004: is a folder" in err and "nothing was changed" in err, err
    assert {n: b for n, b in result_files(out).items() if n in untouched} == untouched
    assert set(untouched) <= set(result_files(out))


def test_another_tfds_versions_folder_beside_ours_is_neither_refused_nor_removed(tmp_path):
    out = tmp_path / "out"
    config = ROOT / "configs" / "sample-tfds.toml"
    code, err = run_cli("convert", "--config", config, "--out", out, "--quiet")
    assert code == 0, err
    other = out / "imagenet2012" / "5.0.0"
    shutil.copytree(out / "imagenet2012" / "5.1.0", other)  # a `tfds build` of another release, in ~/tensorflow_datasets
    theirs = {p.name: p.read_bytes() for p in other.iterdir()}

    code, err = run_cli("convert", "--config", config, "--out", out, "--quiet")  # the same conversion: resumes
    assert code == 0, err
    code, err = run_cli("convert", "--config", config, "--out", out, "--tfds-shards", "2", "--overwrite", "--quiet")
    assert code == 0, err

    assert {p.name: p.read_bytes() for p in other.iterdir()} == theirs
    assert len(list((out / "imagenet2012" / "5.1.0").glob("*.tfrecord-*-of-00002"))) == 4


def test_a_stray_file_at_the_end_of_a_run_leaves_every_finished_shard_listed(sample, tmp_path):
    """The run stops on a file another program put into `out` (a complete manifest is never written beside it),
    and the journal still lists every shard the run finished, so a rerun keeps them."""
    from streamprep import Options, convert
    from streamprep.errors import OutputError

    out = tmp_path / "out"
    stray = out / "train-00009-of-00010"

    def put_a_stray_file_when_the_shards_are_written(event):
        if event.kind == "end" and event.phase == "write train":
            stray.write_bytes(b"another program's file")

    options = Options(train=str(sample["train"]), val=str(sample["val"]), bbox=str(sample["bbox"]),
                      validation_labels_file=str(sample["val_labels"]), out=str(out), train_shards=4,
                      validation_shards=2, classic_threads=2)
    with pytest.raises(OutputError, match="not written by this run"):
        convert(options, progress=put_a_stray_file_when_the_shards_are_written)

    manifest = json.loads((out / "manifest.json").read_text())
    on_disk = sorted(p.name for p in out.iterdir() if p.name.startswith(("train-0000", "validation-")) and p != stray)
    assert manifest["complete"] is False
    assert sorted(s["name"] for s in manifest["shards"]) == on_disk and len(on_disk) == 6


def test_verify_of_an_array_record_output_without_array_record_installed_is_one_line_naming_the_extra(tmp_path):
    out = tmp_path / "out"
    code, err = run_cli("convert", "--config", ROOT / "configs" / "sample-tfds.toml", "--out", out,
                        "--file-format", "array_record", "--quiet")
    assert code == 0, err

    done = run_python("import sys; sys.modules['array_record'] = None\n"
                      f"from streamprep.cli import main; sys.exit(main(['verify', {str(out)!r}, '--quiet']))")

    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "streamprep[tfds]" in done.stderr, done.stderr


def test_verify_decode_reports_a_tfds_record_whose_image_is_empty(tmp_path, capsys):
    from tfds_members import odd_downloads

    downloads = odd_downloads(tmp_path / "dl")
    out = tmp_path / "out"
    code, err = run_cli("convert", "--train", downloads["train"], "--val", downloads["val"], "--bbox",
                        downloads["bbox"], "--out", out, "--format", "tfds", "--quiet")
    assert code == 0, err
    capsys.readouterr()

    assert run_cli("verify", out)[0] == 0  # what `tfds build` writes, a readme and an empty file included
    code, _ = run_cli("verify", "--decode", out)
    report = capsys.readouterr().out

    assert code == 1
    assert "empty.JPEG" in report and "is empty: nothing to decode" in report, report


@pytest.mark.parametrize("argv, meant", [
    (["convert", "--overwrit"], "--overwrite"),
    (["verify", "--decod", "x"], "--decode"),
])
def test_an_abbreviated_flag_is_a_mistyped_flag_never_taken_for_the_whole(argv, meant):
    code, err = run_cli(*argv)
    assert code == 2 and f"did you mean {meant}?" in err, err

