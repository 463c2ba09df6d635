"""The dependency rule of docs/architecture.md: imports go only down the layers
common < models < stimulus_sets < webapp < evaluation < earshot, never in a circle, and the web app
and the analysis never import torch, the zoo or each other.

Read from the source (every import statement, also inside functions) by tests.support.import_graph,
and checked once more in fresh interpreters by importing every module of a package."""

import subprocess
import sys
import textwrap

import pytest

from tests.support import import_graph
from tests.support.import_graph import Edge


def test_no_import_goes_up_the_layers_or_breaks_a_package_rule():
    assert import_graph.violations(import_graph.all_edges()) == []


def test_no_module_import_cycle():
    assert import_graph.module_cycles(import_graph.all_edges()) == []


def test_the_checker_sees_an_upward_import_a_forbidden_import_and_a_cycle():
    # The rule itself, on a made-up graph: each kind of fault is reported, a legal graph is not.
    up = Edge("models.cli", "stimulus_sets.build", "models/cli.py:1")
    torch_in_webapp = Edge("webapp.app", "torch", "webapp/app.py:3")
    sideways = Edge("evaluation.ratings", "webapp.exports", "evaluation/ratings.py:5")
    down = Edge("stimulus_sets.build", "models.nets.lstm", "stimulus_sets/build.py:9")
    found = import_graph.violations([up, torch_in_webapp, sideways, down])
    assert [f.split(":")[0] for f in found] == ["models/cli.py", "webapp/app.py", "evaluation/ratings.py"]
    cycle = [Edge("models.a", "models.b", "a:1"), Edge("models.b", "models.c", "b:1"), Edge("models.c", "models.a", "c:1")]
    assert len(import_graph.module_cycles(cycle)) == 1
    assert import_graph.module_cycles(cycle[:2]) == []


def test_imports_inside_functions_are_read():
    edges = [e for e in import_graph.all_edges() if e.source == "models.cli"]
    # models.cli imports its verbs' modules lazily, inside the functions that run them.
    assert any(e.target == "models.studies.study" for e in edges)


PROBE = textwrap.dedent("""
    import importlib, pkgutil, sys
    package = importlib.import_module({package!r})
    for info in pkgutil.walk_packages(package.__path__, {package!r} + "."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)
    print(sorted({{m.split('.')[0] for m in sys.modules}} & {forbidden!r}))
""")


@pytest.mark.slow
@pytest.mark.parametrize("package", ["common", "webapp", "evaluation"])
def test_every_module_of_a_torch_free_package_loads_without_torch_in_a_fresh_interpreter(package):
    forbidden = import_graph.FORBIDDEN[package] | {
        p for p in import_graph.LAYERS if import_graph.LAYERS.index(p) > import_graph.LAYERS.index(package)}
    out = subprocess.run([sys.executable, "-c", PROBE.format(package=package, forbidden=forbidden)],
                         capture_output=True, text=True, timeout=300, check=True).stdout
    assert out.strip() == "[]"
