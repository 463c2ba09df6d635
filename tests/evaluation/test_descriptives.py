"""Descriptive statistics against scipy called directly and hand calculations."""

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from evaluation.descriptives import describe, mean_ci
from evaluation.errors import ConfigError
from tests.evaluation.inputs import tidy_frame


def _panel(seed=0, n_listeners=12, n_trials=5):
    rng = np.random.default_rng(seed)
    rows = []
    bias = rng.normal(0, 10, n_listeners)
    for i in range(n_listeners):
        for t in range(n_trials):
            for cond, level in (("a", 70), ("b", 50)):
                score = float(np.clip(level + bias[i] + rng.normal(0, 5), 0, 100))
                rows.append((f"L{i}", f"t{t}", cond, "system", score))
    return tidy_frame(rows)


def test_ci_over_listeners_matches_scipy_t_interval():
    panel = _panel()
    got = describe(panel).set_index("condition")
    for cond in ("a", "b"):
        listener_means = panel[panel["condition"] == cond].groupby("participant")["score"].mean()
        low, high = scipy.stats.t.interval(
            0.95,
            len(listener_means) - 1,
            loc=listener_means.mean(),
            scale=scipy.stats.sem(listener_means),
        )
        row = got.loc[cond]
        assert row["ci_low"] == pytest.approx(low) and row["ci_high"] == pytest.approx(high)
        assert row["n_listeners"] == 12 and row["n_ratings"] == 60
        assert row["mean"] == pytest.approx(listener_means.mean())
        assert (row["ci_over"], row["ci_method"], row["confidence"]) == ("listeners", "t", 0.95)


def test_ci_over_ratings_and_normal():
    panel = _panel(1)
    got = describe(panel, ci_over="ratings", ci_method="normal", confidence=0.9).set_index(
        "condition"
    )
    scores = panel.loc[panel["condition"] == "a", "score"]
    low, high = scipy.stats.norm.interval(0.9, loc=scores.mean(), scale=scipy.stats.sem(scores))
    assert got.loc["a", "ci_low"] == pytest.approx(low) and got.loc[
        "a", "ci_high"
    ] == pytest.approx(high)
    assert got.loc["a", "sd"] == pytest.approx(scores.std(ddof=1))


def test_listener_interval_is_wider_than_all_ratings_interval_with_listener_bias():
    panel = _panel(2)
    over_listeners = describe(panel).set_index("condition")
    over_ratings = describe(panel, ci_over="ratings").set_index("condition")
    width = lambda d: d["ci_high"] - d["ci_low"]  # noqa: E731
    assert (width(over_listeners) > 1.5 * width(over_ratings)).all()


def test_bca_matches_scipy_bootstrap_with_same_seed():
    panel = _panel(3)
    got = describe(panel, ci_method="bca", n_boot=999, seed=7).set_index("condition")
    # BCa resamples depend on the order of the listener means: first appearance, as in the panel.
    means = (
        panel[panel["condition"] == "b"]
        .groupby("participant", sort=False)["score"]
        .mean()
        .to_numpy()
    )
    ref = scipy.stats.bootstrap(
        (means,), np.mean, n_resamples=999, method="BCa", rng=np.random.default_rng(7)
    ).confidence_interval
    assert got.loc["b", "ci_low"] == pytest.approx(ref.low, rel=1e-12)
    assert got.loc["b", "ci_high"] == pytest.approx(ref.high, rel=1e-12)
    assert got.loc["b", "ci_low"] < got.loc["b", "mean"] < got.loc["b", "ci_high"]
    assert got.loc["b", "ci_method"] == "bca"


def test_median_and_tukey_quartiles_by_hand():
    rows = [(f"L{i}", "t1", "a", "system", s) for i, s in enumerate([10, 20, 30, 40, 50, 60])]
    got = describe(tidy_frame(rows)).iloc[0]
    assert (got["median"], got["q1"], got["q3"], got["iqr"]) == (35.0, 20.0, 50.0, 30.0)


def test_per_condition_and_item_cells():
    panel = _panel(4)
    got = describe(panel, by=("condition", "item"))
    assert len(got) == 10
    cell = panel[(panel["condition"] == "a") & (panel["item"] == "t3")]["score"]
    row = got[(got["condition"] == "a") & (got["item"] == "t3")].iloc[0]
    assert row["mean"] == pytest.approx(cell.mean()) and row["sd"] == pytest.approx(cell.std())


def test_mean_ci_edge_cases_and_errors():
    assert all(np.isnan(mean_ci([50.0])))
    assert mean_ci([50.0, 50.0, 50.0], method="bca") == (50.0, 50.0)
    with pytest.raises(ConfigError, match="CI method"):
        describe(_panel(), ci_method="percentile")
    with pytest.raises(ConfigError, match="CI over"):
        describe(_panel(), ci_over="items")
    with pytest.raises(ConfigError, match="columns \\['group'\\]"):
        describe(_panel(), by=("group",))
    assert isinstance(describe(_panel()), pd.DataFrame)
