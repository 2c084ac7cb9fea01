"""ImageNet-21k full-scale count run: fall11's 21,841 per-synset tars, 14,197,122 tiny JPEGs, split as ImageNet-21K-P.

Builds (or finds, under --cache) fall11's download at its published counts with bench/data21k.py: one
`fall11_whole.tar` of the per-synset tars (`--shape archive`, the default), or a folder of them (`--shape folder`),
each image the same 159-byte JPEG, so 14.7 GB; the counts drawn so that the default recipe keeps exactly timm's
`imagenet21k_miil_synsets.txt`, 11,221 classes, with 11,797,632 training images. Then times

    streamprep convert --dataset imagenet21k SOURCE --out OUT --format tfrecord --workers 2 --no-space-check

with the dataset's default 4096/256 shards, sampling the process tree every 100 ms (`procs.AnonSampler`: the
largest RssAnon of one process, the tree's Pss_Anon summed, each process's CPU time). Then checks the output
against the counts: the manifest's training and validation images and classes, and the classes kept (the
synsets of the validation records, read back by TensorFlow, each label indexing them) against the miil list.
Prints a JSON summary; exit status 1 if the conversion fails or a check does.

    python benchmarks/fullscale21k.py [--cache DIR] [--out DIR] [--workers N] [--scale F] [--shape archive|folder]
                                      [--open-files N] [--keep-output]

`--scale 0.01` builds and converts an evenly spaced hundredth of the classes (at their full-scale counts), for a
quick check; the published counts are checked only at full scale, the counts of the classes built otherwise.
The folder shape at full scale needs a limit of open files above 21,841 (`--open-files`: streamprep keeps every
per-synset tar of a folder open). The output (7.9 GB at full scale) is removed after the checks unless
--keep-output; the built download stays cached (remove --cache's folder to free its 14.7 GB).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from bench import data21k, procs
from bench.layout import CACHE
from bench.report import machine

OUTPUT_BYTES_PER_IMAGE = 700  # TFRecord: 7.9 GB for 12.36 M records at full scale, with room to spare
PHASE = re.compile(r"^(?P<phase>[a-z][a-z ]*): (?P<what>started|done)")  # the plain progress lines


def convert_cmd(source: Path, out: Path, workers: int, fmt: str) -> list[str]:
    """`python -m streamprep convert --dataset imagenet21k SOURCE` with the dataset's defaults (4096/256 shards,
    ImageNet-21K-P's recipe); `-P` passed on, so that a PYTHONPATH given to this script picks the streamprep run.
    `--no-space-check`: its bound allows far more a record than these 159-byte images take (27.3 GB for the 7.9 GB
    written at full scale); `main` checks the free space against the output's real size instead."""
    return [sys.executable, *(["-P"] if sys.flags.safe_path else []), "-m", "streamprep", "convert", "--dataset",
            "imagenet21k", str(source), "--out", str(out), "--format", fmt, "--workers", str(workers),
            "--no-space-check"]


def validation_classes(out: Path) -> tuple[list[str], int]:
    """The synsets of the output's validation records (every kept class has validation images), read by
    TensorFlow (`tf.data.TFRecordDataset`, each record parsed as a `tf.train.Example`), and how many records name a
    synset other than line `image/class/label` of the sorted synsets found (a label must index the list)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf  # noqa: PLC0415 - only for the check, after the timed run

    pairs = set()
    for record in tf.data.TFRecordDataset(sorted(str(p) for p in out.glob("validation-*"))).as_numpy_iterator():
        feature = tf.train.Example.FromString(record).features.feature
        pairs.add((feature["image/class/label"].int64_list.value[0],
                   feature["image/class/synset"].bytes_list.value[0].decode()))
    synsets = sorted({s for _, s in pairs})
    return synsets, sum(1 for label, s in pairs if synsets[label - 1] != s)


def check(out: Path, built: dict[str, Any], scale: float) -> dict[str, Any]:
    """The output against what was built: counts from manifest.json, the classes kept from the records."""
    manifest = json.loads((out / "manifest.json").read_text())
    splits = manifest["splits"]
    got = {"train_images": splits["train"]["images"], "validation_images": splits["validation"]["images"],
           "kept_classes": splits["train"]["classes"]}
    expected = {k: built[k] for k in got}
    kept, mislabelled = validation_classes(out)
    result: dict[str, Any] = {"counts": got, "expected": expected, "counts_match": got == expected,
                              "kept_digest_matches": data21k.digest(kept) == built["kept_digest"],
                              "validation_classes": len(kept), "labels_not_indexing_synsets": mislabelled}
    if scale >= 1:
        miil = data21k.kept_synsets()
        result["kept_equals_miil_list"] = kept == miil
        result["published"] = {k: data21k.PUBLISHED[k] for k in ("kept_classes", "train_images", "validation_images")}
        result["published_note"] = (f"validation is {data21k.PER} x {len(miil):,} = {data21k.PER * len(miil):,}: the "
                                    f"recipe moves exactly {data21k.PER} images a class; the published figure is "
                                    f"{data21k.PUBLISHED['validation_images']:,}")
    result["ok"] = (result["counts_match"] and result["kept_digest_matches"] and not mislabelled
                    and result.get("kept_equals_miil_list", True))
    result["ignored"] = {reason: v["count"] for reason, v in manifest.get("ignored", {}).items()}
    return result


def phases(lines: list[tuple[float, str]]) -> dict[str, float]:
    """Seconds from a progress phase's `started` line to its `done` line, by phase."""
    started: dict[str, float] = {}
    took: dict[str, float] = {}
    for at, line in lines:
        m = PHASE.match(line.strip())
        if m and m["what"] == "started":
            started[m["phase"]] = at
        elif m and m["phase"] in started:
            took[m["phase"]] = round(at - started[m["phase"]], 1)
    return took


