"""Speed against the classic procedure and the I/O floor, in one run on the same generated downloads.

Builds (once, cached under benchmarks/.cache/speed/) ImageNet-shaped downloads with remote.py's
`build()`: a training tar of per-class tars, a validation tar and a bounding-box .tar.gz, holding
RGB noise JPEGs of 300-500 px a side (about 120 KB each). Then, with the three archives read once
beforehand so every run finds them in the page cache (nothing is dropped; `sync` runs, untimed,
before each run so one run's writeback does not land in the next), it times three runs, each a
subprocess whose whole process tree is sampled for RSS (every 50 ms, /proc) and whose folders are
sampled for disk use (st_blocks, every 100 ms or less often when a walk gets slow):

  streamprep  `python -m streamprep convert` on the three archives, default workers;
  floor       a Python loop that reads every byte of the three archives in 8 MB blocks and writes
              as many bytes as streamprep's shards hold into one file (no fsync, like the others);
  classic     tests/classic_reference.py's `run_classic`: real `tar` extraction of the three
              archives and of every class tar, bboxes.csv, the validation folders, then the
              threaded TensorFlow build (8 threads) that decodes every JPEG fully, as the classic's
              `_process_image` does; its phases are timed by wrapping the reference's functions.

All three use the same shard layout: the classic 1024/128 shards with 8 threads when the scale
allows it, a smaller layout otherwise. The classic's and streamprep's shards are then compared
record for record (parsed features, per shard name) and bboxes.csv byte for byte. Finally it times
walking the headers of the nested training tar with Python's tarfile (outer tar, then each class
tar through `extractfile` + `tarfile.open(fileobj=...)`) against streamprep's walk
(`archives.Source`, `members`, `inner_members`), one thread each, same warm tar.

    python benchmarks/speed.py [--classes 100] [--images-per-class 190] [--val-images 1000]
                               [--skip-classic] [--write-docs docs/performance.md]

Prints a JSON summary and a table; --write-docs replaces (or appends) the section
'## Speed against the classic procedure (benchmarks/speed.py)' in that Markdown file and saves the
bar chart of the three wall times as speed.png next to it. Each run saves its JSON summary as
benchmarks/.cache/speed/last.json; `--from-json SUMMARY --write-docs PATH` re-renders the section and
chart from such a summary without measuring anything.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
import remote  # noqa: E402  (benchmarks/remote.py: build(), noise_jpeg(), machine())

DATA = ROOT / "streamprep/data"
SYNSETS = DATA / "imagenet_lsvrc_2015_synsets.txt"
METADATA = DATA / "imagenet_metadata.txt"
TRAIN_TAR, VAL_TAR, BBOX_TARGZ, VAL_LABELS = remote.TRAIN_TAR, remote.VAL_TAR, remote.BBOX_TARGZ, remote.VAL_LABELS
ARCHIVES = (TRAIN_TAR, VAL_TAR, BBOX_TARGZ)
SIZE_RANGE = (300, 500)
SECTION = "## Speed against the classic procedure (benchmarks/speed.py)"
CHART = "speed.png"
BLOCK = 8 << 20
RSS_EVERY, DISK_EVERY = 0.05, 0.1
TARGETS = {"classic_speedup": 15.0, "floor_ratio": 2.0, "extra_disk_pct": 1.0, "walk_speedup": 30.0}


# --------------------------------------------------------------------------- sampling a run

def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = defaultdict(list)
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2:].split()  # after "pid (comm) "
        kids[int(fields[1])].append(int(name))
    return kids


PAGE = os.sysconf("SC_PAGE_SIZE")


def tree_rss(root: int) -> tuple[int, int]:
    """Resident bytes summed over `root` and all its descendants, and how many processes that is."""
    kids, todo, total, count = _children(), [root], 0, 0
    while todo:
        pid = todo.pop()
        try:
            with open(f"/proc/{pid}/statm", "rb") as f:
                total += int(f.read().split()[1]) * PAGE
            count += 1
        except (OSError, IndexError, ValueError):
            pass
        todo.extend(kids.get(pid, ()))
    return total, count


def disk_use(paths: list[Path]) -> tuple[int, int]:
    """(allocated bytes as du counts them, files) under `paths`."""
    total = files = 0
    todo = [str(p) for p in paths if p.exists()]
    while todo:
        try:
            it = os.scandir(todo.pop())
        except OSError:
            continue
        with it:
            for e in it:
                try:
                    st = e.stat(follow_symlinks=False)
                except OSError:
                    continue
                total += st.st_blocks * 512
                if e.is_dir(follow_symlinks=False):
                    todo.append(e.path)
                else:
                    files += 1
    return total, files


def fs_used(path: Path) -> int:
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


class Sampler:
    """Peak tree RSS (every 50 ms) and peak disk use of some folders (every 100 ms, or less often if a walk
    is slow: at most ~5% of one core), plus the file system's used bytes (statvfs, every 100 ms)."""

    def __init__(self, pid: int, folders: list[Path]) -> None:
        self.pid, self.folders = pid, folders
        self.peak_rss = self.max_procs = self.peak_disk = self.disk_samples = self.rss_samples = 0
        self.fs_base = fs_used(ROOT)
        self.fs_peak = self.fs_base
        self.walk_s: list[float] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._rss, daemon=True),
                        threading.Thread(target=self._disk, daemon=True),
                        threading.Thread(target=self._fs, daemon=True)]
        for t in self.threads:
            t.start()

    def _rss(self) -> None:
        while not self.stop.is_set():
            rss, procs = tree_rss(self.pid)
            self.peak_rss, self.max_procs = max(self.peak_rss, rss), max(self.max_procs, procs)
            self.rss_samples += 1
            self.stop.wait(RSS_EVERY)

    def _disk(self) -> None:
        while not self.stop.is_set():
            t0 = time.monotonic()
            self.peak_disk = max(self.peak_disk, disk_use(self.folders)[0])
            took = time.monotonic() - t0
            self.walk_s.append(took)
            self.disk_samples += 1
            self.stop.wait(max(DISK_EVERY, 20 * took))

    def _fs(self) -> None:
        while not self.stop.is_set():
            self.fs_peak = max(self.fs_peak, fs_used(ROOT))
            self.stop.wait(DISK_EVERY)

    def finish(self) -> dict[str, Any]:
        self.stop.set()
        for t in self.threads:
            t.join()
        final, files = disk_use(self.folders)  # one last exact walk, after the run ended
        self.peak_disk = max(self.peak_disk, final)
        return {"peak_rss_mb": round(self.peak_rss / 1e6, 1), "max_processes": self.max_procs,
                "rss_samples": self.rss_samples, "peak_disk_bytes": self.peak_disk, "final_disk_bytes": final,
                "final_files": files, "disk_samples": self.disk_samples,
                "slowest_disk_walk_s": round(max(self.walk_s, default=0), 3),
                "fs_used_delta_peak_bytes": self.fs_peak - self.fs_base}


