"""Which model renders each condition of a stimulus config: a model file the system names
(:class:`stimulus_sets.config.ModelFileSpec`, loaded by :mod:`stimulus_sets.model_files`), or the
trained run its selectors match among the rows of the study folder's runs.csv
(:mod:`stimulus_sets.study_folder`).

A system selects by ``run_id`` alone, or by columns: ``model`` (a label, e.g. ``WN-slimmable``)
or ``layers`` (an LSTM's sizes; the group's when the system names neither), ``recipe``,
``variant``, ``teacher`` (``none``: an empty teacher), ``bits``, ``width`` and ``seed`` (default:
the seed of the dataset's first row, the study's first seed). A run cut to a width below 1 is
named by the network it was cut from, as in the study file: its own row holds the cut network
(``WN-slimmable@25%``, layers ``4-2``), its ``init_run`` the full one (``WN-slimmable``). A group's
``teacher`` adds the run its students were distilled from (runs.csv's ``teacher_run``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.stimulus_set import MODEL_FACTS
from stimulus_sets.config import NAM, GroupSpec, ModelFileSpec, StimulusConfig, SystemSpec
from stimulus_sets.study_folder import TrainedStudy, load_trained_study, run_dataset

from .errors import StimulusConfigError, StimulusError

LAYERS_ARCH = "lstm"
"""The architecture whose sizes the ``layers`` selector names: a WaveNet's channels per layer
array fill the same runs.csv column."""
CAPTURE_KEY = "teacher_nam"
"""The key of a run's dataset settings (config.json) naming the ``.nam`` capture whose output the
dataset's targets are: the default reference of a set built from that study."""
CAPTURE_LEVEL_KEYS = ("slim", "width")
"""The dataset keys choosing the capture's level (:func:`models.export.nam_read.load_nam_at`): the
reference plays the capture at the level the students learnt from."""
TEACHER_NONE = "none"  # the selector value for runs distilled from no teacher (runs.csv: empty)
COLUMN_SELECTORS = ("recipe", "variant", "bits", "width")
"""SystemSpec fields that select the runs.csv column of the same name, value for value."""
NETWORK_COLUMNS = ("arch", "model", "layers")
"""Columns matched against the network a run was trained as (for a cut run: the one it was cut from)."""


@dataclass(frozen=True)
class SelectedRun:
    """A run picked for a condition: its folder and its model facts (its runs.csv row)."""

    run_id: str
    run_dir: Path
    facts: dict[str, Any]


@dataclass(frozen=True)
class Selection:
    """Every group's systems, ``{group: [(condition_id, run or model file), …]}``; the runs come
    from one dataset of one study. ``study`` is None for a set without one. ``device`` is the
    dataset's built-in device (None for the user's recordings, a capture or no study), ``capture``
    the ``.nam`` its targets were rendered through (None when they were not)."""

    study: TrainedStudy | None
    dataset: str | None
    device: str | None
    groups: dict[str, list[tuple[str, SelectedRun | ModelFileSpec]]]
    capture: ModelFileSpec | None = None


def wanted_columns(spec: SystemSpec, group: GroupSpec, seed: int) -> dict[str, Any]:
    """The runs.csv values a run must hold to be ``spec``'s in ``group`` (``seed``: the default)."""
    if spec.run_id is not None:
        return {"run_id": spec.run_id}
    wanted: dict[str, Any] = {}
    model = spec.model or (None if spec.layers else group.model)
    layers = spec.layers or group.layers
    if model is not None:
        wanted["model"] = model
    elif layers is not None:
        wanted.update(arch=LAYERS_ARCH, layers="-".join(str(units) for units in layers))
    for key in COLUMN_SELECTORS:
        if getattr(spec, key) is not None:
            wanted[key] = getattr(spec, key)
    if spec.teacher is not None:
        wanted["teacher"] = "" if spec.teacher == TEACHER_NONE else spec.teacher
    wanted["seed"] = spec.seed if spec.seed is not None else seed
    return wanted


