"""The stimulus-set config (``python -m stimulus_sets build CONFIG``): which systems, which
items, which groups of systems per trial, and the levels and lengths of the signals.

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
          - {id: capture, nam: captures/amp.nam}
          - {id: student_q8, export: exports/student_q8.pt}

``study_dir`` is the folder ``python -m models study`` trained (``runs.csv`` and
``runs/<run_id>/``); a system either selects a row of its runs.csv (:mod:`stimulus_sets.selection`)
or names a model file: ``nam`` (NAM's ``.nam``; ``slim`` is NAM's slim value for a file with slim
levels, a ``SlimmableContainer`` or a slimmable WaveNet) or ``export`` (an Earshot export, its
``.pt`` or ``.json``); ``width`` cuts a network of the zoo's architectures as exports at a width
are cut (an export: only to a width its ``widths.allowed`` lists). Model files are rendered,
aligned and levelled exactly as trained runs are (:mod:`stimulus_sets.model_files`).

The reference of an item is, first to last: its ``wet`` WAV; its ``reference`` model
(``reference: {nam: capture.nam}``); the set's ``reference`` model; the capture the study's dataset
was rendered through (its ``teacher_nam``); the study's built-in device. A set whose systems are
all model files and whose items all have a reference needs no ``study_dir``. Relative paths are
relative to the working directory.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from common.anchors import ANCHORS
from common.bs1534 import FADE_MS
from common.stimulus_set import HIDDEN_REFERENCE_ID, ORIGIN_EXPORT, ORIGIN_NAM
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


NAM, EXPORT = ORIGIN_NAM, ORIGIN_EXPORT
"""The keys naming a model file: NAM's ``.nam``, or an Earshot export (``<name>.pt`` + ``<name>.json``)."""


def _fraction(value: float | None, key: str, where: str, low_open: bool) -> None:
    if value is None:
        return
    inside = (0.0 < value <= 1.0) if low_open else (0.0 <= value <= 1.0)
    if not (math.isfinite(value) and inside):
        raise ConfigError(f"{where}: {key} must lie in {'(0, 1]' if low_open else '[0, 1]'}, found {value}")


@dataclass(frozen=True)
class ModelFileSpec:
    """A model read from a file: ``source`` (:data:`NAM` or :data:`EXPORT`), its ``path``, and the
    ``slim`` value (NAM's, for a ``.nam`` with slim levels) and ``width`` (the fraction of channels
    kept, :func:`models.nets.slimmable.slim`) to render it at."""

    source: Literal["nam", "export"]
    path: str
    slim: float | None = None
    width: float | None = None

    @property
    def label(self) -> str:
        """``nam:amp.nam``, ``nam:A2.nam@slim=0.3``, ``export:student.pt@width=0.5``: how the
        manifest names the system."""
        cut = "".join(f"@{key}={value:g}" for key, value in (("slim", self.slim), ("width", self.width))
                      if value is not None)
        return f"{self.source}:{Path(self.path).name}{cut}"


def _model_file(nam: str | None, export: str | None, slim: float | None, width: float | None,
                where: str) -> ModelFileSpec | None:
    """The model file named by ``nam``/``export`` (None when neither), its cut checked."""
    if nam is not None and export is not None:
        raise ConfigError(f"{where}: expected one of 'nam' (a .nam file) or 'export' (an Earshot export), found both")
    if slim is not None and nam is None:
        raise ConfigError(f"{where}: 'slim' is NAM's slim value (a SlimmableContainer's submodel, a slimmable "
                          f"WaveNet's channels) and needs 'nam', found {'export' if export is not None else 'no model file'}")
    _fraction(slim, "slim", where, low_open=False)
    if nam is None and export is None:
        return None
    _fraction(width, "width", where, low_open=True)
    return ModelFileSpec(NAM if nam is not None else EXPORT, nam if nam is not None else export, slim, width)


