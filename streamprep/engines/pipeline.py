"""The steps of a conversion, whatever runs them: open the inputs, make the job, index, plan, finish; `Summary`.

`engines.driver.Conversion` runs them in order (with `engines.output_folder`'s steps on `out`);
an engine decides only where the walks and the shard writes run: `engines.local` in this process,
`engines.beam` as Apache Beam transforms. Every step's code is here or in the modules it calls, so
every engine gives the same bytes.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import __version__
from .. import datasets, extras
from ..archives import folder as folders
from ..archives import gzipped
from ..archives.storage import Source, protocol_of, resolve
from ..errors import ArchiveError, ConfigError, OutputError
from ..index import store
from ..index.build import build_index
from ..index.images import DatasetIndex
from ..index.labels import LabelData, load_label_data
from ..options import BBOX_TARGZ, TRAIN_TAR, VAL_TAR, Options, join
from ..outputs import checksum as checksums
from ..outputs import manifest as mf
from ..outputs.bboxes_csv import BBOXES_CSV, SPLIT_CSV, write_bboxes, write_split_bboxes
from ..archives.output import Output
from ..outputs import registry as output_formats
from ..outputs.format import Check, Format, ShardResult, planned_bytes
from ..records import fixups
from ..records.decode import full_decode
from ..outputs.materialize import FolderTreeSummary
from ..progress import Callback
from ..plan import Plan, make_plan

log = logging.getLogger("streamprep")

SIDE_FILES = {BBOXES_CSV, mf.MANIFEST}  # written beside the shards


def output_of(options: Options) -> Output:
    """The run's output folder (`out`), as storage; nothing is created."""
    return Output(options.out, options.storage_options, create=False)


@dataclass
class Inputs:
    """What every engine starts with: the label data, the three downloads opened once, their identities."""

    labels: LabelData
    sources: dict[str, Source]
    identities: dict[str, dict[str, Any]]

    def close(self) -> None:
        for source in self.sources.values():
            source.close()

    def split_source(self, split: str) -> Source:
        """The download a split's images are read from: the validation tar, else the training download (which
        holds both splits of a dataset whose validation split a recipe chooses: ImageNet-21k)."""
        return self.sources["val"] if split == "validation" and "val" in self.sources else self.sources["train"]


OFFICIAL = {"train": TRAIN_TAR, "val": VAL_TAR, "bbox": BBOX_TARGZ}  # each download's name in a DOWNLOADS folder


def open_inputs(options: Options) -> Inputs:
    """The label data and the three downloads (one size lookup each); close them when done. Every optional
    package the run needs is checked first (`extras`), before anything is read."""
    extras.check(extras.for_convert(options))
    labels = load_label_data(options.labels_file, options.metadata_file, options.validation_labels_file,
                             options.storage_options, datasets.get(options.dataset))
    sources: dict[str, Source] = {}
    try:
        for key in ("train", "val", "bbox"):
            if getattr(options, key) is not None:  # a dataset without the download has none (ImageNet-21k)
                sources[key] = open_download(options, key)
        for key, url in optional_downloads(options).items():  # only when given or found: older runs still resume
            sources[key] = Source(url, options.storage_options)
        if "val" in sources and sources["train"].url == sources["val"].url:
            raise ConfigError(f"train and val (--train, --val) name the same file {sources['train'].url}; pass each "
                              "download once")
        return Inputs(labels, sources, {k: mf.identity(s) for k, s in sources.items()})
    except BaseException:
        for source in sources.values():
            source.close()
        raise


def optional_downloads(options: Options) -> dict[str, str]:
    """Each optional download of the dataset (a split's own boxes: `--bbox-val`) by role: as given, else under its
    official name in the DOWNLOADS folder when it is there, else left out (on every engine)."""
    dataset, found = datasets.get(options.dataset), {}
    for boxes in dataset.split_boxes:
        if boxes.download not in dataset.published:  # an entry made from another without that download
            continue
        url = getattr(options, boxes.download, None)
        if url is None and options.downloads:
            candidate = join(options.downloads, dataset.download(boxes.download).name)
            url = candidate if _exists(candidate, options.storage_options) else None
        if url:
            found[boxes.download] = url
    return found


