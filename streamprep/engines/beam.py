"""The conversion as an Apache Beam pipeline: many workers walk the class tars and write the shards.

The steps of `engines.driver.Conversion`, as the local engine runs them, so the same bytes; see
docs/distributed.md. The launcher runs the conversion's first steps (`Conversion.started`, `prepare`,
`output_folder.open_output`) and reads only small things: the label files, the downloads' sizes, the previous
manifest and what lists the class tars (the ~1000 outer headers of ILSVRC2012's training tar, the 21,841 of
ImageNet-21k's `fall11_whole.tar`, or the listing of a folder of per-synset tars). Everything else runs on workers:

    validation tar walk (1 worker) ------+
    box archive walks (1 worker each) ---+--> combine + make_plan (1 worker) --> shards, Reshuffle
    class tar walks (many workers) ------+         |  (plan as a side input)          |
                                                   v                                  v
                          bboxes.csv + manifest.json (1 worker)  <--  write_or_keep (many workers)

ImageNet-21k (`Dataset.walk == "synset_tars"`) has no validation tar and no boxes: the per-synset tars are walked
by the workers with `index.synset_tars`' functions, and its recipe splits them in the combine step.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions

from .. import datasets
from ..archives import gzipped
from ..archives.folder import FolderSource
from ..archives.storage import Source
from ..errors import ArchiveError, ConfigError, OutputError, PipelineError, StreamprepError
from ..index.boxwalk import TRAIN_BOXES, index_boxes
from ..index.images import (DatasetIndex, Ignored, Skipped, SplitIndex, assemble, class_images, class_tars,
                            index_validation, no_class_tars_message)
from ..index import store
from ..index.synset_tars import (archive_class, folder_class, folder_class_tars, no_synset_tars_message,
                                 split_index)
from ..index.boxes import BoxTable
from ..index.labels import LabelData
from ..options import Options
from ..outputs import manifest as mf
from ..archives.output import Output
from ..outputs.files import sweep
from ..outputs.format import ShardResult, prepare_split, write_or_keep
from ..plan import Plan, ShardSpec, make_plan
from ..progress import Callback
from . import output_folder, pipeline
from .driver import Conversion
from .pipeline import Job, Summary
from .readers import archive_reader

log = logging.getLogger(__name__)

WALKS = ("", "synset_tars")  # the dataset walks (`Dataset.walk`) this engine runs: ILSVRC2012's shape, ImageNet-21k's


@dataclass
class IgnoredMember:
    """A member of the outer training tar that is not a class tar to walk (why, and where)."""

    ref: str
    reason: str


@dataclass
class ClassTar:
    """A class tar of the training download, with its label: one unit of work for the workers. `part`: its number
    in a folder of per-synset tars (`FolderSource`), None in an archive."""

    label: int
    member: Any  # archives.tarscan.TarMember
    part: int | None = None


@dataclass(frozen=True)
class BoxArchive:
    """One box archive to walk: `split` "" for the training boxes (`--bbox`), else the split whose own boxes it holds
    (`--bbox-val`: "validation"); its download's role, official name and progress phase (`index_boxes`' `archive`)."""

    split: str
    role: str
    archive: tuple[str, str]


@dataclass
class BeamJob:
    """The run's `Job`, plus what the launcher read of the training download's class tars (in its order) and where
    the workers find each download."""

    job: Job
    outer: list[IgnoredMember | ClassTar] = field(default_factory=list)
    containers: dict[int, str] = field(default_factory=dict)  # label -> class tar member name
    urls: dict[str, str] = field(default_factory=dict)  # role (train, val, bbox, bbox_val) -> the download opened
    folders: dict[str, str] = field(default_factory=dict)  # url of a download that is a folder of parts -> its glob
    boxes: list[BoxArchive] = field(default_factory=list)  # the box archives to walk, in the local engine's order

    @property
    def dataset(self) -> datasets.Dataset:
        return datasets.get(self.job.options.dataset)

    def open(self, url: str) -> Source:
        """A download as the launcher opened it: a folder of parts (`FolderSource`) or one file."""
        storage_options = self.job.options.storage_options
        glob = self.folders.get(url)
        return FolderSource(url, storage_options, glob) if glob else Source(url, storage_options)


@dataclass
class ValidationWalk:
    split: SplitIndex
    ignored: dict[str, Any]


@dataclass
class BoxesWalk:
    split: str  # as `BoxArchive.split`
    table: BoxTable
    ignored: dict[str, Any]
    skipped: list[dict[str, str]]


@dataclass
class ClassWalk:
    label: int
    group: Any  # index.images._Group
    ignored: dict[str, Any]


@dataclass
class PlanAndNotes:
    """The plan, and what was ignored or skipped while indexing: what every shard writer reads (`SavedPlan`)."""

    plan: Plan
    ignored: dict[str, Any]
    skipped: list[dict[str, str]]

    def __repr__(self) -> str:  # a runner's error quotes its elements: a line, not the whole index
        shards = {name: len(split.shards) for name, split in self.plan.splits.items()}
        images = {name: len(split.index) for name, split in self.plan.splits.items()}
        return f"PlanAndNotes(images={images}, shards={shards})"


class _Recorder(Ignored):
    """An `Ignored` that also remembers the order of its entries, to be replayed between the class tars' own."""

    def __init__(self, events: list[IgnoredMember | ClassTar]) -> None:
        super().__init__()
        self.events = events

    def add(self, ref: str, reason: str) -> None:
        super().add(ref, reason)
        self.events.append(IgnoredMember(ref, reason))


