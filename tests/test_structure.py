"""The seams and single definitions: the option table, errors never retried, stop and warnings, one manifest.

The format seam and its registry: tests/test_format_registry.py.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import re
import threading
from pathlib import Path

import pytest

from helpers import ROOT, SMALL_LAYOUT, SMALL_OPTIONS, convert_args, result_files, run_cli


# --------------------------------------------------------------------------------------------- the option table

def test_every_option_has_one_flag_one_config_key_and_its_help_in_convert_help():
    from streamprep.cli import parser
    from streamprep.options import Option, fields

    text = parser()._subparsers._group_actions[0].choices["convert"].format_help()  # noqa: SLF001
    for f in fields():
        spec = f.metadata["option"]
        shown = f.metadata["option"].metavar if spec.positional else Option.flag(f.name).replace("_", "-")
        if f.name == "storage_options":
            shown = "--storage-option"
        assert shown in text, f"{f.name} has no flag in `convert --help`"
        assert spec.help.split()[0] in text


def test_the_manifest_shows_exactly_the_options_marked_for_it(converted_sample):
    from streamprep.options import fields

    shown = json.loads((converted_sample / "manifest.json").read_text())["options"]
    assert list(shown) == [f.name for f in fields() if f.metadata["option"].manifest]
    assert "storage_options" not in shown and "workers" not in shown  # credentials; no effect on the bytes


def test_a_config_file_accepts_every_option_by_its_long_flag_name(tmp_path):
    from streamprep.options import Option, fields, load_config, make_options
    from streamprep import datasets
    from streamprep.outputs import registry

    values = {"downloads": "dl", "out": "o", "train-shards": 16, "validation-shards": 8, "classic-threads": 4,
              "labels-file": "s.txt", "metadata-file": "m.txt", "validation-labels-file": "v.txt", "check-md5": True,
              "on-bad-image": "skip", "on-bad-xml": "skip", "check-decode": True, "workers": 3, "engine": "local",
              "overwrite": True, "timeout": 5, "connect-timeout": 2.5, "no-space-check": True,
              "materialize": "tree", "format": "webdataset,tfrecord", "dali-index": True, "equal-shards": True,
              "dataset": "ilsvrc2012", "checksum": "sha256", "resize": "short-edge=256", "encode": "jpeg:80",
              "min-side": 32}
    # each format's own options (`Format.options`), at their defaults but for one of a chosen format
    values |= {Option.key(name): spec.default for name, spec in registry.own_options().items()} | {"wids-index": True}
    values |= {Option.key(name): spec.default for name, (_, spec) in datasets.own_options().items()}  # the datasets'
    assert set(values) | {"train", "val", "bbox", "bbox-val", "storage-options"} == \
        {Option.key(f.name) for f in fields()}
    lines = [f"{k} = {json.dumps(v)}" for k, v in values.items()] + ["[storage-options.s3]", 'anon = true']
    config = tmp_path / "c.toml"
    config.write_text("\n".join(lines) + "\n")

    options = make_options(load_config(str(config)))

    assert (options.train_shards, options.workers, options.skip_bad_images, options.check_md5) == (16, 3, True, True)
    assert options.train == str(tmp_path / "dl" / "ILSVRC2012_img_train.tar")  # relative to the config file
    assert options.materialize == str(tmp_path / "tree") and options.storage_options["s3"] == {"anon": True}
    assert options.storage_options["timeouts"] == {"connect": 2.5, "read": 5.0}
    assert options.formats == ("tfrecord", "webdataset") and options.dali_index  # one order, whatever was given
    assert options.wids_index and options.sharding.equal and options.checksum == "sha256"
    assert (options.recipe.spec(), options.recipe.encode, options.recipe.min_side) == ("short-edge=256", "jpeg:80", 32)


@pytest.mark.parametrize("kwargs, message", [
    ({"workers": 0}, r"workers \(--workers\) must be at least 1"),
    ({"train_shards": 10}, "not a multiple of --classic-threads"),
    ({"on_bad_image": "ignore"}, r"on_bad_image \(--on-bad-image\) must be one of fail, skip"),
    ({"train_shards": "8"}, "must be an integer"),
    ({"out": None}, "no out given"),
    ({"materialize": "s3://b/tree"}, "local folder only"),
    ({"format": "tfrecord,orc"}, r"format \(--format\) 'tfrecord,orc': unknown format 'orc'; known: "
                                 "tfrecord, webdataset"),
    ({"format": "webdataset,webdataset"}, "a format named twice"),
    ({"format": "tfds,tfrecord"}, "tfds has an order and sharding of its own"),
    ({"file_format": "array_record"}, r"file_format \(--file-format array_record\) is an option of --format tfds"),
    ({"format": "tfds", "dali_index": True}, "--format tfds has none"),
    ({"format": "tfds", "engine": "beam"}, "runs on the local engine"),
    ({"format": "tfds", "file_format": "parquet"}, "must be tfrecord or array_record"),
], ids=["workers", "multiple", "policy", "type", "nothing-to-do", "remote-tree", "unknown-format", "format-twice",
        "tfds-with-another", "file-format-without-tfds", "tfds-dali", "tfds-beam", "tfds-file-format"])
def test_options_made_in_python_are_checked_as_the_cli_checks_them(kwargs, message):
    from streamprep import ConfigError, Options

    with pytest.raises(ConfigError, match=message):
        Options(**{"downloads": "dl", "out": "o", **kwargs})


def test_options_in_python_take_shard_counts_and_policies():
    from streamprep import Options, Policy

    options = Options(downloads="dl", out="o", train_shards=16, validation_shards=8, on_bad_image="skip")
    assert options.sharding.train_shards == 16 and options.on_bad_image is Policy.SKIP
    assert options.val == "dl/ILSVRC2012_img_val.tar"


def test_no_shards_clears_the_output_given_in_a_config_file(tmp_path):
    from streamprep.cli import parser
    from streamprep.cli.commands import _values

    config = tmp_path / "c.toml"
    config.write_text('downloads = "dl"\nout = "o"\nmaterialize = "tree"\n')
    values = _values(parser().parse_args(["convert", "--config", str(config), "--no-shards"]))
    assert values["out"] is None and values["materialize"] == str(tmp_path / "tree")


# --------------------------------------------------------------------------------------------- errors and retries

def test_a_streamprep_error_is_never_retried_whatever_caused_it():
    from streamprep.archives import retry
    from streamprep.errors import ArchiveError

    calls = []

    def corrupt():
        calls.append(1)
        try:
            raise ConnectionResetError("a transient-looking cause")
        except ConnectionResetError as e:
            raise ArchiveError("x.tar.gz: cannot decompress; fetch it again") from e

    with pytest.raises(ArchiveError) as raised:
        retry.call(lambda: "x", corrupt)
    assert len(calls) == 1
    assert isinstance(raised.value.__cause__, ConnectionResetError)  # the cause is kept for library users


def test_a_corrupt_gzip_reports_its_cause_and_is_read_once(tmp_path, monkeypatch):
    import random
    import tarfile

    from streamprep.archives.storage import Source
    from streamprep.errors import ArchiveError
    from streamprep.index import boxwalk
    from streamprep.index.images import Ignored

    raw = io.BytesIO()
    rng = random.Random(1)
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for k in range(20):
            data = b"<annotation>" + bytes(rng.getrandbits(8) for _ in range(2000)).hex().encode() + b"</annotation>"
            info = tarfile.TarInfo(f"n01440764/n01440764_{k}.xml")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    packed = bytearray(gzip.compress(raw.getvalue()))
    packed[-8] ^= 0xFF  # the CRC in the gzip trailer: every byte decompresses, the stream is still corrupt
    path = tmp_path / "bbox.tar.gz"
    path.write_bytes(bytes(packed))
    walks = []
    real = boxwalk.gzip_members
    monkeypatch.setattr(boxwalk, "gzip_members", lambda *a, **k: walks.append(1) or real(*a, **k))

    with pytest.raises(ArchiveError, match="cannot decompress") as raised:
        boxwalk.index_boxes(Source(str(path)), Ignored())

    assert len(walks) == 1, "a corrupt gzip stream was read again as if storage had failed"
    assert raised.value.__cause__ is not None  # zlib's or gzip's own error, kept for library users


# --------------------------------------------------------------------------------------------- stop and warnings

def test_setting_the_stop_event_cancels_a_conversion_and_keeps_no_partial_file(sample, tmp_path):
    from streamprep import Options, Stopped, convert

    stop = threading.Event()
    seen = []

    def progress(event):
        seen.append(event)
        if event.kind == "advance" and event.phase == "write train":
            stop.set()

    options = Options(train=str(sample["train"]), val=str(sample["val"]), bbox=str(sample["bbox"]),
                      validation_labels_file=str(sample["val_labels"]), out=str(tmp_path / "out"),
                      train_shards=8, validation_shards=2, classic_threads=2, workers=1)
    with pytest.raises(Stopped):
        convert(options, progress, stop)
    names = [p.name for p in (tmp_path / "out").iterdir()]
    assert not [n for n in names if n.endswith(".tmp")], names
    assert len([n for n in names if n.startswith("train-")]) < 8
    assert any(e.phase == "write train" for e in seen)

    code, err = run_cli(*convert_args(sample, tmp_path / "out", "--train-shards", "8", "--validation-shards", "2",
                                      "--classic-threads", "2", "--quiet"))  # the same command resumes
    assert code == 0, err
    assert len([p for p in (tmp_path / "out").iterdir() if p.name.startswith("train-")]) == 8


def test_throttling_progress_changes_nothing_but_progress(sample, tmp_path):
    """Cancellation no longer rides on progress events: a callback that drops them all still converts."""
    from streamprep import Options, convert

    options = Options(train=str(sample["train"]), val=str(sample["val"]), bbox=str(sample["bbox"]),
                      validation_labels_file=str(sample["val_labels"]), out=str(tmp_path / "out"),
                      **SMALL_OPTIONS)
    summary = convert(options, lambda event: None)
    assert summary.manifest is not None and summary.manifest.complete
    assert summary.images_written == 44


def short_labels(tmp_path):
    """Downloads whose validation labels file lists one of three images: a warning's worth."""
    from fixtures import builders
    from tiny import A, write_tiny

    return write_tiny(tmp_path / "dl", val_labels=[A], val={
        f"ILSVRC2012_val_{i:08d}.JPEG": builders.jpeg(9, 9, seed=i) for i in (3, 1, 2)})


