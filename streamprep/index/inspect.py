"""`streamprep inspect` of the three downloads, walked as convert walks them (headers only for the image tars)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from ..archives.storage import Source
from .boxwalk import index_boxes
from .images import VALIDATION_NAME, Ignored, SplitIndex, index_train, index_validation
from .labels import LabelData
from ..inspection import DOWNLOAD_LABELS, Inspection, NotRecognised, rounded

NOT_IN_LABELS = "validation image of a synset not in the labels file"  # index.images' reason


def ignored_members(ignored: Ignored) -> dict[str, dict[str, Any]]:
    """Members left out, by reason, as plain values."""
    return {reason: {"count": n, "examples": ignored.examples[reason]} for reason, n in sorted(ignored.counts.items())}


def _images(found: Inspection, split: SplitIndex, labels: LabelData, limit: int) -> None:
    """Per class counts and the first images, in the classic's list order (synsets file order, then name)."""
    per_class: Counter = Counter()
    for label in split.labels:
        per_class[labels.synsets[int(label) - 1]] += 1
    found.per_class = {s: per_class[s] for s in labels.synsets if s in per_class}
    found.label_numbering = DOWNLOAD_LABELS
    for i in range(min(limit, len(split))):
        label = int(split.labels[i])
        synset = labels.synsets[label - 1]
        container = split.containers.get(label)
        found.entries.append({"member": f"{container}!{split.names[i]}" if container else split.names[i],
                              "label": label, "synset": synset, "text": labels.texts.get(synset),
                              "bytes": int(split.sizes[i])})
    found.more = len(split) - len(found.entries)


def training(source: Source, labels: LabelData, limit: int) -> Inspection:
    """The training tar: its class tars' images as convert indexes them."""
    ignored = Ignored()
    split = index_train(source, labels, ignored)
    found = Inspection(source.url, "training tar", source.size)
    _images(found, split, labels, limit)
    found.counts = {"classes": len(found.per_class), "images": len(split)}
    found.ignored = ignored_members(ignored)
    return found


def validation(source: Source, labels: LabelData, limit: int) -> Inspection:
    """The validation tar: its images labelled by the validation labels file, as convert labels them."""
    ignored = Ignored()
    split = index_validation(source, labels, ignored, complete=False)
    found = Inspection(source.url, "validation tar", source.size)
    _images(found, split, labels, limit)
    listed = len(labels.validation)
    found.counts = {"classes": len(found.per_class), "images": len(split), "listed in the labels file": listed}
    found.ignored = ignored_members(ignored)
    # Every listed image in the tar is either indexed or of a synset the labels file lacks; the rest are missing.
    missing = listed - len(split) - ignored.counts.get(NOT_IN_LABELS, 0)
    if missing > 0:
        indexed = {split.names[i] for i in range(len(split))}
        first = next((VALIDATION_NAME % (k + 1) for k, synset in enumerate(labels.validation)
                      if labels.label(synset) is not None and VALIDATION_NAME % (k + 1) not in indexed), None)
        found.notes.append(
            f"{missing:,} image(s) the validation labels file {labels.sources.get('validation', '')} lists are not "
            f"in this tar{f' (first: {first})' if first else ''}: convert stops on them, but for --format tfds "
            "(which labels images by position); pass this tar's labels file with --validation-labels-file or --config")
    return found


def bounding_boxes(source: Source, limit: int) -> Inspection:
    """The bounding-box tar.gz: its XML files and boxes, in bboxes.csv order."""
    ignored = Ignored()
    table = index_boxes(source, ignored)
    if not table.files:
        first = min((ref for refs in ignored.examples.values() for ref in refs), default=None)
        held = f"first member: {first.rsplit('!', 1)[-1]}" if first else "no member at all"
        raise NotRecognised(f"a gzipped tar without a single bounding-box XML file (FOLDER/NAME.xml; {held}), so "
                            "not the bounding-box archive")
    found = Inspection(source.url, "bounding-box archive", source.size,
                       {"XML files": table.files, "boxes": table.count})
    for image, boxes in table.entries():  # in bboxes.csv order; nothing here splits text a name could hold
        for box in boxes:
            found.entries.append({"image": image, "box": rounded(box)})
        if len(found.entries) >= limit:
            del found.entries[limit:]
            break
    found.more = table.count - len(found.entries)
    found.ignored = ignored_members(ignored)
    return found
