"""Downloads at the edges of TFDS's member rules (tests/test_tfds.py): tars of raw entries, links and odd names."""

from __future__ import annotations

import gzip
import io
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Union

from fixtures import builders

CMYK, PNG = "n01739381_1309.JPEG", "n02105855_2933.JPEG"  # two of the fix-up files' names


@dataclass(frozen=True)
class Link:
    """A symbolic (or, with `hard`, a hard) link entry."""

    name: str
    target: str
    hard: bool = False


@dataclass(frozen=True)
class Special:
    """An entry of another type: a directory (`5`), a FIFO (`6`), or one tarfile does not know (`Z`, with data)."""

    name: str
    type: bytes
    data: bytes = b""


Entry = Union[tuple[str, bytes], Link, Special]


def tar_of(*entries: Entry) -> bytes:
    """An uncompressed PAX tar of these entries, in order (`(name, data)` is a regular file; names are kept as
    given, `./x` and `a/../b` included)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8") as tar:
        for entry in entries:
            if isinstance(entry, Link):
                info = tarfile.TarInfo(entry.name)
                info.type = tarfile.LNKTYPE if entry.hard else tarfile.SYMTYPE
                info.linkname = entry.target
                tar.addfile(info)
                continue
            name, data, kind = (entry.name, entry.data, entry.type) if isinstance(entry, Special) else (*entry, None)
            info = tarfile.TarInfo(name)
            info.mtime, info.mode = builders.MTIME, 0o644
            if kind is not None:
                info.type = kind
            info.size = len(data) if kind in (None, b"Z") else 0
            tar.addfile(info, io.BytesIO(data) if info.size else None)
    return buf.getvalue()


def write_downloads(folder: Path, train: list[Entry], val: list[Entry]) -> dict[str, Path]:
    """The three downloads under their official names (a bounding-box tar.gz of one XML file)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ILSVRC2012_img_train.tar").write_bytes(tar_of(*train))
    (folder / "ILSVRC2012_img_val.tar").write_bytes(tar_of(*val))
    xml = builders.voc_xml("n01440764_1", 20, 16, [(1, 1, 10, 10)])
    builders.write_bbox_targz(folder / "ILSVRC2012_bbox_train_v2.tar.gz", {"n01440764/n01440764_1.xml": xml})
    return {"train": folder / "ILSVRC2012_img_train.tar", "val": folder / "ILSVRC2012_img_val.tar",
            "bbox": folder / "ILSVRC2012_bbox_train_v2.tar.gz"}


def image(seed: int, width: int = 20, height: int = 16) -> bytes:
    return builders.jpeg(width, height, seed=seed)


def odd_downloads(folder: Path) -> dict[str, Path]:
    """Downloads `tfds build imagenet2012` converts although the classic would leave much of them out: images
    under other extensions, files that are no images, files in folders of a class tar and of the validation tar,
    empty class tars (of a known and an unknown synset), a second class tar of one synset, links (read as their
    targets in the training and validation tars, skipped in a class tar), hidden and backup files, names with
    `./`, `a/../b`, `c/./d`, a member type tarfile does not know, fix-up names in a folder and in the validation
    tar (which TFDS does not fix up), and validation members that are no images (labelled by their place)."""
    cmyk = builders.jpeg(30, 24, mode="CMYK", seed=7)
    first = tar_of(
        ("n01440764_1.JPEG", image(1)), ("n01440764_2.JPEG", image(2)),
        ("lower.jpeg", image(3)), ("upper.JPG", image(4)), ("picture.png", builders.png(18, 14, seed=5)),
        ("README", b"not an image\n"), ("empty.JPEG", b""),
        Special("sub/", tarfile.DIRTYPE), ("sub/in_folder.JPEG", image(6)), ("sub/deeper/x.JPEG", image(7)),
        (".hidden.JPEG", image(8)), ("._n01440764_1.JPEG", b"\0\5\x16\7 AppleDouble"), ("backup.JPEG~", image(9)),
        ("x/../up.JPEG", image(10)), ("c/./d.JPEG", image(11)), ("./dot.JPEG", image(12)), ("../out.JPEG", image(13)),
        Link("link.JPEG", "n01440764_1.JPEG"), Link("hard.JPEG", "n01440764_2.JPEG", hard=True),
        Special("fifo", tarfile.FIFOTYPE), Special("unknown-type.JPEG", b"Z", image(14)),
        (CMYK, cmyk),  # a fix-up name in another class: fixed up all the same (TFDS goes by the name alone)
    )
    train: list[Entry] = [
        ("n01440764.tar", first),
        ("n01739381.tar", tar_of(("n01739381_1.JPEG", image(20)), ("sub/" + CMYK, cmyk))),
        ("n02105855.tar", tar_of((PNG, builders.png(36, 28, seed=6)), ("n02105855_1.JPEG", image(21)))),
        ("n04596742.tar", tar_of()),  # an empty class tar
        ("n04596742.TAR", tar_of(("n04596742_1.JPEG", image(22)))),  # TFDS's label: the name less 4 characters
        ("n99999999.tar", tar_of()),  # an empty class tar of no synset: TFDS reads nothing from it, so no label
        ("._n01443537.tar", tar_of(("n01443537_1.JPEG", image(23)))),  # hidden: read only through the link below
        Link("n01443537.tar", "._n01443537.tar"),
        ("._other.tar", tar_of(("n01530575_1.JPEG", image(24)))),
        Link("n01530575.tar", "._other.tar", hard=True),
        ("notes.txt~", b"a backup file"), Special("extras/", tarfile.DIRTYPE), ("extras/.DS_Store", b"\0\0\0\1Bud1"),
    ]
    val: list[Entry] = [
        *((f"ILSVRC2012_val_{i:08d}.JPEG", image(100 + i)) for i in (3, 1, 6, 2, 5, 4)),
        ("README.txt", b"validation images\n"), Special("sub/", tarfile.DIRTYPE),
        ("sub/ILSVRC2012_val_00000007.JPEG", image(107)), ("._ILSVRC2012_val_00000001.JPEG", b"\0\5\x16\7"),
        ("lower.jpeg", image(108)), (CMYK, cmyk),
        Link("ILSVRC2012_val_00000008.JPEG", "ILSVRC2012_val_00000001.JPEG"),
        Link("ILSVRC2012_val_00000009.JPEG", "ILSVRC2012_val_00000002.JPEG", hard=True),
        Link("ILSVRC2012_val_00000010.JPEG", "missing.JPEG"), Link("ILSVRC2012_val_00000011.JPEG", "sub"),
        Special("fifo", tarfile.FIFOTYPE),
    ]
    return write_downloads(folder, train, val)


