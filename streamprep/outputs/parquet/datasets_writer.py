"""`--parquet-writer datasets`: each file written by pyarrow byte for byte as `datasets`' own Parquet writer writes it.

Each file is what `datasets` writes for these rows (`Dataset.to_parquet`, which `push_to_hub` calls
on each shard): pyarrow's `ParquetWriter` set up as `datasets/io/parquet.py`'s
`ParquetDatasetWriter` sets it up in datasets 5.0 (quoted where it is used below), a row group at a
time, as many rows a group as `push_to_hub` puts in one (`write.row_group_rows`), with content-defined
chunking, so the Hub's Xet storage deduplicates its pages against files `datasets` writes. pyarrow
writes into a sink that passes each piece on as it comes, straight into the shard's file
(`ShardEncoder.attach`: written and hashed there, so a row group's pages are never held); the encoder
holds one row group's rows at a time, never the shard, its images in one buffer sized from the plan
(pyarrow takes a row group as one table: each image is copied once, into it). Needs pyarrow 21 or
later (`pip install 'streamprep[parquet]'`); deterministic for a given pyarrow release, whose version
the footer's `created_by` names.
"""

from __future__ import annotations

import contextlib
import json
import re
from typing import Any, Callable, Sequence

import numpy as np

from ...errors import OutputError
from ...records.image import Image
from ...records.spec import RecordSpec
from ..format import ShardEncoder
from .write import arrow_schema, utf8_name

# datasets/config.py's `DEFAULT_CDC_OPTIONS`, with which `ParquetDatasetWriter` turns on pyarrow's content-defined
# chunking (pyarrow 21 or later).
CDC_OPTIONS = {"min_chunk_size": 256 * 1024, "max_chunk_size": 1024 * 1024, "norm_level": 0}
MIN_PYARROW = (21, 0)
MAX_BINARY = 2**31 - 1  # the most data bytes an Arrow `binary` array (int32 offsets) holds


def writer_options() -> dict[str, Any]:
    """pyarrow's `ParquetWriter` options, as `ParquetDatasetWriter._write` passes them for these features: the
    image (`require_storage_embed`) uncompressed, PLAIN, no dictionary; the label snappy with a dictionary;
    content-defined chunking; a page index."""
    return {"compression": {"image": "none", "label": "snappy"}, "use_dictionary": ["label"],
            "column_encoding": {"image": "PLAIN"}, "use_content_defined_chunking": CDC_OPTIONS,
            "write_page_index": True}


