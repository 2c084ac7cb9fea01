"""Bad input: a clear error naming archive and member, non-zero exit, inputs untouched, finished shards kept."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from classic_reference import read_examples
from helpers import SMALL_LAYOUT, run_cli
from streamprep.plan import classic_order
from fixtures import builders
from tiny import A, B, tiny_classes, write_tiny


def digests(paths: dict[str, Path]) -> dict[str, str]:
    return {k: hashlib.sha256(p.read_bytes()).hexdigest() for k, p in paths.items()}


def convert(paths: dict[str, Path], out: Path, *extra: str) -> tuple[int, str]:
    """`convert --quiet` at the small layout; a layout in `extra` comes later on the command line, so it wins."""
    return run_cli("convert", "--train", paths["train"], "--val", paths["val"], "--bbox", paths["bbox"],
                   "--validation-labels-file", paths["val_labels"], "--out", out, "--quiet", *SMALL_LAYOUT, *extra)


def leftovers(out: Path) -> list[str]:
    """Files in the output that are not complete results (temporary names), anywhere below it."""
    return sorted(str(p.relative_to(out)) for p in out.rglob(".*.tmp")) if out.exists() else []


def truncate(path: Path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def damaged_jpeg(folder, damage):
    classes = tiny_classes()
    classes[A][f"{A}_3.JPEG"] = damage(classes[A][f"{A}_3.JPEG"])
    return write_tiny(folder, classes=classes)


def frame_of(data: bytes, height: int, width: int) -> bytes:
    i = data.find(b"\xff\xc0")
    return data[:i + 5] + height.to_bytes(2, "big") + width.to_bytes(2, "big") + data[i + 9:]


def corrupt_class(paths, folder):
    classes = tiny_classes()
    classes[B][f"{B}_2.JPEG"] = b"this is not an image"
    return write_tiny(folder, classes=classes)


def duplicate_member(paths, folder):
    classes = tiny_classes()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in [*classes[B].items(), (f"{B}_1.JPEG", builders.jpeg(8, 8))]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    paths["train"].write_bytes(builders.tar_bytes({f"{A}.tar": builders.tar_bytes(classes[A]), f"{B}.tar": buf.getvalue()}))
    return paths


def cut_inside(member: str):
    """Truncate the training tar in the middle of one class tar's data."""
    def damage(paths, folder):
        with tarfile.open(paths["train"]) as tar:
            info = tar.getmember(member)
        truncate(paths["train"], info.offset_data + info.size // 2)
        return paths
    return damage


def empty_tar(paths, folder, key):
    paths[key].write_bytes(builders.tar_bytes({}))
    return paths


def swapped(paths, folder, key, other):
    """`key` replaced by a copy of the other image archive (each under its official name)."""
    paths[key].write_bytes(paths[other].read_bytes())
    return paths


def truncated_jpeg_header(paths, folder):
    classes = tiny_classes()
    classes[A][f"{A}_3.JPEG"] = classes[A][f"{A}_3.JPEG"][:40]  # SOI and the start of APP0, no frame header
    return write_tiny(folder, classes=classes)


BILLION_LAUGHS = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
                  + b"".join(b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
                             for i in range(1, 10))
                  + b']><annotation><size><width>&lol9;</width></size></annotation>')
EXTERNAL_ENTITY = (b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY ext SYSTEM "http://127.0.0.1:PORT/secret">]>'
                   b"<annotation><filename>&ext;</filename></annotation>")


