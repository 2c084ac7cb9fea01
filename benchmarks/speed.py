"""Speed against the classic procedure and the I/O floor, in one run on the same generated downloads.

Builds (once, cached under benchmarks/.cache/speed/) ImageNet-shaped downloads with bench/data.py's
`build()`: a training tar of per-class tars, a validation tar and a bounding-box .tar.gz, holding
RGB noise JPEGs of 300-500 px a side (about 120 KB each), and, in the classes that have one, the
classic's fix-up file under its real name (a PNG or a CMYK JPEG), as the real training tar does. Then,
with the three archives read once beforehand so every run finds them in the page cache (nothing is
dropped; `sync` runs, untimed, before each run so one run's writeback does not land in the next), it
times three runs, each a subprocess whose whole process tree is sampled for RSS (every 50 ms, /proc)
and whose folders are sampled for disk use (st_blocks, every 100 ms or less often when a walk gets slow):

  streamprep  `python -m streamprep convert` on the three archives, default workers;
  floor       a Python loop that reads every byte of the three archives in 8 MB blocks and writes
              as many bytes as streamprep's shards hold into one file (no fsync, like the others);
  classic     tests/classic_reference.py's `run_classic`: real `tar` extraction of the three
              archives and of every class tar, bboxes.csv, the validation folders, then the
              threaded TensorFlow build (8 threads) that decodes every JPEG fully, as the classic's
              `_process_image` does; its phases are timed by wrapping the reference's functions.

All three use the same shard layout: the classic 1024/128 shards with 8 threads when the scale
allows it, a smaller layout otherwise. The classic's and streamprep's shards are then compared
record for record (parsed features, per shard name) and bboxes.csv byte for byte. Finally it times
walking the headers of the nested training tar with Python's tarfile (outer tar, then each class
tar through `extractfile` + `tarfile.open(fileobj=...)`) against streamprep's walk
(`archives.storage.Source`, `archives.walk.members`, `inner_members`), one thread each, same warm tar.

    python benchmarks/speed.py [--classes 100] [--images-per-class 190] [--val-images 1000]
                               [--skip-classic] [--write-docs docs/performance.md]

Prints a JSON summary and a table; --write-docs replaces (or appends) the section
'## Speed against the classic procedure (benchmarks/speed.py)' in that Markdown file and saves the
bar chart of the three wall times as speed.png next to it. Each run saves its JSON summary as
benchmarks/.cache/speed/last.json; `--from-json SUMMARY --write-docs PATH` re-renders the section and
chart from such a summary without measuring anything.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

from bench import compare, data, procs, report, speed_report
from bench.children import child
from bench.layout import ARCHIVES, CACHE, VAL_LABELS
from bench.timing import ratio
from bench.walk import header_walk

SIZE_RANGE = (300, 500)
SCALE_KEYS = ("classes", "images_per_class", "val_images", "train_images", "images", "xml_files", "image_bytes",
              "jpeg_kb", "archive_bytes")


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--classes", type=int, default=100, help="training classes (the first N synsets)")
    ap.add_argument("--images-per-class", type=int, default=190)
    ap.add_argument("--val-images", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-fixups", action="store_true",
                    help="leave the classic's fix-up files (PNG, CMYK) out of the data: TensorFlow is never needed")
    ap.add_argument("--skip-classic", action="store_true", help="time streamprep and the floor only")
    ap.add_argument("--train-shards", type=int, help="layout override (default: 1024/128/8 if the scale allows)")
    ap.add_argument("--validation-shards", type=int)
    ap.add_argument("--threads", type=int, default=8, help="the classic's threads, with --train-shards")
    ap.add_argument("--walk-repeats", type=int, default=5)
    ap.add_argument("--cache", type=Path, default=CACHE / "speed")
    ap.add_argument("--keep-outputs", action="store_true", help="keep the run folders under the cache")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds allowed per run")
    ap.add_argument("--write-docs", type=Path, metavar="PATH",
                    help=f"append or replace the section '{speed_report.SECTION}' in this Markdown file, and save "
                         f"{speed_report.CHART} next to it")
    ap.add_argument("--from-json", type=Path, metavar="SUMMARY",
                    help="measure nothing: re-render the --write-docs section and chart from a saved JSON summary "
                         "(each run saves its own as benchmarks/.cache/speed/last.json)")
    ap.add_argument("--child", nargs=2, metavar=("KIND", "CONFIG"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.from_json and not args.write_docs:
        ap.error("--from-json needs --write-docs PATH")
    return args


def layout_for(train_images: int, val_images: int, args: argparse.Namespace) -> dict[str, int]:
    if args.train_shards:
        return {"train_shards": args.train_shards, "validation_shards": args.validation_shards or 8,
                "threads": args.threads}
    if train_images >= 8 * 1024 and val_images >= 4 * 128:  # the classic's layout, a few images a shard
        return {"train_shards": 1024, "validation_shards": 128, "threads": 8}
    return {"train_shards": 16, "validation_shards": 8, "threads": 8}


def child_cmd(kind: str, config: Path) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--child", kind, str(config)]


def main() -> None:
    args = parse_args()
    if args.child:
        child(*args.child)
        return
    if args.from_json:
        speed_report.render(json.loads(args.from_json.read_text()), args.write_docs)
        return

    fixups = not args.no_fixups
    folder = args.cache / data.key(args.classes, args.images_per_class, args.val_images, args.seed, SIZE_RANGE,
                                   fixups)
    built = (folder / "done.json").exists()
    meta = data.build(folder, args.classes, args.images_per_class, args.val_images, args.seed, SIZE_RANGE, fixups)
    print(f"downloads {'cached' if built else 'built'} in {folder} ({meta['images']:,} JPEGs, "
          f"build {meta['build_s']} s)", file=sys.stderr)
    inputs = [folder / n for n in ARCHIVES]
    labels = folder / VAL_LABELS
    input_bytes = sum(p.stat().st_size for p in inputs)
    images = meta["images"]
    lay = layout_for(meta["train_images"], meta["val_images"], args)
    runs = args.cache / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "scale": {**{k: meta[k] for k in SCALE_KEYS}, "size_range": list(SIZE_RANGE),
                  "archive_mb": round(input_bytes / 1e6, 1), **({"fixups": meta["fixups"]} if fixups else {})},
        "layout": lay}

    result["warm_s"] = round(procs.warm(inputs), 2)
    print("header walk: tarfile against streamprep ...", file=sys.stderr)
    procs.warm([inputs[0]])
    result["header_walk"] = header_walk(inputs[0], args.walk_repeats)

    # streamprep
    sp_dir = runs / "streamprep"
    sp_cmd = procs.convert_cmd(*inputs, sp_dir, labels, "--train-shards", str(lay["train_shards"]),
                               "--validation-shards", str(lay["validation_shards"]),
                               "--classic-threads", str(lay["threads"]), "--quiet")
    print("timing streamprep ...", file=sys.stderr)
    procs.warm(inputs)
    sp = procs.timed(sp_cmd, [sp_dir], args.timeout, runs / "streamprep.log")
    if sp["returncode"] != 0:
        print(json.dumps(sp, indent=1))
        sys.exit(1)
    sp_out = compare.output_bytes(sp_dir)
    procs.finish_run(sp, images, input_bytes, sp_out["allocated"])
    sp["command"] = shlex.join(sp_cmd)
    result["streamprep"] = sp

    # the I/O floor: the same input bytes read, the shards' bytes written
    floor_dir, floor_cfg = runs / "floor", runs / "floor.json"
    floor_cfg.write_text(json.dumps({"inputs": [str(p) for p in inputs], "out": str(floor_dir / "out.bin"),
                                     "bytes": sp_out["shard_bytes"]}))
    print("timing the I/O floor ...", file=sys.stderr)
    procs.warm(inputs)
    fl = procs.timed(child_cmd("floor", floor_cfg), [floor_dir], args.timeout, runs / "floor.log")
    ok = fl["returncode"] == 0
    if ok:
        written = (floor_dir / "out.bin").stat()
        fl["bytes_written"] = written.st_size
        procs.finish_run(fl, images, input_bytes, written.st_blocks * 512)
    result["floor"] = fl
    shutil.rmtree(floor_dir, ignore_errors=True)

    # the classic
    cl = None
    if not args.skip_classic and ok:
        cl_dir, cl_cfg = runs / "classic", runs / "classic.json"
        cl_cfg.write_text(json.dumps({"train": str(inputs[0]), "val": str(inputs[1]), "bbox": str(inputs[2]),
                                      "out": str(cl_dir / "processed"), "work": str(cl_dir / "work"),
                                      "val_labels": str(labels), "report": str(runs / "classic-report.json"),
                                      "train_shards": lay["train_shards"],
                                      "validation_shards": lay["validation_shards"], "threads": lay["threads"]}))
        print("timing the classic procedure ...", file=sys.stderr)
        procs.warm(inputs)
        cl = procs.timed(child_cmd("classic", cl_cfg), [cl_dir], args.timeout, runs / "classic.log")
        ok = cl["returncode"] == 0
        if ok:
            procs.finish_run(cl, images, input_bytes, compare.output_bytes(cl_dir / "processed")["allocated"])
            cl.update(json.loads((runs / "classic-report.json").read_text()))
            cl["work_mb"] = round(procs.disk_use([cl_dir / "work"])[0] / 1e6, 1)
            print("comparing the shards record for record ...", file=sys.stderr)
            result["identity"] = compare.compare_records(sp_dir, cl_dir / "processed")
            result["identical_records"] = result["identity"]["identical_records"]
        result["classic"] = cl

    ratios: dict[str, Any] = {}
    if ok:
        ratios["streamprep_over_floor"] = ratio(sp["wall_s"], fl["wall_s"])
        if cl:
            ratios["classic_over_streamprep"] = ratio(cl["wall_s"], sp["wall_s"])
            ratios["classic_over_floor"] = ratio(cl["wall_s"], fl["wall_s"])
    ratios["header_walk_tarfile_over_streamprep"] = result["header_walk"]["speedup"]
    result["ratios"] = ratios
    result["command"] = report.command("speed.py")
    result["date"] = report.date()
    result["machine"] = report.machine()
    if ok:
        result["targets"] = speed_report.targets(result)

    print(json.dumps(result, indent=1))
    if ok:
        tables = [speed_report.runs_table(result), speed_report.ratios_table(result),
                  speed_report.targets_table(result)]
        if cl:
            tables.append(speed_report.phases_table(cl["phases"], cl["wall_s"]))
        for t in tables:
            print()
            print(t)
        (args.cache / "last.json").write_text(json.dumps(result, indent=1))
        if args.write_docs:
            speed_report.render(result, args.write_docs)
    if not args.keep_outputs:
        for name in ("streamprep", "classic", "floor"):
            shutil.rmtree(runs / name, ignore_errors=True)
    if not ok or (cl and not result.get("identical_records")):
        sys.exit(1)


if __name__ == "__main__":
    main()
