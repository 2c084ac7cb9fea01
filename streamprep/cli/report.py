"""What the CLI shows: progress bars or log lines, warnings, and the closing summary of a run."""

from __future__ import annotations

import io
import logging
import os
import shutil
import threading
import time
from typing import Any, TextIO

from ..engines.pipeline import Summary
from ..engines.preview import Preview
from ..outputs.inspect import Inspection
from ..progress import Event

LOG_INTERVAL = 15.0  # seconds between plain progress lines when stderr is not a terminal
# Characters a name from an archive may hold that would break a line or drive the terminal: C0 and C1
# controls (newline, escape, ...), DEL, and Unicode's line and paragraph separators. Shown escaped.
_UNPRINTABLE = ({c: f"\\x{c:02x}" for c in [*range(0x20), *range(0x7F, 0xA0)]} | {0x2028: "\\u2028", 0x2029: "\\u2029"}
                # a name's bytes that are not UTF-8 (Python keeps byte B as U+DC00+B): shown as the byte, never
                # written raw, where 0x9b would reach the terminal as a control sequence
                | {c: f"\\x{c - 0xDC00:02x}" for c in range(0xDC80, 0xDD00)}
                | {c: f"\\u{c:04x}" for c in [*range(0xD800, 0xDC80), *range(0xDD00, 0xE000)]})


def safe(text: str) -> str:
    """`text` with every character that could break the line or reach the terminal as a command escaped."""
    return text.translate(_UNPRINTABLE)
UNLISTED_SHOWN = 10  # skipped members and unlisted validation images listed at most
# A bar of items: tqdm's own layout but for the rate, which `Reporter._speeds` puts in the postfix.
ITEM_BAR = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]"


def per_second(value: float, unit: str) -> str:
    """A rate rounded as a reader takes it in: whole numbers from 100 up (8,745 images/s), one decimal from 1
    (12.3 MB/s), two below (0.42 MB/s)."""
    if value >= 100:
        return f"{value:,.0f} {unit}"
    return f"{value:.1f} {unit}" if value >= 1 or value == 0 else f"{value:.2f} {unit}"


def _bar_width(stream: TextIO) -> dict[str, Any]:
    """tqdm's width settings for a terminal. One that reports no size (a pseudo-terminal nobody sized: 0 rows, 0
    columns) would get bars of width 0, drawn as nothing, each leaving a blank line: those get the size of the
    environment (COLUMNS, LINES) or 80x24. Others follow the terminal as it is resized."""
    try:
        size = os.get_terminal_size(stream.fileno())
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return {"dynamic_ncols": True}  # not a real terminal (a test's stream): tqdm's own default
    if size.columns > 0 and size.lines > 0:
        return {"dynamic_ncols": True}
    fallback = shutil.get_terminal_size()
    return {"ncols": fallback.columns, "nrows": fallback.lines}


