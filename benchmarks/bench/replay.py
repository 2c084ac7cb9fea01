"""The transfer floor: a run's HTTP requests replayed by fsspec alone, in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPLAY = """
import json, sys
import fsspec
requests = json.load(open(sys.argv[1]))
fs = fsspec.filesystem("http")
for method, url, start, stop in requests:
    if method == "HEAD":
        fs.info(url)
gets = [r for r in requests if r[0] == "GET"]
data = fs.cat_ranges([r[1] for r in gets], [r[2] for r in gets], [r[3] for r in gets], batch_size=int(sys.argv[2]))
assert all(len(d) == r[3] - r[2] for d, r in zip(data, gets)), "short read"
"""


def transfer_floor(log: list, port: int, workdir: Path, timeout: float, concurrency: int = 128) -> dict[str, Any]:
    """The same requests the remote run made, replayed by fsspec alone in a fresh process: every GET in one
    concurrent `cat_ranges` (`concurrency` in flight), nothing parsed, encoded or written. No fsspec client
    reading these bytes from this server can do the remote run in less time than this."""
    requests = [[e[1], f"http://127.0.0.1:{port}/{e[2]}", e[6], e[6] + e[3]] for e in log if e[5] in (200, 206)]
    listing = workdir / "replay.json"
    listing.write_text(json.dumps(requests))
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-c", REPLAY, str(listing), str(concurrency)], stderr=subprocess.PIPE,
                       text=True, timeout=timeout)
    wall = time.monotonic() - t0
    listing.unlink()
    if p.returncode != 0:
        sys.stderr.write(p.stderr)
    return {"wall_s": wall, "returncode": p.returncode, "requests": len(requests), "concurrency": concurrency}
