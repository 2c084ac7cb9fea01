"""ILSVRC2012, the first dataset entry: the three downloads, the classic's member rules, label files, fix-ups, plan."""

from __future__ import annotations

import re

from .entry import Boxes, Dataset, DefaultPlan, Download, Fixups, LabelFile, Members

GIB, MIB = 1 << 30, 1 << 20

# From the download page (../shared/seed/imagenet-data-preparation.md, step 1).
TRAIN = Download("train", "ILSVRC2012_img_train.tar", "1d675b47d978889d74fa0da5fadfb00e", 138 * GIB, "138 GB",
                 "training tar")
VAL = Download("val", "ILSVRC2012_img_val.tar", "29b22e2961454d5413ddabcf34fc5622", 6.3 * GIB, "6.3 GB",
               "validation tar")
BBOX = Download("bbox", "ILSVRC2012_bbox_train_v2.tar.gz", "9271167e2176350e65cfe4e546f14b17", 20 * MIB, "20 MB",
                "bounding-box tar.gz")
# Optional (`--bbox-val`): the validation boxes, one `val/ILSVRC2012_val_NNNNNNNN.xml` per image; the download page's
# "Validation bounding box annotations (all tasks)", 2.2 MB, MD5 as listed there.
BBOX_VAL = Download("bbox_val", "ILSVRC2012_bbox_val_v3.tgz", "f4cd18b5ea29fe6bbea62ec9c20d80f0", 2.2 * MIB, "2.2 MB",
                    "validation bounding-box tgz", required=False)


def is_image(name: str) -> bool:
    """The classic's `*.JPEG` glob: the extension in capitals, as in the downloads (`x.jpeg` is not an image)."""
    return name.endswith(".JPEG")


def class_synset(name: str) -> str | None:
    """`n01440764.tar` at the top of the training tar holds the images of synset n01440764; any other member holds
    none (the classic extracts each class tar into the folder of its name less `.tar`)."""
    return name[:-len(".tar")] if name.endswith(".tar") and "/" not in name else None


MEMBERS = Members(
    image_glob="*.JPEG", is_image=is_image, class_tar_glob="nXXXXXXXX.tar", class_synset=class_synset,
    validation_image="ILSVRC2012_val_%08d.JPEG", validation_pattern=re.compile(r"ILSVRC2012_val_\d{8}\.JPEG"))

# The classic's three label files, shipped byte-identical (docs/label-data.md gives their sources and sha256 sums).
LABELS = (
    LabelFile("labels", "imagenet_lsvrc_2015_synsets.txt", "labels_file", "labels file"),
    LabelFile("metadata", "imagenet_metadata.txt", "metadata_file", "metadata file"),
    LabelFile("validation", "imagenet_2012_validation_synset_labels.txt", "validation_labels_file",
              "validation labels file"),
)

# The classic's 23 files that are not RGB JPEGs (`build_imagenet_data.py`'s `_is_png` and `_is_cmyk` lists).
FIXUPS = Fixups(png=frozenset({"n02105855_2933.JPEG"}), cmyk=frozenset("""
n01739381_1309.JPEG n02077923_14822.JPEG n02447366_23489.JPEG n02492035_15739.JPEG n02747177_10752.JPEG
n03018349_4028.JPEG n03062245_4620.JPEG n03347037_9675.JPEG n03467068_12171.JPEG n03529860_11437.JPEG
n03544143_17228.JPEG n03633091_5218.JPEG n03710637_5125.JPEG n03961711_5286.JPEG n04033995_2932.JPEG
n04258138_17003.JPEG n04264628_27969.JPEG n04336792_7448.JPEG n04371774_5854.JPEG n04596742_4225.JPEG
n07583066_647.JPEG n13037406_4650.JPEG""".split()))

ILSVRC2012 = Dataset(
    name="ilsvrc2012",
    output_name="imagenet2012",
    title="ImageNet ILSVRC2012: the training and validation tars and the training boxes, the classic's shards",
    downloads=(TRAIN, VAL, BBOX, BBOX_VAL),
    members=MEMBERS,
    labels=LABELS,
    fixups=FIXUPS,
    boxes=Boxes(download="bbox", split="train", xml_glob="*/*.xml"),
    split_boxes=(Boxes(download="bbox_val", split="validation", xml_glob="*/*.xml"),),  # val/*.xml in the real one
    plan=DefaultPlan(train_shards=1024, validation_shards=128, classic_threads=8),
)