class _Sink:
    """The file pyarrow writes to. Once attached to the shard's file (`put`), each piece goes straight into it as
    pyarrow hands it over; before that (the magic, written when pyarrow's writer is made), or for a caller that takes
    the pieces itself (`take`), what was written is kept. Detached, it drops what comes (a failed shard's footer)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.position = 0
        self.closed = False
        self.put: Callable[[Sequence[bytes]], Any] | None = None
        self.dropping = False

    def attach(self, put: Callable[[Sequence[bytes]], Any]) -> None:
        self.put = put
        put(self.take())

    def detach(self) -> None:
        self.put, self.dropping = None, True

    def write(self, data: Any) -> int:
        n = len(data)
        self.position += n
        if self.put is not None:
            self.put((data,))  # pyarrow's own copy of the page (bytes), written and hashed before the call returns
        elif not self.dropping:
            self.parts.append(bytes(data))
        return n

    def tell(self) -> int:
        return self.position

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def take(self) -> list[bytes]:
        parts, self.parts = self.parts, []
        return parts


class Images:
    """A row group's images end to end, copied in as they come: the data of its Arrow `binary` array. Its buffer is
    made as large as the largest row group a shard's plan gives (`reserve`, before the first image) and kept for the
    next row group and shard its writer writes, so its pages are not faulted in afresh each time (at 100 MB a row
    group, 0.6 CPU s a GB here); it grows only for a fix-up file re-encoded larger than its download."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.ends: list[int] = [0]  # where each image ends (the array's offsets)

    def reserve(self, nbytes: int) -> None:
        """Room for `nbytes` of images, asked before the first: a larger buffer is made afresh, nothing copied."""
        if nbytes > len(self.buffer) and self.ends[-1] == 0:
            self.buffer = bytearray()  # the old one freed first: never both at once
            self.buffer = bytearray(nbytes)

    def add(self, data: bytes) -> None:
        start, end = self.ends[-1], self.ends[-1] + len(data)
        if end > len(self.buffer):  # more than reserved (a re-encoded fix-up file): the images so far copied over
            grown = bytearray(max(end, len(self.buffer) * 5 // 4))
            grown[:start] = memoryview(self.buffer)[:start]
            self.buffer = grown
        self.buffer[start:end] = data  # same length: copied in place, never resized
        self.ends.append(end)

    def array(self) -> Any:
        """The images as a `binary` array (int32 offsets), its data the buffer itself, as `pa.array` makes it."""
        import pyarrow as pa

        if self.ends[-1] > MAX_BINARY:
            raise OutputError(f"a Parquet row group of {self.ends[-1]:,} image bytes, more than an Arrow binary "
                              "array holds; convert with more shards (--train-shards, --validation-shards)")
        offsets = pa.py_buffer(np.asarray(self.ends, dtype=np.int32))
        data = pa.py_buffer(memoryview(self.buffer)[:self.ends[-1]])
        return pa.Array.from_buffers(pa.binary(), len(self.ends) - 1, [None, offsets, data])

    def clear(self) -> None:
        self.ends = [0]


def largest_group(specs: Sequence[RecordSpec], rows: int) -> int:
    """The image bytes of the largest row group of these records, `rows` a group, as the plan sizes them."""
    sizes = np.fromiter((s.size for s in specs), dtype=np.int64, count=len(specs))
    if not len(sizes):
        return 0
    return int(np.add.reduceat(sizes, np.arange(0, len(sizes), rows)).max())


class Encoder(ShardEncoder):
    """One shard's rows, a row group at a time (`rows` each), written by pyarrow as `datasets` writes them and passed
    on to the shard's file as pyarrow writes; the images copied once, into `images` (its writer's, kept)."""

    def __init__(self, names: Sequence[str], rows: int, schema: Any = None, images: Images | None = None) -> None:
        import pyarrow.parquet as pq

        self.schema = arrow_schema(names) if schema is None else schema
        self.rows = rows
        self.sink = _Sink()
        self.writer = pq.ParquetWriter(self.sink, self.schema, **writer_options())  # writes the magic
        self.images = Images() if images is None else images
        self.images.clear()
        self.paths: list[str] = []
        self.labels: list[int] = []

    def attach(self, put: Callable[[Sequence[bytes]], Any]) -> None:
        self.sink.attach(put)

    def start(self, specs: Sequence[RecordSpec], read: Any) -> Sequence[bytes]:
        self.images.reserve(largest_group(specs, self.rows))
        return ()

    def record(self, spec: RecordSpec, image: Image) -> Sequence[bytes]:
        self.paths.append(utf8_name(spec))
        self.images.add(image.data)
        self.labels.append(spec.label - 1)  # ClassLabel: 0..N-1
        if len(self.labels) >= self.rows:
            self._row_group()
        return self.sink.take()

    def _row_group(self) -> None:
        """The rows held, written as one row group (into the sink)."""
        import pyarrow as pa

        image = pa.StructArray.from_arrays([self.images.array(), pa.array(self.paths, pa.string())],
                                           fields=list(self.schema.field("image").type))
        table = pa.Table.from_arrays([image, pa.array(self.labels, pa.int64())], schema=self.schema)
        self.writer.write_table(table)
        del table, image  # the buffer's views, before the next row group fills it
        self.images.clear()
        self.paths, self.labels = [], []

    def finish(self) -> Sequence[bytes]:
        if self.labels:
            self._row_group()
        # ParquetDatasetWriter: `writer.add_key_value_metadata({"content_defined_chunking": json.dumps(...)})`
        self.writer.add_key_value_metadata({"content_defined_chunking": json.dumps(CDC_OPTIONS)})
        self.writer.close()  # the footer: schema, row groups, page index
        return self.sink.take()

    def close(self) -> None:
        self.images.clear()
        self.paths, self.labels = [], []
        if self.writer.is_open:  # the shard failed before `finish`: whatever pyarrow still writes goes nowhere
            self.sink.detach()
            with contextlib.suppress(Exception):  # its error already stopped the shard
                self.writer.close()


def pyarrow_problem() -> str | None:
    """Why the installed pyarrow cannot write as `datasets` does (too old for content-defined chunking), or None
    (also when it is missing: `Format.needs` says that)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("pyarrow")
    except PackageNotFoundError:
        return None
    numbers = tuple(int(part) for part in re.findall(r"\d+", found)[:2])
    if numbers < MIN_PYARROW:
        return (f"--parquet-writer datasets writes as Hugging Face datasets does, with pyarrow's content-defined "
                f"chunking, which needs pyarrow {'.'.join(map(str, MIN_PYARROW))} or later; pyarrow {found} is "
                "installed: pip install -U 'streamprep[parquet]', or leave out --parquet-writer (streamprep's own "
                "framing needs no pyarrow)")
    return None
