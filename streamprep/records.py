"""One record: the image bytes (fixed up if the classic does), its size, and the Example around them."""

from __future__ import annotations

from . import example as ex
from . import fixups
from .errors import ImageError
from .imagesize import SizeUnreadable, jpeg_size
from .plan import RecordSpec

_CONSTANT = {
    "image/colorspace": ex.bytes_feature(b"RGB"),
    "image/channels": ex.int64_feature(3),
    "image/format": ex.bytes_feature(b"JPEG"),
}
_VARYING = ("image/height", "image/width", "image/class/label", "image/class/synset", "image/class/text",
            "image/object/bbox/xmin", "image/object/bbox/ymin", "image/object/bbox/xmax", "image/object/bbox/ymax",
            "image/object/bbox/label", "image/filename", "image/encoded")
SCHEMA = ex.Schema([*_CONSTANT, *_VARYING])


def image_size(data: bytes, member: str) -> tuple[int, int]:
    """(height, width) a full decode would give, read from the header."""
    try:
        return jpeg_size(data)
    except SizeUnreadable as e:
        raise ImageError(f"{member}: cannot read the image size ({e}); the file is not a usable JPEG. "
                         "Remove it from the archive or replace it with the original download") from None


def encode(spec: RecordSpec, data: bytes) -> bytes:
    """The serialised tf.train.Example the classic writes for this image (sorted feature keys)."""
    if spec.fixup:
        data = fixups.apply(spec.fixup, data, spec.member)
    height, width = image_size(data, spec.member)
    boxes = spec.boxes
    features = dict(_CONSTANT)
    features.update({
        "image/height": ex.int64_feature(height),
        "image/width": ex.int64_feature(width),
        "image/class/label": ex.int64_feature(spec.label),
        "image/class/synset": ex.bytes_feature(spec.synset.encode()),
        "image/class/text": ex.bytes_feature(spec.text.encode("utf-8")),
        "image/object/bbox/xmin": ex.float_feature(boxes[:, 0].tobytes()),
        "image/object/bbox/ymin": ex.float_feature(boxes[:, 1].tobytes()),
        "image/object/bbox/xmax": ex.float_feature(boxes[:, 2].tobytes()),
        "image/object/bbox/ymax": ex.float_feature(boxes[:, 3].tobytes()),
        "image/object/bbox/label": ex.int64_feature(*[spec.label] * len(boxes)),
        "image/filename": ex.bytes_feature(spec.filename.encode("utf-8", "surrogateescape")),
        "image/encoded": ex.bytes_feature(data),
    })
    return SCHEMA.serialize(features)
