"""Issue 28's read lever: records framed and hashed from `pread` into a reused buffer, or from a mapped archive.

Builds (once, cached under benchmarks/.cache/read_copy/) a plain tar of --members members of random bytes, sized like
the speed data set's JPEGs (uniform in --min-kb..--max-kb, about 120 KB on average), and the members' data offsets and
sizes. Then, with the tar in the page cache (read once before every try), each method copies every member into one
output file as a record `[header, image bytes, trailer]` (a 12-byte header and a 4-byte trailer, as TFRecord frames a
record), hashing every byte it writes with --hash (sha256 by default, as the manifest does):

  pread  `os.preadv` of the member into one reused buffer, the hash updated with header, buffer slice and trailer,
         `os.writev` of the three (the buffer's slice, no copy in Python);
  mmap   the tar mapped read-only once (`mmap.mmap`, `MADV_SEQUENTIAL`), the hash updated with header, the mapping's
         memoryview slice and trailer, `os.writev` of the three: the kernel copies the image bytes from the page cache
         straight into the output file's pages, no `pread` copy into the process;
  mmap_populate
         the same, the whole tar mapped with `MAP_POPULATE` (every page table entry made at once, instead of a
         page fault every few pages as the loop first touches them): the least the mapping's faults can cost.

Each try is a fresh process (`--child`), the methods taking turns, best of --repeats. Per method: wall seconds of the
copy loop (from inside the child: no interpreter start), its CPU seconds (user and system, `getrusage`), the child's
peak RssAnon (its anonymous memory, sampled every 10 ms from /proc by the parent; a mapped archive's clean pages are
page cache, counted in RssFile, not here) and the peak of its other resident pages (VmRSS - RssAnon: libraries and
the mapped archive's pages it touched). The output file is removed and everything
written back (`sync`) before each try, untimed; no try calls fsync.

    python benchmarks/read_copy.py [--members 4000] [--min-kb 80] [--max-kb 160] [--repeats 5] [--hash sha256]

Prints a JSON summary and a table.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import mmap
import os
import random
import resource
import subprocess
import sys
import tarfile
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any

from bench import pagecache, procs, report
from bench.layout import CACHE
from bench.report import head

METHODS = ("pread", "mmap", "mmap_populate")
HEADER, TRAILER = 12, 4  # TFRecord's framing: length and its CRC before a record, the data's CRC after it


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--members", type=int, default=4000, help="members of the generated tar")
    ap.add_argument("--min-kb", type=int, default=80, help="smallest member, KB")
    ap.add_argument("--max-kb", type=int, default=160, help="largest member, KB")
    ap.add_argument("--repeats", type=int, default=5, help="tries of each method; the best counts")
    ap.add_argument("--hash", default="sha256", help="hashlib algorithm over every byte written, or 'none'")
    ap.add_argument("--cache", type=Path, default=CACHE / "read_copy")
    ap.add_argument("--child", nargs=4, metavar=("METHOD", "TAR", "INDEX", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.repeats < 1 or args.members < 1 or not 0 < args.min_kb <= args.max_kb:
        ap.error("--repeats and --members need at least 1, and 0 < --min-kb <= --max-kb")
    if args.hash != "none":
        hashlib.new(args.hash)  # an unknown name fails here, before anything is built
    return args


# --------------------------------------------------------------------------- the data


def build(folder: Path, members: int, min_kb: int, max_kb: int) -> tuple[Path, Path]:
    """The tar of `members` random members and its index (JSON: [data offset, size] of each), built once."""
    tar, index = folder / "members.tar", folder / "index.json"
    if index.exists():
        return tar, index
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    with tarfile.open(tar.with_suffix(".part"), "w", format=tarfile.GNU_FORMAT) as out:
        for i in range(members):
            data = rng.randbytes(rng.randint(min_kb * 1000, max_kb * 1000))
            info = tarfile.TarInfo(f"n00000000_{i}.JPEG")
            info.size, info.mtime = len(data), 1_300_000_000
            out.addfile(info, io.BytesIO(data))
    with tarfile.open(tar.with_suffix(".part")) as t:
        found = [[m.offset_data, m.size] for m in t]
    tar.with_suffix(".part").rename(tar)
    index.write_text(json.dumps(found))
    return tar, index


# --------------------------------------------------------------------------- the child: one try of one method


def frame(size: int) -> tuple[bytes, bytes]:
    """A record's header and trailer (their bytes do not matter here, their sizes do)."""
    return size.to_bytes(8, "little") + b"\0" * (HEADER - 8), b"\0" * TRAILER


