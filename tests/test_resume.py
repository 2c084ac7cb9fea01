"""Resume: a conversion killed at any moment (kill -9) is finished by the same command, byte for byte;
the manifest lists what was written; the saved index spares a rerun the walk over unchanged downloads.

The kill tests read the downloads over HTTP (nginx) through a proxy that delays every request, so
that the run is slow enough to be killed at a chosen point, whatever the machine's speed.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import xxhash

from helpers import SMALL_LAYOUT, SYNSETS, killed_at, run_cli
from fixtures import builders
from servers import FaultProxy, nginx_server, require_nginx

SYNSET_LIST = SYNSETS.read_text().split()[:6]
LAYOUT = ("--train-shards", "12", "--validation-shards", "4", "--classic-threads", "4")
NAMES = ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar", "ILSVRC2012_bbox_train_v2.tar.gz")


def build(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    classes = {s: {f"{s}_{i}.JPEG": builders.jpeg(20 + i, 16 + k, seed=7 * k + i) for i in range(12, 0, -1)}
               for k, s in enumerate(SYNSET_LIST)}
    val_labels = [SYNSET_LIST[i % 6] for i in range(24)]
    val = {f"ILSVRC2012_val_{i:08d}.JPEG": builders.jpeg(18, 18, seed=500 + i) for i in range(24, 0, -1)}
    xmls = {f"{s}/{s}_{i}.xml": builders.voc_xml(f"{s}_{i}", 20 + i, 16, [(1, 1, 9, 9)])
            for s in SYNSET_LIST for i in (1, 2)}
    paths = {"train": builders.write_train_tar(folder / NAMES[0], classes),
             "val": builders.write_val_tar(folder / NAMES[1], val),
             "bbox": builders.write_bbox_targz(folder / NAMES[2], xmls),
             "val_labels": folder / "validation_labels.txt"}
    paths["val_labels"].write_text("".join(f"{s}\n" for s in val_labels))
    return paths


def args(inputs: dict[str, object], labels: Path, out: Path, *extra: str) -> list[str]:
    return ["convert", "--train", str(inputs["train"]), "--val", str(inputs["val"]), "--bbox", str(inputs["bbox"]),
            "--validation-labels-file", str(labels), "--out", str(out), *LAYOUT, *extra]


def results(out: Path) -> dict[str, bytes]:
    """Shards and bboxes.csv: what must be byte-identical to an uninterrupted run."""
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())
            if p.is_file() and not p.name.startswith(".") and p.name != "manifest.json"}


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def inodes(out: Path, names) -> dict[str, int]:
    return {n: (out / n).stat().st_ino for n in names}


@pytest.fixture(scope="module")
def downloads(tmp_path_factory) -> dict[str, Path]:
    return build(tmp_path_factory.mktemp("resume-dl"))


@pytest.fixture(scope="module")
def reference(downloads, tmp_path_factory) -> tuple[dict[str, bytes], dict]:
    """An uninterrupted run: its shards and bboxes.csv, and its manifest."""
    out = tmp_path_factory.mktemp("resume-ref") / "out"
    code, err = run_cli(*args(downloads, downloads["val_labels"], out, "--quiet"))
    assert code == 0, err
    return results(out), manifest(out)


# --------------------------------------------------------------------------------------------- the manifest

def test_manifest_lists_every_shard_with_its_count_size_and_digest(downloads, reference, tmp_path):
    files, m = reference
    assert m["format"] == "streamprep-manifest/1" and m["complete"] is True and m["checksum"] == "xxh3-128"
    listed = {s["name"]: s for s in m["shards"]}
    assert set(listed) == {n for n in files if n != "bboxes.csv"}
    assert len(listed) == 16
    for name, entry in listed.items():
        assert entry["bytes"] == len(files[name])
        assert entry["xxh3-128"] == xxhash.xxh3_128(files[name]).hexdigest()
    assert m["splits"]["train"]["images"] == sum(s["records"] for s in m["shards"] if s["split"] == "train") == 72
    assert m["splits"]["validation"]["images"] == 24
    assert m["splits"]["train"]["class_counts"] == {str(i): 12 for i in range(1, 7)}
    assert m["splits"]["train"]["boxes"] == 12
    assert m["bboxes_csv"]["xxh3-128"] == xxhash.xxh3_128(files["bboxes.csv"]).hexdigest()
    assert m["run"]["inputs"]["train"]["size"] == downloads["train"].stat().st_size
    assert m["run"]["inputs"]["train"]["mtime"] is not None


def test_manifest_leaves_storage_options_out_because_they_may_hold_credentials(downloads, tmp_path):
    out = tmp_path / "out"
    code, err = run_cli(*args(downloads, downloads["val_labels"], out, "--quiet",
                              "--storage-option", "s3.secret=hunter2"))
    assert code == 0, err
    assert "hunter2" not in (out / "manifest.json").read_text()


# --------------------------------------------------------------------------------------------- rerun, no kill

def test_rerun_of_a_finished_output_keeps_every_shard_and_reuses_the_index(downloads, reference, tmp_path):
    out = tmp_path / "out"
    assert run_cli(*args(downloads, downloads["val_labels"], out, "--quiet"))[0] == 0
    before = inodes(out, [s["name"] for s in reference[1]["shards"]])

    code, err = run_cli(*args(downloads, downloads["val_labels"], out))

    assert code == 0, err
    assert "index train: started" not in err and "bounding boxes: started" not in err
    assert "16 of 16 shards were already complete" in err
    assert inodes(out, before) == before
    assert results(out) == reference[0]


def _resave(path: Path, change) -> None:
    import numpy as np

    with np.load(path) as z:
        arrays = {name: z[name] for name in z.files}
    change(arrays)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


DAMAGE = {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[:100]),
    "empty": lambda p: p.write_bytes(b""),
    "one-byte-flipped": _flip,
    "labels-reversed-and-saved-again": lambda p: _resave(p, lambda a: a.update({"train.labels": a["train.labels"][::-1]})),
    "box-lookup-reversed-and-saved-again": lambda p: _resave(p, lambda a: a.update({"boxes.crcs": a["boxes.crcs"][::-1]})),
    "meta-not-an-object": lambda p: _resave(p, lambda a: a.update({"meta": np_bytes(b"[1, 2]")})),
    "a-directory": lambda p: (p.unlink(), p.mkdir()),
}


def np_bytes(data: bytes):
    import numpy as np

    return np.frombuffer(data, dtype=np.uint8)


@pytest.mark.parametrize("damage", DAMAGE, ids=DAMAGE)
def test_a_damaged_or_changed_saved_index_is_walked_again_and_gives_the_same_shards(downloads, reference, tmp_path,
                                                                                     damage):
    out = tmp_path / "out"
    assert run_cli(*args(downloads, downloads["val_labels"], out, "--quiet"))[0] == 0
    (index,) = (out / ".streamprep").glob("index-*.npz")
    DAMAGE[damage](index)
    (out / reference[1]["shards"][-1]["name"]).unlink()  # work for the rerun, which must not trust that index

    code, err = run_cli(*args(downloads, downloads["val_labels"], out))

    assert code == 0, err
    assert "index train: started" in err  # walked again, not read from the damaged file
    assert results(out) == reference[0]


def test_a_file_where_the_saved_index_folder_goes_is_a_one_line_error(downloads, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / ".streamprep").write_text("mine")
    code, err = run_cli(*args(downloads, downloads["val_labels"], out, "--quiet"))
    assert code == 2 and err.count("\n") == 1 and ".streamprep: is a file" in err, err
    assert (out / ".streamprep").read_text() == "mine"


def test_a_changed_download_is_refused_then_walked_again_with_overwrite_and_nothing_is_kept(downloads, reference,
                                                                                            tmp_path):
    out = tmp_path / "out"
    copies = {k: shutil.copy(p, tmp_path / Path(p).name) for k, p in downloads.items()}
    assert run_cli(*args(copies, downloads["val_labels"], out, "--quiet"))[0] == 0
    stamp = Path(copies["train"]).stat().st_mtime + 100
    os.utime(copies["train"], (stamp, stamp))
    before = results(out)

    code, err = run_cli(*args(copies, downloads["val_labels"], out))
    assert code == 2 and "other or changed downloads: train" in err and "--overwrite" in err, err
    assert results(out) == before

    code, err = run_cli(*args(copies, downloads["val_labels"], out, "--overwrite"))

    assert code == 0, err
    assert "index train: started" in err
    assert "already complete" not in err
    assert results(out) == reference[0]
    assert len(list((out / ".streamprep").glob("index-*.npz"))) == 1  # the stale index was removed


def test_a_damaged_finished_shard_is_written_again_and_the_others_are_kept(downloads, reference, tmp_path):
    out = tmp_path / "out"
    assert run_cli(*args(downloads, downloads["val_labels"], out, "--quiet"))[0] == 0
    names = [s["name"] for s in reference[1]["shards"]]
    damaged = "train-00003-of-00012"
    data = bytearray((out / damaged).read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, different content
    (out / damaged).write_bytes(bytes(data))
    before = inodes(out, names)

    code, err = run_cli(*args(downloads, downloads["val_labels"], out))

    assert code == 0, err
    assert "15 of 16 shards were already complete" in err
    after = inodes(out, names)
    assert after[damaged] != before[damaged]
    assert {n: i for n, i in after.items() if n != damaged} == {n: i for n, i in before.items() if n != damaged}
    assert results(out) == reference[0]


def test_temporary_files_left_by_a_killed_run_are_removed(downloads, reference, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    stale = [out / ".train-00001-of-00012.99999999-0123abcd.tmp", out / ".manifest.json.4242-deadbeef.tmp"]
    for path in stale:
        path.write_bytes(b"half a shard")
    unrelated = out / ".notes.txt"
    unrelated.write_text("mine")

    code, err = run_cli(*args(downloads, downloads["val_labels"], out, "--quiet"))

    assert code == 0, err
    assert not any(p.exists() for p in stale)
    assert unrelated.read_text() == "mine"
    assert results(out) == reference[0]


def test_an_incomplete_manifest_from_an_interrupted_run_is_completed(downloads, reference, tmp_path):
    """The state a kill leaves after some shards: some listed, some files missing, `complete` false."""
    out = tmp_path / "out"
    assert run_cli(*args(downloads, downloads["val_labels"], out, "--quiet"))[0] == 0
    m = manifest(out)
    listed = m["shards"][:5]
    for s in m["shards"][5:]:
        (out / s["name"]).unlink()
    m.update(complete=False, shards=listed)
    for key in ("splits", "bboxes_csv", "fixups", "skipped", "ignored"):
        m.pop(key)
    (out / "manifest.json").write_text(json.dumps(m))

    code, err = run_cli(*args(downloads, downloads["val_labels"], out))

    assert code == 0, err
    assert "5 of 16 shards were already complete" in err
    assert results(out) == reference[0]
    final = manifest(out)
    assert final["complete"] is True
    assert final["shards"] == reference[1]["shards"]


# --------------------------------------------------------------------------------------------- kill -9

@pytest.fixture(scope="module")
def slow_http(downloads, tmp_path_factory):
    """The downloads served by nginx behind a proxy that delays each request: (proxy, URLs)."""
    exe = require_nginx()
    www = tmp_path_factory.mktemp("resume-www")
    for key in ("train", "val", "bbox"):
        shutil.copyfile(downloads[key], www / downloads[key].name)
    with nginx_server(www, tmp_path_factory.mktemp("resume-nginx"), exe=exe) as base:
        with FaultProxy.to(base) as proxy:
            urls = {k: f"{proxy.url}/{downloads[k].name}" for k in ("train", "val", "bbox")}
            yield proxy, urls


def _listed(out: Path, split: str) -> int:
    try:
        m = json.loads((out / "manifest.json").read_text())
    except (FileNotFoundError, ValueError):
        return 0
    return sum(1 for s in m.get("shards", []) if s["split"] == split)


KILL_POINTS = {
    # name: (condition on (stderr lines, output folder), whether finished shards must have been kept)
    "while-indexing": (lambda lines, out: any(l.startswith("index validation: started") for l in lines), False),
    "while-writing-validation": (lambda lines, out: any(l.startswith("write validation: started") for l in lines)
                                 and any(out.glob(".validation-*.tmp")), False),
    "with-train-shards-listed-and-one-half-written": (
        lambda lines, out: _listed(out, "train") >= 2 and any(out.glob(".train-*.tmp")), True),
}


EVERY_FORMAT = ("--format", "tfrecord,webdataset", "--dali-index")


@pytest.fixture(scope="module")
def reference_every_format(downloads, tmp_path_factory) -> tuple[dict[str, bytes], dict]:
    """An uninterrupted run writing both formats and their DALI indexes."""
    out = tmp_path_factory.mktemp("resume-ref-formats") / "out"
    code, err = run_cli(*args(downloads, downloads["val_labels"], out, *EVERY_FORMAT, "--quiet"))
    assert code == 0, err
    return results(out), manifest(out)


def kill_and_rerun(urls, labels: Path, out: Path, proxy, point: str, extra: tuple[str, ...] = ()) -> tuple[dict, str]:
    """Run convert with one worker over the slow server, SIGKILL it at `point`, rerun the same command; the
    files that survived the kill (name -> inode) and the rerun's stderr."""
    condition, kept_expected = KILL_POINTS[point]
    command = [sys.executable, "-m", "streamprep", *args(urls, labels, out, "--workers", "1", *extra)]
    killed_at(command, lambda lines: condition(lines, out), proxy)
    listed = [n for s in manifest(out)["shards"] for n in (s["name"], *([s["index"]["name"]] if "index" in s else []))] \
        if (out / "manifest.json").exists() else []
    survivors = {n: (out / n).stat().st_ino for n in listed if (out / n).exists()}
    if kept_expected:
        assert survivors, "no finished shard was listed at the kill: the test did not test keeping"
    code, err = run_cli(*args(urls, labels, out, *extra))
    assert code == 0, err
    assert {n: (out / n).stat().st_ino for n in survivors} == survivors  # finished shards were kept, not rewritten
    return survivors, err


