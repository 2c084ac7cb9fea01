"""The bounding-box index: every `folder/file.xml` of the tar.gz parsed into bboxes.csv lines and boxes."""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor

from . import retry
from .archives import Source, gzip_members
from .bboxes import BoxTable, csv_lines, parse_boxes, sort_key
from .errors import AnnotationError, ArchiveError
from .index import Ignored, regular_file
from .progress import Callback, Phase
from .tarscan import normalize

XML_BATCH = 512  # XML files parsed per task
PARSERS = 2  # threads parsing XML (lxml lets go of the GIL while it parses) beside the one reading the archive
IN_FLIGHT = 8  # batches queued at most: memory stays bounded


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
