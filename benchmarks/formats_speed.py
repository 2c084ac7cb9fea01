"""Every trainer's format from one read: each format alone, and all five in one run, against TFRecord alone.

Builds (once, cached under benchmarks/.cache/speed/, shared with speed.py) the speed data set: ImageNet-shaped
downloads of RGB noise JPEGs of 300-500 px a side holding the classic's fix-up files under their real names
(bench/data.py's `build()`). Then it times, warm (the archives read just before each try), best of --repeats
tries each, the tries taking turns round by round so that noise on this shared machine hits every side:

  tfrecord        `streamprep convert` with the default format (the classic's TFRecord shards);
  parquet, mds, litdata, webdataset
                  the same with `--format NAME` alone;
  all             `--format tfrecord,parquet,mds,litdata,webdataset`: one read of the downloads, five formats;
  floor-one, floor-all
                  no conversion: what writing one format's output, and the five's, costs at least here. The images'
                  bytes (once, or five times) written 125 KB at a time into as many shard files by two forked
                  processes, every byte hashed with the manifest's default checksum (xxh3-128) as the writers hash it
                  (and one copy of the five also with sha1 and xxh64, as MDS's index.json lists them); nothing read,
                  framed or encoded.

Each side is a subprocess whose whole process tree is sampled every 50 ms for resident memory (bench/procs.py: RSS,
a forked worker's pages shared with its parent counted in each) and here for anonymous memory (RssAnon from
/proc/PID/status, summed the same way: no file-backed library pages); its CPU seconds are the tree's user + system
time, the steadier figure on a shared machine (the least of the tries is shown). Targets (issue 25): each new format
alone within 10% of TFRecord alone; all five at most 3x TFRecord alone; peak memory unchanged (each side's peak over
TFRecord alone's).

    python benchmarks/formats_speed.py [--classes 100] [--images-per-class 190] [--val-images 1000]
                                       [--repeats 3] [--write-docs docs/performance.md]
    python benchmarks/formats_speed.py --from-json SUMMARY --write-docs docs/performance.md
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import threading
from functools import partial
from pathlib import Path
from typing import Any

from bench import data, pagecache, procs, report, tries
from bench.layout import ARCHIVES, CACHE, VAL_LABELS
from bench.timing import ratio
from streamprep.outputs.checksum import DEFAULT as DEFAULT_CHECKSUM

SECTION = "## Every trainer's format from one read (benchmarks/formats_speed.py)"
SIDES = {"tfrecord": [], "parquet": ["--format", "parquet"], "mds": ["--format", "mds"],
         "litdata": ["--format", "litdata"], "webdataset": ["--format", "webdataset"],
         "all": ["--format", "tfrecord,parquet,mds,litdata,webdataset"]}
NEW = ("parquet", "mds", "litdata")
FLOORS = {"floor-one": 1, "floor-all": 5}  # sides that only hash and write: the images' bytes, this many times
PIECE = 125_000  # bytes a write in a floor side: about an image
# Published times of the libraries' own converters for ImageNet's training set (issue 25 quotes them)
PUBLISHED = [("MosaicML streaming's ImageNet converter (MDS)", "49 min 49 s, training set"),
             ("LitData `optimize` (from an extracted tree; its README)", "10 min 5 s"),
             ("FFCV's writer (ffcv #400)", "over 6 hours"),
             ("Hugging Face `datasets` loading script (parquet)", "about 1,755 examples/s")]


class TreeSampler(procs.Sampler):
    """`procs.Sampler`, and the peak of the tree's anonymous memory: RssAnon summed over its processes."""

    def __init__(self, pid: int, folders: list[Path]) -> None:
        self.peak_anon = 0
        super().__init__(pid, folders)
        self.threads.append(threading.Thread(target=self._anon, daemon=True))
        self.threads[-1].start()

    def _anon(self) -> None:
        while not self.stop.is_set():
            self.peak_anon = max(self.peak_anon, sum(rss_anon(pid) for pid in process_tree(self.pid)))
            self.stop.wait(procs.RSS_EVERY)

    def finish(self) -> dict[str, Any]:
        return {**super().finish(), "peak_rss_anon_mb": round(self.peak_anon / 1e6, 1)}


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants living now."""
    kids, todo, found = procs._children(), [root], []
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(kids.get(pid, ()))
    return found


def rss_anon(pid: int) -> int:
    """A process's resident anonymous bytes (RssAnon), 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"RssAnon:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def write_floor(out: Path, nbytes: int, copies: int, shards: int, workers: int = 2) -> None:
    """`copies` outputs of `nbytes` each, `shards` files a copy, written `PIECE` bytes at a time by `workers` forked
    processes (as convert's writers), every byte hashed with the manifest's default checksum; of five copies, one also
    with sha1 and xxh64."""
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(copy, k) for copy in range(copies) for k in range(shards)]
    pids = []
    for w in range(workers):
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                floor_worker(out, jobs[w::workers], nbytes // shards, copies)
                status = 0
            finally:
                os._exit(status)
        pids.append(pid)
    if any(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids):
        sys.exit("a floor worker failed")


def floor_worker(out: Path, jobs: list[tuple[int, int]], size: int, copies: int) -> None:
    """One floor writer's files ((copy, shard) pairs), `size` bytes each, from one random piece written over again."""
    import xxhash

    from streamprep.outputs import checksum

    piece = memoryview(os.urandom(PIECE))
    for copy, k in jobs:
        digests = [checksum.hasher(checksum.DEFAULT)] + ([hashlib.sha1(), xxhash.xxh64()]
                                                         if copies == 5 and copy == 2 else [])
        with open(out / f"{copy}-{k:05d}", "wb") as f:
            for at in range(0, size, PIECE):
                chunk = piece[:min(PIECE, size - at)]
                f.write(chunk)
                for digest in digests:
                    digest.update(chunk)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data.add_arguments(ap, classes=100, per_class=190, val_images=1000)
    ap.add_argument("--repeats", type=int, default=3, help="tries of each side; the best counts")
    ap.add_argument("--train-shards", type=int, default=128)
    ap.add_argument("--validation-shards", type=int, default=16)
    ap.add_argument("--cache", type=Path, default=CACHE / "speed")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds allowed per try")
    ap.add_argument("--write-docs", type=Path, metavar="PATH", help=f"append or replace the section '{SECTION}'")
    ap.add_argument("--from-json", type=Path, metavar="SUMMARY",
                    help="measure nothing: write the --write-docs section from a saved JSON summary")
    ap.add_argument("--floor", nargs=4, metavar=("OUT", "BYTES", "COPIES", "SHARDS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.from_json and not args.write_docs:
        ap.error("--from-json needs --write-docs PATH")
    if args.repeats < 1:
        ap.error("--repeats needs at least 1 try")
    return args


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    r = result["ratios"]
    found = [{"target": f"--format {name} alone within 10% of TFRecord alone",
              "measured": f"{r[f'{name}_over_tfrecord']}x (CPU {r[f'{name}_cpu_over_tfrecord']}x)",
              "met": r[f"{name}_over_tfrecord"] <= 1.10} for name in NEW]
    found.append({"target": "all five formats in one run at most 3x TFRecord alone",
                  "measured": f"{r['all_over_tfrecord']}x (CPU {r['all_cpu_over_tfrecord']}x)",
                  "met": r["all_over_tfrecord"] <= 3.0})
    anon = {name: r[f"{name}_anon_over_tfrecord"] for name in SIDES if name != "tfrecord"}
    found.append({"target": "peak memory unchanged (the tree's RssAnon, each side over TFRecord alone's, within 5%)",
                  "measured": ", ".join(f"{name} {x}x" for name, x in anon.items()),
                  "met": max(anon.values()) <= 1.05})
    return found


def least_cpu(run: dict[str, Any]) -> float:
    """The least CPU seconds (user + system, the whole tree) of a side's tries."""
    return min(t["cpu_s"] for t in run["tries"])


def most_anon(run: dict[str, Any]) -> float:
    """The highest peak RssAnon (MB, the whole tree) of a side's tries."""
    return max(t["peak_rss_anon_mb"] for t in run["tries"])


def tables(result: dict[str, Any]) -> list[str]:
    runs, r = result["runs"], result["ratios"]
    rows = [*report.head("side", "command's --format", "best wall s", "MB/s", "images/s", "over TFRecord",
                        "CPU s", "CPU over TFRecord", "peak RSS MB", "RSS over TFRecord", "peak RssAnon MB",
                        "RssAnon over TFRecord", "outputs MB")]
    what = {**{name: extra[1] if extra else "tfrecord (default)" for name, extra in SIDES.items()},
            **{name: f"none: the images' bytes {n}x, hashed ({DEFAULT_CHECKSUM}) and written"
               for name, n in FLOORS.items()}}
    for name in [*SIDES, *FLOORS]:
        x = runs[name]
        rows.append(f"| {name} | {what[name]} | {x['wall_s']} | {x['mb_per_s']} | "
                    f"{x['images_per_s']} | {r.get(f'{name}_over_tfrecord', 1.0)} | {least_cpu(x)} | "
                    f"{r.get(f'{name}_cpu_over_tfrecord', 1.0)} | {x['peak_rss_mb_max']} | "
                    f"{r.get(f'{name}_rss_over_tfrecord', 1.0)} | {most_anon(x)} | "
                    f"{r.get(f'{name}_anon_over_tfrecord', 1.0)} | {x['outputs_mb']} |")
    goals = [*report.head("target", "measured", "met")] + [
        f"| {t['target']} | {t['measured']} | {report.mark(t['met'])} |" for t in result["targets"]]
    return ["\n".join(rows), "\n".join(goals)]


def render(result: dict[str, Any], doc: Path) -> None:
    scale = result["scale"]
    result["targets"] = targets(result)
    spread = result["runs"]["tfrecord"]["wall_s_tries"]
    text = [SECTION, "",
            f"Measured {result['date']} on {result['machine'].get('nproc', '?')} cores "
            f"(`{result['command']}`): {scale['images']:,} JPEGs ({scale['archive_mb']} MB of archives, "
            f"{result['layout']['train_shards']}/{result['layout']['validation_shards']} shards), warm page cache, "
            f"best of {result['repeats']} tries each, the sides taking turns. The machine is shared with other "
            f"people's work and noisy (TFRecord alone's tries took {min(spread):.1f} to {max(spread):.1f} s): a wall "
            "ratio compares two best tries that may have met different loads; the CPU seconds (the least of the "
            "tries: user + system time of the whole process tree) are the steadier figure. Peak memory is the whole "
            "tree's, sampled every 50 ms (the highest of the tries): RSS, and RssAnon (anonymous pages only: no "
            "library code); a forked worker's pages shared with its parent count in each.", "",
            *(t + "\n" for t in tables(result)), "",
            "The libraries' own converters, as published (full ImageNet training set, from an extracted tree):", "",
            *(f"- {who}: {took}" for who, took in PUBLISHED), ""]
    report.write_docs(doc, "\n".join(text) + "\n", SECTION)
    print(f"\nwrote the section '{SECTION}' in {doc}")


def main() -> None:
    args = parse_args()
    if args.floor:  # a floor side's command (see the module docstring)
        out, nbytes, copies, shards = args.floor
        write_floor(Path(out), int(nbytes), int(copies), int(shards))
        return
    if args.from_json:
        render(json.loads(args.from_json.read_text()), args.write_docs)
        return
    folder, meta = data.from_args(args.cache, args, data.SPEED_SIZE_RANGE)
    inputs = [folder / n for n in ARCHIVES]
    input_bytes = sum(p.stat().st_size for p in inputs)
    runs = args.cache / "format-runs"
    runs.mkdir(parents=True, exist_ok=True)
    layout = ["--train-shards", str(args.train_shards), "--validation-shards", str(args.validation_shards),
              "--classic-threads", "8", "--quiet"]
    # each try's output is measured, then removed: six outputs of the speed data set do not fit every disk
    sides = [tries.Side(name, procs.convert_cmd(*inputs, runs / name, folder / VAL_LABELS, *layout, *extra),
                        runs / name, args.repeats, partial(lambda out: procs.disk_use([out])[0], runs / name),
                        after=partial(lambda out, _: shutil.rmtree(out, ignore_errors=True), runs / name))
             for name, extra in SIDES.items()]
    shards = str(args.train_shards + args.validation_shards)
    sides += [tries.Side(name, [sys.executable, __file__, "--floor", str(runs / name), str(meta["image_bytes"]),
                                str(copies), shards], runs / name, args.repeats,
                         partial(lambda out: procs.disk_use([out])[0], runs / name),
                         after=partial(lambda out, _: shutil.rmtree(out, ignore_errors=True), runs / name))
              for name, copies in FLOORS.items()]
    result: dict[str, Any] = {
        "scale": {**data.scale_summary(meta), "archive_mb": round(input_bytes / 1e6, 1)},
        "layout": {"train_shards": args.train_shards, "validation_shards": args.validation_shards},
        "repeats": args.repeats}
    procs.Sampler = TreeSampler  # every try's tree sampled for its anonymous memory too
    try:
        result["runs"] = tries.run(sides, "warm", partial(pagecache.warm, inputs), meta["images"], input_bytes,
                                   args.timeout, runs)
    except tries.Failed as e:
        print(json.dumps({**result, "failed": {"error": str(e), **e.figures}}, indent=1))
        sys.exit(1)
    figures = {"": {n: x["wall_s"] for n, x in result["runs"].items()},
               "_cpu": {n: least_cpu(x) for n, x in result["runs"].items()},
               "_rss": {n: x["peak_rss_mb_max"] for n, x in result["runs"].items()},
               "_anon": {n: most_anon(x) for n, x in result["runs"].items()}}
    result["ratios"] = {f"{n}{kind}_over_tfrecord": ratio(of[n], of["tfrecord"])
                        for kind, of in figures.items() for n in [*SIDES, *FLOORS] if n != "tfrecord"}
    report.publish(result, "formats_speed.py", targets, tables, render, args.cache / "formats-last.json",
                   args.write_docs)
    for side in sides:
        shutil.rmtree(side.folder, ignore_errors=True)


if __name__ == "__main__":
    main()
