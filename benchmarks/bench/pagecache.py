"""The page cache before a timed try: the downloads read into it (warm), or everything dropped from it (cold)."""

from __future__ import annotations

import os
import time
from pathlib import Path

BLOCK = 8 << 20  # bytes a read
DROP_CACHES = "/proc/sys/vm/drop_caches"
COLD = "sync, then `echo 3 > /proc/sys/vm/drop_caches`, before every try"


def warm(paths: list[Path]) -> float:
    """Read every byte once so a try finds the archives in the page cache; seconds it took."""
    t0 = time.monotonic()
    buf = bytearray(BLOCK)
    for path in paths:
        with open(path, "rb", buffering=0) as f:
            while f.readinto(buf):
                pass
    return time.monotonic() - t0


def drop() -> None:
    """Write back every dirty page, then drop the clean page cache, dentries and inodes (root only)."""
    os.sync()
    with open(DROP_CACHES, "w") as f:
        f.write("3\n")


def cold_status() -> str:
    """What cold tries do here, or "unavailable: <reason>" if the page cache cannot be dropped (tried once)."""
    try:
        drop()
    except OSError as e:
        return f"unavailable: {type(e).__name__}: {e}"
    return COLD