def write_all(fd: int, parts: list[Any]) -> None:
    """`os.writev` until every byte of `parts` is written."""
    total = sum(len(p) for p in parts)
    done = os.writev(fd, parts)
    if done < total:  # a short write (rare on a local file): the rest in one go
        rest = b"".join(bytes(p) for p in parts)[done:]
        while rest:
            rest = rest[os.write(fd, rest):]


def copy_pread(src: int, fd: int, index: list[list[int]], digest: Any) -> None:
    buf = bytearray(max(size for _, size in index))
    view = memoryview(buf)
    for offset, size in index:
        got = os.preadv(src, [view[:size]], offset)
        if got != size:
            raise SystemExit(f"short read at {offset}: {got} of {size} bytes")
        header, trailer = frame(size)
        parts = [header, view[:size], trailer]
        if digest is not None:
            for part in parts:
                digest.update(part)
        write_all(fd, parts)


def copy_mmap(src: int, fd: int, index: list[list[int]], digest: Any, populate: bool = False) -> None:
    flags = mmap.MAP_SHARED | (mmap.MAP_POPULATE if populate else 0)
    with mmap.mmap(src, 0, flags=flags, prot=mmap.PROT_READ) as mapped:
        mapped.madvise(mmap.MADV_SEQUENTIAL)
        view, parts = memoryview(mapped), []
        try:
            for offset, size in index:
                header, trailer = frame(size)
                parts = [header, view[offset:offset + size], trailer]
                if digest is not None:
                    for part in parts:
                        digest.update(part)
                write_all(fd, parts)
        finally:
            del parts
            view.release()


def child(method: str, tar: str, index_file: str, out: str, algorithm: str) -> None:
    """One try: every member framed, hashed and written into `out`; prints the loop's figures as JSON."""
    index = json.loads(Path(index_file).read_text())
    digest = None if algorithm == "none" else hashlib.new(algorithm)
    copy = {"pread": copy_pread, "mmap": copy_mmap, "mmap_populate": partial(copy_mmap, populate=True)}[method]
    src = os.open(tar, os.O_RDONLY)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    try:
        copy(src, fd, index, digest)
        wall = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        os.close(fd)
        os.close(src)
    print(json.dumps({"wall_s": wall, "user_s": r1.ru_utime - r0.ru_utime, "sys_s": r1.ru_stime - r0.ru_stime,
                      "digest": digest.hexdigest() if digest else None}))


# --------------------------------------------------------------------------- the parent: tries, turns, report


def peaks(pid: int, stop: threading.Event, found: list[int]) -> None:
    """Sample the process's memory every 10 ms until `stop`: the peaks of its RssAnon in found[0] and of the rest of
    its resident memory (file-backed pages, a mapping's included) in found[1], bytes."""
    while not stop.is_set():
        rss, anon, _ = procs.tree_memory(pid)
        found[0], found[1] = max(found[0], anon), max(found[1], rss - anon)
        stop.wait(0.01)


def one_try(method: str, tar: Path, index: Path, out: Path, algorithm: str) -> dict[str, Any]:
    out.unlink(missing_ok=True)
    os.sync()
    pagecache.warm([tar])
    p = subprocess.Popen([sys.executable, __file__, "--hash", algorithm, "--child", method, str(tar), str(index),
                          str(out)], stdout=subprocess.PIPE, text=True)
    stop, found = threading.Event(), [0, 0]
    sampler = threading.Thread(target=peaks, args=(p.pid, stop, found), daemon=True)
    sampler.start()
    text, _ = p.communicate()
    stop.set()
    sampler.join()
    if p.returncode != 0:
        raise SystemExit(f"{method} try failed (exit status {p.returncode})")
    x = json.loads(text)
    x["cpu_s"] = x["user_s"] + x["sys_s"]
    x["peak_rss_anon_mib"] = round(found[0] / 2**20, 1)
    x["peak_rss_file_mib"] = round(found[1] / 2**20, 1)
    return x


