"""Writing LitData's optimized chunks (`litdata/train/chunk-00000-of-01024.bin`) and index.json, without LitData.

A chunk is what `litdata.streaming.writer.BinaryWriter._create_chunk` writes (litdata 0.2.x, the
default `PyTreeLoader`, no compression, no encryption):

    # | num_items  | offset_array  | item_data   |
    # | uint32     | uint32[N+1]   | bytes       |

offsets counted from the start of the file, the first one the header's own size `4 + 4 * (N + 1)`, the
last one the file's size. An item is `PyTreeLoader.encode_data` of the sample's leaves: their sizes
(uint32 each), then their bytes. A sample here is the tuple `(image, class)` that LitData's ImageNet
example writes (`benchmarks/litdata/optimize_imagenet.py`: `return img, class_index`, the image a
`JpegImageFile` opened from its file): data format `["jpeg", "int"]`, so an item is
`sizes (len(jpeg), 8) | the JPEG's bytes | the class as int64`. `JPEGSerializer.serialize` passes a
file-backed JPEG's bytes through (`f.read()`), as this writer does; on read it decodes them into a
uint8 RGB tensor (C x H x W). The class is 0..N-1 (the synset's line in the labels file, less one:
the classic's label - 1, as timm and torchvision number ImageNet).

The header comes first, so the encoder knows every item's size before the first one: the images'
sizes from the plan (`Plan.fixed_sizes` holds the fix-up files' re-encoded sizes, learnt by
`plan.sized_plan`). Where it cannot know them (a fix-up file whose size the plan lacks: Beam's plan;
`--on-bad-image skip`, which may leave an image out), it spools the shard's items into an anonymous
local temporary file and writes the header and then the spooled bytes once the last item is in:
the same bytes either way, memory bounded by a block.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
from typing import Any, BinaryIO, Sequence

from ...errors import OutputError
from ...plan import Plan, ShardSpec
from ...records.image import Image
from ...records.spec import RecordSpec, record_specs
from ..format import ShardEncoder
from ..manifest import ShardEntry

FOLDER = "litdata"  # the format's own folder below `out`
SPLITS = ("train", "validation")  # each in a folder of its own in FOLDER: `StreamingDataset(OUT/"litdata"/"train")`
INDEX_JSON = "index.json"  # litdata.constants._INDEX_FILENAME
SHARD_PATTERN = FOLDER + r"/(train|validation)/chunk-(\d{5})-of-(\d{5})\.bin"
SIDE_PATTERN = FOLDER + r"/(?:train|validation)/index\.json"

SIZES = struct.Struct("<II")  # an item's leaf sizes: the JPEG's, the int64's
LABEL = struct.Struct("<q")  # IntegerSerializer: numpy int64, little-endian
ITEM_OVERHEAD = SIZES.size + LABEL.size  # an item's bytes beyond its image
OFFSET = 4  # a chunk's offset table entry (uint32) per item
MAX_CHUNK = 0xFFFFFFFF  # the offsets are uint32: a chunk of more bytes cannot be addressed
SPOOL_BLOCK = 8 << 20  # bytes of a spooled shard copied into place at a time

# index.json's `config`, as `BinaryWriter.get_config` gives it for these samples (litdata 0.2.76); `chunk_size`
# (the most items a chunk holds) is added per split.
LEAF = {"type": None, "context": None, "children_spec": []}
DATA_FORMAT = ["jpeg", "int"]
DATA_SPEC = json.dumps([1, {"type": "builtins.tuple", "context": "null", "children_spec": [LEAF, LEAF]}])
CONFIG = {"chunk_bytes": None, "compression": None, "compression_batch_size": None, "compression_level": None,
          "data_format": DATA_FORMAT, "data_spec": DATA_SPEC, "encryption": None, "ipc_compression": None,
          "item_loader": "PyTreeLoader", "types": "json"}


def split_folder(split: str) -> str:
    """`litdata/train`: a split's folder below `out`, where its chunks and its index.json lie."""
    return f"{FOLDER}/{split}"


def chunk_file(split: str, number: int, of: int) -> str:
    """`litdata/train/chunk-00000-of-01024.bin`: LitData's prefix and suffix (its cache counts `chunk-*.bin` files),
    the plan's shard number and count between them."""
    return f"{split_folder(split)}/chunk-{number:05d}-of-{of:05d}.bin"


def header(items: Sequence[int], name: str) -> bytes:
    """The chunk's header for items of these sizes: their count, then the N + 1 offsets."""
    offsets = [OFFSET * (len(items) + 2)]
    for size in items:
        offsets.append(offsets[-1] + size)
    if offsets[-1] > MAX_CHUNK:
        raise OutputError(f"{name}: {offsets[-1]:,} bytes, more than a LitData chunk can address (its offsets are "
                          "32-bit: 4 GiB at most); write more shards (--train-shards, --validation-shards)")
    return struct.pack(f"<{len(offsets) + 1}I", len(items), *offsets)


