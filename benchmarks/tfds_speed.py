"""TFDS's own build against streamprep's `--format tfds`, in one run on the same downloads (issues 16 and 28).

On each data set of --data, in order (default both):

  speed  the downloads of benchmarks/speed.py (bench/data.py's `build()`, same scale and seed, cached under
         benchmarks/.cache/speed/ and shared with it): a training tar of per-class tars, a validation tar and a
         bounding-box .tar.gz, holding RGB noise JPEGs of 300-500 px a side (--classes, --images-per-class,
         --val-images, --seed);
  count  the count data set of benchmarks/fullscale.py (bench/data.py's `build_fullscale()`, cached under
         benchmarks/.cache/fullscale/scaleF/ and shared with it) at --scale F (default 0.1: 128,117 training images
         in 1000 classes and 5,000 validation images), every image the same tiny JPEG, so that the per-image work,
         not the bytes nor the start, is what is timed.

Both hold the classic's fix-up files under their real names (a PNG or a CMYK JPEG) unless --no-fixups. Then it times
two sides, each a subprocess whose whole process tree is sampled for RSS (every 50 ms, /proc):

  tfds_build       TFDS's own build, offline: a `python -c` child that imports TensorFlow Datasets and runs
                   `tfds.builder("imagenet2012", data_dir=D).download_and_prepare(download_config=
                   tfds.download.DownloadConfig(manual_dir=M))`, M a folder of symlinks named
                   ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar to the cached downloads. TFDS labels the
                   validation images with its own validation_labels.txt (50,000 lines), which a smaller
                   validation tar takes the first lines of;
  streamprep_tfds  `streamprep convert --train T --val V --bbox B --out OUT --format tfds --quiet` (no
                   --validation-labels-file: TFDS's labels file is the one streamprep ships), through speed.py's
                   `python -c` wrapper that records whether the conversion imported TensorFlow. It also walks the
                   bounding-box archive (streamprep requires it) and writes bboxes.csv, which TFDS's build does not.

The sides take turns, tfds_build --tfds-repeats tries (default 1: it is slow), streamprep_tfds --repeats
(default 3), each try with a warm page cache (the archives read just before it) and its output folder removed
and `sync` run first, untimed. A side's wall time is its fastest try's; every try's figures are kept, with its
CPU seconds and the CPU seconds the rest of the machine used meanwhile (/proc/stat: a disturbed try shows). Then
the two `imagenet2012/5.1.0/` folders of the last tries are compared: the same file names, dataset_info.json equal
as parsed JSON, features.json and label.labels.txt byte for byte, and every shard record for record, each
record parsed with `tf.train.Example.FromString` (its feature names, file_name, image, label):
`identical_records`.

    python benchmarks/tfds_speed.py [--data speed,count] [--scale 0.1] [--classes 100] [--images-per-class 190]
                                    [--val-images 1000] [--repeats 3] [--tfds-repeats 1]
                                    [--write-docs docs/performance.md]

Prints a JSON summary and tables: per data set, the runs, the ratio tfds_build / streamprep_tfds of the best wall
times and of their CPU seconds, whether streamprep imported TensorFlow, the comparison; then issue 16's targets
(at least 10x faster, the same records) on each; exits with status 1 if a try fails or the records differ. Each
run saves its JSON summary as last.json under --work (default benchmarks/.cache/tfds_speed/). --write-docs replaces
(or appends) the section '## TFDS: tfds build against streamprep --format tfds (benchmarks/tfds_speed.py)' in that
Markdown file, one part per data set; `--from-json SUMMARY --write-docs PATH` renders it again from a saved summary
without measuring anything.
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

from bench import children, compare, cpuload, pagecache, procs, report, tfds_data, tfds_report, tries
from bench.layout import ARCHIVES, CACHE, TFDS_DATASET, TRAIN_TAR, VAL_TAR
from bench.timing import ratio


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    tfds_data.add_arguments(ap)
    ap.add_argument("--repeats", type=int, default=3, help="tries of streamprep --format tfds; the best counts")
    ap.add_argument("--tfds-repeats", type=int, default=1, help="tries of TFDS's own build; the best counts")
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
    if args.scale <= 0 or args.scale > 1:
        ap.error("--scale is a fraction of the real counts: above 0, at most 1")
    return args


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


def make_sides(args: argparse.Namespace, folder: Path, runs: Path, window: cpuload.Window
               ) -> tuple[list[tries.Side], dict[str, str]]:
    """The two timed sides, streamprep's first in each round, and the command each stands for; each try's figures
    get the machine's other CPU use in `window`."""
    inputs = [folder / n for n in ARCHIVES]
    mine, theirs, probe = runs / "streamprep_tfds", runs / "tfds_build", runs / "streamprep_tfds-probe.json"
    options = ["--format", "tfds", "--quiet"]
    build = children.tfds_build_cmd(theirs, manual_dir(runs / "manual", folder))

    def after_mine(x: dict[str, Any]) -> None:
        window.stop(x)
        x["tensorflow_imported"] = children.tensorflow_imported(probe)

    sides = [tries.Side("streamprep_tfds", procs.convert_cmd(*inputs, mine, None, *options,
                                                             launcher=children.probe_launcher(probe)),
                        mine, args.repeats, lambda: dataset_bytes(mine), after=after_mine),
             tries.Side("tfds_build", build, theirs, args.tfds_repeats, lambda: dataset_bytes(theirs),
                        after=window.stop)]
    commands = {"streamprep_tfds": shlex.join(procs.convert_cmd(*inputs, mine, None, *options)),
                "tfds_build": shlex.join(build)}
    return sides, commands


