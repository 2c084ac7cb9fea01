"""`streamprep inspect`: what one file streamprep reads or writes holds, recognised by its content, as plain values.

The content decides, never the name alone: a gzip stream is the bounding-box archive; a tar is the
training tar (class tars `nXXXXXXXX.tar` at its top) or the validation tar (`*.JPEG` at its top),
walked as convert walks them (`index.inspect`); text is bboxes.csv, a label file or manifest.json.
Every other file is asked of each registered format's reader in turn (`inspection.Reader`, from the
registry): by its first bytes (a TFRecord shard, the classic's or TFDS's by its first Example's
features; an ArrayRecord shard by Riegeli's signature), as a tar (a WebDataset shard), by its first
line (a DALI index: `v1.2 N`, or `OFFSET LENGTH` lines), as JSON (timm's `_info.json`, TFDS's
`dataset_info.json` or `features.json`). Only an empty file (an empty TFRecord shard, or its empty
DALI index) is told by its name. Anything else is `OutputUnreadableError`: one line saying what the
file is not and what inspect takes.
"""

from __future__ import annotations

import codecs
import gzip
import json
import os
import re
import zlib
from typing import Any, Callable

from ..archives.storage import Source
from ..archives.tarscan import _checksum_ok, normalize
from ..archives.walk import members
from ..errors import ArchiveError, OutputUnreadableError
from ..index import inspect as downloads
from ..index.images import VALIDATION_NAME
from ..index.labels import LabelData
from ..inspection import (MANIFEST_LABELS, SHOWN, SYNSET_LIST_LABELS, Inspection, Lines, NotRecognised, Reader,
                          rounded)
from . import registry
from .manifest import MANIFEST, Manifest

HEAD = 64 << 10  # bytes read first to recognise a file
MAX_JSON = 64 << 20  # a JSON file streamprep writes is far smaller (manifest.json: about 1 MB for 1152 shards)
TAR_PROBE = 1000  # members looked at to tell a tar's kind before giving up
def accepted() -> str:
    """What inspect takes, in words: the downloads, any registered format's files, the other files of an output."""
    return ("inspect takes the training tar, the validation tar, the bounding-box tar.gz, a shard or metadata file of "
            f"any output format ({', '.join(registry.names())}), a DALI .idx, manifest.json, bboxes.csv or a label "
            "file")
SYNSET = re.compile(r"n\d{8}")


def inspect(url: str, labels: LabelData, storage_options: dict[str, Any] | None = None,
            limit: int = SHOWN) -> Inspection:
    """Look inside `url` (a path or fsspec URL): a download, a shard, an index or a file beside the shards."""
    try:
        source = Source(url, storage_options or {})
    except ArchiveError:
        if _is_folder(url):
            raise OutputUnreadableError(f"{url}: a folder; inspect looks at one file (streamprep verify checks a "
                                        "whole output folder)") from None
        raise
    try:
        try:
            return _dispatch(source, labels, limit)
        except NotRecognised as e:
            raise OutputUnreadableError(f"{url}: not a file streamprep reads or writes: {e}; {accepted()}") from None
    finally:
        source.close()


def _is_folder(url: str) -> bool:
    """Whether a local `url` is a folder (a remote one is not asked again: Source's error says it)."""
    return ("://" not in url or url.startswith("file://")) and os.path.isdir(url.removeprefix("file://"))


def _dispatch(source: Source, labels: LabelData, limit: int) -> Inspection:
    head = source.read_at(0, min(HEAD, source.size)) if source.size else b""
    if not head:
        return _empty(source, labels, limit)
    if head[:2] == b"\x1f\x8b":
        if not _gzipped_tar(source):
            raise NotRecognised("gzip, but not a gzipped tar, so not the bounding-box archive")
        return downloads.bounding_boxes(source, limit)
    found = _ask(lambda reader: reader.binary(source, head, labels, limit))
    if found is not None:
        return found
    if _is_tar(head) or (source.size >= 1024 and source.size % 512 == 0 and not any(head)):  # or an empty tar
        return _tar(source, labels, limit)
    text = _as_text(head, complete=len(head) == source.size)
    if text is None:
        raise NotRecognised(_binary(head))
    return _text(source, text, labels, limit)


def _ask(hook: Callable[[Reader], Inspection | None]) -> Inspection | None:
    """What the first format whose reader takes the file found (registry order), or None when none takes it; a
    reader's `NotRecognised` is raised only then."""
    refused = None
    for fmt in registry.formats():
        try:
            found = hook(fmt.reader())
        except NotRecognised as e:
            refused = refused or e
            continue
        if found is not None:
            return found
    if refused is not None:
        raise refused
    return None


