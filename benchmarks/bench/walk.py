"""The header walk of the nested training tar: Python's tarfile against streamprep's walk, one thread each."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .timing import alternate, versus


def walk_tarfile(path: Path) -> tuple[int, int]:
    import tarfile

    outer_n = inner_n = 0
    with tarfile.open(path, "r:") as outer:
        for m in outer:
            outer_n += 1
            if m.isfile() and m.name.endswith(".tar"):
                with tarfile.open(fileobj=outer.extractfile(m), mode="r:") as inner:
                    for _ in inner:
                        inner_n += 1
    return outer_n, inner_n


def walk_streamprep(path: Path) -> tuple[int, int]:
    from streamprep.archives.storage import Source
    from streamprep.archives.walk import inner_members, members

    source = Source(str(path))
    outer_n = inner_n = 0
    try:
        for m in members(source):
            outer_n += 1
            if m.is_file and m.name.endswith(".tar"):
                for _ in inner_members(source, m):
                    inner_n += 1
    finally:
        source.close()
    return outer_n, inner_n


def header_walk(path: Path, repeats: int) -> dict[str, Any]:
    """Both walks `repeats` times, alternated; member counts, best and median seconds, the speed-ups."""
    import tarfile

    from streamprep.archives import storage, walk

    assert tarfile and storage and walk  # all imported before timing

    times, counts = alternate({"tarfile": lambda: walk_tarfile(path), "streamprep": lambda: walk_streamprep(path)},
                              repeats)
    assert counts["tarfile"] == counts["streamprep"], counts
    return {"members": {"outer": counts["tarfile"][0], "inner": counts["tarfile"][1]}, "repeats": repeats,
            **versus(times, "tarfile", "streamprep")}
