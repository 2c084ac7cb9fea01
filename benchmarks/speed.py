"""Speed against the classic procedure and the `cat` floor: best of several tries, warm and cold, in one run.

Builds (once, cached under benchmarks/.cache/speed/) ImageNet-shaped downloads with bench/data.py's
`build()`: a training tar of per-class tars, a validation tar and a bounding-box .tar.gz, holding
RGB noise JPEGs of 300-500 px a side (about 120 KB each), and, in the classes that have one, the
classic's fix-up file under its real name (a PNG or a CMYK JPEG), as the real training tar does. Then
it times four sides (seven with --formats, the default), each a subprocess whose whole process tree is
sampled for RSS (every 50 ms, /proc) and whose folder is sampled for disk use (st_blocks, every 100 ms
or less often when a walk gets slow):

  streamprep    `streamprep convert` on the three archives, default workers, started through a
                `python -c` wrapper that runs `streamprep.cli.main(argv)` and, after it returned,
                writes whether `tensorflow` is in sys.modules to a side file; TFRecord alone (the default
                format);
  streamprep_webdataset, streamprep_both, streamprep_both_dali
                (--formats, the default; --no-formats leaves them out) the same, with `--format
                webdataset`, with `--format tfrecord,webdataset` (one read, both formats) and with
                `--format tfrecord,webdataset --dali-index` (and DALI's index files);
  cat           the floor: `cat TRAIN_TAR VAL_TAR > OUT`, cat's stdout opened on OUT (cold: `...; sync`);
  python_floor  a Python loop that reads every byte of the three archives in 8 MB blocks and writes
                as many bytes as streamprep's shards hold into one file (no fsync, like the others);
  classic       tests/classic_reference.py's `run_classic`: real `tar` extraction of the three
                archives and of every class tar, bboxes.csv, the validation folders, then the
                threaded TensorFlow build (8 threads) that decodes every JPEG fully, as the classic's
                `_process_image` does; its phases are timed by wrapping the reference's functions.

Each side runs --repeats tries (the classic --classic-repeats), the sides taking turns round by
round, in each page-cache mode of --cache-mode (issue 28's floors):
  warm  the archives read just before each try, so it finds them in the page cache; the timed part is
        the command alone, no `sync` in it on either side (`cat TRAIN_TAR VAL_TAR > OUT`);
  cold  `sync`, then `echo 3 > /proc/sys/vm/drop_caches` before each try (archives, interpreter,
        libraries all come from disk), and every side's timed part ends with `sync` (`cat TRAIN_TAR
        VAL_TAR > OUT; sync`, `streamprep convert ...; sync`): each waits until its writes are on disk.
Before every try its output folder is removed and `sync` runs, untimed, so that one try's writeback
does not land in the next. A side's wall time is its best try's; every try's figures are kept, among
them the CPU seconds of its process tree (user + system) and the peak of the tree's RSS and of its
anonymous memory (RssAnon summed over the processes). If the page cache cannot be dropped, the JSON
says `"cold": "unavailable: <reason>"` and the tables say so.

All sides use the same shard layout: by default (--shard-size classic) the real data's 1024/128
shards with 8 threads when the scale allows it (about 18.6 images a training shard at the default
scale), a smaller layout otherwise; --shard-size real puts as many images in a shard as the real
data's shards hold (1,251 training, 391 validation: 15/3 shards at the default scale); --train-shards
and --validation-shards set the counts. The classic's last shards and streamprep's last shards are
then compared record for record (parsed features, per shard name) and bboxes.csv byte for byte; with
--formats, the last `.tar` shards of streamprep_webdataset and of streamprep_both_dali by sha256, file
for file of the same name, and the TFRecord shards of streamprep_both_dali and of streamprep
(`formats_identical`).
Unless --walk-repeats is 0, it first times walking the headers of the nested training tar with
Python's tarfile (outer tar, then each class tar through `extractfile` + `tarfile.open(fileobj=...)`)
against streamprep's walk (`archives.storage.Source`, `archives.walk.members`, `inner_members`), one
thread each, same warm tar.

    python benchmarks/speed.py [--classes 100] [--images-per-class 190] [--val-images 1000]
                               [--repeats 3] [--classic-repeats 1] [--cache-mode warm|cold|both]
                               [--shard-size classic|real] [--train-shards N --validation-shards N]
                               [--walk-repeats 5] [--skip-classic] [--no-formats]
                               [--write-docs docs/performance.md]

Prints a JSON summary and tables: the runs, the ratios of best wall times and of CPU seconds (and the
formats' ratios of peak RSS and RssAnon), the targets of issues 14, 15 and 28 (streamprep at most 3x the
warm and 2x the cold `cat` floor, `--format tfrecord,webdataset` at most 1.5x TFRecord alone's ratio in
each mode, peak anonymous memory under 250 MB); exits with status 1 if a comparison finds a difference;
--write-docs replaces (or appends) the section '## Speed against the classic procedure
(benchmarks/speed.py)' in that Markdown file. Each run saves its JSON summary as
benchmarks/.cache/speed/last.json; `--from-json SUMMARY --write-docs PATH` re-renders the section from
such a summary without measuring anything.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
from functools import partial
from pathlib import Path
from typing import Any, Callable

from bench import children, compare, data, pagecache, procs, report, speed_report, tries
from bench.layout import ARCHIVES, CACHE, VAL_LABELS
from bench.timing import ratio
from bench.walk import header_walk

SIZE_RANGE = data.SPEED_SIZE_RANGE
MODES = {"warm": ["warm"], "cold": ["cold"], "both": ["warm", "cold"]}
SHARD_SIZES = ("classic", "real")
REAL_PER_SHARD = (1_281_167 / 1024, 50_000 / 128)  # images a training and a validation shard of the real data
# the sides --formats adds, each streamprep's conversion with these options added
FORMAT_SIDES = {"streamprep_webdataset": ["--format", "webdataset"],
                "streamprep_both": ["--format", "tfrecord,webdataset"],
                "streamprep_both_dali": ["--format", "tfrecord,webdataset", "--dali-index"]}


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data.add_arguments(ap, classes=100, per_class=190, val_images=1000)
    ap.add_argument("--repeats", type=int, default=3,
                    help="tries of streamprep and of each floor in each page-cache mode; the best counts")
    ap.add_argument("--classic-repeats", type=int, default=1, help="tries of the classic in each page-cache mode")
    ap.add_argument("--cache-mode", choices=sorted(MODES), default="both",
                    help="warm: archives read before each try; cold: page cache dropped before each try")
    ap.add_argument("--skip-classic", action="store_true", help="time streamprep and the floors only")
    ap.add_argument("--formats", action=argparse.BooleanOptionalAction, default=True,
                    help="also time `--format webdataset`, `--format tfrecord,webdataset` and the same with `--dali-index` "
                         "against the TFRecord-alone conversion, and check their shards are the same bytes")
    ap.add_argument("--shard-size", choices=sorted(SHARD_SIZES), default="classic",
                    help="classic: the real data's shard counts, 1024/128 with 8 threads (about 18.6 images a training "
                         "shard at the default scale; 16/8 below 8,192 training or 512 validation images); real: as "
                         "many images a shard as the real data's 1024/128 shards hold (1,251 training, 391 "
                         "validation), the threads the largest of 8, 4, 2, 1 dividing both counts (the classic "
                         "builds with that many)")
    ap.add_argument("--train-shards", type=int, help="layout override: this many training shards (not --shard-size)")
    ap.add_argument("--validation-shards", type=int, help="with --train-shards (default 8)")
    ap.add_argument("--threads", type=int, default=8, help="the classic's threads, with --train-shards")
    ap.add_argument("--walk-repeats", type=int, default=5, help="header walk tries (0: no header walk)")
    ap.add_argument("--cache", type=Path, default=CACHE / "speed")
    ap.add_argument("--keep-outputs", action="store_true", help="keep the run folders under the cache")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds allowed per try")
    ap.add_argument("--write-docs", type=Path, metavar="PATH",
                    help=f"append or replace the section '{speed_report.SECTION}' in this Markdown file")
    ap.add_argument("--from-json", type=Path, metavar="SUMMARY",
                    help="measure nothing: re-render the --write-docs section from a saved JSON summary "
                         "(each run saves its own as benchmarks/.cache/speed/last.json)")
    ap.add_argument("--child", nargs=2, metavar=("KIND", "CONFIG"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.from_json and not args.write_docs:
        ap.error("--from-json needs --write-docs PATH")
    if args.repeats < 1 or args.classic_repeats < 1 or args.walk_repeats < 0:
        ap.error("--repeats and --classic-repeats need at least 1 try, --walk-repeats at least 0")
    return args


def layout_for(train_images: int, val_images: int, args: argparse.Namespace) -> dict[str, int]:
    """The shard counts and classic threads of every side: --train-shards, else --shard-size's."""
    if args.train_shards:
        return {"train_shards": args.train_shards, "validation_shards": args.validation_shards or 8,
                "threads": args.threads}
    if args.shard_size == "real":
        counts = [max(1, round(n / per_shard)) for n, per_shard in zip((train_images, val_images), REAL_PER_SHARD)]
        threads = next(t for t in (8, 4, 2, 1) if not counts[0] % t and not counts[1] % t)
        return {"train_shards": counts[0], "validation_shards": counts[1], "threads": threads}
    if train_images >= 8 * 1024 and val_images >= 4 * 128:  # the classic's layout, a few images a shard
        return {"train_shards": 1024, "validation_shards": 128, "threads": 8}
    return {"train_shards": 16, "validation_shards": 8, "threads": 8}


