"""Comparing outputs: result files byte for byte, shards record for record, and what the final outputs weigh."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from .layout import tests_importable


def is_result(name: str) -> bool:
    """Shards and bboxes.csv: what must be byte-identical whatever the sources (as tests/conftest.py has it);
    not manifest.json, which names the sources, nor the hidden .streamprep/ state, named after them."""
    return not name.startswith(".") and name != "manifest.json"


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.iterdir()) if p.is_file() and is_result(p.name)}


def compare(a: Path, b: Path) -> dict[str, Any]:
    """The result files of two output folders, byte for byte."""
    da, db = digests(a), digests(b)
    differ = sorted(k for k in set(da) | set(db) if da.get(k) != db.get(k))
    return {"identical": not differ and bool(da), "files": len(da), "differing": differ[:10]}


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


def output_bytes(folder: Path) -> dict[str, int]:
    """Apparent and allocated bytes of the final outputs: shards and bboxes.csv."""
    files = [p for p in folder.iterdir() if p.is_file() and (p.name == "bboxes.csv" or "-of-" in p.name)]
    shards = [p for p in files if "-of-" in p.name]
    return {"bytes": sum(p.stat().st_size for p in files), "allocated": sum(p.stat().st_blocks * 512 for p in files),
            "shard_bytes": sum(p.stat().st_size for p in shards), "files": len(files)}
