"""The measure phase: every finished run's real-time factors, timed alone, serially, on one thread.

A run's ``rtf_offline``/``rtf_stream`` as training wrote them were timed inside the run, possibly
while another ``--jobs`` worker trained on the other core, so a small network could come out
slower than a large one. :func:`measure_study` times every run of a study folder again after all
training has finished, under the study folder's lock (no study process trains meanwhile): one
warm-up, then ``repeats`` rounds, each round timing every run once (offline rendering, then block
streaming of the same fixed signal), so that a change of machine load falls on all runs alike.
It writes ``cost.csv`` (median, min and max per figure, the CPU model, the load averages, a
``busy`` flag) beside ``runs.csv`` and puts the medians into runs.csv and the outputs drawn from it.
"""

from __future__ import annotations

import logging
import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits
from torch import nn

from common.outputs import write_file_atomic
from common.provenance import cpu_model
from models.errors import ConfigError, OutputError
from models.inference.rendering import render, torch_threads
from models.inference.streaming import stream
from models.nets.architectures import label, net_from_dict
from models.processes import study_lock
from models.studies.run_files import finished_row, is_complete
from models.studies.runs import STREAM_BLOCK_SAMPLES
from models.studies.study import write_outputs
from models.training.checkpoints import CHECKPOINT, load_model

log = logging.getLogger(__name__)

COST_FILE = "cost.csv"
COST_COLUMNS = [
    "run_id", "model", "rtf_offline_median", "rtf_offline_min", "rtf_offline_max", "rtf_stream_median",
    "rtf_stream_min", "rtf_stream_max", "offline_audio_s", "stream_audio_s", "stream_block_samples", "repeats",
    "threads", "cpu_model", "cpu_count", "load_avg_1min_before", "load_avg_1min_after", "busy", "measured_at",
]
DEFAULT_REPEATS = 5
# Long enough that a timing is milliseconds even for the smallest student, short enough that a
# study of a hundred runs is measured in minutes (the full WaveNet renders at about 2× real time).
OFFLINE_AUDIO_S = 4.0
STREAM_AUDIO_S = 2.0
SIGNAL_SEED = 0
# The arithmetic does not depend on the knob values; mid-range is a setting every knob has.
KNOB_VALUE = 0.5
# A test seam: the clock every timing reads.
_clock = time.perf_counter


def measure_signal(sample_rate: int, seconds: float) -> np.ndarray:
    """The fixed signal every run is timed on: seeded Gaussian noise at −20 dBFS RMS, (time,) float32."""
    rng = np.random.default_rng(SIGNAL_SEED)
    return (0.1 * rng.standard_normal(int(round(seconds * sample_rate)))).astype(np.float32)


def load_average() -> float | None:
    """The 1-minute load average (None where the platform has none)."""
    try:
        return float(os.getloadavg()[0])
    except (OSError, AttributeError):
        return None


def is_busy(load_before: float | None, load_after: float | None, cores: int | None) -> bool:
    """Whether the machine was too busy for a fair measurement: the higher 1-minute load average
    (before or after: it lags by about a minute) above the core count.

    The measuring process itself adds up to 1 to the load. A load above the core count therefore
    means more than ``cores − 1`` other runnable processes: no core was left to the measurement
    alone. One other process on a 2-core machine (load about 2) still leaves it a core, which is
    not flagged; a threshold of ``cores − 1`` would flag every measurement on a 1-core machine."""
    loads = [value for value in (load_before, load_after) if value is not None]
    if not loads or not cores:
        return False
    return max(loads) > cores


@dataclass(frozen=True)
class TimedModel:
    """A model to time: ``name`` fills the table's ``run_id`` column and ``label`` its ``model``
    column; ``n_knobs`` knob values are held at mid travel. Models without a run folder (a ``.nam``
    file, an export) are timed through :func:`measure_models` as these."""

    name: str
    model: nn.Module
    label: str
    sample_rate: int
    n_knobs: int = 0


