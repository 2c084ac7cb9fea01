"""`streamprep inspect`: what one file streamprep reads or writes holds, recognised by its content, as plain values.

The content decides, never the name alone: a gzip stream is the bounding-box archive; a tar is the
training tar (class tars `nXXXXXXXX.tar` at its top), the validation tar (`*.JPEG` at its top) or a
WebDataset shard (`KEY.jpg`, `KEY.cls`, `KEY.json`); a file whose first record has a valid TFRecord
length CRC is a TFRecord shard, the classic's or TFDS's by its first Example's features; a file that
opens with Riegeli's signature is a TFDS ArrayRecord shard; text is a DALI index (`v1.2 N`, or
`OFFSET LENGTH` lines), bboxes.csv, a label file, or JSON: manifest.json, timm's `_info.json`, TFDS's
`dataset_info.json` or `features.json`. Only an empty file (an empty TFRecord shard, or its empty
DALI index) is told by its name. Anything else is `OutputUnreadableError`: one line saying what the
file is not and what inspect takes. Downloads are walked as convert walks them.
"""

from __future__ import annotations

import codecs
import gzip
import json
import os
import re
import struct
import zlib
from typing import Any, Iterator

from ..archives.storage import Source
from ..archives.tarscan import _checksum_ok, normalize
from ..archives.walk import members
from ..errors import ArchiveError, OutputError, OutputUnreadableError
from ..index.labels import LabelData
from ..plan import SHARD_STEM
from . import inspect_downloads, inspect_outputs
from .inspection import SHOWN, Inspection, NotRecognised
from .tfds_check import TFDS_SHARD
from .tfrecord import masked_crc, read_records
from .webdataset_check import MEMBERS

HEAD = 64 << 10  # bytes read first to recognise a file
MAX_JSON = 64 << 20  # a JSON file streamprep writes is far smaller (manifest.json: about 1 MB for 1152 shards)
TAR_PROBE = 1000  # members looked at to tell a tar's kind before giving up
# Riegeli's file signature, with which every ArrayRecord file opens (Riegeli's file format: "file signature").
RIEGELI_SIGNATURE = bytes.fromhex("83af70d10d884a3f0000000000000000400000000000000091bac23c9287e1a9"
                                  "0000000000000000e19f13c0e9b1c37273000000000000000000000000000000")
ACCEPTED = ("inspect takes the training tar, the validation tar, the bounding-box tar.gz, a TFRecord, WebDataset or "
            "TFDS (TFRecord or ArrayRecord) shard, a DALI .idx, manifest.json, _info.json, TFDS's dataset_info.json, "
            "features.json or label.labels.txt, bboxes.csv or a label file")
TFRECORD_INDEX = re.compile(r"\d+ \d+")
WEBDATASET_INDEX = re.compile(r"v1\.2 \d+")
SHARD_FILE = re.compile(SHARD_STEM)
TFDS_SHARD_AT_END = re.compile(TFDS_SHARD.pattern.removeprefix("^"))


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
            raise OutputUnreadableError(f"{url}: not a file streamprep reads or writes: {e}; {ACCEPTED}") from None
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
        return inspect_downloads.bounding_boxes(source, limit)
    if head[:len(RIEGELI_SIGNATURE)] == RIEGELI_SIGNATURE:
        return inspect_outputs.array_record_shard(source, labels, limit)
    if len(head) >= 12 and masked_crc(head[:8]) == struct.unpack("<I", head[8:12])[0]:
        return inspect_outputs.tfrecord_shard(source, labels, limit, _tfrecord_kind(source))
    if _is_tar(head) or (source.size >= 1024 and source.size % 512 == 0 and not any(head)):  # or an empty tar
        return _tar(source, labels, limit)
    text = _as_text(head, complete=len(head) == source.size)
    if text is None:
        raise NotRecognised(_binary(head))
    return _text(source, text, labels, limit)