def arguments() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=CACHE / "fullscale21k")
    ap.add_argument("--out", type=Path, default=None, help="output folder (default: CACHE/scaleF/out)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--build-workers", type=int, default=2, help="processes writing the tars (default 2)")
    ap.add_argument("--scale", type=float, default=1.0,
                    help="fraction of the classes to build and convert, evenly spaced (default 1: all 21,841)")
    ap.add_argument("--shape", choices=("archive", "folder"), default="archive",
                    help="archive: one fall11_whole.tar of the per-synset tars (the default); folder: a folder of them")
    ap.add_argument("--open-files", type=int, default=None, metavar="N",
                    help="set the conversion's limit of open files (RLIMIT_NOFILE) to N (above the hard limit needs "
                         "CAP_SYS_RESOURCE): the folder shape keeps every per-synset tar open, 21,841 at full scale")
    ap.add_argument("--format", default="tfrecord")
    ap.add_argument("--keep-output", action="store_true", help="leave the output folder in place")
    ap.add_argument("--timeout", type=float, default=3600)
    return ap.parse_args()


def download(args: argparse.Namespace, folder: Path) -> tuple[dict[str, Any], Path]:
    """The download of `--shape` at `--scale` (built unless cached): its summary and the path to convert."""
    if args.shape == "folder":
        return data21k.build(folder, args.scale, args.build_workers), folder / "synsets"
    return data21k.build_archive(folder, args.scale, args.build_workers), folder / "fall11_whole.tar"


def check_space(out: Path, images: int) -> None:
    """Stop unless the disk holding `out` has room for the output (its real size, with room to spare)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    need, free = OUTPUT_BYTES_PER_IMAGE * images, shutil.disk_usage(out.parent).free
    if free < need:
        raise SystemExit(f"{out}: the output needs about {need / 1e9:.1f} GB and the disk has {free / 1e9:.1f} GB free")


def main() -> None:
    args = arguments()
    folder = args.cache / f"scale{args.scale:g}"
    t0 = time.monotonic()
    built, source = download(args, folder)
    build_s = time.monotonic() - t0
    out = args.out or folder / "out"
    check_space(out, built["images"])
    cmd = convert_cmd(source, out, args.workers, args.format)
    run, lines, timeline = procs.run_sampled(cmd, out, args.timeout, args.open_files)
    summary: dict[str, Any] = {
        "scale": args.scale, "shape": args.shape, "open_files": args.open_files or resource.getrlimit(
            resource.RLIMIT_NOFILE)[0], "classes": built["classes"], "images": built["images"],
        "archive_gb": round(built["archive_bytes"] / 1e9, 2), "build_s": round(build_s, 1),
        "convert_s": run["wall_s"], "images_per_s": round(built["images"] / run["wall_s"]),
        **{k: v for k, v in run.items() if k not in ("wall_s", "stderr_tail")},
        "peak_rss_mib_file_pages_too": procs.children_max_rss_mib(),
        "phases": phases(lines),
        "memory_timeline": [f"{at:g} s: largest {rss / 1024:.0f} MiB, tree {pss / 1024:.0f} MiB"
                            for at, rss, pss in timeline[::max(1, len(timeline) // 40)]],
        "command": " ".join(cmd), "machine": machine(),
    }
    if run["returncode"] == 0:
        summary["output_gb"] = round(sum(p.stat().st_size for p in out.iterdir() if p.is_file()) / 1e9, 2)
        summary["check"] = check(out, built, args.scale)
    else:
        summary["stderr_tail"] = run["stderr_tail"]
    if not args.keep_output:
        shutil.rmtree(out, ignore_errors=True)
    print(json.dumps(summary, indent=1))
    if run["returncode"] != 0 or not summary["check"]["ok"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
