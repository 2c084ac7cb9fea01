"""The opt-in full decode check (`check_decode`): every image decoded with Pillow before it is written."""

from __future__ import annotations

import io
import re

from ..errors import ImageError, MissingDependencyError
from .spec import RecordSpec
from .imagesize import MAX_DECODED_BYTES


def full_decode(spec: RecordSpec, data: bytes) -> None:
    """Decode the image completely (Pillow's libjpeg, or its PNG decoder for the classic's PNG), or raise
    `ImageError` naming the member. Stricter than the classic's decoder: damaged scan data, which
    TensorFlow decodes with a warning, fails here too."""
    try:
        from PIL import Image
    except ImportError as e:
        raise MissingDependencyError(f"check_decode (--check-decode) needs Pillow ({e}); install pillow") from e
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height * 3 >= MAX_DECODED_BYTES:  # as the classic's decoder: never allocated
                raise ValueError(f"{image.width}x{image.height} pixels, more than the classic's decoder takes")
            image.load()
    except ImageError:
        raise
    except Exception as e:  # noqa: BLE001 - Pillow raises OSError, SyntaxError, ValueError, struct.error, ...
        text = re.sub(r"<_io\.BytesIO object at 0x[0-9a-f]+>", "the image", str(e))[:200]
        raise ImageError(f"{spec.member}: does not decode ({type(e).__name__}: {text}); replace it with the "
                         "original download, or leave it out with --on-bad-image skip") from e
