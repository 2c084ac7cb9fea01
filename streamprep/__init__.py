"""streamprep: ImageNet downloads to training-ready shards, straight from the archives.

The public API: `convert(Options(...))` runs a conversion and returns a `Summary`; `verify(out)`
checks an output; every error raised on purpose is a `StreamprepError` (subclasses in `errors`).
Warnings go to `logging.getLogger("streamprep")`; progress to the callback you pass.
"""

import logging

__version__ = "0.1.0"

logging.getLogger("streamprep").addHandler(logging.NullHandler())  # the library never prints

from .engines.local import convert  # noqa: E402
from .engines.pipeline import Summary  # noqa: E402
from .errors import (AnnotationError, ArchiveError, ConfigError, ImageError, LabelDataError,  # noqa: E402
                     MissingDependencyError, OutputError, OutputUnreadableError, PipelineError, StreamprepError)
from .options import Engine, Options, Policy  # noqa: E402
from .outputs.verify import VerifyReport, verify  # noqa: E402
from .plan import Sharding  # noqa: E402
from .progress import Event, Stopped  # noqa: E402

__all__ = ["AnnotationError", "ArchiveError", "ConfigError", "Engine", "Event", "ImageError", "LabelDataError",
           "MissingDependencyError", "Options", "OutputError", "OutputUnreadableError", "PipelineError", "Policy",
           "Sharding", "StreamprepError", "Stopped", "Summary", "VerifyReport", "__version__", "convert", "verify"]