def measure(name: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Both sides on the data set `name`, then their last outputs compared; its figures (`failed` if a try failed)."""
    folder, scale = tfds_data.downloads(name, args)
    runs = work / "runs" / name
    runs.mkdir(parents=True, exist_ok=True)
    window = cpuload.Window()
    sides, commands = make_sides(args, folder, runs, window)
    d: dict[str, Any] = {"scale": scale, "commands": commands}
    prepare = cpuload.watched(partial(pagecache.warm, [folder / n for n in ARCHIVES]), window)
    try:
        d["runs"] = tries.run(sides, f"{name}, warm", prepare, scale["images"], scale["image_tar_bytes"],
                              args.timeout, runs)
    except tries.Failed as e:
        d["failed"] = {"error": str(e), **e.figures}
        return d
    print(f"{name}: comparing the datasets record for record ...", file=sys.stderr)
    d["identity"] = compare.compare_tfds(runs / "streamprep_tfds" / TFDS_DATASET, runs / "tfds_build" / TFDS_DATASET)
    d["identical_records"] = d["identity"]["identical_records"]
    wall = {side: x["wall_s"] for side, x in d["runs"].items()}
    d["tfds_build_over_streamprep_tfds"] = ratio(wall["tfds_build"], wall["streamprep_tfds"])
    if not args.keep_outputs:
        for side in sides:
            shutil.rmtree(side.folder, ignore_errors=True)
    return d


def main() -> None:
    args = parse_args()
    if args.from_json:
        tfds_report.render(json.loads(args.from_json.read_text()), args.write_docs)
        return
    work = args.work.resolve()
    result: dict[str, Any] = {"repeats": {"streamprep_tfds": args.repeats, "tfds_build": args.tfds_repeats},
                              "page_cache": "warm", "tfds_version": metadata.version("tensorflow-datasets"),
                              "data_sets": []}
    for name in args.data:
        d = measure(name, args, work)
        result["data_sets"].append(d)
        if "failed" in d:
            print(json.dumps(result, indent=1))
            sys.exit(1)
    report.publish(result, "tfds_speed.py", tfds_report.targets, tfds_report.tables, tfds_report.render,
                   work / "last.json", args.write_docs)
    if not all(d["identical_records"] for d in result["data_sets"]):
        sys.exit(1)


if __name__ == "__main__":
    main()
