"""Shared fixture: the Stahl et al. (2024) panel."""

from pathlib import Path

import pytest

STAHL = Path(__file__).parents[2].parent / "shared" / "validation" / "stahl2024-neural-codec-mushra"


@pytest.fixture(scope="session")
def stahl_dir() -> Path:
    if not STAHL.is_dir():
        pytest.fail(f"validation data missing: expected {STAHL} (the project's validation data, beside the repository)")
    return STAHL
