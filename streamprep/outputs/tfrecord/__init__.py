"""The classic TFRecord format, the registry's first entry: `train-00000-of-01024`, as `build_imagenet_data.py` writes.

The worked example of a format (`outputs.format.Format`): the entry below is all the rest of
streamprep knows of it. Its files are named by the shard's stem alone (and `.idx` for DALI's index);
it takes no option of its own and the classic's plan; `write.py` encodes and frames its records,
`check.py` reads them back for `verify`, `inspect.py` for `inspect`.
"""

from __future__ import annotations


from ...plan import SHARD_STEM, Plan, ShardSpec
from ...records import classic
from ...records.spec import record_specs
from .. import registry
from ..format import Format, ShardEncoder
from .write import FRAMING, MAX_SIDE, Encoder


@registry.register
class TFRecordFormat(Format):
    """The classic's shards: `train-00000-of-01024`, records as `build_imagenet_data.py` writes them."""

    name = "tfrecord"
    checks, reads = "check:TFRecordChecker", "inspect:TFRecordReader"  # verify, inspect
    rank = 0
    summary = "the classic's shards"
    shard_pattern = SHARD_STEM  # the stem alone
    stored_label = ("image/class/label", 0)  # the classic's 1..N (0 is its background, never written)

    def file_name(self, shard: ShardSpec) -> str:
        return shard.name

    def encoder(self, shard: ShardSpec) -> ShardEncoder:
        return Encoder()

    def size_bounds(self, plan: Plan, shard: ShardSpec) -> tuple[int, int]:
        """The shard file's exact size but for what the index cannot know without reading the images: each
        image's height and width (1 to 3 bytes each as varints) and a fix-up file's re-encoded size (counted as
        the original's; shown apart by `plan`). (smallest, largest) in bytes."""
        low = high = 0
        for spec in record_specs(plan, shard):
            low += FRAMING + classic.example_size(spec, spec.size, 1, 1)
            high += FRAMING + classic.example_size(spec, spec.size, MAX_SIDE, MAX_SIDE)
        return low, high
