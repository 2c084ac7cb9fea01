"""Writing WebDataset tar shards: a sample's key and members, deterministic ustar headers, DALI's index, _info.json,
the `wids` shard index.

See the package's docstring (`outputs.webdataset`) for what a shard holds.
"""

from __future__ import annotations

import hashlib
import json
import re
import tarfile
from typing import Any, Sequence

import numpy as np

from ... import datasets
from ...errors import LabelDataError
from ...plan import Plan
from ...records.image import EXTENSIONS, Image
from ...records.spec import RecordSpec
from ..format import ShardEncoder
from ..manifest import ShardEntry

SUFFIX = ".tar"
INFO_JSON = "_info.json"
WIDS_SUFFIX = ".wids.json"  # `train.wids.json`: a split's shard list as `wids.ShardListDataset` reads it
WIDS_KIND = "wids-shard-index-v1"  # what `wids_index.py create` writes as `__kind__`
SPLITS = ("train", "validation")
BLOCK = 512
RECORD = 10240  # tarfile.RECORDSIZE: the archive's length is padded to a multiple of it
_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
# Member headers cost 512 bytes each (no pax record: every name fits the header), the .cls and .json a block or
# two more, and padding up to 511 bytes after each of the three members; generously counted.
RECORD_ALLOWANCE = 6 * BLOCK + 3 * BLOCK

# Every member name fits a ustar header's 100-byte name field, so no member needs a pax record: `wids`' reader
# (`wids_mmtar.MMIndexedTar`) and DALI's tar parser without an index read that field alone, and take the pax
# record's header for a file of its own. A key is at most KEY_ROOM bytes (`KEY.json` is the longest name).
NAME_FIELD = 100
KEY_ROOM = NAME_FIELD - len(".json")
HASHED = "%_"  # between a shortened key's head and its hash: in no escaped key, where every `%` starts `%XX`
HASH_CHARS = 16  # hex digits of the full key's sha256 that a shortened key ends with


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
    """The sample's key: `synset/stem` for training images, `stem` for validation ones, escaped, shortened where its
    members' names would not fit a ustar header (`fitted`). The empty stem of a file named `.JPEG` is `%`, which no
    escaped stem is (each `%` of one starts `%XX`): an empty last part would make webdataset read the key as
    `synset/` (or skip the sample) and DALI's `wds2idx` skip it."""
    stem = spec.filename.rsplit(".", 1)[0] if "." in spec.filename else spec.filename
    part = escape(stem) or "%"
    return fitted(part if split == "validation" else f"{escape(spec.synset)}/{part}")


def fitted(key: str) -> str:
    """`key` itself when `KEY.json` fits the ustar name field (100 bytes), else a stable key that does: as much of
    its head as leaves room (never cutting a `%XX` in two), `%_`, and the first 16 hex digits of the full key's
    sha256. The same key always gives the same short one; no key that is not shortened holds `%_`, and two keys
    of a shard share a short one only if their heads and 64-bit hashes both agree. The full file name is in the
    sample's `.json`."""
    if len(key) <= KEY_ROOM:
        return key
    head = key[:KEY_ROOM - len(HASHED) - HASH_CHARS]
    cut = head.find("%", len(head) - 2)  # a `%XX` whose digits would be cut off
    if cut >= 0:
        head = head[:cut]
    return head + HASHED + hashlib.sha256(key.encode("ascii")).hexdigest()[:HASH_CHARS]


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
        ext = EXTENSIONS[image.encoding]  # KEY.jpg, or a resized output's KEY.png / KEY.webp
        head = member_header(f"{key}.{ext}", len(image.data))
        tail = bytearray(_padding(len(image.data)))
        line = [f"{ext} {self.offset + len(head)} {len(image.data)} {key}.{ext}".encode()]
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


def timm_info(plan: Plan, entries: Sequence[ShardEntry], resize: dict[str, Any] | None = None) -> bytes:
    """timm's `_info.json`: per split its name, sample count, shard file names and their sample counts; the
    `--resize` recipe (`Recipe.describe`) of a resized output as `resize`."""
    splits = {}
    for name, split_plan in plan.splits.items():
        mine = {e.name: e for e in entries if e.split == name}
        files = [s.name + SUFFIX for s in split_plan.shards]
        lengths = [mine[f].records if f in mine else 0 for f in files]
        splits[name] = {"name": name, "num_samples": sum(lengths), "filenames": files, "shard_lengths": lengths}
    info = {"name": datasets.get(plan.dataset).output_name, "splits": splits, **({"resize": resize} if resize else {})}
    return (json.dumps(info, indent=1) + "\n").encode()


def wids_name(split: str) -> str:
    """The file of a split's `wids` shard list: `train.wids.json`."""
    return split + WIDS_SUFFIX


def wids_indexes(plan: Plan, entries: Sequence[ShardEntry]) -> dict[str, bytes]:
    """Each split's shard list as `wids.ShardListDataset(PATH)` reads it, in the layout `wids_index.py create` writes
    (`__kind__` wids-shard-index-v1, `wids_version` 1, a `name`, and per shard `url`, `nsamples` and `filesize`):
    every shard in order (an empty one too: wids never opens a shard of no samples), its URL relative to the index
    file, which lies beside the shards, so that the folder can move."""
    files = {}
    for name, split_plan in plan.splits.items():
        mine = {e.name: e for e in entries if e.split == name}
        shards = [mine[s.name + SUFFIX] for s in split_plan.shards if s.name + SUFFIX in mine]
        index = {"__kind__": WIDS_KIND, "wids_version": 1, "name": f"{datasets.get(plan.dataset).output_name}-{name}",
                 "shardlist": [{"url": e.name, "nsamples": e.records, "filesize": e.bytes} for e in shards]}
        files[wids_name(name)] = (json.dumps(index, indent=1) + "\n").encode()
    return files


def refuse_synsets(labels: Any) -> None:
    """A synset whose training keys the webdataset library would skip as metadata (`__x__/...`)."""
    for number, synset in enumerate(labels.synsets, 1):
        if skipped_by_readers(f"{escape(synset)}/x.jpg"):
            raise LabelDataError(f"labels file {labels.sources.get('labels', '')} line {number}: synset "
                                 f"{synset!r} would give WebDataset keys {escape(synset)}/..., which the "
                                 "webdataset library takes for metadata and skips, so its images would not be "
                                 "read; rename the synset (in --labels-file and --metadata-file), or write "
                                 "another --format")
