"""Remote reading: streamprep reading the downloads over HTTP with added latency, against local disk.

Builds (once, cached) a synthetic ImageNet-shaped download set of real ~100 KB JPEGs (bench/data.py;
the classic's fix-up files are in it when their classes are), serves its folder with a small threaded
HTTP/1.1 server on 127.0.0.1 that sleeps LATENCY before answering each request (HEAD and single
`Range: bytes=a-b` GETs, 206 + Content-Range), then runs the same `streamprep convert` twice, on local
paths and on http:// URLs, checks that both outputs are the same (every file but manifest.json and the
hidden .streamprep/ state byte for byte, manifest.json less the fields naming the sources and the output
folder; the differing files named) and reports wall time, images/s, MB/s of image data, the remote/local
throughput ratio and the HTTP requests and bytes the remote run cost. It then replays those requests
with fsspec alone in a fresh process (the transfer floor: no fsspec client making them is faster here).

    python benchmarks/remote.py [--classes 40] [--images-per-class 50] [--val-images 500]
                                [--latency-ms 20] [--workers N] [--phases] [--write-docs PATH]

--phases adds a third, untimed remote run without --quiet whose progress lines attribute the
HTTP requests to streamprep's phases (bounding boxes, index validation, index train, write ...).
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

from bench import data, procs, remote_report, report
from bench.compare import compare
from bench.httplog import attribute
from bench.layout import ARCHIVES, CACHE, VAL_LABELS, VAL_TAR
from bench.replay import transfer_floor
from bench.server import check_server, serving
from bench.timing import rates, ratio

SHARDS = ["--train-shards", "16", "--validation-shards", "8", "--classic-threads", "8"]


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data.add_arguments(ap, classes=40, per_class=50, val_images=500,
                       fixups_help="leave the classic's fix-up files (PNG, CMYK) out of the data")
    ap.add_argument("--latency-ms", type=float, default=20.0, help="sleep before answering each HTTP request")
    ap.add_argument("--workers", type=int, default=None, help="passed to streamprep --workers (default: its own)")
    ap.add_argument("--cache", type=Path, default=CACHE / "remote")
    ap.add_argument("--phases", action="store_true",
                    help="also run remote once more without --quiet to count requests per phase (untimed)")
    ap.add_argument("--keep-outputs", action="store_true", help="keep the shard folders under the cache")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds allowed per streamprep run")
    ap.add_argument("--write-docs", type=Path, metavar="PATH",
                    help=f"append or replace the section '{remote_report.SECTION}' in this Markdown file")
    return ap.parse_args()


def phases_run(server: Any, cmd: list[str], outs: dict[str, Path], timeout: float
               ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The untimed run without --quiet: its HTTP requests by streamprep phase, and whether it wrote the local run's
    output."""
    server.stats.reset()
    info, lines = procs.run_lines(cmd, outs["phases"], timeout)
    with server.stats.lock:
        log = list(server.stats.log)
    check = {"wall_s": round(info["wall_s"], 2), "returncode": info["returncode"]}
    if info["returncode"] != 0:
        return attribute(log, lines), {**check, "stderr_tail": info["stderr_tail"]}
    same = compare(outs["local"], outs["phases"])
    return attribute(log, lines), {**check, "identical": same["identical"],
                                   **({"differing": same["differing"]} if same["differing"] else {})}


def show(result: dict[str, Any]) -> None:
    """The JSON summary, the runs table, whether the outputs are the same, the requests by phase."""
    print(json.dumps(result, indent=1))
    print()
    print(remote_report.table(result))
    print()
    print(remote_report.identity_line(result))
    if result.get("phases"):
        print()
        print(remote_report.phases_table(result["phases"]))


def main() -> None:
    args = parse_args()
    folder, meta = data.from_args(args.cache, args)
    labels = folder / VAL_LABELS
    outs = {k: args.cache / f"out-{k}" for k in ("local", "remote", "phases")}
    options = [*SHARDS, *(["--workers", str(args.workers)] if args.workers else [])]

    with serving(folder, args.latency_ms / 1e3) as server:
        port = server.server_address[1]
        check = check_server(port, folder, VAL_TAR)
        local_cmd = procs.convert_cmd(*(folder / n for n in ARCHIVES), outs["local"], labels, *options, "--quiet")
        urls = [f"http://127.0.0.1:{port}/{n}" for n in ARCHIVES]
        remote_cmd = procs.convert_cmd(*urls, outs["remote"], labels, *options, "--quiet")
        local = procs.run(local_cmd, outs["local"], args.timeout)
        server.stats.reset()
        remote = procs.run(remote_cmd, outs["remote"], args.timeout)
        remote["http"] = server.stats.summary()
        with server.stats.lock:
            remote_log = list(server.stats.log)
        server.stats.reset()
        floor = transfer_floor(remote_log, port, args.cache, args.timeout)
        floor["http"] = server.stats.summary()
        phases, phases_check = None, None
        if args.phases and remote["returncode"] == 0:
            phases, phases_check = phases_run(server, procs.convert_cmd(*urls, outs["phases"], labels, *options),
                                              outs, args.timeout)

    ok = local["returncode"] == 0 and remote["returncode"] == 0 and floor["returncode"] == 0
    same = (compare(outs["local"], outs["remote"]) if ok
            else {"identical": False, "files": 0, "manifest_compared": False, "differing": []})
    remote_over_local = ratio(local["wall_s"], remote["wall_s"], 3)  # (images / remote wall) / (images / local wall)
    for r in (local, remote, floor):
        rates(r, meta["images"], meta["image_bytes"])
        if not r.get("stderr_tail"):
            r.pop("stderr_tail", None)
    floor_over_local = ratio(local["wall_s"], floor["wall_s"], 3)  # of the rounded walls, as the table shows them
    result: dict[str, Any] = {
        "scale": data.scale_summary(meta),
        "latency_ms": args.latency_ms, "workers": args.workers, "server_check": check,
        "local": local, "remote": remote, "floor": floor,
        "ratio": remote_over_local, "floor_ratio": floor_over_local,
        "identical": same["identical"], "files_compared": same["files"], "manifest_compared": same["manifest_compared"],
        **({"differing": same["differing"]} if same["differing"] else {}),
        **({"phases": phases, "phases_run": phases_check} if phases is not None else {}),
        "command": report.command("remote.py"),
        "local_command": shlex.join(local_cmd), "remote_command": shlex.join(remote_cmd),
        "date": report.date(), "machine": report.machine(),
    }
    show(result)
    if args.write_docs and ok:
        remote_report.render(result, args.write_docs)
    if not args.keep_outputs:
        for out in outs.values():
            shutil.rmtree(out, ignore_errors=True)
    if not ok or not same["identical"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