def test_warnings_go_to_logging_and_the_library_prints_nothing(tmp_path, capfd, caplog):
    from streamprep import Options, convert

    sample = short_labels(tmp_path)
    options = Options(train=str(sample["train"]), val=str(sample["val"]), bbox=str(sample["bbox"]),
                      validation_labels_file=str(sample["val_labels"]), out=str(tmp_path / "out"),
                      **SMALL_OPTIONS)
    with caplog.at_level(logging.WARNING, logger="streamprep"):
        convert(options)
    assert any("not in the validation labels file" in r.getMessage() for r in caplog.records)
    assert all(r.name.startswith("streamprep") for r in caplog.records)
    out, err = capfd.readouterr()
    assert out == "" and "not in the validation labels file" not in err


def test_the_cli_shows_warnings_as_one_line_each(tmp_path):
    code, err = run_cli(*convert_args(short_labels(tmp_path), tmp_path / "out", *SMALL_LAYOUT))
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("streamprep: warning:")]
    assert len(warnings) == 1 and "not in the validation labels file" in warnings[0]


# --------------------------------------------------------------------------------------------- one summary, one manifest

def test_the_local_and_beam_engines_share_one_summary_type():
    from streamprep.engines import local, pipeline

    assert local.convert.__annotations__["return"] in ("Summary", pipeline.Summary)
    source = (ROOT / "streamprep" / "engines" / "beam.py").read_text()
    assert "-> Summary:" in source and "class Summary" not in source and "format_summary" not in source


