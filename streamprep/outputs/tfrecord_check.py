"""Reading one shard: every record's framing, its Example against the classic schema, and optionally its image."""

from __future__ import annotations

import hashlib
import importlib.util
import math
import os
import re
import struct
import sys
import threading
from collections import Counter
from dataclasses import dataclass, field
from contextlib import contextmanager
from typing import Any, BinaryIO, Iterator

from ..errors import MissingDependencyError, OutputUnreadableError
from ..plan import SHARD_STEM
from ..progress import Phase
from .example_proto import example_type
from .tfrecord import masked_crc

SHARD_NAME = re.compile(f"^{SHARD_STEM}$")  # a TFRecord shard: the stem alone
PROBLEMS_KEPT = 100  # per shard: a shard with more keeps the first ones and counts the rest
READ_BLOCK = 8 << 20  # read-ahead for remote shards
ADVANCE_EVERY = 64  # records between progress events

INT64, BYTES, FLOAT = "int64_list", "bytes_list", "float_list"
SCALARS = {"image/height": INT64, "image/width": INT64, "image/channels": INT64, "image/class/label": INT64,
           "image/colorspace": BYTES, "image/class/synset": BYTES, "image/class/text": BYTES,
           "image/format": BYTES, "image/filename": BYTES, "image/encoded": BYTES}
BOX_KEYS = tuple(f"image/object/bbox/{k}" for k in ("xmin", "ymin", "xmax", "ymax"))
LISTS = {**{k: FLOAT for k in BOX_KEYS}, "image/object/bbox/label": INT64}
FEATURES = {**SCALARS, **LISTS}  # exactly the classic's keys (shared/spec/classic-pipeline.md, "One record")
CONSTANTS = {"image/colorspace": b"RGB", "image/channels": 3, "image/format": b"JPEG"}


@dataclass(frozen=True)
class Problem:
    """One thing wrong, where it is: a file of the output (or a split), and a record of a shard."""

    where: str
    what: str
    record: int | None = None  # 0-based position in the shard
    offset: int | None = None  # byte offset of the record in the shard
    filename: str | None = None  # the record's image/filename, when it parses

    def __str__(self) -> str:
        at = self.where
        if self.record is not None:
            at += f": record {self.record}" + (f" at byte {self.offset}" if self.offset is not None else "")
        if self.filename is not None:
            at += f" ({self.filename})"
        return f"{at}: {self.what}"


@dataclass
class ShardCheck:
    """What reading one shard found."""

    name: str
    split: str
    size: int | None = None  # bytes, as listed
    records: int = 0  # records whose framing was read (damaged data included)
    boxes: int = 0
    decoded: int = 0
    labels: Counter = field(default_factory=Counter)
    sha256: str | None = None  # of the whole file; None unless read to its end
    complete: bool = False  # framing read to the end of the file
    trusted: bool = True  # every record intact and parsed with a label: its label counts are exact
    problems: list[Problem] = field(default_factory=list)
    omitted: int = 0  # problems beyond PROBLEMS_KEPT
    index: bytes | None = None  # the DALI index of the file as read; None unless read to its end

    def problem(self, what: str, record: int | None = None, offset: int | None = None,
                filename: str | None = None) -> None:
        if len(self.problems) < PROBLEMS_KEPT:
            self.problems.append(Problem(self.name, what, record, offset, filename))
        else:
            self.omitted += 1



_tf_lock = threading.Lock()


@contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Point file descriptor 2 at /dev/null: TensorFlow's C++ start-up messages ignore its log level."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    sys.stderr.flush()
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def tensorflow():
    """TensorFlow, for `decode=True` only (its own JPEG decoder is the judge), imported once, its noise silenced."""
    with _tf_lock:
        if "tensorflow" in sys.modules:
            return sys.modules["tensorflow"]
        if importlib.util.find_spec("tensorflow") is None:
            raise MissingDependencyError("verify --decode decodes every image with TensorFlow's own decoder, and "
                                         "TensorFlow is not installed; pip install 'streamprep[tensorflow]', or verify "
                                         "without --decode")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        with _native_stderr_silenced():
            import tensorflow as tf
            tf.io.decode_jpeg(tf.io.encode_jpeg(tf.zeros((1, 1, 3), tf.uint8)))  # loads the kernels while silenced
        return tf


