"""The classic's fix-ups: one PNG and 22 CMYK JPEGs re-encoded with TensorFlow, by file name."""

from __future__ import annotations

import os
import sys
import threading
from contextlib import contextmanager
from typing import Iterator

from ..errors import ImageError, MissingDependencyError

PNG_NAME = "n02105855_2933.JPEG"
CMYK_NAMES = frozenset("""
n01739381_1309.JPEG n02077923_14822.JPEG n02447366_23489.JPEG n02492035_15739.JPEG n02747177_10752.JPEG
n03018349_4028.JPEG n03062245_4620.JPEG n03347037_9675.JPEG n03467068_12171.JPEG n03529860_11437.JPEG
n03544143_17228.JPEG n03633091_5218.JPEG n03710637_5125.JPEG n03961711_5286.JPEG n04033995_2932.JPEG
n04258138_17003.JPEG n04264628_27969.JPEG n04336792_7448.JPEG n04371774_5854.JPEG n04596742_4225.JPEG
n07583066_647.JPEG n13037406_4650.JPEG""".split())

_tf_lock = threading.Lock()


# What each fix-up does, as the summary and manifest.json name it.
KINDS = {"png": "png_to_jpeg", "cmyk": "cmyk_to_rgb"}


def fixup_kind(filename: str) -> str | None:
    """'png', 'cmyk' or None, by the classic's own tests (a substring test for the PNG)."""
    if PNG_NAME in filename:
        return "png"
    if filename in CMYK_NAMES:
        return "cmyk"
    return None


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
    """TensorFlow, imported on first use only: most runs never need it."""
    with _tf_lock:
        if "tensorflow" in sys.modules:
            return sys.modules["tensorflow"]
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        try:
            with _native_stderr_silenced():
                import tensorflow as tf
                tf.io.encode_jpeg(tf.zeros((1, 1, 3), tf.uint8))  # loads the kernels while silenced
        except ImportError as e:
            raise MissingDependencyError(f"TensorFlow is needed to re-encode the classic's PNG/CMYK files ({e}); "
                             "install tensorflow") from e
        return tf


def by_kind(names: list[str]) -> dict[str, list[str]]:
    """Fix-up file names grouped by what is done to them (`KINDS`), each group sorted, the groups by kind."""
    grouped: dict[str, list[str]] = {}
    for name in sorted(names):
        grouped.setdefault(KINDS[fixup_kind(name) or "png"], []).append(name)
    return dict(sorted(grouped.items()))


def named_in(blob: bytes) -> bool:
    """Whether any fix-up file name occurs in `blob` (cheap pre-check on an index's names)."""
    return any(name.encode() in blob for name in (PNG_NAME, *CMYK_NAMES))


def apply(kind: str, data: bytes, member: str) -> bytes:
    """The bytes the classic stores for a fix-up file: TensorFlow decode, then quality-100 RGB JPEG."""
    tf = tensorflow()
    try:
        if kind == "png":
            image = tf.io.decode_png(data, channels=3)
        else:
            image = tf.io.decode_jpeg(data, channels=0)
        return tf.io.encode_jpeg(image, format="rgb", quality=100).numpy()
    except (tf.errors.OpError, ValueError) as e:
        raise ImageError(f"{member}: the classic re-encodes this file as {kind.upper()}, but TensorFlow "
                         f"cannot decode it ({str(e).splitlines()[0]}); check the archive") from e