def refuse(options: Options) -> None:
    """What this engine does not do, refused before anything is opened."""
    if options.materialize or not options.out:
        raise ConfigError("engine beam (--engine beam) writes shards only; run materialize (--materialize) with the "
                          "local engine")
    walk = datasets.get(options.dataset).walk
    if walk not in WALKS:
        raise ConfigError(f"engine beam (--engine beam) does not run the {walk!r} walk of --dataset "
                          f"{options.dataset}; convert with the local engine")
    if options.check_md5:
        raise ConfigError("engine beam (--engine beam) does not run check_md5 (--check-md5): it would read every "
                          "byte on the launching machine; run `streamprep convert --check-md5` locally, or check "
                          "the downloads first")


def launch(run: Conversion) -> BeamJob:
    """The launcher's part, in `run.started()` (the downloads opened, `out` locked and claimed): the class tars
    listed (from the outer headers, or a folder's listing), the job, `out` opened as the local engine opens it (kept
    shards listed at once)."""
    inputs, dataset = run.inputs, datasets.get(run.options.dataset)
    train = inputs.sources["train"]
    for source in gzipped.gzipped_sources(inputs.sources).values():  # its reads need the launcher's checkpoints
        raise ConfigError(f"{source.url}: engine beam (--engine beam) does not read a gzipped archive; pass the "
                          "extracted tar" + (" or a folder of the per-synset tars" if dataset.walk else "")
                          + ", or convert with the local engine")
    outer, containers = _list_class_tars(train, inputs.labels, dataset)
    bj = BeamJob(run.prepare(), outer, containers, {role: s.url for role, s in inputs.sources.items()},
                 {s.url: s.glob for s in inputs.sources.values() if isinstance(s, FolderSource)},
                 _box_archives(dataset, inputs.sources))
    output_folder.open_output(bj.job, run.state)
    return bj


def _list_class_tars(train: Source, labels: LabelData,
                     dataset: datasets.Dataset) -> tuple[list[IgnoredMember | ClassTar], dict[int, str]]:
    """The class tars of the training download for the workers to walk, between the members ignored, in its order
    (from one ranged read per outer header of an archive, or a folder's listing); label -> class tar name."""
    outer: list[IgnoredMember | ClassTar] = []
    containers: dict[int, str] = {}
    recorder = _Recorder(outer)
    if isinstance(train, FolderSource):
        for k, synset in folder_class_tars(train, labels, recorder, dataset):
            outer.append(ClassTar(labels.label(synset), train.member(k), k))
    else:
        for label, member in class_tars(train, labels, recorder, containers, train.read_at, dataset):
            outer.append(ClassTar(label, member))
    if not any(isinstance(entry, ClassTar) for entry in outer):
        raise ArchiveError(no_synset_tars_message(train.url, labels, dataset) if dataset.walk
                           else no_class_tars_message(train, recorder, dataset))
    return outer, containers


def _box_archives(dataset: datasets.Dataset, sources: dict[str, Source]) -> list[BoxArchive]:
    """The box archives among the downloads, in the order the local engine merges their walks (`index.build`)."""
    found = [BoxArchive("", "bbox", TRAIN_BOXES)] if "bbox" in sources else []
    for boxes in dataset.split_boxes:  # a split's own boxes, when its optional download is given (--bbox-val)
        if boxes.download in sources:
            found.append(BoxArchive(boxes.split, boxes.download,
                                    (dataset.download(boxes.download).name, f"{boxes.split} boxes")))
    return found


