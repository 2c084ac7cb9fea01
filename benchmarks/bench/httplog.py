"""The HTTP server's request log: totals, per-file groups, and attribution to streamprep's phases."""

from __future__ import annotations

import re
import threading
from collections import defaultdict
from typing import Any

from .layout import BBOX_TARGZ, TRAIN_TAR, VAL_TAR

PHASE_FILE = {"bounding boxes": BBOX_TARGZ, "index validation": VAL_TAR, "write validation": VAL_TAR,
              "index train": TRAIN_TAR, "write train": TRAIN_TAR}  # which download each phase reads


class Stats:
    """Requests served: totals, and a log (arrival time, method, file, bytes, status) for the phases."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.log: list[tuple[float, str, str, int, int, int, int]] = []  # ..., status, first byte
            self.connections = self.in_flight = self.max_in_flight = self.aborted = 0

    def enter(self) -> None:
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def leave(self, arrived: float, method: str, path: str, asked: int, sent: int, status: int, start: int) -> None:
        with self.lock:
            self.in_flight -= 1
            self.log.append((arrived, method, path, asked, sent, status, start))

    def connected(self) -> None:
        with self.lock:
            self.connections += 1

    def summary(self) -> dict[str, Any]:
        with self.lock:
            log = list(self.log)
            out = {"requests": len(log), "bytes": sum(e[4] for e in log), "connections": self.connections,
                   "max_in_flight": self.max_in_flight, "aborted_responses": self.aborted}
        out["mb"] = round(out["bytes"] / 1e6, 1)
        out["by_method"] = _count(log, lambda e: e[1])
        out["by_status"] = _count(log, lambda e: str(e[5]))
        out["by_file"] = {name: _group(entries) for name, entries in _split(log, lambda e: e[2]).items()}
        return out


def _count(log, key) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for e in log:
        counts[key(e)] += 1
    return dict(sorted(counts.items()))


def _split(log, key) -> dict[str, list]:
    groups: dict[str, list] = defaultdict(list)
    for e in log:
        groups[key(e)].append(e)
    return dict(groups)


def _group(entries: list) -> dict[str, Any]:
    gets = [e for e in entries if e[1] == "GET"]
    sent = sum(e[4] for e in entries)
    return {"requests": len(entries), "head": len(entries) - len(gets), "get": len(gets), "mb": round(sent / 1e6, 2),
            "mean_get_kb": round(sum(e[4] for e in gets) / len(gets) / 1e3, 1) if gets else 0}


def attribute(log: list, lines: list[tuple[float, str]]) -> dict[str, Any]:
    """Requests per phase, by arrival time between a phase's `started` and `done` lines."""
    spans: list[list[Any]] = []
    for t, line in lines:
        m = re.match(r"^(.+?): (started|done)\b", line)
        if not m:
            continue
        if m[2] == "started":
            spans.append([m[1], t, None])
        else:
            for span in reversed(spans):
                if span[0] == m[1] and span[2] is None:
                    span[2] = t
                    break
    phases: dict[str, list] = defaultdict(list)
    for e in log:  # phases run side by side (the bounding boxes beside the index walks): match the file too
        live = [s[0] for s in spans if s[1] <= e[0] <= (s[2] if s[2] is not None else float("inf"))]
        name = next((n for n in live if PHASE_FILE.get(n) == e[2]), live[0] if live else "outside phases")
        phases[name].append(e)
    order = [s[0] for s in spans] + ["outside phases"]
    return {name: {**_group(phases[name]), "seconds": round(s[2] - s[1], 2) if (s := next(
        (x for x in spans if x[0] == name and x[2] is not None), None)) else None}
        for name in order if name in phases}
