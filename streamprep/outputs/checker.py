"""What every format's checker shares: `ShardChecker`, the base of each, what it finds, TensorFlow as the judge.

`streamprep verify` reads each shard with its format's checker (its registry entry's `checker()`):
a subclass of `ShardChecker` whose `_read` reads one shard to its end, recording what is wrong in
its `ShardCheck` (at most `PROBLEMS_KEPT` problems a shard) and the labels, boxes and records found.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
from abc import ABC, abstractmethod
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Callable, Collection, Iterator

from ..errors import MissingDependencyError, OutputUnreadableError
from ..records.image import encoding_of
from ..progress import Phase
from . import checksum as checksums
from . import registry

PROBLEMS_KEPT = 100  # per shard: a shard with more keeps the first ones and counts the rest
READ_BLOCK = 8 << 20  # read-ahead for remote shards
JPEG_ONLY = ("JPEG",)  # what a byte-exact output's images are (`records.image.EXTENSIONS` names)


class HashingReader:
    """A shard read in order, hashed as it is read (with `digest`, a hasher of the manifest's checksum:
    `ShardChecker.hasher`), with the position reached."""

    def __init__(self, f: BinaryIO, digest: checksums.Hasher) -> None:
        self.f, self.digest, self.position = f, digest, 0

    def read(self, n: int) -> bytes:
        data = self.f.read(n)
        self.digest.update(data)
        self.position += len(data)
        return data

    def rest(self) -> int:
        """Read to the end; how many bytes were left."""
        before = self.position
        while self.read(READ_BLOCK):
            pass
        return self.position - before
ADVANCE_EVERY = 64  # records between progress events


@dataclass(frozen=True)
class Problem:
    """One thing wrong, where it is: a file of the output (or a split), and a record of a shard."""

    where: str
    what: str
    record: int | None = None  # 0-based position in the shard
    offset: int | None = None  # byte offset of the record in the shard
    filename: str | None = None  # the record's image/filename, when it parses

    def __str__(self) -> str:
        at = self.where
        if self.record is not None:
            at += f": record {self.record}" + (f" at byte {self.offset}" if self.offset is not None else "")
        if self.filename is not None:
            at += f" ({self.filename})"
        return f"{at}: {self.what}"


@dataclass
class ShardCheck:
    """What reading one shard found."""

    name: str
    split: str
    size: int | None = None  # bytes, as listed
    records: int = 0  # records whose framing was read (damaged data included)
    boxes: int = 0
    decoded: int = 0
    labels: Counter = field(default_factory=Counter)
    digest: str | None = None  # of the whole file, under the checker's checksum; None unless read to its end
    complete: bool = False  # framing read to the end of the file
    trusted: bool = True  # every record intact and parsed with a label: its label counts are exact
    problems: list[Problem] = field(default_factory=list)
    omitted: int = 0  # problems beyond PROBLEMS_KEPT
    index: bytes | None = None  # the DALI index of the file as read; None unless read to its end

    def problem(self, what: str, record: int | None = None, offset: int | None = None,
                filename: str | None = None) -> None:
        if len(self.problems) < PROBLEMS_KEPT:
            self.problems.append(Problem(self.name, what, record, offset, filename))
        else:
            self.omitted += 1



_tf_lock = threading.Lock()


@contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Point file descriptor 2 at /dev/null: TensorFlow's C++ start-up messages ignore its log level."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    sys.stderr.flush()
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def tensorflow():
    """TensorFlow, for `decode=True` only (its own JPEG decoder is the judge), imported once, its noise silenced."""
    with _tf_lock:
        if "tensorflow" in sys.modules:
            return sys.modules["tensorflow"]
        if importlib.util.find_spec("tensorflow") is None:
            raise MissingDependencyError("verify --decode decodes every image with TensorFlow's own decoder, and "
                                         "TensorFlow is not installed; pip install 'streamprep[tensorflow]', or verify "
                                         "without --decode")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        with _native_stderr_silenced():
            import tensorflow as tf
            tf.io.decode_jpeg(tf.io.encode_jpeg(tf.zeros((1, 1, 3), tf.uint8)))  # loads the kernels while silenced
        return tf


def decode_problems(tf: Any, encoded: bytes | None, height: Any, width: Any, what: str, size_from: str,
                    encodings: Collection[str] = JPEG_ONLY, named: str | None = None) -> list[str]:
    """What is wrong with a stored image: not of an encoding the output holds (`encodings`: a byte-exact output's
    JPEG; a resized one's as its recipe says, `Recipe.encodings`), or not the one its record names (`named`:
    TFRecord's `image/format`, a WebDataset member's extension); with `tf`, not decodable by TensorFlow's own
    decoder of that encoding, or of another size than the record says."""
    if encoded is None:
        return []  # no image feature: the schema check reports it
    if not encoded:
        return [f"{what} is empty: nothing to decode"]
    found = encoding_of(encoded)
    if named is not None and found != named:
        return [f"{what} is not a {named} {_is(encoded, found)}, though the record says {named}"]
    if found not in encodings:
        allowed = " or ".join(sorted(encodings))
        return [f"{what} is not a {allowed} {_is(encoded, found)}; this output holds {allowed} images only"]
    if tf is None:
        return []
    try:
        shape = _decoder(tf, found)(encoded).shape
    except (tf.errors.OpError, ValueError) as e:
        message = str(e).split("}}")[-1].split("[Op:")[0].strip() or type(e).__name__
        return [f"{what} does not decode as a {found} ({message})"]
    if height is not None and width is not None and (shape[0], shape[1]) != (height, width):
        return [f"the image decodes to {shape[1]}x{shape[0]} (width x height), but {size_from} say {width}x{height}"]
    return []


def _is(encoded: bytes, found: str | None) -> str:
    """What an image of the wrong encoding is: its first bytes, and the encoding they are, if any."""
    return f"(it starts with {encoded[:4].hex(' ')})" + (f" but a {found}" if found else "")


def _decoder(tf: Any, encoding: str) -> Callable[[bytes], Any]:
    """TensorFlow's own decoder of an encoding, to height x width x 3. WebP: `tf.io.decode_image(...,
    expand_animations=False)`, in a TensorFlow that decodes WebP (one with `tf.io.decode_webp`, which, like
    `decode_jpeg` and `decode_image` without that flag, gives frames x height x width x channels)."""
    if encoding == "PNG":
        return lambda data: tf.io.decode_png(data, channels=3)
    if encoding == "WEBP":
        if not hasattr(tf.io, "decode_webp"):
            raise MissingDependencyError("verify --decode of WebP images needs a TensorFlow that decodes WebP (one with "
                                         "tf.io.decode_webp); upgrade TensorFlow, or verify without --decode")
        return lambda data: tf.io.decode_image(data, channels=3, expand_animations=False)
    return lambda data: tf.io.decode_jpeg(data, channels=3)


class ShardChecker(ABC):
    """Reads shards of one format and checks their records; one instance shared by the worker threads."""

    def __init__(self, fs: Any, root: str, url: str, decode: bool, num_classes: int, phase: Phase,
                 stop: threading.Event, checksum: str = checksums.DEFAULT,
                 encodings: Collection[str] | None = None) -> None:
        self.fs, self.root, self.url = fs, root, url
        # What the output's images may be: a resized output's, as its recipe says (`Recipe.encodings`); None, a
        # byte-exact output's JPEG.
        self.resized = encodings is not None
        self.encodings = tuple(encodings) if encodings is not None else JPEG_ONLY
        self.decode, self.num_classes, self.phase, self.stop = decode, num_classes, phase, stop
        self.checksum = checksum  # the manifest's algorithm (`outputs.checksum`): each shard's `digest` under it
        self.tf = tensorflow() if decode else None
        self.remote = bool(getattr(fs, "async_impl", False))

    def hasher(self) -> checksums.Hasher:
        """A new hash object of the manifest's checksum, for one shard's `ShardCheck.digest`."""
        return checksums.hasher(self.checksum)

    def image_problems(self, encoded: bytes | None, what: str, named: str | None = None, height: Any = None,
                       width: Any = None, size_from: str = "") -> list[str]:
        """`decode_problems` of one stored image, as this output holds them, decoded with `--decode`."""
        return decode_problems(self.tf, encoded, height, width, what, size_from, self.encodings, named)

    def path(self, name: str) -> str:
        return f"{self.root.rstrip('/')}/{name}"

    def _open(self, name: str) -> BinaryIO:
        if self.remote:  # sequential reads: a large read-ahead block, one request per block
            return self.fs.open(self.path(name), "rb", block_size=READ_BLOCK, cache_type="readahead")
        return self.fs.open(self.path(name), "rb")

    def split_of(self, name: str) -> str:
        """The split of a shard file, by its format's name pattern ("" for a name that is no shard's)."""
        parsed = registry.parse_shard_name(name)
        return parsed[0] if parsed else ""

    def shard(self, name: str, size: int | None) -> ShardCheck:
        check = ShardCheck(name, self.split_of(name), size)
        try:
            with self._open(name) as f:
                self._read(f, check)
        except FileNotFoundError:
            check.problem("disappeared while being verified; is a conversion still writing to this folder?")
            check.trusted = False
        except OSError as e:
            raise OutputUnreadableError(f"{self.path(name)}: cannot read ({e}); check the connection and permissions, "
                                        "then run verify again") from e
        return check

    @abstractmethod
    def _read(self, f: BinaryIO, check: ShardCheck) -> None:
        """Read one shard from `f` to its end (or to where it cannot be read on), filling in `check`: records,
        labels (counted as the classic's, 1..N), boxes, problems; its digest (`hasher`) and `complete` once read to
        the end,
        `trusted` cleared when a record could not be read or counted; progress advanced as records are read."""
