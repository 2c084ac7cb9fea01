"""The one checked function that turns names taken from an archive into local paths to write.

Every name an archive holds is untrusted, and so is everything derived from it (a class folder is
a class tar's name without `.tar`; a validation folder is a synset from the labels file). Each
such name must be one plain path component: not empty, not `.` or `..`, no `/`, `\\` or NUL, and
short enough for the file system. `component` checks one; `local_path` joins checked components
under a base folder, and is the only way `materialize` builds a path.
"""

from __future__ import annotations

import os

from ..errors import ArchiveError

NAME_MAX = 255  # bytes of one path component on Linux, macOS and Windows file systems (ext4, APFS, NTFS)
PATH_MAX = 4096  # bytes of a whole path on Linux
MAX_DEPTH = 64  # components of a path below its base: real archives nest two or three folders


def component(name: str, ref: str) -> str:
    """`name` if it is one plain path component, else an `ArchiveError` naming `ref` (archive!member)."""
    if name in ("", ".", ".."):
        raise ArchiveError(f"{ref}: gives the path component {name!r}, which is no file name; streamprep refuses to "
                           "write it (it could land outside its folder). Repack the archive")
    if "/" in name or "\\" in name:
        raise ArchiveError(f"{ref}: gives the path component {name!r}, which holds a path separator; streamprep "
                           "refuses to write it. Repack the archive")
    if "\0" in name:
        raise ArchiveError(f"{ref}: the name holds a NUL character, which no file system accepts; repack the archive")
    size = len(name.encode("utf-8", "surrogateescape"))
    if size > NAME_MAX:
        raise ArchiveError(f"{ref}: a name of {size} bytes, over the {NAME_MAX} bytes a file system allows; extraction "
                           "would fail too. Repack the archive with shorter names")
    return name


def local_path(base: str, parts: list[str], ref: str) -> str:
    """`base/part/part/...` with every part checked by `component`; `base` is trusted (the user chose it)."""
    if len(parts) > MAX_DEPTH:
        raise ArchiveError(f"{ref}: a path {len(parts)} folders deep, more than the {MAX_DEPTH} streamprep writes "
                           "(the ImageNet archives nest two or three); the archive is corrupt or hostile")
    path = os.path.join(base, *(component(p, ref) for p in parts))
    if len(path.encode("utf-8", "surrogateescape")) > PATH_MAX:
        raise ArchiveError(f"{ref}: its path under {base} would be over {PATH_MAX} bytes, more than the file system "
                           "allows; choose a shorter --materialize folder or repack the archive")
    return path