def item(image: bytes, cls: int) -> tuple[bytes, bytes, bytes]:
    """One sample `(image, cls)` as its item's pieces: the leaf sizes, the image (uncopied), the class."""
    return SIZES.pack(len(image), LABEL.size), image, LABEL.pack(cls)


def planned_sizes(plan: Plan, specs: Sequence[RecordSpec]) -> list[int] | None:
    """Each record's image size as the plan knows it (a fix-up file's from `Plan.fixed_sizes`, by member), or None
    when it does not know one."""
    sizes = []
    for spec in specs:
        size = plan.fixed_sizes.get(spec.member) if spec.fixup else spec.size
        if size is None:
            return None
        sizes.append(size)
    return sizes


class Encoder(ShardEncoder):
    """One chunk: its header from the planned sizes, then the items as they come; or, when the sizes cannot be
    known first (`spool`, or a size the plan lacks), the items spooled and the header written after them."""

    def __init__(self, name: str, sizes: list[int] | None) -> None:
        self.name = name
        self.planned = sizes  # the images' sizes the header was written for; None: spooled
        self.items: list[int] = []  # the sizes of the items encoded so far
        self.spool: BinaryIO | None = None if sizes is not None else tempfile.TemporaryFile(prefix="streamprep-")
        self.opened = False

    def record(self, spec: RecordSpec, image: Image) -> Sequence[bytes]:
        pieces = item(image.data, spec.label - 1)
        k = len(self.items)
        self.items.append(len(image.data) + ITEM_OVERHEAD)
        if self.spool is not None:
            for piece in pieces:
                self.spool.write(piece)
            return ()
        assert self.planned is not None
        if k >= len(self.planned) or self.planned[k] != len(image.data):
            raise OutputError(f"{self.name}: record {k} ({spec.member}) holds {len(image.data):,} image bytes, not "
                              "the size the chunk's header was written for (did the download change during the "
                              "run?); run the conversion again")
        if not self.opened:
            self.opened = True
            return (header([s + ITEM_OVERHEAD for s in self.planned], self.name), *pieces)
        return pieces

    def finish(self) -> Sequence[bytes]:
        if self.spool is not None:
            return _Spooled(header(self.items, self.name), self.spool)
        assert self.planned is not None
        if len(self.items) != len(self.planned):
            raise OutputError(f"{self.name}: {len(self.items):,} records written, but the chunk's header lists "
                              f"{len(self.planned):,}; run the conversion again")
        return () if self.opened else (header([], self.name),)

    def close(self) -> None:
        if self.spool is not None:
            self.spool.close()


class _Spooled(Sequence[bytes]):
    """The header, then a spooled shard's items a block at a time, read from the spool as each is asked for."""

    def __init__(self, head: bytes, spool: BinaryIO) -> None:
        self.head, self.spool = head, spool
        self.size = spool.seek(0, os.SEEK_END)

    def __len__(self) -> int:
        return 1 + -(-self.size // SPOOL_BLOCK)

    def __getitem__(self, k: Any) -> Any:
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(len(self)))]
        k = k + len(self) if k < 0 else k
        if not 0 <= k < len(self):
            raise IndexError(k)
        if k == 0:
            return self.head
        self.spool.seek((k - 1) * SPOOL_BLOCK)
        return self.spool.read(SPOOL_BLOCK)


def encoder(plan: Plan, shard: ShardSpec, name: str, spool: bool) -> Encoder:
    """The shard's encoder: its header known from the plan, unless `spool` (images may be skipped) or the plan
    lacks a fix-up file's size."""
    return Encoder(name, None if spool else planned_sizes(plan, record_specs(plan, shard)))


def index_json(plan: Plan, entries: Sequence[ShardEntry], split: str, resize: dict[str, Any] | None = None) -> bytes:
    """A split's `index.json`, as `BinaryWriter` and its merge write it (`json.dump(..., sort_keys=True)`): its
    chunks in shard order, each with its bytes, item count and file name; chunks without items left out (LitData
    never writes one). `updated_at`, where LitData writes the time, is a sha256 of the chunks' digests in the
    manifest (of its checksum): the same output gives the same file, and LitData's cache (kept per `updated_at`) is
    renewed when the chunks change. A resized output's `--resize` recipe (`Recipe.describe`) is a top-level `resize`,
    which LitData's reader leaves alone."""
    mine = {e.name: e for e in entries}
    chunks, digest = [], hashlib.sha256()
    for shard in plan.splits[split].shards:
        entry = mine.get(chunk_file(shard.split, shard.number, shard.of))
        if entry is None or not entry.records:
            continue
        filename = entry.name.rpartition("/")[2]
        chunks.append({"chunk_bytes": entry.bytes, "chunk_size": entry.records, "dim": None, "filename": filename})
        digest.update(f"{filename} {entry.digest}\n".encode())
    config = {**CONFIG, "chunk_size": max((c["chunk_size"] for c in chunks), default=1)}
    return json.dumps({"chunks": chunks, "config": config, "updated_at": digest.hexdigest(),
                       **({"resize": resize} if resize else {})}, sort_keys=True).encode()

