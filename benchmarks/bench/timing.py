"""Timing: the best of several tries, alternated so noise on a shared machine hits every contender; ratios."""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable


def alternate(contenders: dict[str, Callable[[], Any]], repeats: int) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Each contender `repeats` times, in turn; (seconds of every try, what each returned last)."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    results: dict[str, Any] = {}
    for _ in range(repeats):
        for name, fn in contenders.items():
            t0 = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - t0)
    return times, results


def versus(times: dict[str, list[float]], slow: str, fast: str) -> dict[str, float]:
    """Best and median seconds of two contenders, and how many times faster `fast` is on each."""
    best = {k: min(v) for k, v in times.items()}
    median = {k: statistics.median(v) for k, v in times.items()}
    return {f"{slow}_s": round(best[slow], 4), f"{fast}_s": round(best[fast], 4),
            f"{slow}_median_s": round(median[slow], 4), f"{fast}_median_s": round(median[fast], 4),
            "speedup": round(best[slow] / best[fast], 1), "speedup_median": round(median[slow] / median[fast], 1)}


def ratio(a: float, b: float, digits: int = 2) -> float:
    """a / b, rounded: wall times of two runs measured in the same invocation."""
    return round(a / b, digits)


def rates(run: dict[str, Any], images: int, nbytes: int, mb_digits: int = 2) -> None:
    """Images/s and MB/s from a run's unrounded wall time, which is rounded after."""
    run["images_per_s"] = round(images / run["wall_s"], 1)
    run["mb_per_s"] = round(nbytes / 1e6 / run["wall_s"], mb_digits)
    run["wall_s"] = round(run["wall_s"], 2)


def best_of(tries: list[dict[str, Any]]) -> dict[str, Any]:
    """The fastest of several timed tries (dicts with `wall_s` and `peak_rss_mb`, maybe `cpu_s` and
    `peak_rss_anon_mb`): its figures, which try it was, every try's wall time, the highest peak RSS (and RssAnon) of
    any try, the least CPU seconds of any try, and every try's figures."""
    best = min(range(len(tries)), key=lambda i: tries[i]["wall_s"])
    out = {**tries[best], "best_try": best + 1, "wall_s_tries": [t["wall_s"] for t in tries],
           "peak_rss_mb_max": max(t["peak_rss_mb"] for t in tries), "tries": tries}
    if all("cpu_s" in t for t in tries):
        out["cpu_s_least"] = min(t["cpu_s"] for t in tries)
    if all("peak_rss_anon_mb" in t for t in tries):
        out["peak_rss_anon_mb_max"] = max(t["peak_rss_anon_mb"] for t in tries)
    return out
