"""The output folder as one transaction: the journal lists every finished file, --overwrite leaves nothing stale,
writes stay inside `out`, one run at a time, no writer outlives its run, temporaries of dead runs are swept.

Everything runs for real: the CLI (in this process, or as a subprocess where it is killed), real signals, real
files, real links. A run that must still be running when it is killed or raced reads a download set whose
images take a few milliseconds each to check (`--check-decode`), so that its writing lasts seconds whatever
the machine; every wait polls, with a generous deadline.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest

from helpers import ROOT, SMALL_LAYOUT, SMALL_OPTIONS, convert_args, result_files, run_cli
from fixtures import builders
from streamprep.outputs import checksum
from streamprep.plan import classic_order
from tiny import A, B, tiny_classes, write_tiny

OUTPUT_LIKE = ("train-", "validation-", "_info.json")  # how the files streamprep writes beside bboxes.csv start
EVERY_FORMAT = ("--format", "tfrecord,webdataset", "--dali-index")


def output_files(out: Path) -> set[str]:
    """The files in `out` named as streamprep's output files (shards, indexes, _info.json)."""
    return {p.name for p in out.iterdir() if p.name.startswith(OUTPUT_LIKE)}


def listed(out: Path) -> set[str]:
    """Every file the manifest lists (shards and their indexes, the files beside them)."""
    m = json.loads((out / "manifest.json").read_text())
    names = {n for s in m["shards"] for n in (s["name"], *([s["index"]["name"]] if "index" in s else []))}
    return names | {f["name"] for f in m.get("files", [])}


def convert(paths: dict[str, Path], out: Path, *extra: str) -> tuple[int, str]:
    return run_cli(*convert_args(paths, out, "--quiet", *extra))


# --------------------------------------------------------------------------------------------- the journal

def test_a_failed_run_lists_every_file_it_finished_and_overwrite_leaves_exactly_the_new_runs_files(tmp_path):
    """The issue's sequence: a run writing every format stops on a bad image; another conversion with --overwrite
    must leave exactly its own files (a job reading train-* would otherwise read both)."""
    classes = tiny_classes(images_per_class=6)
    names = sorted(classes[A]) + sorted(classes[B])
    bad = names[classic_order(len(names))[10]]  # one image a shard: this one lands in shard 10 of 12
    classes[bad.split("_")[0]][bad] = b"\x89PNG\r\n\x1a\n not really"
    paths = write_tiny(tmp_path / "dl", classes=classes)
    out = tmp_path / "out"
    failing = ("--train-shards", "12", "--validation-shards", "1", "--classic-threads", "1", "--workers", "2",
               *EVERY_FORMAT)

    code, err = convert(paths, out, *failing)

    assert code == 2 and bad in err, err
    finished = output_files(out)
    assert any(n.startswith("train-") for n in finished), "no train shard finished before the bad one"
    assert finished <= listed(out), f"finished but not in the journal: {sorted(finished - listed(out))}"

    again = ("--train-shards", "4", "--validation-shards", "1", "--classic-threads", "1", "--on-bad-image", "skip")
    code, err = convert(paths, out, *again, "--overwrite")
    assert code == 0, err
    code, err = convert(paths, tmp_path / "fresh", *again)
    assert code == 0, err

    assert result_files(out) == result_files(tmp_path / "fresh")  # the new run's files, and nothing else
    assert run_cli("verify", out)[0] == 0


def test_a_stale_output_file_is_refused_without_overwrite_and_removed_with_it(sample, tmp_path):
    out = tmp_path / "out"
    assert convert(sample, out, *SMALL_LAYOUT)[0] == 0
    before = result_files(out)
    stale = ["train-00000-of-00004.idx", "_info.json", "validation-00000-of-00099.tar"]
    for name in stale:
        (out / name).write_bytes(b"left by another run")

    code, err = convert(sample, out, *SMALL_LAYOUT)  # the same conversion: it would resume, but not beside them

    assert code == 2 and err.count("\n") == 1 and "--overwrite" in err and "_info.json" in err, err
    assert all((out / n).read_bytes() == b"left by another run" for n in stale)

    code, err = convert(sample, out, *SMALL_LAYOUT, "--overwrite")

    assert code == 0, err
    assert result_files(out) == before  # exactly the conversion's files: the stale ones removed, its own kept
    assert run_cli("verify", out)[0] == 0


