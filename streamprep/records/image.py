"""An image as every output format stores it: the classic's bytes (fixed up where it re-encodes, resized where a
`--resize` recipe says) and their size."""

from __future__ import annotations

from dataclasses import dataclass

from . import fixups
from .resize import Recipe
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


def prepared(spec: RecordSpec, data: bytes, recipe: Recipe | None = None) -> Image:
    """The image of one record, once, whatever formats then frame it; `ImageError` if it cannot be used.

    With a `recipe` (`--resize`): a named recipe takes the member's own bytes, as its script reads the extracted
    file; a general one the classic's image, its fix-ups made and its decoder's checks passed."""
    if recipe is not None and recipe.exact:
        return Image(*recipe.apply(data, spec.member, spec.filename))
    if spec.fixup:
        data = fixups.apply(spec.fixup, data, spec.member)
    height, width = image_size(data, spec.member)
    if recipe is not None:
        return Image(*recipe.resized(data, height, width, spec.member))
    return Image(data, height, width)
