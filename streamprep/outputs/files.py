"""The temporary files of runs killed before finishing, in the output folder and this machine's temporary folder, swept."""

from __future__ import annotations

import os
import re
import tempfile
import uuid

from ..archives.output import Output, create_new
from ..progress import process_alive

TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)-[0-9a-f]{8}\.tmp$")


def sweep(output: Output, names: set[str], also: re.Pattern[str] | None = None) -> list[str]:
    """Remove temporary files that runs killed before finishing left for any of `names` (which may lie in
    folders below `out`), or for any name `also` matches (every name streamprep gives its files: a killed run
    of another conversion); their paths. Called by a run that holds `out` (`outputs.lock`), so no temporary file
    of another process is in use. The temporary folder of this machine is swept too (`sweep_local`)."""
    removed = []
    by_folder: dict[str, set[str]] = {}
    for name in names:
        folder, _, base = name.rpartition("/")
        by_folder.setdefault(folder, set()).add(base)
    for folder, bases in sorted(by_folder.items()):
        try:
            listing = output.fs.ls(output.path(folder) if folder else output.root, detail=False)
        except FileNotFoundError:
            continue
        for path in listing:
            m = TEMPORARY.match(path.rstrip("/").rsplit("/", 1)[-1])
            if not m or int(m["pid"]) == os.getpid():
                continue
            if m["name"] in bases or (also is not None and also.match(f"{folder}/{m['name']}" if folder else m["name"])):
                try:
                    output.fs.rm(path)
                    removed.append(path)
                except FileNotFoundError:
                    pass
    sweep_local()
    return removed


# A local file of a run in the temporary folder (TMPDIR): named after the process that made it, which removes it
# when done; one whose process is gone (killed) is removed by the next run (`sweep_local`).
LOCAL_TEMPORARY = re.compile(r"^streamprep-(?P<pid>\d+)-[0-9a-f]{8}\.[a-z_]+$")


def local_temporary(suffix: str) -> str:
    """A new, empty file in this machine's temporary folder, `streamprep-PID-XXXXXXXX.SUFFIX`: its path."""
    folder = tempfile.gettempdir()
    while True:
        path = os.path.join(folder, f"streamprep-{os.getpid()}-{uuid.uuid4().hex[:8]}{suffix}")
        try:
            os.close(create_new(path, 0o600))
            return path
        except FileExistsError:
            continue


def sweep_local() -> list[str]:
    """Remove the files of `local_temporary` whose process has ended (a run killed before it removed them)."""
    folder = tempfile.gettempdir()
    try:
        names = [n for n in os.listdir(folder) if n.startswith("streamprep-")]
    except OSError:
        return []
    removed = []
    for name in names:
        m = LOCAL_TEMPORARY.match(name)
        if m and not process_alive(int(m["pid"])):
            try:
                os.unlink(os.path.join(folder, name))
                removed.append(name)
            except OSError:
                pass
    return removed
