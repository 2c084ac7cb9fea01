"""streamprep: ImageNet downloads to training-ready shards, straight from the archives.

The public API: `convert(Options(...))` runs a conversion and returns a `Summary`; `verify(out)`
checks an output; every error raised on purpose is a `StreamprepError` (subclasses in `errors`).
Warnings go to `logging.getLogger("streamprep")`; progress to the callback you pass. The names
below are imported on first use, so that `import streamprep.cli` stays quick.
"""

import importlib
import logging
from typing import Any

__version__ = "0.1.0"

logging.getLogger("streamprep").addHandler(logging.NullHandler())  # the library never prints

_PUBLIC = {
    "convert": "engines.local", "Summary": "engines.pipeline", "preview": "engines.preview",
    "Options": "options", "Engine": "options", "Policy": "options", "Sharding": "plan",
    "verify": "outputs.verify", "VerifyReport": "outputs.verify", "inspect": "outputs.inspect",
    "Event": "progress", "Stopped": "progress",
    **{name: "errors" for name in ("AnnotationError", "ArchiveError", "ConfigError", "ImageError", "LabelDataError",
                                   "MissingDependencyError", "OutputBusyError", "OutputError", "OutputUnreadableError",
                                   "PipelineError", "StreamprepError")},
}

__all__ = ["__version__", *sorted(_PUBLIC)]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        value = getattr(importlib.import_module(f".{_PUBLIC[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'streamprep' has no attribute {name!r}")
