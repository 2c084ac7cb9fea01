"""ImageNet-21k (`--dataset imagenet21k`): the archive of per-synset tars, or a folder of them, read in place and
split by ImageNet-21K-P's recipe, judged against Alibaba-MIIL's `processing_script.sh` run by bash on the files
tarfile extracts, and read back by webdataset, timm, pyarrow and TensorFlow."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from fixtures.builders import jpeg, tar_bytes
from helpers import DATA, result_files, run_cli, run_cli_out, run_python

SHIPPED = DATA / "imagenet21k"
SYNSETS = (SHIPPED / "imagenet21k_goog_synsets.txt").read_text().split()
LEMMAS = dict(line.split("\t", 1) for line in (DATA / "imagenet_metadata.txt").read_text().splitlines())
OVER, PER = 3, 2  # --keep-classes-over, --validation-per-class: the published 500 and 50, small
RECIPE_OPTIONS = ("--dataset", "imagenet21k", "--keep-classes-over", str(OVER), "--validation-per-class", str(PER),
                  "--train-shards", "3", "--validation-shards", "2", "--classic-threads", "1")
CORRUPT = b"not a JPEG at all, but named like one"

# processing_script.sh's two loops as printed there (its 500 and 50 as $OVER and $PER), run by bash in the C locale.
SCRIPT = r"""
export LC_ALL=C
ROOT=$1; BACKUP=$2; VAL_ROOT=$3; OVER=$4; PER=$5
for c in ${ROOT}/n*; do
    count=`ls $c/*.JPEG 2>/dev/null | wc -l`
    if [ "$count" -gt "$OVER" ]; then
        echo "keep $c, count = $count"
    else
        echo "remove $c, $count"
        mv $c ${BACKUP}/
    fi
done
for i in ${ROOT}/n*; do
    c=`basename $i`
    mkdir -p ${VAL_ROOT}/$c
    for j in `ls $i/*.JPEG | head -n $PER`; do
        mv $j ${VAL_ROOT}/$c/
    done
