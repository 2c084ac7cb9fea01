"""Conversion options: one table (the `Options` fields) from which flags, TOML keys and the manifest follow.

Each field of `Options` carries an `Option` in its metadata: its flag, TOML key, help text, group
and whether the manifest records it. The CLI builds its parser from these fields
(`add_arguments`), a config file is checked against them (`load_config`), and the manifest's
`options` are `Options.public()`. A new flag is one new field.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from . import datasets
from .errors import ConfigError
from .archives.storage import TIMEOUTS
from .outputs import checksum as checksums
from .outputs import registry as formats
from .plan import Sharding
from .records.resize import Recipe, parse as resize_recipe

# The default dataset's official file names and plan (its entry, `datasets/ilsvrc2012.py`, lists them).
_DEFAULT = datasets.get(datasets.DEFAULT)
TRAIN_TAR, VAL_TAR, BBOX_TARGZ = (_DEFAULT.download(role).name for role in ("train", "val", "bbox"))


def _by_dataset(name: str) -> str:
    """A sharding option's default as the help states it: the dataset's default plan's."""
    return f"{getattr(_DEFAULT.plan, name)} for {_DEFAULT.name}: the --dataset's default plan"


class Policy(enum.StrEnum):
    """What to do with an input file that cannot be used."""

    FAIL = "fail"  # stop the run with an error naming it
    SKIP = "skip"  # leave it out and list it in the summary and manifest


class Engine(enum.StrEnum):
    """Where the conversion runs (docs/distributed.md)."""

    LOCAL = "local"  # threads in this process
    BEAM = "beam"  # an Apache Beam pipeline


def default_workers() -> int:
    return max(2, os.cpu_count() or 2)


@dataclass(frozen=True)
class Option:
    """How one field of `Options` is set from the command line and a config file, and whether the manifest shows it."""

    help: str
    group: str
    metavar: str | None = None
    path: bool = False  # a path or URL: relative ones in a config file are taken from the file's folder
    manifest: bool = True  # recorded in manifest.json's `options`
    positional: bool = False
    off_flag: str | None = None  # a flag (and `off_key` in TOML, set to false) that clears the field
    off_key: str | None = None
    off_help: str = ""
    default_text: str | None = None  # the default as the help shows it, when not the field's default
    inspect: bool = False  # also an option of `streamprep inspect`: it changes what inspect reads or shows

    @staticmethod
    def flag(name: str) -> str:
        return "--" + name.replace("_", "-")

    @staticmethod
    def key(name: str) -> str:
        return name.replace("_", "-")


def option(default: Any = None, *, factory: Callable[[], Any] | None = None, **spec: Any) -> Any:
    """A field of `Options` with its `Option` (see there)."""
    metadata = {"option": Option(**spec)}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


INPUTS, DATASET, OUTPUT, SHARDS, LABELS, CHECKS, EXECUTION = (
    "inputs (paths or fsspec URLs)", "dataset (options of one --dataset only)", "output", "classic sharding (defaults reproduce the classic procedure)",
    "label data (default: the copies shipped with streamprep)", "checks and bad input", "execution")


