"""Objective metrics per stimulus: from the manifest, computed from the audio when missing."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from common import audio_metrics as metrics

from .errors import ManifestError
from .manifest import Manifest

log = logging.getLogger(__name__)

STIMULUS_COLUMNS = ("trial", "item", "group", "condition", "role")


def _read_mono(path: Path) -> tuple[np.ndarray, int]:
    import soundfile

    try:
        audio, sample_rate = soundfile.read(str(path), dtype="float64", always_2d=True)
    except (RuntimeError, OSError) as exc:  # soundfile raises LibsndfileError (a RuntimeError)
        raise ManifestError(f"{path}: cannot read audio ({exc})") from exc
    # Metrics are defined on mono signals; a stereo stimulus is scored on its channel mean.
    return audio.mean(axis=1), int(sample_rate)


def objective_table(
    manifest: Manifest, *, compute_missing: bool = True, roles=("system",)
) -> pd.DataFrame:
    """One row per rated stimulus (trial × condition of the given roles, no training trials) with
    the metrics of :data:`common.audio_metrics.METRIC_NAMES` as columns, plus ``source``
    (``manifest`` or ``audio``).

    Metrics missing from the manifest are computed from the condition's and the trial's reference
    audio when ``compute_missing``; otherwise they stay NaN.
    """
    table = manifest.conditions
    table = table[~table["training"] & table["role"].isin(roles)].reset_index(drop=True)
    out = table[list(STIMULUS_COLUMNS)].copy()
    names = list(metrics.METRIC_NAMES) + [
        n for n in manifest.objective_names() if n not in metrics.METRIC_NAMES
    ]
    sources = []
    for name in names:
        column = f"objective_{name}"
        out[name] = table[column].to_numpy(dtype=float) if column in table else np.nan
    for index, row in table.iterrows():
        missing = [n for n in metrics.METRIC_NAMES if np.isnan(out.at[index, n])]
        if not missing or not compute_missing:
            sources.append("manifest")
            continue
        prediction, rate = _read_mono(Path(row["file"]))
        reference_path = manifest.reference_file(row["trial"])
        target, reference_rate = _read_mono(reference_path)
        if rate != reference_rate or prediction.size != target.size:
            raise ManifestError(
                f"{row['file']}: expected the sample rate and length of the reference "
                f"{reference_path} ({reference_rate} Hz, {target.size} samples), found {rate} Hz, "
                f"{prediction.size} samples"
            )
        computed = metrics.compute_all(prediction, target, rate)
        for name in missing:
            out.at[index, name] = computed[name]
        sources.append("audio")
    out["source"] = sources
    n_computed = sources.count("audio")
    if n_computed:
        log.info("computed objective metrics from audio for %d stimuli", n_computed)
    return out