def decode_problems(tf: Any, encoded: bytes | None, height: Any, width: Any, what: str, size_from: str) -> list[str]:
    """What TensorFlow's own decoder finds wrong with a stored image: not a JPEG, not decodable, or of another
    size than the record says."""
    if not encoded:
        return []
    if not encoded.startswith(b"\xff\xd8"):  # decode_jpeg would also take a PNG or GIF
        return [f"{what} is not a JPEG (it starts with {encoded[:4].hex(' ')}), but the record says JPEG"]
    try:
        shape = tf.io.decode_jpeg(encoded, channels=3).shape
    except (tf.errors.OpError, ValueError) as e:
        message = str(e).split("}}")[-1].split("[Op:")[0].strip() or type(e).__name__
        return [f"{what} does not decode as a JPEG ({message})"]
    if height is not None and width is not None and (shape[0], shape[1]) != (height, width):
        return [f"the image decodes to {shape[1]}x{shape[0]} (width x height), but {size_from} say {width}x{height}"]
    return []


def key_problems(feature: Any, expected: dict[str, str], rule: str) -> list[str]:
    """The features a record lacks, and those it has beyond `expected` (`rule` says what is expected)."""
    keys = set(feature.keys())
    return ([f"missing feature {k}" for k in sorted(expected.keys() - keys)]
            + [f"unknown feature {k} ({rule})" for k in sorted(keys - expected.keys())])


def _text(value: bytes) -> str:
    return value.decode("utf-8", "backslashreplace")


