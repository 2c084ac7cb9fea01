"""The one pipeline both engines drive: open the inputs, index, plan, write or keep each shard, finish.

An engine decides only where each step runs: `engines.local` runs them in this process with
threads, `engines.beam` as Apache Beam transforms. Every step's code is here or in the modules it
calls, so both engines give the same bytes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import __version__
from ..archives.storage import Source
from ..errors import ConfigError
from ..index import store
from ..index.images import DatasetIndex
from ..index.labels import LabelData, load_label_data
from ..options import Options
from ..outputs import manifest as mf
from ..outputs.bboxes_csv import BBOXES_CSV, write_bboxes
from ..outputs.files import Output, sweep
from ..outputs.format import Check, Format, ShardResult
from ..records.decode import full_decode
from ..outputs.materialize import FolderTreeSummary
from ..outputs.tfrecord import TFRecordFormat
from ..plan import Plan

SIDE_FILES = {BBOXES_CSV, mf.MANIFEST}  # written beside the shards


@dataclass
class Inputs:
    """What every engine starts with: the label data, the three downloads opened once, their identities."""

    labels: LabelData
    sources: dict[str, Source]
    identities: dict[str, dict[str, Any]]

    def close(self) -> None:
        for source in self.sources.values():
            source.close()


def open_inputs(options: Options) -> Inputs:
    """The label data and the three downloads (one size lookup each); close them when done."""
    labels = load_label_data(options.labels_file, options.metadata_file, options.validation_labels_file,
                             options.storage_options)
    sources: dict[str, Source] = {}
    try:
        for key in ("train", "val", "bbox"):
            sources[key] = Source(getattr(options, key), options.storage_options)
        if sources["train"].url == sources["val"].url:
            raise ConfigError(f"train and val (--train, --val) name the same file {sources['train'].url}; pass each "
                              "download once")
        return Inputs(labels, sources, {k: mf.identity(s) for k, s in sources.items()})
    except BaseException:
        for source in sources.values():
            source.close()
        raise


def run_record(options: Options, inputs: Inputs) -> dict[str, Any]:
    """What the output depends on (inputs, label data, sharding, policies): the manifest's `run`."""
    return {"inputs": inputs.identities, "labels": inputs.labels.digest(),
            "layout": dataclasses.asdict(options.sharding), "on_bad_image": str(options.on_bad_image),
            "on_bad_xml": str(options.on_bad_xml), "check_decode": options.check_decode, "streamprep": __version__}


@dataclass
class Job:
    """What a run hands to whatever writes its shards: small and picklable (no index, no image bytes)."""

    options: Options
    labels: LabelData
    manifest: mf.Manifest  # the run, options and MD5s; shards kept from an earlier run
    keep: dict[str, mf.ShardEntry]  # shards an earlier run of the same conversion finished, by file name
    index_key: str | None  # where the index is saved for a later run to reuse
    fmt: Format = field(default_factory=TFRecordFormat)

    def output(self) -> Output:
        return Output(self.options.out, self.options.storage_options, create=False)

    def check_image(self) -> Check | None:
        """The opt-in full decode of every image (`check_decode`), or None."""
        return full_decode if self.options.check_decode else None


def previous_manifest(options: Options) -> mf.Manifest | None:
    """The manifest an earlier run left in `out`, if any (read before anything is written)."""
    return mf.load(Output(options.out, options.storage_options, create=False)) if options.out else None


def start_job(options: Options, inputs: Inputs, previous: mf.Manifest | None,
              md5: dict[str, str] | None = None) -> Job:
    """Create `out` and sweep what killed runs left; the caller then opens the run's `Journal` on `job.manifest`."""
    run = run_record(options, inputs)
    keep = previous.reusable(run) if previous else {}
    head = mf.Manifest(run, options.public(),
                       {k: {"identity": inputs.identities[k], "md5": v} for k, v in (md5 or {}).items()},
                       dict(keep))
    key = None
    if mf.identifiable(inputs.identities):
        key = store.key(inputs.identities, run["labels"], {"on_bad_xml": str(options.on_bad_xml)})
    job = Job(options, inputs.labels, head, keep, key)
    output = job.output()
    output.create()
    sweep(output, {*SIDE_FILES, *job.fmt.file_names(options.sharding.every_shard())})
    return job


def finish(job: Job, journal: mf.Journal, plan: Plan, index: DatasetIndex, results: list[ShardResult]) -> mf.Manifest:
    """bboxes.csv, then the complete manifest: exactly these shards (validation then train, in shard order)."""
    output = journal.output
    csv = write_bboxes(plan, output)
    journal.complete([r.entry for r in results], totals(plan, index, results, csv))
    return journal.manifest


def _class_counts(split_index: Any, skipped: set[str]) -> dict[str, int]:
    """Images per label (labels as text), without the images skipped by policy."""
    labels, found = np.unique(split_index.labels, return_counts=True)
    counts = {str(int(label)): int(n) for label, n in zip(labels, found)}
    if skipped:  # rare (on_bad_image = skip): take the skipped images back out
        for i in range(len(split_index)):
            if split_index.member(i) in skipped:
                counts[str(int(split_index.labels[i]))] -= 1
        counts = {label: n for label, n in counts.items() if n}
    return counts


def totals(plan: Plan, index: DatasetIndex, results: list[ShardResult], csv: mf.FileEntry) -> mf.Totals:
    """Per-split counts, bboxes.csv, fix-ups, skipped and ignored members: the complete manifest's closing part."""
    splits = {}
    for name, split_plan in plan.splits.items():
        mine = [r.entry for r in results if r.shard.split == name]
        counts = _class_counts(split_plan.index, {s["member"] for e in mine for s in e.skipped})
        splits[name] = mf.SplitEntry(sum(e.records for e in mine), len(split_plan.shards), len(counts), counts,
                                     sum(e.boxes for e in mine), sum(e.bytes for e in mine))
    entries = [r.entry for r in results]
    ignored = {reason: {"count": count, "examples": index.ignored.examples[reason]}
               for reason, count in sorted(index.ignored.counts.items())}
    return mf.Totals(splits, csv, sorted(f for e in entries for f in e.fixups),
                     [*index.skipped.items, *(s for e in entries for s in e.skipped)], ignored)


def save_index(job: Job, index: DatasetIndex) -> None:
    if job.index_key:
        store.save(job.output(), job.index_key, index)


def saved_index(job: Job) -> DatasetIndex | None:
    return store.load(job.output(), job.index_key) if job.index_key else None


@dataclass
class Summary:
    """What a conversion did, for the closing report; the same for both engines."""

    out: str | None
    engine: str
    seconds: float
    manifest: mf.Manifest | None = None  # the complete manifest (None when only the folder tree was written)
    shards_kept: int = 0  # finished by an earlier run, checked and kept
    images_written: int | None = None  # by this run (None when the engine does not count them)
    bytes_read: int | None = None  # image bytes read from the downloads by this run
    bytes_written: int | None = None  # shard bytes written by this run
    index_reused: bool = False
    folder_tree: FolderTreeSummary | None = None
