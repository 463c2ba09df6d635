"""Stimulus-set manifests (``stimuli/<set>/manifest.json``) as the evaluation reads them.

The manifest gives what the ratings do not carry: each trial's item and group, each condition's role,
the model facts of systems (``run_id, arch, layers, recipe, bits, width, params, bytes,
macs_per_sample``) and objective metrics against the reference. See DESIGN.md for the format.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .errors import ManifestError
from .ratings import ROLES

log = logging.getLogger(__name__)

SUPPORTED_SCHEMAS = (1,)
MODEL_FACTS = (
    "run_id",
    "arch",
    "layers",
    "recipe",
    "teacher",
    "bits",
    "width",
    "params",
    "bytes",
    "macs_per_sample",
    "rtf_offline",
    "rtf_stream",
)


@dataclass(frozen=True)
class Manifest:
    """A loaded manifest.

    ``conditions`` has one row per trial × condition with columns ``trial, item, group, device,
    training, condition, role, file`` (absolute path), the model facts and ``objective_<metric>``.
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
                return _resolve(self.folder, trial, entry["reference"])
        raise ManifestError(f"{self.path}: no trial {trial!r}")


def _resolve(folder: Path, trial: str, name: str) -> Path:
    # Same rule as the web app: a bare name lives in audio/<trial>/, a path is relative to the set.
    rel = Path(name)
    return (folder / rel if len(rel.parts) > 1 else folder / "audio" / trial / rel).resolve()


def load_manifest(source: Path | str) -> Manifest:
    """Read ``manifest.json`` from a stimulus-set folder (or the file itself)."""
    path = Path(source)
    if path.is_dir():
        path = path / "manifest.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(
            f"{path}: no such manifest (expected stimuli/<set>/manifest.json)"
        ) from None
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: expected a JSON object at the top level")
    if data.get("schema") not in SUPPORTED_SCHEMAS:
        raise ManifestError(
            f"{path}: schema: expected one of {list(SUPPORTED_SCHEMAS)}, found {data.get('schema')!r}"
        )
    sample_rate = data.get("sample_rate")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0:
        raise ManifestError(
            f"{path}: sample_rate: expected a positive integer, found {sample_rate!r}"
        )
    trials = data.get("trials")
    if not isinstance(trials, list) or not trials:
        raise ManifestError(f"{path}: trials: expected a non-empty list, found {trials!r}")
    rows = []
    role_of: dict[str, str] = {}
    for i, trial in enumerate(trials):
        where = f"{path}: trials[{i}]"
        if not isinstance(trial, dict) or not isinstance(trial.get("id"), str):
            raise ManifestError(f"{where}: expected an object with a string 'id'")
        if not isinstance(trial.get("reference"), str):
            raise ManifestError(
                f"{where}.reference: expected a file name, found {trial.get('reference')!r}"
            )
        conditions = trial.get("conditions")
        if not isinstance(conditions, list) or not conditions:
            raise ManifestError(f"{where}.conditions: expected a non-empty list")
        for j, cond in enumerate(conditions):
            cw = f"{where}.conditions[{j}]"
            if not isinstance(cond, dict) or not isinstance(cond.get("id"), str):
                raise ManifestError(f"{cw}: expected an object with a string 'id'")
            role = cond.get("role")
            if role not in ROLES:
                raise ManifestError(f"{cw}.role: expected one of {list(ROLES)}, found {role!r}")
            if role_of.setdefault(cond["id"], role) != role:
                raise ManifestError(
                    f"{cw}.role: condition {cond['id']!r} is {role!r} here but "
                    f"{role_of[cond['id']]!r} in an earlier trial"
                )
            if not isinstance(cond.get("file"), str):
                raise ManifestError(f"{cw}.file: expected a file name, found {cond.get('file')!r}")
            facts = cond.get("model") if isinstance(cond.get("model"), dict) else cond
            row = {
                "trial": trial["id"],
                "item": str(trial.get("item", trial["id"])),
                "group": str(trial.get("group", "all")),
                "device": trial.get("device"),
                "training": bool(trial.get("training", False)),
                "condition": cond["id"],
                "role": role,
                "file": str(_resolve(path.parent, trial["id"], cond["file"])),
            }
            for key in MODEL_FACTS:
                row[key] = facts.get(key)
            objective = cond.get("objective") or {}
            if not isinstance(objective, dict):
                raise ManifestError(f"{cw}.objective: expected an object of metric → number")
            for name, value in objective.items():
                if value is not None and not isinstance(value, (int, float)):
                    raise ManifestError(
                        f"{cw}.objective.{name}: expected a number, found {value!r}"
                    )
                row[f"objective_{name}"] = float("nan") if value is None else float(value)
            rows.append(row)
    return Manifest(path=path, sample_rate=sample_rate, data=data, conditions=pd.DataFrame(rows))


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
