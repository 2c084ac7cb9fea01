"""What both writers of the `imagenet-1k` Parquet files share: names, schema and features, class names, row groups.

A shard's file is written by streamprep's own framing (`framed.py`, the default) or by pyarrow as
`datasets` writes it (`datasets_writer.py`, `--parquet-writer datasets`); either holds the same rows,
in row groups of the same number of rows (`row_group_rows`: as many as `push_to_hub` puts in one),
under the same schema and `huggingface` metadata, so pyarrow reads the same table from either.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any, Sequence

import numpy as np

from ...errors import ImageError, LabelDataError, MissingDependencyError
from ...plan import SHARD_STEM
from ...records.spec import RecordSpec

FOLDER = "data"  # push_to_hub's data_dir: `{data_dir}/{split}-{index:05d}-of-{num_shards:05d}.parquet`
SUFFIX = ".parquet"
SHARD_PATTERN = FOLDER + "/" + SHARD_STEM + re.escape(SUFFIX)  # data/train-00000-of-01024.parquet
WRITERS = ("streamprep", "datasets")  # --parquet-writer: streamprep's framing (the default), or datasets' pyarrow

# datasets/config.py: `MAX_ROW_GROUP_SIZE = "100MB"` (uncompressed bytes a row group aims at; `convert_file_size_to_int`
# reads MB as 10**6 bytes).
ROW_GROUP_BYTES = 100 * 10**6


def file_name(stem: str) -> str:
    """A shard's file (`ShardSpec.name`, `train-00000-of-01024`) as push_to_hub names a split's files."""
    return f"{FOLDER}/{stem}{SUFFIX}"


def class_names(labels: Any) -> list[str]:
    """The `label` ClassLabel's names, as the hub's `imagenet-1k` names its classes (its loading script's
    `classes.py`, `IMAGENET2012_CLASSES`: synset -> name, in the synsets file's order): each synset's text from the
    metadata file, but a text an earlier synset already has gets its count appended. The hub names n03126707
    "crane2", the second "crane" of the metadata file (n02012849 is the first): a ClassLabel takes each name once.
    `LabelDataError` if a synset has no text, or the names still repeat."""
    seen: Counter = Counter()
    names: list[str] = []
    for synset in labels.synsets:
        text = labels.text(synset)  # LabelDataError naming the metadata file if it has none
        seen[text] += 1
        names.append(text if seen[text] == 1 else f"{text}{seen[text]}")
    repeated = [name for name, n in Counter(names).items() if n > 1]
    if repeated:
        raise LabelDataError(f"metadata file {labels.sources.get('metadata', '')}: the class name {repeated[0]!r} "
                             "would be given twice (a text repeated, and a text that is another's with its count "
                             "appended); Hugging Face's ClassLabel takes each name once: make the texts unique, or "
                             "write another --format")
    return names


def features_json(names: Sequence[str]) -> str:
    """The schema's `huggingface` metadata: `datasets.Features.arrow_schema`'s
    `json.dumps({"info": {"features": self.to_dict()}})` for `{"image": Image(), "label": ClassLabel(names=...)}`,
    from which the packaged `parquet` builder takes the features (`Features.from_arrow_schema`)."""
    features = {"image": {"_type": "Image"}, "label": {"names": list(names), "_type": "ClassLabel"}}
    return json.dumps({"info": {"features": features}})


def arrow_schema(names: Sequence[str]) -> Any:
    """`image` (the Image feature's storage, `struct<bytes: binary, path: string>`) and `label` (int64), with the
    features as metadata."""
    import pyarrow as pa

    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    return pa.schema([("image", image), ("label", pa.int64())]).with_metadata({"huggingface": features_json(names)})


def estimated_nbytes(sizes: np.ndarray) -> int:
    """What `Dataset._estimate_nbytes()` gives for a split of these image sizes: the Arrow table's bytes (the images
    and their int32 offsets, the int64 labels; the paths' bytes, which it subtracts for an Image column, left out)."""
    n = len(sizes)
    return int(sizes.sum()) + 4 * (n + 1) + 8 * n


def row_group_rows(sizes: np.ndarray) -> int:
    """Rows a row group holds, for a split of these image sizes: `push_to_hub`'s `writer_batch_size`,
    `get_writer_batch_size_from_data_size(len(self), self._estimate_nbytes())`, i.e.
    `max(1, num_rows * MAX_ROW_GROUP_SIZE // num_bytes) if num_bytes > 0 else 1` (Image data has no row count of its
    own: `PARQUET_ROW_GROUP_SIZE_FOR_IMAGE_DATASETS` is None)."""
    nbytes = estimated_nbytes(sizes)
    return max(1, len(sizes) * ROW_GROUP_BYTES // nbytes) if nbytes > 0 else 1


def utf8_name(spec: RecordSpec) -> str:
    """The image's file name as the `path` column holds it (UTF-8 text); `ImageError` for a name that is not."""
    try:
        spec.filename.encode("utf-8")
    except UnicodeEncodeError:
        raise ImageError(f"{spec.member}: its name is not UTF-8, and a Parquet file's image path is UTF-8 text; "
                         "rename the member in the archive, or write another --format") from None
    return spec.filename


def pyarrow_for(what: str) -> Any:
    """pyarrow (with `pyarrow.parquet` imported), which `what` needs: reading Parquet files back (verify, inspect);
    `MissingDependencyError` naming the extra when it is not installed (a conversion with streamprep's own framing
    needs none, so an output may be on a machine without it)."""
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401  (pyarrow.parquet, as the caller uses it)
    except ImportError:
        raise MissingDependencyError(f"{what} needs pyarrow, which is not installed: pip install "
                                     "'streamprep[parquet]'") from None
    return pyarrow
