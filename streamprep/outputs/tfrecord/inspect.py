"""inspect of a TFRecord shard (its records as the classic's Examples) and of its DALI index; TFRecord files read."""

from __future__ import annotations

import re
import struct
from collections import Counter
from typing import Any, BinaryIO, Callable, Iterable, Iterator

from ...archives.storage import Source
from ...errors import OutputError, OutputUnreadableError
from ...index.labels import LabelData
from ...inspection import Inspection, Lines, NotRecognised, Reader, read_failed, rounded, shard_beside
from ...plan import SHARD_STEM
from .example_proto import example_type
from .write import masked_crc, read_records

CLASSIC_LABELS = ("image/class/label as stored: the classic's 1..N, 1..1000 for ILSVRC2012 (label k is line k of "
                  "the run's synset list; 0 is background, unused)")
INDEX_LINE = re.compile(r"\d+ \d+")  # DALI's tfrecord2idx: `offset length`
SHARD_FILE = re.compile(SHARD_STEM)


def is_tfrecord(head: bytes) -> bool:
    """Whether a file starting with `head` opens with a TFRecord record header (its length CRC valid)."""
    return len(head) >= 12 and masked_crc(head[:8]) == struct.unpack("<I", head[8:12])[0]


def first_example(source: Source) -> Any:
    """The features of a TFRecord file's first record, parsed as a tf.train.Example."""
    with source.fs.open(source.path, "rb") as f:
        try:
            first = next(read_records(f, source.url))
        except OutputError as e:  # a bad data CRC, or cut short
            raise OutputUnreadableError(f"{source.url}: a TFRecord file whose first record cannot be read "
                                        f"({str(e).rpartition(': ')[2]}); `streamprep verify` on its folder says what "
                                        "is wrong with it") from e
    try:
        return example_type().FromString(first).features.feature
    except Exception as e:  # noqa: BLE001 - protobuf's DecodeError (its module differs between builds)
        raise NotRecognised(f"a TFRecord file whose first record is no tf.train.Example ({e})") from e


def one(feature: Any, key: str, kind: str) -> Any:
    values = getattr(feature[key], kind).value if key in feature else []
    return values[0] if len(values) == 1 else None


def text(feature: Any, key: str) -> str | None:
    value = one(feature, key, "bytes_list")
    return None if value is None else value.decode("utf-8", "backslashreplace")


def is_classic(feature: Any) -> bool:
    """Whether an Example is the classic's (by its image/encoded feature)."""
    return "image/encoded" in feature


def _classic_values(feature: Any) -> dict[str, Any]:
    """A classic record's features as plain values (the image as its size in bytes); the label as stored, 1..N."""
    lists = [list(feature[f"image/object/bbox/{k}"].float_list.value) if f"image/object/bbox/{k}" in feature else []
             for k in ("xmin", "ymin", "xmax", "ymax")]
    encoded = one(feature, "image/encoded", "bytes_list")
    return {"filename": text(feature, "image/filename"), "label": one(feature, "image/class/label", "int64_list"),
            "synset": text(feature, "image/class/synset"), "text": text(feature, "image/class/text"),
            "height": one(feature, "image/height", "int64_list"), "width": one(feature, "image/width", "int64_list"),
            "bytes": None if encoded is None else len(encoded), "boxes": [rounded(box) for box in zip(*lists)]}


