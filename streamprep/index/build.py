"""The whole index of a run: the bounding boxes walked beside the validation and training tars."""

from __future__ import annotations

import threading
from typing import Any

from ..archives.storage import Source
from ..datasets import ILSVRC2012, Dataset
from ..progress import Callback, Stopped
from .boxwalk import BoxWalk
from .images import DatasetIndex, Ignored, Skipped, index_train, index_validation
from .labels import LabelData
from .synset_tars import walk_synset_tars

WALKS = {"synset_tars": walk_synset_tars}  # `Dataset.walk` -> the walk of that shape


def build_index(sources: dict[str, Source], labels: LabelData, workers: int, progress: Callback | None = None,
                skip_bad_xml: bool = False, stop: threading.Event | None = None,
                complete_validation: bool = True, tfds: bool = False, dataset: Dataset = ILSVRC2012,
                dataset_options: dict[str, Any] | None = None) -> DatasetIndex:
    """Walk the three archives (headers only for the image tars); whichever walk fails first stops the others.
    The image tars are walked by the dataset's member rules (`datasets`), or with `tfds` by TFDS's (`--format tfds`:
    `images.index_train_tfds`).

    `stop`, when the caller sets it, stops every walk at its next unit of work (`Stopped` is raised).
    """
    if dataset.walk:  # a walk of another shape, which its entry names (`WALKS`), with the dataset's own options
        return WALKS[dataset.walk](sources, labels, workers, progress, stop, dataset, dataset_options or {})
    stop = stop or threading.Event()
    ignored = Ignored()
    walks = {"": BoxWalk(sources["bbox"], progress, skip_bad_xml, stop)}
    for boxes in dataset.split_boxes:  # a split's own boxes, when its optional download is given (--bbox-val)
        if boxes.download in sources:
            official = dataset.download(boxes.download).name
            walks[boxes.split] = BoxWalk(sources[boxes.download], progress, skip_bad_xml, stop,
                                         (official, f"{boxes.split} boxes"))
    try:
        validation = index_validation(sources["val"], labels, ignored, progress, stop, complete_validation, tfds,
                                      dataset)
        train = index_train(sources["train"], labels, ignored, workers, progress, stop, tfds, dataset)
        found = {split: walk.result() for split, walk in walks.items()}
    except Stopped:
        _raise_failed(list(walks.values()))
        raise
    except BaseException:
        _cancel(list(walks.values()))
        raise
    skipped = Skipped()
    for result in found.values():
        ignored.merge(result.ignored)
        skipped.merge(result.skipped)
    return DatasetIndex((validation, train), found.pop("").table, ignored, skipped,
                        {split: result.table for split, result in found.items()})


def _raise_failed(walks: list[BoxWalk]) -> None:
    """The error of a box walk that failed (it stopped the image walks; another box walk it stopped too fails with
    `Stopped`), every walk cancelled first."""
    ended = [w for w in walks if w.failed]
    failed = next((w for w in ended if not isinstance(w.outcome.error, Stopped)), ended[0] if ended else None)
    _cancel([w for w in walks if w is not failed])
    if failed is not None:
        failed.result()


def _cancel(walks: list[BoxWalk]) -> None:
    for walk in walks:
        walk.cancel()
