"""An image as every output format stores it: the classic's bytes (fixed up where it re-encodes, resized where a
`--resize` recipe says), their size and their encoding."""

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
    encoding: str = "JPEG"  # what the bytes are, by their signature (`encoding_of`): "JPEG", "PNG" or "WEBP"


# Each encoding a record may hold, by name (Pillow's format names; the classic's `image/format` is "JPEG"), with the
# file extension a WebDataset member of it takes. A byte-exact output holds JPEG only; a resized one what its recipe
# writes (`--encode`), or for a named recipe also a copied member's own PNG or WebP.
EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}


def encoding_of(data: bytes) -> str | None:
    """The encoding an image's bytes hold, by their signature ("JPEG", "PNG", "WEBP"), or None for anything else."""
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def encoded(data: bytes, height: int, width: int, member: str) -> Image:
    """A resized (or a named recipe's copied) image, its encoding read from its bytes; `ImageError` if they are none
    of JPEG, PNG and WebP, which no format can name."""
    encoding = encoding_of(data)
    if encoding is None:
        raise ImageError(f"{member}: its bytes are neither a JPEG, a PNG nor a WebP (they start with "
                         f"{data[:4].hex(' ')}), so no format can name their encoding; replace it with a JPEG, or "
                         "leave it out with --on-bad-image skip")
    return Image(data, height, width, encoding)


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
        return encoded(*recipe.apply(data, spec.member, spec.filename), spec.member)
    if spec.fixup:
        data = fixups.apply(spec.fixup, data, spec.member)
    height, width = image_size(data, spec.member)
    if recipe is not None:
        return encoded(*recipe.resized(data, height, width, spec.member), spec.member)
    return Image(data, height, width)
