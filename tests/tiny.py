"""A tiny ImageNet-shaped download set built from dicts, for tests that damage or vary it."""

from __future__ import annotations

from pathlib import Path

from fixtures import builders

A, B = "n01440764", "n01443537"  # labels 1 and 2


def tiny_classes(images_per_class: int = 4) -> dict[str, dict[str, bytes]]:
    return {
        synset: {f"{synset}_{i}.JPEG": builders.jpeg(16 + i, 12 + 2 * k, seed=10 * k + i)
                 for i in range(images_per_class, 0, -1)}
        for k, synset in enumerate((A, B))
    }


def write_tiny(folder: Path, classes: dict[str, dict[str, bytes]] | None = None,
               val: dict[str, bytes] | None = None, val_labels: list[str] | None = None,
               xmls: dict[str, bytes] | None = None) -> dict[str, Path]:
    """Write the three downloads (official names) and a validation labels file into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    classes = tiny_classes() if classes is None else classes
    val_labels = [A, B, A] if val_labels is None else val_labels
    val = {f"ILSVRC2012_val_{i:08d}.JPEG": builders.jpeg(20, 20, seed=100 + i) for i in range(len(val_labels), 0, -1)} \
        if val is None else val
    xmls = {f"{A}/{A}_1.xml": builders.voc_xml(f"{A}_1", 17, 12, [(1, 1, 10, 10)])} if xmls is None else xmls
    paths = {
        "train": builders.write_train_tar(folder / "ILSVRC2012_img_train.tar", classes),
        "val": builders.write_val_tar(folder / "ILSVRC2012_img_val.tar", val),
        "bbox": builders.write_bbox_targz(folder / "ILSVRC2012_bbox_train_v2.tar.gz", xmls),
        "val_labels": folder / "validation_labels.txt",
    }
    paths["val_labels"].write_text("".join(f"{s}\n" for s in val_labels))
    return paths
