"""Resized variants, side by side: streamprep `convert --resize` on the tars against the anchors' own code on the same
images extracted (issue 27).

Builds once (bench/resize_data.py, under benchmarks/.cache/resize/) ImageNet-shaped downloads of noise JPEGs of
300-500 px a side (speed.py's), one in 20 grayscale, with the classic's CMYK and PNG files under their real names,
and the same images extracted (extraction not timed). Then times, each side in a process of its own, best of
--repeats:

  pillow_loop       a plain Pillow loop on 2 processes: open, RGB, short edge 256 (BICUBIC, `resize`'s default),
                    save at quality 90 (the issue's anchor);
  pillow_loop_bilinear  the same with BILINEAR, the filter streamprep's short-edge=256 uses on this data (each image
                    shrunk at most 2x), so that side and this one do the same work;
  miil_224          Alibaba-MIIL's dataset_preprocessing/resize.py logic (cv2.imread, 224x224 squish, copy when the
                    longer side is under 224, cv2.imwrite) with its ThreadPool(8);
  miil_short_256    resize_short_edge.py's logic (short edge 256, INTER_LINEAR, the same copy rule), 8 threads;
  litdata_optimize  LitData's `optimize` (2 workers) with a function that opens, resizes (short edge 256) and
                    returns the image, which LitData stores as JPEG at its default quality;
  streamprep_*      `streamprep convert --format webdataset --resize RECIPE` on the tars (2 workers): short-edge=256
                    (jpeg:90), 21k-p-224, 21k-p-short-256.

It checks that streamprep's 21k-p-224 and 21k-p-short-256 images are byte for byte the scripts' (every image), and
prints a markdown table: images, seconds (the best try), images per second, CPU seconds (the side's processes, user
and system, least of the tries), the ratio to the Pillow loop and to the script, and what the rest of the machine
used meanwhile (CPU seconds of other processes during the best try: this machine's 2 cores are shared).

    python benchmarks/resize.py [--classes 23] [--images-per-class 20] [--val-images 40] [--repeats 1] [--sides ...]

With --libraries it instead times, in this process on one thread, each library's whole chain for one image (decode,
resize to short edge 256, encode at quality 90) on the data set's validation images and on photo-like JPEGs of three
sizes: CPU milliseconds an image, best of 3 (docs/resize.md, "The general recipes' filter").
"""

from __future__ import annotations

import argparse
import json
import os
import resource
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
    src, dst, resample = job
    im = Image.open(src).convert("RGB")
    scale = 256 / min(im.size)
    if scale < 1:
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), resample)
    im.save(dst, "JPEG", quality=90)

if __name__ == "__main__":
    files, out = [l for l in open(sys.argv[1]).read().split("\n") if l], Path(sys.argv[2])
    resample = Image.BILINEAR if sys.argv[3:] == ["bilinear"] else Image.BICUBIC
    jobs = [(f, str(out / f"{i}.jpg"), resample) for i, f in enumerate(files)]
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


def busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot (Linux's /proc/stat; 0 elsewhere)."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:9]]
    except OSError:
        return 0.0
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait


def timed(argv: list[str], cwd: Path | None = None) -> dict:
    """Wall and CPU seconds of one subprocess and its children (imports included), the CPU seconds other processes
    took meanwhile, and its stderr's tail if it failed."""
    before, machine, load = resource.getrusage(resource.RUSAGE_CHILDREN), busy_seconds(), os.getloadavg()[0]
    t0 = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, cwd=cwd)
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return {"seconds": seconds, "cpu": cpu, "others_cpu": max(0.0, busy_seconds() - machine - cpu), "load": load,
            "error": "" if done.returncode == 0 else (done.stderr or done.stdout)[-400:]}


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
             "pillow_loop_bilinear": [py, str(work / "pillow.py"), str(listing), str(work / "out-pillow_loop_bilinear"),
                                      "bilinear"],
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
    """The side's best try (wall seconds, and the other processes' CPU seconds and load average then) and its least
    CPU seconds over `repeats` tries."""
    tries = []
    for _ in range(repeats):
        out = work / f"out-{name}"
        fresh(out, data / "extracted" if name.startswith("miil") else None)
        if name.startswith("streamprep") or name.startswith("litdata"):
            shutil.rmtree(out)
        tried = timed(argv)
        if tried["error"]:
            return {"seconds": None, "error": tried["error"].strip().splitlines()[-1]}
        tries.append(tried)
    best = min(tries, key=lambda t: t["seconds"])
    return {"seconds": round(best["seconds"], 2), "cpu": round(min(t["cpu"] for t in tries), 2),
            "others_cpu": round(best["others_cpu"], 1), "load": round(best["load"], 2),
            "tries": [round(t["seconds"], 2) for t in tries], "error": None}


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
    """The markdown table of the results: each ratio in wall seconds, and in CPU seconds after the slash."""
    base = results.get("pillow_loop", {})
    rows = ["| side | images | seconds | images/s | CPU s | vs Pillow loop (wall / CPU) | vs its script (wall / CPU) "
            "| others' CPU s |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    script = {"streamprep_21k_p_224": "miil_224", "streamprep_21k_p_short_256": "miil_short_256"}
    for name, r in results.items():
        if r["seconds"] is None:
            rows.append(f"| {name} | {n:,} | failed: {r['error']} | | | | | |")
            continue
        rows.append(f"| {name} | {n:,} | {r['seconds']:.2f} | {n / r['seconds']:,.0f} | {r['cpu']:.1f} | "
                    f"{_ratio(base, r)} | {_ratio(results.get(script.get(name, ''), {}), r)} | {r['others_cpu']:.1f} |")
    return "\n".join(rows)


def _ratio(anchor: dict, side: dict) -> str:
    if not anchor.get("seconds"):
        return ""
    return f"{anchor['seconds'] / side['seconds']:.2f}x / {anchor['cpu'] / side['cpu']:.2f}x"


def _photo_like(rng, width: int, height: int) -> bytes:
    """A JPEG (quality 90, 4:2:0) of smooth gradients and waves with mild noise: cheaper to decode than noise."""
    import io

    import numpy as np
    from PIL import Image

    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height) + 60], -1)
    base += 40 * np.sin(x / 37.0)[..., None] * np.cos(y / 23.0)[..., None]
    out = io.BytesIO()
    Image.fromarray(np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)).save(out, "JPEG", quality=90)
    return out.getvalue()


