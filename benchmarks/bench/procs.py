"""Process statistics: runs timed as subprocesses, peak RSS of their process tree, disk use."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from collections import defaultdict
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable

from .layout import ROOT

RSS_EVERY, DISK_EVERY = 0.05, 0.1


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


def tree_memory(root: int) -> tuple[int, int, int]:
    """Resident bytes (VmRSS) and resident anonymous bytes (RssAnon: no file-backed pages, such as libraries or a
    mapped file's page cache) summed over `root` and all its descendants, and how many processes that is. A forked
    worker's pages shared copy-on-write with its parent count in each."""
    kids, todo, rss, anon, count = _children(), [root], 0, 0, 0
    while todo:
        pid = todo.pop()
        try:
            with open(f"/proc/{pid}/status", "rb") as f:
                fields = dict(line.split(b":", 1) for line in f.read().splitlines() if b":" in line)
            rss += int(fields.get(b"VmRSS", b"0 kB").split()[0]) * 1024
            anon += int(fields.get(b"RssAnon", b"0 kB").split()[0]) * 1024
            count += 1
        except (OSError, IndexError, ValueError):
            pass
        todo.extend(kids.get(pid, ()))
    return rss, anon, count


def children_max_rss_mib() -> int:
    """The largest resident size any waited-for child process reached (the kernel's high-water mark), MiB."""
    return round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)


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
    """Peak tree RSS and RssAnon (every 50 ms, `tree_memory`) and peak disk use of some folders (every 100 ms, or
    less often if a walk is slow: at most ~5% of one core), plus the file system's used bytes (statvfs, every
    100 ms)."""

    def __init__(self, pid: int, folders: list[Path]) -> None:
        self.pid, self.folders = pid, folders
        self.peak_rss = self.peak_anon = self.max_procs = self.peak_disk = self.disk_samples = self.rss_samples = 0
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
            rss, anon, procs = tree_memory(self.pid)
            self.peak_rss, self.max_procs = max(self.peak_rss, rss), max(self.max_procs, procs)
            self.peak_anon = max(self.peak_anon, anon)
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
        return {"peak_rss_mb": round(self.peak_rss / 1e6, 1), "peak_rss_anon_mb": round(self.peak_anon / 1e6, 1),
                "max_processes": self.max_procs,
                "rss_samples": self.rss_samples, "peak_disk_bytes": self.peak_disk, "final_disk_bytes": final,
                "final_files": files, "disk_samples": self.disk_samples,
                "slowest_disk_walk_s": round(max(self.walk_s, default=0), 3),
                "fs_used_delta_peak_bytes": self.fs_peak - self.fs_base}


def timed(cmd: list[str], folders: list[Path], timeout: float, log: Path, stdout: Path | None = None,
          before: Callable[[], Any] | None = None, sync_after: bool = False) -> dict[str, Any]:
    """Run `cmd` with its stderr to `log`, sampling its tree; wall time, exit status, peaks, CPU seconds.

    The `folders` are removed and everything written back (`sync`) first, untimed, so that the previous
    run's dirty pages are not this run's writeback; then `before()` runs, untimed (the page cache warmed or
    dropped). The command's stdout goes to the file `stdout` if given (created with its folder), else to `log`.
    With `sync_after`, the timed part is `cmd; sync`: the wall time ends once everything is written back (`sync_s`
    the sync's share, `process_s` the command's own)."""
    for f in folders:
        shutil.rmtree(f, ignore_errors=True)
    os.sync()
    if before:
        before()
    if stdout:
        stdout.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as err, (open(stdout, "wb") if stdout else nullcontext(err)) as dest:
        t0 = time.monotonic()
        p = subprocess.Popen(cmd, cwd=ROOT, stdout=dest, stderr=err)
        sampler = Sampler(p.pid, folders)
        timer = threading.Timer(timeout, p.kill)
        timer.start()
        _, status, usage = os.wait4(p.pid, 0)
        exited = time.monotonic() - t0
        timer.cancel()
        p.returncode = os.waitstatus_to_exitcode(status)
        if sync_after:
            os.sync()
        wall = time.monotonic() - t0
    # (wait4's ru_maxrss is not used: the forked child starts with this process's high-water mark)
    out = {"wall_s": wall, "returncode": p.returncode, **sampler.finish(),
           "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
           **({"process_s": round(exited, 3), "sync_s": round(wall - exited, 3)} if sync_after else {})}
    if p.returncode != 0:
        out["log_tail"] = log.read_text(errors="replace")[-3000:]
        sys.stderr.write(out["log_tail"])
    return out