CASES = {
    "truncated-outer-tar": (cut_inside(f"{B}.tar"), ["ILSVRC2012_img_train.tar", f"{B}.tar", "truncated", "fetch it again"]),
    "truncated-inside-first-class": (cut_inside(f"{A}.tar"), ["ILSVRC2012_img_train.tar", f"{A}.tar", "truncated"]),
    "bbox-not-gzip": (lambda p, f: (p["bbox"].write_bytes(b"plain text"), p)[1],
                      ["ILSVRC2012_bbox_train_v2.tar.gz", "not a gzip file"]),
    "bbox-gzip-cut-short": (lambda p, f: (truncate(p["bbox"], 60), p)[1],
                            ["ILSVRC2012_bbox_train_v2.tar.gz", "fetch it again"]),
    "malformed-xml": (lambda p, f: write_tiny(f, xmls={f"{A}/{A}_1.xml": b"<annotation><size>"}),
                      [f"{A}/{A}_1.xml", "not well-formed XML"]),
    "xml-with-entities": (lambda p, f: write_tiny(f, xmls={f"{A}/{A}_1.xml": b'<!DOCTYPE a [<!ENTITY x "1">]><a>&x;</a>'}),
                          [f"{A}/{A}_1.xml", "entities"]),
    "listed-validation-image-missing": (lambda p, f: write_tiny(f, val_labels=[A, B, A, B], val={
        f"ILSVRC2012_val_{i:08d}.JPEG": builders.jpeg(9, 9) for i in (3, 1, 2, 5)}),
                                        ["ILSVRC2012_val_00000004.JPEG", "--validation-labels-file"]),
    "duplicate-member": (duplicate_member, [f"{B}.tar", f"{B}_1.JPEG", "twice"]),
    "not-a-jpeg": (corrupt_class, [f"ILSVRC2012_img_train.tar!{B}.tar!{B}_2.JPEG", "not a JPEG"]),
    "unreadable-jpeg-header": (truncated_jpeg_header, [f"ILSVRC2012_img_train.tar!{A}.tar!{A}_3.JPEG",
                                                       "cannot read the image size"]),
    "jpeg-cut-short": (lambda p, f: damaged_jpeg(f, lambda d: d[:len(d) * 2 // 3]),
                       [f"ILSVRC2012_img_train.tar!{A}.tar!{A}_3.JPEG", "would refuse", "cut short"]),
    "jpeg-frame-of-65535x65535": (lambda p, f: damaged_jpeg(f, lambda d: frame_of(d, 65535, 65535)),
                                  [f"ILSVRC2012_img_train.tar!{A}.tar!{A}_3.JPEG", "would refuse", "65535x65535"]),
    "xml-billion-laughs": (lambda p, f: write_tiny(f, xmls={f"{A}/{A}_1.xml": BILLION_LAUGHS}),
                           [f"{A}/{A}_1.xml", "fix or remove this XML file"]),
    "xml-external-entity": (lambda p, f: write_tiny(f, xmls={f"{A}/{A}_1.xml": EXTERNAL_ENTITY.replace(b"PORT", b"9")}),
                            [f"{A}/{A}_1.xml", "entities"]),
    "validation-tar-as-training-tar": (lambda p, f: swapped(p, f, "train", "val"),
                                       ["ILSVRC2012_img_train.tar", "this is the validation tar", "--train"]),
    "training-tar-as-validation-tar": (lambda p, f: swapped(p, f, "val", "train"),
                                       ["ILSVRC2012_img_val.tar", "looks like the training tar", "--val"]),
    "empty-training-tar": (lambda p, f: empty_tar(p, f, "train"), ["ILSVRC2012_img_train.tar", "empty"]),
    "empty-validation-tar": (lambda p, f: empty_tar(p, f, "val"), ["ILSVRC2012_img_val.tar", "no validation image"]),
    "empty-bbox-archive": (lambda p, f: (p["bbox"].write_bytes(__import__("gzip").compress(builders.tar_bytes({}))), p)[1],
                           ["ILSVRC2012_bbox_train_v2.tar.gz", "empty"]),
}


@pytest.mark.parametrize("case", sorted(CASES), ids=sorted(CASES))
def test_bad_input_is_a_clear_error_and_loses_nothing(tmp_path, case):
    damage, expected = CASES[case]
    paths = damage(write_tiny(tmp_path / "dl"), tmp_path / "dl")
    before = digests(paths)
    code, err = convert(paths, tmp_path / "out")
    assert code == 2
    assert err.startswith("streamprep: error:") and err.count("\n") == 1
    for text in expected:
        assert text in err
    assert digests(paths) == before
    assert leftovers(tmp_path / "out") == []


def test_a_bad_image_keeps_the_shards_finished_before_it(tmp_path):
    classes = tiny_classes(images_per_class=6)
    names = sorted(classes[A]) + sorted(classes[B])  # the classic list order
    order = classic_order(len(names))
    bad_shard = 8
    bad = names[order[bad_shard]]  # one image a shard: this one lands in shard 8 of 12
    classes[bad.split("_")[0]][bad] = b"\x89PNG\r\n\x1a\n not really"
    paths = write_tiny(tmp_path / "dl", classes=classes)
    code, err = convert(paths, tmp_path / "out", "--train-shards", "12", "--validation-shards", "1",
                        "--classic-threads", "1", "--workers", "1")
    assert code == 2 and f".tar!{bad}: cannot read the image size (not a JPEG: a PNG)" in err
    out = tmp_path / "out"
    written = sorted(p.name for p in out.iterdir() if p.name.startswith("train-"))
    assert written == [f"train-{k:05d}-of-00012" for k in range(bad_shard)]
    assert all(len(read_examples(out / name)) == 1 for name in written)
    assert leftovers(out) == []


def test_same_file_as_train_and_val_is_refused(tmp_path):
    paths = write_tiny(tmp_path / "dl")
    paths["val"] = paths["train"]
    code, err = convert(paths, tmp_path / "out")
    assert code == 2 and "same file" in err


def test_unwritable_output_is_an_output_error(tmp_path):
    paths = write_tiny(tmp_path / "dl")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, err = convert(paths, blocker / "out")
    assert code == 2 and "choose a writable --out" in err


def test_missing_archive_is_named(tmp_path):
    paths = write_tiny(tmp_path / "dl")
    paths["bbox"].unlink()
    code, err = convert({**paths}, tmp_path / "out")
    assert code == 2 and "ILSVRC2012_bbox_train_v2.tar.gz: not found" in err


def test_ctrl_c_stops_the_run_promptly_and_leaves_only_complete_shards(tmp_path):
    """The downloads are read over HTTP through a proxy that delays every request by 0.2 s, so that writing the 200
    shards takes about 40 s whatever the machine's speed or load: the Ctrl-C always lands mid-run."""
    import os
    import shutil
    import signal
    import subprocess
    import sys
    import time

    from servers import FaultProxy, nginx_server, require_nginx

    classes = {synset: {f"{synset}_{i}.JPEG": builders.jpeg(32, 24, seed=i) + os.urandom(20_000)
                        for i in range(400, 0, -1)} for synset in (A, B)}
    paths = write_tiny(tmp_path / "dl", classes=classes)
    www = tmp_path / "www"
    www.mkdir()
    for key in ("train", "val", "bbox"):
        shutil.copyfile(paths[key], www / paths[key].name)
    out = tmp_path / "out"
    with nginx_server(www, tmp_path / "nginx", exe=require_nginx()) as base, FaultProxy.to(base) as proxy:
        proxy.delay = 0.2  # from the start: indexing takes a few round trips, writing one a shard
        urls = {k: f"{proxy.url}/{paths[k].name}" for k in ("train", "val", "bbox")}
        command = [sys.executable, "-m", "streamprep", "convert", "--train", urls["train"], "--val", urls["val"],
                   "--bbox", urls["bbox"], "--validation-labels-file", paths["val_labels"], "--out", out,
                   "--train-shards", "200", "--validation-shards", "1", "--classic-threads", "1", "--workers", "1"]
        # Ctrl-C's default action restored in the child: a shell starting these tests in the background hands them
        # SIGINT ignored, and Python then installs no KeyboardInterrupt handler
        process = subprocess.Popen([str(c) for c in command], stderr=subprocess.PIPE, text=True,
                                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (out.exists() and any(out.glob("train-*"))):
            time.sleep(0.005)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "interrupted" in err
    written = sorted(p.name for p in out.glob("train-*"))
    assert 1 <= len(written) < 200, "the run must stop, not write every queued shard"
    for name in written:
        assert len(read_examples(out / name)) == 4  # 800 images in 200 shards: each complete
    assert leftovers(out) == []


# --------------------------------------------------------------------------------------------- skip policies

def _manifest(out: Path) -> dict:
    import json
    return json.loads((out / "manifest.json").read_text())


def test_on_bad_image_skip_leaves_the_image_out_lists_it_and_writes_the_rest(tmp_path):
    paths = corrupt_class(None, tmp_path / "dl")
    out = tmp_path / "out"
    code, err = run_cli("convert", "--train", paths["train"], "--val", paths["val"], "--bbox", paths["bbox"],
                        "--validation-labels-file", paths["val_labels"], "--out", out, "--on-bad-image", "skip",
                        *SMALL_LAYOUT)
    assert code == 0, err
    bad = f"ILSVRC2012_img_train.tar!{B}.tar!{B}_2.JPEG"
    assert "skipped 1 bad input file(s)" in err and bad in err
    m = _manifest(out)
    assert [s["member"].endswith(bad) for s in m["skipped"]] == [True]
    assert "not a JPEG" in m["skipped"][0]["reason"]
    assert m["splits"]["train"]["images"] == 7
    assert m["splits"]["train"]["class_counts"] == {"1": 4, "2": 3}
    names = [r.features.feature["image/filename"].bytes_list.value[0].decode()
             for shard in sorted(out.glob("train-*")) for r in read_examples(shard)]
    assert sorted(names) == sorted(n for c in tiny_classes().values() for n in c if n != f"{B}_2.JPEG")


def test_on_bad_xml_skip_leaves_the_file_out_of_bboxes_csv_and_lists_it(tmp_path):
    good = builders.voc_xml(f"{B}_1", 17, 12, [(2, 2, 9, 9)])
    paths = write_tiny(tmp_path / "dl", xmls={f"{A}/{A}_1.xml": b"<annotation><size>", f"{B}/{B}_1.xml": good})
    out = tmp_path / "out"
    code, err = run_cli("convert", "--train", paths["train"], "--val", paths["val"], "--bbox", paths["bbox"],
                        "--validation-labels-file", paths["val_labels"], "--out", out, "--on-bad-xml", "skip",
                        *SMALL_LAYOUT)
    assert code == 0, err
    assert f"{A}/{A}_1.xml" in err
    assert (out / "bboxes.csv").read_text().splitlines() == [f"{B}_1.JPEG,0.1176,0.1667,0.5294,0.7500"]
    assert [s["member"].rsplit("!", 1)[1] for s in _manifest(out)["skipped"]] == [f"{A}/{A}_1.xml"]


# --------------------------------------------------------------------------------------------- hostile XML

def test_xml_external_entities_fetch_nothing(tmp_path):
    from servers import connection_recorder

    with connection_recorder() as (port, connections):
        xml = EXTERNAL_ENTITY.replace(b"PORT", str(port).encode())
        parameter = (b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY %% p SYSTEM "http://127.0.0.1:%d/dtd"> %%p;]>'
                     b"<annotation/>" % port)
        for i, data in enumerate((xml, parameter)):
            paths = write_tiny(tmp_path / f"dl{i}", xmls={f"{A}/{A}_1.xml": data})
            code, err = convert(paths, tmp_path / f"out{i}")
            assert code == 2 and f"{A}/{A}_1.xml" in err, err
    assert connections == [], "parsing the XML opened a connection"


def test_billion_laughs_does_not_blow_up_memory(tmp_path):
    """Peak memory of a run over the billion-laughs XML stays that of a run over a plain one (subprocesses)."""
    import subprocess
    import sys

    def peak_rss_kb(xml: bytes, name: str) -> tuple[int, str]:
        paths = write_tiny(tmp_path / name, xmls={f"{A}/{A}_1.xml": xml})
        code = ("import resource, sys; from streamprep.cli import main; rc = main(sys.argv[1:]); "
                "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(rc)")
        p = subprocess.run([sys.executable, "-c", code, "convert", "--train", str(paths["train"]), "--val",
                            str(paths["val"]), "--bbox", str(paths["bbox"]), "--validation-labels-file",
                            str(paths["val_labels"]), "--out", str(tmp_path / f"out-{name}"), "--quiet", *SMALL_LAYOUT],
                           capture_output=True, text=True, timeout=120)
        return int(p.stdout.split()[-1]), p.stderr

    plain, _ = peak_rss_kb(builders.voc_xml(f"{A}_1", 17, 12, [(1, 1, 10, 10)]), "plain")
    laughs, err = peak_rss_kb(BILLION_LAUGHS, "laughs")
    assert f"{A}/{A}_1.xml" in err and "fix or remove this XML file" in err
    assert laughs < plain + 50_000, f"peak RSS {laughs} kB against {plain} kB for a plain XML"


# --------------------------------------------------------------------------------------------- labels file length

def test_validation_labels_far_shorter_than_the_archive_warn_and_leave_the_rest_out_as_the_classic(tmp_path):
    paths = write_tiny(tmp_path / "dl", val_labels=[A], val={
        f"ILSVRC2012_val_{i:08d}.JPEG": builders.jpeg(9, 9, seed=i) for i in (3, 1, 2)})
    out = tmp_path / "out"
    code, err = run_cli("convert", "--train", paths["train"], "--val", paths["val"], "--bbox", paths["bbox"],
                        "--validation-labels-file", paths["val_labels"], "--out", out, *SMALL_LAYOUT)
    assert code == 0, err
    assert "warning" in err and "ILSVRC2012_val_00000002.JPEG" in err and "which lists 1" in err
    assert _manifest(out)["splits"]["validation"]["images"] == 1


def test_a_few_unlisted_validation_images_are_left_out_quietly_and_counted_in_the_summary(tmp_path):
    """As the classic leaves them: the bundled sample's first run shows success, not a warning."""
    paths = write_tiny(tmp_path / "dl", val_labels=[A, B], val={
        f"ILSVRC2012_val_{i:08d}.JPEG": builders.jpeg(9, 9, seed=i) for i in (3, 1, 2)})
    out = tmp_path / "out"
    code, err = run_cli("convert", "--train", paths["train"], "--val", paths["val"], "--bbox", paths["bbox"],
                        "--validation-labels-file", paths["val_labels"], "--out", out, *SMALL_LAYOUT)
    assert code == 0 and "warning" not in err, err
    assert "1 validation member not listed in the validation labels file" in err
    assert _manifest(out)["splits"]["validation"]["images"] == 2


# --------------------------------------------------------------------------------------------- a full disk

@pytest.fixture
def small_disk(tmp_path):
    """A 64 KB tmpfs mounted for the test (needs root; CI runs as root, elsewhere the test is skipped)."""
    import os
    import subprocess

    mount = tmp_path / "small"
    mount.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True, text=True)
    if p.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"cannot mount a small tmpfs under CI: {p.stderr.strip()}")
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {p.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _big_images(tmp_path):
    classes = tiny_classes(images_per_class=12)
    for synset in classes:  # about 6 KB of incompressible data per image: the disk fills after a few shards
        classes[synset] = {n: d + bytes(__import__("random").Random(n).randbytes(6000)) for n, d in classes[synset].items()}
    return write_tiny(tmp_path / "dl", classes=classes)


def test_a_run_that_cannot_fit_stops_before_writing_and_gives_both_numbers(tmp_path, small_disk):
    paths = _big_images(tmp_path)
    out = small_disk / "out"
    code, err = convert(paths, out, "--train-shards", "12", "--validation-shards", "1", "--classic-threads", "1")
    assert code == 2 and "may take up to" in err and "free" in err and "--no-space-check" in err, err
    assert not out.exists() or not any(out.glob("train-*"))


def test_a_full_disk_stops_the_run_clearly_and_keeps_only_complete_shards(tmp_path, small_disk):
    paths = _big_images(tmp_path)
    out = small_disk / "out"
    code, err = convert(paths, out, "--train-shards", "12", "--validation-shards", "1", "--classic-threads", "1",
                        "--workers", "1", "--no-space-check")  # the space check would stop it before it fills
    assert code == 2, err
    assert err.startswith("streamprep: error:") and "No space left" in err and "check free space" in err
    written = sorted(p.name for p in out.glob("train-*"))
    assert written, "no shard was finished before the disk filled: the test did not test keeping them"
    assert len(written) < 12
    for name in written:
        assert len(read_examples(out / name)) == 2
    assert leftovers(out) == []


SPARSE_FORMATS = [("--format=gnu",), ("--format=posix", "--sparse-version=0.0"),
                  ("--format=posix", "--sparse-version=0.1"), ("--format=posix", "--sparse-version=1.0")]


def sparse_tar(folder: Path, name: str, data: bytes, options: tuple[str, ...]) -> bytes:
    """A tar holding `name` as GNU tar --sparse writes it: `data` followed by a 1 MiB hole."""
    import shutil
    import subprocess

    if shutil.which("tar") is None:
        pytest.skip("GNU tar is needed to write sparse members")
    work = folder / f"sparse-{len(list(folder.glob('sparse-*')))}"
    work.mkdir(parents=True)
    with open(work / name, "wb") as f:
        f.write(data)
        f.truncate(len(data) + (1 << 20))  # a trailing hole
    subprocess.run(["tar", "--sparse", *options, "-cf", str(work / "out.tar"), "-C", str(work), name], check=True)
    return (work / "out.tar").read_bytes()


@pytest.mark.parametrize("options", SPARSE_FORMATS, ids=["gnu", "pax-0.0", "pax-0.1", "pax-1.0"])
@pytest.mark.parametrize("where", ["class-tar", "validation-tar"])
def test_a_sparse_member_is_refused_never_read_with_its_holes_left_out(tmp_path, options, where):
    from tiny import A, tiny_classes

    image = builders.jpeg(20, 20, seed=3)
    inner = sparse_tar(tmp_path, f"{A}_9.JPEG" if where == "class-tar" else "ILSVRC2012_val_00000001.JPEG",
                       image, options)
    classes = tiny_classes()
    folder = tmp_path / "dl"
    paths = write_tiny(folder, classes=classes)
    if where == "class-tar":
        outer = {f"{s}.tar": builders.tar_bytes(files) for s, files in classes.items()}
        outer[f"{A}.tar"] = inner
        paths["train"].write_bytes(builders.tar_bytes(outer))
    else:
        members = {name: data for name, data in tarfile_members(paths["val"]) if name != "ILSVRC2012_val_00000001.JPEG"}
        rest = builders.tar_bytes(members)
        paths["val"].write_bytes(_concat_tars(inner, rest))
    before = digests(paths)

    code, err = convert(paths, tmp_path / "out")

    assert code == 2, err
    assert "sparse" in err and "without --sparse" in err and err.count("\n") == 1
    assert digests(paths) == before and not leftovers(tmp_path / "out")


def tarfile_members(path: Path) -> list[tuple[str, bytes]]:
    with tarfile.open(path) as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar.getmembers() if m.isfile()]


