"""A Parquet file's framing by hand: its schema, data pages, column chunks, offset index and footer, around the images.

The file (Parquet's `parquet.thrift`, format 2.x as pyarrow writes it) is

    PAR1 | row group 0 | row group 1 | ... | footer (FileMetaData) | footer length (4) | PAR1

A row group is its three column chunks one after another (column-major): `image.bytes`, then
`image.path`, then `label`. A chunk is data pages (v1), PLAIN, uncompressed; a page is its header
(Thrift), its definition levels (a 4-byte length, then one RLE run: every value is present, so the
level is the column's deepest, 2 in the `image` struct, 1 for `label`; no repetition levels), then
its values: a BYTE_ARRAY value is a 4-byte length and its bytes, an INT64 8 bytes, little-endian.
Pages hold consecutive values up to `PAGE_BYTES` (pyarrow's default `data_page_size`), at least one
(an image larger than that is a page of its own), at most `PAGE_ROWS`. The footer holds the schema
(`image` an optional group of an optional BYTE_ARRAY `bytes` and an optional BYTE_ARRAY `path` of
logical type STRING, `label` an optional INT64), each row group's chunks (offsets, sizes,
statistics: no nulls anywhere, the least and greatest `path` and `label`, none for `bytes`), the
key-value metadata and `created_by`. No page index (pyarrow writes one for `datasets`; no reader
installed here uses it, so it could not be judged): a reader seeks by row group and column chunk.

`frame_shard` lays out a whole shard's file from what the plan knows of its records (each image's
size, name and label) before any image is read: the bytes that go before each image (a page's
header and levels when the image opens a page, then the image's length), the bytes after the last
image of each row group (its `path` and `label` chunks), and the file's end. The images go in
between as they are; the file's size is known exactly.
"""

from __future__ import annotations

import bisect
import struct as binary
from dataclasses import dataclass
from itertools import accumulate
from typing import Sequence

import numpy as np

from ...errors import OutputError
from .thrift import BINARY, BOOL, I16, I32, I64, LIST, STRUCT, struct, varint, zigzag

MAGIC = b"PAR1"  # a Parquet file opens and ends with it
PAGE_BYTES = 1 << 20  # a page's values at most (pyarrow's default data_page_size), unless one value is larger
PAGE_ROWS = 20_000  # a page's values at most (parquet-cpp's default max_rows_per_page)
MAX_PAGE = 2**31 - 1  # a page's size is an i32 in its header
VERSION = 2  # FileMetaData.version, as pyarrow writes it (format 2.6)

# parquet.thrift's enums
INT64, BYTE_ARRAY = 2, 6  # Type
REQUIRED, OPTIONAL = 0, 1  # FieldRepetitionType
UTF8 = 0  # ConvertedType
PLAIN, RLE = 0, 3  # Encoding
UNCOMPRESSED = 0  # CompressionCodec
DATA_PAGE = 0  # PageType
EMPTY = struct(())  # an empty struct: StringType, TypeDefinedOrder


@dataclass(frozen=True)
class Column:
    """A leaf column: its path in the schema, physical type and definition level (every value present)."""

    path: tuple[str, ...]
    physical: int
    level: int


BYTES = Column(("image", "bytes"), BYTE_ARRAY, 2)
PATH = Column(("image", "path"), BYTE_ARRAY, 2)
LABEL = Column(("label",), INT64, 1)
COLUMNS = (BYTES, PATH, LABEL)  # in the schema's order, which is each row group's


def schema() -> list[bytes]:
    """The schema's elements, depth first (SchemaElement: 1 type, 3 repetition, 4 name, 5 children, 6 converted
    type, 10 logical type): `image` struct<bytes: binary, path: string> and `label` int64, nullable as pyarrow
    writes an Arrow schema's fields."""
    string = struct([(1, STRUCT, EMPTY)])  # LogicalType.STRING
    return [struct([(3, I32, REQUIRED), (4, BINARY, "schema"), (5, I32, 2)]),
            struct([(3, I32, OPTIONAL), (4, BINARY, "image"), (5, I32, 2)]),
            struct([(1, I32, BYTE_ARRAY), (3, I32, OPTIONAL), (4, BINARY, "bytes")]),
            struct([(1, I32, BYTE_ARRAY), (3, I32, OPTIONAL), (4, BINARY, "path"), (6, I32, UTF8),
                    (10, STRUCT, string)]),
            struct([(1, I32, INT64), (3, I32, OPTIONAL), (4, BINARY, "label")])]


def levels(column: Column, rows: int) -> bytes:
    """A v1 data page's definition levels for `rows` values all present: the RLE/bit-packed hybrid's one RLE run
    (its header `rows << 1`, then the level in one byte: a width of 1 or 2 bits), behind its 4-byte length."""
    run = varint(rows << 1) + bytes([column.level])
    return binary.pack("<I", len(run)) + run


