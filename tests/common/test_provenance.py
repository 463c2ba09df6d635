"""Provenance: the commit and versions recorded beside results are the real ones."""

import subprocess
from pathlib import Path

import numpy as np
import scipy

from common.provenance import cpu_model, git_commit, software_versions

ROOT = Path(__file__).resolve().parents[2]


def test_git_commit_is_the_checked_out_commit():
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    expected = head.stdout.strip() if head.returncode == 0 else "unknown"
    assert git_commit() == expected


def test_versions_are_those_of_the_imported_packages_and_an_absent_one_is_unknown():
    versions = software_versions(("numpy", "scipy", "no-such-distribution-earshot"))
    assert versions["numpy"] == np.__version__
    assert versions["scipy"] == scipy.__version__
    assert versions["no-such-distribution-earshot"] == "unknown"
    assert versions["python"].count(".") == 2


def test_cpu_model_names_this_machine_cpu():
    lines = [line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")]
    if lines:
        assert cpu_model() == lines[0].split(":", 1)[1].strip()
    else:
        assert cpu_model()