def timed(cmd: list[str], folders: list[Path], timeout: float, log: Path) -> dict[str, Any]:
    """Run `cmd` with its stderr to `log`, sampling its tree; wall time, exit status, peaks."""
    for f in folders:
        shutil.rmtree(f, ignore_errors=True)
    os.sync()  # untimed: the previous run's dirty pages are not this run's writeback
    with open(log, "wb") as err:
        t0 = time.monotonic()
        p = subprocess.Popen(cmd, cwd=ROOT, stdout=err, stderr=subprocess.STDOUT)
        sampler = Sampler(p.pid, folders)
        timer = threading.Timer(timeout, p.kill)
        timer.start()
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.monotonic() - t0
        timer.cancel()
        p.returncode = os.waitstatus_to_exitcode(status)
    # (wait4's ru_maxrss is not used: the forked child starts with this process's high-water mark)
    out = {"wall_s": wall, "returncode": p.returncode, **sampler.finish(),
           "cpu_s": round(usage.ru_utime + usage.ru_stime, 1)}
    if p.returncode != 0:
        out["log_tail"] = log.read_text(errors="replace")[-3000:]
        sys.stderr.write(out["log_tail"])
    return out


def warm(paths: list[Path]) -> float:
    """Read every byte once so the runs find the archives in the page cache; seconds it took."""
    t0 = time.monotonic()
    buf = bytearray(BLOCK)
    for path in paths:
        with open(path, "rb", buffering=0) as f:
            while f.readinto(buf):
                pass
    return time.monotonic() - t0


