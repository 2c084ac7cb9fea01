"""`streamprep verify`: check a finished output record by record, and against its manifest.json if it has one.

Checked for every shard (streamprep's or the classic procedure's):
- framing: each record's length CRC and data CRC, and that the file ends where the last record ends;
- schema: each record is a `tf.train.Example` with exactly the classic's 17 features, each of the
  classic's type and arity, the constant ones (`RGB`, 3 channels, `JPEG`) with their value, boxes
  consistent (equal list lengths, coordinates in [0, 1], min <= max, box labels = the label);
- labels: `image/class/label` in 1..num_classes;
- with `decode=True`: `image/encoded` is a JPEG that `tf.io.decode_jpeg(channels=3)` decodes to
  `image/height` x `image/width`;
- the shard names of each split are complete (indices 0..N-1 of `-of-N`).
With a manifest (streamprep's output) also: the conversion is complete, every listed shard is there
with its size, sha256, record and box counts, no unlisted shard is there, the shards and the labels
of each split add up to the manifest's, and bboxes.csv has its size and sha256.

The library never prints: it returns a `VerifyReport` (whose `lines()` are the CLI's report) and
reports progress through the optional callback.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import re
import struct
import threading
import time
from collections import Counter
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Iterator

from .archives import resolve
from .config import default_workers
from .errors import ConfigError, StreamprepError
from .progress import Callback, Phase
from .tfrecord import masked_crc

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "streamprep-manifest/1"
BBOXES_CSV = "bboxes.csv"
SHARD_NAME = re.compile(r"^(train|validation)-(\d{5})-of-(\d{5})$")
SPLITS = ("train", "validation")
NUM_CLASSES = 1000
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


class VerifyError(StreamprepError):
    """The output cannot be verified at all: missing, not a folder, or unreadable."""


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

    def problem(self, what: str, record: int | None = None, offset: int | None = None,
                filename: str | None = None) -> None:
        if len(self.problems) < PROBLEMS_KEPT:
            self.problems.append(Problem(self.name, what, record, offset, filename))
        else:
            self.omitted += 1


@dataclass
class VerifyReport:
    """The outcome of `verify`: `ok` only when no problem was found."""

    url: str
    manifest: bool
    decode: bool
    num_classes: int
    shards: list[ShardCheck]
    problems: list[Problem]  # in report order; per shard at most PROBLEMS_KEPT
    omitted: int  # problems found but not kept
    notes: list[str]
    seconds: float

    @property
    def ok(self) -> bool:
        return not self.problems and not self.omitted

    @property
    def records(self) -> int:
        return sum(s.records for s in self.shards)

    @property
    def nbytes(self) -> int:
        return sum(s.size or 0 for s in self.shards)

    def lines(self) -> list[str]:
        """The report: one line per problem, the notes, then one summary line."""
        out = [str(p) for p in self.problems]
        if self.omitted:
            out.append(f"... and {self.omitted:,} more problem(s) not shown (at most {PROBLEMS_KEPT} a shard)")
        out += [f"note: {n}" for n in self.notes]
        checked = f"framing, schema, labels 1..{self.num_classes}" + (", decoding" if self.decode else "")
        if self.manifest:
            checked += f", counts and sha256 against {MANIFEST}"
        what = (f"{self.records:,} records in {len(self.shards):,} shards ({self.nbytes / 1e6:,.1f} MB)"
                + (f", {sum(s.decoded for s in self.shards):,} images decoded" if self.decode else ""))
        if self.ok:
            out.append(f"streamprep verify: OK: {self.url}: {what}; checked {checked}; {self.seconds:.1f} s")
        else:
            bad = {p.where for p in self.problems} | {s.name for s in self.shards if s.omitted}
            total = len(self.problems) + self.omitted
            out.append(f"streamprep verify: FAILED: {self.url}: {total:,} problem(s) in {len(bad):,} file(s) or "
                       f"split(s); {what}; checked {checked}; {self.seconds:.1f} s")
        return out


def _tensorflow():
    if importlib.util.find_spec("tensorflow") is None:
        raise VerifyError("TensorFlow is needed to parse the records (and decode the images); install tensorflow")
    from .fixups import tensorflow

    return tensorflow()


def _text(value: bytes) -> str:
    return value.decode("utf-8", "backslashreplace")


class _Checker:
    """Reads shards and checks their records; one instance shared by the worker threads."""

    def __init__(self, fs: Any, root: str, url: str, decode: bool, num_classes: int, phase: Phase,
                 stop: threading.Event) -> None:
        self.fs, self.root, self.url = fs, root, url
        self.decode, self.num_classes, self.phase, self.stop = decode, num_classes, phase, stop
        self.tf = _tensorflow()
        self.Example = self.tf.train.Example
        self.remote = bool(getattr(fs, "async_impl", False))

    def path(self, name: str) -> str:
        return f"{self.root.rstrip('/')}/{name}"

    def _open(self, name: str) -> BinaryIO:
        if self.remote:  # sequential reads: a large read-ahead block, one request per block
            return self.fs.open(self.path(name), "rb", block_size=READ_BLOCK, cache_type="readahead")
        return self.fs.open(self.path(name), "rb")

    def shard(self, name: str, size: int | None) -> ShardCheck:
        m = SHARD_NAME.match(name)
        check = ShardCheck(name, m[1] if m else "", size)
        try:
            with self._open(name) as f:
                self._read(f, check)
        except FileNotFoundError:
            check.problem("disappeared while being verified; is a conversion still writing to this folder?")
            check.trusted = False
        except OSError as e:
            raise VerifyError(f"{self.path(name)}: cannot read ({e}); check the connection and permissions, "
                              "then run verify again") from None
        return check

    def _read(self, f: BinaryIO, check: ShardCheck) -> None:
        digest = hashlib.sha256()
        offset = record = pending = pending_bytes = 0
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
        else:
            check.trusted = False

    def _record(self, check: ShardCheck, record: int, offset: int, data: bytes, crc_ok: bool) -> None:
        try:
            example = self.Example.FromString(data)
        except Exception:  # google.protobuf's DecodeError (its module differs between protobuf builds)
            example = None
        filename = None
        if example is not None and "image/filename" in example.features.feature:
            names = example.features.feature["image/filename"].bytes_list.value
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
        if self.decode and values.get("image/encoded"):
            problems += self._decode(values)
            check.decoded += 1
        for what in problems:
            check.problem(what, record, offset, filename)

    def _schema(self, example: Any) -> tuple[list[str], dict[str, Any]]:
        """The record's problems, and the values of its well-typed features."""
        feature = example.features.feature
        keys = set(feature.keys())
        problems = [f"missing feature {k}" for k in sorted(FEATURES.keys() - keys)]
        problems += [f"unknown feature {k} (the classic writes exactly {len(FEATURES)} features)"
                     for k in sorted(keys - FEATURES.keys())]
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
        encoded = values.get("image/encoded")
        if not encoded:
            return []
        if not encoded.startswith(b"\xff\xd8"):  # decode_jpeg would also take a PNG, GIF or BMP
            return [f"image/encoded is not a JPEG (it starts with {encoded[:4].hex(' ')}), but image/format says JPEG"]
        tf = self.tf
        try:
            shape = tf.io.decode_jpeg(encoded, channels=3).shape
        except (tf.errors.OpError, ValueError) as e:
            message = str(e).split("}}")[-1].split("[Op:")[0].strip() or type(e).__name__
            return [f"image/encoded does not decode as a JPEG ({message})"]
        height, width = values.get("image/height"), values.get("image/width")
        if height is not None and width is not None and (shape[0], shape[1]) != (height, width):
            return [f"the image decodes to {shape[1]}x{shape[0]} (width x height), but image/width x image/height "
                    f"say {width}x{height}"]
        return []


