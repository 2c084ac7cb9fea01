"""`--equal-shards` judged by each library's own distributed splitting: every rank the same count, every sample once.

Downloads of 96 training and 48 validation images are cut into 24 shards a split (4 and 2 images each), so that
1, 2, 3, 4 and 8 ranks each take whole shards. Each library splits them its own way: webdataset's
`split_by_node` (the rank from `RANK` and `WORLD_SIZE`, as it reads them), `wids.DistributedChunkedSampler` (the
rank from `torch.distributed`), TFDS's `ReadConfig(input_context=...)`, DALI's `num_shards`/`shard_id` (CPU).
The sample's own conversions check the rest: the order is the classic's, the counts differ by at most one where
they cannot be equal, and each format's metadata (manifest.json, timm's `_info.json`, the wids index, DALI's
indexes, TFDS's dataset_info.json) lists the counts of the plan.
"""

from __future__ import annotations

import functools
import json
import math
import tarfile
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
import webdataset as wds
import wids
from nvidia.dali import fn, pipeline_def
import nvidia.dali.tfrecord as tfrec

from fixtures import builders
from helpers import SMALL_LAYOUT, convert_args, run_cli
from streamprep.options import Options
from streamprep.plan import Sharding, equal_bounds, shard_bounds
from tiny import write_tiny

SYNSETS = ("n01440764", "n01739381", "n02105855", "n04596742")  # every one in TFDS's labels: --format tfds takes them
TRAIN, VALIDATION, SHARDS = 96, 48, 24
RANKS = (1, 2, 3, 4, 8)
SPLITS = {"train": TRAIN, "validation": VALIDATION}
TFDS_DIR = Path("imagenet2012") / "5.1.0"


