"""LitData's optimized chunks judged by LitData itself: `StreamingDataset` reads every sample, and LitData's own
`BinaryWriter`, given the TFRecord shards' samples, writes the same chunk bytes and index.json.

The TFRecord shards of the same sample and layout (conftest's `both`, read with `tf.data.TFRecordDataset`) are the
reference: same images, same order, labels one less. LitData (and the torch it imports) runs in one process of its
own for the whole module (`judged`): torch and this module's TensorFlow are not loaded into one process.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import tensorflow as tf

from helpers import SMALL_LAYOUT, convert_args, run_cli
from helpers import run_cli_out as run
from tiny import B, tiny_classes, write_tiny

SHARDS = {"train": 4, "validation": 2}  # SMALL_LAYOUT
LITDATA = "litdata"  # the format's own folder in --out: StreamingDataset(OUT/"litdata"/"train")
TIMEOUT = 300

# Run by `judged` in a process of its own: LitData reads every folder asked for (raw bytes through a BytesSerializer
# for the "jpeg" leaf, and as it decodes them by default), and its BinaryWriter writes each shard's samples, given as
# the TFRecord's image files (opened with PIL, as LitData's ImageNet example opens them) and labels.
JUDGE = r"""
import hashlib, json, shutil, sys
from pathlib import Path

from PIL import Image
from litdata import StreamingDataset
from litdata.streaming.serializers import BytesSerializer, JPEGSerializer
from litdata.streaming.writer import BinaryWriter

job = json.loads(Path(sys.argv[1]).read_text())
work = Path(job["work"])


def read(folder, images):
    raw = StreamingDataset(folder, cache_dir=str(work / "cache"), serializers={"jpeg": BytesSerializer()})
    decoded = StreamingDataset(folder, cache_dir=str(work / "cache"))
    assert len(raw) == len(decoded)
    found = []
    for i in range(len(raw)):
        data, label = raw[i]
        pixels, same_label = decoded[i]
        reference = JPEGSerializer().deserialize(Path(images[i]).read_bytes()) if i < len(images) else None
        found.append({"sha256": hashlib.sha256(data).hexdigest(), "label": label, "same_label": same_label == label,
                      "dtype": str(pixels.dtype), "channels": pixels.shape[0],
                      "pixels_equal": reference is not None and bool((pixels == reference).all())})
    return found


def write(split, shards):
    base = work / "written" / split
    merged = base / "merged"
    merged.mkdir(parents=True)
    most = max(len(samples) for samples in shards)
    chunks = []
    for k, samples in enumerate(shards):
        writer = BinaryWriter(str(base / str(k)), chunk_size=most, chunk_index=k)
        for i, (path, label) in enumerate(samples):
            writer[i] = (Image.open(path), label)
        writer.done()
        chunks.append(hashlib.sha256((base / str(k) / f"chunk-0-{k}.bin").read_bytes()).hexdigest())
        shutil.copyfile(base / str(k) / "0.index.json", merged / f"{k}.index.json")
    BinaryWriter(str(merged), chunk_size=most).merge(num_workers=len(shards))
    return {"chunks": chunks, "index": json.loads((merged / "index.json").read_text())}


print(json.dumps({"read": {name: read(folder, job["images"].get(name, [])) for name, folder in job["read"].items()},
                  "written": {split: write(split, shards) for split, shards in job["write"].items()}}))
"""


def tfrecord_samples(path: Path) -> list[tuple[bytes, int]]:
    """A TFRecord shard's (image bytes, label - 1), as TensorFlow reads them."""
    found = []
    for raw in tf.data.TFRecordDataset(str(path)):
        feature = tf.train.Example.FromString(raw.numpy()).features.feature
        label = feature["image/class/label"].int64_list.value[0]
        found.append((feature["image/encoded"].bytes_list.value[0], label - 1))
    return found


def shard_samples(folder: Path, split: str, shards: int) -> list[list[tuple[bytes, int]]]:
    return [tfrecord_samples(folder / f"{split}-{k:05d}-of-{shards:05d}") for k in range(shards)]


def chunk(split: str, k: int, of: int) -> str:
    return f"{LITDATA}/{split}/chunk-{k:05d}-of-{of:05d}.bin"


def index_json(split: str) -> str:
    return f"{LITDATA}/{split}/index.json"