@dataclass(frozen=True)
class CoreOptions:
    """Everything a conversion needs; checked when made, so a library caller gets the CLI's errors. (`Options` is
    this class with every registered format's own options added as fields: `Format.options`.)

    `train`, `val` and `bbox` default to the `dataset`'s official file names in `downloads`; None label
    files mean the shipped ones; no `out` means no shards (only the `materialize` layout).
    """

    downloads: str | None = option(
        help=f"folder or URL holding {TRAIN_TAR}, {VAL_TAR} and {BBOX_TARGZ}", group=INPUTS, metavar="DOWNLOADS",
        path=True, manifest=False, positional=True)
    dataset: str = option(
        datasets.DEFAULT, group=INPUTS, metavar="NAME",
        help=f"the dataset the downloads are, by its registered name ({', '.join(datasets.names())}): its downloads' "
        "official names and MD5s, which members are images, its label files and fix-ups (streamprep.datasets)")
    train: str | None = option(help=f"training tar (default: DOWNLOADS/{TRAIN_TAR})", group=INPUTS, metavar="URL",
                               path=True)
    val: str | None = option(help=f"validation tar (default: DOWNLOADS/{VAL_TAR})", group=INPUTS, metavar="URL",
                             path=True)
    bbox: str | None = option(help=f"bounding-box tar.gz (default: DOWNLOADS/{BBOX_TARGZ})", group=INPUTS,
                              metavar="URL", path=True)
    bbox_val: str | None = option(  # recorded in the run's inputs when given or found (older outputs still resume)
        help=f"validation bounding-box tgz, optional (default: DOWNLOADS/{_DEFAULT.download('bbox_val').name} when "
        "there): the validation records carry their boxes, and bboxes_validation.csv is written", group=INPUTS,
        metavar="URL", path=True, manifest=False)
    out: str | None = option(
        help="folder or URL for the shards and bboxes.csv (required unless --no-shards)", group=OUTPUT,
        metavar="URL", path=True, off_flag="--no-shards", off_key="shards",
        off_help="write only the --materialize layout, no shards (config: shards = false)")
    format: str = option(
        formats.DEFAULT, group=OUTPUT, metavar="NAMES",
        help="output format(s), comma-separated, written side by side from one read of the downloads "
        "(train-00000-of-01024, train-00000-of-01024.tar, ...): " + formats.summaries())
    dali_index: bool = option(
        False, group=OUTPUT,
        help="also write NVIDIA DALI's index beside each shard (SHARD_FILE.idx), as its tfrecord2idx and wds2idx "
        "would, while the shard is written")
    resize: str | None = option(
        group=OUTPUT, metavar="RECIPE", default_text="off: the images as the classic stores them",
        help="store each image resized, a variant of its own (docs/resize.md): 21k-p-224 or 21k-p-short-256 (the "
        "bytes Alibaba-MIIL's ImageNet-21K-P scripts write, through OpenCV), or short-edge=N, max-side=N, "
        "squish=WxH (never enlarged, metadata removed)")
    encode: str | None = option(
        group=OUTPUT, metavar="HOW", default_text="jpeg:90",
        help="how a general --resize recipe encodes its images: jpeg:QUALITY, webp:QUALITY or png (--format tfds: "
        "not webp; each record names its image's encoding: docs/resize.md)")
    min_side: int = option(
        0, group=OUTPUT, metavar="N", default_text="0: none",
        help="with --resize: leave out (and list) every image whose shorter side is under N pixels")
    train_shards: int | None = option(help="training shards", group=SHARDS, metavar="N",
                                      default_text=_by_dataset("train_shards"))
    validation_shards: int | None = option(help="validation shards", group=SHARDS, metavar="N",
                                           default_text=_by_dataset("validation_shards"))
    classic_threads: int | None = option(
        group=SHARDS, metavar="T", default_text=_by_dataset("classic_threads"),
        help="the classic's --num_threads, which decides shard boundaries; not how many threads streamprep runs")
    equal_shards: bool = option(
        False, group=SHARDS, default_text="off: the classic's cut",
        help="cut each split into shards whose sample counts differ by at most one (shard j of K holds records "
        "j*N//K to (j+1)*N//K of the same order), for ranks that split shards evenly; any --train-shards and "
        "--validation-shards (--format tfds: these instead of TFDS's count)")
    labels_file: str | None = option(
        help="synsets file, line k = label k", group=LABELS, metavar="URL", path=True,
        default_text="the shipped imagenet_lsvrc_2015_synsets.txt", inspect=True)
    metadata_file: str | None = option(help="synset<TAB>text file", group=LABELS, metavar="URL", path=True,
                                       default_text="the shipped imagenet_metadata.txt", inspect=True)
    validation_labels_file: str | None = option(
        help="synset of each validation image, by number", group=LABELS, metavar="URL", path=True,
        default_text="the shipped imagenet_2012_validation_synset_labels.txt", inspect=True)
    overwrite: bool = option(
        False, group=OUTPUT, manifest=False,
        help="if --out holds the output of another conversion (other downloads, shard counts or options), remove "
        "exactly the files its manifest.json lists first, and every other file named as streamprep's output that "
        "this run does not write; without it such an --out is refused. A rerun of the same conversion resumes "
        "either way")
    materialize: str | None = option(
        help="also write the classic folder layout under this local folder: bboxes/, bboxes.csv, "
        "ILSVRC2012_img_val/<synset>/, ILSVRC2012_img_train/<synset>/", group=OUTPUT, metavar="BASE", path=True)
    on_bad_image: Policy = option(
        Policy.FAIL, group=CHECKS,
        help="an image that is not a usable JPEG: stop with an error, or leave it out and list it in the summary "
        "and manifest")
    on_bad_xml: Policy = option(
        Policy.FAIL, group=CHECKS, help="a bounding-box XML file that cannot be used: stop, or leave it out and list it")
    check_md5: bool = option(
        False, group=CHECKS, default_text="off; reads every byte once more",
        help="first check the downloads against the MD5 sums published for ILSVRC2012; on a mismatch nothing is "
        "written")
    no_space_check: bool = option(
        False, group=CHECKS, manifest=False,
        help="do not stop before writing when the shards still to write may not fit in the free space of a local --out")
    check_decode: bool = option(
        False, group=CHECKS, default_text="off; the header and end-of-image checks the classic's decoder makes "
        "always run",
        help="also decode every image fully (Pillow) before writing it; one that does not decode is bad input, "
        "stopped on or skipped as --on-bad-image says")
    checksum: str = option(  # manifest.json names it in its own "checksum"; the files written do not depend on it
        checksums.DEFAULT, group=CHECKS, metavar="NAME", manifest=False,
        help="the digest manifest.json lists for every file, which verify and a rerun check: "
        + "; ".join(f"{a.name}: {a.use}" for a in checksums.ALGORITHMS.values()))
    workers: int = option(factory=default_workers, group=EXECUTION, metavar="N", manifest=False,
                          help="shards written at once; the output does not depend on it")
    engine: Engine = option(
        Engine.LOCAL, group=EXECUTION, manifest=False,
        help="where the conversion runs: this process, or an Apache Beam pipeline (Dataflow, Flink, Spark) whose "
        "options follow a `--`, e.g. `--engine beam -- --runner=DataflowRunner --project=P`; the output is the same")
    timeout: float = option(
        60.0, group=EXECUTION, metavar="SECONDS", manifest=False, inspect=True,
        help="give up on a server that sends nothing for this long during a request (then retried, 6 attempts in all)")
    connect_timeout: float = option(
        30.0, group=EXECUTION, metavar="SECONDS", manifest=False, inspect=True,
        help="give up on connecting to a server after this long (then retried, 6 attempts in all)")
    storage_options: dict[str, dict[str, Any]] = option(
        factory=dict, group=EXECUTION, metavar="PROTO.KEY=VALUE", manifest=False, inspect=True,  # may hold credentials
        help="fsspec option for one protocol, e.g. s3.endpoint_url=http://127.0.0.1:5555 (repeatable; "
        "config: a [storage-options.PROTO] table)")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            _check_type(f, getattr(self, f.name))
        try:
            entry = datasets.get(self.dataset)
        except datasets.UnknownDataset:
            raise ConfigError(f"dataset (--dataset) {self.dataset!r} is not a registered dataset; known: "
                              f"{', '.join(datasets.names())}") from None
        self._fill_downloads(entry)
        for name in ("train_shards", "validation_shards", "classic_threads"):  # the dataset's default plan
            if getattr(self, name) is None:
                object.__setattr__(self, name, getattr(entry.plan, name))
        for name in ("on_bad_image", "on_bad_xml"):
            object.__setattr__(self, name, Policy(getattr(self, name)))
        object.__setattr__(self, "engine", Engine(self.engine))
        self._check_dataset(entry)
        if not self.out and not self.materialize:
            raise ConfigError("no out given (--out): pass the folder (or URL) to write the shards to, or "
                              "materialize (--materialize BASE) for the folder layout alone")
        if self.materialize and "://" in self.materialize:
            if not self.materialize.startswith("file://"):
                raise ConfigError(f"materialize (--materialize) {self.materialize}: the folder layout is written to "
                                  "a local folder only (it relies on file modification times and renames); pass a "
                                  "local path")
            object.__setattr__(self, "materialize", self.materialize[len("file://"):])
        if self.workers < 1:
            raise ConfigError(f"workers (--workers) must be at least 1, got {self.workers}")
        try:
            object.__setattr__(self, "format", ",".join(formats.parse(self.format)))
        except ValueError as e:
            raise ConfigError(f"format (--format) {self.format!r}: {e}") from e
        for fmt in map(formats.get, self.formats):  # a format of one dataset's own build (`Format.refuse_dataset`)
            why = fmt.refuse_dataset(self.dataset)
            if why:
                raise ConfigError(f"--format {fmt.name} {why}; choose another --format")
        formats.check(self)  # each format's options (`--file-format`, `--dali-index`, ...)
        if not checksums.known(self.checksum):
            raise ConfigError(f"checksum (--checksum) must be one of {', '.join(checksums.names())}, got "
                              f"{self.checksum!r}")
        _check_storage_options(self.storage_options)
        object.__setattr__(self, "storage_options", with_timeouts(self.storage_options, self.timeout,
                                                                  self.connect_timeout))
        self.sharding.check()
        for name in ("resize", "encode"):  # an empty string (a config file's "") is the option not given
            if getattr(self, name) == "":
                object.__setattr__(self, name, None)
        # --resize, --encode and --min-side checked (ConfigError); a format refuses an encoding it cannot hold in its
        # `check_options` (TFDS's WebP)
        resize_recipe(self.resize, self.encode, self.min_side)

    def _fill_downloads(self, entry: datasets.Dataset) -> None:
        """Each of the dataset's downloads not given: DOWNLOADS/<its official name>, or DOWNLOADS itself for a
        download a folder may stand for (`Download.folder_glob`: the archive, a folder holding it, or a folder of
        its parts). One of the three download options the dataset has no download for is refused when given."""
        roles = {d.role for d in entry.downloads}
        for key in ("train", "val", "bbox"):
            if key not in roles:
                if getattr(self, key) is not None:
                    raise ConfigError(f"{key} (--{key}) is not a download of --dataset {entry.name} (its downloads: "
                                      f"{', '.join('--' + r for r in sorted(roles))}); leave it out")
                continue
            if getattr(self, key) is None:
                download = entry.download(key)
                if not self.downloads:
                    raise ConfigError(f"no {key} given (--{key}); pass it, or a DOWNLOADS folder holding "
                                      f"{download.name}")
                object.__setattr__(self, key, self.downloads if download.folder_glob else
                                   join(self.downloads, download.name))

    def _check_dataset(self, entry: datasets.Dataset) -> None:
        """The dataset's own options (refused with another --dataset), and what another dataset than the
        default cannot take: --materialize, --check-md5 without a published MD5 (a format that does not write it is
        refused once the formats are known: `Format.refuse_dataset`)."""
        for name, (owner, spec) in datasets.own_options().items():
            if owner != entry.name and getattr(self, name) != spec.default:
                raise ConfigError(f"{name} (--{name.replace('_', '-')} {getattr(self, name)}) is an option of "
                                  f"--dataset {owner}; add --dataset {owner}, or leave it out")
        problem = entry.check_options(self.dataset_options()) if entry.check_options else None
        if problem:
            raise ConfigError(problem)
        if entry.name == datasets.DEFAULT:
            return
        if self.materialize:
            raise ConfigError(f"materialize (--materialize) writes {datasets.DEFAULT}'s folder layout; leave it out "
                              f"with --dataset {entry.name}")
        if self.check_md5 and not all(d.md5 for d in entry.downloads):
            raise ConfigError(f"check_md5 (--check-md5): no MD5 is published for --dataset {entry.name}'s "
                              "downloads; leave it out")

    def dataset_options(self) -> dict[str, Any]:
        """The run's dataset's own options with their values (its walk reads them; the run record holds them)."""
        return {name: getattr(self, name) for name, (owner, _) in datasets.own_options().items()
                if owner == self.dataset}

    @property
    def sharding(self) -> Sharding:
        return Sharding(self.train_shards, self.validation_shards, self.classic_threads, self.equal_shards)

    @property
    def formats(self) -> tuple[str, ...]:
        """The output formats' names, in the order they are written."""
        return tuple(self.format.split(","))

    def format_needs(self) -> list[tuple[str, str, str | None, str]]:
        """The optional packages the output formats and its checksum need (`extras.for_convert` checks them): each as
        its module, pip name, extra and what asks for it (`outputs.format.Format.needs`, `outputs.checksum.needs`)."""
        return formats.needs(self) + checksums.needs(self.checksum)

    @property
    def recipe(self) -> Recipe | None:
        """The `--resize` recipe with its `--encode` and `--min-side` (`records.resize`), or None."""
        return resize_recipe(self.resize, self.encode, self.min_side)

    @property
    def skip_bad_images(self) -> bool:
        return self.on_bad_image is Policy.SKIP

    @property
    def skip_bad_xml(self) -> bool:
        return self.on_bad_xml is Policy.SKIP

    def public(self) -> dict[str, Any]:
        """The options as the manifest records them: the fields marked for it, in table order."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields() if f.metadata["option"].manifest}

    def format_options(self) -> dict[str, Any]:
        """Every registered format's own options with their values (what the run record holds of them)."""
        return {name: getattr(self, name) for name in formats.own_options()}


