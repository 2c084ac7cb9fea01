"""Comparing outputs: result files byte for byte, shards record for record, the same shards written in one format or
in several, two TFDS datasets record for record, and what the final outputs weigh."""

from __future__ import annotations

import filecmp
import hashlib
import json
import os
from itertools import zip_longest
from pathlib import Path
from typing import Any, Callable, Iterator

from .layout import tests_importable


MANIFEST = "manifest.json"
# manifest.json's fields that say where a run read and wrote, not what it wrote: each download's URL and the
# modification time and ETag its storage reports (a file's st_mtime locally, Last-Modified over HTTP), and the paths
# or URLs given as --train, --val, --bbox and --out
RUN_INPUT_FIELDS = ("url", "mtime", "etag")
RUN_OPTIONS = ("train", "val", "bbox", "out")


def is_result(name: str) -> bool:
    """Shards and bboxes.csv: what must be byte-identical whatever the sources (as tests/conftest.py has it);
    not manifest.json, which names the sources, nor the hidden .streamprep/ state, named after them."""
    return not name.startswith(".") and name != MANIFEST


def digests(folder: Path, keep: Callable[[str], bool] = is_result) -> dict[str, str]:
    """sha256 of every file of `folder` whose name `keep` accepts (by default the result files), by name."""
    out = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and keep(p.name):
            with open(p, "rb") as f:
                out[p.name] = hashlib.file_digest(f, "sha256").hexdigest()
    return out


def without_run_fields(manifest: dict[str, Any]) -> dict[str, Any]:
    """A parsed manifest.json less the fields that name the run's sources and output (`RUN_INPUT_FIELDS` of each
    download, `RUN_OPTIONS`): what two conversions of the same bytes read from different places must share."""
    out = json.loads(json.dumps(manifest))
    for source in (out.get("run", {}).get("inputs") or {}).values():
        for key in RUN_INPUT_FIELDS:
            source.pop(key, None)
    for key in RUN_OPTIONS:
        (out.get("options") or {}).pop(key, None)
    return out


def differing_fields(a: Any, b: Any, at: str = "") -> list[str]:
    """The dotted paths where two parsed JSON values differ (a list's items by position)."""
    if isinstance(a, dict) and isinstance(b, dict):
        found = []
        for key in sorted(set(a) | set(b), key=str):
            where = f"{at}.{key}" if at else str(key)
            found += differing_fields(a[key], b[key], where) if key in a and key in b else [where]
        return found
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [p for i, (x, y) in enumerate(zip(a, b)) for p in differing_fields(x, y, f"{at}[{i}]")]
    return [] if a == b else [at or "(the whole file)"]


def compare(a: Path, b: Path) -> dict[str, Any]:
    """Two output folders of the same conversion: every file but manifest.json and the hidden `.streamprep/` state,
    byte for byte (files of the same name; a file in one folder only differs), and manifest.json less its
    run-specific fields (`without_run_fields`), as parsed JSON. `differing` names each file that differs (the
    manifest's differing fields after it), at most 10."""
    names = {p.name for folder in (a, b) for p in folder.iterdir() if p.is_file() and is_result(p.name)}
    differ = [name for name in sorted(names) if not ((a / name).is_file() and (b / name).is_file()
                                                     and filecmp.cmp(a / name, b / name, shallow=False))]
    manifests = [json.loads((f / MANIFEST).read_text()) if (f / MANIFEST).is_file() else None for f in (a, b)]
    fields = differing_fields(*(None if m is None else without_run_fields(m) for m in manifests))
    if fields:
        differ.append(f"{MANIFEST} ({', '.join(fields[:5])}{', ...' if len(fields) > 5 else ''})")
    return {"identical": not differ and bool(names), "files": len(names), "manifest_compared": None not in manifests,
            "differing": differ[:10]}


def shard_names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(("train-", "validation-")))


def compare_records(mine: Path, theirs: Path) -> dict[str, Any]:
    """Every shard of both folders parsed; records compared by their parsed features, in order."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    tests_importable()
    from classic_reference import read_examples

    a, b = shard_names(mine), shard_names(theirs)
    out: dict[str, Any] = {"shards": len(a), "same_shard_names": a == b, "records": 0, "differing": []}
    for name in sorted(set(a) & set(b)):
        x, y = read_examples(mine / name), read_examples(theirs / name)
        out["records"] += len(x)
        if len(x) != len(y):
            out["differing"].append(f"{name}: {len(x)} records against {len(y)}")
            continue
        for i, (r, s) in enumerate(zip(x, y)):
            if r.features != s.features:  # protobuf equality: the parsed feature maps, not the bytes
                out["differing"].append(f"{name} record {i}")
                break
    out["bboxes_csv_identical"] = (mine / "bboxes.csv").read_bytes() == (theirs / "bboxes.csv").read_bytes()
    out["identical_records"] = out["same_shard_names"] and not out["differing"] and out["bboxes_csv_identical"]
    out["differing"] = out["differing"][:10]
    return out


def is_tfrecord_shard(name: str) -> bool:
    """A TFRecord shard's name (`train-00000-of-01024`), not a WebDataset shard's nor an index's."""
    return name.startswith(("train-", "validation-")) and "-of-" in name and "." not in name


