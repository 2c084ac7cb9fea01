"""`streamprep verify`: check a finished output record by record, and against its manifest.json if it has one.

Each shard is read by its format's checker (the registry entry's `checker()`: `outputs/tfrecord/check.py`
for a TFRecord shard, streamprep's or the classic procedure's; `webdataset/check.py`, `tfds/check.py`):
- framing: each record's length CRC and data CRC, and that the file ends where the last record ends;
- schema: each record is a `tf.train.Example` with exactly the classic's 17 features, each of the
  classic's type and arity, the constant ones (`RGB`, 3 channels) with their value, `image/format` `JPEG` (a
  resized output's: an encoding its recipe writes), boxes consistent (equal list lengths, coordinates in [0, 1],
  min <= max, box labels = the label);
- images: each of the encoding its record names (TFRecord's `image/format`, a WebDataset member's extension) and
  the output holds: JPEG, or a resized output's as the recipe in its manifest says (`_encodings`);
- labels, each in the numbering its format stores: the classic TFRecord's `image/class/label` in
  1..num_classes (0 is the classic's background, never written), a WebDataset `.cls` and a TFDS
  `label` in 0..num_classes-1;
- with `decode=True`: each image decodes with TensorFlow's own decoder of its encoding (`decode_jpeg`,
  `decode_png`, `decode_image` for WebP) to `image/height` x `image/width`;
- the shard names of each split are complete (indices 0..N-1 of `-of-N`).
With a manifest (streamprep's output) also: the conversion is complete, every listed shard is there
with its size, digest (under the algorithm the manifest names: `outputs.checksum`), record and box
counts, no unlisted shard (or other file named as convert names
its files: a DALI index, _info.json) is there, the shards and the labels
of each split add up to the manifest's (whose `class_counts` number classes as the classic does,
1..N, for every format; a difference is reported in the shards' own numbering), and bboxes.csv has
its size and digest.

The library never prints: it returns a `VerifyReport` (whose `lines()` are the CLI's report) and
reports progress through the optional callback.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Collection, Iterator

from ..archives.storage import rejected_options, resolve
from ..errors import ConfigError, OutputUnreadableError
from ..progress import Callback, Phase, check_stop
from ..records import resize
from ..records.image import EXTENSIONS
from . import checksum as checksums
from . import registry
from .checker import PROBLEMS_KEPT, READ_BLOCK, Problem, ShardCheck, ShardChecker, tensorflow
from .format import Format
from .manifest import MANIFEST, OUTPUT_FILE_NAME, Manifest, ShardEntry

SPLITS = ("train", "validation")
NUM_CLASSES = 1000
shard_format = registry.shard_format  # a shard file's format by its name, or None for any other file


def label_range(fmt: type[Format], num_classes: int) -> str:
    """The labels a format stores, in its own numbering (`Format.stored_label`): `image/class/label 1..1000`,
    `.cls 0..999`."""
    name, below = fmt.stored_label
    return f"{name} {1 - below}..{num_classes - below}"


@dataclass
class VerifyReport:
    """The outcome of `verify`: `ok` only when no problem was found."""

    url: str
    manifest: bool
    decode: bool
    num_classes: int
    shards: list[ShardCheck]
    problems: list[Problem]  # in report order; per shard at most PROBLEMS_KEPT
    omitted: int  # problems found but not kept
    notes: list[str]
    seconds: float
    checksum: str | None = None  # the algorithm of the manifest's digests, checked (None without a manifest)

    @property
    def ok(self) -> bool:
        return not self.problems and not self.omitted

    @property
    def records(self) -> int:
        return sum(s.records for s in self.shards)

    @property
    def nbytes(self) -> int:
        return sum(s.size or 0 for s in self.shards)

    def lines(self) -> list[str]:
        """The report: one line per problem, the notes, then one summary line."""
        out = [str(p) for p in self.problems]
        if self.omitted:
            out.append(f"... and {self.omitted:,} more problem(s) not shown (at most {PROBLEMS_KEPT} a shard)")
        out += [f"note: {n}" for n in self.notes]
        kinds = [f for f in registry.formats() if any(shard_format(s.name) is f for s in self.shards)]
        ranges = "; ".join(label_range(k, self.num_classes) for k in kinds)
        checked = f"framing, schema, labels{f' ({ranges})' if ranges else ''}" + (", decoding" if self.decode else "")
        if self.manifest:
            checked += f", counts and {self.checksum or checksums.SHA256} against {MANIFEST}"
        what = (f"{self.records:,} records in {len(self.shards):,} shards ({self.nbytes / 1e6:,.1f} MB)"
                + (f", {sum(s.decoded for s in self.shards):,} images decoded" if self.decode else ""))
        if self.ok:
            out.append(f"streamprep verify: OK: {self.url}: {what}; checked {checked}; {self.seconds:.1f} s")
        else:
            bad = {p.where for p in self.problems} | {s.name for s in self.shards if s.omitted}
            total = len(self.problems) + self.omitted
            out.append(f"streamprep verify: FAILED: {self.url}: {total:,} problem(s) in {len(bad):,} file(s) or "
                       f"split(s); {what}; checked {checked}; {self.seconds:.1f} s")
        return out


def _split_of(name: str) -> str:
    parsed = registry.parse_shard_name(name)
    return parsed[0] if parsed else ""


class AnyShardChecker:
    """Checks each shard with its format's checker (`Format.checker`), made on first use."""

    def __init__(self, *args: Any) -> None:
        self.args = args
        self.made: dict[str, ShardChecker] = {}
        self.lock = threading.Lock()

    def shard(self, name: str, size: int | None) -> ShardCheck:
        fmt = shard_format(name) or registry.get(registry.DEFAULT)
        with self.lock:
            if fmt.name not in self.made:
                self.made[fmt.name] = fmt.checker()(*self.args)
        return self.made[fmt.name].shard(name, size)