def _with_format_options(core: type) -> type:
    """`core` with one field per option a format owns (`outputs.format.FormatOption`, in the output group) and per
    option a dataset owns (`datasets.OwnOption`, in the dataset group): the option table is then whole, and flags,
    config keys, checks and the manifest follow from it as for any field."""
    table = [(name, spec.kind, option(spec.default, group=OUTPUT, metavar=spec.metavar, help=spec.help,
                                      default_text=spec.default_text))
             for name, spec in formats.own_options().items()]
    table += [(name, spec.kind, option(spec.default, group=DATASET, metavar=spec.metavar, manifest=False,
                                       help=f"--dataset {owner}: {spec.help}", default_text=spec.default_text))
              for name, (owner, spec) in datasets.own_options().items()]  # in the run record, with its dataset
    clash = {name for name, _, _ in table} & {f.name for f in dataclasses.fields(core)}
    if clash:
        raise ValueError(f"format option(s) {', '.join(sorted(clash))} named like an option of every run")
    made = dataclasses.make_dataclass("Options", table, bases=(core,), frozen=True)
    made.__module__, made.__qualname__, made.__doc__ = __name__, "Options", core.__doc__
    return made


if TYPE_CHECKING:
    Options = CoreOptions
else:
    Options = _with_format_options(CoreOptions)


