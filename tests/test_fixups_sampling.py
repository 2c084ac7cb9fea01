"""Fix-up JPEGs of every sampling libjpeg takes: TensorFlow is the judge, at the edges of both decoders' rules.

libjpeg (TensorFlow's decoder) takes 1 to 4 components' sampling factors of 1 to 4 each way whose ratios to
the largest are whole numbers, and an interleaved scan of at most 10 blocks an MCU; TurboJPEG's interface
(simplejpeg) takes only the common patterns of those. `fixups.jpeg_pixels` uses simplejpeg where it can and
`jpeg_any_sampling` elsewhere; both must give TensorFlow's bytes, and a file TensorFlow refuses is refused.
The JPEGs come from a small encoder here (any factors, scans interleaved or not, sequential or progressive,
restart intervals), from Pillow (what issue 23 reported: CMYK saved with subsampling) and from libjpeg's own
encoder through jpeglib (progressive with successive approximation).
"""

from __future__ import annotations

import io
import math
import os
import tempfile

import numpy as np
import pytest
import simplejpeg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf  # noqa: E402

from helpers import damage, first_scan_end, picture, tensorflow_cmyk  # noqa: E402
from streamprep.errors import ImageError  # noqa: E402
from streamprep.records import fixups, jpeg_any_sampling  # noqa: E402

