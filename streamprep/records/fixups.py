"""The classic's fix-ups: one PNG and 22 CMYK JPEGs re-encoded, by file name, byte for byte as TensorFlow does.

The classic decodes these files with TensorFlow and encodes the pixels again as a quality-100 RGB
JPEG. The same bytes come without TensorFlow:
- a CMYK (or YCCK) JPEG is decoded by libjpeg-turbo with the fast integer DCT and fancy upsampling,
  TensorFlow's defaults (`simplejpeg`, which exposes the DCT choice Pillow does not), and turned into
  RGB with TensorFlow's integer formula (`cmyk_to_rgb`); a three-component JPEG is decoded straight
  to RGB the same way. Sampling factors TurboJPEG's interface refuses (a first component sampled 2x2
  while the others are 1x1, 3:1 ratios, ...) go through `jpeg_any_sampling`: libjpeg's coefficients
  (jpeglib), TurboJPEG's inverse DCT per component, libjpeg's upsampling and colour conversion;
- the PNG is decoded by Pillow, reduced to 8-bit RGB as libpng does for `decode_png(channels=3)`
  (alpha dropped, gray repeated, palette looked up, 16-bit samples cut to their high byte);
- the pixels are encoded by Pillow's libjpeg-turbo at quality 100, 4:2:0, with a JFIF header of
  300 dpi: what `tf.io.encode_jpeg(format="rgb", quality=100)` writes.
tests/test_fixups.py checks this against TensorFlow itself over generated files of every kind.
"""

from __future__ import annotations

import io
import logging
import struct
import threading
import zlib
from importlib import resources
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import ImageError, MissingDependencyError
from ..plan import CMYK_NAMES, PNG_NAME, fixup_kind
from . import jpeg_any_sampling
from .imagesize import MAX_DECODED_BYTES, SizeUnreadable, Undecodable, _markers, checked_jpeg_size, jpeg_components
from .jpeg_any_sampling import Unreproducible

log = logging.getLogger("streamprep")

# What each fix-up does, as the summary and manifest.json name it.
KINDS = {"png": "png_to_jpeg", "cmyk": "cmyk_to_rgb"}

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DPI = 300  # tf.io.encode_jpeg's default density: 300 dots per inch


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
    """The bytes the classic stores for a fix-up file: its pixels as a quality-100 RGB JPEG.

    As in the classic, a CMYK-named file is decoded with `decode_jpeg(channels=0)` (its own channel
    count) and the PNG-named one with `decode_png(channels=3)`; both TensorFlow ops take a JPEG or a
    PNG, whatever the name says. Where TensorFlow fails, so does this, with an `ImageError`.
    """
    try:
        pixels = decode(data, 3 if kind == "png" else 0)
    except Unreproducible as e:
        raise ImageError(f"{member}: the classic re-encodes this file ({KINDS[kind]}) and TensorFlow decodes it, "
                         f"but streamprep cannot reproduce its pixels exactly ({e}); check the archive") from e
    except (ValueError, OSError) as e:  # Undecodable, SizeUnreadable, Pillow's and simplejpeg's errors
        raise ImageError(f"{member}: the classic re-encodes this file ({KINDS[kind]}), but it cannot be decoded "
                         f"({str(e).splitlines()[0] if str(e) else type(e).__name__}); check the archive") from e
    if pixels.shape[2] != 3:
        raise ImageError(f"{member}: the classic re-encodes this file ({KINDS[kind]}) as RGB, but it decodes to "
                         f"{pixels.shape[2]} channel(s), which TensorFlow's encode_jpeg(format='rgb') refuses; "
                         "check the archive")
    return encode(pixels)


def decode(data: bytes, channels: int) -> np.ndarray:
    """The pixels (height, width, channels) `tf.io.decode_jpeg` or `decode_png` give with `channels` 0 or 3:
    a JPEG or a PNG, whichever the bytes are. A GIF, which TensorFlow decodes too, is refused."""
    if data.startswith(PNG_SIGNATURE):
        return png_pixels(data, channels)
    if data.startswith(b"GIF8"):
        raise Undecodable("a GIF; streamprep does not reproduce TensorFlow's GIF decoder")
    return jpeg_pixels(data, channels)


