"""The local engine: the pipeline on this machine, class tars walked by threads, shards written by worker processes."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

from ..archives import checksums
from ..archives.storage import Source, protocol_of
from ..errors import OutputError
from ..options import Options
from ..outputs import lock as run_lock
from ..outputs import manifest as mf
from ..outputs.format import Reader, ShardResult, prepare_split, write_or_keep
from ..index.images import DatasetIndex
from ..outputs.materialize import FolderTreeSummary, materialize, tree_path
from ..plan import Plan, RecordSpec, ShardSpec
from ..progress import Callback, Phase, Stopped, check
from . import forked, pipeline
from .pipeline import Job, Summary


class ArchiveReader:
    """Image bytes from their byte ranges in the download; `ahead` has the kernel read the next batch's ranges
    of a local download in the background, those not in memory already (on a cold page cache they are
    random reads all over the archive)."""

    def __init__(self, source: Source) -> None:
        self.source = source

    def __call__(self, batch: list[RecordSpec]) -> list[bytes]:
        return self.source.read_ranges([(s.offset, s.size) for s in batch])

    def ahead(self, batch: list[RecordSpec]) -> None:
        self.source.advise([(s.offset, s.size) for s in batch])


def archive_reader(source: Source) -> Reader:
    """Image bytes from their byte ranges in the download."""
    return ArchiveReader(source)


def tree_reader(base: str, split: str) -> Reader:
    """Image bytes from the classic folder tree that `--materialize` wrote (same bytes, local disk)."""
    def read(batch: list[RecordSpec]) -> list[bytes]:
        out = []
        for spec in batch:
            path = tree_path(base, spec, split)
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except OSError as e:
                raise OutputError(f"{path}: cannot read the materialized image ({e}); rerun to complete the "
                                  "folder tree") from e
            if len(data) != spec.size:
                raise OutputError(f"{path}: {len(data)} bytes, the archive's {spec.member} has {spec.size}; "
                                  "the folder tree was changed, delete the file and rerun")
            out.append(data)
        return out
    return read


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
                                       skip=options.skip_bad_images, check=job.check_image())
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
                                   options.skip_bad_images, stop, job.check_image())
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
    check(stop)
    return [f.result() for f in futures]


def convert(options: Options, progress: Callback | None = None, stop: threading.Event | None = None) -> Summary:
    """Write the shards of `options.formats` (the classic TFRecord; WebDataset with timm's _info.json, and DALI's
    indexes with `dali_index`; or TFDS's imagenet2012), bboxes.csv and manifest.json under `options.out`, and the
    classic folder layout under `options.materialize`; returns a summary.

    Rerunning the same command after an interruption keeps the shards the manifest lists as
    finished (once their sha256 is checked), writes the rest, and reuses the saved index when the
    downloads have not changed. Setting `stop` cancels the run (`progress.Stopped` is raised).
    """
    started = time.monotonic()
    inputs = pipeline.open_inputs(options)
    try:
        with run_lock.held(options.out, options.storage_options):  # one run per --out, for the whole run
            state = pipeline.look_at_output(options) if options.out else None
            try:
                if state:  # an --out holding another conversion, or not writable: refused before anything is read
                    pipeline.claim_output(options, state, pipeline.run_record(options, inputs))
                summary = _run(options, inputs, state, progress, stop)
            except BaseException:
                if state:
                    pipeline.release_output(options, state)
                raise
    finally:
        inputs.close()
    summary.seconds = time.monotonic() - started
    return summary


def _run(options: Options, inputs: pipeline.Inputs, state: pipeline.OutputState | None, progress: Callback | None,
         stop: threading.Event | None) -> Summary:
    """MD5s, index and plan (nothing written yet), then the folder tree, the shards and the manifest."""
    md5 = {}
    if options.check_md5:  # before anything is written
        previous = state.previous if state else None
        md5 = checksums.check(inputs.sources, checksums.known_sums(previous.md5 if previous else None,
                                                                   inputs.identities), progress)
    job = pipeline.make_job(options, inputs, state, md5) if options.out else None
    index = pipeline.saved_index(job, state) if job else None
    reused = index is not None
    if index is None:
        index = pipeline.index(options, inputs, progress, stop)
    plan = pipeline.make_run_plan(options, inputs, index)  # fails here, before any write, if a text is missing
    if job:
        pipeline.check_space(job, plan)
    journal = pipeline.open_output(job, state, plan) if job else None
    if job and not reused:
        pipeline.save_index(job, index)
    tree = None
    if options.materialize:
        tree = materialize(options.materialize, inputs.sources["train"], inputs.sources["val"],
                           inputs.sources["bbox"], inputs.labels, index.boxes.csv, options.workers, progress)
    summary = Summary(options.out, "local", 0.0, index_reused=reused, folder_tree=tree)
    if job and journal:
        _write(job, journal, inputs, plan, index, tree, summary, progress, stop)
    return summary


def _write(job: Job, journal: mf.Journal, inputs: pipeline.Inputs, plan: Plan, index: DatasetIndex,
           tree: FolderTreeSummary | None, summary: Summary, progress: Callback | None,
           stop: threading.Event | None) -> None:
    """Both splits' shards (read from the folder tree if one was just written), then the complete manifest."""
    results: list[ShardResult] = []
    with journal:  # however the writing ends, the manifest lists every file it finished
        for split, key in (("validation", "val"), ("train", "train")):
            source = inputs.sources[key]
            read = tree_reader(tree.base, split) if tree else archive_reader(source)
            results += write_split(job, plan, split, read, source.remote and not tree, journal, progress, stop)
    summary.manifest = pipeline.finish(job, journal, plan, index, results)
    written = [r for r in results if not r.kept]
    summary.shards_kept, summary.shards_written = len(results) - len(written), len(written)
    summary.images_written = sum(r.records for r in written)
    summary.bytes_written = sum(r.bytes for r in written)
    summary.bytes_read = sum(int(plan.splits[r.shard.split].index.sizes[
        plan.splits[r.shard.split].order[r.shard.start:r.shard.stop]].sum()) for r in written)


__all__ = ["archive_reader", "convert", "tree_reader", "write_split"]