def page_header(rows: int, size: int) -> bytes:
    """A data page's PageHeader (1 type DATA_PAGE, 2 and 3 its size uncompressed and as stored, 5 its DataPageHeader:
    1 values, 2 PLAIN, 3 and 4 RLE levels), its Thrift struct written out (a shard's layout makes one a page, and
    `streamprep plan` one a page of every shard): the field headers (0x15: the next field, an i32; 0x2c: two fields
    on, a struct) and the zigzag varints of its three numbers."""
    return (b"\x15" + zigzag(DATA_PAGE) + b"\x15" + zigzag(size) + b"\x15" + zigzag(size) + b"\x2c\x15" + zigzag(rows)
            + b"\x15" + zigzag(PLAIN) + b"\x15" + zigzag(RLE) + b"\x15" + zigzag(RLE) + b"\x00\x00")


def page_head(column: Column, rows: int, nbytes: int) -> bytes:
    """A data page's header and levels, for `rows` values taking `nbytes` PLAIN: what goes before its first value."""
    run = levels(column, rows)
    size = len(run) + nbytes
    if size > MAX_PAGE:
        raise OutputError(f"a Parquet page of {size:,} bytes, more than its header can say ({MAX_PAGE:,}): an "
                          "image of 2 GiB or more cannot be written as Parquet; write another --format")
    return page_header(rows, size) + run


def pages(ends: Sequence[int]) -> list[tuple[int, int]]:
    """(first, stop) of each page of a chunk whose values end at `ends` (cumulative bytes, ascending): consecutive
    values up to `PAGE_BYTES`, at least one, at most `PAGE_ROWS`."""
    cut, first, base = [], 0, 0
    while first < len(ends):
        stop = bisect.bisect_right(ends, base + PAGE_BYTES, first)
        stop = min(max(stop, first + 1), first + PAGE_ROWS)
        cut.append((first, stop))
        base, first = ends[stop - 1], stop
    return cut


@dataclass
class Chunk:
    """One column chunk as laid out: where it starts, its pages, rows and bytes (headers included), its values'
    bytes less the BYTE_ARRAY lengths, its least and greatest values (PLAIN), if kept."""

    column: Column
    start: int
    rows: int = 0
    nbytes: int = 0
    pages: int = 0
    unencoded: int = 0
    least: bytes | None = None
    most: bytes | None = None

    def page(self, head: bytes, rows: int, nbytes: int) -> None:
        """A page of `rows` values of `nbytes` behind `head`, laid out after the chunk's pages so far."""
        self.unencoded += nbytes - 4 * rows if self.column.physical == BYTE_ARRAY else 0
        self.pages += 1
        self.rows += rows
        self.nbytes += len(head) + nbytes

    def statistics(self) -> bytes:
        """Statistics: no nulls; its least and greatest values when kept (5 max_value, 6 min_value, exact); for a
        signed INT64 also as the deprecated 1 max and 2 min, which pyarrow writes too."""
        kept = self.least is not None
        signed = kept and self.column.physical == INT64
        return struct([(1, BINARY, self.most if signed else None), (2, BINARY, self.least if signed else None),
                       (3, I64, 0), (5, BINARY, self.most), (6, BINARY, self.least), (7, BOOL, True if kept else None),
                       (8, BOOL, True if kept else None)])

    def metadata(self) -> bytes:
        """Its ColumnChunk: 2 file_offset (deprecated, 0 as pyarrow writes it), 3 its ColumnMetaData (1 type,
        2 encodings, 3 path, 4 codec, 5 values, 6 and 7 bytes, 9 first page, 12 statistics, 13 pages by encoding,
        16 SizeStatistics: the byte arrays' bytes, the values at each definition level)."""
        column = self.column
        encodings = struct([(1, I32, DATA_PAGE), (2, I32, PLAIN), (3, I32, self.pages)])
        histogram = [0] * column.level + [self.rows]
        unencoded = self.unencoded if column.physical == BYTE_ARRAY else None
        sizes = struct([(1, I64, unencoded), (3, LIST, (I64, histogram))])
        meta = struct([(1, I32, column.physical), (2, LIST, (I32, [RLE, PLAIN])), (3, LIST, (BINARY, column.path)),
                       (4, I32, UNCOMPRESSED), (5, I64, self.rows), (6, I64, self.nbytes), (7, I64, self.nbytes),
                       (9, I64, self.start), (12, STRUCT, self.statistics()), (13, LIST, (STRUCT, [encodings])),
                       (16, STRUCT, sizes)])
        return struct([(2, I64, 0), (3, STRUCT, meta)])


def values_chunk(column: Column, data: bytes, ends: list[int], start: int) -> tuple[bytes, Chunk]:
    """A chunk of these PLAIN values (`data`, each value ending at `ends`) starting at `start`: its bytes, its
    layout."""
    chunk = Chunk(column, start)
    written = []
    for first, stop in pages(ends):
        at, end = ends[first - 1] if first else 0, ends[stop - 1]
        head = page_head(column, stop - first, end - at)
        chunk.page(head, stop - first, end - at)
        written += [head, data[at:end]]
    return b"".join(written), chunk


