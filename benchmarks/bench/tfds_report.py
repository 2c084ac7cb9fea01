"""The TFDS benchmark's report (benchmarks/tfds_speed.py): the targets of issues 16 and 28, the tables and the section
for docs/performance.md, one part for each data set it ran on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .report import head, targets_table, tries, write_docs

SECTION = "## TFDS: tfds build against streamprep --format tfds (benchmarks/tfds_speed.py)"
TARGET_SPEEDUP = 10.0
DISTURBED_CORES = 0.2  # other processes' CPU, in cores on average over a try, from which a try counts as disturbed
SIDES = {"tfds_build": "`tfds build imagenet2012` (TFDS's `download_and_prepare`, offline)",
         "streamprep_tfds": "`streamprep convert --format tfds`"}
NAMES = {"speed": "speed data set", "count": "count data set"}


def data_sets(r: dict[str, Any]) -> list[dict[str, Any]]:
    """The run's data sets, each with its own figures (a summary saved before issue 28 held one, speed.py's)."""
    if "data_sets" in r:
        return r["data_sets"]
    return [{**r, "scale": {"data": "speed", **r["scale"]}}]


def _true(flag: bool) -> str:
    return "true" if flag else "false"


def _name(d: dict[str, Any]) -> str:
    return NAMES[d["scale"]["data"]]


def _vs(d: dict[str, Any]) -> str:
    runs = d["runs"]
    return f"{runs['tfds_build']['wall_s']:.3f} s / {runs['streamprep_tfds']['wall_s']:.3f} s"


def targets(r: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 16's targets on each data set, each with what was measured and whether it is met."""
    out = []
    for d in data_sets(r):
        q, ident = d["tfds_build_over_streamprep_tfds"], d["identity"]
        out += [{"target": f"streamprep --format tfds at least {TARGET_SPEEDUP:g}x faster than tfds build (warm), "
                           f"{_name(d)}",
                 "measured": f"{q:.1f}x ({_vs(d)}, best tries)", "met": q >= TARGET_SPEEDUP},
                {"target": f"the same records as tfds build, {_name(d)}",
                 "measured": f"identical_records: {_true(ident['identical_records'])} ({ident['shards']:,} shards, "
                             f"{ident['records']:,} records)", "met": ident["identical_records"]}]
    return out


def _others(x: dict[str, Any]) -> str:
    return "" if x.get("others_cpu_s") is None else f"{x['others_cpu_s']:.1f} ({x['others_cores']:.2f})"


def runs_table(d: dict[str, Any]) -> str:
    rows = head("run", "tries>", "best wall s>", "every try, s", "images/s>", "MB/s of the image tars>",
                "peak RSS MB, best try>", "peak RSS MB, max>", "CPU s, best try>", "CPU µs an image, best try>",
                "others' CPU s (cores), best try>")
    images = d["scale"]["images"]
    for side, label in SIDES.items():
        x = d["runs"][side]
        rows.append(f"| {label} | {len(x['tries'])} | {x['wall_s']:.3f} | "
                    f"{', '.join(f'{w:.3f}' for w in x['wall_s_tries'])} | {x['images_per_s']:,.0f} | "
                    f"{x['mb_per_s']:,.0f} | {x['peak_rss_mb']:,.0f} | {x['peak_rss_mb_max']:,.0f} | "
                    f"{x['cpu_s']:.1f} | {x['cpu_s'] * 1e6 / images:,.0f} | {_others(x)} |")
    return "\n".join(rows)


def ratio_line(d: dict[str, Any]) -> str:
    q = d["tfds_build_over_streamprep_tfds"]
    return (f"Ratio of best wall times on the {_name(d)}, tfds build / streamprep --format tfds: **{q:.2f}x** "
            f"({_vs(d)}).")


def cpu_ratio_line(d: dict[str, Any]) -> str:
    runs = d["runs"]
    mine, theirs = runs["streamprep_tfds"]["cpu_s"], runs["tfds_build"]["cpu_s"]
    q = f"{theirs / mine:.2f}x" if mine else "n/a"
    return f"CPU seconds of the best tries, tfds build / streamprep: {q} ({theirs:.1f} s / {mine:.1f} s)."


