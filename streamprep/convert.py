"""The conversion as a library call: index the archives, plan the shards, write them."""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import __version__, checksums, indexstore, manifest
from .archives import Source
from .errors import ConfigError
from .config import Options
from .boxindex import BoxWalk
from .index import DatasetIndex, Ignored, index_train, index_validation
from .labels import LabelData, load_label_data
from .materialize import LayoutSummary, materialize
from .output import Output, sweep
from .plan import Plan, make_plan
from .progress import Callback, Event
from .writer import SHARD_FILES, ShardResult, write_bboxes, write_split


@dataclass
class SplitSummary:
    images: int
    shards: int
    classes: int
    boxes: int
    nbytes: int


@dataclass
class Summary:
    """What a conversion did, for the closing report."""

    splits: dict[str, SplitSummary]
    box_files: int
    boxes_csv_lines: int
    fixups: list[str]
    ignored: Ignored
    seconds: float
    bytes_read: int
    out: str | None
    shard_results: list[ShardResult] = field(default_factory=list, repr=False)
    layout: LayoutSummary | None = None
    index_reused: bool = False


def open_sources(options: Options) -> dict[str, Source]:
    """The three downloads, opened once for the whole run (one size lookup each)."""
    sources = {k: Source(getattr(options, k), options.storage_options) for k in ("train", "val", "bbox")}
    if sources["train"].url == sources["val"].url:
        raise ConfigError(f"--train and --val name the same file {sources['train'].url}; pass each download once")
    return sources


def open_inputs(options: Options) -> tuple[LabelData, dict[str, Source], dict[str, dict[str, Any]]]:
    """What every engine starts with: the layout checked, the label data, the three downloads opened
    (close them when done) and their identities."""
    options.layout.check()
    labels = load_label_data(options.labels_file, options.metadata_file, options.validation_labels_file,
                             options.storage_options)
    sources = open_sources(options)
    try:
        return labels, sources, {k: manifest.identity(s) for k, s in sources.items()}
    except BaseException:
        for source in sources.values():
            source.close()
        raise


class _Stopped(Exception):
    """Raised in the image walks when the bounding-box walk failed, so that the run stops at once."""


def build_index(sources: dict[str, Source], labels, workers: int, progress: Callback | None = None,
                skip_bad_xml: bool = False) -> DatasetIndex:
    """Walk the three archives (headers only for the image tars): the bounding boxes beside the
    validation and training tars (see `BoxWalk`). Whichever fails first stops the other."""
    ignored = Ignored()
    stop = threading.Event()

    def stoppable(event: Event) -> None:
        if stop.is_set() and event.kind == "advance":
            raise _Stopped()
        if progress:
            progress(event)

    boxes = BoxWalk(sources["bbox"], progress, skip_bad_xml, failed=stop.set)
    try:
        validation = index_validation(sources["val"], labels, ignored, stoppable)
        train = index_train(sources["train"], labels, ignored, workers, stoppable)
    except _Stopped:
        boxes.result()  # raises the error that stopped the walks
        raise
    except BaseException:
        stop.set()
        boxes.cancel()
        raise
    table, box_ignored = boxes.result()
    ignored.merge(box_ignored)
    return DatasetIndex((validation, train), table, ignored)


def convert(options: Options, progress: Callback | None = None) -> Summary:
    """Produce the classic shards, bboxes.csv and manifest.json under `options.out`; returns a summary.

    Rerunning the same command after an interruption keeps the shards the manifest lists as
    finished (once their sha256 is checked), writes the rest, and reuses the saved index when the
    downloads have not changed.
    """
    started = time.monotonic()
    labels, sources, identities = open_inputs(options)
    try:
        output = Output(options.out, options.storage_options, create=False) if options.shards else None
        previous = manifest.load(output) if output else None
        md5 = {}
        if options.check_md5:  # before anything is written
            md5 = checksums.check(sources, checksums.known_sums(previous, identities), progress)
        run = run_record(options, identities, labels)
        if output:
            output.create()
            sweep(output, {*SHARD_FILES, *options.layout.shard_names()})
        index, reused = _index(sources, labels, options, output, run, progress)
        plan = make_plan(index, labels, options.layout)  # fails here, before anything is written, if a text is missing
        layout = None
        if options.materialize:
            layout = materialize(options.materialize, sources["train"], sources["val"], sources["bbox"], labels,
                                 index.boxes.csv, options.workers, progress)
        results: list[ShardResult] = []
        if output:
            head = manifest_head(options, run, identities, md5)
            keep = manifest.reusable(previous, run)
            journal = manifest.Journal(output, head, list(keep.values()))
            csv_entry = write_bboxes(plan, output)
            for split, key in (("validation", "val"), ("train", "train")):
                results += write_split(plan, split, output, options.workers, progress, options.storage_options,
                                       layout=layout.base if layout else None, source=sources[key], keep=keep,
                                       finished=lambda r: journal.finished(r.entry()),
                                       skip_bad_images=options.on_bad_image == "skip")
            finish_manifest(journal, plan, index, results, csv_entry)
    finally:
        for source in sources.values():
            source.close()
    summary = _summary(plan, index, results, options.out, time.monotonic() - started)
    summary.layout, summary.index_reused = layout, reused
    return summary


