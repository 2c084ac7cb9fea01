"""One record's spec, everything needed to write it but the image bytes, read off the plan (`record_specs`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..plan import Plan, ShardSpec


@dataclass(frozen=True, eq=False)
class RecordSpec:
    """Everything needed to write one record, except the image bytes."""

    filename: str
    label: int
    synset: str
    text: str
    member: str  # archive!member, for messages
    offset: int
    size: int
    boxes: np.ndarray  # float32 (n, 4)
    fixup: str | None


def record_specs(plan: Plan, shard: ShardSpec) -> list[RecordSpec]:
    """The records of one shard, in the plan's order: names, labels, byte ranges, boxes, and what the plan
    re-encodes (`Plan.fixup_kind`: the classic's fix-ups, or TFDS's)."""
    split = plan.splits[shard.split]
    index = split.index
    order = split.order[shard.start:shard.stop]
    rows = order.tolist()
    raw = index.names.raw_many(order)
    labels, offsets, sizes = index.labels[order].tolist(), index.offsets[order].tolist(), index.sizes[order].tolist()
    synsets, text = plan.labels.synsets, plan.labels.text
    out = []
    for i, encoded, label, offset, size, boxes in zip(rows, raw, labels, offsets, sizes,
                                                      plan.boxes_of(shard.split).boxes_of_many(raw)):
        name = encoded.decode("utf-8", "surrogateescape")
        synset = synsets[label - 1]
        out.append(RecordSpec(name, label, synset, text(synset), index.member(i, name, label), offset, size, boxes,
                              plan.fixup_kind(shard.split, name)))
    return out
