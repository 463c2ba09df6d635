"""Stimulus sets as the web app sees them: ``stimuli/<set>/manifest.json`` and its audio files.

The format is :mod:`common.stimulus_set`'s. Only files a manifest lists can ever be served: every
path is resolved once at load time and must stay inside the set folder, so a crafted manifest or
URL cannot reach anything else.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from common.bs1534 import MAX_SIGNALS_PER_TRIAL
from common.stimulus_set import audio_path, read_manifest, resolve_audio, validate_manifest

from .errors import StimulusSetError
from .study import StudySettings, load_study_settings

log = logging.getLogger(__name__)



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
    resolved = resolve_audio(folder, trial_id, name, where, StimulusSetError)
    if resolved.suffix.lower() != ".wav":
        raise StimulusSetError(f"{where}: expected a .wav file, found {name!r}")
    if not resolved.is_file():
        raise StimulusSetError(f"{where}: file {audio_path(folder, trial_id, name)} does not exist")
    return resolved


def load_stimulus_set(folder: Path | str) -> StimulusSet:
    """Read and check ``<folder>/manifest.json`` (:mod:`common.stimulus_set`; every audio file
    present, at most 12 signals per trial) and ``<folder>/test.yaml``."""
    folder = Path(folder)
    path, manifest = read_manifest(folder, StimulusSetError)
    validate_manifest(manifest, path, StimulusSetError)
    trials = []
    for i, entry in enumerate(manifest["trials"]):
        where = f"{path}: trials[{i}]"
        trial_id = entry["id"]
        reference = _audio_path(folder, trial_id, entry["reference"], f"{where}.reference")
        raw_conditions = entry["conditions"]
        if len(raw_conditions) > MAX_SIGNALS_PER_TRIAL:
            raise StimulusSetError(
                f"{where}.conditions: BS.1534-3 allows at most {MAX_SIGNALS_PER_TRIAL} signals per "
                f"trial, found {len(raw_conditions)}"
            )
        conditions = tuple(
            Condition(c["id"], c["role"], _audio_path(folder, trial_id, c["file"], f"{where}.conditions[{j}].file"))
            for j, c in enumerate(raw_conditions)
        )
        item = entry.get("item", trial_id)
        trials.append(Trial(trial_id, str(item), entry.get("training", False), reference, conditions))
    if not any(not t.training for t in trials):
        raise StimulusSetError(f"{path}: trials: every trial is a training trial; nothing to rate")
    settings = load_study_settings(folder)
    n_rated = sum(not t.training for t in trials)
    if settings.trials_per_participant is not None and settings.trials_per_participant > n_rated:
        raise StimulusSetError(
            f"{folder / 'test.yaml'}: trials_per_participant: expected at most {n_rated} "
            f"(the rated trials in the manifest), found {settings.trials_per_participant}"
        )
    return StimulusSet(folder.name, folder, manifest["sample_rate"], tuple(trials), settings, manifest)
