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
from .images import DatasetIndex, Ignored, Skipped, _Group, assemble, class_images, class_tars, walk_class_tars
from .labels import LabelData
from .nametable import NameTable

Classes = dict[str, tuple[str, _Group]]  # synset -> (its class tar's name, its images sorted by the bytes of names)


def walk_synset_tars(sources: dict[str, Source], labels: LabelData, workers: int, progress: Callback | None,
                     stop: threading.Event | None, dataset: Dataset, options: dict[str, Any]) -> DatasetIndex:
    """The index of an archive or folder of per-synset tars (`sources["train"]`), split by the recipe in
    `options` (`split_recipe`, `keep_classes_over`, `validation_per_class`); no boxes."""
    source, ignored = sources["train"], Ignored()
    if source.url.endswith((".tar.gz", ".tgz")):
        raise ArchiveError(f"{source.url}: a gzipped archive, which streamprep does not read in place yet; pass the "
                           "extracted outer tar (gunzip it) or a folder of the per-synset tars")
    walk = _walk_folder if isinstance(source, FolderSource) else _walk_archive
    classes = walk(source, labels, ignored, workers, progress, stop, dataset)
    if not classes:
        raise ArchiveError(f"{source.url}: holds no per-synset tar ({dataset.members.class_tar_glob}) of a synset in "
                           f"the labels file {labels.sources.get('labels', '')}; pass {dataset.download('train').name} "
                           "or a folder of per-synset tars")
    validation, train, synsets = split(source.url, classes, options, ignored, dataset)
    return DatasetIndex((validation, train), BoxTable.empty(), ignored, Skipped(), dataset=dataset.name,
                        synsets=synsets)


def _walk_archive(source: Source, labels: LabelData, ignored: Ignored, workers: int, progress: Callback | None,
                  stop: threading.Event | None, dataset: Dataset) -> Classes:
    """The class tars of one archive (fall11_whole.tar), walked as ILSVRC2012's training tar is."""
    containers: dict[int, str] = {}
    with Phase(progress, "index classes", total_bytes=source.size, unit="images") as phase:

        def walk(item: tuple[int, TarMember], read_at: ReadAt | None) -> tuple[str, tuple[str, _Group]]:
            check_stop(stop)
            label, outer = item
            group = class_images(source, outer, ignored, read_at, dataset)
            phase.advance(len(group.names), outer.size + 512)
            return labels.synsets[label - 1], (outer.name, by_bytes(group))

        return dict(walk_class_tars(
            source, lambda read_at: class_tars(source, labels, ignored, containers, read_at, dataset), walk, workers,
            stop))


def _walk_folder(source: FolderSource, labels: LabelData, ignored: Ignored, workers: int,
                 progress: Callback | None, stop: threading.Event | None, dataset: Dataset) -> Classes:
    """The per-synset tars of a folder, each read forward from its own file (read ahead remotely); the folder's
    other entries and tars of synsets not in the labels file ignored."""
    for name in source.others:
        ignored.add(f"{source.url}!{name}", f"not a class tar ({dataset.members.class_tar_glob}) in the folder")
    wanted = []
    for k, (name, _) in enumerate(source.parts):
        synset = dataset.members.class_synset(name)
        if synset is None or labels.label(synset) is None:
            ignored.add(f"{source.url}!{name}", "class tar of a synset not in the labels file")
            continue
        wanted.append((k, synset))
    with Phase(progress, "index classes", total_bytes=source.size, unit="images") as phase:

        def walk(item: tuple[int, str]) -> tuple[str, tuple[str, _Group]]:
            check_stop(stop)
            k, synset = item
            outer, part, base = source.member(k), source.part(k), source.starts[k]
            with sequential_reader(part, outer.size) as read_at:
                group = class_images(source, outer, ignored, lambda at, n: read_at(at - base, n), dataset)
            phase.advance(len(group.names), outer.size)
            return synset, (outer.name, by_bytes(group))

        return dict(_in_parallel(walk, wanted, workers, stop))


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
    rows = sorted(range(len(group.names)), key=group.names.raw)
    return take(group, rows) if rows != list(range(len(rows))) else group


def take(group: _Group, rows: list[int]) -> _Group:
    """The images at `rows` of a class, in that order."""
    blob = b"".join(group.names.raw(i) for i in rows)
    starts = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum([len(group.names.raw(i)) for i in rows], out=starts[1:])
    picked = np.asarray(rows, dtype=np.int64)
    return _Group(NameTable(blob, starts), group.offsets[picked], group.sizes[picked])


def split(archive: str, classes: Classes, options: dict[str, Any], ignored: Ignored,
          dataset: Dataset) -> tuple[Any, Any, tuple[str, ...]]:
    """The recipe: (validation, train, the synsets kept, sorted: label k is synsets[k - 1])."""
    every = options["split_recipe"] == "all"
    over, per_class = options["keep_classes_over"], 0 if every else options["validation_per_class"]
    kept = sorted(s for s, (_, g) in classes.items() if every or len(g.names) > over)
    for synset in sorted(set(classes) - set(kept)):
        ignored.add(f"{archive}!{classes[synset][0]}", f"class tar of {over:,} or fewer {dataset.members.image_glob} "
                    "files (--split-recipe 21k-p drops the class)")
    train: dict[int, _Group] = {}
    validation: dict[int, _Group] = {}
    containers: dict[int, str] = {}
    for label, synset in enumerate(kept, 1):
        container, group = classes[synset]
        first = min(per_class, len(group.names))
        validation[label] = take(group, list(range(first)))
        train[label] = take(group, list(range(first, len(group.names))))
        containers[label] = container
    return (assemble("validation", archive, validation, containers), assemble("train", archive, train, containers),
            tuple(kept))
