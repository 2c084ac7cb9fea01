"""The bounding-box index: every `folder/file.xml` of the tar.gz parsed into bboxes.csv lines and boxes."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import queue
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any

from ..archives import retry
from ..archives.storage import Source
from ..archives.walk import gzip_members
from .boxes import BoxTable, DuplicateXml, XmlBoxes, parse_boxes
from ..errors import AnnotationError, ArchiveError, reason
from .images import Ignored, Skipped, regular_file
from ..progress import Callback, Event, Phase, check_stop, process_alive
from ..archives.tarscan import normalize

MAX_XML_BYTES = 1 << 20  # one XML member read into memory at most (real ones are a few KB)
# The box table grows with the archive: these bound it whatever the archive holds (the real one has
# 544,546 XML files and about 615,000 boxes; a table at both limits holds about 400 MB).
MAX_XML_FILES = 2_000_000
MAX_BOXES = 4_000_000
TRAIN_BOXES = ("ILSVRC2012_bbox_train_v2.tar.gz", "bounding boxes")  # (official name, progress phase) of an archive
PROCESS_MIN_BYTES = 2 << 20  # a bounding-box archive this large is read by a process of its own (see BoxWalk)
RELAY_INTERVAL = 0.2  # seconds between progress events sent from that process
ADVANCE_EVERY = 256  # members between two progress events of the walk (and checks of the stop event)


def index_boxes(source: Source, ignored: Ignored, progress: Callback | None = None,
                skip_bad_xml: bool = False, skipped: Skipped | None = None,
                stop: threading.Event | None = None, archive: tuple[str, str] = TRAIN_BOXES) -> BoxTable:
    """Read every `folder/file.xml` of the bounding-box tar.gz, as the classic's `bboxes/*/*.xml` glob; `archive` is
    its official name and progress phase (the validation boxes' `val/*.xml` are read the same way).

    A gzip stream cannot resume mid-way, so a transient storage error restarts the (small) archive.
    An XML file that cannot be used stops the run, or with `skip_bad_xml` is left out and listed.
    """
    def once() -> BoxTable:
        attempt, attempt_skipped = Ignored(), Skipped()
        table = _index_boxes(source, attempt, attempt_skipped, progress, skip_bad_xml, stop, archive)
        ignored.merge(attempt)
        if skipped is not None:
            skipped.merge(attempt_skipped)
        return table

    return retry.call(lambda: f"{source.url}: cannot read", once, patience=source.patience)


def _index_boxes(source: Source, ignored: Ignored, skipped: Skipped, progress: Callback | None, skip_bad_xml: bool,
                 stop: threading.Event | None, archive: tuple[str, str] = TRAIN_BOXES) -> BoxTable:
    read = members = wanted = boxes = 0
    official, phase_name = archive
    files: list[XmlBoxes] = []
    left_out: list[tuple[str, str]] = []  # (folder, file name) of the XML files skipped as unusable
    with Phase(progress, phase_name, total_bytes=source.size, unit="files") as phase:
        files_seen = 0  # progress is told every ADVANCE_EVERY members (a callback per member cost 5% of the walk)
        for m, data, compressed in gzip_members(source, MAX_XML_BYTES, keep=_annotation):
            members += 1
            files_seen += m.is_file
            if not members % ADVANCE_EVERY:
                check_stop(stop)
                phase.advance(files_seen, compressed - read)
                read, files_seen = compressed, 0
            if m.is_dir:
                continue
            if data is None or not m.is_file:  # a file `_annotation` did not keep, or not a file: why, listed
                _wanted(m, normalize(m.name), source.url, ignored)
                continue
            name = normalize(m.name)  # a file `_annotation` kept: a folder/file.xml name
            if wanted >= MAX_XML_FILES:
                raise ArchiveError(f"{source.url}: holds more than {MAX_XML_FILES:,} XML files (the real archive "
                                   f"544,546); it is not {official}, or it is damaged: fetch it again")
            wanted += 1
            folder, file_name = name.split("/")
            ref = f"{source.url}!{m.name}"
            try:  # parsed here, as it is read: a few KB at a time, so the walk holds no XML text
                parsed = parse_boxes(data, ref)
            except AnnotationError as e:
                if not skip_bad_xml:
                    raise
                skipped.add(ref, reason(ref, e))
                left_out.append((folder, file_name))
                continue
            # one string per synset folder, not one per file
            files.append(XmlBoxes.of(sys.intern(folder), file_name, parsed))
            boxes += len(parsed)
            if boxes > MAX_BOXES:
                raise ArchiveError(f"{source.url}: holds more than {MAX_BOXES:,} boxes (the real archive about "
                                   f"615,000); it is not {official}, or it is damaged: fetch it again")
        check_stop(stop)
        phase.advance(files_seen, compressed - read if members else 0)
    if not members:
        raise ArchiveError(f"{source.url}: the archive is empty; the download is incomplete, "
                           f"fetch {official} again")
    try:  # sorted there: a name held twice is two neighbours (no set of 544,546 names kept while walking)
        if left_out:  # a name held twice is an error even where one of the two was skipped
            _no_duplicates(files, left_out)
        return BoxTable.build(files, consume=True)
    except DuplicateXml as e:
        raise ArchiveError(f"{source.url}!{e}: the archive holds this name twice; repack the archive without "
                           "duplicates") from e


def _no_duplicates(files: list[XmlBoxes], left_out: list[tuple[str, str]]) -> None:
    """`DuplicateXml` if a skipped file's name is held twice, among the skipped files or by a parsed one."""
    seen: set[tuple[str, str]] = set()
    for name in left_out:
        if name in seen:
            raise DuplicateXml("/".join(name))
        seen.add(name)
    for xml in files:
        if (xml.folder, xml.file_name) in seen:
            raise DuplicateXml(f"{xml.folder}/{xml.file_name}")


def _is_annotation_name(name: str) -> bool:
    """A `folder/file.xml` name, as the classic's `bboxes/*/*.xml` glob finds them (no hidden parts)."""
    parts = name.split("/")
    return len(parts) == 2 and parts[1].endswith(".xml") and not any(p.startswith(".") or not p for p in parts)


def _annotation(m: Any) -> bool:
    """Whether a file member's data is needed (read into memory): an annotation by its name."""
    return _is_annotation_name(normalize(m.name))


def _wanted(m: Any, name: str, url: str, ignored: Ignored) -> bool:
    """Whether a member is a `folder/file.xml` annotation to parse; others are counted as ignored."""
    if not _is_annotation_name(name):
        ignored.add(f"{url}!{m.name}", "not a folder/*.xml annotation in the bounding-box archive")
        return False
    return regular_file(m, url, ignored)


@dataclass
class BoxWalkResult:
    """What the bounding-box walk found: the box table, the members it ignored and the XML files it skipped."""

    table: BoxTable
    ignored: Ignored
    skipped: Skipped


@dataclass
class _Done:
    """The child process's outcome, as plain data."""

    table: BoxTable
    ignored: dict[str, Any]
    skipped: list[dict[str, str]]


@dataclass
class _DoneInFile:
    """The child's `_Done`, pickled into a temporary file: streamed to and from disk, it never exists in either
    process as one 50 MB pickle (at full scale) beside the objects it holds."""

    path: str

    @classmethod
    def write(cls, done: _Done, owner: int) -> "_DoneInFile":
        """The file, named after the process that is to read it (`owner`), so that one left by a run killed before
        it read the file is found and removed by a later run (`sweep`)."""
        handle, path = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{owner}-", suffix=".pickle")
        try:
            with os.fdopen(handle, "wb") as f:
                pickle.dump(done, f, protocol=pickle.HIGHEST_PROTOCOL)
        except BaseException:
            os.unlink(path)
            raise
        return cls(path)

    @staticmethod
    def sweep() -> None:
        """Remove the files that runs killed before reading them left in the temporary folder."""
        folder = tempfile.gettempdir()
        try:
            names = [n for n in os.listdir(folder) if n.startswith(TEMP_PREFIX) and n.endswith(".pickle")]
        except OSError:
            return
        for name in names:
            owner = name[len(TEMP_PREFIX):].split("-", 1)[0]
            if owner.isdigit() and not process_alive(int(owner)):
                try:
                    os.unlink(os.path.join(folder, name))
                except OSError:
                    pass

    def read(self) -> _Done:
        try:
            with open(self.path, "rb") as f:
                return pickle.load(f)
        finally:
            os.unlink(self.path)


@dataclass
class _Failed:
    error: BaseException


TEMP_PREFIX = "streamprep-boxes-"
PARENT_CHECK = 0.5  # seconds between the walk process's checks that the process that started it is alive


class BoxWalk:
    """`index_boxes` running beside the walks of the image tars; `result()` waits for it.

    Both walks are Python code, which threads would run on one core in turn. So a large archive
    (the real one: 544,546 XML files) is read by a process of its own, started with `spawn`, whose
    progress events are relayed here; a small one, where starting a process would cost more than
    it saves, by a thread. `stop` is set as soon as the walk fails, so that the caller's own walks
    stop too; a walk in a thread also stops when the caller sets it.
    """

    def __init__(self, source: Source, progress: Callback | None, skip_bad_xml: bool, stop: threading.Event,
                 archive: tuple[str, str] = TRAIN_BOXES) -> None:
        self.source, self.progress, self.skip_bad_xml, self.stop = source, progress, skip_bad_xml, stop
        self.archive = archive
        self.done = threading.Event()
        self.outcome: BoxWalkResult | _Failed | None = None
        self.process: Any = None
        if source.size >= PROCESS_MIN_BYTES:
            _DoneInFile.sweep()
            context = multiprocessing.get_context("spawn")
            self.queue = context.Queue()
            self.process = context.Process(target=_child, name="streamprep-bboxes", daemon=True,
                                           args=(source.url, source.storage_options, skip_bad_xml, self.queue,
                                                 os.getpid(), archive))
            self.process.start()
            target = self._relay
        else:
            target = self._thread
        self.thread = threading.Thread(target=target, name="bboxes", daemon=True)
        self.thread.start()

    def _finish(self, outcome: BoxWalkResult | _Failed) -> None:
        self.outcome = outcome
        self.done.set()
        if isinstance(outcome, _Failed):
            self.stop.set()

    def _thread(self) -> None:
        ignored, skipped = Ignored(), Skipped()
        try:
            table = index_boxes(self.source, ignored, self.progress, self.skip_bad_xml, skipped, self.stop,
                                self.archive)
        except BaseException as e:  # noqa: BLE001 - handed to the caller by result()
            self._finish(_Failed(e))
            return
        self._finish(BoxWalkResult(table, ignored, skipped))

    def _relay(self) -> None:
        while True:
            try:
                message = self.queue.get(timeout=0.5)
            except queue.Empty:
                if not self.process.is_alive():
                    self._finish(_Failed(ArchiveError(
                        f"{self.source.url}: the process reading the bounding boxes ended unexpectedly (exit code "
                        f"{self.process.exitcode}); run again")))
                    return
                continue
            if isinstance(message, Event):
                if self.progress:
                    self.progress(message)
                continue
            if isinstance(message, _DoneInFile):
                done = message.read()
                self._finish(BoxWalkResult(done.table, Ignored.from_state(done.ignored), Skipped(list(done.skipped))))
            else:
                self._finish(message)
            return

    @property
    def failed(self) -> bool:
        """Whether the walk has ended with an error (`result()` raises it)."""
        return self.done.is_set() and isinstance(self.outcome, _Failed)

    def result(self) -> BoxWalkResult:
        self.done.wait()
        self.thread.join()
        if self.process is not None:
            self.process.join(5)
        if isinstance(self.outcome, _Failed):
            raise self.outcome.error
        assert self.outcome is not None
        return self.outcome

    def cancel(self) -> None:
        """Stop the walk: a thread at its next member (through `stop`), a process at once."""
        self.stop.set()
        if self.process is not None and self.process.is_alive():
            self.process.terminate()
            self.process.join(5)
        self.thread.join(5)  # its last progress event before the caller reports the error, not after


def _child(url: str, storage_options: dict[str, Any], skip_bad_xml: bool, out: Any, parent: int,
           archive: tuple[str, str] = TRAIN_BOXES) -> None:
    """The bounding-box walk in its own process: progress (batched) and then the outcome, through `out`."""
    pending: dict[str, Any] = {"items": 0, "nbytes": 0, "last": time.monotonic(), "phase": "", "unit": "files"}

    def flush() -> None:
        if pending["items"] or pending["nbytes"]:
            out.put(Event("advance", pending["phase"], items=pending["items"], nbytes=pending["nbytes"],
                          unit=pending["unit"]))
            pending.update(items=0, nbytes=0)
        pending["last"] = time.monotonic()

    def relay(event: Event) -> None:
        if event.kind == "advance":
            pending.update(phase=event.phase, unit=event.unit)
            pending["items"] += event.items
            pending["nbytes"] += event.nbytes
            if time.monotonic() - pending["last"] >= RELAY_INTERVAL:
                flush()
            return
        flush()
        out.put(event)

    written: list[str] = []

    def watch() -> None:  # the process that started this one was killed (kill -9 leaves no time to stop it): end
        while True:
            if os.getppid() != parent:
                for path in written:
                    try:
                        os.unlink(path)
                    except OSError:
                        pass
                os._exit(1)
            time.sleep(PARENT_CHECK)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
    try:
        ignored, skipped = Ignored(), Skipped()
        table = index_boxes(Source(url, storage_options), ignored, relay, skip_bad_xml, skipped, archive=archive)
        flush()
        done = _DoneInFile.write(_Done(table, ignored.state(), skipped.items), parent)
        written.append(done.path)
        out.put(done)
    except BaseException as e:  # noqa: BLE001 - sent to the parent, which raises it
        try:
            out.put(_Failed(e))
        except Exception:  # noqa: BLE001 - an error that does not pickle: its text
            out.put(_Failed(ArchiveError(f"{url}: {type(e).__name__}: {e}")))
