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
    rows = split.order[shard.start:shard.stop].tolist()
    raw = [index.names.raw(i) for i in rows]
    out = []
    for i, encoded, boxes in zip(rows, raw, plan.boxes_of(shard.split).boxes_of_many(raw)):
        name, label = encoded.decode("utf-8", "surrogateescape"), int(index.labels[i])
        synset = plan.labels.synsets[label - 1]
        out.append(RecordSpec(name, label, synset, plan.labels.text(synset), index.member(i),
                              int(index.offsets[i]), int(index.sizes[i]), boxes, plan.fixup_kind(shard.split, name)))
    return out