def run_record(options: Options, identities: dict[str, dict], labels) -> dict:
    """What the output depends on (inputs, label data, layout, policies): the manifest's `run`, shared by both engines."""
    policies = {"on_bad_image": options.on_bad_image, "on_bad_xml": options.on_bad_xml}
    return {"inputs": identities, "labels": labels.digest(), "layout": dataclasses.asdict(options.layout), **policies,
            "streamprep": __version__}


def manifest_head(options: Options, run: dict, identities: dict[str, dict], md5: dict[str, str]) -> dict:
    """The opening part of the manifest: the run, the public options, the checked MD5s."""
    return {"run": run, "options": options.public(),
            "md5": {k: {"identity": identities[k], "md5": v} for k, v in md5.items()}}


def finish_manifest(journal: manifest.Journal, plan: Plan, index: DatasetIndex, results: list[ShardResult],
                    csv_entry: dict) -> None:
    """The complete manifest: exactly these shards (validation then train, in shard order) and the tail."""
    journal.shards = {r.shard.name: r.entry() for r in results}  # exactly this run's shards
    journal.write(complete=True, tail=_tail(plan, index, results, csv_entry))


def _index(sources: dict[str, Source], labels, options: Options, output: Output | None, run: dict,
           progress: Callback | None) -> tuple[DatasetIndex, bool]:
    """The saved index if the downloads are unchanged, else a walk of the archives (then saved); whether reused."""
    k = None
    if output and manifest.identifiable(run["inputs"]):
        k = indexstore.key(run["inputs"], run["labels"], {"on_bad_xml": options.on_bad_xml})
        index = indexstore.load(output, k)
        if index is not None:
            return index, True
    index = build_index(sources, labels, options.workers, progress, options.on_bad_xml == "skip")
    if k:
        indexstore.save(output, k, index)
    return index, False


def _tail(plan: Plan, index: DatasetIndex, results: list[ShardResult], csv_entry: dict) -> dict:
    """The closing part of the manifest: per-split counts, bboxes.csv, fix-ups, skipped and ignored members."""
    splits = {}
    for name, split_plan in plan.splits.items():
        mine = [r for r in results if r.shard.split == name]
        skipped = {s["member"] for r in mine for s in r.skipped}
        split_index = split_plan.index
        labels, found = np.unique(split_index.labels, return_counts=True)
        counts = {str(int(label)): int(n) for label, n in zip(labels, found)}
        if skipped:  # rare (--on-bad-image skip): take the skipped images back out
            for i in range(len(split_index)):
                if split_index.member(i) in skipped:
                    counts[str(int(split_index.labels[i]))] -= 1
            counts = {label: n for label, n in counts.items() if n}
        splits[name] = {"images": sum(r.records for r in mine), "shards": len(split_plan.shards),
                        "classes": len(counts), "class_counts": counts, "boxes": sum(r.boxes for r in mine),
                        "bytes": sum(r.nbytes for r in mine)}
    return {"splits": splits, "bboxes_csv": csv_entry,
            "fixups": sorted(f for r in results for f in r.fixups),
            "skipped": [*index.ignored.skipped, *(s for r in results for s in r.skipped)],
            "ignored": {reason: {"count": count, "examples": index.ignored.examples[reason]}
                        for reason, count in sorted(index.ignored.counts.items())}}


def _summary(plan: Plan, index: DatasetIndex, results: list[ShardResult], out: str | None, seconds: float) -> Summary:
    splits = {}
    for name, split_plan in plan.splits.items():
        mine = [r for r in results if r.shard.split == name]
        split_index = split_plan.index
        splits[name] = SplitSummary(len(split_index), len(split_plan.shards), len(split_index.present_labels()),
                                    sum(r.boxes for r in mine), sum(r.nbytes for r in mine))
    read = sum(int(s.index.sizes.sum()) for s in plan.splits.values())
    return Summary(splits, plan.boxes.files, plan.boxes.count, sorted(f for r in results for f in r.fixups),
                   index.ignored, seconds, read if results else 0, out, results)
