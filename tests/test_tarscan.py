"""Tests of the tar header walker (streamprep.tarscan) and archive access (streamprep.archives)."""

from __future__ import annotations

import gzip
import io
import struct
import tarfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fixtures.builders import tar_bytes
from streamprep.archives.storage import Source
from streamprep.archives.walk import gzip_members, inner_members, members
from streamprep.errors import ArchiveError
from streamprep.archives.tarscan import _number, iter_members, normalize

LONG = "n01440764/" + "x" * 120 + ".JPEG"          # > 100 chars
PREFIXED = "p" * 90 + "/" + "f" * 59                 # 150 chars: ustar splits it into prefix + name
BASE = {"a.JPEG": b"\xff\xd8" + b"a" * 700, "dir/": b"", "dir/b.JPEG": b"bb", "caf\u00e9_\u00fc.JPEG": b"\xc3",
        PREFIXED: b"p" * 512, "empty.JPEG": b""}
FORMATS = {
    "ustar": (tarfile.USTAR_FORMAT, BASE),
    "gnu": (tarfile.GNU_FORMAT, {**BASE, LONG: b"L" * 1025}),
    "pax": (tarfile.PAX_FORMAT, {**BASE, LONG: b"L" * 1025}),
}


def reader(data: bytes):
    return lambda offset, length: data[offset:offset + length]