# --------------------------------------------------------------------------- the child processes

def floor_child(config: dict[str, Any]) -> None:
    """Read every input byte in 8 MB blocks; write `bytes` bytes (the shards' total) into one file."""
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
    sys.path.insert(0, str(ROOT / "tests"))
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


# --------------------------------------------------------------------------- the header walk

def walk_tarfile(path: Path) -> tuple[int, int]:
    import tarfile

    outer_n = inner_n = 0
    with tarfile.open(path, "r:") as outer:
        for m in outer:
            outer_n += 1
            if m.isfile() and m.name.endswith(".tar"):
                with tarfile.open(fileobj=outer.extractfile(m), mode="r:") as inner:
                    for _ in inner:
                        inner_n += 1
    return outer_n, inner_n


def walk_streamprep(path: Path) -> tuple[int, int]:
    from streamprep.archives.storage import Source
    from streamprep.archives.walk import inner_members, members

    source = Source(str(path))
    outer_n = inner_n = 0
    try:
        for m in members(source):
            outer_n += 1
            if m.is_file and m.name.endswith(".tar"):
                for _ in inner_members(source, m):
                    inner_n += 1
    finally:
        source.close()
    return outer_n, inner_n


def header_walk(path: Path, repeats: int) -> dict[str, Any]:
    import tarfile

    from streamprep.archives import storage as archives

    assert tarfile and archives  # both imported before timing

    times: dict[str, list[float]] = {"tarfile": [], "streamprep": []}
    counts = {}
    for _ in range(repeats):  # alternated, so noise on the shared machine hits both
        for name, fn in (("tarfile", walk_tarfile), ("streamprep", walk_streamprep)):
            t0 = time.perf_counter()
            counts[name] = fn(path)
            times[name].append(time.perf_counter() - t0)
    assert counts["tarfile"] == counts["streamprep"], counts
    best = {k: min(v) for k, v in times.items()}
    return {"members": {"outer": counts["tarfile"][0], "inner": counts["tarfile"][1]}, "repeats": repeats,
            "tarfile_s": round(best["tarfile"], 4), "streamprep_s": round(best["streamprep"], 4),
            "tarfile_median_s": round(statistics.median(times["tarfile"]), 4),
            "streamprep_median_s": round(statistics.median(times["streamprep"]), 4),
            "speedup": round(best["tarfile"] / best["streamprep"], 1),
            "speedup_median": round(statistics.median(times["tarfile"]) / statistics.median(times["streamprep"]), 1)}


# --------------------------------------------------------------------------- comparing the outputs

def shard_names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(("train-", "validation-")))


