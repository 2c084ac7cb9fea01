"""The command line: inputs, config files and flags, progress and summary, exit status."""

from __future__ import annotations

import importlib.util
import io
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ROOT, SMALL, convert_args, run_cli, run_cli_out
from tiny import write_tiny



def shards(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if "-of-" in p.name)


def test_downloads_folder_finds_the_three_official_names(tmp_path):
    paths = write_tiny(tmp_path / "dl")
    code, err = run_cli("convert", tmp_path / "dl", "--out", tmp_path / "out", "--validation-labels-file",
                        paths["val_labels"], *SMALL, "--quiet")
    assert code == 0, err
    assert shards(tmp_path / "out") == ["train-00000-of-00002", "train-00001-of-00002", "validation-00000-of-00001"]
    assert (tmp_path / "out" / "bboxes.csv").read_text() == "n01440764_1.JPEG,0.0588,0.0833,0.5882,0.8333\n"


def test_flags_override_the_config_file_and_config_paths_are_relative_to_it(tmp_path):
    paths = write_tiny(tmp_path / "dl")
    config = tmp_path / "conf" / "c.toml"
    config.parent.mkdir()
    config.write_text('downloads = "../dl"\nvalidation-labels-file = "../dl/validation_labels.txt"\n'
                      'train-shards = 4\nvalidation-shards = 2\nclassic-threads = 2\n')
    code, err = run_cli("convert", "--config", config, "--out", tmp_path / "out", "--train-shards", "6", "--quiet")
    assert code == 0, err
    assert len([n for n in shards(tmp_path / "out") if n.startswith("train-")]) == 6
    assert len([n for n in shards(tmp_path / "out") if n.startswith("validation-")]) == 2
    assert paths["train"].exists()


def test_sample_config_converts_the_bundled_sample(tmp_path):
    code, err = run_cli("convert", "--config", ROOT / "configs" / "sample.toml", "--out", tmp_path / "out")
    assert code == 0, err
    assert len(shards(tmp_path / "out")) == 8 + 4
    assert "train             31 images in 8 shards" in err
    assert "fix-ups            3" in err


def test_classic_config_holds_the_classic_defaults():
    from streamprep.options import load_config

    assert load_config(str(ROOT / "configs" / "classic.toml")) == {
        "train_shards": 1024, "validation_shards": 128, "classic_threads": 8}


def test_progress_is_plain_lines_when_stderr_is_not_a_terminal(sample, tmp_path):
    code, err = run_cli(*convert_args(sample, tmp_path / "out", *SMALL))
    assert code == 0
    for phase in ("bounding boxes", "index validation", "index train", "write validation", "write train"):
        assert f"{phase}: started" in err and f"{phase}: done" in err
    assert "write train: done, 31/31 images" in err
    summary = err[err.index("streamprep: wrote"):]
    for text in ("validation        13 images in 1 shards, 5 classes", "bboxes.csv", "ignored members:",
                 "validation member not listed in the validation labels file", "wall time", "images/s"):
        assert text in summary


def test_quiet_prints_nothing_on_success(sample, tmp_path):
    assert run_cli(*convert_args(sample, tmp_path / "out", *SMALL, "--quiet")) == (0, "")


def test_storage_options_are_grouped_by_protocol():
    from streamprep.cli import parser
    from streamprep.cli.commands import _values

    args = parser().parse_args(["convert", "--out", "x", "--storage-option", "s3.endpoint_url=http://127.0.0.1:1",
                                "--storage-option", "s3.anon=true"])
    assert _values(args)["storage_options"] == {"s3": {"endpoint_url": "http://127.0.0.1:1", "anon": True}}


def test_each_url_gets_only_its_own_protocols_options():
    from streamprep.archives.storage import options_for

    options = {"s3": {"anon": True}, "http": {"block_size": 0}, "memory": {}}
    assert options_for("s3://b/k", options) == {"anon": True}
    assert options_for("s3a://b/k", options) == {"anon": True}
    assert options_for("https://h/x", options) == {"block_size": 0}
    assert options_for("/local/path", options) == {}