def _concat_tars(first: bytes, second: bytes) -> bytes:
    """Two tars as one: the first without its end-of-archive blocks, then the second."""
    pos = 0
    while pos + 512 <= len(first) and first[pos:pos + 512] != bytes(512):
        header = first[pos:pos + 512]
        size = int(header[124:136].split(b"\0")[0].strip() or b"0", 8)
        pos += 512 + (size + 511) // 512 * 512
    return first[:pos] + second


# --------------------------------------------------------------------------------------------- memory bounded in total

def _run_limited(code: str, *args: str, limit_mb: int):
    import subprocess
    import sys

    prelude = f"import resource; resource.setrlimit(resource.RLIMIT_AS, ({limit_mb << 20}, {limit_mb << 20}))\n"
    return subprocess.run([sys.executable, "-c", prelude + code, *args], capture_output=True, text=True, timeout=300,
                          cwd=str(Path(__file__).resolve().parent))


def test_a_bbox_archive_of_many_members_each_near_the_cap_is_walked_in_bounded_memory(tmp_path):
    """Under `ulimit -v`: XML bytes in flight are bounded for the whole walk, not per member."""
    import gzip as gz

    from streamprep.index.boxwalk import MAX_XML_BYTES

    body = b"<annotation>" + b" " * (MAX_XML_BYTES - 40) + b"</annotation>"
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for k in range(600):  # 600 MB of XML in a ~1 MB download
            info = tarfile.TarInfo(f"{A}/{A}_{k}.xml")
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    path = tmp_path / "bbox.tar.gz"
    path.write_bytes(gz.compress(raw.getvalue(), compresslevel=9))
    assert path.stat().st_size < 4 << 20

    done = _run_limited("import sys\nfrom streamprep.archives.storage import Source\n"
                        "from streamprep.index.boxwalk import index_boxes\nfrom streamprep.index.images import Ignored\n"
                        "table = index_boxes(Source(sys.argv[1]), Ignored())\nprint(table.files, table.count)",
                        str(path), limit_mb=700)

    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["600", "0"]


