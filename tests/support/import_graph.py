"""The project's import graph, read from the source (every ``import``, also those inside functions),
and the layer rule it must obey (docs/architecture.md, "The dependency rule").

``python -m tests.support.import_graph`` prints the package graph (which package imports which,
with the number of import statements), the subpackage graph inside the zoo, any cycle between
modules and any arrow against the layers; it exits 1 when there is one.

Written here rather than taken from a library: pydeps and import-linter need a graph layout tool or
their own config language, while the rule is a dozen lines over :mod:`ast`.
"""

from __future__ import annotations

import ast
import sys
from collections import Counter
from dataclasses import dataclass
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

LAYERS = ("common", "models", "stimulus_sets", "webapp", "evaluation", "earshot")
"""Bottom to top: a package may import only packages listed before it, minus :data:`FORBIDDEN`."""

FORBIDDEN: dict[str, set[str]] = {
    # Side by side above the zoo: a study server and an analysis need neither torch nor the zoo,
    # and neither needs the other.
    "webapp": {"torch", "models", "stimulus_sets", "evaluation"},
    "evaluation": {"torch", "models", "stimulus_sets", "webapp"},
    "common": {"torch"},
}
"""Imports a package must not make although the layer order alone would allow them."""


@dataclass(frozen=True)
class Edge:
    source: str  # importing module, e.g. "models.nets.lstm"
    target: str  # imported module or package, e.g. "common.errors" or "torch"
    where: str  # "path:line"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    """Every module of the layered packages: name -> file."""
    found = {}
    for package in LAYERS:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[module_name(path)] = path
    return found


def _resolve(module: str, is_package: bool, level: int, name: str | None) -> str:
    base = module.split(".") if is_package else module.split(".")[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> list[Edge]:
    """The imports in ``path``, each resolved to the longest project module it names (or to the
    top-level name of a third-party package)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    edges = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, is_package, node.level, node.module) if node.level else node.module
            # "from pkg import mod" imports the module pkg.mod where there is one.
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for target in targets:
            while target not in modules and "." in target:
                target = target.rsplit(".", 1)[0]
            edges.append(Edge(module, target, f"{path.relative_to(ROOT)}:{node.lineno}"))
    return edges


def all_edges() -> list[Edge]:
    modules = project_modules()
    return [e for name, path in modules.items() for e in imports_of(name, path, modules)]


def top(name: str) -> str:
    return name.split(".")[0]


def violations(edges: list[Edge]) -> list[str]:
    """Arrows against the layers, and imports a package must not make."""
    found = []
    for e in edges:
        if any(f.startswith(e.where + ":") for f in found):
            continue
        src, dst = top(e.source), top(e.target)
        if src == dst:
            continue
        if dst in LAYERS and LAYERS.index(dst) > LAYERS.index(src):
            found.append(f"{e.where}: {e.source} imports {e.target}, a later stage ({src} < {dst})")
        elif dst in FORBIDDEN.get(src, ()):
            found.append(f"{e.where}: {e.source} imports {e.target}, which {src} must never import")
    return found


def module_cycles(edges: list[Edge]) -> list[list[str]]:
    """Cycles between project modules. An import of a package's ``__init__`` from inside that
    package is how re-exports work and not counted."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        if top(e.target) not in LAYERS or e.target == e.source:
            continue
        if e.source.startswith(e.target + "."):
            continue
        graph.setdefault(e.source, set()).add(e.target)
    cycles = []
    while True:
        try:
            TopologicalSorter(graph).prepare()
            return cycles
        except CycleError as exc:
            cycle = exc.args[1]
            cycles.append(cycle)
            graph[cycle[-1]].discard(cycle[-2])  # each is a predecessor of the next: break one link, look again


def package_graph(edges: list[Edge], depth: int, within: str | None = None) -> Counter:
    """(importer, imported) -> number of import statements, between packages cut to ``depth`` names."""
    counts: Counter = Counter()
    for e in edges:
        if within and not (e.source.startswith(within + ".") and e.target.startswith(within + ".")):
            continue
        src, dst = ".".join(e.source.split(".")[:depth]), ".".join(e.target.split(".")[:depth])
        if src != dst and top(e.target) in LAYERS:
            counts[src, dst] += 1
    return counts


def report() -> tuple[str, bool]:
    edges = all_edges()
    lines = ["Packages (bottom to top: " + " < ".join(LAYERS) + "); importer -> imported (statements):"]
    for (src, dst), n in sorted(package_graph(edges, 1).items(), key=lambda kv: (LAYERS.index(kv[0][0]), kv[0][1])):
        lines.append(f"  {src:<14} -> {dst:<14} {n:>4}")
    third = Counter((top(e.source), top(e.target)) for e in edges if top(e.target) in ("torch",))
    lines.append("torch is imported by: " + ", ".join(sorted({s for s, _ in third})))
    inside = package_graph(edges, 2, within="models")
    lines.append("Inside the zoo, between its subpackages; importer -> imported (statements):")
    for (src, dst), n in sorted(inside.items()):
        lines.append(f"  {src:<28} -> {dst:<28} {n:>4}")
    cycles = module_cycles(edges)
    bad = violations(edges)
    lines.append(f"module cycles: {len(cycles)}")
    lines += ["  " + " -> ".join(c) for c in cycles]
    lines.append(f"arrows against the layers or forbidden imports: {len(bad)}")
    lines += ["  " + b for b in bad]
    return "\n".join(lines), not cycles and not bad


if __name__ == "__main__":
    text, ok = report()
    print(text)
    sys.exit(0 if ok else 1)