BASE_TRAIN: list[Entry] = [("n01440764.tar", tar_of(("n01440764_1.JPEG", image(1)), ("n01440764_2.JPEG", image(2))))]
BASE_VAL: list[Entry] = [(f"ILSVRC2012_val_{i:08d}.JPEG", image(100 + i)) for i in (1, 2, 3)]

# Downloads `tfds build` fails on, each with words of the one-line error streamprep stops with instead: what
# TFDS's builder does with the member, and the exception it fails with.
FAILING: dict[str, tuple[list[Entry], list[Entry], str]] = {
    "class tar of no synset": (
        [*BASE_TRAIN, ("n99999999.tar", tar_of(("n99999999_1.JPEG", image(3))))], BASE_VAL,
        "'n99999999', which is not a synset of the labels file, so `tfds build` fails on its images (KeyError"),
    "class tar in a folder": (
        [*BASE_TRAIN, ("sub/n01443537.tar", tar_of(("n01443537_1.JPEG", image(3))))], BASE_VAL,
        "'sub/n01443537', which is not a synset"),
    "readme in the training tar": (
        [*BASE_TRAIN, ("README", b"the ImageNet training images\n")], BASE_VAL,
        "not a tar archive (truncated tar header at byte 0); `tfds build` opens every file of the training tar as a "
        "class tar and fails on this one (tarfile.ReadError)"),
    "image in the training tar": (
        [*BASE_TRAIN, ("n01443537_1.JPEG", image(3, 40, 40))], BASE_VAL, "(tarfile.ReadError)"),
    "empty file as a class tar": (
        [*BASE_TRAIN, ("n01443537.tar", b"")], BASE_VAL, "an empty file; `tfds build` opens every file of the training "
        "tar as a class tar and fails on this one (tarfile.ReadError: empty file)"),
    "one file name in two class tars": (
        [*BASE_TRAIN, ("n01443537.tar", tar_of(("n01440764_1.JPEG", image(3))))], BASE_VAL,
        "two images of the train split are named n01440764_1.JPEG"),
    "one name twice in a class tar": (
        [("n01440764.tar", tar_of(("n01440764_1.JPEG", image(1)), ("n01440764_1.JPEG", image(2))))], BASE_VAL,
        "two images of the train split are named n01440764_1.JPEG"),
    "one key for two names": (
        [("n01440764.tar", tar_of(("a\\b.JPEG", image(1)), ("a/b.JPEG", image(2))))], BASE_VAL,
        "one key to TFDS"),
    "a name that is not UTF-8": (
        [("n01440764.tar", tar_of(("n01440764_\udce9.JPEG", image(1))))], BASE_VAL,
        "the file name is not UTF-8, and `tfds build` fails encoding it"),
    "validation name with ./": (
        BASE_TRAIN, [("./ILSVRC2012_val_00000001.JPEG", image(101)), *BASE_VAL[1:]],
        "TFDS looks its label up under its normalised name 'ILSVRC2012_val_00000001.JPEG', which is not a name the "
        "tar lists, so `tfds build` fails on it (KeyError)"),
    "validation link loop": (
        BASE_TRAIN, [*BASE_VAL, Link("a.JPEG", "b.JPEG"), Link("b.JPEG", "a.JPEG")], "(RecursionError)"),
    "fix-up file TensorFlow cannot decode": (
        [("n01739381.tar", tar_of((CMYK, b"not a JPEG")))], BASE_VAL, CMYK),
}


def gzipped_class_tar(folder: Path) -> dict[str, Path]:
    """A class tar stored gzipped in the training tar: `tfds build` reads it (tarfile opens it `r|*`)."""
    return write_downloads(folder, [*BASE_TRAIN, ("n01443537.tgz", gzip.compress(tar_of(("n01443537_1.JPEG",
                                                                                          image(3))), mtime=0))],
                           BASE_VAL)