done
"""


def _classes() -> dict[str, dict[str, bytes]]:
    """Five per-synset tars with the awkward cases: a class at exactly the threshold (dropped) beside ones above it,
    members that are not `*.JPEG` (a README, a lower-case `.jpeg`, a hidden `.JPEG`, one in a subfolder), names whose
    byte order is not their natural order (`_10` before `_9`, `_B` before `_a`), a corrupt JPEG among the first."""
    a, b, c, d, e = SYNSETS[100], SYNSETS[7], SYNSETS[2000], SYNSETS[50], SYNSETS[3]

    def images(synset: str, suffixes: list[str], seed: int) -> dict[str, bytes]:
        return {f"{synset}_{s}.JPEG": jpeg(8 + k, 6 + k, seed=seed + k) for k, s in enumerate(suffixes)}

    return {
        a: {**images(a, ["1", "2", "3"], 0), "README.txt": b"text", f"{a}_4.jpeg": jpeg(8, 8, seed=90)},  # 3: dropped
        b: {**images(b, ["9", "10", "a", "B", "11"], 10), f".{b}_0.JPEG": jpeg(8, 8, seed=91),
            f"sub/{b}_0.JPEG": jpeg(8, 8, seed=92)},
        c: {f"{c}_0.JPEG": CORRUPT, **images(c, ["5", "6", "7"], 20)},  # 4 by name: kept, the corrupt one validation
        d: images(d, [str(k) for k in range(12)], 30),
        e: images(e, ["x"], 40),  # 1: dropped
    }


def _write_archive(path: Path, classes: dict[str, dict[str, bytes]]) -> Path:
    outer = {f"{synset}.tar": tar_bytes(files) for synset, files in classes.items()}
    outer["LICENSE"] = b"not a class tar"
    path.write_bytes(tar_bytes(outer))
    return path


def _write_folder(folder: Path, classes: dict[str, dict[str, bytes]]) -> Path:
    folder.mkdir()
    for synset, files in classes.items():
        (folder / f"{synset}.tar").write_bytes(tar_bytes(files))
    (folder / "notes.txt").write_bytes(b"not a class tar")
    return folder


def expected_by_the_script(archive: Path, work: Path, over: int = OVER, per: int = PER) -> dict:
    """The recipe as the script applies it to the extracted files: {(split, synset, file name): (label, bytes)},
    labels 0-based in sorted order of the class folders kept."""
    root, backup, val = work / "train", work / "small", work / "val"
    for folder in (root, backup, val):
        folder.mkdir(parents=True)
    with tarfile.open(archive) as tar:
        tar.extractall(root, filter="data")
    for inner in sorted(root.glob("*.tar")):  # `tar -xf {} -C $target_folder`, target_folder=${ext%.*}
        target = root / inner.name[:-len(".tar")]
        target.mkdir()
        with tarfile.open(inner) as tar:
            tar.extractall(target, filter="data")
        inner.unlink()
    subprocess.run(["bash", "-c", SCRIPT, "script", str(root), str(backup), str(val), str(over), str(per)],
                   check=True, capture_output=True)
    kept = sorted(p.name for p in root.iterdir() if p.is_dir())
    found = {}
    for split, base in (("train", root), ("validation", val)):
        for label, synset in enumerate(kept):
            for image in _listed(base / synset):
                found[(split, synset, image.name)] = (label, image.read_bytes())
    return found


def _listed(folder: Path) -> list[Path]:
    """The files `ls $c/*.JPEG` lists in a folder, as the script counts them (bash's glob: no hidden names)."""
    done = subprocess.run(["bash", "-c", 'export LC_ALL=C; ls "$1"/*.JPEG 2>/dev/null', "ls", str(folder)],
                          capture_output=True, text=True)
    return [Path(line) for line in done.stdout.splitlines()]


def read_webdataset(out: Path) -> dict:
    """Every WebDataset sample, by webdataset itself: {(split, synset, file name): (.cls, image bytes)}."""
    import webdataset as wds

    found = {}
    for split in ("train", "validation"):
        urls = sorted(str(p) for p in out.glob(f"{split}-*.tar"))
        for sample in wds.WebDataset(urls, shardshuffle=False, empty_check=False):
            meta = json.loads(sample["json"])
            assert int(sample["cls"]) == meta["cls"] == meta["label"] - 1 and meta["text"] == LEMMAS[meta["synset"]]
            key = (split, meta["synset"], meta["filename"])
            assert key not in found
            found[key] = (meta["cls"], sample["jpg"])
    return found


def convert(source: Path, out: Path, *extra: object) -> tuple[int, str]:
    return run_cli("convert", source, "--out", out, *RECIPE_OPTIONS, "--quiet", *extra)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """The archive and the folder of the same per-synset tars, the archive converted to three formats with
    --on-bad-image skip, and what the script makes of the archive."""
    base = tmp_path_factory.mktemp("i21k")
    classes = _classes()
    paths = {"archive": _write_archive(base / "fall11_whole.tar", classes),
             "folder": _write_folder(base / "synsets", classes), "out": base / "out"}
    code, err = convert(paths["archive"], paths["out"], "--format", "tfrecord,webdataset,parquet",
                        "--on-bad-image", "skip")
    assert code == 0, err
    paths["expected"] = expected_by_the_script(paths["archive"], base / "extracted")  # type: ignore[assignment]
    return paths


def test_the_shipped_21k_p_lists_are_sorted_and_hold_unique_synsets_of_fall11_each_with_a_name():
    miil = (SHIPPED / "imagenet21k_miil_synsets.txt").read_text().split()
    w21 = (SHIPPED / "imagenet21k_miil_w21_synsets.txt").read_text().split()
    sums = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in SHIPPED.iterdir()}

    assert sums == {  # as copied from the timm 1.0.31 wheel (docs/label-data.md)
        "imagenet21k_goog_synsets.txt": "66362bdedf36d933382edca5493fc562dcc17128ce36403c9e730a75f48cb2f2",
        "imagenet21k_miil_synsets.txt": "cd76d977daaa2f13a4a91fca0f53713f2f29675308d4ce0f0ee0e5b07a3164c6",
        "imagenet21k_miil_w21_synsets.txt": "f49dde3d69946b8635586432f34f35985f807d168286ce5fde746aac3a7d94c8"}

    assert len(miil) == len(set(miil)) == 11_221 and miil == sorted(miil)
    assert len(w21) == len(set(w21)) == 10_450 and w21 == sorted(w21) and set(w21) <= set(SYNSETS)  # winter21's
    assert set(miil) <= set(SYNSETS) and len(SYNSETS) == len(set(SYNSETS)) and set(SYNSETS) <= set(LEMMAS)