MAX_TIMEOUT = 86400.0  # seconds: a day; longer is no bound on a wait at all
MAX_CONFIG_BYTES = 1 << 20  # a config file names a few options: a larger "config" is some other file


def with_timeouts(storage_options: dict[str, Any], timeout: float, connect_timeout: float) -> dict[str, Any]:
    """The storage options with the (checked) timeouts every backend gets (`archives.storage.options_for`)."""
    for name, value in (("timeout", timeout), ("connect_timeout", connect_timeout)):
        if not 0 < value <= MAX_TIMEOUT:
            raise ConfigError(f"{name} ({Option.flag(name)}) must be more than 0 and at most {MAX_TIMEOUT:,} "
                              f"seconds, got {value}")
    return {**storage_options, TIMEOUTS: {"connect": float(connect_timeout), "read": float(timeout)}}


def _check_storage_options(options: dict[str, Any]) -> None:
    """`{protocol: {key: value}}`, with the backends' nested settings (client_kwargs, config_kwargs) tables too."""
    for protocol, settings in options.items():
        if protocol == TIMEOUTS:
            continue
        if not isinstance(settings, dict):
            raise ConfigError(f"storage_options (--storage-option) for {protocol!r} must be a table of settings "
                              f"(PROTOCOL.KEY=VALUE), got {settings!r}")
        for key in ("client_kwargs", "config_kwargs", "session_kwargs"):
            if key in settings and not isinstance(settings[key], dict):
                raise ConfigError(f"storage option {protocol}.{key} must be a table (JSON object), got "
                                  f"{settings[key]!r}")


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, enum.Enum) else value