class Reporter:
    """Draws a tqdm bar per phase on a terminal, or writes plain log lines otherwise.

    A phase whose item count is known (writing) counts items; one that only knows its byte size
    (walking an archive) counts bytes. Either way the bar shows MB/s and an ETA.
    """

    def __init__(self, stream: TextIO, bars: bool) -> None:
        self.stream, self.bars = stream, bars
        self.state: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()  # events come from the walks' and writers' threads

    def __call__(self, event: Event) -> None:
        with self.lock:
            self._event(event)

    def _event(self, event: Event) -> None:
        if event.kind == "start":
            self._start(event)
            return
        st = self.state.get(event.phase)
        if st is None:
            return  # a late event of a phase already ended: its bar is gone and stays gone
        if event.kind == "advance" and event.kept:
            self._kept(st, event)
        elif event.kind == "advance":
            self._advance(st, event)
        else:
            del self.state[event.phase]
            self._end(st, event)

    def _start(self, event: Event) -> None:
        now = time.monotonic()
        by_bytes = event.total is None and event.total_bytes is not None
        st = self.state[event.phase] = {"items": 0, "bytes": 0, "kept": 0, "t0": now, "last": now,
                                        "unit": event.unit, "by_bytes": by_bytes,
                                        "total": event.total_bytes if by_bytes else event.total}
        if self.bars:
            from tqdm import tqdm
            # Bytes: tqdm's own scaled rate (121MB/s). Items: the rates of `_speeds` (8,745 images/s), not tqdm's
            # 8745.13 images/s.
            options = dict(unit="B", unit_scale=True, unit_divisor=1024) if by_bytes else dict(
                unit=f" {event.unit}", bar_format=ITEM_BAR)
            st["bar"] = tqdm(total=st["total"], desc=event.phase, file=self.stream, smoothing=0.1,
                             **_bar_width(self.stream), **options)
        else:
            self.stream.write(f"{event.phase}: started\n")

    def _kept(self, st: dict[str, Any], event: Event) -> None:
        """Work an earlier run did: out of the total, not a speed."""
        st["kept"] += event.items
        if st["total"] and not st["by_bytes"]:
            st["total"] -= event.items
            if self.bars:
                st["bar"].total = st["total"]
                if not st["total"]:  # every item kept: nothing left to count, no rate to show
                    st["bar"].bar_format = (f"{{desc}}: nothing to write, {st['kept']:,} {st['unit']} kept from an "
                                            "earlier run")
                st["bar"].refresh()

    def _advance(self, st: dict[str, Any], event: Event) -> None:
        now = time.monotonic()
        st["items"] += event.items
        st["bytes"] += event.nbytes
        if self.bars:
            extra = f"{st['items']:,} {st['unit']}" if st["by_bytes"] else self._speeds(st, now)
            st["bar"].set_postfix_str(extra, refresh=False)
            st["bar"].update(event.nbytes if st["by_bytes"] else event.items)
        elif now - st["last"] >= LOG_INTERVAL:
            st["last"] = now
            self.stream.write(f"{event.phase}: {self._progress(st, now)}\n")

    def _end(self, st: dict[str, Any], event: Event) -> None:
        if self.bars:
            if event.failed:
                st["bar"].set_postfix_str("failed", refresh=False)
            elif st["by_bytes"] and st["total"]:
                st["bar"].update(st["total"] - st["bar"].n)  # headers, padding and skipped members: read too
            st["bar"].close()
        else:
            outcome = "failed" if event.failed else "done"
            self.stream.write(f"{event.phase}: {outcome}, {self._progress(st, time.monotonic(), done=True)}\n")
        self.stream.flush()

    @staticmethod
    def _speeds(st: dict[str, Any], now: float) -> str:
        """Items and MB a second since the phase started, as a bar's postfix; and what an earlier run did."""
        elapsed = max(now - st["t0"], 1e-9)
        text = (f"{per_second(st['items'] / elapsed, st['unit'] + '/s')}, "
                f"{per_second(st['bytes'] / elapsed / 1e6, 'MB/s')}")
        return text + (f", {st['kept']:,} kept" if st["kept"] else "")

    @staticmethod
    def _progress(st: dict[str, Any], now: float, done: bool = False) -> str:
        elapsed = max(now - st["t0"], 1e-9)
        total = f"/{st['total']:,}" if st["total"] and not st["by_bytes"] else ""
        text = (f"{st['items']:,}{total} {st['unit']}, {st['bytes'] / 1e6:,.1f} MB, "
                f"{per_second(st['bytes'] / elapsed / 1e6, 'MB/s')}")
        counted = st["bytes"] if st["by_bytes"] else st["items"]
        if done:
            text += f", {elapsed:.1f} s"
            if st["kept"]:
                text += f", {st['kept']:,} {st['unit']} kept from an earlier run"
        elif st["total"] and counted:
            text += f", ETA {elapsed * (st['total'] - counted) / counted:.0f} s"
        return text



