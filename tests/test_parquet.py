"""`--format parquet` judged by its real readers: Hugging Face `datasets` (given nothing but the folder), `datasets`'
own Parquet writer, pyarrow and polars; the TFRecord shards of the same sample and layout are the reference.

The sample's conversions are conftest's `parquet_converted` (Parquet alone, streamprep's framing: the default
writer), `both` (TFRecord and WebDataset) and this module's `datasets_converted` (`--parquet-writer datasets`).
The framing's own cases (pages, edge cases, images uncopied): tests/test_parquet_frame.py.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import datasets
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow as tf

from helpers import METADATA, SMALL_LAYOUT, SYNSETS, convert_args, run_cli, run_cli_out, run_python
from streamprep.errors import LabelDataError
from streamprep.index.labels import LabelData
from streamprep.outputs.parquet import datasets_writer, frame, write
from streamprep.outputs.parquet.framed import Encoder
from streamprep.records.image import Image as Prepared
from streamprep.records.spec import RecordSpec

SHARDS = {"train": 4, "validation": 2}
IMAGES = {"train": 31, "validation": 13}  # the sample's images the classic's format holds


def parquet_files(out: Path) -> list[Path]:
    return sorted((out / "data").glob("*.parquet"))


def tfrecord_rows(folder: Path, split: str) -> list[tuple[bytes, str, int]]:
    """(image, file name, label - 1) of every record of a split's TFRecord shards, in shard order, read by TensorFlow."""
    rows = []
    for k in range(SHARDS[split]):
        for raw in tf.data.TFRecordDataset(str(folder / f"{split}-{k:05d}-of-{SHARDS[split]:05d}")):
            feature = tf.train.Example.FromString(raw.numpy()).features.feature
            rows.append((feature["image/encoded"].bytes_list.value[0],
                         feature["image/filename"].bytes_list.value[0].decode(),
                         feature["image/class/label"].int64_list.value[0] - 1))
    return rows


def hub_names() -> list[str]:
    """The hub's class names as its `classes.py` has them: the metadata file's text of each synset, in the synsets
    file's order; n03126707, the metadata file's second "crane", is "crane2"."""
    texts = dict(line.split("\t", 1) for line in METADATA.read_text(encoding="utf-8").splitlines())
    return ["crane2" if synset == "n03126707" else texts[synset]
            for synset in SYNSETS.read_text(encoding="utf-8").split()]


@pytest.fixture(scope="module")
def datasets_converted(sample, tmp_path_factory) -> Path:
    """The sample converted with `--format parquet --parquet-writer datasets` (`SMALL_LAYOUT`); read it only."""
    out = tmp_path_factory.mktemp("parquet-datasets") / "out"
    code, err = run_cli(*convert_args(sample, out, *SMALL_LAYOUT, "--format", "parquet", "--parquet-writer",
                                      "datasets", "--quiet"))
    assert code == 0, err
    return out


@pytest.fixture(scope="module")
def loaded(parquet_converted, tmp_path_factory) -> datasets.DatasetDict:
    """`datasets.load_dataset` of the output folder, nothing else given (its Arrow cache in a folder of its own)."""
    return datasets.load_dataset(str(parquet_converted), cache_dir=str(tmp_path_factory.mktemp("hf-cache")))


# --------------------------------------------------------------------------------------------- datasets reads it

def test_load_dataset_finds_both_splits_and_the_hubs_features_in_the_folder_alone(loaded):
    assert set(loaded) == {"train", "validation"}
    assert {split: loaded[split].num_rows for split in loaded} == IMAGES
    for split in loaded:
        assert loaded[split].features == datasets.Features(
            {"image": datasets.Image(), "label": datasets.ClassLabel(names=hub_names())})


def test_load_dataset_of_a_folder_holding_every_format_takes_its_splits_from_data_alone(
        loaded, parquet_converted, both, mds_converted, litdata_converted, tmp_path):
    """The layout one run of every format writes (tests/test_all_formats.py: each format's files as its run alone):
    TFRecord and WebDataset shards beside data/, MDS's mds/train/ and LitData's litdata/train/. `load_dataset` takes
    `data/{split}-NNNNN-of-NNNNN.*` before any folder named after a split: the same splits and rows."""
    folder = tmp_path / "imagenet"
    for out in (both, mds_converted, litdata_converted, parquet_converted):
        shutil.copytree(out, folder, dirs_exist_ok=True)
    assert (folder / "mds" / "train" / "index.json").is_file() and (folder / "litdata" / "train").is_dir()
    every = datasets.load_dataset(str(folder), cache_dir=str(tmp_path / "hf-cache"))
    assert set(every) == set(loaded)
    assert all(every[split].data.table.equals(loaded[split].data.table) for split in loaded)


