"""NAM's example models and the renders of NAM's C++ engine, committed in tests/data/nam-reference
(see its README): the independent implementation the .nam tests compare with."""

from pathlib import Path

NAM_REFERENCE = Path(__file__).resolve().parents[1] / "data" / "nam-reference"


def reference_file(*parts: str) -> Path:
    """A file of the reference folder, e.g. ``reference_file("models", "A2.nam")``."""
    return NAM_REFERENCE.joinpath(*parts)
