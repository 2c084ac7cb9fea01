"""The format registry: a format is one entry, and no module but its own and the registry names it; a format defined
here, registered through the registry alone, is converted, resumed, verified and inspected like the built-in ones."""

from __future__ import annotations

import ast
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ROOT, SMALL_LAYOUT, SMALL_OPTIONS
from streamprep.inspection import Inspection, Reader
from streamprep.outputs import registry
from streamprep.outputs.checker import ShardChecker
from streamprep.outputs.format import Format, ShardEncoder
from streamprep.plan import SHARD_STEM

PACKAGE = ROOT / "streamprep"
REGISTRY = PACKAGE / "outputs" / "registry.py"
# Words a format owns beyond its name: the values of its own options (TFDS's --file-format: tfrecord, array_record).
ALSO_OWNED = {"tfds": {"tfrecord", "array_record"}}


# --------------------------------------------------------------------------------------------- one entry each

def owners() -> dict[str, set[str]]:
    """Each word that names a format (or a value of a format's own option) -> the formats that own it."""
    words: dict[str, set[str]] = {}
    for name in registry.names():
        words.setdefault(name, set()).add(name)
        for word in ALSO_OWNED.get(name, ()):
            words.setdefault(word, set()).add(name)
    return words


def package_of(name: str) -> Path:
    """The folder of a format's own package (or its module's folder)."""
    return Path(sys.modules[registry.get(name).__module__].__file__).parent


def named_outside(source: str, path: Path) -> list[str]:
    """Every string literal of `source` (the module at `path`) that is a format's name (or a word it owns), where
    neither that format's own package nor the registry is: `path:line: 'word'`."""
    if path == REGISTRY:
        return []
    words = owners()
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in words:
            if not any(path.is_relative_to(package_of(owner)) for owner in words[node.value]):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    return found


def test_no_format_is_named_as_a_string_outside_its_own_package_and_the_registry():
    found = [hit for path in sorted(PACKAGE.rglob("*.py")) for hit in named_outside(path.read_text(), path)]
    assert found == [], ("a format's name spelled outside its own package and outputs/registry.py: ask its registry "
                         "entry (`outputs.registry`, `Format`) instead: " + "; ".join(found))


def test_the_scan_finds_a_format_named_in_a_comparison_elsewhere():
    snippet = 'if "tfds" in options.formats and options.file_format == "array_record":\n    pass\n'
    assert named_outside(snippet, PACKAGE / "engines" / "pipeline.py") == [
        "streamprep/engines/pipeline.py:1: 'tfds'", "streamprep/engines/pipeline.py:1: 'array_record'"]
    assert named_outside(snippet, PACKAGE / "outputs" / "tfds" / "write.py") == []
    assert named_outside(snippet, REGISTRY) == []


def test_every_built_in_format_is_one_entry_holding_its_names_options_plan_checker_and_reader():
    from streamprep.plan import ShardSpec

    assert registry.names()[:3] == ["tfrecord", "webdataset", "tfds"]  # the order files are written and listed
    shard = ShardSpec("train", 7, 1024, 0, 0)
    for fmt in registry.formats():
        made = fmt()
        name = made.file_name(shard)
        assert registry.shard_format(name) is fmt and fmt.parse_name(name) == ("train", 7, 1024)
        assert registry.SHARD_FILE_NAME.match(name) and registry.FOREIGN_FILE_NAME.match(name)
        assert issubclass(fmt.checker(), ShardChecker) and isinstance(fmt.reader(), Reader)
        assert all(registry.SIDE_FILE_NAME.match(side) for side in made.side_file_names())
    assert registry.shard_format("train-00007-of-01024.bak") is None  # named after a shard: still claimed
    assert registry.SHARD_FILE_NAME.match("train-00007-of-01024.bak")
    assert not registry.SHARD_FILE_NAME.match("../train-00007-of-01024") and registry.shard_format("x.tar") is None


# --------------------------------------------------------------------------------------------- a format defined here

MAGIC, END = b"LP01", b"END!"


class LengthPrefixedEncoder(ShardEncoder):
    """Each record is its image behind its length (4 bytes) and the classic's label (2 bytes); the file opens with
    `LP01` and ends with `END!`."""

    def __init__(self) -> None:
        self.started = False

    def record(self, spec, image):
        head = struct.pack("<IH", len(image.data), spec.label)
        if not self.started:
            self.started, head = True, MAGIC + head
        return (head, image.data)

    def finish(self):
        return ((b"" if self.started else MAGIC) + END,)


def records_of(data: bytes) -> list[tuple[int, bytes]]:
    """(label, image) of each record of a length-prefixed file; ValueError where it is damaged."""
    if not data.startswith(MAGIC) or not data.endswith(END):
        raise ValueError("no LP01 ... END! around the records")
    found, pos = [], len(MAGIC)
    while pos < len(data) - len(END):
        n, label = struct.unpack_from("<IH", data, pos)
        found.append((label, data[pos + 6:pos + 6 + n]))
        pos += 6 + n
    if pos != len(data) - len(END):
        raise ValueError(f"a record runs past the end marker at byte {pos:,}")
    return found


