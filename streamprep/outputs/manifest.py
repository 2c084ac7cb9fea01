"""The output's manifest.json as one typed model: what was converted from what, and every file's count, size and digest.

Written here (`Journal`, rewritten as shards finish) and read here (`load`, `Manifest.parse`), by
convert, resume and verify alike. The JSON keys and their order are the file format
(`streamprep-manifest/1`). Every digest is of one algorithm (`outputs.checksum`), which the
manifest names (`"checksum"`) and each entry's key repeats (`"xxh3-128": ...`); a manifest without
the key, written before the choice, holds sha256.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from .. import __version__
from ..archives.output import Output
from ..archives.storage import Source
from ..errors import OutputError
from . import checksum as checksums
from . import registry

log = logging.getLogger("streamprep")

MANIFEST = "manifest.json"
FORMAT = "streamprep-manifest/1"
# The names of the output's files, as the registered formats name theirs (`outputs.registry`). A shard's file
# name (or its index's) is never a path: it is removed by --overwrite and read back by resume and verify, so a
# name that leaves the folder would be obeyed.
SHARD_FILE_NAME = registry.SHARD_FILE_NAME
SPLIT_BBOXES_CSV = r"bboxes_validation\.csv"  # a split's own boxes (--bbox-val), listed with the side files
# files the formats write beside the shards, and the split's boxes (`Totals.files`)
SIDE_FILE_NAME = registry.NamePattern("side files", SPLIT_BBOXES_CSV)
# Every name streamprep gives a file of its output, in any format: shards, DALI indexes, the files beside them,
# bboxes.csv and this manifest. A file so named that the manifest does not list is another run's: --overwrite
# removes it, a run refuses to end well while one is there, verify reports it.
OUTPUT_FILE_NAME = registry.NamePattern("output", r"bboxes\.csv", SPLIT_BBOXES_CSV, r"manifest\.json")
FLUSH_INTERVAL = 1.0  # seconds between rewrites of the manifest while shards finish (a kill -9 loses at most that)
MTIME_KEYS = ("mtime", "LastModified", "last_modified", "updated", "Last-Modified", "modified")
ETAG_KEYS = ("ETag", "etag")


def _require(ok: bool, what: str) -> None:
    if not ok:
        raise ValueError(what)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _digest_of(data: dict[str, Any], checksum: str, what: str) -> Any:
    """An entry's digest, under the key named for the manifest's algorithm; a digest of another algorithm refused (a
    manifest holds one)."""
    other = next((k for k in checksums.ALGORITHMS if k != checksum and k in data), None)
    _require(other is None, f"{what}: a {other!r} digest in a manifest of {checksum!r} digests (a manifest holds "
             "one checksum)")
    return data.get(checksum)


@dataclass
class FileRef:
    """A file beside a shard (its DALI index): name, size, digest (under `checksum`, the manifest's algorithm)."""

    name: str
    bytes: int
    digest: str
    checksum: str = checksums.DEFAULT

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "bytes": self.bytes, self.checksum: self.digest}

    @classmethod
    def parse(cls, data: Any, shard: str, checksum: str = checksums.SHA256) -> "FileRef":
        _require(isinstance(data, dict) and isinstance(data.get("name"), str), f"shard {shard}: an index without a "
                 "'name'")
        name = data["name"]
        _require(bool(SHARD_FILE_NAME.match(name)), f"shard {shard}: an index named {name!r}, which is no file name "
                 "of a shard")
        digest = _digest_of(data, checksum, f"shard {shard}'s index")
        _require(_is_int(data.get("bytes")) and isinstance(digest, str),
                 f"shard {shard}: its index's 'bytes' or '{checksum}' is not of the right type")
        return cls(name, data["bytes"], digest, checksum)