def test_the_manifest_round_trips_through_its_model(converted_sample):
    from streamprep.outputs.manifest import Manifest

    raw = (converted_sample / "manifest.json").read_bytes()
    assert Manifest.parse(json.loads(raw)).to_bytes() == raw


@pytest.mark.parametrize("change", [
    lambda m: m["shards"][0].update(records="three"),
    lambda m: m["shards"][0].update({m["checksum"]: None}),
    lambda m: m.update(shards={"not": "a list"}),
    lambda m: m.update(run=["x"]),
], ids=["records", "digest", "shards", "run"])
def test_a_manifest_with_wrong_value_types_is_named_unusable_and_nothing_is_touched(sample, tmp_path, change):
    out = tmp_path / "out"
    code, err = run_cli(*convert_args(sample, out, *SMALL_LAYOUT, "--quiet"))
    assert code == 0, err
    before = result_files(out)
    manifest = json.loads((out / "manifest.json").read_text())
    change(manifest)
    damaged = json.dumps(manifest)
    (out / "manifest.json").write_text(damaged)

    code, err = run_cli(*convert_args(sample, out, *SMALL_LAYOUT))

    assert code == 2 and "its manifest.json is unusable" in err and "Remove them" in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert result_files(out) == before and (out / "manifest.json").read_text() == damaged