def _kind(f: dataclasses.Field) -> type:
    """The field's value type: str, int, bool, dict or an enum (None is allowed where the default is None)."""
    text = str(f.type)
    for kind in (Policy, Engine):
        if kind.__name__ in text:
            return kind
    for name, kind in (("dict", dict), ("bool", bool), ("int", int), ("float", float), ("str", str)):
        if text.startswith(name):
            return kind
    raise AssertionError(f"option {f.name}: unsupported type {text}")


def _check_type(f: dataclasses.Field, value: Any) -> None:
    kind = _kind(f)
    if value is None and f.default is None:
        return
    if isinstance(kind, enum.EnumMeta):
        if value not in {m.value for m in kind}:
            raise ConfigError(f"{f.name} ({Option.flag(f.name)}) must be one of "
                              f"{', '.join(m.value for m in kind)}, got {value!r}")
        return
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return  # a whole number of seconds
    if not isinstance(value, kind) or (kind in (int, float) and isinstance(value, bool)):
        what = {str: "a string", int: "an integer", float: "a number", bool: "true or false", dict: "a table"}[kind]
        raise ConfigError(f"{f.name} ({Option.flag(f.name)}) must be {what}, got {value!r}")


GROUPS = (INPUTS, DATASET, OUTPUT, SHARDS, LABELS, CHECKS, EXECUTION)