def _exists(url: str, storage_options: dict[str, Any]) -> bool:
    try:
        fs, path = resolve(url, storage_options)
        return bool(fs.isfile(path))
    except Exception:  # noqa: BLE001 - not there as far as can be told: the download is left out
        return False


def from_downloads(options: Options, key: str) -> bool:
    """Whether download `key` (train, val, bbox) is the official name in the DOWNLOADS folder (not given itself)."""
    return bool(options.downloads) and getattr(options, key) == join(options.downloads, OFFICIAL[key])


def open_download(options: Options, key: str) -> Source:
    """One of the three downloads. Taken from the DOWNLOADS folder, it cannot be found when DOWNLOADS is itself a
    file (a path or a URL alike): then the error says so, and what to pass instead."""
    download = datasets.get(options.dataset).download(key)
    try:
        if download.folder_glob:  # the file, a folder holding it, or a folder of its parts
            source = folders.open_download(getattr(options, key), options.storage_options, download.name,
                                           download.folder_glob)
        else:
            source = Source(getattr(options, key), options.storage_options)
    except (ArchiveError, NotADirectoryError) as e:
        if from_downloads(options, key) and _is_file(options.downloads, options.storage_options):
            raise downloads_is_a_file(options) from e
        raise
    # A gzipped tar read at byte ranges (winter21_whole.tar.gz): the offsets of the tar inside (archives.gzipped);
    # the boxes' .tar.gz is read forward as it is.
    return gzipped.GzippedSource.around(source) if key != "bbox" and gzipped.named(source.url) else source


def _is_file(url: str, storage_options: dict[str, Any]) -> bool:
    """Whether `url` is a file (asked only once opening a download in it failed)."""
    try:
        fs, path = resolve(url, storage_options)
        return bool(fs.isfile(path))
    except Exception:  # noqa: BLE001 - not known to be a file: the download's own error stands
        return False


def downloads_is_a_file(options: Options) -> ConfigError:
    """DOWNLOADS names a file (often one of the three downloads) where the folder holding the three belongs."""
    given = options.downloads or ""
    name = given.rstrip("/").rsplit("/", 1)[-1]
    flag = next((f"--{key}" for key, official in OFFICIAL.items() if name == official), None)
    others = [f"--{key}" for key in OFFICIAL if from_downloads(options, key) and f"--{key}" != flag]
    if flag:
        also = f" (and {' '.join(f'{o} FILE' for o in others)} for the other download{'s' * (len(others) > 1)})" \
            if others else ""
        instead = f"pass it as {flag} {given}{also}"
    else:
        instead = f"pass the downloads as {' '.join(f'{o} FILE' for o in others)}"
    return ConfigError(f"DOWNLOADS {given} is a file, not the folder holding the three downloads; {instead}, or "
                       f"pass the folder that holds {TRAIN_TAR}, {VAL_TAR} and {BBOX_TARGZ}")


def run_record(options: Options, inputs: Inputs) -> dict[str, Any]:
    """What the output depends on (inputs, label data, sharding, policies, every format's own options): the
    manifest's `run`."""
    return {"inputs": inputs.identities, "labels": inputs.labels.digest(),
            "layout": options.sharding.layout(), "formats": list(options.formats),
            "dali_index": options.dali_index, **options.format_options(), "on_bad_image": str(options.on_bad_image),
            "on_bad_xml": str(options.on_bad_xml), "check_decode": options.check_decode, "streamprep": __version__,
            **({"dataset": options.dataset, **options.dataset_options()}  # older runs: the default dataset
               if options.dataset != datasets.DEFAULT else {}),
            **({"resize": options.recipe.describe()} if options.recipe else {})}  # a variant: never a mix



