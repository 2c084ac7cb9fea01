"""The output folder's life in a run: locked, what it holds looked at, claimed or refused, opened, released."""

from __future__ import annotations

import dataclasses
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

from ..archives.output import Output
from ..archives.storage import protocol_of, rejected_options
from ..errors import OutputError
from ..options import Options
from ..outputs import lock as run_lock
from ..outputs import manifest as mf
from ..outputs import registry as output_formats
from ..outputs.files import sweep
from ..outputs.format import Format
from ..plan import Plan
from .pipeline import Job, output_of


@contextmanager
def locked(options: Options, dry: bool = False) -> Iterator[None]:
    """`out` locked for the whole run (`outputs.lock`: one run per output folder, a lease on object stores);
    nothing to lock without `out`, or for a dry run (`streamprep plan`, which writes only the saved index)."""
    with run_lock.held(None if dry else options.out, options.storage_options):
        yield


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
    output = output_of(options)
    try:
        names = [p.rstrip("/").rsplit("/", 1)[-1] for p in output.fs.ls(output.root, detail=False)]
    except (FileNotFoundError, NotADirectoryError):
        return OutputState(None, None, [], False)
    except TypeError as e:
        raise rejected_options(options.out, e) from e
    except OSError as e:
        raise OutputError(f"{options.out}: cannot list the output folder ({e}); choose a readable and writable "
                          "--out") from e
    for folder, depth in output_formats.folders().items():  # a format's own layout (TFDS's, or a `tfds build`)
        if folder not in names:
            continue
        try:
            below = output.fs.find(output.path(folder), maxdepth=depth, detail=False)
        except OSError:
            below = []
        root = len(output.fs._strip_protocol(output.root).rstrip("/")) + 1
        names += [output.fs._strip_protocol(p)[root:] for p in below]
    previous, problem = mf.load_checked(output) if mf.MANIFEST in names else (None, None)
    return OutputState(previous, problem, sorted(n for n in names if output_formats.FOREIGN_FILE_NAME.match(n)),
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
    named = ("formats", "dali_index", *output_formats.own_options(), "labels", "on_bad_image", "on_bad_xml",
             "check_decode", "streamprep", "dataset")
    old = mf.with_new_options(old)
    said += [f"{k} {old.get(k)!r} then, {new.get(k)!r} now" for k in named if old.get(k) != new.get(k)]
    return "; ".join(said) or "another run record"


def claim_output(options: Options, state: OutputState, run: dict[str, Any], probe: bool = True) -> None:
    """Refuse an `out` that holds another conversion or foreign shards (before anything is read or written);
    then (`probe`) check it can be written."""
    out = options.out
    if state.previous is not None and not state.previous.same_run(run) and not options.overwrite:
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
        output_of(options).probe()


def _replaced(state: OutputState) -> list[str]:
    """The files of an earlier conversion that --overwrite replaces: what its manifest lists, and every other file
    named as streamprep's output (those it finished after its manifest was last written, when it was killed)."""
    listed = state.previous.files() if state.previous else []
    return sorted({*listed, *state.output_files} - {mf.MANIFEST})


def release_output(options: Options, state: OutputState) -> None:
    """After a run failed before writing anything: remove `out` again if this run created it and it is empty."""
    if state.existed or not options.out:
        return
    output = output_of(options)
    try:
        if not output.fs.ls(output.root, detail=False):
            output.fs.rmdir(output.root)
    except OSError:
        pass  # left as it is: nothing of value was written


def files_of(fmts: list[Format], shards: Any) -> list[str]:
    """Every file the formats may write for these shards: shard files, their index files, files beside them."""
    return [name for f in fmts for name in (*f.file_names(shards), *f.side_file_names())]


def open_output(job: Job, state: OutputState | None, plan: Plan | None = None) -> mf.Journal:
    """The first writes of a run: an older conversion's files removed (`overwrite`), and every other file named as
    streamprep's output that this run does not write (refused without `overwrite`), `out` created, what killed runs
    left swept, and the manifest written (listing the shards kept) through the `Journal` returned."""
    previous = state.previous if state else None
    output = job.output()
    shards = [*job.options.sharding.every_shard(), *(plan.shards if plan else ())]  # TFDS's counts come from the data
    claimed = {*job.side_files(), *files_of(job.formats, shards)}
    _refuse_folders(output, [*claimed, *(state.output_files if state else []), *(previous.files() if previous else [])])
    if previous is not None and not previous.same_run(job.manifest.run) and job.options.overwrite:
        _remove_files_of(job.options, previous)
    output.create()
    stale = [n for n in (state.output_files if state else []) if n not in claimed]
    if stale:
        _remove_stale(job.options, previous, stale)
    sweep(output, claimed | set(stale), mf.OUTPUT_FILE_NAME)
    return mf.Journal(output, job.manifest)


def _refuse_folders(output: Output, names: list[str]) -> None:
    """Before anything is removed or written: a folder where this run writes a file, or where a file it would remove
    was, is a one-line error (a run must not stop half-way through replacing an output)."""
    if not output.local:
        return  # object stores have no folders at a key
    for name in sorted(set(names)):
        path = output.path(name)
        if os.path.isdir(path) and not os.path.islink(path):
            raise OutputError(f"{path}: is a folder, where streamprep writes a file; remove it, or choose another "
                              "--out (nothing was changed)")


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
    _remove(output_of(options), stale)


def _remove_files_of(options: Options, previous: mf.Manifest) -> None:
    """Exactly the files an older conversion's manifest lists (`overwrite`), the manifest last."""
    output = output_of(options)
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