def is_tar_shard(name: str) -> bool:
    """A WebDataset shard's name (`train-00000-of-01024.tar`)."""
    return name.startswith(("train-", "validation-")) and name.endswith(".tar")


def same_files(a: Path, b: Path, keep: Callable[[str], bool]) -> tuple[int, list[str]]:
    """The files of two folders that `keep` accepts, by sha256: how many `a` holds, and the names that are not in
    both or differ."""
    da, db = digests(a, keep), digests(b, keep)
    return len(da), sorted(k for k in set(da) | set(db) if da.get(k) != db.get(k))


def compare_formats(tfrecord: Path, webdataset: Path, both: Path) -> dict[str, Any]:
    """Three conversions of the same downloads (`--format tfrecord`, `--format webdataset`, `--format
    tfrecord,webdataset`): the last one's `.tar` shards against the second's, its TFRecord shards against the
    first's, files of the same name by sha256. `formats_identical` if every one matches and there are some."""
    tars, tar_diff = same_files(webdataset, both, is_tar_shard)
    shards, shard_diff = same_files(tfrecord, both, is_tfrecord_shard)
    differ = [f"{n} (.tar)" for n in tar_diff] + [f"{n} (TFRecord)" for n in shard_diff]
    return {"tar_files": tars, "tfrecord_shards": shards, "differing": differ[:10],
            "formats_identical": not differ and tars > 0 and shards > 0}


def tfds_examples(shard: Path) -> Iterator[tuple[Any, ...]]:
    """A TFDS TFRecord shard's records, each parsed with `tf.train.Example.FromString`: its feature names and the
    values of file_name, image and label (not the bytes: protobuf does not promise the order of a map's entries)."""
    import tensorflow as tf

    for raw in tf.data.TFRecordDataset(str(shard)):
        feature = tf.train.Example.FromString(raw.numpy()).features.feature
        names = tuple(sorted(feature))
        yield (names, tuple(feature["file_name"].bytes_list.value), tuple(feature["image"].bytes_list.value),
               tuple(feature["label"].int64_list.value))


def same_tfds_records(a: Path, b: Path) -> tuple[int, str | None]:
    """Two TFDS TFRecord shards, record for record: how many records were compared, and where they first differ
    (None if nowhere)."""
    count = 0
    for x, y in zip_longest(tfds_examples(a), tfds_examples(b)):
        if x != y:
            return count, f"record {count}" + ("" if x and y else " (one shard ends there)")
        count += 1
    return count, None


def _dataset_info(folder: Path) -> Any:
    path = folder / "dataset_info.json"
    return json.loads(path.read_text()) if path.exists() else None


def compare_tfds(mine: Path, theirs: Path) -> dict[str, Any]:
    """Two `imagenet2012/5.1.0/` folders: the same file names, dataset_info.json equal as parsed JSON, the other side
    files (features.json, label.labels.txt) byte for byte, and every TFRecord shard record for record
    (`same_tfds_records`). `identical_records` if all of that holds and there are records."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    a, b = (sorted(p.name for p in folder.iterdir()) for folder in (mine, theirs))
    info = _dataset_info(mine)
    out: dict[str, Any] = {"files": len(a), "same_file_names": a == b,
                           "dataset_info_equal": info is not None and info == _dataset_info(theirs),
                           "shards": 0, "records": 0, "differing": []}
    for name in sorted(set(a) & set(b) - {"dataset_info.json"}):
        if ".tfrecord-" in name:
            count, where = same_tfds_records(mine / name, theirs / name)
            out["shards"] += 1
            out["records"] += count
            if where:
                out["differing"].append(f"{name}: {where}")
        elif (mine / name).read_bytes() != (theirs / name).read_bytes():
            out["differing"].append(f"{name} (bytes)")
    out["identical_records"] = (out["same_file_names"] and out["dataset_info_equal"] and not out["differing"]
                                and out["records"] > 0)
    out["differing"] = out["differing"][:10]
    return out


def output_bytes(folder: Path) -> dict[str, int]:
    """Apparent and allocated bytes of the final outputs (every result file: shards in any format, their indexes,
    bboxes.csv, _info.json), and the TFRecord shards' apparent bytes."""
    files = [p for p in folder.iterdir() if p.is_file() and is_result(p.name)]
    shards = [p for p in files if is_tfrecord_shard(p.name)]
    return {"bytes": sum(p.stat().st_size for p in files), "allocated": sum(p.stat().st_blocks * 512 for p in files),
            "shard_bytes": sum(p.stat().st_size for p in shards), "files": len(files)}
