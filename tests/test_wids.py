"""The `wids` index (`--wids-index`) judged by `wids.ShardListDataset` itself, and WebDataset member names that fit a
ustar header judged by the readers that read no other: wids, and DALI's tar parser without an index.

The shards' own samples (read with the webdataset library) are the reference: wids must give each of them at its
index, with its image bytes, class and metadata, knowing every count from the index alone.
"""

from __future__ import annotations

import io
import json
import random
import re
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds
import wids
from nvidia.dali import fn, pipeline_def

from fixtures import builders
from helpers import SMALL_LAYOUT, convert_args, run_cli, run_cli_out
from streamprep.outputs.webdataset.write import KEY_ROOM, fitted
from tiny import A, B, write_tiny

SPLITS = {"train": 4, "validation": 2}  # SMALL_LAYOUT's shards


def reference(out: Path, split: str) -> list[dict]:
    """Every sample of a split, in shard order, as the webdataset library reads the tars."""
    urls = [str(out / f"{split}-{k:05d}-of-{n:05d}.tar") for n in [SPLITS[split]] for k in range(n)]
    return list(wds.WebDataset(urls, shardshuffle=False, empty_check=False))


def dataset(index: Path, cache: Path) -> wids.ShardListDataset:
    """wids' dataset of an index, the samples' files as read (no decoding)."""
    return wids.ShardListDataset(str(index), cache_dir=str(cache), transformations=[])


@pytest.mark.parametrize("split", list(SPLITS))
def test_wids_reads_every_sample_at_random_from_the_index_alone(wids_converted, tmp_path, split):
    expected = reference(wids_converted, split)
    got = dataset(wids_converted / f"{split}.wids.json", tmp_path / "cache")
    assert len(got) == len(expected) == {"train": 31, "validation": 13}[split]
    assert len(got.cache) == 0  # the count came from the index: no shard was opened, none scanned
    order = list(range(len(got)))
    random.Random(7).shuffle(order)
    for i in order:
        sample, want = got[i], expected[i]
        assert sample["__key__"] == want["__key__"]
        assert sample[".jpg"].read() == want["jpg"]
        assert int(sample[".cls"].read()) == int(want["cls"]) == json.loads(want["json"])["cls"]
        assert json.loads(sample[".json"].read()) == json.loads(want["json"])


def test_the_wids_index_is_wids_own_layout_with_urls_relative_to_it(wids_converted, tmp_path):
    moved = tmp_path / "moved"
    shutil.copytree(wids_converted, moved)
    for split, shards in SPLITS.items():
        index = json.loads((moved / f"{split}.wids.json").read_text())
        assert index["__kind__"] == "wids-shard-index-v1" and index["wids_version"] == 1
        assert [e["url"] for e in index["shardlist"]] == [f"{split}-{k:05d}-of-{shards:05d}.tar" for k in range(shards)]
        assert [e["filesize"] for e in index["shardlist"]] == [(moved / e["url"]).stat().st_size
                                                              for e in index["shardlist"]]
        assert [e["nsamples"] for e in index["shardlist"]] == \
            json.loads((moved / "_info.json").read_text())["splits"][split]["shard_lengths"]
        got = dataset(moved / f"{split}.wids.json", tmp_path / "cache" / split)
        assert {Path(got[i]["__shard__"]).parent for i in range(len(got))} == {moved}  # read where it now lies


def test_the_wids_index_is_listed_in_the_manifest_verified_and_inspected(wids_converted, both):
    files = {e["name"]: e for e in json.loads((wids_converted / "manifest.json").read_text())["files"]}
    assert {"train.wids.json", "validation.wids.json", "_info.json"} <= set(files)
    assert json.loads((wids_converted / "manifest.json").read_text())["options"]["wids_index"] is True
    assert not list(both.glob("*.wids.json"))  # only when asked for
    code, err = run_cli("verify", str(wids_converted))
    assert code == 0, err
    code, out, err = run_cli_out("inspect", "--json", str(wids_converted / "train.wids.json"))
    assert code == 0, err
    shown = json.loads(out)
    shown = shown[0] if isinstance(shown, list) else shown
    assert shown["kind"] == "wids shard list (WebDataset)" and shown["counts"] == {"samples": 31, "shards": 4}


def test_wids_index_without_webdataset_is_refused(sample, tmp_path):
    code, err = run_cli(*convert_args(sample, tmp_path / "out", *SMALL_LAYOUT, "--wids-index"))
    assert code == 2 and "--format webdataset" in err and len(err.strip().splitlines()) == 1


# --------------------------------------------------------------------------------------------- names within 100 bytes

