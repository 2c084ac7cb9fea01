"""The manifest's checksum: the algorithms manifest.json may list its files' digests under, by name (`--checksum`).

Every digest of an output file that the manifest lists (shards, DALI indexes, bboxes.csv, the files beside the
shards) is made by `hasher(name)`, and `verify` and resume check a file with the algorithm its manifest names.
An algorithm's package is imported the first time it is asked for: BLAKE3's is an optional extra.
"""

from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from ..errors import MissingDependencyError


class Hasher(Protocol):
    """What a hash object offers, as hashlib's: bytes in (`update`), the digest as hex (`hexdigest`)."""

    def update(self, data: bytes, /) -> Any: ...

    def hexdigest(self) -> str: ...


@dataclass(frozen=True)
class Algorithm:
    """One checksum a manifest may hold: its package (`module`, `package`, the extra of streamprep that installs it,
    or None for a core dependency), the factory it names there, and what it is for (`--checksum`'s help)."""

    name: str
    module: str
    factory: str
    package: str
    extra: str | None
    use: str


SHA256 = "sha256"  # what every manifest held before the choice (one without a "checksum" key holds sha256)
DEFAULT = "xxh3-128"
ALGORITHMS = {a.name: a for a in (
    Algorithm("xxh3-128", "xxhash", "xxh3_128", "xxhash", None,
              "128 bits of XXH3, a fast non-cryptographic hash (about a tenth of sha256's CPU) that catches a "
              "truncated, damaged or replaced file"),
    Algorithm("blake3", "blake3", "blake3", "blake3", "blake3",
              "a cryptographic hash at about half sha256's CPU (pip install 'streamprep[blake3]')"),
    Algorithm(SHA256, "hashlib", "sha256", "hashlib", None,
              "what the Hugging Face Hub's LFS oids and S3's SHA256 checksums are, for a check outside streamprep"),
)}

_factories: dict[str, Callable[[], Hasher]] = {}
_lock = threading.Lock()


def names() -> list[str]:
    """The algorithms' names, the default first."""
    return list(ALGORITHMS)


def known(name: Any) -> bool:
    return isinstance(name, str) and name in ALGORITHMS


def hasher(name: str) -> Hasher:
    """A new hash object of algorithm `name` (its package imported on first use); `MissingDependencyError` in one
    line naming the extra when that package is not installed."""
    factory = _factories.get(name)
    if factory is None:
        with _lock:
            factory = _factories[name] = _factory(name)
    return factory()


def _factory(name: str) -> Callable[[], Hasher]:
    algorithm = ALGORITHMS[name]
    try:
        return getattr(importlib.import_module(algorithm.module), algorithm.factory)
    except ImportError:
        how = (f"install streamprep[{algorithm.extra}] (pip install 'streamprep[{algorithm.extra}]')"
               if algorithm.extra else f"install {algorithm.package}")
        raise MissingDependencyError(f"the checksum {name} needs {algorithm.package}, which is not installed; {how}, "
                                     "then run the command again") from None


def digest(name: str, data: bytes) -> str:
    """The hex digest of `data` under algorithm `name`."""
    h = hasher(name)
    h.update(data)
    return h.hexdigest()


def needs(name: str) -> list[tuple[str, str, str | None, str]]:
    """The optional package a run with `--checksum name` needs (`extras.Need`'s module, pip name, extra, and what
    asks for it): BLAKE3's, or none."""
    algorithm = ALGORITHMS[name]
    return [(algorithm.module, algorithm.package, algorithm.extra, f"--checksum {name}")] if algorithm.extra else []


__all__ = ["ALGORITHMS", "DEFAULT", "SHA256", "Hasher", "digest", "hasher", "known", "names", "needs"]
