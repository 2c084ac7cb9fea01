"""Shards read back by TensorFlow as a training script for the classic shards reads them."""

from __future__ import annotations

import pytest
import tensorflow as tf


# The feature spec of the classic training scripts (inception's image_processing.parse_example_proto).
CLASSIC_FEATURES = {
    "image/encoded": tf.io.FixedLenFeature([], dtype=tf.string, default_value=""),
    "image/class/label": tf.io.FixedLenFeature([1], dtype=tf.int64, default_value=-1),
    "image/class/text": tf.io.FixedLenFeature([], dtype=tf.string, default_value=""),
    **{f"image/object/bbox/{k}": tf.io.VarLenFeature(dtype=tf.float32) for k in ("xmin", "ymin", "xmax", "ymax")},
}
EXTRA = {
    "image/height": tf.io.FixedLenFeature([], tf.int64), "image/width": tf.io.FixedLenFeature([], tf.int64),
    "image/channels": tf.io.FixedLenFeature([], tf.int64), "image/format": tf.io.FixedLenFeature([], tf.string),
    "image/colorspace": tf.io.FixedLenFeature([], tf.string), "image/filename": tf.io.FixedLenFeature([], tf.string),
    "image/class/synset": tf.io.FixedLenFeature([], tf.string),
    "image/object/bbox/label": tf.io.VarLenFeature(tf.int64),
}


@pytest.fixture(scope="module")
def shards(converted_sample):
    """The sample's classic shards at the small layout (conftest's, shared)."""
    return converted_sample


@pytest.mark.parametrize("split, images", [("train", 31), ("validation", 13)], ids=["train", "validation"])
def test_tf_data_parses_and_decodes_every_record(shards, split, images):
    files = sorted(str(p) for p in shards.glob(f"{split}-*"))
    dataset = tf.data.TFRecordDataset(files).map(lambda r: tf.io.parse_single_example(r, {**CLASSIC_FEATURES, **EXTRA}))
    count = 0
    for features in dataset:
        image = tf.io.decode_jpeg(features["image/encoded"], channels=3)
        assert image.shape == (int(features["image/height"]), int(features["image/width"]), 3)
        assert features["image/format"] == b"JPEG" and features["image/colorspace"] == b"RGB"
        assert int(features["image/channels"]) == 3
        label = int(features["image/class/label"][0])
        assert 1 <= label <= 1000
        boxes = [tf.sparse.to_dense(features[f"image/object/bbox/{k}"]).numpy() for k in ("xmin", "ymin", "xmax", "ymax")]
        assert all(len(b) == len(boxes[0]) for b in boxes)
        assert list(tf.sparse.to_dense(features["image/object/bbox/label"]).numpy()) == [label] * len(boxes[0])
        assert all((0 <= x).all() and (x <= 1).all() for x in boxes)
        assert ((boxes[0] < boxes[2]) & (boxes[1] < boxes[3])).all()
        count += 1
    assert count == images


def test_fixed_up_images_are_rgb_jpegs(shards):
    files = sorted(str(p) for p in shards.glob("train-*"))
    fixed = {}
    for raw in tf.data.TFRecordDataset(files):
        example = tf.train.Example.FromString(raw.numpy())
        name = example.features.feature["image/filename"].bytes_list.value[0].decode()
        if name in ("n02105855_2933.JPEG", "n01739381_1309.JPEG", "n02077923_14822.JPEG"):
            encoded = example.features.feature["image/encoded"].bytes_list.value[0]
            fixed[name] = encoded
            assert encoded[:2] == b"\xff\xd8"
            assert tf.io.decode_jpeg(encoded, channels=0).shape[2] == 3
    assert len(fixed) == 3
