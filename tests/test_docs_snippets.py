"""Every Python block of README.md and docs/*.md, run exactly as printed on real outputs of the bundled sample.

The blocks are read from the Markdown files themselves, never copied here. Each is written to a file and run
with this interpreter in a folder of its own where the paths it names exist, made by real `streamprep convert`
runs: `imagenet/` (conftest's `both`: TFRecord and WebDataset shards with DALI's indexes and timm's
`_info.json`), `tensorflow_datasets/` (`--format tfds`, TFRecord or ArrayRecord files), `sample-tfds/` (the
command README.md prints for it) and `downloads/` (the sample's training tar and bounding boxes, with a
validation tar holding all 50,000 images the shipped labels file lists, as the real download does). Every block
reads records and prints what it read; the test checks the printed line against the sample's own definition
(tests/fixtures/make_fixtures.py), so a block that reads nothing, or the wrong labels, fails.

A block that is not meant to run carries `<!-- not run: REASON -->` on the line before its fence (UNRUN lists,
with its reason, one block of a page this work does not edit). Any other Python block that no entry of SNIPPETS
runs fails `test_every_python_block_in_the_docs_is_run_here_or_marked`.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers import ROOT, SYNSETS, run_cli
from fixtures import builders, make_fixtures

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
NOT_RUN = re.compile(r"<!--\s*not run:\s*(?P<reason>\S.*?)\s*-->")
README_TFDS_CONFIG = "configs/sample-tfds.toml"
TIMEOUT = 300


@dataclass(frozen=True)
class Block:
    doc: str  # relative to the repository: "README.md", "docs/formats.md"
    line: int  # of the opening fence
    code: str
    not_run: str | None  # the reason a `<!-- not run: ... -->` line before it gives

    def __str__(self) -> str:
        return f"{self.doc}:{self.line}"


def fenced_blocks(path: Path) -> list[tuple[str, int, str, str]]:
    """(info string, line of the opening fence, code, the last non-blank line before the fence) of every fenced
    block of a Markdown file."""
    found = []
    info, start, body, before, previous = None, 0, [], "", ""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if info is None:
            if line.lstrip().startswith("```"):
                info, start, body, before = line.lstrip()[3:].strip(), number, [], previous
            elif line.strip():
                previous = line
        elif line.strip() == "```":
            found.append((info, start, "\n".join(body) + "\n", before))
            info, previous = None, line
        else:
            body.append(line)
    assert info is None, f"{path}: the block opened at line {start} is never closed"
    return found


def python_blocks() -> list[Block]:
    blocks = []
    for path in DOCS:
        for info, line, code, before in fenced_blocks(path):
            if info.split()[:1] in (["python"], ["py"], ["python3"], ["pycon"]):
                marker = NOT_RUN.fullmatch(before.strip())
                blocks.append(Block(path.relative_to(ROOT).as_posix(), line, code, marker and marker["reason"]))
    return blocks


# What a block that reads one epoch of the sample's training split prints: its images, classes and labels
# (0..999) as the fixture defines them, independently of streamprep. The TFDS-valid sample has the same training
# images as the sample, less the members no format converts.
def _epoch_line() -> str:
    classes = make_fixtures.tfds_train_classes()
    synsets = SYNSETS.read_text(encoding="utf-8").split()  # line k holds label k; TFDS's and timm's label is k - 1
    labels = [synsets.index(synset) for synset in classes]
    return (f"{sum(len(files) for files in classes.values())} images, {len(classes)} classes, "
            f"labels {min(labels)}..{max(labels)}")


EPOCH = _epoch_line()  # "31 images, 5 classes, labels 0..230"
TRAIN_IMAGES = int(EPOCH.split()[0])


@dataclass(frozen=True)
class Snippet:
    """How one Python block of the docs is run: which block (`doc`, and `key`, a string only it holds), the
    folders its working folder needs (its name for each -> the fixture that makes it), and what it prints."""

    doc: str
    key: str
    folders: dict[str, str]
    prints: str  # "epoch": the EPOCH line; otherwise a name checked in `check_output`

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.key}"


SNIPPETS = [
    Snippet("docs/verify.md", "xxhash.xxh3_128()", {"imagenet": "both"}, "manifest-digests"),
    Snippet("docs/datasets.md", "tfds.builder_from_directory(\"i21k-p/", {"i21k-p": "tfds_i21k_converted"}, "i21k-tfds"),
    Snippet("docs/equal-shards.md", "nodesplitter=wds.split_by_node", {"imagenet": "both"}, "epoch"),
    Snippet("docs/formats.md", "wids.ShardListDataset(", {"imagenet": "wids_converted"}, "epoch"),
    Snippet("docs/format-mds.md", "streaming.StreamingDataset", {"imagenet": "mds_converted"}, "epoch"),
    Snippet("docs/format-litdata.md", "transform=preprocess", {"imagenet": "litdata_converted"}, "epoch"),
    Snippet("docs/format-parquet.md", "load_dataset(\"imagenet\"", {"imagenet": "parquet_converted"}, "epoch"),
    Snippet("docs/formats.md", "wds.WebDataset(", {"imagenet": "both"}, "epoch"),
    Snippet("docs/formats.md", "fn.readers.tfrecord(", {"imagenet": "both"}, "epoch"),
    Snippet("docs/formats.md", "fn.readers.webdataset(", {"imagenet": "both"}, "epoch"),
    Snippet("docs/formats.md", "tfds.load(", {"tensorflow_datasets": "tfds_sample"}, "epoch"),
    Snippet("docs/formats.md", "tfds.data_source(", {"tensorflow_datasets": "tfds_sample_array_record"}, "epoch"),
    Snippet("README.md", 'data_dir="sample-tfds"', {"sample-tfds": "tfds_sample"}, "readme-tfds"),
    Snippet("README.md", "convert(Options(", {"downloads": "full_downloads"}, "readme-library"),
]

# Blocks that no test here runs, each with its reason, until the page says so itself with a
# `<!-- not run: ... -->` line. docs/distributed.md belongs to the Beam/Dask work (not edited from here).
UNRUN = {
    ("docs/distributed.md", "LocalCluster("): "a conversion launcher, not training-side code: a LocalCluster of 4 "
    "processes takes ~20 s to start and stop on this machine, over this module's time; tests/test_dask.py runs "
    "the same conversion on a LocalCluster",
}


def snippet_for(block: Block) -> list[Snippet]:
    return [s for s in SNIPPETS if s.doc == block.doc and s.key in block.code]


def unrun_reason(block: Block) -> str | None:
    return next((why for (doc, key), why in UNRUN.items() if doc == block.doc and key in block.code), None)


def test_every_python_block_in_the_docs_is_run_here_or_marked():
    blocks = python_blocks()
    assert len(blocks) >= len(SNIPPETS)
    problems = []
    for block in blocks:
        matches = snippet_for(block)
        if block.not_run is not None:
            if matches:
                problems.append(f"{block}: marked not run ({block.not_run}) but SNIPPETS runs it")
        elif len(matches) > 1:
            problems.append(f"{block}: matches several entries of SNIPPETS: {[s.id for s in matches]}")
        elif not matches and unrun_reason(block) is None:
            problems.append(f"{block}: a Python block no test runs; add it to SNIPPETS or mark it "
                            f"`<!-- not run: REASON -->`:\n{block.code}")
    for snippet in SNIPPETS:
        found = [b for b in blocks if b.not_run is None and snippet in snippet_for(b)]
        if len(found) != 1:
            problems.append(f"SNIPPETS entry {snippet.id} matches {len(found)} unmarked blocks, not 1")
    for (doc, key), why in UNRUN.items():
        found = [b for b in blocks if b.not_run is None and b.doc == doc and key in b.code]
        if len(found) != 1:
            problems.append(f"UNRUN entry {doc}:{key} matches {len(found)} unmarked blocks, not 1 (marked on the "
                            "page now? then drop the entry)")
    assert not problems, "\n".join(problems)


def test_the_block_parser_finds_python_blocks_and_their_not_run_markers(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Title\n```bash\n# not a heading\nls\n```\n\n<!-- not run: a fragment -->\n\n```python\nx = 1\n"
                    "```\ntext\n```python\nprint(2)\n```\n", encoding="utf-8")
    found = fenced_blocks(page)
    assert [(info, line, code) for info, line, code, _ in found] == [
        ("bash", 2, "# not a heading\nls\n"), ("python", 9, "x = 1\n"), ("python", 13, "print(2)\n")]
    assert [NOT_RUN.fullmatch(before.strip()) is not None for *_, before in found] == [False, True, False]


# --- the folders the blocks run in -------------------------------------------------------------------------------

def readme_tfds_command() -> str:
    """The one command line of README.md's shell blocks that converts with configs/sample-tfds.toml."""
    lines = [line.strip() for info, _, code, _ in fenced_blocks(ROOT / "README.md") if info == "bash"
             for line in code.splitlines() if README_TFDS_CONFIG in line]
    assert len(lines) == 1, lines
    return lines[0]


