"""THE ENGINE SEAM: one conversion's steps in their one order (`Conversion`), whatever engine runs the work.

    summary = Conversion(options, progress, stop).run(engine)     # engines.local: convert
    Conversion(options, progress, stop, dry=True).run(engine)      # engines.preview: `streamprep plan`

`run` opens the downloads, locks and claims `out` (`output_folder`), checks the MD5s, makes the
job, finds the index (the one an earlier run saved, or `engine.walk`), plans, checks the space,
opens `out`, writes the folder tree, has `engine.write` write or keep every shard, and finishes
(bboxes.csv, the formats' side files, the complete manifest). An engine supplies only `walk` and
`write` (`Engine`). A dry run stops after the plan, writing nothing but the saved index.
Apache Beam (`engines.beam`) walks where it writes, so it runs the launcher's steps here
(`started`, `prepare`, `open_output`) and the rest on its workers with the same step functions.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Protocol

from .. import datasets
from ..archives import checksums
from ..errors import StreamprepError
from ..index.images import DatasetIndex
from ..options import Options
from ..outputs import manifest as mf
from ..outputs.format import Reader, ShardResult
from ..outputs.materialize import FolderTreeSummary, materialize
from ..plan import Plan
from ..progress import Callback
from . import output_folder, pipeline
from .output_folder import OutputState
from .pipeline import Inputs, Job, Summary
from .readers import archive_reader, tree_reader


class Engine(Protocol):
    """Where a conversion's work runs: what an engine gives `Conversion.run` (the local engine is the example)."""

    name: str  # as the summary names it ("local")

    def walk(self, run: Conversion) -> DatasetIndex:
        """The index of `run.inputs` (`pipeline.walk_index` walks it in this process), obeying `run.stop`."""
        ...

    def write(self, run: Conversion, journal: mf.Journal) -> list[ShardResult]:
        """Write or keep every shard of `run.plan`, validation first, each split's shards in order, reading each
        split's images with `run.reader(split)` and listing each shard finished in `journal`; their results."""
        ...


