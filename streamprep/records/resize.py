"""Resizing recipes (`--resize`, `--encode`, `--min-side`): what one recipe does to one image's bytes.

Two kinds (docs/resize.md):
- the named recipes `21k-p-224` and `21k-p-short-256` give the bytes Alibaba-MIIL's ImageNet-21K-P scripts
  (`dataset_preprocessing/resize.py`, `resize_short_edge.py`) write for the extracted file, through the same
  OpenCV calls on the member's own bytes: `cv2.imdecode(..., IMREAD_COLOR)` is what `cv2.imread` does to the
  file, `cv2.resize` with the scripts' size rule and interpolation, `cv2.imencode` with the extension of the
  member's name and no parameters is what `cv2.imwrite` writes under that name. An image whose longer side is
  under the recipe's size is copied unchanged, as the scripts copy it; for a JPEG that passes libjpeg's header
  checks (the classic's, `imagesize.checked_jpeg_size`) that is decided from its header, without decoding it;
- the general recipes `short-edge=N`, `max-side=N`, `squish=WxH` take the classic's image (its fix-ups made),
  decode it with libjpeg-turbo (simplejpeg, scaled in the DCT domain by 1/2, 1/4 or 1/8 while at least twice the
  target), resample it with OpenCV (INTER_LINEAR, bilinear, where the decoded image is at most twice the target on
  each side; INTER_AREA, area averaging, beyond), never enlarge it, and encode it as `--encode` says
  (JPEG with simplejpeg, WebP and PNG with Pillow): no EXIF, ICC profile or other metadata, always RGB.
Every call releases the interpreter lock while it decodes, resamples or encodes.
"""

from __future__ import annotations

import io
import math
import os
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError, ImageError, MissingDependencyError
from .imagesize import checked_jpeg_size, is_jpeg

# The named recipes: (what they reproduce, the size, whether the short edge is scaled to it (else a squish to a
# square)). Alibaba-MIIL/ImageNet21K, dataset_preprocessing/resize.py and resize_short_edge.py (docs/resize.md).
NAMED = {"21k-p-224": (224, False), "21k-p-short-256": (256, True)}
GENERAL = ("short-edge", "max-side", "squish")
DEFAULT_QUALITY = 90
# What a resized image may take, for `plan` and the space check (docs/resize.md): at most this many bytes plus
# BYTES_PER_PIXEL for each pixel it holds (uniform noise, the worst case: JPEG at quality 100 takes 2.0 bytes a
# pixel, PNG 3.01, WebP at 100 1.14, measured at 224x224 to 256x900).
BYTES_PER_IMAGE, BYTES_PER_PIXEL = 1024, 3.25
SHORT_EDGE_ASPECT = 2  # the short-edge recipes' estimate takes images up to 2:1 (wider ones may take more)


class TooSmall(ImageError):
    """An image smaller than `--min-side`: left out and listed, whatever `--on-bad-image` says."""

    always_skipped = True


def _cv2() -> Any:
    try:
        import cv2
    except ImportError as e:
        raise MissingDependencyError(f"--resize needs OpenCV ({e}); install streamprep[resize] "
                                     "(pip install 'streamprep[resize]')") from e
    return cv2


def _simplejpeg() -> Any:
    try:
        import simplejpeg
    except ImportError as e:
        raise MissingDependencyError(f"--resize needs simplejpeg ({e}); install simplejpeg") from e
    return simplejpeg


