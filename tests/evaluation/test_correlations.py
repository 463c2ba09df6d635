"""Objective table, objective-vs-subjective correlations and the cost view."""

import numpy as np
import pytest
import scipy.stats
import soundfile as sf

from evaluation.correlations import (
    _kendall_resamples,
    correlate,
    cost_view,
    objective_correlations,
    pareto_front,
    stimulus_means,
)
from evaluation.manifest import annotate, load_manifest
from evaluation.objective import objective_table
from tests.evaluation.inputs import tidy_frame, write_manifest


def test_point_estimates_match_scipy_and_ci_matches_scipy_bootstrap():
    rng = np.random.default_rng(0)
    x = rng.normal(size=40)
    y = 0.6 * x + rng.normal(size=40)
    for method, fn in (
        ("pearson", scipy.stats.pearsonr),
        ("spearman", scipy.stats.spearmanr),
        ("kendall", scipy.stats.kendalltau),
    ):
        got = correlate(x, y, method=method, n_boot=2000, seed=1)
        expected = fn(x, y)
        assert got["r"] == pytest.approx(expected.statistic) and got["p"] == pytest.approx(
            expected.pvalue
        )
        assert got["ci_low"] < got["r"] < got["ci_high"]
    ref = scipy.stats.bootstrap(
        (x, y),
        lambda a, b: scipy.stats.pearsonr(a, b).statistic,
        paired=True,
        vectorized=False,
        n_resamples=2000,
        method="percentile",
        rng=np.random.default_rng(5),
    ).confidence_interval
    got = correlate(x, y, method="pearson", n_boot=2000, seed=1)
    assert got["ci_low"] == pytest.approx(ref.low, abs=0.05) and got["ci_high"] == pytest.approx(
        ref.high, abs=0.05
    )


def test_vectorised_kendall_handles_ties_like_scipy():
    x = np.array([1, 2, 2, 3, 4, 4, 5], dtype=float)
    y = np.array([2, 1, 3, 3, 5, 4, 4], dtype=float)
    identity = np.arange(x.size)[None]
    assert _kendall_resamples(x, y, identity)[0] == pytest.approx(
        scipy.stats.kendalltau(x, y).statistic
    )


def test_degenerate_inputs_give_nan():
    assert np.isnan(correlate([1, 2], [3, 4])["r"])
    assert np.isnan(correlate([1, 1, 1, 1], [3, 4, 5, 6])["r"])


def test_pareto_front_by_hand():
    assert pareto_front([1, 2, 3, 4], [50, 60, 55, 70]).tolist() == [True, True, False, True]
    assert pareto_front([1, 1, np.nan], [50, 50, 90]).tolist() == [True, True, False]


def _set(tmp_path):
    trials = []
    for item in ("guitar", "bass"):
        trials.append(
            {
                "id": f"{item}-S",
                "item": item,
                "group": "S-32-8",
                "conditions": [
                    ("hidden_reference", "hidden_reference", None),
                    (
                        "distilled",
                        "system",
                        {
                            "noise": 0.02,
                            "bytes": 4000,
                            "rtf_offline": 0.01,
                            "recipe": "kd",
                            "objective": {"esr": 0.5},
                        },
                    ),
                    (
                        "non_distilled",
                        "system",
                        {"noise": 0.1, "bytes": 4000, "rtf_offline": 0.01, "recipe": "baseline"},
                    ),
                    (
                        "kd_q4",
                        "system",
                        {
                            "noise": 0.05,
                            "bytes": 1000,
                            "rtf_offline": 0.02,
                            "recipe": "kd_qat",
                            "bits": 4,
                        },
                    ),
                ],
            }
        )
    return load_manifest(write_manifest(tmp_path / "set", trials))


def test_objective_table_takes_manifest_values_and_computes_missing_ones(tmp_path):
    manifest = _set(tmp_path)
    table = objective_table(manifest)
    assert len(table) == 6 and set(table["role"]) == {"system"}
    row = table[(table["trial"] == "guitar-S") & (table["condition"] == "non_distilled")].iloc[0]
    ref, _ = sf.read(tmp_path / "set" / "audio" / "guitar-S" / "reference.wav")
    out, _ = sf.read(tmp_path / "set" / "audio" / "guitar-S" / "non_distilled.wav")
    assert row["esr"] == pytest.approx(np.sum((ref - out) ** 2) / np.sum(ref**2))
    assert row["source"] == "audio"
    distilled = table[(table["trial"] == "guitar-S") & (table["condition"] == "distilled")].iloc[0]
    assert distilled["esr"] == 0.5  # from the manifest, not recomputed
    assert np.isfinite(distilled["mrstft"])  # missing in the manifest: computed
    untouched = objective_table(manifest, compute_missing=False)
    assert untouched["mrstft"].isna().all()


def test_correlations_and_cost_view(tmp_path):
    manifest = _set(tmp_path)
    rows = []
    rng = np.random.default_rng(2)
    level = {"hidden_reference": 98, "distilled": 80, "non_distilled": 40, "kd_q4": 62}
    for i in range(8):
        for trial in ("guitar-S", "bass-S"):
            for cond, mean in level.items():
                rows.append(
                    (f"L{i}", trial, cond, None, float(np.clip(mean + rng.normal(0, 5), 0, 100)))
                )
    ratings = annotate(tidy_frame(rows), manifest)
    means = stimulus_means(ratings)
    assert len(means) == 6
    objective = objective_table(manifest)
    table = objective_correlations(means, objective, ["snr_db", "mrstft"], n_boot=200)
    overall = table[(table["scope"] == "overall") & (table["metric"] == "snr_db")].set_index(
        "method"
    )
    joined = means.merge(objective[["trial", "condition", "snr_db"]], on=["trial", "condition"])
    assert overall.loc["spearman", "r"] == pytest.approx(
        scipy.stats.spearmanr(joined["snr_db"], joined["mean_score"]).statistic
    )
    assert overall.loc["spearman", "r"] > 0.8  # less noise ↔ higher score
    assert set(table["scope"]) == {"overall", "item"}
    assert sorted(table.loc[table["scope"] == "item", "item"].unique()) == ["bass", "guitar"]
    view = cost_view(ratings, manifest.conditions).set_index("condition")
    assert view.loc["distilled", "bytes"] == 4000 and view.loc["kd_q4", "bytes"] == 1000
    # distilled dominates non_distilled (same size, better); kd_q4 is smallest
    assert view["pareto_bytes"].to_dict() == {
        "distilled": True,
        "kd_q4": True,
        "non_distilled": False,
    }
    assert view.loc["kd_q4", "mean"] == pytest.approx(
        ratings[ratings["condition"] == "kd_q4"]["score"].mean()
    )


def test_resample_ranks_equal_scipy_rankdata_with_ties():
    from evaluation.correlations import _resample_ranks

    values = np.array([3.0, 1.0, 3.0, 2.0, 5.0, 1.0])
    index = np.random.default_rng(0).integers(0, values.size, size=(50, values.size))
    np.testing.assert_allclose(
        _resample_ranks(values, index), scipy.stats.rankdata(values[index], axis=1)
    )


def test_kendall_of_resamples_equals_scipy_on_each_resample():
    rng = np.random.default_rng(1)
    x = np.round(rng.normal(size=15), 1)
    y = np.round(x + rng.normal(size=15), 1)
    index = rng.integers(0, 15, size=(20, 15))
    expected = [scipy.stats.kendalltau(x[i], y[i]).statistic for i in index]
    np.testing.assert_allclose(_kendall_resamples(x, y, index), expected)