def with_links(fmt: int, files: dict[str, bytes], linkname: str = "a.JPEG", pax_headers=None) -> bytes:
    """tar_bytes(files) plus a symlink and a hard link to `linkname`."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt, encoding="utf-8", pax_headers=pax_headers) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            if name.endswith("/"):
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        for name, kind in (("sym", tarfile.SYMTYPE), ("hard", tarfile.LNKTYPE)):
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, linkname
            tar.addfile(info)
    return buf.getvalue()


def reference(data: bytes) -> list[tuple]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return [(m.name, m.offset_data, m.size, m.isdir(), m.issym() or m.islnk(), m.linkname) for m in tar]


def walked(data: bytes, size: int | None) -> list[tuple]:
    return [(normalize(m.name), m.offset, m.size, m.is_dir, m.is_link, m.linkname)
            for m in iter_members(reader(data), "t.tar", size)]


@pytest.mark.parametrize("size_known", [True, False], ids=["size-known", "size-none"])
@pytest.mark.parametrize("fmt,files", FORMATS.values(), ids=FORMATS.keys())
def test_walk_matches_tarfile_names_offsets_sizes_and_data(fmt, files, size_known):
    data = with_links(fmt, files)
    assert walked(data, len(data) if size_known else None) == reference(data)
    for m in iter_members(reader(data), "t.tar", len(data)):
        if m.is_file:
            assert data[m.offset:m.offset + m.size] == files[m.name]


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT], ids=["gnu-longlink", "pax-linkpath"])
def test_long_link_targets_are_read(fmt):
    data = with_links(fmt, {LONG: b"x"}, linkname=LONG)
    links = {m.name: m.linkname for m in iter_members(reader(data), "t.tar") if m.is_link}
    assert links == {"sym": LONG, "hard": LONG}


def test_pax_global_header_is_skipped_and_members_still_match():
    data = with_links(tarfile.PAX_FORMAT, BASE, pax_headers={"comment": "global"})
    assert reader(data)(156, 1) == b"g"
    assert walked(data, len(data)) == reference(data)


def test_ustar_long_name_really_uses_the_prefix_field():
    data = tar_bytes({PREFIXED: b"x"}, format=tarfile.USTAR_FORMAT)
    assert data[345:345 + 90] == b"p" * 90 and data[:59] == b"f" * 59
    assert [m.name for m in iter_members(reader(data), "t.tar")] == [PREFIXED]


def test_directory_and_symlink_flags():
    data = with_links(tarfile.PAX_FORMAT, {"d/": b"", "d/f": b"1"})
    flags = {normalize(m.name): (m.is_file, m.is_dir, m.is_link) for m in iter_members(reader(data), "t.tar")}
    assert flags == {"d": (False, True, False), "d/f": (True, False, False),
                     "sym": (False, False, True), "hard": (False, False, True)}


@pytest.mark.parametrize("name,expected", [("./a/b/", "a/b"), ("././a", "a"), ("a", "a"), ("dir/", "dir"),
                                           ("./", "")], ids=["dot-slash-trailing", "double-dot", "plain", "dir",
                                                             "dot-only"])
def test_normalize(name, expected):
    assert normalize(name) == expected


def _gnu_header(name: bytes, size_field: bytes) -> bytes:
    """A GNU tar header built byte by byte, with the given 12-byte size field."""
    h = bytearray(512)
    h[:len(name)] = name
    h[100:108], h[108:116], h[116:124] = b"0000644\0", b"0000000\0", b"0000000\0"
    h[124:136] = size_field
    h[136:148] = b"11536560400\0"
    h[156:157] = b"0"
    h[257:265] = b"ustar  \0"
    h[148:156] = b" " * 8
    h[148:156] = b"%06o\0 " % sum(h)
    return bytes(h)


NINE_GIB = 9 << 30


@pytest.mark.parametrize("field,value", [(b"\x80" + NINE_GIB.to_bytes(11, "big"), NINE_GIB),
                                         (b"\xff" * 11 + b"\xfe", -2),
                                         (b"00000001750\0", 1000), (b"   1750 \0\0\0\0", 1000)],
                         ids=["base256-9GiB", "base256-negative", "octal", "octal-spaces"])
def test_number_field_decodes_like_tarfile(field, value):
    assert _number(field) == value == tarfile.nti(field)


def _pax_big_header() -> bytes:
    info = tarfile.TarInfo("big.bin")
    info.size = NINE_GIB
    return info.tobuf(tarfile.PAX_FORMAT)


@pytest.mark.parametrize("header", [_gnu_header(b"big.bin", b"\x80" + NINE_GIB.to_bytes(11, "big")),
                                    _pax_big_header()], ids=["gnu-base256", "pax-size"])
def test_member_over_8GiB_is_walked_from_headers_only(header):
    reads = []

    def read_at(offset, length):
        reads.append((offset, length))
        return header[offset:offset + length] if offset < len(header) else b""

    (m,) = iter_members(read_at, "big.tar", None)
    assert (m.name, m.offset, m.size, m.is_file) == ("big.bin", len(header), NINE_GIB, True)
    assert reads[-1] == (len(header) + NINE_GIB, 512)      # jumped over the data without reading it
    assert all(length <= 512 for _, length in reads)


def _source(tmp_path, data: bytes, name: str = "t.tar") -> Source:
    path = tmp_path / name
    path.write_bytes(data)
    return Source(str(path))


def test_source_members_and_read_ranges_give_member_bytes(tmp_path):
    files = {"a.JPEG": b"A" * 1000, "b.JPEG": b"B" * 3, "c.JPEG": b""}
    source = _source(tmp_path, tar_bytes(files))
    found = list(members(source))
    assert source.read_ranges([(m.offset, m.size) for m in found]) == list(files.values())
    assert source.read_ranges([]) == []
    with pytest.raises(ArchiveError, match="t.tar"):
        source.read_ranges([(source.size - 10, 20)])
    source.close()


def test_nested_tar_members_have_absolute_offsets(tmp_path):
    inner_a = {"n1_1.JPEG": b"1" * 600, "n1_2.JPEG": b"22"}
    inner_b = {"n2_" + "y" * 110 + ".JPEG": b"3" * 5}
    outer = tar_bytes({"n1.tar": tar_bytes(inner_a, format=tarfile.USTAR_FORMAT), "README": b"hi",
                       "n2.tar": tar_bytes(inner_b, format=tarfile.GNU_FORMAT)})
    source = _source(tmp_path, outer)
    outers = {m.name: m for m in members(source)}
    for name, files in (("n1.tar", inner_a), ("n2.tar", inner_b)):
        found = list(inner_members(source, outers[name]))
        assert [m.name for m in found] == list(files)
        assert all(m.offset > outers[name].offset for m in found)
        assert [outer[m.offset:m.offset + m.size] for m in found] == list(files.values())
    source.close()


def _two_members() -> tuple[bytes, int]:
    data = tar_bytes({"a.JPEG": b"a" * 1000, "b.JPEG": b"b" * 1000}, format=tarfile.USTAR_FORMAT)
    b_header = 512 + 1024
    assert data[b_header:b_header + 6] == b"b.JPEG"
    return data, b_header


@pytest.mark.parametrize("cut", [512 + 1024 + 512 + 100, 512 + 1024 + 300, 512 + 1024 + 100],
                         ids=["mid-data", "mid-header-after-name", "mid-header-in-name"])
def test_truncated_archive_raises_archive_error_naming_the_archive(tmp_path, cut):
    data, _ = _two_members()
    source = _source(tmp_path, data[:cut], "cut.tar")
    with pytest.raises(ArchiveError, match="cut.tar"):
        list(members(source))
    with pytest.raises(ArchiveError, match="cut.tar"):
        list(iter_members(reader(data[:cut]), "cut.tar", cut))


def test_truncated_mid_data_message_names_the_member(tmp_path):
    data, b_header = _two_members()
    with pytest.raises(ArchiveError, match=r"cut\.tar!b\.JPEG"):
        list(members(_source(tmp_path, data[:b_header + 512 + 100], "cut.tar")))


def test_truncated_mid_header_message_names_a_member(tmp_path):
    data, b_header = _two_members()
    with pytest.raises(ArchiveError) as err:
        list(members(_source(tmp_path, data[:b_header + 300], "cut.tar")))
    assert "b.JPEG" in str(err.value) or "a.JPEG" in str(err.value)


def test_truncated_inner_tar_names_outer_and_inner_member(tmp_path):
    data, b_header = _two_members()
    source = _source(tmp_path, tar_bytes({"n1.tar": data[:b_header + 600]}), "train.tar")
    (outer,) = members(source)
    with pytest.raises(ArchiveError, match=r"train\.tar!n1\.tar!b\.JPEG"):
        list(inner_members(source, outer))


def test_flipped_header_byte_fails_the_checksum():
    data = bytearray(tar_bytes({"a.JPEG": b"a", "b.JPEG": b"b"}, format=tarfile.USTAR_FORMAT))
    assert data[1024:1030] == b"b.JPEG"
    data[1026] ^= 0x01                                       # the second header's name: 'b.JPEG' -> 'b.KPEG'
    with pytest.raises(ArchiveError, match=r"t\.tar.*byte 1024.*checksum"):
        list(iter_members(reader(bytes(data)), "t.tar", len(data)))


def _garbage_checksum_field() -> bytes:
    data = tar_bytes({"a": b"1"})
    return data[:148] + b"zzzzzzz\0" + data[156:]


@pytest.mark.parametrize("data", [_garbage_checksum_field(), b"hello world\n" * 100],
                         ids=["garbage-checksum-field", "text-file-not-a-tar"])
def test_non_octal_checksum_field_raises_archive_error(data):
    with pytest.raises(ArchiveError):
        list(iter_members(reader(data), "t.tar", len(data)))


def test_signed_checksum_header_is_accepted_like_tarfile():
    data = bytearray(tar_bytes({"caf\u00e9.JPEG": b"x"}, format=tarfile.USTAR_FORMAT))
    signed = 256 + sum(struct.unpack_from("148b8x356b", data))
    data[148:156] = b"%06o\0 " % signed
    assert [m.name for m in tarfile.open(fileobj=io.BytesIO(bytes(data)))] == ["caf\u00e9.JPEG"]
    assert [m.name for m in iter_members(reader(bytes(data)), "t.tar")] == ["caf\u00e9.JPEG"]


XMLS = {"n1/": b"", "n1/n1_1.xml": b"<a/>" * 200, "n1/n1_2.xml": b"<b/>"}


def test_gzip_members_yield_member_data_in_order(tmp_path):
    source = _source(tmp_path, gzip.compress(tar_bytes(XMLS)), "bbox.tar.gz")
    walked = list(gzip_members(source))
    got = [(normalize(m.name), m.is_dir, data) for m, data, _ in walked]
    assert got == [("n1", True, b""), ("n1/n1_1.xml", False, XMLS["n1/n1_1.xml"]), ("n1/n1_2.xml", False, b"<b/>")]
    compressed = [position for _, _, position in walked]
    assert compressed == sorted(compressed) and 0 < compressed[-1] <= source.size


@pytest.mark.parametrize("blob", [gzip.compress(tar_bytes(XMLS))[:60], b"PK\x03\x04 not gzip" * 40,
                                  gzip.compress(tar_bytes(XMLS)[:512 * 3 + 100])],
                         ids=["gzip-cut-short", "not-gzip", "gzip-of-cut-tar"])
def test_bad_gzip_raises_archive_error_naming_the_file(tmp_path, blob):
    source = _source(tmp_path, blob, "bbox.tar.gz")
    with pytest.raises(ArchiveError, match=r"bbox\.tar\.gz"):
        list(gzip_members(source))


def _flipped_stored_byte() -> bytes:
    """An uncompressed-deflate .tar.gz with one XML byte changed: only the gzip CRC32 can tell."""
    blob = bytearray(gzip.compress(tar_bytes(XMLS), compresslevel=0))
    blob[blob.find(b"<b/>") + 1] ^= 0x20
    return bytes(blob)


@pytest.mark.parametrize("blob", [gzip.compress(tar_bytes(XMLS))[:-5], _flipped_stored_byte()],
                         ids=["trailer-cut", "crc-mismatch"])
def test_gzip_trailer_is_verified(tmp_path, blob):
    with pytest.raises((EOFError, OSError)):  # gzip itself detects the damage
        gzip.decompress(blob)
    with pytest.raises(ArchiveError, match=r"bbox\.tar\.gz"):
        list(gzip_members(_source(tmp_path, blob, "bbox.tar.gz")))


@pytest.mark.parametrize("make", [lambda p: str(p / "missing.tar"), lambda p: str(p)], ids=["missing", "directory"])
def test_source_of_missing_path_or_directory_raises_archive_error(tmp_path, make):
    with pytest.raises(ArchiveError):
        Source(make(tmp_path))


def test_old_style_directory_entry_with_a_trailing_slash_is_a_directory():
    info = tarfile.TarInfo("n01440764/")
    info.type = tarfile.AREGTYPE  # "\0": a V7 tar's regular-or-directory entry
    data = info.tobuf(tarfile.USTAR_FORMAT) + bytes(1024)
    (member,) = list(iter_members(lambda offset, length: data[offset:offset + length], "old.tar", len(data)))
    assert member.is_dir and not member.is_file


def _extended(kind: bytes, data: bytes) -> bytes:
    """One extended header (`x`, `g` or `L`) with its data, padded to blocks."""
    h = bytearray(_gnu_header(b"././@PaxHeader", b"%011o\0" % len(data)))
    h[156:157] = kind
    h[148:156] = b" " * 8
    h[148:156] = b"%06o\0 " % sum(h)
    return bytes(h) + data + bytes(-len(data) % 512)


def _record(key: str, value: str) -> bytes:
    body = f" {key}={value}\n".encode()
    n = len(body) + len(str(len(body)))
    n = len(body) + len(str(n))
    return str(n).encode() + body


@pytest.mark.parametrize("kind", [b"x", b"g", b"L"], ids=["pax", "global-pax", "gnu-long-name"])
def test_extended_headers_in_a_row_are_bounded_in_total_not_only_each(kind):
    """Thousands of extended headers, each small enough, may not pile up in memory before one member."""
    from streamprep.archives.tarscan import MAX_EXTENDED

    piece = 64 << 10
    if kind == b"L":
        headers = b"".join(_extended(kind, b"n" * piece) for _ in range(MAX_EXTENDED // piece + 2))
    else:
        headers = b"".join(_extended(kind, _record(f"k{i}", "v" * (piece - 32))) for i in range(MAX_EXTENDED // piece + 2))
    data = headers + tar_bytes({"a.JPEG": b"\xff\xd8"})
    with pytest.raises(ArchiveError, match="extended .* headers in a row"):
        list(iter_members(reader(data), "t.tar", len(data)))


def test_extended_headers_under_the_bound_still_apply():
    data = (_extended(b"x", _record("comment", "c" * 1000)) + _extended(b"x", _record("path", "renamed.JPEG"))
            + tar_bytes({"a.JPEG": b"\xff\xd8"}))
    assert [m.name for m in iter_members(reader(data), "t.tar", len(data))] == ["renamed.JPEG"]


@settings(max_examples=300, deadline=None)
@given(block=st.binary(min_size=512, max_size=512), stored=st.sampled_from(["unsigned", "signed", "off-by-one"]))
def test_a_header_checksum_is_accepted_exactly_when_tarfile_accepts_it(block, stored):
    """Any 512 bytes, their checksum field set to the unsigned sum, the signed one (old tar programs) or neither:
    accepted exactly where tarfile's rule accepts them."""
    from streamprep.archives.tarscan import _checksum_ok

    data = bytearray(block)
    unsigned = 256 + sum(struct.unpack_from("148B8x356B", data))
    signed = 256 + sum(struct.unpack_from("148b8x356b", data))
    value = {"unsigned": unsigned, "signed": signed, "off-by-one": unsigned + 1}[stored]
    data[148:156] = b"%06o\0 " % (value & 0o777777)
    assert _checksum_ok(bytes(data)) == (tarfile.nti(bytes(data[148:156])) in tarfile.calc_chksums(bytes(data)))