def summary(tries: list[dict[str, Any]], nbytes: int) -> dict[str, Any]:
    best = min(tries, key=lambda t: t["wall_s"])
    return {"wall_s": round(best["wall_s"], 3), "cpu_s": round(best["cpu_s"], 3), "user_s": round(best["user_s"], 3),
            "sys_s": round(best["sys_s"], 3), "cpu_s_least": round(min(t["cpu_s"] for t in tries), 3),
            "gb_per_cpu_s": round(nbytes / 1e9 / min(t["cpu_s"] for t in tries), 2),
            "wall_s_tries": [round(t["wall_s"], 3) for t in tries],
            "peak_rss_anon_mib_max": max(t["peak_rss_anon_mib"] for t in tries),
            "peak_rss_file_mib_max": max(t["peak_rss_file_mib"] for t in tries), "digest": best["digest"]}


def table(r: dict[str, Any]) -> str:
    rows = head("method", "best wall s>", "every try, s", "CPU s (best try)>", "user s>", "system s>",
                "least CPU s>", "GB a CPU-second>", "peak RssAnon MiB>", "peak resident file pages MiB>")
    for name in METHODS:
        x = r["methods"][name]
        rows.append(f"| {name} | {x['wall_s']:.3f} | {', '.join(f'{w:.3f}' for w in x['wall_s_tries'])} | "
                    f"{x['cpu_s']:.3f} | {x['user_s']:.3f} | {x['sys_s']:.3f} | {x['cpu_s_least']:.3f} | "
                    f"{x['gb_per_cpu_s']:.2f} | {x['peak_rss_anon_mib_max']:.1f} | {x['peak_rss_file_mib_max']:.1f} |")
    for name in METHODS[1:]:
        q = r["over_pread"][name]
        rows.append(f"| {name} / pread | {q['wall']:.2f}x | | | | | {q['cpu_least']:.2f}x | | | |")
    return "\n".join(rows)


def main() -> None:
    args = parse_args()
    if args.child:
        child(*args.child, args.hash)
        return
    folder = args.cache / f"m{args.members}-kb{args.min_kb}-{args.max_kb}"
    tar, index = build(folder, args.members, args.min_kb, args.max_kb)
    sizes = json.loads(index.read_text())
    nbytes = sum(size for _, size in sizes)
    tries: dict[str, list[dict[str, Any]]] = {m: [] for m in METHODS}
    for round_ in range(args.repeats):
        for method in METHODS:
            print(f"{method}, try {round_ + 1} of {args.repeats} ...", file=sys.stderr)
            tries[method].append(one_try(method, tar, index, folder / "out.bin", args.hash))
    (folder / "out.bin").unlink(missing_ok=True)
    methods = {m: summary(t, nbytes) for m, t in tries.items()}
    result = {"members": len(sizes), "image_mb": round(nbytes / 1e6, 1), "tar_mb": round(tar.stat().st_size / 1e6, 1),
              "hash": args.hash, "repeats": args.repeats, "methods": methods,
              "same_output": len({x["digest"] for x in methods.values()}) == 1,
              "over_pread": {name: {"wall": round(methods[name]["wall_s"] / methods["pread"]["wall_s"], 2),
                                    "cpu_least": round(methods[name]["cpu_s_least"] / methods["pread"]["cpu_s_least"],
                                                       2)}
                             for name in METHODS[1:]},
              "command": report.command("read_copy.py"), "date": report.date(), "machine": report.machine()}
    print(json.dumps(result, indent=1))
    print()
    print(table(result))
    if args.hash != "none" and not result["same_output"]:
        sys.exit("the two methods wrote different bytes")


if __name__ == "__main__":
    main()
