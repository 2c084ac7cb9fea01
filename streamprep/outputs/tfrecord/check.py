"""verify of one TFRecord shard: each record's framing, its Example against the classic schema, optionally its image."""

from __future__ import annotations

import math
import struct
from typing import Any, BinaryIO

from ..checker import ADVANCE_EVERY, ShardCheck, ShardChecker
from .example_proto import example_type
from .write import masked_crc

INT64, BYTES, FLOAT = "int64_list", "bytes_list", "float_list"
SCALARS = {"image/height": INT64, "image/width": INT64, "image/channels": INT64, "image/class/label": INT64,
           "image/colorspace": BYTES, "image/class/synset": BYTES, "image/class/text": BYTES,
           "image/format": BYTES, "image/filename": BYTES, "image/encoded": BYTES}
BOX_KEYS = tuple(f"image/object/bbox/{k}" for k in ("xmin", "ymin", "xmax", "ymax"))
LISTS = {**{k: FLOAT for k in BOX_KEYS}, "image/object/bbox/label": INT64}
FEATURES = {**SCALARS, **LISTS}  # exactly the classic's keys (shared/spec/classic-pipeline.md, "One record")
CONSTANTS = {"image/colorspace": b"RGB", "image/channels": 3}
# `image/format`: the classic's b"JPEG"; a resized output's what its recipe writes (`ShardChecker.encodings`)


def key_problems(feature: Any, expected: dict[str, str], rule: str) -> list[str]:
    """The features a record lacks, and those it has beyond `expected` (`rule` says what is expected)."""
    keys = set(feature.keys())
    return ([f"missing feature {k}" for k in sorted(expected.keys() - keys)]
            + [f"unknown feature {k} ({rule})" for k in sorted(keys - expected.keys())])


def _text(value: bytes) -> str:
    return value.decode("utf-8", "backslashreplace")


class TFRecordChecker(ShardChecker):
    """Reads TFRecord shards and checks each record as an Example of the classic's schema; a format whose records
    are other Examples in TFRecord framing (TFDS's) changes `_schema`, `_decode` and `filename_key`."""

    filename_key = "image/filename"  # the feature naming a record's image in the problems reported

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.Example = example_type()

    def _read(self, f: BinaryIO, check: ShardCheck) -> None:
        digest = self.hasher()
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
            check.digest = digest.hexdigest()
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
        if "image/encoded" in values or "image" in values:  # an empty image is a problem too
            problems += self._decode(values)
            check.decoded += 1 if self.decode else 0
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
        problems += self._format(values)
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

    def _format(self, values: dict[str, Any]) -> list[str]:
        """`image/format` not one of the output's encodings (`ShardChecker.encodings`): then taken as not given."""
        named = values.get("image/format")
        if named is None or _text(named) in self.encodings:
            return []
        values.pop("image/format")
        return [f"image/format is {named!r}, expected " + " or ".join(repr(e.encode()) for e in self.encodings)]

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
        """The image's problems: not the encoding `image/format` names, or (`--decode`) not decodable to the record's
        size by TensorFlow's own decoder of it."""
        named = values.get("image/format")
        return self.image_problems(values.get("image/encoded"), "image/encoded",
                                   _text(named) if named is not None else None, values.get("image/height"),
                                   values.get("image/width"), "image/width x image/height")