def test_the_class_names_are_the_hubs_in_the_synsets_files_order(loaded):
    names = loaded["train"].features["label"].names
    assert len(names) == 1000 and names == hub_names()
    # as the hub's classes.py (IMAGENET2012_CLASSES) has them: the first "crane" is the bird, the second the machine
    assert (names[0], names[134], names[517], names[638], names[639], names[999]) == (
        "tench, Tinca tinca", "crane", "crane2", "maillot", "maillot, tank suit",
        "toilet tissue, toilet paper, bathroom tissue")


@pytest.mark.parametrize("split", ["train", "validation"])
def test_rows_hold_the_tfrecord_shards_images_file_names_and_labels_less_one_in_their_order(loaded, both, split):
    rows = loaded[split].cast_column("image", datasets.Image(decode=False))
    got = [(row["image"]["bytes"], row["image"]["path"], row["label"]) for row in rows]
    assert got == tfrecord_rows(both, split)
    decoded = loaded[split][0]["image"]  # datasets decodes the Image feature with Pillow
    assert decoded.size[0] > 0 and decoded.size[1] > 0


def test_with_the_datasets_writer_each_file_is_byte_identical_to_what_datasets_own_parquet_writer_writes(
        datasets_converted, tmp_path):
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=hub_names())})
    for path in parquet_files(datasets_converted):
        table = pq.read_table(path)
        rows = datasets.Dataset(table, info=datasets.DatasetInfo(features=features))
        theirs = tmp_path / path.name
        assert pq.ParquetFile(path).num_row_groups == 1  # the sample's images are far from 100 MB a split
        rows.to_parquet(str(theirs), batch_size=table.num_rows)
        assert path.read_bytes() == theirs.read_bytes(), path.name


def small_rows(monkeypatch) -> tuple[list[RecordSpec], list[bytes], datasets.Dataset]:
    """11 images of 2-9 KB, with row groups of 20 KB (datasets' and streamprep's MAX_ROW_GROUP_SIZE lowered alike):
    their records, their bytes and the same rows as a `datasets.Dataset`."""
    monkeypatch.setattr(datasets.config, "MAX_ROW_GROUP_SIZE", "20KB")
    monkeypatch.setattr(write, "ROW_GROUP_BYTES", 20_000)
    rng = np.random.default_rng(0)
    sizes = rng.integers(2_000, 9_000, 11)
    images = [b"\xff\xd8\xff" + rng.bytes(int(n) - 3) for n in sizes]
    names, labels = [f"n01440764_{k}.JPEG" for k in range(11)], [int(x) for x in rng.integers(0, 3, 11)]
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b", "c"])})
    rows = datasets.Dataset.from_dict({"image": [{"bytes": b, "path": n} for b, n in zip(images, names)],
                                       "label": labels}, features=features)
    specs = [RecordSpec(name, label + 1, "n01440764", "tench", f"x.tar!{name}", 0, len(image),
                        np.zeros((0, 4), np.float32), None) for image, name, label in zip(images, names, labels)]
    return specs, images, rows


