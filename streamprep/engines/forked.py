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

The workers die with their parent: each asks the kernel to kill it when the parent dies
(`PR_SET_PDEATHSIG` on Linux), ends at once if the parent died before it asked, and checks between
batches that its parent is still there. When the parent stops (an error, Ctrl-C, SIGTERM), it
halts them and forwards SIGTERM, which a worker takes as the halt: it stops at its next batch,
removing its partial file; the parent waits for them all and records the shards they finished.
"""

from __future__ import annotations

import ctypes
import gc
import multiprocessing
import os
import queue
import signal
import sys
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
PR_SET_PDEATHSIG = 1  # prctl(2): the signal this process gets when the thread that forked it ends
_terminated: list[bool] = []  # in a worker: SIGTERM received (the parent's forwarding), stop at the next batch


def usable(workers: int) -> bool:
    """Whether shards can be written by forked workers here."""
    return workers >= 2 and "fork" in multiprocessing.get_all_start_methods()


def _start_worker(parent: int) -> None:
    """Run in each worker right after the fork: killed with its parent, gone if the parent already is; Ctrl-C is
    the parent's to decide (it halts the workers), SIGTERM a halt."""
    _die_with_parent()
    if os.getppid() != parent:  # the parent died before the kernel was asked: nothing to write for
        os._exit(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: _terminated.append(True))


def _die_with_parent() -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux; elsewhere `_Watch` alone notices)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


class _Watch:
    """A worker's stop, checked between batches: the parent's halt, a SIGTERM, or a parent that is gone."""

    def __init__(self, halt: Any, parent: int) -> None:
        self.halt, self.parent = halt, parent

    def is_set(self) -> bool:
        return os.getppid() != self.parent or bool(_terminated) or self.halt.is_set()


def _write(number: int) -> ShardResult:
    work = _inherited
    return write_or_keep(work["formats"], work["plan"], work["shards"][number], work["output"], work["read"],
                         work["keep"], None, False, work["skip"], _Watch(work["halt"], work["parent"]),
                         work["check"], work["checksum"])


def write_shards(shards: Sequence[ShardSpec], workers: int, finished: Callable[[ShardResult], None],
                 phase: Phase, stop: threading.Event | None, **work: Any) -> list[ShardResult]:
    """Write or keep `shards` in `workers` forked processes; `finished` is called (in this process) for each
    shard as it completes. After the first error, or once `stop` is set, no new shard starts, running ones
    stop at their next batch, and the error (or `Stopped`) is raised. `work` holds `write_or_keep`'s
    arguments: formats, plan, output, read, keep, skip, check, checksum."""
    context = multiprocessing.get_context("fork")
    halt = context.Event()
    parent = os.getpid()
    _inherited.update(work, shards=list(shards), halt=halt, parent=parent)
    results: dict[int, ShardResult] = {}
    gc.freeze()  # the workers' collector leaves the inherited objects alone: their pages stay shared, not copied
    try:
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                                 initargs=(parent,)) as pool:
            done: queue.SimpleQueue[Future] = queue.SimpleQueue()  # futures as they finish: no scan of them all
            futures: dict[Future, int] = {}
            try:
                for k in range(len(shards)):
                    future = pool.submit(_write, k)
                    futures[future] = k
                    future.add_done_callback(done.put)
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
                _forward(pool, signal.SIGTERM)
                pool.shutdown(wait=True)
                for future, k in futures.items():  # shards finished meanwhile: recorded, as every finished file is
                    if k not in results and future.done() and not future.cancelled() and future.exception() is None:
                        results[k] = future.result()
                        finished(results[k])
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


def _forward(pool: ProcessPoolExecutor, signum: int) -> None:
    """Send `signum` to the pool's workers still running."""
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        if process.is_alive() and process.pid is not None:
            try:
                os.kill(process.pid, signum)
            except OSError:
                pass


def _first_cause(error: BaseException, done: list[Future]) -> BaseException:
    """The error to report: a worker's own failure rather than a `Stopped` that only followed it."""
    if not isinstance(error, Stopped):
        return error
    for future in done:
        failure = future.exception()
        if failure is not None and not isinstance(failure, Stopped):
            return failure
    return error