def encode(rgb: np.ndarray) -> bytes:
    """`tf.io.encode_jpeg(rgb, format="rgb", quality=100)`: libjpeg's defaults, quality 100, 4:2:0, 300 dpi."""
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb), "RGB").save(out, "JPEG", quality=100, dpi=(DPI, DPI))
    return out.getvalue()


# --- JPEG: TensorFlow's decode_jpeg(channels=0), then its CMYK -> RGB conversion --------------------------

def _simplejpeg():
    try:
        import simplejpeg
    except ImportError as e:
        raise MissingDependencyError(f"simplejpeg is needed to re-encode the classic's CMYK files ({e}); "
                                     "install simplejpeg") from e
    return simplejpeg


def _adobe_markers(data: bytes) -> Iterator[int]:
    """Where each APP14 segment libjpeg takes as Adobe's (at least 12 data bytes starting "Adobe") begins its
    data, before the first scan."""
    for marker, pos, length in _markers(data):
        if marker == 0xDA:
            break
        if marker == 0xEE and length - 2 >= 12 and data[pos + 2:pos + 7] == b"Adobe":
            yield pos + 2


_JFIF = b"\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"  # a plain JFIF APP0 segment


def libjpeg_view(data: bytes, components: int) -> bytes:
    """The JPEG with its header as libjpeg interprets it, rebuilt without what libjpeg only warns about there
    (stray bytes between segments, an unknown Adobe colour transform, a JFIF segment's odd version or
    thumbnail), which simplejpeg refuses even when told not to be strict.

    Kept: every segment libjpeg reads before the first scan except APPn and COM; the last Adobe APP14
    segment, its transform set to what libjpeg assumes for an unknown one (YCCK for four components,
    YCbCr for three); and, for three components, a plain JFIF APP0 if the file has one (JFIF decides
    YCbCr there). Everything from the first scan on is left as it is.
    """
    out = bytearray(b"\xff\xd8")
    jfif = False
    for marker, pos, length in _markers(data):
        segment = data[pos - 2:pos + length]
        if marker == 0xDA:
            return bytes(out[:2] + (_JFIF if jfif and components == 3 else b"") + out[2:]) + data[pos - 2:]
        if marker == 0xE0 and length - 2 >= 14 and data[pos + 2:pos + 7] == b"JFIF\x00":
            jfif = True
        if marker == 0xEE and length - 2 >= 12 and data[pos + 2:pos + 7] == b"Adobe":
            adobe = bytearray(b"\xff\xee" + segment[2:])
            if adobe[15] not in ((0, 2) if components == 4 else (0, 1)):  # unknown for this component count
                adobe[15] = 2 if components == 4 else 1
            out += adobe
        elif not (0xE0 <= marker <= 0xEF or marker == 0xFE):
            out += b"\xff" + bytes([marker]) + segment[2:]
    return data  # no scan: checked_jpeg_size has refused it already


def saw_adobe_marker(data: bytes) -> bool:
    """Whether libjpeg sets `saw_Adobe_marker`: an APP14 segment of at least 12 data bytes starting "Adobe",
    before the first scan."""
    return any(True for _ in _adobe_markers(data))


def cmyk_to_rgb(cmyk: np.ndarray, adobe: bool) -> np.ndarray:
    """TensorFlow's conversion of libjpeg's CMYK output, in integers: with an Adobe marker (inverted CMYK, as
    Adobe writes it) `r = k * c / 255`, else `r = (255 - k) * (255 - c) / 255`; likewise g from m, b from y."""
    px = cmyk.astype(np.uint32)
    cmy, k = px[..., :3], px[..., 3:]
    rgb = k * cmy // 255 if adobe else (255 - k) * (255 - cmy) // 255
    return rgb.astype(np.uint8)


def _libjpeg_errors(data: bytes) -> None:
    """Raise where libjpeg stops with an error (not a warning) anywhere in the file, as TensorFlow's decoder does.

    simplejpeg cannot say so once a warning came first (TurboJPEG then reports every later error as a
    warning), so Pillow's libjpeg decoder, which stops on errors and ignores warnings, reads it through.
    """
    from PIL import Image

    with Image.open(io.BytesIO(data), formats=["JPEG"]) as image:  # a file cut short: checked_jpeg_size, jpeg_components
        image.load()


