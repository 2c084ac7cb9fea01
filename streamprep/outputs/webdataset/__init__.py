"""WebDataset tar shards, a registry entry: a sample per image (.jpg, .cls, .json), as webdataset, timm, DALI read them.

Each shard `train-00000-of-01024.tar` holds the same images in the same order as the TFRecord shard
of that name. A sample's key is the image's file name without its extension, under its synset for
training images (`n01440764/n01440764_10026`, unique even where two classes hold the same file
name; validation: `ILSVRC2012_val_00000001`). Characters that a reader would take for something
else (a `.` starts the extension, a space ends a name in DALI's index) are percent-encoded, so a key
is always `[A-Za-z0-9_%/-]` (the empty stem of a file named `.JPEG` is `%`). A key whose `KEY.json`
would not fit a ustar header's 100-byte name field is shortened to its head, `%_` and 16 hex digits of
its sha256 (`write.fitted`), so that no member needs a pax record, which `wids` and DALI's tar parser
without an index cannot read. A synset that would
start a key with `__...__/`, which the webdataset library skips as metadata (`READERS_SKIP`), is
refused before anything is written. Its members:
- `KEY.jpg`: the image bytes the classic's record holds (fix-up files re-encoded as the classic does);
- `KEY.cls`: the class as decimal text, 0..N-1 in the order of the labels file (sorted synsets for
  ImageNet): what timm's `reader_wds` and torchvision's `ImageFolder` number; the classic TFRecord's
  `image/class/label` is this plus 1;
- `KEY.json`: `filename`, `synset`, `text`, `label` (the classic's 1..N), `cls`, `height`, `width`
  and `boxes` (the classic's relative `[xmin, ymin, xmax, ymax]`, float32 values written in their
  shortest form), keys sorted, UTF-8.
The tar is deterministic: ustar headers (never a pax record), mode 0444, uid/gid 0, no user or group
names, mtime 0; the archive ends with two zero blocks, padded to a multiple of 10240 bytes as
Python's tarfile and GNU tar do. `_info.json` beside the shards lists each split's shard files and
sample counts in timm's layout; with `--wids-index`, `train.wids.json` and `validation.wids.json`
list them as `wids.ShardListDataset` reads them (`__kind__` wids-shard-index-v1).
"""

from __future__ import annotations

import re
from typing import Any, Sequence

from ...plan import SHARD_STEM, Plan, ShardSpec
from .. import registry
from ..format import Format, FormatOption, ShardEncoder
from ..manifest import ShardEntry
from .write import (INFO_JSON, RECORD_ALLOWANCE, SPLITS, SUFFIX, WIDS_SUFFIX, Encoder, refuse_synsets, timm_info,
                    wids_indexes, wids_name)


@registry.register
class WebDatasetFormat(Format):
    """WebDataset shards `train-00000-of-01024.tar` (see the module docstring) and timm's `_info.json`."""

    name = "webdataset"
    checks, reads = "check:TarShardChecker", "inspect:WebDatasetReader"  # verify, inspect
    rank = 10
    summary = "tar shards for PyTorch, timm and DALI, with timm's _info.json"
    options = {
        "wids_index": FormatOption(
            False, help="also write each split's shard list with sample counts as wids.ShardListDataset reads it "
            "(train.wids.json, validation.wids.json: wids-shard-index-v1, URLs relative to the file)"),
    }
    shard_pattern = SHARD_STEM + re.escape(SUFFIX)  # train-00000-of-01024.tar
    side_pattern = f"(?:{re.escape(INFO_JSON)}|(?:{'|'.join(SPLITS)}){re.escape(WIDS_SUFFIX)})"
    stored_label = (".cls", 1)  # 0..N-1
    allowance = RECORD_ALLOWANCE

    def __init__(self, dali_index: bool = False, wids_index: bool = False) -> None:
        super().__init__(dali_index)
        self.wids_index = wids_index

    @classmethod
    def from_options(cls, options: Any) -> "WebDatasetFormat":
        return cls(options.dali_index, options.wids_index)

    @classmethod
    def describe(cls, options: dict[str, Any]) -> str:
        return f"{cls.name} (with the wids index)" if options.get("wids_index") else cls.name

    def file_name(self, shard: ShardSpec) -> str:
        return shard.name + SUFFIX

    def encoder(self, shard: ShardSpec) -> ShardEncoder:
        return Encoder(shard.split)

    def side_files(self, plan: Plan, entries: Sequence[ShardEntry]) -> dict[str, bytes]:
        """timm's `_info.json` (per split its name, sample count, shard file names and their sample counts) and, with
        `--wids-index`, each split's `wids` shard list (`train.wids.json`)."""
        resize = self.resize.describe() if self.resize else None
        return {INFO_JSON: timm_info(plan, entries, resize), **(wids_indexes(plan, entries) if self.wids_index else {})}

    def side_file_names(self) -> list[str]:
        return [INFO_JSON, *(wids_name(split) for split in SPLITS if self.wids_index)]

    def refuse(self, labels: Any) -> None:
        """A synset whose training keys the webdataset library would skip as metadata (`__x__/...`)."""
        refuse_synsets(labels)