class ShardChecker:
    """Reads shards and checks their records; one instance shared by the worker threads."""

    filename_key = "image/filename"  # the feature naming a record's image in the problems reported

    def __init__(self, fs: Any, root: str, url: str, decode: bool, num_classes: int, phase: Phase,
                 stop: threading.Event) -> None:
        self.fs, self.root, self.url = fs, root, url
        self.decode, self.num_classes, self.phase, self.stop = decode, num_classes, phase, stop
        self.tf = tensorflow() if decode else None
        self.Example = example_type()
        self.remote = bool(getattr(fs, "async_impl", False))

    def path(self, name: str) -> str:
        return f"{self.root.rstrip('/')}/{name}"

    def _open(self, name: str) -> BinaryIO:
        if self.remote:  # sequential reads: a large read-ahead block, one request per block
            return self.fs.open(self.path(name), "rb", block_size=READ_BLOCK, cache_type="readahead")
        return self.fs.open(self.path(name), "rb")

    def split_of(self, name: str) -> str:
        m = SHARD_NAME.match(name)
        return m[1] if m else ""

    def shard(self, name: str, size: int | None) -> ShardCheck:
        check = ShardCheck(name, self.split_of(name), size)
        try:
            with self._open(name) as f:
                self._read(f, check)
        except FileNotFoundError:
            check.problem("disappeared while being verified; is a conversion still writing to this folder?")
            check.trusted = False
        except OSError as e:
            raise OutputUnreadableError(f"{self.path(name)}: cannot read ({e}); check the connection and permissions, "
                              "then run verify again") from e
        return check

    def _read(self, f: BinaryIO, check: ShardCheck) -> None:
        digest = hashlib.sha256()
        offset = record = pending = pending_bytes = 0
        lines: list[bytes] = []
        try:
            while not self.stop.is_set():
                head = f.read(12)
                digest.update(head)
                if not head:
                    check.complete = True
                    break
                if len(head) < 12:
                    check.problem(f"truncated: the file ends {len(head)} bytes into a 12-byte record header",
                                  record, offset)
                    break
                length, length_crc = struct.unpack("<QI", head)
                if masked_crc(head[:8]) != length_crc:
                    check.problem("length CRC mismatch: the record framing is damaged; the rest of this shard "
                                  "cannot be read", record, offset)
                    break
                left = None if check.size is None else check.size - offset - 12
                if left is not None and length + 4 > left:
                    check.problem(f"truncated: the record holds {length:,} bytes but the file ends {left:,} bytes "
                                  "after its header", record, offset)
                    break
                data = f.read(length)
                tail = f.read(4)
                digest.update(data)
                digest.update(tail)
                if len(data) < length or len(tail) < 4:
                    check.problem(f"truncated: the file ends inside this record of {length:,} bytes", record, offset)
                    break
                self._record(check, record, offset, data, masked_crc(data) == struct.unpack("<I", tail)[0])
                lines.append(b"%d %d\n" % (offset, 16 + length))
                record += 1
                offset += 16 + length
                pending += 1
                pending_bytes += 16 + length
                if pending >= ADVANCE_EVERY:
                    self.phase.advance(pending, pending_bytes)
                    pending = pending_bytes = 0
        finally:
            self.phase.advance(pending, pending_bytes)
            check.records = record
        if check.complete:
            check.sha256 = digest.hexdigest()
            check.index = b"".join(lines)
        else:
            check.trusted = False

    def _record(self, check: ShardCheck, record: int, offset: int, data: bytes, crc_ok: bool) -> None:
        try:
            example = self.Example.FromString(data)
        except Exception:  # google.protobuf's DecodeError (its module differs between protobuf builds)
            example = None
        filename = None
        if example is not None and self.filename_key in example.features.feature:
            names = example.features.feature[self.filename_key].bytes_list.value
            filename = _text(names[0]) if len(names) == 1 else None
        if not crc_ok:
            check.trusted = False
            check.problem("data CRC mismatch: the record's bytes are damaged", record, offset, filename)
            return
        if example is None:
            check.trusted = False
            check.problem("does not parse as a tf.train.Example", record, offset)
            return
        problems, values = self._schema(example)
        label = values.get("image/class/label")
        if label is None:
            check.trusted = False
        else:
            check.labels[label] += 1
        check.boxes += len(values.get("image/object/bbox/xmin", ()))
        if self.decode and (values.get("image/encoded") or values.get("image")):
            problems += self._decode(values)
            check.decoded += 1
        for what in problems:
            check.problem(what, record, offset, filename)

    def _schema(self, example: Any) -> tuple[list[str], dict[str, Any]]:
        """The record's problems, and the values of its well-typed features."""
        feature = example.features.feature
        problems = key_problems(feature, FEATURES, f"the classic writes exactly {len(FEATURES)} features")
        values: dict[str, Any] = {}
        for key, kind in FEATURES.items():
            if key not in feature:
                continue
            got = feature[key].WhichOneof("kind")
            if got is None and key in LISTS:  # an empty Feature: an empty list of any type
                values[key] = []
                continue
            if got != kind:
                problems.append(f"{key} is a {got or 'Feature without values'}, expected a {kind}")
                continue
            items = getattr(feature[key], kind).value
            if key in SCALARS:
                if len(items) != 1:
                    problems.append(f"{key} holds {len(items)} values, expected 1")
                    continue
                values[key] = items[0]
            else:
                values[key] = list(items)
        for key, expected in CONSTANTS.items():
            if key in values and values[key] != expected:
                problems.append(f"{key} is {values[key]!r}, expected {expected!r}")
        label = values.get("image/class/label")
        if label is not None and not 1 <= label <= self.num_classes:
            problems.append(f"image/class/label {label} is out of range 1..{self.num_classes}")
        for key in ("image/height", "image/width"):
            if key in values and values[key] < 1:
                problems.append(f"{key} is {values[key]}, expected at least 1")
        if values.get("image/encoded") == b"":
            problems.append("image/encoded is empty")
        problems += self._boxes(values)
        return problems, values

    @staticmethod
    def _boxes(values: dict[str, Any]) -> list[str]:
        lists = {k: values[k] for k in (*BOX_KEYS, "image/object/bbox/label") if k in values}
        if len(lists) < 5:
            return []  # a missing or mistyped list is reported already
        lengths = {len(v) for v in lists.values()}
        if len(lengths) > 1:
            return ["box lists differ in length (" + ", ".join(f"{k.rsplit('/', 1)[1]} {len(v)}"
                                                               for k, v in lists.items()) + ")"]
        problems = []
        xmin, ymin, xmax, ymax = (lists[k] for k in BOX_KEYS)
        coords = [*xmin, *ymin, *xmax, *ymax]
        if not all(0.0 <= c <= 1.0 for c in coords):  # NaN fails too
            bad = next(c for c in coords if not 0.0 <= c <= 1.0)
            problems.append(f"box coordinate {bad if math.isnan(bad) else round(bad, 6)} is outside [0, 1]")
        if any(a > b for a, b in zip(xmin, xmax)) or any(a > b for a, b in zip(ymin, ymax)):
            problems.append("a box has xmin > xmax or ymin > ymax")
        label = values.get("image/class/label")
        if label is not None and any(v != label for v in lists["image/object/bbox/label"]):
            problems.append(f"image/object/bbox/label differs from image/class/label {label}")
        return problems

    def _decode(self, values: dict[str, Any]) -> list[str]:
        return decode_problems(self.tf, values.get("image/encoded"), values.get("image/height"),
                               values.get("image/width"), "image/encoded", "image/width x image/height")

