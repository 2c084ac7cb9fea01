"""The command line: `streamprep convert`, progress bars and the closing summary."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Callable, Sequence, TextIO

from . import __version__
from .config import BBOX_TARGZ, ENGINES, TRAIN_TAR, VAL_TAR, default_workers, load_config, make_options
from .convert import Summary, convert
from .errors import BackendMissingError, ConfigError, StreamprepError
from .plan import Layout
from .progress import Event

LOG_INTERVAL = 15.0  # seconds between plain progress lines when stderr is not a terminal


def _storage_option(text: str) -> tuple[str, str, str]:
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


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="streamprep", description="ImageNet (ILSVRC2012) downloads to TFRecord shards, "
                                  "straight from the archives.")
    top.add_argument("--version", action="version", version=f"streamprep {__version__}")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("convert", help="write the classic train/validation shards and bboxes.csv",
                       description="Write the classic 1024/128 TFRecord shards and bboxes.csv straight from the "
                       "three ILSVRC2012 downloads, extracting nothing to disk. Flags override --config.")
    p.add_argument("downloads", nargs="?", metavar="DOWNLOADS",
                   help=f"folder or URL holding {TRAIN_TAR}, {VAL_TAR} and {BBOX_TARGZ}")
    p.add_argument("--config", metavar="TOML", help="config file (see configs/); flags override it")
    g = p.add_argument_group("inputs (paths or fsspec URLs)")
    g.add_argument("--train", metavar="URL", help=f"training tar (default: DOWNLOADS/{TRAIN_TAR})")
    g.add_argument("--val", metavar="URL", help=f"validation tar (default: DOWNLOADS/{VAL_TAR})")
    g.add_argument("--bbox", metavar="URL", help=f"bounding-box tar.gz (default: DOWNLOADS/{BBOX_TARGZ})")
    g = p.add_argument_group("output")
    g.add_argument("--out", metavar="URL", help="folder or URL for the shards and bboxes.csv (required unless --no-shards)")
    g.add_argument("--materialize", metavar="BASE", help="also write the classic folder layout under this local folder: "
                   "bboxes/, bboxes.csv, ILSVRC2012_img_val/<synset>/, ILSVRC2012_img_train/<synset>/")
    g.add_argument("--no-shards", dest="shards", action="store_false", default=None,
                   help="write only the --materialize layout, no shards")
    g = p.add_argument_group("classic layout (defaults reproduce the classic procedure)")
    layout = Layout()
    g.add_argument("--train-shards", type=int, metavar="N", help=f"training shards (default: {layout.train_shards})")
    g.add_argument("--validation-shards", type=int, metavar="N",
                   help=f"validation shards (default: {layout.validation_shards})")
    g.add_argument("--classic-threads", type=int, metavar="T",
                   help=f"the classic's --num_threads, which decides shard boundaries; not how many threads "
                   f"streamprep runs (default: {layout.classic_threads})")
    g = p.add_argument_group("label data (default: the copies shipped with streamprep)")
    g.add_argument("--labels-file", metavar="URL",
                   help="synsets file, line k = label k (default: the shipped imagenet_lsvrc_2015_synsets.txt)")
    g.add_argument("--metadata-file", metavar="URL",
                   help="synset<TAB>text file (default: the shipped imagenet_metadata.txt)")
    g.add_argument("--validation-labels-file", metavar="URL", help="synset of each validation image, by number "
                   "(default: the shipped imagenet_2012_validation_synset_labels.txt)")
    g = p.add_argument_group("checks and bad input")
    g.add_argument("--check-md5", action="store_true", default=None,
                   help="first check the downloads against the MD5 sums published for ILSVRC2012; on a mismatch "
                   "nothing is written (default: off; reads every byte once more)")
    g.add_argument("--on-bad-image", choices=("fail", "skip"),
                   help="an image that is not a usable JPEG: stop with an error, or leave it out and list it in the "
                   "summary and manifest (default: fail)")
    g.add_argument("--on-bad-xml", choices=("fail", "skip"),
                   help="a bounding-box XML file that cannot be used: stop, or leave it out and list it "
                   "(default: fail)")
    g = p.add_argument_group("execution")
    g.add_argument("--workers", type=int, metavar="N",
                   help=f"shards written at once; the output does not depend on it (default: {default_workers()})")
    g.add_argument("--engine", choices=ENGINES,
                   help="where the conversion runs: this process, or an Apache Beam pipeline (Dataflow, Flink, Spark) "
                   "whose options follow a `--`, e.g. `--engine beam -- --runner=DataflowRunner --project=P`; the "
                   "output is the same (default: local)")
    g.add_argument("--storage-option", type=_storage_option, action="append", default=[], metavar="PROTO.KEY=VALUE",
                   help="fsspec option for one protocol, e.g. s3.endpoint_url=http://127.0.0.1:5555 (repeatable)")
    g.add_argument("--quiet", "-q", action="store_true", help="print nothing but errors")

    v = sub.add_parser("verify", help="check a finished output: framing, schema, labels, counts and sha256",
                       description="Check every record of an output folder: length and data CRCs, the classic "
                       "feature schema, labels in range, and (with manifest.json, as convert writes it) every "
                       "shard's size, sha256 and record count and each split's label counts; optionally decode "
                       "every image. Works on the classic procedure's shards too (no manifest). The report goes "
                       "to stdout: one line per problem, then a summary. Exit status: 0 all is well, 1 problems "
                       "found, 2 OUT cannot be verified.")
    v.add_argument("out", metavar="OUT", help="the output folder or URL (convert's --out)")
    g = v.add_argument_group("checks")
    g.add_argument("--decode", action="store_true",
                   help="also decode every image with TensorFlow (decode_jpeg, 3 channels) and check its size "
                   "against image/height and image/width (default: off; slower)")
    g.add_argument("--num-classes", type=int, default=1000, metavar="N",
                   help="image/class/label must be in 1..N (default: 1000)")
    g = v.add_argument_group("execution")
    g.add_argument("--workers", type=int, metavar="N",
                   help=f"shards checked at once (default: {default_workers()})")
    g.add_argument("--storage-option", type=_storage_option, action="append", default=[], metavar="PROTO.KEY=VALUE",
                   help="fsspec option for one protocol, e.g. s3.endpoint_url=http://127.0.0.1:5555 (repeatable)")
    g.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr (the report is still printed)")
    return top


def _values(args: argparse.Namespace) -> dict[str, Any]:
    """Config file values overridden by the flags given."""
    values: dict[str, Any] = load_config(args.config) if args.config else {}
    for key in ("downloads", "train", "val", "bbox", "out", "materialize", "shards", "train_shards", "validation_shards",
                "classic_threads", "labels_file", "metadata_file", "validation_labels_file", "workers", "check_md5",
                "on_bad_image", "on_bad_xml", "engine"):
        value = getattr(args, key)
        if value is not None:
            values[key.replace("_", "-")] = value
    values["storage-options"] = _storage_options(args, values.get("storage-options"))
    return values


class Reporter:
    """Draws a tqdm bar per phase on a terminal, or writes plain log lines otherwise.

    A phase whose item count is known (writing) counts items; one that only knows its byte size
    (walking an archive) counts bytes. Either way the bar shows MB/s and an ETA.
    """

    def __init__(self, stream: TextIO, bars: bool) -> None:
        self.stream, self.bars = stream, bars
        self.state: dict[str, dict[str, Any]] = {}

    def __call__(self, event: Event) -> None:
        if event.kind == "warning":
            self.stream.write(f"streamprep: warning: {event.phase}\n")
            self.stream.flush()
            return
        if event.kind == "start":
            now = time.monotonic()
            by_bytes = event.total is None and event.total_bytes is not None
            st = self.state[event.phase] = {"items": 0, "bytes": 0, "t0": now, "last": now, "unit": event.unit,
                                            "by_bytes": by_bytes, "total": event.total_bytes if by_bytes else event.total}
            if self.bars:
                from tqdm import tqdm
                options = dict(unit="B", unit_scale=True, unit_divisor=1024) if by_bytes else dict(unit=f" {event.unit}")
                st["bar"] = tqdm(total=st["total"], desc=event.phase, file=self.stream, dynamic_ncols=True,
                                 smoothing=0.1, **options)
            else:
                self.stream.write(f"{event.phase}: started\n")
            return
        st = self.state[event.phase]
        now = time.monotonic()
        if event.kind == "advance":
            st["items"] += event.items
            st["bytes"] += event.nbytes
            if self.bars:
                rate = st["bytes"] / max(now - st["t0"], 1e-9) / 1e6
                extra = f"{st['items']:,} {st['unit']}" if st["by_bytes"] else f"{rate:.1f} MB/s"
                st["bar"].set_postfix_str(extra, refresh=False)
                st["bar"].update(event.nbytes if st["by_bytes"] else event.items)
            elif now - st["last"] >= LOG_INTERVAL:
                st["last"] = now
                self.stream.write(f"{event.phase}: {self._progress(st, now)}\n")
            return
        if self.bars:
            if st["by_bytes"] and st["total"]:
                st["bar"].update(st["total"] - st["bar"].n)  # headers, padding and skipped members: read too
            st["bar"].close()
        else:
            self.stream.write(f"{event.phase}: done, {self._progress(st, now, done=True)}\n")
        self.stream.flush()

    @staticmethod
    def _progress(st: dict[str, Any], now: float, done: bool = False) -> str:
        elapsed = max(now - st["t0"], 1e-9)
        total = f"/{st['total']:,}" if st["total"] and not st["by_bytes"] else ""
        text = (f"{st['items']:,}{total} {st['unit']}, {st['bytes'] / 1e6:,.1f} MB, "
                f"{st['bytes'] / elapsed / 1e6:.1f} MB/s")
        counted = st["bytes"] if st["by_bytes"] else st["items"]
        if done:
            text += f", {elapsed:.1f} s"
        elif st["total"] and counted:
            text += f", ETA {elapsed * (st['total'] - counted) / counted:.0f} s"
        return text


UNLISTED_SHOWN = 10


def format_summary(s: Summary) -> str:
    lines = []
    if s.layout:
        lines.append(f"streamprep: wrote the folder layout under {s.layout.base}")
        for name, part in s.layout.parts.items():
            lines.append(f"  {name:<10} {part.written:>9,} files written ({part.nbytes / 1e6:,.1f} MB), "
                         f"{part.kept:,} already complete")
        unlisted = s.layout.unlisted_validation
        if unlisted:
            shown = ", ".join(sorted(unlisted)[:UNLISTED_SHOWN]) + (" ..." if len(unlisted) > UNLISTED_SHOWN else "")
            lines.append(f"  {len(unlisted):,} validation image(s) not in the validation labels file, left in "
                         f"{s.layout.base}/ILSVRC2012_img_val/ as the classic leaves them: {shown}")
    if not s.shard_results and not s.out:
        return "\n".join(lines) + "\n"
    lines.append(f"streamprep: wrote {s.out}")
    for name, split in s.splits.items():
        lines.append(f"  {name:<10} {split.images:>9,} images in {split.shards:,} shards, {split.classes:,} classes, "
                     f"{split.boxes:,} boxes, {split.nbytes / 1e6:,.1f} MB")
    lines.append(f"  bboxes.csv {s.boxes_csv_lines:>9,} boxes from {s.box_files:,} XML files")
    lines.append(f"  fix-ups    {len(s.fixups):>9,}" + (f" ({', '.join(s.fixups[:5])}{' ...' if len(s.fixups) > 5 else ''})"
                                                        if s.fixups else ""))
    kept = sum(r.kept for r in s.shard_results)
    if kept:
        lines.append(f"  resumed    {kept:>9,} of {len(s.shard_results):,} shards were already complete (sha256 "
                     "checked against the manifest) and were kept")
    if s.index_reused:
        lines.append("  index      reused the index saved by an earlier run (the downloads are unchanged)")
    skipped = [*s.ignored.skipped, *(x for r in s.shard_results for x in r.skipped)]
    if skipped:
        lines.append(f"  skipped {len(skipped):,} bad input file(s) (also listed in manifest.json):")
        for item in skipped[:UNLISTED_SHOWN]:
            lines.append(f"    {item['member']}: {item['reason']}")
        if len(skipped) > UNLISTED_SHOWN:
            lines.append(f"    ... and {len(skipped) - UNLISTED_SHOWN:,} more")
    if s.ignored.counts:
        lines.append("  ignored members:")
        for reason, count in sorted(s.ignored.counts.items()):
            lines.append(f"    {count:,} {reason}, e.g. {', '.join(s.ignored.examples[reason][:2])}")
    rate = s.bytes_read / max(s.seconds, 1e-9) / 1e6
    images = sum(x.images for x in s.splits.values())
    lines.append(f"  wall time {s.seconds:.1f} s, {images / max(s.seconds, 1e-9):,.0f} images/s, {rate:,.1f} MB/s of images")
    return "\n".join(lines) + "\n"


def _storage_options(args: argparse.Namespace, base: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """The `--storage-option PROTOCOL.KEY=VALUE` flags, on top of `base` (a config file's table)."""
    options = {k: dict(v) if isinstance(v, dict) else v for k, v in (base or {}).items()}
    for protocol, name, value in args.storage_option:
        options.setdefault(protocol, {})[name] = value
    return options


def _guarded(stderr: TextIO, interrupted: str, work: Callable[[], int]) -> int:
    """Run a command: streamprep's own errors are one line and exit status 2, Ctrl-C is 130."""
    try:
        return work()
    except StreamprepError as e:
        stderr.write(f"streamprep: error: {e}\n")
        return e.exit_code
    except KeyboardInterrupt:
        stderr.write(f"streamprep: interrupted; {interrupted}\n")
        return 130


def _verify_command(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    """`streamprep verify`: the report on stdout; 0 if all is well, 1 if problems were found."""
    from .verify import verify

    report = verify(args.out, _storage_options(args), decode=args.decode,
                    workers=default_workers() if args.workers is None else args.workers,
                    num_classes=args.num_classes, progress=None if args.quiet else Reporter(stderr, stderr.isatty()))
    stdout.write("".join(line + "\n" for line in report.lines()))
    stdout.flush()
    return 0 if report.ok else 1


def _convert_command(args: argparse.Namespace, passthrough: list[str] | None, stderr: TextIO) -> int:
    """`streamprep convert`, on the local engine or (`--engine beam`) on Apache Beam."""
    options = make_options(_values(args))
    reporter = None if args.quiet else Reporter(stderr, bars=stderr.isatty())
    if options.engine == "beam":
        beam = _beam_engine()
        text = beam.format_summary(beam.convert(options, passthrough or [], reporter))
    else:
        if passthrough is not None:
            raise ConfigError(f"arguments after `--` ({' '.join(passthrough) or 'none'}) are Apache Beam pipeline "
                              "options; pass them with --engine beam")
        text = format_summary(convert(options, reporter))
    if not args.quiet:
        stderr.write(text)
    return 0


def _beam_engine() -> Any:
    """streamprep.beam, which imports Apache Beam; only `--engine beam` loads it."""
    try:
        import apache_beam  # noqa: F401
    except ImportError as e:
        raise BackendMissingError(f"--engine beam needs Apache Beam, which is not installed ({e}); "
                                  "install streamprep[beam]") from None
    from . import beam
    return beam


def main(argv: Sequence[str] | None = None, stderr: TextIO | None = None, stdout: TextIO | None = None) -> int:
    """Run the command line; returns the exit status."""
    stderr = stderr or sys.stderr
    argv = [str(a) for a in (sys.argv[1:] if argv is None else argv)]
    passthrough: list[str] | None = None
    if "--" in argv:  # `convert ... --engine beam -- --runner=...`: the rest goes to Beam untouched
        cut = argv.index("--")
        argv, passthrough = argv[:cut], argv[cut + 1:]
    args = parser().parse_args(argv)
    if args.command == "verify":
        return _guarded(stderr, "verification stopped", lambda: _verify_command(args, stdout or sys.stdout, stderr))
    return _guarded(stderr, "finished shards are kept, no partial file has a final name",
                    lambda: _convert_command(args, passthrough, stderr))


__all__ = ["main", "parser"]