@dataclass(frozen=True)
class ReferenceSpec:
    """A reference rendered by a model: exactly one of ``nam`` (a capture) or ``export``, with
    ``slim``/``width`` as for a system (``reference: {nam: capture.nam}``)."""

    nam: str | None = None
    export: str | None = None
    slim: float | None = None
    width: float | None = None

    def __post_init__(self) -> None:
        if self.nam is None and self.export is None:
            raise ConfigError("reference: expected 'nam' (a .nam file) or 'export' (an Earshot export), found neither")
        _model_file(self.nam, self.export, self.slim, self.width, "reference")

    @property
    def model_file(self) -> ModelFileSpec:
        if self.nam is not None:
            return ModelFileSpec(NAM, self.nam, self.slim, self.width)
        return ModelFileSpec(EXPORT, str(self.export), self.slim, self.width)


@dataclass(frozen=True)
class ItemSpec:
    """One piece of audio material. Either a built-in excerpt (``kind``: guitar, bass, drums;
    synthesised from ``seed``, by default derived from the set's seed and the item's position) or
    the user's ``dry`` WAV, read from ``start_s``. The reference is the user's ``wet`` WAV (the same
    recording through the real device, sample-aligned with ``dry``), or the dry input rendered by the
    ``reference`` model (e.g. ``{nam: capture.nam}``), or the set's default (see the module)."""

    name: str
    kind: Literal["guitar", "bass", "drums"] | None = None
    seed: int | None = None
    dry: str | None = None
    wet: str | None = None
    start_s: float = 0.0
    reference: ReferenceSpec | None = None

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
        if self.wet is not None and self.reference is not None:
            raise ConfigError(f"{where}: expected one reference, 'wet' (a recording) or 'reference' (a model), "
                              "found both")
        if self.kind is not None and self.start_s != 0.0:
            raise ConfigError(f"{where}: 'start_s' applies to WAV files only, found start_s {self.start_s}")
        if not (math.isfinite(self.start_s) and self.start_s >= 0):
            raise ConfigError(f"{where}: start_s must be a number >= 0, found {self.start_s}")
        if self.seed is not None and self.seed < 0:
            raise ConfigError(f"{where}: seed must be an integer >= 0, found {self.seed}")


STUDY_SELECTORS = ("run_id", "recipe", "variant", "teacher", "layers", "seed", "bits", "model")
"""SystemSpec keys that select a study run (``width`` selects one too, and cuts a model file)."""