def litdata_files(out: Path) -> dict[str, bytes]:
    """The chunks and index.json files of an output, by their path below it."""
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted((out / LITDATA).glob("*/*"))}


@pytest.fixture(scope="module")
def skipped(tmp_path_factory) -> Path:
    """Tiny downloads with one image that is not a JPEG, converted to TFRecord and LitData with `--on-bad-image
    skip` (the chunk's items spooled, its header written after them), into more validation shards than images (an
    empty chunk)."""
    base = tmp_path_factory.mktemp("litdata-skip")
    classes = tiny_classes()
    classes[B][f"{B}_2.JPEG"] = b"this is not an image"
    out = base / "out"
    code, err = run_cli(*convert_args(write_tiny(base / "dl", classes=classes), out, "--train-shards", "1",
                                      "--validation-shards", "4", "--classic-threads", "1", "--format",
                                      "tfrecord,litdata", "--on-bad-image", "skip", "--quiet"))
    assert code == 0, err
    return out


@pytest.fixture(scope="module")
def judged(both, litdata_converted, skipped, tmp_path_factory) -> dict:
    """What LitData, in a process of its own, reads of `litdata_converted` and `skipped` (each split), and what its
    BinaryWriter writes given the TFRecord shards of `both`, shard by shard."""
    work = tmp_path_factory.mktemp("litdata-judge")
    images: dict[str, list[str]] = {}
    write: dict[str, list[list[tuple[str, int]]]] = {}
    for split, of in SHARDS.items():
        write[split] = []
        for k, samples in enumerate(shard_samples(both, split, of)):
            paths = []
            for i, (data, label) in enumerate(samples):
                path = work / "tfrecord" / split / f"{k}-{i}.jpg"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
                paths.append((str(path), label))
            write[split].append(paths)
        images[split] = [path for shard in write[split] for path, _ in shard]
    read = {**{split: str(litdata_converted / LITDATA / split) for split in SHARDS},
            **{f"skipped-{split}": str(skipped / LITDATA / split) for split in SHARDS}}
    job = work / "job.json"
    job.write_text(json.dumps({"work": str(work), "read": read, "images": images, "write": write}))
    done = subprocess.run([sys.executable, "-c", JUDGE, str(job)], capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("split", SHARDS)
def test_streaming_dataset_reads_every_sample_with_the_tfrecord_image_bytes_and_its_label_less_one(
        both, judged, split):
    expected = [s for shard in shard_samples(both, split, SHARDS[split]) for s in shard]
    got = judged["read"][split]
    assert len(got) == len(expected) == {"train": 31, "validation": 13}[split]
    assert [(g["sha256"], g["label"]) for g in got] == [(hashlib.sha256(d).hexdigest(), label) for d, label in expected]


@pytest.mark.parametrize("split", SHARDS)
def test_streaming_dataset_decodes_every_image_as_litdata_decodes_the_tfrecord_image(judged, split):
    """The default read (no serializer given): each image a uint8 RGB tensor, the pixels LitData's own JPEG decoder
    gives for the TFRecord's bytes, with the same label."""
    got = judged["read"][split]
    assert got and all(g["pixels_equal"] and g["same_label"] for g in got)
    assert {(g["dtype"], g["channels"]) for g in got} == {("torch.uint8", 3)}


@pytest.mark.parametrize("split", SHARDS)
def test_litdatas_own_binary_writer_given_the_tfrecord_samples_writes_the_same_chunks_and_index_json(
        litdata_converted, judged, split):
    """Shard k's samples, as LitData's ImageNet example gives them ((JpegImageFile, class), one BinaryWriter chunk
    a shard), give byte for byte our chunk k; LitData's merge of the writers' indexes gives our index.json but for
    the chunks' names and `updated_at` (LitData writes the time there; streamprep a digest of the chunks)."""
    of = SHARDS[split]
    theirs = judged["written"][split]
    assert theirs["chunks"] == [hashlib.sha256((litdata_converted / chunk(split, k, of)).read_bytes()).hexdigest()
                                for k in range(of)]
    ours = json.loads((litdata_converted / index_json(split)).read_text())
    assert ours["config"] == theirs["index"]["config"]
    assert [c["filename"] for c in ours["chunks"]] == [chunk(split, k, of).rpartition("/")[2] for k in range(of)]
    assert [{**c, "filename": None} for c in ours["chunks"]] == [{**c, "filename": None}
                                                                 for c in theirs["index"]["chunks"]]
    assert set(ours) == set(theirs["index"]) == {"chunks", "config", "updated_at"}


def test_an_image_skipped_by_on_bad_image_skip_is_left_out_of_the_chunk_streaming_dataset_reads(skipped, judged):
    """`--on-bad-image skip`: the chunk's header counts only the images written (its items spooled first); an empty
    validation chunk (3 images, 4 shards) is left out of index.json, as LitData never writes one."""
    expected = tfrecord_samples(skipped / "train-00000-of-00001")
    got = judged["read"]["skipped-train"]
    assert len(got) == len(expected) == 7
    assert [(g["sha256"], g["label"]) for g in got] == [(hashlib.sha256(d).hexdigest(), label) for d, label in expected]
    validation = [s for k in range(4) for s in tfrecord_samples(skipped / f"validation-{k:05d}-of-00004")]
    assert [g["label"] for g in judged["read"]["skipped-validation"]] == [label for _, label in validation]
    index = json.loads((skipped / index_json("validation")).read_text())
    empty = [k for k in range(4) if (skipped / chunk("validation", k, 4)).stat().st_size == 8]
    assert len(empty) == 1 and len(index["chunks"]) == 3
    assert chunk("validation", empty[0], 4).rpartition("/")[2] not in [c["filename"] for c in index["chunks"]]
    code, err = run_cli("verify", str(skipped))
    assert code == 0, err


def test_two_runs_one_with_tfrecord_beside_it_give_the_same_chunks_and_the_same_tfrecord_shards(
        sample, both, litdata_converted, tmp_path):
    out = tmp_path / "out"
    code, err = run_cli(*convert_args(sample, out, *SMALL_LAYOUT, "--format", "tfrecord,litdata", "--workers", "3",
                                      "--quiet"))
    assert code == 0, err
    assert litdata_files(out) == litdata_files(litdata_converted)
    assert len(litdata_files(out)) == 4 + 1 + 2 + 1
    tfrecords = sorted(p.name for p in both.glob("*-of-0000?"))
    assert tfrecords and all((out / n).read_bytes() == (both / n).read_bytes() for n in tfrecords)


def test_chunks_spooled_when_images_may_be_skipped_are_byte_identical_to_chunks_written_header_first(
        sample, litdata_converted, tmp_path):
    out = tmp_path / "out"
    code, err = run_cli(*convert_args(sample, out, *SMALL_LAYOUT, "--format", "litdata", "--on-bad-image", "skip",
                                      "--quiet"))
    assert code == 0, err
    assert litdata_files(out) == litdata_files(litdata_converted)


def test_verify_passes_and_finds_a_damaged_chunk(litdata_converted, tmp_path, capsys):
    code, _ = run_cli("verify", str(litdata_converted))
    assert code == 0, capsys.readouterr().out
    assert "labels (class 0..999)" in capsys.readouterr().out
    out = tmp_path / "copy"
    shutil.copytree(litdata_converted, out)
    victim = out / chunk("train", 1, 4)
    data = bytearray(victim.read_bytes())
    first = struct.unpack_from("<I", data, 4)[0]  # item 0's offset: its leaf sizes (jpeg, 8) are there
    struct.pack_into("<I", data, first + 4, 9)
    victim.write_bytes(bytes(data))
    cut = out / chunk("validation", 0, 2)
    cut.write_bytes(cut.read_bytes()[:-100])
    code, _ = run_cli("verify", str(out))
    report = capsys.readouterr().out
    assert code == 1
    assert f"{chunk('train', 1, 4)}: record 0 at byte {first}: its leaf sizes" in report
    assert f"{chunk('validation', 0, 2)}: its offsets end at byte" in report and "cut short" in report


def test_inspect_shows_a_chunks_items_with_the_tfrecord_labels_less_one_and_an_index_json(
        both, litdata_converted, tmp_path):
    expected = [label for _, label in tfrecord_samples(both / "train-00001-of-00004")]
    real = litdata_converted / chunk("train", 1, 4)
    disguised = tmp_path / "no-name-at-all"
    shutil.copyfile(real, disguised)
    for path in (real, disguised):  # told by its content, not its name
        code, out, err = run("inspect", path, "--json", "--limit", "1000")
        assert code == 0, err
        found = json.loads(out)
        assert found["kind"] == "LitData chunk"
        assert [e["label"] for e in found["entries"]] == expected
        assert found["counts"]["items"] == len(expected)
    code, out, err = run("inspect", litdata_converted / index_json("train"), "--json")
    assert code == 0, err
    found = json.loads(out)
    assert found["kind"] == "LitData index.json"
    assert found["counts"]["items"] == 31 and found["counts"]["chunks"] == 4
    assert found["facts"]["data format"] == "jpeg, int"


def test_a_rerun_writes_again_only_a_lost_chunk(sample, litdata_converted, tmp_path):
    out = tmp_path / "out"
    args = convert_args(sample, out, *SMALL_LAYOUT, "--format", "litdata", "--quiet")
    code, err = run_cli(*args)
    assert code == 0, err
    lost = out / chunk("train", 2, 4)
    lost.unlink()
    kept = {p: p.stat().st_ino for p in (out / LITDATA / "train").glob("chunk-*.bin")}
    assert len(kept) == SHARDS["train"] - 1
    code, err = run_cli(*args)
    assert code == 0, err
    assert all(p.stat().st_ino == inode for p, inode in kept.items())  # every other chunk kept, not written again
    assert lost.is_file()
    assert litdata_files(out) == litdata_files(litdata_converted)


@pytest.fixture(scope="module")
def sample_plan(sample, both):
    """The run's plan of `--format litdata` on the sample at SMALL_LAYOUT, as convert makes it."""
    from streamprep import Options
    from streamprep.engines import pipeline

    options = Options(train=str(sample["train"]), val=str(sample["val"]), bbox=str(sample["bbox"]),
                      validation_labels_file=str(sample["val_labels"]), out=str(both), train_shards=4,
                      validation_shards=2, classic_threads=2, format="litdata")
    inputs = pipeline.open_inputs(options)
    try:
        return pipeline.make_run_plan(options, inputs, pipeline.walk_index(options, inputs))
    finally:
        inputs.close()


def test_the_plan_knows_every_fix_up_files_re_encoded_size_so_every_chunk_header_is_written_first(
        both, sample_plan):
    """The three fix-up files' sizes (re-encoded before any shard is written) are those of the images their TFRecord
    records hold; with them every shard's sizes are known before its first item."""
    from streamprep.outputs.litdata.write import planned_sizes
    from streamprep.records.spec import record_specs

    held = {}
    for k in range(SHARDS["train"]):
        for raw in tf.data.TFRecordDataset(str(both / f"train-{k:05d}-of-00004")):
            feature = tf.train.Example.FromString(raw.numpy()).features.feature
            held[feature["image/filename"].bytes_list.value[0].decode()] = len(
                feature["image/encoded"].bytes_list.value[0])
    fixed = {member.rpartition("!")[2]: size for member, size in sample_plan.fixed_sizes.items()}
    assert len(fixed) == 3 and fixed == {name: held[name] for name in fixed}
    assert all(planned_sizes(sample_plan, record_specs(sample_plan, s)) is not None for s in sample_plan.shards)


def test_a_chunk_beyond_what_32_bit_offsets_address_is_refused_before_anything_is_written(sample_plan):
    import dataclasses

    from streamprep.errors import ConfigError, OutputError
    from streamprep.outputs.litdata.plan import refuse_large_chunks
    from streamprep.outputs.litdata.write import MAX_CHUNK, header

    refuse_large_chunks(sample_plan)  # the sample's chunks fit
    huge = dataclasses.replace(sample_plan, splits={
        name: dataclasses.replace(split, index=dataclasses.replace(split.index, sizes=split.index.sizes << 22))
        for name, split in sample_plan.splits.items()})
    with pytest.raises(ConfigError, match=r"^--validation-shards 2: the chunk of validation-00000-of-00002 would "
                                          r"hold [\d,]+ bytes, .*4 GiB at most\); pass a larger --validation-shards$"):
        refuse_large_chunks(huge)
    assert struct.unpack("<3I", header([MAX_CHUNK - 12], "x")) == (1, 12, MAX_CHUNK)
    with pytest.raises(OutputError, match="^x: 4,294,967,296 bytes, more than a LitData chunk can address"):
        header([MAX_CHUNK - 11], "x")
