"""`--engine beam` on Beam's Dask runner (a local dask.distributed cluster) or the DirectRunner: wall time and
the peak RSS of every process of the run (VmHWM, sampled every 0.2 s from /proc).

    python benchmarks/dask_fullscale.py dask 2 benchmarks/.cache/fullscale /tmp/out       # 2 Dask worker processes
    python benchmarks/dask_fullscale.py direct 2 benchmarks/.cache/speed/c100-... /tmp/out  # DirectRunner, 2 processes

DATA is a folder holding the three downloads (benchmarks/fullscale.py or speed.py build them) and, if
present, validation_labels.txt. Prints one JSON line: runner, workers, exit code, wall seconds and the
largest peaks (MiB), largest first.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from pathlib import Path


def peak_mib(pid: int) -> int | None:
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) // 1024
    except OSError:
        return None
    return None


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (Dask starts its workers from an event-loop thread, so /proc/PID/children of the
    main thread does not list them: the parent of every process is read instead)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parents[int(entry)] = int(open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        kids = [child for child, parent in parents.items() if parent == current]
        found += kids
        todo += kids
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runner", choices=["dask", "direct"])
    ap.add_argument("workers", type=int)
    ap.add_argument("data", type=Path)
    ap.add_argument("out")
    args = ap.parse_args()
    peaks: dict[int, int] = {}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            for pid in [os.getpid(), *descendants(os.getpid())]:
                value = peak_mib(pid)
                if value:
                    peaks[pid] = max(peaks.get(pid, 0), value)
            time.sleep(0.2)

    threading.Thread(target=sample, daemon=True).start()
    labels = args.data / "validation_labels.txt"
    command = ["convert", "--train", str(args.data / "ILSVRC2012_img_train.tar"),
               "--val", str(args.data / "ILSVRC2012_img_val.tar"),
               "--bbox", str(args.data / "ILSVRC2012_bbox_train_v2.tar.gz"), "--out", args.out, "--engine", "beam",
               "--quiet", *(["--validation-labels-file", str(labels)] if labels.exists() else []), "--"]
    from streamprep.cli import main as streamprep

    started = time.time()
    if args.runner == "dask":
        from distributed import Client, LocalCluster

        with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster, Client(cluster):
            code = streamprep(command + ["--runner=apache_beam.runners.dask.dask_runner.DaskRunner",
                                         f"--dask_client_address={cluster.scheduler_address}"])
    else:
        code = streamprep(command + ["--direct_running_mode=multi_processing", f"--direct_num_workers={args.workers}"])
    wall = time.time() - started
    stop.set()
    print(json.dumps({"runner": args.runner, "workers": args.workers, "code": code, "wall_s": round(wall, 1),
                      "peak_mib_by_process": sorted(peaks.values(), reverse=True)[:8]}))


if __name__ == "__main__":
    main()
