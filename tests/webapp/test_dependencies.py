"""The dependency rule (docs/architecture.md), checked in a fresh interpreter: the web app never imports torch (a
study server needs none; from the zoo it takes only the torch-free anchor filter, for webMUSHRA
imports), and the analysis never imports torch, the zoo or the web app."""

import subprocess
import sys

import pytest

PROBE = """
import importlib, sys
for name in {modules!r}:
    importlib.import_module(name)
print(sorted({{m.split('.')[0] for m in sys.modules}} & {forbidden!r}))
"""


@pytest.mark.parametrize("modules, forbidden", [
    (["webapp.__main__", "webapp.app", "webapp.bench", "webapp.exports", "webapp.webmushra"], {"torch"}),
    (["evaluation.__main__", "evaluation.report", "evaluation.config"], {"torch", "webapp", "models"}),
])
def test_packages_do_not_import_what_they_must_not(modules, forbidden):
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(modules=modules, forbidden=forbidden)],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout
    assert out.strip() == "[]"
