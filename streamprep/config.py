"""Conversion options, and TOML config files that set them (flags override)."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .plan import Layout

TRAIN_TAR = "ILSVRC2012_img_train.tar"
VAL_TAR = "ILSVRC2012_img_val.tar"
BBOX_TARGZ = "ILSVRC2012_bbox_train_v2.tar.gz"

# Config keys that hold a path, resolved against the config file's folder when relative.
PATH_KEYS = frozenset({"downloads", "train", "val", "bbox", "out", "materialize", "labels-file", "metadata-file",
                       "validation-labels-file"})
INT_KEYS = frozenset({"train-shards", "validation-shards", "classic-threads", "workers"})
POLICY_KEYS = frozenset({"on-bad-image", "on-bad-xml"})
POLICIES = ("fail", "skip")
ENGINES = ("local", "beam")  # where the conversion runs: this process, or an Apache Beam pipeline (docs/distributed.md)
KEYS = PATH_KEYS | INT_KEYS | POLICY_KEYS | {"storage-options", "shards", "check-md5", "engine"}


def default_workers() -> int:
    return max(2, os.cpu_count() or 2)


@dataclass(frozen=True)
class Options:
    """Everything `convert` needs; None label files mean the shipped ones."""

    train: str
    val: str
    bbox: str
    out: str | None
    layout: Layout = Layout()
    labels_file: str | None = None
    metadata_file: str | None = None
    validation_labels_file: str | None = None
    workers: int = field(default_factory=default_workers)
    storage_options: dict[str, Any] = field(default_factory=dict)
    materialize: str | None = None  # base folder for the classic layout
    shards: bool = True
    on_bad_image: str = "fail"  # or "skip": leave the image out and list it
    on_bad_xml: str = "fail"  # or "skip"
    check_md5: bool = False
    engine: str = "local"  # not in the manifest: the output does not depend on it

    def public(self) -> dict[str, Any]:
        """The options as the manifest records them (storage options left out: they may hold credentials)."""
        return {"train": self.train, "val": self.val, "bbox": self.bbox, "out": self.out,
                "train_shards": self.layout.train_shards, "validation_shards": self.layout.validation_shards,
                "classic_threads": self.layout.classic_threads, "labels_file": self.labels_file,
                "metadata_file": self.metadata_file, "validation_labels_file": self.validation_labels_file,
                "materialize": self.materialize, "on_bad_image": self.on_bad_image, "on_bad_xml": self.on_bad_xml,
                "check_md5": self.check_md5}


def join(folder: str, name: str) -> str:
    """`folder/name` for a path or a URL."""
    return f"{folder.rstrip('/')}/{name}"


def _is_url(value: str) -> bool:
    return "://" in value


def load_config(path: str) -> dict[str, Any]:
    """Read a TOML config: flat `key = value` pairs named like the long flags."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path}: {e}; fix the TOML syntax") from None
    unknown = sorted(set(data) - KEYS)
    if unknown:
        raise ConfigError(f"config file {path}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(KEYS))}")
    base = Path(path).resolve().parent
    for key in PATH_KEYS & set(data):
        value = data[key]
        if not isinstance(value, str):
            raise ConfigError(f"config file {path}: {key} must be a string")
        if not _is_url(value) and not os.path.isabs(value):
            data[key] = os.path.normpath(base / value)
    for key in INT_KEYS & set(data):
        if not isinstance(data[key], int):
            raise ConfigError(f"config file {path}: {key} must be an integer")
    for key in ("shards", "check-md5"):
        if key in data and not isinstance(data[key], bool):
            raise ConfigError(f"config file {path}: {key} must be true or false")
    for key in POLICY_KEYS & set(data):
        if data[key] not in POLICIES:
            raise ConfigError(f"config file {path}: {key} must be one of {', '.join(POLICIES)}")
    if "engine" in data and data["engine"] not in ENGINES:
        raise ConfigError(f"config file {path}: engine must be one of {', '.join(ENGINES)}")
    if "storage-options" in data and not isinstance(data["storage-options"], dict):
        raise ConfigError(f"config file {path}: storage-options must be a table")
    return data


def make_options(values: dict[str, Any]) -> Options:
    """Options from merged flag/config values (keys as in the config file)."""
    downloads = values.get("downloads")
    inputs = {}
    for key, name in (("train", TRAIN_TAR), ("val", VAL_TAR), ("bbox", BBOX_TARGZ)):
        value = values.get(key) or (join(downloads, name) if downloads else None)
        if not value:
            raise ConfigError(f"no --{key} given; pass --{key} or a DOWNLOADS folder holding {name}")
        inputs[key] = value
    shards = values.get("shards", True)
    materialize = values.get("materialize")
    if shards and not values.get("out"):
        raise ConfigError("no --out given; pass the folder (or URL) to write the shards to")
    if not shards and not materialize:
        raise ConfigError("--no-shards without --materialize leaves nothing to do; pass --materialize BASE")
    if materialize and _is_url(materialize) and not materialize.startswith("file://"):
        raise ConfigError(f"--materialize {materialize}: the folder layout is written to a local folder only "
                          "(it relies on file modification times and renames); pass a local path")
    if materialize and materialize.startswith("file://"):
        materialize = materialize[len("file://"):]
    def given(key: str, default: int) -> int:
        value = values.get(key)
        return default if value is None else value

    defaults = Layout()
    layout = Layout(given("train-shards", defaults.train_shards), given("validation-shards", defaults.validation_shards),
                    given("classic-threads", defaults.classic_threads))
    layout.check()
    workers = given("workers", default_workers())
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    return Options(train=inputs["train"], val=inputs["val"], bbox=inputs["bbox"], out=values.get("out") if shards else None,
                   layout=layout, materialize=materialize, shards=shards,
                   labels_file=values.get("labels-file"), metadata_file=values.get("metadata-file"),
                   validation_labels_file=values.get("validation-labels-file"), workers=workers,
                   storage_options=dict(values.get("storage-options") or {}),
                   on_bad_image=values.get("on-bad-image") or "fail", on_bad_xml=values.get("on-bad-xml") or "fail",
                   check_md5=bool(values.get("check-md5")), engine=values.get("engine") or "local")