def child_cmd(kind: str, config: Path) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--child", kind, str(config)]


def allocated(path: Path) -> int:
    return path.stat().st_blocks * 512


def make_sides(args: argparse.Namespace, inputs: list[Path], labels: Path, lay: dict[str, int],
               runs: Path) -> tuple[list[tries.Side], dict[str, str]]:
    """The timed sides, and the command each stands for (as a shell would show it)."""
    cat_out = runs / "cat" / "out.bin"
    floor_dir, floor_cfg = runs / "python_floor", runs / "python_floor.json"
    options = ["--train-shards", str(lay["train_shards"]), "--validation-shards", str(lay["validation_shards"]),
               "--classic-threads", str(lay["threads"]), "--quiet"]
    sides: list[tries.Side] = []
    commands: dict[str, str] = {}

    def add_streamprep(name: str, extra: list[str], then: Callable[[], None] | None = None) -> None:
        """A `streamprep convert` side with `extra` options, through the TensorFlow probe; `then()` after each try."""
        out, probe = runs / name, runs / f"{name}-probe.json"

        def after(x: dict[str, Any]) -> None:
            x["tensorflow_imported"] = children.tensorflow_imported(probe)
            if then:
                then()

        sides.append(tries.Side(name, procs.convert_cmd(*inputs, out, labels, *options, *extra,
                                                        launcher=children.probe_launcher(probe)),
                                out, args.repeats, lambda: compare.output_bytes(out)["allocated"], after=after))
        commands[name] = shlex.join(procs.convert_cmd(*inputs, out, labels, *options, *extra))

    def floor_config() -> None:
        # streamprep goes first in every round, so the Python floor has its shards' size before its first try
        floor_cfg.write_text(json.dumps({"inputs": [str(p) for p in inputs], "out": str(floor_dir / "out.bin"),
                                         "bytes": compare.output_bytes(runs / "streamprep")["shard_bytes"]}))

    add_streamprep("streamprep", [], floor_config)
    if args.formats:
        for name, extra in FORMAT_SIDES.items():
            add_streamprep(name, extra)
    sides += [tries.Side("cat", children.cat_cmd(inputs[:2]), cat_out.parent, args.repeats, lambda: allocated(cat_out),
                         stdout=cat_out),
              tries.Side("python_floor", child_cmd("floor", floor_cfg), floor_dir, args.repeats,
                         lambda: allocated(floor_dir / "out.bin"))]
    commands |= {"cat": f"{shlex.join(children.cat_cmd(inputs[:2]))} > {shlex.quote(str(cat_out))}",
                 "python_floor": shlex.join(child_cmd("floor", floor_cfg))}
    if not args.skip_classic:
        cl_dir, cl_cfg, cl_report = runs / "classic", runs / "classic.json", runs / "classic-report.json"
        cl_cfg.write_text(json.dumps({"train": str(inputs[0]), "val": str(inputs[1]), "bbox": str(inputs[2]),
                                      "out": str(cl_dir / "processed"), "work": str(cl_dir / "work"),
                                      "val_labels": str(labels), "report": str(cl_report),
                                      "train_shards": lay["train_shards"],
                                      "validation_shards": lay["validation_shards"], "threads": lay["threads"]}))

        def after_classic(x: dict[str, Any]) -> None:
            x.update(json.loads(cl_report.read_text()))
            x["work_mb"] = round(procs.disk_use([cl_dir / "work"])[0] / 1e6, 1)

        sides.append(tries.Side("classic", child_cmd("classic", cl_cfg), cl_dir, args.classic_repeats,
                                lambda: compare.output_bytes(cl_dir / "processed")["allocated"], after=after_classic))
        commands["classic"] = shlex.join(child_cmd("classic", cl_cfg))
    return sides, commands


