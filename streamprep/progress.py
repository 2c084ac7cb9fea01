"""Progress events sent to an injected callback; the library itself never prints."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable, Literal, Optional


@dataclass(frozen=True)
class Event:
    """A phase starting, moving on (by `items` and `nbytes`), or ending; or a warning (its text in `phase`)."""

    kind: Literal["start", "advance", "end", "warning"]
    phase: str
    total: Optional[int] = None
    total_bytes: Optional[int] = None
    items: int = 0
    nbytes: int = 0
    unit: str = "images"


Callback = Callable[[Event], None]


def ignore(event: Event) -> None:
    """The default callback: no progress reporting."""


def warn(callback: Callback | None, message: str) -> None:
    """Tell the user something that does not stop the run (the CLI prints it at once)."""
    (callback or ignore)(Event("warning", message))


class Phase:
    """One phase of work reported to a callback; `advance` may be called from any thread."""

    def __init__(self, callback: Callback | None, phase: str, total: int | None = None,
                 total_bytes: int | None = None, unit: str = "images") -> None:
        self.callback = callback or ignore
        self.phase, self.total, self.total_bytes, self.unit = phase, total, total_bytes, unit
        self._lock = threading.Lock()

    def __enter__(self) -> "Phase":
        self.callback(Event("start", self.phase, self.total, self.total_bytes, unit=self.unit))
        return self

    def advance(self, items: int = 1, nbytes: int = 0) -> None:
        with self._lock:
            self.callback(Event("advance", self.phase, items=items, nbytes=nbytes, unit=self.unit))

    def __exit__(self, *exc: object) -> None:
        self.callback(Event("end", self.phase, unit=self.unit))