@pytest.mark.parametrize("name", ["train-00001-of-00004.idx", "train-00001-of-00004.tar.idx", "_info.json"],
                         ids=["a-dali-index-of-a-format-not-written", "a-dali-index-not-listed", "info-json"])
def test_verify_fails_on_a_file_named_as_streamprep_output_that_the_manifest_does_not_list(both, tmp_path, name):
    from streamprep import verify

    out = tmp_path / "out"
    shutil.copytree(both, out)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["files"] = [f for f in manifest.get("files", []) if f["name"] != name]
    for shard in manifest["shards"]:
        if shard.get("index", {}).get("name") == name:
            del shard["index"]  # the file stays: an index the manifest does not list (another run's, say)
    (out / "manifest.json").write_text(json.dumps(manifest))
    if not (out / name).exists():
        (out / name).write_bytes(b"0 100\n")  # a DALI index describing some other shard

    report = verify(str(out))

    assert not report.ok
    assert [str(p) for p in report.problems] == [f"{name}: not listed in manifest.json: left from another run? remove "
                                                 "it (the convert command that wrote this folder, run again with "
                                                 "--overwrite, removes every such file)"]
    assert run_cli("verify", out, "--quiet")[0] == 1


# --------------------------------------------------------------------------------------------- writes stay inside

@pytest.mark.parametrize("name, resume", [("manifest.json", False), ("bboxes.csv", False), ("_info.json", False),
                                          ("train-00001-of-00004", True), ("train-00001-of-00004.tar.idx", True)],
                         ids=["manifest", "bboxes-csv", "info-json", "shard-before-a-resume", "index-before-a-resume"])
def test_a_link_at_a_final_name_is_replaced_and_nothing_is_written_outside(sample, both, tmp_path, name, resume):
    out, outside = tmp_path / "out", tmp_path / "outside"
    outside.mkdir()
    args = (*SMALL_LAYOUT, *EVERY_FORMAT)
    if resume:
        assert convert(sample, out, *args)[0] == 0
        (out / name).unlink()
    else:
        out.mkdir()
    (out / name).symlink_to(outside, target_is_directory=True)

    code, err = convert(sample, out, *args)

    assert code == 0, err
    assert list(outside.iterdir()) == []
    assert not (out / name).is_symlink() and (out / name).is_file()
    assert result_files(out) == result_files(both)
    assert run_cli("verify", out)[0] == 0


@pytest.mark.parametrize("name, resume", [("manifest.json", False), ("train-00001-of-00004", True)],
                         ids=["manifest", "shard-before-a-resume"])
def test_a_folder_at_a_final_name_is_a_one_line_error(sample, tmp_path, name, resume):
    out = tmp_path / "out"
    if resume:
        assert convert(sample, out, *SMALL_LAYOUT)[0] == 0
        (out / name).unlink()
    else:
        out.mkdir()
    (out / name).mkdir()
    (out / name / "mine.txt").write_text("keep me")

    code, err = convert(sample, out, *SMALL_LAYOUT)

    assert code == 2 and err.count("\n") == 1 and f"{name}: is a folder" in err and "remove it" in err, err
    assert (out / name / "mine.txt").read_text() == "keep me" and len(list((out / name).iterdir())) == 1


# --------------------------------------------------------------------------------------------- slow runs, killed

SLOW_LAYOUT = ("--train-shards", "16", "--validation-shards", "2", "--classic-threads", "2", "--workers", "2",
               "--check-decode")


@pytest.fixture(scope="module")
def slow(tmp_path_factory) -> dict[str, Path]:
    """Downloads of 2,000 training images of 1024x768 (progressive, 5 KB each), each taking a few milliseconds to
    decode: with --check-decode, writing them takes seconds on any machine."""
    pictures = [builders.jpeg(1024, 768, quality=5, progressive=True, seed=s) for s in range(16)]
    classes = {synset: {f"{synset}_{i}.JPEG": pictures[(i + k) % 16] for i in range(1000, 0, -1)}
               for k, synset in enumerate((A, B))}
    return write_tiny(tmp_path_factory.mktemp("slow-dl"), classes=classes)


@pytest.fixture(scope="module")
def slow_reference(slow, tmp_path_factory) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("slow-ref") / "out"
    code, err = convert(slow, out, *SLOW_LAYOUT)
    assert code == 0, err
    return result_files(out)


