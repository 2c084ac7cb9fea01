"""`streamprep plan`: what a conversion would do, found without writing anything but the saved index.

The conversion's own steps up to the plan (`driver.Conversion` as a dry run: open the downloads,
look at `out`, index, plan), then a report instead of the writes: the downloads found, images and classes per split, fix-ups
and ignored members, the shards to write and those an earlier run finished, the output's size
(exact but for what only the images know) and the free space at `out`.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from .. import datasets
from ..options import Options
from ..outputs import manifest as mf
from ..outputs import registry as output_formats
from ..outputs.format import planned_bounds, planned_bytes
from ..progress import Callback
from ..records.fixups import by_kind
from . import pipeline
from .driver import Conversion
from .local import LocalEngine


@dataclass
class Download:
    role: str  # train, val, bbox
    url: str
    size: int
    mtime: str | None
    etag: str | None
    official: bool  # its name and size are those of the published file


@dataclass
class SplitPreview:
    images: int
    classes: int
    shards: int
    shards_kept: int  # finished by an earlier run of the same conversion (checked again when converting)
    bytes_low: int  # the shards still to write, at least ...
    bytes_high: int  # ... and at most (image heights and widths unknown)


@dataclass
class Preview:
    """The report `streamprep plan` prints (`to_json` for scripts)."""

    downloads: list[Download]
    splits: dict[str, SplitPreview]
    boxes: int
    box_files: int
    fixups: dict[str, list[str]]  # kind -> images; their re-encoded size is counted as the original's
    ignored: dict[str, dict[str, Any]]
    skipped: list[dict[str, str]]
    out: str | None
    out_state: str  # what convert would find there, in a few words
    refused: str | None  # the error convert would stop with before reading anything, if any
    free_bytes: int | None  # at a local `out` (or its nearest existing parent)
    space_check_bytes: int  # what convert's free-space check asks for (a bound above the largest size)
    index_reused: bool
    index_saved: bool
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def bytes_low(self) -> int:
        return sum(s.bytes_low for s in self.splits.values())

    @property
    def bytes_high(self) -> int:
        return sum(s.bytes_high for s in self.splits.values())

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["bytes_low"], data["bytes_high"] = self.bytes_low, self.bytes_high
        return data


def _downloads(inputs: pipeline.Inputs, dataset: datasets.Dataset) -> list[Download]:
    found = []
    for role, source in inputs.sources.items():
        identity = inputs.identities[role]
        published = dataset.download(role)
        name = source.url.rstrip("/").rsplit("/", 1)[-1]
        found.append(Download(role, identity["url"], identity["size"], identity["mtime"], identity["etag"],
                              name == published.name and published.plausible(identity["size"])))
    return found


def _out_state(run: Conversion) -> str:
    """What a conversion would find at `out`, in a few words."""
    state = run.state
    if state is None or run.job is None:
        return "no --out: the folder tree only"
    if run.refused:
        return "refused"
    if not state.existed:
        return "a new folder"
    if state.previous is None:
        return "an existing folder without a conversion"
    if state.previous.same_run(run.job.manifest.run):
        return ("the same conversion, finished" if state.previous.complete else
                "the same conversion, interrupted: convert resumes it")
    return "another conversion: --overwrite removes its files"


def preview(options: Options, progress: Callback | None = None, stop: threading.Event | None = None) -> Preview:
    """What `convert(options)` would do; writes nothing but the saved index in `out` (when `out` is local or
    already exists), so that the conversion itself does not walk the downloads again."""
    started = time.monotonic()
    run = Conversion(options, progress, stop, dry=True)
    run.run(LocalEngine())  # the index walked as the local engine walks it
    job, plan, index = run.job, run.plan, run.index
    splits = _splits(plan, job, options)
    fmts = output_formats.make(options)
    todo = job.pending(plan.shards) if job else list(plan.shards)
    space = sum(planned_bytes(f, plan, todo) for f in fmts)
    fixed = by_kind([name for name, _ in plan.fixup_sizes()])
    ignored = {reason: {"count": count, "examples": index.ignored.examples[reason]}
               for reason, count in sorted(index.ignored.counts.items())}
    result = Preview(_downloads(run.inputs, datasets.get(options.dataset)), splits, plan.boxes.count,
                     plan.boxes.files, fixed, ignored, list(index.skipped.items), options.out, _out_state(run),
                     run.refused, pipeline.free_bytes(options.out), space, run.index_reused, run.index_saved)
    result.seconds = time.monotonic() - started
    return result


def _splits(plan: Any, job: pipeline.Job | None, options: Options) -> dict[str, SplitPreview]:
    """Each split's images, classes and shards, those an earlier run finished (in every format), and the bytes
    still to write (every format's)."""
    fmts, keep = output_formats.make(options), (job.keep if job else {})
    output = job.output() if job else None
    splits = {}
    for name, split_plan in plan.splits.items():
        kept = [s for s in split_plan.shards
                if output is not None and all(f.file_name(s) in keep and _size_matches(output, keep[f.file_name(s)])
                                              for f in fmts)]
        bounds = [planned_bounds(f, plan, s) for f in fmts for s in split_plan.shards if s not in kept]
        splits[name] = SplitPreview(len(split_plan.index), len(split_plan.index.present_labels()),
                                    len(split_plan.shards), len(kept), sum(b[0] for b in bounds),
                                    sum(b[1] for b in bounds))
    return splits


def _size_matches(output: Any, entry: mf.ShardEntry) -> bool:
    try:
        return output.fs.size(output.path(entry.name)) == entry.bytes
    except (FileNotFoundError, OSError):
        return False