def test_the_archive_gives_the_images_labels_and_splits_of_processing_script_sh_byte_for_byte(built):
    expected, out = built["expected"], built["out"]
    manifest = json.loads((out / "manifest.json").read_text())
    skipped = [s["member"] for s in manifest["skipped"]]
    corrupt = [k for k, (_, data) in expected.items() if data == CORRUPT]

    assert len(corrupt) == 1 and corrupt[0][0] == "validation"  # it counted, and was among the first by name
    assert len(skipped) == 1 and skipped[0].endswith(f"!{corrupt[0][2]}")
    assert read_webdataset(out) == {k: v for k, v in expected.items() if k not in corrupt}
    kept = sorted({synset for _, synset, _ in expected})
    assert kept == sorted([SYNSETS[7], SYNSETS[2000], SYNSETS[50]])  # the classes of 3 and 1 images dropped
    assert {s: manifest["splits"][s]["images"] for s in ("train", "validation")} == {"train": 15, "validation": 5}


def test_the_members_left_out_are_reported_by_reason(built):
    ignored = json.loads((built["out"] / "manifest.json").read_text())["ignored"]
    examples = {reason: " ".join(v["examples"]) for reason, v in ignored.items()}

    assert ignored["not a *.JPEG file at the top of a class tar"]["count"] == 4  # README, .jpeg, hidden, subfolder
    assert "README.txt" in examples["not a *.JPEG file at the top of a class tar"]
    assert ignored["class tar of 3 or fewer *.JPEG files (--split-recipe 21k-p drops the class)"]["count"] == 2
    assert ignored["not a class tar (nXXXXXXXX.tar) in the training tar"]["examples"][0].endswith("!LICENSE")


def test_a_folder_of_the_per_synset_tars_gives_the_same_files_as_the_archive(built, tmp_path):
    code, err = convert(built["folder"], tmp_path / "out", "--format", "tfrecord,webdataset,parquet",
                        "--on-bad-image", "skip")

    assert code == 0, err
    mine, theirs = result_files(tmp_path / "out"), result_files(built["out"])
    assert mine.keys() == theirs.keys() and len(mine) > 10
    assert {k: v for k, v in mine.items() if k != "manifest.json"} == \
        {k: v for k, v in theirs.items() if k != "manifest.json"}


def test_a_folder_holding_the_archive_under_its_official_name_reads_the_archive(built, tmp_path):
    code, err = convert(built["archive"].parent, tmp_path / "out", "--format", "webdataset", "--on-bad-image", "skip")

    assert code == 0, err
    run = json.loads((tmp_path / "out" / "manifest.json").read_text())["run"]
    assert run["inputs"]["train"]["url"].endswith("/fall11_whole.tar")
    assert read_webdataset(tmp_path / "out") == read_webdataset(built["out"])


def test_a_corrupt_jpeg_stops_the_run_naming_it_unless_skipped(built, tmp_path):
    code, err = convert(built["archive"], tmp_path / "out", "--format", "webdataset")

    assert code != 0 and f"{SYNSETS[2000]}.tar!{SYNSETS[2000]}_0.JPEG: cannot read the image size" in err, err


def test_recipe_all_keeps_every_class_and_image_as_training(built, tmp_path):
    code, err = convert(built["archive"], tmp_path / "out", "--format", "webdataset", "--split-recipe", "all",
                        "--on-bad-image", "skip")

    assert code == 0, err
    found = read_webdataset(tmp_path / "out")
    every = expected_by_the_script(built["archive"], tmp_path / "x", over=-1, per=0)  # the script keeping all
    assert found == {k: v for k, v in every.items() if v[1] != CORRUPT}
    assert {split for split, _, _ in found} == {"train"} and len({s for _, s, _ in found}) == 5


def test_timm_pyarrow_and_tensorflow_read_the_labels_synsets_and_names(built):
    import pyarrow.parquet as pq

    out, kept = built["out"], sorted({synset for _, synset, _ in built["expected"]})
    info = json.loads((out / "_info.json").read_text())
    assert info["name"] == "imagenet21k" and info["splits"]["train"]["num_samples"] == 15
    # timm (PyTorch) in a process of its own: PyTorch loaded after TensorFlow in one process can crash it
    read = run_python("import json\nfrom timm.data import create_dataset\n"
                      f"ds = create_dataset('wds/i21k', root={str(out)!r}, split='train', is_training=False, "
                      "batch_size=1)\nprint(json.dumps(sorted(int(y) for _, y in ds)))")
    assert read.returncode == 0, read.stderr
    timm_labels = json.loads(read.stdout.splitlines()[-1])
    assert timm_labels == sorted(label for (split, _, _), (label, _) in built["expected"].items() if split == "train")

    table = pq.read_table(out / "data" / "train-00000-of-00003.parquet")
    names = json.loads(table.schema.metadata[b"huggingface"])["info"]["features"]["label"]["names"]
    assert names == [LEMMAS[s] for s in kept]

    import tensorflow as tf
    seen = set()
    for path in sorted(out.glob("train-0000?-of-00003")):
        for raw in tf.data.TFRecordDataset(str(path)):
            f = tf.train.Example.FromString(raw.numpy()).features.feature
            synset = f["image/class/synset"].bytes_list.value[0].decode()
            assert f["image/class/label"].int64_list.value[0] == kept.index(synset) + 1  # the classic's 1..N
            assert f["image/class/text"].bytes_list.value[0].decode() == LEMMAS[synset]
            seen.add(synset)
    assert seen == set(kept)