@dataclass
class ShardEntry:
    """One finished file of the output as the manifest lists it."""

    name: str
    split: str
    records: int
    bytes: int
    digest: str  # of the file, under `checksum`
    boxes: int = 0
    fixups: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"member", "reason"} under on_bad_image = skip
    index: FileRef | None = None  # the shard's DALI index file (--dali-index)
    facts: dict[str, Any] = field(default_factory=dict)  # what its format keeps besides (`ShardEncoder.facts`)
    checksum: str = checksums.DEFAULT  # the algorithm of `digest` (and the index's): the manifest's

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "split": self.split, "records": self.records, "bytes": self.bytes,
                                self.checksum: self.digest, "boxes": self.boxes, "fixups": list(self.fixups),
                                "skipped": [dict(s) for s in self.skipped]}
        if self.index is not None:
            data["index"] = self.index.to_json()
        if self.facts:  # the formats that keep none list exactly what they always did
            data["facts"] = self.facts
        return data

    def algorithms(self) -> set[str]:
        """The algorithms of its digests (one, unless a caller mixed them)."""
        return {self.checksum} | ({self.index.checksum} if self.index else set())

    def files(self) -> list[str]:
        """The shard's file and its index file, if any."""
        return [self.name] + ([self.index.name] if self.index else [])

    @classmethod
    def parse(cls, data: Any, checksum: str = checksums.SHA256) -> "ShardEntry":
        _require(isinstance(data, dict) and isinstance(data.get("name"), str), "a shard entry without a 'name'")
        name = data["name"]
        _require(bool(SHARD_FILE_NAME.match(name)), f"a shard entry named {name!r}, which is no shard file name")
        for key in ("records", "bytes", "boxes"):
            _require(_is_int(data.get(key, 0)), f"shard {name}: '{key}' is not an integer")
        digest = _digest_of(data, checksum, f"shard {name}")
        _require(isinstance(digest, str), f"shard {name}: '{checksum}' is not a string")
        _require(isinstance(data.get("fixups", []), list), f"shard {name}: 'fixups' is not a list")
        _require(isinstance(data.get("skipped", []), list), f"shard {name}: 'skipped' is not a list")
        _require(isinstance(data.get("facts", {}), dict), f"shard {name}: 'facts' is not an object")
        index = data.get("index")
        return cls(name, str(data.get("split", "")), data.get("records", 0), data.get("bytes", 0), digest,
                   data.get("boxes", 0), list(data.get("fixups", [])), list(data.get("skipped", [])),
                   None if index is None else FileRef.parse(index, name, checksum), dict(data.get("facts", {})),
                   checksum)


@dataclass
class FileEntry:
    """A file written beside the shards (bboxes.csv, timm's _info.json): its size, digest (under `checksum`) and
    what it holds."""

    name: str
    bytes: int
    digest: str
    boxes: int = 0
    files: int = 0
    checksum: str = checksums.DEFAULT

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "bytes": self.bytes, self.checksum: self.digest, "boxes": self.boxes,
                "files": self.files}

    @classmethod
    def parse(cls, data: Any, names: Any = re.compile(r"^bboxes\.csv$"),
              checksum: str = checksums.SHA256) -> "FileEntry":
        _require(isinstance(data, dict) and isinstance(data.get("name"), str) and bool(names.match(data["name"])),
                 f"a file entry named {data.get('name') if isinstance(data, dict) else data!r}, which is not a file "
                 "convert writes there")
        digest = _digest_of(data, checksum, f"file {data['name']}")
        return cls(data["name"], data.get("bytes"), digest, data.get("boxes", 0), data.get("files", 0), checksum)


@dataclass
class SplitEntry:
    """One split's totals: images, shards, classes (with each label's count), boxes, bytes."""

    images: int
    shards: int
    classes: int
    class_counts: dict[str, int]
    boxes: int
    bytes: int

    @classmethod
    def parse(cls, data: Any) -> "SplitEntry":
        _require(isinstance(data, dict), "'splits' is not an object of objects")
        return cls(data.get("images"), data.get("shards"), data.get("classes"), data.get("class_counts"),
                   data.get("boxes", 0), data.get("bytes", 0))


@dataclass
class Totals:
    """The closing part of a complete manifest."""

    splits: dict[str, SplitEntry]
    bboxes_csv: FileEntry | None
    fixups: dict[str, list[str]]  # what was done ("png_to_jpeg", "cmyk_to_rgb") -> the images it was done to
    skipped: list[dict[str, str]]
    ignored: dict[str, dict[str, Any]]  # reason -> {"count", "examples"}
    files: list[FileEntry] = field(default_factory=list)  # the formats' files beside the shards (_info.json)
    # The classes the labels number (1000 for ILSVRC2012, the kept synsets for ImageNet-21k): what `verify` checks
    # labels against. None in a manifest written before streamprep recorded it.
    num_classes: int | None = None


