"""The TFDS benchmark's data sets: speed.py's downloads (300-500 px noise JPEGs) or fullscale.py's count data set
(tiny JPEGs at the real counts times a scale), each a folder holding the three downloads, with its summary."""

from __future__ import annotations

import argparse
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

from . import data
from .layout import CACHE, TRAIN_TAR, VAL_TAR, synsets

DATA_SETS = ("speed", "count")
CACHES = {"speed": CACHE / "speed", "count": CACHE / "fullscale"}  # speed.py's and fullscale.py's


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """--data and --scale, the speed data set's options (`data.add_arguments`) and --cache."""
    data.add_arguments(ap, classes=100, per_class=190, val_images=1000)
    ap.add_argument("--data", default="speed,count", type=data_sets,
                    help="the data sets, in order, comma-separated: speed (speed.py's downloads: --classes, "
                         "--images-per-class, --val-images, --seed) and count (fullscale.py's tiny JPEGs at the real "
                         "counts times --scale); default: speed,count")
    ap.add_argument("--scale", type=float, default=0.1,
                    help="the count data set's fraction of the real counts (fullscale.py's --scale; default 0.1: "
                         "128,117 training and 5,000 validation images)")
    ap.add_argument("--cache", type=Path, default=None,
                    help="the downloads' cache (default: speed.py's benchmarks/.cache/speed/ for speed, "
                         "fullscale.py's benchmarks/.cache/fullscale/ for count)")


def data_sets(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    wrong = [n for n in names if n not in DATA_SETS]
    if wrong or not names or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"{text!r}: name each of {', '.join(DATA_SETS)} at most once")
    return names


def downloads(name: str, args: argparse.Namespace) -> tuple[Path, dict[str, Any]]:
    """The data set `name`'s folder (built if missing) and its summary for the benchmark's JSON."""
    cache = (args.cache or CACHES[name]).resolve()
    if name == "speed":
        folder, meta = data.from_args(cache, args, data.SPEED_SIZE_RANGE)
        summary = {**data.scale_summary(meta), "size_range": list(data.SPEED_SIZE_RANGE)}
    else:
        folder, summary = count_downloads(cache, args.scale, not args.no_fixups)
    image_bytes = sum((folder / n).stat().st_size for n in (TRAIN_TAR, VAL_TAR))
    return folder, {"data": name, **summary, "image_tars_mb": round(image_bytes / 1e6, 1),
                    "image_tar_bytes": image_bytes}


def count_folder(cache: Path, scale: float, with_fixups: bool) -> Path:
    """Where fullscale.py keeps the count data set of this scale (the full scale with fix-ups in `cache` itself)."""
    if scale == 1 and with_fixups:
        return cache
    return cache / (f"scale{scale:g}" + ("" if with_fixups else "-nofixups"))


def count_downloads(cache: Path, scale: float, with_fixups: bool) -> tuple[Path, dict[str, Any]]:
    """fullscale.py's count data set (`data.build_fullscale`), built if missing: its folder and summary."""
    folder = count_folder(cache, scale, with_fixups)
    t0 = time.monotonic()
    built = data.build_fullscale(folder, scale, with_fixups)
    print(f"count data set in {folder} ({built['train_images'] + built['val_images']:,} JPEGs, "
          f"{time.monotonic() - t0:.1f} s)", file=sys.stderr)
    return folder, {"scale": scale, "classes": len(synsets()), "train_images": built["train_images"],
                    "val_images": built["val_images"], "images": built["train_images"] + built["val_images"],
                    "xml_files": built["xml_files"], "jpeg": first_jpeg(folder / VAL_TAR), "fixups": built["fixups"]}


def first_jpeg(tar_path: Path) -> dict[str, int]:
    """The first image of a tar: its bytes and size in pixels (the count data set's images are all alike)."""
    from PIL import Image

    with tarfile.open(tar_path) as tar:
        member = tar.next()
        if member is None:
            return {}
        f = tar.extractfile(member)
        with Image.open(f) as image:  # type: ignore[arg-type]
            width, height = image.size
    return {"bytes": member.size, "width": width, "height": height}