def test_a_lost_shard_is_written_again_byte_identical_and_verify_passes_with_the_classes_the_manifest_records(
        built, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(built["out"], out)
    before = result_files(out)
    (out / "train-00001-of-00003.tar").unlink()

    code, err = convert(built["archive"], out, "--format", "tfrecord,webdataset,parquet", "--on-bad-image", "skip")

    assert code == 0, err
    assert result_files(out) == before
    assert json.loads((out / "manifest.json").read_text())["num_classes"] == 3  # the classes the recipe kept
    code, report, err = run_cli_out("verify", out, "--quiet")  # no --num-classes: the manifest's 3, not 1000
    assert code == 0 and "image/class/label 1..3; .cls 0..2; label 0..2" in report, report + err
    code, report, _ = run_cli_out("verify", out, "--num-classes", "2", "--quiet")  # class 3's labels out of range
    assert code == 1 and "is out of range 1..2" in report, report


@pytest.mark.parametrize("argv, message", [
    (("--split-recipe", "all"), "split_recipe (--split-recipe all) is an option of --dataset imagenet21k; add "
                                "--dataset imagenet21k, or leave it out"),
    (("--dataset", "imagenet21k", "--format", "tfds,webdataset"), "tfds has an order and sharding of its own"),
    (("--dataset", "imagenet21k", "--val", "v.tar"), "val (--val) is not a download of --dataset imagenet21k"),
    (("--dataset", "imagenet21k", "--split-recipe", "22k"), "split_recipe (--split-recipe) must be one of 21k-p, all"),
])
def test_options_another_run_cannot_take_are_refused_in_one_line(tmp_path, argv, message):
    code, err = run_cli("convert", tmp_path, "--out", tmp_path / "out", *argv)

    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("fmt", ["webdataset", "tfds"])  # TFDS's member rules are ILSVRC2012's: not this walk's
def test_the_index_plan_saves_is_reused_by_convert_with_the_classes_it_kept(built, tmp_path, fmt):
    out = tmp_path / "out"
    code, err = run_cli("plan", built["folder"], "--out", out, *RECIPE_OPTIONS)
    assert code == 0, err

    code, err = run_cli("convert", built["folder"], "--out", out, *RECIPE_OPTIONS, "--format", fmt,
                        "--on-bad-image", "skip")

    assert code == 0 and "reused the one saved by an earlier run" in err, err
    if fmt == "webdataset":
        assert read_webdataset(out) == read_webdataset(built["out"])


def test_a_folder_of_more_per_synset_tars_than_a_process_may_open_converts(tmp_path):
    # fall11's 21,841 per-synset tars are more files than a process may have open (20,000 on the project's machine):
    # here 300 tars under a limit of 200 open files, each tar read by the walk and again by the shard writers.
    folder = tmp_path / "synsets"
    folder.mkdir()
    for k, synset in enumerate(SYNSETS[:300]):
        (folder / f"{synset}.tar").write_bytes(tar_bytes({f"{synset}_1.JPEG": jpeg(8, 6, seed=k)}))
    out = tmp_path / "out"
    code = ("import resource, sys\nresource.setrlimit(resource.RLIMIT_NOFILE, (200, 200))\n"
            "from streamprep.cli import main\n"
            f"sys.exit(main(['convert', {str(folder)!r}, '--out', {str(out)!r}, '--dataset', 'imagenet21k', "
            "'--split-recipe', 'all', '--train-shards', '2', '--validation-shards', '1', '--classic-threads', '1', "
            "'--format', 'webdataset', '--workers', '2', '--quiet']))")

    done = run_python(code)

    assert done.returncode == 0, done.stderr[-2000:]
    assert len(read_webdataset(out)) == 300