def ratios(runs: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Ratios of the best wall times of one page-cache mode, and of the least CPU seconds (`cpu_*`); with --formats,
    also each format side over the TFRecord-alone side (wall; highest peak RSS `*_rss_*` and RssAnon `*_anon_*`),
    and `--format tfrecord,webdataset` over the `cat` floor."""
    wall = {name: x["wall_s"] for name, x in runs.items()}
    cpu = {name: x["cpu_s_least"] for name, x in runs.items()}
    out = {"streamprep_over_cat": ratio(wall["streamprep"], wall["cat"]),
           "streamprep_over_python_floor": ratio(wall["streamprep"], wall["python_floor"]),
           "python_floor_over_cat": ratio(wall["python_floor"], wall["cat"]),
           "cpu_streamprep_over_cat": ratio(cpu["streamprep"], cpu["cat"])}
    if "classic" in wall:
        out["classic_over_streamprep"] = ratio(wall["classic"], wall["streamprep"])
        out["classic_over_cat"] = ratio(wall["classic"], wall["cat"])
    if "streamprep_both" in wall:
        out["both_over_cat"] = ratio(wall["streamprep_both"], wall["cat"])
        out["cpu_both_over_cat"] = ratio(cpu["streamprep_both"], cpu["cat"])
        shorts = [short for short in ("webdataset", "both", "both_dali") if f"streamprep_{short}" in wall]
        for kind, of in (("", wall), ("_cpu", cpu), ("_rss", {n: x["peak_rss_mb_max"] for n, x in runs.items()}),
                         ("_anon", {n: x["peak_rss_anon_mb_max"] for n, x in runs.items()})):
            out |= {f"{short}{kind}_over_tfrecord": ratio(of[f"streamprep_{short}"], of["streamprep"])
                    for short in shorts}
    return out


def page_cache_modes(cache_mode: str, result: dict[str, Any]) -> list[str]:
    """The page-cache modes to measure (cold only where the page cache can be dropped: `result["cold"]` says);
    exits with status 1 if none is left."""
    modes = MODES[cache_mode]
    result["cold"] = pagecache.cold_status() if "cold" in modes else "not measured (--cache-mode warm)"
    if result["cold"].startswith("unavailable"):
        print(f"no cold tries: the page cache cannot be dropped here ({result['cold']})", file=sys.stderr)
        modes = [m for m in modes if m != "cold"]
    if not modes:
        print(json.dumps(result, indent=1))
        sys.exit(1)
    return modes


def compare_outputs(args: argparse.Namespace, runs: Path, result: dict[str, Any]) -> None:
    """The last tries' outputs: streamprep's against the classic's record for record, the formats' by sha256."""
    if not args.skip_classic:
        print("comparing the shards record for record ...", file=sys.stderr)
        result["identity"] = compare.compare_records(runs / "streamprep", runs / "classic" / "processed")
        result["identical_records"] = result["identity"]["identical_records"]
    if args.formats:
        print("comparing the formats' shards by sha256 ...", file=sys.stderr)
        result["formats_identity"] = compare.compare_formats(runs / "streamprep", runs / "streamprep_webdataset",
                                                             runs / "streamprep_both_dali")
        result["formats_identical"] = result["formats_identity"]["formats_identical"]


def main() -> None:
    args = parse_args()
    if args.child:
        children.child(*args.child)
        return
    if args.from_json:
        speed_report.render(json.loads(args.from_json.read_text()), args.write_docs)
        return

    folder, meta = data.from_args(args.cache, args, SIZE_RANGE)
    inputs = [folder / n for n in ARCHIVES]
    labels = folder / VAL_LABELS
    input_bytes = sum(p.stat().st_size for p in inputs)
    images = meta["images"]
    lay = layout_for(meta["train_images"], meta["val_images"], args)
    runs = args.cache / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "scale": {**data.scale_summary(meta), "size_range": list(SIZE_RANGE), "archive_mb": round(input_bytes / 1e6, 1)},
        "layout": lay,
        "repeats": {"streamprep": args.repeats, **dict.fromkeys(FORMAT_SIDES if args.formats else (), args.repeats),
                    "cat": args.repeats, "python_floor": args.repeats,
                    **({} if args.skip_classic else {"classic": args.classic_repeats})}}

    modes = page_cache_modes(args.cache_mode, result)

    if args.walk_repeats:
        print("header walk: tarfile against streamprep ...", file=sys.stderr)
        pagecache.warm([inputs[0]])
        result["header_walk"] = header_walk(inputs[0], args.walk_repeats)

    sides, result["commands"] = make_sides(args, inputs, labels, lay, runs)
    prepare = {"warm": partial(pagecache.warm, inputs), "cold": pagecache.drop}
    result["runs"] = {}
    try:
        for mode in modes:
            result["runs"][mode] = tries.run(sides, mode, prepare[mode], images, input_bytes, args.timeout, runs,
                                             sync_after=mode == "cold")
    except tries.Failed as e:
        result["failed"] = {"error": str(e), **e.figures}
        print(json.dumps(result, indent=1))
        sys.exit(1)

    compare_outputs(args, runs, result)
    result["ratios"] = {mode: ratios(result["runs"][mode]) for mode in modes}
    report.publish(result, "speed.py", speed_report.targets, speed_report.tables, speed_report.render,
                   args.cache / "last.json", args.write_docs)
    if not args.keep_outputs:
        for side in sides:
            shutil.rmtree(side.folder, ignore_errors=True)
    if not result.get("identical_records", True) or not result.get("formats_identical", True):
        sys.exit(1)


if __name__ == "__main__":
    main()
