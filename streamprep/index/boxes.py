"""Bounding-box XML files to the classic bboxes.csv lines, parsed safely (no entities, no network)."""

from __future__ import annotations

import threading
from array import array
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np
from lxml import etree

from ..errors import AnnotationError
from .nametable import NameLookup, NameTable, encode

Box = tuple[float, float, float, float]
BOX_BYTES = 32  # a box packed in `XmlBoxes`: four float64

_PARSER_OPTIONS = dict(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                       remove_comments=True, remove_pis=True)


_PARSERS = threading.local()  # one parser a thread, reused (an lxml parser may not be shared between threads)


def _parser() -> etree.XMLParser:
    parser = getattr(_PARSERS, "parser", None)
    if parser is None:
        parser = _PARSERS.parser = etree.XMLParser(**_PARSER_OPTIONS)
    return parser


def _int(text: object, what: str, where: str) -> int:
    """The classic's `int(float(text))`; a missing element counts as -1, as in the classic."""
    if text == -1:
        return -1
    try:
        return int(float(text))  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        raise AnnotationError(f"{where}: <{what}> is {text!r}, not a number; fix or remove this XML file")


def parse_boxes(data: bytes, where: str) -> list[Box]:
    """The kept boxes of one PASCAL VOC file, scaled, ordered, clamped, as the classic computes them."""
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as e:
        raise AnnotationError(f"{where}: not well-formed XML ({e}); fix or remove this XML file") from e
    docinfo = root.getroottree().docinfo
    dtd = docinfo.internalDTD
    if dtd is not None and any(True for _ in dtd.iterentities()):
        raise AnnotationError(f"{where}: declares XML entities, which streamprep refuses to expand; "
                              "remove the DOCTYPE from this XML file")
    if docinfo.doctype:  # under a DOCTYPE the parser keeps an undefined entity as a node, never an error
        for entity in root.iter(etree.Entity):
            raise AnnotationError(f"{where}: refers to the entity {entity.text}, which it does not define (the "
                                  "classic's parser refuses it too); fix or remove this XML file")

    found: dict[str, list[object]] = {"xmin": [], "ymin": [], "xmax": [], "ymax": [], "width": [], "height": []}
    for element in root.iter(*found):  # one walk, each tag's elements in document order
        found[element.tag].append(element.text)
    return _scaled(found, where)


def _scaled(found: dict[str, list[object]], where: str) -> list[Box]:
    """The classic's boxes from each tag's texts in document order: `xmin`s up to the first -1 count the boxes, each
    divided by the first `width` and `height`, ordered, clamped to [0, 1], the empty ones dropped."""
    xmins: list[int] = []
    for text in found["xmin"]:
        value = _int(text, "xmin", where)
        if value == -1:
            break
        xmins.append(value)
    if not xmins:
        return []
    width = float(_int((found["width"] or [-1])[0], "width", where))
    height = float(_int((found["height"] or [-1])[0], "height", where))
    if width == 0 or height == 0:
        raise AnnotationError(f"{where}: image width or height is 0; fix or remove this XML file")
    ymins, xmaxs, ymaxs = found["ymin"], found["xmax"], found["ymax"]
    boxes = []
    for i, x0 in enumerate(xmins):
        xmin = x0 / width
        ymin = _int(ymins[i] if i < len(ymins) else -1, "ymin", where) / height
        xmax = _int(xmaxs[i] if i < len(xmaxs) else -1, "xmax", where) / width
        ymax = _int(ymaxs[i] if i < len(ymaxs) else -1, "ymax", where) / height
        if xmax < xmin:
            xmin, xmax = xmax, xmin
        if ymax < ymin:
            ymin, ymax = ymax, ymin
        box = (min(max(xmin, 0.0), 1.0), min(max(ymin, 0.0), 1.0), min(max(xmax, 0.0), 1.0), min(max(ymax, 0.0), 1.0))
        if box[0] < box[2] and box[1] < box[3]:
            boxes.append(box)
    return boxes


def csv_lines(stem: str, boxes: Iterable[Box]) -> str:
    """The classic's bboxes.csv lines of one XML file (`stem.JPEG,xmin,ymin,xmax,ymax`, 4 decimals)."""
    return _lines(f"{stem}.JPEG", _texts([v for box in boxes for v in box]))


def _texts(values: Iterable[float]) -> list[str]:
    """Box coordinates as bboxes.csv writes them: 4 decimals."""
    return ["%.4f" % v for v in values]


def _lines(image: str, texts: list[str]) -> str:
    """bboxes.csv's lines of one image's boxes, from their coordinates' texts (`_texts`), four a box."""
    return "".join(f"{image},{texts[i]},{texts[i + 1]},{texts[i + 2]},{texts[i + 3]}\n"
                   for i in range(0, len(texts), 4))


class DuplicateXml(ValueError):
    """Two XML files of the same folder and name (its text: `folder/file name`)."""


