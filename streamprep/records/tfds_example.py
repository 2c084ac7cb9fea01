"""TFDS's imagenet2012 record for one image: a tf.train.Example of `label`, `image` and `file_name`.

`tfds build imagenet2012` stores each image's bytes as they are (after the same fix-ups as the
classic), the label as the synset's index in TFDS's label file (0..999, the classic's label minus 1)
and the file name. Its protobuf writes the three map entries in the order label, image, file_name
(as observed from TensorFlow's protobuf); this writes them in that order too. Map order is not part
of protobuf's contract, so comparisons with TFDS's own files parse the records.
"""

from __future__ import annotations

from . import example as ex
from .image import Image

_NAME = "file_name"


def encode_parts(label: int, file_name: str, image: Image) -> tuple[bytes, bytes, bytes]:
    """The record as (head, image bytes, tail): the image is not copied into the record."""
    before = ex.int64_entry("label", label) + ex.bytes_entry_head("image", len(image.data))
    after = ex.entry(_NAME, ex.bytes_feature(file_name.encode("utf-8", "surrogateescape")))
    return ex.example_head(len(before) + len(image.data) + len(after)) + before, image.data, after


def size(label: int, file_name: str, image_size: int) -> int:
    """The serialised record's length for an image of `image_size` bytes (what TFDS sums to size its shards)."""
    body = (len(ex.int64_entry("label", label)) + len(ex.bytes_entry_head("image", image_size)) + image_size
            + len(ex.entry(_NAME, ex.bytes_feature(file_name.encode("utf-8", "surrogateescape")))))
    return len(ex.example_head(body)) + body