@dataclass
class Job:
    """What a run hands to whatever writes its shards: small and picklable (no index, no image bytes)."""

    options: Options
    labels: LabelData
    manifest: mf.Manifest  # the run, options and MD5s; shards kept from an earlier run
    keep: dict[str, mf.ShardEntry]  # shards an earlier run of the same conversion finished, by file name
    index_key: str | None  # where the index is saved for a later run to reuse

    @property
    def formats(self) -> list[Format]:
        """The output formats, each writing its DALI index if asked (`--format`, `--dali-index`)."""
        return output_formats.make(self.options)

    def pending(self, shards: Any) -> list[Any]:
        """The shards an earlier run did not finish in every format."""
        fmts = self.formats
        return [s for s in shards if any(f.file_name(s) not in self.keep for f in fmts)]

    def output(self) -> Output:
        return output_of(self.options)

    def side_files(self) -> set[str]:
        """The files this run writes beside the shards but the formats' own: bboxes.csv, manifest.json, and
        bboxes_<split>.csv of each split whose own boxes' download is an input (`--bbox-val`)."""
        inputs = self.manifest.run.get("inputs", {})
        return {*SIDE_FILES, *(SPLIT_CSV % boxes.split for boxes in datasets.get(self.options.dataset).split_boxes
                                if boxes.download in inputs)}

    def check_image(self) -> Check | None:
        """The opt-in full decode of every image (`check_decode`), or None."""
        return full_decode if self.options.check_decode else None

    @property
    def checksum(self) -> str:
        """The algorithm of the manifest's digests (`--checksum`): every file this run writes or keeps is listed
        under it."""
        return self.manifest.checksum

    @property
    def checked(self) -> str | None:
        """The algorithm the shards kept from an earlier run are checked with (its manifest's), or None."""
        return next((e.checksum for e in self.keep.values()), None)


def make_job(options: Options, inputs: Inputs, previous: mf.Manifest | None,
             md5: dict[str, str] | None = None) -> Job:
    """The run's job (writes nothing): its manifest's head, the shards to keep, where its index is saved."""
    run = run_record(options, inputs)
    keep = previous.reusable(run) if previous else {}
    if keep:  # they are checked with their manifest's algorithm (and hashed with this run's if it is another)
        extras.check(extras.Need(*need) for need in checksums.needs(previous.checksum))
    # The head lists the kept shards when their digests are of this run's algorithm; otherwise each is listed once
    # checked and hashed again (a manifest never mixes algorithms).
    head = mf.Manifest(run, options.public(),
                       {k: {"identity": inputs.identities[k], "md5": v} for k, v in (md5 or {}).items()},
                       {k: e for k, e in keep.items() if e.checksum == options.checksum}, checksum=options.checksum)
    for fmt in output_formats.make(options):
        fmt.refuse(inputs.labels)  # before anything is read or written
    key = None
    if mf.identifiable(inputs.identities):
        policies = {"on_bad_xml": str(options.on_bad_xml),
                    "complete_validation": str(needs_every_validation_image(options))}
        policies.update(output_formats.walk_key(options))  # walked by a format's own member rules (TFDS's)
        if options.dataset != datasets.DEFAULT:
            policies["dataset"] = options.dataset  # walked by another dataset's member rules
            policies.update({k: str(v) for k, v in options.dataset_options().items()})  # and its recipe
        key = store.key(inputs.identities, run["labels"], policies)
    return Job(options, inputs.labels, head, keep, key)


def free_bytes(out: str | None) -> int | None:
    """The free space of the disk a local `out` is on (its nearest existing folder's: it may not exist yet); None
    for object stores and no `out`."""
    if not out or protocol_of(out) != "file":
        return None
    folder = os.path.abspath(out[len("file://"):] if out.startswith("file://") else out)
    while not os.path.exists(folder):
        folder = os.path.dirname(folder)
    return shutil.disk_usage(folder).free


