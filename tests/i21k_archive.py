"""A small ImageNet-21k archive (an outer tar of per-synset tars) and what ImageNet-21K-P's recipe makes of it, worked
out here from the files themselves, independently of streamprep: the session fixtures' archive (conftest's
`i21k_archive`, `tfds_i21k_converted`) and the expectations of the tests and doc snippets that read its conversions."""

from __future__ import annotations

from pathlib import Path

from fixtures.builders import jpeg, tar_bytes
from helpers import DATA

SYNSETS = (DATA / "imagenet21k" / "imagenet21k_goog_synsets.txt").read_text().split()
NAMES = dict(line.split("\t", 1) for line in (DATA / "imagenet_metadata.txt").read_text().splitlines())
OVER, PER = 3, 2  # --keep-classes-over, --validation-per-class: the published 500 and 50, small
RECIPE = ("--dataset", "imagenet21k", "--keep-classes-over", str(OVER), "--validation-per-class", str(PER))
CORRUPT = b"not a JPEG at all, but named like one"


def classes() -> dict[str, dict[str, bytes]]:
    """Four per-synset tars: one at exactly the threshold (dropped), names whose byte order is not their natural order
    (`_10` before `_9`, `_B` before `_a`), a member that is not `*.JPEG`, a corrupt JPEG first by name (a validation
    image the conversion skips), images of several sizes."""
    a, b, c, d = SYNSETS[100], SYNSETS[7], SYNSETS[2000], SYNSETS[50]

    def images(synset: str, suffixes: list[str], seed: int) -> dict[str, bytes]:
        return {f"{synset}_{s}.JPEG": jpeg(8 + k, 6 + 2 * k, seed=seed + k) for k, s in enumerate(suffixes)}

    return {
        a: images(a, ["1", "2", "3"], 0),  # 3, not more than 3: dropped by 21k-p, kept by all
        b: {**images(b, ["9", "10", "a", "B", "11"], 10), "README.txt": b"not an image"},
        c: {f"{c}_0.JPEG": CORRUPT, **images(c, ["5", "6", "7"], 20)},
        d: images(d, [str(k) for k in range(8)], 30),
    }


def write_archive(path: Path) -> Path:
    """`classes()` as fall11_whole.tar: an outer tar of `SYNSET.tar` files, and a file that is no class tar."""
    outer = {f"{synset}.tar": tar_bytes(files) for synset, files in classes().items()}
    outer["LICENSE"] = b"not a class tar"
    path.write_bytes(tar_bytes(outer))
    return path


def expected(recipe: str = "21k-p") -> dict[tuple[str, str], tuple[int, bytes]]:
    """{(split, file name): (label, image bytes)} as the recipe gives them, the corrupt image left out: classes kept
    with more than OVER `*.JPEG` names (all of them with `all`), labels 0-based in sorted synset order, the first PER
    names of each kept class by their bytes in validation."""
    found = classes()
    counted = {s: sorted((n for n in files if n.endswith(".JPEG") and not n.startswith(".")), key=str.encode)
               for s, files in found.items()}
    kept = sorted(s for s, names in counted.items() if recipe == "all" or len(names) > OVER)
    per = 0 if recipe == "all" else PER
    result = {}
    for label, synset in enumerate(kept):
        for k, name in enumerate(counted[synset]):
            if found[synset][name] != CORRUPT:
                result[("validation" if k < per else "train", name)] = (label, found[synset][name])
    return result


def kept(recipe: str = "21k-p") -> list[str]:
    """The synsets the recipe keeps, sorted: label k is kept()[k]."""
    return sorted({name.rsplit("_", 1)[0] for _, name in expected(recipe)})
