"""The speed benchmark's report: the targets of issues 14, 15 and 28, the tables and the section for
docs/performance.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .report import fixups_note, head, targets_table, tries as _tries, write_docs
from .timing import ratio

SECTION = "## Speed against the classic procedure (benchmarks/speed.py)"
TARGETS = {"classic_speedup": 15.0, "warm_cat_ratio": 3.0, "cold_cat_ratio": 2.0, "peak_anon_mb": 250.0,
           "webdataset_over_tfrecord": 1.10, "both_over_tfrecord": 1.5, "both_anon_over_tfrecord": 1.10}
# each page-cache mode's `cat` floor, as the targets name it
FLOOR = {"warm": "`cat TRAIN VAL > FILE`", "cold": "`cat TRAIN VAL > FILE; sync`"}
SIDES = {"streamprep": "`streamprep convert` (default workers)",
         "streamprep_webdataset": "`streamprep convert --format webdataset`",
         "streamprep_both": "`streamprep convert --format tfrecord,webdataset`",
         "streamprep_both_dali": "`streamprep convert --format tfrecord,webdataset --dali-index`",
         "cat": "`cat` floor (`cat TRAIN_TAR VAL_TAR > OUT`; cold: then `sync`)",
         "python_floor": "Python floor (read the archives, write the shards' bytes)",
         "classic": "classic procedure (tar, bboxes.csv, folders, TF build, 8 threads)"}
SKIPPED = {"streamprep_webdataset": "--no-formats", "streamprep_both": "--no-formats",
           "streamprep_both_dali": "--no-formats", "classic": "--skip-classic"}
MODES = ("warm", "cold")


def _unavailable(r: dict[str, Any]) -> bool:
    """Cold tries were wanted, but the page cache could not be dropped (r["cold"] says why)."""
    return r["cold"].startswith("unavailable")


def _missing(r: dict[str, Any], mode: str, why: bool = False) -> str:
    """Why `mode` has no figures: cold unavailable (with the reason if `why`), or not measured."""
    if mode == "cold" and _unavailable(r):
        return r["cold"] if why else "unavailable (see the note on cold tries)"
    return f"{mode} not measured"


def _wanted(r: dict[str, Any]) -> list[str]:
    """The page-cache modes to show: those measured, and cold when it was wanted but unavailable."""
    return [m for m in MODES if m in r["runs"] or (m == "cold" and _unavailable(r))]


def _vs(r: dict[str, Any], mode: str, slow: str, fast: str) -> str:
    runs = r["runs"][mode]
    return f"{runs[slow]['wall_s']:.3f} s / {runs[fast]['wall_s']:.3f} s"


def _within(limit: float) -> str:
    """A ratio's upper limit as the percentage it allows above 1 (1.10: "10%")."""
    return f"{round(100 * (limit - 1)):g}%"


def _formats(r: dict[str, Any]) -> bool:
    """Whether the format sides ran (not with --no-formats, nor in summaries from before them)."""
    return any("streamprep_both" in runs for runs in r["runs"].values())


def targets(r: dict[str, Any]) -> list[dict[str, Any]]:
    """The targets of issues 14, 15 and 28: each with what was measured and whether it is met (None: not
    measured)."""
    runs, ratios = r["runs"], r["ratios"]
    rows: list[dict[str, Any]] = []

    def row(target: str, measured: str, met: bool | None) -> None:
        rows.append({"target": target, "measured": measured, "met": met})

    speedup = ratios.get("warm", {}).get("classic_over_streamprep")
    row(f"classic / streamprep at least {TARGETS['classic_speedup']:g}x, warm",
        f"{speedup:.1f}x ({_vs(r, 'warm', 'classic', 'streamprep')})" if speedup is not None
        else ("classic skipped" if "warm" in runs else _missing(r, "warm", why=True)),
        None if speedup is None else speedup >= TARGETS["classic_speedup"])
    for mode, key in (("warm", "warm_cat_ratio"), ("cold", "cold_cat_ratio")):
        q = ratios.get(mode, {}).get("streamprep_over_cat")
        row(f"streamprep at most {TARGETS[key]:g}x {FLOOR[mode]} ({mode})",
            f"{q:.2f}x ({_vs(r, mode, 'streamprep', 'cat')})" if q is not None else _missing(r, mode, why=True),
            None if q is None else q <= TARGETS[key])
    for mode in MODES:
        row(*_both_over_tfrecord(r, mode))
    _memory_targets(r, row)
    _format_targets(r, row)
    return rows


