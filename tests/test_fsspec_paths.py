"""Inputs and outputs go through fsspec: a non-local filesystem gives the same bytes as local paths."""

from __future__ import annotations

import fsspec

from helpers import SMALL_LAYOUT, convert_args, is_result, result_files, run_cli


def test_memory_filesystem_inputs_and_output_match_a_local_run(sample, converted_sample):
    fs = fsspec.filesystem("memory")
    urls = {}
    for role, path in sample.items():
        urls[role] = f"memory://downloads/{path.name}"
        fs.pipe(urls[role], path.read_bytes())
    try:
        code, err = run_cli(*convert_args(urls, "memory://processed", *SMALL_LAYOUT, "--quiet"))
        assert code == 0, err
        local = converted_sample  # the same conversion of the local files
        remote = {p.rsplit("/", 1)[1]: fs.cat(p) for p in fs.ls("/processed", detail=False)}
        assert "manifest.json" in remote
        remote = {name: data for name, data in remote.items() if is_result(name)}
        assert sorted(remote) == sorted(result_files(local))
        assert len(remote) == 4 + 2 + 1
        for name, data in remote.items():
            assert data == (local / name).read_bytes(), name
    finally:
        fs.rm("/downloads", recursive=True)
        if fs.exists("/processed"):
            fs.rm("/processed", recursive=True)
