"""The one pipeline both engines drive: open the inputs, index, plan, write or keep each shard, finish.

An engine decides only where each step runs: `engines.local` runs them in this process with
threads, `engines.beam` as Apache Beam transforms. Every step's code is here or in the modules it
calls, so both engines give the same bytes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import shutil
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import __version__
from .. import extras
from ..archives.storage import Source, protocol_of, rejected_options, resolve
from ..errors import ArchiveError, ConfigError, ImageError, OutputError
from ..index import store
from ..index.build import build_index
from ..index.images import DatasetIndex
from ..index.labels import LabelData, load_label_data
from ..options import BBOX_TARGZ, TRAIN_TAR, VAL_TAR, Options, join
from ..outputs import manifest as mf
from ..outputs.bboxes_csv import BBOXES_CSV, write_bboxes
from ..outputs.files import Output, sweep
from ..outputs import formats as output_formats
from ..outputs.format import Check, Format, ShardResult
from ..records import fixups
from ..records.decode import full_decode
from ..outputs.materialize import FolderTreeSummary
from ..outputs.tfds import check_release
from ..progress import Callback
from ..plan import SHARD_STEM, Plan, fixup_rows, make_plan
from .. import tfds_plan
from ..tfds_plan import make_tfds_plan

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


OFFICIAL = {"train": TRAIN_TAR, "val": VAL_TAR, "bbox": BBOX_TARGZ}  # each download's name in a DOWNLOADS folder


def open_inputs(options: Options) -> Inputs:
    """The label data and the three downloads (one size lookup each); close them when done. Every optional
    package the run needs is checked first (`extras`), before anything is read."""
    extras.check(extras.for_convert(options))
    labels = load_label_data(options.labels_file, options.metadata_file, options.validation_labels_file,
                             options.storage_options)
    sources: dict[str, Source] = {}
    try:
        for key in ("train", "val", "bbox"):
            sources[key] = open_download(options, key)
        if sources["train"].url == sources["val"].url:
            raise ConfigError(f"train and val (--train, --val) name the same file {sources['train'].url}; pass each "
                              "download once")
        return Inputs(labels, sources, {k: mf.identity(s) for k, s in sources.items()})
    except BaseException:
        for source in sources.values():
            source.close()
        raise


def from_downloads(options: Options, key: str) -> bool:
    """Whether download `key` (train, val, bbox) is the official name in the DOWNLOADS folder (not given itself)."""
    return bool(options.downloads) and getattr(options, key) == join(options.downloads, OFFICIAL[key])


def open_download(options: Options, key: str) -> Source:
    """One of the three downloads. Taken from the DOWNLOADS folder, it cannot be found when DOWNLOADS is itself a
    file (a path or a URL alike): then the error says so, and what to pass instead."""
    try:
        return Source(getattr(options, key), options.storage_options)
    except (ArchiveError, NotADirectoryError) as e:
        if from_downloads(options, key) and _is_file(options.downloads, options.storage_options):
            raise downloads_is_a_file(options) from e
        raise


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
    """What the output depends on (inputs, label data, sharding, policies): the manifest's `run`."""
    return {"inputs": inputs.identities, "labels": inputs.labels.digest(),
            "layout": dataclasses.asdict(options.sharding), "formats": list(options.formats),
            "dali_index": options.dali_index, "file_format": options.file_format, "tfds_shards": options.tfds_shards, "on_bad_image": str(options.on_bad_image),
            "on_bad_xml": str(options.on_bad_xml), "check_decode": options.check_decode, "streamprep": __version__}


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
        return output_formats.make(self.options.formats, self.options.dali_index, self.options.file_format)

    def pending(self, shards: Any) -> list[Any]:
        """The shards an earlier run did not finish in every format."""
        fmts = self.formats
        return [s for s in shards if any(f.file_name(s) not in self.keep for f in fmts)]

    def output(self) -> Output:
        return Output(self.options.out, self.options.storage_options, create=False)

    def check_image(self) -> Check | None:
        """The opt-in full decode of every image (`check_decode`), or None."""
        return full_decode if self.options.check_decode else None


SHARD_FILE = re.compile(f"^{SHARD_STEM}")  # how every format's shard file name starts


@dataclass
class OutputState:
    """What `out` holds before a run writes anything: an earlier run's manifest, shard files, whether it exists."""

    previous: mf.Manifest | None
    manifest_problem: str | None  # why a manifest.json there cannot be used
    shard_files: list[str]
    existed: bool
    output_files: list[str] = dataclasses.field(default_factory=list)  # every file named as streamprep's output