@pytest.mark.parametrize("argv, message", [
    (["convert", "--out", "o"], "no train given (--train); pass it, or a DOWNLOADS folder"),
    (["convert", "dl"], "no out given (--out): pass the folder"),
    (["convert", "dl", "--out", "o", "--train-shards", "10", "--classic-threads", "4"], "not a multiple of --classic-threads"),
    (["convert", "dl", "--out", "o", "--workers", "0"], "workers (--workers) must be at least 1"),
    (["convert", "dl", "--out", "o", "--config", "nope.toml"], "config file nope.toml not found"),
], ids=["no-inputs", "no-out", "shards-not-multiple-of-threads", "zero-workers", "missing-config"])
def test_bad_options_exit_non_zero_with_the_fix(argv, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, err = run_cli(*argv)
    assert code == 2
    assert message in err and err.startswith("streamprep: error:")


def test_unknown_config_key_is_named(tmp_path):
    (tmp_path / "c.toml").write_text("train_shards = 4\n")
    code, err = run_cli("convert", "--config", tmp_path / "c.toml", "--out", tmp_path / "o")
    assert code == 2 and "unknown key(s) train_shards" in err


@pytest.mark.skipif(importlib.util.find_spec("gcsfs") is not None, reason="gcsfs is installed")
def test_missing_backend_names_the_extra_to_install(tmp_path):
    code, err = run_cli("convert", "gs://bucket/downloads", "--out", tmp_path / "o")
    assert code == 2 and "install streamprep[gcs]" in err


@pytest.mark.parametrize("command", [["streamprep"], [sys.executable, "-m", "streamprep"]], ids=["script", "module"])
def test_entry_points_run(command):
    script = Path(sys.executable).parent / "streamprep"
    if command == ["streamprep"]:
        command = [str(script)]
    result = subprocess.run([*command, "convert", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    for flag in ("--train-shards", "--validation-shards", "--classic-threads", "--labels-file", "--metadata-file",
                 "--validation-labels-file", "--out", "--workers", "--train", "--val", "--bbox", "--quiet"):
        assert flag in result.stdout
    assert "(default: 1024 for ilsvrc2012: the --dataset's default plan)" in " ".join(result.stdout.split())


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_draws_bars_with_rate_and_eta_on_a_terminal(sample, tmp_path):
    from streamprep.cli import main

    err = Terminal()
    assert main([str(a) for a in convert_args(sample, tmp_path / "out", *SMALL)], stderr=err) == 0
    text = err.getvalue()
    assert "write train: 100%" in text and "31/31" in text and "MB/s" in text
    assert "index train: 100%" in text and "31 images" in text
    assert "<" in text  # tqdm's elapsed<remaining (ETA) field
    assert "streamprep: wrote" in text


def test_config_file_sets_the_checks_and_bad_input_policies(tmp_path):
    from streamprep.options import load_config, make_options

    config = tmp_path / "c.toml"
    config.write_text('downloads = "dl"\nout = "o"\ncheck-md5 = true\non-bad-image = "skip"\non-bad-xml = "fail"\n')
    options = make_options(load_config(str(config)))
    assert (options.check_md5, options.on_bad_image, options.on_bad_xml) == (True, "skip", "fail")


@pytest.mark.parametrize("line", ['on-bad-image = "ignore"', 'check-md5 = "yes"'], ids=["bad-policy", "not-a-bool"])
def test_config_file_with_a_wrong_check_value_is_refused_naming_the_key(tmp_path, line):
    from streamprep.options import load_config
    from streamprep.errors import ConfigError

    config = tmp_path / "c.toml"
    config.write_text(line + "\n")
    with pytest.raises(ConfigError, match=line.split(" ")[0]):
        load_config(str(config))


@pytest.mark.parametrize("flag", ["--config", "--labels-file", "--metadata-file", "--validation-labels-file"])
def test_a_folder_where_a_file_belongs_is_a_one_line_error(flag, tmp_path):
    code, err = run_cli("convert", ROOT / "tests" / "fixtures" / "sample", "--out", tmp_path / "out", flag, tmp_path,
                        "--quiet")
    assert code == 2 and "is a folder" in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("beam_args, message", [
    (["--runner=DataflowRunner"], "Missing required option: project"),
    (["--runner=NoSuchRunner"], "Unexpected pipeline runner"),
], ids=["dataflow-without-project", "unknown-runner"])
def test_beam_pipeline_options_beam_rejects_are_a_one_line_error_before_anything_is_written(beam_args, message,
                                                                                             tmp_path):
    pytest.importorskip("apache_beam")
    code, err = run_cli("convert", "--config", ROOT / "configs" / "sample.toml", "--out", tmp_path / "out",
                        "--engine", "beam", "--quiet", "--", *beam_args)
    assert code == 2 and message in err, err
    assert [line for line in err.splitlines() if line.startswith("streamprep:")] == [err.strip().splitlines()[-1]]
    assert not (tmp_path / "out").exists()


def test_an_existing_out_that_is_a_file_is_refused_before_the_downloads_are_read(tmp_path):
    (tmp_path / "out").write_text("not a folder")
    code, err = run_cli("convert", "--config", ROOT / "configs" / "sample.toml", "--out", tmp_path / "out")
    assert code == 2 and "index" not in err and "cannot" in err, err


def test_a_resumed_run_reports_no_speed_for_the_shards_it_kept(sample, tmp_path):
    assert run_cli(*convert_args(sample, tmp_path / "out", *SMALL, "--quiet"))[0] == 0
    code, err = run_cli(*convert_args(sample, tmp_path / "out", *SMALL))
    assert code == 0, err
    assert "write train: done, 0 images" in err and "31 images kept from an earlier run" in err
    assert "wall time" in err and "images/s" not in err and "MB/s of images" not in err


def test_events_of_a_phase_that_ended_draw_nothing_more():
    from streamprep.cli.report import Reporter
    from streamprep.progress import Event

    stream = Terminal()
    reporter = Reporter(stream, bars=True)
    reporter(Event("start", "write train", total=10))
    reporter(Event("advance", "write train", items=10))
    reporter(Event("end", "write train"))
    drawn = stream.getvalue()
    reporter(Event("advance", "write train", items=3))  # a late event from a thread finishing
    assert stream.getvalue() == drawn


def test_the_example_config_names_every_option_and_its_defaults_load_back(tmp_path):
    import re

    from streamprep.options import Option, Options, fields, load_config, make_options

    code, out, err = run_cli_out("config", "--example")
    assert code == 0, err
    for f in fields():
        assert f"# {Option.key(f.name)}" in out or f.name == "storage_options"
    assert "[storage-options.s3]" in out
    settings = [line[2:] for line in out.splitlines()
                if re.match(r"# [a-z-]+ = ", line) and "PATH-OR-URL" not in line and not line.startswith("# shards")]
    config = tmp_path / "c.toml"
    config.write_text("\n".join(settings) + '\ndownloads = "dl"\nout = "o"\n')
    options = make_options(load_config(str(config)))
    defaults = Options(downloads=str(tmp_path / "dl"), out=str(tmp_path / "o"))
    assert options == defaults


def test_the_console_script_imports_nothing_heavy_before_it_can_catch_ctrl_c():
    """A Ctrl-C while the command starts is one line and exit status 130 only if the module the console
    script imports first is quick to import: nothing of numpy, fsspec or TensorFlow before `main` runs."""
    import subprocess
    import sys

    code = ("import sys; import streamprep.cli; heavy = [m for m in ('numpy', 'fsspec', 'tensorflow', 'lxml') "
            "if m in sys.modules]; print(heavy)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


@pytest.mark.parametrize("extra, message", [
    (["--storage-option", "s3.client_kwargs=5"], "s3.client_kwargs must be a table"),
    (["--storage-option", "s3.client_kwargs=[1,2]"], "s3.client_kwargs must be a table"),
    (["--train-shards", "99999999999999999999", "--classic-threads", "1"], "must be from 1 to 100,000"),
    (["--train-shards", "80000000", "--classic-threads", "1"], "must be from 1 to 100,000"),
    (["--timeout", "inf"], "at most 86,400"),
    (["--connect-timeout", "0"], "more than 0"),
], ids=["client-kwargs-int", "client-kwargs-list", "shards-overflow", "shards-huge", "timeout-inf", "timeout-0"])
def test_options_of_the_wrong_shape_or_size_are_one_line_errors(tmp_path, extra, message):
    code, err = run_cli("convert", ROOT / "tests" / "fixtures" / "sample", "--out", tmp_path / "out", *extra)
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


def test_a_config_file_that_is_not_text_is_a_one_line_error(tmp_path):
    (tmp_path / "c.toml").write_bytes(b"\xff\xfe\x00garbage")
    code, err = run_cli("convert", "--config", tmp_path / "c.toml", "--out", tmp_path / "out")
    assert code == 2 and "is not UTF-8 text" in err and err.count("\n") == 1, err


def test_a_config_table_of_storage_options_of_the_wrong_shape_is_refused(tmp_path):
    (tmp_path / "c.toml").write_text('downloads = "dl"\nout = "o"\n[storage-options]\ns3 = 5\n')
    code, err = run_cli("convert", "--config", tmp_path / "c.toml")
    assert code == 2 and "must be a table of settings" in err, err


@pytest.mark.parametrize("command", ["convert", "verify"])
def test_a_manifest_nested_too_deep_to_parse_is_unusable_not_a_crash(sample, tmp_path, command):
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    (out / "train-00000-of-00001").write_bytes(b"")
    if command == "convert":
        code, err = run_cli(*convert_args(sample, out, "--quiet"))
        assert code == 2 and "manifest.json is unusable" in err, err
    else:
        code, err = run_cli("verify", out, "--quiet")
        assert code in (1, 2) and "Traceback" not in err, err


@pytest.mark.parametrize("argv", [["convert", "--train-shards", "2.5", "--out", "x"], ["convert", "--out"],
                                  ["convert", "--on-bad-image", "sometimes"], ["no-such-command"]],
                         ids=["not-an-int", "missing-value", "bad-choice", "unknown-command"])
def test_command_line_mistakes_are_one_line_errors(argv):
    code, err = run_cli(*argv)
    assert code == 2 and err.startswith("streamprep: error:") and err.count("\n") == 1 and "--help" in err, err


def test_inspect_of_an_empty_file_is_a_one_line_error(tmp_path):
    (tmp_path / "empty").write_bytes(b"")
    code, out, err = run_cli_out("inspect", tmp_path / "empty")
    assert code == 2 and "an empty file" in err and out == "", err