def start(paths: dict[str, Path], out: Path, *extra: str) -> tuple[subprocess.Popen, list[str]]:
    """`streamprep convert` as a process of its own session (so that every process it starts can be found), with
    its stderr lines collected as they come."""
    command = [sys.executable, "-m", "streamprep", *map(str, convert_args(paths, out, *extra))]
    proc = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines: list[str] = []
    proc.reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)  # type: ignore[attr-defined]
    proc.reader.start()  # type: ignore[attr-defined]
    return proc, lines


def session(sid: int) -> list[int]:
    """The processes still running (zombies aside) in session `sid`."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if fields[0] != "Z" and int(fields[3]) == sid:
                found.append(int(entry))
    return found


def wait_for(condition, what: str, proc: subprocess.Popen | None = None, lines: list[str] | None = None,
             timeout: float = 120.0) -> float:
    """Poll `condition` until it holds; the seconds it took."""
    started = time.monotonic()
    while not condition():
        if proc is not None:
            assert proc.poll() is None, f"the run ended before {what}: {''.join(lines or [])[-2000:]}"
        assert time.monotonic() - started < timeout, f"{what} never came"
        time.sleep(0.005)
    return time.monotonic() - started


def writing(out: Path, lines: list[str]) -> bool:
    """The training shards are being written: a worker has one open, and the journal lists one finished."""
    if not (any(l.startswith("write train: started") for l in lines) and any(out.glob(".train-*.tmp"))):
        return False
    try:
        return any(n.startswith("train-") for n in listed(out))
    except (OSError, ValueError):
        return False


linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; PR_SET_PDEATHSIG")


@linux_only
@pytest.mark.parametrize("how", ["kill-9", "sigterm"])
def test_killing_the_main_process_leaves_no_process_and_a_rerun_completes_byte_for_byte(slow, slow_reference,
                                                                                      tmp_path, how):
    out = tmp_path / "out"
    proc, lines = start(slow, out, *SLOW_LAYOUT)
    try:
        wait_for(lambda: writing(out, lines), "the writing of the training shards", proc, lines)
        assert len(session(proc.pid)) >= 3, "the shards are not written by worker processes"
        proc.send_signal(signal.SIGKILL if how == "kill-9" else signal.SIGTERM)
        code = proc.wait(timeout=120)
        took = wait_for(lambda: not session(proc.pid), "the end of every process of the run", timeout=30)
        proc.reader.join(timeout=30)  # its stderr closed by every process that held it
        assert not proc.reader.is_alive()
    finally:
        for pid in session(proc.pid):
            os.kill(pid, signal.SIGKILL)
        proc.kill()
        proc.wait()
    assert took < 1, f"processes of the killed run lived on for {took:.1f} s"  # measured: about 0.01 s
    if how == "sigterm":
        assert code == 143, "".join(lines)
        assert lines[-1].startswith("streamprep: terminated;") and not any("Traceback" in l for l in lines), lines
        assert not list(out.glob(".*.tmp")), "a partial file was left"
        assert output_files(out) <= listed(out), "a file the run finished is not in its journal"
    else:
        assert code == -signal.SIGKILL
    survivors = {n: (out / n).stat().st_ino for n in listed(out) if (out / n).exists()}
    assert survivors, "no shard was finished before the kill: the test did not test keeping"

    code, err = run_cli(*convert_args(slow, out, *SLOW_LAYOUT))

    assert code == 0, err
    assert result_files(out) == slow_reference
    assert {n: (out / n).stat().st_ino for n in survivors} == survivors  # finished shards kept, not rewritten
    assert not list(out.glob(".*.tmp"))


def test_two_converts_on_one_out_never_both_succeed_and_the_loser_names_the_winner(slow, tmp_path):
    """As the issue found them: two runs with other shard counts started together on one --out."""
    out = tmp_path / "out"
    runs = [start(slow, out, *SLOW_LAYOUT), start(slow, out, *SLOW_LAYOUT[:1], "8", *SLOW_LAYOUT[2:])]
    for proc, _ in runs:
        proc.wait(timeout=300)
        proc.reader.join(timeout=30)
    (winner, _), (loser, lines) = sorted(runs, key=lambda run: run[0].returncode)
    assert (winner.returncode, loser.returncode) == (0, 2), ["".join(lines[-3:]) for _, lines in runs]
    errors = [l for l in lines if l.startswith("streamprep: error:")]
    assert len(errors) == 1 and f"another streamprep run is writing this output folder (pid {winner.pid} on " in \
        errors[0], lines
    assert run_cli("verify", out)[0] == 0  # the winner's output, whole


def test_a_second_run_is_refused_while_a_run_holds_the_output_and_the_lock_goes_with_its_process(sample, tmp_path):
    """The lock is the kernel's: a process that holds it and is killed leaves nothing to wait for."""
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\n"
                               "from streamprep.outputs import lock\n"
                               "from streamprep.archives.output import Output\n"
                               "lock.take(Output(sys.argv[1]))\n"
                               "print('held', flush=True)\n"
                               "time.sleep(600)\n", str(out)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        code, err = convert(sample, out, *SMALL_LAYOUT)
        assert code == 2 and err.count("\n") == 1 and f"(pid {holder.pid} on " in err, err
        assert not list(out.glob("train-*"))
    finally:
        holder.kill()
        holder.wait()

    code, err = convert(sample, out, *SMALL_LAYOUT)

    assert code == 0, err


