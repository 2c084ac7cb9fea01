"""The index saved with the output, so that a rerun over unchanged downloads does not walk them again."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from typing import Any

import numpy as np

from ..datasets import ILSVRC2012
from .boxes import BoxTable
from .images import DatasetIndex, Ignored, Skipped, SplitIndex
from .nametable import Affixes, NameLookup, NameTable
from ..errors import OutputError
from ..archives.output import STATE_DIR, Output

log = logging.getLogger(__name__)

FORMAT = "streamprep-index/4"  # 2: skipped members apart from ignored ones; 3: image names of the boxes as arrays;
# 4: image names stored without the prefix and suffix their class shares, offsets of names and sizes as uint32


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
        arrays.update(_affix_arrays(s.split, s.names.affixes))
        splits.append({"split": s.split, "archive": s.archive, "containers": {str(k): v for k, v in s.containers.items()}})
    arrays.update(_box_arrays("boxes", index.boxes))
    for split, table in index.split_boxes.items():  # only with --bbox-val: an older index has none, and still loads
        arrays.update(_box_arrays(f"{split}.boxes", table))
    meta = {"format": FORMAT, "splits": splits, "files": index.boxes.files,
            "ignored": index.ignored.state(), "skipped": index.skipped.items}
    if index.split_boxes:
        meta["split_boxes"] = {split: table.files for split, table in index.split_boxes.items()}
    if index.dataset != ILSVRC2012.name:  # another dataset's walk: its name and the classes it chose
        meta.update({"dataset": index.dataset, "synsets": None if index.synsets is None else list(index.synsets)})
    arrays["meta"] = _text(meta)
    arrays["digest"] = np.frombuffer(_digest(arrays).encode(), dtype=np.uint8)
    output.refuse_links(STATE_DIR)
    folder = output.path(STATE_DIR)
    if output.fs.exists(folder) and not output.fs.isdir(folder):
        raise OutputError(f"{folder}: is a file, where streamprep keeps its saved index; remove it and run again")
    output.fs.makedirs(folder, exist_ok=True)
    path = output.path(_name(k))
    if output.local and os.path.isdir(path) and not os.path.islink(path):  # damage in streamprep's own folder
        try:
            os.rmdir(path)
        except OSError as e:
            log.warning("%s: is a folder, where streamprep saves its index (%s); the index is not saved: remove the "
                        "folder so that a rerun need not walk the downloads again", path, e)
            return
    with output.atomic(_name(k)) as f:  # streamed: at full scale the arrays are 120 MB, never copied into one buffer
        np.savez(f, **arrays)
    for path in output.fs.glob(output.path(f"{STATE_DIR}/index-*.npz")):  # indexes of other downloads: stale
        if not path.endswith(_name(k).rsplit("/", 1)[1]):
            output.fs.rm(path)


def _affix_arrays(split: str, affixes: Affixes | None) -> dict[str, np.ndarray]:
    """A split's shared prefixes and suffixes (none without): the rows of each segment, then its prefix and suffix
    as names 2k and 2k + 1 of a table."""
    if affixes is None:
        return {}
    plain = NameTable.plain([t for pair in zip(affixes.prefixes, affixes.suffixes) for t in pair])
    return {f"{split}.affix_rows": affixes.rows, f"{split}.affixes": np.frombuffer(plain.blob, dtype=np.uint8),
            f"{split}.affix_starts": plain.starts}


def _box_arrays(prefix: str, b: BoxTable) -> dict[str, np.ndarray]:
    return {f"{prefix}.csv": np.frombuffer(b.csv, dtype=np.uint8), f"{prefix}.rows": b.rows,
            f"{prefix}.xml_rows": b.xml_rows, f"{prefix}.images": np.frombuffer(b.images.blob, dtype=np.uint8),
            f"{prefix}.image_starts": b.images.starts, f"{prefix}.image_files": b.image_files,
            f"{prefix}.crcs": b.lookup.crcs, f"{prefix}.positions": b.lookup.positions}


def _digest(arrays: dict[str, np.ndarray]) -> str:
    """sha256 over every array's name, type, shape and bytes (no copy of the bytes)."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        if name == "digest":
            continue
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(a.reshape(-1).view(np.uint8))
    return h.hexdigest()


class _Damaged(ValueError):
    """A saved index whose arrays do not fit together."""


def _check(condition: bool, what: str) -> None:
    if not condition:
        raise _Damaged(what)


def _names(blob: np.ndarray, starts: np.ndarray, what: str) -> NameTable:
    _check(blob.dtype == np.uint8 and blob.ndim == 1 and starts.dtype in (np.uint32, np.int64) and starts.ndim == 1
           and len(starts) >= 1 and starts[0] == 0 and starts[-1] == len(blob)
           and bool(np.all(np.diff(starts.astype(np.int64)) >= 0)), f"{what}: names")
    return NameTable(blob.tobytes(), starts)


