"""Image pixel size from the JPEG frame (SOF) header, and the checks TensorFlow's decoder makes, without decoding."""

from __future__ import annotations

from typing import Iterator, NamedTuple

# Start-of-frame markers: baseline, extended, progressive, lossless, arithmetic variants.
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_STANDALONE = frozenset(range(0xD0, 0xD8)) | {0x01}
_SKIPPED = frozenset(range(0xE0, 0xF0)) | {0xFE, 0xDC}  # APPn, COM, DNL: segments libjpeg skips over
MAX_DIMENSION = 65500  # libjpeg's JPEG_MAX_DIMENSION: a larger frame is refused by jpeg_read_header
MAX_DECODED_BYTES = 1 << 29  # tf.io.decode_jpeg refuses an image of height x width x components bytes or more


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
    """(height, width) from the first SOF segment, as libjpeg reads it (no other check: `checked_jpeg_size`)."""
    if not is_jpeg(data):
        raise SizeUnreadable(f"not a JPEG: {describe(data)}")
    for marker, pos, length in _markers(data):
        if marker == 0xDA:  # the image data before any frame header
            break
        if marker in _SOF:
            return _frame_size(data[pos + 2:pos + length])
    raise SizeUnreadable("no frame header (SOF) before the image data")


def jpeg_components(data: bytes) -> int:
    """The frame's component count: 1 (gray), 3 (YCbCr or RGB) or 4 (CMYK or YCCK), as libjpeg reads it."""
    return _headers(data)[3]


def checked_jpeg_size(data: bytes) -> tuple[int, int]:
    """(height, width), once the JPEG passes the checks the classic's decoder makes before and after decoding.

    `tf.io.decode_jpeg` (libjpeg-turbo, no recovery of truncated files) fails where libjpeg refuses
    the markers before the first scan (`_headers`: the process, precision, components, sampling,
    tables), on a frame over 65500 pixels a side, on a decoded size of 2**29 bytes or more (3 bytes
    a pixel), and on data that ends before its end-of-image marker (a file cut short): the classic
    procedure stops on each. Damaged scan data is only a warning there, so it is not checked; what
    only a later scan shows (a progressive file whose frame header says sequential) is left to the
    full decode of `--check-decode`. Tested against TensorFlow on every single-byte change of the
    headers of five kinds of JPEG. Costs a walk over the markers, a lookup of their structure and a
    search for the end marker from the file's end: about 4 us an image more than reading the size.
    """
    height, width, scan, components = _headers(data)
    if height > MAX_DIMENSION or width > MAX_DIMENSION:
        raise Undecodable(f"a frame of {width}x{height} pixels, over libjpeg's {MAX_DIMENSION} a side")
    # TensorFlow sizes libjpeg's output buffer by the components libjpeg puts out: 1 for gray, 4 for CMYK
    # (converted to RGB afterwards), 3 otherwise.
    decoded = height * width * components
    if decoded >= MAX_DECODED_BYTES:
        raise Undecodable(f"a frame of {width}x{height} pixels, {decoded:,} bytes decoded, and TensorFlow's "
                          f"decoder refuses {MAX_DECODED_BYTES:,} or more")
    # In scan data every FF is followed by 00 or a restart marker, so FF D9 after the scan header is the EOI.
    if data.rfind(b"\xff\xd9", scan) < 0:
        raise Undecodable("no end-of-image marker after the image data: the file is cut short")
    return height, width


SUPPORTED_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC9, 0xCA})  # sequential and progressive, Huffman or arithmetic
# Markers with a segment libjpeg reads before the first scan (SOFn, DHT, DAC, DQT, DRI, DNL, APPn, COM);
# any other code there ends the decode ("Unsupported marker type").
KNOWN_MARKERS = frozenset(range(0xC0, 0xD0)) | {0xDA, 0xDB, 0xDC, 0xDD} | frozenset(range(0xE0, 0xF0)) | {0xFE}
PROGRESSIVE_SOF = frozenset({0xC2, 0xCA})
MAX_BLOCKS_IN_MCU = 10  # libjpeg's D_MAX_BLOCKS_IN_MCU: an interleaved scan's MCU holds at most this many blocks


_CACHE_LIMIT = 4096  # header structures remembered: the images of one camera or encoder share theirs
_valid: set[tuple[tuple[int, bytes], ...]] = set()