def run(cmd: list[str], out: Path, timeout: float) -> dict[str, Any]:
    """Run `cmd` (after removing its output folder `out`), its stderr passed on; wall time and exit status."""
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd, cwd=ROOT, stderr=subprocess.PIPE, text=True, timeout=timeout)
        code, err = p.returncode, p.stderr
    except subprocess.TimeoutExpired as e:
        code, err = "timeout", (e.stderr or b"").decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
    wall = time.monotonic() - t0
    if err:
        sys.stderr.write(err)
    return {"wall_s": wall, "returncode": code, "stderr_tail": err[-2000:] if code != 0 else ""}


def run_lines(cmd: list[str], out: Path, timeout: float) -> tuple[dict[str, Any], list[tuple[float, str]]]:
    """`run`, keeping each stderr line with the time it arrived."""
    shutil.rmtree(out, ignore_errors=True)
    lines: list[tuple[float, str]] = []
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    code, _ = _wait_keeping_lines(p, lines, time.monotonic, timeout)
    return {"wall_s": time.monotonic() - t0, "returncode": code,
            "stderr_tail": "\n".join(l for _, l in lines)[-2000:] if code != 0 else ""}, lines


def _wait_keeping_lines(p: subprocess.Popen, lines: list[tuple[float, str]], stamp: Callable[[], float],
                        timeout: float) -> tuple[Any, float]:
    """Wait for `p` (killed after `timeout` seconds: then "timeout"), each stderr line kept in `lines` with `stamp()`
    as it arrives; its exit status, and when it ended (`time.monotonic()`, before the last lines are collected)."""

    def pump() -> None:
        for line in p.stderr:  # type: ignore[union-attr]
            lines.append((stamp(), line.rstrip("\n")))

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        code: Any = p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        code = "timeout"
    ended = time.monotonic()
    reader.join(5)
    return code, ended


def finish_run(x: dict[str, Any], images: int, input_bytes: int, allocated: int) -> None:
    """A `timed` run's figures against the input and the final outputs (`allocated` bytes on disk)."""
    x["wall_s"] = round(x["wall_s"], 3)
    x["images_per_s"] = round(images / x["wall_s"], 1)
    x["mb_per_s"] = round(input_bytes / 1e6 / x["wall_s"], 1)
    x["outputs_mb"] = round(allocated / 1e6, 1)
    extra = max(0, x["peak_disk_bytes"] - allocated)
    x["extra_disk_mb"] = round(extra / 1e6, 2)
    x["extra_disk_pct"] = round(100 * extra / allocated, 3) if allocated else None
    x["fs_used_delta_peak_mb"] = round(x.pop("fs_used_delta_peak_bytes") / 1e6, 1)
    x["peak_disk_mb"] = round(x.pop("peak_disk_bytes") / 1e6, 1)
    x["final_disk_mb"] = round(x.pop("final_disk_bytes") / 1e6, 1)


def convert_cmd(train: str, val: str, bbox: str, out: Path, labels: Path | None, *options: str,
                launcher: list[str] | None = None) -> list[str]:
    """`python -m streamprep convert` (or `launcher` + `convert`) on the three downloads, into `out`."""
    cmd = [*(launcher or [sys.executable, "-m", "streamprep"]), "convert", "--train", str(train), "--val", str(val),
           "--bbox", str(bbox)]
    if labels is not None:
        cmd += ["--validation-labels-file", str(labels)]
    return cmd + ["--out", str(out), *options]


# --------------------------------------------------------------------------- anonymous memory (fullscale21k.py)

ANON_EVERY = 0.1


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants living now."""
    kids, todo, out = _children(), [root], []
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, ()))
    return out


def anon_kib(pid: int) -> tuple[int, int] | None:
    """(RssAnon, Pss_Anon) of one process in KiB: its anonymous pages mapped (`/proc/PID/status`), and its
    proportional share of them (`/proc/PID/smaps_rollup`: a page shared with forked children counted once over
    all of them); None once the process is gone."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            status = f.read()
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            rollup = f.read()
    except OSError:
        return None
    rss_anon = next((int(line.split()[1]) for line in status.splitlines() if line.startswith(b"RssAnon:")), 0)
    pss_anon = next((int(line.split()[1]) for line in rollup.splitlines() if line.startswith(b"Pss_Anon:")), 0)
    return rss_anon, pss_anon


TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float | None:
    """CPU seconds (user and system) one process has used so far; None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2:].split()  # from field 3, the state: utime and stime are fields 14 and 15
    return (int(fields[11]) + int(fields[12])) / TICK


class AnonSampler:
    """Every 100 ms over a process tree: the largest RssAnon of one process (which, when), and the sum of the
    tree's Pss_Anon (its anonymous memory counted once) and of its RssAnon (a page shared copy-on-write with
    forked workers counted in each); each one's peak, and the timeline of the largest process."""

    def __init__(self, pid: int, t0: float) -> None:
        self.pid, self.t0 = pid, t0
        self.peak_process = (0, 0, 0.0)  # KiB, pid, seconds since t0
        self.peak_pss_sum = self.peak_rss_sum = self.samples = self.max_procs = 0
        self.timeline: list[tuple[float, int, int]] = []  # (s, largest RssAnon KiB, Pss_Anon sum KiB), every second
        self.cpu: dict[int, float] = {}  # CPU seconds of each process of the tree, as last seen
        self.main_cpu: list[tuple[float, float]] = []  # (s, the main process's CPU seconds), every sample
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        last = -1.0
        while not self.stop.is_set():
            now = time.monotonic() - self.t0
            pids = process_tree(self.pid)
            found = [(pid, a) for pid in pids if (a := anon_kib(pid)) is not None]
            for pid in pids:
                if (used := cpu_s(pid)) is not None:
                    self.cpu[pid] = used
            if self.pid in self.cpu:
                self.main_cpu.append((now, self.cpu[self.pid]))
            if found:
                pid, (rss, _) = max(found, key=lambda x: x[1][0])
                pss_sum, rss_sum = sum(a[1] for _, a in found), sum(a[0] for _, a in found)
                if rss > self.peak_process[0]:
                    self.peak_process = (rss, pid, now)
                self.peak_pss_sum, self.peak_rss_sum = max(self.peak_pss_sum, pss_sum), max(self.peak_rss_sum, rss_sum)
                self.max_procs = max(self.max_procs, len(found))
                self.samples += 1
                if now - last >= 1.0:
                    self.timeline.append((round(now, 1), rss, pss_sum))
                    last = now
            self.stop.wait(ANON_EVERY)

    def finish(self) -> dict[str, Any]:
        self.stop.set()
        self.thread.join()
        kib, pid, at = self.peak_process
        return {"peak_rss_anon_mib": round(kib / 1024, 1), "peak_rss_anon_process": "main" if pid == self.pid
                else "worker", "peak_rss_anon_at_s": round(at, 1),
                "peak_tree_pss_anon_mib": round(self.peak_pss_sum / 1024, 1),
                "peak_tree_rss_anon_mib": round(self.peak_rss_sum / 1024, 1), "anon_samples": self.samples,
                "max_processes": self.max_procs, "cpu_main_s": round(self.cpu.get(self.pid, 0.0), 1),
                "cpu_others_s": round(sum(v for pid, v in self.cpu.items() if pid != self.pid), 1)}

    def main_cpu_at(self, at: float) -> float | None:
        """The main process's CPU seconds at `at` seconds from the start (the last sample before)."""
        before = [cpu for t, cpu in self.main_cpu if t <= at]
        return round(before[-1], 1) if before else None


def run_sampled(cmd: list[str], out: Path, timeout: float, open_files: int | None = None
                ) -> tuple[dict[str, Any], list[tuple[float, str]], list[tuple[float, int, int]]]:
    """`run_lines` with the tree's anonymous memory sampled (`AnonSampler`) and its CPU time counted (the run's
    processes, once waited for, and each one's as last seen); with `open_files`, the run's limit of open files
    (RLIMIT_NOFILE, soft and hard) set to that (raising the hard limit needs CAP_SYS_RESOURCE). Figures, stderr lines
    with the time each arrived (seconds from the start), and the memory timeline."""
    shutil.rmtree(out, ignore_errors=True)
    lines: list[tuple[float, str]] = []

    def limits() -> None:
        if open_files:
            resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, text=True, preexec_fn=limits)
    sampler = AnonSampler(p.pid, t0)
    code, ended = _wait_keeping_lines(p, lines, lambda: round(time.monotonic() - t0, 2), timeout)
    wall = ended - t0
    memory = sampler.finish()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    result = {"wall_s": round(wall, 1), "returncode": code, "cpu_s": round(cpu, 1), **memory,
              "stderr_tail": "\n".join(l for _, l in lines)[-3000:] if code != 0 else ""}
    firsts = [at for at, line in lines if line.startswith("write ") and line.endswith(": started")]
    if firsts:  # the walk, the plan and the index saved: all in the main process, before the first shard
        result["cpu_main_before_writing_s"] = sampler.main_cpu_at(firsts[0])
    return result, lines, sampler.timeline
