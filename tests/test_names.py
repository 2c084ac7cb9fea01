"""The one checked function for paths built from archive names: any name either passes as one plain
component that stays inside its folder, or is refused with streamprep's own error (property-tested)."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamprep.errors import ArchiveError
from streamprep.outputs.names import NAME_MAX, component, local_path

TRICKY = st.sampled_from(["", ".", "..", "...", "/", "\\", "\0", "a/..", "../a", "a\\b", "\u2028", "\n", "x" * 255,
                          "x" * 256, "é" * 128, "é" * 127, "\udcff", ".hidden", "con", "a\0b"])
NAMES = st.one_of(TRICKY, st.text(max_size=300), st.text(alphabet="./\\\0ab\u2028", max_size=12))


@settings(max_examples=400, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=NAMES)
def test_a_name_is_one_plain_component_inside_its_folder_or_refused(tmp_path, name):
    base = str(tmp_path / "base")
    try:
        checked = component(name, "a.tar!m")
    except ArchiveError as e:
        assert "a.tar!m" in str(e)
        return
    assert checked == name and checked not in ("", ".", "..")
    assert "/" not in checked and "\\" not in checked and "\0" not in checked
    assert len(checked.encode("utf-8", "surrogateescape")) <= NAME_MAX
    path = local_path(base, ["folder", checked], "a.tar!m")
    assert os.path.dirname(path) == os.path.join(base, "folder")
    assert os.path.commonpath([base, os.path.abspath(path)]) == base
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path.encode("utf-8", "surrogateescape"), "wb") as f:  # the file system takes it
        f.write(b"x")


@pytest.mark.parametrize("parts", [["a", ".."], ["..", "a"], ["a/b"], [""], ["a", "b\0"]])
def test_local_path_checks_every_part(tmp_path, parts):
    with pytest.raises(ArchiveError):
        local_path(str(tmp_path), parts, "ref")


def test_a_path_over_the_file_system_limit_is_refused(tmp_path):
    with pytest.raises(ArchiveError, match="over 4096 bytes"):
        local_path(str(tmp_path), ["x" * 200] * 25, "ref")
