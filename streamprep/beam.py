"""The conversion as an Apache Beam pipeline: many workers walk the class tars and write the shards.

Same index, plan and bytes as the local engine (`convert.py`); see docs/distributed.md. The
launcher reads only small things: the label files, the three downloads' sizes, the previous
manifest and the ~1000 headers of the training tar that list its class tars. Everything else runs
on workers:

    validation tar walk (1 worker) --+
    bbox tar.gz walk (1 worker) -----+--> combine + make_plan (1 worker) --> shards, Reshuffle
    class tar walks (many workers) --+         |  (plan as a side input)          |
                                               v                                  v
                      bboxes.csv + manifest.json (1 worker)  <--  write_shard (many workers)
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions

from . import fixups, indexstore, manifest, retry
from .archives import Source
from .boxindex import index_boxes
from .config import Options
from .convert import finish_manifest, manifest_head, open_inputs, run_record
from .errors import ArchiveError, ConfigError, OutputError, StreamprepError
from .index import (DatasetIndex, Ignored, assemble, class_images, class_tars, index_validation,
                    no_class_tars_message)
from .labels import LabelData
from .output import Output, sweep
from .plan import Plan, ShardSpec, make_plan
from .progress import Callback, Event
from .writer import SHARD_FILES, ShardResult, archive_reader, write_bboxes, write_shard

log = logging.getLogger(__name__)


class PipelineFailed(StreamprepError):
    """The Beam pipeline failed for a reason that is not one of streamprep's own errors."""


@dataclass
class Job:
    """What the launcher hands to the workers (small: no index, no image bytes)."""

    options: Options
    labels: LabelData
    head: dict[str, Any]  # the manifest's opening part
    keep: dict[str, dict[str, Any]]  # shards an earlier complete-enough run finished, by name
    outer: list[tuple] = field(default_factory=list)  # the training tar in archive order: ("ignored", reason, ref)
    containers: dict[int, str] = field(default_factory=dict)  # or ("class", label, TarMember); label -> class tar
    index_key: str | None = None  # where the index is saved for a later run to reuse (as the local engine does)


class _Recorder(Ignored):
    """An `Ignored` that also remembers the order of its entries, to be replayed between the class tars' own."""

    def __init__(self, events: list[tuple]) -> None:
        super().__init__()
        self.events = events

    def add(self, reason: str, ref: str) -> None:
        super().add(reason, ref)
        self.events.append(("ignored", reason, ref))


def prepare(options: Options) -> Job:
    """The launcher's part: label data, the downloads' identities, the class tars listed from the outer headers."""
    if options.materialize or not options.shards:
        raise ConfigError("--engine beam writes shards only; run --materialize with the local engine")
    if options.check_md5:
        raise ConfigError("--engine beam does not run --check-md5 (it would read every byte on the launching "
                          "machine); run `streamprep convert --check-md5` locally, or check the downloads first")
    labels, sources, identities = open_inputs(options)
    try:
        run = run_record(options, identities, labels)
        output = Output(options.out, options.storage_options, create=False)
        keep = manifest.reusable(manifest.load(output), run)
        job = Job(options, labels, manifest_head(options, run, identities, {}), keep)
        if manifest.identifiable(identities):
            job.index_key = indexstore.key(identities, run["labels"], {"on_bad_xml": options.on_bad_xml})
        train = sources["train"]
        recorder = _Recorder(job.outer)  # one ranged read per outer header; the class tars are walked by workers
        for label, member in class_tars(train, labels, recorder, job.containers, train.read_at):
            job.outer.append(("class", label, member))
        if not job.containers:
            raise ArchiveError(no_class_tars_message(train, recorder))
        output.create()
        sweep(output, {*SHARD_FILES, *options.layout.shard_names()})
        manifest.Journal(output, job.head, list(keep.values()))  # as the local engine: kept shards listed at once
    finally:
        for source in sources.values():
            source.close()
    return job


# ------------------------------------------------------------------------------------------------ index

def _log_warning(event: Event) -> None:
    if event.kind == "warning":  # the workers' log, which Dataflow shows in its console
        log.warning("%s", event.phase)


def _walk_validation(_: Any, job: Job) -> tuple:
    ignored = Ignored()
    source = Source(job.options.val, job.options.storage_options)
    try:
        split = index_validation(source, job.labels, ignored, _log_warning)
    finally:
        source.close()
    return ("validation", split, ignored.state())


def _walk_boxes(_: Any, job: Job) -> tuple:
    ignored = Ignored()
    source = Source(job.options.bbox, job.options.storage_options)
    try:
        table = index_boxes(source, ignored, None, job.options.on_bad_xml == "skip")
    finally:
        source.close()
    return ("boxes", table, ignored.state())