class WarningHandler(logging.Handler):
    """streamprep's warnings (`logging.getLogger("streamprep")`) as `streamprep: warning: ...` lines."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(logging.WARNING)
        self.stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.stream.write(f"streamprep: warning: {safe(record.getMessage())}\n")
            self.stream.flush()
        except Exception:  # noqa: BLE001 - as logging.StreamHandler: a closed stream is not the run's problem
            self.handleError(record)


def _folder_tree(s: Summary) -> list[str]:
    tree = s.folder_tree
    if tree is None:
        return []
    lines = [f"streamprep: wrote the folder layout under {tree.base}"]
    for name, part in tree.parts.items():
        lines.append(f"  {name:<10} {part.written:>9,} files written ({part.nbytes / 1e6:,.1f} MB), "
                     f"{part.kept:,} already complete")
    unlisted = tree.unlisted_validation
    if unlisted:
        shown = ", ".join(sorted(unlisted)[:UNLISTED_SHOWN]) + (" ..." if len(unlisted) > UNLISTED_SHOWN else "")
        lines.append(f"  {len(unlisted):,} validation image(s) not in the validation labels file, left in "
                     f"{tree.base}/ILSVRC2012_img_val/ as the classic leaves them: {shown}")
    return lines


def _listed(title: str, items: list[dict[str, str]]) -> list[str]:
    lines = [f"  {title}"]
    lines += [f"    {short_ref(item['member'])}: {item['reason']}" for item in items[:UNLISTED_SHOWN]]
    if len(items) > UNLISTED_SHOWN:
        lines.append(f"    ... and {len(items) - UNLISTED_SHOWN:,} more")
    return lines


def _checked(s: Summary) -> str:
    """How the kept shards were checked: "xxh3-128 checked against the manifest", and with another --checksum than
    the earlier manifest's, what they are listed under now."""
    now = s.manifest.checksum if s.manifest else None
    checked = s.checked or now
    return f"{checked} checked against the manifest" + (f", {now} recorded" if now and now != checked else "")


def _shards(s: Summary) -> list[str]:
    totals = s.manifest.totals if s.manifest else None
    if totals is None:
        return []
    engine = " (Apache Beam)" if s.engine == "beam" else ""
    total = _shard_count(s)
    if _wrote_no_shard(s):  # a rerun of a finished conversion: say what it did
        lines = [f"streamprep: kept {s.out}{engine}: {total:,} of {total:,} shards were already complete "
                 f"({_checked(s)}); wrote no shard"]
    else:
        lines = [f"streamprep: wrote {s.out}{engine}"]
    for name, split in totals.splits.items():
        lines.append(f"  {name:<10} {split.images:>9,} images in {split.shards:,} shards, {split.classes:,} classes, "
                     f"{split.boxes:,} boxes, {split.bytes / 1e6:,.1f} MB")
    csv = totals.bboxes_csv
    if csv is not None:
        lines.append(f"  bboxes.csv {csv.boxes:>9,} boxes from {csv.files:,} XML files")
    lines += _fixups(totals.fixups)
    if s.shards_kept and not _wrote_no_shard(s):
        lines.append(f"  resumed    {s.shards_kept:>9,} of {total:,} shards were already complete "
                     f"({_checked(s)}) and were kept")
    if s.index_reused:
        lines.append("  index      reused the one saved by an earlier run (the downloads are unchanged)")
    if totals.skipped:
        lines += _listed(f"skipped {len(totals.skipped):,} bad input file(s) (also listed in manifest.json):",
                         totals.skipped)
    if totals.ignored:
        lines.append("  ignored members:")
        for reason, entry in totals.ignored.items():
            lines.append(f"    {entry['count']:,} {reason}")
            lines.append(f"        e.g. {short_ref(entry['examples'][0])}" if entry["examples"] else "")
    return [line for line in lines if line]


def _shard_count(s: Summary) -> int:
    """The run's shards: those it kept and wrote (counted alike), or the manifest's entries if it did not count."""
    if s.shards_written is not None:
        return s.shards_kept + s.shards_written
    return len(s.manifest.shards) if s.manifest else s.shards_kept


def _wrote_no_shard(s: Summary) -> bool:
    """Whether every shard was kept from an earlier run (a rerun of a finished conversion)."""
    return bool(s.shards_kept) and s.shards_kept >= _shard_count(s)


def short_ref(ref: str) -> str:
    """`archive!member` with the archive's folder or URL left out: the name is what a reader looks for."""
    archive, sep, member = ref.partition("!")
    return archive.rstrip("/").rsplit("/", 1)[-1] + sep + member


