"""Full-scale count run: 1,281,167 training and 50,000 validation tiny JPEGs, 544,546 XML files.

Builds the three downloads at the real ImageNet counts with bench/data.py (each image a tiny valid
JPEG, so the data is ~2 GB; the classic's 23 fix-up files are there under their real names, a PNG and
22 CMYK JPEGs, as in the real training tar), then times `streamprep convert` on them with the classic
1024/128 layout and reports wall time, images/s and the peak RSS of the conversion process.
`--scale 0.01` builds and converts a hundredth of every count (same 1000 classes), for a quick check.

    python benchmarks/fullscale.py [--cache DIR] [--out DIR] [--workers N] [--scale F]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import time
from pathlib import Path

from bench import data, procs
from bench.layout import CACHE


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=CACHE / "fullscale")
    ap.add_argument("--out", type=Path, default=None, help="output folder (default: CACHE/out)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--scale", type=float, default=1.0,
                    help="fraction of the real counts to build and convert (default 1: the full scale)")
    ap.add_argument("--no-fixups", action="store_true", help="leave the classic's 23 fix-up files out of the data")
    args = ap.parse_args()
    folder = args.cache
    if args.scale != 1 or args.no_fixups:  # the full-scale data set stays where it always was
        folder = args.cache / (f"scale{args.scale:g}" + ("-nofixups" if args.no_fixups else ""))
    t0 = time.monotonic()
    built = data.build_fullscale(folder, args.scale, not args.no_fixups)
    build_s = time.monotonic() - t0
    paths = built["paths"]
    out = args.out or folder / "out"
    cmd = procs.convert_cmd(paths["train"], paths["val"], paths["bbox"], out, paths["labels"],
                            "--workers", str(args.workers))
    shutil.rmtree(out, ignore_errors=True)  # a fresh conversion is what is measured, never a resumed one
    t0 = time.monotonic()
    subprocess.run(cmd, check=True)
    wall = time.monotonic() - t0
    images = built["train_images"] + built["val_images"]
    print(json.dumps({"build_s": round(build_s, 1), "convert_s": round(wall, 1), "images_per_s": round(images / wall),
                      "peak_rss_mib": procs.children_max_rss_mib(), "command": " ".join(cmd),
                      **({"scale": args.scale} if args.scale != 1 else {})}, indent=1))


if __name__ == "__main__":
    main()
