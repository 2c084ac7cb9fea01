"""ImageNet-21k's walk: one archive (or a folder) of per-synset tars, its splits chosen by a recipe on names alone.

The archive is walked as ILSVRC2012's training tar is (`images.class_tars`, `images.class_images`,
`images.walk_class_tars`: tar headers only, class tars nested, byte ranges, the name table); a folder of per-synset
tars (`archives.folder.FolderSource`) as the same class tars laid end to end. Then the recipe of Alibaba-MIIL's
`dataset_preprocessing/processing_script.sh` (quoted in `datasets/imagenet21k.py`) picks the splits:

- `21k-p`: a class is kept if it holds MORE than `keep_classes_over` images (`ls $c/*.JPEG | wc -l`: names at the top
  of its tar ending in `.JPEG`, not hidden, counted before any is decoded, so a corrupt one counts); the first
  `validation_per_class` of each kept class, in the byte order of their names (`ls` in the C locale), are validation
  images, the rest training images. A class dropped is reported among the ignored members.
- `all`: every class and image, as training images.

Labels are 1-based here (the classic's numbering; 0-based in the formats that store them so) in sorted synset order
of the classes kept, which the index carries (`DatasetIndex.synsets`) for the plan to number by.
"""

from __future__ import annotations

import itertools
import operator
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import numpy as np

from ..archives.folder import FolderSource
from ..archives.storage import Source, sequential_reader
from ..archives.tarscan import ReadAt, TarMember
from ..datasets import Dataset
from ..errors import ArchiveError
from ..progress import Callback, Phase, check_stop
from .boxes import BoxTable
from .images import (DatasetIndex, Ignored, Skipped, SplitFill, _Group, class_images, class_tars,
                     give_back_freed_memory, walk_class_tars)
from .labels import LabelData
from .nametable import NameTable

TRIM_EVERY = 1000  # classes copied into the splits between two `give_back_freed_memory`
Classes = dict[str, tuple[str, _Group]]  # synset -> (its class tar's name, its images sorted by the bytes of names)


def walk_synset_tars(sources: dict[str, Source], labels: LabelData, workers: int, progress: Callback | None,
                     stop: threading.Event | None, dataset: Dataset, options: dict[str, Any]) -> DatasetIndex:
    """The index of an archive or folder of per-synset tars (`sources["train"]`), split by the recipe in
    `options` (`split_recipe`, `keep_classes_over`, `validation_per_class`); no boxes. A gzipped archive
    (winter21_whole.tar.gz, an `archives.gzipped.GzippedSource`) is walked as a remote one is, in order: the walk is
    its one decompression pass, which records the checkpoints its images are read from."""
    source, ignored = sources["train"], Ignored()
    walk = _walk_folder if isinstance(source, FolderSource) else _walk_archive
    classes = walk(source, labels, ignored, workers, progress, stop, dataset)
    return split_index(source.url, classes, labels, options, ignored, dataset)


def split_index(archive: str, classes: Classes, labels: LabelData, options: dict[str, Any], ignored: Ignored,
                dataset: Dataset) -> DatasetIndex:
    """The index of the per-synset tars walked (`classes`, in any order), split by the recipe in `options`; no
    boxes. The engines' one combine step (`walk_synset_tars` here, `engines.beam` over its workers' walks)."""
    if not classes:
        raise ArchiveError(no_synset_tars_message(archive, labels, dataset))
    validation, train, synsets = split(archive, classes, options, ignored, dataset)
    return DatasetIndex((validation, train), BoxTable.empty(), ignored, Skipped(), dataset=dataset.name,
                        synsets=synsets)


def no_synset_tars_message(archive: str, labels: LabelData, dataset: Dataset) -> str:
    """Why an archive or folder without a single usable per-synset tar is the wrong input."""
    return (f"{archive}: holds no per-synset tar ({dataset.members.class_tar_glob}) of a synset in the labels file "
            f"{labels.sources.get('labels', '')}; pass {dataset.download('train').name} or a folder of per-synset tars")


def _walk_archive(source: Source, labels: LabelData, ignored: Ignored, workers: int, progress: Callback | None,
                  stop: threading.Event | None, dataset: Dataset) -> Classes:
    """The class tars of one archive (fall11_whole.tar), walked as ILSVRC2012's training tar is."""
    containers: dict[int, str] = {}
    with Phase(progress, "index classes", total_bytes=source.size, unit="images") as phase:

        def walk(item: tuple[int, TarMember], read_at: ReadAt | None) -> tuple[str, tuple[str, _Group]]:
            check_stop(stop)
            label, outer = item
            walked = archive_class(source, outer, ignored, dataset, read_at)
            phase.advance(len(walked[1].names), outer.size + 512)
            return labels.synsets[label - 1], walked

        return dict(walk_class_tars(
            source, lambda read_at: class_tars(source, labels, ignored, containers, read_at, dataset), walk, workers,
            stop))


def _walk_folder(source: FolderSource, labels: LabelData, ignored: Ignored, workers: int,
                 progress: Callback | None, stop: threading.Event | None, dataset: Dataset) -> Classes:
    """The per-synset tars of a folder, each read forward from its own file (read ahead remotely); the folder's
    other entries and tars of synsets not in the labels file ignored."""
    wanted = folder_class_tars(source, labels, ignored, dataset)
    with Phase(progress, "index classes", total_bytes=source.size, unit="images") as phase:

        def walk(item: tuple[int, str]) -> tuple[str, tuple[str, _Group]]:
            check_stop(stop)
            k, synset = item
            walked = folder_class(source, k, ignored, dataset)
            phase.advance(len(walked[1].names), source.parts[k][1])
            return synset, walked

        return dict(_in_parallel(walk, wanted, workers, stop))