def _both_over_tfrecord(r: dict[str, Any], mode: str) -> tuple[str, str, bool | None]:
    """Issue 28's target for two formats in one run: their ratio to the `cat` floor at most 1.5x TFRecord alone's."""
    limit = TARGETS["both_over_tfrecord"]
    target = f"`--format tfrecord,webdataset` / {FLOOR[mode]} at most {limit:g}x TFRecord alone's ratio ({mode})"
    q = r["ratios"].get(mode, {})
    if "both_over_tfrecord" not in q or "both_over_cat" not in q:  # (or a summary from before issue 28)
        return target, ("formats skipped (`--no-formats`)" if mode in r["runs"] else _missing(r, mode, why=True)), None
    return (target, f"{q['both_over_tfrecord']:.2f}x ({q['both_over_cat']:.2f}x / {q['streamprep_over_cat']:.2f}x; "
                    f"{_vs(r, mode, 'streamprep_both', 'streamprep')})", q["both_over_tfrecord"] <= limit)


def _streamprep_tries(r: dict[str, Any], sides: tuple[str, ...] = ("streamprep",)) -> list[dict[str, Any]]:
    """Every try of these sides, in every page-cache mode measured."""
    return [t for m in MODES for side in sides for t in r["runs"].get(m, {}).get(side, {}).get("tries", [])]


def _memory_targets(r: dict[str, Any], row: Any) -> None:
    """Peak anonymous memory of a conversion (TFRecord alone, and both formats), and TensorFlow never imported."""
    for sides, what in ((("streamprep",), "TFRecord alone"), (("streamprep_both",), "`--format tfrecord,webdataset`")):
        found = [t["peak_rss_anon_mb"] for t in _streamprep_tries(r, sides) if "peak_rss_anon_mb" in t]
        if found or sides == ("streamprep",):
            row(f"peak anonymous memory of a conversion ({what}) under {TARGETS['peak_anon_mb']:g} MB",
                f"{max(found):,.0f} MB (RssAnon summed over the process tree, highest of {_tries(len(found))})"
                if found else "not measured", max(found) < TARGETS["peak_anon_mb"] if found else None)
    seen = [t.get("tensorflow_imported") for t in _streamprep_tries(r)]
    imported, unknown = sum(v is True for v in seen), sum(v is None for v in seen)
    row("TensorFlow not imported by the streamprep conversion",
        (f"imported in {imported} of {_tries(len(seen))}" if imported
         else f"not imported in {'' if len(seen) == 1 else 'any of '}{_tries(len(seen))}")
        + (f" ({unknown} without an answer)" if unknown else "") if seen else "not measured",
        None if not seen or unknown else imported == 0)


def _format_targets(r: dict[str, Any], row: Any) -> None:
    """Issue 15's: WebDataset alone as fast as TFRecord alone, and both formats' memory within 10% of it."""
    runs, ratios = r["runs"], r["ratios"]
    key = "webdataset_over_tfrecord"
    q = ratios.get("warm", {}).get(key)
    row(f"webdataset alone within {_within(TARGETS[key])} of TFRecord alone (warm)",
        f"{q:.2f}x ({_vs(r, 'warm', 'streamprep_webdataset', 'streamprep')})" if q is not None
        else ("formats skipped (`--no-formats`)" if "warm" in runs else _missing(r, "warm", why=True)),
        None if q is None else q <= TARGETS[key])
    target = (f"peak anonymous memory with both formats within {_within(TARGETS['both_anon_over_tfrecord'])} of "
              "TFRecord alone")
    alone = [t["peak_rss_anon_mb"] for t in _streamprep_tries(r) if "peak_rss_anon_mb" in t]
    both = [t["peak_rss_anon_mb"] for t in _streamprep_tries(r, ("streamprep_both", "streamprep_both_dali"))
            if "peak_rss_anon_mb" in t]
    if both and alone:
        q = ratio(max(both), max(alone))
        row(target, f"{q:.2f}x ({max(both):,.0f} MB / {max(alone):,.0f} MB, highest of {_tries(len(both))} and of "
                    f"{_tries(len(alone))})", q <= TARGETS["both_anon_over_tfrecord"])
    else:
        row(target, "formats skipped (`--no-formats`)" if alone else "not measured", None)


def _cell(x: dict[str, Any], key: str, fmt: str) -> str:
    """A figure of a side's best try, or an empty cell in summaries from before it was measured."""
    return format(x[key], fmt) if key in x else ""


