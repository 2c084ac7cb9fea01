"""The first hour (issue 21): the mistakes a new user makes are one line saying what to do, and a run reads well."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import shutil
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from helpers import ROOT, SMALL, convert_args, run_cli, run_cli_out, run_python
from tiny import A, B, write_tiny

SAMPLE = ROOT / "tests" / "fixtures" / "sample"
SAMPLE_CONFIG = ROOT / "configs" / "sample.toml"
TRAIN_TAR = "ILSVRC2012_img_train.tar"


def without(modules: list[str], argv: list[str]) -> subprocess.CompletedProcess:
    """`streamprep ARGV` in a fresh interpreter where `modules` cannot be imported, as if not installed."""
    hide = "".join(f"sys.modules[{m!r}] = None\n" for m in modules)
    return run_python(f"import sys\n{hide}from streamprep.cli import main\nsys.exit(main({[str(a) for a in argv]!r}))")


# --------------------------------------------------------------------------------------------- a file as DOWNLOADS

def one_line_error(code: int, err: str) -> None:
    assert code == 2 and err.startswith("streamprep: error:") and err.count("\n") == 1, err
    assert "Traceback" not in err and "NotADirectoryError" not in err


@pytest.mark.parametrize("command", ["convert", "plan"])
def test_a_download_given_where_the_downloads_folder_goes_is_one_line_naming_the_flag_to_use(command, tmp_path):
    code, err = run_cli(command, SAMPLE / TRAIN_TAR, "--out", tmp_path / "out")
    one_line_error(code, err)
    assert f"DOWNLOADS {SAMPLE / TRAIN_TAR} is a file, not the folder holding the three downloads" in err
    assert f"pass it as --train {SAMPLE / TRAIN_TAR} (and --val FILE --bbox FILE for the other downloads)" in err
    assert "or pass the folder that holds ILSVRC2012_img_train.tar, ILSVRC2012_img_val.tar" in err
    assert not (tmp_path / "out").exists()


def test_a_file_of_another_name_as_downloads_asks_for_each_download_by_its_flag(tmp_path):
    code, err = run_cli("convert", SAMPLE / "validation_labels.txt", "--out", tmp_path / "out")
    one_line_error(code, err)
    assert "pass the downloads as --train FILE --val FILE --bbox FILE, or pass the folder" in err


def test_a_file_as_downloads_beside_the_other_downloads_given_names_only_the_flag_left(tmp_path):
    code, err = run_cli("convert", SAMPLE / "ILSVRC2012_img_val.tar", "--train", SAMPLE / TRAIN_TAR,
                        "--out", tmp_path / "out")
    one_line_error(code, err)
    assert f"pass it as --val {SAMPLE / 'ILSVRC2012_img_val.tar'} (and --bbox FILE for the other download)" in err


def test_a_url_of_a_file_as_downloads_is_the_same_one_line_error(tmp_path):
    import fsspec

    memory = fsspec.filesystem("memory")
    memory.pipe("/first-hour/ILSVRC2012_img_train.tar", (SAMPLE / TRAIN_TAR).read_bytes())
    try:
        code, err = run_cli("convert", "memory://first-hour/ILSVRC2012_img_train.tar", "--out", tmp_path / "out")
    finally:
        memory.rm("/first-hour", recursive=True)
    one_line_error(code, err)
    assert "DOWNLOADS memory://first-hour/ILSVRC2012_img_train.tar is a file" in err
    assert "pass it as --train memory://first-hour/ILSVRC2012_img_train.tar" in err
    assert not (tmp_path / "out").exists()


def test_an_http_url_of_a_file_as_downloads_is_the_same_one_line_error(tmp_path):
    from servers import nginx_server, require_nginx

    exe = require_nginx()
    www = tmp_path / "www"
    www.mkdir()
    shutil.copyfile(SAMPLE / TRAIN_TAR, www / TRAIN_TAR)
    with nginx_server(www, tmp_path / "nginx", exe=exe) as url:
        code, err = run_cli("plan", f"{url}/{TRAIN_TAR}", "--out", tmp_path / "out")
        missing_code, missing = run_cli("plan", f"{url}/no-such-folder", "--out", tmp_path / "out")
    one_line_error(code, err)
    assert f"DOWNLOADS {url}/{TRAIN_TAR} is a file" in err and f"pass it as --train {url}/{TRAIN_TAR}" in err
    # a folder that does not exist is not a file: the download's own error stands
    assert missing_code == 2 and f"{url}/no-such-folder/{TRAIN_TAR}: not found" in missing, missing


# --------------------------------------------------------------------------------------------- optional packages

def tfds_args(tmp_path: Path, out: Path, *extra: str) -> list:
    """`convert` of tiny downloads `--format tfds` takes whole (the sample has members TFDS would read and
    streamprep leaves out, which stop such a run before it writes anything)."""
    paths = write_tiny(tmp_path / "dl")
    return ["convert", tmp_path / "dl", "--validation-labels-file", paths["val_labels"], "--out", out, *SMALL,
            "--format", "tfds", *extra]


def test_array_record_missing_stops_before_anything_is_indexed_or_written(tmp_path):
    out = tmp_path / "out"
    done = without(["array_record"], tfds_args(tmp_path, out, "--file-format", "array_record"))
    assert done.returncode == 2, done.stderr
    assert not out.exists(), sorted(p.name for p in out.iterdir())  # no manifest.json, no .streamprep/ index
    assert done.stderr.startswith("streamprep: error: --file-format array_record needs array-record, which is not "
                                  "installed; install streamprep[tfds]"), done.stderr
    assert "index" not in done.stderr and done.stderr.count("\n") == 1


def test_array_record_missing_leaves_an_existing_out_as_it_was(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    done = without(["array_record"], tfds_args(tmp_path, out, "--file-format", "array_record", "--quiet"))
    assert done.returncode == 2
    assert sorted(p.name for p in out.iterdir()) == []
    assert "install streamprep[tfds]" in done.stderr, done.stderr


def test_the_same_tfds_conversion_runs_with_array_record_installed(tmp_path):
    """The two tests above can fail: these downloads convert to ArrayRecord once the package is there."""
    pytest.importorskip("array_record")
    out = tmp_path / "out"
    code, err = run_cli(*tfds_args(tmp_path, out, "--file-format", "array_record", "--quiet"))
    assert code == 0, err
    assert any(".array_record-" in p.name for p in out.rglob("*"))


def test_every_missing_package_of_a_run_is_named_in_one_line(tmp_path):
    done = without(["s3fs", "apache_beam"], ["plan", "--config", SAMPLE_CONFIG, "--out", "s3://bucket/out",
                                             "--engine", "beam"])
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert "--out s3://bucket/out needs s3fs" in done.stderr and "--engine beam needs apache-beam" in done.stderr
    assert "install streamprep[beam,s3]" in done.stderr


def test_plan_names_a_missing_package_as_convert_would(tmp_path):
    args = tfds_args(tmp_path, tmp_path / "out", "--file-format", "array_record")
    done = without(["array_record"], ["plan", *args[1:]])
    assert done.returncode == 2 and "install streamprep[tfds]" in done.stderr, done.stderr
    assert not (tmp_path / "out").exists()


def test_verify_decode_without_tensorflow_names_the_extra_before_reading_anything(tmp_path):
    done = without(["tensorflow"], ["verify", "--decode", tmp_path / "no-such-output"])
    assert done.returncode == 2, done.stderr
    assert "verify --decode" in done.stderr and "install streamprep[tensorflow]" in done.stderr, done.stderr


def test_the_library_checks_the_packages_too(tmp_path):
    paths = write_tiny(tmp_path / "dl")
    code = (f"import sys\nsys.modules['array_record'] = None\nfrom streamprep import Options, convert\n"
            f"from streamprep.errors import MissingDependencyError\n"
            f"try:\n    convert(Options(downloads={str(tmp_path / 'dl')!r}, out={str(tmp_path / 'out')!r}, "
            f"validation_labels_file={str(paths['val_labels'])!r}, format='tfds', file_format='array_record'))\n"
            f"except MissingDependencyError as e:\n    print(e)\n")
    done = run_python(code)
    assert "needs array-record" in done.stdout, done.stdout + done.stderr
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------------------- TFDS messages

@pytest.mark.parametrize("extra, named, unnamed", [
    (["--file-format", "array_record"], "file_format (--file-format array_record) is an option of --format tfds",
     "--tfds-shards"),
    (["--tfds-shards", "4"], "tfds_shards (--tfds-shards 4) is an option of --format tfds", "--file-format"),
    (["--tfds-shards", "4", "--file-format", "array_record"],
     "file_format (--file-format array_record) and tfds_shards (--tfds-shards 4) are options of --format tfds", None),
], ids=["file-format", "tfds-shards", "both"])
def test_a_tfds_option_without_format_tfds_names_the_option_given_and_no_other(extra, named, unnamed, tmp_path):
    code, err = run_cli("convert", SAMPLE, "--out", tmp_path / "out", *extra)
    one_line_error(code, err)
    assert named in err and "add --format tfds" in err
    assert unnamed is None or unnamed not in err


def test_tfds_of_a_training_tar_without_images_says_so_and_blames_no_option(tmp_path):
    paths = write_tiny(tmp_path / "dl", classes={A: {}, B: {}})
    code, err = run_cli("convert", tmp_path / "dl", "--out", tmp_path / "out", "--validation-labels-file",
                        paths["val_labels"], "--format", "tfds", "--quiet")
    one_line_error(code, err)
    assert f"{paths['train']}: holds no training images" in err and "--tfds-shards" not in err
    assert f"streamprep inspect {paths['train']}" in err
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------------------- the command line

@pytest.mark.parametrize("argv, wrong, meant, command", [
    (["convert", "--fromat", "tfds", "--out", "x"], "--fromat", "--format", "convert"),
    (["convert", "--fromat=tfds", "--out", "x"], "--fromat=tfds", "--format", "convert"),
    (["plan", SAMPLE, "--out", "x", "--jsno"], "--jsno", "--json", "plan"),
    (["convert", SAMPLE, "--ouy", "x"], "--ouy", "--out", "convert"),
], ids=["convert", "with-value", "plan", "out"])
def test_a_mistyped_flag_suggests_the_commands_own_flag_and_points_to_its_help(argv, wrong, meant, command):
    code, err = run_cli(*argv)
    one_line_error(code, err)
    assert f"unrecognized arguments: {wrong} (did you mean {meant}?)" in err
    assert f"see `streamprep {command} --help`" in err and "see `streamprep --help`" not in err


def test_an_argument_nothing_resembles_is_named_without_a_guess():
    code, err = run_cli("convert", SAMPLE, "--out", "x", "--zzzzzzzz")
    one_line_error(code, err)
    assert "unrecognized arguments: --zzzzzzzz; see `streamprep convert --help`" in err


def test_a_mistyped_command_suggests_the_command():
    code, err = run_cli("covnert")
    one_line_error(code, err)
    assert "(did you mean convert?)" in err and "see `streamprep --help`" in err


@pytest.mark.parametrize("argv, usage", [([], "usage: streamprep [-h]"), (["config"], "usage: streamprep config")],
                         ids=["bare", "config"])
def test_a_command_asked_nothing_prints_its_help_and_succeeds(argv, usage):
    code, out, err = run_cli_out(*argv)
    assert code == 0 and err == ""
    assert out.startswith(usage)


def test_bare_streamprep_from_the_console_script_prints_help():
    script = Path(sys.executable).parent / "streamprep"
    done = subprocess.run([str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stderr == ""
    assert "convert" in done.stdout and "usage: streamprep" in done.stdout


def test_the_help_says_what_streamprep_writes_now():
    from streamprep.cli import parser

    top = parser().format_help()
    convert = parser()._subparsers._group_actions[0].choices["convert"].format_help()  # noqa: SLF001
    for text in (top, convert):
        flat = " ".join(text.split())
        for words in ("TFRecord", "WebDataset", "DALI", "timm's _info.json", "imagenet2012"):
            assert words in flat, (words, text)


# --------------------------------------------------------------------------------------------- on a terminal

def run_on_terminal(argv: list[str], rows: int, columns: int) -> str:
    """`streamprep ARGV` with its stdin, stdout and stderr on a pseudo-terminal of this size; all it wrote."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    proc = subprocess.Popen([sys.executable, "-m", "streamprep", *map(str, argv)], stdin=slave, stdout=slave,
                            stderr=slave, env=env, cwd=ROOT, close_fds=True)
    os.close(slave)
    chunks = []
    try:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every process holding the terminal is gone
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
        proc.wait(timeout=300)
    assert proc.returncode == 0, b"".join(chunks).decode(errors="replace")
    return b"".join(chunks).decode()


