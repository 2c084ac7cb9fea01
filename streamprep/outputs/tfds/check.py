"""verify of one TFDS shard: TFDS's three features per record, labels 0..N-1, optionally images."""

from __future__ import annotations

from typing import Any

from ...errors import MissingDependencyError
from ..checker import ShardCheck
from ..tfrecord.check import TFRecordChecker, key_problems
from .write import is_array_record

FEATURES = {"file_name": "bytes_list", "image": "bytes_list", "label": "int64_list"}


class TFDSShardChecker(TFRecordChecker):
    """Checks TFDS's imagenet2012 and imagenet21k shards: TFRecord framing (or ArrayRecord, read by its own reader on
    local storage), each record an Example of exactly `file_name`, `image` and `label`, the label in 0..N-1 (counted
    as the classic's label + 1, to compare with the manifest's class counts), the image a JPEG (decoded with
    `decode`)."""

    filename_key = "file_name"

    def shard(self, name: str, size: int | None) -> ShardCheck:
        if is_array_record(name):
            return self._array_record(name, size, self.split_of(name))
        return super().shard(name, size)

    def _array_record(self, name: str, size: int | None, split: str) -> ShardCheck:
        check = ShardCheck(name, split, size)
        digest = self.hasher()
        with self.fs.open(self.path(name), "rb") as f:
            while chunk := f.read(8 << 20):
                digest.update(chunk)
        check.digest = digest.hexdigest()
        check.complete = True
        if getattr(self.fs, "protocol", None) not in ("file", ("file", "local")):
            check.trusted = False  # ArrayRecord's reader takes local paths only: size and digest are checked
            return check
        try:
            from array_record.python import array_record_module
        except ImportError as e:
            raise MissingDependencyError(f"{self.url}: its ArrayRecord shards need array-record to be read, which is not "
                                         "installed; install streamprep[tfds] (pip install 'streamprep[tfds]'), then "
                                         "run verify again") from e
        try:
            reader = array_record_module.ArrayRecordReader(self.fs._strip_protocol(self.path(name)))
            try:
                records = reader.read_all()
            finally:
                reader.close()
        except (RuntimeError, ValueError, OSError) as e:  # the library's own words for a damaged file
            check.problem(f"not a readable ArrayRecord file ({str(e).splitlines()[0][:200]}); the file is damaged "
                          "or cut short")
            check.trusted = False
            return check
        for record, data in enumerate(records):
            self._record(check, record, None, data, True)
            check.records += 1
        self.phase.advance(check.records, size or 0)
        return check

    def _schema(self, example: Any) -> tuple[list[str], dict[str, Any]]:
        feature = example.features.feature
        problems = key_problems(feature, FEATURES, "TFDS's imagenet2012 and imagenet21k have file_name, image, label")
        values: dict[str, Any] = {}
        for key, kind in FEATURES.items():
            if key not in feature:
                continue
            got = feature[key].WhichOneof("kind")
            items = getattr(feature[key], kind).value if got == kind else []
            if got != kind or len(items) != 1:
                problems.append(f"{key} is not one {kind} value")
                continue
            values[key] = items[0]
        label = values.get("label")
        if label is not None:
            if 0 <= label < self.num_classes:
                values["image/class/label"] = label + 1  # counted as the classic's label
            else:
                problems.append(f"label {label} is out of range 0..{self.num_classes - 1}")
        if "file_name" in values:
            values["image/filename"] = values["file_name"]
        # No check that `image` holds a JPEG: TFDS's builder stores each member's bytes as read, whatever they are
        # (a readme in a class tar becomes a record), and so does streamprep (docs/formats.md); `--decode` decodes.
        return problems, values

    def _decode(self, values: dict[str, Any]) -> list[str]:
        """A resized output's image: of the encoding its recipe writes (decoded with `--decode`); imagenet2012's
        byte-exact one, whatever TFDS stored, decoded as a JPEG with `--decode` only."""
        if not (self.resized or self.decode):
            return []
        return self.image_problems(values.get("image"), "image")