def look_at_output(options: Options) -> OutputState:
    """Read what `out` holds (nothing is written)."""
    output = Output(options.out, options.storage_options, create=False)
    try:
        names = [p.rstrip("/").rsplit("/", 1)[-1] for p in output.fs.ls(output.root, detail=False)]
    except (FileNotFoundError, NotADirectoryError):
        return OutputState(None, None, [], False)
    except TypeError as e:
        raise rejected_options(options.out, e) from e
    except OSError as e:
        raise OutputError(f"{options.out}: cannot list the output folder ({e}); choose a readable and writable "
                          "--out") from e
    if "imagenet2012" in names:  # TFDS's layout (--format tfds, or a `tfds build` into this folder)
        try:
            below = output.fs.find(output.path("imagenet2012"), maxdepth=2, detail=False)
        except OSError:
            below = []
        root = len(output.fs._strip_protocol(output.root).rstrip("/")) + 1
        names += [output.fs._strip_protocol(p)[root:] for p in below]
    previous, problem = mf.load_checked(output) if mf.MANIFEST in names else (None, None)
    return OutputState(previous, problem, sorted(n for n in names if SHARD_FILE.match(n) or mf.SHARD_FILE_NAME.match(n)
                                                 or mf.SIDE_FILE_NAME.match(n) and n.startswith("imagenet2012/")),
                       True, sorted(n for n in names if mf.OUTPUT_FILE_NAME.match(n)))


def _differences(old: dict[str, Any], new: dict[str, Any]) -> str:
    """What differs between two manifests' `run`s, in a few words."""
    said = []
    inputs_old, inputs_new = old.get("inputs") or {}, new.get("inputs") or {}
    if not isinstance(inputs_old, dict):
        inputs_old = {}
    changed = [k for k in ("train", "val", "bbox") if inputs_old.get(k) != inputs_new.get(k)]
    if changed:
        said.append(f"other or changed downloads: {', '.join(changed)}")
    if old.get("layout") != new.get("layout"):
        said.append(f"shard counts {old.get('layout')} then, {new.get('layout')} now")
    said += [f"{k} {old.get(k)!r} then, {new.get(k)!r} now" for k in ("formats", "dali_index", "file_format",
                                                                     "tfds_shards", "labels", "on_bad_image",
                                                                     "on_bad_xml", "check_decode", "streamprep")
             if old.get(k) != new.get(k)]
    return "; ".join(said) or "another run record"


def claim_output(options: Options, state: OutputState, run: dict[str, Any], probe: bool = True) -> None:
    """Refuse an `out` that holds another conversion or foreign shards (before anything is read or written);
    then (`probe`) check it can be written."""
    out = options.out
    if state.previous is not None and state.previous.run != run and not options.overwrite:
        raise OutputError(f"{out}: holds the output of another conversion ({_differences(state.previous.run, run)}); "
                          "its files would stay beside this run's, and a training job reading train-* would read "
                          f"both. Pass --overwrite to remove its {len(_replaced(state)):,} file(s) first, or choose "
                          "another --out")
    if state.previous is None and state.shard_files:
        why = f" (its manifest.json is unusable: {state.manifest_problem})" if state.manifest_problem else ""
        raise OutputError(f"{out}: holds {len(state.shard_files):,} shard file(s) (e.g. {state.shard_files[0]}) that "
                          f"no streamprep manifest lists{why}; streamprep will not mix its shards with them. Remove "
                          "them or choose another --out")
    if probe:
        Output(out, options.storage_options, create=False).probe()


def _replaced(state: OutputState) -> list[str]:
    """The files of an earlier conversion that --overwrite replaces: what its manifest lists, and every other file
    named as streamprep's output (those it finished after its manifest was last written, when it was killed)."""
    listed = state.previous.files() if state.previous else []
    return sorted({*listed, *state.output_files} - {mf.MANIFEST})


def release_output(options: Options, state: OutputState) -> None:
    """After a run failed before writing anything: remove `out` again if this run created it and it is empty."""
    if state.existed or not options.out:
        return
    output = Output(options.out, options.storage_options, create=False)
    try:
        if not output.fs.ls(output.root, detail=False):
            output.fs.rmdir(output.root)
    except OSError:
        pass  # left as it is: nothing of value was written


def make_job(options: Options, inputs: Inputs, state: OutputState | None, md5: dict[str, str] | None = None) -> Job:
    """The run's job (writes nothing): its manifest's head, the shards to keep, where its index is saved."""
    run = run_record(options, inputs)
    previous = state.previous if state else None
    keep = previous.reusable(run) if previous else {}
    head = mf.Manifest(run, options.public(),
                       {k: {"identity": inputs.identities[k], "md5": v} for k, v in (md5 or {}).items()},
                       dict(keep))
    for fmt in output_formats.make(options.formats, options.dali_index, options.file_format):
        fmt.refuse(inputs.labels)  # before anything is read or written
    key = None
    if mf.identifiable(inputs.identities):
        policies = {"on_bad_xml": str(options.on_bad_xml), "complete_validation": str(complete_validation(options))}
        if "tfds" in options.formats:
            policies["members"] = "tfds"  # walked by TFDS's member rules (an index saved before them was not)
        key = store.key(inputs.identities, run["labels"], policies)
    return Job(options, inputs.labels, head, keep, key)