def examples(found: Inspection, datas: Iterable[bytes], values: Callable[[Any], dict[str, Any]],
             mine: Callable[[Any], bool], limit: int, boxes_counted: bool = True) -> None:
    """Count the records (each an Example that `mine` takes) and keep the first `limit` as plain values."""
    parse = example_type().FromString
    records = boxes = 0
    labels: Counter = Counter()
    for data in datas:
        try:
            feature = parse(data).features.feature
        except Exception as e:  # noqa: BLE001 - protobuf's DecodeError (its module differs between builds)
            raise OutputUnreadableError(f"{found.url}: record {records} does not parse as a tf.train.Example ({e}); "
                                        "`streamprep verify` on its folder says what is wrong with it") from e
        if not mine(feature):
            if records == 0:
                raise NotRecognised("records, but its first is neither the classic's Example (image/encoded ...) nor "
                                    "TFDS's imagenet2012 one (file_name, image, label)")
            raise OutputUnreadableError(f"{found.url}: record {records} is not an Example like the ones before it; "
                                        "`streamprep verify` on its folder says what is wrong with it")
        entry = values(feature)
        records += 1
        labels[entry["label"]] += 1
        boxes += len(entry["boxes"])
        if len(found.entries) < limit:
            found.entries.append(entry)
    found.counts = {"records": records, "labels": len(labels)}
    if boxes_counted:
        found.counts["boxes"] = boxes
    found.more = records - len(found.entries)


def records_of(source: Source, f: BinaryIO) -> Iterator[bytes]:
    """A TFRecord file's records; a damaged one is a one-line error saying where reading stopped."""
    read = 0
    try:
        for data in read_records(f, source.url):
            yield data
            read += 1
    except (OutputError, OSError, ValueError) as e:  # a bad CRC, a cut: verify says more
        raise read_failed(source, f"record {read}", OutputError(str(e).rpartition(": ")[2])) from e


def tfrecord_shard(source: Source, found: Inspection, values: Callable[[Any], dict[str, Any]],
                   mine: Callable[[Any], bool], limit: int, boxes_counted: bool = True) -> Inspection:
    """A TFRecord shard's records, each an Example `mine` takes, shown by `values`."""
    with source.fs.open(source.path, "rb") as f:
        examples(found, records_of(source, f), values, mine, limit, boxes_counted)
    return found


def classic_shard(source: Source, limit: int) -> Inspection:
    """A classic TFRecord shard (streamprep's or the classic procedure's)."""
    found = Inspection(source.url, "TFRecord shard", source.size, label_numbering=CLASSIC_LABELS)
    return tfrecord_shard(source, found, _classic_values, is_classic, limit)


def tfrecord_index(source: Source, lines: Lines, limit: int) -> Inspection:
    """DALI's index of a TFRecord shard (`tfrecord2idx`): a line per record, `offset length`."""
    found = Inspection(source.url, "DALI index of a TFRecord shard", source.size,
                       facts={"shard": shard_beside(source)})
    records = end = 0
    for number, line in lines:
        parts = line.split(" ")
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            raise NotRecognised(f"a DALI index of a TFRecord shard up to line {number}, which is not 'OFFSET LENGTH'")
        offset, length = int(parts[0]), int(parts[1])
        if offset != end:
            found.notes.append(f"line {number}: record at byte {offset:,}, but the one before ends at {end:,}")
        records, end = records + 1, offset + length
        if len(found.entries) < limit:
            found.entries.append({"offset": offset, "length": length})
    found.counts = {"records": records, "shard bytes": end}
    found.more = records - len(found.entries)
    return found


class TFRecordReader(Reader):
    """The classic's TFRecord shards (by their framing and first Example) and DALI's index of them."""

    def binary(self, source: Source, head: bytes, labels: LabelData, limit: int) -> Inspection | None:
        if not is_tfrecord(head):
            return None
        if not is_classic(first_example(source)):
            raise NotRecognised("a TFRecord file, but its first record is neither the classic's Example "
                                "(image/encoded ...) nor TFDS's imagenet2012 one (file_name, image, label)")
        return classic_shard(source, limit)

    def text(self, source: Source, first: str, lines: Callable[[], Lines], limit: int) -> Inspection | None:
        return tfrecord_index(source, lines(), limit) if INDEX_LINE.fullmatch(first) else None

    def empty(self, source: Source, labels: LabelData, limit: int) -> Inspection | None:
        base = source.path.rstrip("/").rpartition("/")[2]
        if SHARD_FILE.fullmatch(base):
            return classic_shard(source, limit)
        if base.endswith(".idx") and SHARD_FILE.fullmatch(base.removesuffix(".idx")):
            return tfrecord_index(source, [], limit)
        return None
