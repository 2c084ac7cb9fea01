"""DALI index files judged by NVIDIA DALI itself: its TFRecord and WebDataset readers, CPU-only (device_id=None).

The TFRecord records read by TensorFlow are the reference: DALI must read every record once, with
the same label and image bytes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from nvidia.dali import fn, pipeline_def, types
import nvidia.dali.tfrecord as tfrec

BATCH = 8  # the output: conftest's `both` fixture, shared with test_webdataset.py


def reference(folder: Path, split: str) -> dict[str, tuple[int, bytes]]:
    """file name -> (label, image bytes), as TensorFlow reads the TFRecord shards."""
    found = {}
    for path in sorted(folder.glob(f"{split}-*-of-*[0-9]")):
        for raw in tf.data.TFRecordDataset(str(path)):
            example = tf.train.Example.FromString(raw.numpy())
            feature = example.features.feature
            found[feature["image/filename"].bytes_list.value[0].decode()] = (
                feature["image/class/label"].int64_list.value[0], feature["image/encoded"].bytes_list.value[0])
    return found


def run_all(pipe, outputs: int) -> list[tuple]:
    """Every sample of one epoch, as tuples of numpy arrays (the last batch's padding dropped)."""
    pipe.build()
    total = pipe.epoch_size("Reader")
    rows: list[tuple] = []
    for _ in range(math.ceil(total / BATCH)):
        batch = pipe.run()
        rows += zip(*[[np.array(t) for t in batch[i]] for i in range(outputs)])
    return rows[:total]


@pytest.mark.parametrize("split", ["train", "validation"])
def test_dali_tfrecord_reader_reads_every_record_through_the_index_files(both, split):
    shards = sorted(str(p) for p in both.glob(f"{split}-*-of-*[0-9]"))

    @pipeline_def(batch_size=BATCH, num_threads=2, device_id=None)
    def pipe():
        inputs = fn.readers.tfrecord(path=shards, index_path=[s + ".idx" for s in shards], name="Reader",
                                     features={"image/encoded": tfrec.FixedLenFeature((), tfrec.string, ""),
                                               "image/class/label": tfrec.FixedLenFeature([1], tfrec.int64, -1),
                                               "image/filename": tfrec.FixedLenFeature((), tfrec.string, "")})
        images = fn.decoders.image(inputs["image/encoded"], device="cpu", output_type=types.RGB,
                                   adjust_orientation=False)
        return inputs["image/encoded"], inputs["image/class/label"], inputs["image/filename"], images

    rows = run_all(pipe(), 4)
    expected = reference(both, split)
    got = {bytes(name).decode(): (int(label[0]), bytes(encoded)) for encoded, label, name, _ in rows}
    assert len(rows) == len(expected) == len(got)
    assert got == expected
    assert all(image.ndim == 3 and image.shape[2] == 3 for *_, image in rows)


@pytest.mark.parametrize("split", ["train", "validation"])
def test_dali_webdataset_reader_reads_every_sample_through_the_index_files(both, split):
    shards = sorted(str(p) for p in both.glob(f"{split}-*.tar"))

    @pipeline_def(batch_size=BATCH, num_threads=2, device_id=None)
    def pipe():
        jpg, cls, meta = fn.readers.webdataset(paths=shards, index_paths=[s + ".idx" for s in shards],
                                               ext=["jpg", "cls", "json"], missing_component_behavior="error",
                                               name="Reader")
        # adjust_orientation=False: pixels as TensorFlow decodes them (the sample holds EXIF-rotated JPEGs)
        return jpg, cls, meta, fn.decoders.image(jpg, device="cpu", output_type=types.RGB, adjust_orientation=False)

    rows = run_all(pipe(), 4)
    expected = reference(both, split)
    got = {}
    for jpg, cls, meta, image in rows:
        info = json.loads(bytes(meta))
        got[info["filename"]] = (int(bytes(cls)) + 1, bytes(jpg))
        assert image.shape == (info["height"], info["width"], 3)
    assert len(rows) == len(expected) == len(got)
    assert got == expected