def _run_model(run_dir: Path) -> TimedModel:
    model, payload = load_model(run_dir)
    rate = payload.get("sample_rate")
    if not isinstance(rate, int) or rate < 1:
        raise ConfigError(f"{run_dir / CHECKPOINT}: expected the run's sample rate in the checkpoint, found {rate!r}")
    return TimedModel(run_dir.name, model, label(net_from_dict(payload["net"], where=f"{run_dir / CHECKPOINT}: net")),
                      rate, len(payload.get("knob_names") or []))


class _Timed:
    """One model's signals and timings (real-time factors per repeat); not streamed when ``stream_s`` is None."""

    def __init__(self, entry: TimedModel, offline_s: float, stream_s: float | None):
        self.run_id, self.model, self.label, self.sample_rate = entry.name, entry.model, entry.label, entry.sample_rate
        self.knobs = [KNOB_VALUE] * entry.n_knobs or None
        self.offline = measure_signal(self.sample_rate, offline_s)
        self.streamed = None if stream_s is None else measure_signal(self.sample_rate, stream_s)
        self.rtf_offline: list[float] = []
        self.rtf_stream: list[float] = []

    def run_offline(self) -> None:
        render(self.model, self.offline, self.knobs, threads=1)

    def run_stream(self) -> None:
        if self.streamed is not None:
            stream(self.model, self.streamed, STREAM_BLOCK_SAMPLES, self.knobs)

    def time_once(self) -> None:
        started = _clock()
        self.run_offline()
        self.rtf_offline.append(len(self.offline) / self.sample_rate / (_clock() - started))
        if self.streamed is not None:
            started = _clock()
            self.run_stream()
            self.rtf_stream.append(len(self.streamed) / self.sample_rate / (_clock() - started))

    def stream_figures(self) -> dict[str, float | None]:
        if not self.rtf_stream:
            return {"rtf_stream_median": None, "rtf_stream_min": None, "rtf_stream_max": None}
        return {"rtf_stream_median": statistics.median(self.rtf_stream), "rtf_stream_min": min(self.rtf_stream),
                "rtf_stream_max": max(self.rtf_stream)}


def measure_runs(run_dirs: Sequence[Path], repeats: int = DEFAULT_REPEATS, offline_s: float = OFFLINE_AUDIO_S,
                 stream_s: float = STREAM_AUDIO_S, progress: bool = False) -> pd.DataFrame:
    """Time every run folder's checkpoint on one thread; one :data:`COST_COLUMNS` row per run.

    Every model is warmed up once (allocator, kernel selection), then timed in ``repeats`` rounds
    of every run in turn. Real-time factor = seconds of audio / seconds taken (above 1: faster
    than real time)."""
    _check_measure(repeats, offline_s, stream_s)
    return _measure([_run_model(Path(d)) for d in run_dirs], repeats, offline_s, stream_s, progress)


def measure_models(models: Sequence[TimedModel], repeats: int = DEFAULT_REPEATS, offline_s: float = OFFLINE_AUDIO_S,
                   stream_s: float | None = STREAM_AUDIO_S, progress: bool = False) -> pd.DataFrame:
    """Time models that have no run folder exactly as :func:`measure_runs` times runs; with
    ``stream_s`` None only offline rendering is timed (the ``rtf_stream_*`` and ``stream_*``
    columns are then empty): a model no architecture registers may not stream block by block."""
    _check_measure(repeats, offline_s, stream_s)
    return _measure(list(models), repeats, offline_s, stream_s, progress)


def _check_measure(repeats: int, offline_s: float, stream_s: float | None) -> None:
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ConfigError(f"repeats: expected an integer >= 1, found {repeats!r}")
    if offline_s <= 0 or (stream_s is not None and stream_s <= 0):
        raise ConfigError(f"measure: expected signal lengths > 0 s, found offline {offline_s}, streaming {stream_s}")


