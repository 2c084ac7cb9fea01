"""Writing WebDataset tar shards: a sample's key and members, deterministic ustar headers, DALI's index, _info.json.

See the package's docstring (`outputs.webdataset`) for what a shard holds.
"""

from __future__ import annotations

import json
import re
import tarfile
from typing import Any, Sequence

import numpy as np

from ...errors import LabelDataError
from ...plan import Plan
from ...records.image import Image
from ...records.spec import RecordSpec
from ..format import ShardEncoder
from ..manifest import ShardEntry

SUFFIX = ".tar"
INFO_JSON = "_info.json"
BLOCK = 512
RECORD = 10240  # tarfile.RECORDSIZE: the archive's length is padded to a multiple of it
_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
# Member headers cost 512 bytes each (1024 with a pax record for a long name), the .cls and .json a block or
# two more, and padding up to 511 bytes after each of the three members.
RECORD_ALLOWANCE = 6 * BLOCK + 3 * BLOCK


# Member names the webdataset library skips as metadata (`tar_file_iterator`'s `skip_meta`, and `__...__` names
# without a folder): a sample so named would be missing from what a training job reads.
READERS_SKIP = re.compile(r"__[^/]*__($|/)")


def skipped_by_readers(member: str) -> bool:
    """Whether the webdataset library leaves this tar member out of the samples it reads."""
    return bool(READERS_SKIP.match(member)) or ("/" not in member and member.startswith("__") and member.endswith("__"))


def escape(name: str) -> str:
    """A file name as a key part: bytes outside `[A-Za-z0-9_-]` as `%XX` (so `.`, `/`, spaces and `%` too)."""
    raw = name.encode("utf-8", "surrogateescape")
    if all(b in _SAFE for b in raw):
        return name
    return "".join(chr(b) if b in _SAFE else f"%{b:02X}" for b in raw)


def sample_key(spec: RecordSpec, split: str) -> str:
    """The sample's key: `synset/stem` for training images, `stem` for validation ones, escaped. The empty stem of a
    file named `.JPEG` is `%`, which no escaped stem is (each `%` of one starts `%XX`): an empty last part would
    make webdataset read the key as `synset/` (or skip the sample) and DALI's `wds2idx` skip it."""
    stem = spec.filename.rsplit(".", 1)[0] if "." in spec.filename else spec.filename
    part = escape(stem) or "%"
    return part if split == "validation" else f"{escape(spec.synset)}/{part}"


def _number(value: float) -> str:
    return np.format_float_positional(np.float32(value), unique=True, trim="0")


def metadata(spec: RecordSpec, image: Image) -> bytes:
    """The sample's .json (keys sorted, no spaces, UTF-8). A name holding bytes that are not UTF-8 (kept by Python as
    lone surrogates) makes the whole file ASCII with `\\uXXXX` escapes: still JSON, and read back to the same
    string, where writing those bytes raw would not be JSON at all."""
    boxes = ",".join("[" + ",".join(_number(v) for v in row) + "]" for row in spec.boxes.tolist())
    fields = {"cls": spec.label - 1, "filename": spec.filename, "height": image.height, "label": spec.label,
              "synset": spec.synset, "text": spec.text, "width": image.width}
    def text(ascii_only: bool) -> str:
        body = json.dumps(fields, sort_keys=True, ensure_ascii=ascii_only, separators=(",", ":"))
        return body[:1] + '"boxes":[' + boxes + "]," + body[1:]

    try:
        return text(False).encode("utf-8")
    except UnicodeEncodeError:  # only for such a name: the usual sample is encoded once
        return text(True).encode("utf-8")


# A ustar header's fields after the name (offset 100), as Python's tarfile writes them for mode 0444, owner 0/0,
# mtime 0 and no user or group names; the size (at 124) and the checksum (at 148) are filled in per member.
_AFTER_NAME = (b"0000444\0" + b"0000000\0" * 2 + b"\0" * 12 + b"00000000000\0" + b" " * 8 + b"0" + b"\0" * 100
               + b"ustar\x0000" + b"\0" * 64 + b"\0" * 16 + b"\0" * 167)