def check_space(job: Job, plan: Plan) -> None:
    """Stop before the first write when the shards still to write may not fit on a local `out`."""
    output = job.output()
    if job.options.no_space_check or protocol_of(job.options.out) != "file":
        return
    todo = job.pending(plan.shards)
    need = sum(f.most_bytes(plan, todo) for f in job.formats)
    folder = output.root
    while folder and not os.path.exists(folder):  # the folder may not exist yet: its nearest parent's disk
        folder = os.path.dirname(folder.rstrip("/"))
    free = shutil.disk_usage(folder or ".").free
    if need > free:
        raise OutputError(f"{job.options.out}: the {len(todo):,} shards still to write may take up to {need:,} bytes "
                          f"({need / 1e9:,.1f} GB), and the disk has {free:,} bytes ({free / 1e9:,.1f} GB) free; free "
                          "some space or choose another --out (--no-space-check writes anyway)")


def files_of(fmts: list[Format], shards: Any) -> list[str]:
    """Every file the formats may write for these shards: shard files, their index files, files beside them."""
    return [name for f in fmts for name in (*f.file_names(shards), *f.side_file_names())]


def open_output(job: Job, state: OutputState | None, plan: Plan | None = None) -> mf.Journal:
    """The first writes of a run: an older conversion's files removed (`overwrite`), and every other file named as
    streamprep's output that this run does not write (refused without `overwrite`), `out` created, what killed runs
    left swept, and the manifest written (listing the shards kept) through the `Journal` returned."""
    previous = state.previous if state else None
    if previous is not None and previous.run != job.manifest.run and job.options.overwrite:
        _remove_files_of(job.options, previous)
    output = job.output()
    output.create()
    shards = [*job.options.sharding.every_shard(), *(plan.shards if plan else ())]  # TFDS's counts come from the data
    claimed = {*SIDE_FILES, *files_of(job.formats, shards)}
    stale = [n for n in (state.output_files if state else []) if n not in claimed]
    if stale:
        _remove_stale(job.options, previous, stale)
    sweep(output, claimed | set(stale), mf.OUTPUT_FILE_NAME)
    return mf.Journal(output, job.manifest)


def _remove_stale(options: Options, previous: mf.Manifest | None, stale: list[str]) -> None:
    """Files named as streamprep's output that this run does not write (another run's: a training job globbing
    `train-*` would read them too): removed with `overwrite` when a streamprep manifest is there, else refused."""
    if previous is None:
        raise OutputError(f"{options.out}: holds {len(stale):,} file(s) named as streamprep names its output (e.g. "
                          f"{stale[0]}) that no streamprep manifest lists and this run would not write; streamprep "
                          "will not mix its files with them. Remove them or choose another --out")
    if not options.overwrite:
        raise OutputError(f"{options.out}: holds {len(stale):,} file(s) named as streamprep names its output (e.g. "
                          f"{stale[0]}) that this run would not write, left by another run; a training job would "
                          "read them beside this run's. Pass --overwrite to remove them, or remove them yourself")
    _remove(Output(options.out, options.storage_options, create=False), stale)


def _remove_files_of(options: Options, previous: mf.Manifest) -> None:
    """Exactly the files an older conversion's manifest lists (`overwrite`), the manifest last."""
    output = Output(options.out, options.storage_options, create=False)
    names = previous.files()  # `Manifest.parse` refused any other name
    checked = [name for name in [*names, mf.MANIFEST]
               if name not in ("", ".", "..") and ("/" not in name or mf.SHARD_FILE_NAME.match(name)
                                                   or mf.SIDE_FILE_NAME.match(name))]
    _remove(output, checked)  # never a path out of `out`, whatever wrote the manifest


def _remove(output: Output, checked: list[str]) -> None:
    """These files of `out` (names checked: none leaves it), then the folders they were in, once empty."""
    for name in checked:
        try:
            output.fs.rm_file(output.path(name))
        except FileNotFoundError:
            pass
        except OSError as e:
            raise OutputError(f"{output.path(name)}: cannot remove it ({e}); check --out") from e
    if protocol_of(output.url) == "file":  # the folders those files were in (TFDS's), once empty; object stores
        folders = set()  # have no folders to leave behind
        for name in checked:
            parts = name.split("/")[:-1]
            folders.update("/".join(parts[:depth]) for depth in range(1, len(parts) + 1))
        for folder in sorted(folders, key=lambda f: -f.count("/")):  # the deepest first
            try:
                os.rmdir(os.path.join(output.root, folder))  # refused unless empty: nothing else is removed
            except OSError:
                pass