def shell_env() -> dict[str, str]:
    """This environment, with this interpreter's scripts (its `streamprep`) first on PATH."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


@pytest.fixture(scope="module")
def tfds_sample(tmp_path_factory) -> Path:
    """The output of README's own `streamprep convert --config configs/sample-tfds.toml --out sample-tfds`, run by
    the shell from a folder where `configs/` is the repository's (relative paths in a config are its folder's)."""
    folder = tmp_path_factory.mktemp("readme-tfds")
    (folder / "configs").symlink_to(ROOT / "configs", target_is_directory=True)
    command = readme_tfds_command()
    done = subprocess.run(command, shell=True, cwd=folder, env=shell_env(), capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert done.returncode == 0, f"{command}\n{done.stderr[-3000:]}"
    out = folder / "sample-tfds"
    assert (out / "imagenet2012" / "5.1.0" / "dataset_info.json").is_file(), sorted(folder.rglob("*"))
    return out


@pytest.fixture(scope="module")
def tfds_sample_array_record(tmp_path_factory) -> Path:
    """The TFDS-valid sample as `--format tfds --file-format array_record` (for tfds.data_source and Grain)."""
    out = tmp_path_factory.mktemp("tfds-array-record") / "tensorflow_datasets"
    code, err = run_cli("convert", "--config", ROOT / README_TFDS_CONFIG, "--out", out, "--file-format", "array_record",
                        "--quiet")
    assert code == 0, err
    return out


def write_validation_tar(path: Path, count: int, image: bytes) -> Path:
    """A validation tar of ILSVRC2012_val_00000001.JPEG ... `count`, every one the same small JPEG."""
    with open(path, "wb") as f, tarfile.open(fileobj=f, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for i in range(1, count + 1):
            info = tarfile.TarInfo(f"ILSVRC2012_val_{i:08d}.JPEG")
            info.size, info.mtime, info.mode = len(image), builders.MTIME, 0o644
            tar.addfile(info, io.BytesIO(image))
    return path


@pytest.fixture(scope="module")
def full_downloads(sample, tmp_path_factory) -> Path:
    """A downloads folder the shipped label files fit, as they fit the real downloads: the sample's training tar
    and bounding boxes, and a validation tar of every image the shipped validation labels file lists (50,000)."""
    folder = tmp_path_factory.mktemp("downloads")
    for role in ("train", "bbox"):
        shutil.copyfile(sample[role], folder / sample[role].name)
    shipped = make_fixtures.SHIPPED_VAL_LABELS.read_text(encoding="utf-8").split()
    write_validation_tar(folder / "ILSVRC2012_img_val.tar", len(shipped), builders.jpeg(8, 8, mode="L", seed=1))
    return folder


# --- running them ------------------------------------------------------------------------------------------------

def run_block(block: Block, folder: Path) -> str:
    """Run the block's code as a script of its own (named so that it shadows no module) in `folder`; its stdout."""
    script = folder / "docs_snippet.py"
    script.write_text(block.code, encoding="utf-8")
    done = subprocess.run([sys.executable, script.name], cwd=folder, env=shell_env(), capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert done.returncode == 0, f"{block} failed as printed:\n{block.code}\n--- stderr:\n{done.stderr[-4000:]}"
    return done.stdout


def check_output(snippet: Snippet, stdout: str, folder: Path) -> None:
    lines = stdout.strip().splitlines()
    assert lines, f"{snippet.id} printed nothing"
    last = lines[-1]
    if snippet.prints == "epoch":
        assert last == EPOCH
    elif snippet.prints == "readme-tfds":
        assert last == f"{TRAIN_IMAGES} training images"
    elif snippet.prints == "i21k-tfds":  # the train split of i21k_archive.py's archive, as its recipe gives it
        from i21k_archive import NAMES, expected, kept

        labels = [label for (split, _), (label, _) in expected().items() if split == "train"]
        first = kept()[0]
        assert last == (f"{len(labels)} images, {len(set(labels))} classes, labels {min(labels)}..{max(labels)}; "
                        f"label 0 is {first} ({NAMES[first]})")
    elif snippet.prints == "manifest-digests":  # every file `both`'s manifest lists: shards, indexes, side files
        manifest = json.loads((folder / "imagenet" / "manifest.json").read_text())
        listed = len(manifest["shards"]) + sum("index" in e for e in manifest["shards"]) + 1 + len(manifest["files"])
        assert last == f"{listed} files match manifest.json" and listed > len(manifest["shards"])
    elif snippet.prints == "readme-library":
        # print(summary.manifest.totals.splits["train"].images, summary.seconds); then verify("processed/").ok
        images, seconds = last.split()
        assert int(images) == TRAIN_IMAGES and float(seconds) > 0
        manifest = json.loads((folder / "processed" / "manifest.json").read_text())
        assert manifest["splits"]["train"]["images"] == TRAIN_IMAGES
        assert manifest["splits"]["validation"]["images"] == 50_000
        assert len(list((folder / "processed").glob("train-*-of-01024"))) == 1024
    else:
        raise AssertionError(f"{snippet.id}: no check for {snippet.prints!r}")


@pytest.mark.parametrize("snippet", SNIPPETS, ids=lambda s: s.id)
def test_every_python_block_in_the_docs_runs_as_printed_and_prints_what_it_read(snippet, request, tmp_path):
    (block,) = [b for b in python_blocks() if b.not_run is None and snippet in snippet_for(b)]
    for name, fixture in snippet.folders.items():
        (tmp_path / name).symlink_to(request.getfixturevalue(fixture), target_is_directory=True)
    check_output(snippet, run_block(block, tmp_path), tmp_path)


# --- the TFDS-valid sample ---------------------------------------------------------------------------------------

def test_the_committed_tfds_sample_equals_a_fresh_build(tmp_path):
    fresh = make_fixtures.build_tfds_sample(tmp_path)
    assert sorted(p.name for p in make_fixtures.TFDS_SAMPLE_DIR.iterdir()) == sorted(p.name for p in fresh.values())
    for role, path in fresh.items():
        committed = make_fixtures.TFDS_SAMPLE_DIR / path.name
        assert committed.read_bytes() == path.read_bytes(), f"rerun tests/fixtures/make_fixtures.py ({path.name})"


def test_readmes_tfds_sample_command_writes_what_tfds_build_writes_and_tfds_reads_every_record(tfds_sample, tmp_path):
    import tensorflow as tf
    import tensorflow_datasets as tfds

    version = tfds_sample / "imagenet2012" / "5.1.0"
    builder = tfds.builder_from_directory(str(version))
    counts = {"train": TRAIN_IMAGES, "validation": len(make_fixtures.tfds_val_members())}
    assert {split: builder.info.splits[split].num_examples for split in counts} == counts
    for split, count in counts.items():
        examples = list(tfds.load("imagenet2012", split=split, data_dir=str(tfds_sample), download=False))
        assert len(examples) == count
        assert all(e["image"].shape[2] == 3 and 0 <= int(e["label"]) < 1000 for e in examples)

    # TFDS itself, from the same folder: the same files, dataset_info.json, and record for record the same examples
    theirs = tfds.builder("imagenet2012", data_dir=str(tmp_path))
    theirs.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=str(make_fixtures.TFDS_SAMPLE_DIR)))
    built = tmp_path / "imagenet2012" / "5.1.0"
    assert sorted(p.name for p in built.iterdir()) == sorted(p.name for p in version.iterdir())
    assert json.loads((built / "dataset_info.json").read_text()) == json.loads((version / "dataset_info.json").read_text())

    def examples(path: Path) -> list[tuple]:
        found = []
        for raw in tf.data.TFRecordDataset(str(path)):
            feature = tf.train.Example.FromString(raw.numpy()).features.feature
            found.append((feature["file_name"].bytes_list.value[0], feature["label"].int64_list.value[0],
                          feature["image"].bytes_list.value[0]))
        return found

    shards = sorted(p.name for p in built.glob("imagenet2012-*.tfrecord-*"))
    assert len(shards) == 2
    for name in shards:
        assert examples(version / name) == examples(built / name), name
