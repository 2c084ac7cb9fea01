"""Inputs and outputs go through fsspec: a non-local filesystem gives the same bytes as local paths."""

from __future__ import annotations

import fsspec

from conftest import convert_args, is_result, result_files, run_cli

LAYOUT = ("--train-shards", "4", "--validation-shards", "2", "--classic-threads", "2", "--quiet")


def test_memory_filesystem_inputs_and_output_match_a_local_run(sample, tmp_path):
    fs = fsspec.filesystem("memory")
    urls = {}
    for role, path in sample.items():
        urls[role] = f"memory://downloads/{path.name}"
        fs.pipe(urls[role], path.read_bytes())
    try:
        code, err = run_cli(*convert_args(urls, "memory://processed", *LAYOUT))
        assert code == 0, err
        local = tmp_path / "local"
        assert run_cli(*convert_args(sample, local, *LAYOUT))[0] == 0
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
