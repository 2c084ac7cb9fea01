"""A fix-up JPEG of a sampling TurboJPEG refuses, decoded as TensorFlow's libjpeg decodes it."""

from __future__ import annotations

import os
import tempfile
import threading
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from ..errors import MissingDependencyError
from .imagesize import Undecodable

# Where the k-th coefficient of the zigzag order sits in an 8x8 block (jutils.c: jpeg_natural_order).
NATURAL_ORDER = np.array([
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14,
    21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60,
    61, 54, 47, 55, 62, 63])
_FRAMES = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_PROGRESSIVE = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
_STANDALONE = frozenset(range(0xD0, 0xD8)) | {0x01}
_APP_OR_COM = frozenset(range(0xE0, 0xF0)) | {0xFE}
_SMOOTHED = 10  # jdcoefct.c's SAVED_COEFS: block smoothing looks at the first 10 coefficients (zigzag order)


class Unreproducible(Undecodable):
    """A JPEG TensorFlow decodes whose exact pixels streamprep cannot give."""


@dataclass(frozen=True)
class Component:
    ident: int
    h: int
    v: int
    table: np.ndarray | None  # the quantisation table latched at the component's first scan, natural order


@dataclass(frozen=True)
class Frame:
    """What libjpeg takes from a JPEG's markers to decode it, read from all of them (scans included)."""
    height: int
    width: int
    components: tuple[Component, ...]
    smoothed: bool  # whether libjpeg's block smoothing changes some blocks (a progressive file left incomplete)

    @property
    def max_h(self) -> int:
        return max(c.h for c in self.components)

    @property
    def max_v(self) -> int:
        return max(c.v for c in self.components)


def segments(data: bytes) -> Iterator[tuple[int, int, int]]:
    """(marker, where the marker's FF is, where its segment ends) of every marker segment up to EOI, the whole
    file through as libjpeg reads it (`imagesize._markers`' rules): stray bytes and scan data skipped, stuffed
    bytes and standalone markers passed over. An APPn or COM segment with a length under 2 is the 4 bytes
    libjpeg skips. After the first scan, a code below SOF0 (damaged scan data) is passed over too: libjpeg
    only gets past one when resynchronising at a restart marker, by looking for the next marker."""
    pos, end = 2, len(data)
    scanned = False
    while pos < end:
        if data[pos] != 0xFF:
            pos = data.find(b"\xff", pos)
            if pos < 0:
                return
        while pos + 1 < end and data[pos + 1] == 0xFF:
            pos += 1
        if pos + 1 >= end:
            return
        start, marker = pos, data[pos + 1]
        pos += 2
        if marker == 0x00 or marker in _STANDALONE or (scanned and marker < 0xC0):
            continue
        if marker == 0xD9 or pos + 2 > end:
            return
        scanned = scanned or marker == 0xDA
        length = (data[pos] << 8) | data[pos + 1]
        if length < 2:
            if marker in _APP_OR_COM or marker == 0xDC:
                yield marker, start, pos + 2
                pos += 2
                continue
            return
        yield marker, start, min(pos + length, end)
        pos += length


def _quantisation_tables(body: bytes, tables: dict[int, np.ndarray]) -> None:
    pos = 0
    while pos + 1 <= len(body):
        precision, ident = body[pos] >> 4, body[pos] & 15
        size = 2 if precision else 1
        values = body[pos + 1:pos + 1 + 64 * size]
        if len(values) < 64 * size:
            return
        zigzag = np.frombuffer(values, ">u2" if size == 2 else np.uint8).astype(np.int64)
        natural = np.empty(64, np.int64)
        natural[NATURAL_ORDER] = zigzag
        tables[ident] = natural
        pos += 1 + 64 * size


