"""Tests of the header-only image size reader (streamprep.imagesize) against TensorFlow's full decode."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf  # noqa: E402

from fixtures.builders import jpeg, png  # noqa: E402
from streamprep.errors import ImageError  # noqa: E402
from streamprep.records.imagesize import SizeUnreadable, jpeg_size  # noqa: E402
from streamprep.records.image import image_size  # noqa: E402

BASE = jpeg(40, 30)
APP0_END = 4 + int.from_bytes(BASE[4:6], "big")       # SOI, then APP0 marker + its segment
assert BASE[2:4] == b"\xff\xe0"


def segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload


def after_app0(extra: bytes) -> bytes:
    return BASE[:APP0_END] + extra + BASE[APP0_END:]


CASES = {
    "baseline": jpeg(64, 48),
    "progressive": jpeg(50, 70, progressive=True),
    "grayscale": jpeg(33, 17, mode="L"),
    "cmyk": jpeg(41, 29, mode="CMYK"),
    "exif-orientation-6": jpeg(60, 20, exif=True),
    "icc": jpeg(25, 35, icc=True),
    "quality-100": jpeg(31, 13, quality=100),
    "1x1": jpeg(1, 1),
    "4000x3": jpeg(4000, 3),
    "3x4000": jpeg(3, 4000, progressive=True),
    "extra-app-and-com": after_app0(segment(0xE5, b"app5 data") + segment(0xFE, b"a comment") + segment(0xEF, b"")),
    "app-holding-a-fake-sof": after_app0(segment(0xE1, b"\xff\xc0\x00\x11\x08\x00\x07\x00\x09\x03")),
    "ff-fill-before-marker": after_app0(b"\xff\xff\xff"),
    "ff-fill-after-soi": BASE[:2] + b"\xff\xff" + BASE[2:],
    "stray-bytes-before-marker": after_app0(b"junk"),
}


def tf_size(data: bytes, channels: int = 3) -> tuple[int, int]:
    return tuple(int(n) for n in tf.io.decode_jpeg(data, channels=channels).shape[:2])


@pytest.mark.parametrize("name", CASES, ids=CASES)
def test_jpeg_size_equals_tensorflow_decode_shape(name):
    data = CASES[name]
    assert jpeg_size(data) == tf_size(data, channels=0 if name == "cmyk" else 3)


def test_jpeg_size_is_height_then_width():
    assert jpeg_size(jpeg(4000, 3)) == (3, 4000)


def test_stray_ff00_before_marker_is_skipped_like_libjpeg():
    data = BASE[:2] + b"\xff\x00" + BASE[2:]
    assert jpeg_size(data) == tf_size(data) == (30, 40)


def _sof_at(data: bytes) -> int:
    return data.index(b"\xff\xc0\x00\x11")  # baseline SOF of a 3-component image


def _zero_height() -> bytes:
    pos = _sof_at(BASE) + 5
    return BASE[:pos] + b"\x00\x00" + BASE[pos + 2:]


BAD = {
    "png": png(8, 8),
    "empty": b"",
    "text": b"hello, not an image",
    "soi-only": b"\xff\xd8",
    "truncated-before-sof": BASE[:_sof_at(BASE)],
    "truncated-inside-sof": BASE[:_sof_at(BASE) + 6],
    "sos-before-sof": BASE[:APP0_END] + segment(0xDA, b"\x00" * 6) + BASE[APP0_END:],
    "eoi-before-sof": BASE[:2] + b"\xff\xd9" + BASE[2:],
    "sof-height-0": _zero_height(),
    "dqt-length-1": after_app0(b"\xff\xdb\x00\x01"),
}


def test_an_app_segment_of_length_under_2_is_read_past_as_libjpeg_does():
    data = after_app0(b"\xff\xe3\x00\x01")
    assert jpeg_size(data) == tf_size(data)


@pytest.mark.parametrize("name", BAD, ids=BAD)
def test_unusable_header_raises_size_unreadable(name):
    with pytest.raises(SizeUnreadable):
        jpeg_size(BAD[name])


def test_zero_height_fixture_really_only_changes_the_height():
    data = _zero_height()
    sof = _sof_at(data)
    assert data[sof + 5:sof + 9] == b"\x00\x00\x00\x28" and len(data) == len(BASE)


def test_image_size_returns_header_size():
    assert image_size(BASE, "train.tar!n1.tar!n1_1.JPEG") == (30, 40)


@pytest.mark.parametrize("data", [b"GIF89a....", BASE[:_sof_at(BASE)], _zero_height()],
                         ids=["gif", "truncated", "height-0"])
def test_image_size_raises_image_error_naming_the_member(data):
    member = "ILSVRC2012_img_train.tar!n01440764.tar!n01440764_10026.JPEG"
    with pytest.raises(ImageError) as err:
        image_size(data, member)
    assert member in str(err.value)


# --------------------------------------------------------------------------------------------- what the decoder refuses

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from streamprep.records.imagesize import Undecodable, checked_jpeg_size  # noqa: E402


def tf_accepts(data: bytes) -> bool:
    try:
        tf.io.decode_jpeg(data, channels=3)
        return True
    except (tf.errors.OpError, ValueError):
        return False


def streamprep_accepts(data: bytes) -> bool:
    try:
        checked_jpeg_size(data)
        return True
    except (SizeUnreadable, Undecodable):
        return False


RESTARTS = jpeg(48, 40, seed=4)  # given restart markers below (Pillow writes them with restart_marker_blocks)
try:
    from PIL import Image
    import io as _io
    _buf = _io.BytesIO()
    Image.open(_io.BytesIO(RESTARTS)).save(_buf, "JPEG", quality=90, restart_marker_blocks=1)
    RESTARTS = _buf.getvalue()
except (TypeError, ValueError):  # an older Pillow without restart markers: the case stays without them
    pass
CUT_CASES = {k: CASES[k] for k in ("baseline", "progressive", "grayscale", "exif-orientation-6", "icc")}
CUT_CASES["restart-markers"] = RESTARTS


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(CUT_CASES)), cut=st.floats(0.0, 1.0), tail=st.sampled_from([b"", b"\0" * 7, b"junk"]))
def test_a_jpeg_cut_anywhere_is_refused_exactly_when_tensorflow_refuses_it(name, cut, tail):
    data = CUT_CASES[name]
    cut_data = data[:int(len(data) * cut)] + tail
    assert streamprep_accepts(cut_data) == tf_accepts(cut_data), (name, int(len(data) * cut), tail)


def with_frame(data: bytes, height: int, width: int) -> bytes:
    i = data.find(b"\xff\xc0")
    out = bytearray(data)
    out[i + 5:i + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(out)


@pytest.mark.parametrize("height, width", [(13377, 13377), (13378, 13378), (1, 65500), (1, 65501), (65535, 65535),
                                           (300, 400)])
def test_a_frame_too_large_for_the_decoder_is_refused_exactly_as_tensorflow_refuses_it(height, width):
    """The frame header claims more pixels than a few hundred bytes hold: TensorFlow decodes what it can up to its
    limits (2**29 decoded bytes, 65500 a side) and refuses beyond them; so does the check."""
    data = with_frame(jpeg(16, 16, seed=2), height, width)
    accepted = height * width * 3 < (1 << 29) and max(height, width) <= 65500
    assert streamprep_accepts(data) == accepted
    if height * width < 50_000_000:  # TensorFlow itself, where its answer costs little memory
        assert tf_accepts(data) == accepted


def test_image_size_names_the_member_and_the_reason_for_a_cut_jpeg():
    with pytest.raises(ImageError, match="a.tar!x.JPEG: the classic's decoder .* cut short"):
        image_size(BASE[:-2], "a.tar!x.JPEG")


# --------------------------------------------------------------------------------------------- header fields

def _patched(data: bytes, marker: int, offset: int, value: int) -> bytes:
    """`data` with the byte at `offset` into the segment of `marker` (from its FF) set to `value`."""
    i = data.find(bytes([0xFF, marker]))
    out = bytearray(data)
    out[i + offset] = value
    return bytes(out)


def _without(data: bytes, marker: int) -> bytes:
    i = data.find(bytes([0xFF, marker]))
    return data[:i] + data[i + 2 + int.from_bytes(data[i + 2:i + 4], "big"):]


HEADER_BASE = jpeg(24, 16, seed=3)
HEADER_CASES = {
    **{f"sof-{m:#x}": _patched(HEADER_BASE, 0xC0, 1, m) for m in (0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9,
                                                                   0xCA, 0xCB, 0xCD, 0xCE, 0xCF)},
    **{f"precision-{p}": _patched(HEADER_BASE, 0xC0, 4, p) for p in (0, 8, 12, 16)},
    **{f"sampling-{s:#04x}": _patched(HEADER_BASE, 0xC0, 11, s) for s in (0x00, 0x11, 0x22, 0x44, 0x55, 0x41, 0x14,
                                                                          0x10, 0x01)},
    **{f"quant-table-{q}": _patched(HEADER_BASE, 0xC0, 12, q) for q in (0, 1, 2, 3, 4)},
    **{f"components-{n}": _patched(HEADER_BASE, 0xC0, 9, n) for n in (0, 1, 2, 4, 5)},
    **{f"scan-components-{n}": _patched(HEADER_BASE, 0xDA, 4, n) for n in (0, 1, 2, 4)},
    "no-dqt": _without(HEADER_BASE, 0xDB),
    "no-dht": _without(HEADER_BASE, 0xC4),
    "dqt-index-5": _patched(HEADER_BASE, 0xDB, 4, 0x05),
    "dht-class-2": _patched(HEADER_BASE, 0xC4, 4, 0x20),
    "gray": jpeg(24, 16, seed=3, mode="L"),
    "progressive": jpeg(24, 16, seed=3, progressive=True),
    "cmyk": jpeg(24, 16, seed=3, mode="CMYK"),
}


@pytest.mark.parametrize("name", sorted(HEADER_CASES), ids=sorted(HEADER_CASES))
def test_header_fields_are_refused_exactly_when_tensorflow_refuses_them(name):
    data = HEADER_CASES[name]
    assert streamprep_accepts(data) == tf_accepts(data)


MUTATED_BASES = [HEADER_BASE, HEADER_CASES["gray"], HEADER_CASES["cmyk"], jpeg(24, 16, seed=3, exif=True),
                 HEADER_CASES["progressive"]]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_jpeg_whose_headers_streamprep_accepts_after_any_changes_is_one_tensorflow_decodes(data):
    """Any bytes of the markers before the image data changed (1 to 3 of them): an image streamprep passes
    decodes with the classic's decoder, so it never lands in a shard where the classic would have stopped."""
    base = data.draw(st.sampled_from(MUTATED_BASES))
    sos = base.find(b"\xff\xda")
    header_end = sos + 2 + int.from_bytes(base[sos + 2:sos + 4], "big")
    sof = next(base.find(bytes([0xFF, m])) for m in (0xC0, 0xC2) if base.find(bytes([0xFF, m])) > 0)
    mutated = bytearray(base)
    for _ in range(data.draw(st.integers(1, 3))):
        where = data.draw(st.integers(2, header_end - 1))
        value = data.draw(st.integers(0, 255))
        if base is HEADER_CASES["progressive"] and where == sof + 1 and value in (0xC0, 0xC1, 0xC9):
            continue  # a progressive file called sequential: see the test below
        mutated[where] = value
    if streamprep_accepts(bytes(mutated)):
        assert tf_accepts(bytes(mutated))


