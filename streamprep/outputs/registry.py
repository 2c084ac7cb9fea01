"""THE FORMAT REGISTRY: every output format, one entry each (its `Format` class), by name; all else derived from it.

Modelled on TensorFlow Datasets' `core/file_adapters.py` (`ADAPTER_FOR_FORMAT`, one map from a
file format to the adapter holding its suffix, writer and reader). A format's entry
(`outputs.format.Format`) holds its name, options, file-name patterns, plan, encoder, checker,
reader and size bounds; from the entries alone come `--format` (`parse`), the options' checks
(`check`, which also refuses two formats whose files could collide in one `out`), the formats of a
run (`make`), what its downloads are walked by (`walk`), and the names of every file of an output
(`SHARD_FILE_NAME`, `SIDE_FILE_NAME`, `FOREIGN_FILE_NAME`, `NamePattern("output")`, `shard_format`),
which resume, --overwrite, the sweep of what killed runs left, verify and inspect use. The built-in
formats (every package in `outputs/`) and those of installed packages (entry points in the
`streamprep.formats` group) are imported on first use; each registers its entry with `register` (a
decorator). A format's own options become fields of `options.Options` when that
module is first imported, so a format registered later (a test's) takes none of its own.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import os
import pkgutil
import re
import threading
from typing import TYPE_CHECKING, Any

from .. import datasets
from ..errors import ConfigError
from ..plan import SHARD_STEM, ShardSpec

if TYPE_CHECKING:
    from .format import Format

DEFAULT = "tfrecord"  # `--format`'s default: the classic's shards
ENTRY_POINTS = "streamprep.formats"  # the entry-point group through which an installed package adds its formats

_FORMATS: dict[str, type[Format]] = {}  # name -> entry, in `Format.rank` order (then registration order)
_lock = threading.RLock()
_loaded = False
_version = 0  # bumped by every change: the name patterns below are compiled again


def built_in() -> list[str]:
    """The built-in formats' packages: every package in `streamprep/outputs/` is one format (its `__init__.py`
    holds the entry), found, not listed, so a new format touches its own package alone."""
    return sorted(f".{m.name}" for m in pkgutil.iter_modules([os.path.dirname(__file__)]) if m.ispkg)


def _load() -> None:
    """Import the built-in formats, then those installed packages add (entry points in the `streamprep.formats`
    group, each naming a module that registers its entry, as fsspec's `registry` takes its implementations'), once."""
    global _loaded
    with _lock:
        if _loaded:
            return
        _loaded = True  # first: each built-in's `register` calls this again
        try:
            for module in built_in():
                importlib.import_module(module, __package__)
            for point in importlib.metadata.entry_points(group=ENTRY_POINTS):
                try:
                    point.load()
                except Exception as e:  # noqa: BLE001 - a broken plug-in names itself and does not hide the others
                    raise ConfigError(f"the format package {point.value!r} (entry point {point.name!r} of "
                                      f"{ENTRY_POINTS}) failed to load: {e}; reinstall or uninstall it") from e
        except BaseException:
            _loaded = False
            raise


def register(fmt: type[Format]) -> type[Format]:
    """Add a format's entry (a `Format` subclass with `name`, `shard_pattern`, `checker` and `reader`); a class
    decorator. Its name must be new; the formats stay in `Format.rank` order."""
    global _version
    _load()
    missing = [what for what in ("name", "shard_pattern") if not isinstance(getattr(fmt, what, None), str)]
    from .format import Format  # here: format.py's manifest imports this module

    missing += [f"{what}()" for what, named in (("checker", fmt.checks), ("reader", fmt.reads))
                if named is None and getattr(fmt, what).__func__ is getattr(Format, what).__func__]
    if missing:
        raise TypeError(f"format {getattr(fmt, 'name', fmt.__name__)!r} lacks {', '.join(missing)}: a format is "
                        "written, checked by verify and read by inspect")
    with _lock:
        if fmt.name in _FORMATS:
            raise ValueError(f"a format named {fmt.name!r} is registered already")
        _FORMATS[fmt.name] = fmt
        ranked = sorted(_FORMATS.values(), key=lambda f: f.rank)  # stable: equal ranks in registration order
        _FORMATS.clear()
        _FORMATS.update((f.name, f) for f in ranked)
        _version += 1
    return fmt


def unregister(name: str) -> None:
    """Remove a format registered with `register` (a test's, say)."""
    global _version
    with _lock:
        del _FORMATS[name]
        _version += 1


def formats() -> list[type[Format]]:
    """Every registered format's entry, in the order their files are written and listed."""
    _load()
    return list(_FORMATS.values())


def names() -> list[str]:
    return [f.name for f in formats()]


def get(name: str) -> type[Format]:
    _load()
    return _FORMATS[name]


# --------------------------------------------------------------------------------------------- --format and options

def parse(text: str) -> tuple[str, ...]:
    """The format names of a `--format` value, in registry order; `ValueError` saying what is wrong."""
    known = names()
    given = [part.strip().lower() for part in text.split(",")]
    if not all(given):
        raise ValueError(f"an empty name in {text!r}")
    unknown = [n for n in given if n not in known]
    if unknown:
        close = difflib.get_close_matches(unknown[0], known, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ValueError(f"unknown format {unknown[0]!r}{hint}; known: {', '.join(known)}")
    if len(set(given)) < len(given):
        raise ValueError(f"a format named twice in {text!r}")
    alone = [get(n) for n in given if get(n).own_order]
    if alone and len(given) > 1:
        raise ValueError(f"{alone[0].name} has an order and sharding of its own ({alone[0].own_order}), so it is "
                         "written by itself; run it as a separate conversion")
    return tuple(n for n in known if n in given)


def summaries() -> str:
    """Every format in a few words (`Format.summary`), for `--format`'s help; those written alone said so."""
    return "; ".join(f"{f.name} ({f.summary}{', written alone' if f.own_order else ''})" for f in formats())


def own_options() -> dict[str, Any]:
    """Every registered format's own options (`Format.options`: field name -> `format.FormatOption`), in registry
    order: the fields `options.Options` adds to its table for them."""
    found: dict[str, Any] = {}
    for fmt in formats():
        for name, spec in fmt.options.items():
            if name in found:
                raise ValueError(f"format {fmt.name!r}: an option named {name!r} belongs to another format already")
            found[name] = spec
    return found


def check(options: Any) -> None:
    """`ConfigError` for format options no run takes: each format's own values (`Format.check_options`), an option
    of a format not chosen, `--dali-index` with no chosen format DALI reads, an engine a chosen format cannot take,
    two formats whose files could collide (`refuse_collisions`)."""
    chosen = set(options.formats)
    for fmt in formats():
        fmt.check_options(options, fmt.name in chosen)
    for fmt in formats():
        given = [f"{name} (--{name.replace('_', '-')} {getattr(options, name)})" for name, spec in fmt.options.items()
                 if getattr(options, name) != spec.default]
        if fmt.name not in chosen and given:  # name only the options given: the others were not
            one = len(given) == 1
            raise ConfigError(f"{' and '.join(given)} {'is an option' if one else 'are options'} of --format "
                              f"{fmt.name}; add --format {fmt.name}, or leave {'it' if one else 'them'} out")
    # --dali-index writes DALI's index beside the shards of each chosen format DALI reads: refused if none is chosen
    unindexed = all(get(name).no_dali_index for name in options.formats)
    for fmt in map(get, options.formats):
        if options.dali_index and unindexed:
            indexed = " and ".join(f.name for f in formats() if not f.no_dali_index)
            raise ConfigError(f"dali_index (--dali-index) writes indexes for {indexed} shards; --format {fmt.name} "
                              f"has none ({fmt.no_dali_index})")
        if fmt.local_only and str(options.engine) != "local":
            raise ConfigError(f"--format {fmt.name} runs on the local engine; leave out --engine {options.engine}")
    refuse_collisions(make(options), options.sharding)


def _written(fmt: Format, sharding: Any) -> list[str]:
    """Names a format made for a run writes: the first shard of each split and its index, its side files."""
    firsts = [ShardSpec(split, 0, sharding.shards(split), 0, 0) for split in ("validation", "train")]
    return [*fmt.file_names(firsts), *fmt.side_file_names()]


def _places(fmt: Format, names: list[str]) -> dict[str, str]:
    """Where a format's files lie in `out`, by the first part of their paths (as shown): its folders of its own
    (`data` -> `data/`) and the files directly in `out`."""
    places = {name.partition("/")[0]: "".join(name.partition("/")[:2]) for name in names}
    return {**places, **{folder: f"{folder}/" for folder in fmt.folders}}


def _takes(fmt: Format, name: str) -> bool:
    """Whether a format's name patterns take the file `name` for one of its own (shard, index or side file)."""
    patterns = [*_shards(type(fmt)), *([fmt.side_pattern] if fmt.side_pattern else [])]
    return any(re.fullmatch(p, name) for p in patterns)


def _collision(one: Format, ones: list[str], other: Format, others: list[str]) -> str | None:
    """Why two formats of a run cannot share `out` (`ones`, `others`: the names each writes), or None."""
    places, theirs = _places(one, ones), _places(other, others)
    shared = sorted(places.keys() & theirs.keys())
    if shared:
        return f"--format {one.name} and --format {other.name} both write {places[shared[0]]} in --out"
    for fmt, name, owner in [*((other, n, one) for n in ones), *((one, n, other) for n in others)]:
        if _takes(fmt, name):
            return f"--format {fmt.name} would take {name}, a file --format {owner.name} writes, for one of its own"
    return None


def refuse_collisions(fmts: list[Format], sharding: Any) -> None:
    """`ConfigError` naming both formats when two of a run's formats could write the same file: they share a folder
    or a file name in `out`, or a name one writes is one the other's patterns take for its own (one would overwrite,
    resume, remove or verify the other's files). Every registered format is held to it, with no code of its own."""
    written = [(fmt, _written(fmt, sharding)) for fmt in fmts]
    for k, (one, ones) in enumerate(written):
        for other, others in written[k + 1:]:
            why = _collision(one, ones, other, others)
            if why:
                raise ConfigError(f"{why}; write them to two --out folders, in two conversions")


def make(options: Any) -> list[Format]:
    """The formats of a run (`options.Options`), in the order their files are written, each preparing images with
    the run's `--resize` recipe (`Format.resize`)."""
    fmts = [get(name).from_options(options) for name in options.formats]
    for fmt in fmts:
        fmt.resize = options.recipe
    return fmts


def needs(options: Any) -> list[tuple[str, str, str | None, str]]:
    """The optional packages the run's formats need (`Format.needs`)."""
    return [need for name in options.formats for need in get(name).needs(options)]


def walk(options: Any) -> dict[str, Any]:
    """How the run's downloads are walked (`index.build.build_index` keywords): as the classic walks them ({}),
    or as the one format with an order of its own says (`Format.walk`). A dataset with a walk of its own
    (`Dataset.walk`: ImageNet-21k's) takes no format's member rules."""
    if datasets.get(options.dataset).walk:
        return {}
    return {k: v for name in options.formats for k, v in get(name).walk.items()}


def walk_key(options: Any) -> dict[str, str]:
    """What the saved index's key adds for a walk of a format's own (`{"members": NAME}`), so that an index walked
    otherwise is not reused."""
    return {"members": name for name in options.formats if get(name).walk} if walk(options) else {}


# --------------------------------------------------------------------------------------------- the names of files

def shard_format(name: str) -> type[Format] | None:
    """The format whose shard file `name` is (relative to `out`), or None for any other file."""
    return next((f for f in formats() if f.parse_name(name)), None)


def parse_shard_name(name: str) -> tuple[str, int, int] | None:
    """(split, number, of) of any format's shard file, or None for any other file."""
    fmt = shard_format(name)
    return fmt.parse_name(name) if fmt else None


def folders() -> dict[str, int]:
    """Folders below `out` that formats keep their files in, each with how deep its files lie."""
    return {folder: depth for f in formats() for folder, depth in f.folders.items()}


# Every format but one with folders of its own names its files after the shard's stem (`ShardSpec.name`,
# `train-00000-of-01024`) with a suffix: any file so named is taken for streamprep's output whichever format wrote
# it (removed by --overwrite, swept, reported by verify when no manifest lists it), so that no other run's file is
# left where a training job's `train-*` glob would read it.
STEM_NAMED = SHARD_STEM + r"(?:\.[A-Za-z0-9_.-]+)?"


def _shards(fmt: type[Format]) -> list[str]:
    """Regexes of a format's shard files and their DALI indexes."""
    shard = fmt.shard_pattern
    return [shard] + ([] if fmt.no_dali_index else [shard + r"\.idx"])


_KINDS = {  # what each name pattern matches, as regexes from the formats' own
    "shards": lambda: [STEM_NAMED, *(p for f in formats() for p in _shards(f))],
    "side files": lambda: [f.side_pattern for f in formats() if f.side_pattern],
    "output": lambda: [*_KINDS["shards"](), *_KINDS["side files"]()],
    # Files that make `out` another program's when no manifest lists them: anything named after a shard's stem,
    # any format's shard or index, anything a format writes in a folder of its own (a `tfds build` left there).
    "foreign": lambda: [SHARD_STEM + ".*", *_KINDS["shards"](),
                        *(f.side_pattern for f in formats() if f.side_pattern and f.folders)],
}


class NamePattern:
    """The names of one kind of file of an output, as every registered format names them: used as a compiled
    pattern is (`match`, `pattern`), compiled again once the registry changes."""

    def __init__(self, kind: str, *also: str) -> None:
        self.kind, self.also = kind, also
        self._compiled: tuple[int, re.Pattern[str]] | None = None

    def compiled(self) -> re.Pattern[str]:
        _load()
        cached = self._compiled
        if cached is None or cached[0] != _version:
            cached = self._compiled = (_version, re.compile("^(?:" + "|".join([*_KINDS[self.kind](), *self.also])
                                                            + ")$"))
        return cached[1]

    @property
    def pattern(self) -> str:
        return self.compiled().pattern

    def match(self, name: str) -> re.Match[str] | None:
        return self.compiled().match(name)


# A shard file or its index, of any format: the only names a manifest's shard entries may have (a name that leaves
# `out` would be obeyed by --overwrite, resume and verify).
SHARD_FILE_NAME = NamePattern("shards")
SIDE_FILE_NAME = NamePattern("side files")  # the formats' files beside the shards (timm's, TFDS's metadata)
FOREIGN_FILE_NAME = NamePattern("foreign")
