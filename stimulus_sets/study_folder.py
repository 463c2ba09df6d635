"""A trained study folder as the stimulus-set stage reads it (docs/formats.md): ``runs.csv``, one
row per finished run, ``runs/<run_id>/`` (``checkpoint.pt``, ``config.json``, ``metrics.json``)
and ``study.yaml``, the study the zoo trained.

runs.csv is read as text and only the numeric columns of :data:`NUMBER_COLUMNS` are converted,
so ``layers`` ``8`` stays the string ``"8"``, an empty ``teacher`` stays ``""`` and a float keeps
the exact value the zoo wrote: the facts copied into a manifest equal those in the run's
metrics.json.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from models.config import load_yaml

from .errors import StimulusConfigError, StimulusError

RUNS_CSV = "runs.csv"
STUDY_FILE = "study.yaml"
RUN_CONFIG = "config.json"
SELECTION_COLUMNS = ("run_id", "dataset", "arch", "model", "layers", "recipe", "variant", "teacher", "bits",
                     "width", "seed")
"""The columns a stimulus config selects runs by; a runs.csv without one of them is refused."""


def _integer(text: str) -> int:
    # A column that had a gap is written as floats ("32.0"), holding whole numbers all the same.
    try:
        return int(text)
    except ValueError:
        value = float(text)
        if not value.is_integer():
            raise ValueError(f"{text!r} is not a whole number") from None
        return int(value)


NUMBER_COLUMNS: dict[str, Callable[[str], Any]] = {
    "bits": _integer, "seed": _integer, "params": _integer, "bytes": _integer, "macs_per_sample": _integer,
    "width": float, "rtf_offline": float, "rtf_stream": float,
}
"""runs.csv columns holding numbers, with the type of their values; every other column is text."""


@dataclass(frozen=True)
class TrainedStudy:
    """A study folder: its ``root``, its ``name`` (``study.yaml``'s, else the folder's), the study
    file if there is one, and ``runs``: every runs.csv row in file order, column → value (an empty
    numeric cell is None)."""

    root: Path
    name: str
    study_file: Path | None
    runs: tuple[dict[str, Any], ...]

    @property
    def runs_csv(self) -> Path:
        return self.root / RUNS_CSV

    def run_dir(self, run_id: str) -> Path:
        return self.root / "runs" / run_id


def _typed(text: str, column: str, where: str) -> Any:
    convert = NUMBER_COLUMNS.get(column)
    if convert is None:
        return text
    if text == "":
        return None
    try:
        return convert(text)
    except ValueError:
        raise StimulusError(f"{where}: column {column!r}: expected a number, found {text!r}") from None


def load_trained_study(folder: str | Path, key: str = "study_dir") -> TrainedStudy:
    """Read the study folder ``folder`` (named by the config key ``key``); a folder without a
    readable runs.csv holding the selection columns is an error naming the file."""
    root = Path(folder)
    path = root / RUNS_CSV
    if not path.is_file():
        raise StimulusConfigError(
            f"{key}: expected a trained study folder holding {RUNS_CSV}, found no {path}; train the study with "
            "`python -m models study FILE` (it writes the folder, by default results/zoo/<name>)")
    try:
        # Text, and no "NA" guessing: an empty teacher is "", a one-layer LSTM's layers "8" no int.
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as exc:
        raise StimulusError(f"{path}: expected the study's table of runs, found an unreadable file "
                            f"({' '.join(str(exc).split())})") from None
    missing = [c for c in SELECTION_COLUMNS if c not in frame.columns]
    if missing:
        raise StimulusError(f"{path}: expected the columns {list(SELECTION_COLUMNS)}, found no {missing}; "
                            "train the study again with this version of the zoo to rewrite it")
    runs = tuple(
        {column: _typed(text, column, f"{path} line {line}") for column, text in row.items()}
        for line, row in enumerate(frame.to_dict("records"), start=2)
    )
    study_file = root / STUDY_FILE
    name = root.name
    if study_file.is_file():
        data = load_yaml(study_file)
        if isinstance(data, dict) and isinstance(data.get("name"), str):
            name = data["name"]
    return TrainedStudy(root, name, study_file if study_file.is_file() else None, runs)


def run_dataset(run_dir: Path) -> dict[str, Any]:
    """The ``dataset`` settings (``name``, ``device`` …) a run was trained on, from its config.json."""
    path = run_dir / RUN_CONFIG
    try:
        dataset = json.loads(path.read_text(encoding="utf-8"))["dataset"]
        if not isinstance(dataset, dict):
            raise TypeError(f"'dataset' is a {type(dataset).__name__}")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StimulusError(f"{path}: expected the run's JSON config with its 'dataset' settings, found an "
                            f"unreadable file ({exc})") from None
    return dataset