@pytest.mark.parametrize("point", sorted(KILL_POINTS), ids=sorted(KILL_POINTS))
def test_killed_run_is_finished_by_the_same_command_byte_for_byte(downloads, reference, slow_http, tmp_path, point):
    proxy, urls = slow_http
    out = tmp_path / "out"
    survivors, err = kill_and_rerun(urls, downloads["val_labels"], out, proxy, point)
    assert results(out) == reference[0]
    assert manifest(out)["complete"] is True
    assert manifest(out)["shards"] == reference[1]["shards"]
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    if KILL_POINTS[point][1]:
        assert f"{len(survivors)} of 16 shards were already complete" in err


def test_killed_run_writing_every_format_and_index_is_finished_byte_for_byte(downloads, reference_every_format,
                                                                          slow_http, tmp_path):
    proxy, urls = slow_http
    out = tmp_path / "out"
    kill_and_rerun(urls, downloads["val_labels"], out, proxy, "with-train-shards-listed-and-one-half-written",
                   EVERY_FORMAT)
    assert results(out) == reference_every_format[0]
    assert {n for n in results(out) if n.endswith(".idx")} and {n for n in results(out) if n.endswith(".tar")}
    assert manifest(out)["shards"] == reference_every_format[1]["shards"]
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    code, err = run_cli("verify", str(out))
    assert code == 0, err


