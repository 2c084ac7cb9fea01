"""The local engine: the conversion on this machine, class tars walked by threads, shards written by worker processes."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

from ..archives.storage import protocol_of
from ..errors import ConfigError
from ..options import Options
from ..outputs import manifest as mf
from ..outputs.format import Reader, ShardResult, prepare_split, write_or_keep
from ..index.images import DatasetIndex
from ..plan import Plan, ShardSpec
from ..progress import Callback, Phase, Stopped, check_stop
from . import forked, pipeline
from .driver import Conversion
from .pipeline import Job, Summary


class LocalEngine:
    """The engine seam's worked example (`driver.Engine`): the index walked by threads in this process, the shards
    written `--workers` at a time by forked worker processes on local storage, by threads elsewhere."""

    name = "local"

    def walk(self, run: Conversion) -> DatasetIndex:
        return pipeline.walk_index(run.options, run.inputs, run.progress, run.stop)

    def write(self, run: Conversion, journal: mf.Journal) -> list[ShardResult]:
        results: list[ShardResult] = []
        for split in ("validation", "train"):  # validation first, as the classic writes them
            read, prefetch = run.reader(split)
            results += write_split(run.job, run.plan, split, read, prefetch, journal, run.progress, run.stop)
        return results


def convert(options: Options, progress: Callback | None = None, stop: threading.Event | None = None) -> Summary:
    """Write the shards of `options.formats` (the classic TFRecord; WebDataset with timm's _info.json, and DALI's
    indexes with `dali_index`; or TFDS's imagenet2012), bboxes.csv and manifest.json under `options.out`, and the
    classic folder layout under `options.materialize`; returns a summary.

    Rerunning the same command after an interruption keeps the shards the manifest lists as
    finished (once their digests are checked), writes the rest, and reuses the saved index when the
    downloads have not changed. Setting `stop` cancels the run (`progress.Stopped` is raised).
    """
    return Conversion(options, progress, stop).run(LocalEngine())


def run(options: Options, passthrough: Sequence[str] | None, progress: Callback | None = None) -> Summary:
    """The engine registry's entry point (`engines.run`): `convert`, with no arguments after `--`."""
    if passthrough is not None:
        raise ConfigError(f"arguments after `--` ({' '.join(passthrough) or 'none'}) are an engine's own options "
                          "(Apache Beam's pipeline options with --engine beam); the local engine takes none")
    return convert(options, progress)


def write_split(job: Job, plan: Plan, split: str, read: Reader, prefetch: bool, journal: mf.Journal,
                progress: Callback | None = None, stop: threading.Event | None = None) -> list[ShardResult]:
    """All shards of one split, `options.workers` at a time; the bytes do not depend on the number.

    On local storage the shards are written by forked worker processes (`engines.forked`), else by
    threads. After the first error (or once `stop` is set) no new shard starts; shards already running
    stop at their next batch, and the error is raised.
    """
    options, fmts = job.options, job.formats
    split_plan = plan.splits[split]
    if job.pending(split_plan.shards):
        prepare_split(plan, split)  # before the writers start (not on a resume that keeps every shard)
    workers = max(1, options.workers)
    with Phase(progress, f"write {split}", total=len(split_plan.order)) as phase:
        if not prefetch and protocol_of(options.out) == "file" and forked.usable(workers):
            return forked.write_shards(split_plan.shards, workers, lambda r: journal.finished(*r.entries), phase, stop,
                                       formats=fmts, plan=plan, output=journal.output, read=read, keep=job.keep,
                                       skip=options.skip_bad_images, check=job.check_image(), checksum=job.checksum)
        return _threads(job, plan, split_plan.shards, read, prefetch, journal, phase, stop)


def _threads(job: Job, plan: Plan, shards: Sequence[ShardSpec], read: Reader, prefetch: bool, journal: mf.Journal,
             phase: Phase, stop: threading.Event | None) -> list[ShardResult]:
    """`write_split` with threads in this process (remote storage, or no `fork`)."""
    options, fmts = job.options, job.formats
    failed = threading.Event()

    def task(shard) -> ShardResult | None:
        if failed.is_set() or (stop is not None and stop.is_set()):  # after a failure, start no new shard
            return None
        try:
            result = write_or_keep(fmts, plan, shard, journal.output, read, job.keep, phase, prefetch,
                                   options.skip_bad_images, stop, job.check_image(), job.checksum)
            journal.finished(*result.entries)
            return result
        except BaseException:
            failed.set()
            raise

    with ThreadPoolExecutor(max(1, options.workers), thread_name_prefix="writer") as pool:
        futures = [pool.submit(task, s) for s in shards]
        try:
            wait(futures, return_when=FIRST_EXCEPTION)
        finally:  # an error or Ctrl-C: queued shards are dropped, running ones finish
            failed.set()
            for f in futures:
                f.cancel()
    errors = [f.exception() for f in futures if not f.cancelled() and f.exception()]
    if errors:  # the cause, not a shard that stopped because of it (inside the phase: it ends as failed)
        raise next((e for e in errors if not isinstance(e, Stopped)), errors[0])
    check_stop(stop)
    return [f.result() for f in futures]


__all__ = ["LocalEngine", "convert", "write_split"]