# --------------------------------------------------------------------------------------------- object stores

def test_a_lease_on_an_s3_output_names_its_run_and_an_expired_one_is_taken_over(sample, tmp_path, s3, s3_endpoint):
    s3.mkdir("leased")
    out = "s3://leased/out"
    storage = ("--storage-option", f"s3.endpoint_url={s3_endpoint}", "--storage-option", "s3.key=testing",
               "--storage-option", "s3.secret=testing")
    other = {"pid": 4242, "host": "elsewhere", "started": "2030-01-01T00:00:00Z", "token": "theirs",
             "expires": time.time() + 600}
    s3.pipe("leased/out/.streamprep/lease.json", json.dumps(other).encode())

    code, err = convert(sample, out, *SMALL_LAYOUT, *storage)

    assert code == 2 and err.count("\n") == 1 and "(pid 4242 on elsewhere, started 2030-01-01T00:00:00Z)" in err, err
    assert "lease" in err
    s3.invalidate_cache()
    assert not [k for k in s3.find(out) if k.rsplit("/", 1)[-1].startswith("train-")]

    s3.pipe("leased/out/.streamprep/lease.json", json.dumps({**other, "expires": time.time() - 1}).encode())

    code, err = convert(sample, out, *SMALL_LAYOUT, *storage)

    assert code == 0, err
    s3.invalidate_cache()
    assert not s3.exists("leased/out/.streamprep/lease.json")  # released at the end


def test_a_lease_is_released_whatever_listing_of_its_folder_the_run_has_cached(s3, s3_endpoint):
    """The run globs `.streamprep/index-*.npz` (saving its index) through the lease's own file system instance;
    s3fs 2026.6 caches that prefix-filtered listing as the whole folder's, which lacks the lease: the lease must
    still be read from the store, found to be this run's, and removed."""
    from streamprep.archives.output import Output
    from streamprep.outputs import lock

    s3.mkdir("relisted")
    s3.pipe("relisted/out/.streamprep/index-0123.npz", b"an index")
    options = {"s3": {"endpoint_url": s3_endpoint, "key": "testing", "secret": "testing"}}

    with lock.held("s3://relisted/out", options):
        output = Output("s3://relisted/out", options, create=False)
        assert output.fs.glob(output.path(".streamprep/index-*.npz")) == ["relisted/out/.streamprep/index-0123.npz"]

    s3.invalidate_cache()
    assert s3.find("relisted/out") == ["relisted/out/.streamprep/index-0123.npz"]


# --------------------------------------------------------------------------------------------- temporaries

