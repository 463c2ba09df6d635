"""The stimulus-set config (``python -m stimulus_sets build CONFIG``): which trained study, which
items, which groups of models per trial, and the levels and lengths of the signals.

Example (see ``stimulus_sets/sets/demo.yaml``)::

    study_dir: results/zoo/demo
    items:
      - {name: guitar, kind: guitar}
      - {name: riff, dry: recordings/riff_dry.wav, wet: recordings/riff_wet.wav, start_s: 12}
    groups:
      - name: S-16-8
        layers: [16, 8]
        systems:
          - {id: distilled, recipe: kd, teacher: hourglass}
          - {id: non_distilled, recipe: baseline}

``study_dir`` is the folder ``python -m models study`` trained (``runs.csv`` and
``runs/<run_id>/``); the systems select rows of its runs.csv (:mod:`stimulus_sets.selection`).
Relative paths are relative to the working directory.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from common.anchors import ANCHORS
from common.bs1534 import FADE_MS
from common.stimulus_set import HIDDEN_REFERENCE_ID
from common.typed_config import TypedConfig

from .errors import ConfigError

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
RESERVED_IDS = frozenset({"reference", HIDDEN_REFERENCE_ID, *(a.id for a in ANCHORS)})

_typed = TypedConfig(ConfigError)
from_dict = _typed.from_dict
load_yaml = _typed.load_yaml


def _check_name(value: str, where: str) -> None:
    if not NAME_PATTERN.match(value):
        raise ConfigError(
            f"{where}: expected a name of letters, digits, '_', '-' or '.' (starting with a letter or "
            f"digit), found {value!r}"
        )


@dataclass(frozen=True)
class ItemSpec:
    """One piece of audio material. Either a built-in excerpt (``kind``: guitar, bass, drums;
    synthesised from ``seed``, by default derived from the set's seed and the item's position) or
    the user's ``dry`` WAV, read from ``start_s``. The reference is the study device's output, or
    the user's ``wet`` WAV (the same recording through the real device, sample-aligned with ``dry``)."""

    name: str
    kind: Literal["guitar", "bass", "drums"] | None = None
    seed: int | None = None
    dry: str | None = None
    wet: str | None = None
    start_s: float = 0.0

    def __post_init__(self) -> None:
        where = f"item {self.name!r}"
        _check_name(self.name, f"{where}: name")
        if (self.kind is None) == (self.dry is None):
            raise ConfigError(
                f"{where}: expected exactly one of 'kind' (a built-in excerpt) or 'dry' (a WAV file), "
                f"found {'both' if self.kind is not None else 'neither'}"
            )
        if self.wet is not None and self.dry is None:
            raise ConfigError(f"{where}: 'wet' needs the matching 'dry' file, found only 'wet'")
        if self.kind is not None and self.start_s != 0.0:
            raise ConfigError(f"{where}: 'start_s' applies to WAV files only, found start_s {self.start_s}")
        if not (math.isfinite(self.start_s) and self.start_s >= 0):
            raise ConfigError(f"{where}: start_s must be a number >= 0, found {self.start_s}")
        if self.seed is not None and self.seed < 0:
            raise ConfigError(f"{where}: seed must be an integer >= 0, found {self.seed}")


@dataclass(frozen=True)
class SystemSpec:
    """One model condition of a group: ``id`` is the condition id, stable across trials
    (``distilled``, ``non_distilled``, ``kd_q4``, ``slim_25`` …). The other keys select exactly one
    row of the study's runs.csv by its columns: any of ``run_id``, ``recipe``, ``variant``,
    ``teacher``, ``bits`` (quantized recipes, e.g. ``{id: kd_q4, recipe: kd_qat, bits: 4}``),
    ``width`` (slimmable recipes, e.g. ``{id: slim_25, recipe: slimmable, width: 0.25}``),
    ``layers`` (an LSTM's sizes) or ``model`` (a label such as ``WN-slimmable``; default: the
    group's), ``seed`` (default: the study's first seed). ``teacher: none`` selects runs without
    a teacher."""

    id: str
    run_id: str | None = None
    recipe: str | None = None
    variant: str | None = None
    teacher: str | None = None
    layers: tuple[int, ...] | None = None
    seed: int | None = None
    bits: int | None = None
    width: float | None = None
    model: str | None = None

    def __post_init__(self) -> None:
        _check_name(self.id, "system id")
        if self.layers is not None and self.model is not None:
            raise ConfigError(f"system {self.id!r}: expected one of 'layers' or 'model', found both")
        if self.id in RESERVED_IDS:
            raise ConfigError(f"system id {self.id!r} is reserved for the reference and the anchors; "
                              f"choose another (reserved: {sorted(RESERVED_IDS)})")