def fields() -> list[dataclasses.Field]:
    """The option table: every field of `Options`, by group (a format's own options with the output's)."""
    return sorted(dataclasses.fields(Options), key=lambda f: GROUPS.index(f.metadata["option"].group))


def join(folder: str, name: str) -> str:
    """`folder/name` for a path or a URL."""
    return f"{folder.rstrip('/')}/{name}"


def load_config(path: str) -> dict[str, Any]:
    """Read a TOML config: `key = value` pairs named like the long flags; returns values by field name."""
    try:
        with open(path, "rb") as f:
            text = f.read(MAX_CONFIG_BYTES + 1)
        if len(text) > MAX_CONFIG_BYTES:
            raise ConfigError(f"config file {path} is over {MAX_CONFIG_BYTES:,} bytes; pass a TOML file of options")
        data = tomllib.loads(text.decode("utf-8"))
    except FileNotFoundError as e:
        raise ConfigError(f"config file {path} not found") from e
    except IsADirectoryError as e:
        raise ConfigError(f"config file {path} is a folder; pass a TOML file") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path}: {e}; fix the TOML syntax") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file {path} is not UTF-8 text ({e}); pass a TOML file") from e
    except OSError as e:
        raise ConfigError(f"config file {path} cannot be read ({e})") from e
    table = {Option.key(f.name): f for f in fields()}
    offs = {f.metadata["option"].off_key: f for f in fields() if f.metadata["option"].off_key}
    unknown = sorted(set(data) - set(table) - set(offs))
    if unknown:
        raise ConfigError(f"config file {path}: unknown key(s) {', '.join(unknown)}; known keys: "
                          f"{', '.join(sorted([*table, *offs]))}")
    base = Path(path).resolve().parent
    values: dict[str, Any] = {}
    for key, value in sorted(data.items(), key=lambda kv: kv[0] in offs):  # `shards = false` wins over `out`
        if key in offs:
            if not isinstance(value, bool):
                raise ConfigError(f"config file {path}: {key} must be true or false")
            if not value:
                values[offs[key].name] = None
            continue
        f = table[key]
        try:
            _check_type(f, value)
        except ConfigError as e:
            raise ConfigError(f"config file {path}: {key} {str(e).split(') ', 1)[1]}") from None
        if f.metadata["option"].path and "://" not in value and not os.path.isabs(value):
            value = os.path.normpath(base / value)
        values[f.name] = value
    return values


def make_options(values: dict[str, Any]) -> Options:
    """Options from values by field name (a config file's, with flags laid over them); missing ones default."""
    names = {f.name for f in fields()}
    return Options(**{k: v for k, v in values.items() if k in names})


def example_config() -> str:
    """A TOML config naming every option with its default and help, all commented out: a starting point."""
    lines = ["# streamprep convert: a config file (`streamprep convert --config FILE`); flags override it.",
             "# Uncomment what you set. Relative paths are taken from this file's folder.", ""]
    group = None
    for f in fields():
        spec: Option = f.metadata["option"]
        if spec.group != group:
            group = spec.group
            lines += ["", f"# --- {group}"]
        lines.append(f"# {spec.help}")
        if f.name == "storage_options":
            lines += ["# [storage-options.s3]", '# endpoint_url = "http://127.0.0.1:5555"']
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default  # type: ignore[misc]
        if default is None and hasattr(_DEFAULT.plan, f.name):
            value = f"{getattr(_DEFAULT.plan, f.name)}  # the dataset's default plan ({_DEFAULT.name})"
        elif default is None:
            value = '"PATH-OR-URL"' if spec.path else '""'
        elif isinstance(default, bool):
            value = "true" if default else "false"
        elif isinstance(default, (int, float)):
            value = repr(default)
        else:
            value = f'"{default}"'
        lines.append(f"# {Option.key(f.name)} = {value}")
        if spec.off_key:
            lines.append(f"# {spec.off_key} = false  # {spec.off_help}")
    return "\n".join(lines) + "\n"
