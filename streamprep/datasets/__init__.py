"""THE DATASET SEAM: one map from a dataset's name (`--dataset`) to its entry; ILSVRC2012 is the first.

    from streamprep import datasets
    datasets.get("ilsvrc2012").download("train").name   # 'ILSVRC2012_img_train.tar'
    datasets.register(my_entry)                          # then Options(dataset=my_entry.name, ...)

An entry (`entry.Dataset`) names the downloads with their official names and published MD5s, how their members
become images, the label files, the fix-up names, the boxes and the default plan. Everything else (reading the
archives, the index, the plan, the formats, the engines) takes it from the entry it is given.
"""

from __future__ import annotations

from .entry import Boxes, Dataset, DefaultPlan, Download, Fixups, LabelFile, Members, OwnOption
from .ilsvrc2012 import ILSVRC2012
from .imagenet21k import IMAGENET21K

DEFAULT = ILSVRC2012.name
REGISTRY: dict[str, Dataset] = {ILSVRC2012.name: ILSVRC2012, IMAGENET21K.name: IMAGENET21K}  # in the order registered

__all__ = ["Boxes", "DEFAULT", "Dataset", "DefaultPlan", "Download", "Fixups", "ILSVRC2012", "IMAGENET21K", "LabelFile",
           "Members", "OwnOption", "REGISTRY", "UnknownDataset", "get", "names", "own_options", "register",
           "unregister"]


class UnknownDataset(ValueError):
    """No dataset is registered under this name; the message lists the known ones."""


def names() -> tuple[str, ...]:
    """The registered datasets' names, in the order registered."""
    return tuple(REGISTRY)


def get(name: str) -> Dataset:
    """The entry registered as `name`; `UnknownDataset` (a ValueError) naming the known ones if there is none."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownDataset(f"unknown dataset {name!r}; known: {', '.join(REGISTRY)}") from None


def own_options() -> dict[str, tuple[str, OwnOption]]:
    """Every registered dataset's own options (`Dataset.options`), by field name, each with the dataset it
    belongs to, in registry order: the fields `options.Options` adds to its table for them."""
    found: dict[str, tuple[str, OwnOption]] = {}
    for dataset in REGISTRY.values():
        for name, spec in dataset.options.items():
            if name in found:
                raise ValueError(f"dataset {dataset.name!r}: an option named {name!r} belongs to dataset "
                                 f"{found[name][0]!r} already")
            found[name] = (dataset.name, spec)
    return found


def register(dataset: Dataset) -> Dataset:
    """Add an entry under its name (registering the same entry again is harmless); returns it. A name taken by
    another entry is a ValueError: `unregister` it first."""
    if not isinstance(dataset, Dataset):
        raise TypeError(f"register takes a streamprep.datasets.Dataset, got {type(dataset).__name__}")
    if not dataset.name or dataset.name != dataset.name.strip().lower() or "," in dataset.name:
        raise ValueError(f"dataset name {dataset.name!r}: use a lower-case name without spaces or commas")
    known = REGISTRY.get(dataset.name)
    if known is not None and known != dataset:
        raise ValueError(f"a dataset named {dataset.name!r} is registered already; unregister it first")
    roles = [d.role for d in dataset.downloads]
    if len(set(roles)) < len(roles):
        raise ValueError(f"dataset {dataset.name!r} names a download role twice: {', '.join(roles)}")
    REGISTRY[dataset.name] = dataset
    return dataset


def unregister(name: str) -> None:
    """Remove the entry registered as `name` (the default, ILSVRC2012, stays)."""
    if name == DEFAULT:
        raise ValueError(f"{DEFAULT} is the default dataset and stays registered")
    REGISTRY.pop(name, None)
