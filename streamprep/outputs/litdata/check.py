"""verify of one LitData chunk: its header (count, offsets), each item's leaves (JPEG, class), optionally its images."""

from __future__ import annotations

import struct
from typing import BinaryIO

from ..checker import ADVANCE_EVERY, HashingReader, ShardCheck, ShardChecker
from .write import ITEM_OVERHEAD, LABEL, OFFSET, SIZES

MOST_ITEMS = 1 << 26  # a chunk whose size is not known is not believed to hold more (its offsets alone: 256 MB)


class ChunkChecker(ShardChecker):
    """Reads LitData chunks (`litdata/train/chunk-00000-of-01024.bin`) and checks them as `PyTreeLoader` reads them.

    Checked: the header (an item count, then that many + 1 offsets: the first the header's size, each item at least
    its leaf sizes and class, the last the file's size, no byte after it); each item's leaf sizes (the JPEG's, then
    8) filling exactly its span; the image a JPEG (with `decode`, one TensorFlow's decoder decodes); the class an
    int64 in 0..N-1. The labels counted are the classic's (class + 1), to compare with the manifest's class counts.
    """

    def _read(self, raw: BinaryIO, check: ShardCheck) -> None:
        f = HashingReader(raw, self.hasher())
        offsets = self._header(f, check)
        if offsets is not None:
            self._items(f, check, offsets)
        if check.complete:
            check.digest = f.digest.hexdigest()
        else:
            check.trusted = False

    def _header(self, f: HashingReader, check: ShardCheck) -> list[int] | None:
        """The chunk's offsets, or None (a problem recorded) when its header cannot be read or believed."""
        head = f.read(OFFSET)
        if len(head) < OFFSET:
            check.problem(f"truncated: {len(head)} bytes, less than a LitData chunk's item count")
            return None
        n = struct.unpack("<I", head)[0]
        if (check.size is not None and OFFSET * (n + 2) > check.size) or (check.size is None and n > MOST_ITEMS):
            check.problem(f"its header says {n:,} items, whose offsets alone pass the end of the file: the chunk is "
                          "damaged or cut short")
            return None
        table = f.read(OFFSET * (n + 1))
        if len(table) < OFFSET * (n + 1):
            check.problem(f"truncated: the file ends inside the offsets of its {n:,} items")
            return None
        offsets = list(struct.unpack(f"<{n + 1}I", table))
        return offsets if _offsets_hold(offsets, check) else None

    def _items(self, f: HashingReader, check: ShardCheck, offsets: list[int]) -> None:
        pending = pending_bytes = 0
        try:
            for k in range(len(offsets) - 1):
                if self.stop.is_set():
                    return
                span = offsets[k + 1] - offsets[k]
                data = f.read(span)
                if len(data) < span:
                    check.problem(f"truncated: the file ends {len(data):,} bytes into this item of {span:,}", k,
                                  offsets[k])
                    return
                self._item(check, k, offsets[k], data)
                check.records += 1
                pending, pending_bytes = pending + 1, pending_bytes + span
                if pending >= ADVANCE_EVERY:
                    self.phase.advance(pending, pending_bytes)
                    pending = pending_bytes = 0
        finally:
            self.phase.advance(pending, pending_bytes)
        left = f.rest()
        if left:
            check.problem(f"{left:,} bytes after the last item's end (byte {offsets[-1]:,}), which no item holds")
        check.complete = True

    def _item(self, check: ShardCheck, k: int, offset: int, data: bytes) -> None:
        """One item `sizes (jpeg, 8) | jpeg | class`."""
        image_size, label_size = SIZES.unpack_from(data)
        if label_size != LABEL.size or SIZES.size + image_size + label_size != len(data):
            check.problem(f"its leaf sizes ({image_size:,}, {label_size:,}) do not fill its {len(data):,} bytes as "
                          f"(image, class) does: ({len(data) - ITEM_OVERHEAD:,}, {LABEL.size})", k, offset)
            check.trusted = False
            return
        image = data[SIZES.size:SIZES.size + image_size]
        (cls,) = LABEL.unpack_from(data, SIZES.size + image_size)
        if 0 <= cls < self.num_classes:
            check.labels[cls + 1] += 1
        else:
            check.problem(f"class {cls} is out of range 0..{self.num_classes - 1}", k, offset)
            check.trusted = False
        for what in self.image_problems(image, "the image"):  # the output's encoding; decoded with decode
            check.problem(what, k, offset)
        check.decoded += 1 if self.decode else 0


def _offsets_hold(offsets: list[int], check: ShardCheck) -> bool:
    """Whether a chunk's offsets are a LitData header's: the first its end, each item at least its leaf sizes and
    class, the last the file's size; what is wrong recorded."""
    n = len(offsets) - 1
    if offsets[0] != OFFSET * (n + 2):
        check.problem(f"its first offset is {offsets[0]:,}, not {OFFSET * (n + 2):,} (the end of a header of {n:,} "
                      "items): not a LitData chunk, or damaged")
        return False
    short = next((k for k in range(n) if offsets[k + 1] - offsets[k] < ITEM_OVERHEAD), None)
    if short is not None:
        check.problem(f"the offsets give item {short} {offsets[short + 1] - offsets[short]} bytes, fewer than its leaf "
                      f"sizes and class take ({ITEM_OVERHEAD}): the header is damaged", short, offsets[short])
        return False
    if check.size is not None and offsets[-1] != check.size:
        check.problem(f"its offsets end at byte {offsets[-1]:,}, but the file holds {check.size:,} bytes: "
                      f"{'cut short' if offsets[-1] > check.size else 'bytes no item holds'}")
        return False
    return True
