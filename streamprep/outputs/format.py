"""The output-format seam: a format turns one shard's records into one file; `write_or_keep` does one shard.

A format (`Format`) decides the file's name, how each record is encoded and framed, what comes
after the last record, and any side files (a reader's index, say). The code around it is the same
for every format and both engines: read the shard's images a batch at a time, hand each to the
format's `ShardEncoder`, write the pieces it returns (the image bytes are passed through, never
copied into a record), hash them, and rename the file into place when it is complete. The classic
TFRecord (`outputs.tfrecord.TFRecordFormat`) is the first format.
"""

from __future__ import annotations

import hashlib
import threading
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO, Callable, Iterator, Sequence

from ..archives import retry
from ..errors import ImageError, OutputError, reason
from ..plan import Plan, RecordSpec, ShardSpec
from ..progress import Phase, check
from .files import Output
from .manifest import ShardEntry, file_matches

BATCH = 64  # images fetched together (one concurrent range request batch on remote storage)
# Bytes a record may take beyond its image: the classic's Example (17 features, its text, file name and boxes)
# and TFRecord framing take 300-600 bytes; an image with many boxes a few more.
RECORD_ALLOWANCE = 2048

# The image bytes of a batch of records, in order. A reader may also have an `ahead(batch)` method: asked
# for the next batch while this one is written (local disk: the kernel reads it meanwhile).
Reader = Callable[[list[RecordSpec]], list[bytes]]


class ShardEncoder(ABC):
    """Encodes the records of one shard, in order; a new one per shard (it may keep state, such as offsets)."""

    @abstractmethod
    def record(self, spec: RecordSpec, image: bytes) -> Sequence[bytes]:
        """The bytes of one record as pieces to write in order; `image` should be one of them, uncopied.

        Raises `ImageError` if the image cannot be used (the writer stops, or skips it by policy).
        """

    def finish(self) -> Sequence[bytes]:
        """Bytes that close the file after its last record (none for TFRecord)."""
        return ()


class Format(ABC):
    """One output format: the file each shard becomes."""

    name: str  # as the user names it, e.g. "tfrecord"

    @abstractmethod
    def file_name(self, shard: ShardSpec) -> str:
        """The shard's file name in the output folder."""

    @abstractmethod
    def encoder(self, shard: ShardSpec) -> ShardEncoder:
        """A fresh encoder for this shard's records."""

    def file_names(self, shards: Sequence[ShardSpec]) -> list[str]:
        return [self.file_name(s) for s in shards]

    def most_bytes(self, plan: Plan, shards: Sequence[ShardSpec]) -> int:
        """At most how many bytes these shards' files take: the images plus a generous allowance per record for
        the format's framing and metadata, and a re-encoded fix-up file taken as up to 4 times its size."""
        total = 0
        for shard in shards:
            split = plan.splits[shard.split]
            rows = split.order[shard.start:shard.stop]
            total += int(split.index.sizes[rows].sum()) + RECORD_ALLOWANCE * len(rows)
        for name, size in plan.fixup_sizes():
            total += 3 * size
        return total

    def prepare(self, plan: Plan, split: str) -> None:
        """Called once before a split's shards are written (in the process that writes them): load codecs."""


@dataclass
class ShardResult:
    """One shard done: written by this run, or kept from an earlier one (`kept`)."""

    shard: ShardSpec
    entry: ShardEntry
    kept: bool = False


def _batches(specs: list[RecordSpec], read: Reader, prefetch: bool) -> Iterator[tuple[list[RecordSpec], list[bytes]]]:
    """The shard's images a batch at a time; with `prefetch`, the next batch is fetched while this one is encoded."""
    batches = [specs[i:i + BATCH] for i in range(0, len(specs), BATCH)]
    if not prefetch or len(batches) < 2:
        ahead = getattr(read, "ahead", None)  # a reader that can have the next batch read in the background
        for i, batch in enumerate(batches):
            if ahead is not None and i + 1 < len(batches):
                ahead(batches[i + 1])
            yield batch, read(batch)
        return
    with ThreadPoolExecutor(1, thread_name_prefix="prefetch") as pool:
        pending = pool.submit(read, batches[0])
        for i, batch in enumerate(batches):
            datas = pending.result()
            if i + 1 < len(batches):
                pending = pool.submit(read, batches[i + 1])
            yield batch, datas


Check = Callable[[RecordSpec, bytes], None]  # raises ImageError for an image that may not be written


def write_shard(fmt: Format, plan: Plan, shard: ShardSpec, output: Output, read: Reader, phase: Phase | None = None,
                prefetch: bool = False, skip_bad_images: bool = False,
                stop: threading.Event | None = None, check_image: Check | None = None) -> ShardEntry:
    """Write one shard, complete, under its final name; its manifest entry. Needs only the plan and a reader.

    An image that cannot be used (the format's encoder or `check_image` raises `ImageError`) stops
    the run, or with `skip_bad_images` is left out and listed.
    """
    name = fmt.file_name(shard)
    entry = ShardEntry(name, shard.split, 0, 0, "")
    digest = hashlib.sha256()
    encoder = fmt.encoder(shard)

    def put(f: BinaryIO, pieces: list[bytes]) -> int:
        n = 0
        for piece in pieces:  # the image bytes are written as read, never copied into a record
            f.write(piece)
            digest.update(piece)
            n += len(piece)
        return n

    with output.atomic(name) as f:
        for batch, datas in _batches(plan.records(shard), read, prefetch):
            check(stop)
            pieces: list[bytes] = []
            for spec, data in zip(batch, datas):
                try:
                    if check_image is not None:
                        check_image(spec, data)
                    record = encoder.record(spec, data)
                except ImageError as e:
                    if not skip_bad_images:
                        raise
                    entry.skipped.append({"member": spec.member, "reason": reason(spec.member, e)})
                    continue
                pieces += record
                entry.records += 1
                entry.boxes += len(spec.boxes)
                if spec.fixup:
                    entry.fixups.append(spec.filename)
            nbytes = put(f, pieces)
            entry.bytes += nbytes
            if phase:
                phase.advance(len(batch), nbytes)
        entry.bytes += put(f, list(encoder.finish()))
    entry.sha256 = digest.hexdigest()
    return entry


def write_or_keep(fmt: Format, plan: Plan, shard: ShardSpec, output: Output, read: Reader,
                  keep: dict[str, ShardEntry], phase: Phase | None = None, prefetch: bool = False,
                  skip_bad_images: bool = False, stop: threading.Event | None = None,
                  check_image: Check | None = None) -> ShardResult:
    """One shard, by either engine: kept if an earlier run finished it (same size and sha256 as its manifest
    entry), else written; a write that storage fails in a way a retry may cure starts the shard again."""
    entry = keep.get(fmt.file_name(shard))
    if entry is not None and file_matches(output, entry):
        if phase:
            phase.advance(entry.records + len(entry.skipped), entry.bytes, kept=True)
        return ShardResult(shard, entry, kept=True)
    check(stop)
    written = retry.call(lambda: f"{output.path(fmt.file_name(shard))}: cannot write",
                         lambda: write_shard(fmt, plan, shard, output, read, phase, prefetch, skip_bad_images, stop,
                                             check_image),
                         error=OutputError)
    return ShardResult(shard, written)
