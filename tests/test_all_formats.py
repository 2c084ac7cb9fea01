"""Every format in one run: `--format tfrecord,parquet,mds,litdata,webdataset` reads the downloads once and writes
each format's files byte for byte as a run of that format alone; formats whose files could collide are refused.

The runs of each format alone are conftest's session fixtures (`both`: TFRecord and WebDataset with DALI's indexes;
`parquet_converted`, `mds_converted`, `litdata_converted`; `wids_converted`: WebDataset with wids' index), each judged
by its library in its own module (test_parquet.py, test_mds.py, ...); here the one run is compared with them file for
file. The refusal is the registry's one rule (`registry.refuse_collisions`), held to formats defined here.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import xxhash

from helpers import SMALL_LAYOUT, SMALL_OPTIONS, convert_args, run_cli
from streamprep.outputs import registry
from streamprep.plan import SHARD_STEM

EVERY_FORMAT = ("--format", "tfrecord,parquet,mds,litdata,webdataset", "--dali-index", "--wids-index")
SHARDS = 4 + 2  # SMALL_LAYOUT's
# Shard train-00002-of-00004 in each format (and DALI's indexes of the two formats DALI reads)
SHARD_FILES = ["train-00002-of-00004", "train-00002-of-00004.tar", "data/train-00002-of-00004.parquet",
               "mds/train/train-00002-of-00004.mds", "litdata/train/chunk-00002-of-00004.bin"]
SHARD_INDEXES = ["train-00002-of-00004.idx", "train-00002-of-00004.tar.idx"]


def every_file(folder: Path) -> dict[str, bytes]:
    """Every file below `folder` by its path relative to it, but manifest.json (its paths and time differ) and the
    hidden `.streamprep/` state."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != "manifest.json" and not p.relative_to(folder).as_posix().startswith(".")}


def identities(folder: Path) -> dict[str, tuple[int, int]]:
    """Each file's inode and modification time: a file written again has a new time (its copy kept the original's),
    whatever inode it reuses."""
    return {name: ((folder / name).stat().st_ino, (folder / name).stat().st_mtime_ns) for name in every_file(folder)}


def options_for(sample: dict[str, Path], out: Path):
    """The options of the run of every format into `out` (for `streamprep.convert`, whose summary counts shards)."""
    from streamprep import Options

    return Options(train=str(sample["train"]), val=str(sample["val"]), bbox=str(sample["bbox"]),
                   validation_labels_file=str(sample["val_labels"]), out=str(out), **SMALL_OPTIONS,
                   format=EVERY_FORMAT[1], dali_index=True, wids_index=True)


@pytest.fixture(scope="module")
def every_format(sample, tmp_path_factory) -> Path:
    """The sample converted once to all five formats with DALI's and wids' indexes; read it, never change it."""
    out = tmp_path_factory.mktemp("every-format") / "out"
    code, err = run_cli(*convert_args(sample, out, *SMALL_LAYOUT, *EVERY_FORMAT, "--quiet"))
    assert code == 0, err
    return out


def test_one_run_of_every_format_gives_each_formats_files_byte_for_byte_as_its_run_alone(
        every_format, both, parquet_converted, mds_converted, litdata_converted, wids_converted):
    alone: dict[str, bytes] = {}
    for folder in (both, parquet_converted, mds_converted, litdata_converted, wids_converted):
        files = every_file(folder)
        assert all(alone.get(name, data) == data for name, data in files.items())  # bboxes.csv, .tar: the same
        alone.update(files)
    ours = every_file(every_format)
    assert sorted(ours) == sorted(alone)
    assert all(ours[name] == data for name, data in alone.items())
    top = {name.split("/")[0] for name in ours if "/" in name}
    assert top == {"data", "mds", "litdata"}  # each of the three in a folder of its own
    assert {n for n in ours if n.endswith("index.json")} == {"mds/train/index.json", "mds/val/index.json",
                                                              "litdata/train/index.json",
                                                              "litdata/validation/index.json"}
    assert len([n for n in ours if n.endswith(".idx")]) == 2 * SHARDS  # DALI's, for TFRecord and WebDataset alone


def test_the_manifest_lists_every_file_of_the_run_with_its_digest(every_format):
    manifest = json.loads((every_format / "manifest.json").read_text())
    assert manifest["checksum"] == "xxh3-128"  # the default (tests/test_manifest_checksum.py: the others)
    listed = {e["name"]: e["xxh3-128"] for e in manifest["shards"]}
    listed |= {e["index"]["name"]: e["index"]["xxh3-128"] for e in manifest["shards"] if e.get("index")}
    listed |= {e["name"]: e["xxh3-128"] for e in [*manifest["files"], manifest["bboxes_csv"]]}
    assert listed == {name: xxhash.xxh3_128(data).hexdigest() for name, data in every_file(every_format).items()}
    assert len(manifest["shards"]) == 5 * SHARDS and manifest["complete"]