def _network_row(row: dict[str, Any], by_id: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The row of the network ``row`` was trained as: for a run cut to a width below 1, its init_run's."""
    width = row.get("width")
    parent = by_id.get(row.get("init_run") or "") if width is not None and width < 1.0 else None
    return row if parent is None else parent


def matching_runs(study: TrainedStudy, rows: list[dict[str, Any]], wanted: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows among ``rows`` holding every value of ``wanted`` (see :func:`wanted_columns`)."""
    by_id = {row["run_id"]: row for row in study.runs}
    hits = []
    for row in rows:
        network = _network_row(row, by_id)
        if all((network if column in NETWORK_COLUMNS else row).get(column) == value
               for column, value in wanted.items()):
            hits.append(row)
    return hits


def _describe(row: dict[str, Any]) -> str:
    return (f"{row['run_id']} (model {row['model']}, layers {row['layers']}, recipe {row['recipe']}, variant "
            f"{row['variant']}, teacher {row['teacher'] or TEACHER_NONE}, bits {row['bits']}, width {row['width']}, "
            f"seed {row['seed']})")


def _selected(study: TrainedStudy, row: dict[str, Any], where: str) -> SelectedRun:
    run_id = row["run_id"]
    run_dir = study.run_dir(run_id)
    retrain = f"`python -m models study {study.study_file or 'STUDY.yaml'} --out {study.root}`"
    if not (run_dir / "checkpoint.pt").is_file():
        raise StimulusError(f"{where}: run {run_id} is not trained: no checkpoint.pt in {run_dir}; "
                            f"train it with {retrain}")
    if not (run_dir / "metrics.json").is_file():
        raise StimulusError(f"{where}: run {run_id} did not finish (no metrics.json in {run_dir}); "
                            f"resume it with {retrain}")
    return SelectedRun(run_id, run_dir, {key: row.get(key) for key in MODEL_FACTS})


def _dataset_rows(study: TrainedStudy, dataset: str | None) -> tuple[str, list[dict[str, Any]]]:
    names = list(dict.fromkeys(row["dataset"] for row in study.runs))
    if not names:
        raise StimulusConfigError(f"study_dir: expected trained runs in {study.runs_csv}, found none")
    if dataset is None:
        if len(names) != 1:
            raise StimulusConfigError(f"study_dir: the runs of {study.runs_csv} are on the datasets {names}; "
                                      "name one with 'dataset:'")
        dataset = names[0]
    elif dataset not in names:
        raise StimulusConfigError(f"dataset: expected one of the study's datasets {names} (runs.csv's dataset "
                                  f"column in {study.runs_csv}), found {dataset!r}")
    return dataset, [row for row in study.runs if row["dataset"] == dataset]


def _teacher_row(study: TrainedStudy, rows: list[dict[str, Any]], group: GroupSpec, seed: int) -> dict[str, Any]:
    where = f"group {group.name!r}: teacher"
    teachers = list(dict.fromkeys(row["teacher"] for row in rows if row["teacher"]))
    if group.teacher not in teachers:
        raise StimulusConfigError(f"{where}: expected one of the teachers the study's students learnt from "
                                  f"{teachers} (runs.csv's teacher column in {study.runs_csv}), found {group.teacher!r}")
    teacher_run = next((row.get("teacher_run") for row in rows
                        if row["teacher"] == group.teacher and row["seed"] == seed and row.get("teacher_run")), None)
    if teacher_run is None:
        raise StimulusConfigError(f"{where}: expected a run of seed {seed} naming the run of teacher {group.teacher!r} "
                                  f"in the teacher_run column of {study.runs_csv}, found none")
    row = next((row for row in study.runs if row["run_id"] == teacher_run), None)
    if row is None:
        raise StimulusError(f"{where}: the teacher's run {teacher_run} has no row in {study.runs_csv}; "
                            "the study's training did not finish")
    return row


def select_runs(config: StimulusConfig) -> Selection:
    """Resolve the study folder, its dataset and every group's systems: a model file as named, a
    run by its selectors. A selector matching no run or several runs, or a run that is not
    trained, is an error naming the group and system."""
    if config.study_dir is None:
        files = {group.name: [(spec.id, spec.model_file) for spec in group.systems if spec.model_file is not None]
                 for group in config.groups}
        return Selection(None, None, None, files)
    study = load_trained_study(config.study_dir)
    dataset, rows = _dataset_rows(study, config.dataset)
    seed = rows[0]["seed"]
    groups: dict[str, list[tuple[str, SelectedRun | ModelFileSpec]]] = {}
    for group in config.groups:
        chosen: list[tuple[str, SelectedRun | ModelFileSpec]] = []
        for spec in group.systems:
            if spec.model_file is not None:
                chosen.append((spec.id, spec.model_file))
                continue
            where = f"group {group.name!r}, system {spec.id!r}"
            wanted = wanted_columns(spec, group, seed)
            hits = matching_runs(study, rows, wanted)
            if len(hits) != 1:
                asked = ", ".join(f"{column} {value!r}" for column, value in wanted.items())
                known = "; ".join(_describe(row) for row in rows)  # one line: errors are one line
                raise StimulusConfigError(f"{where}: expected exactly one run of study {study.name!r} to match "
                                          f"{asked}, found {len(hits)}; the runs on {dataset!r} in "
                                          f"{study.runs_csv}: {known}")
            chosen.append((spec.id, _selected(study, hits[0], where)))
        if group.teacher is not None:
            row = _teacher_row(study, rows, group, seed)
            chosen.append(("teacher", _selected(study, row, f"group {group.name!r}, teacher")))
        groups[group.name] = chosen
    runs = [run for chosen in groups.values() for _, run in chosen if isinstance(run, SelectedRun)]
    # A set of model files alone still takes its reference from the study's dataset.
    run_dirs = {run.run_id: run.run_dir for run in runs} or {rows[0]["run_id"]: study.run_dir(rows[0]["run_id"])}
    settings = {run_id: run_dataset(run_dir) for run_id, run_dir in run_dirs.items()}
    for key in ("device", CAPTURE_KEY, *CAPTURE_LEVEL_KEYS):
        values = {run_id: dataset_settings.get(key) for run_id, dataset_settings in settings.items()}
        if len(set(values.values())) > 1:
            raise StimulusError(f"{study.root}: the selected runs of dataset {dataset!r} were trained on different "
                                f"{'devices' if key == 'device' else 'captures'} ({values}); expected one")
    first = next(iter(settings.values()))
    capture = first.get(CAPTURE_KEY)
    return Selection(study, dataset, first.get("device"), groups,
                     ModelFileSpec(NAM, str(capture), *(first.get(key) for key in CAPTURE_LEVEL_KEYS))
                     if capture else None)