def _listed(value: Any) -> str:
    """A number from the manifest as the report writes numbers; anything else as it is."""
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else repr(value)


def _name(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def _listing(fs: Any, root: str, url: str) -> dict[str, dict[str, Any]]:
    """The output folder's visible files, by name."""
    try:
        info = fs.info(root)
    except TypeError as e:
        raise rejected_options(url, e) from e
    except FileNotFoundError as e:
        raise OutputUnreadableError(f"{url}: not found; pass the folder a conversion wrote (convert's --out)") from e
    except OSError as e:
        raise OutputUnreadableError(f"{url}: cannot read ({e}); check the path or URL and permissions") from e
    if info.get("type") != "directory":
        raise OutputUnreadableError(f"{url}: is a file, not a folder; pass the folder that holds the shards")
    try:
        entries = fs.ls(root, detail=True)
        for folder, depth in registry.folders().items():  # the formats' own folders (TFDS's imagenet2012/)
            if any(_name(e["name"]) == folder and e.get("type") == "directory" for e in entries):
                entries += [e for e in fs.find(f"{root.rstrip('/')}/{folder}", maxdepth=depth, detail=True).values()]
    except OSError as e:
        raise OutputUnreadableError(f"{url}: cannot list ({e}); check the path or URL and permissions") from e
    base = len(fs._strip_protocol(root).rstrip("/")) + 1
    return {fs._strip_protocol(e["name"])[base:]: e for e in entries
            if e.get("type") != "directory" and not any(part.startswith(".")
                                                        for part in fs._strip_protocol(e["name"])[base:].split("/"))
            and _name(e["name"]) != ""}


def _read_small(fs: Any, path: str, url: str) -> bytes:
    try:
        with fs.open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise OutputUnreadableError(f"{path}: cannot read ({e}); check the connection and permissions of {url}") from e


def _digest(fs: Any, path: str, url: str, checksum: str) -> str:
    digest = checksums.hasher(checksum)
    try:
        with fs.open(path, "rb") as f:
            while chunk := f.read(READ_BLOCK):
                digest.update(chunk)
    except OSError as e:
        raise OutputUnreadableError(f"{path}: cannot read ({e}); check the connection and permissions of {url}") from e
    return digest.hexdigest()


def _shard_sets(names: Iterator[str] | list[str], where: str, none: Collection[str] = ()) -> list[Problem]:
    """Problems with the set of shard names of each split, in each format present: all of 0..N-1 of one `-of-N`;
    the splits in `none` have no shards (the manifest records none: TFDS writes no empty split)."""
    problems = []
    names = list(names)
    kinds = sorted({f for n in names if (f := shard_format(n))}, key=lambda f: f.name)
    if not kinds:
        return _shard_set([], where, none)
    for kind in kinds:
        mine = [parsed for n in names if (parsed := kind.parse_name(n))]
        problems += _shard_set(mine, where if len(kinds) == 1 else f"{where} ({kind.name})", none)
    return problems


def _shard_set(names: list[tuple[str, int, int]], where: str, none: Collection[str] = ()) -> list[Problem]:
    """Problems with one format's shards (split, number, of): each split's numbers all of 0..N-1 of one `-of-N`."""
    problems = []
    by_split: dict[str, list[tuple[int, int]]] = {s: [] for s in SPLITS}
    for split, number, of in names:
        by_split[split].append((number, of))
    for split, found in by_split.items():
        if not found and split in none:
            continue
        if not found:
            problems.append(Problem(split, f"no {split} shards {where}"))
            continue
        totals = sorted({of for _, of in found})
        if len(totals) > 1:
            problems.append(Problem(split, f"shard names of two or more shard counts {where}: "
                                           + ", ".join(f"-of-{of:05d}" for of in totals)))
            continue
        of = totals[0]
        present = {i for i, _ in found}
        missing = sorted(set(range(of)) - present)
        beyond = sorted(i for i in present if i >= of)
        if missing:
            shown = ", ".join(f"{split}-{i:05d}-of-{of:05d}" for i in missing[:10])
            shown += " ..." if len(missing) > 10 else ""
            problems.append(Problem(split, f"{len(missing):,} of {of:,} shard(s) missing {where}: {shown}"))
        if beyond:
            numbers = ", ".join(map(str, beyond[:10]))
            problems.append(Problem(split, f"shard number(s) {numbers} not below {of} {where}"))
    return problems


def _counts_differ(found: Counter, listed: Any, kind: type[Format]) -> str | None:
    """How the labels found differ from the manifest's class_counts (keys are the classic's labels as text, as are
    `found`'s), each label named as the shards of format `kind` store it."""
    if not isinstance(listed, dict):
        return "class_counts missing from the manifest"
    expected: Counter = Counter()
    for key, value in listed.items():
        try:
            expected[int(key)] = int(value)
        except (TypeError, ValueError):
            return f"class_counts holds a non-numeric entry {key!r}: {value!r}"
    differ = sorted(k for k in set(found) | set(expected) if found[k] != expected[k])
    if not differ:
        return None
    name, below = kind.stored_label
    shown = "; ".join(f"{name} {k - below}: {found[k]:,} in the records, {expected[k]:,} listed" for k in differ[:5])
    more = " ..." if len(differ) > 5 else ""
    numbering = (f" ({name} as the shards store it, 0-based; {MANIFEST}'s class_counts key is {below} more, the "
                 "classic's label)" if below else "")
    return f"label counts differ from {MANIFEST} for {len(differ):,} label(s): {shown}{more}{numbering}"


def verify(url: str, storage_options: dict[str, Any] | None = None, decode: bool = False,
           workers: int | None = None, num_classes: int | None = None,
           progress: Callback | None = None, stop: threading.Event | None = None) -> VerifyReport:
    """Check the output folder at `url` (a path or fsspec URL); see the module docstring for what is checked.

    `num_classes`: the labels are checked to number that many classes (default: the manifest's `num_classes`,
    else 1000, ILSVRC2012's). `workers` shards are read at once (the command line passes `--workers`; default: one per CPU, at least 2, as
    convert's `Options.workers`); `progress` gets a "verify"
    phase counting records and bytes; setting `stop` ends the check early (`progress.Stopped`).
    """
    t0 = time.monotonic()
    workers = max(2, os.cpu_count() or 2) if workers is None else workers
    if workers < 1:
        raise ConfigError(f"workers (--workers) must be at least 1, got {workers}")
    if num_classes is not None and num_classes < 1:
        raise ConfigError(f"num_classes (--num-classes) must be at least 1, got {num_classes}")
    fs, root = resolve(url, storage_options)
    files = _listing(fs, root, url)
    problems: list[Problem] = []
    manifest = _manifest(fs, root, url, files, problems)
    if num_classes is None:
        recorded = manifest.totals.num_classes if manifest is not None and manifest.totals else None
        num_classes = recorded or NUM_CLASSES
    if manifest is not None:
        todo, notes = _with_manifest(manifest, files, problems)
    else:
        todo, notes = _without_manifest(url, files, problems)
    if decode:
        tensorflow()  # imported before the progress phase starts: it takes a few seconds
    checksum = manifest.checksum if manifest is not None else checksums.DEFAULT  # without one, nothing compares it
    checksums.hasher(checksum)  # its package imported now: a missing one is an error before any shard is read
    checks = _check_shards(AnyShardChecker, fs, root, url, decode, num_classes, todo, files, workers, progress, stop,
                           checksum, _encodings(manifest, problems))
    for check in checks:
        problems += check.problems
        if manifest is not None and check.name in manifest.shards:
            problems += _against_entry(check, manifest.shards[check.name])
            problems += _against_index(fs, root, url, check, manifest.shards[check.name], files)
    if manifest is not None and manifest.complete:
        problems += _against_splits(manifest, checks)
        problems += _against_side_files(fs, root, url, manifest, files)
    return VerifyReport(url, manifest is not None, decode, num_classes, checks, problems,
                        sum(c.omitted for c in checks), notes, time.monotonic() - t0,
                        manifest.checksum if manifest is not None else None)


def _manifest(fs: Any, root: str, url: str, files: dict[str, dict[str, Any]],
              problems: list[Problem]) -> Manifest | None:
    """The output's manifest, if it has a usable one (an unusable one is a problem, and the shards are still checked)."""
    if MANIFEST not in files:
        return None
    try:
        return Manifest.parse(json.loads(_read_small(fs, f"{root.rstrip('/')}/{MANIFEST}", url)))
    except (ValueError, RecursionError) as e:
        problems.append(Problem(MANIFEST, f"unusable ({str(e)[:300]}); checking the shards as a classic output"))
        return None


def _encodings(manifest: Manifest | None, problems: list[Problem]) -> tuple[str, ...] | None:
    """What a resized output's images may be, by the recipe its manifest records (`options.resize` and `encode`:
    `Recipe.encodings`); None for a byte-exact output (JPEG only, and TFDS's imagenet2012 the members as read)."""
    options = manifest.options if manifest is not None and isinstance(manifest.options, dict) else {}
    if not options.get("resize"):
        return None
    try:
        recipe = resize.parse(str(options["resize"]), options.get("encode") or None)
    except ConfigError as e:
        problems.append(Problem(MANIFEST, f"options.resize and encode name no recipe ({e}); its images are checked "
                                          "as any recipe may write them"))
        return tuple(EXTENSIONS)
    return recipe.encodings() if recipe is not None else None


def _with_manifest(manifest: Manifest, files: dict[str, dict[str, Any]],
                   problems: list[Problem]) -> tuple[list[str], list[str]]:
    """The shards to read and the notes, for an output with a manifest; problems of the listing added."""
    notes = []
    if not manifest.complete:
        problems.append(Problem(MANIFEST, "incomplete conversion: rerun the same convert command to finish it"))
    listed = sorted(manifest.shards)
    problems += _listed_files(listed, files)
    unlisted = [n for n in sorted(files) if shard_format(n) and n not in manifest.shards]
    todo = [n for n in listed if n in files and shard_format(n)]
    if manifest.complete:
        problems += _unlisted_files(manifest, files, unlisted)
        splits = manifest.totals.splits if manifest.totals else {}
        none = {split for split, entry in splits.items() if not entry.shards}  # recorded with no shards
        problems += _shard_sets([n for n in listed if shard_format(n)], f"listed in {MANIFEST}", none)
    else:  # a running or killed conversion lists the shards finished so far, and no totals yet
        notes.append(f"the conversion is incomplete: {len(listed):,} shard(s) listed in {MANIFEST} were "
                     f"checked against it; {len(unlisted):,} unlisted shard(s) for framing, schema and labels only")
        todo = sorted(todo + unlisted)
    skipped = len(manifest.totals.skipped) if manifest.totals else 0
    if skipped:
        notes.append(f"{MANIFEST} lists {skipped:,} bad input file(s) that convert skipped "
                     "(--on-bad-image/--on-bad-xml skip): the output lacks them")
    return todo, notes


def _listed_files(listed: list[str], files: dict[str, dict[str, Any]]) -> list[Problem]:
    """A shard the manifest lists that is no shard's name, or is not in the folder."""
    problems = []
    for name in listed:
        if not shard_format(name):
            problems.append(Problem(MANIFEST, f"lists {name!r}, which is not a shard name"))
        elif name not in files:
            problems.append(Problem(name, f"missing: listed in {MANIFEST} but not in the folder"))
    return problems


def _unlisted_files(manifest: Manifest, files: dict[str, dict[str, Any]], unlisted: list[str]) -> list[Problem]:
    """In a complete output: the shards the manifest does not list, and any other file named as convert names its
    files (a DALI index, _info.json) that it does not list."""
    others = sorted({n for n in files if OUTPUT_FILE_NAME.match(n) and not shard_format(n)}
                    - {MANIFEST, *manifest.files()})
    return [Problem(name, f"not listed in {MANIFEST}: left from another run? remove it (the convert command that wrote "
                          "this folder, run again with --overwrite, removes every such file)") for name in [*unlisted, *others]]


def _without_manifest(url: str, files: dict[str, dict[str, Any]],
                      problems: list[Problem]) -> tuple[list[str], list[str]]:
    """The shards to read and the notes, for an output without a (usable) manifest, such as the classic's."""
    shard_files = sorted(n for n in files if shard_format(n))
    if not shard_files and not problems:
        raise OutputUnreadableError(f"{url}: holds neither {MANIFEST} nor shards (train-00000-of-01024 ...); pass "
                                    "the folder a conversion wrote")
    problems += _shard_sets(shard_files, "in the folder")
    return shard_files, [f"no {MANIFEST} (an output of the classic procedure?): record counts, label counts and "
                         "digests were not checked"]


def _check_shards(checker_type: type, fs: Any, root: str, url: str, decode: bool, num_classes: int, todo: list[str],
                  files: dict[str, dict[str, Any]], workers: int, progress: Callback | None,
                  stop: threading.Event | None, checksum: str = checksums.DEFAULT,
                  encodings: tuple[str, ...] | None = None) -> list[ShardCheck]:
    """Every shard in `todo` read and checked (each hashed with `checksum`, its images as `encodings` allows:
    `_encodings`), `workers` at a time; the first error stops the others."""
    halt = threading.Event()
    sizes = {n: files[n].get("size") for n in todo}
    with Phase(progress, "verify", total_bytes=sum(s or 0 for s in sizes.values()), unit="records") as phase:
        checker = checker_type(fs, root, url, decode, num_classes, phase, halt, checksum, encodings)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="verify") as pool:
            futures = [pool.submit(checker.shard, n, sizes[n]) for n in todo]
            try:
                while True:
                    done, running = wait(futures, timeout=0.2, return_when=FIRST_EXCEPTION)
                    for future in done:
                        if future.exception() is not None:
                            raise future.exception()  # type: ignore[misc]
                    check_stop(stop)
                    if not running:
                        break
            except BaseException:
                halt.set()
                for future in futures:
                    future.cancel()
                raise
            return [f.result() for f in futures]