def read_frame(data: bytes) -> Frame:
    """The frame, each component's latched quantisation table, and whether libjpeg will smooth blocks.

    libjpeg latches a component's table when the component's first scan starts (a DQT later changes nothing
    for it). In a progressive file it notes, per component, the precision each coefficient was last sent
    with (`coef_bits`); when the file ends with some of the first ten still imprecise (or never sent), the
    DC of each component known and those tables' first ten values non-zero, it smooths the blocks
    (jdcoefct.c `smoothing_ok`), which this module does not reproduce.
    """
    markers = _Markers()
    for marker, start, end in segments(data):
        markers.read(marker, data[start + 4:end])
    if markers.frame is None:
        raise Undecodable("no frame header (SOF)")
    components = tuple(Component(ident, h, v, markers.latched.get(k))
                       for k, (ident, h, v, _) in enumerate(markers.frame))
    return Frame(markers.height, markers.width, components,
                 _smoothed(markers.progressive, components, markers.coef_bits))


@dataclass
class _Markers:
    """What `read_frame` takes from the markers, read in libjpeg's order."""

    tables: dict[int, np.ndarray] = field(default_factory=dict)  # DQT: each table number's current table
    frame: list[tuple[int, int, int, int]] | None = None  # the first SOF: (id, h, v, table number) per component
    height: int = 0
    width: int = 0
    progressive: bool = False
    latched: dict[int, np.ndarray] = field(default_factory=dict)  # component -> its table at its first scan
    coef_bits: dict[int, list[int]] = field(default_factory=dict)  # component -> each coefficient's last Al, -1 unsent

    def read(self, marker: int, body: bytes) -> None:
        if marker == 0xDB:
            _quantisation_tables(body, self.tables)
        elif marker in _FRAMES and self.frame is None:
            self.frame_header(marker, body)
        elif marker == 0xDA and self.frame is not None and body:
            self.scan(body)

    def frame_header(self, marker: int, body: bytes) -> None:
        count = body[5] if len(body) > 5 else 0
        if len(body) < 6 + 3 * count:
            raise Undecodable("a frame header cut short")
        self.frame = [(body[6 + 3 * k], body[7 + 3 * k] >> 4, body[7 + 3 * k] & 15, body[8 + 3 * k])
                      for k in range(count)]
        self.height, self.width = int.from_bytes(body[1:3], "big"), int.from_bytes(body[3:5], "big")
        self.progressive = marker in _PROGRESSIVE
        self.coef_bits = {k: [-1] * 64 for k in range(count)}

    def scan(self, body: bytes) -> None:
        """A scan header: its components' tables latched (at their first scan), its coefficients' precision."""
        count = body[0]
        if len(body) < 4 + 2 * count:
            return
        frame = self.frame or []
        ids = [c[0] for c in frame]
        indices = [ids.index(body[1 + 2 * k]) for k in range(count) if body[1 + 2 * k] in ids]
        ss, se, al = body[1 + 2 * count], body[2 + 2 * count], body[3 + 2 * count] & 15
        for index in indices:
            if index not in self.latched and frame[index][3] in self.tables:
                self.latched[index] = self.tables[frame[index][3]]
            for k in range(ss, min(se, 63) + 1):
                self.coef_bits[index][k] = al


def _smoothed(progressive: bool, components: tuple[Component, ...], coef_bits: dict[int, list[int]]) -> bool:
    """jdcoefct.c `smoothing_ok`: a progressive file whose components all have their table and their DC, the
    tables' first ten values non-zero, and some of the first ten coefficients still imprecise or never sent."""
    return (progressive and all(c.table is not None for c in components)
            and all(bits[0] >= 0 for bits in coef_bits.values())
            and all(c.table[NATURAL_ORDER[:_SMOOTHED]].all() for c in components)
            and any(bits[k] != 0 for bits in coef_bits.values() for k in range(1, _SMOOTHED)))


# --- libjpeg's coefficients, TurboJPEG's inverse DCT ------------------------------------------------------

