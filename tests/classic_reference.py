"""Independent reference implementation of the classic five-step ImageNet procedure.

Used by parity tests: it really extracts the three downloads with the ``tar``
command into a working folder, writes ``bboxes.csv`` (classic
``process_bounding_boxes.py``), moves the validation images into synset
folders (classic ``preprocess_imagenet_validation_data.py``), extracts the
per-class training tars, and builds the TFRecord shards with threads and
TensorFlow (classic ``build_imagenet_data.py``).  It deliberately does not
import ``streamprep``.  The function names follow the classic scripts so the
two can be compared side by side.

Differences from the classic, as the spec (classic-pipeline.md) allows:
listings are sorted (XML files by synset folder then file name, images by file
name within a synset), and an exception in a worker thread is re-raised
instead of being printed and lost.
"""

import glob
import os
import random
import shutil
import subprocess
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import tensorflow as tf

__all__ = ["run_classic", "read_examples", "CMYK_LIST", "PNG_NAME"]

PNG_NAME = "n02105855_2933.JPEG"
CMYK_LIST = [
    "n01739381_1309.JPEG", "n02077923_14822.JPEG", "n02447366_23489.JPEG",
    "n02492035_15739.JPEG", "n02747177_10752.JPEG", "n03018349_4028.JPEG",
    "n03062245_4620.JPEG", "n03347037_9675.JPEG", "n03467068_12171.JPEG",
    "n03529860_11437.JPEG", "n03544143_17228.JPEG", "n03633091_5218.JPEG",
    "n03710637_5125.JPEG", "n03961711_5286.JPEG", "n04033995_2932.JPEG",
    "n04258138_17003.JPEG", "n04264628_27969.JPEG", "n04336792_7448.JPEG",
    "n04371774_5854.JPEG", "n04596742_4225.JPEG", "n07583066_647.JPEG",
    "n13037406_4650.JPEG",
]


def _tar(*args):
    """Run the ``tar`` command as a user would; fail loudly."""
    subprocess.run(["tar", *[str(a) for a in args]], check=True)


# --------------------------------------------------------------------------
# Step 2: bboxes.csv  (classic process_bounding_boxes.py)
# --------------------------------------------------------------------------

def GetItem(name, root, index=0):
    count = 0
    for item in root.iter(name):
        if count == index:
            return item.text
        count += 1
    # Failed to find "index" occurrence of item.
    return -1


def GetInt(name, root, index=0):
    # Some annotation files hold floats, hence int(float(...)).
    return int(float(GetItem(name, root, index)))


def FindNumberBoundingBoxes(root):
    index = 0
    while True:
        if GetInt("xmin", root, index) == -1:
            break
        index += 1
    return index


def ProcessXMLAnnotation(xml_file):
    """Return the scaled, clamped boxes of one XML file as 4-tuples.

    Like the classic, a parse error is fatal (the classic prints it and then
    fails an assert); ``<filename>`` and ``<name>`` are not used.
    """
    root = ET.parse(xml_file).getroot()
    boxes = []
    for index in range(FindNumberBoundingBoxes(root)):
        box_xmin = GetInt("xmin", root, index)
        box_ymin = GetInt("ymin", root, index)
        box_xmax = GetInt("xmax", root, index)
        box_ymax = GetInt("ymax", root, index)
        width = GetInt("width", root)
        height = GetInt("height", root)

        xmin = float(box_xmin) / float(width)
        xmax = float(box_xmax) / float(width)
        ymin = float(box_ymin) / float(height)
        ymax = float(box_ymax) / float(height)

        # Boxes may extend outside the image or have min > max.
        min_x, max_x = min(xmin, xmax), max(xmin, xmax)
        xmin_scaled = min(max(min_x, 0.0), 1.0)
        xmax_scaled = min(max(max_x, 0.0), 1.0)
        min_y, max_y = min(ymin, ymax), max(ymin, ymax)
        ymin_scaled = min(max(min_y, 0.0), 1.0)
        ymax_scaled = min(max(max_y, 0.0), 1.0)
        boxes.append((xmin_scaled, ymin_scaled, xmax_scaled, ymax_scaled))
    return boxes


