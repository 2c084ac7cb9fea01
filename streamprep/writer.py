"""The threaded writer: shards written concurrently from the plan, bboxes.csv beside them."""

from __future__ import annotations

import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from . import fixups, records, retry, tfrecord
from .archives import Source
from .output import Output
from .errors import OutputError
from .materialize import layout_path
from .plan import Plan, RecordSpec, ShardSpec
from .progress import Callback, Phase

BATCH = 64  # images fetched together (one concurrent range request batch on remote storage)
BBOXES_CSV = "bboxes.csv"


@dataclass
class ShardResult:
    shard: ShardSpec
    records: int
    nbytes: int
    boxes: int = 0
    fixups: list[str] = field(default_factory=list)


Reader = Callable[[list[RecordSpec]], list[bytes]]


def archive_reader(source: Source) -> Reader:
    """Image bytes from their byte ranges in the download."""
    return lambda batch: source.read_ranges([(s.offset, s.size) for s in batch])


def layout_reader(base: str, split: str) -> Reader:
    """Image bytes from the classic folder layout that `--materialize` wrote (same bytes, local disk)."""
    def read(batch: list[RecordSpec]) -> list[bytes]:
        out = []
        for spec in batch:
            path = layout_path(base, spec, split)
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except OSError as e:
                raise OutputError(f"{path}: cannot read the materialized image ({e}); rerun to complete the layout") from None
            if len(data) != spec.size:
                raise OutputError(f"{path}: {len(data)} bytes, the archive's {spec.member} has {spec.size}; "
                                  "the layout was changed, delete the file and rerun")
            out.append(data)
        return out
    return read


def _batches(specs: list[RecordSpec], read: Reader, prefetch: bool) -> Iterator[tuple[list[RecordSpec], list[bytes]]]:
    """The shard's images a batch at a time; with `prefetch`, the next batch is fetched while this one is encoded."""
    batches = [specs[i:i + BATCH] for i in range(0, len(specs), BATCH)]
    if not prefetch or len(batches) < 2:
        for batch in batches:
            yield batch, read(batch)
        return
    with ThreadPoolExecutor(1, thread_name_prefix="prefetch") as pool:
        pending = pool.submit(read, batches[0])
        for i, batch in enumerate(batches):
            datas = pending.result()
            if i + 1 < len(batches):
                pending = pool.submit(read, batches[i + 1])
            yield batch, datas


def write_shard(plan: Plan, shard: ShardSpec, output: Output, read: Reader, phase: Phase | None = None,
                prefetch: bool = False) -> ShardResult:
    """Write one shard, complete, under its final name. Needs only the plan and a way to read images."""
    result = ShardResult(shard, 0, 0)
    specs = plan.records(shard)
    with output.atomic(shard.name) as f:
        for batch, datas in _batches(specs, read, prefetch):
            nbytes = 0
            for spec, data in zip(batch, datas):
                framed = tfrecord.frame(records.encode(spec, data))
                f.write(framed)
                nbytes += len(framed)
                result.boxes += len(spec.boxes)
                if spec.fixup:
                    result.fixups.append(spec.filename)
            result.records += len(batch)
            result.nbytes += nbytes
            if phase:
                phase.advance(len(batch), nbytes)
    return result


def write_bboxes(plan: Plan, output: Output) -> None:
    with output.atomic(BBOXES_CSV) as f:
        f.write(plan.boxes.csv)


def write_split(plan: Plan, split: str, output: Output, workers: int, progress: Callback | None = None,
                storage_options: dict[str, Any] | None = None, layout: str | None = None,
                source: Source | None = None) -> list[ShardResult]:
    """All shards of one split, `workers` at a time; the bytes do not depend on `workers`.

    Images are read from the download (`source`, opened from the plan's URL if not given), or from
    the folder layout at `layout` when one was just written.
    """
    split_plan = plan.splits[split]
    if fixups.named_in(split_plan.index.names.blob):
        fixups.tensorflow()  # import it here, once, rather than in the middle of a writer thread
    own = source is None
    source = source or Source(split_plan.index.archive, storage_options or {})
    read = layout_reader(layout, split) if layout else archive_reader(source)
    failed = threading.Event()

    def task(shard: ShardSpec) -> ShardResult | None:
        if failed.is_set():  # after a failure, start no new shard; those running finish
            return None
        try:  # a shard is rewritten from the start if storage fails in a way a retry may cure
            return retry.call(lambda: f"{output.path(shard.name)}: cannot write",
                              lambda: write_shard(plan, shard, output, read, phase, prefetch=source.remote),
                              error=OutputError)
        except BaseException:
            failed.set()
            raise

    try:
        with Phase(progress, f"write {split}", total=len(split_plan.order)) as phase, \
                ThreadPoolExecutor(max(1, workers), thread_name_prefix="writer") as pool:
            futures = [pool.submit(task, s) for s in split_plan.shards]
            try:
                wait(futures, return_when=FIRST_EXCEPTION)
            finally:  # an error or Ctrl-C: queued shards are dropped, running ones finish
                failed.set()
                for f in futures:
                    f.cancel()
        for f in futures:
            if not f.cancelled() and f.exception():
                raise f.exception()  # type: ignore[misc]
        return [f.result() for f in futures]
    finally:
        if own:  # close only what this call opened
            source.close()