_jpeglib_lock = threading.Lock()  # jpeglib keeps the library version and the markers it reads in globals
JPEGLIB_VERSION = "turbo210"  # libjpeg-turbo 2.1, the series TensorFlow builds (2.1.4)


def _jpeglib():
    try:
        import jpeglib
    except ImportError as e:
        raise MissingDependencyError(f"jpeglib is needed to re-encode a fix-up file of uncommon sampling factors "
                                     f"({e}); install jpeglib") from e
    if jpeglib.version.get() != JPEGLIB_VERSION:
        jpeglib.version.set(JPEGLIB_VERSION)
    return jpeglib


def without_app_segments(data: bytes) -> bytes:
    """The JPEG without its APPn and COM segments, wherever they are: libjpeg only skips them (its colour space
    is decided from the original file), and jpeglib's reader copies each into fixed-size global tables."""
    kept, at = [], 0
    for marker, start, end in segments(data):
        if marker in _APP_OR_COM:
            kept.append(data[at:start])
            at = end
    kept.append(data[at:])
    return b"".join(kept)


def _segment(marker: int, body: bytes) -> bytes:
    return bytes([0xFF, marker]) + (len(body) + 2).to_bytes(2, "big") + body


# Fixed-length Huffman codes for every symbol libjpeg's decoder takes: DC sizes 0-15 in 5 bits; AC's EOB,
# ZRL and every run/size (sizes 1-15) in 8 bits (none of them all ones, as JPEG requires).
_AC_SYMBOLS = [0x00, 0xF0] + [run << 4 | size for run in range(16) for size in range(1, 16)]
_AC_CODE = np.zeros(256, np.int64)
_AC_CODE[_AC_SYMBOLS] = np.arange(len(_AC_SYMBOLS))
_HUFFMAN = _segment(0xC4, bytes([0x00] + [0, 0, 0, 0, 16] + [0] * 11) + bytes(range(16))
                    + bytes([0x10] + [0] * 7 + [len(_AC_SYMBOLS)] + [0] * 8) + bytes(_AC_SYMBOLS))


_POWERS = 1 << np.arange(16, dtype=np.int64)  # a value's size is how many of these it reaches