@dataclass
class Conversion:
    """One conversion: its options, then what each step found, in the order the steps run."""

    options: Options
    progress: Callback | None = None
    stop: threading.Event | None = None
    dry: bool = False  # `streamprep plan`: no lock, no MD5s, nothing written but the saved index
    inputs: Inputs | None = None
    state: OutputState | None = None  # what `out` held before the run (None without `out`)
    refused: str | None = None  # (a dry run) why a conversion would refuse `out`, before reading anything
    job: Job | None = None  # None without `out` (only the folder tree is written)
    index: DatasetIndex | None = None
    index_reused: bool = False  # the index an earlier run saved, not walked again
    index_saved: bool = False
    plan: Plan | None = None
    tree: FolderTreeSummary | None = None  # the folder tree `--materialize` wrote

    def run(self, engine: Engine) -> Summary:
        """Every step, in order, with `engine`'s walk and writes; the summary (a dry run's counts nothing)."""
        started = time.monotonic()
        with self.started():
            self.prepare()
            self.find_index(engine)
            self.make_plan()  # fails here, before any write, if a text is missing
            if self.dry:
                self.save_index_only()
                return Summary(self.options.out, engine.name, time.monotonic() - started,
                               index_reused=self.index_reused)
            journal = self.open_output() if self.job else None
            self.write_tree()
            summary = Summary(self.options.out, engine.name, 0.0, index_reused=self.index_reused,
                              folder_tree=self.tree)
            if journal is not None:
                with journal:  # however the writing ends, the manifest lists every file it finished
                    results = engine.write(self, journal)
                summary.manifest = self.finish(journal, results)
                summary.count(results, self.plan)
        summary.seconds = time.monotonic() - started
        return summary

    @contextmanager
    def started(self) -> Iterator[Conversion]:
        """The downloads opened, `out` locked (not by a dry run), looked at and claimed: `out` holding another
        conversion, or not writable, is refused before anything is read (a dry run notes why in `refused`).
        If the run fails, `out` is released; the downloads are closed however it ends."""
        options = self.options
        self.inputs = pipeline.open_inputs(options)
        try:
            with output_folder.locked(options, self.dry):
                self.state = output_folder.look_at_output(options) if options.out else None
                try:
                    self._claim()
                    yield self
                except BaseException:
                    if self.state:
                        output_folder.release_output(options, self.state)
                    raise
        finally:
            self.inputs.close()

    def _claim(self) -> None:
        if self.state is None:
            return
        run = pipeline.run_record(self.options, self.inputs)
        if not self.dry:
            output_folder.claim_output(self.options, self.state, run)
            return
        try:
            output_folder.claim_output(self.options, self.state, run, probe=False)
        except StreamprepError as e:
            self.refused = str(e)

    def prepare(self) -> Job | None:
        """`--check-md5` first (not in a dry run: it reads every byte), then the job: the manifest's head, the
        shards an earlier run finished, where the index is saved."""
        options, previous = self.options, self.state.previous if self.state else None
        md5 = {}
        if options.check_md5 and not self.dry:  # before anything is written
            md5 = checksums.check(self.inputs.sources, checksums.known_sums(previous.md5 if previous else None,
                                                                            self.inputs.identities), self.progress,
                                  published=datasets.get(options.dataset).published)
        self.job = pipeline.make_job(options, self.inputs, previous, md5) if options.out else None
        return self.job

    def find_index(self, engine: Engine) -> DatasetIndex:
        """The index an earlier run of the same downloads saved in `out`, else `engine.walk`'s."""
        existed = bool(self.state and self.state.existed)
        self.index = pipeline.saved_index(self.job, existed, self.inputs) if self.job else None
        self.index_reused = self.index is not None
        if self.index is None:
            self.index = engine.walk(self)
        return self.index

    def make_plan(self) -> Plan:
        """The classic's plan, or TFDS's (`pipeline.make_run_plan`)."""
        self.plan = pipeline.make_run_plan(self.options, self.inputs, self.index)
        return self.plan

    def save_index_only(self) -> None:
        """A dry run's one write: the index it walked, saved in `out` (unless `out` is refused) for the conversion."""
        if self.job and not self.index_reused and not self.refused:
            self.job.output().create()
            pipeline.save_index(self.job, self.index, self.inputs)
            self.index_saved = True

    def open_output(self) -> mf.Journal:
        """The free space checked, `out` opened (`output_folder.open_output`), then the walked index saved."""
        pipeline.check_space(self.job, self.plan)
        journal = output_folder.open_output(self.job, self.state, self.plan)
        if not self.index_reused:
            pipeline.save_index(self.job, self.index, self.inputs)
            self.index_saved = bool(self.job.index_key)
        return journal

    def write_tree(self) -> None:
        """`--materialize`: the classic folder tree, written in one pass over each download; the shards then read
        their images from it; with the validation boxes (`--bbox-val`) their XML files and bboxes_validation.csv."""
        if self.options.materialize:
            sources = self.inputs.sources
            split_boxes = {b.split: (sources[b.download], self.index.split_boxes[b.split].csv)
                           for b in datasets.get(self.options.dataset).split_boxes
                           if b.download in sources and b.split in self.index.split_boxes}
            self.tree = materialize(self.options.materialize, sources["train"], sources["val"], sources["bbox"],
                                    self.inputs.labels, self.index.boxes.csv, self.options.workers, self.progress,
                                    split_boxes)

    def reader(self, split: str) -> tuple[Reader, bool]:
        """Where a split's images are read from (the folder tree if one was written, else the download), and
        whether to read ahead (remote downloads)."""
        source = self.inputs.split_source(split)
        if self.tree:
            return tree_reader(self.tree.base, split), False
        return archive_reader(source), source.remote

    def finish(self, journal: mf.Journal, results: list[ShardResult]) -> mf.Manifest:
        """bboxes.csv, the formats' side files, the complete manifest (`pipeline.finish`)."""
        return pipeline.finish(self.job, journal, self.plan, self.index, results)