# ------------------------------------------------------------------------------------------------ index

def _walk_validation(_: Any, bj: BeamJob) -> ValidationWalk:
    ignored = Ignored()
    source = bj.open(bj.urls["val"])
    try:
        split = index_validation(source, bj.job.labels, ignored, dataset=bj.dataset)  # warnings: the workers' log
    finally:
        source.close()
    return ValidationWalk(split, ignored.state())


def _walk_boxes(walk: BoxArchive, bj: BeamJob) -> BoxesWalk:
    ignored, skipped = Ignored(), Skipped()
    source = bj.open(bj.urls[walk.role])
    try:
        table = index_boxes(source, ignored, None, bj.job.options.skip_bad_xml, skipped, archive=walk.archive)
    finally:
        source.close()
    return BoxesWalk(walk.split, table, ignored.state(), skipped.items)


class WalkClassTar(beam.DoFn):
    """One class tar of the training download, headers only (streamed from its start on remote storage), by the
    dataset's walk: ILSVRC2012's (`images.class_images`) or ImageNet-21k's (`synset_tars.archive_class`, or
    `synset_tars.folder_class` for a part of a folder)."""

    def __init__(self, bj: BeamJob) -> None:
        self.bj = bj
        self.source: Source | None = None

    def process(self, item: ClassTar) -> Any:
        if self.source is None:
            self.source = self.bj.open(self.bj.urls["train"])
        ignored, dataset = Ignored(), self.bj.dataset
        if not dataset.walk:
            group = class_images(self.source, item.member, ignored, None, dataset)
        elif item.part is None:
            _, group = archive_class(self.source, item.member, ignored, dataset)
        else:
            _, group = folder_class(self._listed(item), item.part, ignored, dataset)
        yield ClassWalk(item.label, group, ignored.state())

    def _listed(self, item: ClassTar) -> FolderSource:
        """The folder, checked to hold the part the launcher listed at the same place."""
        folder = self.source
        assert isinstance(folder, FolderSource) and item.part is not None
        if item.part >= len(folder.parts) or folder.member(item.part) != item.member:
            raise ArchiveError(f"{folder.url}!{item.member.name}: the folder changed since the pipeline listed it "
                               "(a per-synset tar added, removed or rewritten); run the conversion again")
        return folder

    def teardown(self) -> None:
        if self.source is not None:
            self.source.close()


def _combine_and_plan(parts: list[ValidationWalk | BoxesWalk | ClassWalk], bj: BeamJob) -> "SavedPlan":
    """All walks combined into the `DatasetIndex` the local engine builds (same `Ignored` order), then the plan,
    saved beside the output: what flows on is its `SavedPlan`."""
    job = bj.job
    index = _synset_tars_index(parts, bj) if bj.dataset.walk else _classic_index(parts, bj)
    pipeline.save_index(job, index)
    planned = PlanAndNotes(make_plan(index, job.labels, job.options.sharding), index.ignored.state(),
                           list(index.skipped.items))
    return SavedPlan.save(planned, job.output())


def _class_walks(parts: list[ValidationWalk | BoxesWalk | ClassWalk], bj: BeamJob,
                 ignored: Ignored) -> list[tuple[ClassTar, ClassWalk]]:
    """Each class tar with its walk, in the training download's order; the members the launcher and the walks
    ignored added to `ignored` in that order."""
    walks = {p.label: p for p in parts if isinstance(p, ClassWalk)}
    found = []
    for entry in bj.outer:
        if isinstance(entry, IgnoredMember):
            ignored.add(entry.ref, entry.reason)
        else:
            walked = walks[entry.label]
            ignored.merge(Ignored.from_state(walked.ignored))
            found.append((entry, walked))
    return found


def _classic_index(parts: list[ValidationWalk | BoxesWalk | ClassWalk], bj: BeamJob) -> DatasetIndex:
    """ILSVRC2012's index (`index.build.build_index`): validation, then the class tars, then each box archive."""
    validation = next(p for p in parts if isinstance(p, ValidationWalk))
    ignored = Ignored.from_state(validation.ignored)
    groups = {entry.label: walked.group for entry, walked in _class_walks(parts, bj, ignored)}
    train = assemble("train", bj.urls["train"], {k: g for k, g in groups.items() if len(g.names)}, bj.containers)
    walked = {p.split: p for p in parts if isinstance(p, BoxesWalk)}
    skipped = Skipped()
    for archive in bj.boxes:
        ignored.merge(Ignored.from_state(walked[archive.split].ignored))
        skipped.merge(Skipped(list(walked[archive.split].skipped)))
    split_boxes = {split: w.table for split, w in walked.items() if split}
    return DatasetIndex((validation.split, train), walked[""].table, ignored, skipped, split_boxes)