def test_temporary_files_of_a_killed_run_in_tmpdir_are_removed_by_the_next_run(sample, tmp_path):
    pytest.importorskip("array_record")
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    env = {**os.environ, "TMPDIR": str(tmpdir)}
    # a real ArrayRecord shard's local file, held by a process that is then killed as `kill -9` would end a run
    holder = subprocess.Popen([sys.executable, "-c", "import time\n"
                               "from streamprep.outputs.tfds.write import _ArrayRecordEncoder\n"
                               "print(_ArrayRecordEncoder().path, flush=True)\n"
                               "time.sleep(600)\n"], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    left = Path(holder.stdout.readline().strip())
    assert left.parent == tmpdir and left.name.startswith(f"streamprep-{holder.pid}-")
    alive = subprocess.Popen([sys.executable, "-c", "import time\n"
                              "from streamprep.outputs.tfds.write import _ArrayRecordEncoder\n"
                              "print(_ArrayRecordEncoder().path, flush=True)\n"
                              "time.sleep(600)\n"], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        in_use = Path(alive.stdout.readline().strip())
        holder.kill()
        holder.wait()
        assert left.exists()

        run = subprocess.run([sys.executable, "-m", "streamprep", *map(str, convert_args(
            sample, tmp_path / "out", *SMALL_LAYOUT, "--quiet"))], cwd=ROOT, env=env, stderr=subprocess.PIPE,
            text=True, timeout=300)

        assert run.returncode == 0, run.stderr
        assert not left.exists(), "the killed run's temporary file was not removed"
        assert in_use.exists(), "a running process's temporary file was removed"
    finally:
        alive.kill()
        alive.wait()
        holder.kill()
        holder.wait()


def test_a_successful_beam_run_leaves_no_saved_plan(sample, tmp_path):
    pytest.importorskip("apache_beam")
    from streamprep import Options
    from streamprep.engines import beam

    out = tmp_path / "out"
    options = Options(train=str(sample["train"]), val=str(sample["val"]), bbox=str(sample["bbox"]),
                      validation_labels_file=str(sample["val_labels"]), out=str(out), **SMALL_OPTIONS)

    beam.convert(options, [])

    assert (out / "manifest.json").exists()
    assert not list((out / ".streamprep").glob("plan-*.pickle"))


# --------------------------------------------------------------------------------------------- WebDataset keys

def _custom_labels(folder: Path, synsets: list[str]) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    labels, metadata = folder / "synsets.txt", folder / "metadata.txt"
    labels.write_text("".join(f"{s}\n" for s in synsets))
    metadata.write_text("".join(f"{s}\tclass {s}\n" for s in synsets))
    return labels, metadata


def test_a_synset_whose_webdataset_keys_readers_skip_as_metadata_is_refused_before_anything_is_written(tmp_path):
    odd = "__x__"
    classes = {synset: {f"{synset}_{i}.JPEG": builders.jpeg(16, 12, seed=10 * k + i) for i in range(3, 0, -1)}
               for k, synset in enumerate((odd, "n0000001"))}
    xmls = {"n0000001/n0000001_1.xml": builders.voc_xml("n0000001_1", 16, 12, [(1, 1, 9, 9)], name="n0000001")}
    paths = write_tiny(tmp_path / "dl", classes=classes, val_labels=[odd, "n0000001"], xmls=xmls)
    labels, metadata = _custom_labels(tmp_path / "labels", [odd, "n0000001"])
    out = tmp_path / "out"

    code, err = convert(paths, out, "--labels-file", labels, "--metadata-file", metadata, "--format", "webdataset",
                        "--train-shards", "2", "--validation-shards", "1", "--classic-threads", "1")

    assert code == 2 and err.count("\n") == 1 and "'__x__'" in err and "metadata" in err, err
    assert not out.exists()
    code, err = convert(paths, out, "--labels-file", labels, "--metadata-file", metadata,
                        "--train-shards", "2", "--validation-shards", "1", "--classic-threads", "1")
    assert code == 0, err  # the classic TFRecord has no such keys


def test_verify_reads_webdataset_shards_as_the_webdataset_library_does(sample, tmp_path):
    out = tmp_path / "out"
    assert convert(sample, out, *SMALL_LAYOUT, "--format", "webdataset")[0] == 0
    name = "train-00000-of-00004.tar"
    data = bytearray((out / name).read_bytes())
    with tarfile.open(out / name) as tar:
        heads = [m.offset for m in tar.getmembers() if m.name.startswith("n01440764/")]
    assert heads, "no member of the first class in the first shard"
    for at in heads:  # the synset renamed in place to one of the same length the library takes for metadata
        data[at:at + 10] = b"__01440__/"
        data[at + 148:at + 156] = b" " * 8
        data[at + 148:at + 156] = b"%06o\0 " % sum(data[at:at + 512])
    (out / name).write_bytes(bytes(data))
    manifest = json.loads((out / "manifest.json").read_text())
    for shard in manifest["shards"]:
        if shard["name"] == name:  # the manifest made to agree: only the names differ from what convert wrote
            shard[manifest["checksum"]] = checksum.digest(manifest["checksum"], data)
    (out / "manifest.json").write_text(json.dumps(manifest))
    import webdataset

    read = list(webdataset.WebDataset(str(out / name), shardshuffle=False))
    assert len(read) < manifest["shards"][[s["name"] for s in manifest["shards"]].index(name)]["records"]

    from streamprep import verify

    report = verify(str(out))

    assert not report.ok
    assert any("skips it as metadata" in str(p) for p in report.problems), report.lines()