def runs_table(r: dict[str, Any]) -> str:
    rows = head("run", "page cache", "tries>", "best wall s>", "every try, s", "of which sync s>", "images/s>",
                "MB/s of the archives>", "peak RSS MB, max>", "peak RssAnon MB, max>", "CPU s, best try>",
                "CPU s, least>")
    for side, label in SIDES.items():
        for mode in _wanted(r):
            x = r["runs"].get(mode, {}).get(side)
            if x:
                rows.append(f"| {label} | {mode} | {len(x['tries'])} | {x['wall_s']:.3f} | "
                            f"{', '.join(f'{w:.3f}' for w in x['wall_s_tries'])} | {_cell(x, 'sync_s', '.3f')} | "
                            f"{x['images_per_s']:,.0f} | {x['mb_per_s']:,.0f} | {x['peak_rss_mb_max']:,.0f} | "
                            f"{_cell(x, 'peak_rss_anon_mb_max', ',.0f')} | {x['cpu_s']:.2f} | "
                            f"{_cell(x, 'cpu_s_least', '.2f')} |")
            else:
                why = f"not run (`{SKIPPED[side]}`)" if mode in r["runs"] else _missing(r, mode)
                rows.append(f"| {label} | {mode} | {why} | | | | | | | | | |")
    return "\n".join(rows)


def ratios_table(r: dict[str, Any]) -> str:
    modes = _wanted(r)
    rows = head("ratio of best wall times (of CPU seconds, peak RSS or RssAnon where said)", *(f"{m}>" for m in modes))
    both, dali = "`--format tfrecord,webdataset`", "`--format tfrecord,webdataset --dali-index`"
    names = {"classic_over_streamprep": "classic / streamprep", "streamprep_over_cat": "streamprep / `cat` floor",
             "both_over_cat": f"{both} / `cat` floor",
             "both_over_tfrecord": f"{both} / TFRecord alone (= its `cat` ratio over TFRecord alone's)",
             "streamprep_over_python_floor": "streamprep / Python floor",
             "python_floor_over_cat": "Python floor / `cat` floor", "classic_over_cat": "classic / `cat` floor",
             "webdataset_over_tfrecord": "`--format webdataset` / TFRecord alone (streamprep)",
             "both_dali_over_tfrecord": f"{dali} / TFRecord alone",
             "cpu_streamprep_over_cat": "CPU seconds (least of the tries): streamprep / `cat` floor",
             "cpu_both_over_cat": f"CPU seconds: {both} / `cat` floor",
             "both_cpu_over_tfrecord": f"CPU seconds: {both} / TFRecord alone",
             "webdataset_rss_over_tfrecord": "peak RSS (highest try): `--format webdataset` / TFRecord alone",
             "both_rss_over_tfrecord": f"peak RSS (highest try): {both} / TFRecord alone",
             "both_dali_rss_over_tfrecord": f"peak RSS (highest try): {dali} / TFRecord alone",
             "webdataset_anon_over_tfrecord": "peak RssAnon (highest try): `--format webdataset` / TFRecord alone",
             "both_anon_over_tfrecord": f"peak RssAnon (highest try): {both} / TFRecord alone",
             "both_dali_anon_over_tfrecord": f"peak RssAnon (highest try): {dali} / TFRecord alone"}
    bold = {"classic_over_streamprep", "streamprep_over_cat", "both_over_cat", "both_over_tfrecord",
            "webdataset_over_tfrecord"}
    for key, name in names.items():
        cells = []
        for mode in modes:
            q = r["ratios"].get(mode, {}).get(key)
            cells.append(_missing(r, mode) if mode not in r["runs"] else "" if q is None
                         else f"**{q:.2f}x**" if key in bold else f"{q:.2f}x")
        if any(r["ratios"].get(m, {}).get(key) is not None for m in modes):
            rows.append(f"| {name} | {' | '.join(cells)} |")
    return "\n".join(rows)


def cold_line(r: dict[str, Any]) -> str:
    if "cold" not in r["runs"]:
        return f"Cold tries: {r['cold']}."
    return ("Cold tries: before every try, `sync`, then `echo 3 > /proc/sys/vm/drop_caches`, so the archives, and "
            "the interpreter's, streamprep's and TensorFlow's own files, come from disk; every side's timed part "
            "ends with `sync` (`cat TRAIN_TAR VAL_TAR > OUT; sync`, `streamprep convert ...; sync`), so each waits "
            "until its writes are on the disk (the sync's seconds in their own column).")