def _synset_tars_index(parts: list[ValidationWalk | BoxesWalk | ClassWalk], bj: BeamJob) -> DatasetIndex:
    """ImageNet-21k's index (`index.synset_tars.walk_synset_tars`): the per-synset tars split by the recipe."""
    ignored, labels = Ignored(), bj.job.labels
    classes = {labels.synsets[entry.label - 1]: (entry.member.name, walked.group)
               for entry, walked in _class_walks(parts, bj, ignored)}
    return split_index(bj.urls["train"], classes, labels, bj.job.options.dataset_options(), ignored, bj.dataset)


@dataclass(frozen=True)
class SavedPlan:
    """Where the plan lies (`.streamprep/plan-SHA.pickle` in `out`): what travels as the side input, a few hundred
    bytes, instead of the plan (about 180 MB at full scale), which a runner may copy into every bundle. Each
    worker process reads the plan once (`load`) and keeps it."""

    name: str
    sha256: str
    images: dict[str, int]
    shards: dict[str, int]

    @classmethod
    def save(cls, planned: PlanAndNotes, output: Output) -> "SavedPlan":
        data = pickle.dumps(planned, protocol=pickle.HIGHEST_PROTOCOL)
        sha = hashlib.sha256(data).hexdigest()
        name = f"{store.STATE_DIR}/plan-{sha[:16]}.pickle"
        with output.atomic(name) as f:
            f.write(data)
        return cls(name, sha, {n: len(s.index) for n, s in planned.plan.splits.items()},
                   {n: len(s.shards) for n, s in planned.plan.splits.items()})

    def load(self, output: Output) -> PlanAndNotes:
        with _loaded_lock:
            found = _loaded.get(self.sha256)
            if found is None:
                with output.fs.open(output.path(self.name), "rb") as f:
                    data = f.read()
                if hashlib.sha256(data).hexdigest() != self.sha256:
                    raise OutputError(f"{output.path(self.name)}: the saved plan was changed while the pipeline ran; "
                                      "run the conversion again")
                found = _loaded[self.sha256] = pickle.loads(data)
            return found


_loaded: dict[str, PlanAndNotes] = {}  # this worker process's plans, by sha256: read once, whatever the bundles
_loaded_lock = threading.Lock()


# ------------------------------------------------------------------------------------------------ shards

class WriteShards(beam.DoFn):
    """Writes or keeps each shard it is given (`outputs.format.write_or_keep`, as the local engine)."""

    def __init__(self, bj: BeamJob) -> None:
        self.job, self.bj = bj.job, bj
        self.out, self.storage_options = bj.job.options.out, bj.job.options.storage_options
        self.images = Metrics.counter("streamprep", "images_written")
        self.nbytes = Metrics.counter("streamprep", "bytes_written")
        self.shards = Metrics.counter("streamprep", "shards_written")

    def setup(self) -> None:
        self.output: Output | None = None
        self.sources: dict[str, Source] = {}
        self.prepared: set[str] = set()

    def make_output(self) -> Output:
        return pipeline.output_of(self.job.options)

    def process(self, shard: ShardSpec, ref: SavedPlan) -> Any:
        job = self.job
        if self.output is None:
            self.output = self.make_output()
        plan = ref.load(self.output).plan
        url = plan.archive(shard.split)
        if url not in self.sources:
            self.sources[url] = self.bj.open(url)
        source = self.sources[url]
        if shard.split not in self.prepared:
            self.prepared.add(shard.split)
            prepare_split(plan, shard.split)
        result = write_or_keep(job.formats, plan, shard, self.output, archive_reader(source), job.keep,
                               prefetch=source.remote, skip_bad_images=job.options.skip_bad_images,
                               check_image=job.check_image(), checksum=job.checksum)
        if not result.kept:
            self.images.inc(result.records)
            self.nbytes.inc(result.bytes)
            self.shards.inc()
        yield result

    def teardown(self) -> None:
        for source in getattr(self, "sources", {}).values():
            source.close()