def _empty(source: Source, labels: LabelData, limit: int) -> Inspection:
    """An empty file: the only content told by its name (an empty shard, or its empty DALI index)."""
    name = source.path.rstrip("/")
    base = name.rpartition("/")[2]
    tfds = TFDS_SHARD_AT_END.search(name)
    if SHARD_FILE.fullmatch(base) or (tfds and tfds[2] == "tfrecord"):
        found = inspect_outputs.tfrecord_shard(source, labels, limit, "tfds" if tfds else "classic")
    elif base.endswith(".idx") and SHARD_FILE.fullmatch(base.removesuffix(".idx")):
        found = inspect_outputs.tfrecord_index(source, [], limit)
    else:
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


def _tfrecord_kind(source: Source) -> str:
    """"classic" or "tfds" by the first record's features."""
    from .example_proto import example_type

    with source.fs.open(source.path, "rb") as f:
        try:
            first = next(read_records(f, source.url))
        except OutputError as e:  # a bad data CRC, or cut short
            raise OutputUnreadableError(f"{source.url}: a TFRecord file whose first record cannot be read "
                                        f"({str(e).rpartition(': ')[2]}); `streamprep verify` on its folder says what "
                                        "is wrong with it") from e
    try:
        feature = example_type().FromString(first).features.feature
    except Exception as e:  # noqa: BLE001 - protobuf's DecodeError (its module differs between builds)
        raise NotRecognised(f"a TFRecord file whose first record is no tf.train.Example ({e})") from e
    kind = inspect_outputs.example_kind(feature)
    if kind is None:
        raise NotRecognised("a TFRecord file, but its first record is neither the classic's Example "
                            "(image/encoded ...) nor TFDS's imagenet2012 one (file_name, image, label)")
    return kind


def _tar(source: Source, labels: LabelData, limit: int) -> Inspection:
    """A tar, by the members at its top: class tars, validation images, or WebDataset samples."""
    first = None
    for n, m in enumerate(members(source)):
        if m.is_dir:
            continue
        name = normalize(m.name)
        first = first or name
        if "/" not in name and name.endswith(".tar"):
            return inspect_downloads.training(source, labels, limit)
        if "/" not in name and name.endswith(".JPEG"):
            return inspect_downloads.validation(source, labels, limit)
        if name.rpartition("/")[2].partition(".")[2] in MEMBERS:
            return inspect_outputs.webdataset_shard(source, labels, limit)
        if n >= TAR_PROBE:
            break
    if first is None:
        return inspect_outputs.webdataset_shard(source, labels, limit)  # an empty tar: an empty WebDataset shard
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


def _lines(source: Source) -> Iterator[tuple[int, str]]:
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
    """A text file, by its first line: JSON, a DALI index, a label file or bboxes.csv."""
    if head.lstrip().startswith(("{", "[")):
        if source.size > MAX_JSON:
            raise NotRecognised(f"JSON of {source.size:,} bytes, larger than any file streamprep writes")
        with source.fs.open(source.path, "rb") as f:
            try:
                data = json.loads(f.read())
            except (ValueError, RecursionError) as e:
                raise NotRecognised(f"text that starts like JSON but is not JSON ({str(e)[:100]})") from None
        return inspect_outputs.json_file(source, data, limit)
    first = head.split("\n", 1)[0].rstrip("\r")
    if WEBDATASET_INDEX.fullmatch(first):
        return inspect_outputs.webdataset_index(source, _lines(source), limit)
    if TFRECORD_INDEX.fullmatch(first):
        return inspect_outputs.tfrecord_index(source, _lines(source), limit)
    if inspect_outputs.SYNSET.fullmatch(first.split("\t", 1)[0]):
        return inspect_outputs.label_file(source, list(_lines(source)), labels, limit)
    if inspect_outputs.box_line(first) is not None:
        return inspect_outputs.bboxes_csv(source, _lines(source), limit)
    raise NotRecognised("text, but neither JSON streamprep writes, bboxes.csv, a DALI index nor a label file "
                        f"(its first line: {first[:40]!r})")


__all__ = ["Inspection", "SHOWN", "inspect"]