def write_bboxes_csv(bbox_dir, csv_path):
    """Walk ``bbox_dir/*/*.xml`` (sorted by synset folder, then file name)."""
    xml_files = glob.glob(os.path.join(str(bbox_dir), "*", "*.xml"))
    xml_files.sort(key=lambda p: (os.path.basename(os.path.dirname(p)),
                                  os.path.basename(p)))
    with open(csv_path, "w", encoding="utf-8", newline="\n") as out:
        for xml_file in xml_files:
            image_filename = os.path.splitext(os.path.basename(xml_file))[0]
            for xmin, ymin, xmax, ymax in ProcessXMLAnnotation(xml_file):
                # Guard against improperly specified boxes.
                if xmin >= xmax or ymin >= ymax:
                    continue
                out.write("%s.JPEG,%.4f,%.4f,%.4f,%.4f\n"
                          % (image_filename, xmin, ymin, xmax, ymax))


# --------------------------------------------------------------------------
# Step 3: validation folders  (classic preprocess_imagenet_validation_data.py)
# --------------------------------------------------------------------------

def reorganize_validation(data_dir, validation_labels_file):
    data_dir = str(data_dir)
    with open(validation_labels_file) as f:
        labels = [l.strip() for l in f.readlines()]
    for label in set(labels):
        os.makedirs(os.path.join(data_dir, label), exist_ok=True)
    for i, label in enumerate(labels):
        filename = "ILSVRC2012_val_%08d.JPEG" % (i + 1)
        original_filename = os.path.join(data_dir, filename)
        if not os.path.exists(original_filename):
            raise FileNotFoundError("Failed to find: %s" % original_filename)
        os.rename(original_filename, os.path.join(data_dir, label, filename))


# --------------------------------------------------------------------------
# Step 4: training folders
# --------------------------------------------------------------------------

def extract_training(train_tar, train_dir):
    os.makedirs(train_dir, exist_ok=True)
    _tar("-xf", train_tar, "-C", train_dir)
    for class_tar in sorted(glob.glob(os.path.join(str(train_dir), "*.tar"))):
        class_dir = class_tar[: -len(".tar")]
        os.makedirs(class_dir, exist_ok=True)
        _tar("-xf", class_tar, "-C", class_dir)   # the .tar is left behind


# --------------------------------------------------------------------------
# Step 5: shards  (classic build_imagenet_data.py)
# --------------------------------------------------------------------------

def _int64_feature(value):
    if not isinstance(value, list):
        value = [value]
    return tf.train.Feature(int64_list=tf.train.Int64List(value=value))


def _float_feature(value):
    if not isinstance(value, list):
        value = [value]
    return tf.train.Feature(float_list=tf.train.FloatList(value=value))


def _bytes_feature(value):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _convert_to_example(filename, image_buffer, label, synset, human, bbox,
                        height, width):
    xmin, ymin, xmax, ymax = [], [], [], []
    for b in bbox:
        assert len(b) == 4
        for l, point in zip([xmin, ymin, xmax, ymax], b):
            l.append(point)
    return tf.train.Example(features=tf.train.Features(feature={
        "image/height": _int64_feature(height),
        "image/width": _int64_feature(width),
        "image/colorspace": _bytes_feature(b"RGB"),
        "image/channels": _int64_feature(3),
        "image/class/label": _int64_feature(label),
        "image/class/synset": _bytes_feature(synset.encode("utf-8")),
        "image/class/text": _bytes_feature(human.encode("utf-8")),
        "image/object/bbox/xmin": _float_feature(xmin),
        "image/object/bbox/xmax": _float_feature(xmax),
        "image/object/bbox/ymin": _float_feature(ymin),
        "image/object/bbox/ymax": _float_feature(ymax),
        "image/object/bbox/label": _int64_feature([label] * len(xmin)),
        "image/format": _bytes_feature(b"JPEG"),
        "image/filename": _bytes_feature(
            os.path.basename(filename).encode("utf-8")),
        "image/encoded": _bytes_feature(image_buffer),
    }))


