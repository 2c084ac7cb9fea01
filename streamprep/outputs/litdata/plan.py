"""The classic's plan with what a chunk's header needs first: the fix-up files' re-encoded sizes; chunks that fit.

A LitData chunk opens with the offsets of its items, so the writer needs every image's size before
the first one. The index holds the downloads' sizes; the classic's few fix-up files (1 PNG, 22 CMYK
JPEGs in ILSVRC2012) are re-encoded, and their sizes are known only once they are: read and re-encoded
here, before any shard is written, as `outputs/tfds/plan.py`'s `TFDSFormat.plan` learns TFDS's. The
order, shards and fix-ups stay the classic's (`plan.make_plan`), so the plan serves every format of the run.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ...errors import ConfigError, ImageError
from ...plan import Plan, fixup_rows
from ...records import fixups
from .write import ITEM_OVERHEAD, MAX_CHUNK, OFFSET

DOWNLOAD = {"train": "train", "validation": "val"}  # the download each split's images are read from


def fixed_sizes(plan: Plan, inputs: Any) -> dict[str, int]:
    """The re-encoded size of every image the plan fixes up, by member (`archive!member`: unique, where a file
    name may not be). One that cannot be re-encoded is left out: the writer reports it (or skips it) as it does any
    bad image, and its shard is spooled (`write.Encoder`)."""
    sizes = {}
    for split in plan.splits.values():
        index = split.index
        for i in fixup_rows(index):
            kind = plan.fixup_kind(index.split, index.names[i])
            if kind is None:
                continue
            data = inputs.sources[DOWNLOAD[index.split]].read_at(int(index.offsets[i]), int(index.sizes[i]))
            try:
                sizes[index.member(i)] = len(fixups.apply(kind, data, index.member(i)))
            except ImageError:
                continue
    return sizes


def refuse_large_chunks(plan: Plan) -> None:
    """`ConfigError` before anything is written if a shard's chunk would pass 4 GiB, which its 32-bit offsets cannot
    address (a few shards of the whole training set). The bound counts every fix-up file's re-encoded bytes on top
    of each shard: a few MB more than any shard can hold."""
    growth = sum(plan.fixed_sizes.values())  # the fix-up files' re-encoded bytes, over and above the originals'
    for split in plan.splits.values():
        sizes = split.index.sizes[split.order]
        ends = np.concatenate(([0], np.cumsum(sizes, dtype=np.int64)))
        for shard in split.shards:
            n = shard.stop - shard.start
            most = int(ends[shard.stop] - ends[shard.start]) + (ITEM_OVERHEAD + OFFSET) * n + 2 * OFFSET + growth
            if most > MAX_CHUNK:
                flag = f"--{shard.split}-shards"
                raise ConfigError(f"{flag} {shard.of}: the chunk of {shard.name} would hold {most:,} bytes, more than "
                                  "a LitData chunk can address (its offsets are 32-bit: 4 GiB at most); pass a larger "
                                  f"{flag}")


def sized_plan(plan: Plan, inputs: Any) -> Plan:
    """The plan with the fix-up files' re-encoded sizes (`Plan.fixed_sizes`), its chunks checked to fit."""
    sized = dataclasses.replace(plan, fixed_sizes={**plan.fixed_sizes, **fixed_sizes(plan, inputs)})
    refuse_large_chunks(sized)
    return sized