class _Layout(NamedTuple):
    """The bytes of a JPEG that passed `_headers`, up to the end of its first scan's header, but for the frame's
    size: another file holding the same bytes around its own size has the same markers, the same structure and the
    same answer, found by two comparisons instead of a walk over its markers."""

    prefix: bytes  # the bytes before the frame's height
    suffix: bytes  # the bytes after its width, to the end of the first scan's header
    size_at: int  # where the height is
    scan_end: int
    components: int


_LAYOUTS = 8  # layouts remembered, the latest first (the images of one encoder at one quality share one)
_LAYOUT_BYTES = 8192  # a header longer than this (a large ICC profile or EXIF thumbnail) is too rare to keep
_layouts: tuple[_Layout, ...] = ()


def _headers(data: bytes) -> tuple[int, int, int, int]:
    """(height, width, where the first scan's header ends), once the markers before the first scan pass the
    checks libjpeg makes there, which end `tf.io.decode_jpeg` with an error: the frame's process,
    precision, components, sampling factors and quantisation tables; the first scan's components, tables
    and (progressive) parameters; the DQT, DHT, DRI and DAC segments' own fields.

    A structure that passed once (its segments, the frame size left out) passes again without the
    checks: the many images of one encoder cost a walk over their markers and one lookup; and a file whose
    header bytes are a remembered one's but for the size (`_Layout`), not even the walk.
    """
    for layout in _layouts:
        at = layout.size_at
        if data.startswith(layout.prefix) and data.startswith(layout.suffix, at + 4):
            height, width = (data[at] << 8) | data[at + 1], (data[at + 2] << 8) | data[at + 3]
            if height and width:  # else the walk says why not
                return height, width, layout.scan_end, layout.components
            break
    if not is_jpeg(data):
        raise SizeUnreadable(f"not a JPEG: {describe(data)}")
    segments, size, scan_end, size_at = _segments(data)
    key = tuple(segments)
    if scan_end < 0 or key not in _valid:
        _check_segments(segments)
        if len(_valid) >= _CACHE_LIMIT:
            _valid.clear()
        _valid.add(key)
    components = next(body[1] for marker, body in segments if marker in _SOF)
    if size_at > 0 and 0 <= scan_end <= _LAYOUT_BYTES:
        _remember(_Layout(data[:size_at], data[size_at + 4:scan_end], size_at, scan_end, components))
    return size[0], size[1], scan_end, components


def _remember(layout: _Layout) -> None:
    """Keep a layout first, the oldest dropped (a new tuple: threads reading the old one are not disturbed)."""
    global _layouts
    _layouts = (layout, *_layouts[:_LAYOUTS - 1])


def _segments(data: bytes) -> tuple[list[tuple[int, bytes]], tuple[int, int], int, int]:
    """The segments libjpeg interprets before the first scan, in order (a frame header's without its size),
    the frame's size, where the first scan's header ends (-1 if the data ends before it) and where the frame's
    size is (its height's first byte)."""
    segments: list[tuple[int, bytes]] = []
    size, size_at = (0, 0), -1
    for marker, pos, length in _markers(data):
        if pos + length > len(data):
            break  # cut short inside a segment
        if marker not in KNOWN_MARKERS or marker == 0xC8:
            raise Undecodable(f"a marker {marker:#04x} libjpeg does not take, before the image data")
        if marker >= 0xE0 or marker == 0xFE:  # APPn and COM are skipped by libjpeg
            continue
        body = data[pos + 2:pos + length]
        if marker in _SOF and size == (0, 0):
            size, size_at = _frame_size(body), pos + 3
            body = body[:1] + body[5:]  # the structure, without the size (its component count stays)
        segments.append((marker, body))
        if marker == 0xDA:
            return segments, size, pos + length, size_at
    return segments, size, -1, size_at


def _frame_size(body: bytes) -> tuple[int, int]:
    if len(body) < 5:
        raise SizeUnreadable("a frame header cut short")
    height, width = int.from_bytes(body[1:3], "big"), int.from_bytes(body[3:5], "big")
    if not height or not width:
        raise SizeUnreadable(f"frame header gives {width}x{height}")
    return height, width