def test_a_rerun_naming_the_downloads_by_relative_paths_still_keeps_everything(downloads, reference, tmp_path,
                                                                                 monkeypatch):
    out = tmp_path / "out"
    assert run_cli(*args(downloads, downloads["val_labels"], out, "--quiet"))[0] == 0
    monkeypatch.chdir(downloads["train"].parent)
    relative = {k: Path(p.name) for k, p in downloads.items()}

    code, err = run_cli(*args(relative, relative["val_labels"], out))

    assert code == 0, err
    assert "16 of 16 shards were already complete" in err and "reused the one saved" in err


def test_the_same_conversion_writes_the_same_manifest_byte_for_byte(downloads, tmp_path):
    out = tmp_path / "out"
    texts = []
    for workers in ("1", "3"):
        shutil.rmtree(out, ignore_errors=True)
        assert run_cli(*args(downloads, downloads["val_labels"], out, "--quiet", "--workers", workers))[0] == 0
        texts.append((out / "manifest.json").read_bytes())
    assert texts[0] == texts[1]


def test_another_conversion_into_the_same_out_is_refused_and_overwrite_removes_exactly_its_files(downloads, tmp_path):
    out = tmp_path / "out"
    assert run_cli(*args(downloads, downloads["val_labels"], out, *SMALL_LAYOUT, "--quiet"))[0] == 0
    (out / "notes.txt").write_text("mine")
    old = sorted(p.name for p in out.iterdir() if p.name.startswith(("train-", "validation-")))

    code, err = run_cli(*args(downloads, downloads["val_labels"], out, "--quiet"))  # the default 12/4 shards
    assert code == 2 and "holds the output of another conversion" in err and "shard counts" in err, err
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(("train-", "validation-"))) == old

    code, err = run_cli(*args(downloads, downloads["val_labels"], out, "--overwrite", "--quiet"))
    assert code == 0, err
    now = sorted(p.name for p in out.iterdir() if p.name.startswith(("train-", "validation-")))
    assert not set(old) & set(now) and len(now) == 16
    assert (out / "notes.txt").read_text() == "mine"  # not the old conversion's: kept
    assert run_cli("verify", out)[0] == 0


