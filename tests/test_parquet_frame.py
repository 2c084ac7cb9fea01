"""The framed Parquet writer (`--format parquet`'s default) on the cases a conversion of the sample does not reach:
pages cut by size, an image larger than a page, a row group ending where a page ends, one row, names beyond ASCII, a
fix-up file's new size, an unusable image left out; each file read back by pyarrow (whole, in batches, by column, with
a filter), polars and `datasets`, and the images never copied into the framing.
"""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
import tensorflow as tf

from helpers import convert_args, run_cli
from streamprep import __version__
from streamprep.errors import OutputError
from streamprep.outputs.parquet import frame, write
from streamprep.outputs.parquet.framed import Encoder
from streamprep.records.image import Image
from streamprep.records.spec import RecordSpec
from tiny import A, B, tiny_classes, write_tiny

NAMES = ["tench", "goldfish", "great white shark", "tiger shark"]
MIB = frame.PAGE_BYTES  # pyarrow's default data_page_size: 1 MiB


def records(sizes: list[int], names: list[str] | None = None, seed: int = 0) -> tuple[list[RecordSpec], list[bytes]]:
    """Records of JPEG-headed random images of these sizes, labels 1..4 in turn (0..3 stored)."""
    rng = np.random.default_rng(seed)
    images = [b"\xff\xd8\xff" + rng.bytes(n - 3) for n in sizes]
    names = names or [f"n01440764_{k}.JPEG" for k in range(len(sizes))]
    specs = [RecordSpec(name, k % 4 + 1, "n01440764", "tench", f"t.tar!n01440764.tar!{name}", 0, len(image),
                        np.zeros((0, 4), np.float32), None) for k, (name, image) in enumerate(zip(names, images))]
    return specs, images


def framed(path: Path, specs: list[RecordSpec], images: list[bytes], rows: int, read=None) -> list[list[bytes]]:
    """The file the framed encoder writes for these records, `rows` a row group, at `path`; each record's pieces."""
    encoder = Encoder(write.features_json(NAMES), rows, path.name)
    opening = encoder.start(specs, read or (lambda batch: []))
    pieces = [encoder.record(spec, Image(image, 1, 1)) for spec, image in zip(specs, images)]
    path.write_bytes(b"".join([*opening, *(p for record in pieces for p in record), *encoder.finish()]))
    return pieces


def rows_of(path: Path) -> list[tuple[bytes, str, int]]:
    return [(r["image"]["bytes"], r["image"]["path"], r["label"]) for r in pq.read_table(path).to_pylist()]


def expected(specs: list[RecordSpec], images: list[bytes]) -> list[tuple[bytes, str, int]]:
    return [(image, spec.filename, spec.label - 1) for spec, image in zip(specs, images)]


def page_openers(specs: list[RecordSpec], images: list[bytes], rows: int) -> list[int]:
    """The records that open a page of `image.bytes`, as the file is laid out."""
    layout = frame.frame_shard([len(b) for b in images], [s.filename.encode() for s in specs],
                               [s.label - 1 for s in specs], rows, {}, "")
    return sorted(layout.heads)


# --------------------------------------------------------------------------------------------- pages and row groups

