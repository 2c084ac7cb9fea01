"""Timed sides, several tries each in one page-cache mode: the tries alternate round by round, so noise on a
shared machine hits every side; each try is a sampled subprocess; the fastest try is kept, with all the others."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from . import procs
from .timing import best_of


@dataclass
class Side:
    """One timed contender: its command, the folder it writes (emptied before each try) and how many tries."""

    name: str
    cmd: list[str]
    folder: Path
    repeats: int
    outputs: Callable[[], int]  # allocated bytes of its final outputs, read after a try
    stdout: Path | None = None  # the command's stdout goes to this file (the `cat` floor)
    after: Callable[[dict[str, Any]], None] | None = None  # adds a finished try's own figures to its dict


class Failed(Exception):
    """A try exited with an error."""

    def __init__(self, side: str, mode: str, figures: dict[str, Any]) -> None:
        super().__init__(f"{side} failed ({mode} page cache, exit status {figures['returncode']})")
        self.figures = figures


def run(sides: list[Side], mode: str, prepare: Callable[[], Any], images: int, input_bytes: int, timeout: float,
        logs: Path, sync_after: bool = False) -> dict[str, dict[str, Any]]:
    """Each side's tries, `prepare()` (the page cache warmed or dropped) untimed before each, and with `sync_after` a
    `sync` timed at the end of each (`procs.timed`); per side, the best try's figures with every try's
    (`timing.best_of`). Raises Failed on the first try that fails."""
    tries: dict[str, list[dict[str, Any]]] = {s.name: [] for s in sides}
    for round_ in range(max(s.repeats for s in sides)):
        for s in sides:
            if round_ >= s.repeats:
                continue
            print(f"{mode}: {s.name}, try {round_ + 1} of {s.repeats} ...", file=sys.stderr)
            x = procs.timed(s.cmd, [s.folder], timeout, logs / f"{s.name}.log", s.stdout, prepare, sync_after)
            if x["returncode"] != 0:
                raise Failed(s.name, mode, x)
            procs.finish_run(x, images, input_bytes, s.outputs())
            if s.after:
                s.after(x)
            tries[s.name].append(x)
    return {name: best_of(t) for name, t in tries.items()}
