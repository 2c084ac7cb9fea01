"""Image pixel size from the JPEG frame (SOF) header, without decoding."""

from __future__ import annotations

# Start-of-frame markers: baseline, extended, progressive, lossless, arithmetic variants.
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_STANDALONE = frozenset(range(0xD0, 0xD8)) | {0x01}


class SizeUnreadable(ValueError):
    """The header holds no usable size."""


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
    if not is_jpeg(data):
        raise SizeUnreadable(f"not a JPEG: {describe(data)}")
    pos, end = 2, len(data)
    while pos < end:
        # libjpeg skips stray bytes before a marker and any 0xFF fill bytes.
        while pos < end and data[pos] != 0xFF:
            pos += 1
        while pos < end and data[pos] == 0xFF:
            pos += 1
        if pos >= end:
            break
        marker = data[pos]
        pos += 1
        if marker == 0x00 or marker in _STANDALONE:  # FF 00 is a stuffed byte that libjpeg discards
            continue
        if marker in (0xD9, 0xDA):  # EOI or SOS before any frame header
            break
        if pos + 2 > end:
            break
        length = int.from_bytes(data[pos:pos + 2], "big")
        if length < 2:
            raise SizeUnreadable(f"segment length {length} at byte {pos}")
        if marker in _SOF:
            if pos + 7 > end:
                break
            height = int.from_bytes(data[pos + 3:pos + 5], "big")
            width = int.from_bytes(data[pos + 5:pos + 7], "big")
            if not height or not width:
                raise SizeUnreadable(f"frame header gives {width}x{height}")
            return height, width
        pos += length
    raise SizeUnreadable("no frame header (SOF) before the image data")
