"""The TFDS benchmark's report (benchmarks/tfds_speed.py): the targets of issue 16, the tables and the section for
docs/performance.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .report import fixups_note, head, targets_table, tries, write_docs

SECTION = "## TFDS: tfds build against streamprep --format tfds (benchmarks/tfds_speed.py)"
TARGET_SPEEDUP = 10.0
SIDES = {"tfds_build": "`tfds build imagenet2012` (TFDS's `download_and_prepare`, offline)",
         "streamprep_tfds": "`streamprep convert --format tfds`"}


def _true(flag: bool) -> str:
    return "true" if flag else "false"


def _vs(r: dict[str, Any]) -> str:
    runs = r["runs"]
    return f"{runs['tfds_build']['wall_s']:.3f} s / {runs['streamprep_tfds']['wall_s']:.3f} s"


def targets(r: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 16's targets, each with what was measured and whether it is met."""
    q, ident = r["tfds_build_over_streamprep_tfds"], r["identity"]
    return [{"target": f"streamprep --format tfds at least {TARGET_SPEEDUP:g}x faster than tfds build (warm)",
             "measured": f"{q:.1f}x ({_vs(r)}, best tries)", "met": q >= TARGET_SPEEDUP},
            {"target": "the same records as tfds build",
             "measured": f"identical_records: {_true(ident['identical_records'])} ({ident['shards']:,} shards, "
                         f"{ident['records']:,} records)", "met": ident["identical_records"]}]


def runs_table(r: dict[str, Any]) -> str:
    rows = head("run", "tries>", "best wall s>", "every try, s", "images/s>", "MB/s of the image tars>",
                "peak RSS MB, best try>", "peak RSS MB, max>", "CPU s, best try>")
    for side, label in SIDES.items():
        x = r["runs"][side]
        rows.append(f"| {label} | {len(x['tries'])} | {x['wall_s']:.3f} | "
                    f"{', '.join(f'{w:.3f}' for w in x['wall_s_tries'])} | {x['images_per_s']:,.0f} | "
                    f"{x['mb_per_s']:,.0f} | {x['peak_rss_mb']:,.0f} | {x['peak_rss_mb_max']:,.0f} | "
                    f"{x['cpu_s']:.1f} |")
    return "\n".join(rows)


def ratio_line(r: dict[str, Any]) -> str:
    q = r["tfds_build_over_streamprep_tfds"]
    return f"Ratio of best wall times, tfds build / streamprep --format tfds: **{q:.2f}x** ({_vs(r)})."


def tensorflow_line(r: dict[str, Any]) -> str:
    seen = [t.get("tensorflow_imported") for t in r["runs"]["streamprep_tfds"]["tries"]]
    imported, unknown = sum(v is True for v in seen), sum(v is None for v in seen)
    text = (f"imported TensorFlow in {imported} of its {tries(len(seen))}" if imported
            else f"did not import TensorFlow in {'its' if len(seen) == 1 else 'any of its'} {tries(len(seen))}")
    return f"The streamprep conversion {text}" + (f" ({unknown} without an answer)." if unknown else ".")


def identity_line(r: dict[str, Any]) -> str:
    ident = r["identity"]
    differ = f" (differing: {', '.join(ident['differing'])})" if ident["differing"] else ""
    return (f"The last tries' `imagenet2012/5.1.0/` folders compared: "
            f"{'the same' if ident['same_file_names'] else 'DIFFERENT'} file names ({ident['files']} in "
            f"streamprep's), dataset_info.json {'equal' if ident['dataset_info_equal'] else 'DIFFERENT'} as parsed "
            f"JSON, features.json and label.labels.txt byte for byte, and {ident['shards']:,} shards record for record "
            f"({ident['records']:,} records, each parsed with `tf.train.Example.FromString`: its feature names, "
            f"file_name, image, label): **identical_records: {_true(ident['identical_records'])}**{differ}.")


def tables(r: dict[str, Any]) -> list[str]:
    """What the script prints after its JSON summary."""
    return [runs_table(r), ratio_line(r), tensorflow_line(r), identity_line(r), targets_table(r)]


def scale_line(r: dict[str, Any]) -> str:
    s = r["scale"]
    return (f"One run, the downloads of `benchmarks/speed.py`: {s['classes']} classes x {s['images_per_class']} "
            f"training images + {s['val_images']:,} validation images ({s['images']:,} JPEGs of {s['size_range'][0]}-"
            f"{s['size_range'][1]} px a side, {s['jpeg_kb']['mean']:.0f} KB on average; {s['image_tars_mb']:,.0f} MB "
            f"of image tars). Both sides write TFDS's default sharding." + fixups_note(s, "TFDS"))


def sides_line() -> str:
    return ("TFDS's side is a `python -c` child that imports TensorFlow Datasets and runs "
            "`tfds.builder(\"imagenet2012\", data_dir=D).download_and_prepare(download_config="
            "tfds.download.DownloadConfig(manual_dir=M))`, offline, M a folder of symlinks to the two image tars "
            "under their official names; validation images take their labels from TFDS's own validation_labels.txt "
            "(50,000 lines). streamprep's side is `streamprep convert --train T --val V --bbox B --out OUT --format "
            "tfds --quiet` (its labels file is TFDS's), run through a `python -c` wrapper that records whether it "
            "imported TensorFlow.")


def tries_line(r: dict[str, Any]) -> str:
    n = r["repeats"]
    return (f"Each side is a subprocess, `tfds build` given {tries(n['tfds_build'])} and streamprep "
            f"{tries(n['streamprep_tfds'])}, the sides taking turns, each try with a warm page cache (the archives "
            "read just before it) and its output folder removed and `sync` run first, untimed. Times include starting "
            "Python and importing TensorFlow where a side does; a side's wall time is its fastest try's. Peak RSS is "
            "the sum over the whole process tree, sampled every 50 ms.")


def machine_line(r: dict[str, Any]) -> str:
    m = r["machine"]
    return (f"Measured {r['date']} on {m['nproc']} CPUs, {m['mem_total_gib']} GiB memory, {m['system']}, Python "
            f"{m['python']}, tensorflow-datasets {r['tfds_version']}; shared machine, so the ratio measured in this "
            "one run is what to compare.")


def section(r: dict[str, Any]) -> str:
    return "\n".join([SECTION, "", scale_line(r), sides_line(), tries_line(r), "", runs_table(r), "", ratio_line(r),
                      "", tensorflow_line(r), "", identity_line(r), "", "Targets (issue 16):", "", targets_table(r),
                      "", "```bash", r["command"], "```", "", machine_line(r), ""])


def render(result: dict[str, Any], doc: Path) -> None:
    """The section in `doc`, replaced or appended."""
    write_docs(doc, section(result), SECTION)
    print(f"\nwrote the section '{SECTION}' in {doc}")
