"""The threaded writer: shards written concurrently from the plan, bboxes.csv beside them."""

from __future__ import annotations

import hashlib
import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from . import fixups, records, retry, tfrecord
from .archives import Source
from .output import Output
from .errors import ImageError, OutputError
from .manifest import MANIFEST, file_matches
from .materialize import layout_path
from .plan import Plan, RecordSpec, ShardSpec
from .progress import Callback, Phase

BATCH = 64  # images fetched together (one concurrent range request batch on remote storage)
BBOXES_CSV = "bboxes.csv"
SHARD_FILES = {BBOXES_CSV, MANIFEST}  # written beside the shards


@dataclass
class ShardResult:
    shard: ShardSpec
    records: int
    nbytes: int
    boxes: int = 0
    fixups: list[str] = field(default_factory=list)
    sha256: str = ""
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"member", "reason"} under --on-bad-image skip
    kept: bool = False  # finished by an earlier run, checked and kept

    def entry(self) -> dict[str, Any]:
        """This shard as the manifest lists it."""
        return {"name": self.shard.name, "split": self.shard.split, "records": self.records, "bytes": self.nbytes,
                "sha256": self.sha256, "boxes": self.boxes, "fixups": self.fixups, "skipped": self.skipped}

    @classmethod
    def of_entry(cls, shard: ShardSpec, entry: dict[str, Any]) -> "ShardResult":
        return cls(shard, entry["records"], entry["bytes"], entry.get("boxes", 0), list(entry.get("fixups", [])),
                   entry["sha256"], list(entry.get("skipped", [])), kept=True)


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
                prefetch: bool = False, skip_bad_images: bool = False) -> ShardResult:
    """Write one shard, complete, under its final name. Needs only the plan and a way to read images.

    An image that cannot be used stops the run, or with `skip_bad_images` is left out and listed.
    """
    result = ShardResult(shard, 0, 0)
    digest = hashlib.sha256()
    specs = plan.records(shard)
    with output.atomic(shard.name) as f:
        for batch, datas in _batches(specs, read, prefetch):
            nbytes = 0
            for spec, data in zip(batch, datas):
                try:
                    pieces = tfrecord.frame_parts(*records.encode_parts(spec, data))
                except ImageError as e:
                    if not skip_bad_images:
                        raise
                    result.skipped.append({"member": spec.member, "reason": str(e)})
                    continue
                for piece in pieces:  # the image bytes are written as read, never copied into a record
                    f.write(piece)
                    digest.update(piece)
                    nbytes += len(piece)
                result.records += 1
                result.boxes += len(spec.boxes)
                if spec.fixup:
                    result.fixups.append(spec.filename)
            result.nbytes += nbytes
            if phase:
                phase.advance(len(batch), nbytes)
    result.sha256 = digest.hexdigest()
    return result


def write_bboxes(plan: Plan, output: Output) -> dict[str, Any]:
    """bboxes.csv, complete, under its final name; its manifest entry."""
    with output.atomic(BBOXES_CSV) as f:
        f.write(plan.boxes.csv)
    return {"name": BBOXES_CSV, "bytes": len(plan.boxes.csv), "sha256": hashlib.sha256(plan.boxes.csv).hexdigest(),
            "boxes": plan.boxes.count, "files": plan.boxes.files}


def write_split(plan: Plan, split: str, output: Output, workers: int, progress: Callback | None = None,
                storage_options: dict[str, Any] | None = None, layout: str | None = None,
                source: Source | None = None, keep: dict[str, dict[str, Any]] | None = None,
                finished: Callable[[ShardResult], None] | None = None,
                skip_bad_images: bool = False) -> list[ShardResult]:
    """All shards of one split, `workers` at a time; the bytes do not depend on `workers`.

    Images are read from the download (`source`, opened from the plan's URL if not given), or from
    the folder layout at `layout` when one was just written. A shard listed in `keep` (manifest
    entries of an earlier run) is kept if its file still has the listed size and sha256.
    `finished` is called with each shard's result as soon as it is done.
    """
    split_plan = plan.splits[split]
    keep = keep or {}
    if fixups.named_in(split_plan.index.names.blob) and any(s.name not in keep for s in split_plan.shards):
        fixups.tensorflow()  # import it here, once, rather than in the middle of a writer thread (not on a resume
        # that keeps every shard; a kept shard found damaged imports it when it meets its fix-up)
    own = source is None
    source = source or Source(split_plan.index.archive, storage_options or {})
    read = layout_reader(layout, split) if layout else archive_reader(source)
    failed = threading.Event()

    def task(shard: ShardSpec) -> ShardResult | None:
        if failed.is_set():  # after a failure, start no new shard; those running finish
            return None
        try:
            entry = keep.get(shard.name)
            if entry is not None and file_matches(output, entry):
                result = ShardResult.of_entry(shard, entry)
                phase.advance(result.records + len(result.skipped), result.nbytes)
            else:  # a shard is rewritten from the start if storage fails in a way a retry may cure
                result = retry.call(lambda: f"{output.path(shard.name)}: cannot write",
                                    lambda: write_shard(plan, shard, output, read, phase, prefetch=source.remote,
                                                        skip_bad_images=skip_bad_images),
                                    error=OutputError)
            if finished:
                finished(result)
            return result
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
