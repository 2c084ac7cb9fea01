"""verify of one MDS shard: its count, offsets table and config, each sample's columns, labels, optionally images."""

from __future__ import annotations

import json
import struct
from typing import Any, BinaryIO

import numpy as np

from ..checker import ADVANCE_EVERY, HashingReader, ShardCheck, ShardChecker
from .write import CONFIG, SAMPLE_OVERHEAD

MAX_CONFIG = 1 << 20  # an MDS config is a few hundred bytes; a larger one is a damaged offsets table


class MDSChecker(ShardChecker):
    """Reads MDS shards (`mds/SPLIT/NAME.mds`) and checks them as streaming's `MDSReader` reads them.

    Checked: the sample count and offsets table (from the end of the config, never decreasing, the last one the
    file's size); the config, the ImageNet converter's (columns i: int, x: jpeg, y: int); each sample exactly its
    x's size plus 20 bytes, `i` not negative, `y` a class 0..N-1 (counted as the classic's label, y + 1, to compare
    with the manifest's class counts), `x` a JPEG (with `decode`, one TensorFlow's decoder decodes). A damaged
    opening stops the reading there (no sample can be found without it).
    """

    def _read(self, raw: BinaryIO, check: ShardCheck) -> None:
        f = HashingReader(raw, self.hasher())
        offsets = self._opening(f, check)
        read = offsets is not None and self._samples(f, check, offsets)
        extra = f.rest()
        if read and extra:
            check.problem(f"{extra:,} bytes after the last sample, which its offsets table ends at byte "
                          f"{int(offsets[-1]):,}")
            check.trusted = False
        if read and not self.stop.is_set():  # every sample found where its offsets table says
            check.complete = True
            check.digest = f.digest.hexdigest()

    def _opening(self, f: HashingReader, check: ShardCheck) -> np.ndarray | None:
        """The offsets table, once the count, the table and the config are read and found right; else None."""
        head = f.read(4)
        count = struct.unpack("<I", head)[0] if len(head) == 4 else None
        if count is None or (check.size is not None and 4 * (count + 2) > check.size):
            check.problem("not an MDS file: the sample count at its start is missing or larger than the file holds")
            check.trusted = False
            return None
        table = f.read(4 * (count + 1))
        offsets = np.frombuffer(table, "<u4").astype(np.int64) if len(table) == 4 * (count + 1) else None
        config_size = None if offsets is None else int(offsets[0]) - f.position
        if offsets is None or not 0 < config_size <= MAX_CONFIG or (np.diff(offsets) < SAMPLE_OVERHEAD).any():
            check.problem(f"the offsets table of its {count:,} samples is cut short or damaged (offsets must start "
                          "after the config and grow by at least 20 bytes a sample)")
            check.trusted = False
            return None
        problem = _config_problem(f.read(config_size))
        if problem:
            check.problem(problem)
            check.trusted = False
            return None
        if check.size is not None and int(offsets[-1]) != check.size:
            check.problem(f"its offsets table ends at byte {int(offsets[-1]):,}, the file holds {check.size:,} bytes")
            check.trusted = False
        return offsets

    def _samples(self, f: HashingReader, check: ShardCheck, offsets: np.ndarray) -> bool:
        """Read and check every sample; whether the file held them all."""
        pending = pending_bytes = 0
        whole = True
        for k in range(len(offsets) - 1):
            if self.stop.is_set():
                break
            start, size = int(offsets[k]), int(offsets[k + 1] - offsets[k])
            data = f.read(size)
            if len(data) < size:
                check.problem(f"cut short: the file ends inside this sample of {size:,} bytes", k, start)
                check.trusted = whole = False
                break
            self._sample(check, k, start, data)
            check.records += 1
            pending, pending_bytes = pending + 1, pending_bytes + size
            if pending >= ADVANCE_EVERY:
                self.phase.advance(pending, pending_bytes)
                pending = pending_bytes = 0
        self.phase.advance(pending, pending_bytes)
        return whole

    def _sample(self, check: ShardCheck, k: int, start: int, data: bytes) -> None:
        """One sample: len(x) | i | x | y."""
        x_size, i = struct.unpack_from("<Iq", data)
        if SAMPLE_OVERHEAD + x_size != len(data):
            check.problem(f"x holds {x_size:,} bytes, but the offsets table gives the sample {len(data):,} bytes "
                          f"({SAMPLE_OVERHEAD} of them its sizes, i and y)", k, start)
            check.trusted = False
            return
        (y,) = struct.unpack_from("<q", data, 12 + x_size)
        if 0 <= y < self.num_classes:
            check.labels[y + 1] += 1
        else:
            check.problem(f"y is {y}, expected a class 0..{self.num_classes - 1}", k, start)
            check.trusted = False
        if i < 0:
            check.problem(f"i is {i}, expected an image's place in its split's file list (0 or more)", k, start)
        x = data[12:12 + x_size]
        for what in self.image_problems(x, "x"):  # the output's encoding (JPEG, or its recipe's); decoded with decode
            check.problem(what, k, start)
        check.decoded += 1 if self.decode else 0


def _config_problem(data: bytes) -> str | None:
    """What is wrong with a shard's config, against the converter's columns; None if it is right."""
    try:
        config: Any = json.loads(data)
    except (ValueError, RecursionError):
        return "its config (after the offsets table) is not JSON: the opening is damaged"
    if not isinstance(config, dict) or config.get("format") != "mds":
        return "its config does not say format mds"
    got = {k: config.get(k) for k in ("column_names", "column_encodings", "column_sizes", "compression")}
    expected = {k: CONFIG[k] for k in got}
    if got != expected:
        return (f"its columns are {got}, not the ImageNet converter's {expected}: not a shard streamprep writes, "
                "or one another program changed")
    return None
