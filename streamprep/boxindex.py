"""The bounding-box index: every `folder/file.xml` of the tar.gz parsed into bboxes.csv lines and boxes."""

from __future__ import annotations

import multiprocessing
import queue
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable

from . import retry
from .archives import Source, gzip_members
from .bboxes import BoxTable, csv_lines, parse_boxes, sort_key
from .errors import AnnotationError, ArchiveError
from .index import Ignored, regular_file
from .progress import Callback, Event, Phase
from .tarscan import normalize

XML_BATCH = 512  # XML files parsed per task
PARSERS = 2  # threads parsing XML (lxml lets go of the GIL while it parses) beside the one reading the archive
IN_FLIGHT = 8  # batches queued at most: memory stays bounded
PROCESS_MIN_BYTES = 2 << 20  # a bounding-box archive this large is read by a process of its own (see BoxWalk)
RELAY_INTERVAL = 0.2  # seconds between progress events sent from that process


def index_boxes(source: Source, ignored: Ignored, progress: Callback | None = None,
                skip_bad_xml: bool = False) -> BoxTable:
    """Read every `folder/file.xml` of the bounding-box tar.gz, as the classic's `bboxes/*/*.xml` glob.

    A gzip stream cannot resume mid-way, so a transient storage error restarts the (small) archive.
    An XML file that cannot be used stops the run, or with `skip_bad_xml` is left out and listed.
    """
    def once() -> BoxTable:
        attempt = Ignored()
        table = _index_boxes(source, attempt, progress, skip_bad_xml)
        ignored.merge(attempt)
        return table

    return retry.call(lambda: f"{source.url}: cannot read", once)


def _parse(batch: list[tuple[str, str, str, bytes]], skip_bad_xml: bool, ignored: Ignored) -> list[tuple[str, str]]:
    """(sort key, csv lines) of each (folder, file name, member ref, XML bytes), in order."""
    out = []
    for folder, file_name, ref, data in batch:
        try:
            boxes = parse_boxes(data, ref)
        except AnnotationError as e:
            if not skip_bad_xml:
                raise
            ignored.skip(ref, str(e))
            continue
        out.append((sort_key(folder, file_name), csv_lines(file_name[:-len(".xml")], boxes)))
    return out


def _index_boxes(source: Source, ignored: Ignored, progress: Callback | None, skip_bad_xml: bool) -> BoxTable:
    files: list[tuple[str, str]] = []
    seen: set[str] = set()
    read = members = 0
    batch: list[tuple[str, str, str, bytes]] = []
    pending: deque[Future] = deque()
    with Phase(progress, "bounding boxes", total_bytes=source.size, unit="files") as phase, \
            ThreadPoolExecutor(PARSERS, thread_name_prefix="xml") as pool:

        def submit() -> None:
            pending.append(pool.submit(_parse, list(batch), skip_bad_xml, ignored))
            batch.clear()
            while len(pending) > IN_FLIGHT or (pending and pending[0].done()):
                files.extend(pending.popleft().result())

        try:
            for m, data, compressed in gzip_members(source):
                members += 1
                phase.advance(int(m.is_file), compressed - read)
                read = compressed
                if m.is_dir:
                    continue
                name = normalize(m.name)
                parts = name.split("/")
                if len(parts) != 2 or not parts[1].endswith(".xml") or any(p.startswith(".") or not p for p in parts):
                    ignored.add("not a folder/*.xml annotation in the bounding-box archive", f"{source.url}!{m.name}")
                    continue
                if not regular_file(m, source.url, ignored):
                    continue
                if name in seen:
                    raise ArchiveError(f"{source.url}!{m.name}: the archive holds this name twice; "
                                       "repack the archive without duplicates")
                seen.add(name)
                batch.append((parts[0], parts[1], f"{source.url}!{m.name}", data))
                if len(batch) >= XML_BATCH:
                    submit()
            if batch:
                submit()
            while pending:
                files.extend(pending.popleft().result())
        except BaseException:
            for future in pending:
                future.cancel()
            raise
    if not members:
        raise ArchiveError(f"{source.url}: the archive is empty; the download is incomplete, "
                           "fetch ILSVRC2012_bbox_train_v2.tar.gz again")
    return BoxTable.build(files)


