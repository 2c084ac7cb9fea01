"""WebDataset tar shards, a registry entry: a sample per image (.jpg, .cls, .json), as webdataset, timm, DALI read them.

Each shard `train-00000-of-01024.tar` holds the same images in the same order as the TFRecord shard
of that name. A sample's key is the image's file name without its extension, under its synset for
training images (`n01440764/n01440764_10026`, unique even where two classes hold the same file
name; validation: `ILSVRC2012_val_00000001`). Characters that a reader would take for something
else (a `.` starts the extension, a space ends a name in DALI's index) are percent-encoded, so a key
is always `[A-Za-z0-9_%/-]` (the empty stem of a file named `.JPEG` is `%`). A synset that would
start a key with `__...__/`, which the webdataset library skips as metadata (`READERS_SKIP`), is
refused before anything is written. Its members:
- `KEY.jpg`: the image bytes the classic's record holds (fix-up files re-encoded as the classic does);
- `KEY.cls`: the class as decimal text, 0..N-1 in the order of the labels file (sorted synsets for
  ImageNet): what timm's `reader_wds` and torchvision's `ImageFolder` number; the classic TFRecord's
  `image/class/label` is this plus 1;
- `KEY.json`: `filename`, `synset`, `text`, `label` (the classic's 1..N), `cls`, `height`, `width`
  and `boxes` (the classic's relative `[xmin, ymin, xmax, ymax]`, float32 values written in their
  shortest form), keys sorted, UTF-8.
The tar is deterministic: ustar headers (pax records only for names over 100 bytes), mode 0444,
uid/gid 0, no user or group names, mtime 0; the archive ends with two zero blocks, padded to a
multiple of 10240 bytes as Python's tarfile and GNU tar do. `_info.json` beside the shards lists
each split's shard files and sample counts in timm's layout.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Sequence

from ...plan import SHARD_STEM, Plan, ShardSpec
from .. import registry
from ..format import Format, ShardEncoder
from ..manifest import ShardEntry
from .write import INFO_JSON, RECORD_ALLOWANCE, SUFFIX, Encoder, refuse_synsets, timm_info

if TYPE_CHECKING:
    from ...inspection import Reader
    from ..checker import ShardChecker


@registry.register
class WebDatasetFormat(Format):
    """WebDataset shards `train-00000-of-01024.tar` (see the module docstring) and timm's `_info.json`."""

    name = "webdataset"
    shard_pattern = SHARD_STEM + re.escape(SUFFIX)  # train-00000-of-01024.tar
    side_pattern = re.escape(INFO_JSON)
    stored_label = (".cls", 1)  # 0..N-1
    allowance = RECORD_ALLOWANCE

    def file_name(self, shard: ShardSpec) -> str:
        return shard.name + SUFFIX

    def encoder(self, shard: ShardSpec) -> ShardEncoder:
        return Encoder(shard.split)

    def side_files(self, plan: Plan, entries: Sequence[ShardEntry]) -> dict[str, bytes]:
        """timm's `_info.json`: per split its name, sample count, shard file names and their sample counts."""
        return {INFO_JSON: timm_info(plan, entries)}

    def side_file_names(self) -> list[str]:
        return [INFO_JSON]

    def refuse(self, labels: Any) -> None:
        """A synset whose training keys the webdataset library would skip as metadata (`__x__/...`)."""
        refuse_synsets(labels)

    @classmethod
    def checker(cls) -> type[ShardChecker]:
        from .check import TarShardChecker

        return TarShardChecker

    @classmethod
    def reader(cls) -> Reader:
        from .inspect import WebDatasetReader

        return WebDatasetReader()