def compare_records(mine: Path, theirs: Path) -> dict[str, Any]:
    """Every shard of both folders parsed; records compared by their parsed features, in order."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, str(ROOT / "tests"))
    from classic_reference import read_examples

    a, b = shard_names(mine), shard_names(theirs)
    out: dict[str, Any] = {"shards": len(a), "same_shard_names": a == b, "records": 0, "differing": []}
    for name in sorted(set(a) & set(b)):
        x, y = read_examples(mine / name), read_examples(theirs / name)
        out["records"] += len(x)
        if len(x) != len(y):
            out["differing"].append(f"{name}: {len(x)} records against {len(y)}")
            continue
        for i, (r, s) in enumerate(zip(x, y)):
            if r.features != s.features:  # protobuf equality: the parsed feature maps, not the bytes
                out["differing"].append(f"{name} record {i}")
                break
    out["bboxes_csv_identical"] = (mine / "bboxes.csv").read_bytes() == (theirs / "bboxes.csv").read_bytes()
    out["identical_records"] = out["same_shard_names"] and not out["differing"] and out["bboxes_csv_identical"]
    out["differing"] = out["differing"][:10]
    return out


# --------------------------------------------------------------------------- report

def output_bytes(folder: Path) -> dict[str, int]:
    """Apparent and allocated bytes of the final outputs: shards and bboxes.csv."""
    files = [p for p in folder.iterdir() if p.is_file() and (p.name == "bboxes.csv" or "-of-" in p.name)]
    shards = [p for p in files if "-of-" in p.name]
    return {"bytes": sum(p.stat().st_size for p in files), "allocated": sum(p.stat().st_blocks * 512 for p in files),
            "shard_bytes": sum(p.stat().st_size for p in shards), "files": len(files)}


def mark(met: bool | None) -> str:
    return "not measured" if met is None else ("**met**" if met else "**not met**")


def targets(r: dict[str, Any]) -> list[dict[str, Any]]:
    sp, walk = r["streamprep"], r["header_walk"]
    speedup = r["ratios"].get("classic_over_streamprep")
    rows = [
        {"target": f"end to end at least {TARGETS['classic_speedup']:g}x faster than the classic procedure",
         "measured": f"{speedup:.1f}x" if speedup else "classic skipped",
         "met": None if speedup is None else speedup >= TARGETS["classic_speedup"]},
        {"target": f"wall time at most {TARGETS['floor_ratio']:g}x the I/O floor",
         "measured": f"{r['ratios']['streamprep_over_floor']:.2f}x",
         "met": r["ratios"]["streamprep_over_floor"] <= TARGETS["floor_ratio"]},
        {"target": f"peak extra disk at most {TARGETS['extra_disk_pct']:g}% of the final outputs",
         "measured": f"{sp['extra_disk_mb']:,.1f} MB = {sp['extra_disk_pct']:.2f}% of {sp['outputs_mb']:,.0f} MB",
         "met": sp["extra_disk_pct"] <= TARGETS["extra_disk_pct"]},
        {"target": f"walking the nested training tar's headers at least {TARGETS['walk_speedup']:g}x faster "
                   "than Python's tarfile",
         "measured": f"{walk['speedup']:.1f}x", "met": walk["speedup"] >= TARGETS["walk_speedup"]},
    ]
    return rows


def runs_table(r: dict[str, Any]) -> str:
    rows = ["| run | wall s | images/s | MB/s of input | peak RSS, process tree (MB) | peak extra disk (MB) | "
            "final outputs (MB) | CPU s |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    labels = {"classic": "classic procedure (tar, bboxes.csv, folders, TF build, 8 threads)",
              "streamprep": "`streamprep convert` (default workers)",
              "floor": "I/O floor (read the inputs, write the shards' bytes)"}
    for key in ("classic", "streamprep", "floor"):
        x = r.get(key)
        if not x:
            rows.append(f"| {labels[key]} | not run | | | | | | |")
            continue
        rows.append(f"| {labels[key]} | {x['wall_s']:.2f} | {x['images_per_s']:,.0f} | {x['mb_per_s']:,.0f} | "
                    f"{x['peak_rss_mb']:,.0f} | {x['extra_disk_mb']:,.1f} | {x['outputs_mb']:,.0f} | "
                    f"{x['cpu_s']:.1f} |")
    return "\n".join(rows)


def ratios_table(r: dict[str, Any]) -> str:
    rt = r["ratios"]
    rows = ["| ratio | value |", "| --- | ---: |"]
    if rt.get("classic_over_streamprep"):
        rows.append(f"| classic / streamprep wall time | **{rt['classic_over_streamprep']:.1f}x** |")
    rows.append(f"| streamprep / I/O floor wall time | **{rt['streamprep_over_floor']:.2f}x** |")
    if rt.get("classic_over_floor"):
        rows.append(f"| classic / I/O floor wall time | {rt['classic_over_floor']:.1f}x |")
    w = r["header_walk"]
    rows.append(f"| header walk: tarfile / streamprep ({w['members']['outer']:,} class tars, "
                f"{w['members']['inner']:,} images; best of {w['repeats']}: {w['tarfile_s']:.3f} s / "
                f"{w['streamprep_s']:.3f} s) | **{w['speedup']:.1f}x** (median {w['speedup_median']:.1f}x) |")
    return "\n".join(rows)


def targets_table(r: dict[str, Any]) -> str:
    rows = ["| target | measured | |", "| --- | --- | --- |"]
    for t in r["targets"]:
        rows.append(f"| {t['target']} | {t['measured']} | {mark(t['met'])} |")
    return "\n".join(rows)


def phases_table(phases: dict[str, float], wall: float) -> str:
    rows = ["| classic step | s | share of wall |", "| --- | ---: | ---: |"]
    for name, s in phases.items():
        rows.append(f"| {name} | {s:.1f} | {100 * s / wall:.0f}% |")
    return "\n".join(rows)


def chart(r: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [k for k in ("classic", "streamprep", "floor") if r.get(k)]
    labels = {"classic": "classic procedure", "streamprep": "streamprep convert", "floor": "I/O floor"}
    walls = [r[k]["wall_s"] for k in names]
    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=110)
    bars = ax.barh([labels[k] for k in names], walls, color=["#b0413e", "#2f6f9f", "#7a7a7a"][:len(names)])
    for bar, wall in zip(bars, walls):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {wall:.1f} s", va="center")
    ax.invert_yaxis()
    ax.set_xlim(0, max(walls) * 1.18)
    ax.set_xlabel("wall time, seconds (shorter is better)")
    s = r["scale"]
    ax.set_title(f"{s['images']:,} JPEGs ({s['archive_mb']:,.0f} MB of downloads), "
                 f"{r['layout']['train_shards']}/{r['layout']['validation_shards']} shards", fontsize=10)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def section(r: dict[str, Any], chart_name: str | None) -> str:
    s, m, lay = r["scale"], r["machine"], r["layout"]
    cl = r.get("classic")
    text = [SECTION, "",
            f"One run, same generated downloads: {s['classes']} classes x {s['images_per_class']} training images + "
            f"{s['val_images']:,} validation images ({s['images']:,} RGB noise JPEGs of {s['size_range'][0]}-"
            f"{s['size_range'][1]} px a side, {s['jpeg_kb']['mean']:.0f} KB on average; {s['archive_mb']:,.0f} MB of "
            f"archives, {s['xml_files']:,} XML files), converted to {lay['train_shards']}/"
            f"{lay['validation_shards']} shards, cut where the classic's {lay['threads']} threads cut them.",
            "The classic procedure is `tests/classic_reference.py`'s `run_classic`: the real `tar` command extracts "
            "the three archives and every class tar, bboxes.csv is written from the XML, the validation images are "
            "moved into synset folders, then TensorFlow builds the shards with 8 threads, decoding every JPEG "
            f"fully as the classic's `_process_image` does ({cl['counts'].get('full JPEG decodes', 0):,} decodes "
            "counted)." if cl else "The classic procedure was skipped (`--skip-classic`).",
            "The header walk runs in this process, one thread each, on the warm training tar: tarfile opens the outer "
            "tar and each class tar (`extractfile` + `tarfile.open(fileobj=...)`) in mode `r:` (no compression "
            "sniffing, its fastest), streamprep walks them with `archives.members` and `inner_members`.",
            "The I/O floor reads every byte of the three archives in 8 MB blocks and writes as many bytes as the "
            "shards hold into one file. Each run is a subprocess; the archives were read once before the runs, so "
            "all three find them in the page cache (nothing dropped, no run calls fsync; `sync` runs, untimed, "
            "before each run). Peak RSS is the sum over the run's whole process tree (the classic's `tar` "
            "children included), sampled every 50 ms; extra disk is what the run's folders hold beyond the final "
            "shards and bboxes.csv (the classic's extraction folder; streamprep's `.streamprep/` index and "
            "`manifest.json`), sampled every 100 ms and once after the run.",
            "", runs_table(r), "", ratios_table(r), ""]
    if cl:
        ident = r["identity"]
        text += [f"Shards compared record for record (parsed features, per shard name): "
                 f"**identical_records: {'true' if ident['identical_records'] else 'false'}** "
                 f"({ident['shards']:,} shards, {ident['records']:,} records; bboxes.csv "
                 f"{'byte-identical' if ident['bboxes_csv_identical'] else 'DIFFERENT'}).", ""]
    text += ["Targets:", "", targets_table(r), ""]
    if chart_name:
        text += [f"![wall time of the three runs]({chart_name})", ""]
    if cl:
        ph = cl["phases"]
        build = sum(v for k, v in ph.items() if k.startswith("build "))
        untar = sum(v for k, v in ph.items() if k.startswith("tar "))
        text += ["Where the classic spends its time (its steps, timed inside the run; it deletes nothing, so its "
                 f"peak disk is its final footprint, {cl['work_mb']:,.0f} MB of extracted files beside the shards):",
                 "", phases_table(ph, cl["wall_s"]), "",
                 f"Building the shards (TensorFlow decoding every JPEG, 8 threads on {m['nproc']} CPUs) takes "
                 f"{build:.1f} s, {100 * build / cl['wall_s']:.0f}% of the classic's wall time; extracting with `tar` "
                 f"{untar:.1f} s ({100 * untar / cl['wall_s']:.0f}%)."]
        bound = r["ratios"].get("classic_over_floor")
        if bound is not None and bound < TARGETS["classic_speedup"]:
            text[-1] += (f" The I/O floor itself is only {bound:.1f}x faster than the classic here, so on this machine "
                         f"and at this scale no run that reads the downloads and writes the shards can reach the "
                         f"{TARGETS['classic_speedup']:g}x target.")
        text += [""]
    text += ["```bash", r["command"], "```", "",
             f"Measured {r['date']} on {m['nproc']} CPUs, {m['mem_total_gib']} GiB memory, {m['system']}, "
             f"Python {m['python']}; shared machine, so the ratios measured in this one run are what to compare.",
             ""]
    return "\n".join(text)


# --------------------------------------------------------------------------- main

def render(result: dict[str, Any], doc: Path) -> None:
    """The section in `doc` and the chart next to it."""
    png = doc.parent / CHART
    png.parent.mkdir(parents=True, exist_ok=True)
    chart(result, png)
    remote.write_docs(doc, section(result, CHART), SECTION)
    print(f"\nwrote the section '{SECTION}' in {doc} and the chart {png}")


def layout_for(train_images: int, val_images: int, args: argparse.Namespace) -> dict[str, int]:
    if args.train_shards:
        return {"train_shards": args.train_shards, "validation_shards": args.validation_shards or 8,
                "threads": args.threads}
    if train_images >= 8 * 1024 and val_images >= 4 * 128:  # the classic's layout, a few images a shard
        return {"train_shards": 1024, "validation_shards": 128, "threads": 8}
    return {"train_shards": 16, "validation_shards": 8, "threads": 8}


def finish_run(x: dict[str, Any], out: Path, images: int, input_bytes: int, outputs: dict[str, int]) -> None:
    x["wall_s"] = round(x["wall_s"], 2)
    x["images_per_s"] = round(images / x["wall_s"], 1)
    x["mb_per_s"] = round(input_bytes / 1e6 / x["wall_s"], 1)
    x["outputs_mb"] = round(outputs["allocated"] / 1e6, 1)
    extra = max(0, x["peak_disk_bytes"] - outputs["allocated"])
    x["extra_disk_mb"] = round(extra / 1e6, 2)
    x["extra_disk_pct"] = round(100 * extra / outputs["allocated"], 3) if outputs["allocated"] else None
    x["fs_used_delta_peak_mb"] = round(x.pop("fs_used_delta_peak_bytes") / 1e6, 1)
    x["peak_disk_mb"] = round(x.pop("peak_disk_bytes") / 1e6, 1)
    x["final_disk_mb"] = round(x.pop("final_disk_bytes") / 1e6, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--classes", type=int, default=100, help="training classes (the first N synsets)")
    ap.add_argument("--images-per-class", type=int, default=190)
    ap.add_argument("--val-images", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-classic", action="store_true", help="time streamprep and the floor only")
    ap.add_argument("--train-shards", type=int, help="layout override (default: 1024/128/8 if the scale allows)")
    ap.add_argument("--validation-shards", type=int)
    ap.add_argument("--threads", type=int, default=8, help="the classic's threads, with --train-shards")
    ap.add_argument("--walk-repeats", type=int, default=5)
    ap.add_argument("--cache", type=Path, default=HERE / ".cache/speed")
    ap.add_argument("--keep-outputs", action="store_true", help="keep the run folders under the cache")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds allowed per run")
    ap.add_argument("--write-docs", type=Path, metavar="PATH",
                    help=f"append or replace the section '{SECTION}' in this Markdown file, and save {CHART} "
                         "next to it")
    ap.add_argument("--from-json", type=Path, metavar="SUMMARY",
                    help="measure nothing: re-render the --write-docs section and chart from a saved JSON summary "
                         "(each run saves its own as benchmarks/.cache/speed/last.json)")
    ap.add_argument("--child", nargs=2, metavar=("KIND", "CONFIG"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, config = args.child
        {"floor": floor_child, "classic": classic_child}[kind](json.loads(Path(config).read_text()))
        return
    if args.from_json:
        if not args.write_docs:
            ap.error("--from-json needs --write-docs PATH")
        render(json.loads(args.from_json.read_text()), args.write_docs)
        return

    folder = args.cache / (f"c{args.classes}-i{args.images_per_class}-v{args.val_images}-s{args.seed}"
                           f"-px{SIZE_RANGE[0]}-{SIZE_RANGE[1]}")
    built = (folder / "done.json").exists()
    meta = remote.build(folder, args.classes, args.images_per_class, args.val_images, args.seed, SIZE_RANGE)
    print(f"downloads {'cached' if built else 'built'} in {folder} ({meta['images']:,} JPEGs, "
          f"build {meta['build_s']} s)", file=sys.stderr)
    inputs = [folder / n for n in ARCHIVES]
    labels = folder / VAL_LABELS
    input_bytes = sum(p.stat().st_size for p in inputs)
    images = meta["images"]
    lay = layout_for(meta["train_images"], meta["val_images"], args)
    runs = args.cache / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "scale": {**{k: meta[k] for k in ("classes", "images_per_class", "val_images", "train_images", "images",
                                          "xml_files", "image_bytes", "jpeg_kb", "archive_bytes")},
                  "size_range": list(SIZE_RANGE), "archive_mb": round(input_bytes / 1e6, 1)},
        "layout": lay}

    result["warm_s"] = round(warm(inputs), 2)
    print("header walk: tarfile against streamprep ...", file=sys.stderr)
    warm([inputs[0]])
    result["header_walk"] = header_walk(inputs[0], args.walk_repeats)

    # streamprep
    sp_dir = runs / "streamprep"
    sp_cmd = [sys.executable, "-m", "streamprep", "convert", "--train", str(inputs[0]), "--val", str(inputs[1]),
              "--bbox", str(inputs[2]), "--validation-labels-file", str(labels), "--out", str(sp_dir),
              "--train-shards", str(lay["train_shards"]), "--validation-shards", str(lay["validation_shards"]),
              "--classic-threads", str(lay["threads"]), "--quiet"]
    print("timing streamprep ...", file=sys.stderr)
    warm(inputs)
    sp = timed(sp_cmd, [sp_dir], args.timeout, runs / "streamprep.log")
    ok = sp["returncode"] == 0
    if not ok:
        print(json.dumps(sp, indent=1))
        sys.exit(1)
    sp_out = output_bytes(sp_dir)
    finish_run(sp, sp_dir, images, input_bytes, sp_out)
    sp["command"] = shlex.join(sp_cmd)
    result["streamprep"] = sp

    # the I/O floor: the same input bytes read, the shards' bytes written
    floor_dir = runs / "floor"
    floor_cfg = runs / "floor.json"
    floor_cfg.write_text(json.dumps({"inputs": [str(p) for p in inputs], "out": str(floor_dir / "out.bin"),
                                     "bytes": sp_out["shard_bytes"]}))
    print("timing the I/O floor ...", file=sys.stderr)
    warm(inputs)
    fl = timed([sys.executable, str(Path(__file__).resolve()), "--child", "floor", str(floor_cfg)], [floor_dir],
               args.timeout, runs / "floor.log")
    ok = fl["returncode"] == 0
    if ok:
        fl_written = (floor_dir / "out.bin").stat()
        fl["bytes_written"] = fl_written.st_size
        finish_run(fl, floor_dir, images, input_bytes, {"allocated": fl_written.st_blocks * 512})
    result["floor"] = fl
    shutil.rmtree(floor_dir, ignore_errors=True)

    # the classic
    cl = None
    if not args.skip_classic and ok:
        cl_dir = runs / "classic"
        cl_cfg = runs / "classic.json"
        cl_cfg.write_text(json.dumps({"train": str(inputs[0]), "val": str(inputs[1]), "bbox": str(inputs[2]),
                                      "out": str(cl_dir / "processed"), "work": str(cl_dir / "work"),
                                      "val_labels": str(labels), "report": str(runs / "classic-report.json"),
                                      "train_shards": lay["train_shards"],
                                      "validation_shards": lay["validation_shards"], "threads": lay["threads"]}))
        print("timing the classic procedure ...", file=sys.stderr)
        warm(inputs)
        cl = timed([sys.executable, str(Path(__file__).resolve()), "--child", "classic", str(cl_cfg)], [cl_dir],
                   args.timeout, runs / "classic.log")
        ok = cl["returncode"] == 0
        if ok:
            finish_run(cl, cl_dir, images, input_bytes, output_bytes(cl_dir / "processed"))
            cl.update(json.loads((runs / "classic-report.json").read_text()))
            cl["work_mb"] = round(disk_use([cl_dir / "work"])[0] / 1e6, 1)
            print("comparing the shards record for record ...", file=sys.stderr)
            result["identity"] = compare_records(sp_dir, cl_dir / "processed")
            result["identical_records"] = result["identity"]["identical_records"]
        result["classic"] = cl

    ratios: dict[str, Any] = {}
    if ok:
        ratios["streamprep_over_floor"] = round(sp["wall_s"] / fl["wall_s"], 2)
        if cl:
            ratios["classic_over_streamprep"] = round(cl["wall_s"] / sp["wall_s"], 2)
            ratios["classic_over_floor"] = round(cl["wall_s"] / fl["wall_s"], 2)
    ratios["header_walk_tarfile_over_streamprep"] = result["header_walk"]["speedup"]
    result["ratios"] = ratios
    argv = " ".join(shlex.quote(a) for a in sys.argv[1:])
    result["command"] = "python benchmarks/speed.py" + (f" {argv}" if argv else "")
    result["date"] = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    result["machine"] = remote.machine()
    if ok:
        result["targets"] = targets(result)

    print(json.dumps(result, indent=1))
    if ok:
        print()
        print(runs_table(result))
        print()
        print(ratios_table(result))
        print()
        print(targets_table(result))
        if cl:
            print()
            print(phases_table(cl["phases"], cl["wall_s"]))
    if ok:
        (args.cache / "last.json").write_text(json.dumps(result, indent=1))
    if args.write_docs and ok:
        render(result, args.write_docs)
    if not args.keep_outputs:
        for name in ("streamprep", "classic", "floor"):
            shutil.rmtree(runs / name, ignore_errors=True)
    if not ok or (cl and not result.get("identical_records")):
        sys.exit(1)


if __name__ == "__main__":
    main()