def check_space(job: Job, plan: Plan) -> None:
    """Stop before the first write when the shards still to write may not fit on a local `out`."""
    output = job.output()
    if job.options.no_space_check or protocol_of(job.options.out) != "file":
        return
    todo = job.pending(plan.shards)
    need = sum(planned_bytes(f, plan, todo) for f in job.formats)  # a --resize recipe's estimate
    free = free_bytes(output.root)
    if free is not None and need > free:
        raise OutputError(f"{job.options.out}: the {len(todo):,} shards still to write may take up to {need:,} bytes "
                          f"({need / 1e9:,.1f} GB), and the disk has {free:,} bytes ({free / 1e9:,.1f} GB) free; free "
                          "some space or choose another --out (--no-space-check writes anyway)")


def finish(job: Job, journal: mf.Journal, plan: Plan, index: DatasetIndex, results: list[ShardResult]) -> mf.Manifest:
    """bboxes.csv, then the complete manifest: exactly these shards (validation then train, in shard order)."""
    output = journal.output
    entries = [e for r in results for e in r.entries]
    with journal:  # an error below (a stray file) leaves every shard this run finished listed, then is raised
        journal.finished(*entries)  # the local engine listed each as it finished; Beam's workers do not
        csv = write_bboxes(plan, output, job.checksum)
        files = write_split_bboxes(plan, output, job.checksum)  # bboxes_validation.csv with --bbox-val
        for fmt in job.formats:
            for name, data in fmt.side_files(plan, entries).items():
                with output.atomic(name) as f:
                    f.write(data)
                files.append(mf.FileEntry(name, len(data), checksums.digest(job.checksum, data),
                                          checksum=job.checksum))
        written = {*SIDE_FILES, *(n for e in entries for n in e.files()), *(f.name for f in files)}
        strays = [n for n in mf.output_files(output) if n not in written]
        if strays:  # never a complete manifest beside another run's files
            raise OutputError(f"{output.path(strays[0])}: named as streamprep names its output, but not written by "
                              f"this run ({len(strays):,} such file(s)): another program writes into --out? Stop it, "
                              "remove them and run the same command again")
        journal.complete(entries, totals(plan, index, results, csv, files))
    warn_unequal(job, results)
    return journal.manifest


def warn_unequal(job: Job, results: list[ShardResult]) -> None:
    """With --equal-shards, a warning when images skipped as --on-bad-image skip says left shards more than one
    image apart (the cut is made before the images are read; docs/equal-shards.md says what a job does then)."""
    if not job.options.sharding.equal:
        return
    for split in ("validation", "train"):
        counts = [r.records for r in results if r.shard.split == split]
        if counts and max(counts) - min(counts) > 1:
            log.warning("--equal-shards: %s shards hold %d to %d images, not within one, because %d image(s) were "
                        "skipped (--on-bad-image skip); each shard's count is in manifest.json and the formats' "
                        "metadata: give every rank the same number of batches (drop_last) or rerun without them",
                        split, min(counts), max(counts),
                        sum(len(r.entries[0].skipped) for r in results if r.shard.split == split))


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


def totals(plan: Plan, index: DatasetIndex, results: list[ShardResult], csv: mf.FileEntry,
           files: list[mf.FileEntry] | None = None) -> mf.Totals:
    """Per-split counts, bboxes.csv, fix-ups, skipped and ignored members, the formats' files beside the shards:
    the complete manifest's closing part. Images, boxes and skips are counted once (in the first format's files,
    each format holds the same); bytes are those of every format's shard files."""
    splits = {}
    for name, split_plan in plan.splits.items():
        mine = [r for r in results if r.shard.split == name]
        firsts = [r.entries[0] for r in mine]
        counts = _class_counts(split_plan.index, {s["member"] for e in firsts for s in e.skipped})
        splits[name] = mf.SplitEntry(sum(e.records for e in firsts), len(split_plan.shards), len(counts), counts,
                                     sum(e.boxes for e in firsts), sum(r.bytes for r in mine))
    entries = [r.entries[0] for r in results]
    ignored = {reason: {"count": count, "examples": index.ignored.examples[reason]}
               for reason, count in sorted(index.ignored.counts.items())}
    return mf.Totals(splits, csv, fixups.by_kind([f for e in entries for f in e.fixups]),
                     [*index.skipped.items, *(s for e in entries for s in e.skipped)], ignored, files or [],
                     len(plan.labels.synsets))


