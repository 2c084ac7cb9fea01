"""How busy the whole machine was during a timed try (CPU seconds from /proc/stat), to tell a disturbed try from a
quiet one on a shared machine."""

from __future__ import annotations

import os
import resource
import time
from typing import Any, Callable

TICK = os.sysconf("SC_CLK_TCK")
BUSY = (0, 1, 2, 5, 6)  # user, nice, system, irq, softirq: not idle, iowait, nor steal (the host's, not ours)


def machine_cpu_s() -> float:
    """CPU seconds every CPU of the machine has been busy since boot (the "cpu" line of /proc/stat)."""
    with open("/proc/stat", "rb") as f:
        fields = f.readline().split()[1:]
    return sum(int(fields[i]) for i in BUSY) / TICK


def own_cpu_s() -> float:
    """CPU seconds this process (the benchmark, with its sampler threads) has used so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Window:
    """The machine's busy CPU seconds from `start()` (just before a try starts) to `stop(x)` (just after its
    figures are in), added to the try's figures `x`, split into the try's own (`x["cpu_s"]`), the benchmark's
    (its samplers) and the rest: other processes on the machine (and the kernel's threads)."""

    def __init__(self) -> None:
        self.cpu0 = self.own0 = self.t0 = 0.0

    def start(self) -> None:
        self.cpu0, self.own0, self.t0 = machine_cpu_s(), own_cpu_s(), time.monotonic()

    def stop(self, x: dict[str, Any]) -> None:
        busy, own = machine_cpu_s() - self.cpu0, own_cpu_s() - self.own0
        window = time.monotonic() - self.t0
        x["machine_cpu_s"], x["bench_cpu_s"] = round(busy, 2), round(own, 2)
        x["others_cpu_s"] = round(max(0.0, busy - x["cpu_s"] - own), 1)
        x["others_cores"] = round(x["others_cpu_s"] / window, 2) if window > 0 else None


def watched(prepare: Callable[[], Any], window: Window) -> Callable[[], None]:
    """`prepare` (untimed, before a try), then the window started."""
    def before() -> None:
        prepare()
        window.start()
    return before
