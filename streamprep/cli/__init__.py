"""The command line: `streamprep convert | plan | inspect | verify | config`; `main(argv) -> int`.

Kept light on purpose: the console script imports this module before anything can catch a Ctrl-C,
so the heavy imports happen inside `main`, where an interrupt is one line and exit status 130.
"""

from __future__ import annotations

import sys
from typing import Any, Sequence, TextIO


def main(argv: Sequence[str] | None = None, stderr: TextIO | None = None, stdout: TextIO | None = None) -> int:
    """Run the command line; returns the exit status."""
    try:
        from ..progress import terminate_as_interrupt

        with terminate_as_interrupt():  # SIGTERM stops a run as Ctrl-C does, with exit status 143
            from .commands import main as run

            return run(argv, stderr, stdout)
    except KeyboardInterrupt as e:
        what = "terminated" if getattr(e, "exit_code", 130) == 143 else "interrupted"
        (stderr or sys.stderr).write(f"streamprep: {what}; nothing was left half-written\n")
        return getattr(e, "exit_code", 130)


def parser() -> Any:
    """The argparse parser of every command (for documentation and tests)."""
    from .commands import parser as build

    return build()


__all__ = ["main", "parser"]