def _finish(results: list[ShardResult], ref: SavedPlan, bj: BeamJob) -> int:
    """bboxes.csv and manifest.json, with the shared pipeline's code; temporary files of failed attempts removed."""
    job = bj.job
    planned = ref.load(job.output())
    plan = planned.plan
    order = {s.name: i for i, s in enumerate(plan.shards)}  # validation, then train, in shard order: as locally
    results = sorted(results, key=lambda r: order[r.shard.name])
    if [r.shard.name for r in results] != [s.name for s in plan.shards]:
        raise OutputError(f"{job.options.out}: the pipeline returned {len(results)} shard results for "
                          f"{len(plan.shards)} shards; run again")
    output = job.output()
    # temporary files left by workers that died mid-shard
    sweep(output, {*job.side_files(), *output_folder.files_of(job.formats, plan.shards)})  # bboxes_validation.csv too
    journal = mf.Journal(output, job.manifest)
    index = DatasetIndex(tuple(s.index for s in plan.splits.values()), plan.boxes, Ignored.from_state(planned.ignored),
                         Skipped(list(planned.skipped)))
    pipeline.finish(job, journal, plan, index, results)
    return len(results)


def build(p: beam.Pipeline, bj: BeamJob, writer: Callable[[BeamJob], beam.DoFn] = WriteShards) -> beam.PCollection:
    """The conversion's transforms on pipeline `p`; `writer` makes the DoFn that writes shards (tests wrap it)."""
    planned = (_walks(p, bj) | "all walks" >> beam.Flatten()
               | "gather index" >> beam.combiners.ToList()
               | "combine and plan" >> beam.Map(_combine_and_plan, bj))
    plan_side = beam.pvalue.AsSingleton(planned)
    # The plan reaches every later step as a side input only, never also as a main input: a PCollection that
    # is both (legal in Beam's model) is handed to its side-input readers twice by the Dask runner, and a
    # singleton of two elements fails there (tests/test_dask.py).
    results = (p | "start writing" >> beam.Create([None])
               | "shards" >> beam.FlatMap(lambda _, ref: ref.load(bj.job.output()).plan.shards, plan_side)
               | "spread shards" >> beam.Reshuffle()
               | "write shards" >> beam.ParDo(writer(bj), plan_side)
               | "gather results" >> beam.combiners.ToList())
    return results | "bboxes.csv and manifest" >> beam.Map(_finish, plan_side, bj)


def _walks(p: beam.Pipeline, bj: BeamJob) -> tuple[beam.PCollection, ...]:
    """The walks of the downloads there are: the class tars (many workers), the validation tar, the box archives."""
    walks = [p | "class tars" >> beam.Create([e for e in bj.outer if isinstance(e, ClassTar)])
             | "spread class tars" >> beam.Reshuffle()
             | "walk class tars" >> beam.ParDo(WalkClassTar(bj))]
    if "val" in bj.urls:
        walks.append(p | "validation" >> beam.Create([None]) | "walk validation tar" >> beam.Map(_walk_validation, bj))
    if bj.boxes:
        walks.append(p | "box archives" >> beam.Create(bj.boxes) | "spread box archives" >> beam.Reshuffle()
                     | "walk box archives" >> beam.Map(_walk_boxes, bj))
    return tuple(walks)


def _cause(e: BaseException) -> StreamprepError:
    """streamprep's own error inside a runner's wrapping, or one line naming what failed."""
    cause: BaseException | None = e
    while cause is not None and not isinstance(cause, StreamprepError):
        cause = cause.__cause__ or cause.__context__
    if cause is not None:
        return cause  # type: ignore[return-value]
    log.debug("the Beam pipeline failed", exc_info=e)  # the whole story, for whoever configures logging
    text = " ".join(line.strip() for line in str(e).splitlines() if line.strip())
    return PipelineError(f"the Beam pipeline failed: {type(e).__name__}: {text[:300]}{' ...' if len(text) > 300 else ''}"
                         " (the whole error is logged at debug level)")


def _close_client(result: Any) -> None:
    """Close the client a runner opened for this run and left open (the Dask runner's `distributed.Client`): left
    open, it outlives the run and prints reconnection tracebacks once its cluster goes away."""
    client = getattr(result, "client", None)
    close = getattr(client, "close", None)
    if callable(close):
        try:
            close()
        except Exception:  # noqa: BLE001 - the run's outcome is decided; a client that fails to close changes nothing
            log.debug("closing the runner's client failed", exc_info=True)