def test_a_bbox_archive_over_the_box_limit_is_refused_in_one_line(tmp_path, monkeypatch):
    from streamprep.index import boxwalk

    monkeypatch.setattr(boxwalk, "MAX_BOXES", 5)
    xmls = {f"{A}/{A}_{k}.xml": builders.voc_xml(f"{A}_{k}", 17, 12, [(1, 1, 10, 10), (2, 2, 9, 9)]) for k in range(4)}
    paths = write_tiny(tmp_path / "dl", xmls=xmls)
    code, err = convert(paths, tmp_path / "out")
    assert code == 2 and "holds more than 5 boxes" in err and err.count("\n") == 1, err


def test_undecodable_jpegs_are_skipped_and_listed_with_on_bad_image_skip(tmp_path):
    classes = tiny_classes()
    classes[A][f"{A}_3.JPEG"] = classes[A][f"{A}_3.JPEG"][:-40]
    classes[B][f"{B}_2.JPEG"] = frame_of(classes[B][f"{B}_2.JPEG"], 65535, 65535)
    paths = write_tiny(tmp_path / "dl", classes=classes)
    code, err = convert(paths, tmp_path / "out", "--on-bad-image", "skip")
    assert code == 0, err
    manifest = _manifest(tmp_path / "out")
    skipped = sorted(s["member"].rsplit("!", 1)[1] for s in manifest["skipped"])
    assert skipped == [f"{A}_3.JPEG", f"{B}_2.JPEG"]
    assert manifest["splits"]["train"]["images"] == 6