def _measure(entries: list[TimedModel], repeats: int, offline_s: float, stream_s: float | None,
             progress: bool) -> pd.DataFrame:
    from tqdm.auto import tqdm

    timed = [_Timed(entry, offline_s, stream_s) for entry in entries]
    cores = os.cpu_count()
    before = load_average()
    with (torch_threads(1), threadpool_limits(limits=1, user_api="blas"),
          tqdm(total=len(timed) * (repeats + 1), desc="measure", unit="run", disable=not progress) as bar):
        for run in timed:
            run.run_offline()
            run.run_stream()
            bar.update()
        for _ in range(repeats):
            for run in timed:
                run.time_once()
                bar.update()
    after = load_average()
    busy = is_busy(before, after, cores)
    if busy:
        log.warning("the machine was busy while measuring (1-minute load %s before, %s after, %s cores): the "
                    "real-time factors are flagged busy (cost.csv, a stimulus set's rtf_measurement); measure again "
                    "on a quiet machine", before, after, cores)
    common = {"offline_audio_s": offline_s, "stream_audio_s": stream_s,
              "stream_block_samples": None if stream_s is None else STREAM_BLOCK_SAMPLES,
              "repeats": repeats, "threads": 1, "cpu_model": cpu_model(), "cpu_count": cores,
              "load_avg_1min_before": before, "load_avg_1min_after": after, "busy": busy,
              "measured_at": time.strftime("%Y-%m-%d %H:%M:%S %z")}
    rows = [{"run_id": run.run_id, "model": run.label,
             "rtf_offline_median": statistics.median(run.rtf_offline), "rtf_offline_min": min(run.rtf_offline),
             "rtf_offline_max": max(run.rtf_offline), **run.stream_figures(), **common}
            for run in timed]
    return pd.DataFrame(rows, columns=COST_COLUMNS)


def _study_run_ids(out_dir: Path) -> list[str]:
    path = out_dir / "runs.csv"
    try:
        ids = pd.read_csv(path, usecols=["run_id"])["run_id"].astype(str).tolist()
    except FileNotFoundError:
        raise ConfigError(f"{out_dir}: expected a study folder holding runs.csv, found none; "
                          f"train the study first (python -m models study STUDY)") from None
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise ConfigError(f"{path}: expected a runs.csv with a run_id column, found an unreadable file ({exc})") from None
    missing = [run_id for run_id in ids if not is_complete(out_dir / "runs" / run_id)]
    if missing:
        raise ConfigError(f"{path}: expected every run it lists finished under {out_dir / 'runs'}, found "
                          f"{len(missing)} without metrics.json and checkpoint.pt (first: {missing[0]}); "
                          f"run the study again")
    return ids


def measure_study(out_dir: str | Path, repeats: int = DEFAULT_REPEATS, offline_s: float = OFFLINE_AUDIO_S,
                  stream_s: float = STREAM_AUDIO_S, progress: bool = False) -> pd.DataFrame:
    """Measure every run runs.csv lists (:func:`measure_runs`) under the study folder's lock, write
    ``cost.csv`` beside it and rewrite runs.csv (and the outputs drawn from it) with the medians as
    ``rtf_offline``/``rtf_stream``. Returns the cost table."""
    out_dir = Path(out_dir)
    with study_lock(out_dir):
        ids = _study_run_ids(out_dir)
        runs_root = out_dir / "runs"
        table = measure_runs([runs_root / run_id for run_id in ids], repeats, offline_s, stream_s, progress)
        write_file_atomic(out_dir / COST_FILE, table.to_csv(index=False), OutputError)
        medians = table.set_index("run_id")
        rows: list[dict[str, Any]] = []
        for run_id in ids:
            row = finished_row(runs_root / run_id)
            row["rtf_offline"] = float(medians.loc[run_id, "rtf_offline_median"])
            row["rtf_stream"] = float(medians.loc[run_id, "rtf_stream_median"])
            rows.append(row)
        write_outputs(rows, out_dir)
    return table


__all__ = ["COST_COLUMNS", "COST_FILE", "TimedModel", "is_busy", "measure_models", "measure_runs", "measure_signal",
           "measure_study"]