def test_a_key_that_fits_is_kept_and_a_long_one_is_shortened_stably_within_the_name_field():
    assert fitted("n01440764/n01440764_10026") == "n01440764/n01440764_10026"
    assert fitted("x" * KEY_ROOM) == "x" * KEY_ROOM
    long = "n01440764/" + "%C3%A9" * 30
    short = fitted(long)
    assert short == fitted(long) and len(short) <= KEY_ROOM and len(f"{short}.json") <= 100
    assert re.fullmatch(r"n01440764/(%[0-9A-F]{2})*%_[0-9a-f]{16}", short)  # no %XX cut in two
    assert fitted(long + "X") != short and fitted(long + "X")[:-16] == short[:-16]  # same head, another hash
    assert all("%_" not in fitted(k) for k in ("a%5Fb", "%", "n01440764/%"))


@pytest.fixture(scope="module")
def long_named(tmp_path_factory) -> tuple[Path, str]:
    """A training member named with 120 bytes (beside ordinary ones, one of them after it in its shard), converted
    to WebDataset with the wids index, in one shard a split."""
    name = f"{A}_" + "long" * 27 + "_photo.JPEG"
    assert len(name) > 110
    classes = {A: {name: builders.jpeg(20, 16, seed=1), f"{A}_1.JPEG": builders.jpeg(18, 16, seed=2)},
               B: {f"{B}_{i}.JPEG": builders.jpeg(16, 12 + i, seed=3 + i) for i in (1, 2)}}
    base = tmp_path_factory.mktemp("long-names")
    paths = write_tiny(base / "in", classes=classes)
    code, err = run_cli(*convert_args(paths, base / "out", "--train-shards", "1", "--validation-shards", "1",
                                      "--classic-threads", "1", "--format", "webdataset", "--wids-index", "--quiet"))
    assert code == 0, err
    return base / "out", name


def test_every_member_name_fits_the_ustar_name_field_and_no_pax_record_is_written(long_named):
    out, name = long_named
    with tarfile.open(out / "train-00000-of-00001.tar") as tar:
        members = tar.getmembers()
    assert len(members) == 3 * 4 and all(len(m.name.encode()) <= 100 and not m.pax_headers for m in members)
    raw = (out / "train-00000-of-00001.tar").read_bytes()
    assert b"PaxHeader" not in raw and b"path=" not in raw
    samples = list(wds.WebDataset(str(out / "train-00000-of-00001.tar"), shardshuffle=False))
    assert len(samples) == 4
    (long,) = [s for s in samples if json.loads(s["json"])["filename"] == name]  # the full name stays in the .json
    assert long["__key__"] == fitted(f"{A}/{name[:-5]}") != f"{A}/{name[:-5]}"
    code, err = run_cli("verify", str(out))
    assert code == 0, err


def test_wids_reads_every_sample_of_a_shard_with_a_long_name(long_named, tmp_path):
    out, name = long_named
    got = dataset(out / "train.wids.json", tmp_path / "cache")
    assert len(got) == 4
    names = [json.loads(got[i][".json"].read())["filename"] for i in range(len(got))]
    assert sorted(names) == sorted([name, f"{A}_1.JPEG", f"{B}_1.JPEG", f"{B}_2.JPEG"])
    assert [got[i][".jpg"].read() for i in range(4)] == \
        [s["jpg"] for s in wds.WebDataset(str(out / "train-00000-of-00001.tar"), shardshuffle=False)]


def test_dali_reads_every_sample_of_a_shard_with_a_long_name_without_an_index(long_named):
    out, name = long_named
    shard = str(out / "train-00000-of-00001.tar")

    @pipeline_def(batch_size=4, num_threads=1, device_id=None)
    def pipe():
        jpg, cls, meta = fn.readers.webdataset(paths=[shard], ext=["jpg", "cls", "json"],
                                               missing_component_behavior="error", name="Reader")
        return jpg, cls, meta

    built = pipe()
    built.build()
    assert built.epoch_size("Reader") == 4
    jpgs, classes, metas = built.run()
    read = {json.loads(bytes(np.array(metas[i])))["filename"]: (bytes(np.array(jpgs[i])), int(bytes(np.array(classes[i]))))
            for i in range(4)}
    expected = {json.loads(s["json"])["filename"]: (s["jpg"], int(s["cls"]))
                for s in wds.WebDataset(shard, shardshuffle=False)}
    assert read == expected and name in read


def test_verify_reports_a_member_with_a_pax_record(both, tmp_path, capsys):
    out = tmp_path / "copy"
    shutil.copytree(both, out)
    shard = out / "validation-00000-of-00002.tar"
    with tarfile.open(shard) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    first = members[0][0].name.rsplit(".", 1)[0]
    with tarfile.open(shard, "w", format=tarfile.PAX_FORMAT) as tar:
        for member, data in members:
            if member.name.startswith(first + "."):
                member.name = "x" * 120 + "." + member.name.rsplit(".", 1)[1]
            tar.addfile(member, io.BytesIO(data))
    code, err = run_cli("verify", str(out))
    assert code != 0 and "pax record" in err + capsys.readouterr().out
