"""The command line: `convert`, `plan`, `inspect`, `verify` and `config`, flags generated from the option table."""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import logging
import sys
from typing import Any, Callable, Sequence, TextIO

from .. import __version__, extras
from ..archives import retry
from ..errors import ConfigError, StreamprepError
from ..options import Option, default_workers, fields, load_config, make_options, with_timeouts
from ..progress import Stopped, Terminated
from .report import Reporter, WarningHandler, format_inspection, format_preview, format_summary, safe


def _storage_option(text: str) -> tuple[str, str, Any]:
    """`PROTOCOL.KEY=VALUE`, e.g. `s3.endpoint_url=http://127.0.0.1:5555`."""
    key, sep, value = text.partition("=")
    protocol, dot, name = key.partition(".")
    if not sep or not dot or not protocol or not name:
        raise argparse.ArgumentTypeError(f"expected PROTOCOL.KEY=VALUE, got {text!r}")
    try:  # true, 3, {"a": 1} ... as JSON; anything else stays text
        parsed = json.loads(value)
    except ValueError:
        parsed = value
    return protocol, name, parsed


def _default_text(f: dataclasses.Field) -> str | None:
    spec: Option = f.metadata["option"]
    if spec.default_text is not None:
        return spec.default_text
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        value = f.default_factory()  # type: ignore[misc]
        return None if isinstance(value, dict) else str(value)
    if f.default is None or f.default is False:
        return None
    return str(f.default)


def add_arguments(p: argparse.ArgumentParser, only: set[str] | None = None, helps: dict[str, str] | None = None) -> None:
    """One argument per field of `Options` (or of `only`), in groups; each default stated once, in the help.

    `helps` replaces a field's help for a command that uses it differently."""
    groups: dict[str, Any] = {}
    for f in fields():
        if only is not None and f.name not in only:
            continue
        spec: Option = f.metadata["option"]
        group = groups.get(spec.group) or groups.setdefault(spec.group, p.add_argument_group(spec.group))
        default = _default_text(f)
        text = (helps or {}).get(f.name, spec.help) + (f" (default: {default})" if default else "")
        if spec.positional:
            group.add_argument(f.name, nargs="?", metavar=spec.metavar, help=text)
            continue
        kwargs: dict[str, Any] = {"dest": f.name, "help": text, "default": None}
        if f.name == "storage_options":
            kwargs.update(type=_storage_option, action="append", metavar=spec.metavar, dest="storage_option",
                          default=[])
            group.add_argument("--storage-option", **kwargs)
            continue
        if f.type in ("bool", bool):
            kwargs.update(action="store_true")
        elif "Policy" in str(f.type) or "Engine" in str(f.type):
            kind = type(f.default)
            kwargs.update(choices=[m.value for m in kind])  # type: ignore[attr-defined]
        elif "int" in str(f.type):
            kwargs.update(type=int, metavar=spec.metavar)
        elif "float" in str(f.type):
            kwargs.update(type=float, metavar=spec.metavar)
        else:
            kwargs.update(metavar=spec.metavar)
        group.add_argument(Option.flag(f.name), **kwargs)
        if spec.off_flag:
            group.add_argument(spec.off_flag, dest=f"{f.name}_off", action="store_true", help=spec.off_help)


class UsageError(ConfigError):
    """The command line itself is wrong (an unknown flag, a value of the wrong type)."""


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors as one `streamprep: error:` line instead of a usage block, and no abbreviated
    flags (`--overwrit` is a mistyped flag, answered with a suggestion, never taken as `--overwrite`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message}{_did_you_mean(message)}; see `{self.prog} --help`")


