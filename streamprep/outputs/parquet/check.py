"""verify of one Parquet file: read back with pyarrow, its schema and features, each row's image, path and label."""

from __future__ import annotations

import json
from typing import Any, BinaryIO

from ..checker import READ_BLOCK, ShardCheck, ShardChecker
from ..checksum import digest
from .write import pyarrow_for

SCHEMA = "image: struct<bytes: binary, path: string>, label: int64"  # as `str(field.type)` gives them


def _why(e: BaseException) -> str:
    return (str(e).splitlines() or [type(e).__name__])[0][:200]


def schema_problems(schema: Any, num_classes: int) -> list[str]:
    """What keeps `datasets` from reading a file's schema as `{"image": Image(), "label": ClassLabel(names=[...])}`
    of `num_classes` names."""
    found = ", ".join(f"{f.name}: {f.type}" for f in schema)
    if found != SCHEMA:
        return [f"its columns are {found}, expected {SCHEMA} (Hugging Face's Image and ClassLabel)"]
    try:
        features = json.loads((schema.metadata or {}).get(b"huggingface", b"null"))["info"]["features"]
    except (ValueError, TypeError, KeyError):
        return ["no features in its huggingface metadata: datasets would not see an Image and a ClassLabel"]
    image, label = features.get("image") or {}, features.get("label") or {}
    names = label.get("names")
    if image.get("_type") != "Image" or label.get("_type") != "ClassLabel" or not isinstance(names, list):
        return [f"its huggingface metadata gives image {image.get('_type')!r} and label {label.get('_type')!r}, "
                "expected Image and ClassLabel with its names"]
    if len(names) != num_classes or len(set(map(str, names))) != len(names):
        return [f"its ClassLabel has {len(names)} names ({len(set(map(str, names)))} different), expected "
                f"{num_classes} different ones"]
    return []


class ParquetChecker(ShardChecker):
    """Reads Parquet files (`data/NAME.parquet`) with pyarrow and checks them; one instance shared by the worker
    threads.

    Checked: pyarrow reads the file, its footer and every row group; the columns are the Image feature's storage
    and an int64 label, with features that give `datasets` an Image and a ClassLabel of `num_classes` names; every
    row holds a path, a JPEG (with `decode`, one TensorFlow's decoder decodes) and a label in 0..N-1, counted as
    the classic's (label + 1) to compare with the manifest's class counts. The file is read into memory once,
    hashed as it is read (Parquet's footer, at the end, says where everything is)."""

    def _read(self, raw: BinaryIO, check: ShardCheck) -> None:
        pa = pyarrow_for("verify of a Parquet file")  # MissingDependencyError naming the extra if it is not installed
        pq = pa.parquet

        data = self._whole(raw)
        if data is None:
            return
        try:
            parquet = pq.ParquetFile(pa.BufferReader(data))
            schema = parquet.schema_arrow
        except (pa.ArrowException, OSError, ValueError) as e:
            check.problem(f"not a readable Parquet file ({_why(e)}); the file is damaged or cut short")
            check.trusted = False
            return
        problems = schema_problems(schema, self.num_classes)
        for what in problems:
            check.problem(what)
        if problems:
            check.trusted = False
            return
        if self._row_groups(parquet, check):
            check.complete = True
            check.digest = digest(self.checksum, data)

    def _whole(self, raw: BinaryIO) -> bytes | None:
        """The file's bytes, or None once the run is stopped."""
        blocks = []
        while block := raw.read(READ_BLOCK):
            if self.stop.is_set():
                return None
            blocks.append(block)
        return b"".join(blocks)

    def _row_groups(self, parquet: Any, check: ShardCheck) -> bool:
        """Every row group read and its rows checked; False if one cannot be read (or the run is stopped)."""
        import pyarrow as pa

        for group in range(parquet.num_row_groups):
            if self.stop.is_set():
                return False
            try:
                table = parquet.read_row_group(group)
            except (pa.ArrowException, OSError, ValueError) as e:
                check.problem(f"row group {group} cannot be read ({_why(e)}); the file is damaged", check.records)
                check.trusted = False
                return False
            images = table.column("image").combine_chunks()
            nbytes = self._rows(check, images.field("bytes"), images.field("path").to_pylist(),
                                table.column("label").to_pylist())
            self.phase.advance(table.num_rows, nbytes)
        return True

    def _rows(self, check: ShardCheck, images: Any, paths: list, labels: list) -> int:
        """One row group's rows checked and counted; their images' bytes."""
        nbytes = 0
        for image, path, label in zip(images, paths, labels):
            record, check.records = check.records, check.records + 1
            if not path:
                check.problem("image.path is empty: it names the image's file", record)
            self._label(check, label, record, path)
            data = image.as_buffer()
            nbytes += 0 if data is None else data.size
            self._image(check, data, record, path)
        return nbytes

    def _label(self, check: ShardCheck, label: int | None, record: int, path: str | None) -> None:
        if label is not None and 0 <= label < self.num_classes:
            check.labels[label + 1] += 1
            return
        check.problem(f"label is {label}, expected a class 0..{self.num_classes - 1}", record, filename=path)
        check.trusted = False

    def _image(self, check: ShardCheck, data: Any, record: int, path: str | None) -> None:
        """The row's image: of the encoding the output holds (a byte-exact output's JPEG; a resized one's as its recipe
        says), and with `decode` one TensorFlow's decoder of it decodes."""
        if data is None:
            encoded = b""
        else:  # the signature alone unless decoding: no copy of the image
            encoded = data.to_pybytes() if self.decode else data.slice(0, min(12, data.size)).to_pybytes()
        for what in self.image_problems(encoded, "image.bytes"):
            check.problem(what, record, filename=path)
        check.decoded += 1 if self.decode else 0
