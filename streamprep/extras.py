"""The optional packages (pip extras) a command needs, all checked at once before any work or write.

A conversion may need an fsspec backend for each URL it reads or writes (`s3://` needs s3fs, ...),
array-record for `--format tfds --file-format array_record`, and Apache Beam for `--engine beam`;
`verify --decode` needs TensorFlow. Each is found here (`importlib.util.find_spec`, nothing imported
but fsspec's backend classes), so a missing one stops the command before it opens a download, walks
an index or creates `--out`, with one line naming every missing package and the extras to install.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any, Iterable

from .errors import MissingDependencyError

GZIPPED_TARS = (".tar.gz", ".tgz")  # a --train or --val so named is read with rapidgzip (archives.gzipped)
# Which package, and which pip extra of streamprep, brings the fsspec backend a URL scheme needs.
BACKENDS = {"s3": ("s3fs", "s3"), "s3a": ("s3fs", "s3"), "gs": ("gcsfs", "gcs"), "gcs": ("gcsfs", "gcs"),
            "http": ("aiohttp", "http"), "https": ("aiohttp", "http")}


@dataclass(frozen=True)
class Need:
    """One optional package: what it is imported as, its pip name, the extra that installs it, who asks for it."""

    module: str  # e.g. array_record.python.array_record_module (None in sys.modules counts as missing)
    package: str  # the name pip installs, e.g. array-record
    extra: str | None  # streamprep[extra], or None when no extra of streamprep brings it
    why: str  # what needs it, as the user wrote it: "--engine beam", "s3://bucket/x.tar"
    protocol: str | None = None  # an fsspec backend's protocol: found through fsspec's registry

    def installed(self) -> bool:
        if self.protocol is not None:
            return _backend_installed(self.protocol, self.why)
        try:
            return importlib.util.find_spec(self.module) is not None
        except (ImportError, ValueError):  # a parent package missing (or set to None in sys.modules)
            return False


def _protocol(url: str) -> str:
    return url.split("://", 1)[0] if "://" in url else "file"


def _backend_installed(protocol: str, why: str) -> bool:
    import fsspec

    try:
        fsspec.get_filesystem_class(protocol)
    except ImportError:
        return False
    except ValueError:  # no backend at all is known for it: a mistyped scheme, not a missing package
        raise MissingDependencyError(f"{why}: unknown URL scheme '{protocol}://'; use a path or a URL fsspec "
                                     "knows (s3://, gs://, https://, ...)") from None
    return True


def for_urls(urls: Iterable[tuple[str, str | None]]) -> list[Need]:
    """The fsspec backends these (flag, path or URL) pairs need, one a protocol (local paths need none)."""
    needs, seen = [], set()
    for flag, url in urls:
        if not url or _protocol(url) in ("file", "local") or _protocol(url) in seen:
            continue
        protocol = _protocol(url)
        seen.add(protocol)
        package, extra = BACKENDS.get(protocol, (f"the fsspec backend for '{protocol}://'", None))
        needs.append(Need(package, package, extra, f"{flag} {url}".strip(), protocol=protocol))
    return needs


def for_convert(options: Any) -> list[Need]:
    """What `convert` (and `plan`, which reports what convert would do) needs for these `Options`."""
    needs = for_urls((f"--{name.replace('_', '-')}", getattr(options, name)) for name in (
        "train", "val", "bbox", "out", "labels_file", "metadata_file", "validation_labels_file"))
    needs += [Need(*need) for need in options.format_needs()]  # array-record for TFDS's ArrayRecord files
    needs += [Need("rapidgzip", "rapidgzip", "gzip", f"--{key} {url}") for key, url in  # a gzipped tar read in place
              (("train", options.train), ("val", options.val)) if url and url.lower().endswith(GZIPPED_TARS)]
    if getattr(options, "resize", None):  # records.resize: OpenCV decodes, resamples and encodes
        needs.append(Need("cv2", "opencv-python-headless", "resize", f"--resize {options.resize}"))
    if str(options.engine) == "beam":
        needs.append(Need("apache_beam", "apache-beam", "beam", "--engine beam"))
    return needs


def for_verify(out: str, decode: bool) -> list[Need]:
    """What `verify` needs: the output's backend, and TensorFlow to decode (`--decode`)."""
    needs = for_urls([("", out)])
    if decode:
        needs.append(Need("tensorflow", "tensorflow", "tensorflow", "verify --decode (TensorFlow's own decoder)"))
    return needs


def check(needs: Iterable[Need]) -> None:
    """Raise one `MissingDependencyError` naming every package of `needs` that is not installed, and what to
    install."""
    missing = [n for n in needs if not n.installed()]
    if not missing:
        return
    said = "; ".join(f"{n.why} needs {n.package}" for n in missing)
    extras = sorted({n.extra for n in missing if n.extra})
    others = [n.package for n in missing if not n.extra]
    how = [f"install streamprep[{','.join(extras)}] (pip install 'streamprep[{','.join(extras)}]')"] if extras else []
    how += [f"install {name}" for name in others]
    which = "which is" if len(missing) == 1 else "which are"
    raise MissingDependencyError(f"{said}, {which} not installed; {' and '.join(how)}, then run the command again")


__all__ = ["Need", "check", "for_convert", "for_urls", "for_verify"]
