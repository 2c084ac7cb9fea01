"""`--engine beam`: the Apache Beam pipeline gives the local engine's output byte for byte, survives failed bundles.

Real runners, no mocks: the DirectRunner in multi-process mode against moto's S3 server, and
Beam's BundleBasedDirectRunner, which retries a failed bundle (the FnApiRunner behind the default
DirectRunner does not: apache/beam#18640).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from helpers import (SMALL_LAYOUT, TYPE_CHECKED, convert_args, options_for, result_files, run_cli, run_python,
                     same_but_out)

SAMPLE_SHARDS = 4 + 2  # SMALL_LAYOUT's
FAILING_SHARD = "train-00002-of-00004"


@pytest.fixture(scope="module")
def beam():
    """streamprep.beam; skipped without Apache Beam, except in CI, where the Beam tests must run."""
    if os.environ.get("CI"):
        import apache_beam  # noqa: F401 - CI installs the test extra, which includes it: fail, never skip
    else:
        pytest.importorskip("apache_beam", reason="pip install 'streamprep[beam]' to run the Beam tests")
    import streamprep.engines.beam

    return streamprep.engines.beam


@pytest.fixture(scope="module")
def local_run(converted_sample) -> tuple[Path, dict[str, bytes]]:
    """The local engine's run of the same conversion (conftest's, shared): (its folder, its results)."""
    files = result_files(converted_sample)
    assert len(files) == SAMPLE_SHARDS + 1
    return converted_sample, files


def assert_matches_local(out: Path, local_run) -> None:
    local_out, files = local_run
    assert result_files(out) == files
    assert same_but_out((local_out / "manifest.json").read_bytes(), str(local_out),
                        (out / "manifest.json").read_bytes(), str(out))
    hidden = [p.name for p in out.iterdir() if p.name.startswith(".") and p.name != ".streamprep"]
    assert not hidden, f"temporary files left: {hidden}"


# --------------------------------------------------------------------------------------------- S3, many processes

def test_multiprocess_direct_runner_on_s3_matches_the_local_engine_byte_for_byte(beam, sample, s3, s3_endpoint):
    s3.mkdir("beam-in")
    s3.mkdir("beam-out")
    urls = {}
    for role, path in sample.items():
        urls[role] = f"s3://beam-in/ilsvrc2012/{path.name}"
        s3.put(str(path), urls[role])
    storage = ("--storage-option", f"s3.endpoint_url={s3_endpoint}", "--storage-option", "s3.key=testing",
               "--storage-option", "s3.secret=testing")
    local_out, beam_out = "s3://beam-out/local", "s3://beam-out/beam"
    code, err = run_cli(*convert_args(urls, local_out, *SMALL_LAYOUT, *storage, "--quiet"))
    assert code == 0, err

    # the worker processes get the endpoint and keys from the pipeline's DoFns and elements, nothing global
    code, err = run_cli(*convert_args(urls, beam_out, *SMALL_LAYOUT, *storage, "--engine", "beam", "--",
                                      "--direct_running_mode=multi_processing", "--direct_num_workers=2", *TYPE_CHECKED))

    assert code == 0, err
    assert "written by this run: 44 images" in err, err  # the Beam metrics counters, as a Dataflow user sees them
    s3.invalidate_cache()
    local = {k.rsplit("/", 1)[1]: s3.cat(k) for k in s3.find(local_out) if "/.streamprep/" not in k}
    mine = {k.rsplit("/", 1)[1]: s3.cat(k) for k in s3.find(beam_out) if "/.streamprep/" not in k}
    assert sorted(mine) == sorted(local) and len(mine) == SAMPLE_SHARDS + 2, sorted(mine)
    for name, data in local.items():
        if name == "manifest.json":
            assert same_but_out(data, local_out, mine[name], beam_out), "manifest.json differs beyond options.out"
        else:
            assert mine[name] == data, f"{name} differs from the local engine's"


# --------------------------------------------------------------------------------------------- failures

def failing_writer(beam, marker: Path, always: bool = False):
    """A writer DoFn whose output fails once (or `always`) in the middle of FAILING_SHARD, after part of it is
    written; each attempt at that shard adds a line to `marker`. The failed attempt also leaves, beside the
    output, the partial temporary file a worker killed at that moment would leave (the exception itself lets
    `Output.atomic` remove its own)."""
    from streamprep.archives.output import Output

    class FailingOutput(Output):
        def atomic(self, name):
            inner = super().atomic(name)
            if name != FAILING_SHARD:
                return inner
            with open(marker, "a") as f:
                f.write("attempt\n")
            fail = always or marker.read_text().count("attempt") == 1
            output = self

            class Context:
                def __enter__(self):
                    self.f = inner.__enter__()
                    self.writes = 0
                    original = self.f.write

                    def write(data):
                        n = original(data)
                        self.writes += 1
                        if fail and self.writes == 3:
                            self.f.flush()
                            with output.fs.open(self.f.path if hasattr(self.f, "path") else self.f.name, "rb") as g:
                                partial = g.read()
                            assert partial, "nothing was written before the injected failure"
                            with output.fs.open(output.path(f".{name}.1-deadbeef.tmp"), "wb") as g:
                                g.write(partial)  # what a worker killed here leaves behind
                            raise RuntimeError(f"injected failure in the middle of {name}")
                        return n

                    self.f.write = write
                    return self.f

                def __exit__(self, *exc):
                    return inner.__exit__(*exc)

            return Context()

    class FailingWriter(beam.WriteShards):
        def make_output(self):
            return FailingOutput(self.out, self.storage_options, create=False)

    return FailingWriter


def test_a_bundle_failing_mid_shard_is_retried_by_beam_and_the_output_is_identical(beam, sample, local_run, tmp_path):
    """A real Beam retry: the BundleBasedDirectRunner runs a failed bundle again (up to 4 attempts)."""
    out, marker = tmp_path / "out", tmp_path / "attempts"

    beam.convert(options_for(sample, out), ["--runner=BundleBasedDirectRunner", *TYPE_CHECKED],
                 writer=failing_writer(beam, marker))

    assert marker.read_text().count("attempt") == 2, "the shard was not failed once and retried"
    assert_matches_local(out, local_run)  # and the dead worker's partial temporary file was swept


def test_a_failed_pipeline_run_again_leaves_identical_output_and_no_partial_file(beam, sample, local_run, tmp_path):
    """The FnApiRunner (the DirectRunner's default) does not retry a bundle: the pipeline fails. Running it again
    (what a retry on Dataflow amounts to: the shard written again from the start) gives the same output."""
    from streamprep.errors import StreamprepError

    out, marker = tmp_path / "out", tmp_path / "attempts"
    with pytest.raises(StreamprepError, match="injected failure"):
        beam.convert(options_for(sample, out), [*TYPE_CHECKED], writer=failing_writer(beam, marker, always=True))
    assert FAILING_SHARD not in os.listdir(out), "a shard that failed mid-way has its final name"
    assert (out / f".{FAILING_SHARD}.1-deadbeef.tmp").exists()  # a partial file, but only under a hidden name

    beam.convert(options_for(sample, out), [*TYPE_CHECKED])

    assert_matches_local(out, local_run)


# --------------------------------------------------------------------------------------------- the CLI

def test_engine_beam_without_apache_beam_names_the_extra(sample, tmp_path):
    args = [str(a) for a in convert_args(sample, tmp_path / "out", *SMALL_LAYOUT, "--engine", "beam")]
    done = run_python(f"import sys; sys.modules['apache_beam'] = None\n"
                      f"from streamprep.cli import main; sys.exit(main({args!r}))")
    assert done.returncode == 2, done.stderr
    assert "install streamprep[beam]" in done.stderr
    assert not (tmp_path / "out").exists()


def test_the_local_engine_does_not_import_apache_beam(sample, tmp_path):
    args = [str(a) for a in convert_args(sample, tmp_path / "out", *SMALL_LAYOUT, "--quiet")]
    done = run_python(f"import sys\nfrom streamprep.cli import main\nassert main({args!r}) == 0\n"
                      "assert not [m for m in sys.modules if m.startswith('apache_beam')], 'apache_beam imported'")
    assert done.returncode == 0, done.stderr


def test_arguments_after_a_double_dash_need_the_beam_engine(sample, tmp_path):
    code, err = run_cli(*convert_args(sample, tmp_path / "out", *SMALL_LAYOUT, "--", "--runner=DirectRunner"))
    assert code == 2
    assert "--engine beam" in err and "--runner=DirectRunner" in err


def test_the_beam_engine_writes_every_format_and_index_as_the_local_engine(beam, sample, both, tmp_path):
    formats = ("--format", "tfrecord,webdataset", "--dali-index")
    local, out = both, tmp_path / "beam"  # both: the local engine's run of the same conversion (conftest's)
    code, err = run_cli(*convert_args(sample, out, *SMALL_LAYOUT, *formats, "--engine", "beam", "--quiet", "--",
                                      *TYPE_CHECKED))
    assert code == 0, err
    files = result_files(local)
    assert {n for n in files if n.endswith(".tar")} and {n for n in files if n.endswith(".idx")} and "_info.json" in files
    assert result_files(out) == files
    assert same_but_out((local / "manifest.json").read_bytes(), str(local), (out / "manifest.json").read_bytes(),
                        str(out))


def test_the_beam_engine_writes_parquet_mds_and_litdata_in_their_folders_as_the_local_engine(beam, sample, tmp_path):
    """The three formats written below folders of their own (data/, mds/, litdata/), each shard's file holding what
    the plan gives it (MDS's offsets table first, LitData's chunk spooled: Beam's plan has no fix-up sizes)."""
    formats = ("--format", "parquet,mds,litdata")
    local, out = tmp_path / "local", tmp_path / "beam"
    code, err = run_cli(*convert_args(sample, local, *SMALL_LAYOUT, *formats, "--quiet"))
    assert code == 0, err
    code, err = run_cli(*convert_args(sample, out, *SMALL_LAYOUT, *formats, "--engine", "beam", "--quiet", "--",
                                      *TYPE_CHECKED))
    assert code == 0, err

    def files(folder: Path) -> dict[str, bytes]:  # every file below it, but manifest.json and .streamprep/
        return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
                and p.name != "manifest.json" and not p.relative_to(folder).as_posix().startswith(".")}

    expected = files(local)
    assert {name.split("/")[0] for name in expected if "/" in name} == {"data", "mds", "litdata"}
    assert len(expected) == 3 * SAMPLE_SHARDS + 4 + 1  # the shards, four index.json, bboxes.csv
    assert files(out) == expected
    assert same_but_out((local / "manifest.json").read_bytes(), str(local), (out / "manifest.json").read_bytes(),
                        str(out))
