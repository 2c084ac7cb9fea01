"""Retrying transient storage errors (5xx, resets, timeouts) with exponential backoff."""

from __future__ import annotations

import random
import threading
import time
from typing import Callable, Iterator, TypeVar

T = TypeVar("T")

ATTEMPTS = 6
FIRST_DELAY = 0.1  # seconds; doubled after each failure, with jitter
# Libraries whose exceptions are network trouble, whatever their class (backends differ).
NETWORK_MODULES = ("aiohttp", "botocore", "aiobotocore", "urllib3", "requests", "google", "http", "ssl", "asyncio")
PERMANENT = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError, FileExistsError)
# Errors of a storage client that no retry cures, by class name (the client libraries are optional), with the hint.
PERMANENT_NAMES = {
    "NoCredentialsError": "no credentials found; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or a profile), or "
                          "pass --storage-option s3.anon=true for a public bucket",
    "PartialCredentialsError": "incomplete credentials; set both the key and the secret",
    "NoRegionError": "no region set; set AWS_DEFAULT_REGION or pass --storage-option s3.client_kwargs=...",
    "ParamValidationError": "the storage client refused the request's parameters; check the URL and the "
                            "--storage-option values",
    "DefaultCredentialsError": "no Google Cloud credentials found; run `gcloud auth application-default login` or "
                               "set GOOGLE_APPLICATION_CREDENTIALS, or pass --storage-option gs.token=anon",
}
PATIENCE = 3  # a server may answer nothing for this many idle-read timeouts (--timeout) before a run gives up
TIMEOUT_NAMES = ("TimeoutError", "ServerTimeoutError", "ConnectTimeoutError", "ReadTimeoutError", "FSTimeoutError",
                 "ConnectTimeout", "ReadTimeout")


def status_of(error: BaseException | None) -> int | None:
    """The HTTP status an error carries: aiohttp's `status`, or a botocore ClientError's response status."""
    if error is None:
        return None
    status = getattr(error, "status", None) or getattr(error, "code", None) or _response_status(error)
    return status if isinstance(status, int) else None


def _response_status(error: BaseException) -> int | None:
    """The HTTP status of a botocore ClientError (NoSuchBucket 404, AccessDenied 403, SlowDown 503...)."""
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        return status if isinstance(status, int) else None
    return None


def _chain(error: BaseException | None) -> Iterator[BaseException]:
    """`error` and what caused it, nearest first (five at most: backends wrap a few times, never more)."""
    seen = 0
    while error is not None and seen < 5:
        yield error
        error = error.__cause__ or error.__context__
        seen += 1


def permanent_hint(error: BaseException) -> str | None:
    """What to do about a storage error no retry cures (missing credentials...), or None if it is not one."""
    for e in _chain(error):
        hint = PERMANENT_NAMES.get(type(e).__name__)
        if hint:
            return f"{hint} ({type(e).__name__}: {str(e)[:200]})"
    return None


def timed_out(error: BaseException) -> bool:
    """Whether `error` (or its cause) is a server that stopped answering within the timeout."""
    return any(isinstance(e, TimeoutError) or type(e).__name__ in TIMEOUT_NAMES for e in _chain(error))


def transient(error: BaseException) -> bool:
    """Whether `error` (or what caused it) looks like a failure that a retry may cure."""
    from ..errors import StreamprepError

    for error in _chain(error):
        if isinstance(error, StreamprepError):  # our own verdict (a corrupt archive, retries run out): final
            return False
        if isinstance(error, PERMANENT) or type(error).__name__ in PERMANENT_NAMES:
            return False
        status = status_of(error)
        if status is not None and 400 <= status < 600:
            return status >= 500 or status in (408, 429)
        if isinstance(error, (TimeoutError, ConnectionError)):
            return True
        if isinstance(error, OSError):
            return getattr(error, "errno", None) not in (28, 30)  # no space left, read-only: not transient
        if type(error).__module__.split(".")[0] in NETWORK_MODULES or type(error).__name__ == "FSTimeoutError":
            return True
    return False