def test_pages_hold_at_most_a_mebibyte_of_images_an_image_larger_is_a_page_alone_and_every_reader_reads_them(tmp_path):
    sizes = [300_000, 500_000, 200_000, 3 * MIB, 100, 700_000, 400_000, MIB + 1, 90_000, 950_000, 60_000, 5]
    specs, images = records(sizes)
    path = tmp_path / "pages.parquet"
    framed(path, specs, images, rows=7)
    openers = page_openers(specs, images, 7)
    bounds = list(zip(openers, openers[1:] + [len(sizes)]))
    for first, stop in bounds:
        values = sum(4 + n for n in sizes[first:stop])
        assert values <= MIB or stop - first == 1, (first, stop)  # at most 1 MiB of values, or one image alone
        group_end = (first // 7 + 1) * 7
        if stop < min(group_end, len(sizes)):  # a page ends early only where the next image would not fit
            assert values + 4 + sizes[stop] > MIB, (first, stop)
    assert (3, 4) in bounds and (7, 8) in bounds and 7 in openers  # the large images alone; a row group opens a page

    assert rows_of(path) == expected(specs, images)
    frame_ = pl.read_parquet(path)
    assert list(frame_["image"].struct.field("bytes")) == images and list(frame_["label"]) == [0, 1, 2, 3] * 3
    parquet = pq.ParquetFile(path)
    assert [parquet.metadata.row_group(k).num_rows for k in range(parquet.num_row_groups)] == [7, 5]
    batches = [b.column("image").field("bytes").to_pylist() for b in parquet.iter_batches(batch_size=5)]
    assert [image for batch in batches for image in batch] == images and len(batches) == 3


def test_a_row_group_ending_where_a_page_ends_and_a_single_row_are_read_back_as_written(tmp_path):
    """Images of a quarter page each: four fill a page exactly, so with 4 rows a group each row group is one full
    page, and with 8 a page ends inside the row group and at its end."""
    quarter = MIB // 4 - 4
    specs, images = records([quarter] * 10)
    for rows in (4, 8):
        assert page_openers(specs, images, rows) == [0, 4, 8]
        path = tmp_path / f"full-{rows}.parquet"
        framed(path, specs, images, rows)
        assert rows_of(path) == expected(specs, images)
        assert pl.read_parquet(path).height == 10
    one_spec, one_image = records([12_345])
    path = tmp_path / "one.parquet"
    framed(path, one_spec, one_image, rows=100)
    assert rows_of(path) == expected(one_spec, one_image) and pq.ParquetFile(path).num_row_groups == 1


def test_names_beyond_ascii_are_the_path_column_as_written_for_pyarrow_polars_and_datasets(tmp_path):
    names = ["n01440764_caf\u00e9.JPEG", "\u732b_\u5199\u771f.JPEG", "emoji_\U0001F408.JPEG", "plain.JPEG"]
    specs, images = records([2_000, 3_000, 4_000, 5_000], names)
    path = tmp_path / "data" / "train-00000-of-00001.parquet"
    path.parent.mkdir()
    framed(path, specs, images, rows=3)
    assert [r[1] for r in rows_of(path)] == names
    assert list(pl.read_parquet(path)["image"].struct.field("path")) == names
    loaded = datasets.load_dataset(str(tmp_path), split="train", cache_dir=str(tmp_path / "cache"))
    assert loaded.features == datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=NAMES)})
    rows = loaded.cast_column("image", datasets.Image(decode=False))
    assert [(r["image"]["bytes"], r["image"]["path"], r["label"]) for r in rows] == expected(specs, images)


# --------------------------------------------------------------------------------------------- metadata

def test_statistics_give_each_row_groups_least_and_greatest_label_and_path_none_for_images_and_filters_read_them(
        tmp_path):
    specs, images = records([1_000 + k for k in range(9)], [f"img_{k}.JPEG" for k in (5, 3, 8, 0, 7, 1, 4, 2, 6)])
    path = tmp_path / "stats.parquet"
    framed(path, specs, images, rows=4)
    meta = pq.ParquetFile(path).metadata
    for k, first in enumerate(range(0, 9, 4)):
        group = meta.row_group(k)
        image, name, label = (group.column(c).statistics for c in range(3))
        assert not image.has_min_max and image.null_count == 0
        held = specs[first:first + 4]
        assert (name.min, name.max, name.null_count) == (min(s.filename for s in held),
                                                          max(s.filename for s in held), 0)
        assert (label.min, label.max, label.null_count) == (min(s.label - 1 for s in held),
                                                            max(s.label - 1 for s in held), 0)
    assert pq.read_table(path, columns=["label"]).column("label").to_pylist() == [k % 4 for k in range(9)]
    threes = pq.read_table(path, filters=[("label", "=", 3)])
    assert [r["image"]["path"] for r in threes.to_pylist()] == [specs[3].filename, specs[7].filename]
    assert pl.scan_parquet(path).filter(pl.col("label") == 3).collect().height == 2


def test_the_file_stores_the_features_alone_and_names_streamprep_and_its_version_as_its_writer(tmp_path):
    """No `ARROW:schema`: pyarrow derives from the Parquet schema exactly the schema `datasets` writes."""
    specs, images = records([1_000, 2_000])
    path = tmp_path / "meta.parquet"
    framed(path, specs, images, rows=10)
    meta = pq.ParquetFile(path).metadata
    assert set(meta.metadata) == {b"huggingface"}
    assert json.loads(meta.metadata[b"huggingface"]) == json.loads(write.features_json(NAMES))
    assert meta.created_by == f"streamprep version {__version__}"
    assert pq.read_schema(path).equals(write.arrow_schema(NAMES), check_metadata=True)
    assert [meta.row_group(0).column(c).compression for c in range(3)] == ["UNCOMPRESSED"] * 3


# --------------------------------------------------------------------------------------------- images uncopied

