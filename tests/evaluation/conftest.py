"""Shared fixture: the Stahl et al. (2024) panel."""

from pathlib import Path

import pytest

# Real ratings (Stahl et al. 2024, CC BY 4.0; LICENSE.md, README.md and SOURCE.txt beside them).
STAHL = Path(__file__).parents[1] / "data" / "stahl2024-neural-codec-mushra"


@pytest.fixture(scope="session")
def stahl_dir() -> Path:
    if not STAHL.is_dir():
        pytest.fail(f"validation data missing: expected {STAHL} (the real rating data the tests ship with)")
    return STAHL