class LengthPrefixedChecker(ShardChecker):
    """verify of a length-prefixed shard: its framing, each record's label counted as stored (the classic's)."""

    def _read(self, f, check):
        data = f.read()
        digest = self.hasher()  # of the manifest's checksum
        digest.update(data)
        check.digest = digest.hexdigest()
        try:
            records = records_of(data)
        except (ValueError, struct.error) as e:
            check.problem(f"not a length-prefixed shard ({e})")
            check.trusted = False
            return
        check.records, check.complete = len(records), True
        check.labels.update(label for label, _ in records)
        self.phase.advance(len(records), len(data))


class LengthPrefixedReader(Reader):
    """inspect of a length-prefixed shard, by its `LP01` signature."""

    def binary(self, source, head, labels, limit):
        if not head.startswith(MAGIC):
            return None
        records = records_of(source.read_at(0, source.size))
        return Inspection(source.url, "length-prefixed shard (a test's format)", source.size,
                          counts={"records": len(records)}, label_numbering="the classic's 1..1000",
                          entries=[{"label": label, "bytes": len(image)} for label, image in records[:limit]])


class LengthPrefixed(Format):
    """A format defined here, on the registry's public API alone: `train-00000-of-01024.lp` shards."""

    name = "test-lp"
    shard_pattern = SHARD_STEM + r"\.lp"
    no_dali_index = "a test's format"
    stores_boxes = False
    stored_label = ("test label", 0)

    def file_name(self, shard):
        return f"{shard.name}.lp"

    def encoder(self, shard):
        return LengthPrefixedEncoder()

    @classmethod
    def checker(cls):
        return LengthPrefixedChecker

    @classmethod
    def reader(cls):
        return LengthPrefixedReader()


@pytest.fixture
def registered():
    """`LengthPrefixed` in the registry for one test."""
    registry.register(LengthPrefixed)
    try:
        yield LengthPrefixed
    finally:
        registry.unregister(LengthPrefixed.name)


def _options(sample, out: Path, **more):
    from streamprep import Options

    return Options(train=str(sample["train"]), val=str(sample["val"]), bbox=str(sample["bbox"]),
                   validation_labels_file=str(sample["val_labels"]), out=str(out), **SMALL_OPTIONS, **more)


def test_a_format_registered_through_the_registry_alone_is_converted_resumed_verified_and_inspected(
        sample, tmp_path, registered):
    from streamprep import convert, verify
    from streamprep.index.labels import load_label_data
    from streamprep.outputs.inspect import inspect

    out = tmp_path / "out"
    first = convert(_options(sample, out, format="test-lp"))
    shards = sorted(p.name for p in out.iterdir() if p.name.endswith(".lp"))
    assert len(shards) == 6 and first.shards_written == 6 and first.images_written == 44
    written = {name: (out / name).read_bytes() for name in shards}
    images = [image for data in written.values() for _, image in records_of(data)]
    assert len(images) == 44 and all(image.startswith(b"\xff\xd8") for image in images)

    again = convert(_options(sample, out, format="test-lp"))  # the same command: every shard checked and kept
    assert again.shards_kept == 6 and again.shards_written == 0
    (out / shards[3]).unlink()  # as a killed run leaves it: resumed, that one shard written again
    resumed = convert(_options(sample, out, format="test-lp"))
    assert resumed.shards_kept == 5 and resumed.shards_written == 1
    assert {name: (out / name).read_bytes() for name in shards} == written

    report = verify(str(out))
    assert report.ok, report.lines()
    assert len(report.shards) == 6 and report.records == 44 and "test label 1..1000" in report.lines()[-1]
    damaged = bytearray(written[shards[0]])
    damaged[-10] ^= 0xFF
    (out / shards[0]).write_bytes(bytes(damaged))
    assert any(p.where == shards[0] and "xxh3-128" in p.what for p in verify(str(out)).problems)

    found = inspect(str(out / shards[1]), load_label_data())
    assert found.kind == "length-prefixed shard (a test's format)"
    assert found.counts["records"] == len(records_of(written[shards[1]])) > 0


def test_a_registered_format_is_refused_options_it_cannot_take_and_leaves_no_trace_once_unregistered(
        sample, tmp_path, registered):
    from streamprep import ConfigError

    with pytest.raises(ConfigError, match=r"writes indexes for tfrecord and webdataset shards; --format test-lp has "
                                          r"none \(a test's format\)"):
        _options(sample, tmp_path, format="test-lp", dali_index=True)
    with pytest.raises(ValueError, match="a format named 'test-lp' is registered already"):
        registry.register(LengthPrefixed)
    registry.unregister(LengthPrefixed.name)
    try:
        with pytest.raises(ConfigError, match="unknown format 'test-lp'"):
            _options(sample, tmp_path, format="test-lp")
        assert not registry.shard_format("train-00000-of-00004.lp")
    finally:
        registry.register(LengthPrefixed)


