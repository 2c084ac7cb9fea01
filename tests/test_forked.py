"""Shards written by forked worker processes: same bytes as threads, errors and kills reported, stop obeyed."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from helpers import SMALL_LAYOUT, SMALL_OPTIONS, convert_args, result_files, run_cli
from streamprep import Options
from streamprep.engines import forked, output_folder, pipeline, readers
from streamprep.errors import ArchiveError, WorkerDiedError
from streamprep.index.build import build_index
from streamprep.plan import make_plan
from streamprep.progress import Phase, Stopped
from streamprep.records.spec import record_specs

pytestmark = pytest.mark.skipif(not forked.usable(2), reason="no fork on this platform")


def test_forked_workers_write_the_same_bytes_as_one_worker(sample, tmp_path):
    outs = {}
    for workers in ("1", "3"):
        outs[workers] = tmp_path / workers
        code, err = run_cli(*convert_args(sample, outs[workers], *SMALL_LAYOUT, "--workers", workers,
                                          "--format", "tfrecord,webdataset", "--quiet"))
        assert code == 0, err
    assert result_files(outs["1"]) == result_files(outs["3"])


@pytest.fixture()
def setup(sample, tmp_path):
    options = Options(train=str(sample["train"]), val=str(sample["val"]), bbox=str(sample["bbox"]),
                      validation_labels_file=str(sample["val_labels"]), out=str(tmp_path / "out"),
                      **SMALL_OPTIONS)
    inputs = pipeline.open_inputs(options)
    job = pipeline.make_job(options, inputs, None)
    journal = output_folder.open_output(job, None)
    plan = make_plan(build_index(inputs.sources, inputs.labels, 2), inputs.labels, options.sharding)
    yield job, journal, plan, readers.archive_reader(inputs.sources["train"])
    inputs.close()


def run(setup, read, stop=None):
    job, journal, plan, _ = setup
    finished = []
    with Phase(None, "write train") as phase:
        return finished, forked.write_shards(plan.splits["train"].shards, 2, finished.append, phase, stop,
                                             formats=job.formats, plan=plan, output=journal.output, read=read,
                                             keep={}, skip=False, check=None, checksum=job.checksum)


def test_a_worker_killed_mid_shard_is_a_one_line_error_and_finished_shards_stay_listed(setup):
    good = setup[3]

    def read(batch):
        if batch[0].filename == record_specs(setup[2], setup[2].splits["train"].shards[2])[0].filename:
            os.kill(os.getpid(), signal.SIGKILL)  # the worker writing shard 2 dies as an OOM kill would end it
        return good(batch)

    with pytest.raises(WorkerDiedError, match="ended without a word .* run the same command again to resume"):
        run(setup, read)


def test_an_error_in_one_worker_stops_the_others_and_is_the_error_raised(setup):
    def read(batch):
        raise ArchiveError(f"{batch[0].member}: cut short")

    with pytest.raises(ArchiveError, match="cut short"):
        run(setup, read)


def test_a_stop_event_set_by_the_caller_ends_the_writing_with_stopped(setup):
    stop = threading.Event()
    stop.set()  # as Ctrl-C in the CLI sets it: the parent polls it and halts the workers
    with pytest.raises(Stopped):
        run(setup, setup[3], stop)
