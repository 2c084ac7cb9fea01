"""imagenet21k's TFDS metadata: a dataset no TFDS builder makes, described as `tfds.folder_dataset.write_metadata` does.

TensorFlow Datasets has no ImageNet-21k builder (tensorflow/datasets#3414). Its way of describing records written
outside TFDS is `tfds.folder_dataset.write_metadata`, after which `tfds.builder_from_directory(OUT/imagenet21k/1.0.0)`,
`tfds.load("imagenet21k", data_dir=OUT)` and `tfds.data_source(...)` read them. These are the files it writes there,
byte for byte (tensorflow-datasets 4.9.10; tests/test_tfds_imagenet21k.py runs it on the same values):

- `dataset_info.json`: the name, version 1.0.0, the file format, each split's shard lengths and `numBytes` (the
  records' serialised size, as a TFDS builder counts it), the description (the split recipe), the citation, the
  homepage and the supervised keys (image, label). No `moduleName`: no module holds a builder (write_metadata leaves
  it empty too).
- `features.json`: imagenet2012's three features, `image` (JPEG), `label` (a ClassLabel of the classes kept),
  `file_name` (Text).
- `label.labels.txt`: the ClassLabel's names, the synsets kept in sorted order (line k+1 is label k).
- `metadata.json` (`builder.info.metadata`): the recipe's options and each label's WordNet name.

Version 1.0.0 is the first version of a dataset in TFDS's semantic versioning (and write_metadata's own default).
"""

from __future__ import annotations

import json
from typing import Any, Sequence

NAME, VERSION = "imagenet21k", "1.0.0"
METADATA_JSON = "metadata.json"
HOMEPAGE = "https://image-net.org/"
FILENAME_TEMPLATE = "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}"
CITATION = """@inproceedings{deng2009imagenet,
  title={ImageNet: A large-scale hierarchical image database},
  author={Deng, Jia and Dong, Wei and Socher, Richard and Li, Li-Jia and Li, Kai and Fei-Fei, Li},
  booktitle={2009 IEEE Conference on Computer Vision and Pattern Recognition},
  pages={248--255},
  year={2009}
}"""
CITATION_21K_P = """@inproceedings{ridnik2021imagenet21k,
  title={ImageNet-21K Pretraining for the Masses},
  author={Ridnik, Tal and Ben-Baruch, Emanuel and Noy, Asaf and Zelnik-Manor, Lihi},
  booktitle={Thirty-fifth Conference on Neural Information Processing Systems Datasets and Benchmarks Track},
  year={2021}
}"""
# imagenet2012's features (streamprep/data/tfds/imagenet2012-features.json) with another number of classes.
IMAGE = {"image": {"dtype": "uint8", "encodingFormat": "jpeg", "shape": {"dimensions": ["-1", "-1", "3"]}},
         "pythonClassName": "tensorflow_datasets.core.features.image_feature.Image"}
TEXT = {"pythonClassName": "tensorflow_datasets.core.features.text_feature.Text", "text": {}}
CLASS_LABEL = "tensorflow_datasets.core.features.class_label_feature.ClassLabel"
FEATURES_DICT = "tensorflow_datasets.core.features.features_dict.FeaturesDict"


def is_21k_p(recipe: dict[str, Any]) -> bool:
    return recipe.get("split_recipe") != "all"


def description(recipe: dict[str, Any]) -> str:
    """What the dataset is: the release's shape, the split recipe with its thresholds, what a record holds."""
    if is_21k_p(recipe):
        split = ("ImageNet-21K-P's split, as Alibaba-MIIL's dataset_preprocessing/processing_script.sh makes it: a "
                 f"class is kept if it holds more than {recipe.get('keep_classes_over')} *.JPEG files, and the first "
                 f"{recipe.get('validation_per_class')} of each kept class, by the bytes of their names (ls in the C "
                 "locale), are its validation images; the rest are training images.")
    else:
        split = "Every class and every image, as training images (no validation split)."
    return ("ImageNet-21k: ImageNet's full release, one tar of images per WordNet synset (fall11_whole.tar, or the "
            f"per-synset tars), converted by streamprep without extraction. {split}\n\n"
            "Each example holds the image file's bytes as the archive stores them (image), the index of its synset "
            "in label.labels.txt, the synsets kept in sorted order (label), and its file name in the synset's tar "
            "(file_name). metadata.json (builder.info.metadata) holds the split recipe and each label's WordNet name "
            "(wordnet_names).")


def split_info(name: str, num_bytes: int, shard_lengths: Sequence[int]) -> dict[str, Any]:
    """A split as `SplitInfo.to_proto` gives it in JSON (a zero `numBytes` is protobuf's default, left out)."""
    info: dict[str, Any] = {"filepathTemplate": FILENAME_TEMPLATE, "name": name}
    if num_bytes:
        info["numBytes"] = str(num_bytes)
    info["shardLengths"] = [str(n) for n in shard_lengths]
    return info


def dataset_info(file_format: str, splits: Sequence[dict[str, Any]], recipe: dict[str, Any]) -> bytes:
    """dataset_info.json, as `json_format.MessageToJson(proto, sort_keys=True)` writes the DatasetInfo proto."""
    info = {"citation": CITATION + ("\n\n" + CITATION_21K_P if is_21k_p(recipe) else ""),
            "description": description(recipe), "fileFormat": file_format, "location": {"urls": [HOMEPAGE]},
            "name": NAME, "splits": list(splits),
            "supervisedKeys": {"tuple": {"items": [{"featureKey": "image"}, {"featureKey": "label"}]}},
            "version": VERSION}
    return json.dumps(info, indent=2, sort_keys=True).encode()


def features(num_classes: int) -> bytes:
    """features.json, as `FeatureConnector.save_config` writes it (indent 4, keys sorted)."""
    label = {"classLabel": {"numClasses": str(num_classes)}, "pythonClassName": CLASS_LABEL}
    top = {"featuresDict": {"features": {"file_name": TEXT, "image": IMAGE, "label": label}},
           "pythonClassName": FEATURES_DICT}
    return json.dumps(top, indent=4, sort_keys=True).encode()


def metadata(recipe: dict[str, Any], names: Sequence[str]) -> bytes:
    """metadata.json, as `tfds.core.MetadataDict.save_metadata` writes it (`json.dump`): the recipe's options, then
    the WordNet name of each label (`wordnet_names[label]`)."""
    return json.dumps({**recipe, "wordnet_names": list(names)}).encode()


def metadata_files(file_format: str, splits: Sequence[dict[str, Any]], synsets: Sequence[str], names: Sequence[str],
                   recipe: dict[str, Any]) -> dict[str, bytes]:
    """Its four metadata files by name (in the version folder): `splits` as `split_info` gives them, `synsets` the
    ClassLabel's names, `names` their WordNet names, `recipe` the split recipe's options."""
    return {"dataset_info.json": dataset_info(file_format, splits, recipe), "features.json": features(len(synsets)),
            "label.labels.txt": "".join(f"{s}\n" for s in synsets).encode(),
            METADATA_JSON: metadata(recipe, names)}