FIXUP_WORDS = {"png_to_jpeg": "PNG re-encoded as JPEG", "cmyk_to_rgb": "CMYK JPEG re-encoded as RGB"}


def _fixups(fixed: dict[str, list[str]]) -> list[str]:
    """The classic's fix-ups, by what each did, with the images it was done to."""
    lines = [f"  fix-ups    {sum(len(v) for v in fixed.values()):>9,}"]
    for kind, names in fixed.items():
        shown = ", ".join(names[:4]) + (" ..." if len(names) > 4 else "")
        lines.append(f"    {len(names):,} {FIXUP_WORDS.get(kind, kind)}: {shown}")
    return lines


def _rates(s: Summary) -> list[str]:
    """What this run itself did (kept shards are not its work), and how fast."""
    seconds = max(s.seconds, 1e-9)
    if _wrote_no_shard(s):  # no work of its own, no speed
        return [f"  wall time {s.seconds:.1f} s"]
    lines = []
    if s.images_written is not None:
        written = f"  written by this run: {s.images_written:,} images"
        if s.bytes_written is not None:
            written += f", {s.bytes_written / 1e6:,.1f} MB"
        lines.append(written + (" (Beam metrics)" if s.engine == "beam" else ""))
    text = f"  wall time {s.seconds:.1f} s"
    if s.images_written is not None:
        text += f", {per_second(s.images_written / seconds, 'images/s')}"
    if s.bytes_read is not None:
        text += f", {per_second(s.bytes_read / seconds / 1e6, 'MB/s')} of images"
    return lines + [text]


def format_summary(s: Summary) -> str:
    """The closing report of a conversion, on either engine."""
    lines = _folder_tree(s) + _shards(s)
    if s.manifest is not None:
        lines += _rates(s)
    return "".join(safe(line) + "\n" for line in lines)


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n:,} bytes"


def format_preview(p: Preview) -> str:
    """`streamprep plan`'s report, at most 80 columns where names allow."""
    lines = ["streamprep plan: what convert would do", "", "downloads:"]
    for d in p.downloads:
        official = "the official file" if d.official else "not the official file by name and size"
        lines.append(f"  {d.role:<5} {_size(d.size):>10}  {official}")
        lines.append(f"        {d.url}")
    lines += ["", "images:"]
    for name, split in p.splits.items():
        lines.append(f"  {name:<10} {split.images:>9,} images, {split.classes:,} classes, {split.shards:,} shards")
    lines.append(f"  boxes      {p.boxes:>9,} from {p.box_files:,} XML files")
    lines += _fixups(p.fixups)
    if p.ignored:
        lines.append("  ignored members:")
        for reason, entry in p.ignored.items():
            lines.append(f"    {entry['count']:,} {reason}")
    if p.skipped:
        lines.append(f"  {len(p.skipped):,} bad XML file(s) skipped (--on-bad-xml skip)")
    lines += ["", f"output: {p.out or '(none: --no-shards)'}", f"  {p.out_state}"]
    if p.refused:
        lines.append(f"  convert would stop: {p.refused}")
    for name, split in p.splits.items():
        write = split.shards - split.shards_kept
        kept = f", {split.shards_kept:,} kept (finished earlier)" if split.shards_kept else ""
        lines.append(f"  {name:<10} {write:>9,} shards to write{kept}")
    exact = "exactly" if p.bytes_low == p.bytes_high else "between"
    size = _size(p.bytes_low) if p.bytes_low == p.bytes_high else f"{_size(p.bytes_low)} and {_size(p.bytes_high)}"
    lines.append(f"  to write   {exact} {size}")
    lines.append(f"             ({p.bytes_low:,} to {p.bytes_high:,} bytes: image sizes are read when writing)")
    if p.fixups:
        lines.append("             (fix-up files counted at their size before re-encoding)")
    if p.free_bytes is not None:
        fits = ("enough" if p.free_bytes >= p.space_check_bytes else
                f"NOT enough for convert's check, which asks for {_size(p.space_check_bytes)} (--no-space-check)")
        lines.append(f"  free space {_size(p.free_bytes)} at --out: {fits}")
    index = ("reused the index saved by an earlier run" if p.index_reused else
             "saved the index for convert to reuse" if p.index_saved else "index not saved")
    lines += [f"  {index}", f"  planned in {p.seconds:.1f} s"]
    return "".join(safe(line) + "\n" for line in lines)


