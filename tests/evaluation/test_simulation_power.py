"""Synthetic panels, power by simulation and the benchmark's data builders."""

import math

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.power import TTestPower

from evaluation.bench import bench_manifest, million_ratings
from evaluation.errors import ConfigError, DesignError
from evaluation.manifest import load_manifest
from evaluation.power import pilot_sd, power_curve
from evaluation.ratings import TIDY_COLUMNS
from evaluation.screening import screen
from evaluation.simulation import SimulationConfig, simulate_panel
from tests.evaluation.inputs import write_manifest


def _set(tmp_path, n_items=4):
    trials = [
        {
            "id": f"t{i}",
            "item": f"item{i}",
            "group": "S-16",
            "conditions": [
                ("hidden_reference", "hidden_reference", None),
                ("anchor_7k", "anchor_mid", None),
                ("anchor_3k5", "anchor_low", None),
                ("good", "system", {"objective": {"esr": 0.005}}),
                ("bad", "system", {"objective": {"esr": 0.3}}),
            ],
        }
        for i in range(n_items)
    ]
    trials.append(
        {
            "id": "train",
            "training": True,
            "conditions": [("hidden_reference", "hidden_reference", None)],
        }
    )
    return load_manifest(write_manifest(tmp_path / "set", trials))


def test_simulated_panel_is_tidy_and_screening_catches_the_careless(tmp_path):
    manifest = _set(tmp_path)
    panel = simulate_panel(manifest, SimulationConfig(n_listeners=12, n_careless=2, seed=3))
    assert list(panel.columns) == list(TIDY_COLUMNS)
    assert len(panel) == 12 * 4 * 5  # the training trial is not rated
    assert panel["score"].between(0, 100).all() and (panel["score"] % 1 == 0).all()
    per_listener = panel.groupby("participant")["trial_position"].agg(["min", "max", "nunique"])
    assert (per_listener["min"] == 1).all() and (per_listener["max"] == 4).all()
    assert screen(panel).excluded == ["S011", "S012"]


def test_simulated_scores_follow_objective_error(tmp_path):
    manifest = _set(tmp_path)
    config = SimulationConfig(n_listeners=30, n_careless=0, seed=4)
    panel = simulate_panel(manifest, config)
    means = panel.groupby("condition")["score"].mean()
    assert means["good"] > means["anchor_7k"] > means["bad"] > means["anchor_3k5"] - 10
    # q = 100 / (1 + (ESR / 0.05) ** 0.9): ESR 0.005 → 88.8; bias and noise average out, clipping at 100 pulls down a little
    expected_good = 100 / (1 + (0.005 / 0.05) ** 0.9)
    assert means["good"] == pytest.approx(expected_good, abs=3)


def test_simulation_config_errors():
    with pytest.raises(ConfigError, match="n_careless"):
        SimulationConfig(n_listeners=3, n_careless=4)
    with pytest.raises(ConfigError, match="esr_at_50"):
        SimulationConfig(esr_at_50=0)


def test_power_matches_the_noncentral_t_answer():
    # d = 5 / 10 = 0.5: the analytic paired t-test needs 33.4 → 34 listeners for 80 % power
    analytic = math.ceil(TTestPower().solve_power(effect_size=0.5, alpha=0.05, power=0.8))
    result = power_curve(5.0, 10.0, n_simulations=4000, seed=1, max_listeners=60)
    assert abs(result.n_required - analytic) <= 2
    at_20 = result.curve.set_index("n_listeners").loc[20, "power"]
    assert at_20 == pytest.approx(
        TTestPower().power(effect_size=0.5, nobs=20, alpha=0.05), abs=0.03
    )
    assert power_curve(1.0, 30.0, max_listeners=10, n_simulations=200).n_required is None


def test_power_errors():
    with pytest.raises(ConfigError, match="difference"):
        power_curve(0.0, 10.0)
    with pytest.raises(ConfigError, match="alpha"):
        power_curve(5.0, 10.0, alpha=1.5)


def test_pilot_sd_by_hand():
    rows = []
    diffs = {"L1": 2.0, "L2": 4.0, "L3": 9.0}
    for participant, d in diffs.items():
        rows.append(
            {
                "participant": participant,
                "trial": "t",
                "condition": "a",
                "role": "system",
                "score": 50.0 + d,
            }
        )
        rows.append(
            {
                "participant": participant,
                "trial": "t",
                "condition": "b",
                "role": "system",
                "score": 50.0,
            }
        )
    table = pilot_sd(pd.DataFrame(rows))
    assert table.iloc[0]["sd_diff"] == pytest.approx(np.std([2.0, 4.0, 9.0], ddof=1))
    with pytest.raises(DesignError, match="at least 3 listeners"):
        pilot_sd(pd.DataFrame(rows[:2]))


def test_bench_builders(tmp_path):
    manifest = load_manifest(bench_manifest(tmp_path / "b", n_items=2))
    assert len(manifest.conditions) == 16 and set(manifest.conditions["role"]) == {
        "hidden_reference",
        "anchor_low",
        "anchor_mid",
        "system",
    }
    frame = million_ratings(n_listeners=10, n_trials=5)
    assert len(frame) == 10 * 5 * 8 and list(frame.columns) == list(TIDY_COLUMNS)
    assert frame.groupby(["participant", "trial"]).size().eq(8).all()
