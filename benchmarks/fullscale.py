"""Full-scale count run: 1,281,167 training and 50,000 validation tiny JPEGs, 544,546 XML files.

Builds the three downloads at the real ImageNet counts (each image a tiny valid JPEG, so the
data is ~2 GB), then times `streamprep convert` on them with the classic 1024/128 layout and
reports wall time, images/s and the peak RSS of the conversion process.

    python benchmarks/fullscale.py [--cache DIR] [--workers N]
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import resource
import subprocess
import sys
import tarfile
import time
from pathlib import Path

TRAIN_IMAGES, VAL_IMAGES, XML_FILES = 1_281_167, 50_000, 544_546
ROOT = Path(__file__).resolve().parent.parent


def tiny_jpeg() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (3, 2), (120, 30, 200)).save(buf, "JPEG", quality=50)
    return buf.getvalue()


def _member(name: str, data: bytes) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 1_300_000_000, 0o644
    if name.endswith("/"):
        info.type, info.mode = tarfile.DIRTYPE, 0o755
    return info.tobuf(tarfile.GNU_FORMAT) + data + bytes(-len(data) % 512)


def _end(chunks: list[bytes]) -> bytes:
    body = b"".join(chunks) + bytes(1024)
    return body + bytes(-len(body) % 10240)


def per_class_counts(total: int, classes: int) -> list[int]:
    base, extra = divmod(total, classes)
    return [base + (1 if k < extra else 0) for k in range(classes)]


def build(cache: Path) -> dict[str, Path]:
    cache.mkdir(parents=True, exist_ok=True)
    paths = {"train": cache / "ILSVRC2012_img_train.tar", "val": cache / "ILSVRC2012_img_val.tar",
             "bbox": cache / "ILSVRC2012_bbox_train_v2.tar.gz"}
    done = cache / "done-v2.json"  # bump when the generated data changes
    if done.exists():
        return paths
    synsets = (ROOT / "streamprep/data/imagenet_lsvrc_2015_synsets.txt").read_text().split()
    jpeg = tiny_jpeg()
    counts = per_class_counts(TRAIN_IMAGES, len(synsets))
    with open(paths["train"], "wb") as out:
        for synset, count in zip(synsets, counts):
            inner = _end([_member(f"{synset}_{i}.JPEG", jpeg) for i in range(count, 0, -1)])
            out.write(_member(f"{synset}.tar", inner))
        out.write(bytes(1024))
    with open(paths["val"], "wb") as out:
        out.write(_end([_member(f"ILSVRC2012_val_{i:08d}.JPEG", jpeg) for i in range(1, VAL_IMAGES + 1)]))
    xml_counts = per_class_counts(XML_FILES, len(synsets))
    with gzip.open(paths["bbox"], "wb", compresslevel=1) as out:
        for synset, count in zip(synsets, xml_counts):
            out.write(_member(f"{synset}/", b""))
            for i in range(1, count + 1):
                xml = (f"<annotation><filename>{synset}_{i}</filename><size><width>3</width><height>2</height></size>"
                       f"<object><name>{synset}</name><bndbox><xmin>0</xmin><ymin>0</ymin><xmax>2</xmax>"
                       f"<ymax>1</ymax></bndbox></object></annotation>").encode()
                out.write(_member(f"{synset}/{synset}_{i}.xml", xml))
        out.write(bytes(1024))
    done.write_text(json.dumps({k: str(v) for k, v in paths.items()}))
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=ROOT / "benchmarks/.cache/fullscale")
    ap.add_argument("--out", type=Path, default=None, help="output folder (default: CACHE/out)")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    t0 = time.monotonic()
    paths = build(args.cache)
    built = time.monotonic() - t0
    out = args.out or args.cache / "out"
    cmd = [sys.executable, "-m", "streamprep", "convert", "--train", str(paths["train"]), "--val", str(paths["val"]),
           "--bbox", str(paths["bbox"]), "--out", str(out), "--workers", str(args.workers)]
    t0 = time.monotonic()
    subprocess.run(cmd, check=True)
    wall = time.monotonic() - t0
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    images = TRAIN_IMAGES + VAL_IMAGES
    print(json.dumps({"build_s": round(built, 1), "convert_s": round(wall, 1), "images_per_s": round(images / wall),
                      "peak_rss_mib": round(peak_kib / 1024), "command": " ".join(cmd)}, indent=1))


if __name__ == "__main__":
    main()