def floors_line(r: dict[str, Any]) -> str:
    """What the timed part of a try is, in each page-cache mode (issue 28's floors)."""
    return ("Warm tries: the timed part is the command alone, no `sync` inside it on either side (`cat TRAIN_TAR "
            "VAL_TAR > OUT` against `streamprep convert ...`): the dirty pages a try leaves are written back after its "
            "clock stops, by the untimed `sync` before the next try. " + cold_line(r))


def walk_line(r: dict[str, Any]) -> str:
    w = r.get("header_walk")
    if not w:
        return "Header walk not timed (`--walk-repeats 0`)."
    return (f"Header walk of the nested training tar ({w['members']['outer']:,} class tars, "
            f"{w['members']['inner']:,} images; best of {w['repeats']}, warm): tarfile {w['tarfile_s']:.3f} s, "
            f"streamprep {w['streamprep_s']:.3f} s: **{w['speedup']:.1f}x** (median {w['speedup_median']:.1f}x).")


def identity_line(r: dict[str, Any]) -> str:
    ident = r["identity"]
    return (f"The last shards of streamprep and of the classic compared record for record (parsed features, per "
            f"shard name): **identical_records: {'true' if ident['identical_records'] else 'false'}** "
            f"({ident['shards']:,} shards, {ident['records']:,} records; bboxes.csv "
            f"{'byte-identical' if ident['bboxes_csv_identical'] else 'DIFFERENT'}).")


def formats_line(r: dict[str, Any]) -> str:
    ident = r["formats_identity"]
    differ = f" (differing: {', '.join(ident['differing'])})" if ident["differing"] else ""
    return (f"The last shards of the three streamprep sides compared by sha256, file for file of the same name: the "
            f"{ident['tar_files']:,} `.tar` files of `--format webdataset` against those of `--format "
            f"tfrecord,webdataset --dali-index`, and the latter's {ident['tfrecord_shards']:,} TFRecord shards against "
            f"those of TFRecord alone: **formats_identical: {'true' if ident['formats_identical'] else 'false'}**"
            f"{differ}.")


def phases_table(r: dict[str, Any]) -> str:
    """The classic's steps in its best try of each page-cache mode."""
    modes = [m for m in MODES if "classic" in r["runs"].get(m, {})]
    rows = head("classic step (best try)", *(c for m in modes for c in (f"{m} s>", f"{m} share of wall>")))
    steps = dict.fromkeys(k for m in modes for k in r["runs"][m]["classic"]["phases"])
    for name in steps:
        cells = []
        for m in modes:
            cl = r["runs"][m]["classic"]
            s = cl["phases"].get(name, 0.0)
            cells += [f"{s:.1f}", f"{100 * s / cl['wall_s']:.0f}%"]
        rows.append(f"| {name} | {' | '.join(cells)} |")
    return "\n".join(rows)


def tables(r: dict[str, Any]) -> list[str]:
    """What the script prints after its JSON summary."""
    out = [runs_table(r), ratios_table(r), walk_line(r), *([identity_line(r)] if "identity" in r else []),
           *([formats_line(r)] if "formats_identity" in r else []),
           floors_line(r), targets_table(r)]
    if any("classic" in r["runs"][m] for m in r["runs"]):
        out.append(phases_table(r))
    return out


