"""TFDS's own build against streamprep's `--format tfds`, in one run on the same downloads (issue 16).

Uses the downloads of benchmarks/speed.py (bench/data.py's `build()`, same scale and seed, cached under
benchmarks/.cache/speed/ and shared with it): a training tar of per-class tars, a validation tar and a
bounding-box .tar.gz, holding RGB noise JPEGs of 300-500 px a side and, in the classes that have one, the
classic's fix-up file under its real name (a PNG or a CMYK JPEG). Then it times two sides, each a subprocess
whose whole process tree is sampled for RSS (every 50 ms, /proc):

  tfds_build       TFDS's own build, offline: a `python -c` child that imports TensorFlow Datasets and runs
                   `tfds.builder("imagenet2012", data_dir=D).download_and_prepare(download_config=
                   tfds.download.DownloadConfig(manual_dir=M))`, M a folder of symlinks named
                   ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar to the cached downloads. TFDS labels the
                   validation images with its own validation_labels.txt (50,000 lines), which a smaller
                   validation tar takes the first lines of;
  streamprep_tfds  `streamprep convert --train T --val V --bbox B --out OUT --format tfds --quiet` (no
                   --validation-labels-file: TFDS's labels file is the one streamprep ships), through speed.py's
                   `python -c` wrapper that records whether the conversion imported TensorFlow.

The sides take turns, tfds_build --tfds-repeats tries (default 1: it is slow), streamprep_tfds --repeats
(default 3), each try with a warm page cache (the archives read just before it) and its output folder removed
and `sync` run first, untimed. A side's wall time is its fastest try's; every try's figures are kept. Then the
two `imagenet2012/5.1.0/` folders of the last tries are compared: the same file names, dataset_info.json equal
as parsed JSON, features.json and label.labels.txt byte for byte, and every shard record for record, each
record parsed with `tf.train.Example.FromString` (its feature names, file_name, image, label):
`identical_records`.

    python benchmarks/tfds_speed.py [--classes 100] [--images-per-class 190] [--val-images 1000]
                                    [--repeats 3] [--tfds-repeats 1] [--write-docs docs/performance.md]

Prints a JSON summary and tables: the runs, the ratio tfds_build / streamprep_tfds of the best wall times,
whether streamprep imported TensorFlow, the comparison and issue 16's targets (at least 10x faster, the same
records); exits with status 1 if a try fails or the records differ. Each run saves its JSON summary as
last.json under --work (default benchmarks/.cache/tfds_speed/). --write-docs replaces (or appends) the
section '## TFDS: tfds build against streamprep --format tfds (benchmarks/tfds_speed.py)' in that Markdown
file; `--from-json SUMMARY --write-docs PATH` renders it again from a saved summary without measuring anything.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import children, compare, data, pagecache, procs, report, tfds_report, tries
from bench.layout import ARCHIVES, CACHE, TFDS_DATASET, TRAIN_TAR, VAL_TAR
from bench.timing import ratio

SIZE_RANGE = data.SPEED_SIZE_RANGE  # speed.py's: the same cached downloads


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data.add_arguments(ap, classes=100, per_class=190, val_images=1000)
    ap.add_argument("--repeats", type=int, default=3, help="tries of streamprep --format tfds; the best counts")
    ap.add_argument("--tfds-repeats", type=int, default=1, help="tries of TFDS's own build; the best counts")
    ap.add_argument("--cache", type=Path, default=CACHE / "speed", help="the downloads' cache (speed.py's)")
    ap.add_argument("--work", type=Path, default=CACHE / "tfds_speed",
                    help="the runs' outputs and logs, and the summary last.json")
    ap.add_argument("--keep-outputs", action="store_true", help="keep both sides' datasets under --work")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds allowed per try")
    ap.add_argument("--write-docs", type=Path, metavar="PATH",
                    help=f"append or replace the section '{tfds_report.SECTION}' in this Markdown file")
    ap.add_argument("--from-json", type=Path, metavar="SUMMARY",
                    help="measure nothing: re-render the --write-docs section from a saved JSON summary "
                         "(each run saves its own as benchmarks/.cache/tfds_speed/last.json)")
    args = ap.parse_args()
    if args.from_json and not args.write_docs:
        ap.error("--from-json needs --write-docs PATH")
    if args.repeats < 1 or args.tfds_repeats < 1:
        ap.error("--repeats and --tfds-repeats need at least 1 try")
    return args


def downloads(args: argparse.Namespace) -> tuple[Path, dict[str, Any]]:
    """The cached downloads' folder (built if missing) and their summary."""
    folder, meta = data.from_args(args.cache.resolve(), args, SIZE_RANGE)
    return folder, meta