@dataclass
class Manifest:
    """manifest.json: the run it records (`run`: what the output depends on), the options shown, checked MD5s,
    the algorithm of its digests (`checksum`), every finished shard, and once `complete` the totals."""

    run: dict[str, Any]
    options: dict[str, Any]
    md5: dict[str, Any] = field(default_factory=dict)
    shards: dict[str, ShardEntry] = field(default_factory=dict)  # by name
    complete: bool = False
    totals: Totals | None = None
    streamprep: str = __version__
    checksum: str = checksums.DEFAULT  # the algorithm of every digest it lists (`outputs.checksum`)

    def to_bytes(self) -> bytes:
        """The JSON, every digest under `checksum` (`ValueError` for an entry of another: never a manifest that
        mixes them)."""
        used = {c for e in self.shards.values() for c in e.algorithms()} | {f.checksum for f in self._files()}
        mixed = sorted(used - {self.checksum})
        if mixed:
            raise ValueError(f"an entry's digest is {mixed[0]!r}, the manifest's checksum {self.checksum!r}")
        # No timestamp: the same conversion gives the same manifest, byte for byte.
        body: dict[str, Any] = {"format": FORMAT, "checksum": self.checksum, "streamprep": self.streamprep,
                                "complete": self.complete, "run": self.run, "options": self.options, "md5": self.md5}
        if self.totals is not None:
            t = self.totals
            body.update({"splits": {k: dataclasses.asdict(v) for k, v in t.splits.items()},
                         "bboxes_csv": t.bboxes_csv.to_json() if t.bboxes_csv else None,
                         "fixups": t.fixups, "skipped": t.skipped, "ignored": t.ignored})
            if t.num_classes is not None:
                body["num_classes"] = t.num_classes
            if t.files:
                body["files"] = [f.to_json() for f in t.files]
        body["shards"] = [self.shards[k].to_json() for k in sorted(self.shards)]
        return json.dumps(body, indent=1, sort_keys=False).encode() + b"\n"

    def _files(self) -> list[FileEntry]:
        """bboxes.csv's entry and the side files' (none before the totals)."""
        t = self.totals
        return ([t.bboxes_csv] if t.bboxes_csv else []) + list(t.files) if t is not None else []

    @classmethod
    def parse(cls, data: Any) -> "Manifest":
        """The model of a manifest's JSON; `ValueError` saying what is wrong if it is not one streamprep wrote."""
        _require(isinstance(data, dict), "not a JSON object")
        _require(data.get("format") == FORMAT, f"format is {data.get('format')!r}, this streamprep reads {FORMAT!r}; "
                 "use the streamprep version that wrote it")
        checksum = data.get("checksum", checksums.SHA256)  # none: written before the choice, all sha256
        _require(checksums.known(checksum), f"'checksum' is {checksum!r}, which this streamprep does not know (it "
                 f"knows {', '.join(checksums.names())}); use the streamprep version that wrote it")
        shards = data.get("shards")
        _require(isinstance(shards, list), "'shards' is not a list of entries with a 'name'")
        entries: dict[str, ShardEntry] = {}
        for item in shards:
            entry = ShardEntry.parse(item, checksum)
            _require(entry.name not in entries, f"shard {entry.name} is listed twice")
            entries[entry.name] = entry
        for key in ("run", "options", "md5"):
            _require(isinstance(data.get(key, {}), dict), f"'{key}' is not an object")
        run = data.get("run", {})
        inputs = run.get("inputs", {})
        _require(isinstance(inputs, dict) and all(isinstance(v, dict) for v in inputs.values()),
                 "'run.inputs' is not an object of objects")
        splits = data.get("splits", {})
        _require(isinstance(splits, dict), "'splits' is not an object of objects")
        skipped = data.get("skipped", [])
        csv = data.get("bboxes_csv")
        fixups = data.get("fixups") or {}
        _require(isinstance(fixups, dict) and all(isinstance(v, list) for v in fixups.values()),
                 "'fixups' is not an object of lists")
        files = data.get("files", [])
        _require(isinstance(files, list), "'files' is not a list")
        num_classes = data.get("num_classes")
        _require(num_classes is None or (type(num_classes) is int and num_classes >= 1),
                 f"'num_classes' is {num_classes!r}, not a number of classes (1 or more)")
        totals = Totals({k: SplitEntry.parse(v) for k, v in splits.items()},
                        None if csv is None else FileEntry.parse(csv, checksum=checksum),
                        {k: list(v) for k, v in fixups.items()},
                        skipped if isinstance(skipped, list) else [], data.get("ignored", {}) or {},
                        [FileEntry.parse(f, SIDE_FILE_NAME, checksum) for f in files], num_classes)
        has_totals = any(k in data for k in ("splits", "bboxes_csv"))
        return cls(data.get("run", {}), data.get("options", {}), data.get("md5", {}), entries,
                   data.get("complete") is True, totals if has_totals else None, str(data.get("streamprep", "")),
                   checksum)

    def files(self) -> list[str]:
        """Every file of the output this manifest lists but itself: shard files and their indexes, bboxes.csv, the
        formats' files beside the shards."""
        names = [n for e in self.shards.values() for n in e.files()]
        if self.totals is not None:
            names += [self.totals.bboxes_csv.name] if self.totals.bboxes_csv else []
            names += [f.name for f in self.totals.files]
        return names

    def reusable(self, run: dict[str, Any]) -> dict[str, ShardEntry]:
        """This manifest's shard entries if it records the same run (inputs, labels, sharding, policies), by name."""
        return dict(self.shards) if self.same_run(run) else {}

    def same_run(self, run: dict[str, Any]) -> bool:
        """Whether this manifest records `run` (a run record: `engines.pipeline.run_record`): equal, where an option
        of a format this manifest's streamprep did not know yet counts as that option's default (so a new format
        leaves every earlier output resumable)."""
        return with_new_options(self.run) == run


