"""The manifest's checksum (`--checksum`): xxh3-128 by default, BLAKE3 or sha256 on request; verify and resume check
whichever algorithm a manifest names, a manifest written before the choice (sha256, no "checksum" key) still loads,
resumes and verifies, and a manifest never mixes two algorithms.

Each digest is judged by the algorithm's own library (xxhash, blake3, hashlib) over the file's bytes; the outputs
are conftest's `both` (TFRecord and WebDataset with DALI's indexes, the default checksum) and the same conversion
with `--checksum blake3` and `--checksum sha256`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import blake3
import pytest
import xxhash

from helpers import SMALL_LAYOUT, convert_args, run_cli, run_python, same_but_out
from streamprep.outputs.manifest import Manifest, ShardEntry
from streamprep.outputs.verify import verify

BOTH = ("--format", "tfrecord,webdataset", "--dali-index")  # conftest's `both`
JUDGES = {"xxh3-128": lambda data: xxhash.xxh3_128(data).hexdigest(),
          "blake3": lambda data: blake3.blake3(data).hexdigest(),
          "sha256": lambda data: hashlib.sha256(data).hexdigest()}
SHARD = "train-00001-of-00004"


@pytest.fixture(scope="module")
def outputs(sample, both, tmp_path_factory) -> dict[str, Path]:
    """The same conversion under each checksum, by its name; read them, never change them (copy them first)."""
    found = {"xxh3-128": both}
    for name in ("blake3", "sha256"):
        out = tmp_path_factory.mktemp(name) / "out"
        code, err = run_cli(*convert_args(sample, out, *SMALL_LAYOUT, *BOTH, "--checksum", name, "--quiet"))
        assert code == 0, err
        found[name] = out
    return found


def manifest_of(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def entries(manifest: dict) -> dict[str, dict]:
    """Every file the manifest lists, by name: shards, their DALI indexes, bboxes.csv, the files beside the shards."""
    found = {e["name"]: e for e in manifest["shards"]}
    found |= {e["index"]["name"]: e["index"] for e in manifest["shards"] if e.get("index")}
    return found | {e["name"]: e for e in [manifest["bboxes_csv"], *manifest.get("files", [])]}


def files_of(out: Path) -> dict[str, bytes]:
    """Every file of the output but manifest.json and the hidden state, by its path relative to `out`."""
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.name != "manifest.json" and not p.relative_to(out).as_posix().startswith(".")}


def copy_of(folder: Path, tmp_path: Path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(folder, out)
    return out


def written_at(out: Path, names) -> dict[str, tuple[int, int]]:
    """Each file's inode and modification time: a file written again (renamed into place) has a new inode."""
    return {n: ((out / n).stat().st_ino, (out / n).stat().st_mtime_ns) for n in names}


def shard_files(manifest: dict) -> list[str]:
    return [n for e in manifest["shards"] for n in [e["name"], *([e["index"]["name"]] if e.get("index") else [])]]


# --------------------------------------------------------------------------------------------- what is written

@pytest.mark.parametrize("name", list(JUDGES))
def test_the_manifest_lists_every_file_with_the_digest_its_algorithms_own_library_computes(outputs, name):
    manifest = manifest_of(outputs[name])
    listed, files = entries(manifest), files_of(outputs[name])
    assert manifest["checksum"] == name and list(manifest)[:2] == ["format", "checksum"]
    assert sorted(listed) == sorted(files) and len(files) == 2 * 6 * 2 + 2  # shards, indexes, bboxes.csv, _info.json
    assert {n: e[name] for n, e in listed.items()} == {n: JUDGES[name](data) for n, data in files.items()}
    assert all(set(e) & set(JUDGES) == {name} for e in listed.values())  # one algorithm, under its own name


def test_the_default_is_xxh3_128_and_the_files_written_do_not_depend_on_the_checksum(outputs):
    assert manifest_of(outputs["xxh3-128"])["checksum"] == "xxh3-128"  # `both` was converted without --checksum
    first = files_of(outputs["xxh3-128"])
    assert files_of(outputs["blake3"]) == first and files_of(outputs["sha256"]) == first


def test_a_manifest_never_holds_two_checksums():
    entry = ShardEntry(SHARD, "train", 1, 10, "ab" * 16, checksum="xxh3-128")
    with pytest.raises(ValueError, match="an entry's digest is 'xxh3-128', the manifest's checksum 'sha256'"):
        Manifest({}, {}, shards={SHARD: entry}, checksum="sha256").to_bytes()


