"""ImageNet-21k from a gzipped archive (winter21_whole.tar.gz) read in place: the same per-synset tars as `.tar` and
as `.tar.gz` give the same files byte for byte, judged also against `processing_script.sh` run on what tarfile
extracts from the `.tar.gz`; a run killed while writing resumes from the saved checkpoints, decompressing nothing
from the start again; a truncated or corrupt gzip stream, or no rapidgzip, is a one-line error; ILSVRC2012's tars
gzipped give the classic's shards too."""

from __future__ import annotations

import gzip
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from fixtures.builders import jpeg, tar_bytes
from helpers import SMALL_LAYOUT, convert_args, killed_at, result_files, run_cli, run_python
from i21k_archive import CORRUPT, RECIPE, SYNSETS, classes
from servers import FaultProxy, nginx_server, require_nginx
from test_imagenet21k import expected_by_the_script, read_webdataset

from streamprep.archives import gzipped

LAYOUT = ("--train-shards", "6", "--validation-shards", "2", "--classic-threads", "1", "--on-bad-image", "skip")
FORMATS = ("--format", "tfrecord,webdataset")
BIG = SYNSETS[300]  # a class of larger images: the archive spans several checkpoints, the images all of them


def _classes() -> dict[str, dict[str, bytes]]:
    """i21k_archive's four per-synset tars (a class dropped by the recipe, names out of natural order, a member
    that is no *.JPEG, a corrupt JPEG first by name) and one of twelve ~78 KB images (about 1 MB in all)."""
    return {**classes(), BIG: {f"{BIG}_{k}.JPEG": jpeg(400, 400, seed=500 + k) for k in range(12)}}


def _tar(found: dict[str, dict[str, bytes]]) -> bytes:
    outer = {f"{synset}.tar": tar_bytes(files) for synset, files in found.items()}
    outer["LICENSE"] = b"not a class tar"
    return tar_bytes(outer)


def _members(data: bytes, *cuts: int) -> bytes:
    """`data` gzipped as several members one after another (as `cat a.gz b.gz` makes), cut at `cuts`."""
    bounds = [0, *cuts, len(data)]
    return b"".join(gzip.compress(data[a:b], 6, mtime=0) for a, b in zip(bounds, bounds[1:]))


def convert(source: Path, out: Path, *extra: object) -> tuple[int, str]:
    return run_cli("convert", source, "--out", out, *RECIPE, *LAYOUT, *extra)


def shard_sums(out: Path) -> list[tuple[str, int, str]]:
    """Every shard of the manifest: its file, records and digest (the manifest's `run` names the download)."""
    manifest = json.loads((out / "manifest.json").read_text())
    return [(s["name"], s["records"], s[manifest["checksum"]]) for s in manifest["shards"]]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """The archive as fall11_whole.tar and as winter21_whole.tar.gz (one gzip member), each converted once."""
    if importlib.util.find_spec("rapidgzip") is None:  # streamprep[gzip], in the test extra
        pytest.skip("rapidgzip is not installed")
    base = tmp_path_factory.mktemp("i21k-targz")
    tar = _tar(_classes())
    paths = {"tar": base / "fall11_whole.tar", "gz": base / "winter21_whole.tar.gz"}
    paths["tar"].write_bytes(tar)
    paths["gz"].write_bytes(gzip.compress(tar, 6, mtime=0))
    for key in ("tar", "gz"):
        paths[f"{key}_out"] = base / f"out-{key}"
        code, err = convert(paths[key], paths[f"{key}_out"], *FORMATS, "--quiet")
        assert code == 0, err
    return paths


def test_the_gzipped_archive_gives_every_shard_of_the_plain_one_byte_for_byte_and_the_script_s_images(built,
                                                                                                        tmp_path):
    plain, gzipped_out = result_files(built["tar_out"]), result_files(built["gz_out"])

    assert plain.keys() == gzipped_out.keys() and len(plain) > 10
    assert {k: v for k, v in plain.items() if k != "manifest.json"} == \
        {k: v for k, v in gzipped_out.items() if k != "manifest.json"}
    assert shard_sums(built["tar_out"]) == shard_sums(built["gz_out"])
    expected = expected_by_the_script(built["gz"], tmp_path / "x")  # tarfile extracts the .tar.gz itself
    assert read_webdataset(built["gz_out"]) == {k: v for k, v in expected.items() if v[1] != CORRUPT}
    run = json.loads((built["gz_out"] / "manifest.json").read_text())["run"]
    assert run["inputs"]["train"]["size"] == built["gz"].stat().st_size  # the download's own size, not the tar's
    code, err = run_cli("verify", built["gz_out"], "--quiet")
    assert code == 0, err