def test_check_decode_refuses_an_image_whose_scan_data_does_not_decode(tmp_path):
    """The default checks pass a JPEG whose scan data is garbage (TensorFlow decodes it with a warning); the
    opt-in full decode does not."""
    classes = tiny_classes()
    good = classes[A][f"{A}_3.JPEG"]
    sos = good.find(b"\xff\xda")
    scan = sos + 2 + int.from_bytes(good[sos + 2:sos + 4], "big")
    classes[A][f"{A}_3.JPEG"] = good[:scan] + b"\xff\xc4" * 8 + good[scan + 16:]  # markers where scan data belongs
    paths = write_tiny(tmp_path / "dl", classes=classes)
    assert convert(paths, tmp_path / "plain")[0] == 0
    code, err = convert(paths, tmp_path / "decoded", "--check-decode")
    assert code == 2 and f"{A}.tar!{A}_3.JPEG: does not decode" in err, err


def test_skipped_files_are_named_once_and_not_counted_as_written(tmp_path):
    classes = tiny_classes()
    classes[A][f"{A}_3.JPEG"] = b"not an image"
    xmls = {f"{A}/{A}_1.xml": b"<annotation><size>", f"{A}/{A}_2.xml": builders.voc_xml(f"{A}_2", 17, 12, [(1, 1, 9, 9)])}
    paths = write_tiny(tmp_path / "dl", classes=classes, xmls=xmls)
    code, err = run_cli("convert", "--train", paths["train"], "--val", paths["val"], "--bbox", paths["bbox"],
                        "--validation-labels-file", paths["val_labels"], "--out", tmp_path / "out",
                        "--on-bad-image", "skip", "--on-bad-xml", "skip", *SMALL_LAYOUT)
    assert code == 0, err
    lines = [line for line in err.splitlines() if f"{A}_3.JPEG" in line or f"{A}_1.xml" in line]
    assert len(lines) == 2 and all(line.count(A + "_") == 1 for line in lines), lines
    assert "train              7 images" in err  # 8 in the archive, one skipped
    manifest = _manifest(tmp_path / "out")
    assert manifest["splits"]["train"]["images"] == 7
    assert all(not s["reason"].startswith(s["member"]) for s in manifest["skipped"])


