"""Inputs the analysis tests generate: stimulus sets (manifest.json and noisy audio) and tidy
ratings frames."""

from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from common import stimulus_set


def write_manifest(folder: Path, trials: list[dict], sample_rate: int = 48_000) -> Path:
    """Write manifest.json (and silent-free audio files) for ``trials``; returns the folder.

    Each trial dict: id, item, group, conditions = list of (id, role, extra dict).
    """
    rng = np.random.default_rng(0)
    out = {"schema": stimulus_set.SCHEMA, "sample_rate": sample_rate, "provenance": {"command": "test"}, "trials": []}
    for trial in trials:
        audio = stimulus_set.trial_folder(folder, trial["id"])
        audio.mkdir(parents=True, exist_ok=True)
        reference = 0.2 * rng.standard_normal(sample_rate // 2)
        sf.write(audio / stimulus_set.REFERENCE_FILE, reference, sample_rate)
        conditions = []
        for cid, role, extra in trial["conditions"]:
            noise = extra.pop("noise", 0.05) if extra else 0.05
            sf.write(
                audio / stimulus_set.condition_file(cid),
                reference + noise * rng.standard_normal(reference.size),
                sample_rate,
            )
            conditions.append({"id": cid, "role": role, "file": stimulus_set.condition_file(cid), **(extra or {})})
        out["trials"].append(
            {
                "id": trial["id"],
                "item": trial.get("item", trial["id"]),
                "group": trial.get("group", "all"),
                "device": "fuzz",
                "training": trial.get("training", False),
                "reference": stimulus_set.REFERENCE_FILE,
                "conditions": conditions,
            }
        )
    folder.mkdir(parents=True, exist_ok=True)
    stimulus_set.write_manifest(folder, out, ValueError)
    return folder


def tidy_frame(rows: list[tuple]) -> pd.DataFrame:
    """Tidy ratings from (participant, trial, condition, role, score) tuples."""
    from evaluation.ratings import to_tidy

    frame = pd.DataFrame(rows, columns=["participant", "trial", "condition", "role", "score"])
    return to_tidy(frame)
