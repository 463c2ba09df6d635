"""Stimulus sets as the web app sees them: ``stimuli/<set>/manifest.json`` and its audio files.

Only files a manifest lists can ever be served: every path is resolved once at load time and must
stay inside the set folder, so a crafted manifest or URL cannot reach anything else.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from common.bs1534 import MAX_SIGNALS_PER_TRIAL

from .errors import StimulusSetError
from .study import StudySettings, load_study_settings

log = logging.getLogger(__name__)

ROLES = ("hidden_reference", "anchor_low", "anchor_mid", "system")
SUPPORTED_SCHEMAS = (1,)


@dataclass(frozen=True)
class Condition:
    id: str
    role: str
    path: Path


@dataclass(frozen=True)
class Trial:
    id: str
    item: str
    training: bool
    reference: Path
    conditions: tuple[Condition, ...]

    def condition(self, condition_id: str) -> Condition:
        for c in self.conditions:
            if c.id == condition_id:
                return c
        raise KeyError(condition_id)


@dataclass(frozen=True)
class StimulusSet:
    name: str
    folder: Path
    sample_rate: int
    trials: tuple[Trial, ...]
    settings: StudySettings
    manifest: dict

    @property
    def training_trials(self) -> tuple[Trial, ...]:
        return tuple(t for t in self.trials if t.training)

    @property
    def rated_trials(self) -> tuple[Trial, ...]:
        return tuple(t for t in self.trials if not t.training)

    def trial(self, trial_id: str) -> Trial:
        for t in self.trials:
            if t.id == trial_id:
                return t
        raise KeyError(trial_id)


def _audio_path(folder: Path, trial_id: str, name: object, where: str) -> Path:
    if not isinstance(name, str) or not name:
        raise StimulusSetError(f"{where}: expected a file name, found {name!r}")
    # A bare file name lives in audio/<trial_id>/; anything with a folder is relative to the set.
    rel = Path(name)
    candidate = folder / rel if len(rel.parts) > 1 else folder / "audio" / trial_id / rel
    resolved = candidate.resolve()
    root = folder.resolve()
    if rel.is_absolute() or root not in resolved.parents:
        raise StimulusSetError(f"{where}: {name!r} points outside the stimulus set folder {folder}")
    if resolved.suffix.lower() != ".wav":
        raise StimulusSetError(f"{where}: expected a .wav file, found {name!r}")
    if not resolved.is_file():
        raise StimulusSetError(f"{where}: file {candidate} does not exist")
    return resolved


def _str(entry: dict, key: str, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value:
        raise StimulusSetError(f"{where}.{key}: expected a non-empty string, found {value!r}")
    return value


def load_stimulus_set(folder: Path | str) -> StimulusSet:
    """Read and check ``<folder>/manifest.json`` and ``<folder>/test.yaml``."""
    folder = Path(folder)
    path = folder / "manifest.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StimulusSetError(f"{folder}: no manifest.json (is this a stimulus set folder?)") from None
    except json.JSONDecodeError as exc:
        raise StimulusSetError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(manifest, dict):
        raise StimulusSetError(f"{path}: expected a JSON object at the top level")
    schema = manifest.get("schema")
    if schema not in SUPPORTED_SCHEMAS:
        raise StimulusSetError(
            f"{path}: schema: expected one of {list(SUPPORTED_SCHEMAS)}, found {schema!r}"
        )
    sample_rate = manifest.get("sample_rate")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0:
        raise StimulusSetError(f"{path}: sample_rate: expected a positive integer, found {sample_rate!r}")
    raw_trials = manifest.get("trials")
    if not isinstance(raw_trials, list) or not raw_trials:
        raise StimulusSetError(f"{path}: trials: expected a non-empty list, found {raw_trials!r}")
    trials = []
    seen_trials: set[str] = set()
    for i, entry in enumerate(raw_trials):
        where = f"{path}: trials[{i}]"
        if not isinstance(entry, dict):
            raise StimulusSetError(f"{where}: expected an object, found {entry!r}")
        trial_id = _str(entry, "id", where)
        if trial_id in seen_trials:
            raise StimulusSetError(f"{where}.id: {trial_id!r} is used by another trial")
        seen_trials.add(trial_id)
        training = entry.get("training", False)
        if not isinstance(training, bool):
            raise StimulusSetError(f"{where}.training: expected true or false, found {training!r}")
        reference = _audio_path(folder, trial_id, entry.get("reference"), f"{where}.reference")
        raw_conditions = entry.get("conditions")
        if not isinstance(raw_conditions, list) or not raw_conditions:
            raise StimulusSetError(f"{where}.conditions: expected a non-empty list")
        if len(raw_conditions) > MAX_SIGNALS_PER_TRIAL:
            raise StimulusSetError(
                f"{where}.conditions: BS.1534-3 allows at most {MAX_SIGNALS_PER_TRIAL} signals per "
                f"trial, found {len(raw_conditions)}"
            )
        conditions = []
        for j, c in enumerate(raw_conditions):
            cw = f"{where}.conditions[{j}]"
            if not isinstance(c, dict):
                raise StimulusSetError(f"{cw}: expected an object, found {c!r}")
            cid = _str(c, "id", cw)
            if any(cid == other.id for other in conditions):
                raise StimulusSetError(f"{cw}.id: {cid!r} appears twice in trial {trial_id!r}")
            role = c.get("role")
            if role not in ROLES:
                raise StimulusSetError(f"{cw}.role: expected one of {list(ROLES)}, found {role!r}")
            conditions.append(Condition(cid, role, _audio_path(folder, trial_id, c.get("file"), f"{cw}.file")))
        item = entry.get("item", trial_id)
        trials.append(Trial(trial_id, str(item), training, reference, tuple(conditions)))
    if not any(not t.training for t in trials):
        raise StimulusSetError(f"{path}: trials: every trial is a training trial; nothing to rate")
    settings = load_study_settings(folder)
    n_rated = sum(not t.training for t in trials)
    if settings.trials_per_participant is not None and settings.trials_per_participant > n_rated:
        raise StimulusSetError(
            f"{folder / 'test.yaml'}: trials_per_participant: expected at most {n_rated} "
            f"(the rated trials in the manifest), found {settings.trials_per_participant}"
        )
    return StimulusSet(folder.name, folder, sample_rate, tuple(trials), settings, manifest)