def _against_entry(check: ShardCheck, entry: ShardEntry) -> list[Problem]:
    """A shard's size, digest, record and box counts against its manifest entry."""
    problems = []
    listed = entry.bytes
    if check.size is not None and listed != check.size:
        problems.append(Problem(check.name, f"holds {check.size:,} bytes, {MANIFEST} lists {_listed(listed)}"))
    if not check.complete:
        return problems  # counts and digest of a shard that could not be read to its end mean nothing more
    if entry.digest != check.digest:
        problems.append(Problem(check.name, f"{entry.checksum} {check.digest} differs from {MANIFEST}'s "
                                            f"{entry.digest!r}: the file is not the one convert wrote"))
    if entry.records != check.records:
        problems.append(Problem(check.name, f"holds {check.records:,} records, "
                                            f"{MANIFEST} lists {_listed(entry.records)}"))
    if check.trusted and entry.boxes != check.boxes:
        problems.append(Problem(check.name, f"holds {check.boxes:,} boxes, {MANIFEST} lists {_listed(entry.boxes)}"))
    return problems


def _against_splits(manifest: Manifest, checks: list[ShardCheck]) -> list[Problem]:
    """Each split's shard count and label counts against the manifest's totals, in each format (every format
    holds the same images)."""
    problems = []
    splits = manifest.totals.splits if manifest.totals else {}
    kinds = sorted({f for n in manifest.shards if (f := shard_format(n))}, key=lambda f: f.name)
    for kind in kinds:
        for split in SPLITS:
            label = split if len(kinds) == 1 else f"{split} ({kind.name})"
            problems += _against_split(manifest, checks, kind, split, splits.get(split), label)
    return problems