def tensorflow_line(d: dict[str, Any]) -> str:
    seen = [t.get("tensorflow_imported") for t in d["runs"]["streamprep_tfds"]["tries"]]
    imported, unknown = sum(v is True for v in seen), sum(v is None for v in seen)
    text = (f"imported TensorFlow in {imported} of its {tries(len(seen))}" if imported
            else f"did not import TensorFlow in {'its' if len(seen) == 1 else 'any of its'} {tries(len(seen))}")
    return f"The streamprep conversion {text}" + (f" ({unknown} without an answer)." if unknown else ".")


def identity_line(d: dict[str, Any]) -> str:
    ident = d["identity"]
    differ = f" (differing: {', '.join(ident['differing'])})" if ident["differing"] else ""
    return (f"The last tries' `imagenet2012/5.1.0/` folders compared: "
            f"{'the same' if ident['same_file_names'] else 'DIFFERENT'} file names ({ident['files']} in "
            f"streamprep's), dataset_info.json {'equal' if ident['dataset_info_equal'] else 'DIFFERENT'} as parsed "
            f"JSON, features.json and label.labels.txt byte for byte, and {ident['shards']:,} shards record for record "
            f"({ident['records']:,} records, each parsed with `tf.train.Example.FromString`: its feature names, "
            f"file_name, image, label): **identical_records: {_true(ident['identical_records'])}**{differ}.")


def disturbance_line(d: dict[str, Any]) -> str:
    """Whether other processes ran beside the tries (only in runs that recorded it)."""
    every = [(side, i + 1, t) for side in SIDES for i, t in enumerate(d["runs"][side]["tries"])
             if t.get("others_cores") is not None]
    if not every:
        return ""
    side, i, worst = max(every, key=lambda s: s[2]["others_cores"])
    disturbed = [f"{s} try {n}" for s, n, t in every if t["others_cores"] >= DISTURBED_CORES]
    if len(disturbed) == len(every):
        verdict = f"every try disturbed (other processes used at least {DISTURBED_CORES:g} of a core on average)"
    elif disturbed:
        verdict = (f"disturbed (other processes used at least {DISTURBED_CORES:g} of a core on average): "
                   f"{', '.join(disturbed)}")
    else:
        verdict = f"none disturbed (other processes under {DISTURBED_CORES:g} of a core on average in every try)"
    return (f"Other processes' CPU during the tries (the machine's busy CPU seconds in /proc/stat over the try, less "
            f"the try's own and the benchmark's): at most {worst['others_cpu_s']:.1f} s, "
            f"{worst['others_cores']:.2f} of a core on average ({side} try {i}); {verdict}.")


def data_set_tables(d: dict[str, Any]) -> list[str]:
    lines = [runs_table(d), ratio_line(d), cpu_ratio_line(d), tensorflow_line(d), identity_line(d),
             disturbance_line(d)]
    return [line for line in lines if line]


def tables(r: dict[str, Any]) -> list[str]:
    """What the script prints after its JSON summary."""
    return [text for d in data_sets(r) for text in [f"{_name(d)}:", *data_set_tables(d)]] + [targets_table(r)]


def fixups_sentence(s: dict[str, Any], instead: str) -> str:
    """The classic's fix-up files in the data set, which TFDS re-encodes (no sentence if left out)."""
    names = s.get("fixups")
    if names is None:
        return ""
    if not names:
        return " None of the classic's 23 fix-up files belongs to these classes."
    kinds = [k.upper() for k in names.values()]
    counted = " and ".join(f"{kinds.count(k)} {k}" for k in sorted(set(kinds)))
    return (f" {len(names)} of the classic's 23 fix-up files ({counted}) are among the training images under their "
            f"real names, as in the real training tar, each in place of {instead}; TFDS re-encodes them with "
            "TensorFlow, streamprep to the same bytes without it.")


