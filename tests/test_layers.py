"""The package's parts form layers in the flow's order: no import cycle between them, each imports only parts below.

A part is a subpackage of streamprep (`index`, `outputs`, ...) or a top-level module (`plan`,
`options`, ...). Every import statement of every module counts, wherever it is: at the top, inside
a function (an import put off until it is needed is still a dependency), under `TYPE_CHECKING`.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

from helpers import ROOT

PACKAGE = ROOT / "streamprep"

# Bottom to top, in the order the data flows: a part may import only the parts of the layers below its own.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("__init__",),  # `__version__`, and the public names imported on first use (`importlib`): it imports no part
    ("errors", "datasets"),  # what every part may use: the exceptions; the datasets' entries (plain data)
    ("progress", "extras"),  # progress events and the stop event; the optional packages a command needs
    ("archives",),  # storage: the downloads read in place (`Source`), the output folder written (`Output`)
    ("inspection",),  # what `inspect` finds in one file, as plain values
    ("index",),  # what the downloads hold, nothing decoded
    ("plan",),  # which image goes where, and which images are re-encoded
    ("records",),  # one record
    ("outputs",),  # the formats: writers, checks
    ("options",),  # the option table
    ("engines",),  # who runs the steps, in the one order of `engines.driver`
    ("cli",),  # the command line
    ("__main__",),  # `python -m streamprep`
)


def parts() -> set[str]:
    """Every subpackage and top-level module of streamprep, by name (the package's own `__init__` as `__init__`)."""
    found = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    return found | {p.stem for p in PACKAGE.glob("*.py")}


def _module(path: Path) -> tuple[str, ...]:
    """A module's dotted name as parts, from streamprep on (a package by its folder)."""
    relative = path.relative_to(ROOT).with_suffix("").parts
    return relative[:-1] if relative[-1] == "__init__" else relative


def imports_of(source: str, module: tuple[str, ...], package: bool = False) -> list[tuple[str, ...]]:
    """Every module (or module attribute) of streamprep that the source of `module` imports, as dotted parts,
    wherever the import statement is (`package`: the source is the `__init__` of package `module`)."""
    here = module if package else module[:-1]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [tuple(alias.name.split(".")) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = here[:len(here) - node.level + 1] if node.level else ()
            target = base + (tuple(node.module.split(".")) if node.module else ())
            found += [target + (alias.name,) for alias in node.names]
    return [name for name in found if name[0] == "streamprep"]


def part_of(name: tuple[str, ...]) -> str:
    """The part an imported name belongs to: `streamprep.index.images` is `index`; `from streamprep import
    __version__` is the package's `__init__`, `from streamprep import extras` the module `extras`."""
    if len(name) == 1 or name[1] not in parts():
        return "__init__"
    return name[1]


def import_graph() -> dict[str, dict[str, set[str]]]:
    """part -> imported part -> the modules whose imports make that edge (a part's imports of itself left out)."""
    graph: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module(path)
        here = part_of(module) if len(module) > 1 else "__init__"
        for name in imports_of(path.read_text(), module, path.name == "__init__.py"):
            there = part_of(name)
            if there != here:
                graph[here][there].add(".".join(module))
    return graph


def find_cycle(edges: dict[str, set[str]] | dict[str, dict[str, set[str]]]) -> list[str] | None:
    """One cycle of the graph as the parts along it (the first repeated at the end), or None if it has none."""
    done: set[str] = set()
    path: list[str] = []
    on_path: set[str] = set()

    def visit(node: str) -> list[str] | None:
        path.append(node)
        on_path.add(node)
        for after in sorted(edges.get(node, ())):
            if after in on_path:
                return path[path.index(after):] + [after]
            if after not in done:
                cycle = visit(after)
                if cycle:
                    return cycle
        path.pop()
        on_path.discard(node)
        done.add(node)
        return None

    for start in sorted(edges):
        if start not in done:
            cycle = visit(start)
            if cycle:
                return cycle
    return None


def layer_of() -> dict[str, int]:
    return {part: height for height, layer in enumerate(LAYERS) for part in layer}


# --------------------------------------------------------------------------------------------- the tests

def test_no_import_cycle_ties_the_parts_of_the_package_together():
    graph = import_graph()
    cycle = find_cycle(graph)
    if cycle:
        why = "; ".join(f"{a} -> {b} (in {', '.join(sorted(graph[a][b]))})" for a, b in zip(cycle, cycle[1:]))
        raise AssertionError(f"import cycle {' -> '.join(cycle)}: {why}. Move the piece that closes it down to the "
                             "part it belongs to, or pass it in from above")


def test_every_part_of_the_package_has_a_declared_layer():
    declared = [part for layer in LAYERS for part in layer]
    assert len(declared) == len(set(declared)), "a part declared in two layers"
    assert sorted(parts() - set(declared)) == [], "parts without a layer: add each to LAYERS, above what it imports"
    assert sorted(set(declared) - parts()) == [], "LAYERS names parts that do not exist"


def test_each_part_imports_only_the_layers_below_its_own():
    height = layer_of()
    wrong = [f"{a} imports {b} (in {', '.join(sorted(modules))})"
             for a, imported in sorted(import_graph().items()) for b, modules in sorted(imported.items())
             if a in height and b in height and height[b] >= height[a]]
    assert wrong == [], "imports of a part of the same layer or above: " + "; ".join(wrong)


def test_a_function_level_import_counts_and_a_cycle_through_it_is_found():
    source = "import os\n\ndef later():\n    from .engines import local\n    from . import __version__\n"
    assert imports_of(source, ("streamprep", "plan")) == [("streamprep", "engines", "local"),
                                                          ("streamprep", "__version__")]
    assert [part_of(name) for name in imports_of(source, ("streamprep", "plan"))] == ["engines", "__init__"]
    assert find_cycle({"plan": {"records"}, "records": {"outputs"}, "outputs": {"plan"}}) == \
        ["outputs", "plan", "records", "outputs"]
    assert find_cycle({"plan": {"index"}, "records": {"plan", "index"}, "index": set()}) is None
