"""verify of one WebDataset shard: tar framing, the members of each sample, labels, metadata, optionally images."""

from __future__ import annotations

import json
import tarfile
from typing import BinaryIO

from ..checker import ADVANCE_EVERY, READ_BLOCK, ShardCheck, ShardChecker
from ..checksum import Hasher
from ...records.image import EXTENSIONS
from .write import skipped_by_readers

IMAGES = {ext: name for name, ext in EXTENSIONS.items()}  # an image member's extension -> its encoding: jpg JPEG, ...
MEMBERS = (*IMAGES, "cls", "json")  # what a sample may hold: one image (.jpg, or a resized output's .png, .webp), .cls
# and .json, each once
MAX_SMALL_MEMBER = 1 << 20  # a .cls or .json larger than this is not one streamprep wrote


class _Hashing:
    """A read-only file that hashes what is read from it (tarfile reads a stream sequentially)."""

    def __init__(self, f: BinaryIO, digest: Hasher) -> None:
        self.f, self.digest, self.position = f, digest, 0

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.digest.update(data)
        self.position += len(data)
        return data

    def rest(self) -> None:
        while self.read(READ_BLOCK):
            pass


def _refused(member: tarfile.TarInfo) -> str | None:
    """Why a member is no sample's member (not a regular file, skipped by the webdataset library, not named
    `KEY.jpg` (`.png`, `.webp`), `KEY.cls` or `KEY.json`), or None."""
    name = member.name
    if not member.isfile():
        return f"member {name!r} is not a regular file"
    if skipped_by_readers(name):  # read as the webdataset library reads it
        return (f"member {name!r}: the webdataset library skips it as metadata (a name starting __...__), so a "
                "training job would miss its sample")
    stem, _, ext = name.rpartition(".")
    if ext not in MEMBERS or "." in stem.rsplit("/", 1)[-1] or not stem:
        return f"member {name!r} is not KEY.jpg (.png, .webp), KEY.cls or KEY.json"
    return None