@pytest.fixture(scope="module")
def downloads(tmp_path_factory) -> dict[str, Path]:
    """96 training images (24 a class) and 48 validation images, named as TFDS takes them."""
    classes = {synset: {f"{synset}_{i}.JPEG": builders.jpeg(12 + i % 5, 10 + k, seed=31 * k + i)
                        for i in range(TRAIN // len(SYNSETS), 0, -1)} for k, synset in enumerate(SYNSETS)}
    val = {f"ILSVRC2012_val_{i:08d}.JPEG": builders.jpeg(12, 10 + i % 4, seed=500 + i) for i in range(VALIDATION, 0, -1)}
    return write_tiny(tmp_path_factory.mktemp("equal-downloads"), classes=classes, val=val,
                      val_labels=[SYNSETS[i % 4] for i in range(VALIDATION)])


def convert(paths: dict[str, Path], out: Path, *extra: str) -> Path:
    code, err = run_cli(*convert_args(paths, out, *extra, "--quiet"))
    assert code == 0, err
    return out


def convert_tfds(paths: dict[str, Path], out: Path, *extra: str) -> Path:
    code, err = run_cli("convert", "--train", paths["train"], "--val", paths["val"], "--bbox", paths["bbox"],
                        "--out", out, "--format", "tfds", "--quiet", *extra)
    assert code == 0, err
    return out


EQUAL_24 = ("--equal-shards", "--train-shards", str(SHARDS), "--validation-shards", str(SHARDS))


@pytest.fixture(scope="module")
def equal(downloads, tmp_path_factory) -> Path:
    """The downloads as TFRecord and WebDataset shards, 24 a split, with DALI's indexes and the wids index."""
    return convert(downloads, tmp_path_factory.mktemp("equal") / "out", *EQUAL_24, "--format", "tfrecord,webdataset",
                   "--dali-index", "--wids-index")


@pytest.fixture(scope="module")
def equal_tfds(downloads, tmp_path_factory) -> Path:
    """The downloads as TFDS's imagenet2012, 24 shards a split."""
    return convert_tfds(downloads, tmp_path_factory.mktemp("equal-tfds") / "out", *EQUAL_24)


@pytest.fixture(scope="module")
def odd(sample, tmp_path_factory) -> Path:
    """The sample (31 training, 13 validation images) in 5 and 3 equal shards: counts that cannot all be equal."""
    return convert(sample, tmp_path_factory.mktemp("odd") / "out", "--equal-shards", "--train-shards", "5",
                   "--validation-shards", "3", "--format", "tfrecord,webdataset", "--dali-index", "--wids-index")


@functools.lru_cache(maxsize=None)
def tfrecord_names(path: Path) -> list[str]:
    """The file names of a TFRecord shard's records, in order, as TensorFlow reads them."""
    return [tf.train.Example.FromString(r.numpy()).features.feature["image/filename"].bytes_list.value[0].decode()
            for r in tf.data.TFRecordDataset(str(path))]


def shard_files(out: Path, split: str, suffix: str = "") -> list[Path]:
    return sorted(out.glob(f"{split}-?????-of-?????{suffix}"))


def listed(out: Path) -> dict[str, int]:
    """Each shard file's record count, as manifest.json lists it."""
    return {e["name"]: e["records"] for e in json.loads((out / "manifest.json").read_text())["shards"]}


def assert_split(per_rank: list[list[str]], everything: list[str]) -> None:
    """Every rank the same count, and every sample of the split exactly once over the ranks."""
    assert len({len(got) for got in per_rank}) == 1, [len(got) for got in per_rank]
    seen = [name for got in per_rank for name in got]
    assert sorted(seen) == sorted(everything) and len(set(seen)) == len(everything)


# --------------------------------------------------------------------------------------------- the plan

@pytest.mark.parametrize("n, k", [(0, 3), (2, 5), (13, 3), (31, 5), (96, 24), (1281167, 1024), (50000, 128)])
def test_the_equal_cut_gives_shards_that_differ_by_at_most_one_and_cover_the_order_once(n, k):
    bounds = equal_bounds(n, k)
    sizes = [b - a for a, b in bounds]
    assert len(bounds) == k and bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(bounds[j][1] == bounds[j + 1][0] for j in range(k - 1))
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == n
    assert bounds == [(j * n // k, (j + 1) * n // k) for j in range(k)]


def test_the_classic_cut_is_unchanged_without_equal_shards_and_takes_any_count_with_it():
    assert Sharding(1024, 128, 8).bounds("train", 1281167) == shard_bounds(1281167, 1024, 8)
    assert Sharding(1024, 128, 8).layout() == {"train_shards": 1024, "validation_shards": 128, "classic_threads": 8}
    # not a multiple of the threads: the equal cut does not use them
    assert Options(downloads="dl", out="o", train_shards=10, classic_threads=4, equal_shards=True).sharding.equal
    code, err = run_cli("convert", "dl", "--out", "o", "--train-shards", "10", "--classic-threads", "4")
    assert code == 2 and "not a multiple of --classic-threads" in err


def test_equal_shards_balance_ranks_that_take_every_wth_shard_where_the_classic_cut_does_not():
    """ImageNet's 1,281,167 training images in 1024 shards: both cuts give shards within one image of each other,
    but the classic's larger shards lie in runs (per thread), so ranks taking every W-th shard (webdataset's
    split_by_node, TFDS's input_context) differ by up to 15 images; the equal cut spreads them evenly."""
    def spread(bounds: list[tuple[int, int]], world: int) -> int:
        per_rank = [sum(b - a for a, b in bounds[rank::world]) for rank in range(world)]
        return max(per_rank) - min(per_rank)

    n, k = 1281167, 1024
    assert all(spread(equal_bounds(n, k), world) <= 1 for world in (2, 4, 8, 16, 64))
    assert spread(shard_bounds(n, k, 8), 8) == 15


def test_equal_shards_keep_the_classic_order_and_only_move_the_cuts(both, odd):
    for split in ("train", "validation"):
        classic = [name for p in shard_files(both, split) for name in tfrecord_names(p)]
        cut = [name for p in shard_files(odd, split) for name in tfrecord_names(p)]
        assert cut == classic and len(cut) == {"train": 31, "validation": 13}[split]


def test_every_formats_metadata_lists_the_equal_counts(odd):
    expected = {"train": [6, 6, 6, 6, 7], "validation": [4, 4, 5]}
    manifest = listed(odd)
    info = json.loads((odd / "_info.json").read_text())["splits"]
    for split, counts in expected.items():
        stems = [p.name for p in shard_files(odd, split)]
        assert [len(tfrecord_names(odd / s)) for s in stems] == counts
        assert [manifest[s] for s in stems] == counts and [manifest[s + ".tar"] for s in stems] == counts
        assert info[split]["shard_lengths"] == counts and info[split]["num_samples"] == sum(counts)
        index = json.loads((odd / f"{split}.wids.json").read_text())["shardlist"]
        assert [(e["url"], e["nsamples"]) for e in index] == [(s + ".tar", n) for s, n in zip(stems, counts)]
        assert [len((odd / f"{s}.idx").read_text().splitlines()) for s in stems] == counts  # tfrecord2idx
        assert [int((odd / f"{s}.tar.idx").read_text().split("\n", 1)[0].split()[1]) for s in stems] == counts
        with tarfile.open(odd / f"{stems[-1]}.tar") as tar:
            assert len(tar.getnames()) == 3 * counts[-1]


def test_tfds_equal_shards_keep_tfds_order_and_list_the_counts_in_dataset_info(downloads, tmp_path):
    own = convert_tfds(downloads, tmp_path / "own")  # TFDS's rule: one shard a split for so few images
    cut = convert_tfds(downloads, tmp_path / "cut", "--equal-shards", "--train-shards", "7", "--validation-shards",
                       "5")
    info = json.loads((cut / TFDS_DIR / "dataset_info.json").read_text())
    lengths = {s["name"]: [int(n) for n in s["shardLengths"]] for s in info["splits"]}
    assert lengths == {"train": [b - a for a, b in equal_bounds(TRAIN, 7)],
                       "validation": [b - a for a, b in equal_bounds(VALIDATION, 5)]}
    for split in SPLITS:
        read = [[e["file_name"].decode() for e in tfds.as_numpy(tfds.load(
            "imagenet2012", split=split, data_dir=str(data_dir), download=False,
            decoders={"image": tfds.decode.SkipDecoding()}))] for data_dir in (own, cut)]
        assert read[0] == read[1] and len(read[0]) == SPLITS[split]  # TFDS's order, other cuts
    code, err = run_cli("verify", str(cut))
    assert code == 0, err


def test_tfds_shards_and_equal_shards_together_are_refused(downloads, tmp_path):
    code, err = run_cli("convert", "--train", downloads["train"], "--val", downloads["val"], "--bbox",
                        downloads["bbox"], "--out", tmp_path / "out", "--format", "tfds", "--tfds-shards", "4",
                        "--equal-shards")
    assert code == 2 and "--equal-shards" in err and "--train-shards" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_an_equal_shards_output_is_recorded_and_never_resumed_as_a_classic_one(sample, odd, tmp_path):
    manifest = json.loads((odd / "manifest.json").read_text())
    assert manifest["options"]["equal_shards"] is True
    assert manifest["run"]["layout"] == {"train_shards": 5, "validation_shards": 3, "equal_shards": True}
    out = tmp_path / "out"
    convert(sample, out, *SMALL_LAYOUT, "--equal-shards")
    code, err = run_cli(*convert_args(sample, out, *SMALL_LAYOUT, "--quiet"))
    assert code == 2 and "holds the output of another conversion" in err and "equal_shards" in err, err
    kept = out / "train-00001-of-00004"
    inode = kept.stat().st_ino
    convert(sample, out, *SMALL_LAYOUT, "--equal-shards")  # the same conversion again: resumed, every shard kept
    assert kept.stat().st_ino == inode


def test_a_classic_runs_record_is_the_one_it_always_was(both):
    manifest = json.loads((both / "manifest.json").read_text())
    assert manifest["run"]["layout"] == {"train_shards": 4, "validation_shards": 2, "classic_threads": 2}
    assert manifest["options"]["equal_shards"] is False


# --------------------------------------------------------------------------------------------- the ranks

def test_the_downloads_give_equal_shards_in_every_format(equal, equal_tfds):
    manifest = listed(equal)
    for split, n in SPLITS.items():
        assert [records for name, records in manifest.items() if name.startswith(split)] == [n // SHARDS] * (2 * SHARDS)
    info = json.loads((equal_tfds / TFDS_DIR / "dataset_info.json").read_text())
    assert {s["name"]: set(s["shardLengths"]) for s in info["splits"]} == {"train": {"4"}, "validation": {"2"}}


@pytest.mark.parametrize("split", list(SPLITS))
@pytest.mark.parametrize("world", RANKS)
def test_webdataset_split_by_node_gives_every_rank_the_same_count(equal, monkeypatch, world, split):
    urls = [str(p) for p in shard_files(equal, split, ".tar")]
    everything = [name for p in shard_files(equal, split) for name in tfrecord_names(p)]
    per_rank = []
    for rank in range(world):
        monkeypatch.setenv("RANK", str(rank))  # what webdataset's pytorch_worker_info reads, as torchrun sets them
        monkeypatch.setenv("WORLD_SIZE", str(world))
        dataset = wds.WebDataset(urls, nodesplitter=wds.split_by_node, shardshuffle=False, empty_check=False)
        per_rank.append([json.loads(s["json"])["filename"] for s in dataset])
    assert_split(per_rank, everything)


@pytest.mark.parametrize("world", RANKS)
def test_wids_distributed_chunked_sampler_gives_every_rank_the_same_count_and_whole_shards(equal, monkeypatch, world):
    dataset = wids.ShardListDataset(str(equal / "train.wids.json"), cache_dir=str(equal.parent / "wids-cache"),
                                    transformations=[])
    everything = [name for p in shard_files(equal, "train") for name in tfrecord_names(p)]
    per_rank, shards = [], []
    for rank in range(world):  # torch.distributed as an initialised process group of `world` answers
        monkeypatch.setattr(wids.wids.dist, "is_initialized", lambda: True)
        monkeypatch.setattr(wids.wids.dist, "get_world_size", lambda: world)
        monkeypatch.setattr(wids.wids.dist, "get_rank", lambda: rank)
        sampler = wids.DistributedChunkedSampler(dataset, num_replicas=world, rank=rank, chunksize=10, seed=rank)
        samples = [dataset[i] for i in sampler]
        assert len(sampler) == len(samples)
        per_rank.append([json.loads(s[".json"].read())["filename"] for s in samples])
        shards.append({s["__shard__"] for s in samples})
    assert_split(per_rank, everything)
    assert all(len(mine) == SHARDS // world for mine in shards)  # each rank reads whole shards of its own
    assert len(set().union(*shards)) == SHARDS


@pytest.mark.parametrize("split", list(SPLITS))
def test_tfds_input_context_gives_every_rank_the_same_count(equal_tfds, split):
    def read(world: int, rank: int) -> list[str]:
        context = tf.distribute.InputContext(num_input_pipelines=world, input_pipeline_id=rank)
        dataset = tfds.load("imagenet2012", split=split, data_dir=str(equal_tfds), download=False,
                            read_config=tfds.ReadConfig(input_context=context),
                            decoders={"image": tfds.decode.SkipDecoding()})
        return [e["file_name"].decode() for e in tfds.as_numpy(dataset)]

    everything = read(1, 0)
    assert len(everything) == SPLITS[split]
    for world in RANKS[1:]:
        assert_split([read(world, rank) for rank in range(world)], everything)


DALI_BATCH = 5  # divides no rank's count: each rank's last batch is padded


@pytest.mark.parametrize("world", RANKS)
def test_dali_num_shards_gives_every_rank_the_same_count_and_whole_files(equal, world):
    shards = [str(p) for p in shard_files(equal, "train")]
    per_rank = []
    for rank in range(world):
        @pipeline_def(batch_size=DALI_BATCH, num_threads=1, device_id=None)
        def pipe():
            inputs = fn.readers.tfrecord(path=shards, index_path=[s + ".idx" for s in shards], name="Reader",
                                         shard_id=rank, num_shards=world, stick_to_shard=True, pad_last_batch=True,
                                         features={"image/filename": tfrec.FixedLenFeature((), tfrec.string, "")})
            return inputs["image/filename"]

        built = pipe()
        built.build()
        total = built.reader_meta("Reader")["epoch_size"]
        size = (rank + 1) * total // world - rank * total // world  # DALI's own split of `total` records
        rows: list[str] = []
        for _ in range(math.ceil(size / DALI_BATCH)):
            (batch,) = built.run()
            rows += [bytes(np.array(batch[i])).decode() for i in range(len(batch))]
        assert set(rows[size:]) == {rows[size - 1]}  # the padding repeats the rank's last record: its shard ended
        per_rank.append(rows[:size])
        mine = shards[rank * SHARDS // world:(rank + 1) * SHARDS // world]
        assert rows[:size] == [name for p in mine for name in tfrecord_names(Path(p))]  # whole files, in order
    assert_split(per_rank, [name for p in shards for name in tfrecord_names(Path(p))])


def test_images_skipped_as_bad_leave_equal_shards_uneven_and_the_run_warns_with_the_counts(tmp_path):
    """The cut is made before any image is read; a skipped image leaves its shard one short. A run where that puts
    shards more than one apart ends with a warning naming the split and the counts (docs/equal-shards.md)."""
    synset = SYNSETS[0]
    images = {f"{synset}_{i}.JPEG": builders.jpeg(12, 10, seed=i) for i in range(12)}
    for i in range(3):  # three bad images; the classic's shuffle puts two of them in one shard of four
        images[f"{synset}_{i}.JPEG"] = b"not a jpeg at all"
    paths = write_tiny(tmp_path / "dl", classes={synset: images},
                       val={"ILSVRC2012_val_00000001.JPEG": builders.jpeg(12, 10, seed=99)}, val_labels=[synset])
    code, err = run_cli(*convert_args(paths, tmp_path / "out", "--equal-shards", "--train-shards", "3",
                                      "--validation-shards", "1", "--on-bad-image", "skip"))
    assert code == 0, err
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    counts = [e["records"] for e in sorted(manifest["shards"], key=lambda e: e["name"]) if e["split"] == "train"]
    assert sum(counts) == 9 and len(counts) == 3 and max(counts) - min(counts) == 2
    assert f"--equal-shards: train shards hold {min(counts)} to {max(counts)} images, not within one, because 3 " \
           "image(s) were skipped" in err
    assert "--equal-shards: validation" not in err
