"""Report writing: the machine, the date and command of a run, Markdown tables, a section replaced in a doc."""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import sys
from pathlib import Path
from typing import Any


def machine() -> dict[str, Any]:
    mem = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = round(int(line.split()[1]) / 1024 ** 2, 1)
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "mem_total_gib": mem, "python": platform.python_version(),
            "system": f"{platform.system()} {platform.release()} {platform.machine()}"}


def date() -> str:
    return datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")


def command(script: str) -> str:
    """How this script was run, as the docs show it: `python benchmarks/SCRIPT ARGS`."""
    return f"python benchmarks/{script}" + (" " + shlex.join(sys.argv[1:]) if sys.argv[1:] else "")


def head(*columns: str) -> list[str]:
    """A Markdown table's header and rule; a column named with a trailing ">" is right-aligned."""
    names = [c.removesuffix(">") for c in columns]
    rules = ["---:" if c.endswith(">") else "---" for c in columns]
    return ["|" + "".join(f" {n} |" if n else " |" for n in names), "| " + " | ".join(rules) + " |"]


def targets_table(r: dict[str, Any]) -> str:
    """A run's targets (`r["targets"]`: target, measured, met) as a Markdown table."""
    rows = head("target", "measured", "")
    rows += [f"| {t['target']} | {t['measured']} | {mark(t['met'])} |" for t in r["targets"]]
    return "\n".join(rows)


def tries(n: int) -> str:
    return "1 try" if n == 1 else f"{n} tries"


def mark(met: bool | None) -> str:
    return "not measured" if met is None else ("**met**" if met else "**not met**")


def fixups_note(scale: dict[str, Any], fixer: str = "the classic") -> str:
    """The sentence on the classic's 23 fix-up files in the data set, which `fixer` re-encodes with TensorFlow (no
    sentence if left out, or before data generation 2)."""
    if "fixups" not in scale:
        return ""
    names = scale["fixups"]
    if not names:
        return " None of the classic's 23 fix-up files belongs to these classes."
    kinds = ", ".join(f"`{n}` ({k.upper()})" for n, k in sorted(names.items()))
    return (f" Of the classic's 23 fix-up files, those of these classes are among the images under their real names, "
            f"as in the real training tar, each in place of a noise JPEG: {kinds}; {fixer} re-encodes them with "
            f"TensorFlow, streamprep to the same bytes without it.")


def write_docs(path: Path, text: str, heading: str) -> None:
    """Replace the section `heading` (up to the next `## ` heading) or append it."""
    lines = path.read_text().splitlines(keepends=True) if path.exists() else []
    start = next((i for i, l in enumerate(lines) if l.rstrip() == heading), None)
    if start is None:
        body = "".join(lines)
        body = body.rstrip("\n") + "\n\n" if body.strip() else ""
        path.write_text(body + text)
        return
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    tail = "".join(lines[end:])
    path.write_text("".join(lines[:start]) + text + ("\n" + tail if tail else ""))


def publish(result: dict[str, Any], script: str, targets: Any, tables: Any, render: Any, saved: Path,
            write_docs: Path | None) -> None:
    """A run's closing part, the same for every driver: its command, date, machine and targets recorded, the
    JSON and the tables printed, the JSON saved (for `--from-json`) and, if asked, the docs section written."""
    result["command"] = command(script)
    result["date"] = date()
    result["machine"] = machine()
    result["targets"] = targets(result)
    print(json.dumps(result, indent=1))
    for table in tables(result):
        print()
        print(table)
    saved.write_text(json.dumps(result, indent=1))
    if write_docs:
        render(result, write_docs)