def _inspected_entry(e: dict[str, Any], boxes: bool) -> list[str]:
    """One entry of `inspect`'s report: a record or sample, a download's image, a box, an index line, a file, a
    label file's line."""
    if "filename" in e:  # a record or a sample
        size = f"{e['width']}x{e['height']}  " if e["width"] is not None else ""
        nbytes = f"{e['bytes']:,} bytes" if isinstance(e["bytes"], int) else "no image"
        label = f"label {e['label']}" + (f" {e['synset']}" if e["synset"] else "")
        lines = [f"  {e['filename']}  {label}  {size}{nbytes}" + (f"  {len(e['boxes'])} box(es)" if boxes else "")]
        lines += [f"      {e['text']}"] if e["text"] is not None else []
        return lines + [f"      box {box}" for box in e["boxes"][:3]]
    if "member" in e:  # an image of a download
        return [f"  {e['member']}  label {e['label']} {e['synset']}  {e['bytes']:,} bytes"] + (
            [f"      {e['text']}"] if e.get("text") is not None else [])
    if "box" in e:
        return [f"  {e['image']}  {e['box']}"]
    if "offset" in e:  # a TFRecord shard's DALI index
        return [f"  record at byte {e['offset']:,}, {e['length']:,} bytes"]
    if "members" in e:  # a WebDataset shard's DALI index
        return [f"  {e['key']}  " + ", ".join(f".{m['ext']} at byte {m['offset']:,} ({m['size']:,})"
                                            for m in e["members"])]
    if "name" in e:  # a file listed by manifest.json, _info.json or dataset_info.json
        nbytes = f", {e['bytes']:,} bytes" if e.get("bytes") is not None else ""
        index = f", index {e['index'].rsplit('/', 1)[-1]}" if e.get("index") else ""
        return [f"  {e['name']}  {e['records']:,} records{nbytes}{index}"]
    text = f"  {e['text']}" if e.get("text") else ""
    if "image" in e:  # a validation labels file
        return [f"  line {e['line']:,}: {e['image']}  {e['synset']}{text}"]
    if "line" in e:  # a synsets list
        return [f"  line {e['line']:,}: {e['synset']}{text}"]
    return [f"  {e['synset']}{text}"]  # a metadata file


def format_inspection(i: Inspection) -> str:
    """`streamprep inspect`'s report: what the file is and says of itself, how it numbers its labels, counts, the
    first entries, members left out and why, notes."""
    import textwrap

    lines = [f"{i.url}", f"  {i.kind}, {_size(i.size)}"]
    lines += [f"  {name}: {value}" for name, value in i.facts.items()]
    if i.label_numbering:
        lines += textwrap.wrap(i.label_numbering, 80, initial_indent="  labels: ", subsequent_indent=" " * 10)
    lines += [f"  {name:<26} {count:>12,}" for name, count in i.counts.items()]
    if i.per_class:
        shown = list(i.per_class.items())
        lines.append("  images per class: " + ", ".join(f"{s} {n:,}" for s, n in shown[:6])
                     + (f" ... ({len(shown):,} classes)" if len(shown) > 6 else ""))
    if i.entries:
        lines += ["", f"  the first {len(i.entries):,}:"]
        for e in i.entries:
            lines += _inspected_entry(e, "boxes" in i.counts)
        if i.more:
            lines.append(f"  ... and {i.more:,} more (--limit N)")
    if i.ignored:
        lines += ["", "  left out, and why:"]
        for reason, entry in i.ignored.items():
            lines.append(f"    {entry['count']:,} {reason}")
            if entry["examples"]:
                lines.append(f"        e.g. {entry['examples'][0].rsplit('!', 1)[-1]}")
    if i.notes:
        lines.append("")
        for note in i.notes:
            lines += textwrap.wrap(note, 80, initial_indent="  note: ", subsequent_indent=" " * 8)
    return "".join(safe(line) + "\n" for line in lines)
