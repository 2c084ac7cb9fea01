"""Tests of hand-written Example serialisation (streamprep.example) and TFRecord framing (streamprep.tfrecord)."""

from __future__ import annotations

import io
import math
import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf  # noqa: E402

from classic_reference import _convert_to_example  # noqa: E402
from streamprep.errors import OutputError  # noqa: E402
from streamprep.records.example import bytes_feature, float32_bytes, float_feature, int64_feature, serialize  # noqa: E402
from streamprep.outputs.tfrecord.write import frame, read_records  # noqa: E402

SPEC_KEYS = {"image/height", "image/width", "image/colorspace", "image/channels", "image/class/label",
             "image/class/synset", "image/class/text", "image/object/bbox/xmin", "image/object/bbox/ymin",
             "image/object/bbox/xmax", "image/object/bbox/ymax", "image/object/bbox/label", "image/format",
             "image/filename", "image/encoded"}
MEGABYTE_IMAGE = b"\xff\xd8\xff" + np.random.default_rng(0).bytes(1 << 20)


def ours(filename, image, label, synset, human, boxes, height, width) -> bytes:
    """The same record as classic_reference._convert_to_example, through streamprep.example."""
    cols = [float32_bytes([b[i] for b in boxes]) for i in range(4)]
    return serialize({
        "image/height": int64_feature(height), "image/width": int64_feature(width),
        "image/colorspace": bytes_feature(b"RGB"), "image/channels": int64_feature(3),
        "image/class/label": int64_feature(label), "image/class/synset": bytes_feature(synset.encode()),
        "image/class/text": bytes_feature(human.encode("utf-8")),
        "image/object/bbox/xmin": float_feature(cols[0]), "image/object/bbox/ymin": float_feature(cols[1]),
        "image/object/bbox/xmax": float_feature(cols[2]), "image/object/bbox/ymax": float_feature(cols[3]),
        "image/object/bbox/label": int64_feature(*[label] * len(boxes)),
        "image/format": bytes_feature(b"JPEG"), "image/filename": bytes_feature(filename.encode("utf-8")),
        "image/encoded": bytes_feature(image),
    })


RECORDS = {
    "with-boxes": ("n01440764_10026.JPEG", b"\xff\xd8\xff\xe0jpeg", 1, "n01440764", "tench, Tinca tinca",
                   [[0.0533, 0.2, 0.6, 0.9], [0.0, 0.0, 1.0, 1.0]], 375, 500),
    "no-boxes": ("ILSVRC2012_val_00000001.JPEG", b"\xff\xd8", 1000, "n15075141", "toilet tissue", [], 1, 1),
    "non-ascii-text": ("n02105855_2933.JPEG", b"\x00\xff" * 5, 230, "n02105855",
                       "Shetland sheepdog, caf\u00e9 \u2014 \u72ac", [[0.1, 0.2, 0.3, 0.4]], 4000, 3),
    "1MB-image": ("n01443537_1.JPEG", MEGABYTE_IMAGE, 2, "n01443537", "goldfish", [[0.5, 0.5, 0.75, 0.75]], 480, 640),
}


@pytest.mark.parametrize("name", RECORDS, ids=RECORDS)
def test_full_classic_record_serialises_like_protobuf_deterministic(name):
    args = RECORDS[name]
    expected = _convert_to_example(*args)
    assert set(expected.features.feature) == SPEC_KEYS
    assert ours(*args) == expected.SerializeToString(deterministic=True)
    assert tf.train.Example.FromString(ours(*args)) == expected


I64 = tf.train.Int64List
FEATURES = {
    "empty-int64": (int64_feature(), tf.train.Feature(int64_list=I64(value=[]))),
    "empty-float": (float_feature(b""), tf.train.Feature(float_list=tf.train.FloatList(value=[]))),
    "empty-bytes-list": (bytes_feature(), tf.train.Feature(bytes_list=tf.train.BytesList(value=[]))),
    "empty-bytes-value": (bytes_feature(b""), tf.train.Feature(bytes_list=tf.train.BytesList(value=[b""]))),
    "large-ints": (int64_feature(2**63 - 1, 2**40, 128, 127, 0),
                   tf.train.Feature(int64_list=I64(value=[2**63 - 1, 2**40, 128, 127, 0]))),
    "negative-ints": (int64_feature(-1, -(2**63), -300), tf.train.Feature(int64_list=I64(value=[-1, -(2**63), -300]))),
    "non-ascii-bytes": (bytes_feature("\u00e9\u72ac".encode(), b"\xff\x00\x80", b"plain"),
                        tf.train.Feature(bytes_list=tf.train.BytesList(value=["\u00e9\u72ac".encode(),
                                                                             b"\xff\x00\x80", b"plain"]))),
    "special-floats": (float_feature(float32_bytes([-0.0, math.inf, -math.inf, 1e-45, 3.4e38, 0.0533])),
                       tf.train.Feature(float_list=tf.train.FloatList(value=[-0.0, math.inf, -math.inf, 1e-45,
                                                                             3.4e38, 0.0533]))),
}