def finish(job: Job, journal: mf.Journal, plan: Plan, index: DatasetIndex, results: list[ShardResult]) -> mf.Manifest:
    """bboxes.csv, then the complete manifest: exactly these shards (validation then train, in shard order)."""
    output = journal.output
    csv = write_bboxes(plan, output)
    entries = [e for r in results for e in r.entries]
    files = []
    for fmt in job.formats:
        for name, data in fmt.side_files(plan, entries).items():
            with output.atomic(name) as f:
                f.write(data)
            files.append(mf.FileEntry(name, len(data), hashlib.sha256(data).hexdigest()))
    written = {*SIDE_FILES, *(n for e in entries for n in e.files()), *(f.name for f in files)}
    strays = [n for n in mf.output_files(output) if n not in written]
    if strays:  # never a complete manifest beside another run's files
        raise OutputError(f"{output.path(strays[0])}: named as streamprep names its output, but not written by this "
                          f"run ({len(strays):,} such file(s)): another program writes into --out? Stop it, remove "
                          "them and run the same command again")
    journal.complete(entries, totals(plan, index, results, csv, files))
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
                     [*index.skipped.items, *(s for e in entries for s in e.skipped)], ignored, files or [])


def index(options: Options, inputs: Inputs, progress: Callback | None = None,
          stop: threading.Event | None = None) -> DatasetIndex:
    """Walk the downloads (`index.build`); for `--format tfds` by TFDS's member rules, which label validation
    images by position, so a validation tar with fewer images than the labels file lists is no error there."""
    return build_index(inputs.sources, inputs.labels, options.workers, progress, options.skip_bad_xml, stop,
                       complete_validation=complete_validation(options), tfds="tfds" in options.formats)


def complete_validation(options: Options) -> bool:
    """Whether every image the validation labels file lists must be in the validation tar (part of the index's
    key: an index walked without the check may not serve a run that needs it)."""
    return "tfds" not in options.formats


def make_run_plan(options: Options, inputs: Inputs, index: DatasetIndex) -> Plan:
    """The run's plan: the classic's order and shards, or TFDS's for `--format tfds` (whose shard count counts the
    fix-up files' re-encoded sizes, so those few files are read and re-encoded first). A TFDS index holds exactly
    the members `tfds build` reads (`index.images.index_train_tfds`): the members it left out TFDS skips too."""
    if "tfds" not in options.formats:
        return make_plan(index, inputs.labels, options.sharding)
    check_release()
    keys = {"train": "train", "validation": "val"}
    for split_index in index.splits:  # what is wrong is the download, not a shard count (TFDS's rule gives one)
        if not len(split_index):
            archive, which = split_index.archive, "training" if split_index.split == "train" else "validation"
            raise ConfigError(f"{archive}: holds no {which} images, and no split of TFDS's imagenet2012 may be empty "
                              "(`tfds build` stops with 'No examples were yielded'), so --format tfds cannot give it: "
                              f"check that this is the {which} download (`streamprep inspect {archive}` shows what "
                              "it holds), or write another format")
    fixed = {}
    for split_index in index.splits:
        source = inputs.sources[keys[split_index.split]]
        for i in tfds_plan.fixup_rows(split_index):  # TFDS's: training files under exactly a fix-up name
            data = source.read_at(int(split_index.offsets[i]), int(split_index.sizes[i]))
            name = split_index.names[i]
            try:
                fixed[name] = len(fixups.apply(tfds_plan.fixup_kind(split_index.split, name) or "png", data,
                                               split_index.member(i)))
            except ImageError:
                fixed[name] = len(data)  # the writer reports it (or skips it) as it reports any bad image
    return make_tfds_plan(index, inputs.labels, fixed, options.tfds_shards)


def save_index(job: Job, index: DatasetIndex) -> None:
    if job.index_key:
        store.save(job.output(), job.index_key, index)


def saved_index(job: Job, state: OutputState | None) -> DatasetIndex | None:
    """The index an earlier run of the same downloads saved in `out` (read only if `out` exists)."""
    if not job.index_key or not (state and state.existed):
        return None
    return store.load(job.output(), job.index_key)


@dataclass
class Summary:
    """What a conversion did, for the closing report; the same for both engines."""

    out: str | None
    engine: str
    seconds: float
    manifest: mf.Manifest | None = None  # the complete manifest (None when only the folder tree was written)
    shards_kept: int = 0  # finished by an earlier run, checked and kept
    shards_written: int | None = None  # by this run (None when the engine does not count them)
    images_written: int | None = None  # by this run (None when the engine does not count them)
    bytes_read: int | None = None  # image bytes read from the downloads by this run
    bytes_written: int | None = None  # shard bytes written by this run
    index_reused: bool = False
    folder_tree: FolderTreeSummary | None = None