def jpeg_pixels(data: bytes, channels: int = 0) -> np.ndarray:
    """The pixels `tf.io.decode_jpeg(data, channels)` gives, `channels` 0 (the file's own: gray stays gray)
    or 3; CMYK and YCCK always come out as RGB, through `cmyk_to_rgb`.

    The checks TensorFlow's decoder makes first (header, size, a file cut short) come from
    `checked_jpeg_size`; libjpeg's warnings about damaged scan data are not errors there, nor here.
    The decoder is chosen by what reproduces the file: simplejpeg (one call, SIMD throughout) for the
    samplings TurboJPEG's interface takes, `jpeg_any_sampling` for every other sampling libjpeg takes.
    """
    checked_jpeg_size(data)
    _libjpeg_errors(data)
    simplejpeg = _simplejpeg()
    components = jpeg_components(data)
    adobe = saw_adobe_marker(data)
    view = libjpeg_view(data, components)
    colorspace = "CMYK" if components == 4 else "GRAY" if components == 1 and channels == 0 else "RGB"
    try:
        pixels = simplejpeg.decode_jpeg(view, colorspace=colorspace, fastdct=True, strict=False)
    except ValueError as e:
        if "subsampling level" not in str(e):
            raise
        # sampling factors TurboJPEG's interface does not take, though libjpeg's API (TensorFlow's) does
        pixels = jpeg_any_sampling.decode(data, rgb=channels == 3)
    # CMYK or YCCK (libjpeg decides by the Adobe marker) is converted as TensorFlow's decoder converts it
    return cmyk_to_rgb(pixels, adobe) if components == 4 else pixels


# --- PNG: TensorFlow's decode_png(channels=3) --------------------------------------------------------------

def png_size(data: bytes) -> tuple[int, int]:
    """(height, width) from the IHDR chunk, which must come first."""
    if not data.startswith(PNG_SIGNATURE):
        raise SizeUnreadable("not a PNG")
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise SizeUnreadable("no IHDR chunk at the start of the PNG")
    width, height = struct.unpack(">II", data[16:24])
    if zlib.crc32(data[12:29]) != struct.unpack(">I", data[29:33])[0]:
        raise Undecodable("the PNG's IHDR chunk fails its CRC")
    return height, width


# Channels libpng puts out for `channels=0`, by colour type: gray 1, RGB 3, palette 3 (4 with a tRNS chunk),
# gray with alpha 2, RGBA 4 (as TensorFlow's decode_png reports them).
_NATIVE_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}


def png_channels(data: bytes) -> int:
    """The channel count `decode_png(channels=0)` gives this PNG."""
    color_type = data[25] if len(data) > 25 else 2
    channels = _NATIVE_CHANNELS.get(color_type, 3)
    if color_type == 3 and _has_chunk(libpng_view(data), b"tRNS", before=b"IDAT"):
        channels = 4
    return channels