def with_new_options(run: dict[str, Any]) -> dict[str, Any]:
    """An earlier run record with the format options it lacks (added since it was written) at their defaults."""
    missing = {name: spec.default for name, spec in registry.own_options().items() if name not in run}
    return {**run, **missing} if missing and "formats" in run else run


def identity(source: Source) -> dict[str, Any]:
    """What identifies a download's content without reading it: URL, size, and mtime and/or ETag."""
    info = source.info
    mtime = next((info[k] for k in MTIME_KEYS if info.get(k) is not None), None)
    etag = next((info[k] for k in ETAG_KEYS if info.get(k)), None)
    if isinstance(mtime, datetime.datetime):
        mtime = mtime.timestamp()
    try:  # one spelling per file: a relative path and its absolute form are the same download
        url = source.fs.unstrip_protocol(source.path)
    except Exception:  # noqa: BLE001 - a backend without it: the URL as given
        url = source.url
    size = info.get("size", source.size)  # the file's (a gzipped tar's `size` is that of the tar inside)
    return {"url": url, "size": size if size is None else int(size), "mtime": mtime if mtime is None else str(mtime),
            "etag": None if etag is None else str(etag).strip('"')}


def identifiable(identities: dict[str, dict[str, Any]]) -> bool:
    """Whether every input has an mtime or an ETag: without one a change could go unnoticed."""
    return all(i["mtime"] is not None or i["etag"] is not None for i in identities.values())


def load(output: Output) -> Manifest | None:
    """The manifest in the output folder, or None if there is none or it is not one streamprep wrote intact."""
    return load_checked(output)[0]


def load_checked(output: Output) -> tuple[Manifest | None, str | None]:
    """(the manifest, None), or (None, why it cannot be used); (None, None) when there is none."""
    try:
        with output.fs.open(output.path(MANIFEST), "rb") as f:
            return Manifest.parse(json.loads(f.read())), None
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError, RecursionError) as e:  # unreadable, malformed, half-written, nested too deep
        return None, f"{type(e).__name__}: {str(e)[:200]}"


def output_files(output: Output) -> list[str]:
    """The files in `out` (and in the formats' own folders below it, TFDS's) named as streamprep names the files of its output
    (`OUTPUT_FILE_NAME`), as paths relative to `out`, sorted."""
    fs = output.fs
    try:
        fs.invalidate_cache(output.root)  # what other processes wrote meanwhile (an object store's listing is cached)
        entries = fs.ls(output.root, detail=False)
        for folder, depth in registry.folders().items():  # the formats' own folders (TFDS's imagenet2012/)
            if any(p.rstrip("/").rsplit("/", 1)[-1] == folder for p in entries):
                entries = [*entries, *fs.find(output.path(folder), maxdepth=depth, detail=False)]
    except FileNotFoundError:
        return []
    except OSError as e:
        raise OutputError(f"{output.url}: cannot list the output folder ({e}); check --out") from e
    root = len(fs._strip_protocol(output.root).rstrip("/")) + 1
    return sorted({name for p in entries if OUTPUT_FILE_NAME.match(name := fs._strip_protocol(p).rstrip("/")[root:])})