def test_verify_passes_the_output_of_every_format(every_format, capsys):
    code, _ = run_cli("verify", str(every_format))
    report = capsys.readouterr().out
    assert code == 0, report
    assert f"{5 * 44} records in {5 * SHARDS} shards" in report  # the sample's 44 images, in each format


def test_a_rerun_keeps_every_shard_and_after_a_loss_writes_again_only_that_shard_in_every_format(sample,
                                                                                                  every_format,
                                                                                                  tmp_path):
    """A shard is kept only when its file in every format (and its DALI indexes) match the manifest, so one lost
    file of a shard in each format is that shard written again in every format, and nothing else."""
    from streamprep import convert

    out = tmp_path / "out"
    shutil.copytree(every_format, out)  # copy2: each file keeps its modification time
    first, before = every_file(out), identities(out)
    again = convert(options_for(sample, out))
    assert (again.shards_kept, again.shards_written) == (SHARDS, 0)
    shards = {name for name in first if registry.SHARD_FILE_NAME.match(name)}
    assert len(shards) == 5 * SHARDS + 2 * SHARDS and set(SHARD_FILES + SHARD_INDEXES) <= shards
    assert {name: same for name, same in identities(out).items() if name in shards} == {
        name: before[name] for name in shards}  # kept: not one written again
    for name in SHARD_FILES:
        (out / name).unlink()
    resumed = convert(options_for(sample, out))
    assert (resumed.shards_kept, resumed.shards_written) == (SHARDS - 1, 1)
    after = identities(out)
    assert {name for name in shards if after[name] != before[name]} == set(SHARD_FILES + SHARD_INDEXES)
    assert every_file(out) == first


# --------------------------------------------------------------------------------------------- the collision rule

def probe_format(**changes):
    """A format defined here: the classic's records in `train-00000-of-00004.probe` files, with `changes` to its
    entry (another format's folder, side file or file names)."""
    from streamprep.outputs.tfrecord import TFRecordFormat

    entry = {"name": "test-probe", "rank": 100, "shard_pattern": SHARD_STEM + r"\.probe",
             "file_name": lambda self, shard: f"{shard.name}.probe", **changes}
    return type("Probe", (TFRecordFormat,), entry)


@pytest.fixture
def register():
    """register(fmt): `fmt` in the registry for one test."""
    added = []

    def add(fmt):
        registry.register(fmt)
        added.append(fmt.name)
        return fmt

    yield add
    for name in added:
        registry.unregister(name)


@pytest.mark.parametrize("changes, formats, message", [
    ({"side_file_names": lambda self: ["_info.json"], "side_pattern": r"_info\.json"}, "webdataset",
     "--format webdataset and --format test-probe both write _info.json in --out"),
    ({"folders": {"mds": 2}, "shard_pattern": r"mds/(train|validation)-(\d{5})-of-(\d{5})\.probe",
      "file_name": lambda self, shard: f"mds/{shard.name}.probe"}, "mds",
     "--format mds and --format test-probe both write mds/ in --out"),
    ({"file_name": lambda self, shard: f"data/{shard.name}.probe",
      "shard_pattern": r"data/(train|validation)-(\d{5})-of-(\d{5})\.probe"}, "parquet",
     "--format parquet and --format test-probe both write data/ in --out"),
    ({"shard_pattern": SHARD_STEM + r"\.(?:probe|tar)"}, "webdataset",
     "--format test-probe would take validation-00000-of-00002.tar, a file --format webdataset writes, for one of "
     "its own"),
], ids=["a-side-file", "a-folder", "a-file-in-another-formats-folder", "a-pattern-taking-anothers-files"])
def test_two_formats_whose_files_could_collide_are_refused_naming_both_before_anything_is_read(
        sample, tmp_path, register, changes, formats, message):
    register(probe_format(**changes))
    out = tmp_path / "out"
    code, err = run_cli(*convert_args(sample, out, *SMALL_LAYOUT, "--format", f"{formats},test-probe"))
    assert code == 2
    assert err.strip().count("\n") == 0, err  # one line
    assert f"{message}; write them to two --out folders, in two conversions" in err
    assert not out.exists()


def test_a_format_defined_here_whose_files_are_its_own_is_written_beside_every_other(sample, tmp_path, register):
    register(probe_format())
    out = tmp_path / "out"
    code, err = run_cli(*convert_args(sample, out, *SMALL_LAYOUT, "--format", "tfrecord,webdataset,test-probe",
                                      "--quiet"))
    assert code == 0, err
    assert len(list(out.glob("*.probe"))) == SHARDS
    assert all((out / p.stem).read_bytes() == p.read_bytes() for p in out.glob("*.probe"))  # the classic's records