def _chunks(data: bytes) -> Iterator[tuple[bytes, int, int]]:
    """(type, where its data starts, its length) of each chunk, up to the data's end."""
    pos = len(PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length = struct.unpack(">I", data[pos:pos + 4])[0]
        yield data[pos + 4:pos + 8], pos + 8, length
        pos += 12 + length


def _has_chunk(data: bytes, kind: bytes, before: bytes) -> bool:
    for found, _, _ in _chunks(data):
        if found in (kind, before):
            return found == kind
    return False


_CRITICAL = (b"IHDR", b"PLTE", b"IDAT", b"IEND")


def libpng_view(data: bytes) -> bytes:
    """The PNG as libpng reads it, rebuilt from the chunks it uses (IHDR, PLTE, tRNS, the IDATs, IEND), so that
    Pillow decodes what TensorFlow decodes. As libpng: a critical chunk that fails its CRC, an unknown
    critical chunk, an invalid chunk name, a palette image without its palette, IDATs not in one run, or
    data that ends before IEND is an error; an ancillary chunk that fails its CRC is dropped."""
    kept: list[bytes] = []
    seen: list[bytes] = []
    for kind, start, length in _chunks(data):
        if not kind.isalpha() or not kind.isascii():
            raise Undecodable(f"an invalid PNG chunk name {kind!r}")
        if start + length + 4 > len(data):
            raise Undecodable(f"the PNG is cut short inside its {kind.decode()} chunk")
        crc_ok = zlib.crc32(data[start - 4:start + length]) == struct.unpack(">I", data[start + length:start + length + 4])[0]
        if kind[0] < 0x61:  # uppercase first letter: critical
            if kind not in _CRITICAL:
                raise Undecodable(f"an unknown critical PNG chunk {kind.decode()}")
            if not crc_ok:
                raise Undecodable(f"the PNG's {kind.decode()} chunk fails its CRC")
        elif not crc_ok or kind != b"tRNS":
            continue
        if kind == b"IDAT" and b"IDAT" in seen and seen[-1] != b"IDAT":
            raise Undecodable("the PNG's image data (IDAT) is not in one run of chunks")
        if kind == b"IDAT" and data[25] == 3 and b"PLTE" not in seen:
            raise Undecodable("a palette PNG without its palette (PLTE)")
        seen.append(kind)
        kept.append(data[start - 8:start + length + 4])
        if kind == b"IEND":
            return PNG_SIGNATURE + b"".join(kept)
    raise Undecodable("the PNG ends before its end chunk (IEND)")


def png_pixels(data: bytes, channels: int = 3) -> np.ndarray:
    """The pixels `tf.io.decode_png(data, channels)` gives: libpng's expansion to 8-bit RGB for `channels` 3;
    for 0, the same pixels when the PNG's own channel count is 3 (any other count is refused: the classic
    cannot encode it as RGB)."""
    from PIL import Image

    height, width = png_size(data)
    data = libpng_view(data)
    if not height or not width or height * width * 4 >= MAX_DECODED_BYTES:
        raise Undecodable(f"a PNG of {width}x{height} pixels; at most {MAX_DECODED_BYTES:,} bytes decoded are allowed")
    if channels == 0 and (native := png_channels(data)) != 3:
        raise Undecodable(f"a PNG of {native} channel(s), which the classic's encode_jpeg(format='rgb') refuses")
    with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
        image.load()
        if image.mode in ("I", "I;16", "I;16B", "I;16L"):  # 16-bit gray: libpng keeps the high byte
            gray = (np.asarray(image).astype(np.uint32) >> 8).astype(np.uint8)
            return np.repeat(gray[..., None], 3, axis=-1)
        if image.mode in ("P", "PA"):
            image = image.convert("RGBA")  # the palette, looked up; transparency then dropped as libpng does
        if image.mode in ("LA", "La"):
            image = image.convert("L")
        return np.asarray(image.convert("RGB") if image.mode != "RGB" else image)


# --- A known answer: this machine's codecs give TensorFlow's bytes ----------------------------------------

_checked: dict[str, bool] = {}
_checked_lock = threading.Lock()


def check_codecs(folder: Path | None = None) -> bool:
    """Whether this machine's Pillow and simplejpeg reproduce TensorFlow's bytes on the known-answer files
    (`streamprep/data/fixups/`, written by tests/fixtures/make_fixup_answers.py); a warning if not: the
    fix-up records would then differ from the classic's (nothing else would). Checked once a process."""
    where = folder or Path(str(resources.files("streamprep") / "data" / "fixups"))
    with _checked_lock:
        if str(where) not in _checked:
            _checked[str(where)] = _known_answers_match(where)
        return _checked[str(where)]


def _known_answers_match(folder: Path) -> bool:
    for kind, name in (("cmyk", "cmyk"), ("cmyk", "ycck"), ("png", "png")):
        given = (folder / f"{name}.in").read_bytes()
        if apply(kind, given, f"known answer {name}") != (folder / f"{name}.tf.jpg").read_bytes():
            log.warning("this machine's Pillow or simplejpeg re-encodes the classic's %s fix-up files differently "
                        "from TensorFlow: those records will not be byte-identical to the classic's; install "
                        "the PyPI wheels of pillow and simplejpeg", KINDS[kind])
            return False
    return True
