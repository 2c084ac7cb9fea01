"""What the tests share besides fixtures: the repository's paths, the one small shard layout, running the CLI
in-process, and the files a conversion writes.

The fixtures (the sample downloads, its conversions, the classic reference run, the S3 and HTTP servers) are in
conftest.py, which pytest loads for every test module; the servers themselves are in servers.py.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "streamprep" / "data"
SYNSETS = DATA / "imagenet_lsvrc_2015_synsets.txt"
METADATA = DATA / "imagenet_metadata.txt"

# The layout of every test that converts the sample without testing a layout: 4 training shards, 2 validation
# shards, the classic's --num_threads 2. Small, so that a run writes 6 shards, not the default 1024 + 128.
SMALL_OPTIONS = {"train_shards": 4, "validation_shards": 2, "classic_threads": 2}  # as `Options` takes them
SMALL_LAYOUT = ("--train-shards", "4", "--validation-shards", "2", "--classic-threads", "2")  # as `convert` takes them
assert SMALL_LAYOUT == tuple(x for k, v in SMALL_OPTIONS.items() for x in (f"--{k.replace('_', '-')}", str(v)))

# Fake credentials for moto's S3 server, and where an S3 client that was not given --storage-option's endpoint
# goes: a closed local port, so that such a client fails on this machine (after botocore's own retries, ~10 s)
# instead of reaching out to the real AWS.
AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
NOWHERE = "http://127.0.0.1:9"


def run_cli(*argv: object) -> tuple[int, str]:
    """Run `streamprep` in-process; returns (exit status, stderr text)."""
    from streamprep.cli import main

    err = io.StringIO()
    code = main([str(a) for a in argv], stderr=err)
    return code, err.getvalue()


def run_cli_out(*argv: object) -> tuple[int, str, str]:
    """Run `streamprep` in-process; returns (exit status, stdout text, stderr text)."""
    from streamprep.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = main([str(a) for a in argv], stderr=err, stdout=out)
    return code, out.getvalue(), err.getvalue()


def run_python(code: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Python code in a fresh interpreter (so that `sys.modules[name] = None` hides an installed package, or so that
    what it imports is seen alone); tests/ is on its path, as here."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=timeout)


def killed_at(command: list[str], condition: Callable[[list[str]], bool], proxy: Any) -> str:
    """Run `command` with each of `proxy`'s requests delayed 0.15 s (slow enough to be killed between two shards),
    SIGKILL it once `condition(the lines it printed so far)` holds; what it printed. Fails if it ends first or the
    point does not come within 120 s."""
    proxy.delay = 0.15
    lines: list[str] = []
    proc = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True).start()  # its progress lines
    deadline = time.monotonic() + 120
    try:
        while not condition(lines):
            assert proc.poll() is None, f"the run ended before the kill point: {''.join(lines)[-2000:]}"
            assert time.monotonic() < deadline, "the kill point never came"
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        proxy.delay = 0.0
    assert proc.returncode == -signal.SIGKILL
    return "".join(lines)


def convert_args(paths: dict[str, object], out: object, *extra: object) -> list[object]:
    """`convert` of the downloads in `paths` (train, val, bbox, val_labels: paths or URLs) into `out`."""
    return ["convert", "--train", paths["train"], "--val", paths["val"], "--bbox", paths["bbox"],
            "--validation-labels-file", paths["val_labels"], "--out", out, *extra]


SMALL = ("--train-shards", "2", "--validation-shards", "1", "--classic-threads", "1")  # a tiny data set's layout


def convert_small(paths: dict[str, object], out: object, *extra: object) -> tuple[int, str]:
    """`convert_args` of tiny downloads in the `SMALL` layout, quiet, run in-process: (exit status, stderr text)."""
    return run_cli(*convert_args(paths, out, *SMALL, "--quiet", *extra))


def is_result(name: str) -> bool:
    """Shards and bboxes.csv: the files that must be byte-identical between runs (not manifest.json, whose
    paths and time differ, nor the hidden .streamprep/ state)."""
    return not name.startswith(".") and name != "manifest.json"


def result_files(folder: Path) -> dict[str, bytes]:
    """File name -> bytes of the results (`is_result`) in `folder`."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and is_result(p.name)}


def same_but_out(manifest: bytes, out: str, other: bytes, other_out: str) -> bool:
    """Manifests equal byte for byte once `options.out` (the only field naming the output folder) is swapped."""
    assert json.loads(manifest)["options"]["out"] == out
    return manifest.replace(json.dumps(out).encode(), json.dumps(other_out).encode(), 1) == other


# --------------------------------------------------------------------------------------------- Apache Beam

# Beam checks every element against the pipeline's type hints as it runs: a hint that says something other than
# what flows fails a test on any Beam version (Beam 2.78 started checking side inputs against them).
TYPE_CHECKED = ("--runtime_type_check",)


def options_for(sample: dict[str, Path], out: Path):
    """The options of `--engine beam` converting the sample into `out` at the small layout."""
    from streamprep.options import make_options

    return make_options({"train": str(sample["train"]), "val": str(sample["val"]), "bbox": str(sample["bbox"]),
                         "validation_labels_file": str(sample["val_labels"]), "out": str(out), **SMALL_OPTIONS,
                         "engine": "beam"})


# --------------------------------------------------------------------------------------------- fix-up JPEGs
# TensorFlow is the judge of the fix-ups (tests/test_fixups*.py); it is imported only where it is used.

def tensorflow_cmyk(data: bytes) -> bytes:
    """What the classic's TensorFlow graph makes of a CMYK JPEG: decoded, then encoded as an RGB JPEG of quality 100."""
    import tensorflow as tf

    return tf.io.encode_jpeg(tf.io.decode_jpeg(data, channels=0), format="rgb", quality=100).numpy()


def picture(rng, height: int, width: int, channels: int):
    """Smooth areas and sharp noise, like a photograph's mix of both (pure noise hides rounding differences): a
    uint8 array of (height, width, channels) from the numpy Generator `rng`."""
    import numpy as np

    coarse = rng.integers(0, 256, (max(1, height // 8), max(1, width // 8), channels), dtype=np.uint8)
    smooth = np.repeat(np.repeat(coarse, 8, 0), 8, 1)[:height, :width]
    smooth = np.pad(smooth, ((0, height - smooth.shape[0]), (0, width - smooth.shape[1]), (0, 0)), mode="edge")
    noise = rng.integers(-20, 21, smooth.shape)
    return np.clip(smooth.astype(int) + noise, 0, 255).astype(np.uint8)


def first_scan_end(data: bytes) -> int:
    """Where a JPEG's first scan header ends (its entropy-coded data starts)."""
    sos = data.index(b"\xff\xda")
    return sos + 2 + int.from_bytes(data[sos + 2:sos + 4], "big")


def damage(data: bytes, draw, start: int, end: int) -> bytes:
    """`data` with one byte in [start, end) changed, both drawn by hypothesis's `draw` (`st.data()`)."""
    from hypothesis import strategies as st

    at = draw.draw(st.integers(start, end - 1))
    return data[:at] + bytes([data[at] ^ draw.draw(st.integers(1, 255))]) + data[at + 1:]