def _process_image(filename):
    """Return (JPEG bytes, height, width), with the classic's PNG/CMYK fix-ups."""
    with open(filename, "rb") as f:
        image_data = f.read()
    if PNG_NAME in filename:                           # classic _is_png
        image_data = tf.io.encode_jpeg(
            tf.io.decode_png(image_data, channels=3),
            format="rgb", quality=100).numpy()
    elif os.path.basename(filename) in CMYK_LIST:      # classic _is_cmyk
        image_data = tf.io.encode_jpeg(
            tf.io.decode_jpeg(image_data, channels=0),
            format="rgb", quality=100).numpy()
    image = tf.io.decode_jpeg(image_data, channels=3).numpy()
    assert image.ndim == 3 and image.shape[2] == 3
    height, width = image.shape[:2]
    return image_data, int(height), int(width)


def _process_image_files_batch(thread_index, ranges, name, filenames, synsets,
                               labels, humans, bboxes, num_shards, out_dir):
    num_threads = len(ranges)
    assert not num_shards % num_threads
    num_shards_per_batch = num_shards // num_threads
    shard_ranges = np.linspace(ranges[thread_index][0], ranges[thread_index][1],
                               num_shards_per_batch + 1).astype(int)
    for s in range(num_shards_per_batch):
        shard = thread_index * num_shards_per_batch + s
        output_file = os.path.join(
            out_dir, "%s-%.5d-of-%.5d" % (name, shard, num_shards))
        writer = tf.io.TFRecordWriter(output_file)
        for i in np.arange(shard_ranges[s], shard_ranges[s + 1], dtype=int):
            image_buffer, height, width = _process_image(filenames[i])
            example = _convert_to_example(filenames[i], image_buffer, labels[i],
                                          synsets[i], humans[i], bboxes[i],
                                          height, width)
            writer.write(example.SerializeToString())
        writer.close()