def screen(text: str) -> list[str]:
    """The lines a terminal shows for `text` (carriage return, newline, cursor up; any other control sequence
    fails the test, so that one this does not know cannot hide a blank line)."""
    lines: list[list[str]] = [[]]
    row = col = 0
    pos = 0
    while pos < len(text):
        c = text[pos]
        if c == "\x1b":
            m = re.match(r"\x1b\[(\d*)A", text[pos:])
            assert m, f"a control sequence this test does not know: {text[pos:pos + 8]!r}"
            row = max(0, row - int(m[1] or 1))
            pos += len(m[0])
            continue
        if c == "\r":
            col = 0
        elif c == "\n":  # the terminal turns \n into \r\n
            row, col = row + 1, 0
        else:
            while len(lines) <= row:
                lines.append([])
            line = lines[row]
            line += [" "] * (col + 1 - len(line))
            line[col] = c
            col += 1
        while len(lines) <= row:
            lines.append([])
        pos += 1
    return ["".join(line).rstrip() for line in lines]


PHASES = ("bounding boxes", "index validation", "index train", "write validation", "write train")


@pytest.mark.parametrize("rows, columns", [(0, 0), (24, 100)], ids=["terminal-of-no-size", "24x100"])
def test_on_a_terminal_the_bars_stay_one_a_line_with_no_blank_line_before_the_summary(rows, columns, tmp_path):
    out = tmp_path / "out"
    shown = screen(run_on_terminal(["convert", "--config", SAMPLE_CONFIG, "--out", out], rows, columns))
    summary = next(i for i, line in enumerate(shown) if line.startswith("streamprep: wrote"))
    bars = shown[:summary]  # the bars start on the terminal's first line
    assert [i for i, line in enumerate(bars) if not line.strip()] == [], "\n".join(shown[:summary + 1])
    assert sorted(line.split(":")[0] for line in bars) == sorted(PHASES), bars
    assert all(": 100%|" in line for line in bars), bars
    assert not [line for line in bars if re.search(r"\d\.\d\d images/s", line)], bars  # 1,047 images/s, not 1047.92
    assert all(len(line) <= (columns or 80) for line in bars), bars  # a terminal of no size: 80 columns