def _chains() -> dict:
    """Each library's decode, resize to short edge 256 and encode at quality 90, by name: libjpeg-turbo's DCT scaling
    by 1/2, 1/4 or 1/8 while at least twice the target where the library offers it, as streamprep's recipe does."""
    import io

    import cv2
    import numpy as np
    import simplejpeg
    from PIL import Image

    def plan(data: bytes) -> tuple[int, int, int]:
        width, height = Image.open(io.BytesIO(data)).size
        scale = min(1.0, 256 / min(width, height))
        th, tw = int(height * scale + 0.5), int(width * scale + 0.5)
        factor = 1
        while factor < 8 and height // (2 * factor) >= 2 * th and width // (2 * factor) >= 2 * tw:
            factor *= 2
        return th, tw, factor

    def resampled(pixels, th: int, tw: int):
        gentle = pixels.shape[0] <= 2 * th and pixels.shape[1] <= 2 * tw
        return cv2.resize(pixels, (tw, th), interpolation=cv2.INTER_LINEAR if gentle else cv2.INTER_AREA)

    def chosen(data: bytes) -> bytes:  # streamprep's: simplejpeg decode, OpenCV resize, simplejpeg encode
        th, tw, f = plan(data)
        h, w = simplejpeg.decode_jpeg_header(data)[:2]
        pixels = simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=-(-h // f), min_width=-(-w // f))
        return simplejpeg.encode_jpeg(resampled(pixels, th, tw), 90, colorspace="RGB", colorsubsampling="420")

    def opencv(data: bytes) -> bytes:
        th, tw, f = plan(data)
        flag = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
                8: cv2.IMREAD_REDUCED_COLOR_8}[f]
        pixels = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
        return cv2.imencode(".jpg", resampled(pixels, th, tw), [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()

    def pillow(data: bytes, resample=Image.BICUBIC, reduced: bool = True) -> bytes:
        th, tw, _ = plan(data)
        image = Image.open(io.BytesIO(data))
        if reduced:
            image.draft("RGB", (2 * tw, 2 * th))
        image = image.convert("RGB")
        if image.size != (tw, th):
            image = image.resize((tw, th), resample, reducing_gap=2.0 if reduced else None)
        out = io.BytesIO()
        image.save(out, "JPEG", quality=90)
        return out.getvalue()

    return {"simplejpeg decode (DCT-scaled) + OpenCV resize + simplejpeg encode (chosen)": chosen,
            "OpenCV: imdecode (IMREAD_REDUCED_*) + resize + imencode": opencv,
            "Pillow: draft + resize(BICUBIC, reducing_gap=2.0) + save": pillow,
            "Pillow: draft + resize(BILINEAR, reducing_gap=2.0) + save": lambda d: pillow(d, Image.BILINEAR),
            "Pillow, the loop's: open + resize(BICUBIC) + save": lambda d: pillow(d, reduced=False)}


def libraries(data: Path) -> str:
    """The markdown table of `--libraries`: CPU ms an image of each chain (one thread, OpenCV's own threads off)."""
    import cv2
    import numpy as np

    cv2.setNumThreads(1)
    rng = np.random.default_rng(0)
    sets = {"noise 300-500 px (this data set)": [p.read_bytes() for p in sorted((data / "extracted" / "val").glob(
        "*.JPEG"))[:150]]}
    for width, height in ((500, 375), (1024, 768), (2048, 1536)):
        sets[f"photo-like {width}x{height}"] = [_photo_like(rng, width, height) for _ in range(20 if width > 1000
                                                                                             else 60)]
    rows = ["| chain | " + " | ".join(sets) + " |", "| --- |" + " ---: |" * len(sets)]
    for name, chain in _chains().items():
        cells = []
        for datas in sets.values():
            tries = []
            for _ in range(3):
                t0 = time.process_time()
                for one in datas:
                    chain(one)
                tries.append(time.process_time() - t0)
            cells.append(f"{1000 * min(tries) / len(datas):.2f}")
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classes", type=int, default=23)
    ap.add_argument("--images-per-class", type=int, default=20)
    ap.add_argument("--val-images", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--work", type=Path, default=None, help="where outputs go (default: a temporary folder)")
    ap.add_argument("--sides", nargs="+", default=None, help="only these sides (default: all)")
    ap.add_argument("--libraries", action="store_true", help="time each library's decode-resize-encode instead")
    args = ap.parse_args()
    data, meta = build(CACHE / "resize", args.classes, args.images_per_class, args.val_images)
    if args.libraries:
        print(libraries(data))
        return
    files = extracted_files(data)
    work = args.work or Path(tempfile.mkdtemp(prefix="resize-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    chosen = {name: argv for name, argv in sides(data, files, work).items() if not args.sides or name in args.sides}
    results = {name: run_side(name, argv, data, work, args.repeats) for name, argv in chosen.items()}
    checks = {recipe: identical(data, work, recipe, script) for recipe, script in
              (("streamprep_21k_p_224", "miil_224"), ("streamprep_21k_p_short_256", "miil_short_256"))
              if all(results.get(side, {}).get("seconds") is not None for side in (recipe, script))}
    print(json.dumps({"data": meta, "results": results, "byte_identical": checks}, indent=1))
    print(table(len(files), results))
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
