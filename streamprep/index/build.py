"""The whole index of a run: the bounding boxes walked beside the validation and training tars."""

from __future__ import annotations

import threading

from ..archives.storage import Source
from ..datasets import ILSVRC2012, Dataset
from ..progress import Callback, Stopped
from .boxwalk import BoxWalk
from .images import DatasetIndex, Ignored, Skipped, index_train, index_validation
from .labels import LabelData


def build_index(sources: dict[str, Source], labels: LabelData, workers: int, progress: Callback | None = None,
                skip_bad_xml: bool = False, stop: threading.Event | None = None,
                complete_validation: bool = True, tfds: bool = False, dataset: Dataset = ILSVRC2012) -> DatasetIndex:
    """Walk the three archives (headers only for the image tars); whichever walk fails first stops the others.
    The image tars are walked by the dataset's member rules (`datasets`), or with `tfds` by TFDS's (`--format tfds`:
    `images.index_train_tfds`).

    `stop`, when the caller sets it, stops every walk at its next unit of work (`Stopped` is raised).
    """
    stop = stop or threading.Event()
    ignored = Ignored()
    boxes = BoxWalk(sources["bbox"], progress, skip_bad_xml, stop)
    try:
        validation = index_validation(sources["val"], labels, ignored, progress, stop, complete_validation, tfds,
                                      dataset)
        train = index_train(sources["train"], labels, ignored, workers, progress, stop, tfds, dataset)
    except Stopped:
        if boxes.done.is_set():
            boxes.result()  # raises the error that stopped the walks
        boxes.cancel()
        raise
    except BaseException:
        boxes.cancel()
        raise
    found = boxes.result()
    ignored.merge(found.ignored)
    skipped = Skipped()
    skipped.merge(found.skipped)
    return DatasetIndex((validation, train), found.table, ignored, skipped)
