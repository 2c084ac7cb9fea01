"""The Beam pipeline on a second runner: Beam's Dask runner, over a local dask.distributed cluster of 2 processes.

Its output must be byte-identical to the local engine's; a shard that fails must end the run with one
line naming it, on this runner as on the DirectRunner.
"""

from __future__ import annotations

import pytest

from helpers import SMALL_LAYOUT, TYPE_CHECKED, convert_args, options_for, result_files, run_cli, same_but_out

import distributed  # noqa: E402 - the test extra installs dask[distributed]
DASK_RUNNER = "--runner=apache_beam.runners.dask.dask_runner.DaskRunner"
# On the Dask runner, Beam's `--runtime_type_check` wrapper hands CombineGlobally's default-injecting step an
# unevaluated `AsList` (Beam 2.78: "object of type 'AsList' has no len()", with any pipeline); its
# `--performance_runtime_type_check` checks every element against the hints as well and runs.
DASK_TYPE_CHECKED = ("--performance_runtime_type_check",)
FAILING_SHARD = "train-00002-of-00004"


@pytest.fixture(scope="module")
def cluster():
    """A local Dask cluster: 2 worker processes, one thread each (as a SLURM or Kubernetes cluster's workers)."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        with distributed.Client(c):
            yield c.scheduler_address


def test_the_dask_runner_writes_what_the_local_engine_writes(sample, both, cluster, tmp_path):
    local, out = both, tmp_path / "dask"  # both: the local engine's run of the same conversion (conftest's)
    formats = ("--format", "tfrecord,webdataset", "--dali-index")
    code, err = run_cli(*convert_args(sample, out, *SMALL_LAYOUT, *formats, "--engine", "beam", "--quiet", "--",
                                      DASK_RUNNER, f"--dask_client_address={cluster}", *DASK_TYPE_CHECKED))
    assert code == 0, err
    files = result_files(local)
    assert len(files) > 20 and result_files(out) == files
    assert same_but_out((local / "manifest.json").read_bytes(), str(local), (out / "manifest.json").read_bytes(),
                        str(out))


def failing_writer():
    from streamprep.engines import beam as engine
    from streamprep.errors import ArchiveError

    class Failing(engine.WriteShards):
        def process(self, shard, planned):
            if shard.name == FAILING_SHARD:
                raise ArchiveError(f"{shard.name}: an injected failure while writing it")
            yield from super().process(shard, planned)

    return Failing


@pytest.mark.parametrize("runner", ["direct", "dask"])
def test_a_failing_shard_is_one_line_naming_it_on_either_runner(sample, cluster, tmp_path, runner):
    from streamprep.engines import beam as engine
    from streamprep.errors import StreamprepError

    args = [DASK_RUNNER, f"--dask_client_address={cluster}", *DASK_TYPE_CHECKED] if runner == "dask" else [*TYPE_CHECKED]
    with pytest.raises(StreamprepError) as raised:
        engine.convert(options_for(sample, tmp_path / "out"), args, writer=failing_writer())
    message = str(raised.value)
    assert "\n" not in message and len(message) < 600, message
    assert FAILING_SHARD in message and "Planned(" not in message and "LabelData" not in message
