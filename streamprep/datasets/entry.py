"""The shape of a dataset entry: its downloads, how their members become images, labels and boxes, its default plan.

An entry is data and a few small functions of a member's name; it reads nothing itself. The walks in `index/`
take it as a parameter and ask it the dataset's questions (is this member an image? which synset does this class
tar hold? which image does line k of the validation labels file label?); `--check-md5`
(`archives.checksums.check`) takes its downloads' published sums; `options.Options` finds each download in a
DOWNLOADS folder under its official name. Nothing here imports the rest of streamprep, so every part of the flow
may import it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass(frozen=True)
class OwnOption:
    """One option a dataset's or a format's entry alone reads: a field the option table (`options.Options`) gets
    from the entry, with its flag (`--NAME` with dashes), config key, help and manifest entry, as every other option
    has (`Dataset.options`, `outputs.format.Format.options`, where it is also known as `FormatOption`)."""

    default: Any  # its value when not given; its type (str, int, bool, float) is the option's
    help: str
    metavar: str | None = None
    default_text: str | None = None  # the default as the help shows it, when not `default` itself

    @property
    def kind(self) -> str:
        """Its type as `options.Options` annotates a field ("int", "str", ...)."""
        return type(self.default).__name__


@dataclass(frozen=True)
class Download:
    """One file a dataset is made from, as its publisher lists it."""

    role: str  # the option that names it (--train, --val, --bbox) and its key in manifest.json's inputs and md5
    name: str  # the official file name: looked for under it in a DOWNLOADS folder, and only then MD5-checked
    md5: str  # the published MD5 (`--check-md5`)
    about: float  # its size in bytes, as rounded on the download page
    shown: str  # that size as the page shows it ("138 GB")
    what: str  # what it is, for messages ("training tar")
    required: bool = True  # a conversion needs it (an optional one, such as a later box archive, may be absent)
    # The files a folder may hold in its stead, as a glob ("n*.tar": per-synset tars), or None. With one, the
    # download may be given as the file, a folder holding it under its official name, or a folder of such files
    # (local or a URL prefix), and DOWNLOADS names it itself (`options.Options`, `engines.pipeline.open_download`).
    folder_glob: str | None = None

    def plausible(self, size: int) -> bool:
        """Whether a file of `size` bytes may be this download (within 5% of the published size)."""
        return abs(size - self.about) <= 0.05 * self.about


@dataclass(frozen=True)
class Members:
    """How the members of the image archives become images: the dataset's rules; the walks in `index/images.py`
    keep the mechanics (tar headers, nesting, links, duplicates, the top of an archive)."""

    image_glob: str  # the image names' pattern, as messages and the ignored members' reasons show it ("*.JPEG")
    is_image: Callable[[str], bool]  # whether a member name (normalised, at the top of its tar) is an image
    class_tar_glob: str  # the class tars' pattern, as messages show it ("nXXXXXXXX.tar")
    class_synset: Callable[[str], str | None]  # the synset a training-tar member holds, or None: not a class tar
    validation_image: str  # `validation_image % k` is the image line k (from 1) of the validation labels file labels
    validation_pattern: re.Pattern[str]  # every validation image's name: spots the validation tar given as --train

    def is_validation_image(self, name: str) -> bool:
        return self.validation_pattern.fullmatch(name) is not None


@dataclass(frozen=True)
class LabelFile:
    """One label file: the copy shipped in `streamprep/data/`, the option that replaces it, its key in
    `LabelData.sources`."""

    role: str  # "labels" (synsets, line k is label k), "metadata" (synset<TAB>text), "validation" (line i: image i)
    shipped: str  # the file name under streamprep/data/
    option: str  # the `Options` field (and so the flag) that replaces it: labels_file -> --labels-file
    what: str  # what messages call it ("labels file")


@dataclass(frozen=True)
class Fixups:
    """The images the classic re-encodes, by file name: the PNG by the classic's substring test, the CMYK JPEGs by
    the whole name. How they are re-encoded (as TensorFlow does) is `records/fixups.py`'s; which names, the
    dataset's."""

    png: frozenset[str]
    cmyk: frozenset[str]

    @property
    def names(self) -> tuple[str, ...]:
        """Every fix-up name, the PNG first, then the CMYK JPEGs sorted."""
        return (*sorted(self.png), *sorted(self.cmyk))


@dataclass(frozen=True)
class Boxes:
    """Where the bounding boxes come from: one download of one XML file per image (`index/boxwalk.py` walks it)."""

    download: str  # the role of the download that holds them ("bbox")
    split: str  # the split whose images they belong to ("train")
    xml_glob: str  # the XML files read, as the classic globs them once extracted ("*/*.xml": folder per synset)


@dataclass(frozen=True)
class DefaultPlan:
    """The dataset's default plan: the classic's shard counts and the thread count that places the cuts."""

    train_shards: int
    validation_shards: int
    classic_threads: int


@dataclass(frozen=True)
class Dataset:
    """One dataset: what `--dataset NAME` means. Register another with `streamprep.datasets.register`."""

    name: str  # the --dataset value
    # What the outputs' own metadata call it (timm's `_info.json` and wids' `name`): `imagenet2012` for ILSVRC2012,
    # as TFDS and the published WebDataset copies name it.
    output_name: str
    title: str  # one line, for `--help` and the docs
    downloads: tuple[Download, ...]
    members: Members
    labels: tuple[LabelFile, ...]
    fixups: Fixups
    boxes: Boxes | None  # None: the dataset has no boxes (no box walk, an empty bboxes.csv)
    plan: DefaultPlan
    split_boxes: tuple[Boxes, ...] = ()  # another split's boxes, each from an optional download (--bbox-val)
    # Its own options (`--split-recipe`, ...): each a field of `options.Options`, refused with another --dataset,
    # recorded in the run record; its walk reads them (`index.build.build_index`'s `dataset_options`).
    options: dict[str, OwnOption] = field(default_factory=dict, hash=False)
    # The shape of its walk, by name (`index.build.WALKS`): "" for ILSVRC2012's (a training tar of class tars, a
    # validation tar labelled by a labels file, a box archive); "synset_tars" for one archive (or folder) of class
    # tars whose validation split a recipe chooses (`index.synset_tars`).
    walk: str = ""
    # What is wrong with values of its own options (by field name), as a one-line message, or None.
    check_options: Callable[[dict[str, Any]], str | None] | None = None

    def download(self, role: str) -> Download:
        """The download of this role (train, val, bbox)."""
        for download in self.downloads:
            if download.role == role:
                return download
        raise KeyError(f"dataset {self.name} has no {role} download; its downloads: "
                       f"{', '.join(d.role for d in self.downloads)}")

    @property
    def published(self) -> dict[str, Download]:
        """Each download by role: what `--check-md5` compares with."""
        return {d.role: d for d in self.downloads}

    def label_file(self, role: str) -> LabelFile:
        """The label file of this role (labels, metadata, validation)."""
        for label_file in self.labels:
            if label_file.role == role:
                return label_file
        raise KeyError(f"dataset {self.name} has no {role} label file")