@dataclass(frozen=True)
class Recipe:
    """One `--resize` recipe with its `--encode` and `--min-side`: what `apply` does to each image."""

    name: str  # "21k-p-224", "21k-p-short-256", "short-edge", "max-side" or "squish"
    width: int  # the size: N for the named, short-edge and max-side recipes, W of squish=WxH
    height: int  # N, or H of squish=WxH
    encode: str = f"jpeg:{DEFAULT_QUALITY}"  # jpeg:Q, webp:Q or png (the named recipes: as cv2.imwrite does)
    min_side: int = 0  # images whose shorter side is under this are left out (`TooSmall`)

    @property
    def exact(self) -> bool:
        """Whether it reproduces a published recipe byte for byte (the named ones)."""
        return self.name in NAMED

    def encodings(self) -> tuple[str, ...]:
        """What its images may be ("JPEG", "PNG", "WEBP": `records.image.EXTENSIONS`): a general recipe's `--encode`;
        a named one's as cv2.imwrite writes them by the member's name (JPEG), or a copied member's own bytes."""
        return ("JPEG", "PNG", "WEBP") if self.exact else (self.encode.partition(":")[0].upper(),)

    def spec(self) -> str:
        """The recipe as `--resize` names it."""
        if self.exact:
            return self.name
        return f"squish={self.width}x{self.height}" if self.name == "squish" else f"{self.name}={self.width}"

    def describe(self) -> dict[str, Any]:
        """What manifest.json's run and timm's `_info.json` record of it, with the codecs' versions it depends on."""
        return {"recipe": self.spec(), "encode": "as cv2.imwrite (by the file's extension)" if self.exact
                else self.encode, "min_side": self.min_side, "codecs": codecs(self.exact)}

    # --- sizes ------------------------------------------------------------------------------------------

    def target(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) a general recipe gives an image of this size: never larger on either side; a scaled side
        rounded to the nearest pixel (halves up), at least 1."""
        if self.name == "squish":
            return min(self.height, height), min(self.width, width)
        side = min(height, width) if self.name == "short-edge" else max(height, width)
        if side <= self.width:
            return height, width
        scale = self.width / side
        return max(1, math.floor(height * scale + 0.5)), max(1, math.floor(width * scale + 0.5))

    def most_bytes(self, downloads: np.ndarray) -> int:
        """An estimate of at most how many bytes images of these download sizes take resized (docs/resize.md): the
        encoder's worst case for the recipe's pixel count (short-edge recipes: images up to `SHORT_EDGE_ASPECT`:1),
        or for the named recipes an image's download bytes where more (they copy small images unchanged)."""
        area = self.width * self.height
        if self.name in ("short-edge", "21k-p-short-256"):
            area = self.width * self.width * SHORT_EDGE_ASPECT
        most = BYTES_PER_IMAGE + math.ceil(BYTES_PER_PIXEL * area)
        if self.exact:
            return int(np.maximum(np.asarray(downloads, dtype=np.int64), most).sum())
        return most * len(downloads)

    def _check_min_side(self, height: int, width: int, member: str) -> None:
        if min(height, width) < self.min_side:
            raise TooSmall(f"{member}: {width}x{height} pixels, smaller than --min-side {self.min_side}; left out")

    # --- what it does to one image ------------------------------------------------------------------------

    def apply(self, data: bytes, member: str, filename: str) -> tuple[bytes, int, int]:
        """A named recipe's (data, height, width) for the member's own bytes, as the script writes the extracted file
        `filename`; `ImageError` where the script fails on it."""
        cv2 = _cv2()
        size, short_edge = NAMED[self.name]
        shape = _copied_shape(data)
        if shape is not None:
            self._check_min_side(*shape, member)
        if shape is None or max(shape) >= size:
            pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)  # what cv2.imread(file) reads
            if pixels is None:
                raise ImageError(f"{member}: OpenCV cannot read this image, so {self.name}'s script writes nothing for "
                                 "it; replace it with the original download, or leave it out with --on-bad-image skip")
            shape = pixels.shape[:2]
            self._check_min_side(*shape, member)
        if max(shape) < size:  # the scripts' rule: `if max_dim < output_size: copyfile(...)`
            return data, shape[0], shape[1]
        if short_edge:  # resize_short_edge.py: im_scale = float(output_size) / float(im_size_min)
            scale = float(size) / float(min(shape))
            resized = cv2.resize(pixels, None, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
        else:  # resize.py: cv2.resize(im, (output_size, output_size))
            resized = cv2.resize(pixels, (size, size))
        ext = os.path.splitext(filename)[1]
        try:
            ok, encoded = cv2.imencode(ext, resized)  # cv2.imwrite(out_path, im_resize): out_path keeps the name
        except cv2.error as e:
            ok = False
            why = str(e).strip().splitlines()[-1][:200]
        else:
            why = "the encoder failed"
        if not ok:
            raise ImageError(f"{member}: OpenCV cannot write an image named {filename!r} ({why}), so {self.name}'s "
                             "script writes nothing for it; leave it out with --on-bad-image skip")
        return encoded.tobytes(), resized.shape[0], resized.shape[1]

    def resized(self, data: bytes, height: int, width: int, member: str) -> tuple[bytes, int, int]:
        """A general recipe's (data, height, width) for the classic's image (a JPEG of this size, its checks passed)."""
        self._check_min_side(height, width, member)
        th, tw = self.target(height, width)
        pixels = _decoded(data, (height, width), th, tw, member)
        if pixels.shape[:2] != (th, tw):
            cv2 = _cv2()
            gentle = pixels.shape[0] <= 2 * th and pixels.shape[1] <= 2 * tw  # bilinear: 2x2 taps cover it
            pixels = cv2.resize(pixels, (tw, th), interpolation=cv2.INTER_LINEAR if gentle else cv2.INTER_AREA)
        return encode(pixels, self.encode), th, tw


def _copied_shape(data: bytes) -> tuple[int, int] | None:
    """(height, width) of a JPEG from its header when it passes libjpeg's header checks (the classic's): a named
    recipe decides whether to copy it without decoding it. None for anything else (OpenCV decodes it to decide)."""
    if not is_jpeg(data):
        return None
    try:
        return checked_jpeg_size(data)
    except ValueError:
        return None


def _decoded(data: bytes, full: tuple[int, int], height: int, width: int, member: str) -> np.ndarray:
    """RGB pixels of the JPEG (`full`: its (height, width), read from its header once, by the caller), scaled in the
    DCT domain by 1/2, 1/4 or 1/8 as far as the result stays at least twice height x width (Pillow's
    `reducing_gap=2.0`): scaled closer to the target, 4:2:0 chroma comes out blocky (30 dB against the float reference
    at 1/8 where 1/4 gives 53, docs/resize.md); libjpeg-turbo's other scalings (7/8, 3/4, ...) are never asked for."""
    full_height, full_width = full
    factor = 1
    while factor < 8 and full_height // (2 * factor) >= 2 * height and full_width // (2 * factor) >= 2 * width:
        factor *= 2
    simplejpeg = _simplejpeg()
    try:
        return simplejpeg.decode_jpeg(data, colorspace="RGB", strict=False, min_height=-(-full_height // factor),
                                      min_width=-(-full_width // factor))
    except ValueError:  # a sampling TurboJPEG's interface refuses: Pillow's libjpeg decodes it (draft: 1/2, 1/4, 1/8)
        pass
    from PIL import Image as PILImage

    try:
        with PILImage.open(io.BytesIO(data), formats=["JPEG"]) as image:
            image.draft("RGB", (2 * width, 2 * height))
            return np.asarray(image.convert("RGB"))
    except (OSError, ValueError) as e:
        raise ImageError(f"{member}: cannot be decoded to resize it ({e}); replace it with the original download, "
                         "or leave it out with --on-bad-image skip") from e


def encode(rgb: np.ndarray, how: str) -> bytes:
    """RGB pixels as `--encode` says: `jpeg:Q` (libjpeg-turbo, 4:2:0, a JFIF header only), `webp:Q` or `png`
    (Pillow, nothing but the pixels)."""
    kind, _, quality = how.partition(":")
    if kind == "jpeg":
        return _simplejpeg().encode_jpeg(np.ascontiguousarray(rgb), int(quality), colorspace="RGB",
                                         colorsubsampling="420")
    from PIL import Image as PILImage

    out = io.BytesIO()
    image = PILImage.fromarray(np.ascontiguousarray(rgb), "RGB")
    if kind == "webp":
        image.save(out, "WEBP", quality=int(quality))
    else:
        image.save(out, "PNG")
    return out.getvalue()


def codecs(exact: bool) -> dict[str, str]:
    """The versions of what makes a recipe's bytes: OpenCV for the named recipes; simplejpeg, OpenCV and Pillow for
    the general ones. A rerun with other versions is another conversion (it never resumes into this one)."""
    try:
        import cv2

        found = {"opencv": cv2.__version__}
    except ImportError:
        found = {"opencv": "missing"}
    if not exact:
        import PIL

        try:
            import simplejpeg

            found["simplejpeg"] = simplejpeg.__version__
        except ImportError:
            found["simplejpeg"] = "missing"
        found["pillow"] = PIL.__version__
    return found


# --- parsing the options ------------------------------------------------------------------------------------

_ENCODE = re.compile(r"(jpeg|webp):(\d{1,3})|png")


def parse(resize: str | None, encode_as: str | None = None, min_side: int = 0) -> Recipe | None:
    """The recipe `--resize`, `--encode` and `--min-side` name, or None without `--resize` (empty or 0: not given);
    `ConfigError` if they name none."""
    encode_as = encode_as or None
    if not resize:
        for flag, value in (("--encode", encode_as), ("--min-side", min_side)):
            if value:
                raise ConfigError(f"{flag} {value} is an option of --resize; add --resize RECIPE, or leave it out")
        return None
    name, width, height = _recipe(resize)
    if not 0 <= min_side <= 65535:
        raise ConfigError(f"--min-side must be 0 (none) to 65535 pixels, got {min_side}")
    if name in NAMED:
        if encode_as is not None:
            raise ConfigError(f"--encode {encode_as}: --resize {name} encodes as its script does (cv2.imwrite, by the "
                              "file's extension); leave --encode out, or use a general recipe (short-edge=N, ...)")
        return Recipe(name, width, height, min_side=min_side)
    return Recipe(name, width, height, _encoding(encode_as or f"jpeg:{DEFAULT_QUALITY}"), min_side)


def _recipe(spec: str) -> tuple[str, int, int]:
    if spec in NAMED:
        size = NAMED[spec][0]
        return spec, size, size
    name, _, value = spec.partition("=")
    sizes = re.fullmatch(r"(\d{1,5})x(\d{1,5})" if name == "squish" else r"(\d{1,5})", value)
    if name not in GENERAL or not sizes or not all(1 <= int(v) <= 65535 for v in sizes.groups()):
        raise ConfigError(f"--resize {spec!r} is no recipe; use {', '.join(NAMED)}, short-edge=N, max-side=N or "
                          "squish=WxH (N, W, H: 1 to 65535 pixels)")
    numbers = [int(v) for v in sizes.groups()]
    return name, numbers[0], numbers[-1]


def _encoding(spec: str) -> str:
    found = _ENCODE.fullmatch(spec)
    if not found or (found[2] is not None and not 1 <= int(found[2]) <= 100):
        raise ConfigError(f"--encode {spec!r}: use jpeg:QUALITY or webp:QUALITY (QUALITY 1 to 100), or png")
    return spec
