"""THE ENGINE REGISTRY: where a conversion's work runs, one entry each (`--engine NAME` -> the module that runs it).

Each engine's module has a class with `name`, `walk` and `write` (`driver.Engine`; the local engine,
`local.py`, is the worked example) and `run(options, passthrough, progress)`, which runs the driver
(`driver.Conversion`) with it and returns the `pipeline.Summary`. A module is imported only when its
engine is chosen (Beam's imports Apache Beam). `options.Engine` holds the names `--engine` takes.
"""

from __future__ import annotations

import importlib
from typing import Any, Sequence

ENGINES = {"local": ".local", "beam": ".beam"}  # name -> module, relative to this package


def run(options: Any, passthrough: Sequence[str] | None, progress: Any = None) -> Any:
    """Convert with the engine `options.engine` names; `passthrough` are the arguments after `--` (None without
    one), which only an engine that takes them accepts."""
    module = importlib.import_module(ENGINES[str(options.engine)], __name__)
    return module.run(options, passthrough, progress)