# --------------------------------------------------------------------------------------------- verify

@pytest.mark.parametrize("name", list(JUDGES))
def test_verify_checks_the_algorithm_its_manifest_names_and_names_it_for_a_damaged_file(outputs, name, tmp_path):
    out = copy_of(outputs[name], tmp_path)
    report = verify(str(out))
    assert report.ok, report.lines()
    assert f"counts and {name} against manifest.json" in report.lines()[-1]

    data = bytearray((out / SHARD).read_bytes())
    length = int.from_bytes(data[:8], "little")
    data[12 + length // 2] ^= 0xFF  # inside the first record's Example: same size, framing intact
    (out / SHARD).write_bytes(bytes(data))
    index = out / f"{SHARD}.tar.idx"
    index.write_bytes(index.read_bytes().replace(b" ", b"\t", 1))

    problems = [str(p) for p in verify(str(out)).problems]
    assert any(p.startswith(f"{SHARD}: {name} {JUDGES[name](bytes(data))} differs from manifest.json's")
               for p in problems), problems
    assert f"{SHARD}.tar.idx: differs from manifest.json's size and {name}: not the index convert wrote" in problems


# --------------------------------------------------------------------------------------------- earlier manifests

def test_a_manifest_written_before_the_choice_loads_verifies_and_resumes_keeping_every_file(outputs, sample,
                                                                                             tmp_path):
    out = copy_of(outputs["sha256"], tmp_path)
    old = manifest_of(out)
    del old["checksum"]  # what every streamprep wrote before --checksum: sha256, and no key naming it
    (out / "manifest.json").write_text(json.dumps(old, indent=1) + "\n")

    model = Manifest.parse(old)
    assert model.checksum == "sha256"
    assert {n: e.digest for n, e in model.shards.items()} == {n: e["sha256"] for n, e in entries(old).items()
                                                             if n in model.shards}
    assert verify(str(out)).ok
    before = written_at(out, shard_files(old))

    code, err = run_cli(*convert_args(sample, out, *SMALL_LAYOUT, *BOTH, "--checksum", "sha256"))

    assert code == 0, err
    assert f"streamprep: kept {out}: 6 of 6 shards were already complete (sha256 checked against the manifest); " \
           "wrote no shard" in err, err
    assert written_at(out, shard_files(old)) == before  # kept, not written again
    assert same_but_out((outputs["sha256"] / "manifest.json").read_bytes(), str(outputs["sha256"]),
                        (out / "manifest.json").read_bytes(), str(out))  # as a fresh run with --checksum sha256


@pytest.mark.parametrize("old,new", [("sha256", "xxh3-128"), ("xxh3-128", "blake3")])
def test_a_rerun_with_another_checksum_keeps_every_file_and_lists_it_under_the_new_one_only(outputs, sample, tmp_path,
                                                                                           old, new):
    out = copy_of(outputs[old], tmp_path)
    names = shard_files(manifest_of(out))
    before = written_at(out, names)

    code, err = run_cli(*convert_args(sample, out, *SMALL_LAYOUT, *BOTH, "--checksum", new))

    assert code == 0, err
    assert f"6 of 6 shards were already complete ({old} checked against the manifest, {new} recorded); wrote no " \
           "shard" in err, err
    assert written_at(out, names) == before
    assert same_but_out((outputs[new] / "manifest.json").read_bytes(), str(outputs[new]),
                        (out / "manifest.json").read_bytes(), str(out))  # byte for byte a fresh run's with `new`
    assert verify(str(out)).ok


def test_a_rerun_with_another_checksum_writes_again_a_file_that_no_longer_matches_its_old_digest(outputs, sample,
                                                                                               tmp_path):
    out = copy_of(outputs["sha256"], tmp_path)
    intact = (out / SHARD).read_bytes()
    damaged = bytearray(intact)
    damaged[-5] ^= 0xFF
    (out / SHARD).write_bytes(bytes(damaged))

    code, err = run_cli(*convert_args(sample, out, *SMALL_LAYOUT, *BOTH))

    assert code == 0, err
    assert "5 of 6 shards were already complete (sha256 checked against the manifest, xxh3-128 recorded) and were " \
           "kept" in err, err
    assert (out / SHARD).read_bytes() == intact
    assert same_but_out((outputs["xxh3-128"] / "manifest.json").read_bytes(), str(outputs["xxh3-128"]),
                        (out / "manifest.json").read_bytes(), str(out))


# --------------------------------------------------------------------------------------------- refused

@pytest.mark.parametrize("change,words", [
    (lambda m: m["shards"][0].update(sha256="0" * 64),
     "shard train-00000-of-00004: a 'sha256' digest in a manifest of 'xxh3-128' digests"),
    (lambda m: m["bboxes_csv"].update(blake3="0" * 64), "file bboxes.csv: a 'blake3' digest in a manifest of "),
    (lambda m: m.update(checksum="md5"), "'checksum' is 'md5', which this streamprep does not know (it knows "
                                         "xxh3-128, blake3, sha256)"),
    (lambda m: m.pop("checksum"), "a 'xxh3-128' digest in a manifest of 'sha256' digests"),
], ids=["mixed", "mixed-side-file", "unknown", "unnamed"])
def test_a_manifest_mixing_checksums_or_naming_an_unknown_one_is_refused_in_one_line(outputs, sample, tmp_path,
                                                                                     change, words):
    out = copy_of(outputs["xxh3-128"], tmp_path)
    manifest = manifest_of(out)
    change(manifest)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    before = files_of(out)

    with pytest.raises(ValueError) as refused:
        Manifest.parse(manifest)
    assert words in str(refused.value) and "\n" not in str(refused.value)
    code, err = run_cli(*convert_args(sample, out, *SMALL_LAYOUT, *BOTH))

    assert code == 2 and "its manifest.json is unusable" in err and words in err, err
    assert err.count("\n") == 1 and files_of(out) == before
    assert any(p.where == "manifest.json" and words in p.what for p in verify(str(out)).problems)


def test_an_unknown_checksum_is_refused_in_one_line_before_anything_is_written(sample, tmp_path):
    code, err = run_cli(*convert_args(sample, tmp_path / "out", "--checksum", "md5"))
    assert code == 2 and err.count("\n") == 1, err
    assert "checksum (--checksum) must be one of xxh3-128, blake3, sha256, got 'md5'" in err
    assert not (tmp_path / "out").exists()


def test_blake3_without_its_package_is_refused_naming_the_extra_by_convert_and_verify(outputs, sample, tmp_path):
    result = run_python(f"""
import json, sys
sys.modules["blake3"] = None  # not installed
from helpers import convert_args, run_cli, run_cli_out
converted = run_cli(*convert_args({ {k: str(v) for k, v in sample.items()} !r}, {str(tmp_path / "out")!r},
                                  "--checksum", "blake3"))
verified = run_cli_out("verify", {str(outputs["blake3"])!r}, "--quiet")
print(json.dumps([converted, verified]))
""")
    assert result.returncode == 0, result.stderr
    (code, err), (verify_code, report, verify_err) = json.loads(result.stdout.splitlines()[-1])
    assert code == 2 and err.count("\n") == 1, err
    assert "--checksum blake3 needs blake3, which is not installed; install streamprep[blake3]" in err
    assert not (tmp_path / "out").exists()
    assert verify_code == 2 and report == "" and verify_err.count("\n") == 1, verify_err
    assert "the checksum blake3 needs blake3, which is not installed; install streamprep[blake3]" in verify_err


# --------------------------------------------------------------------------------------------- Apache Beam

def test_the_beam_engine_writes_and_keeps_under_the_chosen_checksum_as_the_local_engine(outputs, sample, tmp_path):
    pytest.importorskip("apache_beam")
    out = copy_of(outputs["sha256"], tmp_path)
    names = [n for n in shard_files(manifest_of(out)) if not n.startswith(SHARD)]
    before = written_at(out, names)
    damaged = bytearray((out / SHARD).read_bytes())
    damaged[-5] ^= 0xFF
    (out / SHARD).write_bytes(bytes(damaged))

    code, err = run_cli(*convert_args(sample, out, *SMALL_LAYOUT, *BOTH, "--checksum", "blake3", "--engine", "beam",
                                      "--quiet"))

    assert code == 0, err
    assert written_at(out, names) == before  # checked (sha256) and kept by the workers, hashed with blake3 meanwhile
    assert files_of(out) == files_of(outputs["blake3"])  # the damaged shard written again
    assert same_but_out((outputs["blake3"] / "manifest.json").read_bytes(), str(outputs["blake3"]),
                        (out / "manifest.json").read_bytes(), str(out))
