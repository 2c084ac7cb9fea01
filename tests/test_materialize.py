"""--materialize: the classic folder layout, equal to tar extraction plus the validation re-organisation."""

from __future__ import annotations

import hashlib
import io
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from helpers import convert_args, is_result, run_cli
from fixtures import builders
from tiny import A, B, tiny_classes, write_tiny

LAYOUT = ("--train-shards", "8", "--validation-shards", "4", "--classic-threads", "2")


def tree(base: Path, skip=lambda rel: False, mtimes: bool = True) -> dict[str, tuple]:
    """relative path -> (size, sha256, mtime) for files (mtime left out if not `mtimes`), ('dir',) for folders."""
    out = {}
    for root, dirs, files in os.walk(base):
        for name in dirs + files:
            path = Path(root) / name
            rel = str(path.relative_to(base))
            if skip(rel):
                continue
            if path.is_dir():
                out[rel] = ("dir",)
            else:
                data = path.read_bytes()
                out[rel] = (len(data), hashlib.sha256(data).hexdigest(), *([int(path.stat().st_mtime)] if mtimes else []))
    return out


def manual_tree(classic_work: Path) -> dict[str, tuple]:
    """What the manual steps leave, without the per-class tars users delete and bboxes.csv's mtime."""
    def skip(rel):
        return rel.startswith("ILSVRC2012_img_train/") and rel.endswith(".tar") and rel.count("/") == 1
    found = tree(classic_work, skip)
    found["bboxes.csv"] = found["bboxes.csv"][:2]
    return found


def layout_tree(base: Path) -> dict[str, tuple]:
    found = tree(base, lambda rel: rel == "processed" or rel.startswith("processed/"))
    found["bboxes.csv"] = found["bboxes.csv"][:2]
    return found


@pytest.mark.parametrize("shards", [True, False], ids=["with-shards", "layout-only"])
def test_layout_equals_tar_extraction_plus_the_classic_reorganisation(sample, classic, tmp_path, shards):
    reference = classic(8, 4, 2)  # the reference run leaves the manual layout beside its output
    base = tmp_path / "base"
    extra = ("--materialize", base, *LAYOUT) if shards else ("--materialize", base, "--no-shards")
    argv = convert_args(sample, base / "processed", *extra, "--quiet")
    if not shards:
        argv = [a for a in argv if a not in ("--out", base / "processed")]
    code, err = run_cli(*argv)
    assert code == 0, err
    expected = manual_tree(reference.parent / "work")
    assert layout_tree(base) == expected
    assert sum(1 for v in expected.values() if v != ("dir",)) == 25 + 1 + 16 + 36
    assert (base / "processed").exists() == shards


def test_shards_written_with_the_layout_equal_a_shards_only_run(sample, tmp_path):
    both, alone = tmp_path / "both", tmp_path / "alone"
    assert run_cli(*convert_args(sample, both / "processed", "--materialize", both, *LAYOUT, "--quiet"))[0] == 0
    assert run_cli(*convert_args(sample, alone, *LAYOUT, "--quiet"))[0] == 0
    results = lambda rel: not is_result(rel.split("/")[0])  # noqa: E731 - the manifest names its own paths
    # shards get the time they were written: two runs may straddle a second
    assert tree(both / "processed", results, mtimes=False) == tree(alone, results, mtimes=False)


def test_summary_names_unlisted_validation_images_and_counts_files(sample, tmp_path):
    code, err = run_cli(*convert_args(sample, tmp_path / "p", "--materialize", tmp_path / "base", "--no-shards"))
    assert code == 0
    assert "1 validation image(s) not in the validation labels file" in err and "ILSVRC2012_val_00000015.JPEG" in err
    assert "train             36 files written" in err
    code, err = run_cli(*convert_args(sample, tmp_path / "p", "--materialize", tmp_path / "base", "--no-shards"))
    assert code == 0 and "train              0 files written (0.0 MB), 36 already complete" in err


def _tar(entries: list[tarfile.TarInfo], data: dict[str, bytes] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for info in entries:
            payload = (data or {}).get(info.name) if info.isreg() else None  # links and devices carry no data
            if payload is not None:
                info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload) if payload is not None else None)
    return buf.getvalue()


