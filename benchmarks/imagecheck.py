"""The cost of the checks the classic's decoder makes (`records.imagesize.checked_jpeg_size`) against writing a record.

Per image, on ~100 KB noise JPEGs of 300-500 px (as `speed.py` builds them), best of several tries
alternated: the header-only size read the writer did before (`jpeg_size`), the checked size read it
does now, and the whole in-memory record path (Example encoding, TFRecord framing with CRC32C,
sha256 of the pieces) without any I/O. The overhead as a share of the record path is an upper bound
of its share of a run, whose per-image time also holds reading and writing the bytes.

    python benchmarks/imagecheck.py [--images N] [--repeats N]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench import data, timing  # noqa: E402
from streamprep.outputs.tfrecord.write import frame_parts  # noqa: E402
from streamprep.records.spec import RecordSpec  # noqa: E402
from streamprep.records import classic  # noqa: E402
from streamprep.records.image import prepared  # noqa: E402
from streamprep.records.imagesize import checked_jpeg_size, jpeg_size  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    images = [data.noise_jpeg(rng, int(rng.integers(300, 500)), int(rng.integers(300, 500))) for _ in range(args.images)]
    boxes = np.zeros((1, 4), np.float32)
    specs = [RecordSpec(f"n01440764_{i}.JPEG", 1, "n01440764", "tench, Tinca tinca", "a!b", 0, len(d), boxes, None)
             for i, d in enumerate(images)]

    def record_path() -> None:
        for spec, d in zip(specs, images):
            digest = hashlib.sha256()
            for piece in frame_parts(*classic.encode_parts(spec, prepared(spec, d))):
                digest.update(piece)

    times, _ = timing.alternate({
        "header_only": lambda: [jpeg_size(d) for d in images],
        "checked": lambda: [checked_jpeg_size(d) for d in images],
        "record_path": record_path,
    }, args.repeats)
    per = {k: min(v) / len(images) * 1e6 for k, v in times.items()}
    result = {"images": len(images), "mean_bytes": int(sum(map(len, images)) / len(images)),
              "us_per_image": {k: round(v, 2) for k, v in per.items()},
              "check_overhead_us": round(per["checked"] - per["header_only"], 2),
              "overhead_share_of_record_path": round((per["checked"] - per["header_only"]) / per["record_path"], 4)}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
