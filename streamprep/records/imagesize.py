"""Image pixel size from the JPEG frame (SOF) header, and the checks TensorFlow's decoder makes, without decoding."""

from __future__ import annotations

from typing import Iterator

# Start-of-frame markers: baseline, extended, progressive, lossless, arithmetic variants.
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_STANDALONE = frozenset(range(0xD0, 0xD8)) | {0x01}
MAX_DIMENSION = 65500  # libjpeg's JPEG_MAX_DIMENSION: a larger frame is refused by jpeg_read_header
MAX_DECODED_BYTES = 1 << 29  # tf.io.decode_jpeg refuses an image of height x width x 3 bytes or more


class SizeUnreadable(ValueError):
    """The header holds no usable size."""


class Undecodable(ValueError):
    """The header is readable, but the classic's decoder would refuse the image (too large, cut short)."""


def is_jpeg(data: bytes) -> bool:
    return data[:3] == b"\xff\xd8\xff"


_MAGIC = {b"\x89PNG": "a PNG", b"GIF8": "a GIF", b"BM": "a BMP", b"RIFF": "a RIFF (WebP?)", b"II*\0": "a TIFF",
          b"MM\0*": "a TIFF"}


def describe(data: bytes) -> str:
    """What a non-JPEG file looks like, for error messages."""
    if not data:
        return "empty"
    for magic, what in _MAGIC.items():
        if data.startswith(magic):
            return what
    return "not an image format streamprep knows"


def jpeg_size(data: bytes) -> tuple[int, int]:
    """(height, width) from the first SOF segment, as libjpeg reads it."""
    height, width, _ = _frame(data, to_scan=False)
    return height, width


def checked_jpeg_size(data: bytes) -> tuple[int, int]:
    """(height, width), once the JPEG passes the checks the classic's decoder makes before and after decoding.

    `tf.io.decode_jpeg` (libjpeg-turbo, no recovery of truncated files) fails on a frame over
    65500 pixels a side, on a decoded size of 2**29 bytes or more (3 bytes a pixel), and on data
    that ends before its end-of-image marker (a file cut short): the classic procedure stops on
    each. Damaged scan data is only a warning there, so it is not checked here. Costs one pass over
    the headers and a search for the marker from the file's end (microseconds an image).
    """
    height, width, scan = _frame(data, to_scan=True)
    if height > MAX_DIMENSION or width > MAX_DIMENSION:
        raise Undecodable(f"a frame of {width}x{height} pixels, over libjpeg's {MAX_DIMENSION} a side")
    if height * width * 3 >= MAX_DECODED_BYTES:
        raise Undecodable(f"a frame of {width}x{height} pixels, {height * width * 3:,} bytes decoded, and TensorFlow's "
                          f"decoder refuses {MAX_DECODED_BYTES:,} or more")
    # In scan data every FF is followed by 00 or a restart marker, so FF D9 after the scan header is the EOI.
    if data.rfind(b"\xff\xd9", scan) < 0:
        raise Undecodable("no end-of-image marker after the image data: the file is cut short")
    return height, width


def _markers(data: bytes) -> Iterator[tuple[int, int, int]]:
    """(marker, where its segment's length field starts, the segment's length) of each marker segment, as
    libjpeg reads them: stray bytes and FF fill skipped, stuffed bytes and standalone markers passed over. A
    length field that does not fit is the end; so is EOI."""
    pos, end = 2, len(data)
    while pos < end:
        while pos < end and data[pos] != 0xFF:  # libjpeg skips stray bytes before a marker
            pos += 1
        while pos < end and data[pos] == 0xFF:  # and any 0xFF fill bytes
            pos += 1
        if pos >= end:
            return
        marker = data[pos]
        pos += 1
        if marker == 0x00 or marker in _STANDALONE:  # FF 00 is a stuffed byte that libjpeg discards
            continue
        if marker == 0xD9 or pos + 2 > end:
            return
        length = int.from_bytes(data[pos:pos + 2], "big")
        if length < 2:
            raise SizeUnreadable(f"segment length {length} at byte {pos}")
        yield marker, pos, length
        pos += length


def _frame(data: bytes, to_scan: bool) -> tuple[int, int, int]:
    """(height, width) of the first SOF and, if `to_scan`, where the first scan's header ends."""
    if not is_jpeg(data):
        raise SizeUnreadable(f"not a JPEG: {describe(data)}")
    found: tuple[int, int] | None = None
    for marker, pos, length in _markers(data):
        if marker == 0xDA:  # SOS: the first scan, which must come after the frame header
            if found is None:
                break
            return found[0], found[1], pos + length
        if marker in _SOF and found is None:
            if pos + 7 > len(data):
                break
            height = int.from_bytes(data[pos + 3:pos + 5], "big")
            width = int.from_bytes(data[pos + 5:pos + 7], "big")
            if not height or not width:
                raise SizeUnreadable(f"frame header gives {width}x{height}")
            if not to_scan:
                return height, width, -1
            found = (height, width)
    if found:
        raise Undecodable("no image data (SOS) after the frame header: the file is cut short")
    raise SizeUnreadable("no frame header (SOF) before the image data")
