"""What `streamprep inspect` finds in one file, as plain values, and the hooks by which a format's reader takes it.

`outputs.inspect` recognises a file by its content: the downloads itself (`index.inspect`), the
files beside the shards itself, and each format's files by asking that format's `Reader` (its
registry entry's `reader()`), format after format in the registry's order.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable

from .errors import OutputUnreadableError

if TYPE_CHECKING:
    from .archives.storage import Source

LabelData = Any  # `index.labels.LabelData` (the index lies above this module): the label data a reader names labels by

SHOWN = 20  # records, members or lines listed by default

# How each kind of file numbers its classes: said beside every label inspect shows, in the file's own numbering
# (each format's reader says its own).
DOWNLOAD_LABELS = ("as convert gives them: the classic's 1..1000 (line k of the synsets file); WebDataset's .cls "
                   "and TFDS's label are one less, 0..999")
MANIFEST_LABELS = "class_counts: by the classic's label, 1..1000, whatever the format"
SYNSET_LIST_LABELS = "line k: the classic's label k, a WebDataset .cls and a TFDS label k - 1"

Lines = Iterable[tuple[int, str]]  # a text file's lines, numbered from 1, without their line ends


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


class Reader:
    """How `inspect` takes one format's files: each hook is asked in turn for a file no earlier format took, and
    returns what the file holds, or None when it is not one of the format's (the next format is asked). A hook may
    raise `NotRecognised` saying what the file is instead: that is reported only if no later format takes it."""

    def binary(self, source: Source, head: bytes, labels: LabelData, limit: int) -> Inspection | None:
        """A file by its first bytes (`head`): a signature, a record's framing."""
        return None

    def tar(self, source: Source, member: str | None, labels: LabelData, limit: int) -> Inspection | None:
        """A tar whose first telling member (no folder, not a download's) is named `member` (None: an empty tar)."""
        return None

    def text(self, source: Source, first: str, lines: Callable[[], Lines], limit: int) -> Inspection | None:
        """A text file by its first line (`lines()` reads them all): a DALI index."""
        return None

    def json(self, source: Source, data: dict[str, Any], limit: int) -> Inspection | None:
        """A JSON object: a file the format writes beside its shards."""
        return None

    def empty(self, source: Source, labels: LabelData, limit: int) -> Inspection | None:
        """An empty file, told by its name alone (an empty shard, or its empty index)."""
        return None


def rounded(box: Any) -> list[float]:
    return [round(float(v), 4) for v in box]


def read_failed(source: Source, what: str, e: BaseException) -> OutputUnreadableError:
    """A damaged file's one-line error: where reading stopped, and where to learn more."""
    why = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
    return OutputUnreadableError(f"{source.url}: {what} cannot be read ({why}); `streamprep verify` on its folder says "
                                 "what is wrong with it")


def shard_beside(source: Source, suffix: str = ".idx") -> str:
    """The shard an index file (`SHARD.idx`) describes, and whether it lies beside it."""
    shard = source.path.removesuffix(suffix)
    name = shard.rpartition("/")[2]
    try:
        return f"{name} (beside it)" if source.fs.isfile(shard) else f"{name} (not beside it)"
    except OSError:
        return name