def paths_chunk(names: Sequence[bytes], start: int) -> tuple[bytes, Chunk]:
    """A row group's `image.path` chunk: its names (UTF-8), their least and greatest (bytewise, as Parquet orders
    a STRING)."""
    lengths = [len(name) for name in names]
    data = b"".join(x for length, name in zip(lengths, names) for x in (binary.pack("<I", length), name))
    written, chunk = values_chunk(PATH, data, list(accumulate(length + 4 for length in lengths)), start)
    chunk.least, chunk.most = min(names), max(names)
    return written, chunk


def labels_chunk(labels: Sequence[int], start: int) -> tuple[bytes, Chunk]:
    """A row group's `label` chunk: its labels (int64), their least and greatest."""
    values = np.asarray(labels, dtype="<i8")
    written, chunk = values_chunk(LABEL, values.tobytes(), list(range(8, 8 * len(values) + 1, 8)), start)
    chunk.least, chunk.most = values.min().tobytes(), values.max().tobytes()
    return written, chunk


def images_chunk(sizes: np.ndarray, start: int) -> tuple[dict[int, bytes], Chunk]:
    """A row group's `image.bytes` chunk for images of these sizes, without them: what goes before each image that
    opens a page (its header and levels), by the image's place in the row group; its layout."""
    ends = np.cumsum(4 + sizes.astype(np.int64)).tolist()
    chunk = Chunk(BYTES, start)
    heads = {}
    for first, stop in pages(ends):
        nbytes = ends[stop - 1] - (ends[first - 1] if first else 0)
        heads[first] = page_head(BYTES, stop - first, nbytes)
        chunk.page(heads[first], stop - first, nbytes)
    return heads, chunk


def key_value(key: str, text: str) -> bytes:
    return struct([(1, BINARY, key), (2, BINARY, text)])


def footer(groups: Sequence[Sequence[Chunk]], rows: int, metadata: dict[str, str], created_by: str) -> bytes:
    """The file's end: the FileMetaData (1 version, 2 schema, 3 rows, 4 row groups, 5 key-value metadata,
    6 created_by, 7 column orders: each column's type order, which makes its min_value and max_value usable), its
    length, the magic."""
    row_groups = [row_group(chunks, k) for k, chunks in enumerate(groups)]
    orders = [struct([(1, STRUCT, EMPTY)])] * len(COLUMNS)
    meta = struct([(1, I32, VERSION), (2, LIST, (STRUCT, schema())), (3, I64, rows), (4, LIST, (STRUCT, row_groups)),
                   (5, LIST, (STRUCT, [key_value(k, v) for k, v in metadata.items()])), (6, BINARY, created_by),
                   (7, LIST, (STRUCT, orders))])
    return meta + binary.pack("<I", len(meta)) + MAGIC


def row_group(chunks: Sequence[Chunk], ordinal: int) -> bytes:
    """A RowGroup: 1 its chunks, 2 their bytes (uncompressed), 3 rows, 5 where it starts, 6 its bytes as stored
    (the same: nothing is compressed), 7 its place in the file."""
    nbytes = sum(chunk.nbytes for chunk in chunks)
    return struct([(1, LIST, (STRUCT, [chunk.metadata() for chunk in chunks])), (2, I64, nbytes),
                   (3, I64, chunks[0].rows), (5, I64, chunks[0].start), (6, I64, nbytes), (7, I16, ordinal)])


@dataclass
class Frame:
    """A shard's file but for its images: the bytes before each image (by its place in the shard; the image's length
    always, a page's header and levels first when it opens a page), after the last image of each row group (its
    `path` and `label` chunks, by that image's place), and the file's end; its size with the images."""

    heads: dict[int, bytes]
    tails: dict[int, bytes]
    end: bytes
    size: int

    def before(self, k: int, size: int) -> bytes:
        """What goes before image `k`, `size` bytes."""
        return self.heads.get(k, b"") + binary.pack("<I", size)


def frame_shard(sizes: Sequence[int], names: Sequence[bytes], labels: Sequence[int], rows: int,
                metadata: dict[str, str], created_by: str) -> Frame:
    """The layout of a shard's file whose records have these image sizes, file names (UTF-8) and labels, `rows` a
    row group (see the module docstring)."""
    sizes = np.asarray(sizes, dtype=np.int64)
    heads, tails, groups = {}, {}, []
    at = len(MAGIC)
    for first in range(0, len(sizes), rows):
        stop = min(first + rows, len(sizes))
        opening, images = images_chunk(sizes[first:stop], at)
        heads.update((first + k, head) for k, head in opening.items())
        paths, path_chunk = paths_chunk(names[first:stop], images.start + images.nbytes)
        label_bytes, label_chunk = labels_chunk(labels[first:stop], path_chunk.start + path_chunk.nbytes)
        tails[stop - 1] = paths + label_bytes
        groups.append((images, path_chunk, label_chunk))
        at = label_chunk.start + label_chunk.nbytes
    end = footer(groups, len(sizes), metadata, created_by)
    return Frame(heads, tails, end, at + len(end))