def _check_segments(segments: list[tuple[int, bytes]]) -> None:
    """libjpeg's checks on the segments before the first scan (frame header bodies without their size)."""
    frame: dict[int, tuple[int, int, int]] = {}  # component id -> (h, v, quantisation table)
    tables: set[int] = set()
    huffman: dict[tuple[int, int], tuple[bytes, bytes]] = {}  # (class, number) -> (16 counts, symbols)
    sof = None
    for marker, body in segments:
        if marker == 0xDA:
            if sof is None:
                break
            _first_scan(sof, body, frame, tables, huffman)
            return
        if marker == 0xC4:
            huffman.update(_huffman_tables(body))
        elif marker == 0xDB:
            tables |= _quantisation_tables(body)
        elif marker in _SOF:
            if sof is not None:
                raise Undecodable("a second frame header (SOF), which libjpeg refuses")
            sof = marker
            _frame_header(marker, body, frame)
        elif marker == 0xDD and len(body) != 2:
            raise Undecodable(f"a restart interval segment of length {len(body) + 2}, not 4")
        elif marker == 0xCC:
            _conditioning(body)
    if sof is not None:
        raise Undecodable("no image data (SOS) after the frame header: the file is cut short")
    raise SizeUnreadable("no frame header (SOF) before the image data")


def _frame_header(marker: int, body: bytes, frame: dict[int, tuple[int, int, int]]) -> None:
    """A frame header libjpeg accepts (its body without the height and width); its components into `frame`."""
    if marker not in SUPPORTED_SOF:
        raise Undecodable(f"the JPEG process of frame type {marker:#x} (lossless, hierarchical or differential), "
                          "which libjpeg does not decode")
    if body[0] != 8:
        raise Undecodable(f"{body[0]}-bit samples; the classic's decoder takes 8-bit JPEGs only")
    count = body[1] if len(body) > 1 else 0
    if len(body) != 2 + 3 * count:
        raise Undecodable(f"a frame header of {len(body) + 6} bytes for {count} components")
    if count not in (1, 3, 4):  # gray, YCbCr/RGB, CMYK/YCCK: what decoding to 3 channels can convert from
        raise Undecodable(f"{count} colour components, which decoding to RGB cannot convert")
    for k in range(count):
        ident, sampling, table = body[2 + 3 * k:5 + 3 * k]
        h, v = sampling >> 4, sampling & 15
        if not (1 <= h <= 4 and 1 <= v <= 4):
            raise Undecodable(f"sampling factors {h}x{v} of component {ident}, outside libjpeg's 1-4")
        frame[ident] = (h, v, table)
    max_h, max_v = max(c[0] for c in frame.values()), max(c[1] for c in frame.values())
    if any(max_h % h or max_v % v for h, v, _ in frame.values()):  # jdsample: "Fractional sampling not implemented"
        raise Undecodable("sampling factors whose ratios are not whole numbers, which libjpeg does not upsample")


def _conditioning(body: bytes) -> None:
    """A DAC segment: pairs of (table, value) with libjpeg's limits (16 DC and 16 AC tables, L <= U)."""
    if len(body) % 2:
        raise Undecodable(f"an arithmetic conditioning segment of odd length {len(body) + 2}")
    for k in range(0, len(body), 2):
        index, value = body[k], body[k + 1]
        if index >= 32 or (index < 16 and (value & 15) > (value >> 4)):
            raise Undecodable(f"an arithmetic conditioning entry ({index}, {value}) libjpeg refuses")


def _quantisation_tables(body: bytes) -> set[int]:
    """The tables a DQT segment defines; its length must hold them exactly, as libjpeg requires."""
    found, pos = set(), 0
    while pos < len(body):
        precision, ident = body[pos] >> 4, body[pos] & 15
        if ident > 3 or precision > 1:
            raise Undecodable(f"a quantisation table numbered {ident} of precision {precision}")
        found.add(ident)
        pos += 1 + 64 * (2 if precision else 1)
    if pos != len(body):
        raise Undecodable("a quantisation table segment whose length does not match its tables")
    return found


def _huffman_tables(body: bytes) -> dict[tuple[int, int], tuple[bytes, bytes]]:
    """A DHT segment's tables: classes, numbers and code counts libjpeg accepts, filling its length exactly."""
    pos, found = 0, {}
    while pos < len(body):
        if pos + 17 > len(body):
            raise Undecodable("a Huffman table segment whose length does not match its tables")
        kind, ident = body[pos] >> 4, body[pos] & 15
        count = sum(body[pos + 1:pos + 17])
        if kind > 1 or ident > 3 or count > 256 or pos + 17 + count > len(body):
            raise Undecodable(f"a Huffman table (class {kind}, number {ident}, {count} codes) libjpeg refuses")
        found[(kind, ident)] = (body[pos + 1:pos + 17], body[pos + 17:pos + 17 + count])
        pos += 17 + count
    return found