def _process_image_files(name, filenames, synsets, labels, humans, bboxes,
                         num_shards, num_threads, out_dir):
    assert len(filenames) == len(synsets) == len(labels)
    assert len(filenames) == len(humans) == len(bboxes)
    spacing = np.linspace(0, len(filenames), num_threads + 1).astype(int)
    ranges = [[spacing[i], spacing[i + 1]] for i in range(len(spacing) - 1)]

    errors = []

    def run(thread_index):
        try:
            _process_image_files_batch(thread_index, ranges, name, filenames,
                                       synsets, labels, humans, bboxes,
                                       num_shards, out_dir)
        except BaseException as e:  # the classic would lose this in the thread
            errors.append(e)

    threads = [threading.Thread(target=run, args=(t,))
               for t in range(len(ranges))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def _find_image_files(data_dir, labels_file):
    with open(labels_file) as f:
        challenge_synsets = [l.strip() for l in f.readlines()]
    labels, filenames, synsets = [], [], []
    label_index = 1  # label 0 is the unused background class
    for synset in challenge_synsets:
        # tf.io.gfile.glob like the classic (it also matches dot files), but
        # sorted: the classic keeps the file system's listing order.
        jpeg_file_path = "%s/%s/*.JPEG" % (data_dir, synset)
        matching_files = sorted(tf.io.gfile.glob(jpeg_file_path))
        labels.extend([label_index] * len(matching_files))
        synsets.extend([synset] * len(matching_files))
        filenames.extend(matching_files)
        label_index += 1

    shuffled_index = list(range(len(filenames)))
    random.seed(12345)
    random.shuffle(shuffled_index)
    filenames = [filenames[i] for i in shuffled_index]
    synsets = [synsets[i] for i in shuffled_index]
    labels = [labels[i] for i in shuffled_index]
    return filenames, synsets, labels


def _find_human_readable_labels(synsets, synset_to_human):
    return [synset_to_human[s] for s in synsets]


def _find_image_bounding_boxes(filenames, image_to_bboxes):
    return [image_to_bboxes.get(os.path.basename(f), []) for f in filenames]


def _process_dataset(name, directory, num_shards, synset_to_human,
                     image_to_bboxes, labels_file, num_threads, out_dir):
    filenames, synsets, labels = _find_image_files(directory, labels_file)
    humans = _find_human_readable_labels(synsets, synset_to_human)
    bboxes = _find_image_bounding_boxes(filenames, image_to_bboxes)
    _process_image_files(name, filenames, synsets, labels, humans, bboxes,
                         num_shards, num_threads, out_dir)


def _build_synset_lookup(imagenet_metadata_file):
    with open(imagenet_metadata_file, encoding="utf-8") as f:
        lines = f.readlines()
    synset_to_human = {}
    for l in lines:
        if l:
            parts = l.strip().split("\t")
            assert len(parts) == 2
            synset_to_human[parts[0]] = parts[1]
    return synset_to_human


def _build_bounding_box_lookup(bounding_box_file):
    with open(bounding_box_file, encoding="utf-8") as f:
        lines = f.readlines()
    images_to_bboxes = {}
    for l in lines:
        if l:
            parts = l.split(",")
            assert len(parts) == 5, "Failed to parse: %s" % l
            box = [float(parts[1]), float(parts[2]),
                   float(parts[3]), float(parts[4])]
            images_to_bboxes.setdefault(parts[0], []).append(box)
    return images_to_bboxes


# --------------------------------------------------------------------------
# The whole procedure
# --------------------------------------------------------------------------

def run_classic(train_tar, val_tar, bbox_targz, out_dir, *, work_dir,
                synsets_file, metadata_file, validation_labels_file,
                train_shards=1024, validation_shards=128, num_threads=8):
    """Run the five manual steps in ``work_dir``; write shards and bboxes.csv to ``out_dir``."""
    assert not train_shards % num_threads, "train_shards must be a multiple of num_threads"
    assert not validation_shards % num_threads, "validation_shards must be a multiple of num_threads"
    work = Path(work_dir)
    out_dir = str(out_dir)
    os.makedirs(work, exist_ok=True)
    os.makedirs(out_dir, exist_ok=True)

    # Step 2: bounding boxes.
    bbox_dir = work / "bboxes"
    bbox_dir.mkdir(exist_ok=True)
    _tar("-xzf", bbox_targz, "-C", bbox_dir)
    bboxes_csv = work / "bboxes.csv"
    write_bboxes_csv(bbox_dir, bboxes_csv)

    # Step 3: validation images into synset folders.
    val_dir = work / "ILSVRC2012_img_val"
    val_dir.mkdir(exist_ok=True)
    _tar("-xf", val_tar, "-C", val_dir)
    reorganize_validation(val_dir, validation_labels_file)

    # Step 4: training images.
    train_dir = work / "ILSVRC2012_img_train"
    extract_training(train_tar, train_dir)

    # Step 5: shards, validation first like the classic.
    synset_to_human = _build_synset_lookup(metadata_file)
    image_to_bboxes = _build_bounding_box_lookup(bboxes_csv)
    _process_dataset("validation", str(val_dir), validation_shards,
                     synset_to_human, image_to_bboxes, synsets_file,
                     num_threads, out_dir)
    _process_dataset("train", str(train_dir), train_shards,
                     synset_to_human, image_to_bboxes, synsets_file,
                     num_threads, out_dir)
    shutil.copyfile(bboxes_csv, os.path.join(out_dir, "bboxes.csv"))


def read_examples(path):
    """All records of one TFRecord file, parsed, in file order."""
    return [tf.train.Example.FromString(record.numpy())
            for record in tf.data.TFRecordDataset(str(path))]