def _entry(name: str, type_=tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mtime = type_, linkname, 1_300_000_000
    return info


HOSTILE = {
    "absolute-path": lambda outside: _entry(str(outside / "escaped.JPEG")),
    "dotdot-path": lambda outside: _entry("../../escaped.JPEG"),
    "symlink-out": lambda outside: _entry("link.JPEG", tarfile.SYMTYPE, str(outside)),
    "hardlink-out": lambda outside: _entry("hard.JPEG", tarfile.LNKTYPE, "../../../escaped.JPEG"),
    "device": lambda outside: _entry("dev.JPEG", tarfile.CHRTYPE),
}
WHERE = ["train-inner", "train-outer", "validation", "bbox"]


@pytest.mark.parametrize("where", WHERE, ids=WHERE)
@pytest.mark.parametrize("kind", sorted(HOSTILE), ids=sorted(HOSTILE))
def test_hostile_members_are_refused_and_nothing_lands_outside_base(tmp_path, kind, where):
    sandbox = tmp_path / "sandbox"
    base = sandbox / "base"
    outside = tmp_path / "outside"
    hostile = HOSTILE[kind](outside)
    paths = write_tiny(tmp_path / "dl")
    payload = {hostile.name: b"\xff\xd8\xff evil"}
    if where == "train-inner":
        classes = tiny_classes()
        inner = _tar([_entry(n) for n in classes[B]] + [hostile], {**classes[B], **payload})
        paths["train"].write_bytes(builders.tar_bytes({f"{A}.tar": builders.tar_bytes(classes[A]), f"{B}.tar": inner}))
    elif where == "train-outer":
        classes = tiny_classes()
        members = {f"{A}.tar": builders.tar_bytes(classes[A]), f"{B}.tar": builders.tar_bytes(classes[B])}
        paths["train"].write_bytes(_tar([_entry(n) for n in members] + [hostile], {**members, **payload}))
    elif where == "validation":
        val = {f"ILSVRC2012_val_{i:08d}.JPEG": builders.jpeg(9, 9) for i in (1, 2, 3)}
        paths["val"].write_bytes(_tar([_entry(n) for n in val] + [hostile], {**val, **payload}))
    else:
        import gzip
        xml = {f"{A}/{A}_1.xml": builders.voc_xml("x", 10, 10, [(1, 1, 5, 5)])}
        paths["bbox"].write_bytes(gzip.compress(_tar([_entry(n) for n in xml] + [hostile], {**xml, **payload})))
    code, err = run_cli("convert", "--train", paths["train"], "--val", paths["val"], "--bbox", paths["bbox"],
                        "--validation-labels-file", paths["val_labels"], "--materialize", base, "--no-shards")
    assert code == 2, err
    assert "escaped" in err or "link" in err or "dev.JPEG" in err
    assert err.strip().splitlines()[-1].startswith("streamprep: error:")
    assert not outside.exists() and not (tmp_path / "escaped.JPEG").exists()
    assert not sandbox.exists() or sorted(p.name for p in sandbox.iterdir()) == ["base"]
    assert not any(p.is_symlink() for p in sandbox.rglob("*"))


def _big_downloads(folder: Path) -> dict[str, Path]:
    classes = {synset: {f"{synset}_{i}.JPEG": builders.jpeg(64, 48, seed=i) + os.urandom(20_000)
                        for i in range(700, 0, -1)} for synset in (A, B)}
    return write_tiny(folder, classes=classes)


def test_killed_materialization_resumes_to_the_uninterrupted_result(tmp_path):
    paths = _big_downloads(tmp_path / "dl")
    command = [sys.executable, "-m", "streamprep", "convert", "--train", paths["train"], "--val", paths["val"],
               "--bbox", paths["bbox"], "--validation-labels-file", paths["val_labels"], "--no-shards",
               "--workers", "1", "--quiet", "--materialize"]
    reference = tmp_path / "reference"
    subprocess.run([*map(str, command), str(reference)], check=True, timeout=300)

    base = tmp_path / "base"
    process = subprocess.Popen([*map(str, command), str(base)])
    train = base / "ILSVRC2012_img_train"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and sum(1 for _ in train.rglob("*.JPEG")) < 300:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    expected = tree(reference)
    partial = {rel: v for rel, v in tree(base).items() if "streamprep-tmp" not in rel}
    done = [rel for rel in partial if rel.endswith(".JPEG")]
    assert 300 <= len(done) < 1400, "the run must be killed part-way"
    for rel in done:  # nothing incomplete under a final name
        assert partial[rel] == expected[rel], rel
    inodes = {rel: (base / rel).stat().st_ino for rel in done}

    subprocess.run([*map(str, command), str(base)], check=True, timeout=300)
    expected["bboxes.csv"] = expected["bboxes.csv"][:2]
    resumed = tree(base)
    resumed["bboxes.csv"] = resumed["bboxes.csv"][:2]
    assert resumed == expected
    assert all((base / rel).stat().st_ino == inode for rel, inode in inodes.items()), "complete files were rewritten"


# --------------------------------------------------------------------------------------------- names from archives

def _materialize(paths: dict[str, Path], base: Path) -> tuple[int, str]:
    return run_cli("convert", "--train", paths["train"], "--val", paths["val"], "--bbox", paths["bbox"],
                   "--validation-labels-file", paths["val_labels"], "--materialize", base, "--no-shards", "--quiet")


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("name", ["...tar", "..tar", ".tar"], ids=["dots-3", "dots-2", "dot-1"])
def test_a_class_tar_whose_folder_would_be_dot_or_dotdot_is_refused_with_base_the_downloads_folder(tmp_path, name):
    """`...tar` gives the class folder `..`: with BASE = the downloads' folder it once overwrote the downloads."""
    downloads = tmp_path / "dl"
    paths = write_tiny(downloads)
    classes = tiny_classes()
    evil = {"ILSVRC2012_img_val.tar": b"overwritten", "validation_labels.txt": b"overwritten"}
    paths["train"].write_bytes(builders.tar_bytes({f"{A}.tar": builders.tar_bytes(classes[A]),
                                                   name: builders.tar_bytes(evil)}))
    before = _snapshot(downloads)

    code, err = _materialize(paths, downloads)

    assert code == 2 and "no file name" in err and name in err and err.count("\n") == 1, err
    after = {k: v for k, v in _snapshot(downloads).items() if k in before}
    assert after == before, "a download was overwritten"


@pytest.mark.parametrize("case", ["nul", "too-long", "file-then-folder", "folder-then-file"])
def test_names_no_file_system_can_hold_are_refused_in_one_line(tmp_path, case):
    classes = tiny_classes()
    if case == "nul":  # a PAX path record may hold a NUL, which the ustar name field cannot
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            data = builders.jpeg(9, 9)
            info = tarfile.TarInfo("placeholder.JPEG")
            info.size, info.pax_headers = len(data), {"path": "bad\0name.JPEG"}
            tar.addfile(info, io.BytesIO(data))
        paths = write_tiny(tmp_path / "dl", classes=classes)
        paths["train"].write_bytes(builders.tar_bytes({f"{A}.tar": buf.getvalue(),
                                                       f"{B}.tar": builders.tar_bytes(classes[B])}))
    elif case == "too-long":
        classes[A]["x" * 251 + ".JPEG"] = builders.jpeg(9, 9)  # 256 bytes
    elif case == "file-then-folder":
        classes[A] = {"x.JPEG": builders.jpeg(9, 9), "x.JPEG/y.JPEG": builders.jpeg(9, 9)}
    else:
        classes[A] = {"x.JPEG/y.JPEG": builders.jpeg(9, 9), "x.JPEG": builders.jpeg(9, 9)}
    if case != "nul":
        paths = write_tiny(tmp_path / "dl", classes=classes)
    code, err = _materialize(paths, tmp_path / "base")
    assert code == 2, err
    assert err.startswith("streamprep: error:") and err.count("\n") == 1, err
    assert "check free space" not in err
    assert {"nul": "NUL", "too-long": "over the 255 bytes", "file-then-folder": "a file and a folder of the same name",
            "folder-then-file": "a file and a folder of the same name"}[case] in err


def test_a_name_of_the_longest_length_a_file_system_allows_is_written(tmp_path):
    classes = tiny_classes()
    longest = "x" * 250 + ".JPEG"  # 255 bytes: the temporary name must fit too
    classes[A][longest] = builders.jpeg(9, 9)
    paths = write_tiny(tmp_path / "dl", classes=classes)
    code, err = _materialize(paths, tmp_path / "base")
    assert code == 0, err
    assert (tmp_path / "base" / "ILSVRC2012_img_train" / A / longest).read_bytes() == classes[A][longest]


@pytest.mark.parametrize("order", ["file-first", "class-tar-first"])
@pytest.mark.parametrize("loose", [f"{A}/{A}_1.JPEG", f"{A}/other.JPEG", A], ids=["same-name", "other-name", "file"])
def test_a_loose_file_of_the_training_tar_landing_in_a_class_folder_is_refused_whatever_the_order(tmp_path, order,
                                                                                                  loose):
    classes = tiny_classes()
    tars = {f"{s}.tar": builders.tar_bytes(files) for s, files in classes.items()}
    outer = {loose: b"\xff\xd8\xff loose", **tars} if order == "file-first" else {**tars, loose: b"\xff\xd8\xff loose"}
    paths = write_tiny(tmp_path / "dl", classes=classes)
    paths["train"].write_bytes(builders.tar_bytes(outer))
    code, err = _materialize(paths, tmp_path / "base")
    assert code == 2 and f"the folder class tar {A}.tar extracts into" in err, err


def test_a_loose_file_outside_every_class_folder_is_extracted_as_tar_would(tmp_path):
    classes = tiny_classes()
    outer = {"docs/README.txt": b"hello", **{f"{s}.tar": builders.tar_bytes(f) for s, f in classes.items()}}
    paths = write_tiny(tmp_path / "dl", classes=classes)
    paths["train"].write_bytes(builders.tar_bytes(outer))
    code, err = _materialize(paths, tmp_path / "base")
    assert code == 0, err
    assert (tmp_path / "base" / "ILSVRC2012_img_train" / "docs" / "README.txt").read_bytes() == b"hello"


def test_a_synset_of_the_validation_labels_file_is_checked_as_a_name_too(tmp_path):
    paths = write_tiny(tmp_path / "dl", val_labels=[A, B, A])
    paths["val_labels"].write_text(f"{A}\n..\n{A}\n")
    code, err = _materialize(paths, tmp_path / "base")
    assert code == 2 and "no file name" in err, err
    assert not (tmp_path / "ILSVRC2012_val_00000002.JPEG").exists()


def test_a_link_already_in_base_is_not_followed_out_of_it(tmp_path):
    paths = write_tiny(tmp_path / "dl")
    base, sentinel = tmp_path / "base", tmp_path / "sentinel"
    sentinel.mkdir()
    (base / "ILSVRC2012_img_train").mkdir(parents=True)
    (base / "ILSVRC2012_img_train" / A).symlink_to(sentinel)
    code, err = _materialize(paths, base)
    assert code == 2 and "is a symbolic link" in err and err.count("\n") == 1, err
    assert list(sentinel.iterdir()) == []


@pytest.mark.parametrize("where", ["class-tar", "validation", "bbox"])
def test_a_path_deeper_than_any_archive_nests_is_a_one_line_error(tmp_path, where):
    import gzip

    classes = tiny_classes()
    deep = "d/" * 1500
    paths = write_tiny(tmp_path / "dl", classes=classes)
    if where == "class-tar":
        classes[A][deep + "x.JPEG"] = builders.jpeg(9, 9)
        paths = write_tiny(tmp_path / "dl", classes=classes)
    elif where == "validation":
        val = {f"ILSVRC2012_val_{i:08d}.JPEG": builders.jpeg(9, 9) for i in (1, 2, 3)}
        paths["val"].write_bytes(builders.tar_bytes({**val, deep + "x": b"x"}))
    else:
        paths["bbox"].write_bytes(gzip.compress(builders.tar_bytes({
            f"{A}/{A}_1.xml": builders.voc_xml("x", 10, 10, [(1, 1, 5, 5)]), deep + "x.xml": b"<a/>"})))
    code, err = _materialize(paths, tmp_path / "base")
    assert code == 2 and "folders deep" in err and err.count("\n") == 1, err


def test_a_base_that_is_a_file_is_refused_as_the_user_s_choice_not_the_archive_s(tmp_path):
    paths = write_tiny(tmp_path / "dl")
    (tmp_path / "base").write_text("a file")
    code, err = _materialize(paths, tmp_path / "base")
    assert code == 2 and "is a file, not a folder" in err and "Repack" not in err, err