def _counted_source(tmp_path, files: dict[str, bytes]) -> tuple[Source, list[tuple[int, int]]]:
    """A local Source of a tar of `files` whose reads are recorded as (offset, length)."""
    source = _source(tmp_path, tar_bytes(files), "t.tar")
    reads: list[tuple[int, int]] = []
    plain = source.read_at

    def read_at(offset: int, length: int) -> bytes:
        reads.append((offset, length))
        return plain(offset, length)

    source.read_at = read_at  # type: ignore[method-assign]
    return source, reads


def test_a_walk_over_tiny_members_reads_many_headers_with_one_read(tmp_path):
    files = {f"n1_{i}.JPEG": bytes([i % 251]) * (300 + i) for i in range(400)}
    source, reads = _counted_source(tmp_path, files)
    got = [(m.name, source.read_at(m.offset, m.size)) for m in members(source)]
    assert got == list(files.items())
    header_reads = len(reads) - len(files)
    assert header_reads < len(files) / 10  # 400 headers: each read of 64 KiB holds about 70 of them


def test_a_walk_over_large_members_reads_their_headers_only(tmp_path):
    files = {f"n1_{i}.JPEG": bytes([i]) * (100_000 + i) for i in range(12)}
    source, reads = _counted_source(tmp_path, files)
    walked_members = list(members(source))
    assert [(m.name, m.size) for m in walked_members] == [(n, len(d)) for n, d in files.items()]
    assert sum(length for _, length in reads) <= 2 * 512 * (len(files) + 1)  # no image byte read


def test_a_nested_tar_walk_never_reads_past_the_inner_tar(tmp_path):
    inner = tar_bytes({f"n1_{i}.JPEG": b"x" * 100 for i in range(50)})
    source, reads = _counted_source(tmp_path, {"a.tar": inner, "after.bin": b"\xff" * 200_000})
    outer = next(m for m in members(source) if m.name == "a.tar")
    reads.clear()
    assert [m.name for m in inner_members(source, outer)] == [f"n1_{i}.JPEG" for i in range(50)]
    assert all(offset + length <= outer.offset + outer.size for offset, length in reads)


def test_gzip_members_across_the_reader_chunks_are_whole(tmp_path):
    """Members larger than, and straddling, the 1 MiB pieces the gzip stream is read in come out whole."""
    files = {f"d/f{i}.bin": bytes(range(256)) * (1500 + 997 * i) for i in range(6)}
    source = _source(tmp_path, gzip.compress(tar_bytes(files), 1), "big.tar.gz")
    got = {normalize(m.name): data for m, data, _ in gzip_members(source) if not m.is_dir}
    assert got == files
