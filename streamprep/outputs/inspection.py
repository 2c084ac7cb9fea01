"""What `streamprep inspect` found in one file, as plain values, and how each file kind numbers its labels."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..index.images import Ignored

SHOWN = 20  # records, members or lines listed by default

# How each kind of file numbers its classes: said beside every label inspect shows, in the file's own numbering.
CLASSIC_LABELS = ("image/class/label as stored: the classic's 1..1000 (label k is line k of the synsets file; "
                  "0 is background, unused)")
WEBDATASET_LABELS = (".cls as stored: 0..999 (the synset's index in the synsets file; the classic's "
                     "image/class/label is this + 1)")
TFDS_LABELS = ("label as stored: TFDS's 0..999 (the index in label.labels.txt; the classic's image/class/label is "
               "this + 1)")
DOWNLOAD_LABELS = ("as convert gives them: the classic's 1..1000 (line k of the synsets file); WebDataset's .cls "
                   "and TFDS's label are one less, 0..999")
MANIFEST_LABELS = "class_counts: by the classic's label, 1..1000, whatever the format"
SYNSET_LIST_LABELS = "line k: the classic's label k, a WebDataset .cls and a TFDS label k - 1"


class NotRecognised(Exception):
    """The file is none of those inspect reads: `str()` says what it is instead (`inspect` adds what it takes)."""


@dataclass
class Inspection:
    """What `inspect` found: the kind of file, what it says of itself, counts, the first entries, and for a
    download the members convert leaves out and why."""

    url: str
    kind: str  # "training tar", "TFRecord shard", "WebDataset shard", "TFDS TFRecord shard", "manifest.json", ...
    size: int
    counts: dict[str, int] = field(default_factory=dict)
    facts: dict[str, str] = field(default_factory=dict)  # what the file says of itself (version, formats, ...)
    label_numbering: str | None = None  # how the labels shown are numbered: the file's own convention
    per_class: dict[str, int] = field(default_factory=dict)  # synset -> images (a download)
    entries: list[dict[str, Any]] = field(default_factory=list)  # the first records, members or lines
    ignored: dict[str, dict[str, Any]] = field(default_factory=dict)  # reason -> {"count", "examples"}
    more: int = 0  # entries not listed
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def ignored_members(ignored: Ignored) -> dict[str, dict[str, Any]]:
    """Members left out, by reason, as plain values."""
    return {reason: {"count": n, "examples": ignored.examples[reason]} for reason, n in sorted(ignored.counts.items())}


def rounded(box: Any) -> list[float]:
    return [round(float(v), 4) for v in box]