def test_a_progressive_file_called_sequential_is_caught_by_the_full_decode_check_only():
    """Its frame header says sequential, its first scan is a progressive DC scan, and only its second scan
    shows the lie: libjpeg refuses it there. Finding it means searching all the image data for a second
    scan (about 110 us a 125 KB image, more than writing its record), so only --check-decode does."""
    from streamprep.records.decode import full_decode
    from streamprep.records.spec import RecordSpec
    import numpy as np

    data = _patched(HEADER_CASES["progressive"], 0xC2, 1, 0xC0)
    assert streamprep_accepts(data) and not tf_accepts(data)
    spec = RecordSpec("x.JPEG", 1, "n01440764", "tench", "a.tar!x.JPEG", 0, len(data), np.zeros((0, 4)), None)
    with pytest.raises(ImageError, match="does not decode"):
        full_decode(spec, data)


def _answer(data: bytes) -> object:
    """checked_jpeg_size's answer: the size, or the error's class and text."""
    from streamprep.records.imagesize import checked_jpeg_size

    try:
        return checked_jpeg_size(data)
    except ValueError as e:
        return type(e).__name__, str(e)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_header_read_after_one_like_it_gets_the_answer_a_fresh_walk_gives(data):
    """A file whose header bytes match a remembered one's but for the frame size is answered from memory (no walk
    over its markers); any file, with 1 to 3 header bytes changed, size bytes included, gets the same size or the
    same error as a reader that has seen nothing before."""
    from streamprep.records import imagesize

    base = data.draw(st.sampled_from(MUTATED_BASES))
    sos = base.find(b"\xff\xda")
    header_end = sos + 2 + int.from_bytes(base[sos + 2:sos + 4], "big")
    mutated = bytearray(base)
    for _ in range(data.draw(st.integers(1, 3))):
        mutated[data.draw(st.integers(0, header_end + 8))] = data.draw(st.integers(0, 255))
    for remembered in MUTATED_BASES:  # every base's layout remembered
        _answer(remembered)
    warm = _answer(bytes(mutated))
    imagesize._layouts, saved = (), imagesize._layouts
    imagesize._valid.clear()
    try:
        assert _answer(bytes(mutated)) == warm
    finally:
        imagesize._layouts = saved


def test_a_header_like_a_remembered_one_but_for_its_size_is_read_from_memory_with_its_own_size():
    from streamprep.records import imagesize

    first, second = jpeg(64, 48), jpeg(48, 64)
    assert imagesize.checked_jpeg_size(first) == (48, 64)
    walks = []
    original = imagesize._segments
    imagesize._segments = lambda data: walks.append(1) or original(data)
    try:
        assert imagesize.checked_jpeg_size(second) == (64, 48)
    finally:
        imagesize._segments = original
    assert not walks  # answered from the layout of `first`