def recheck(output: Output, entry: ShardEntry, checksum: str) -> ShardEntry | None:
    """The entry of a finished file that is there (its index too, if it has one) with its recorded size and digest,
    its digests given under `checksum` (made in the same read when the entry's algorithm is another); None when the
    file is not the one the entry records."""
    shard = _matches(output, FileRef(entry.name, entry.bytes, entry.digest, entry.checksum), checksum)
    index = _matches(output, entry.index, checksum) if entry.index and shard is not None else None
    if shard is None or (entry.index and index is None):
        return None
    return dataclasses.replace(entry, digest=shard, checksum=checksum,
                               index=entry.index and dataclasses.replace(entry.index, digest=index, checksum=checksum))


def _matches(output: Output, ref: FileRef, checksum: str) -> str | None:
    """The file's digest under `checksum` if it has the size and digest `ref` records, else None."""
    path = output.path(ref.name)
    if output.is_link(ref.name):
        return None  # a link at a finished file's name: written again, the link replaced, never followed
    hashers = {ref.checksum: checksums.hasher(ref.checksum), checksum: checksums.hasher(checksum)}
    try:
        if output.fs.size(path) != ref.bytes:
            return None
        with output.fs.open(path, "rb") as f:
            while chunk := f.read(8 << 20):
                for h in hashers.values():
                    h.update(chunk)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise OutputError(f"{path}: cannot read it back to check it ({e}); check --out") from e
    return hashers[checksum].hexdigest() if hashers[ref.checksum].hexdigest() == ref.digest else None


class Journal:
    """The manifest of a conversion in progress: rewritten (atomically, and flushed to the disk) as shards finish,
    complete at the end.

    It is the truth about `out`: a run that ends by an error, Ctrl-C or SIGTERM lists every file it
    finished (`with journal:` flushes it on the way out); a run killed at any moment leaves a manifest
    listing the shards finished before its last rewrite, at most a second earlier. The next run keeps
    those (after checking them) and writes the rest; a file no manifest lists is another run's.
    """

    def __init__(self, output: Output, manifest: Manifest, clock: Callable[[], float] = time.monotonic) -> None:
        self.output, self.manifest, self.clock = output, manifest, clock
        self.lock = threading.Lock()
        self.last = clock()
        self.dirty = False  # shards finished since the manifest was last written
        self.write()

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, kind: Any, error: Any, traceback: Any) -> None:
        """On the way out of a run that failed: the shards it finished listed (the run's own error is raised)."""
        if kind is None:
            return
        try:
            self.flush()
        except Exception as e:  # noqa: BLE001 - the run's own error is the one to report
            log.warning("%s: the files finished by this run could not be listed in %s (%s); a rerun of the same "
                        "command writes them again", self.output.url, MANIFEST, e)

    def finished(self, *entries: ShardEntry) -> None:
        """A shard finished: its file in every format, listed together (a kill never leaves one format listed
        without the others), each entry's digests under the manifest's checksum."""
        with self.lock:
            for entry in entries:
                _require(entry.algorithms() == {self.manifest.checksum}, f"{entry.name}: its digest is "
                         f"{entry.checksum!r}, the manifest's checksum {self.manifest.checksum!r}")
                self.manifest.shards[entry.name] = entry
            self.dirty = True
            due = self.clock() - self.last >= FLUSH_INTERVAL
        if due:
            self.write()

    def flush(self) -> None:
        """Write the manifest now if a shard finished since it was last written."""
        if self.dirty:
            self.write()

    def complete(self, shards: list[ShardEntry], totals: Totals) -> None:
        """The final manifest: exactly these shards, the totals, `complete: true`."""
        with self.lock:
            self.manifest.shards = {e.name: e for e in shards}
            self.manifest.totals, self.manifest.complete = totals, True
        self.write()

    def write(self) -> None:
        with self.lock:
            self.last = self.clock()
            self.dirty = False
            text = self.manifest.to_bytes()
            try:
                with self.output.atomic(MANIFEST, durable=True) as f:
                    f.write(text)
            except BaseException:
                self.dirty = True
                raise