def _empty(source: Source, labels: LabelData, limit: int) -> Inspection:
    """An empty file: the only content told by its name (an empty shard, or its empty DALI index)."""
    found = _ask(lambda reader: reader.empty(source, labels, limit))
    if found is None:
        raise NotRecognised("an empty file (only a TFRecord shard, or its DALI index, is ever empty, and is named "
                            "like one: train-00000-of-01024)")
    found.notes.append("an empty file, named like a shard: convert writes one for a split with fewer images than "
                       "shards")
    return found


def _is_tar(block: bytes) -> bool:
    """Whether a file starting with `block` opens with a tar header (its checksum valid)."""
    return len(block) >= 512 and _checksum_ok(block[:512])


def _gzipped_tar(source: Source) -> bool:
    """Whether the gzip stream holds a tar: a first header, or the end-of-archive zeros of an empty one."""
    with source.fs.open(source.path, "rb") as raw, gzip.GzipFile(fileobj=raw) as f:
        try:
            block = f.read(1024)
            return _is_tar(block) or (len(block) == 1024 and not any(block))
        except (OSError, EOFError, zlib.error):  # a damaged stream: the bounding-box walk says where
            return True


def _tar(source: Source, labels: LabelData, limit: int) -> Inspection:
    """A tar, by the members at its top: class tars, validation images, or a format's shard (WebDataset's)."""
    first = None
    for n, m in enumerate(members(source)):
        if m.is_dir:
            continue
        name = normalize(m.name)
        first = first or name
        if "/" not in name and name.endswith(".tar"):
            return downloads.training(source, labels, limit)
        if "/" not in name and name.endswith(".JPEG"):
            return downloads.validation(source, labels, limit)
        found = _ask(lambda reader: reader.tar(source, name, labels, limit))
        if found is not None:
            return found
        if n >= TAR_PROBE:
            break
    found = _ask(lambda reader: reader.tar(source, None, labels, limit)) if first is None else None
    if found is not None:
        return found
    raise NotRecognised(f"a tar, but neither a download (class tars nXXXXXXXX.tar, or *.JPEG, at its top) nor a "
                        f"WebDataset shard (KEY.jpg, KEY.cls, KEY.json); its first member is {first}")


def _as_text(head: bytes, complete: bool) -> str | None:
    """The head as UTF-8 text, or None for binary data (a NUL, or bytes that are no UTF-8)."""
    if b"\0" in head:
        return None
    try:
        return codecs.getincrementaldecoder("utf-8")().decode(head, final=complete)
    except UnicodeDecodeError:
        return None


def _binary(head: bytes) -> str:
    """What binary data is, as far as inspect can tell."""
    if head.startswith(b"\xff\xd8\xff"):
        what = "a JPEG image"
    elif head.startswith(b"\x89PNG"):
        what = "a PNG image"
    else:
        what = "binary data"
    return (f"{what} (it starts with {head[:8].hex(' ')}): no tar header, gzip, TFRecord or ArrayRecord signature")


