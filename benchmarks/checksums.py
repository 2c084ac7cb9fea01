"""What the manifest's checksum costs: CPU seconds per GB of sha256, sha1, BLAKE3 (one thread and all), xxh3-128, xxh64.

Hashes the same bytes (random, made once in memory) fed in pieces of an image's size (110 KB, as a shard writer
hands them over: the `--piece` default) and of 1 MiB (as verify and resume read a file back), each algorithm the
best of --repeats tries of --megabytes MB, the algorithms taking turns round by round so that noise on a shared
machine hits every one. CPU time is the process's (`time.process_time`), which for BLAKE3 on all threads adds the
threads' time up; the wall time is shown beside it, and is what BLAKE3's threads save. Prints a markdown table
(docs/verify.md, "The manifest's checksum", quotes it).

With `--convert DOWNLOADS` (a folder of the three downloads and `validation_labels.txt`, such as the speed data set
`speed.py` caches under benchmarks/.cache/speed/), it then converts them with each `--checksum` in turn, warm (the
downloads read just before each try), into a new folder made under `--out` (removed afterwards), and prints each run's
CPU seconds (the process tree's user + system) and wall seconds, and the best of each.

    python benchmarks/checksums.py [--megabytes 512] [--repeats 5] [--piece 110000]
                                   [--convert DOWNLOADS --out DIR --convert-repeats 4]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import blake3
import xxhash

MiB = 1 << 20


def algorithms() -> dict[str, Callable[[], Any]]:
    """Each side by name: a factory of hashlib-like objects (update, hexdigest)."""
    return {"sha256": hashlib.sha256, "sha1": hashlib.sha1,
            f"BLAKE3 1 thread (blake3 {blake3.__version__})": blake3.blake3,
            f"BLAKE3 all threads ({os.cpu_count()})": lambda: blake3.blake3(max_threads=blake3.blake3.AUTO),
            f"xxh3-128 (xxhash {xxhash.VERSION})": xxhash.xxh3_128, "xxh64": xxhash.xxh64}


def one_try(make: Callable[[], Any], pieces: list[memoryview]) -> tuple[float, float]:
    """(CPU seconds, wall seconds) to hash the pieces with one new object."""
    cpu, wall = time.process_time(), time.perf_counter()
    h = make()
    for piece in pieces:
        h.update(piece)
    h.hexdigest()
    return time.process_time() - cpu, time.perf_counter() - wall


def measure(data: bytes, piece: int, repeats: int) -> dict[str, tuple[float, float]]:
    """Each algorithm's best (CPU, wall) seconds per GB over `repeats` rounds, `data` fed `piece` bytes at a time."""
    view = memoryview(data)
    pieces = [view[i:i + piece] for i in range(0, len(data), piece)]
    best: dict[str, tuple[float, float]] = {}
    for _ in range(repeats):
        for name, make in algorithms().items():
            cpu, wall = one_try(make, pieces)
            old = best.get(name, (float("inf"), float("inf")))
            best[name] = (min(old[0], cpu), min(old[1], wall))
    gb = len(data) / 1e9
    return {name: (cpu / gb, wall / gb) for name, (cpu, wall) in best.items()}


def table(results: dict[int, dict[str, tuple[float, float]]]) -> str:
    """The markdown table: CPU s/GB and wall s/GB for each piece size, and CPU relative to sha256's."""
    sizes = sorted(results)
    head = ["algorithm"] + [f"{label} {size // 1000 if size % MiB else size // MiB} {'KB' if size % MiB else 'MiB'}"
                            for size in sizes for label in ("CPU s/GB,", "wall s/GB,")] + ["CPU vs sha256 (image-sized)"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    image = sizes[0]
    for name in results[image]:
        cells = [f"{results[s][name][k]:.3f}" for s in sizes for k in (0, 1)]
        share = results[image][name][0] / results[image]["sha256"][0]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {share:.2f} |")
    return "\n".join(lines)


def convert_once(downloads: Path, out: Path, checksum: str) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one warm `streamprep convert --checksum checksum` into a fresh `out`."""
    shutil.rmtree(out, ignore_errors=True)
    for path in sorted(downloads.iterdir()):  # warm: the downloads in the page cache
        with open(path, "rb") as f:
            while f.read(8 << 20):
                pass
    command = [sys.executable, "-m", "streamprep", "convert", str(downloads), "--validation-labels-file",
               str(downloads / "validation_labels.txt"), "--out", str(out), "--train-shards", "128",
               "--validation-shards", "16", "--checksum", checksum, "--quiet"]
    before, started = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    subprocess.run(command, check=True)
    wall, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_CHILDREN)
    shutil.rmtree(out, ignore_errors=True)
    return after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, wall


def conversions(downloads: Path, under: Path | None, repeats: int) -> None:
    """Each checksum's conversion of `downloads`, `repeats` tries taking turns, into a new folder made under `under`
    (the system's temporary folder by default) and removed after; every try, then the best."""
    best: dict[str, tuple[float, float]] = {}
    work = Path(tempfile.mkdtemp(prefix="checksums-", dir=under))
    try:
        for k in range(repeats):
            for checksum in ("xxh3-128", "sha256"):
                cpu, wall = convert_once(downloads, work / "out", checksum)
                print(f"try {k}: --checksum {checksum}: CPU {cpu:.2f} s, wall {wall:.2f} s", flush=True)
                old = best.get(checksum, (float("inf"), float("inf")))
                best[checksum] = (min(old[0], cpu), min(old[1], wall))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for checksum, (cpu, wall) in best.items():
        print(f"best: --checksum {checksum}: CPU {cpu:.2f} s, wall {wall:.2f} s")



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=512, help="bytes hashed a try (default 512 MB)")
    parser.add_argument("--repeats", type=int, default=5, help="tries of each algorithm; the best is kept")
    parser.add_argument("--piece", type=int, default=110_000, help="bytes of an image-sized piece (default 110,000)")
    parser.add_argument("--convert", type=Path, metavar="DOWNLOADS", help="also convert these downloads with each "
                        "--checksum (a folder of the three downloads and validation_labels.txt)")
    parser.add_argument("--out", type=Path, help="the folder under which --convert makes its own (removed after; "
                        "default: the system's temporary folder)")
    parser.add_argument("--convert-repeats", type=int, default=4, help="tries of each conversion; the best is kept")
    args = parser.parse_args()
    data = os.urandom(args.megabytes * 1_000_000)
    results = {size: measure(data, size, args.repeats) for size in (args.piece, MiB)}
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor()) if os.path.exists("/proc/cpuinfo") else platform.processor()
    print(f"{args.megabytes} MB a try, best of {args.repeats}; {cpu}, {os.cpu_count()} CPUs; "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    print(table(results))
    if args.convert:
        print()
        conversions(args.convert, args.out, args.convert_repeats)


if __name__ == "__main__":
    main()