def walk_index(options: Options, inputs: Inputs, progress: Callback | None = None,
               stop: threading.Event | None = None) -> DatasetIndex:
    """Walk the downloads (`index.build`); for `--format tfds` by TFDS's member rules, which label validation
    images by position, so a validation tar with fewer images than the labels file lists is no error there."""
    return build_index(inputs.sources, inputs.labels, options.workers, progress, options.skip_bad_xml, stop,
                       dataset=datasets.get(options.dataset), dataset_options=options.dataset_options(),
                       **output_formats.walk(options))


def needs_every_validation_image(options: Options) -> bool:
    """Whether every image the validation labels file lists must be in the validation tar (part of the index's
    key: an index walked without the check may not serve a run that needs it)."""
    return output_formats.walk(options).get("complete_validation", True)


def make_run_plan(options: Options, inputs: Inputs, index: DatasetIndex) -> Plan:
    """The run's plan: the classic's order and shards, or the plan of a format with an order of its own (TFDS's:
    `Format.plan`)."""
    for fmt in output_formats.make(options):
        plan = fmt.plan(options, inputs, index)
        if plan is not None:
            return plan
    return make_plan(index, inputs.labels, options.sharding)


def save_index(job: Job, index: DatasetIndex, inputs: Inputs | None = None) -> None:
    """The index saved in `out`, after the checkpoints a gzipped download is read from (no use without them)."""
    if job.index_key:
        if inputs is not None:
            gzipped.keep(job.output(), inputs.sources, inputs.identities)
        store.save(job.output(), job.index_key, index)


def saved_index(job: Job, existed: bool, inputs: Inputs | None = None) -> DatasetIndex | None:
    """The index an earlier run of the same downloads saved in `out` (read only if `out` exists), with a gzipped
    download's checkpoints: without them the downloads are walked again."""
    if not job.index_key or not existed:
        return None
    index = store.load(job.output(), job.index_key)
    if index is not None and inputs is not None and not gzipped.restore(job.output(), inputs.sources,
                                                                        inputs.identities):
        return None
    return index


@dataclass
class Summary:
    """What a conversion did, for the closing report; the same for every engine."""

    out: str | None
    engine: str
    seconds: float
    manifest: mf.Manifest | None = None  # the complete manifest (None when only the folder tree was written)
    shards_kept: int = 0  # finished by an earlier run, checked and kept
    checked: str | None = None  # the checksum the kept shards were checked with (their earlier manifest's)
    shards_written: int | None = None  # by this run (None when the engine does not count them)
    images_written: int | None = None  # by this run (None when the engine does not count them)
    bytes_read: int | None = None  # image bytes read from the downloads by this run
    bytes_written: int | None = None  # shard bytes written by this run
    index_reused: bool = False
    folder_tree: FolderTreeSummary | None = None

    def count(self, results: list[ShardResult], plan: Plan) -> None:
        """The shards kept and written, and the images, shard bytes and image bytes this run wrote and read."""
        written = [r for r in results if not r.kept]
        self.shards_kept, self.shards_written = len(results) - len(written), len(written)
        self.checked = next((r.checked for r in results if r.kept), None)
        self.images_written = sum(r.records for r in written)
        self.bytes_written = sum(r.bytes for r in written)
        self.bytes_read = sum(int(plan.splits[r.shard.split].index.sizes[
            plan.splits[r.shard.split].order[r.shard.start:r.shard.stop]].sum()) for r in written)
