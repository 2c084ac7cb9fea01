"""MDS shards judged by MosaicML streaming itself: `StreamingDataset` reads them, `MDSWriter` writes the same bytes.

The TFRecord shards of the same sample and layout (conftest's `both`) are the reference: the same images in the
same order, shard for shard, their label less one as `y`. streaming (and the torch it imports) runs in one process
of its own for the whole module (`judged`): torch's import after this module's TensorFlow crashes the process.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from helpers import SMALL_LAYOUT, convert_args, run_cli, run_cli_out, run_python
from tiny import A, B, tiny_classes, write_tiny

# streaming's ImageNet converter (streaming/vision/convert/imagenet.py): its columns, and its --hashes default
CONVERTER_COLUMNS = {"i": "int", "x": "jpeg", "y": "int"}
CONVERTER_HASHES = ["sha1", "xxh64"]
MDS = "mds"  # the format's own folder in --out: StreamingDataset(local=OUT/"mds", split="train")
FOLDER = {"train": "train", "validation": "val"}  # the converter's split folders in it (--splits train,val)
LAYOUT = {"train": 4, "validation": 2}  # SMALL_LAYOUT's shards
TIMEOUT = 300

# Run by `judged` in a process of its own: StreamingDataset reads each folder asked for, sample by sample in the
# order of its index.json, and MDSWriter writes each set of samples given (as the TFRecord shards hold them).
STREAMING = r"""
import hashlib, json, sys

import numpy as np
from streaming import MDSWriter, StreamingDataset
from streaming.base.util import clean_stale_shared_memory

job = json.loads(open(sys.argv[1]).read())
clean_stale_shared_memory()  # what a killed StreamingDataset left in /dev/shm would refuse a new one
read = {}
for name, (local, split) in job["read"].items():
    data = StreamingDataset(local=local, split=split, shuffle=False, batch_size=1)
    read[name] = []
    for k in range(data.num_samples):
        sample = data[k]  # the library's own reading: offsets table, columns, x decoded by Pillow
        image = sample["x"]
        read[name].append({"i": sample["i"], "y": sample["y"],
                           "x": hashlib.sha256(image.fp.getvalue()).hexdigest(),  # the bytes it opened x from
                           "pixels": hashlib.sha256(np.asarray(image).tobytes()).hexdigest()})
for out, samples in job["write"].items():
    with MDSWriter(out=out, columns=job["columns"], hashes=job["hashes"], size_limit=None) as writer:
        for s in samples:
            writer.write({"i": s["i"], "x": bytes.fromhex(s["x"]), "y": s["y"]})
print(json.dumps(read))
"""


def tfrecords(path: Path) -> list[dict]:
    """The TFRecord shard's records as (filename, synset, label, image) dicts, in order."""
    found = []
    for raw in tf.data.TFRecordDataset(str(path)):
        feature = tf.train.Example.FromString(raw.numpy()).features.feature
        found.append({key: feature[f"image/{name}"].bytes_list.value[0] if kind == "bytes"
                      else feature[f"image/{name}"].int64_list.value[0]
                      for key, name, kind in (("filename", "filename", "bytes"), ("synset", "class/synset", "bytes"),
                                              ("label", "class/label", "int"), ("image", "encoded", "bytes"))})
    return found


def shard_names(split: str, shards: int) -> list[str]:
    return [f"{split}-{k:05d}-of-{shards:05d}" for k in range(shards)]


def mds_file(split: str, stem: str) -> str:
    return f"{MDS}/{FOLDER[split]}/{stem}.mds"


def index_json(split: str) -> str:
    return f"{MDS}/{FOLDER[split]}/index.json"


def converter_i(records: list[dict]) -> dict[tuple[bytes, bytes], int]:
    """The converter's `i` of each image of a split: its place in `sorted(glob(f"{split}/*/*"))` (synset folders)."""
    paths = sorted(f"{r['synset'].decode()}/{r['filename'].decode()}" for r in records)
    return {tuple(p.encode().split(b"/", 1)): k for k, p in enumerate(paths)}


def expected(record: dict, i: int) -> dict:
    """What streaming should read of the sample of this TFRecord record: i, y (the label less one), x's bytes and
    its pixels as Pillow decodes them (hashed)."""
    pixels = np.asarray(Image.open(io.BytesIO(record["image"])))
    return {"i": i, "y": record["label"] - 1, "x": hashlib.sha256(record["image"]).hexdigest(),
            "pixels": hashlib.sha256(pixels.tobytes()).hexdigest()}