NAME = "n01739381_1309.JPEG"
PROPERTY = settings(max_examples=int(os.environ.get("FIXUP_EXAMPLES", 800)), deadline=None, derandomize=True,
                    database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# --- a small JPEG encoder: any sampling factors, scans, restart intervals ----------------------------------

ZIGZAG = [r * 8 + c for r, c in sorted(((r, c) for r in range(8) for c in range(8)),
                                       key=lambda p: (p[0] + p[1], p[0] if (p[0] + p[1]) % 2 else -p[0]))]
DCT = np.array([[(math.sqrt(1 / 8) if u == 0 else 0.5) * math.cos((2 * x + 1) * u * math.pi / 16) for x in range(8)]
                for u in range(8)])
LUMINANCE = np.array([16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
                      14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113,
                      92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99])  # natural order
# Fixed-length Huffman codes (valid tables, compression is no concern): DC sizes 0-11 in 4 bits; AC's EOB,
# ZRL and run/size symbols in 8 bits.
DC_SYMBOLS = list(range(12))
AC_SYMBOLS = [0x00, 0xF0] + [run << 4 | size for run in range(16) for size in range(1, 11)]
AC_CODE = {symbol: code for code, symbol in enumerate(AC_SYMBOLS)}


def segment(marker: int, body: bytes) -> bytes:
    return bytes([0xFF, marker]) + (len(body) + 2).to_bytes(2, "big") + body


def huffman_segment() -> bytes:
    dc = bytes([0, 0, 0, len(DC_SYMBOLS)] + [0] * 12) + bytes(DC_SYMBOLS)
    ac = bytes([0] * 7 + [len(AC_SYMBOLS)] + [0] * 8) + bytes(AC_SYMBOLS)
    return segment(0xC4, b"".join(bytes([kind << 4 | ident]) + table
                                  for ident in (0, 1) for kind, table in ((0, dc), (1, ac))))


class Bits:
    """Entropy-coded bytes: bits packed high first, FF stuffed with 00, padded with 1s."""

    def __init__(self):
        self.out, self.acc, self.count = bytearray(), 0, 0

    def put(self, value: int, length: int) -> None:
        self.acc = (self.acc << length) | (value & ((1 << length) - 1))
        self.count += length
        while self.count >= 8:
            self.count -= 8
            byte = (self.acc >> self.count) & 0xFF
            self.out += b"\xff\x00" if byte == 0xFF else bytes([byte])
        self.acc &= (1 << self.count) - 1

    def flush(self) -> None:
        if self.count:
            self.put((1 << (8 - self.count)) - 1, 8 - self.count)


def size_and_bits(value: int) -> tuple[int, int]:
    """A coefficient's size category and its extra bits (negative values as ones' complement)."""
    size = abs(value).bit_length()
    return size, (value if value >= 0 else value + (1 << size) - 1)


def put_block(bits: Bits, zz: list[int], predictor: int, ss: int, se: int) -> None:
    """One block's coefficients ss..se (zigzag order), DC as a difference from `predictor`."""
    if ss == 0:
        size, extra = size_and_bits(zz[0] - predictor)
        bits.put(size, 4)
        bits.put(extra, size)
    if se == 0:
        return
    start = max(ss, 1)
    last = max((k for k in range(start, se + 1) if zz[k]), default=start - 1)
    run = 0
    for k in range(start, last + 1):
        if not zz[k]:
            run += 1
            continue
        while run > 15:
            bits.put(AC_CODE[0xF0], 8)
            run -= 16
        size, extra = size_and_bits(zz[k])
        bits.put(AC_CODE[run << 4 | size], 8)
        bits.put(extra, size)
        run = 0
    if last < se:
        bits.put(AC_CODE[0x00], 8)  # EOB (in a progressive scan, an end-of-band run of one block)


def encode(pixels: np.ndarray, sampling: list[tuple[int, int]], groups: list[list[int]], *, progressive: bool = False,
           bands: list[tuple[int, int]] = ((1, 63),), restart: int = 0, quality: int = 90, header: bytes = b"",
           ids: list[int] | None = None, table_of: list[int] | None = None) -> bytes:
    """A JPEG of `pixels` (height, width, components) with the given (h, v) factors: one scan per group of
    components (interleaved if more than one), or, if `progressive`, those as DC scans followed by one AC
    scan per component and band (spectral selection). Fractional ratios are written too (libjpeg refuses
    them): each component then holds the samples nearest its grid."""
    height, width, count = pixels.shape
    ids = ids or list(range(1, count + 1))
    table_of = table_of or [min(c, 1) for c in range(count)]
    max_h, max_v = max(h for h, _ in sampling), max(v for _, v in sampling)
    mcus_x, mcus_y = -(-width // (8 * max_h)), -(-height // (8 * max_v))
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    tables = [np.clip((LUMINANCE * scale + 50) // 100, 1, 255).astype(int),
              np.clip((LUMINANCE[::-1] * scale + 50) // 100, 1, 255).astype(int)]
    blocks = []  # each component's quantised blocks in zigzag order, over its MCU-padded grid
    for c, (h, v) in enumerate(sampling):
        rows, cols = -(-height * v // max_v), -(-width * h // max_h)
        plane = pixels[np.minimum(np.arange(rows) * max_v // v, height - 1)][:, np.minimum(
            np.arange(cols) * max_h // h, width - 1), c].astype(float)
        grid_y, grid_x = max(mcus_y * v, -(-rows // 8)), max(mcus_x * h, -(-cols // 8))
        plane = np.pad(plane, ((0, grid_y * 8 - rows), (0, grid_x * 8 - cols)), mode="edge")
        tiles = plane.reshape(grid_y, 8, grid_x, 8).transpose(0, 2, 1, 3) - 128
        coefficients = DCT @ tiles @ DCT.T
        quantised = np.rint(coefficients.reshape(grid_y, grid_x, 64) / tables[table_of[c]]).astype(int)
        quantised = np.clip(quantised, -1023, 1023)
        blocks.append(quantised[..., ZIGZAG])
    out = bytearray(b"\xff\xd8" + header)
    out += segment(0xDB, b"".join(bytes([t]) + bytes(tables[t][ZIGZAG].tolist()) for t in sorted(set(table_of))))
    out += segment(0xC2 if progressive else 0xC0, bytes([8]) + height.to_bytes(2, "big") + width.to_bytes(2, "big")
                   + bytes([count]) + b"".join(bytes([ids[c], h << 4 | v, table_of[c]])
                                                for c, (h, v) in enumerate(sampling)))
    out += huffman_segment()
    if restart:
        out += segment(0xDD, restart.to_bytes(2, "big"))
    passes = [(group, 0, 0 if progressive else 63) for group in groups]
    if progressive:
        passes += [([c], ss, se) for c in range(count) for ss, se in bands]
    for group, ss, se in passes:
        out += segment(0xDA, bytes([len(group)]) + b"".join(bytes([ids[c], table_of[c] * 17]) for c in group)
                       + bytes([ss, se, 0]))
        if len(group) == 1:
            c = group[0]
            rows, cols = -(-height * sampling[c][1] // max_v), -(-width * sampling[c][0] // max_h)
            units = [[(c, y, x)] for y in range(-(-rows // 8)) for x in range(-(-cols // 8))]
        else:
            units = [[(c, my * sampling[c][1] + y, mx * sampling[c][0] + x) for c in group
                      for y in range(sampling[c][1]) for x in range(sampling[c][0])]
                     for my in range(mcus_y) for mx in range(mcus_x)]
        bits, predictors, marker = Bits(), [0] * count, 0
        for n, unit in enumerate(units):
            if restart and n and n % restart == 0:
                bits.flush()
                bits.out += bytes([0xFF, 0xD0 + marker])
                marker, predictors = (marker + 1) % 8, [0] * count
            for c, y, x in unit:
                zz = blocks[c][y, x].tolist()
                put_block(bits, zz, predictors[c], ss, se)
                predictors[c] = zz[0]
        bits.flush()
        out += bits.out
    return bytes(out + b"\xff\xd9")


ADOBE = {transform: segment(0xEE, b"Adobe" + bytes([0, 100, 0, 0, 0, 0, transform])) for transform in (0, 1, 2)}
JFIF = segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")


# --- what libjpeg takes, and the files ---------------------------------------------------------------------

def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


@st.composite
def samplings(draw, count: int) -> list[tuple[int, int]]:
    """Any factors libjpeg takes for `count` components: 1 to 4 each way, whole ratios to the largest."""
    max_h, max_v = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    hs = [draw(st.sampled_from(divisors(max_h))) for _ in range(count)]
    vs = [draw(st.sampled_from(divisors(max_v))) for _ in range(count)]
    hs[draw(st.integers(0, count - 1))] = max_h
    vs[draw(st.integers(0, count - 1))] = max_v
    return list(zip(hs, vs))


def blocks_in_mcu(sampling: list[tuple[int, int]], group: list[int]) -> int:
    return sum(sampling[c][0] * sampling[c][1] for c in group)


@st.composite
def scan_groups(draw, sampling: list[tuple[int, int]]) -> list[list[int]]:
    """Components in scans: all interleaved, each alone, or a mix, never over libjpeg's 10 blocks an MCU; in any
    order of scans, each scan's components in the frame's order (libjpeg refuses others)."""
    order = draw(st.permutations(range(len(sampling))))
    groups: list[list[int]] = []
    for c in order:
        if groups and draw(st.booleans()) and blocks_in_mcu(sampling, groups[-1] + [c]) <= 10:
            groups[-1].append(c)
        else:
            groups.append([c])
    return [sorted(group) for group in groups]


def contents(rng: np.random.Generator, height: int, width: int, count: int, sharp: bool) -> np.ndarray:
    """A photograph's mix of smooth areas and noise, or hard black and white edges (which drive the fast
    inverse DCT out of range, where its C and SIMD versions differ)."""
    if not sharp:
        return picture(rng, height, width, count)
    coarse = rng.integers(0, 2, (height // 4 + 1, width // 4 + 1, count), dtype=np.uint8) * 255
    return np.ascontiguousarray(np.repeat(np.repeat(coarse, 4, 0), 4, 1)[:height, :width])


COLOUR_HEADERS = {4: {"Adobe CMYK": ADOBE[0], "Adobe YCCK": ADOBE[2], "Adobe unknown transform": ADOBE[1],
                      "no marker": b""},
                  3: {"JFIF": JFIF, "Adobe RGB": ADOBE[0], "Adobe YCbCr": ADOBE[1], "no marker": b""}}


@st.composite
def hand_made(draw) -> bytes:
    count = draw(st.sampled_from([4, 4, 3]))
    sampling = draw(samplings(count))
    height, width = (draw(st.one_of(st.integers(1, 3), st.integers(4, 40), st.integers(41, 110))) for _ in "hw")
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    pixels = contents(rng, height, width, count, draw(st.booleans()))
    progressive = draw(st.booleans())
    header = COLOUR_HEADERS[count][draw(st.sampled_from(sorted(COLOUR_HEADERS[count])))]
    ids = draw(st.sampled_from([None, [82, 71, 66, 75][:count], [0, 1, 2, 3][:count]]))
    return encode(pixels, sampling, draw(scan_groups(sampling)), progressive=progressive,
                  bands=draw(st.sampled_from([[(1, 63)], [(1, 5), (6, 63)], [(1, 2), (3, 9), (10, 63)]])),
                  restart=draw(st.sampled_from([0, 0, 1, 2, 5])), quality=draw(st.sampled_from([50, 90, 100])),
                  header=header, ids=ids, table_of=[draw(st.integers(0, 1)) for _ in range(count)])


def libjpeg_made(pixels: np.ndarray, sampling: list[tuple[int, int]], ycck: bool, progressive: bool,
                 quality: int) -> bytes:
    """libjpeg's own encoder (through jpeglib): CMYK or YCCK, its progression with successive approximation."""
    import jpeglib

    image = jpeglib.from_spatial(np.ascontiguousarray(pixels), in_color_space=jpeglib.Colorspace["JCS_CMYK"])
    image.jpeg_color_space = jpeglib.Colorspace["JCS_YCCK" if ycck else "JCS_CMYK"]
    image.samp_factor = np.array([[v, h] for h, v in sampling], dtype=np.int32)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "out.jpg")
        image.write_spatial(path, qt=quality, flags=["+PROGRESSIVE_MODE"] if progressive else [])
        with open(path, "rb") as f:
            return f.read()


@st.composite
def libjpeg_or_pillow_made(draw) -> bytes:
    height, width = (draw(st.one_of(st.integers(1, 3), st.integers(4, 40), st.integers(41, 110))) for _ in "hw")
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    pixels = contents(rng, height, width, 4, draw(st.booleans()))
    if draw(st.booleans()):  # Pillow's CMYK with subsampling: the first component 2x2 or 2x1, the others 1x1
        options = {"quality": draw(st.sampled_from([75, 95])), "subsampling": draw(st.sampled_from([0, 1, 2])),
                   "progressive": draw(st.booleans())}
        if draw(st.booleans()):
            options["restart_marker_blocks"] = draw(st.integers(1, 4))
        out = io.BytesIO()
        Image.fromarray(pixels, "CMYK").save(out, "JPEG", **options)
        return out.getvalue()
    sampling = draw(samplings(4).filter(lambda s: blocks_in_mcu(s, [0, 1, 2, 3]) <= 10))
    return libjpeg_made(pixels, sampling, draw(st.booleans()), draw(st.booleans()), draw(st.sampled_from([75, 95])))


def tensorflow_or_error(data: bytes) -> bytes | None:
    try:
        return tensorflow_cmyk(data)
    except tf.errors.OpError:
        return None


@PROPERTY
@given(st.one_of(hand_made(), libjpeg_or_pillow_made()))
def test_every_sampling_libjpeg_takes_reencodes_to_tensorflows_bytes(data):
    expected = tensorflow_cmyk(data)  # every file generated here is one TensorFlow decodes
    assert fixups.apply("cmyk", data, NAME) == expected


@settings(PROPERTY, max_examples=int(os.environ.get("FIXUP_EXAMPLES", 800)) // 3)
@given(hand_made(), st.sampled_from(["headers", "scans"]), st.data())
def test_a_damaged_jpeg_of_any_sampling_gives_tensorflows_bytes_or_fails_as_tensorflow_fails(data, where, draw):
    """One byte changed in the headers or anywhere after them (scan data, later scan headers, restart markers):
    TensorFlow's bytes wherever it decodes the file (but for the named gap, block smoothing), an error where it
    fails on the headers. (Where libjpeg reads past the data's end, TensorFlow fails and streamprep may not:
    test_fixups.py.)"""
    scan = first_scan_end(data)
    damaged = damage(data, draw, 2, scan) if where == "headers" else damage(data, draw, scan, len(data))
    expected = tensorflow_or_error(damaged)
    if expected is None:
        if where == "headers":
            with pytest.raises(ImageError):
                fixups.apply("cmyk", damaged, NAME)
        return
    try:
        assert fixups.apply("cmyk", damaged, NAME) == expected
    except ImageError as e:
        assert isinstance(e.__cause__, jpeg_any_sampling.Unreproducible) and "smooths" in str(e), e


# --- the edges: TurboJPEG's set, libjpeg's set --------------------------------------------------------------

def turbojpeg_takes(data: bytes) -> bool:
    try:  # (decode_jpeg_header fails on 4:4:1, which decode_jpeg takes)
        simplejpeg.decode_jpeg(data, colorspace="CMYK" if fixups.jpeg_components(data) == 4 else "RGB", fastdct=True)
    except ValueError as e:
        assert "subsampling level" in str(e), e
        return False
    return True


# TurboJPEG (libjpeg-turbo 3.1's tjDecompressHeader3) takes a CMYK/YCCK JPEG only when C and K share the
# first component's factors and M, Y are 1x1 (4:4:4, 4:2:2, 4:2:0, 4:4:0, 4:1:1, 4:4:1), or 4:2:2 and 4:4:0
# written with C and K at 2x2, or all four alike at 1 to 3 blocks; every other sampling goes to
# `jpeg_any_sampling`.
TURBOJPEG_TAKES = {
    "1x1 1x1 1x1 1x1": True, "2x1 1x1 1x1 2x1": True, "1x2 1x1 1x1 1x2": True, "2x2 1x1 1x1 2x2": True,
    "4x1 1x1 1x1 4x1": True, "1x4 1x1 1x1 1x4": True, "2x1 2x1 2x1 2x1": True, "1x2 1x2 1x2 1x2": True,
    "2x2 2x1 2x1 2x2": True, "2x2 1x2 1x2 2x2": True, "3x1 3x1 3x1 3x1": True, "1x3 1x3 1x3 1x3": True,
    "2x2 1x1 1x1 1x1": False, "2x1 1x1 1x1 1x1": False,  # Pillow's CMYK with subsampling=2 and =1 (issue 23)
    "1x1 2x2 1x1 1x1": False, "1x1 1x1 1x1 2x2": False, "2x2 2x2 1x1 1x1": False, "3x1 1x1 1x1 3x1": False,
    "3x3 1x1 1x1 1x1": False, "4x2 2x1 2x1 1x1": False, "1x3 1x3 1x1 1x1": False, "2x2 2x1 1x2 1x1": False,
    "4x4 1x1 1x1 1x1": False, "4x4 4x4 4x4 4x4": False, "4x4 2x2 1x1 4x4": False, "1x1 1x1 1x1 4x4": False,
}


@pytest.mark.parametrize("pattern", TURBOJPEG_TAKES)
def test_each_decoder_gets_the_samplings_it_reproduces(pattern, monkeypatch):
    sampling = [tuple(map(int, factors.split("x"))) for factors in pattern.split()]
    many = blocks_in_mcu(sampling, [0, 1, 2, 3]) > 10  # then libjpeg needs a scan per component
    data = encode(contents(np.random.default_rng(len(pattern)), 37, 53, 4, True), sampling,
                  [[0], [1], [2], [3]] if many else [[0, 1, 2, 3]], header=ADOBE[2])
    assert turbojpeg_takes(data) is TURBOJPEG_TAKES[pattern]
    used = []
    original = jpeg_any_sampling.decode
    monkeypatch.setattr(jpeg_any_sampling, "decode", lambda *a, **k: used.append(1) or original(*a, **k))
    assert fixups.apply("cmyk", data, NAME) == tensorflow_cmyk(data)
    assert bool(used) is not TURBOJPEG_TAKES[pattern]


@pytest.mark.parametrize("subsampling", [1, 2])
@pytest.mark.parametrize("progressive", [False, True])
def test_pillows_subsampled_cmyk_of_issue_23_reencodes_to_tensorflows_bytes(subsampling, progressive):
    out = io.BytesIO()
    Image.fromarray(picture(np.random.default_rng(23), 211, 317, 4), "CMYK").save(
        out, "JPEG", quality=92, subsampling=subsampling, progressive=progressive)
    assert not turbojpeg_takes(out.getvalue())
    assert fixups.apply("cmyk", out.getvalue(), NAME) == tensorflow_cmyk(out.getvalue())


REFUSED = {  # sampling libjpeg refuses, and so TensorFlow: (factors, scan groups)
    "ratios 3:2 (not whole)": ([(3, 1), (2, 1), (1, 1), (1, 1)], [[0], [1], [2], [3]]),
    "ratios 4:3 vertically": ([(1, 4), (1, 3), (1, 1), (1, 1)], [[0], [1], [2], [3]]),
    "11 blocks in the first scan's MCU": ([(3, 3), (1, 1), (1, 1), (1, 1)], [[0, 1, 2], [3]]),
    "11 blocks in a later scan's MCU": ([(3, 3), (1, 1), (1, 1), (1, 1)], [[3], [0, 1, 2]]),
    "16 blocks interleaved": ([(2, 2), (2, 2), (2, 2), (2, 2)], [[0, 1, 2, 3]]),
}


@pytest.mark.parametrize("case", REFUSED, ids=REFUSED)
def test_a_sampling_libjpeg_refuses_is_refused_naming_the_member(case):
    sampling, groups = REFUSED[case]
    data = encode(picture(np.random.default_rng(1), 40, 50, 4), sampling, groups)
    assert tensorflow_or_error(data) is None
    with pytest.raises(ImageError, match=f"^{NAME}: the classic re-encodes this file .*check the archive$"):
        fixups.apply("cmyk", data, NAME)


@pytest.mark.parametrize("factors", [0x05, 0x50, 0x00, 0x15])
def test_factors_outside_1_to_4_are_refused_as_tensorflow_refuses(factors):
    data = bytearray(encode(picture(np.random.default_rng(2), 20, 20, 4), [(1, 1)] * 4, [[0, 1, 2, 3]]))
    sof = data.index(b"\xff\xc0")
    data[sof + 10 + 3 * 1 + 1] = factors  # the second component's h, v
    assert tensorflow_or_error(bytes(data)) is None
    with pytest.raises(ImageError, match=f"^{NAME}: "):
        fixups.apply("cmyk", bytes(data), NAME)


def test_many_app_and_comment_segments_do_not_reach_jpeglibs_fixed_tables():
    """jpeglib copies the markers it reads into 50 global slots; the file it is given has none."""
    many = b"".join(segment(0xFE, b"comment %d" % k) + segment(0xE5, b"app") for k in range(40))
    data = encode(picture(np.random.default_rng(3), 30, 30, 4), [(2, 2), (1, 1), (1, 1), (1, 1)], [[0, 1, 2, 3]],
                  header=ADOBE[2] + many, progressive=True)
    data = data[:-2] + many + data[-2:]  # after the last scan too
    assert fixups.apply("cmyk", data, NAME) == tensorflow_cmyk(data)


def test_a_component_in_no_scan_is_mid_gray_as_in_libjpeg():
    data = encode(picture(np.random.default_rng(4), 30, 41, 4), [(2, 1), (1, 1), (1, 1), (1, 1)], [[0, 1], [3]])
    assert fixups.apply("cmyk", data, NAME) == tensorflow_cmyk(data)


def test_a_later_quantisation_table_does_not_change_a_component_already_scanned():
    """libjpeg latches a component's table at its first scan; a DQT between scans applies to later ones only."""
    data = encode(picture(np.random.default_rng(5), 33, 35, 4), [(2, 2), (1, 1), (1, 1), (1, 1)],
                  [[0], [1], [2], [3]], table_of=[0, 1, 1, 1])
    scans = [k for k in range(len(data) - 1) if data[k:k + 2] == b"\xff\xda"]
    other = segment(0xDB, bytes([1]) + bytes(range(2, 66)))  # table 1 redefined before the third scan
    data = data[:scans[2]] + other + data[scans[2]:]
    assert fixups.apply("cmyk", data, NAME) == tensorflow_cmyk(data)


def test_block_smoothing_of_a_progressive_file_that_stops_short_is_the_named_gap():
    """libjpeg smooths blocks whose first coefficients never arrived; `jpeg_any_sampling` does not reproduce that
    and says so, rather than give other bytes. (Complete progressive files are not smoothed.)"""
    data = encode(picture(np.random.default_rng(6), 40, 40, 4), [(2, 2), (1, 1), (1, 1), (1, 1)],
                  [[0, 1, 2, 3]], progressive=True, bands=[(1, 5), (6, 63)])
    first_ac = [k for k in range(len(data) - 1) if data[k:k + 2] == b"\xff\xda"][1]
    stopped = data[:first_ac] + b"\xff\xd9"  # the DC scan only
    assert jpeg_any_sampling.read_frame(stopped).smoothed and not jpeg_any_sampling.read_frame(data).smoothed
    assert tensorflow_or_error(stopped) is not None  # TensorFlow decodes it
    with pytest.raises(ImageError, match="TensorFlow decodes it, but streamprep cannot reproduce") as caught:
        fixups.apply("cmyk", stopped, NAME)
    assert isinstance(caught.value.__cause__, jpeg_any_sampling.Unreproducible)


def test_three_component_jpegs_of_uncommon_sampling_reencode_to_tensorflows_bytes():
    rng = np.random.default_rng(7)
    for sampling in ([(1, 1), (2, 2), (1, 1)], [(3, 1), (1, 1), (1, 1)], [(2, 2), (2, 1), (1, 2)],
                     [(1, 1), (1, 1), (4, 4)]):
        for header in (JFIF, ADOBE[0], b""):
            data = encode(contents(rng, 29, 43, 3, True), sampling, [[0], [1], [2]], header=header, restart=3)
            assert not turbojpeg_takes(data)
            assert fixups.apply("cmyk", data, NAME) == tensorflow_cmyk(data), (sampling, header)
