"""Resized variants, side by side: streamprep `convert --resize` on the tars against the anchors' own code on the same
images extracted (issue 27).

Builds once (bench/resize_data.py, under benchmarks/.cache/resize/) ImageNet-shaped downloads of noise JPEGs of
300-500 px a side (speed.py's), one in 20 grayscale, with the classic's CMYK and PNG files under their real names,
and the same images extracted (extraction not timed). Then times, each side in a process of its own, best of
--repeats:

  pillow_loop       a plain Pillow loop on 2 processes: open, RGB, short edge 256 (BICUBIC), save at quality 90;
  miil_224          Alibaba-MIIL's dataset_preprocessing/resize.py logic (cv2.imread, 224x224 squish, copy when the
                    longer side is under 224, cv2.imwrite) with its ThreadPool(8);
  miil_short_256    resize_short_edge.py's logic (short edge 256, INTER_LINEAR, the same copy rule), 8 threads;
  litdata_optimize  LitData's `optimize` (2 workers) with a function that opens, resizes (short edge 256) and
                    returns the image, which LitData stores as JPEG at its default quality;
  streamprep_*      `streamprep convert --format webdataset --resize RECIPE` on the tars (2 workers): short-edge=256
                    (jpeg:90), 21k-p-224, 21k-p-short-256.

It checks that streamprep's 21k-p-224 and 21k-p-short-256 images are byte for byte the scripts' (every image), and
prints a markdown table: images, seconds, images per second, and the ratio to the Pillow loop and to the script.

    python benchmarks/resize.py [--classes 23] [--images-per-class 20] [--val-images 40] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench.layout import BBOX_TARGZ, CACHE, TRAIN_TAR, VAL_LABELS, VAL_TAR  # noqa: E402
from bench.resize_data import build, extracted_files  # noqa: E402

PILLOW_LOOP = r"""
import sys
from multiprocessing import Pool
from pathlib import Path
from PIL import Image

def one(job):
    src, dst = job
    im = Image.open(src).convert("RGB")
    scale = 256 / min(im.size)
    if scale < 1:
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.BICUBIC)
    im.save(dst, "JPEG", quality=90)

if __name__ == "__main__":
    files, out = [l for l in open(sys.argv[1]).read().split("\n") if l], Path(sys.argv[2])
    jobs = [(f, str(out / f"{i}.jpg")) for i, f in enumerate(files)]
    with Pool(2) as pool:
        pool.map(one, jobs, chunksize=16)
"""

# Alibaba-MIIL/ImageNet21K's two scripts, their logic as it is (tests/fixtures/miil_scripts.py, the tests' judge too).
MIIL_SCRIPTS = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "miil_scripts.py"


LITDATA = r"""
import sys
from PIL import Image
from litdata import optimize

def resized(path):
    im = Image.open(path).convert("RGB")
    scale = 256 / min(im.size)
    if scale < 1:
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.BICUBIC)
    return {"image": im, "label": 0}

if __name__ == "__main__":
    files = [l for l in open(sys.argv[1]).read().split("\n") if l]
    optimize(fn=resized, inputs=files, output_dir=sys.argv[2], num_workers=2, chunk_bytes="64MB", verbose=False,
             mode="overwrite")
"""

STREAMPREP_RECIPES = {"streamprep_short_edge_256": ("short-edge=256",), "streamprep_21k_p_224": ("21k-p-224",),
                      "streamprep_21k_p_short_256": ("21k-p-short-256",)}


def timed(argv: list[str], cwd: Path | None = None) -> tuple[float, str]:
    """Wall seconds of one subprocess (its import included), and its stderr's tail if it failed."""
    t0 = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, cwd=cwd)
    seconds = time.perf_counter() - t0
    return seconds, "" if done.returncode == 0 else (done.stderr or done.stdout)[-400:]