def test_row_groups_are_as_many_rows_as_push_to_hub_puts_in_one_and_the_datasets_writer_writes_them_as_datasets(
        monkeypatch, tmp_path):
    """A split of these images gets the rows a group `push_to_hub` gets, and the `datasets` writer's pieces, a row
    group at a time, are what `Dataset.to_parquet(batch_size=...)` writes; the framed writer puts as many rows in a
    row group."""
    from datasets.arrow_writer import get_writer_batch_size_from_data_size

    specs, images, rows = small_rows(monkeypatch)
    per_group = write.row_group_rows(np.asarray([len(b) for b in images]))
    assert per_group == get_writer_batch_size_from_data_size(len(rows), rows._estimate_nbytes())
    assert 1 < per_group < 11

    encoder = datasets_writer.Encoder(["a", "b", "c"], per_group)
    pieces = []
    for spec, image in zip(specs, images):
        pieces += encoder.record(spec, Prepared(image, 1, 1))
    pieces += encoder.finish()
    rows.to_parquet(str(tmp_path / "theirs.parquet"), batch_size=per_group)
    assert b"".join(pieces) == (tmp_path / "theirs.parquet").read_bytes()
    theirs = pq.ParquetFile(tmp_path / "theirs.parquet").metadata
    assert theirs.num_row_groups == -(-11 // per_group)

    framed = Encoder(write.features_json(["a", "b", "c"]), per_group, "mine.parquet")
    pieces = list(framed.start(specs, lambda batch: []))
    for spec, image in zip(specs, images):
        pieces += framed.record(spec, Prepared(image, 1, 1))
    (tmp_path / "mine.parquet").write_bytes(b"".join([*pieces, *framed.finish()]))
    mine = pq.ParquetFile(tmp_path / "mine.parquet").metadata
    assert [mine.row_group(k).num_rows for k in range(mine.num_row_groups)] == [
        theirs.row_group(k).num_rows for k in range(theirs.num_row_groups)]
    assert pq.read_table(tmp_path / "mine.parquet").equals(pq.read_table(tmp_path / "theirs.parquet"))


def test_attached_to_its_file_the_datasets_writer_holds_no_page_and_a_shard_abandoned_before_its_footer_puts_no_more(
        monkeypatch, tmp_path, capfd):
    """As the shared writer attaches it: each row group's pages go into the file while pyarrow writes them, during the
    record that completes the group (the encoder returns nothing it held), the file being datasets'; an encoder closed
    before `finish` (its shard failed) puts nothing more, even once pyarrow's writer is collected."""
    import gc

    specs, images, rows = small_rows(monkeypatch)
    per_group = write.row_group_rows(np.asarray([len(b) for b in images]))
    put: list[bytes] = []
    encoder = datasets_writer.Encoder(["a", "b", "c"], per_group)
    encoder.attach(lambda pieces: put.extend(pieces))
    assert put == [frame.MAGIC] and not encoder.start(specs, lambda batch: [])
    for k, (spec, image) in enumerate(zip(specs, images), 1):
        before = len(put)
        assert not encoder.record(spec, Prepared(image, 1, 1))
        assert (len(put) > before) == (k % per_group == 0)  # a row group's pages, as it is written
    assert not encoder.finish()
    rows.to_parquet(str(tmp_path / "theirs.parquet"), batch_size=per_group)
    assert b"".join(put) == (tmp_path / "theirs.parquet").read_bytes()

    put.clear()
    abandoned = datasets_writer.Encoder(["a", "b", "c"], per_group)
    abandoned.attach(lambda pieces: put.extend(pieces))
    for spec, image in list(zip(specs, images))[:per_group + 1]:
        abandoned.record(spec, Prepared(image, 1, 1))
    written = len(put)
    abandoned.close()
    del abandoned
    gc.collect()
    assert len(put) == written > 1  # the magic and the first row group, nothing after
    assert "Exception" not in capfd.readouterr().err


def test_pyarrow_and_polars_alone_read_every_row(parquet_converted, both):
    for split, shards in SHARDS.items():
        files = [parquet_converted / "data" / f"{split}-{k:05d}-of-{shards:05d}.parquet" for k in range(shards)]
        table = pa.concat_tables([pq.read_table(f) for f in files])
        frame = pl.concat([pl.read_parquet(f) for f in files])
        assert table.schema.field("image").type == pa.struct([("bytes", pa.binary()), ("path", pa.string())])
        assert table.schema.field("label").type == pa.int64() and frame.schema["label"] == pl.Int64
        expected = tfrecord_rows(both, split)
        assert [(r["image"]["bytes"], r["image"]["path"], r["label"]) for r in table.to_pylist()] == expected
        assert list(zip(frame["image"].struct.field("bytes"), frame["image"].struct.field("path"),
                        frame["label"])) == expected


def test_the_hub_names_a_second_crane_crane2_and_names_that_stay_repeated_are_refused():
    def labels(texts: dict[str, str]) -> LabelData:
        return LabelData(tuple(texts), texts, (), {"metadata": "meta.txt"})

    assert write.class_names(labels({"n1": "crane", "n2": "kite", "n3": "crane", "n4": "crane"})) == [
        "crane", "kite", "crane2", "crane3"]
    with pytest.raises(LabelDataError, match=r"meta\.txt: the class name 'crane2' would be given twice"):
        write.class_names(labels({"n1": "crane", "n2": "crane2", "n3": "crane"}))


def test_an_image_whose_name_is_not_utf8_is_refused_naming_the_member_by_either_writer():
    """Parquet's `path` is UTF-8 text: a name the archive holds in other bytes (kept by Python as lone surrogates)
    cannot be written faithfully. The framed writer finds it laying the file out, before any record."""
    from streamprep.errors import ImageError

    spec = RecordSpec("x\udcff.JPEG", 1, "n01440764", "tench", "t.tar!n01440764.tar!x\udcff.JPEG", 0, 3,
                      np.zeros((0, 4), np.float32), None)
    with pytest.raises(ImageError, match=r"n01440764\.tar!x.*\.JPEG: its name is not UTF-8"):
        datasets_writer.Encoder(["a"], 10).record(spec, Prepared(b"\xff\xd8\xff", 1, 1))
    with pytest.raises(ImageError, match=r"n01440764\.tar!x.*\.JPEG: its name is not UTF-8"):
        Encoder(write.features_json(["a"]), 10, "x.parquet").start([spec], lambda batch: [])


# --------------------------------------------------------------------------------------------- deterministic bytes

def test_another_run_with_tfrecord_beside_it_and_other_workers_gives_byte_identical_files(sample, parquet_converted,
                                                                                        both, tmp_path):
    out = tmp_path / "out"
    code, err = run_cli(*convert_args(sample, out, *SMALL_LAYOUT, "--format", "tfrecord,parquet", "--workers", "3",
                                      "--quiet"))
    assert code == 0, err
    mine = parquet_files(out)
    assert [p.name for p in mine] == [p.name for p in parquet_files(parquet_converted)] and len(mine) == 6
    assert all(p.read_bytes() == (parquet_converted / "data" / p.name).read_bytes() for p in mine)
    tfrecords = sorted(out.glob("*-of-0000?"))
    assert len(tfrecords) == 6 and all(p.read_bytes() == (both / p.name).read_bytes() for p in tfrecords)


def test_a_split_with_fewer_images_than_shards_gets_empty_files_that_streaming_datasets_and_verify_read(sample,
                                                                                                    tmp_path):
    out = tmp_path / "out"
    code, err = run_cli(*convert_args(sample, out, "--train-shards", "4", "--validation-shards", "20",
                                      "--classic-threads", "2", "--format", "parquet", "--quiet"))
    assert code == 0, err
    files = sorted((out / "data").glob("validation-*-of-00020.parquet"))
    rows = [pq.ParquetFile(f).metadata.num_rows for f in files]
    assert len(files) == 20 and 0 in rows and sum(rows) == IMAGES["validation"]
    empty = files[rows.index(0)]
    assert pq.ParquetFile(empty).num_row_groups == 0 and pq.read_schema(empty).equals(
        write.arrow_schema(hub_names()), check_metadata=True)
    assert pq.read_table(empty).num_rows == 0 and pl.read_parquet(empty).shape == (0, 2)
    streamed = datasets.load_dataset(str(out), split="validation", streaming=True)
    assert sum(1 for _ in streamed) == IMAGES["validation"]
    assert run_cli("verify", out)[0] == 0


def test_a_lost_parquet_file_is_the_only_file_written_again_on_rerun(sample, parquet_converted, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(parquet_converted, out)
    lost = out / "data" / "train-00002-of-00004.parquet"
    lost.unlink()
    kept = {p: p.stat().st_ino for p in parquet_files(out)}
    code, err = run_cli(*convert_args(sample, out, *SMALL_LAYOUT, "--format", "parquet", "--quiet"))
    assert code == 0, err
    assert lost.read_bytes() == (parquet_converted / "data" / lost.name).read_bytes()
    assert {p: p.stat().st_ino for p in kept} == kept  # the others are kept, not written again
    assert run_cli("verify", out)[0] == 0


# --------------------------------------------------------------------------------------------- verify, inspect, plan

def test_verify_passes_the_output_and_names_a_damaged_file_and_a_bad_label(parquet_converted, tmp_path, capsys):
    assert run_cli("verify", parquet_converted)[0] == 0
    assert "streamprep verify: OK" in capsys.readouterr().out
    out = tmp_path / "out"
    shutil.copytree(parquet_converted, out)
    cut = out / "data" / "validation-00001-of-00002.parquet"
    cut.write_bytes(cut.read_bytes()[:-100])  # the footer cut short
    relabelled = out / "data" / "train-00001-of-00004.parquet"
    table = pq.read_table(relabelled)
    labels = table.column("label").to_pylist()
    pq.write_table(table.set_column(1, "label", pa.array([1000] + labels[1:], pa.int64())), relabelled)
    code, _ = run_cli("verify", out)
    report = capsys.readouterr().out
    assert code == 1, report  # verify's status for problems found
    assert "data/validation-00001-of-00002.parquet: not a readable Parquet file" in report
    first = table.column("image").to_pylist()[0]["path"]
    assert f"data/train-00001-of-00004.parquet: record 0 ({first}): label is 1000, expected a class 0..999" in report
    assert report.strip().splitlines()[-1].startswith("streamprep verify: FAILED")


def test_inspect_shows_a_parquet_files_rows_with_the_tfrecords_file_names_and_labels_less_one(parquet_converted,
                                                                                            both):
    code, report, err = run_cli_out("inspect", parquet_converted / "data" / "validation-00000-of-00002.parquet",
                                    "--limit", "3")
    assert code == 0, err
    assert "Parquet file (Hugging Face imagenet-1k)" in report and "ClassLabel of 1000 names" in report
    first = [(name, label) for _, name, label in tfrecord_rows(both, "validation")[:3]]
    shown = [line.split() for line in report.splitlines() if "  label " in line]
    assert [(words[0], int(words[2])) for words in shown] == first
    code, found, err = run_cli_out("inspect", parquet_converted / "data" / "train-00000-of-00004.parquet", "--json")
    assert code == 0, err
    counts = json.loads(found)["counts"]
    assert counts["rows"] == pq.ParquetFile(parquet_converted / "data" / "train-00000-of-00004.parquet").metadata.num_rows


@pytest.mark.parametrize("writer", ["streamprep", "datasets"])
def test_plans_bounds_hold_each_splits_files_and_framed_are_exact_where_no_fix_up_file_is(
        sample, parquet_converted, datasets_converted, tmp_path, writer):
    """Framed, a file's size is known from the plan (`plan` shows low = high), but around a fix-up file, whose
    re-encoded size the plan does not know: the sample's validation split has none, its training split three."""
    code, report, err = run_cli_out("plan", *convert_args(sample, tmp_path / "new", *SMALL_LAYOUT, "--format",
                                                          "parquet", "--parquet-writer", writer, "--json",
                                                          "--quiet")[1:])
    assert code == 0, err
    out = parquet_converted if writer == "streamprep" else datasets_converted
    for split, found in json.loads(report)["splits"].items():
        size = sum(p.stat().st_size for p in (out / "data").glob(f"{split}-*.parquet"))
        assert found["bytes_low"] <= size <= found["bytes_high"], (split, size, found)
        if writer == "streamprep" and split == "validation":
            assert found["bytes_low"] == size == found["bytes_high"]


# --------------------------------------------------------------------------------------------- pyarrow is optional

def test_a_pyarrow_older_than_21_is_refused_naming_the_release_needed(monkeypatch):
    """The datasets writer writes with content-defined chunking, which pyarrow has from release 21 on."""
    import importlib.metadata

    monkeypatch.setattr(importlib.metadata, "version", lambda name: "20.0.1")
    assert "needs pyarrow 21.0 or later; pyarrow 20.0.1 is installed" in datasets_writer.pyarrow_problem()
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "21.0.0")
    assert datasets_writer.pyarrow_problem() is None


def test_without_pyarrow_the_framed_files_are_written_and_the_rest_stops_in_one_line_naming_the_parquet_extra(
        sample, parquet_converted, tmp_path):
    """pyarrow hidden from the process: the default writer needs none (its files the same bytes); `--parquet-writer
    datasets` stops before anything is read, and verify and inspect, which read the files back with pyarrow, stop;
    each in one line naming the extra."""
    out = tmp_path / "framed"
    commands = {"framed": convert_args(sample, out, *SMALL_LAYOUT, "--format", "parquet", "--quiet"),
                "datasets": convert_args(sample, tmp_path / "datasets", *SMALL_LAYOUT, "--format", "parquet",
                                         "--parquet-writer", "datasets", "--quiet"),
                "verify": ["verify", out, "--quiet"],
                "inspect": ["inspect", out / "data" / "train-00000-of-00004.parquet"]}
    calls = ", ".join(f"{name!r}: main({[str(a) for a in argv]!r}, stderr=err[{name!r}])"
                      for name, argv in commands.items())
    done = run_python("import io, json, sys\nsys.modules['pyarrow'] = None\nfrom streamprep.cli import main\n"
                      f"err = {{name: io.StringIO() for name in {list(commands)!r}}}\ncodes = {{{calls}}}\n"
                      "print(json.dumps({name: [code, err[name].getvalue()] for name, code in codes.items()}))")
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["framed"] == [0, ""]
    assert [p.read_bytes() for p in parquet_files(out)] == [p.read_bytes() for p in parquet_files(parquet_converted)]
    assert not (tmp_path / "datasets").exists()
    for name, needs in (("datasets", "--format parquet --parquet-writer datasets needs pyarrow"),
                        ("verify", "verify of a Parquet file needs pyarrow"),
                        ("inspect", "inspect of a Parquet file needs pyarrow")):
        code, err = found[name]
        lines = [line for line in err.splitlines() if line.startswith("streamprep: error:")]
        assert code == 2 and len(lines) == 1 and needs in lines[0] and "streamprep[parquet]" in lines[0], (name, err)


# --------------------------------------------------------------------------------------------- the writer option

def test_both_writers_files_read_back_as_equal_tables_under_one_schema_with_its_features(parquet_converted,
                                                                                        datasets_converted):
    mine, theirs = parquet_files(parquet_converted), parquet_files(datasets_converted)
    assert [p.name for p in mine] == [p.name for p in theirs] and len(mine) == 6
    schema = write.arrow_schema(hub_names())
    for framed, pyarrows in zip(mine, theirs):
        assert pq.read_schema(framed).equals(schema, check_metadata=True)
        assert pq.read_schema(pyarrows).equals(schema, check_metadata=True)
        assert pq.read_table(framed).equals(pq.read_table(pyarrows)), framed.name
        assert pq.ParquetFile(framed).metadata.num_row_groups == pq.ParquetFile(pyarrows).metadata.num_row_groups
        assert pq.ParquetFile(framed).metadata.created_by.startswith("streamprep version ")
        assert pq.ParquetFile(pyarrows).metadata.created_by.startswith("parquet-cpp-arrow version ")
        assert framed.read_bytes() != pyarrows.read_bytes()


def test_a_run_with_the_other_writer_is_refused_on_the_output_and_with_overwrite_rewrites_every_file(
        sample, parquet_converted, datasets_converted, tmp_path):
    """The writer is an option of the conversion (in manifest.json): a run with the other one never resumes into the
    files of the first, nor mixes the two; with --overwrite it writes every file anew."""
    out = tmp_path / "out"
    shutil.copytree(parquet_converted, out)
    args = convert_args(sample, out, *SMALL_LAYOUT, "--format", "parquet", "--parquet-writer", "datasets", "--quiet")
    before = {p.name: p.read_bytes() for p in parquet_files(out)}
    code, err = run_cli(*args)
    assert code == 2 and "holds the output of another conversion" in err, err
    assert {p.name: p.read_bytes() for p in parquet_files(out)} == before
    assert json.loads((out / "manifest.json").read_text())["options"]["parquet_writer"] == "streamprep"

    code, err = run_cli(*args, "--overwrite")
    assert code == 0, err
    assert [p.read_bytes() for p in parquet_files(out)] == [p.read_bytes() for p in parquet_files(datasets_converted)]
    assert json.loads((out / "manifest.json").read_text())["options"]["parquet_writer"] == "datasets"
    assert run_cli("verify", out)[0] == 0


@pytest.mark.parametrize("argv, message", [
    (["--format", "parquet", "--parquet-writer", "pyarrow"], r"must be streamprep or datasets, got 'pyarrow'"),
    (["--parquet-writer", "datasets"], r"is an option of --format parquet; add --format parquet"),
])
def test_a_writer_no_run_takes_is_refused_before_anything_is_written(sample, tmp_path, argv, message):
    code, err = run_cli(*convert_args(sample, tmp_path / "out", *SMALL_LAYOUT, *argv, "--quiet"))
    assert code == 2 and re.search(message, err), err
    assert not (tmp_path / "out").exists()