def test_a_metadata_file_missing_a_synset_stops_before_anything_is_written(tmp_path):
    paths = write_tiny(tmp_path / "dl")
    metadata = tmp_path / "metadata.txt"
    metadata.write_text(f"{A}\ttench\n")  # no text for B
    out = tmp_path / "out"
    code, err = convert(paths, out, "--metadata-file", metadata)
    assert code == 2 and B in err and "--metadata-file" in err, err
    assert not out.exists()


def test_a_phase_that_fails_says_so_in_the_log_lines(tmp_path):
    paths = corrupt_class(None, tmp_path / "dl")
    code, err = run_cli("convert", "--train", paths["train"], "--val", paths["val"], "--bbox", paths["bbox"],
                        "--validation-labels-file", paths["val_labels"], "--out", tmp_path / "out", *SMALL_LAYOUT)
    assert code == 2
    assert "write train: failed" in err and "write train: done" not in err, err


@pytest.mark.parametrize("odd", ["\n", "\r", "\u2028", "\x1b[31m", "\x85", "\udc9b2J"],
                         ids=["newline", "cr", "u2028", "escape", "nel", "c1-csi-byte-not-utf8"])
def test_a_name_holding_control_characters_gives_one_escaped_line(tmp_path, odd):
    classes = tiny_classes()
    classes[A][f"{A}_9{odd}evil.JPEG"] = b"not a jpeg"
    paths = write_tiny(tmp_path / "dl", classes=classes)
    code, err = convert(paths, tmp_path / "out")
    assert code == 2 and err.count("\n") == 1 and err.startswith("streamprep: error:"), repr(err)
    assert odd not in err[:-1] and "evil.JPEG" in err