class Patience:
    """How long one server may go without completing a request, across every request and thread of a run.

    Each request's idle reads are bounded by `--timeout`, but retries multiply that bound (six attempts of each
    of several requests, an attempt itself several requests: fsspec's HTTP size lookup tries HEAD, then GET).
    A `Patience` is shared by every request to one server (`for_server`). Progress is a request that
    completed; the stretch without progress begins when the first attempt after the last completed request
    began. Every attempt is given only what is left of the budget, `PATIENCE` x the idle timeout, as its
    deadline (`remaining`), and none is started once it is spent: a server that answers nothing, or trickles
    too slowly for any request to complete, ends the run within that budget.
    """

    def __init__(self, idle_timeout: float, limit: int = PATIENCE) -> None:
        self.idle_timeout, self.budget = idle_timeout, limit * idle_timeout
        self._lock = threading.Lock()
        self._since: float | None = None  # when the current stretch without progress began; None: none under way

    def progressed(self) -> None:
        """A request to this server completed."""
        self._since = None

    def failed(self, started: float) -> float:
        """A request started at `started` (time.monotonic) failed transiently: the seconds without progress so far."""
        now = time.monotonic()
        with self._lock:
            if self._since is None or started < self._since:
                self._since = started
            return now - self._since

    def remaining(self) -> float:
        """The deadline an attempt starting now gets: what is left of the budget (all of it without failures)."""
        since = self._since
        return self.budget if since is None else self.budget - (time.monotonic() - since)

    def spent(self) -> bool:
        """Whether the server has completed no request for (nearly) the whole budget: no request is tried then."""
        return self.remaining() < min(1.0, self.idle_timeout / 4)

    def exhausted(self, error: type, what: str, cause: BaseException) -> Exception:
        return error(f"{what}: the server completed no request for {self.budget:g} s ({PATIENCE} x --timeout): it "
                     f"stopped answering or sends too slowly (last: {describe(cause, plain=True)}); check the server "
                     "and the connection, then run the command again (a conversion keeps its finished shards)")


_servers: dict[tuple[str, float], Patience] = {}
_servers_lock = threading.Lock()


def for_server(server: str, idle_timeout: float) -> Patience:
    """The one `Patience` of this process for `server` (scheme and host) at this idle timeout."""
    with _servers_lock:
        return _servers.setdefault((server, idle_timeout), Patience(idle_timeout))


def call(what: Callable[[], str], fn: Callable[[], T], attempts: int = ATTEMPTS, error: type | None = None,
         patience: Patience | None = None) -> T:
    """`fn()`, retried on transient errors; the last one is raised as `error` (ArchiveError) naming `what()`.
    With `patience` (remote storage), attempts also stop once its server has completed nothing for too long (`fn`
    should bound itself by `patience.remaining()`), and a timed-out attempt is tried again at once (it has waited)."""
    from ..errors import ArchiveError

    error = error or ArchiveError
    for attempt in range(attempts):
        started = time.monotonic()
        try:
            if patience is not None and patience.spent():  # other requests to this server waited it out already
                raise TimeoutError("no request to the server completed within the budget")
            result = fn()
        except Exception as e:
            if not transient(e):
                if foreign(e):  # a storage client's own error that no retry cures (a 400, a broken answer)
                    raise error(f"{what()}: {describe(e)}; check the URL and the server") from e
                raise
            if patience is not None:
                patience.failed(started)
                if patience.spent():
                    raise patience.exhausted(error, what(), e) from e
            if attempt == attempts - 1:
                raise exhausted(error, f"{what()}: {describe(e)}", attempts) from e
            if not timed_out(e):
                pause(attempt)
            continue
        if patience is not None:
            patience.progressed()
        return result
    raise AssertionError("unreachable")


def foreign(error: BaseException) -> bool:
    """Whether `error` is a storage client library's own exception (not Python's, not streamprep's)."""
    return type(error).__module__.split(".")[0] in NETWORK_MODULES


def describe(error: BaseException, plain: bool = False) -> str:
    """A storage error in a few words on one line: a timeout says the server stopped answering (`plain`: a timeout
    without the options that bound it, for a message that names them already)."""
    if timed_out(error):
        return "a timeout" if plain else ("the server stopped answering (nothing within the timeout, --timeout or "
                                          "--connect-timeout)")
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:200]}{' ...' if len(text) > 200 else ''}"


def exhausted(error: type, text: str, attempts: int = ATTEMPTS) -> Exception:
    """The error reporting that retries ran out; a `StreamprepError`, so it is never retried again further up."""
    return error(f"{text} (failed {attempts} attempts); check the connection and the URL, then run the command "
                 "again (a conversion keeps its finished shards)")


def pause(attempt: int) -> None:
    time.sleep(FIRST_DELAY * (2 ** attempt) * (0.5 + random.random()))