@dataclass(frozen=True, slots=True)
class XmlBoxes:
    """One parsed XML file: its synset folder, its file name (`stem.xml`) and its kept boxes, packed.

    The boxes are float64 (xmin, ymin, xmax, ymax) back to back in one bytes object: at full scale the walk
    holds 544,546 of these at once, and a list of tuples of floats costs five times the memory.
    """

    folder: str
    file_name: str
    packed: bytes

    @classmethod
    def of(cls, folder: str, file_name: str, boxes: list[Box]) -> "XmlBoxes":
        return cls(folder, file_name, array("d", [v for box in boxes for v in box]).tobytes() if boxes else b"")

    @property
    def boxes(self) -> list[Box]:
        values = array("d", self.packed)
        return [tuple(values[i:i + 4]) for i in range(0, len(values), 4)]  # type: ignore[misc]


@dataclass(frozen=True)
class BoxTable:
    """All boxes: the bboxes.csv text, and each image's boxes as the classic reads them back."""

    csv: bytes | bytearray  # built in place, not copied (at full scale 30 MB)
    rows: np.ndarray  # float32 (n, 4): xmin, ymin, xmax, ymax as parsed back from the %.4f text
    xml_rows: np.ndarray  # int64 (files + 1,): file i owns rows[xml_rows[i]:xml_rows[i + 1]]
    images: NameTable  # the image name (`stem.JPEG`) of each file with boxes, in csv order
    image_files: np.ndarray  # int64: the file number of each of `images`
    lookup: NameLookup  # image name -> its entries of `images` (a name may be in two folders)
    files: int

    @classmethod
    def build(cls, files: list[XmlBoxes], consume: bool = False) -> "BoxTable":
        """From the parsed XML files in any order, sorted by (folder, file name) (the list is sorted in place;
        with `consume`, each file's entry is dropped once used, so that at full scale, 544,546 files, their
        objects and the table do not all live at once). A name held twice raises `DuplicateXml`.

        Nothing here splits or counts text: a name may hold any character (a newline, U+2028, a
        comma), and each file's rows are its own boxes, never lines parsed back from bboxes.csv.
        """
        files.sort(key=lambda f: (f.folder, f.file_name))
        starts = array("q", [0])
        values = array("f")
        names, name_starts, image_files = bytearray(), array("q", [0]), array("q")
        csv = bytearray()
        previous = None
        count, last = len(files), 0
        for number in range(count):
            xml = files[number]
            if consume:
                files[number] = None  # type: ignore[call-overload]
            if (xml.folder, xml.file_name) == previous:
                raise DuplicateXml(f"{xml.folder}/{xml.file_name}")
            previous = (xml.folder, xml.file_name)
            last += len(xml.packed) // BOX_BYTES
            starts.append(last)
            if not xml.packed:
                continue
            # The classic reads its own bboxes.csv back: the %.4f text (`_texts`) is what the records hold.
            texts = _texts(array("d", xml.packed))
            values.extend(map(float, texts))
            image = f"{xml.file_name[:-len('.xml')]}.JPEG"
            names += encode(image)
            name_starts.append(len(names))
            image_files.append(number)
            csv += _lines(image, texts).encode("utf-8", "surrogateescape")
        rows = np.frombuffer(values, dtype=np.float32).astype("<f4").reshape(-1, 4)
        images = NameTable(bytes(names), np.frombuffer(name_starts, dtype=np.int64))
        return cls(csv, rows, np.frombuffer(starts, dtype=np.int64), images,
                   np.frombuffer(image_files, dtype=np.int64), NameLookup.of(images), count)

    @classmethod
    def empty(cls) -> "BoxTable":
        return cls.build([])

    def boxes_of(self, filename: str) -> np.ndarray:
        """The (n, 4) float32 boxes of an image base name, in bboxes.csv order."""
        return self.boxes_of_many([encode(filename)])[0]

    def boxes_of_many(self, filenames: list[bytes]) -> list[np.ndarray]:
        """`boxes_of` for many encoded names at once (one search for all of them)."""
        out = []
        none, rows, xml_rows, image_files = self.rows[:0], self.rows, self.xml_rows, self.image_files
        for entries in self.lookup.find(self.images, filenames):
            if not entries:  # most images have no boxes
                out.append(none)
                continue
            parts = [rows[xml_rows[f]:xml_rows[f + 1]] for f in image_files[entries].tolist()]
            out.append(parts[0] if len(parts) == 1 else np.concatenate(parts))
        return out

    def entries(self) -> Iterator[tuple[str, np.ndarray]]:
        """(image name, its boxes) of each XML file with boxes, in bboxes.csv order."""
        for entry, number in enumerate(self.image_files.tolist()):
            yield self.images[entry], self.rows[self.xml_rows[number]:self.xml_rows[number + 1]]

    @property
    def count(self) -> int:
        return len(self.rows)
