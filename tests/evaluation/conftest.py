"""Shared fixtures: the Stahl et al. (2024) panel and small generated stimulus sets."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

STAHL = Path(__file__).parents[2].parent / "shared" / "validation" / "stahl2024-neural-codec-mushra"


@pytest.fixture(scope="session")
def stahl_dir() -> Path:
    if not STAHL.is_dir():
        pytest.fail(f"validation data missing: expected {STAHL} (the project's validation data, beside the repository)")
    return STAHL


def write_manifest(folder: Path, trials: list[dict], sample_rate: int = 48_000) -> Path:
    """Write manifest.json (and silent-free audio files) for ``trials``; returns the folder.

    Each trial dict: id, item, group, conditions = list of (id, role, extra dict).
    """
    rng = np.random.default_rng(0)
    out = {"schema": 1, "sample_rate": sample_rate, "provenance": {"command": "test"}, "trials": []}
    for trial in trials:
        audio = folder / "audio" / trial["id"]
        audio.mkdir(parents=True, exist_ok=True)
        reference = 0.2 * rng.standard_normal(sample_rate // 2)
        sf.write(audio / "reference.wav", reference, sample_rate)
        conditions = []
        for cid, role, extra in trial["conditions"]:
            noise = extra.pop("noise", 0.05) if extra else 0.05
            sf.write(
                audio / f"{cid}.wav",
                reference + noise * rng.standard_normal(reference.size),
                sample_rate,
            )
            conditions.append({"id": cid, "role": role, "file": f"{cid}.wav", **(extra or {})})
        out["trials"].append(
            {
                "id": trial["id"],
                "item": trial.get("item", trial["id"]),
                "group": trial.get("group", "all"),
                "device": "fuzz",
                "training": trial.get("training", False),
                "reference": "reference.wav",
                "conditions": conditions,
            }
        )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").write_text(json.dumps(out, indent=1))
    return folder


def tidy_frame(rows: list[tuple]) -> pd.DataFrame:
    """Tidy ratings from (participant, trial, condition, role, score) tuples."""
    from evaluation.ratings import to_tidy

    frame = pd.DataFrame(rows, columns=["participant", "trial", "condition", "role", "score"])
    return to_tidy(frame)