def manual_dir(folder: Path, downloads_folder: Path) -> Path:
    """TFDS's manual_dir: symlinks under the official names to the two cached image tars."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in (TRAIN_TAR, VAL_TAR):
        (folder / name).unlink(missing_ok=True)
        (folder / name).symlink_to(downloads_folder / name)
    return folder


def dataset_bytes(root: Path) -> int:
    """Allocated bytes of the dataset's files under `root` (a data_dir or an --out)."""
    return compare.output_bytes(root / TFDS_DATASET)["allocated"]


def make_sides(args: argparse.Namespace, folder: Path, runs: Path) -> tuple[list[tries.Side], dict[str, str]]:
    """The two timed sides, streamprep's first in each round, and the command each stands for."""
    inputs = [folder / n for n in ARCHIVES]
    mine, theirs, probe = runs / "streamprep_tfds", runs / "tfds_build", runs / "streamprep_tfds-probe.json"
    options = ["--format", "tfds", "--quiet"]
    build = children.tfds_build_cmd(theirs, manual_dir(runs / "manual", folder))

    def after(x: dict[str, Any]) -> None:
        x["tensorflow_imported"] = children.tensorflow_imported(probe)

    sides = [tries.Side("streamprep_tfds", procs.convert_cmd(*inputs, mine, None, *options,
                                                             launcher=children.probe_launcher(probe)),
                        mine, args.repeats, lambda: dataset_bytes(mine), after=after),
             tries.Side("tfds_build", build, theirs, args.tfds_repeats, lambda: dataset_bytes(theirs))]
    commands = {"streamprep_tfds": shlex.join(procs.convert_cmd(*inputs, mine, None, *options)),
                "tfds_build": shlex.join(build)}
    return sides, commands


def scale(meta: dict[str, Any], image_bytes: int) -> dict[str, Any]:
    return {**data.scale_summary(meta), "size_range": list(SIZE_RANGE), "image_tars_mb": round(image_bytes / 1e6, 1)}


def main() -> None:
    args = parse_args()
    if args.from_json:
        tfds_report.render(json.loads(args.from_json.read_text()), args.write_docs)
        return

    folder, meta = downloads(args)
    image_bytes = sum((folder / n).stat().st_size for n in (TRAIN_TAR, VAL_TAR))
    work = args.work.resolve()
    runs = work / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    sides, commands = make_sides(args, folder, runs)
    result: dict[str, Any] = {"scale": scale(meta, image_bytes),
                              "repeats": {s.name: s.repeats for s in sides}, "page_cache": "warm",
                              "commands": commands, "tfds_version": metadata.version("tensorflow-datasets")}
    try:
        result["runs"] = tries.run(sides, "warm", partial(pagecache.warm, [folder / n for n in ARCHIVES]),
                                   meta["images"], image_bytes, args.timeout, runs)
    except tries.Failed as e:
        result["failed"] = {"error": str(e), **e.figures}
        print(json.dumps(result, indent=1))
        sys.exit(1)

    print("comparing the datasets record for record ...", file=sys.stderr)
    result["identity"] = compare.compare_tfds(runs / "streamprep_tfds" / TFDS_DATASET,
                                              runs / "tfds_build" / TFDS_DATASET)
    result["identical_records"] = result["identity"]["identical_records"]
    wall = {name: x["wall_s"] for name, x in result["runs"].items()}
    result["tfds_build_over_streamprep_tfds"] = ratio(wall["tfds_build"], wall["streamprep_tfds"])
    report.publish(result, "tfds_speed.py", tfds_report.targets, tfds_report.tables, tfds_report.render, work / "last.json", args.write_docs)
    if not args.keep_outputs:
        for side in sides:
            shutil.rmtree(side.folder, ignore_errors=True)
    if not result["identical_records"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
