"""Which storage errors are retried, and what a persistent one reports."""

from __future__ import annotations

import errno

import pytest

from streamprep.archives import retry
from streamprep.errors import ArchiveError, OutputError


class Status(Exception):
    def __init__(self, status):
        super().__init__(f"status {status}")
        self.status = status


def wrapped(inner: BaseException) -> Exception:
    try:
        raise inner
    except BaseException as e:
        try:
            raise OutputError("cannot write") from e
        except OutputError as outer:
            return outer


@pytest.mark.parametrize("error, expected", [
    (ConnectionResetError(), True), (TimeoutError(), True), (OSError(errno.EIO, "io"), True),
    (Status(503), True), (Status(429), True), (Status(404), False), (Status(403), False),
    (FileNotFoundError(), False), (PermissionError(), False), (OSError(errno.ENOSPC, "full"), False),
    (ValueError("bug"), False), (ArchiveError("bad archive"), False),
    (wrapped(ConnectionResetError()), False), (wrapped(OSError(errno.ENOSPC, "full")), False),
], ids=["reset", "timeout", "eio", "503", "429", "404", "403", "not-found", "permission", "disk-full", "bug",
        "our-own-error", "our-own-error-caused-by-reset", "our-own-error-caused-by-disk-full"])
def test_transient_errors_are_told_from_permanent_ones(error, expected):
    """A StreamprepError is streamprep's own verdict: never retried, whatever caused it (the cause stays chained)."""
    assert retry.transient(error) is expected


def test_transient_failures_are_retried_until_success(monkeypatch):
    monkeypatch.setattr(retry, "pause", lambda attempt: None)
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 4:
            raise ConnectionResetError("reset by peer")
        return "data"

    assert retry.call(lambda: "s3://b/k bytes 0-9", flaky) == "data"
    assert len(calls) == 4


def test_persistent_failure_names_what_failed_and_keeps_the_cause(monkeypatch):
    monkeypatch.setattr(retry, "pause", lambda attempt: None)

    def down():
        raise Status(503)

    with pytest.raises(ArchiveError, match=r"s3://b/k bytes 0-9: Status: status 503 \(failed 6 attempts\)") as e:
        retry.call(lambda: "s3://b/k bytes 0-9", down)
    assert isinstance(e.value.__cause__, Status)


def test_permanent_errors_are_not_retried(monkeypatch):
    monkeypatch.setattr(retry, "pause", lambda attempt: None)
    calls = []

    def missing():
        calls.append(1)
        raise FileNotFoundError("gone")

    with pytest.raises(FileNotFoundError):
        retry.call(lambda: "x", missing)
    assert len(calls) == 1


@pytest.mark.parametrize("count", [0, 1, 64, 65, 300], ids=["empty", "one", "one-batch", "batch-and-one", "many"])
def test_prefetching_reader_yields_the_same_batches_in_order(count):
    from streamprep.outputs.format import BATCH, _batches

    specs = list(range(count))
    reads = []

    def read(batch):
        reads.append(batch[0])
        return [f"image {s}" for s in batch]

    plain = list(_batches(specs, read, prefetch=False))
    prefetched = list(_batches(specs, read, prefetch=True))
    assert prefetched == plain
    assert [s for batch, _ in plain for s in batch] == specs
    assert len(plain) == -(-count // BATCH)
