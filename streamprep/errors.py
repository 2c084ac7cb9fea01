"""The exceptions streamprep raises: one base class, a few kinds, each message says what to do."""

from __future__ import annotations


class StreamprepError(Exception):
    """Base class of every error streamprep raises on purpose."""

    exit_code = 2


class ArchiveError(StreamprepError):
    """An input archive is unreadable, truncated or not shaped like the ImageNet downloads."""


class ImageError(StreamprepError):
    """An image member cannot be used (unknown format, unreadable header)."""


class AnnotationError(StreamprepError):
    """A bounding-box XML file cannot be used."""


class LabelDataError(StreamprepError):
    """A label file (synsets, metadata, validation labels) is missing entries or malformed."""


class ConfigError(StreamprepError):
    """Options or a config file are invalid."""


class OutputError(StreamprepError):
    """The output location cannot be written."""


class BackendMissingError(StreamprepError):
    """An fsspec backend needed for a URL is not installed."""



class VerifyError(StreamprepError):
    """An output cannot be verified at all: missing, not a folder, or unreadable."""