def _sizes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each coefficient's size category and extra bits (a negative value as its ones' complement)."""
    sizes = np.searchsorted(_POWERS, np.abs(values), side="right")
    return sizes, np.where(values < 0, values + (1 << sizes) - 1, values)


def one_component_jpeg(blocks: np.ndarray, table: np.ndarray) -> bytes:
    """A gray JPEG holding exactly these quantised coefficients ((rows, columns, 8, 8), natural order) and this
    quantisation table: sequential, DC and AC tables for every size up to 15, a restart interval of one
    block (so each DC is coded as itself, not as a difference). Every coefficient libjpeg's decoder can
    produce fits, except -32768 (`Unreproducible`)."""
    rows, columns = blocks.shape[:2]
    zigzag = blocks.reshape(-1, 64).astype(np.int64)[:, NATURAL_ORDER]
    if (zigzag == -32768).any():
        raise Unreproducible("a DCT coefficient of -32768, which no JPEG can code")
    count = len(zigzag)
    everyone = np.arange(count)
    sizes, extra = _sizes(zigzag[:, 0])  # the DC, coded as itself (the predictor is reset at every block)
    fields = [(everyone, np.zeros(count, np.int64), sizes, np.full(count, 5)),  # (block, order, value, bits)
              (everyone, np.ones(count, np.int64), extra, sizes)]
    block, position = np.nonzero(zigzag[:, 1:])
    position += 1
    first = np.ones(len(block), bool)
    first[1:] = block[1:] != block[:-1]
    previous = np.where(first, 0, np.roll(position, 1))
    run = position - previous - 1
    values = zigzag[block, position]
    sizes, extra = _sizes(values)
    zrl = run // 16
    fields.append((np.repeat(block, zrl), np.repeat(4 * position, zrl), np.full(int(zrl.sum()), _AC_CODE[0xF0]),
                   np.full(int(zrl.sum()), 8)))
    fields.append((block, 4 * position + 1, _AC_CODE[(run % 16) << 4 | sizes], np.full(len(block), 8)))
    fields.append((block, 4 * position + 2, extra, sizes))
    last = np.zeros(count, np.int64)
    np.maximum.at(last, block, position)  # each block's last non-zero AC
    ended = everyone[last < 63]
    fields.append((ended, np.full(len(ended), 4 * 64), np.full(len(ended), _AC_CODE[0x00]), np.full(len(ended), 8)))
    block, order, value, length = (np.concatenate(parts) for parts in zip(*fields))
    bits_per_block = np.bincount(block, weights=length, minlength=count).astype(np.int64)
    padding = -bits_per_block % 8  # each block ends on a byte, padded with ones, before its restart marker
    block = np.concatenate([block, everyone])
    order = np.concatenate([order, np.full(count, 4 * 64 + 1)])
    value = np.concatenate([value, (1 << padding) - 1])
    length = np.concatenate([length, padding])
    sort = np.lexsort((order, block))
    value, length = value[sort], length[sort]
    field = np.repeat(np.arange(len(length)), length)
    offset = np.arange(int(length.sum())) - np.repeat(np.cumsum(length) - length, length)
    data = np.packbits(((value[field] >> (length[field] - 1 - offset)) & 1).astype(np.uint8))
    ends = np.cumsum((bits_per_block + padding) // 8)[:-1]  # where each block but the last ends
    stuffed = np.flatnonzero(data == 0xFF) + 1
    ends = ends + np.searchsorted(stuffed, ends, side="right")
    data = np.insert(data, stuffed, 0)
    markers = np.stack([np.full(len(ends), 0xFF), 0xD0 + np.arange(len(ends)) % 8], 1).ravel()
    data = np.insert(data, np.repeat(ends, 2), markers).astype(np.uint8)
    wide = int(table.max()) > 255
    quantisation = bytes([0x10 if wide else 0x00]) + table[NATURAL_ORDER].astype(">u2" if wide else np.uint8).tobytes()
    frame = bytes([8]) + (rows * 8).to_bytes(2, "big") + (columns * 8).to_bytes(2, "big") + bytes([1, 1, 0x11, 0])
    return (b"\xff\xd8" + _segment(0xDB, quantisation) + _segment(0xC1, frame) + _HUFFMAN
            + _segment(0xDD, (1).to_bytes(2, "big")) + _segment(0xDA, bytes([1, 1, 0x00, 0, 63, 0]))
            + data.tobytes() + b"\xff\xd9")


def component_samples(data: bytes, frame: Frame) -> list[np.ndarray]:
    """Each component's samples as libjpeg's inverse DCT gives them, at the component's own size
    (`downsampled_height` x `downsampled_width`), before any upsampling."""
    import simplejpeg

    with tempfile.TemporaryDirectory(prefix="streamprep-jpeg-") as folder:
        source = os.path.join(folder, "in.jpg")
        with open(source, "wb") as f:
            f.write(without_app_segments(data))
        with _jpeglib_lock:
            jpeglib = _jpeglib()
            try:
                read = jpeglib.read_dct(source)
                coefficients = [read.Y, read.Cb, read.Cr, read.K][:len(frame.components)]
            except OSError as e:
                raise Unreproducible(f"libjpeg could not read its coefficients ({e})") from e
    samples = []
    for c, blocks in zip(frame.components, coefficients):
        height = -(-frame.height * c.v // frame.max_v)
        width = -(-frame.width * c.h // frame.max_h)
        if c.table is None:  # in no scan: libjpeg's inverse DCT has no table for it and puts out mid-gray
            if blocks.any():
                raise Unreproducible(f"component {c.ident} has coefficients but no scan libjpeg's markers show: "
                                     "its scans could not be followed")
            samples.append(np.full((height, width), 128, np.uint8))
            continue
        try:
            gray = simplejpeg.decode_jpeg(one_component_jpeg(blocks, c.table), colorspace="GRAY", fastdct=True)
        except ValueError as e:  # never expected: the file above is valid, and strict decoding says so
            raise Unreproducible(f"component {c.ident} could not be decoded on its own ({e})") from e
        samples.append(gray[:height, :width, 0])
    return samples


# --- jdsample.c: upsampling with do_fancy_upsampling ------------------------------------------------------

def _edges(x: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """The neighbours before and after each sample along `axis`, the first and last repeated."""
    before = np.concatenate([np.take(x, [0], axis), np.take(x, range(x.shape[axis] - 1), axis)], axis)
    after = np.concatenate([np.take(x, range(1, x.shape[axis]), axis), np.take(x, [-1], axis)], axis)
    return before, after


def _h2v1_fancy(x: np.ndarray) -> np.ndarray:
    left, right = _edges(x, 1)
    out = np.empty((x.shape[0], 2 * x.shape[1]), np.int32)
    out[:, 0::2] = (3 * x + left + 1) >> 2
    out[:, 1::2] = (3 * x + right + 2) >> 2
    return out


def _h1v2_fancy(x: np.ndarray) -> np.ndarray:
    above, below = _edges(x, 0)
    out = np.empty((2 * x.shape[0], x.shape[1]), np.int32)
    out[0::2] = (3 * x + above + 1) >> 2
    out[1::2] = (3 * x + below + 2) >> 2
    return out


def _h2v2_fancy(x: np.ndarray) -> np.ndarray:
    above, below = _edges(x, 0)
    out = np.empty((2 * x.shape[0], 2 * x.shape[1]), np.int32)
    for row, nearer in ((0, above), (1, below)):
        column = 3 * x + nearer
        last, following = _edges(column, 1)
        out[row::2, 0::2] = (3 * column + last + 8) >> 4
        out[row::2, 1::2] = (3 * column + following + 7) >> 4
    return out


def upsample(samples: np.ndarray, h_ratio: int, v_ratio: int) -> np.ndarray:
    """libjpeg-turbo's choice for one component (jinit_upsampler, fancy upsampling on): the triangle filter for
    2:1 horizontally (if the component is over 2 samples wide), 2:1 vertically, 2:1 both ways (over 2 wide);
    plain replication for every other whole ratio."""
    x = samples.astype(np.int32)
    wide = x.shape[1] > 2
    if (h_ratio, v_ratio) == (1, 1):
        return x
    if (h_ratio, v_ratio) == (2, 1) and wide:
        return _h2v1_fancy(x)
    if (h_ratio, v_ratio) == (1, 2):
        return _h1v2_fancy(x)
    if (h_ratio, v_ratio) == (2, 2) and wide:
        return _h2v2_fancy(x)
    return np.repeat(np.repeat(x, v_ratio, 0), h_ratio, 1)


# --- jdcolor.c: the colour conversions ---------------------------------------------------------------------

def _fix(x: float) -> int:
    return int(x * (1 << 16) + 0.5)


_CENTRED = np.arange(256, dtype=np.int64) - 128
_CR_R = (_fix(1.40200) * _CENTRED + (1 << 15)) >> 16
_CB_B = (_fix(1.77200) * _CENTRED + (1 << 15)) >> 16
_CR_G = -_fix(0.71414) * _CENTRED
_CB_G = -_fix(0.34414) * _CENTRED + (1 << 15)


def _ycc_to_rgb(y: np.ndarray, cb: np.ndarray, cr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """build_ycc_rgb_table and ycc_rgb_convert, before the range limit."""
    y = y.astype(np.int64)
    return y + _CR_R[cr], y + ((_CB_G[cb] + _CR_G[cr]) >> 16), y + _CB_B[cb]


def colour_space(data: bytes, components: int, ids: list[int]) -> str:
    """The colour space libjpeg reads a JPEG's components in (jdapimin.c `default_decompress_parms`): the
    last JFIF APP0 or Adobe APP14 segment before the first scan decides, else the component ids."""
    jfif, adobe = False, None
    for marker, start, end in segments(data):
        if marker == 0xDA:
            break
        body = data[start + 4:end]
        if marker == 0xE0 and len(body) >= 14 and body[:5] == b"JFIF\x00":
            jfif = True
        elif marker == 0xEE and len(body) >= 12 and body[:5] == b"Adobe":
            adobe = body[11]
    if components == 1:
        return "GRAY"
    if components == 4:
        return "CMYK" if adobe is None or adobe == 0 else "YCCK"
    if jfif:
        return "YCbCr"
    if adobe is not None:
        return "RGB" if adobe == 0 else "YCbCr"
    return "RGB" if ids == [82, 71, 66] else "YCbCr"


def decode(data: bytes, rgb: bool) -> np.ndarray:
    """The samples libjpeg-turbo puts out for TensorFlow, (height, width, channels) uint8: CMYK for four
    components (YCCK converted), RGB for three, gray for one (repeated to RGB if `rgb`).

    TurboJPEG's interface (simplejpeg) decodes only the common samplings; TensorFlow calls libjpeg's own API,
    which takes any factors of 1 to 4 whose ratios are whole numbers. `decode` gives the same samples for
    every such file, one step each from the code that decides it in TensorFlow's decoder:
    - the quantised DCT coefficients are read by libjpeg-turbo itself, through `jpeglib`'s
      `jpeg_read_coefficients` (entropy decoding only: no arithmetic that could round differently);
    - each component's coefficients are written, unchanged, as a one-component JPEG (`one_component_jpeg`:
      Huffman tables for every size libjpeg's decoder takes, a restart marker after every block, so any
      coefficient libjpeg can hold fits) and decoded by simplejpeg with the fast integer DCT: the same
      libjpeg-turbo SIMD inverse DCT TensorFlow runs. (jpeglib's own decoder is built without SIMD, and its
      C fast IDCT wraps around where the SIMD one saturates: on sharp edges the two differ by up to 255.
      Its encoder, libjpeg-turbo's, writes a coefficient beyond baseline's sizes as a broken stream.)
    - the components are upsampled as libjpeg-turbo's `jdsample.c` does with fancy upsampling (the
      triangle filters for 2:1 ratios, replication otherwise, edges repeated as `jdmainct.c` repeats
      them), and converted as `jdcolor.c` converts them (YCbCr to RGB, YCCK to CMYK).
    tests/test_fixups_sampling.py checks this against TensorFlow on every sampling combination libjpeg takes.

    Raises `Unreproducible` where libjpeg would smooth blocks of a progressive file whose scans stop short
    (block smoothing is not reproduced), where a coefficient is -32768 (damaged data; no JPEG codes it), or
    where the scans libjpeg read cannot be followed.
    """
    frame = read_frame(data)
    if frame.smoothed:
        raise Unreproducible("a progressive JPEG whose scans leave coefficients imprecise, which libjpeg "
                             "smooths (block smoothing is not reproduced)")
    samples = component_samples(data, frame)
    planes = [upsample(s, frame.max_h // c.h, frame.max_v // c.v)[:frame.height, :frame.width]
              for s, c in zip(samples, frame.components)]
    space = colour_space(data, len(planes), [c.ident for c in frame.components])
    if space == "YCCK":
        red, green, blue = _ycc_to_rgb(*planes[:3])
        planes = [255 - red, 255 - green, 255 - blue, planes[3]]
    elif space == "YCbCr":
        planes = list(_ycc_to_rgb(*planes))
    elif space == "GRAY" and rgb:
        planes = planes * 3
    return np.clip(np.stack(planes, axis=-1), 0, 255).astype(np.uint8)