def test_the_readme_option_table_names_every_option():
    from streamprep.options import Option, fields

    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("| option | default | meaning |"):]
    table = table[:table.index("\n\n")]
    for f in fields():
        spec = f.metadata["option"]
        shown = spec.metavar if spec.positional else Option.flag(f.name)
        if f.name == "storage_options":
            shown = "--storage-option"
        assert f"`{shown}`" in table, f"README's option table lacks {shown}"
        if spec.off_flag:
            assert f"`{spec.off_flag}`" in table


def test_the_fix_up_files_are_found_by_name_even_between_other_names_in_the_blob():
    """`Plan.fixup_sizes` searches the index's name blob: a fix-up name found, one only overlapping two names not."""
    import numpy as np

    from streamprep.index.boxes import BoxTable
    from streamprep.index.images import DatasetIndex, Ignored, SplitIndex
    from streamprep.index.nametable import NameTable
    from streamprep.index.labels import load_label_data
    from streamprep.plan import Sharding, make_plan
    from streamprep.records.fixups import CMYK_NAMES, PNG_NAME

    cmyk = sorted(CMYK_NAMES)
    names = ["n01739381_13", "09.JPEG", cmyk[0], "x_" + PNG_NAME, "n00000000_1.JPEG", cmyk[1]]
    index = SplitIndex("train", "t.tar", NameTable.of(names), np.ones(len(names), np.int32),
                       np.arange(len(names), dtype=np.int64), np.arange(10, 10 + len(names), dtype=np.int64))
    empty = SplitIndex("validation", "v.tar", NameTable.of([]), np.zeros(0, np.int32), np.zeros(0, np.int64),
                       np.zeros(0, np.int64))
    plan = make_plan(DatasetIndex((empty, index), BoxTable.empty(), Ignored()), load_label_data(),
                     Sharding(8, 8, 8))
    assert sorted(plan.fixup_sizes()) == sorted([(cmyk[0], 12), ("x_" + PNG_NAME, 13), (cmyk[1], 15)])


# --------------------------------------------------------------------------------------------- the documented design

def design_tree() -> set[str]:
    """The module tree docs/design.md draws, as paths under streamprep/ (a package by its folder)."""
    text = (ROOT / "docs" / "design.md").read_text()
    block = text[text.index("```\nstreamprep/\n") + len("```\nstreamprep/\n"):]
    block = block[:block.index("```")]
    paths, parents = set(), []
    for line in block.splitlines():
        depth = (len(line) - len(line.lstrip(" "))) // 2
        parents = parents[:depth - 1] + [line.split()[0].rstrip("/")]
        paths.add("/".join(parents))
    return paths


def code_tree() -> set[str]:
    """Every module under streamprep/, a subpackage's __init__.py by its folder."""
    package = ROOT / "streamprep"
    paths = set()
    for path in package.rglob("*.py"):
        relative = path.relative_to(package)
        subpackage = path.name == "__init__.py" and relative.parent != Path(".")
        paths.add(relative.parent.as_posix() if subpackage else relative.as_posix())
    return paths


def test_the_design_pages_module_tree_names_every_module_and_no_other():
    drawn, code = design_tree(), code_tree()
    assert {"errors.py", "archives", "archives/storage.py", "cli/report.py"} <= drawn  # the tree was read
    assert sorted(code - drawn) == [], "modules missing from docs/design.md's tree"
    assert sorted(drawn - code) == [], "docs/design.md's tree names modules that do not exist"


def test_the_engine_seam_names_only_steps_the_driver_and_its_engines_have():
    from streamprep.cli import commands, report
    from streamprep.engines import driver, local, output_folder, pipeline, readers
    from streamprep.outputs import format as output_format

    text = (ROOT / "docs" / "design.md").read_text()
    section = text[text.index("### The engine seam"):]
    section = section[:section.index("\n## ")]
    named = set(re.findall(r"`([a-z_]+)`", section))
    assert {"open_inputs", "make_job", "walk", "write", "look_at_output", "claim_output", "release_output",
            "finish"} <= named
    where = (driver.Conversion, driver.Engine, local.LocalEngine, local, pipeline, output_folder, readers,
             output_format, report, commands)
    assert sorted(n for n in named if not any(hasattr(w, n) for w in where)) == []