def _affixes(name: str, arrays: dict[str, np.ndarray], rows: int) -> Affixes | None:
    """A split's shared prefixes and suffixes (`_affix_arrays`), or None if it was saved without."""
    if f"{name}.affix_rows" not in arrays:
        return None
    texts = _names(arrays[f"{name}.affixes"], arrays[f"{name}.affix_starts"], f"{name} affixes")
    bounds = arrays[f"{name}.affix_rows"]
    _check(bounds.dtype == np.int64 and bounds.ndim == 1 and len(bounds) >= 1 and len(texts) == 2 * (len(bounds) - 1)
           and bounds[0] == 0 and bounds[-1] == rows and bool(np.all(np.diff(bounds) >= 0)), f"{name}: affixes")
    return Affixes(bounds, [texts.raw(k) for k in range(0, len(texts), 2)],
                   [texts.raw(k) for k in range(1, len(texts), 2)])


def _split(s: dict[str, Any], arrays: dict[str, np.ndarray]) -> SplitIndex:
    name = s["split"]
    _check(name in ("train", "validation"), "split name")
    names = _names(arrays[f"{name}.names"], arrays[f"{name}.starts"], name)
    names.affixes = _affixes(name, arrays, len(names))
    labels, offsets, sizes = arrays[f"{name}.labels"], arrays[f"{name}.offsets"], arrays[f"{name}.sizes"]
    n = len(names)
    _check(labels.dtype == np.int32 and offsets.dtype == np.int64 and sizes.dtype in (np.uint32, np.int64),
           f"{name}: types")
    _check(labels.shape == offsets.shape == sizes.shape == (n,), f"{name}: lengths")
    _check(not n or (labels.min() >= 1 and offsets.min() >= 0 and sizes.min() >= 0), f"{name}: values")
    return SplitIndex(name, str(s["archive"]), names, labels, offsets, sizes,
                      {int(k): str(v) for k, v in s["containers"].items()})


def _boxes(files: int, arrays: dict[str, np.ndarray], prefix: str = "boxes") -> BoxTable:
    rows, xml_rows = arrays[f"{prefix}.rows"], arrays[f"{prefix}.xml_rows"]
    images = _names(arrays[f"{prefix}.images"], arrays[f"{prefix}.image_starts"], prefix)
    image_files, crcs, positions = (arrays[f"{prefix}.{k}"] for k in ("image_files", "crcs", "positions"))
    k = len(images)
    _check(rows.dtype == np.float32 and rows.ndim == 2 and rows.shape[1] == 4, f"{prefix}: rows")
    _check(xml_rows.dtype == np.int64 and xml_rows.shape == (files + 1,) and xml_rows[0] == 0
           and xml_rows[-1] == len(rows) and bool(np.all(np.diff(xml_rows) >= 0)), f"{prefix}: rows of each file")
    _check(image_files.dtype == np.int64 and image_files.shape == (k,)
           and bool(np.all(np.diff(image_files) > 0)) and (not k or (image_files[0] >= 0 and image_files[-1] < files)),
           f"{prefix}: files of the images")
    _check(crcs.dtype == np.uint32 and positions.dtype == np.int64 and crcs.shape == positions.shape == (k,)
           and bool(np.all(crcs[1:] >= crcs[:-1])) and bool(np.array_equal(np.sort(positions), np.arange(k))),
           f"{prefix}: lookup")
    return BoxTable(arrays[f"{prefix}.csv"].tobytes(), rows, xml_rows, images, image_files,
                    NameLookup(crcs, positions), files)


def load(output: Output, k: str) -> DatasetIndex | None:
    """The saved index for key `k`, or None when there is none or it cannot be used: damaged, changed since it was
    written (its digest), or from another version. Then the archives are walked again, as on a first run."""
    path = output.path(_name(k))
    try:
        output.refuse_links(STATE_DIR)  # never read back through a link planted in `out`
        if output.is_link(_name(k)):
            raise OutputError(f"{path}: is a symbolic link, which streamprep does not read back")
        with output.fs.open(path, "rb") as f, np.load(f, allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}  # read array by array, never the whole file at once
        meta = json.loads(arrays["meta"].tobytes().decode("utf-8", "surrogateescape"))
        if meta.get("format") != FORMAT:
            return None
        _check(arrays["digest"].tobytes().decode() == _digest(arrays), "digest")
        splits = tuple(_split(s, arrays) for s in meta["splits"])
        _check(sorted(s.split for s in splits) == ["train", "validation"], "splits")
        split_boxes = {str(split): _boxes(int(files), arrays, f"{split}.boxes")
                       for split, files in meta.get("split_boxes", {}).items()}
        _check(set(split_boxes) <= {"train", "validation"}, "split boxes")
        index = DatasetIndex(splits, _boxes(int(meta["files"]), arrays), Ignored.from_state(meta["ignored"]),
                             Skipped(list(meta["skipped"])), split_boxes)
        if "dataset" in meta:  # another dataset's walk (`save`)
            synsets = None if meta["synsets"] is None else tuple(str(s) for s in meta["synsets"])
            index = dataclasses.replace(index, dataset=str(meta["dataset"]), synsets=synsets)
        return index
    except FileNotFoundError:
        return None
    except Exception as e:  # noqa: BLE001 - any damage at all means the same: walk the archives again
        log.warning("%s: the saved index cannot be used (%s: %s); walking the downloads again", path,
                    type(e).__name__, str(e)[:200])
        return None