def section(r: dict[str, Any]) -> str:
    s, m, lay = r["scale"], r["machine"], r["layout"]
    n = r["repeats"]
    classic = next((r["runs"][mode]["classic"] for mode in MODES if "classic" in r["runs"].get(mode, {})), None)
    text = [SECTION, "",
            f"One run, same generated downloads: {s['classes']} classes x {s['images_per_class']} training images + "
            f"{s['val_images']:,} validation images ({s['images']:,} JPEGs of {s['size_range'][0]}-"
            f"{s['size_range'][1]} px a side, {s['jpeg_kb']['mean']:.0f} KB on average; {s['archive_mb']:,.0f} MB of "
            f"archives, {s['xml_files']:,} XML files), converted to {lay['train_shards']}/"
            f"{lay['validation_shards']} shards ({s['train_images'] / lay['train_shards']:,.0f} training and "
            f"{s['val_images'] / lay['validation_shards']:,.0f} validation images a shard), cut where the classic's "
            f"{lay['threads']} threads cut them."
            + fixups_note(s),
            "The classic procedure is `tests/classic_reference.py`'s `run_classic`: the real `tar` command extracts "
            "the three archives and every class tar, bboxes.csv is written from the XML, the validation images are "
            "moved into synset folders, then TensorFlow builds the shards with 8 threads, decoding every JPEG "
            f"fully as the classic's `_process_image` does ({classic['counts'].get('full JPEG decodes', 0):,} decodes "
            "counted in its best try)." if classic else "The classic procedure was skipped (`--skip-classic`).",
            "streamprep runs `streamprep.cli.main` through a `python -c` wrapper that, once the conversion returned, "
            "writes whether `tensorflow` is in `sys.modules` to a side file (the converting process; its "
            "bounding-box walk, a separate process for large archives, only parses XML). The `cat` floor is "
            "`cat TRAIN_TAR VAL_TAR > OUT`, timed the same way; the Python floor reads every byte of the three "
            "archives in 8 MB blocks and writes as many bytes as the shards hold into one file. No run calls fsync; "
            "cold tries end with a timed `sync`.",
            "Three more streamprep sides run the same way (wrapper, layout, tries), with `--format webdataset`, with "
            "`--format tfrecord,webdataset` (the downloads read once for both formats) and with the same plus "
            "`--dali-index` (and DALI's index files); `streamprep convert` alone writes TFRecord, the default "
            "format." if _formats(r)
            else "The format sides were skipped (`--no-formats`).",
            f"Each side is a subprocess given {_tries(n['streamprep'])} in each page-cache mode"
            + (f" (the classic {_tries(n['classic'])})" if "classic" in n else "") + ", the sides taking turns; its "
            "wall time is its fastest try's, and every try's is listed. Before each try its output "
            "folder is removed and `sync` runs, untimed. Warm: the archives are read just before each try, so it "
            "finds them in the page cache. " + floors_line(r) + " Peak RSS and peak RssAnon (anonymous memory "
            "alone: no library or mapped-file pages) are sums over the run's whole process tree (the classic's `tar` "
            "children included; a forked worker's pages shared with its parent counted in each), sampled every "
            "50 ms; CPU seconds are the tree's user + system time (the steadier figure on a shared machine); MB/s "
            "counts the three archives for every row, although `cat` reads only the two image tars.",
            "", runs_table(r), "", ratios_table(r), "", walk_line(r), ""]
    if "identity" in r:
        text += [identity_line(r), ""]
    if "formats_identity" in r:
        text += [formats_line(r), ""]
    sp = next(r["runs"][mode]["streamprep"] for mode in MODES if mode in r["runs"])
    text += [f"streamprep's peak extra disk (its `.streamprep/` index and `manifest.json` beside the final outputs): "
             f"{sp['extra_disk_mb']:,.1f} MB, {sp['extra_disk_pct']:.2f}% of {sp['outputs_mb']:,.0f} MB.", "",
             "Targets (issues 14, 15 and 28):", "", targets_table(r), ""]
    if classic:
        ph = classic["phases"]
        build = sum(v for k, v in ph.items() if k.startswith("build "))
        untar = sum(v for k, v in ph.items() if k.startswith("tar "))
        text += ["Where the classic spends its time (its steps, timed inside the run; it deletes nothing, so its "
                 f"peak disk is its final footprint, {classic['work_mb']:,.0f} MB of extracted files beside the "
                 "shards):", "", phases_table(r), "",
                 f"Building the shards (TensorFlow decoding every JPEG, 8 threads on {m['nproc']} CPUs) takes "
                 f"{build:.1f} s, {100 * build / classic['wall_s']:.0f}% of the classic's wall time; extracting with "
                 f"`tar` {untar:.1f} s ({100 * untar / classic['wall_s']:.0f}%)."]
        bound = r["ratios"].get("warm", {}).get("classic_over_cat")
        if bound is not None and bound < TARGETS["classic_speedup"]:
            text[-1] += (f" The warm `cat` floor itself is only {bound:.1f}x faster than the classic here, so on this "
                         f"machine and at this scale no run that reads the downloads and writes the shards can reach "
                         f"the {TARGETS['classic_speedup']:g}x target.")
        text += [""]
    text += ["```bash", r["command"], "```", "",
             f"Measured {r['date']} on {m['nproc']} CPUs, {m['mem_total_gib']} GiB memory, {m['system']}, "
             f"Python {m['python']}; shared machine, so the ratios measured in this one run are what to compare.",
             ""]
    return "\n".join(text)


def render(result: dict[str, Any], doc: Path) -> None:
    """The section in `doc`, replaced or appended."""
    write_docs(doc, section(result), SECTION)
    print(f"\nwrote the section '{SECTION}' in {doc}")