def _listed(value: Any) -> str:
    """A number from the manifest as the report writes numbers; anything else as it is."""
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else repr(value)


def _name(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def _listing(fs: Any, root: str, url: str) -> dict[str, dict[str, Any]]:
    """The output folder's visible files, by name."""
    try:
        info = fs.info(root)
    except FileNotFoundError:
        raise VerifyError(f"{url}: not found; pass the folder a conversion wrote (convert's --out)") from None
    except OSError as e:
        raise VerifyError(f"{url}: cannot read ({e}); check the path or URL and permissions") from None
    if info.get("type") != "directory":
        raise VerifyError(f"{url}: is a file, not a folder; pass the folder that holds the shards")
    try:
        entries = fs.ls(root, detail=True)
    except OSError as e:
        raise VerifyError(f"{url}: cannot list ({e}); check the path or URL and permissions") from None
    return {_name(e["name"]): e for e in entries
            if e.get("type") != "directory" and not _name(e["name"]).startswith(".") and _name(e["name"]) != ""}


def _read_small(fs: Any, path: str, url: str) -> bytes:
    try:
        with fs.open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise VerifyError(f"{path}: cannot read ({e}); check the connection and permissions of {url}") from None


def _digest(fs: Any, path: str, url: str) -> str:
    digest = hashlib.sha256()
    try:
        with fs.open(path, "rb") as f:
            while chunk := f.read(READ_BLOCK):
                digest.update(chunk)
    except OSError as e:
        raise VerifyError(f"{path}: cannot read ({e}); check the connection and permissions of {url}") from None
    return digest.hexdigest()


class _Manifest:
    """The parts of manifest.json that verify checks; `ValueError` if it is malformed."""

    def __init__(self, data: Any) -> None:
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        if data.get("format") != MANIFEST_FORMAT:
            raise ValueError(f"format is {data.get('format')!r}, this streamprep reads {MANIFEST_FORMAT!r}; "
                             "verify it with the streamprep version that wrote it")
        self.complete = data.get("complete") is True
        shards = data.get("shards")
        if not isinstance(shards, list) or not all(isinstance(s, dict) and isinstance(s.get("name"), str)
                                                   for s in shards):
            raise ValueError("'shards' is not a list of entries with a 'name'")
        self.shards: dict[str, dict[str, Any]] = {}
        for entry in shards:
            if entry["name"] in self.shards:
                raise ValueError(f"shard {entry['name']} is listed twice")
            self.shards[entry["name"]] = entry
        splits = data.get("splits", {})
        if not isinstance(splits, dict) or not all(isinstance(v, dict) for v in splits.values()):
            raise ValueError("'splits' is not an object of objects")
        self.splits: dict[str, dict[str, Any]] = splits
        skipped = data.get("skipped")
        self.skipped = len(skipped) if isinstance(skipped, list) else 0
        self.bboxes_csv = data.get("bboxes_csv")
        if self.bboxes_csv is not None and not (isinstance(self.bboxes_csv, dict)
                                                and isinstance(self.bboxes_csv.get("name"), str)):
            raise ValueError("'bboxes_csv' is not an entry with a 'name'")


def _shard_sets(names: Iterator[str] | list[str], where: str) -> list[Problem]:
    """Problems with the set of shard names of each split: all of 0..N-1 of one `-of-N`."""
    problems = []
    by_split: dict[str, list[tuple[int, int]]] = {s: [] for s in SPLITS}
    for name in names:
        m = SHARD_NAME.match(name)
        if m:
            by_split[m[1]].append((int(m[2]), int(m[3])))
    for split, found in by_split.items():
        if not found:
            problems.append(Problem(split, f"no {split} shards {where}"))
            continue
        totals = sorted({of for _, of in found})
        if len(totals) > 1:
            problems.append(Problem(split, f"shard names of two or more layouts {where}: "
                                           + ", ".join(f"-of-{of:05d}" for of in totals)))
            continue
        of = totals[0]
        present = {i for i, _ in found}
        missing = sorted(set(range(of)) - present)
        beyond = sorted(i for i in present if i >= of)
        if missing:
            shown = ", ".join(f"{split}-{i:05d}-of-{of:05d}" for i in missing[:10])
            shown += " ..." if len(missing) > 10 else ""
            problems.append(Problem(split, f"{len(missing):,} of {of:,} shard(s) missing {where}: {shown}"))
        if beyond:
            numbers = ", ".join(map(str, beyond[:10]))
            problems.append(Problem(split, f"shard number(s) {numbers} not below {of} {where}"))
    return problems


def _counts_differ(found: Counter, listed: Any) -> str | None:
    """How the labels found differ from the manifest's class_counts (keys are labels as text)."""
    if not isinstance(listed, dict):
        return "class_counts missing from the manifest"
    expected: Counter = Counter()
    for key, value in listed.items():
        try:
            expected[int(key)] = int(value)
        except (TypeError, ValueError):
            return f"class_counts holds a non-numeric entry {key!r}: {value!r}"
    differ = sorted(k for k in set(found) | set(expected) if found[k] != expected[k])
    if not differ:
        return None
    shown = "; ".join(f"label {k}: {found[k]:,} in the records, {expected[k]:,} listed" for k in differ[:5])
    more = " ..." if len(differ) > 5 else ""
    return f"label counts differ from {MANIFEST} for {len(differ):,} label(s): {shown}{more}"


def verify(url: str, storage_options: dict[str, Any] | None = None, decode: bool = False,
           workers: int | None = None, num_classes: int = NUM_CLASSES,
           progress: Callback | None = None) -> VerifyReport:
    """Check the output folder at `url` (a path or fsspec URL); see the module docstring for what is checked.

    `workers` shards are read at once (default: as many as convert writes); `progress` gets a "verify"
    phase counting records and bytes.
    """
    t0 = time.monotonic()
    if workers is None:
        workers = default_workers()
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    if num_classes < 1:
        raise ConfigError(f"--num-classes must be at least 1, got {num_classes}")
    fs, root = resolve(url, storage_options)
    files = _listing(fs, root, url)
    path = lambda name: f"{root.rstrip('/')}/{name}"  # noqa: E731
    problems: list[Problem] = []
    notes: list[str] = []
    manifest: _Manifest | None = None
    if MANIFEST in files:
        try:
            manifest = _Manifest(json.loads(_read_small(fs, path(MANIFEST), url)))
        except ValueError as e:
            problems.append(Problem(MANIFEST, f"unusable ({str(e)[:300]}); checking the shards as a classic output"))
    shard_files = sorted(n for n in files if SHARD_NAME.match(n))

    if manifest is not None:
        if not manifest.complete:
            problems.append(Problem(MANIFEST, "incomplete conversion: rerun the same convert command to finish it"))
        listed = sorted(manifest.shards)
        for name in listed:
            if not SHARD_NAME.match(name):
                problems.append(Problem(MANIFEST, f"lists {name!r}, which is not a shard name"))
            elif name not in files:
                problems.append(Problem(name, f"missing: listed in {MANIFEST} but not in the folder"))
        unlisted = [n for n in shard_files if n not in manifest.shards]
        if manifest.complete:
            for name in unlisted:
                problems.append(Problem(name, f"not listed in {MANIFEST}: left from another run? remove it, or "
                                              "rerun the convert command that wrote this folder"))
            problems += _shard_sets([n for n in listed if SHARD_NAME.match(n)], f"listed in {MANIFEST}")
        else:  # a running or killed conversion lists the shards finished so far, and no totals yet
            notes.append(f"the conversion is incomplete: {len(listed):,} shard(s) listed in {MANIFEST} were "
                         f"checked against it; {len(unlisted):,} unlisted shard(s) for framing, schema and labels only")
        if manifest.skipped:
            notes.append(f"{MANIFEST} lists {manifest.skipped:,} bad input file(s) that convert skipped "
                         "(--on-bad-image/--on-bad-xml skip): the output lacks them")
        todo = [n for n in listed if n in files and SHARD_NAME.match(n)]
        if not manifest.complete:
            todo = sorted(todo + unlisted)
    else:
        if not shard_files and not problems:
            raise VerifyError(f"{url}: holds neither {MANIFEST} nor shards (train-00000-of-01024 ...); pass the "
                              "folder a conversion wrote")
        problems += _shard_sets(shard_files, "in the folder")
        todo = shard_files
        notes.append(f"no {MANIFEST} (an output of the classic procedure?): record counts, label counts and "
                     "sha256 were not checked")

    _tensorflow()  # imported before the progress phase starts: it takes a few seconds
    stop = threading.Event()
    sizes = {n: files[n].get("size") for n in todo}
    with Phase(progress, "verify", total_bytes=sum(s or 0 for s in sizes.values()), unit="records") as phase:
        checker = _Checker(fs, root, url, decode, num_classes, phase, stop)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="verify") as pool:
            futures = [pool.submit(checker.shard, n, sizes[n]) for n in todo]
            try:
                done, _ = wait(futures, return_when=FIRST_EXCEPTION)
                for future in done:
                    if future.exception() is not None:
                        raise future.exception()  # type: ignore[misc]
            except BaseException:
                stop.set()
                for future in futures:
                    future.cancel()
                raise
            checks = [f.result() for f in futures]

    for check in checks:
        problems += check.problems
        if manifest is not None and check.name in manifest.shards:
            problems += _against_entry(check, manifest.shards[check.name])

    if manifest is not None and manifest.complete:
        problems += _against_splits(manifest, checks)
        problems += _against_bboxes(fs, root, url, manifest, files)
    return VerifyReport(url, manifest is not None, decode, num_classes, checks, problems,
                        sum(c.omitted for c in checks), notes, time.monotonic() - t0)


