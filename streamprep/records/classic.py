"""The classic's record: the `tf.train.Example` around an image, as `build_imagenet_data.py` writes it."""

from __future__ import annotations

from . import example as ex
from .spec import RecordSpec
from .image import EXTENSIONS, Image

_CONSTANT = {
    "image/colorspace": ex.bytes_feature(b"RGB"),
    "image/channels": ex.int64_feature(3),
    "image/format": ex.bytes_feature(b"JPEG"),
}
_VARYING = ("image/height", "image/width", "image/class/label", "image/class/synset", "image/class/text",
            "image/object/bbox/xmin", "image/object/bbox/ymin", "image/object/bbox/xmax", "image/object/bbox/ymax",
            "image/object/bbox/label", "image/filename", "image/encoded")
SCHEMA = ex.Schema([*_CONSTANT, *_VARYING])


def encode(spec: RecordSpec, image: Image) -> bytes:
    """The serialised tf.train.Example the classic writes for this image (sorted feature keys)."""
    return b"".join(encode_parts(spec, image))


_ENCODED = "image/encoded"
_BEFORE = [k for k in SCHEMA.keys if k < _ENCODED]  # channels, class/label, class/synset, class/text, colorspace
_AFTER = [k for k in SCHEMA.keys if k > _ENCODED]  # filename, format, height, object/bbox/*, width
assert _BEFORE == ["image/channels", "image/class/label", "image/class/synset", "image/class/text",
                   "image/colorspace"] and _AFTER[:3] == ["image/filename", "image/format", "image/height"]
_BOX_KEYS = ("image/object/bbox/label", "image/object/bbox/xmax", "image/object/bbox/xmin", "image/object/bbox/ymax",
             "image/object/bbox/ymin")
assert _AFTER[3:] == [*_BOX_KEYS, "image/width"]
_CHANNELS, _COLORSPACE, _FORMAT = (ex.entry(k, _CONSTANT[k]) for k in ("image/channels", "image/colorspace",
                                                                       "image/format"))
# `image/format` names the image's encoding (`Image.encoding`): the classic's b"JPEG", or a resized output's b"PNG" or
# b"WEBP", upper case as the classic's (TF-slim's `tfexample_decoder.Image` decodes "png" or "PNG" as PNG, anything
# else as JPEG; `tf.io.decode_image` reads the bytes' signature alone; docs/resize.md).
_FORMATS = {name: ex.entry("image/format", ex.bytes_feature(name.encode())) for name in EXTENSIONS}
_NO_BOXES = b"".join([ex.entry(_BOX_KEYS[0], ex.int64_feature()),
                      *(ex.entry(k, ex.float_feature(b"")) for k in _BOX_KEYS[1:])])
_classes: dict[tuple[int, str, str], bytes] = {}  # the label, synset and text entries of each class


def _class_entries(spec: RecordSpec) -> bytes:
    key = (spec.label, spec.synset, spec.text)
    found = _classes.get(key)
    if found is None:
        found = _classes[key] = b"".join([
            ex.entry("image/class/label", ex.int64_feature(spec.label)),
            ex.entry("image/class/synset", ex.bytes_feature(spec.synset.encode())),
            ex.entry("image/class/text", ex.bytes_feature(spec.text.encode("utf-8")))])
    return found


def _box_entries(spec: RecordSpec) -> bytes:
    boxes = spec.boxes
    if not len(boxes):
        return _NO_BOXES
    return b"".join([ex.entry(_BOX_KEYS[0], ex.int64_feature(*[spec.label] * len(boxes))),
                     ex.entry(_BOX_KEYS[1], ex.float_feature(boxes[:, 2].tobytes())),
                     ex.entry(_BOX_KEYS[2], ex.float_feature(boxes[:, 0].tobytes())),
                     ex.entry(_BOX_KEYS[3], ex.float_feature(boxes[:, 3].tobytes())),
                     ex.entry(_BOX_KEYS[4], ex.float_feature(boxes[:, 1].tobytes()))])


def encode_parts(spec: RecordSpec, image: Image) -> tuple[bytes, bytes, bytes]:
    """The record as (head, image bytes, tail): `encode` without copying the image into the record."""
    data, height, width, kind = image.data, image.height, image.width, _FORMATS[image.encoding]
    before = _CHANNELS + _class_entries(spec) + _COLORSPACE
    image = ex.bytes_entry_head(_ENCODED, len(data))
    after = b"".join([ex.entry("image/filename", ex.bytes_feature(spec.filename.encode("utf-8", "surrogateescape"))),
                      kind, ex.int64_entry("image/height", height), _box_entries(spec),
                      ex.int64_entry("image/width", width)])
    head = ex.example_head(len(before) + len(image) + len(data) + len(after)) + before + image
    return head, data, after


def example_size(spec: RecordSpec, image_size: int, height: int, width: int) -> int:
    """The length of the Example `encode_parts` gives for an image of `image_size` bytes and that size."""
    before = len(_CHANNELS) + len(_class_entries(spec)) + len(_COLORSPACE)
    image = len(ex.bytes_entry_head(_ENCODED, image_size))
    after = (len(ex.entry("image/filename", ex.bytes_feature(spec.filename.encode("utf-8", "surrogateescape"))))
             + len(_FORMAT) + len(ex.int64_entry("image/height", height)) + len(_box_entries(spec))
             + len(ex.int64_entry("image/width", width)))
    length = before + image + image_size + after
    return len(ex.example_head(length)) + length
