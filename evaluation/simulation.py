"""Synthetic MUSHRA panels from a stimulus manifest — for the demo, the benchmark and the tests.

Each listener has a bias (added to every non-reference grade) and rating noise; a few careless
listeners grade at random, so the hidden-reference rule should catch them. The true quality of a
system follows its objective error: q = 100 / (1 + (ESR / esr_at_50)^slope), so a system with
ESR = ``esr_at_50`` scores 50 on average. The hidden reference is graded near 100, the mid anchor
around 45 and the low anchor around 20.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from common.ratings_table import TIDY_COLUMNS
from common.stimulus_set import ANCHOR_LOW, ANCHOR_MID, HIDDEN_REFERENCE

from .errors import ConfigError, ManifestError
from .manifest import Manifest
from .objective import objective_table

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SimulationConfig:
    """Panel size and listener model of :func:`simulate_panel`."""

    n_listeners: int = 24
    n_careless: int = 2
    listener_bias_sd: float = 6.0
    noise_sd: float = 8.0
    esr_at_50: float = 0.05
    slope: float = 0.9
    mid_anchor_mean: float = 45.0
    low_anchor_mean: float = 20.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_listeners < 1:
            raise ConfigError(
                f"simulation.n_listeners: expected at least 1, found {self.n_listeners}"
            )
        if not 0 <= self.n_careless <= self.n_listeners:
            raise ConfigError(
                f"simulation.n_careless: expected 0 … n_listeners ({self.n_listeners}), found {self.n_careless}"
            )
        for name in ("listener_bias_sd", "noise_sd", "esr_at_50", "slope"):
            if getattr(self, name) < 0 or (
                name in ("esr_at_50", "slope") and getattr(self, name) == 0
            ):
                raise ConfigError(
                    f"simulation.{name}: expected a positive number, found {getattr(self, name)}"
                )


def true_quality(manifest: Manifest, config: SimulationConfig) -> pd.DataFrame:
    """Expected score per rated trial × condition (``trial, item, condition, role, quality``)."""
    table = manifest.conditions[~manifest.conditions["training"]].reset_index(drop=True)
    quality = np.full(len(table), np.nan)
    quality[table["role"].to_numpy() == HIDDEN_REFERENCE] = 100.0
    quality[table["role"].to_numpy() == ANCHOR_MID] = config.mid_anchor_mean
    quality[table["role"].to_numpy() == ANCHOR_LOW] = config.low_anchor_mean
    systems = table["role"] == "system"
    if systems.any():
        known = "objective_esr" in table and table.loc[systems, "objective_esr"].notna().all()
        # Reading audio is only needed when the manifest lacks an ESR.
        objective = objective_table(manifest, compute_missing=not known)
        esr = table[systems].merge(
            objective[["trial", "condition", "esr"]], on=["trial", "condition"], how="left"
        )["esr"]
        if esr.isna().any():
            raise ManifestError(
                f"{manifest.path}: cannot simulate: some systems have no ESR and no audio"
            )
        quality[systems.to_numpy()] = 100.0 / (
            1.0 + (np.maximum(esr.to_numpy(), 0) / config.esr_at_50) ** config.slope
        )
    out = table[["trial", "item", "group", "condition", "role"]].copy()
    out["quality"] = quality
    return out


def simulate_panel(
    manifest: Manifest, config: SimulationConfig | None = None, *, test: str | None = None
) -> pd.DataFrame:
    """Tidy ratings (see :mod:`evaluation.ratings`) of a synthetic panel for ``manifest``.

    Listeners ``S001…``; the last ``n_careless`` of them grade uniformly at random. Trial and
    condition orders are random per listener, as the web app presents them.
    """
    config = config or SimulationConfig()
    rng = np.random.default_rng(config.seed)
    quality = true_quality(manifest, config).reset_index(drop=True)
    trials = list(dict.fromkeys(quality["trial"]))
    rows_of = [np.flatnonzero(quality["trial"].to_numpy() == t) for t in trials]
    hidden_all = quality["role"].to_numpy() == HIDDEN_REFERENCE
    test = test or manifest.folder.name
    start = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
    parts = {
        k: []
        for k in (
            "listener",
            "row",
            "score",
            "trial_position",
            "condition_position",
            "duration_ms",
            "plays",
            "submitted_at",
        )
    }
    for index in range(config.n_listeners):
        careless = index >= config.n_listeners - config.n_careless
        bias = rng.normal(0.0, config.listener_bias_sd)
        order = rng.permutation(len(trials))
        rows = np.concatenate([rows_of[t] for t in order])
        sizes = np.array([rows_of[t].size for t in order])
        n = rows.size
        if careless:
            scores = rng.uniform(0, 100, n)
        else:
            scores = (
                quality["quality"].to_numpy()[rows] + bias + rng.normal(0.0, config.noise_sd, n)
            )
            hidden = hidden_all[rows]
            # Attentive listeners mostly put the hidden reference at 100, sometimes just below.
            scores[hidden] = np.where(
                rng.random(hidden.sum()) < 0.8, 100.0, rng.uniform(90, 100, hidden.sum())
            )
        durations = rng.integers(20_000, 90_000, len(order)).astype(float)
        submitted = start + timedelta(hours=index)
        stamps = [
            (submitted + timedelta(milliseconds=float(ms))).isoformat()
            for ms in np.cumsum(durations)
        ]
        parts["listener"].append(np.full(n, index))
        parts["row"].append(rows)
        parts["score"].append(scores)
        parts["trial_position"].append(np.repeat(np.arange(1, len(order) + 1), sizes))
        parts["condition_position"].append(np.concatenate([rng.permutation(k) + 1 for k in sizes]))
        parts["duration_ms"].append(np.repeat(durations, sizes))
        parts["plays"].append(rng.integers(1, 6, n))
        parts["submitted_at"].append(np.repeat(np.array(stamps, dtype=object), sizes))
    flat = {k: np.concatenate(v) for k, v in parts.items()}
    rows = flat["row"]
    ratings = pd.DataFrame(
        {
            "test": test,
            "participant": np.array(
                [f"S{i + 1:03d}" for i in range(config.n_listeners)], dtype=object
            )[flat["listener"]],
            "trial": quality["trial"].to_numpy(dtype=object)[rows],
            "item": quality["item"].to_numpy(dtype=object)[rows],
            "condition": quality["condition"].to_numpy(dtype=object)[rows],
            "role": quality["role"].to_numpy(dtype=object)[rows],
            "score": np.round(np.clip(flat["score"], 0, 100)),
            "trial_position": pd.array(flat["trial_position"], dtype="Int64"),
            "condition_position": pd.array(flat["condition_position"], dtype="Int64"),
            "duration_ms": flat["duration_ms"],
            "plays": pd.array(flat["plays"], dtype="Int64"),
            "submitted_at": flat["submitted_at"],
        }
    )
    log.info(
        "simulated %d ratings from %d listeners (%d careless)",
        len(ratings),
        config.n_listeners,
        config.n_careless,
    )
    return ratings[list(TIDY_COLUMNS)]