@dataclass(frozen=True)
class SystemSpec:
    """One model condition of a group: ``id`` is the condition id, stable across trials
    (``distilled``, ``non_distilled``, ``kd_q4``, ``slim_25``, ``capture`` …).

    A trained run: the other keys select exactly one row of the study's runs.csv by its columns:
    any of ``run_id``, ``recipe``, ``variant``, ``teacher``, ``bits`` (quantized recipes, e.g.
    ``{id: kd_q4, recipe: kd_qat, bits: 4}``), ``width`` (slimmable recipes, e.g. ``{id: slim_25,
    recipe: slimmable, width: 0.25}``), ``layers`` (an LSTM's sizes) or ``model`` (a label such as
    ``WN-slimmable``; default: the group's), ``seed`` (default: the study's first seed).
    ``teacher: none`` selects runs without a teacher.

    A model file: ``nam`` (``{id: capture, nam: amp.nam}``; ``slim`` in [0, 1] is NAM's slim value,
    as its plug-in's slider sets it, for a file with slim levels: a ``SlimmableContainer`` picks a
    submodel, a slimmable WaveNet its channels) or ``export`` (``{id: student_q8, export:
    exports/student_q8.pt}``, the ``.pt`` or its ``.json``). ``width`` in (0, 1] cuts a network of
    the zoo's architectures (a 0.5.x WaveNet, an LSTM) to the first channels of every weight, as
    ``python -m models export --width`` does; an export only to a width its manifest allows. A model
    file takes no study selector."""

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
    nam: str | None = None
    export: str | None = None
    slim: float | None = None

    def __post_init__(self) -> None:
        _check_name(self.id, "system id")
        if self.layers is not None and self.model is not None:
            raise ConfigError(f"system {self.id!r}: expected one of 'layers' or 'model', found both")
        if self.id in RESERVED_IDS:
            raise ConfigError(f"system id {self.id!r} is reserved for the reference and the anchors; "
                              f"choose another (reserved: {sorted(RESERVED_IDS)})")
        where = f"system {self.id!r}"
        spec = _model_file(self.nam, self.export, self.slim, self.width, where)
        if spec is not None:
            selectors = [key for key in STUDY_SELECTORS if getattr(self, key) is not None]
            if selectors:
                raise ConfigError(f"{where}: {selectors[0]!r} selects a study run, but the system is the model file "
                                  f"{spec.path!r} ({spec.source}); a model file takes only 'slim' and 'width'")

    @property
    def model_file(self) -> ModelFileSpec | None:
        """The model file this system renders (None: it selects a study run)."""
        return _model_file(self.nam, self.export, self.slim, self.width, f"system {self.id!r}")


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
    """A stimulus set: the systems (runs of the trained study in ``study_dir``, model files) ×
    ``items`` × ``groups``, plus levels and lengths.

    ``study_dir`` may be left out when every system is a model file and every item has a reference
    (``wet``, its own ``reference`` or the set's ``reference``, a model rendering the dry input of
    every item that has neither). ``dataset`` names the dataset the runs were trained on (needed
    when runs.csv holds several); ``sample_rate`` defaults to the highest rate of the systems (every
    system and reference model must run at the set's rate: a model is never resampled); ``loudness_target_lufs`` is the BS.1770 loudness
    every signal is aligned to before a common per-trial gain keeps every true peak at or below
    ``peak_ceiling_dbfs``. ``training_trials`` extra trials (flagged ``training: true``) repeat
    rated trials chosen to span the impairments. ``strict`` enforces the BS.1534-3 limits.
    """

    items: tuple[ItemSpec, ...]
    groups: tuple[GroupSpec, ...]
    study_dir: str | None = None
    reference: ReferenceSpec | None = None
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
        if self.study_dir is None:
            self._check_without_study()

    def _check_without_study(self) -> None:
        """Without a study every system must be a model file and every item must have a reference."""
        where = "stimulus config: no study_dir"
        if self.dataset is not None:
            raise ConfigError(f"{where}: 'dataset' names a dataset of the study's runs, found dataset "
                              f"{self.dataset!r} without a study")
        for group in self.groups:
            if group.teacher is not None:
                raise ConfigError(f"{where}: group {group.name!r}: 'teacher' adds a run of the study; name the "
                                  "teacher's file as a system instead ({id: teacher, nam: FILE} or export: FILE)")
            for system in group.systems:
                if system.model_file is None:
                    raise ConfigError(f"{where}: group {group.name!r}, system {system.id!r} selects a study run; "
                                      "expected 'nam: FILE' or 'export: FILE', or give study_dir")
        if self.reference is None:
            for item in self.items:
                if item.wet is None and item.reference is None:
                    raise ConfigError(f"{where}: item {item.name!r} has no reference; expected 'wet' (a recording), "
                                      "'reference: {nam: FILE}' on the item or on the set, or a study_dir whose "
                                      "device renders it")


def load_stimulus_config(path: str | Path) -> StimulusConfig:
    """Read a stimulus config YAML; unknown keys and wrong types are errors naming the key and file."""
    data = load_yaml(path)
    if isinstance(data, dict) and "study" in data and "study_dir" not in data:
        # Configs used to name the study YAML; the stage now reads what the training wrote.
        raise ConfigError(f"{path}: study: expected 'study_dir', the trained study folder holding runs.csv "
                          f"(e.g. results/zoo/demo), found 'study: {data['study']}'")
    return from_dict(StimulusConfig, data, where=str(path))