def _check_huffman(kind: int, counts: bytes, symbols: bytes) -> None:
    """What libjpeg checks when a scan starts using a table (jpeg_make_d_derived_tbl): the codes fit their
    lengths, and a DC table's symbols are sizes of at most 15 bits."""
    code, remaining = 0, sum(counts)
    for length in range(1, 17):
        if not remaining:
            break
        code += counts[length - 1]
        remaining -= counts[length - 1]
        if code >= 1 << length:
            raise Undecodable(f"a Huffman table with more codes of {length} bits than there are")
        code <<= 1
    if kind == 0 and any(symbol > 15 for symbol in symbols):
        raise Undecodable("a DC Huffman table with a symbol over 15")


def _first_scan(sof: int, body: bytes, frame: dict[int, tuple[int, int, int]], tables: set[int],
                huffman: dict[tuple[int, int], tuple[bytes, bytes]]) -> None:
    """The first scan header, as libjpeg checks it when the scan starts."""
    count = body[0] if body else 0
    if not 1 <= count <= 4 or len(body) != 4 + 2 * count:
        raise Undecodable(f"a scan header for {count} components of {len(body) + 2} bytes")
    idents = [body[1 + 2 * k] for k in range(count)]
    _scan_components(idents, frame, tables)
    ss, se, ah, al = body[1 + 2 * count], body[2 + 2 * count], body[3 + 2 * count] >> 4, body[3 + 2 * count] & 15
    if sof in (0xC0, 0xC1, 0xC2):  # Huffman coded: the tables this scan uses
        for k in range(count):
            _scan_huffman(sof, body[2 + 2 * k], ss, se, huffman)
    if sof in PROGRESSIVE_SOF:  # jdphuff's checks; a sequential scan's odd parameters are only warned about
        _progression(ss, se, ah, al, count)


def _scan_components(idents: list[int], frame: dict[int, tuple[int, int, int]], tables: set[int]) -> None:
    """The scan's components: declared by the frame, once each, their quantisation tables defined, and an
    interleaved scan's MCU within libjpeg's limit."""
    if any(i not in frame for i in idents) or len(set(idents)) != len(idents):
        raise Undecodable("a scan of components the frame header does not declare")
    missing = sorted({frame[i][2] for i in idents} - tables)
    if missing:
        raise Undecodable(f"quantisation table {missing[0]} used but never defined")
    if len(idents) > 1 and sum(frame[i][0] * frame[i][1] for i in idents) > MAX_BLOCKS_IN_MCU:
        raise Undecodable("sampling factors too large for an interleaved scan")


def _scan_huffman(sof: int, selectors: int, ss: int, se: int,
                  huffman: dict[tuple[int, int], tuple[bytes, bytes]]) -> None:
    """The Huffman tables one component of the scan uses (DC if Ss is 0, AC if Se is over 0): defined and sound."""
    used = ([(0, selectors >> 4)] if ss == 0 else []) + ([(1, selectors & 15)] if se > 0 else [])
    for kind, ident in used:
        if (kind, ident) in huffman:
            _check_huffman(kind, *huffman[(kind, ident)])
        elif sof == 0xC2 or ident > 1:  # libjpeg-turbo supplies the standard tables 0 and 1, sequential only
            raise Undecodable(f"Huffman table {ident} ({'DC' if kind == 0 else 'AC'}) used but never defined")


def _progression(ss: int, se: int, ah: int, al: int, count: int) -> None:
    """A progressive scan's parameters, as jdphuff checks them."""
    bad = (se < ss or se > 63 or (ss == 0 and se != 0) or (ss > 0 and count != 1)
           or (ah != 0 and al != ah - 1) or al > 13)
    if bad:
        raise Undecodable(f"invalid progressive scan parameters Ss={ss} Se={se} Ah={ah} Al={al}")


def _markers(data: bytes) -> Iterator[tuple[int, int, int]]:
    """(marker, where its segment's length field starts, the segment's length) of each marker segment, as
    libjpeg reads them: stray bytes and FF fill skipped, stuffed bytes and standalone markers passed over. A
    length field that does not fit is the end; so is EOI."""
    pos, end = 2, len(data)
    while pos < end:
        if data[pos] != 0xFF:
            pos = data.find(b"\xff", pos)  # libjpeg skips stray bytes before a marker
            if pos < 0:
                return
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
        length = (data[pos] << 8) | data[pos + 1]
        if length < 2:
            if marker in _SKIPPED:  # libjpeg skips nothing more and reads on after the length field
                pos += 2
                continue
            raise SizeUnreadable(f"segment length {length} at byte {pos}")
        yield marker, pos, length
        pos += length