def test_each_records_pieces_hold_its_image_object_itself_never_a_copy(tmp_path):
    specs, images = records([5_000, 6_000, 7_000])
    pieces = framed(tmp_path / "x.parquet", specs, images, rows=2)
    assert all(any(piece is image for piece in record) for record, image in zip(pieces, images))
    assert all(len(piece) < 1_000 for record, image in zip(pieces, images) for piece in record if piece is not image)


def test_a_fix_up_file_is_framed_at_its_re_encoded_size_prepared_once_ahead_by_the_shards_reader(tmp_path):
    """A page header needs its images' sizes first: a fix-up file's (re-encoded: its size is not the plan's) comes
    from the shard's reader (`read.prepared`), which keeps the image for the record's turn."""
    specs, images = records([4_000, 9_000, 5_000])
    specs[1] = RecordSpec(**{**specs[1].__dict__, "fixup": "cmyk"})  # the plan says 9,000 bytes
    re_encoded = images[1][:6_500]

    class Reader:
        asked: list[list[str]] = []

        def __call__(self, batch):
            raise AssertionError("only the fix-up file is read ahead, through prepared()")

        def prepared(self, batch):
            self.asked.append([s.filename for s in batch])
            return [Image(re_encoded, 1, 1)]

    read = Reader()
    images[1] = re_encoded
    framed(tmp_path / "fixup.parquet", specs, images, rows=10, read=read)
    assert read.asked == [[specs[1].filename]]
    assert rows_of(tmp_path / "fixup.parquet") == expected(specs, images)

    encoder = Encoder(write.features_json(NAMES), 10, "x.parquet")
    encoder.start(specs, read)
    encoder.record(specs[0], Image(images[0], 1, 1))
    with pytest.raises(OutputError, match=r"x\.parquet: record 1 .* 9,000 bytes\) is not the one its page header"):
        encoder.record(specs[1], Image(b"\xff\xd8\xff" + bytes(8_997), 1, 1))  # not the size it was laid out with


def test_the_samples_png_fix_up_file_is_its_re_encoded_jpeg_in_the_framed_file(parquet_converted, both):
    """The sample's PNG named .JPEG, re-encoded as the classic does: the row holds the TFRecord record's image."""
    name = "n02105855_2933.JPEG"
    found = [(path, row) for path in sorted((parquet_converted / "data").glob("train-*.parquet"))
             for row in pq.read_table(path).to_pylist() if row["image"]["path"] == name]
    assert len(found) == 1
    path, row = found[0]
    record = next(tf.train.Example.FromString(raw.numpy()) for raw in tf.data.TFRecordDataset(
        str(both / path.name.removesuffix(".parquet")))
        if tf.train.Example.FromString(raw.numpy()).features.feature["image/filename"].bytes_list.value[0] ==
        name.encode())
    image = record.features.feature["image/encoded"].bytes_list.value[0]
    assert row["image"]["bytes"] == image and image.startswith(b"\xff\xd8\xff")


def test_an_image_left_out_by_on_bad_image_skip_is_in_no_page_of_the_framed_file(tmp_path):
    """The page that would have held it counted it before it was read: the shard is written again without it."""
    classes = tiny_classes()
    classes[A][f"{A}_3.JPEG"] = classes[A][f"{A}_3.JPEG"][:-40]  # cut short: the classic's decoder refuses it
    classes[B][f"{B}_2.JPEG"] = b"not an image"
    out = tmp_path / "out"
    code, err = run_cli(*convert_args(write_tiny(tmp_path / "dl", classes=classes), out, "--train-shards", "2",
                                      "--validation-shards", "1", "--classic-threads", "1", "--format",
                                      "tfrecord,parquet", "--on-bad-image", "skip", "--quiet"))
    assert code == 0, err
    for k in range(2):
        stem = f"train-{k:05d}-of-00002"
        held = [tf.train.Example.FromString(raw.numpy()).features.feature
                for raw in tf.data.TFRecordDataset(str(out / stem))]
        assert rows_of(out / "data" / f"{stem}.parquet") == [
            (f["image/encoded"].bytes_list.value[0], f["image/filename"].bytes_list.value[0].decode(),
             f["image/class/label"].int64_list.value[0] - 1) for f in held]
    paths = [r[1] for k in range(2) for r in rows_of(out / "data" / f"train-{k:05d}-of-00002.parquet")]
    assert len(paths) == 6 and f"{A}_3.JPEG" not in paths and f"{B}_2.JPEG" not in paths
    shards = json.loads((out / "manifest.json").read_text())["shards"]
    assert sum(len(e.get("skipped", [])) for e in shards if e["name"].endswith(".parquet")) == 2
    assert run_cli("verify", out)[0] == 0