@dataclass(frozen=True)
class GroupSpec:
    """The models compared in one trial. ``layers`` (an LSTM student's sizes) or ``model`` (a
    student's label, e.g. ``WN-slimmable``) is the default selector of its systems. ``teacher`` (the
    name of a teacher the study's students learnt from) adds that teacher as the condition
    ``teacher``."""

    name: str
    systems: tuple[SystemSpec, ...]
    layers: tuple[int, ...] | None = None
    model: str | None = None
    teacher: str | None = None

    def __post_init__(self) -> None:
        _check_name(self.name, "group name")
        if self.layers is not None and self.model is not None:
            raise ConfigError(f"group {self.name!r}: expected one of 'layers' or 'model', found both")
        if not self.systems and self.teacher is None:
            raise ConfigError(f"group {self.name!r}: expected at least one system, found none")
        ids = [s.id for s in self.systems] + (["teacher"] if self.teacher else [])
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ConfigError(f"group {self.name!r}: condition id {duplicates[0]!r} is used twice")

    @property
    def condition_ids(self) -> list[str]:
        return [s.id for s in self.systems] + (["teacher"] if self.teacher else [])


@dataclass(frozen=True)
class StimulusConfig:
    """A stimulus set: the runs of the trained study in ``study_dir`` × ``items`` × ``groups``,
    plus levels and lengths.

    ``dataset`` names the dataset the runs were trained on (needed when runs.csv holds several);
    ``sample_rate`` defaults to the dataset's; ``loudness_target_lufs`` is the BS.1770 loudness
    every signal is aligned to before a common per-trial gain keeps every true peak at or below
    ``peak_ceiling_dbfs``. ``training_trials`` extra trials (flagged ``training: true``) repeat
    rated trials chosen to span the impairments. ``strict`` enforces the BS.1534-3 limits.
    """

    study_dir: str
    items: tuple[ItemSpec, ...]
    groups: tuple[GroupSpec, ...]
    dataset: str | None = None
    knobs: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    duration_s: float = 10.0
    sample_rate: int | None = None
    loudness_target_lufs: float = -23.0
    peak_ceiling_dbfs: float = -1.0
    bit_depth: Literal[16, 24] = 24
    fade_ms: float = FADE_MS
    training_trials: int = 1
    max_latency_ms: float = 50.0
    strict: bool = True

    def __post_init__(self) -> None:
        if not self.items:
            raise ConfigError("stimulus config: items: expected at least one item, found none")
        if not self.groups:
            raise ConfigError("stimulus config: groups: expected at least one group, found none")
        for key, values in (("items", [i.name for i in self.items]), ("groups", [g.name for g in self.groups])):
            duplicates = sorted({v for v in values if values.count(v) > 1})
            if duplicates:
                raise ConfigError(f"stimulus config: {key}: name {duplicates[0]!r} is used twice")
        if not (math.isfinite(self.duration_s) and self.duration_s > 0):
            raise ConfigError(f"stimulus config: duration_s must be a positive number, found {self.duration_s}")
        if self.sample_rate is not None and self.sample_rate <= 0:
            raise ConfigError(f"stimulus config: sample_rate must be a positive integer, found {self.sample_rate}")
        if not (math.isfinite(self.loudness_target_lufs) and -70.0 < self.loudness_target_lufs < 0.0):
            raise ConfigError("stimulus config: loudness_target_lufs must lie between -70 and 0 LUFS, "
                              f"found {self.loudness_target_lufs}")
        if not (math.isfinite(self.peak_ceiling_dbfs) and self.peak_ceiling_dbfs <= 0.0):
            raise ConfigError(f"stimulus config: peak_ceiling_dbfs must be <= 0, found {self.peak_ceiling_dbfs}")
        if not (math.isfinite(self.fade_ms) and 0.0 <= self.fade_ms <= 100.0):
            raise ConfigError(f"stimulus config: fade_ms must lie in [0, 100], found {self.fade_ms}")
        rated = len(self.items) * len(self.groups)
        if not 0 <= self.training_trials <= rated:
            raise ConfigError(f"stimulus config: training_trials repeats rated trials: expected 0 to {rated} "
                              f"(items × groups), found {self.training_trials}")
        if not (math.isfinite(self.max_latency_ms) and self.max_latency_ms >= 0):
            raise ConfigError(f"stimulus config: max_latency_ms must be >= 0, found {self.max_latency_ms}")
        if self.seed < 0:
            raise ConfigError(f"stimulus config: seed must be an integer >= 0, found {self.seed}")


def load_stimulus_config(path: str | Path) -> StimulusConfig:
    """Read a stimulus config YAML; unknown keys and wrong types are errors naming the key and file."""
    data = load_yaml(path)
    if isinstance(data, dict) and "study" in data and "study_dir" not in data:
        # Configs used to name the study YAML; the stage now reads what the training wrote.
        raise ConfigError(f"{path}: study: expected 'study_dir', the trained study folder holding runs.csv "
                          f"(e.g. results/zoo/demo), found 'study: {data['study']}'")
    return from_dict(StimulusConfig, data, where=str(path))