def member_header(name: str, size: int) -> bytes:
    """A regular file's tar header, deterministic (see the module docstring): built here for the usual short
    ASCII name (Python's tarfile takes about 18 us a header), by tarfile otherwise (a pax record for a long one).
    Equal to `tarfile.TarInfo(...).tobuf(PAX_FORMAT)` (tests/test_webdataset.py)."""
    raw = name.encode("ascii", "surrogateescape") if name.isascii() else b""
    if not raw or len(raw) > 100 or size >= 8 ** 11:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime, info.uid, info.gid, info.uname, info.gname = size, 0o444, 0, 0, 0, "", ""
        return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    header = bytearray(raw.ljust(100, b"\0") + _AFTER_NAME)
    header[124:136] = b"%011o\0" % size
    header[148:156] = b"%06o\0 " % sum(header)
    return bytes(header)


def _padding(size: int) -> bytes:
    return bytes(-size % BLOCK)


class Encoder(ShardEncoder):
    """One shard's samples, each a tar member triple as it is written, and the DALI index of them."""

    def __init__(self, split: str) -> None:
        self.split = split
        self.offset = 0
        self.samples: list[bytes] = []

    def record(self, spec: RecordSpec, image: Image) -> Sequence[bytes]:
        key = sample_key(spec, self.split)
        head = member_header(f"{key}.jpg", len(image.data))
        tail = bytearray(_padding(len(image.data)))
        line = [b"jpg %d %d %s.jpg" % (self.offset + len(head), len(image.data), key.encode())]
        at = self.offset + len(head) + len(image.data) + len(tail)
        for ext, data in (("cls", str(spec.label - 1).encode()), ("json", metadata(spec, image))):
            header = member_header(f"{key}.{ext}", len(data))
            line.append(b"%s %d %d %s.%s" % (ext.encode(), at + len(header), len(data), key.encode(), ext.encode()))
            tail += header + data + _padding(len(data))
            at += len(header) + len(data) + len(_padding(len(data)))
        self.offset = at
        self.samples.append(b" ".join(line))
        return head, image.data, bytes(tail)

    def finish(self) -> Sequence[bytes]:
        end = self.offset + 2 * BLOCK
        end += -end % RECORD
        closing = bytes(end - self.offset)
        self.offset = end
        return (closing,)

    def index(self) -> bytes:
        """DALI's WebDataset index (what its `wds2idx` writes, version v1.2): `v1.2 SAMPLES`, then a line per
        sample of `ext offset size name` for each member, offsets of the member's data."""
        return b"v1.2 %d\n" % len(self.samples) + b"".join(line + b"\n" for line in self.samples)


def timm_info(plan: Plan, entries: Sequence[ShardEntry]) -> bytes:
    """timm's `_info.json`: per split its name, sample count, shard file names and their sample counts."""
    splits = {}
    for name, split_plan in plan.splits.items():
        mine = {e.name: e for e in entries if e.split == name}
        files = [s.name + SUFFIX for s in split_plan.shards]
        lengths = [mine[f].records if f in mine else 0 for f in files]
        splits[name] = {"name": name, "num_samples": sum(lengths), "filenames": files, "shard_lengths": lengths}
    info = {"name": "imagenet2012", "splits": splits}
    return (json.dumps(info, indent=1) + "\n").encode()


def refuse_synsets(labels: Any) -> None:
    """A synset whose training keys the webdataset library would skip as metadata (`__x__/...`)."""
    for number, synset in enumerate(labels.synsets, 1):
        if skipped_by_readers(f"{escape(synset)}/x.jpg"):
            raise LabelDataError(f"labels file {labels.sources.get('labels', '')} line {number}: synset "
                                 f"{synset!r} would give WebDataset keys {escape(synset)}/..., which the "
                                 "webdataset library takes for metadata and skips, so its images would not be "
                                 "read; rename the synset (in --labels-file and --metadata-file), or write "
                                 "another --format")
