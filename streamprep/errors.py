"""The exceptions streamprep raises on purpose: one base class, one class per cause, each message says what to do."""

from __future__ import annotations


class StreamprepError(Exception):
    """Base class of every error streamprep raises on purpose; never retried (see `archives.retry`)."""

    exit_code = 2


class ArchiveError(StreamprepError):
    """An input archive is unreadable, truncated or not shaped like the ImageNet downloads."""


class ImageError(StreamprepError):
    """An image member cannot be used (unknown format, unreadable header, undecodable fix-up file)."""


class AnnotationError(StreamprepError):
    """A bounding-box XML file cannot be used."""


class LabelDataError(StreamprepError):
    """A label file (synsets, metadata, validation labels) is missing entries or malformed."""


class ConfigError(StreamprepError):
    """Options or a config file are invalid."""


class OutputError(StreamprepError):
    """The output location cannot be written, or what was written cannot be read back."""


class OutputBusyError(OutputError):
    """Another run is writing the output folder (it holds its lock, or its lease on an object store)."""


class OutputUnreadableError(OutputError):
    """An output to verify or inspect is missing, not a folder, or cannot be read."""


class MissingDependencyError(StreamprepError):
    """A package this run needs is not installed: an fsspec backend, TensorFlow, Apache Beam."""


class PipelineError(StreamprepError):
    """A Beam runner failed for a reason that is not one of streamprep's own errors."""


class WorkerDiedError(StreamprepError):
    """A shard-writing process of the local engine ended without reporting (killed, out of memory)."""


def reason(ref: str, error: BaseException) -> str:
    """An error's message without the `archive!member: ` it starts with, for lists that name the member apart."""
    text = str(error)
    return text[len(ref) + 2:] if text.startswith(f"{ref}: ") else text
