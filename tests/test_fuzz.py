"""Property-based fuzzing of the readers: damaged tar headers, gzip streams, JPEG headers and VOC XML.

Every input starts as a valid seed built from a small dict of name -> bytes (a real tar, a real
gzip, a real JPEG, a real VOC annotation) and is damaged by hypothesis: header fields overwritten
(with the checksum recomputed most of the time, so the damage gets past the checksum check),
bytes flipped, inserted, deleted, the input cut short. Whatever the input, a reader returns or
raises one of streamprep's own errors: never another exception, never a hang (a wall-clock alarm
per example), never a large allocation (tracemalloc's peak per example), never a network fetch.
"""

from __future__ import annotations

import gzip
import math
import signal
import tarfile
import tracemalloc
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fixtures.builders import jpeg, tar_bytes, voc_xml
from servers import connection_recorder
from streamprep.archives import retry
from streamprep.archives.storage import Source
from streamprep.archives.walk import gzip_members, inner_members, members
from streamprep.index.boxes import parse_boxes
from streamprep.errors import AnnotationError, ArchiveError, ImageError, StreamprepError
from streamprep.records.imagesize import SizeUnreadable, describe, is_jpeg, jpeg_size
from streamprep.index.boxwalk import index_boxes
from streamprep.index.images import Ignored
from streamprep.records.image import image_size
from streamprep.archives.tarscan import iter_members

BLOCK = 512
SECONDS = 3.0            # per example; every reader handles these small inputs in milliseconds
MEMORY = 8 << 20         # peak bytes allocated per example; the inputs are a few KB
FUZZ = settings(derandomize=True, database=None, deadline=None, max_examples=600)


class Hang(Exception):
    """A reader ran past the wall-clock limit (not an OSError or TimeoutError: never retried)."""


def _alarm(signum, frame):
    raise Hang(f"no result after {SECONDS} s: the reader loops")


def guarded(call, *args):
    """`call(*args)` under the alarm and tracemalloc: its result, or the StreamprepError it raised.

    Any other exception propagates (hypothesis then shrinks the input); so does a hang, and a peak
    allocation over MEMORY fails the example.
    """
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, SECONDS)
    tracemalloc.start()
    try:
        try:
            result = call(*args)
        except StreamprepError as e:
            result = e
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert peak < MEMORY, f"{getattr(call, '__name__', call)} allocated {peak} bytes at its peak"
    return result


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """A folder for the archives written per example (each example overwrites its file)."""
    return tmp_path_factory.mktemp("fuzz")


# --- tar seeds and their damage -------------------------------------------------------------------

LONG = "n01440764/" + "x" * 120 + ".JPEG"
TAR_SEEDS = [
    tar_bytes({"a.JPEG": b"a" * 700, "dir/": b"", "dir/b.JPEG": b"bb", "empty.JPEG": b""},
              format=tarfile.USTAR_FORMAT),
    tar_bytes({LONG: b"L" * 600, "n/": b"", "n/x.JPEG": b"x" * 513}, format=tarfile.GNU_FORMAT),
    tar_bytes({LONG: b"P" * 10, "caf\u00e9.JPEG": b"c", "z.JPEG": b"z" * 1024}, format=tarfile.PAX_FORMAT),
]
XML_SEED = voc_xml("n01440764_1", 500, 375, [(10, 20, 300, 200), (1, 2, 3, 4)])
BBOX_SEED = tar_bytes({"n01440764/": b"", "n01440764/n01440764_1.xml": XML_SEED,
                       "n01440764/n01440764_2.xml": voc_xml("n01440764_2", 20, 10, [])})


