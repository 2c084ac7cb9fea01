"""The command line: `streamprep convert` and `streamprep verify`; `main(argv) -> int`."""

from .main import main, parser

__all__ = ["main", "parser"]
