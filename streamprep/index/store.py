"""The index saved with the output, so that a rerun over unchanged downloads does not walk them again."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

from .boxes import BoxTable
from .images import DatasetIndex, Ignored, Skipped, SplitIndex
from .nametable import NameLookup, NameTable
from ..outputs.files import Output

STATE_DIR = ".streamprep"  # hidden, so that tools globbing the shards do not see it
FORMAT = "streamprep-index/3"  # 2: skipped members apart from ignored ones; 3: image names of the boxes as arrays


def key(identities: dict[str, dict[str, Any]], labels_digest: str, policies: dict[str, str]) -> str:
    """What the index depends on: the downloads' identities, the label data, the skip policies."""
    text = json.dumps({"format": FORMAT, "inputs": identities, "labels": labels_digest, "policies": policies},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _name(k: str) -> str:
    return f"{STATE_DIR}/index-{k}.npz"


def _text(value: Any) -> np.ndarray:
    return np.frombuffer(json.dumps(value).encode("utf-8", "surrogateescape"), dtype=np.uint8)


def save(output: Output, k: str, index: DatasetIndex) -> None:
    """Write the index as arrays plus one JSON record (no pickle: loading runs no code)."""
    arrays: dict[str, np.ndarray] = {}
    splits = []
    for s in index.splits:
        arrays.update({f"{s.split}.names": np.frombuffer(s.names.blob, dtype=np.uint8),
                       f"{s.split}.starts": s.names.starts, f"{s.split}.labels": s.labels,
                       f"{s.split}.offsets": s.offsets, f"{s.split}.sizes": s.sizes})
        splits.append({"split": s.split, "archive": s.archive, "containers": {str(k): v for k, v in s.containers.items()}})
    b = index.boxes
    arrays.update({"boxes.csv": np.frombuffer(b.csv, dtype=np.uint8), "boxes.rows": b.rows, "boxes.xml_rows": b.xml_rows,
                   "boxes.images": np.frombuffer(b.images.blob, dtype=np.uint8), "boxes.image_starts": b.images.starts,
                   "boxes.image_files": b.image_files, "boxes.crcs": b.lookup.crcs,
                   "boxes.positions": b.lookup.positions})
    meta = {"format": FORMAT, "splits": splits, "files": b.files,
            "ignored": index.ignored.state(), "skipped": index.skipped.items}
    arrays["meta"] = _text(meta)
    output.fs.makedirs(output.path(STATE_DIR), exist_ok=True)
    with output.atomic(_name(k)) as f:  # streamed: at full scale the arrays are 120 MB, never copied into one buffer
        np.savez(f, **arrays)
    for path in output.fs.glob(output.path(f"{STATE_DIR}/index-*.npz")):  # indexes of other downloads: stale
        if not path.endswith(_name(k).rsplit("/", 1)[1]):
            output.fs.rm(path)


def load(output: Output, k: str) -> DatasetIndex | None:
    """The saved index for key `k`, or None when there is none or it cannot be read (then the archives are walked)."""
    try:
        with output.fs.open(output.path(_name(k)), "rb") as f, np.load(f, allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}  # read array by array, never the whole file at once
        meta = json.loads(arrays["meta"].tobytes().decode("utf-8", "surrogateescape"))
        if meta.get("format") != FORMAT:
            return None
        splits = []
        for s in meta["splits"]:
            name = s["split"]
            splits.append(SplitIndex(name, s["archive"], NameTable(arrays[f"{name}.names"].tobytes(), arrays[f"{name}.starts"]),
                                     arrays[f"{name}.labels"], arrays[f"{name}.offsets"], arrays[f"{name}.sizes"],
                                     {int(k): v for k, v in s["containers"].items()}))
        boxes = BoxTable(arrays["boxes.csv"].tobytes(), arrays["boxes.rows"], arrays["boxes.xml_rows"],
                         NameTable(arrays["boxes.images"].tobytes(), arrays["boxes.image_starts"]),
                         arrays["boxes.image_files"], NameLookup(arrays["boxes.crcs"], arrays["boxes.positions"]),
                         meta["files"])
        return DatasetIndex(tuple(splits), boxes, Ignored.from_state(meta["ignored"]), Skipped(list(meta["skipped"])))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return None  # damaged or from another version: walk the archives again
