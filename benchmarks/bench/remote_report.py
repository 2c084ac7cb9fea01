"""The remote benchmark's report: the runs table, requests per phase, the section for docs/performance.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .report import fixups_note, head, write_docs

SECTION = "## Remote reading (benchmarks/remote.py)"


def table(r: dict[str, Any]) -> str:
    lat = r["latency_ms"]
    rows = head("run", "wall s>", "images/s>", "MB/s of images>", "HTTP requests>", "MB served>")
    loc, rem = r["local"], r["remote"]
    rows.append(f"| local disk | {loc['wall_s']:.2f} | {loc['images_per_s']:,.0f} | {loc['mb_per_s']:.1f} | | |")
    rows.append(f"| HTTP, {lat:g} ms per request | {rem['wall_s']:.2f} | {rem['images_per_s']:,.0f} | "
                f"{rem['mb_per_s']:.1f} | {rem['http']['requests']:,} | {rem['http']['mb']:,.1f} |")
    fl = r["floor"]
    rows.append(f"| same requests, fsspec alone, nothing else ({fl['concurrency']} in flight) | {fl['wall_s']:.2f} | "
                f"{fl['images_per_s']:,.0f} | {fl['mb_per_s']:.1f} | {fl['http']['requests']:,} | "
                f"{fl['http']['mb']:,.1f} |")
    rows.append(f"| **remote / local throughput** | | **{r['ratio']:.2f}** | | | |")
    rows.append(f"| the same ratio for the transfer alone: the best an fsspec client can reach here | | "
                f"{r['floor_ratio']:.2f} | | | |")
    return "\n".join(rows)


def phases_table(phases: dict[str, Any]) -> str:
    rows = head("phase", "s>", "requests>", "GET>", "HEAD>", "MB served>", "mean GET KB>")
    for name, p in phases.items():
        secs = "" if p["seconds"] is None else f"{p['seconds']:.2f}"
        rows.append(f"| {name} | {secs} | {p['requests']:,} | {p['get']:,} | {p['head']:,} | {p['mb']:,.2f} | "
                    f"{p['mean_get_kb']:,.1f} |")
    return "\n".join(rows)


def identity_line(r: dict[str, Any]) -> str:
    """Whether the local and the remote run wrote the same output, and which files differ if not."""
    what = (f"{r['files_compared']} files byte for byte"
            + (", and manifest.json less the fields naming the sources and the output folder"
               if r.get("manifest_compared") else ""))
    if r["identical"]:
        return f"Local and remote outputs identical: {what}."
    return f"Local and remote outputs NOT identical ({what}): {', '.join(r.get('differing', [])) or 'a run failed'}."


def section(r: dict[str, Any]) -> str:
    s, m = r["scale"], r["machine"]
    text = [SECTION, "",
            f"streamprep reading the three downloads over HTTP from a local threaded server that waits "
            f"{r['latency_ms']:g} ms before answering each request, against reading them from local disk: same "
            f"conversion (16 train / 8 validation shards). " + identity_line(r),
            f"Scale: {s['classes']} classes x {s['images_per_class']} images + {s['val_images']} validation images "
            f"({s['images']:,} JPEGs, {s['image_bytes'] / 1e6:,.0f} MB, {s['jpeg_kb']['mean']:.0f} KB on average); "
            f"streamprep workers: {r['workers'] or 'default'}." + fixups_note(s),
            "The third row replays the remote run's requests (logged by the server) with fsspec alone in a fresh "
            "process, every GET in one concurrent `cat_ranges`, nothing parsed, encoded or written: the transfer "
            "floor of this client and server on this machine.", "", table(r), ""]
    if r.get("phases"):
        text += ["HTTP requests per phase (a separate run without `--quiet`, whose progress lines mark the phases):", "",
                 phases_table(r["phases"]), ""]
    text += ["```bash", r["command"], "```", "",
             f"Measured {r['date']} on {m['nproc']} CPUs, {m['mem_total_gib']} GiB memory, {m['system']}, "
             f"Python {m['python']}.", ""]
    return "\n".join(text)


def render(result: dict[str, Any], doc: Path) -> None:
    write_docs(doc, section(result), SECTION)
    print(f"\nwrote the section '{SECTION}' in {doc}")