def header_offsets(data: bytes) -> list[int]:
    """Where a valid tar's header blocks start, extended (PAX, GNU long name) headers included."""
    found, pos = [], 0
    while pos + BLOCK <= len(data) and data[pos:pos + BLOCK] != bytes(BLOCK):
        found.append(pos)
        pos += BLOCK + -(-tarfile.nti(data[pos + 124:pos + 136]) // BLOCK) * BLOCK
    return found


def fix_checksum(data: bytearray, at: int) -> None:
    """Store the right checksum in the header block at `at`, so that only the other damage counts."""
    if at + BLOCK <= len(data):
        data[at + 148:at + 156] = b" " * 8
        data[at + 148:at + 156] = b"%06o\0 " % sum(data[at:at + BLOCK])


FIELDS = {"name": (0, 100), "mode": (100, 108), "uid": (108, 116), "size": (124, 136), "mtime": (136, 148),
          "checksum": (148, 156), "typeflag": (156, 157), "linkname": (157, 257), "magic": (257, 263),
          "version": (263, 265), "prefix": (345, 500)}
SIZES = st.sampled_from([0, 1, 100, 511, 512, 513, 1024, 1536, 4096, 1 << 20, 40 << 20, 8 << 30, 8 ** 11 - 1])
NAMES = st.sampled_from([b"", b"./", b"a/", b"../x.JPEG", b"/etc/passwd", b"n1/n1_1.xml", b"\xff\xfe.xml",
                         b"x" * 100, b"n1.tar", b"a.JPEG"]) | st.binary(max_size=100)
TYPEFLAGS = st.sampled_from([bytes([t]) for t in b"0123456789LKxgSVADM\0 "]) | st.binary(min_size=1, max_size=1)
MAGICS = st.sampled_from([b"ustar\0", b"ustar ", bytes(6), b"USTAR\0"]) | st.binary(min_size=6, max_size=6)
VERSIONS = st.sampled_from([b"00", b" \0"]) | st.binary(min_size=2, max_size=2)


def numeric(width: int) -> st.SearchStrategy[bytes]:
    """Values of a numeric header field: octal text (signed, spaced, too long), base-256, negative base-256, junk."""
    return st.one_of(
        (SIZES | st.integers(0, 8 ** (width - 1) - 1)).map(lambda n: b"%0*o\0" % (width - 1, n)),
        st.tuples(st.sampled_from([b"-", b"+", b" ", b"", b"0x"]), SIZES | st.integers(0, 10 ** 6))
        .map(lambda t: b"%s%o" % t),
        (SIZES | st.integers(0, 256 ** (width - 1) - 1)).map(lambda n: b"\x80" + n.to_bytes(width - 1, "big")),
        (SIZES.filter(bool) | st.integers(1, 1 << 40)).map(lambda n: ((1 << 8 * width) - n).to_bytes(width, "big")),
        # ^ negative base-256: -512 would send the walk back to the same header
        st.sampled_from([b" " * width, bytes(width), b"\xff" * width, b"\x80" + b"\xff" * (width - 1)]),
        st.binary(min_size=width, max_size=width),
    )


def field_value(field: str) -> st.SearchStrategy[bytes]:
    start, end = FIELDS[field]
    if field in ("name", "linkname", "prefix"):
        return NAMES
    return {"typeflag": TYPEFLAGS, "magic": MAGICS, "version": VERSIONS}.get(field, numeric(end - start))


MOSTLY = st.sampled_from([True, True, True, False])  # a plain integers(0, n) draw leans to 0


def fit(value: bytes, width: int) -> bytes:
    return value[:width].ljust(width, b"\0")


@st.composite
def damaged(draw, seed: bytes, hot: tuple[tuple[int, int], ...] = ()) -> bytes:
    """`seed` with 1-4 byte-level changes: overwrite or flip (often inside the `hot` ranges), cut, insert, delete."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["overwrite", "overwrite", "flip", "flip", "cut", "insert", "delete"]))
        if op == "cut" or not data:
            del data[draw(st.integers(0, len(data))):]
            continue
        if hot and draw(st.booleans()):
            lo, hi = draw(st.sampled_from(hot))
            at = draw(st.integers(min(lo, len(data) - 1), min(hi, len(data)) - 1))
        else:
            at = draw(st.integers(0, len(data) - 1))
        if op == "overwrite":
            value = draw(st.binary(min_size=1, max_size=8))
            data[at:at + len(value)] = value
        elif op == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16) | st.sampled_from([bytes(BLOCK), b"\xff" * 3]))
        else:
            del data[at:at + draw(st.integers(1, 1100))]
    return bytes(data)


@st.composite
def damaged_tars(draw, seeds: list[bytes] = TAR_SEEDS) -> bytes:
    """A seed tar with header fields overwritten, checksums recomputed (mostly), and sometimes byte damage."""
    seed = draw(st.sampled_from(seeds))
    headers = header_offsets(seed)
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.sampled_from(headers))
        field = draw(st.sampled_from(sorted(FIELDS)))
        start, end = FIELDS[field]
        data[at + start:at + end] = fit(draw(field_value(field)), end - start)
    if draw(MOSTLY):
        for at in headers:
            fix_checksum(data, at)
    if not draw(MOSTLY):
        data = bytearray(draw(damaged(bytes(data), tuple((h, h + BLOCK) for h in headers))))
    return bytes(data)


def header(name: bytes, typeflag: bytes, size_field: bytes) -> bytes:
    """A ustar header block built byte by byte, with the given 12-byte size field and a valid checksum."""
    h = bytearray(BLOCK)
    h[:len(name)] = name
    h[100:108], h[108:116], h[116:124] = b"0000644\0", b"0000000\0", b"0000000\0"
    h[124:136] = fit(size_field, 12)
    h[136:148] = b"11536560400\0"
    h[156:157] = typeflag
    h[257:265] = b"ustar\x0000"
    fix_checksum(h, 0)
    return bytes(h)


PAX_KEYS = st.sampled_from(["path", "linkpath", "size", "mtime", "comment", "GNU.sparse.size", "", "a=b"])
PAX_VALUES = st.one_of(st.sampled_from(["0", "1", "-1", "-512", "512", "8589934592", "1e3", "nan", "inf", "-inf",
                                        " 12 ", "0x10", "\u0661\u0662", "9" * 5000, "", "=", "\n", "a/../../b"]),
                       st.sampled_from(["nan", "inf", "-1", "-512"]), st.text(max_size=20))


@st.composite
def pax_record(draw) -> bytes:
    """One `LEN key=value\\n` record, its length right, off by a little, or not a number; sometimes a byte lost."""
    body = f" {draw(PAX_KEYS)}={draw(PAX_VALUES)}\n".encode("utf-8", "surrogatepass")
    right = len(body) + len(str(len(body)))
    right += len(str(right)) - len(str(len(body)))
    record = str(right).encode() + body
    if draw(MOSTLY):  # intact, so that the key and value are what gets tested
        return record
    if draw(st.booleans()):
        at = draw(st.integers(0, len(record) - 1))
        return record[:at] + record[at + 1:]
    length = draw(st.integers(-8, 8).map(lambda d: str(right + d))
                  | st.sampled_from(["", "x", "-5", "0", "99999999999", "1" * 5000, " 9"]))
    return length.encode() + body


@st.composite
def extended_header_tars(draw) -> bytes:
    """A PAX ('x', 'g') or GNU long-name ('L', 'K') header with damaged records or length, then a member."""
    kind = draw(st.sampled_from([b"x", b"g", b"L", b"K"]))
    if kind in (b"x", b"g"):
        payload = b"".join(draw(st.lists(pax_record(), min_size=1, max_size=3)))
    else:
        payload = draw(NAMES | st.binary(max_size=700))
    if draw(MOSTLY):  # the size right, so that the records are what gets tested
        size_field = b"%011o\0" % len(payload)
    else:
        size_field = draw((st.integers(0, len(payload) + 1100) | SIZES).map(lambda n: b"%011o\0" % n) | numeric(12))
    padded = payload + bytes(-len(payload) % BLOCK)
    follower = tar_bytes({"m.JPEG": b"m" * 700}, format=tarfile.USTAR_FORMAT)
    return header(b"././@Extended", kind, size_field) + padded + follower


TARS = st.one_of(damaged_tars(), extended_header_tars())


def check_members(found: list, data_size: int | None) -> None:
    """What a successful walk promises: forward, block-aligned, non-negative, inside the archive when sized."""
    offsets = [m.offset for m in found]
    assert offsets == sorted(set(offsets)), "members out of order or repeated: the walk went backwards"
    for m in found:
        assert m.offset % BLOCK == 0 and m.size >= 0 and math.isfinite(m.mtime), m
        assert data_size is None or m.offset + m.size <= data_size, m


# --- tar headers ----------------------------------------------------------------------------------

@FUZZ
@given(data=TARS, size_known=st.booleans())
def test_mutated_tar_headers_give_success_or_an_archive_error(data, size_known):
    size = len(data) if size_known else None
    result = guarded(lambda: list(iter_members(lambda o, n: data[o:o + n], "t.tar", size)))
    if isinstance(result, StreamprepError):
        assert isinstance(result, ArchiveError) and "t.tar" in str(result)
    else:
        check_members(result, size)


@FUZZ
@given(inner=TARS)
def test_mutated_inner_tar_in_a_file_gives_success_or_an_archive_error(scratch, inner):
    good = {"n2_1.JPEG": b"2" * 600}
    path = scratch / "train.tar"
    path.write_bytes(tar_bytes({"n1.tar": inner, "n2.tar": tar_bytes(good)}))
    source = Source(str(path))

    def walk():
        return [(outer, list(inner_members(source, outer))) for outer in members(source)]

    try:
        result = guarded(walk)
    finally:
        source.close()
    if isinstance(result, StreamprepError):
        assert isinstance(result, ArchiveError) and "train.tar!n1.tar" in str(result)
        return
    (n1, found), (n2, found2) = result
    check_members(found, None)
    assert all(n1.offset <= m.offset and m.offset + m.size <= n1.offset + n1.size for m in found)
    assert [m.name for m in found2] == list(good)


def with_size(size_field: bytes) -> bytes:
    """A one-member tar whose header claims `size_field` (checksum right) and an end of archive."""
    return header(b"a.JPEG", b"0", size_field) + b"a" * BLOCK + bytes(2 * BLOCK)


def pax_tar(records: bytes) -> bytes:
    """A PAX header holding `records` (at most a block), then a one-byte member."""
    pax = header(b"././@PaxHeader", b"x", b"%011o\0" % len(records)) + records.ljust(BLOCK, b"\0")
    return pax + with_size(b"%011o\0" % 1)


@pytest.mark.parametrize("data", [with_size(b"\xff" * 10 + b"\xfe\x00"), with_size(b"-1000\0"),
                                  with_size(b"\xff" * 12), pax_tar(b"13 size=-512\n")],
                         ids=["base256-minus-512", "octal-minus-512", "base256-minus-1", "pax-size-minus-512"])
def test_negative_member_size_is_an_archive_error_not_an_endless_walk(data):
    for size in (len(data), None):
        error = guarded(lambda: list(iter_members(lambda o, n: data[o:o + n], "neg.tar", size)))
        assert isinstance(error, ArchiveError) and "neg.tar (header at byte" in str(error)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_pax_mtime_that_is_not_a_finite_number_is_an_archive_error(value):
    data = pax_tar(b"%d mtime=%s\n" % (len(value) + 10, value.encode()))
    with pytest.raises(ArchiveError, match=r"mtime .* out of range"):
        list(iter_members(lambda o, n: data[o:o + n], "t.tar", len(data)))


@pytest.mark.parametrize("kind", [b"x", b"L"])
def test_extended_header_over_1_mib_is_refused_without_reading_it(kind):
    data = header(b"././@Extended", kind, b"%011o\0" % (2 << 20)) + with_size(b"%011o\0" % 1)
    reads = []

    def read_at(offset, length):
        reads.append(length)
        return data[offset:offset + length]

    with pytest.raises(ArchiveError, match="extended header of 2097152 bytes"):
        list(iter_members(read_at, "t.tar"))
    assert reads == [BLOCK]


# --- gzip streams ---------------------------------------------------------------------------------

def gzip_seeds() -> list[bytes]:
    tar = BBOX_SEED
    half = len(tar) // 2
    return [gzip.compress(tar, compresslevel=9, mtime=0),
            gzip.compress(tar, compresslevel=0, mtime=0),            # stored blocks: damage reaches the tar
            gzip.compress(tar[:half], mtime=0) + gzip.compress(tar[half:], mtime=0),  # two gzip members
            gzip.compress(tar, mtime=0) + bytes(8)]                   # trailing zeros, which gzip accepts


@st.composite
def damaged_gzips(draw) -> bytes:
    seed = draw(st.sampled_from(gzip_seeds()))
    return draw(damaged(seed, ((0, 10), (3, 4), (len(seed) - 8, len(seed)))))  # header, flags, CRC and length


GZIPS = st.one_of(damaged_gzips(), damaged_tars([BBOX_SEED]).map(lambda tar: gzip.compress(tar, mtime=0)))


@FUZZ
@given(blob=GZIPS)
def test_mutated_gzip_streams_give_success_or_an_archive_error(scratch, blob):
    path = scratch / "bbox.tar.gz"
    path.write_bytes(blob)
    source = Source(str(path))
    result = guarded(lambda: list(gzip_members(source)))
    if isinstance(result, StreamprepError):
        assert isinstance(result, ArchiveError) and "bbox.tar.gz" in str(result)
        return
    check_members([m for m, _, _ in result], None)
    assert all(len(data) == m.size for m, data, _ in result if m.is_file)
    positions = [position for _, _, position in result]
    assert positions == sorted(positions) and all(p <= len(blob) for p in positions)


def test_gzip_member_claiming_8_gib_is_refused_without_allocating_it(scratch):
    info = tarfile.TarInfo("n01440764/big.xml")
    info.size = 8 << 30
    path = scratch / "big.tar.gz"
    path.write_bytes(gzip.compress(info.tobuf(tarfile.PAX_FORMAT) + XML_SEED, mtime=0))
    error = guarded(lambda: list(gzip_members(Source(str(path)))))
    assert isinstance(error, ArchiveError)
    assert "big.tar.gz!n01440764/big.xml" in str(error) and str(8 << 30) in str(error)


def test_gzip_member_claiming_more_than_it_holds_is_truncation_read_in_bounded_memory(scratch):
    info = tarfile.TarInfo("n01440764/short.xml")
    info.size = 30 << 20  # under the size limit, but only a few KB follow
    path = scratch / "short.tar.gz"
    path.write_bytes(gzip.compress(info.tobuf(tarfile.USTAR_FORMAT) + XML_SEED, mtime=0))
    error = guarded(lambda: list(gzip_members(Source(str(path)))))
    assert isinstance(error, ArchiveError) and "short.xml: truncated member" in str(error)


def test_gzip_bomb_member_over_the_limit_is_refused_before_it_is_decompressed(scratch):
    path = scratch / "bomb.tar.gz"
    path.write_bytes(gzip.compress(tar_bytes({"n1/": b"", "n1/ok.xml": XML_SEED, "n1/bomb.xml": bytes(4 << 20)}),
                                   mtime=0))
    source = Source(str(path))
    assert [m.name for m, _, _ in gzip_members(source, max_member=4 << 20)] == ["n1/", "n1/ok.xml", "n1/bomb.xml"]
    with pytest.raises(ArchiveError, match=r"bomb\.tar\.gz!n1/bomb\.xml: member of 4194304 bytes"):
        list(gzip_members(source, max_member=1 << 20))


# --- the bounding-box index -----------------------------------------------------------------------

XML_FRAGMENTS = [
    '<!DOCTYPE annotation [<!ENTITY w "500">]>',
    '<!DOCTYPE annotation [<!ENTITY w SYSTEM "http://127.0.0.1:{port}/x">]>',
    '<!DOCTYPE annotation [<!ENTITY w SYSTEM "file:///etc/passwd">]>',
    '<!DOCTYPE annotation [<!ENTITY % p SYSTEM "http://127.0.0.1:{port}/p"> %p;]>',
    '<!DOCTYPE annotation SYSTEM "http://127.0.0.1:{port}/a.dtd">', '<!DOCTYPE annotation SYSTEM "file:///etc/passwd">',
    '<!DOCTYPE annotation [<!ENTITY l0 "lol">' + "".join(
        f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10)) + "]>",
    '<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="http://127.0.0.1:{port}/i"/>',
    '<?xml-stylesheet href="http://127.0.0.1:{port}/s"?>', "<?xml version='1.0' encoding='utf-16'?>",
    "<?xml version='1.0' encoding='x-bogus'?>", "\ufeff", "&w;", "&l9;", "&#0;", "&#x110000;", "&#49;",
    "<![CDATA[7]]>", "<!-- c -->", "<xmin>", "</xmin>", "<xmin/>", "<width>0</width>", "<width>-1</width>",
    "<xmin>-1</xmin>", "<xmin>nan</xmin>", "<xmin>inf</xmin>", "<xmin>1e999</xmin>", "<xmin>\u0661</xmin>",
    "<xmin>" + "9" * 5000 + "</xmin>", '<a xmlns="urn:x"><xmin>1</xmin></a>', "<" * 300, "<b>" * 300,
]
NUMBERS = ["0", "-1", "-0.5", "1e308", "-1e308", "nan", "inf", "1e999", " 12 ", "0x10", "\u0661\u0662", "", "1_0",
           "9" * 400, "4.9e-324"]


@st.composite
def damaged_xml(draw) -> str:
    """The seed annotation with fragments spliced in, numbers replaced, or bytes damaged."""
    text = XML_SEED.decode()
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["splice", "splice", "number", "prepend"]))
        if op == "number":
            tag = draw(st.sampled_from(["xmin", "ymin", "xmax", "ymax", "width", "height"]))
            start = text.find(f"<{tag}>")
            if start >= 0:
                end = text.find("<", start + 1)
                text = text[:start + len(tag) + 2] + draw(st.sampled_from(NUMBERS)) + text[end:]
            continue
        fragment = draw(st.sampled_from(XML_FRAGMENTS))
        at = 0 if op == "prepend" else draw(st.integers(0, len(text)))
        text = text[:at] + fragment + text[at:]
    return text


@pytest.fixture(scope="module")
def listener():
    """A local TCP server recording every connection: an XML fetch would show up here."""
    with connection_recorder() as recorder:
        yield recorder


def xml_bytes(text: str, port: int) -> bytes:
    return text.replace("{port}", str(port)).encode("utf-8", "surrogatepass")


@FUZZ
@given(text=damaged_xml(), damage=st.booleans(), data=st.data())
def test_mutated_xml_gives_boxes_or_an_annotation_error_and_fetches_nothing(listener, text, damage, data):
    port, connections = listener
    xml = xml_bytes(text, port)
    if damage:
        xml = data.draw(damaged(xml))
    result = guarded(parse_boxes, xml, "bbox.tar.gz!n1/n1_1.xml")
    if isinstance(result, StreamprepError):
        assert isinstance(result, AnnotationError) and "bbox.tar.gz!n1/n1_1.xml" in str(result)
    else:
        assert all(0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1 for x0, y0, x1, y1 in result), result
    assert connections == []


BBOX_ARCHIVES = st.one_of(
    GZIPS, damaged_xml().map(lambda text: gzip.compress(tar_bytes({"n1/": b"", "n1/n1_1.xml": xml_bytes(text, 9)}),
                                                        mtime=0)))


@FUZZ
@given(blob=BBOX_ARCHIVES)
def test_mutated_bbox_archive_gives_a_box_table_or_one_streamprep_error_without_retries(scratch, blob):
    path = scratch / "ILSVRC2012_bbox_train_v2.tar.gz"
    path.write_bytes(blob)
    # A damaged archive is not a network failure: retrying it would only repeat the error, slower.
    with mock.patch.object(retry, "pause", side_effect=AssertionError("a damaged archive was retried")):
        result = guarded(lambda: index_boxes(Source(str(path)), Ignored()))
    if isinstance(result, StreamprepError):
        assert isinstance(result, (ArchiveError, AnnotationError)) and "ILSVRC2012_bbox_train_v2.tar.gz" in str(result)
    else:
        assert ((result.rows >= 0) & (result.rows <= 1)).all()


def test_corrupt_bbox_archive_fails_once_instead_of_being_retried_as_a_network_error(scratch):
    blob = bytearray(gzip.compress(BBOX_SEED, compresslevel=0, mtime=0))
    blob[blob.find(b"ILSVRC_2012") + 1] ^= 0x20  # still well-formed XML: only the gzip CRC tells
    path = scratch / "crc.tar.gz"
    path.write_bytes(bytes(blob))
    with mock.patch.object(retry, "pause") as pause, pytest.raises(ArchiveError, match="CRC") as err:
        index_boxes(Source(str(path)), Ignored())
    assert pause.call_count == 0 and "attempts" not in str(err.value)


# --- JPEG headers ---------------------------------------------------------------------------------

JPEG_SEEDS = [jpeg(8, 6), jpeg(9, 7, progressive=True), jpeg(5, 5, mode="L"), jpeg(6, 4, exif=True),
              jpeg(7, 3, mode="CMYK")]
MARKERS = [0xC0, 0xC1, 0xC2, 0xC3, 0xC4, 0xC8, 0xCC, 0xCF, 0xD0, 0xD8, 0xD9, 0xDA, 0xDB, 0xE0, 0xE1, 0xFE, 0xFF,
           0x00, 0x01]


def segments(data: bytes) -> list[int]:
    """Where each marker of a valid JPEG's header starts, up to the scan."""
    found, pos = [], 2
    while data[pos + 1] != 0xDA:
        found.append(pos)
        pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
    return found + [pos]


@st.composite
def damaged_jpegs(draw) -> bytes:
    seed = draw(st.sampled_from(JPEG_SEEDS))
    data = bytearray(seed)
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.sampled_from(segments(seed)))
        what = draw(st.sampled_from(["marker", "length", "sof"]))
        if what == "marker":
            data[at + 1] = draw(st.sampled_from(MARKERS))
        elif what == "length":
            length = draw(st.sampled_from([0, 1, 2, 3, 7, 0xFFFF]) | st.integers(0, 0xFFFF))
            data[at + 2:at + 4] = length.to_bytes(2, "big")
        else:  # a frame header's height and width, wherever the segment is
            data[at + 5:at + 9] = draw(st.binary(min_size=4, max_size=4) | st.just(bytes(4)))
    hot = tuple((at, at + 12) for at in segments(seed))
    return draw(damaged(bytes(data), hot)) if draw(st.booleans()) else bytes(data)


JPEGS = st.one_of(damaged_jpegs(), st.binary(max_size=64).map(lambda b: b"\xff\xd8\xff" + b), st.binary(max_size=64))


@FUZZ
@given(data=JPEGS)
def test_mutated_jpeg_headers_give_a_size_or_size_unreadable(data):
    try:
        height, width = guarded(jpeg_size, data)
    except SizeUnreadable:
        return
    assert 0 < height < 1 << 16 and 0 < width < 1 << 16


@FUZZ
@given(data=JPEGS)
def test_mutated_jpegs_give_the_record_size_or_an_image_error_naming_the_member(data):
    member = "train.tar!n1.tar!n1_1.JPEG"
    result = guarded(image_size, data, member)
    if isinstance(result, StreamprepError):
        assert isinstance(result, ImageError) and member in str(result)
    else:
        assert result == jpeg_size(data)
    assert isinstance(describe(data), str) and is_jpeg(data) == data.startswith(b"\xff\xd8\xff")