def _against_split(manifest: Manifest, checks: list[ShardCheck], kind: type[Format], split: str, summary: Any,
                   label: str) -> list[Problem]:
    """One split's shards of one format against the manifest's `splits.SPLIT` entry (`summary`)."""
    listed = [n for n in manifest.shards if shard_format(n) is kind and _split_of(n) == split]
    if summary is None:
        return [Problem(MANIFEST, f"lists {split} shards but no splits.{split} entry")] if listed else []
    problems = []
    if summary.shards != len(listed):
        problems.append(Problem(label, f"{MANIFEST} lists {len(listed):,} {split} shard(s), but its "
                                       f"splits.{split} says {_listed(summary.shards)}"))
    mine = [c for c in checks if c.split == split and shard_format(c.name) is kind]
    if len(mine) != len(listed) or not all(c.trusted for c in mine):
        return problems  # missing or damaged shards are reported already; their labels are unknown
    found: Counter = Counter()
    for c in mine:
        found.update(c.labels)
    differ = _counts_differ(found, summary.class_counts, kind)
    if differ:
        problems.append(Problem(label, differ))
    return problems


def _against_index(fs: Any, root: str, url: str, check: ShardCheck, entry: ShardEntry,
                   files: dict[str, dict[str, Any]]) -> list[Problem]:
    """A shard's DALI index: there, of its recorded size and digest, and exactly the index of the shard as read."""
    ref = entry.index
    if ref is None:
        return []
    if ref.name not in files:
        return [Problem(ref.name, f"missing: the DALI index of {entry.name}, listed in {MANIFEST}")]
    data = _read_small(fs, f"{root.rstrip('/')}/{ref.name}", url)
    problems = []
    if len(data) != ref.bytes or checksums.digest(ref.checksum, data) != ref.digest:
        problems.append(Problem(ref.name, f"differs from {MANIFEST}'s size and {ref.checksum}: not the index convert "
                                          "wrote"))
    if check.index is not None and data != check.index:
        at = next((i for i, (a, b) in enumerate(zip(data.splitlines(), check.index.splitlines())) if a != b),
                  min(len(data.splitlines()), len(check.index.splitlines())))
        problems.append(Problem(ref.name, f"does not match {entry.name} (from line {at + 1}): DALI would read the "
                                          "wrong bytes; rerun convert to write it again"))
    return problems


def _against_side_files(fs: Any, root: str, url: str, manifest: Manifest,
                        files: dict[str, dict[str, Any]]) -> list[Problem]:
    """bboxes.csv and the formats' files beside the shards (timm's _info.json): there, with their size and digest."""
    totals = manifest.totals
    entries = ([totals.bboxes_csv] if totals and totals.bboxes_csv else []) + (list(totals.files) if totals else [])
    problems = []
    for entry in entries:
        name = entry.name
        if name not in files:
            problems.append(Problem(name, f"missing: listed in {MANIFEST} but not in the folder"))
            continue
        size = files[name].get("size")
        if size is not None and size != entry.bytes:
            problems.append(Problem(name, f"holds {size:,} bytes, {MANIFEST} lists {_listed(entry.bytes)}"))
        digest = _digest(fs, f"{root.rstrip('/')}/{name}", url, entry.checksum)
        if digest != entry.digest:
            problems.append(Problem(name, f"{entry.checksum} {digest} differs from {MANIFEST}'s {entry.digest!r}"))
    return problems


__all__ = ["OutputUnreadableError", "Problem", "ShardCheck", "VerifyReport", "verify"]