def test_an_entry_without_a_checker_or_a_reader_is_refused():
    class WriteOnly(Format):
        name = "write-only"
        shard_pattern = SHARD_STEM + r"\.wo"

        def file_name(self, shard):
            return f"{shard.name}.wo"

        def encoder(self, shard):
            return LengthPrefixedEncoder()

    with pytest.raises(TypeError, match=r"'write-only' lacks checker\(\), reader\(\)"):
        registry.register(WriteOnly)
    assert "write-only" not in registry.names()


def test_another_format_plugs_into_the_shared_shard_writer_and_resume(sample, tmp_path):
    from streamprep.engines import output_folder, pipeline, readers
    from streamprep.index.build import build_index
    from streamprep.outputs import manifest as mf
    from streamprep.outputs.format import write_or_keep
    from streamprep.plan import make_plan
    from streamprep.records.spec import record_specs

    options = _options(sample, tmp_path / "out")
    inputs = pipeline.open_inputs(options)
    try:
        job = pipeline.make_job(options, inputs, None)
        output_folder.open_output(job, None)
        plan = make_plan(build_index(inputs.sources, inputs.labels, 2), inputs.labels, options.sharding)
        read = readers.archive_reader(inputs.sources["train"])
        shard = plan.splits["train"].shards[1]
        fmts = [LengthPrefixed()]  # not registered: the shared writer needs the entry alone
        first = write_or_keep(fmts, plan, shard, job.output(), read, {})
        again = write_or_keep(fmts, plan, shard, job.output(), read, {first.entries[0].name: first.entries[0]})
        both = write_or_keep([*job.formats, LengthPrefixed()], plan, shard, job.output(), read, {})
    finally:
        inputs.close()

    data = (tmp_path / "out" / "train-00001-of-00004.lp").read_bytes()
    records = records_of(data)
    specs = record_specs(plan, shard)
    entry = first.entries[0]
    assert len(records) == len(specs) == entry.records > 0
    assert all(image.startswith(b"\xff\xd8") for _, image in records)
    assert [label for label, _ in records] == [spec.label for spec in specs]
    assert entry.bytes == len(data) and not first.kept
    assert again.kept and again.entries == [entry]
    assert isinstance(entry, mf.ShardEntry)
    # written beside the classic TFRecord from one read: the same images, the same file as alone
    assert [e.name for e in both.entries] == ["train-00001-of-00004", "train-00001-of-00004.lp"]
    assert (tmp_path / "out" / "train-00001-of-00004.lp").read_bytes() == data and both.entries[1] == entry


# --------------------------------------------------------------------------------------------- a format installed

PLUGIN = '''"""A format an installed package adds (entry point `streamprep.formats`), with an option of its own."""
from streamprep.outputs import registry
from streamprep.outputs.format import FormatOption
from test_format_registry import LengthPrefixed


@registry.register
class Plugged(LengthPrefixed):
    name = "test-plug"
    summary = "a plug-in's shards"
    shard_pattern = LengthPrefixed.shard_pattern.replace(r"\\.lp", r"\\.plug-[a-z]+")
    options = {"plug_tag": FormatOption("none", metavar="TAG", help="the suffix of --format test-plug's shards")}

    def __init__(self, dali_index=False, tag="none"):
        super().__init__(dali_index)
        self.tag = tag

    @classmethod
    def from_options(cls, options):
        return cls(options.dali_index, options.plug_tag)

    def file_name(self, shard):
        return f"{shard.name}.plug-{self.tag}"
'''


def test_an_installed_package_adds_a_format_and_its_options_through_an_entry_point_alone(sample, tmp_path):
    site = tmp_path / "site"
    (site / "plug-0.1.dist-info").mkdir(parents=True)
    (site / "plug-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: plug\nVersion: 0.1\n")
    (site / "plug-0.1.dist-info" / "entry_points.txt").write_text("[streamprep.formats]\ntest-plug = plug_format\n")
    (site / "plug_format.py").write_text(PLUGIN)
    env = {"PYTHONPATH": os.pathsep.join([str(site), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])}
    run = lambda *args: subprocess.run([sys.executable, "-m", "streamprep", *map(str, args)], capture_output=True,
                                       text=True, env={**os.environ, **env}, timeout=300)

    helped = run("convert", "--help")
    assert helped.returncode == 0, helped.stderr
    assert "--plug-tag TAG" in helped.stdout and "test-plug (a plug-in's shards)" in helped.stdout
    base = ["convert", "--train", sample["train"], "--val", sample["val"], "--bbox", sample["bbox"],
            "--validation-labels-file", sample["val_labels"], *SMALL_LAYOUT, "--quiet"]
    refused = run(*base, "--out", tmp_path / "refused", "--plug-tag", "x")
    assert refused.returncode == 2 and "plug_tag (--plug-tag x) is an option of --format test-plug" in refused.stderr
    done = run(*base, "--out", tmp_path / "out", "--format", "tfrecord,test-plug", "--plug-tag", "closed")
    assert done.returncode == 0, done.stderr
    shards = sorted((tmp_path / "out").glob("*.plug-closed"))
    assert len(shards) == 6 and sum(len(records_of(p.read_bytes())) for p in shards) == 44
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["options"]["plug_tag"] == "closed" and manifest["run"]["plug_tag"] == "closed"
    assert run("verify", tmp_path / "out").returncode == 0
