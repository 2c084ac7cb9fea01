"""An image as every output format stores it: the classic's bytes (fixed up where it re-encodes) and their size."""

from __future__ import annotations

from dataclasses import dataclass

from . import fixups
from ..errors import ImageError
from .spec import RecordSpec
from .imagesize import SizeUnreadable, Undecodable, checked_jpeg_size


@dataclass(frozen=True)
class Image:
    """The bytes a record holds (the download's, or the classic's re-encoding of a fix-up file) and the height and
    width a full decode gives."""

    data: bytes
    height: int
    width: int


def image_size(data: bytes, member: str) -> tuple[int, int]:
    """(height, width) a full decode would give, read from the header, once the checks the classic's
    decoder makes pass (`imagesize.checked_jpeg_size`)."""
    try:
        return checked_jpeg_size(data)
    except SizeUnreadable as e:
        raise ImageError(f"{member}: cannot read the image size ({e}); the file is not a usable JPEG. "
                         "Remove it from the archive or replace it with the original download") from e
    except Undecodable as e:
        raise ImageError(f"{member}: the classic's decoder (tf.io.decode_jpeg) would refuse this JPEG ({e}). "
                         "Replace it with the original download, or leave it out with --on-bad-image skip") from e


def prepared(spec: RecordSpec, data: bytes) -> Image:
    """The image of one record, once, whatever formats then frame it; `ImageError` if it cannot be used."""
    if spec.fixup:
        data = fixups.apply(spec.fixup, data, spec.member)
    height, width = image_size(data, spec.member)
    return Image(data, height, width)
