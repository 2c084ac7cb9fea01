"""A dataset's label files (ILSVRC2012's: the classic's three): shipped defaults, overridable by path or URL."""

from __future__ import annotations

import hashlib

from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from ..datasets import ILSVRC2012, Dataset
from ..errors import LabelDataError

# The default dataset's shipped files by name (the entry, `datasets/ilsvrc2012.py`, lists them).
SYNSETS_FILE = ILSVRC2012.label_file("labels").shipped
METADATA_FILE = ILSVRC2012.label_file("metadata").shipped
VALIDATION_LABELS_FILE = ILSVRC2012.label_file("validation").shipped


def shipped(name: str) -> str:
    """Path of a label file shipped inside the package."""
    return str(resources.files("streamprep") / "data" / name)


def _read_lines(url: str, what: str, storage_options: dict[str, Any] | None = None) -> list[str]:
    from ..archives.storage import rejected_options, resolve

    fs, path = resolve(url, storage_options)
    try:
        with fs.open(path, "rt", encoding="utf-8") as f:
            return [line.strip() for line in f.readlines()]
    except FileNotFoundError as e:
        raise LabelDataError(f"{what} {url} not found; pass an existing file or drop the flag to use the shipped "
                             "one") from e
    except IsADirectoryError as e:
        raise LabelDataError(f"{what} {url} is a folder; pass the file itself, or drop the flag to use the shipped "
                             "one") from e
    except UnicodeDecodeError as e:
        raise LabelDataError(f"{what} {url} is not UTF-8 text ({e}); pass the right file") from e
    except OSError as e:
        raise LabelDataError(f"{what} {url} cannot be read ({e}); check the path or URL") from e
    except TypeError as e:
        raise rejected_options(url, e) from e


def _without_trailing_blanks(lines: list[str], url: str, what: str) -> list[str]:
    while lines and not lines[-1]:
        lines.pop()
    if "" in lines:
        raise LabelDataError(f"{what} {url} has an empty line {lines.index('') + 1}; remove it")
    return lines


@dataclass(frozen=True)
class LabelData:
    """Synsets (line k is label k), synset texts, and the synset of each validation image."""

    synsets: tuple[str, ...]
    texts: dict[str, str]
    validation: tuple[str, ...]
    sources: dict[str, str] = field(default_factory=dict)
    _labels: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_labels", {s: i + 1 for i, s in enumerate(self.synsets)})

    def digest(self) -> str:
        """sha256 of everything here that reaches the records (synsets, their texts, validation labels)."""
        h = hashlib.sha256()
        for part in (self.synsets, [f"{k}\t{v}" for k, v in sorted(self.texts.items())], self.validation):
            h.update("\n".join(part).encode("utf-8", "surrogateescape") + b"\0")
        return h.hexdigest()

    def label(self, synset: str) -> int | None:
        """The classic label of a synset (1-based line number), or None if not a challenge synset."""
        return self._labels.get(synset)

    def text(self, synset: str) -> str:
        try:
            return self.texts[synset]
        except KeyError:
            raise LabelDataError(
                f"metadata file {self.sources.get('metadata', '')} has no text for synset {synset}; "
                "pass a --metadata-file that covers every synset of --labels-file")


def load_synsets(url: str, storage_options: dict[str, Any] | None = None) -> tuple[str, ...]:
    lines = _without_trailing_blanks(_read_lines(url, "labels file", storage_options), url, "labels file")
    seen: dict[str, int] = {}
    for number, synset in enumerate(lines, 1):
        if synset in seen:
            raise LabelDataError(f"labels file {url} lists {synset} twice (lines {seen[synset]} and {number}); remove one")
        seen[synset] = number
    return tuple(lines)


def load_texts(url: str, storage_options: dict[str, Any] | None = None) -> dict[str, str]:
    texts: dict[str, str] = {}
    for number, line in enumerate(_read_lines(url, "metadata file", storage_options), 1):
        if not line:
            continue
        parts = line.split("\t")
        if len(parts) != 2:
            raise LabelDataError(
                f"metadata file {url} line {number} is not 'synset<TAB>text': {line[:80]!r}; fix the line")
        texts[parts[0]] = parts[1]
    return texts


def load_validation(url: str, storage_options: dict[str, Any] | None = None) -> tuple[str, ...]:
    lines = _read_lines(url, "validation labels file", storage_options)
    return tuple(_without_trailing_blanks(lines, url, "validation labels file"))


def load_label_data(labels_file: str | None = None, metadata_file: str | None = None,
                    validation_labels_file: str | None = None,
                    storage_options: dict[str, Any] | None = None, dataset: Dataset = ILSVRC2012) -> LabelData:
    """Read the dataset's three label files (paths or URLs); None means its copy shipped with streamprep."""
    given = {"labels": labels_file, "metadata": metadata_file, "validation": validation_labels_file}
    roles = {f.role for f in dataset.labels}  # a dataset without a validation labels file (ImageNet-21k) has none
    for role in set(given) - roles:
        if given[role]:
            raise LabelDataError(f"{role} file {given[role]}: --dataset {dataset.name} has no such label file; "
                                 "leave the flag out")
    sources = {role: url or shipped(dataset.label_file(role).shipped) for role, url in given.items() if role in roles}
    return LabelData(
        synsets=load_synsets(sources["labels"], storage_options),
        texts=load_texts(sources["metadata"], storage_options),
        validation=load_validation(sources["validation"], storage_options) if "validation" in sources else (),
        sources=sources,
    )