def test_on_a_terminal_a_rerun_that_writes_nothing_says_what_it_kept(tmp_path):
    out = tmp_path / "out"
    assert run_cli("convert", "--config", SAMPLE_CONFIG, "--out", out, "--quiet") == (0, "")
    shown = screen(run_on_terminal(["convert", "--config", SAMPLE_CONFIG, "--out", out], 24, 100))
    text = "\n".join(shown)
    assert "write validation: nothing to write, 13 images kept from an earlier run" in text, text
    assert "write train: nothing to write, 31 images kept from an earlier run" in text, text


# --------------------------------------------------------------------------------------------- the summary

def test_a_rerun_that_writes_nothing_says_it_kept_every_shard_and_wrote_none(tmp_path):
    out = tmp_path / "out"
    assert run_cli("convert", "--config", SAMPLE_CONFIG, "--out", out, "--quiet") == (0, "")
    code, err = run_cli("convert", "--config", SAMPLE_CONFIG, "--out", out)
    assert code == 0, err
    assert f"streamprep: kept {out}: 12 of 12 shards were already complete (xxh3-128 checked against the " \
           "manifest); wrote no shard" in err
    assert "streamprep: wrote" not in err and "written by this run" not in err and "images/s" not in err
    assert re.search(r"^  wall time \d+\.\d s$", err, re.M), err


