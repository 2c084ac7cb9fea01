"""Shards written by forked worker processes: each with its own interpreter lock, the plan shared copy-on-write.

Writing a shard is mostly hashing and copying bytes (sha256, CRC32C, reads, writes), which release
Python's lock, and some Python per record, which holds it. With threads the workers queue for the
lock and hand it back and forth at every system call; worker processes do not. The local engine
uses them on local disk where `fork` exists (Linux), and threads otherwise (remote storage, whose
clients keep event loops and connection pools that a fork would not carry over; macOS and Windows).

What a worker needs (the plan, the formats, the reader, the output) is inherited at the fork, not
pickled; only a shard's number goes to a worker and its `ShardResult` (a few hundred bytes) comes
back. The parent records each finished shard in the journal and advances the progress phase, so a
kill at any moment leaves the same state as with threads.
"""

from __future__ import annotations

import gc
import multiprocessing
import queue
import signal
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Sequence

from ..errors import WorkerDiedError
from ..outputs.format import ShardResult, write_or_keep
from ..plan import ShardSpec
from ..progress import Phase, Stopped

_inherited: dict[str, Any] = {}  # set by `write_shards` just before the workers fork; read only in them
POLL = 0.2  # seconds between looks at the caller's stop event while shards are written


def usable(workers: int) -> bool:
    """Whether shards can be written by forked workers here."""
    return workers >= 2 and "fork" in multiprocessing.get_all_start_methods()


def _start_worker() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it sets the stop event


def _write(number: int) -> ShardResult:
    work = _inherited
    return write_or_keep(work["formats"], work["plan"], work["shards"][number], work["output"], work["read"],
                         work["keep"], None, False, work["skip"], work["halt"], work["check"])


def write_shards(shards: Sequence[ShardSpec], workers: int, finished: Callable[[ShardResult], None],
                 phase: Phase, stop: threading.Event | None, **work: Any) -> list[ShardResult]:
    """Write or keep `shards` in `workers` forked processes; `finished` is called (in this process) for each
    shard as it completes. After the first error, or once `stop` is set, no new shard starts, running ones
    stop at their next batch, and the error (or `Stopped`) is raised. `work` holds `write_or_keep`'s
    arguments: formats, plan, output, read, keep, skip, check."""
    context = multiprocessing.get_context("fork")
    halt = context.Event()
    _inherited.update(work, shards=list(shards), halt=halt)
    results: dict[int, ShardResult] = {}
    gc.freeze()  # the workers' collector leaves the inherited objects alone: their pages stay shared, not copied
    try:
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker) as pool:
            done: queue.SimpleQueue[Future] = queue.SimpleQueue()  # futures as they finish: no scan of them all
            futures: dict[Future, int] = {}
            for k in range(len(shards)):
                future = pool.submit(_write, k)
                futures[future] = k
                future.add_done_callback(done.put)
            try:
                while len(results) < len(shards):
                    try:
                        future = done.get(timeout=POLL)
                    except queue.Empty:
                        future = None
                    if future is not None:
                        result = future.result()  # raises the worker's error
                        results[futures[future]] = result
                        first = result.entries[0]
                        phase.advance(first.records + len(first.skipped), result.bytes, kept=result.kept)
                        finished(result)
                    if stop is not None and stop.is_set():
                        raise Stopped("stopped")
            except BaseException as e:
                halt.set()  # running shards stop at their next batch
                for future in futures:
                    future.cancel()
                cause = _first_cause(e, [f for f in futures if f.done() and not f.cancelled()])
                if cause is not e:
                    raise cause from None
                raise
    except BrokenProcessPool as e:
        raise WorkerDiedError("a shard-writing process ended without a word (killed, or out of memory?); the "
                            "shards finished so far are kept: run the same command again to resume") from e
    finally:
        _inherited.clear()
        gc.unfreeze()
    return [results[k] for k in range(len(shards))]


def _first_cause(error: BaseException, done: list[Future]) -> BaseException:
    """The error to report: a worker's own failure rather than a `Stopped` that only followed it."""
    if not isinstance(error, Stopped):
        return error
    for future in done:
        failure = future.exception()
        if failure is not None and not isinstance(failure, Stopped):
            return failure
    return error
