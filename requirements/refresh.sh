#!/usr/bin/env bash
# Regenerates requirements/test.lock, the test environment README's second command installs, from
# pyproject.toml's `test` extra: every package pinned, resolved by uv for CPython 3.11 on x86_64 Linux.
# Run it on purpose (a dependency to move, a new judge), run the suite with the new lock, commit both.
#   pip install uv && requirements/refresh.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# triton is left out: torch imports it only for torch.compile, which no test uses (0.9 GB).
uv pip compile pyproject.toml --extra test --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
    --constraint requirements/caps.txt --override requirements/overrides.txt --no-emit-package triton \
    --custom-compile-command "requirements/refresh.sh" --output-file requirements/test.lock "$@"