class TarShardChecker(ShardChecker):
    """Reads WebDataset shards (`NAME.tar`) and checks their samples; one instance shared by the worker threads.

    Checked: the file is a tar to its end; every member is a regular file named `KEY.jpg` (a resized output's
    `KEY.png` or `KEY.webp`), `KEY.cls` or `KEY.json` (and not one the webdataset library skips as metadata), in a
    plain ustar header (no pax record), a sample's members together and each once, one image a sample; `.cls` a
    class number in 0..N-1; `.json` an object whose `cls` and `label` agree with `.cls`; the image of the encoding
    its extension names and the output holds (with `decode`, one TensorFlow's decoder decodes to the `.json`'s
    height and width). The labels counted are the classic's (`cls` + 1), to compare with the manifest's class
    counts; `index` is the DALI index of the file as read.
    """

    def _read(self, raw: BinaryIO, check: ShardCheck) -> None:
        f = _Hashing(raw, self.hasher())
        lines: list[bytes] = []
        sample: dict[str, tuple[int, bytes]] = {}  # ext -> (data offset, data) of the sample being read
        key: str | None = None
        keys: set[str] = set()
        offsets: list[bytes] = []
        pending = pending_bytes = 0
        try:
            with tarfile.open(fileobj=f, mode="r|") as tar:  # type: ignore[call-overload]
                for member in tar:
                    if self.stop.is_set():
                        return
                    name = member.name
                    refused = _refused(member)
                    if refused:
                        check.problem(refused, check.records)
                        check.trusted = False
                        continue
                    if member.pax_headers:  # streamprep never writes one (`write.fitted`)
                        check.problem(f"member {name!r} has a pax record (a name over 100 bytes, or not ASCII), "
                                      "which wids and DALI's tar parser without an index cannot read", check.records)
                    stem, _, ext = name.rpartition(".")
                    if stem != key:
                        if key is not None:
                            pending_bytes += self._sample(check, key, sample, lines, offsets)
                            pending += 1
                        if stem in keys:
                            check.problem(f"sample {stem!r} appears again after other samples: a sample's members "
                                          "lie next to each other, once", check.records)
                            check.trusted = False
                        keys.add(stem)
                        key, sample, offsets = stem, {}, []
                    if ext in sample:
                        check.problem(f"sample {stem!r} holds two .{ext} members", check.records)
                        check.trusted = False
                        continue
                    if ext not in IMAGES and member.size > MAX_SMALL_MEMBER:
                        check.problem(f"{name}: {member.size:,} bytes, more than a .{ext} streamprep writes",
                                      check.records)
                        check.trusted = False
                        continue
                    reader = tar.extractfile(member)
                    data = reader.read() if reader else b""
                    sample[ext] = (member.offset_data, data)
                    offsets.append(b"%s %d %d %s" % (ext.encode(), member.offset_data, member.size,
                                                     name.encode("utf-8", "surrogateescape")))
                    if pending >= ADVANCE_EVERY:
                        self.phase.advance(pending, pending_bytes)
                        pending = pending_bytes = 0
                if key is not None:
                    pending_bytes += self._sample(check, key, sample, lines, offsets)
                    pending += 1
            f.rest()
            check.complete = True
        except (tarfile.TarError, EOFError) as e:
            check.problem(f"not a readable tar from byte {f.position:,} on ({e}); the file is damaged or cut short",
                          check.records)
        finally:
            self.phase.advance(pending, pending_bytes)
        if check.complete:
            check.digest = f.digest.hexdigest()
            check.index = b"v1.2 %d\n" % len(lines) + b"".join(lines)
        else:
            check.trusted = False

    def _sample(self, check: ShardCheck, key: str, sample: dict[str, tuple[int, bytes]], lines: list[bytes],
                offsets: list[bytes]) -> int:
        """Check one complete sample; its DALI index line is added; its bytes returned."""
        record = check.records
        check.records += 1
        lines.append(b" ".join(offsets) + b"\n")
        images = [ext for ext in IMAGES if ext in sample]
        missing = ([] if images else ["jpg"]) + [ext for ext in ("cls", "json") if ext not in sample]
        if missing:
            check.problem(f"sample {key!r} lacks " + ", ".join(f".{ext}" for ext in missing), record)
            check.trusted = False
        if len(images) > 1:
            check.problem(f"sample {key!r} holds {len(images)} images (" + ", ".join(f".{e}" for e in images)
                          + "), expected one", record)
        cls = self._cls(check, key, sample, record) if "cls" in sample else None
        meta = self._json(check, key, sample["json"][1], cls, record) if "json" in sample else None
        for ext in images:
            self._image(check, key, ext, sample[ext][1], meta, record)
        return sum(len(data) for _, data in sample.values())

    def _cls(self, check: ShardCheck, key: str, sample: dict[str, tuple[int, bytes]], record: int) -> int | None:
        """The sample's class from its `.cls` (counted as the classic's label, + 1), or None if it holds none."""
        text = sample["cls"][1]
        if text.isdigit() and int(text) < self.num_classes:
            check.labels[int(text) + 1] += 1
            return int(text)
        check.problem(f"sample {key!r}: .cls is {text[:20]!r}, expected a class 0..{self.num_classes - 1}", record)
        check.trusted = False
        return None

    @staticmethod
    def _json(check: ShardCheck, key: str, data: bytes, cls: int | None, record: int) -> dict | None:
        """The sample's `.json` object, checked against its `.cls` (its boxes counted), or None if it is none."""
        try:
            meta = json.loads(data)
        except (ValueError, RecursionError):
            meta = None
        if not isinstance(meta, dict):
            check.problem(f"sample {key!r}: .json is not a JSON object", record)
            return None
        if cls is not None and (type(meta.get("cls")) is not int or type(meta.get("label")) is not int
                                or meta.get("cls") != cls or meta.get("label") != cls + 1):
            check.problem(f"sample {key!r}: .json says cls {meta.get('cls')!r} and label {meta.get('label')!r}, "
                          f".cls says {cls} (so cls {cls} and the classic's label {cls + 1})", record)
        else:
            boxes = meta.get("boxes", [])
            check.boxes += len(boxes) if isinstance(boxes, list) else 0
        return meta

    def _image(self, check: ShardCheck, key: str, ext: str, image: bytes, meta: dict | None, record: int) -> None:
        """The sample's image (`.jpg`, `.png`, `.webp`): of the encoding its extension names and the output holds, and
        with `decode` one TensorFlow's decoder of it decodes to the `.json`'s size."""
        for what in self.image_problems(image, f"sample {key!r}: .{ext}", IMAGES[ext], (meta or {}).get("height"),
                                        (meta or {}).get("width"), ".json's width x height"):
            check.problem(what, record)
        check.decoded += 1 if self.decode else 0