def test_shard_files_no_manifest_lists_are_refused(downloads, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "train-00000-of-01024").write_bytes(b"the classic's shard")
    code, err = run_cli(*args(downloads, downloads["val_labels"], out, "--quiet"))
    assert code == 2 and "no streamprep manifest lists" in err, err
    assert sorted(p.name for p in out.iterdir()) == ["train-00000-of-01024"]


def test_a_run_failing_on_its_input_leaves_no_empty_output_folder_behind(downloads, tmp_path):
    broken = {**downloads, "train": tmp_path / "train.tar"}
    data = Path(downloads["train"]).read_bytes()
    broken["train"].write_bytes(data[:len(data) // 2])  # found only while indexing, after --out was checked
    out = tmp_path / "new" / "out"
    code, err = run_cli(*args(broken, downloads["val_labels"], out, "--quiet"))
    assert code == 2 and "fetch it again" in err, err
    assert not out.exists()


@pytest.mark.parametrize("name", ["../precious.txt", "../dl/ILSVRC2012_img_val.tar", "", ".", ".streamprep",
                                  "train-00000-of-00004/../../x", "a\0b"])
def test_overwrite_never_removes_a_file_a_tampered_manifest_names_outside_the_output(downloads, tmp_path, name):
    out = tmp_path / "out"
    assert run_cli(*args(downloads, downloads["val_labels"], out, *SMALL_LAYOUT, "--quiet"))[0] == 0
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me")
    manifest_data = manifest(out)
    manifest_data["shards"][0]["name"] = name
    manifest_data["bboxes_csv"]["name"] = "../precious.txt"
    (out / "manifest.json").write_text(json.dumps(manifest_data))

    code, err = run_cli(*args(downloads, downloads["val_labels"], out, "--overwrite", "--quiet"))

    assert code == 2 and "unusable" in err and err.count("\n") == 1, err
    assert precious.read_text() == "keep me"


def test_a_link_at_the_saved_index_folder_is_not_followed_out_of_the_output(downloads, tmp_path):
    out, outside = tmp_path / "out", tmp_path / "outside"
    out.mkdir()
    outside.mkdir()
    (out / ".streamprep").symlink_to(outside)
    code, err = run_cli(*args(downloads, downloads["val_labels"], out, "--quiet"))
    assert code == 2 and "is a symbolic link" in err, err
    assert list(outside.iterdir()) == []