class WalkClassTar(beam.DoFn):
    """One class tar of the training tar, headers only (streamed from its start on remote storage)."""

    def __init__(self, url: str, storage_options: dict[str, Any]) -> None:
        self.url, self.storage_options = url, storage_options
        self.source: Source | None = None

    def process(self, item: tuple) -> Any:
        label, outer = item
        if self.source is None:
            self.source = Source(self.url, self.storage_options)
        ignored = Ignored()
        group = class_images(self.source, outer, ignored)
        yield ("class", label, group, ignored.state())

    def teardown(self) -> None:
        if self.source is not None:
            self.source.close()


def _plan(parts: list[tuple], job: Job) -> tuple[Plan, dict[str, Any]]:
    """All walks combined into the `DatasetIndex` the local engine builds (same `Ignored` order), then the plan."""
    by_kind = {p[0]: p for p in parts if p[0] != "class"}
    classes = {p[1]: p for p in parts if p[0] == "class"}
    _, validation, state = by_kind["validation"]
    ignored = Ignored()
    ignored.merge(Ignored.from_state(state))
    groups = {}
    for event in job.outer:
        if event[0] == "ignored":
            ignored.add(event[1], event[2])
        else:
            _, label, group, state = classes[event[1]]
            ignored.merge(Ignored.from_state(state))
            groups[label] = group
    train = assemble("train", job.options.train, {k: g for k, g in groups.items() if len(g.names)}, job.containers)
    _, table, state = by_kind["boxes"]
    ignored.merge(Ignored.from_state(state))
    index = DatasetIndex((validation, train), table, ignored)
    if job.index_key:
        indexstore.save(Output(job.options.out, job.options.storage_options, create=False), job.index_key, index)
    return make_plan(index, job.labels, job.options.layout), ignored.state()


# ------------------------------------------------------------------------------------------------ shards

class WriteShards(beam.DoFn):
    """Writes each shard it is given, complete, under its final name (`writer.write_shard`: temp name, rename)."""

    def __init__(self, job: Job) -> None:
        self.out, self.storage_options = job.options.out, job.options.storage_options
        self.keep, self.skip_bad_images = job.keep, job.options.on_bad_image == "skip"
        self.images = Metrics.counter("streamprep", "images_written")
        self.nbytes = Metrics.counter("streamprep", "bytes_written")
        self.shards = Metrics.counter("streamprep", "shards_written")

    def setup(self) -> None:
        self.output: Output | None = None
        self.sources: dict[str, Source] = {}
        self.tensorflow_checked: set[str] = set()

    def make_output(self) -> Output:
        return Output(self.out, self.storage_options, create=False)

    def process(self, shard: ShardSpec, planned: tuple[Plan, dict[str, Any]]) -> Any:
        plan = planned[0]
        if self.output is None:
            self.output = self.make_output()
        output = self.output
        entry = self.keep.get(shard.name)
        if entry is not None and manifest.file_matches(output, entry):
            yield ShardResult.of_entry(shard, entry)
            return
        url = plan.archive(shard.split)
        if url not in self.sources:
            self.sources[url] = Source(url, self.storage_options)
        source = self.sources[url]
        if shard.split not in self.tensorflow_checked:
            self.tensorflow_checked.add(shard.split)
            if fixups.named_in(plan.splits[shard.split].index.names.blob):
                fixups.tensorflow()
        read = archive_reader(source)
        result = retry.call(lambda: f"{output.path(shard.name)}: cannot write",
                            lambda: write_shard(plan, shard, output, read, None, prefetch=source.remote,
                                                skip_bad_images=self.skip_bad_images),
                            error=OutputError)
        self.images.inc(result.records)
        self.nbytes.inc(result.nbytes)
        self.shards.inc()
        yield result

    def teardown(self) -> None:
        for source in getattr(self, "sources", {}).values():
            source.close()


def _finish(results: list[ShardResult], planned: tuple[Plan, dict[str, Any]], job: Job) -> dict[str, Any]:
    """bboxes.csv and manifest.json, with the local engine's code; temporary files of failed attempts removed."""
    plan, state = planned
    order = {s.name: i for i, s in enumerate(plan.shards)}  # validation, then train, in shard order: as locally
    results = sorted(results, key=lambda r: order[r.shard.name])
    if [r.shard.name for r in results] != [s.name for s in plan.shards]:
        raise OutputError(f"{job.options.out}: the pipeline returned {len(results)} shard results for "
                          f"{len(plan.shards)} shards; run again")
    output = Output(job.options.out, job.options.storage_options, create=False)
    sweep(output, {*SHARD_FILES, *job.options.layout.shard_names()})  # left by workers that died mid-shard
    csv_entry = write_bboxes(plan, output)
    journal = manifest.Journal(output, job.head, [r.entry() for r in results])
    index = DatasetIndex(tuple(s.index for s in plan.splits.values()), plan.boxes, Ignored.from_state(state))
    finish_manifest(journal, plan, index, results, csv_entry)
    return {"shards": len(results), "images": sum(r.records for r in results)}


