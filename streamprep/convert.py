"""The conversion as a library call: index the archives, plan the shards, write them."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .archives import Source
from .errors import ConfigError
from .config import Options
from .index import DatasetIndex, Ignored, index_boxes, index_train, index_validation
from .labels import load_label_data
from .materialize import LayoutSummary, materialize
from .output import Output
from .plan import Plan, make_plan
from .progress import Callback
from .writer import ShardResult, write_bboxes, write_split


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


def open_sources(options: Options) -> dict[str, Source]:
    """The three downloads, opened once for the whole run (one size lookup each)."""
    sources = {k: Source(getattr(options, k), options.storage_options) for k in ("train", "val", "bbox")}
    if sources["train"].url == sources["val"].url:
        raise ConfigError(f"--train and --val name the same file {sources['train'].url}; pass each download once")
    return sources


def build_index(sources: dict[str, Source], labels, workers: int, progress: Callback | None = None) -> DatasetIndex:
    """Walk the three archives (headers only for the image tars)."""
    ignored = Ignored()
    boxes = index_boxes(sources["bbox"], ignored, progress)
    validation = index_validation(sources["val"], labels, ignored, progress)
    train = index_train(sources["train"], labels, ignored, workers, progress)
    return DatasetIndex((validation, train), boxes, ignored)


def convert(options: Options, progress: Callback | None = None) -> Summary:
    """Produce the classic shards and bboxes.csv under `options.out`; returns a summary."""
    started = time.monotonic()
    options.layout.check()
    labels = load_label_data(options.labels_file, options.metadata_file, options.validation_labels_file,
                             options.storage_options)
    sources = open_sources(options)
    try:
        index = build_index(sources, labels, options.workers, progress)
        plan = make_plan(index, labels, options.layout)  # fails here, before anything is written, if a text is missing
        layout = None
        if options.materialize:
            layout = materialize(options.materialize, sources["train"], sources["val"], sources["bbox"], labels,
                                 index.boxes.csv, options.workers, progress)
        results: list[ShardResult] = []
        if options.shards:
            output = Output(options.out, options.storage_options)
            write_bboxes(plan, output)
            for split, key in (("validation", "val"), ("train", "train")):
                results += write_split(plan, split, output, options.workers, progress, options.storage_options,
                                       layout=layout.base if layout else None, source=sources[key])
    finally:
        for source in sources.values():
            source.close()
    summary = _summary(plan, index, results, options.out, time.monotonic() - started)
    summary.layout = layout
    return summary


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
