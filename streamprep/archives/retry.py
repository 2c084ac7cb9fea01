"""Retrying transient storage errors (5xx, resets, timeouts) with exponential backoff."""

from __future__ import annotations

import random
import time
from typing import Callable, TypeVar

T = TypeVar("T")

ATTEMPTS = 6
FIRST_DELAY = 0.1  # seconds; doubled after each failure, with jitter
# Libraries whose exceptions are network trouble, whatever their class (backends differ).
NETWORK_MODULES = ("aiohttp", "botocore", "aiobotocore", "urllib3", "requests", "google", "http", "ssl", "asyncio")
PERMANENT = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError, FileExistsError)


def transient(error: BaseException) -> bool:
    """Whether `error` (or what caused it) looks like a failure that a retry may cure."""
    from ..errors import StreamprepError

    seen = 0
    while error is not None and seen < 5:
        if isinstance(error, StreamprepError):  # our own verdict (a corrupt archive, retries run out): final
            return False
        if isinstance(error, PERMANENT):
            return False
        status = getattr(error, "status", None) or getattr(error, "code", None)
        if isinstance(status, int) and 400 <= status < 600:
            return status >= 500 or status in (408, 429)
        if isinstance(error, (TimeoutError, ConnectionError)):
            return True
        if isinstance(error, OSError):
            return getattr(error, "errno", None) not in (28, 30)  # no space left, read-only: not transient
        if type(error).__module__.split(".")[0] in NETWORK_MODULES or type(error).__name__ == "FSTimeoutError":
            return True
        error = error.__cause__ or error.__context__
        seen += 1
    return False


def call(what: Callable[[], str], fn: Callable[[], T], attempts: int = ATTEMPTS, error: type | None = None) -> T:
    """`fn()`, retried on transient errors; the last one is raised as `error` (ArchiveError) naming `what()`."""
    from ..errors import ArchiveError

    error = error or ArchiveError
    for attempt in range(attempts):
        try:
            return fn()
        except Exception as e:
            if not transient(e):
                raise
            if attempt == attempts - 1:
                raise exhausted(error, f"{what()}: {type(e).__name__}: {str(e)[:200]}", attempts) from e
            pause(attempt)
    raise AssertionError("unreachable")


def exhausted(error: type, text: str, attempts: int = ATTEMPTS) -> Exception:
    """The error reporting that retries ran out; a `StreamprepError`, so it is never retried again further up."""
    return error(f"{text} (failed {attempts} attempts); check the connection and the URL, then rerun: "
                 "finished shards are kept")


def pause(attempt: int) -> None:
    time.sleep(FIRST_DELAY * (2 ** attempt) * (0.5 + random.random()))
