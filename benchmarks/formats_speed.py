"""Every trainer's format from one read: each format alone, and all five in one run, against TFRecord alone.

Builds (once, cached under benchmarks/.cache/speed/, shared with speed.py) the speed data set: ImageNet-shaped
downloads of RGB noise JPEGs of 300-500 px a side holding the classic's fix-up files under their real names
(bench/data.py's `build()`). Then it times, warm (the archives read just before each try), best of --repeats
tries each, the tries taking turns round by round so that noise on this shared machine hits every side:

  tfrecord        `streamprep convert` with the default format (the classic's TFRecord shards);
  parquet, mds, litdata, webdataset
                  the same with `--format NAME` alone;
  all             `--format tfrecord,parquet,mds,litdata,webdataset`: one read of the downloads, five formats.

Each side is a subprocess whose whole process tree is sampled for resident memory (bench/procs.py). Targets
(issue 25): each new format alone within 10% of TFRecord alone; all five at most 3x TFRecord alone; peak memory
unchanged (reported as each side's peak resident memory over TFRecord alone's).

    python benchmarks/formats_speed.py [--classes 100] [--images-per-class 190] [--val-images 1000]
                                       [--repeats 3] [--write-docs docs/performance.md]
    python benchmarks/formats_speed.py --from-json SUMMARY --write-docs docs/performance.md
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from functools import partial
from pathlib import Path
from typing import Any

from bench import data, pagecache, procs, report, tries
from bench.layout import ARCHIVES, CACHE, VAL_LABELS
from bench.timing import ratio

SECTION = "## Every trainer's format from one read (benchmarks/formats_speed.py)"
SIDES = {"tfrecord": [], "parquet": ["--format", "parquet"], "mds": ["--format", "mds"],
         "litdata": ["--format", "litdata"], "webdataset": ["--format", "webdataset"],
         "all": ["--format", "tfrecord,parquet,mds,litdata,webdataset"]}
NEW = ("parquet", "mds", "litdata")
# Published times of the libraries' own converters for ImageNet's training set (issue 25 quotes them)
PUBLISHED = [("MosaicML streaming's ImageNet converter (MDS)", "49 min 49 s, training set"),
             ("LitData `optimize` (from an extracted tree; its README)", "10 min 5 s"),
             ("FFCV's writer (ffcv #400)", "over 6 hours"),
             ("Hugging Face `datasets` loading script (parquet)", "about 1,755 examples/s")]


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data.add_arguments(ap, classes=100, per_class=190, val_images=1000)
    ap.add_argument("--repeats", type=int, default=3, help="tries of each side; the best counts")
    ap.add_argument("--train-shards", type=int, default=128)
    ap.add_argument("--validation-shards", type=int, default=16)
    ap.add_argument("--cache", type=Path, default=CACHE / "speed")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds allowed per try")
    ap.add_argument("--write-docs", type=Path, metavar="PATH", help=f"append or replace the section '{SECTION}'")
    ap.add_argument("--from-json", type=Path, metavar="SUMMARY",
                    help="measure nothing: write the --write-docs section from a saved JSON summary")
    args = ap.parse_args()
    if args.from_json and not args.write_docs:
        ap.error("--from-json needs --write-docs PATH")
    if args.repeats < 1:
        ap.error("--repeats needs at least 1 try")
    return args


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    r = result["ratios"]
    found = [{"target": f"--format {name} alone within 10% of TFRecord alone", "measured": r[f"{name}_over_tfrecord"],
              "met": r[f"{name}_over_tfrecord"] <= 1.10} for name in NEW]
    found.append({"target": "all five formats in one run at most 3x TFRecord alone", "measured": r["all_over_tfrecord"],
                  "met": r["all_over_tfrecord"] <= 3.0})
    return found


def tables(result: dict[str, Any]) -> list[str]:
    runs, r = result["runs"], result["ratios"]
    rows = [*report.head("side", "command's --format", "best wall s", "MB/s", "images/s", "over TFRecord",
                        "peak RSS MB", "RSS over TFRecord", "outputs MB")]
    for name, extra in SIDES.items():
        x = runs[name]
        rows.append(f"| {name} | {extra[1] if extra else 'tfrecord (default)'} | {x['wall_s']} | {x['mb_per_s']} | "
                    f"{x['images_per_s']} | {r.get(f'{name}_over_tfrecord', 1.0)} | {x['peak_rss_mb_max']} | "
                    f"{r.get(f'{name}_rss_over_tfrecord', 1.0)} | {x['outputs_mb']} |")
    goals = [*report.head("target", "measured", "met")] + [
        f"| {t['target']} | {t['measured']}x | {report.mark(t['met'])} |" for t in result["targets"]]
    return ["\n".join(rows), "\n".join(goals)]


def render(result: dict[str, Any], doc: Path) -> None:
    scale = result["scale"]
    text = [SECTION, "",
            f"Measured {result['date']} on {result['machine'].get('nproc', '?')} cores "
            f"(`{result['command']}`): {scale['images']:,} JPEGs ({scale['archive_mb']} MB of archives, "
            f"{result['layout']['train_shards']}/{result['layout']['validation_shards']} shards), warm page cache, "
            f"best of {result['repeats']} tries each, the sides taking turns.", "",
            *(t + "\n" for t in tables(result)), "",
            "The libraries' own converters, as published (full ImageNet training set, from an extracted tree):", "",
            *(f"- {who}: {took}" for who, took in PUBLISHED), ""]
    report.write_docs(doc, "\n".join(text) + "\n", SECTION)
    print(f"\nwrote the section '{SECTION}' in {doc}")


def main() -> None:
    args = parse_args()
    if args.from_json:
        render(json.loads(args.from_json.read_text()), args.write_docs)
        return
    folder, meta = data.from_args(args.cache, args, data.SPEED_SIZE_RANGE)
    inputs = [folder / n for n in ARCHIVES]
    input_bytes = sum(p.stat().st_size for p in inputs)
    runs = args.cache / "format-runs"
    runs.mkdir(parents=True, exist_ok=True)
    layout = ["--train-shards", str(args.train_shards), "--validation-shards", str(args.validation_shards),
              "--classic-threads", "8", "--quiet"]
    # each try's output is measured, then removed: six outputs of the speed data set do not fit every disk
    sides = [tries.Side(name, procs.convert_cmd(*inputs, runs / name, folder / VAL_LABELS, *layout, *extra),
                        runs / name, args.repeats, partial(lambda out: procs.disk_use([out])[0], runs / name),
                        after=partial(lambda out, _: shutil.rmtree(out, ignore_errors=True), runs / name))
             for name, extra in SIDES.items()]
    result: dict[str, Any] = {
        "scale": {**data.scale_summary(meta), "archive_mb": round(input_bytes / 1e6, 1)},
        "layout": {"train_shards": args.train_shards, "validation_shards": args.validation_shards},
        "repeats": args.repeats}
    try:
        result["runs"] = tries.run(sides, "warm", partial(pagecache.warm, inputs), meta["images"], input_bytes,
                                   args.timeout, runs)
    except tries.Failed as e:
        print(json.dumps({**result, "failed": {"error": str(e), **e.figures}}, indent=1))
        sys.exit(1)
    wall = {n: x["wall_s"] for n, x in result["runs"].items()}
    rss = {n: x["peak_rss_mb_max"] for n, x in result["runs"].items()}
    result["ratios"] = {**{f"{n}_over_tfrecord": ratio(wall[n], wall["tfrecord"]) for n in SIDES if n != "tfrecord"},
                        **{f"{n}_rss_over_tfrecord": ratio(rss[n], rss["tfrecord"]) for n in SIDES if n != "tfrecord"}}
    report.publish(result, "formats_speed.py", targets, tables, render, args.cache / "formats-last.json",
                   args.write_docs)
    for side in sides:
        shutil.rmtree(side.folder, ignore_errors=True)


if __name__ == "__main__":
    main()
