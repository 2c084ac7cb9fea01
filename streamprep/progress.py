"""Progress events sent to an injected callback, and the stop event that cancels a run; the library never prints.

Warnings go through `logging.getLogger("streamprep")` (the CLI shows them); cancellation goes
through a `threading.Event` that the caller sets and the walks and writers check. Progress
callbacks only report: throttling or dropping them changes nothing else.
"""

from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Literal, Optional

from .errors import StreamprepError


@dataclass(frozen=True)
class Event:
    """A phase starting, moving on (by `items` and `nbytes`), or ending (`failed` if it ended by an error)."""

    kind: Literal["start", "advance", "end"]
    phase: str
    total: Optional[int] = None
    total_bytes: Optional[int] = None
    items: int = 0
    nbytes: int = 0
    unit: str = "images"
    failed: bool = False
    kept: bool = False  # an advance over work an earlier run did (a kept shard): progress, but no speed


Callback = Callable[[Event], None]


class Stopped(StreamprepError):
    """The run was cancelled through its stop event (Ctrl-C, or another part of the run failed first)."""

    exit_code = 130


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread as Ctrl-C's KeyboardInterrupt is (`terminate_as_interrupt`): the run stops
    the same orderly way (workers halted and waited for, finished files listed, the lock released)."""

    exit_code = 143  # 128 + SIGTERM, as a shell reports a process SIGTERM ended


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """While inside, SIGTERM raises `Terminated` in the main thread (the first one; later ones are ignored, so the
    orderly stop is not cut short). For the command line: the library itself installs no signal handler. Does
    nothing outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminated(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated()

    before = signal.signal(signal.SIGTERM, terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def check_stop(stop: threading.Event | None) -> None:
    """Raise `Stopped` once `stop` is set: called between units of work (a header, a class tar, a batch)."""
    if stop is not None and stop.is_set():
        raise Stopped("stopped")


def ignore(event: Event) -> None:
    """The default callback: no progress reporting."""


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

    def advance(self, items: int = 1, nbytes: int = 0, kept: bool = False) -> None:
        with self._lock:
            self.callback(Event("advance", self.phase, items=items, nbytes=nbytes, unit=self.unit, kept=kept))

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.callback(Event("end", self.phase, unit=self.unit, failed=exc_type is not None))


def process_alive(pid: int) -> bool:
    """Whether a process of this number runs on this machine (another user's included): whether the run that left a
    temporary file, a lock or a lease is still under way."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError, ValueError):
        return False
    except OSError:
        return True  # someone else's process (PermissionError): alive
    return True
