"""ImageNet-21k (fall11): one archive of per-synset tars, its validation split chosen by a recipe (ImageNet-21K-P).

The recipe is Alibaba-MIIL/ImageNet21K's `dataset_preprocessing/processing_script.sh`, on names alone:

    for c in ${ROOT}/n*; do
        count=`ls $c/*.JPEG | wc -l`
        if [ "$count" -gt "500" ]; then ... keep ... else mv $c ${BACKUP}/ ...
    for i in ${ROOT}/n*; do ...
        for j in `ls $i/*.JPEG | head -n 50`; do # no shuf for reproducibility
            mv $j ${VAL_ROOT}/$c/

so a class is kept if it holds MORE than `keep_classes_over` `*.JPEG` files, and the first `validation_per_class`
of each kept class, in the byte order of their names (`ls` in the C locale), are its validation images.
`index/synset_tars.py` walks the archive and applies it.
"""

from __future__ import annotations

import re
from typing import Any

from .entry import Dataset, DefaultPlan, Download, Fixups, LabelFile, Members, OwnOption

RECIPES = ("21k-p", "all")  # ImageNet-21K-P's split; every class and image as training
FOLDER = "imagenet21k"  # its shipped label files, under streamprep/data/ (docs/label-data.md)

# image-net.org's fall 2011 release: one tar of 21,841 per-synset tars (1.31 TB). No MD5 is published with it
# that streamprep could quote, so `--check-md5` is refused for this dataset (`Download.md5` empty).
TRAIN = Download("train", "fall11_whole.tar", "", 1.31e12, "1.31 TB", "archive of per-synset tars",
                 folder_glob="n*.tar")


def is_image(name: str) -> bool:
    """`ls $c/*.JPEG`: the extension in capitals, and (a shell glob's `*`) not a hidden name."""
    return name.endswith(".JPEG") and not name.startswith(".")


def class_synset(name: str) -> str | None:
    """`n01440764.tar` at the top of the archive (or of the folder) holds synset n01440764: the script extracts
    each tar into the folder of its name less `.tar`, and then takes the folders named `n*`."""
    if "/" in name or not name.startswith("n") or not name.endswith(".tar") or len(name) <= len("n.tar"):
        return None
    return name[:-len(".tar")]


def check_options(values: dict[str, Any]) -> str | None:
    """What is wrong with the recipe's options (a one-line message), or None."""
    if values["split_recipe"] not in RECIPES:
        return f"split_recipe (--split-recipe) must be one of {', '.join(RECIPES)}, got {values['split_recipe']!r}"
    for name in ("keep_classes_over", "validation_per_class"):
        if values[name] < 0:
            return f"{name} (--{name.replace('_', '-')}) must be 0 or more, got {values[name]}"
    return None


MEMBERS = Members(
    image_glob="*.JPEG", is_image=is_image, class_tar_glob="nXXXXXXXX.tar", class_synset=class_synset,
    validation_image="", validation_pattern=re.compile(r"(?!)"))  # no validation download: its split is chosen

OPTIONS = {
    "split_recipe": OwnOption(
        "21k-p", metavar="RECIPE",
        help="21k-p: ImageNet-21K-P as Alibaba-MIIL's processing_script.sh makes it (classes with more than "
        "--keep-classes-over *.JPEG files; the first --validation-per-class of each, by name, to validation); "
        "all: every class and image as training"),
    "keep_classes_over": OwnOption(500, metavar="N", help="21k-p keeps a class only if it holds more than N *.JPEG "
                                   "files (counted by name, before decoding)"),
    "validation_per_class": OwnOption(50, metavar="N", help="21k-p moves the first N *.JPEG files of each kept "
                                      "class, in the byte order of their names, to validation"),
}

IMAGENET21K = Dataset(
    name="imagenet21k",
    output_name="imagenet21k",
    title="ImageNet-21k (fall11_whole.tar, or a folder of per-synset tars), split by a recipe (ImageNet-21K-P)",
    downloads=(TRAIN,),
    members=MEMBERS,
    labels=(LabelFile("labels", f"{FOLDER}/imagenet21k_goog_synsets.txt", "labels_file", "labels file"),
            LabelFile("metadata", "imagenet_metadata.txt", "metadata_file", "metadata file")),
    fixups=Fixups(png=frozenset(), cmyk=frozenset()),  # the classic's 23 re-encodings are ILSVRC2012's
    boxes=None,
    # ImageNet-21K-P has 11,797,632 training and 561,052 validation images (fall11 averages about 92 KB an image,
    # 1.31 TB over 14.2 M): 4096 and 256 shards hold about 2,900 and 2,200 images, about 265 MB and 200 MB each,
    # within WebDataset's advised 100 MB to 1 GB and enough shards for many ranks times loader workers; both are
    # multiples of the 8 classic threads that place the cuts.
    plan=DefaultPlan(train_shards=4096, validation_shards=256, classic_threads=8),
    options=OPTIONS,
    walk="synset_tars",
    check_options=check_options,
)