class BoxWalk:
    """`index_boxes` running beside the walks of the image tars; `result()` waits for it.

    Both walks are Python code, which threads would run on one core in turn. So a large archive
    (the real one: 544,546 XML files) is read by a process of its own, started with `spawn`, whose
    progress events are relayed here; a small one, where starting a process would cost more than
    it saves, by a thread. `failed` is called as soon as the walk fails, so that the caller can stop
    its own walk.
    """

    def __init__(self, source: Source, progress: Callback | None, skip_bad_xml: bool,
                 failed: Callable[[], None]) -> None:
        self.source, self.progress, self.skip_bad_xml, self.failed = source, progress, skip_bad_xml, failed
        self.done = threading.Event()
        self.outcome: tuple[Any, ...] = ()
        self.process: Any = None
        if source.size >= PROCESS_MIN_BYTES:
            context = multiprocessing.get_context("spawn")
            self.queue = context.Queue()
            self.process = context.Process(target=_child, name="streamprep-bboxes", daemon=True,
                                           args=(source.url, source.storage_options, skip_bad_xml, self.queue))
            self.process.start()
            target = self._relay
        else:
            target = self._thread
        self.thread = threading.Thread(target=target, name="bboxes", daemon=True)
        self.thread.start()

    def _finish(self, outcome: tuple[Any, ...]) -> None:
        self.outcome = outcome
        self.done.set()
        if outcome[0] == "error":
            self.failed()

    def _thread(self) -> None:
        ignored = Ignored()
        try:
            table = index_boxes(self.source, ignored, self.progress, self.skip_bad_xml)
        except BaseException as e:  # noqa: BLE001 - handed to the caller by result()
            self._finish(("error", e))
            return
        self._finish(("done", table, ignored))

    def _relay(self) -> None:
        while True:
            try:
                message = self.queue.get(timeout=0.5)
            except queue.Empty:
                if not self.process.is_alive():
                    self._finish(("error", ArchiveError(
                        f"{self.source.url}: the process reading the bounding boxes ended unexpectedly (exit code "
                        f"{self.process.exitcode}); run again")))
                    return
                continue
            if message[0] == "event":
                if self.progress:
                    self.progress(message[1])
                continue
            if message[0] == "done":
                message = ("done", message[1], Ignored.from_state(message[2]))
            self._finish(message)
            return

    def result(self) -> tuple[BoxTable, Ignored]:
        self.done.wait()
        self.thread.join()
        if self.process is not None:
            self.process.join(5)
        if self.outcome[0] == "error":
            raise self.outcome[1]
        return self.outcome[1], self.outcome[2]

    def cancel(self) -> None:
        """Stop the walk if it runs in a process (a thread finishes on its own, stopped by its callback)."""
        if self.process is not None and self.process.is_alive():
            self.process.terminate()
            self.process.join(5)


def _child(url: str, storage_options: dict[str, Any], skip_bad_xml: bool, out: Any) -> None:
    """The bounding-box walk in its own process: progress (batched) and then the outcome, through `out`."""
    pending: dict[str, Any] = {"items": 0, "nbytes": 0, "last": time.monotonic(), "phase": "", "unit": "files"}

    def flush() -> None:
        if pending["items"] or pending["nbytes"]:
            out.put(("event", Event("advance", pending["phase"], items=pending["items"], nbytes=pending["nbytes"],
                                    unit=pending["unit"])))
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
        out.put(("event", event))

    try:
        ignored = Ignored()
        table = index_boxes(Source(url, storage_options), ignored, relay, skip_bad_xml)
        out.put(("done", table, ignored.state()))
    except BaseException as e:  # noqa: BLE001 - sent to the parent, which raises it
        try:
            out.put(("error", e))
        except Exception:  # noqa: BLE001 - an error that does not pickle: its text
            out.put(("error", ArchiveError(f"{url}: {type(e).__name__}: {e}")))