def fresh(folder: Path, tree: Path | None = None) -> Path:
    """An empty output folder (with `tree`'s sub-folders, for the scripts, which write beside their input's path)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for sub in (tree.rglob("*") if tree else []):
        if sub.is_dir():
            (folder / sub.relative_to(tree)).mkdir(parents=True, exist_ok=True)
    return folder


def sides(data: Path, files: list[Path], work: Path) -> dict[str, list[str]]:
    """Each side's command, by name."""
    listing = work / "files.txt"
    listing.write_text("\n".join(str(f) for f in files))
    tree, py = data / "extracted", sys.executable
    (work / "pillow.py").write_text(PILLOW_LOOP)
    (work / "litdata_side.py").write_text(LITDATA)
    found = {"pillow_loop": [py, str(work / "pillow.py"), str(listing), str(work / "out-pillow_loop")],
             "miil_224": [py, str(MIIL_SCRIPTS), str(listing), str(tree), str(work / "out-miil_224"), "224"],
             "miil_short_256": [py, str(MIIL_SCRIPTS), str(listing), str(tree), str(work / "out-miil_short_256"),
                                "256"],
             "litdata_optimize": [py, str(work / "litdata_side.py"), str(listing), str(work / "out-litdata")]}
    for name, recipe in STREAMPREP_RECIPES.items():
        found[name] = [py, "-m", "streamprep", "convert", "--train", str(data / TRAIN_TAR), "--val", str(data / VAL_TAR),
                       "--bbox", str(data / BBOX_TARGZ), "--validation-labels-file", str(data / VAL_LABELS),
                       "--out", str(work / f"out-{name}"), "--format", "webdataset", "--train-shards", "8",
                       "--validation-shards", "2", "--classic-threads", "2", "--workers", "2", "--quiet",
                       "--resize", *recipe]
    return found


def run_side(name: str, argv: list[str], data: Path, work: Path, repeats: int) -> dict:
    best, error = None, ""
    for _ in range(repeats):
        out = work / f"out-{name}"
        fresh(out, data / "extracted" if name.startswith("miil") else None)
        if name.startswith("streamprep") or name.startswith("litdata"):
            shutil.rmtree(out)
        seconds, error = timed(argv)
        if error:
            break
        best = seconds if best is None else min(best, seconds)
    return {"seconds": None if error else round(best, 2), "error": error.strip().splitlines()[-1] if error else None}


def identical(data: Path, work: Path, recipe: str, script: str) -> dict[str, int]:
    """How many of streamprep's images equal the script's file for the same member (the others differ)."""
    theirs = {p.name: p for p in (work / f"out-{script}").rglob("*.JPEG")}
    same = differ = 0
    for shard in sorted((work / f"out-{recipe}").glob("*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar:
                if member.name.endswith(".jpg"):
                    name = member.name.rsplit("/", 1)[-1][:-len(".jpg")] + ".JPEG"
                    ok = name in theirs and tar.extractfile(member).read() == theirs[name].read_bytes()
                    same, differ = same + ok, differ + (not ok)
    return {"identical": same, "different": differ}


def table(n: int, results: dict[str, dict]) -> str:
    base = results["pillow_loop"]["seconds"]
    rows = ["| side | images | seconds | images/s | vs Pillow loop | vs its script |", "|---|---:|---:|---:|---:|---:|"]
    script = {"streamprep_21k_p_224": "miil_224", "streamprep_21k_p_short_256": "miil_short_256"}
    for name, r in results.items():
        if r["seconds"] is None:
            rows.append(f"| {name} | {n:,} | failed: {r['error']} | | | |")
            continue
        anchor = results.get(script.get(name, ""), {}).get("seconds")
        seconds = r["seconds"]
        versus = f"{anchor / seconds:.2f}x" if anchor else ""
        pillow = f"{base / seconds:.2f}x" if base else ""
        rows.append(f"| {name} | {n:,} | {seconds:.2f} | {n / seconds:,.0f} | {pillow} | {versus} |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classes", type=int, default=23)
    ap.add_argument("--images-per-class", type=int, default=20)
    ap.add_argument("--val-images", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--work", type=Path, default=None, help="where outputs go (default: a temporary folder)")
    args = ap.parse_args()
    data, meta = build(CACHE / "resize", args.classes, args.images_per_class, args.val_images)
    files = extracted_files(data)
    work = args.work or Path(tempfile.mkdtemp(prefix="resize-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    results = {name: run_side(name, argv, data, work, args.repeats) for name, argv in sides(data, files, work).items()}
    checks = {recipe: identical(data, work, recipe, script) for recipe, script in
              (("streamprep_21k_p_224", "miil_224"), ("streamprep_21k_p_short_256", "miil_short_256"))
              if results[recipe]["seconds"] is not None and results[script]["seconds"] is not None}
    print(json.dumps({"data": meta, "results": results, "byte_identical": checks}, indent=1))
    print(table(len(files), results))
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