def _did_you_mean(message: str) -> str:
    """` (did you mean X?)` for argparse's "invalid choice: 'Y' (choose from ...)", when a choice is close to Y."""
    if "invalid choice: " not in message or "(choose from " not in message:
        return ""
    wrong = message.split("invalid choice: ", 1)[1].split(" (choose from ", 1)[0].strip("'")
    choices = [c.strip().strip("'") for c in message.rsplit("(choose from ", 1)[1].rstrip(")").split(",")]
    close = difflib.get_close_matches(wrong, choices, n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _unrecognized(command: argparse.ArgumentParser, extra: list[str]) -> UsageError:
    """The arguments `command` (a subcommand's parser, or the top one) does not take, each unknown flag with the
    closest of that command's own flags; and where its help is."""
    flags = [f for action in command._actions for f in action.option_strings if f.startswith("--")]  # noqa: SLF001
    said = []
    for arg in extra:
        name = arg.split("=", 1)[0]
        close = difflib.get_close_matches(name, flags, n=1) if name.startswith("-") else []
        said.append(f"{arg} (did you mean {close[0]}?)" if close else arg)
    return UsageError(f"unrecognized arguments: {', '.join(said)}; see `{command.prog} --help`")


def _commands(top: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Each subcommand's parser, by name."""
    return next(a.choices for a in top._actions if isinstance(a, argparse._SubParsersAction))  # noqa: SLF001


def parser() -> argparse.ArgumentParser:
    """Every command's parser; each option of `convert` and `plan` is a field of the option table."""
    top = _Parser(prog="streamprep", description="ImageNet (ILSVRC2012) downloads to training-ready shards, "
                  "straight from the archives, nothing extracted: the classic TFRecord shards, WebDataset shards "
                  "(with NVIDIA DALI's indexes and timm's _info.json) or TensorFlow Datasets' prepared imagenet2012, "
                  "with bboxes.csv and manifest.json. Start with `streamprep convert --help`.")
    top.add_argument("--version", action="version", version=f"streamprep {__version__}")
    sub = top.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    p = sub.add_parser("convert", help="write the shards (TFRecord, WebDataset, TFDS), bboxes.csv and manifest.json",
                       description="Write the training and validation shards, bboxes.csv and manifest.json straight "
                       "from the three ILSVRC2012 downloads, extracting nothing to disk: by default the classic "
                       "1024/128 TFRecord shards; with --format, WebDataset tar shards (timm's _info.json beside "
                       "them, and NVIDIA DALI's index files with --dali-index), or TFDS's prepared imagenet2012 "
                       "(TFRecord or ArrayRecord files). Flags override --config.")
    p.add_argument("--config", metavar="TOML", help="config file setting any option below by its long name "
                   "(`streamprep config --example` prints one); flags override it")
    add_arguments(p)
    p.add_argument("--quiet", "-q", action="store_true", help="print nothing but errors")

    pl = sub.add_parser("plan", help="see what convert would do, writing nothing but the saved index",
                        description="Index the downloads and plan the shards as convert would, then report: the "
                        "downloads found, images and classes per split, fix-ups and ignored members, the shards "
                        "to write and those already finished, the output's size and the free space at --out. "
                        "Writes nothing but the index (in OUT/.streamprep/), which convert then reuses. Takes "
                        "the same options as convert.")
    pl.add_argument("--config", metavar="TOML", help="config file, as for convert; flags override it")
    add_arguments(pl)
    pl.add_argument("--json", action="store_true", help="print the report as JSON (for scripts)")
    pl.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr (the report is still printed)")

    c = sub.add_parser("config", help="print an example config file (every option, its default and help)",
                       description="Print a config file for `convert --config`: every option by its long name, with "
                       "its default and help, commented out. `streamprep config --example > my.toml`.")
    c.add_argument("--example", action="store_true", help="print the example config (without it: this help)")

    i = sub.add_parser("inspect", help="look inside a download, a shard or any file convert writes",
                       description="Show what one file holds, recognised by its content, not its name: a download "
                       "(the training tar, the validation tar, the bounding-box tar.gz: images per class as convert "
                       "labels them, and the members it would leave out, and why), a shard (TFRecord, the classic's "
                       "or TFDS's; WebDataset; TFDS ArrayRecord: each record's file name, label as the file numbers "
                       "it, synset and text), a DALI index, manifest.json, _info.json, TFDS's dataset_info.json, "
                       "features.json and label.labels.txt, bboxes.csv or a label file. Any other file is a one-line "
                       "error (exit status 2).")
    i.add_argument("path", metavar="PATH", help="the file: a path or fsspec URL")
    i.add_argument("--limit", type=int, default=20, metavar="N", help="members or records listed (default: 20)")
    i.add_argument("--json", action="store_true", help="print the report as JSON (for scripts)")
    i.add_argument("--config", metavar="TOML", help="convert's config file: inspect takes the label files and storage "
                   "settings from it, so it labels as that convert run would; flags override it")
    add_arguments(i, only={f.name for f in fields() if f.metadata["option"].inspect})

    v = sub.add_parser("verify", help="check a finished output: framing, schema, labels, counts and digests",
                       description="Check every record of an output folder: length and data CRCs, the classic "
                       "feature schema, labels in range, and (with manifest.json, as convert writes it) every "
                       "shard's size, digest (the algorithm its manifest names) and record count and each split's label counts; optionally decode "
                       "every image. Works on the classic procedure's shards too (no manifest). The report goes "
                       "to stdout: one line per problem, then a summary. Exit status: 0 all is well, 1 problems "
                       "found, 2 OUT cannot be verified.")
    v.add_argument("out", metavar="OUT", help="the output folder or URL (convert's --out)")
    g = v.add_argument_group("checks")
    g.add_argument("--decode", action="store_true",
                   help="also decode every image with TensorFlow (decode_jpeg, 3 channels) and check its size "
                   "against image/height and image/width (default: off; slower)")
    g.add_argument("--num-classes", type=int, default=None, metavar="N",
                   help="the classes: a TFRecord's image/class/label must be in 1..N (the classic's numbering), a "
                   "WebDataset .cls and a TFDS label in 0..N-1 (default: the num_classes manifest.json records, "
                   "else 1000)")
    add_arguments(v, only={"workers", "storage_options", "timeout", "connect_timeout"},
                  helps={"workers": "shards checked at once"})
    v.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr (the report is still printed)")
    return top


def _values(args: argparse.Namespace) -> dict[str, Any]:
    """Config file values (by field name) overridden by the flags given."""
    values: dict[str, Any] = load_config(args.config) if args.config else {}
    for f in fields():
        if f.name == "storage_options":
            continue
        value = getattr(args, f.name, None)
        if value is not None and value is not False:
            values[f.name] = value
        if getattr(args, f"{f.name}_off", False):
            values[f.name] = None
    values["storage_options"] = _storage_options(args, values.get("storage_options"))
    return values


def _bounded(args: argparse.Namespace, storage: dict[str, Any]) -> dict[str, Any]:
    """Storage options with `--timeout`/`--connect-timeout`, for the commands that read storage without `Options`."""
    defaults = {f.name: f.default for f in fields()}
    timeout, connect = (getattr(args, name) if getattr(args, name) is not None else defaults[name]
                        for name in ("timeout", "connect_timeout"))
    return with_timeouts(storage, timeout, connect)


def _storage_options(args: argparse.Namespace, base: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """The `--storage-option PROTOCOL.KEY=VALUE` flags, on top of `base` (a config file's table)."""
    options = {k: dict(v) if isinstance(v, dict) else v for k, v in (base or {}).items()}
    for protocol, name, value in args.storage_option:
        options.setdefault(protocol, {})[name] = value
    return options


def _guarded(stderr: TextIO, interrupted: str, work: Callable[[], int], quiet: bool = False) -> int:
    """Run a command: streamprep's own errors are one line and exit status 2, Ctrl-C is 130; warnings shown
    unless `quiet`."""
    handler = WarningHandler(stderr) if not quiet else logging.NullHandler()
    logger = logging.getLogger("streamprep")
    logger.addHandler(handler)
    try:
        return work()
    except Stopped:
        stderr.write(f"streamprep: stopped; {interrupted}\n")
        return Stopped.exit_code
    except StreamprepError as e:
        stderr.write(f"streamprep: error: {safe(str(e))}\n")
        return e.exit_code
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (`progress.Terminated`: exit status 143)
        stderr.write(f"streamprep: {'terminated' if isinstance(e, Terminated) else 'interrupted'}; {interrupted}\n")
        return getattr(e, "exit_code", 130)
    except Exception as e:  # noqa: BLE001 - a storage client's error that reached here: one line, not a traceback
        if not retry.foreign(e):
            raise  # a bug of streamprep's: the traceback is what to report
        stderr.write(f"streamprep: error: storage failed ({safe(retry.describe(e))}); check the connection and the "
                     f"URLs, then rerun; {interrupted}\n")
        return 2
    finally:
        logger.removeHandler(handler)


def _verify_command(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    """`streamprep verify`: the report on stdout; 0 if all is well, 1 if problems were found."""
    extras.check(extras.for_verify(args.out, args.decode))  # every package the check needs, before any reading
    from ..outputs.verify import verify

    report = verify(args.out, _bounded(args, _storage_options(args)), decode=args.decode,
                    workers=default_workers() if args.workers is None else args.workers,
                    num_classes=args.num_classes, progress=None if args.quiet else Reporter(stderr, stderr.isatty()))
    stdout.write("".join(safe(line) + "\n" for line in report.lines()))
    stdout.flush()
    return 0 if report.ok else 1


def _convert_command(args: argparse.Namespace, passthrough: list[str] | None, stderr: TextIO) -> int:
    """`streamprep convert`, on the local engine or (`--engine beam`) on Apache Beam."""
    options = make_options(_values(args))
    extras.check(extras.for_convert(options))  # every package the run needs, before Beam is imported
    reporter = None if args.quiet else Reporter(stderr, bars=stderr.isatty())
    from .. import engines

    summary = engines.run(options, passthrough, reporter)
    if not args.quiet:
        stderr.write(format_summary(summary))
    return 0


def _preview_command(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    """`streamprep plan`: the dry run's report (`engines.preview`) on stdout."""
    from ..engines.preview import preview

    report = preview(make_options(_values(args)), None if args.quiet else Reporter(stderr, stderr.isatty()))
    stdout.write(json.dumps(report.to_json(), indent=1) + "\n" if args.json else format_preview(report))
    stdout.flush()
    return 0


def _inspect_command(args: argparse.Namespace, stdout: TextIO) -> int:
    """`streamprep inspect`: the report on stdout."""
    from ..index.labels import load_label_data
    from ..outputs.inspect import inspect

    if args.limit < 0:
        raise ConfigError(f"limit (--limit) must be 0 or more, got {args.limit}")
    values = _values(args)  # a convert config's other options (shards, formats, ...) change nothing shown
    defaults = {f.name: f.default for f in fields()}
    storage = with_timeouts(values["storage_options"], *(values.get(name, defaults[name])
                                                         for name in ("timeout", "connect_timeout")))
    labels = load_label_data(values.get("labels_file"), values.get("metadata_file"),
                             values.get("validation_labels_file"), storage)
    found = inspect(args.path, labels, storage, args.limit)
    stdout.write(json.dumps(found.to_json(), indent=1) + "\n" if args.json else format_inspection(found))
    stdout.flush()
    return 0


def main(argv: Sequence[str] | None = None, stderr: TextIO | None = None, stdout: TextIO | None = None) -> int:
    """Run the command line; returns the exit status."""
    stderr, stdout = stderr or sys.stderr, stdout or sys.stdout
    argv, passthrough = _beam_options_apart([str(a) for a in (sys.argv[1:] if argv is None else argv)])
    top = parser()
    try:
        args, extra = top.parse_known_args(argv)
        if extra:  # told apart by the command they were given to: its flags suggested, its help named
            raise _unrecognized(_commands(top).get(args.command, top), extra)
    except UsageError as e:
        stderr.write(f"streamprep: error: {safe(str(e))}\n")
        return e.exit_code
    if args.command is None or (args.command == "config" and not args.example):  # nothing asked: the help
        (_commands(top)[args.command] if args.command else top).print_help(stdout)
        return 0
    if args.command == "config":
        from ..options import example_config

        stdout.write(example_config())
        return 0
    interrupted, work = {
        "inspect": ("nothing was written", lambda: _inspect_command(args, stdout)),
        "plan": ("nothing was written but the saved index", lambda: _preview_command(args, stdout, stderr)),
        "verify": ("verification stopped", lambda: _verify_command(args, stdout, stderr)),
        "convert": ("finished shards are kept, no partial file has a final name",
                    lambda: _convert_command(args, passthrough, stderr)),
    }[args.command]
    return _guarded(stderr, interrupted, work, getattr(args, "quiet", False))


def _beam_options_apart(argv: list[str]) -> tuple[list[str], list[str] | None]:
    """`convert ... --engine beam -- --runner=...`: the arguments before `--`, and those after it (None without
    `--`), which go to Beam untouched."""
    if "--" not in argv:
        return argv, None
    cut = argv.index("--")
    return argv[:cut], argv[cut + 1:]


__all__ = ["main", "parser"]