def _remove_plans(output: Output) -> None:
    """The plans saved in `out` (`SavedPlan`), once the pipeline succeeded: its workers needed them, no later run does
    (about 180 MB at full scale). Those of earlier runs that were killed go too (this run holds `out`)."""
    try:
        for path in output.fs.glob(output.path(f"{store.STATE_DIR}/plan-*.pickle")):
            output.fs.rm_file(path)
    except OSError as e:
        log.warning("%s: the saved plan could not be removed (%s); remove %s/plan-*.pickle", output.url, e,
                    output.path(store.STATE_DIR))


def check_pipeline_options(beam_args: Sequence[str]) -> PipelineOptions:
    """The Beam pipeline options, validated for their runner as Beam would at `run()`: before anything is done."""
    from apache_beam.options.pipeline_options import StandardOptions
    from apache_beam.options.pipeline_options_validator import PipelineOptionsValidator
    from apache_beam.runners.runner import create_runner

    try:
        pipeline_options = PipelineOptions(list(beam_args))
        runner = create_runner(pipeline_options.view_as(StandardOptions).runner or "DirectRunner")
        errors = PipelineOptionsValidator(pipeline_options, runner).validate()
    except (ValueError, TypeError, ImportError) as e:
        raise ConfigError(f"Beam pipeline options {' '.join(beam_args)!r}: {str(e).splitlines()[0][:300]}") from e
    except SystemExit as e:  # argparse inside Beam on a malformed option
        raise ConfigError(f"Beam pipeline options {' '.join(beam_args)!r} do not parse; check them") from e
    if errors:
        raise ConfigError(f"Beam pipeline options {' '.join(beam_args) or '(none)'!r}: {' '.join(errors)[:500]}")
    return pipeline_options


def run(options: Options, passthrough: Sequence[str] | None, progress: Callback | None = None) -> Summary:
    """The engine registry's entry point (`engines.run`): `convert`, the arguments after `--` Beam's options."""
    return convert(options, passthrough or [], progress)


def convert(options: Options, beam_args: Sequence[str], progress: Callback | None = None,
            writer: Callable[[BeamJob], beam.DoFn] = WriteShards) -> Summary:
    """Run the conversion on Beam; `beam_args` go to `PipelineOptions` untouched. Waits for the pipeline, holding
    `out`'s lock (or lease) meanwhile: one run per --out."""
    started = time.monotonic()
    pipeline_options = check_pipeline_options(beam_args)
    refuse(options)
    run = Conversion(options, progress)
    with run.started():
        bj = launch(run)
        run.inputs.close()  # the launcher is done reading: the workers open the downloads themselves
        return _run_pipeline(bj, beam_args, pipeline_options, writer, started)


def _run_pipeline(bj: BeamJob, beam_args: Sequence[str], pipeline_options: PipelineOptions,
                  writer: Callable[[BeamJob], beam.DoFn], started: float) -> Summary:
    """The pipeline run and waited for; its summary, from the manifest it wrote and its counters."""
    options = bj.job.options
    log.info("running on Apache Beam (%s); %d class tars listed", " ".join(beam_args) or "DirectRunner",
             sum(isinstance(entry, ClassTar) for entry in bj.outer))
    try:
        p = beam.Pipeline(options=pipeline_options)
        build(p, bj, writer)
        result = p.run()
        try:
            result.wait_until_finish()
        finally:
            _close_client(result)
    except StreamprepError:
        raise
    except Exception as e:  # noqa: BLE001 - the runner's wrapping of a worker's error
        raise _cause(e) from e
    _remove_plans(bj.job.output())
    counters: dict[str, int] = {}
    try:
        for c in result.metrics().query(beam.metrics.MetricsFilter().with_namespace("streamprep"))["counters"]:
            counters[c.key.metric.name] = counters.get(c.key.metric.name, 0) + (c.committed or c.attempted or 0)
    except Exception:  # noqa: BLE001 - a runner without metrics: the summary goes without them
        pass
    summary = Summary(options.out, "beam", time.monotonic() - started, mf.load(bj.job.output()))
    if counters:
        summary.images_written = counters.get("images_written", 0)
        summary.bytes_written = counters.get("bytes_written", 0)
    if summary.manifest is not None:
        summary.shards_kept = len(summary.manifest.shards) - counters.get("shards_written", len(summary.manifest.shards))
        summary.checked = bj.job.checked if summary.shards_kept else None
    return summary