def build(pipeline: beam.Pipeline, job: Job, writer: Callable[[Job], beam.DoFn] = WriteShards) -> beam.PCollection:
    """The conversion's transforms on `pipeline`; `writer` makes the DoFn that writes shards (tests wrap it)."""
    o = job.options
    validation = (pipeline | "validation" >> beam.Create([None])
                  | "walk validation tar" >> beam.Map(_walk_validation, job))
    boxes = pipeline | "bboxes" >> beam.Create([None]) | "walk bbox tar.gz" >> beam.Map(_walk_boxes, job)
    classes = (pipeline | "class tars" >> beam.Create([(e[1], e[2]) for e in job.outer if e[0] == "class"])
               | "spread class tars" >> beam.Reshuffle()
               | "walk class tars" >> beam.ParDo(WalkClassTar(o.train, o.storage_options)))
    planned = ((validation, boxes, classes) | "all walks" >> beam.Flatten()
               | "gather index" >> beam.combiners.ToList()
               | "combine and plan" >> beam.Map(_plan, job))
    plan_side = beam.pvalue.AsSingleton(planned)
    results = (planned | "shards" >> beam.FlatMap(lambda p: p[0].shards)
               | "spread shards" >> beam.Reshuffle()
               | "write shards" >> beam.ParDo(writer(job), plan_side)
               | "gather results" >> beam.combiners.ToList())
    return results | "bboxes.csv and manifest" >> beam.Map(_finish, plan_side, job)


@dataclass
class BeamSummary:
    out: str
    manifest: dict[str, Any]
    seconds: float
    counters: dict[str, int]


def convert(options: Options, beam_args: Sequence[str], progress: Callback | None = None,
            writer: Callable[[Job], beam.DoFn] = WriteShards) -> BeamSummary:
    """Run the conversion on Beam; `beam_args` go to `PipelineOptions` untouched. Waits for the pipeline."""
    started = time.monotonic()
    job = prepare(options)
    log.info("running on Apache Beam (%s); %d class tars listed", " ".join(beam_args) or "DirectRunner",
             len(job.containers))
    pipeline = beam.Pipeline(options=PipelineOptions(list(beam_args)))
    build(pipeline, job, writer)
    try:
        result = pipeline.run()
        result.wait_until_finish()
    except StreamprepError:
        raise
    except Exception as e:  # noqa: BLE001 - the runner's wrapping of a worker's error
        cause = e
        while cause is not None and not isinstance(cause, StreamprepError):
            cause = cause.__cause__ or cause.__context__
        if cause is not None:
            raise cause from e
        raise PipelineFailed(f"the Beam pipeline failed: {type(e).__name__}: {str(e)[-2000:]}") from e
    counters = {}
    try:
        for c in result.metrics().query(beam.metrics.MetricsFilter().with_namespace("streamprep"))["counters"]:
            counters[c.key.metric.name] = counters.get(c.key.metric.name, 0) + (c.committed or c.attempted or 0)
    except Exception:  # noqa: BLE001 - a runner without metrics: the summary goes without them
        pass
    output = Output(options.out, options.storage_options, create=False)
    return BeamSummary(options.out, manifest.load(output) or {}, time.monotonic() - started, counters)


def format_summary(s: BeamSummary) -> str:
    lines = [f"streamprep: wrote {s.out} (Apache Beam)"]
    for name, split in s.manifest.get("splits", {}).items():
        lines.append(f"  {name:<10} {split['images']:>9,} images in {split['shards']:,} shards, "
                     f"{split['classes']:,} classes, {split['boxes']:,} boxes, {split['bytes'] / 1e6:,.1f} MB")
    csv = s.manifest.get("bboxes_csv", {})
    lines.append(f"  bboxes.csv {csv.get('boxes', 0):>9,} boxes from {csv.get('files', 0):,} XML files")
    if s.counters:
        lines.append(f"  written by this run: {s.counters.get('images_written', 0):,} images, "
                     f"{s.counters.get('bytes_written', 0) / 1e6:,.1f} MB (Beam metrics)")
    lines.append(f"  wall time {s.seconds:.1f} s")
    return "\n".join(lines) + "\n"