def scale_line(d: dict[str, Any]) -> str:
    s = d["scale"]
    if s["data"] == "count":
        jpeg = s["jpeg"]
        return (f"The count data set of `benchmarks/fullscale.py` at `--scale {s['scale']:g}`: {s['train_images']:,} "
                f"training images in {s['classes']:,} classes + {s['val_images']:,} validation images "
                f"({s['images']:,} JPEGs of {jpeg['width']}x{jpeg['height']} px, {jpeg['bytes']:,} bytes each; "
                f"{s['image_tars_mb']:,.0f} MB of image tars), so that the per-image work, not the image bytes, is what "
                "is timed beside each side's start." + fixups_sentence(s, "a tiny JPEG"))
    return (f"The downloads of `benchmarks/speed.py`: {s['classes']} classes x {s['images_per_class']} training images "
            f"+ {s['val_images']:,} validation images ({s['images']:,} JPEGs of {s['size_range'][0]}-"
            f"{s['size_range'][1]} px a side, {s['jpeg_kb']['mean']:.0f} KB on average; {s['image_tars_mb']:,.0f} MB "
            "of image tars)." + fixups_sentence(s, "a noise JPEG"))


def heading(d: dict[str, Any]) -> str:
    s = d["scale"]
    if s["data"] == "count":
        return f"### Count data set: {s['images']:,} tiny JPEGs (fullscale.py --scale {s['scale']:g})"
    return f"### Speed data set: {s['images']:,} JPEGs of {s['size_range'][0]}-{s['size_range'][1]} px (speed.py's)"


def sides_line() -> str:
    return ("TFDS's side is a `python -c` child that imports TensorFlow Datasets and runs "
            "`tfds.builder(\"imagenet2012\", data_dir=D).download_and_prepare(download_config="
            "tfds.download.DownloadConfig(manual_dir=M))`, offline, M a folder of symlinks to the two image tars "
            "under their official names; validation images take their labels from TFDS's own validation_labels.txt "
            "(50,000 lines). streamprep's side is `streamprep convert --train T --val V --bbox B --out OUT --format "
            "tfds --quiet` (its labels file is TFDS's), run through a `python -c` wrapper that records whether it "
            "imported TensorFlow; it also reads the bounding-box archive (streamprep requires it) and writes bboxes.csv "
            "beside the dataset, which TFDS's build does not. Both sides write TFDS's default sharding.")


def tries_line(r: dict[str, Any]) -> str:
    n = r["repeats"]
    return (f"Each side is a subprocess, `tfds build` given {tries(n['tfds_build'])} and streamprep "
            f"{tries(n['streamprep_tfds'])} on each data set, the sides taking turns, each try with a warm page cache "
            "(the archives read just before it) and its output folder removed and `sync` run first, untimed. Times "
            "include starting Python and importing TensorFlow where a side does; a side's wall time is its fastest "
            "try's. Peak RSS is the sum over the whole process tree, sampled every 50 ms; CPU seconds are the "
            "side's process tree's (user and system); others' CPU seconds are the rest of the machine's in the same "
            "window (`/proc/stat`, less the side's and the benchmark's own), to show whether a try was disturbed.")


def machine_line(r: dict[str, Any]) -> str:
    m = r["machine"]
    return (f"Measured {r['date']} on {m['nproc']} CPUs, {m['mem_total_gib']} GiB memory, {m['system']}, Python "
            f"{m['python']}, tensorflow-datasets {r['tfds_version']}; shared machine, so the ratios measured in this "
            "one run are what to compare.")


def ratios_line(r: dict[str, Any]) -> str:
    parts = [f"{_name(d)} **{d['tfds_build_over_streamprep_tfds']:.2f}x**" for d in data_sets(r)]
    return "Ratios tfds build / streamprep --format tfds, best wall times: " + "; ".join(parts) + "."


def section(r: dict[str, Any]) -> str:
    parts = [SECTION, "", sides_line(), tries_line(r), "", ratios_line(r), ""]
    for d in data_sets(r):
        parts += [heading(d), "", scale_line(d), ""]
        for text in data_set_tables(d):
            parts += [text, ""]
    parts += ["Targets (issue 16, on each data set):", "", targets_table({"targets": targets(r)}), "", "```bash", r["command"], "```", "",
              machine_line(r), ""]
    return "\n".join(parts)


def render(result: dict[str, Any], doc: Path) -> None:
    """The section in `doc`, replaced or appended."""
    write_docs(doc, section(result), SECTION)
    print(f"\nwrote the section '{SECTION}' in {doc}")