@pytest.mark.parametrize("name", FEATURES, ids=FEATURES)
def test_single_feature_serialises_like_protobuf(name):
    encoded, feature = FEATURES[name]
    assert encoded == feature.SerializeToString(deterministic=True)
    expected = tf.train.Example(features=tf.train.Features(feature={"k": feature, "a\u00e9": feature, "Z": feature}))
    assert serialize({"k": encoded, "a\u00e9": encoded, "Z": encoded}) == expected.SerializeToString(deterministic=True)


def test_serialize_sorts_keys_whatever_the_dict_order():
    a = {"b": int64_feature(1), "a": int64_feature(2), "image/x": bytes_feature(b"x")}
    assert serialize(a) == serialize(dict(reversed(list(a.items()))))


def test_float32_bytes_is_little_endian_float32():
    values = [0.0533, 1 / 3, 1.0, -2.5]
    assert float32_bytes(values) == np.asarray(values, dtype="<f4").tobytes()
    assert float32_bytes([]) == b""


TF_RECORDS = [b"", b"a", ours(*RECORDS["with-boxes"]), MEGABYTE_IMAGE, bytes(range(256)) * 3]


def test_frame_equals_tfrecordwriter_output(tmp_path):
    path = str(tmp_path / "ref.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for record in TF_RECORDS:
            writer.write(record)
    with open(path, "rb") as f:
        written = f.read()
    assert b"".join(frame(r) for r in TF_RECORDS) == written
    assert list(read_records(io.BytesIO(written))) == TF_RECORDS


SMALL = b"".join(frame(r) for r in (b"", b"hello", b"x" * 20))


@pytest.mark.parametrize("mask", [0x01, 0x80, 0xFF], ids=["low-bit", "high-bit", "whole-byte"])
def test_read_records_detects_any_changed_byte(mask):
    assert list(read_records(io.BytesIO(SMALL))) == [b"", b"hello", b"x" * 20]
    for pos in range(len(SMALL)):
        damaged = bytearray(SMALL)
        damaged[pos] ^= mask
        with pytest.raises(OutputError, match="train-00000-of-01024"):
            list(read_records(io.BytesIO(bytes(damaged)), "train-00000-of-01024"))


@pytest.mark.parametrize("cut", [5, 12, 16 + 14, len(SMALL) - 1],
                         ids=["in-length", "data-crc-missing", "in-data", "in-data-crc"])
def test_read_records_detects_truncation(cut):
    with pytest.raises(OutputError, match="shard"):
        list(read_records(io.BytesIO(SMALL[:cut]), "shard"))


@pytest.mark.parametrize("length", [0, 1, 127, 128, 16_383, 16_384, (1 << 21) + 5],
                         ids=lambda n: f"{n}-bytes")
def test_entry_head_of_a_large_bytes_value_equals_the_whole_entry(length):
    from streamprep.records.example import Schema, bytes_entry_head, entry

    value = bytes(range(256)) * (length // 256) + bytes(length % 256)
    whole = Schema(["image/encoded"]).serialize({"image/encoded": bytes_feature(value)})
    assert entry("image/encoded", bytes_feature(value)) == bytes_entry_head("image/encoded", len(value)) + value
    assert whole.endswith(entry("image/encoded", bytes_feature(value)))


@pytest.mark.parametrize("value", [0, 1, 127, 128, 4000, 2**40], ids=str)
def test_single_int64_entry_equals_the_generic_one(value):
    from streamprep.records.example import entry, int64_entry

    assert int64_entry("image/height", value) == entry("image/height", int64_feature(value))


def test_framing_in_parts_equals_framing_the_joined_record():
    from streamprep.outputs.tfrecord.write import frame_parts

    head, body, tail = b"\x0a\x95\x01head", MEGABYTE_IMAGE, b"tail"
    assert b"".join(frame_parts(head, body, tail)) == frame(head + body + tail)