def test_the_one_pass_records_a_checkpoint_about_every_spacing_of_the_tar_beside_the_saved_index(built):
    state = built["gz_out"] / ".streamprep"
    (saved,) = state.glob("checkpoints-*.npz")

    with np.load(saved) as z:
        outs, size = z["outs"], json.loads(z["meta"].tobytes())["size"]
    assert size == built["tar"].stat().st_size and outs[0] == 0
    assert len(outs) >= 4 and all(0 < d < 2 * gzipped.SPACING for d in np.diff(outs))  # at deflate block ends
    assert list(state.glob("index-*.npz"))


def test_gzip_members_one_after_another_give_the_same_shards_each_member_a_byte_range_of_the_tar(built, tmp_path):
    tar = built["tar"].read_bytes()
    archive = tmp_path / "winter21_whole.tgz"
    archive.write_bytes(_members(tar, 300_001, len(tar) // 2 + 7))  # cuts inside images and inside headers

    code, err = convert(archive, tmp_path / "out", *FORMATS, "--quiet")

    assert code == 0, err
    assert shard_sums(tmp_path / "out") == shard_sums(built["tar_out"])


def test_a_rerun_reads_the_saved_checkpoints_and_does_not_walk_or_decompress_the_archive_again(built, tmp_path):
    out = tmp_path / "out"
    code, _ = convert(built["gz"], out, *FORMATS, "--quiet")
    assert code == 0
    (saved,) = (out / ".streamprep").glob("checkpoints-*.npz")
    stamp = (saved.stat().st_ino, saved.stat().st_mtime_ns)
    lost = next(out.glob("train-*.tar"))
    lost.unlink()

    code, err = convert(built["gz"], out, *FORMATS)

    assert code == 0, err
    assert "reused the one saved by an earlier run" in err and "index classes" not in err, err
    assert (saved.stat().st_ino, saved.stat().st_mtime_ns) == stamp
    assert result_files(out) == result_files(built["gz_out"])


@pytest.fixture(scope="module")
def slow_http(built, tmp_path_factory):
    """The .tar.gz served by nginx behind a proxy that can delay each request: (proxy, URL)."""
    exe = require_nginx()
    www = tmp_path_factory.mktemp("targz-www")
    (www / built["gz"].name).write_bytes(built["gz"].read_bytes())
    with nginx_server(www, tmp_path_factory.mktemp("targz-nginx"), exe=exe) as base:
        with FaultProxy.to(base) as proxy:
            yield proxy, f"{proxy.url}/{built['gz'].name}"


def _listed(out: Path) -> int:
    try:
        return sum(1 for s in json.loads((out / "manifest.json").read_text())["shards"] if s["split"] == "train")
    except (FileNotFoundError, ValueError):
        return 0


def _killed_while_writing(command: list[str], out: Path, proxy: FaultProxy) -> str:
    """Run `command` with each request delayed, SIGKILL it once two training shards are listed and a third is being
    written; what it printed."""
    return killed_at(command, lambda lines: _listed(out) >= 2 and any(out.glob(".train-*.tmp")), proxy)


def test_a_run_over_http_killed_while_writing_resumes_from_its_checkpoints_byte_for_byte(built, slow_http, tmp_path):
    proxy, url = slow_http
    out = tmp_path / "out"
    printed = _killed_while_writing([sys.executable, "-m", "streamprep", "convert", url, "--out", str(out), *RECIPE,
                                     *LAYOUT, *FORMATS, "--workers", "1"], out, proxy)
    assert "index classes: done" in printed and "write train: started" in printed, printed
    (saved,) = (out / ".streamprep").glob("checkpoints-*.npz")
    stamp = (saved.stat().st_ino, saved.stat().st_mtime_ns)
    before = len(proxy.seen)

    code, err = run_cli("convert", url, "--out", out, *RECIPE, *LAYOUT, *FORMATS)

    assert code == 0, err
    assert "reused the one saved by an earlier run" in err and "index classes" not in err, err
    assert (saved.stat().st_ino, saved.stat().st_mtime_ns) == stamp
    ranges = [s.range for s in proxy.seen[before:] if s.range]
    assert ranges and not [r for r in ranges if r.startswith("bytes=0-")], ranges  # the gzip header never read again
    assert {k: v for k, v in result_files(out).items() if k != "manifest.json"} == \
        {k: v for k, v in result_files(built["tar_out"]).items() if k != "manifest.json"}
    assert shard_sums(out) == shard_sums(built["tar_out"])


def _broken(path: Path, data: bytes) -> tuple[int, str]:
    path.write_bytes(data)
    return convert(path, path.parent / "out", "--quiet")


def test_a_truncated_gzip_stream_is_a_one_line_error_naming_the_archive(built, tmp_path):
    data = built["gz"].read_bytes()

    code, err = _broken(tmp_path / "winter21_whole.tar.gz", data[:len(data) * 2 // 3])

    assert code == 2 and err.count("\n") == 1, err
    assert "winter21_whole.tar.gz: cannot decompress at decompressed byte" in err and "fetch it again" in err, err
    assert not (tmp_path / "out").exists()


def _flip_middle(data: bytearray) -> None:
    for at in range(len(data) // 2, len(data) // 2 + 4096, 97):  # bits flipped in one image's compressed bytes
        data[at] ^= 0x10


def _flip_crc(data: bytearray) -> None:
    data[-8] ^= 0xFF  # the trailer's CRC-32: every byte decompresses, the check at the end fails


@pytest.mark.parametrize("damage, message", [
    (_flip_middle, "winter21_whole.tar.gz: cannot decompress at decompressed byte"),
    (_flip_crc, "winter21_whole.tar.gz: the decompressed data does not match the gzip stream's CRC-32; the archive is "
                "corrupt, fetch it again"),
], ids=["inside", "crc"])
def test_a_corrupt_gzip_stream_is_a_one_line_error_naming_the_archive(built, tmp_path, damage, message):
    data = bytearray(built["gz"].read_bytes())
    damage(data)

    code, err = _broken(tmp_path / "winter21_whole.tar.gz", bytes(data))

    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "out").exists()


def test_a_tar_cut_short_before_it_was_gzipped_is_a_one_line_error_saying_it_runs_past_the_decompressed_end(
        built, tmp_path):
    tar = built["tar"].read_bytes()
    cut = tar.index(f"{BIG}.tar".encode()) + 512 + 300_000  # inside the large class tar

    code, err = _broken(tmp_path / "winter21_whole.tar.gz", gzip.compress(tar[:cut - cut % 512], 6, mtime=0))

    assert code == 2 and err.count("\n") == 1, err
    assert "the tar inside ends at byte" in err and "the archive is truncated, fetch it again" in err, err


def test_a_plain_tar_named_tar_gz_is_a_one_line_error_saying_to_rename_it(built, tmp_path):
    code, err = _broken(tmp_path / "winter21_whole.tar.gz", built["tar"].read_bytes())

    assert code == 2 and err.count("\n") == 1 and "not a gzip file, though named like one" in err, err


def test_without_rapidgzip_a_gzipped_archive_is_refused_naming_the_extra_before_anything_is_read(tmp_path):
    archive = tmp_path / "winter21_whole.tar.gz"
    archive.write_bytes(gzip.compress(_tar(classes()), 6, mtime=0))

    done = run_python("import sys\nsys.modules['rapidgzip'] = None\nfrom streamprep.cli import main\n"
                      f"sys.exit(main(['convert', {str(archive)!r}, '--out', {str(tmp_path / 'out')!r}, "
                      "'--dataset', 'imagenet21k']))")

    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert f"--train {archive} needs rapidgzip, which is not installed; install streamprep[gzip]" in done.stderr
    assert not (tmp_path / "out").exists()


def test_a_read_from_the_checkpoints_gives_the_tar_s_bytes_at_any_offset_across_gzip_members(built, tmp_path):
    tar = built["tar"].read_bytes()
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(_members(tar, 100_000, 700_003))
    source = gzipped.GzippedSource(str(archive))
    try:
        ranges = [(0, 512), (99_990, 20), (700_000, 5000), (len(tar) - 1024, 1024), (123_456, 654_321), (5, 1)]
        assert source.read_ranges(ranges) == [tar[o:o + n] for o, n in ranges]
        assert source.size == len(tar) and len(source.checkpoints.outs) >= 3  # none needed at a member's start
        assert [source.read_at(o, n) for o, n in ranges[:2]] == [tar[o:o + n] for o, n in ranges[:2]]
    finally:
        source.close()


def test_ilsvrc2012_s_training_and_validation_tars_gzipped_give_the_classic_s_shards_byte_for_byte(
        sample, converted_sample, tmp_path):
    if importlib.util.find_spec("rapidgzip") is None:
        pytest.skip("rapidgzip is not installed")
    gzipped_downloads = {**sample, "train": tmp_path / "train.tar.gz", "val": tmp_path / "val.tgz"}
    for key in ("train", "val"):
        gzipped_downloads[key].write_bytes(gzip.compress(sample[key].read_bytes(), 6, mtime=0))

    code, err = run_cli(*convert_args(gzipped_downloads, tmp_path / "out", *SMALL_LAYOUT, "--quiet"))

    assert code == 0, err
    assert shard_sums(tmp_path / "out") == shard_sums(converted_sample)
    assert sorted(p.name for p in (tmp_path / "out" / ".streamprep").glob("checkpoints-*")) == \
        ["checkpoints-train.npz", "checkpoints-val.npz"]