def test_skipped_names_with_control_characters_are_escaped_in_the_summary(tmp_path):
    classes = tiny_classes()
    classes[A][f"{A}_9\x1b[2Jevil.JPEG"] = b"not a jpeg"
    paths = write_tiny(tmp_path / "dl", classes=classes)
    code, err = run_cli("convert", "--train", paths["train"], "--val", paths["val"], "--bbox", paths["bbox"],
                        "--validation-labels-file", paths["val_labels"], "--out", tmp_path / "out",
                        "--on-bad-image", "skip", *SMALL_LAYOUT)
    assert code == 0 and "\x1b" not in err and "\\x1b[2Jevil.JPEG" in err, err


@pytest.mark.parametrize("where", ["training-tar", "validation-tar"])
def test_a_file_the_classic_would_take_as_an_image_of_a_class_but_streamprep_would_not_is_refused(tmp_path, where):
    classes = tiny_classes()
    paths = write_tiny(tmp_path / "dl", classes=classes)
    if where == "training-tar":
        outer = {f"{s}.tar": builders.tar_bytes(files) for s, files in classes.items()}
        outer[f"{A}/extra.JPEG"] = builders.jpeg(9, 9)
        paths["train"].write_bytes(builders.tar_bytes(outer))
    else:
        val = {f"ILSVRC2012_val_{i:08d}.JPEG": builders.jpeg(9, 9, seed=i) for i in (1, 2, 3)}
        paths["val"].write_bytes(builders.tar_bytes({**val, f"{A}/x.JPEG": builders.jpeg(9, 9)}))
    code, err = convert(paths, tmp_path / "out")
    assert code == 2 and "where the classic would take it as" in err and err.count("\n") == 1, err


@pytest.mark.parametrize("copies", ["both-good", "one-bad-skipped", "both-bad-skipped"])
def test_a_bounding_box_file_held_twice_is_a_one_line_error_naming_it(tmp_path, copies):
    xml = builders.voc_xml(f"{A}_1", 17, 12, [(1, 1, 10, 10)])
    first, second = {"both-good": (xml, xml), "one-bad-skipped": (b"<annotation>", xml),
                     "both-bad-skipped": (b"<annotation>", b"<x")}[copies]
    paths = write_tiny(tmp_path / "dl", xmls={f"{A}/{A}_1.xml": first, f"./{A}/{A}_1.xml": second})
    skip = [] if copies == "both-good" else ["--on-bad-xml", "skip"]  # skipping one copy does not make it unique
    code, err = run_cli("convert", "--train", paths["train"], "--val", paths["val"], "--bbox", paths["bbox"],
                        "--validation-labels-file", paths["val_labels"], "--out", tmp_path / "out", "--quiet", *skip,
                        *SMALL_LAYOUT)
    assert code == 2
    assert err.strip().splitlines()[-1].endswith(f"!{A}/{A}_1.xml: the archive holds this name twice; repack the "
                                                 "archive without duplicates")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("train-*"))
