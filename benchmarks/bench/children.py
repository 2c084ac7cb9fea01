"""The speed benchmarks' child processes, each timed from outside: streamprep's convert with a TensorFlow probe,
the `cat` floor, the Python I/O floor, the classic procedure and TFDS's own build of imagenet2012."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from .layout import METADATA, SYNSETS, tests_importable
from .pagecache import BLOCK

# `python -c PROBE SIDE_FILE convert ...`: what `python -m streamprep convert ...` runs, then, once it returned,
# whether the conversion imported TensorFlow, written to SIDE_FILE (nothing is added to the timed work but this).
PROBE = """import sys
from streamprep.cli import main
code = main(sys.argv[2:])
with open(sys.argv[1], "w") as f:
    f.write('{"tensorflow": %s}' % ("true" if "tensorflow" in sys.modules else "false"))
sys.exit(code)
"""


def probe_launcher(side_file: Path) -> list[str]:
    """The command that starts streamprep's command line through PROBE (in place of `python -m streamprep`)."""
    return [sys.executable, "-c", PROBE, str(side_file)]


def tensorflow_imported(side_file: Path) -> bool | None:
    """What PROBE wrote into `side_file` (then removed), or None if it wrote nothing."""
    try:
        found = json.loads(side_file.read_text())["tensorflow"]
    except (OSError, ValueError, KeyError):
        return None
    side_file.unlink()
    return found


# `python -c TFDS_BUILD DATA_DIR MANUAL_DIR`: what `tfds build imagenet2012` runs, offline: TFDS's imagenet2012
# builder prepares the dataset in DATA_DIR from the image tars in MANUAL_DIR (importing TensorFlow and TFDS included).
TFDS_BUILD = """import sys
import tensorflow_datasets as tfds
data_dir, manual_dir = sys.argv[1:]
tfds.builder("imagenet2012", data_dir=data_dir).download_and_prepare(
    download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
"""


def tfds_build_cmd(data_dir: Path, manual_dir: Path) -> list[str]:
    """The command of TFDS's own build (TFDS_BUILD) into `data_dir` from the image tars in `manual_dir`."""
    return [sys.executable, "-c", TFDS_BUILD, str(data_dir), str(manual_dir)]


def cat_cmd(inputs: list[Path]) -> list[str]:
    """`cat TRAIN_TAR VAL_TAR`: the floor's command; its stdout goes to the output file."""
    return ["cat", *map(str, inputs)]


def floor_child(config: dict[str, Any]) -> None:
    """The Python I/O floor: read every input byte in 8 MB blocks; write `bytes` bytes (the shards' total) into one
    file."""
    budget = int(config["bytes"])
    buf = bytearray(BLOCK)
    view = memoryview(buf)
    os.makedirs(os.path.dirname(config["out"]), exist_ok=True)
    fd = os.open(config["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        def write(n: int) -> None:
            nonlocal budget
            n = min(n, budget)
            done = 0
            while done < n:
                done += os.write(fd, view[done:n])
            budget -= n

        for path in config["inputs"]:
            with open(path, "rb", buffering=0) as f:
                while n := f.readinto(buf):
                    write(n)
        while budget > 0:  # the shards hold more than the inputs: write the last block again
            write(BLOCK)
    finally:
        os.close(fd)


def classic_child(config: dict[str, Any]) -> None:
    """tests/classic_reference.run_classic, its steps timed by wrapping the module's functions."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    t_start = time.monotonic()
    tests_importable()
    import classic_reference as ref  # imports TensorFlow
    import tensorflow as tf

    phases: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    lock = threading.Lock()
    phases["import TensorFlow"] = time.monotonic() - t_start

    def timed_step(name_of, fn):
        def wrapper(*args, **kwargs):
            t0 = time.monotonic()
            try:
                return fn(*args, **kwargs)
            finally:
                phases[name_of(*args)] += time.monotonic() - t0
        return wrapper

    def tar_step(*args):
        archive = Path(str(args[1])).name
        if archive == Path(config["bbox"]).name:
            return "tar -xzf bbox archive"
        if archive == Path(config["val"]).name:
            return "tar -xf validation tar"
        if archive == Path(config["train"]).name:
            return "tar -xf training tar (outer)"
        counts["class tars extracted"] += 1
        return "tar -xf each class tar"

    def counted(key, fn):
        def wrapper(*args, **kwargs):
            with lock:
                counts[key] += 1
            return fn(*args, **kwargs)
        return wrapper

    ref._tar = timed_step(tar_step, ref._tar)
    ref.write_bboxes_csv = timed_step(lambda *a: "bboxes.csv (parse XML)", ref.write_bboxes_csv)
    ref.reorganize_validation = timed_step(lambda *a: "validation folders (rename)", ref.reorganize_validation)
    ref._process_dataset = timed_step(lambda name, *a: f"build {name} shards (TF, decode)", ref._process_dataset)
    ref._process_image = counted("images processed", ref._process_image)
    # The classic's _process_image decodes every JPEG (coder.decode_jpeg) to check it and read its size;
    # the reference does the same with tf.io.decode_jpeg(...).numpy(): count those decodes to show it.
    tf.io.decode_jpeg = counted("full JPEG decodes", tf.io.decode_jpeg)

    t0 = time.monotonic()
    ref.run_classic(config["train"], config["val"], config["bbox"], config["out"], work_dir=config["work"],
                    synsets_file=str(SYNSETS), metadata_file=str(METADATA),
                    validation_labels_file=config["val_labels"], train_shards=config["train_shards"],
                    validation_shards=config["validation_shards"], num_threads=config["threads"])
    total = time.monotonic() - t0
    phases["other (listing, lookups, copy)"] = total - sum(v for k, v in phases.items() if k != "import TensorFlow")
    Path(config["report"]).write_text(json.dumps({"phases": {k: round(v, 2) for k, v in phases.items()},
                                                  "counts": dict(counts)}))


CHILDREN = {"floor": floor_child, "classic": classic_child}


def child(kind: str, config: Path) -> None:
    """Run the child `kind` ("floor" or "classic") with the JSON config in the file `config`."""
    CHILDREN[kind](json.loads(Path(config).read_text()))