def _lines(source: Source) -> Lines:
    """The file's lines, numbered from 1, without their line ends; trailing blank lines dropped."""
    blank = 0
    with source.fs.open(source.path, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                raise NotRecognised(f"text up to line {number}, which is not UTF-8") from None
            if not line:
                blank += 1
                continue
            if blank:
                raise NotRecognised(f"text with an empty line {number - 1}: no file streamprep writes has one")
            yield number, line


def _text(source: Source, head: str, labels: LabelData, limit: int) -> Inspection:
    """A text file, by its first line: JSON, a format's (a DALI index), a label file or bboxes.csv."""
    if head.lstrip().startswith(("{", "[")):
        if source.size > MAX_JSON:
            raise NotRecognised(f"JSON of {source.size:,} bytes, larger than any file streamprep writes")
        with source.fs.open(source.path, "rb") as f:
            try:
                data = json.loads(f.read())
            except (ValueError, RecursionError) as e:
                raise NotRecognised(f"text that starts like JSON but is not JSON ({str(e)[:100]})") from None
        return _json(source, data, limit)
    first = head.split("\n", 1)[0].rstrip("\r")
    found = _ask(lambda reader: reader.text(source, first, lambda: _lines(source), limit))
    if found is not None:
        return found
    if SYNSET.fullmatch(first.split("\t", 1)[0]):
        return label_file(source, list(_lines(source)), labels, limit)
    if box_line(first) is not None:
        return bboxes_csv(source, _lines(source), limit)
    raise NotRecognised("text, but neither JSON streamprep writes, bboxes.csv, a DALI index nor a label file "
                        f"(its first line: {first[:40]!r})")


def _json(source: Source, data: Any, limit: int) -> Inspection:
    """One of the JSON files streamprep writes, by its keys: manifest.json, or a format's."""
    if isinstance(data, dict):
        if str(data.get("format", "")).startswith("streamprep-manifest"):
            return manifest(source, data, limit)
        found = _ask(lambda reader: reader.json(source, data, limit))
        if found is not None:
            return found
    raise NotRecognised("JSON, but not manifest.json, timm's _info.json or TFDS's dataset_info.json or features.json")


# --- the files beside the shards: manifest.json, bboxes.csv, the label files -----------------------------------------

def manifest(source: Source, data: dict[str, Any], limit: int) -> Inspection:
    """streamprep's manifest.json: the run, its formats, each split's totals and the files it lists."""
    try:
        m = Manifest.parse(data)
    except ValueError as e:
        raise OutputUnreadableError(f"{source.url}: a streamprep {MANIFEST}, but unusable ({str(e)[:300]}); rerun "
                                    "the convert command that wrote its folder") from e
    given = m.options.get("format") or ",".join(m.run.get("formats", []))
    formats = ",".join(registry.get(n).describe(m.options) if n in registry.names() else n
                       for n in str(given).split(","))
    if m.options.get("dali_index"):
        formats += ", with DALI indexes"
    found = Inspection(source.url, MANIFEST, source.size, label_numbering=MANIFEST_LABELS,
                       facts={"written by": f"streamprep {m.streamprep}", "formats": str(formats),
                              "checksum": f"{m.checksum} of every listed file (verify checks it)",
                              "complete": "yes" if m.complete else
                              "no: rerun the same convert command to finish the conversion"})
    found.counts = {"files listed": len(m.shards)}
    for name, split in (m.totals.splits.items() if m.totals else []):
        found.counts |= {f"{name} images": split.images, f"{name} shards": split.shards,
                         f"{name} classes": split.classes, f"{name} boxes": split.boxes}
    if m.totals and m.totals.bboxes_csv:
        found.counts["bboxes.csv boxes"] = m.totals.bboxes_csv.boxes
    for entry in sorted(m.shards.values(), key=lambda e: e.name):
        if len(found.entries) < limit:
            found.entries.append({"name": entry.name, "records": entry.records, "bytes": entry.bytes,
                                  "index": entry.index.name if entry.index else None})
    found.more = len(m.shards) - len(found.entries)
    if m.totals:
        fixed = sum(len(v) for v in m.totals.fixups.values())
        found.notes.append(f"{fixed:,} fix-up(s) applied, {len(m.totals.skipped):,} bad input file(s) skipped, "
                           f"{sum(e.get('count', 0) for e in m.totals.ignored.values()):,} member(s) of the downloads "
                           "ignored")
    return found


def box_line(line: str) -> tuple[str, list[float]] | None:
    image, *coords = line.rsplit(",", 4)
    try:
        return (image, [float(c) for c in coords]) if len(coords) == 4 and image else None
    except ValueError:
        return None


def bboxes_csv(source: Source, lines: Lines, limit: int) -> Inspection:
    """bboxes.csv: a line per box, `image,xmin,ymin,xmax,ymax`, relative to the image."""
    found = Inspection(source.url, "bboxes.csv", source.size)
    boxes = images = 0
    last = None
    for number, line in lines:
        parsed = box_line(line)
        if parsed is None:
            raise NotRecognised(f"bboxes.csv up to line {number}, which is not 'IMAGE,XMIN,YMIN,XMAX,YMAX'")
        image, box = parsed
        boxes += 1
        images += image != last
        last = image
        if len(found.entries) < limit:
            found.entries.append({"image": image, "box": rounded(box)})
    found.counts = {"boxes": boxes, "images": images}
    found.more = boxes - len(found.entries)
    return found


def label_file(source: Source, lines: list[tuple[int, str]], labels: LabelData, limit: int) -> Inspection:
    """A synsets list (TFDS's label.labels.txt, a --labels-file), a validation labels file or a metadata file."""
    if all("\t" in line for _, line in lines):
        found = Inspection(source.url, "metadata file (synset<TAB>text)", source.size, {"synsets": len(lines)})
        found.entries = [dict(zip(("synset", "text"), line.split("\t", 1))) for _, line in lines[:limit]]
        found.more = len(lines) - len(found.entries)
        return found
    bad = next((n for n, line in lines if not SYNSET.fullmatch(line)), None)
    if bad is not None:
        raise NotRecognised(f"a list of synsets up to line {bad}, which is not one")
    synsets = [line for _, line in lines]
    if len(set(synsets)) == len(synsets):
        found = Inspection(source.url, "synsets list (TFDS's label.labels.txt, a --labels-file)", source.size,
                           {"synsets": len(synsets)}, label_numbering=SYNSET_LIST_LABELS)
        found.entries = [{"line": n, "synset": s, "text": labels.texts.get(s)} for n, s in lines[:limit]]
    else:
        found = Inspection(source.url, "validation labels file (line k: the synset of image k)", source.size,
                           {"images": len(synsets), "classes": len(set(synsets))})
        found.entries = [{"line": n, "image": VALIDATION_NAME % n, "synset": s, "text": labels.texts.get(s)}
                         for n, s in lines[:limit]]
    found.more = len(lines) - len(found.entries)
    return found


__all__ = ["Inspection", "SHOWN", "inspect"]