def folder_class_tars(source: FolderSource, labels: LabelData, ignored: Ignored,
                      dataset: Dataset) -> list[tuple[int, str]]:
    """The per-synset tars of a folder to walk, as (part number, synset) in the folder's order; its other entries
    and the tars of synsets not in the labels file ignored. Nothing is read but the folder's listing."""
    for name in source.others:
        ignored.add(f"{source.url}!{name}", f"not a class tar ({dataset.members.class_tar_glob}) in the folder")
    wanted = []
    for k, (name, _) in enumerate(source.parts):
        synset = dataset.members.class_synset(name)
        if synset is None or labels.label(synset) is None:
            ignored.add(f"{source.url}!{name}", "class tar of a synset not in the labels file")
            continue
        wanted.append((k, synset))
    return wanted


def folder_class(source: FolderSource, k: int, ignored: Ignored, dataset: Dataset) -> tuple[str, _Group]:
    """Part k of a folder of per-synset tars, read forward from its own file: (its name, its images in the byte
    order of their names), offsets in the folder's address space."""
    outer, part, base = source.member(k), source.part(k), source.starts[k]
    try:
        with sequential_reader(part, outer.size) as read_at:
            group = class_images(source, outer, ignored, lambda at, n: read_at(at - base, n), dataset)
    finally:
        source.release(k)  # read once: a pool thread of the walk leaves no file open
    return outer.name, by_bytes(group)


def archive_class(source: Source, outer: TarMember, ignored: Ignored, dataset: Dataset,
                  read_at: ReadAt | None = None) -> tuple[str, _Group]:
    """One per-synset tar of an archive of them: (its name, its images in the byte order of their names)."""
    return outer.name, by_bytes(class_images(source, outer, ignored, read_at, dataset))


def _in_parallel(walk: Callable[[Any], Any], items: list[Any], workers: int,
                 stop: threading.Event | None) -> list[Any]:
    """`walk` of every item, `workers` at a time, in the items' order; an error or Ctrl-C drops the rest."""
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="index") as pool:
        try:
            futures = []
            for item in items:
                check_stop(stop)
                futures.append(pool.submit(walk, item))
            return [f.result() for f in futures]
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def by_bytes(group: _Group) -> _Group:
    """A class's images in the byte order of their names (`ls` in the C locale), whatever order they came in."""
    raws = list(group.names.raws())
    if all(map(operator.le, raws, itertools.islice(raws, 1, None))):
        return group  # already (as `_Group.of`'s order leaves names that are all ASCII)
    return take(group, sorted(range(len(raws)), key=raws.__getitem__))


def take(group: _Group, rows: list[int]) -> _Group:
    """The images at `rows` of a class, in that order."""
    picked = np.asarray(rows, dtype=np.int64)
    return _Group(NameTable.of_encoded([group.names.raw(i) for i in rows]), group.offsets[picked],
                  group.sizes[picked])


def split(archive: str, classes: Classes, options: dict[str, Any], ignored: Ignored,
          dataset: Dataset) -> tuple[Any, Any, tuple[str, ...]]:
    """The recipe: (validation, train, the synsets kept, sorted: label k is synsets[k - 1]). `classes` is emptied
    as its groups are copied into the two splits' arrays (`SplitFill`), so that each is let go of once copied."""
    every = options["split_recipe"] == "all"
    over, per_class = options["keep_classes_over"], 0 if every else options["validation_per_class"]
    kept = sorted(s for s, (_, g) in classes.items() if every or len(g.names) > over)
    for synset in sorted(set(classes) - set(kept)):
        ignored.add(f"{archive}!{classes.pop(synset)[0]}", f"class tar of {over:,} or fewer "
                    f"{dataset.members.image_glob} files (--split-recipe 21k-p drops the class)")
    validation, train = _fills(classes, per_class)
    containers: dict[int, str] = {}
    for label, synset in enumerate(kept, 1):
        containers[label], group = classes.pop(synset)
        first = min(per_class, len(group.names))
        validation.add(label, group, 0, first)
        train.add(label, group, first, len(group.names))
        if label % TRIM_EVERY == 0:
            give_back_freed_memory()  # the groups' arrays copied so far: the splits grow as the groups go
    splits = validation.index("validation", archive, containers), train.index("train", archive, containers)
    give_back_freed_memory()
    return (*splits, tuple(kept))


def _fills(classes: Classes, per_class: int) -> tuple[SplitFill, SplitFill]:
    """The validation and training arrays to fill, sized for the first `per_class` images of each class and the
    rest."""
    images, nbytes, types = [0, 0], [0, 0], [np.dtype(np.uint32)]
    for _, group in classes.values():
        n, starts = len(group.names), group.names.starts
        first = min(per_class, n)
        images[0], images[1] = images[0] + first, images[1] + n - first
        nbytes[0], nbytes[1] = nbytes[0] + int(starts[first]), nbytes[1] + int(starts[n]) - int(starts[first])
        types.append(group.sizes.dtype)
    sizes_type = np.result_type(*types)
    return SplitFill(images[0], nbytes[0], sizes_type), SplitFill(images[1], nbytes[1], sizes_type)