def convert_skipping(base: Path) -> tuple[Path, dict[str, dict[str, bytes]]]:
    """Tiny downloads with two unusable training images converted with --on-bad-image skip to TFRecord and MDS, in
    more shards (8) than images are left (6)."""
    classes = tiny_classes()
    classes[A][f"{A}_3.JPEG"] = classes[A][f"{A}_3.JPEG"][:-40]  # cut short: the classic's decoder refuses it
    classes[B][f"{B}_2.JPEG"] = b"not an image"
    out = base / "skip"
    code, err = run_cli(*convert_args(write_tiny(base / "dl", classes=classes), out, "--train-shards", "8",
                                      "--validation-shards", "1", "--classic-threads", "1", "--format", "tfrecord,mds",
                                      "--on-bad-image", "skip", "--quiet"))
    assert code == 0, err
    return out, classes


@pytest.fixture(scope="module")
def judged(mds_converted, both, tmp_path_factory) -> SimpleNamespace:
    """streaming's verdicts, from one process: what StreamingDataset reads of each split of `mds_converted` and of
    the skipping conversion (each from a fresh copy of its folder: StreamingDataset refuses a local folder another
    dataset of its process uses), and MDSWriter's files for each plan shard's samples as the TFRecord shards hold
    them (`theirs/SPLIT/STEM/`)."""
    base = tmp_path_factory.mktemp("mds-judged")
    skip_out, classes = convert_skipping(base)
    read, write = {}, {}
    for name, out, split in [*((s, mds_converted, s) for s in LAYOUT), ("skip", skip_out, "train")]:
        shutil.copytree(out / MDS / FOLDER[split], base / "local" / name / FOLDER[split])
        read[name] = [str(base / "local" / name), FOLDER[split]]
    for split, shards in LAYOUT.items():
        per_shard = {stem: tfrecords(both / stem) for stem in shard_names(split, shards)}
        ids = converter_i([r for records in per_shard.values() for r in records])
        for stem, records in per_shard.items():
            write[str(base / "theirs" / split / stem)] = [
                {"i": ids[r["synset"], r["filename"]], "x": r["image"].hex(), "y": r["label"] - 1} for r in records]
    job = base / "job.json"
    job.write_text(json.dumps({"read": read, "write": write, "columns": CONVERTER_COLUMNS, "hashes": CONVERTER_HASHES}))
    done = subprocess.run([sys.executable, "-c", STREAMING, str(job)], capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr[-3000:]
    return SimpleNamespace(read=json.loads(done.stdout.strip().splitlines()[-1]), theirs=base / "theirs",
                           skip_out=skip_out, classes=classes)


@pytest.mark.parametrize("split", ["train", "validation"])
def test_streaming_dataset_reads_every_sample_as_the_tfrecord_shards_hold_it_y_being_the_label_less_one(
        judged, both, split):
    records = [r for stem in shard_names(split, LAYOUT[split]) for r in tfrecords(both / stem)]
    ids = converter_i(records)
    assert len(records) > 0
    assert judged.read[split] == [expected(r, ids[r["synset"], r["filename"]]) for r in records]


def test_each_shard_and_index_json_are_the_bytes_mdswriter_writes_given_the_same_samples(judged, mds_converted):
    """MDSWriter with the converter's columns and hashes, one writer a plan shard and no size limit (so it cuts
    where the plan cuts), fed the TFRecord shards' images, labels less one and the converter's `i`."""
    for split, shards in LAYOUT.items():
        listed = []
        for stem in shard_names(split, shards):
            theirs = judged.theirs / split / stem
            assert (theirs / "shard.00000.mds").read_bytes() == (mds_converted / mds_file(split, stem)).read_bytes()
            index = (theirs / "index.json").read_text()
            assert index == json.dumps(json.loads(index), sort_keys=True)  # so re-dumping it below is MDSWriter's
            (entry,) = json.loads(index)["shards"]
            entry["raw_data"]["basename"] = f"{stem}.mds"  # the one difference: streamprep names shards by the plan
            listed.append(entry)
        ours = (mds_converted / index_json(split)).read_bytes()
        assert ours == json.dumps({"shards": listed, "version": 2}, sort_keys=True).encode()


def test_tfrecord_and_mds_in_one_run_give_the_mds_bytes_of_a_run_of_mds_alone(sample, both, mds_converted, tmp_path):
    """Two runs (other --workers, one writing TFRecord too) give byte-identical MDS files and index.json."""
    out = tmp_path / "out"
    code, err = run_cli(*convert_args(sample, out, *SMALL_LAYOUT, "--format", "tfrecord,mds", "--workers", "3",
                                      "--quiet"))
    assert code == 0, err

    def files(folder: Path) -> list[str]:
        return sorted(p.relative_to(folder).as_posix() for p in (folder / MDS).glob("*/*"))

    written = files(out)
    assert written == files(mds_converted)
    assert len(written) == 2 + sum(LAYOUT.values())  # the shards and two index.json
    assert all((out / name).read_bytes() == (mds_converted / name).read_bytes() for name in written)
    assert all((out / stem).read_bytes() == (both / stem).read_bytes()
               for split, shards in LAYOUT.items() for stem in shard_names(split, shards))


def test_a_fix_up_file_is_re_encoded_once_for_the_offsets_table_and_its_sample_alone_or_after_tfrecord(
        sample, mds_converted, tmp_path, monkeypatch):
    """The offsets table needs a fix-up file's re-encoded size before the first sample; the image it measured is the
    one its sample holds (and the TFRecord shard's, written first): each file is re-encoded once, the files the same."""
    from streamprep import Options
    from streamprep.engines import output_folder, pipeline, readers
    from streamprep.index.build import build_index
    from streamprep.outputs.format import write_or_keep
    from streamprep.plan import make_plan
    from streamprep.records import fixups

    from helpers import SMALL_OPTIONS

    encoded: Counter = Counter()
    apply = fixups.apply

    def counted(kind: str, data: bytes, member: str) -> bytes:
        encoded[member] += 1
        return apply(kind, data, member)

    monkeypatch.setattr(fixups, "apply", counted)
    for formats in ("mds", "tfrecord,mds"):
        encoded.clear()
        out = tmp_path / formats
        options = Options(train=str(sample["train"]), val=str(sample["val"]), bbox=str(sample["bbox"]),
                          validation_labels_file=str(sample["val_labels"]), out=str(out), format=formats,
                          **SMALL_OPTIONS)
        inputs = pipeline.open_inputs(options)
        try:
            job = pipeline.make_job(options, inputs, None)
            output_folder.open_output(job, None)
            plan = make_plan(build_index(inputs.sources, inputs.labels, 2), inputs.labels, options.sharding)
            for name, split in plan.splits.items():
                read = readers.archive_reader(inputs.sources["train" if name == "train" else "val"])
                for shard in split.shards:
                    write_or_keep(job.formats, plan, shard, job.output(), read, {})
        finally:
            inputs.close()
        assert len(encoded) == 3 and set(encoded.values()) == {1}, encoded  # the sample's PNG and two CMYK files
        for name in (mds_file(split, stem) for split, shards in LAYOUT.items() for stem in shard_names(split, shards)):
            assert (out / name).read_bytes() == (mds_converted / name).read_bytes(), name


def test_verify_passes_the_output_and_finds_a_damaged_sample_a_cut_shard_and_a_damaged_opening(mds_converted, tmp_path,
                                                                                                capsys):
    code, _ = run_cli("verify", str(mds_converted))
    assert code == 0, capsys.readouterr().out
    out = tmp_path / "copy"
    shutil.copytree(mds_converted, out)
    damaged = out / mds_file("validation", "validation-00001-of-00002")
    data = bytearray(damaged.read_bytes())
    first = int.from_bytes(data[4:8], "little")  # sample 0's offset
    x_size = int.from_bytes(data[first:first + 4], "little")
    data[first + 12 + x_size:first + 20 + x_size] = (5000).to_bytes(8, "little")  # its y: no class
    damaged.write_bytes(bytes(data))
    cut = out / mds_file("train", "train-00002-of-00004")
    cut.write_bytes(cut.read_bytes()[:-100])
    opening = out / mds_file("train", "train-00000-of-00004")
    data = bytearray(opening.read_bytes())
    data[4 + 4 * (int.from_bytes(data[:4], "little") + 1)] = ord("X")  # the config's opening brace
    opening.write_bytes(bytes(data))
    capsys.readouterr()
    code, _ = run_cli("verify", str(out))
    report = capsys.readouterr().out
    assert code == 1, report
    assert f"{mds_file('validation', 'validation-00001-of-00002')}: record 0 at byte {first}: y is 5000" in report
    assert f"{mds_file('train', 'train-00002-of-00004')}: record 7" in report and "cut short" in report
    assert f"{mds_file('train', 'train-00000-of-00004')}: its config (after the offsets table) is not JSON" in report


def test_inspect_shows_an_mds_shards_samples_with_the_label_as_y_holds_it_and_index_json(mds_converted, both,
                                                                                         tmp_path):
    code, report, err = run_cli_out("inspect", mds_converted / mds_file("validation", "validation-00000-of-00002"),
                                    "--limit", "1")
    assert code == 0, err
    first = tfrecords(both / "validation-00000-of-00002")
    assert "MDS shard" in report and "columns: i: int, x: jpeg, y: int" in report
    synset = first[0]["synset"].decode()
    assert f"label {first[0]['label'] - 1} {synset}  {len(first[0]['image']):,} bytes" in report
    assert f"... and {len(first) - 1:,} more" in report
    code, report, err = run_cli_out("inspect", mds_converted / index_json("validation"))
    assert code == 0, err
    assert "MDS index.json" in report
    assert f"validation-00000-of-00002.mds  {len(first):,} records" in report
    cut = tmp_path / "validation-00000-of-00002.mds"
    cut.write_bytes((mds_converted / mds_file("validation", "validation-00000-of-00002")).read_bytes()[:300])
    code, report, err = run_cli_out("inspect", cut)
    assert code == 2 and err.count("\n") == 1 and f"{cut}: sample 0 cannot be read" in err, err


def test_a_lost_mds_shard_and_index_json_are_written_again_and_nothing_else(sample, mds_converted, tmp_path):
    out = tmp_path / "out"
    args = convert_args(sample, out, *SMALL_LAYOUT, "--format", "mds", "--quiet")
    code, err = run_cli(*args)
    assert code == 0, err
    lost = out / mds_file("train", "train-00001-of-00004")
    lost.unlink()
    (out / index_json("train")).unlink()
    kept = {p: p.stat().st_ino for p in out.glob(f"{MDS}/*/*.mds") if p != lost}
    code, err = run_cli(*args)
    assert code == 0, err
    assert {p: p.stat().st_ino for p in kept} == kept  # kept, not written again
    assert len(kept) == sum(LAYOUT.values()) - 1
    for name in (mds_file("train", "train-00001-of-00004"), index_json("train")):
        assert (out / name).read_bytes() == (mds_converted / name).read_bytes()


def test_an_image_left_out_by_on_bad_image_skip_is_not_in_the_offsets_table_and_empty_shards_are_unlisted(judged):
    """The offsets table comes first, from the plan: a shard with an unusable image is written again without it.
    More shards than images: the empty ones are MDS files of no samples, which index.json leaves out."""
    out, classes = judged.skip_out, judged.classes
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted({s["member"].rsplit("!", 1)[1] for s in manifest["skipped"]}) == [f"{A}_3.JPEG", f"{B}_2.JPEG"]
    stems = shard_names("train", 8)
    entries = {e["name"]: e for e in manifest["shards"]}
    for stem in stems:  # listed once in its shard's entry of each format, though its MDS file was written twice
        assert entries[mds_file("train", stem)]["skipped"] == entries[stem]["skipped"]
    assert sum(len(entries[stem]["skipped"]) for stem in stems) == 2
    records = [tfrecords(out / stem) for stem in stems]
    assert sum(map(len, records)) == 6 and [] in records  # two left out; their shards empty
    # `i` is each image's place among all the split's images, those left out too (the converter's glob lists them)
    ids = {(s.encode(), f.encode()): k for k, (s, f) in enumerate(sorted((s, f) for s in classes for f in classes[s]))}
    assert judged.read["skip"] == [expected(r, ids[r["synset"], r["filename"]]) for shard in records for r in shard]
    index = json.loads((out / index_json("train")).read_text())
    assert [s["raw_data"]["basename"] for s in index["shards"]] == [f"{stem}.mds" for stem, r in zip(stems, records)
                                                                    if r]
    assert all((out / mds_file("train", stem)).is_file() for stem in stems)
    code, _ = run_cli("verify", str(out))
    assert code == 0


def test_without_xxhash_convert_stops_before_anything_is_written_and_names_the_extra(sample, tmp_path):
    args = [str(a) for a in convert_args(sample, tmp_path / "out", *SMALL_LAYOUT, "--format", "mds")]
    done = run_python(f"import sys; sys.modules['xxhash'] = None\n"  # as if it were not installed
                      f"from streamprep.cli import main; sys.exit(main({args!r}))")
    assert done.returncode == 2, done.stderr
    assert "needs xxhash" in done.stderr and "install streamprep[mds]" in done.stderr
    assert not (tmp_path / "out").exists()
