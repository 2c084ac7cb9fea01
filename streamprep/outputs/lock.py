"""One run per output folder: a lock held for the run's life (`flock` on a local --out, a lease object elsewhere).

On local disk the lock is `OUT/.streamprep/lock`, locked with `fcntl.flock` and holding the run's
pid, host and start time. The kernel releases it when the run ends in any way, `kill -9` included,
so a lock is never left behind to wait on. On an object store there is no such lock: the run writes
a lease object, `OUT/.streamprep/lease.json` (its identity and an expiry), reads it back to see that
it won, and renews it while it runs; a lease that expired (its run was killed) is taken over, as is
one left on this host by a process that has ended.
"""

from __future__ import annotations

import datetime
import errno
import json
import logging
import os
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from typing import Any, Iterator

from ..archives.storage import rejected_options
from ..errors import OutputBusyError, OutputError
from ..progress import process_alive
from ..archives.output import CLOEXEC, NOFOLLOW, STATE_DIR, Output

try:
    import fcntl
except ImportError:  # not a POSIX system: no local lock
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("streamprep")

LOCK = f"{STATE_DIR}/lock"
LEASE = f"{STATE_DIR}/lease.json"
LEASE_SECONDS = 120.0  # a lease not renewed for this long is another run's to take (its run was killed)
RENEW_EVERY = 30.0
SETTLE = 0.5  # seconds between writing a lease and reading it back: a run that wrote one meanwhile has it
READ_HOLDER = 2.0  # seconds a run that lost the lock waits for the winner to write who it is


def _me() -> dict[str, Any]:
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"pid": os.getpid(), "host": socket.gethostname(), "started": started}


def _who(holder: dict[str, Any] | None) -> str:
    """The run a lock or lease names, in a few words."""
    if not holder:
        return "a run that has not said who it is yet"
    return f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}"


def _gone(holder: dict[str, Any] | None) -> bool:
    """Whether the run a lock or lease names ran on this host and has ended."""
    if not holder or holder.get("host") != socket.gethostname():
        return False
    pid = holder.get("pid")
    return isinstance(pid, int) and not process_alive(pid)


def _parse(data: bytes) -> dict[str, Any] | None:
    try:
        holder = json.loads(data)
    except ValueError:
        return None
    return holder if isinstance(holder, dict) else None


def _busy(url: str, holder: dict[str, Any] | None, more: str = "") -> OutputBusyError:
    return OutputBusyError(f"{url}: another streamprep run is writing this output folder ({_who(holder)}){more}; "
                           "one run per --out: wait for it to end (or stop it), or choose another --out")


class RunLock:
    """The lock of one run on its `out`; `release` it on every way the run ends (`held` does)."""

    def release(self, tidy: bool = False) -> None:
        """Release the lock; `tidy` (the run failed): what taking it created (the lock file, `.streamprep`, `out`
        itself) is removed again while nothing else was written there."""


class _LocalLock(RunLock):
    def __init__(self, output: Output, fd: int | None, created: dict[str, bool]) -> None:
        self.output, self.fd, self.created = output, fd, created  # created: whether the lock made `out`, .streamprep

    @classmethod
    def take(cls, output: Output) -> "_LocalLock":
        folder, path = output.path(STATE_DIR), output.path(LOCK)
        created = {"out": not os.path.lexists(output.root), "state": not os.path.lexists(folder)}
        output.refuse_links(STATE_DIR)  # a link at .streamprep is never followed out of `out`
        if os.path.lexists(folder) and not os.path.isdir(folder):
            raise OutputError(f"{folder}: is a file, where streamprep keeps its saved index and its lock; remove it "
                              "and run again")
        while True:
            output.create()  # again after a lost race: a run that created `out` and failed may have removed it
            try:
                os.makedirs(folder, exist_ok=True)
                fd = os.open(path, os.O_RDWR | os.O_CREAT | NOFOLLOW | CLOEXEC, 0o644)
            except OSError as e:
                if e.errno == errno.ELOOP:
                    raise OutputError(f"{path}: is a symbolic link; streamprep writes only inside {output.url} and "
                                      "will not follow it. Remove the link") from e
                raise OutputError(f"{output.url}: cannot write into the output folder ({e}); choose a writable "
                                  "--out") from e
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                os.close(fd)
                raise _busy(output.url, holder) from None
            except OSError as e:
                os.close(fd)
                raise OutputError(f"{path}: cannot lock it ({e}); --out must be on a file system that supports "
                                  "locks (flock)") from e
            try:  # removed meanwhile by a run that created `out` and failed: lock the file that is there now
                same = os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(_me()).encode() + b"\n", 0)
        return cls(output, fd, created)

    def release(self, tidy: bool = False) -> None:
        if self.fd is None:
            return
        if tidy and self.created["state"]:  # removed while still locked: no other run holds the file meanwhile
            steps = [(os.unlink, self.output.path(LOCK)), (os.rmdir, self.output.path(STATE_DIR))]
            for remove, path in steps + ([(os.rmdir, self.output.root)] if self.created["out"] else []):
                try:
                    remove(path)
                except OSError:
                    break  # not empty: something of value is there
        fd, self.fd = self.fd, None
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def _holder(fd: int) -> dict[str, Any] | None:
    """Who holds the lock, as it wrote itself into the file; the winner of a race may not have written yet."""
    deadline = time.monotonic() + READ_HOLDER
    while True:
        holder = _parse(os.pread(fd, 4096, 0))
        if (holder and not _gone(holder)) or time.monotonic() > deadline:
            return holder
        time.sleep(0.02)


