"""Stimulus-set manifests (``stimuli/<set>/manifest.json``) as the evaluation reads them.

The manifest gives what the ratings do not carry: each trial's item and group, each condition's role,
the model facts of systems (:data:`common.stimulus_set.MODEL_FACTS`), what rendered them (``origin``:
a study run, a ``.nam`` file or an export) and objective metrics against the reference. The format
is :mod:`common.stimulus_set`'s.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from common.stimulus_set import (
    model_facts,
    read_manifest,
    resolve_audio,
    system_origin,
    validate_manifest,
)

from .errors import ManifestError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Manifest:
    """A loaded manifest.

    ``conditions`` has one row per trial × condition with columns ``trial, item, group, device,
    training, condition, role, file`` (absolute path), ``origin`` (systems: ``study``, ``nam`` or
    ``export``), the model facts and ``objective_<metric>``.
    """

    path: Path
    sample_rate: int
    data: dict
    conditions: pd.DataFrame

    @property
    def folder(self) -> Path:
        return self.path.parent

    def roles(self) -> dict[str, str]:
        """Condition id → role (a condition id has one role across the whole set)."""
        pairs = self.conditions[["condition", "role"]].drop_duplicates()
        return dict(zip(pairs["condition"], pairs["role"], strict=True))

    def objective_names(self) -> list[str]:
        return [c.removeprefix("objective_") for c in self.conditions if c.startswith("objective_")]

    def reference_file(self, trial: str) -> Path:
        for entry in self.data["trials"]:
            if entry["id"] == trial:
                return resolve_audio(self.folder, trial, entry["reference"], f"{self.path}: trial {trial!r} reference",
                                     ManifestError)
        raise ManifestError(f"{self.path}: no trial {trial!r}")


def load_manifest(source: Path | str) -> Manifest:
    """Read ``manifest.json`` from a stimulus-set folder (or the file itself), checked as
    :mod:`common.stimulus_set` states the format (the audio files need not exist)."""
    path, data = read_manifest(source, ManifestError)
    validate_manifest(data, path, ManifestError)
    rows = []
    for i, trial in enumerate(data["trials"]):
        for j, cond in enumerate(trial["conditions"]):
            where = f"{path}: trials[{i}].conditions[{j}].file"
            row = {
                "trial": trial["id"],
                "item": str(trial.get("item", trial["id"])),
                "group": str(trial.get("group", "all")),
                "device": trial.get("device"),
                "training": bool(trial.get("training", False)),
                "condition": cond["id"],
                "role": cond["role"],
                "file": str(resolve_audio(path.parent, trial["id"], cond["file"], where, ManifestError)),
            }
            row["origin"] = system_origin(cond) if cond["role"] == "system" else None
            row.update(model_facts(cond))
            for name, value in (cond.get("objective") or {}).items():
                row[f"objective_{name}"] = float("nan") if value is None else float(value)
            rows.append(row)
    return Manifest(path=path, sample_rate=data["sample_rate"], data=data, conditions=pd.DataFrame(rows))


def annotate(ratings: pd.DataFrame, manifest: Manifest) -> pd.DataFrame:
    """Join the manifest to tidy ratings: set ``item`` and ``role``, add ``group``.

    Ratings of training trials are dropped (BS.1534-3 §5.2 discards training grades). A rating
    whose trial × condition the manifest does not list is an error naming it.
    """
    table = manifest.conditions[["trial", "condition", "item", "group", "role", "training"]]
    merged = ratings.drop(columns=["item", "role"]).merge(
        table, on=["trial", "condition"], how="left", validate="many_to_one", indicator=True
    )
    unknown = merged[merged["_merge"] == "left_only"][["trial", "condition"]].drop_duplicates()
    if not unknown.empty:
        pairs = [f"{t}/{c}" for t, c in unknown.head(5).itertuples(index=False)]
        raise ManifestError(
            f"{manifest.path}: {len(unknown)} rated trial/condition pair(s) are not in the manifest, "
            f"e.g. {pairs}; is this the stimulus set these ratings are for?"
        )
    training = merged["training"].astype(bool)
    if training.any():
        log.info("dropped %d ratings of training trials", int(training.sum()))
    merged = merged[~training].drop(columns=["_merge", "training"]).reset_index(drop=True)
    columns = [c for c in ratings.columns] + ["group"]
    return merged[columns]