def _against_entry(check: ShardCheck, entry: dict[str, Any]) -> list[Problem]:
    """A shard's size, sha256, record and box counts against its manifest entry."""
    problems = []
    listed = entry.get("bytes")
    if check.size is not None and listed != check.size:
        problems.append(Problem(check.name, f"holds {check.size:,} bytes, {MANIFEST} lists {_listed(listed)}"))
    if not check.complete:
        return problems  # counts and digest of a shard that could not be read to its end mean nothing more
    if entry.get("sha256") != check.sha256:
        problems.append(Problem(check.name, f"sha256 {check.sha256} differs from {MANIFEST}'s "
                                            f"{entry.get('sha256')!r}: the file is not the one convert wrote"))
    if entry.get("records") != check.records:
        problems.append(Problem(check.name, f"holds {check.records:,} records, "
                                            f"{MANIFEST} lists {_listed(entry.get('records'))}"))
    if "boxes" in entry and check.trusted and entry["boxes"] != check.boxes:
        problems.append(Problem(check.name, f"holds {check.boxes:,} boxes, {MANIFEST} lists {_listed(entry['boxes'])}"))
    return problems


def _against_splits(manifest: _Manifest, checks: list[ShardCheck]) -> list[Problem]:
    problems = []
    for split in SPLITS:
        listed = [n for n in manifest.shards if (m := SHARD_NAME.match(n)) and m[1] == split]
        summary = manifest.splits.get(split)
        if summary is None:
            if listed:
                problems.append(Problem(MANIFEST, f"lists {split} shards but no splits.{split} entry"))
            continue
        if summary.get("shards") != len(listed):
            problems.append(Problem(split, f"{MANIFEST} lists {len(listed):,} {split} shard(s), but its splits.{split} "
                                           f"says {_listed(summary.get('shards'))}"))
        mine = [c for c in checks if c.split == split]
        if len(mine) != len(listed) or not all(c.trusted for c in mine):
            continue  # missing or damaged shards are reported already; their labels are unknown
        found: Counter = Counter()
        for c in mine:
            found.update(c.labels)
        differ = _counts_differ(found, summary.get("class_counts"))
        if differ:
            problems.append(Problem(split, differ))
    return problems


def _against_bboxes(fs: Any, root: str, url: str, manifest: _Manifest,
                    files: dict[str, dict[str, Any]]) -> list[Problem]:
    entry = manifest.bboxes_csv
    if entry is None:
        return []
    name = entry["name"]
    if name not in files:
        return [Problem(name, f"missing: listed in {MANIFEST} but not in the folder")]
    problems = []
    size = files[name].get("size")
    if size is not None and size != entry.get("bytes"):
        problems.append(Problem(name, f"holds {size:,} bytes, {MANIFEST} lists {_listed(entry.get('bytes'))}"))
    digest = _digest(fs, f"{root.rstrip('/')}/{name}", url)
    if digest != entry.get("sha256"):
        problems.append(Problem(name, f"sha256 {digest} differs from {MANIFEST}'s {entry.get('sha256')!r}"))
    return problems


__all__ = ["Problem", "ShardCheck", "VerifyError", "VerifyReport", "verify"]