class _Lease(RunLock):
    def __init__(self, output: Output, me: dict[str, Any]) -> None:
        self.output, self.me = output, me
        self.stopped = threading.Event()
        self.thread: threading.Thread | None = None
        self.created = False  # whether the lease made the state folder (a store with folders: memory://, ...)

    @classmethod
    def take(cls, output: Output) -> "_Lease":
        me = {**_me(), "token": uuid.uuid4().hex}
        lease = cls(output, me)
        try:
            output.create()
            lease.created = not output.fs.exists(output.path(STATE_DIR))
            holder = lease.read()
            if holder and holder.get("token") != me["token"] and not lease.expired(holder) and not _gone(holder):
                raise lease.busy(holder)
            lease.write()
            time.sleep(SETTLE)
            holder = lease.read()
        except TypeError as e:
            raise rejected_options(output.url, e) from e
        except OSError as e:
            raise OutputError(f"{output.url}: cannot write into the output folder ({e}); choose a writable "
                              "--out") from e
        if not holder or holder.get("token") != me["token"]:
            raise lease.busy(holder)
        lease.thread = threading.Thread(target=lease.renew, name="streamprep-lease", daemon=True)
        lease.thread.start()
        return lease

    def busy(self, holder: dict[str, Any] | None) -> OutputBusyError:
        until = (holder or {}).get("expires")
        when = datetime.datetime.fromtimestamp(until, datetime.timezone.utc).strftime("%H:%M:%S UTC") \
            if isinstance(until, (int, float)) else "?"
        return _busy(self.output.url, holder, f"; its lease {self.output.path(LEASE)} expires at {when} unless that "
                                              "run renews it (a run that was killed never does)")

    @staticmethod
    def expired(holder: dict[str, Any]) -> bool:
        until = holder.get("expires")
        return not isinstance(until, (int, float)) or until < time.time()

    def read(self) -> dict[str, Any] | None:
        """The lease as the store holds it now: never from the file system's cached listings, which another part of
        the run may have filled with a listing of `.streamprep` that lacks the lease (s3fs 2026.6 caches a glob's
        prefix-filtered listing as the whole folder's), so that the lease would seem gone and be left behind."""
        path = self.output.path(LEASE)
        self.output.fs.invalidate_cache(path)  # the lease's own entry and its folders' listings
        try:
            return _parse(self.output.fs.cat_file(path))
        except FileNotFoundError:
            return None

    def write(self) -> None:
        self.me["expires"] = time.time() + LEASE_SECONDS
        with self.output.atomic(LEASE) as f:
            f.write(json.dumps(self.me).encode() + b"\n")

    def renew(self) -> None:
        while not self.stopped.wait(RENEW_EVERY):
            try:
                holder = self.read()
                if holder and holder.get("token") != self.me["token"]:
                    log.warning("%s: the lease on the output folder was taken by another run (%s) while this one "
                                "ran", self.output.url, _who(holder))
                    return
                self.write()
            except Exception as e:  # noqa: BLE001 - a renewal that failed is tried again; the lease lasts meanwhile
                log.debug("renewing the lease on %s failed: %s", self.output.url, e)

    def release(self, tidy: bool = False) -> None:
        if self.stopped.is_set():
            return
        self.stopped.set()
        if self.thread is not None:
            self.thread.join()
        try:
            holder = self.read()
            if holder and holder.get("token") == self.me["token"]:
                self.output.fs.rm_file(self.output.path(LEASE))
            folder = self.output.path(STATE_DIR)
            if self.created and self.output.fs.isdir(folder) and not self.output.fs.ls(folder, detail=False):
                self.output.fs.rmdir(folder)  # an object store has no such folder to remove
        except Exception as e:  # noqa: BLE001 - left to expire: the next run takes it over then
            log.debug("removing the lease on %s failed: %s", self.output.url, e)


class _NoLock(RunLock):
    """Where no lock can be taken (no `flock` on this system)."""


def take(output: Output) -> RunLock:
    """The run's lock on `output`, taken before anything is written into it; `OutputBusyError` naming the run
    that holds it."""
    if output.local:
        return _LocalLock.take(output) if fcntl is not None else _NoLock()
    return _Lease.take(output)


@contextmanager
def held(out: str | None, storage_options: dict[str, Any] | None = None) -> Iterator[RunLock | None]:
    """`out` locked for the duration (nothing if there is no `out`): released however the block ends; if it ends
    by an error, what taking the lock created is removed again while nothing else was written there."""
    if not out:
        yield None
        return
    lock = take(Output(out, storage_options, create=False))
    try:
        yield lock
    except BaseException:
        lock.release(tidy=True)
        raise
    lock.release()