def test_a_resumed_run_says_how_many_shards_it_kept_of_all(sample, tmp_path):
    out = tmp_path / "out"
    assert run_cli(*convert_args(sample, out, *SMALL, "--quiet"))[0] == 0
    (out / "train-00001-of-00002").unlink()
    code, err = run_cli(*convert_args(sample, out, *SMALL, "--format", "tfrecord"))
    assert code == 0, err
    assert f"streamprep: wrote {out}" in err
    assert re.search(r"resumed +2 of 3 shards were already complete", err), err


def test_the_summary_rounds_throughput_as_a_reader_takes_it_in(sample, tmp_path):
    code, err = run_cli(*convert_args(sample, tmp_path / "out", *SMALL))
    assert code == 0, err
    line = next(line for line in err.splitlines() if line.startswith("  wall time"))
    # whatever the machine's speed (under load a small run may see under 100 images/s): three figures at most
    # below 100, whole numbers with thousands separators from 100 (test_rates_are_whole_numbers_...)
    rate = r"(\d{1,3}(,\d{3})*|\d{1,2}\.\d{1,2})"
    assert re.fullmatch(rf"  wall time \d+\.\d s, {rate} images/s, {rate} MB/s of images", line), line


@pytest.mark.parametrize("value, unit, text", [
    (8745.13, "images/s", "8,745 images/s"), (123456.7, "images/s", "123,457 images/s"), (104.5, "MB/s", "104 MB/s"),
    (12.345, "MB/s", "12.3 MB/s"), (1.0, "MB/s", "1.0 MB/s"), (0.4234, "MB/s", "0.42 MB/s"), (0.0, "images/s",
                                                                                            "0.0 images/s"),
])
def test_rates_are_whole_numbers_from_100_and_keep_three_figures_below(value, unit, text):
    from streamprep.cli.report import per_second

    assert per_second(value, unit) == text
