"""Omnibus tests against statsmodels/scipy called directly and textbook formulas."""

import numpy as np
import pandas as pd
import pytest
import scipy.stats
from conftest import tidy_frame
from statsmodels.multivariate.manova import MANOVA
from statsmodels.stats.anova import AnovaRM

from evaluation.errors import DesignError
from evaluation.omnibus import (
    friedman,
    greenhouse_geisser,
    huynh_feldt,
    mixed_model,
    multimodality_coefficient,
    omnibus,
    residual_diagnostics,
    rm_anova,
)


def _panel(
    seed=0, n_listeners=14, levels=(55, 60, 70, 72), n_items=3, noise=8.0, heteroscedastic=False
):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_listeners):
        bias = rng.normal(0, 6)
        for j, level in enumerate(levels):
            spread = noise * (1 + 1.5 * j) if heteroscedastic else noise
            for t in range(n_items):
                score = level + bias + 3 * t + rng.normal(0, spread)
                rows.append((f"L{i:02d}", f"i{t}", f"c{j}", "system", float(score)))
    return tidy_frame(rows)


def test_rm_anova_matches_statsmodels_anovarm_on_balanced_data():
    panel = _panel()
    result = rm_anova(panel).effects.set_index("effect")
    reference = (
        AnovaRM(panel, "score", "participant", within=["condition", "item"]).fit().anova_table
    )
    for ours, theirs in (
        ("condition", "condition"),
        ("item", "item"),
        ("condition:item", "condition:item"),
    ):
        assert result.loc[ours, "F"] == pytest.approx(reference.loc[theirs, "F Value"])
        assert result.loc[ours, "p"] == pytest.approx(reference.loc[theirs, "Pr > F"])
        assert result.loc[ours, "df1"] == reference.loc[theirs, "Num DF"]
        assert result.loc[ours, "df2"] == reference.loc[theirs, "Den DF"]
        f, d1, d2 = (reference.loc[theirs, c] for c in ("F Value", "Num DF", "Den DF"))
        # partial η² = F·df1 / (F·df1 + df2)
        assert result.loc[ours, "partial_eta2"] == pytest.approx(f * d1 / (f * d1 + d2))


def _eigen_gg(listener_means: np.ndarray) -> float:
    # Textbook form: ε = (Σλ)² / ((k − 1) Σλ²) with λ the eigenvalues of the double-centred covariance.
    s = np.cov(listener_means, rowvar=False)
    k = s.shape[0]
    centred = s - s.mean(axis=0, keepdims=True) - s.mean(axis=1, keepdims=True) + s.mean()
    lam = np.linalg.eigvalsh(centred)
    return lam.sum() ** 2 / ((k - 1) * (lam**2).sum())


def test_epsilons_against_eigenvalue_formula_and_huynh_feldt_by_hand():
    panel = _panel(1, heteroscedastic=True)
    means = panel.groupby(["participant", "condition"])["score"].mean().unstack().to_numpy()
    row = rm_anova(panel).effects.set_index("effect").loc["condition"]
    expected = _eigen_gg(means)
    assert row["eps_gg"] == pytest.approx(expected)
    assert greenhouse_geisser(np.cov(means, rowvar=False)) == pytest.approx(expected)
    n, k = means.shape
    hf = (n * (k - 1) * expected - 2) / ((k - 1) * (n - 1 - (k - 1) * expected))
    assert row["eps_hf"] == pytest.approx(min(1.0, hf))
    assert 1 / (k - 1) <= row["eps_gg"] <= 1
    assert row["p_gg"] == pytest.approx(
        scipy.stats.f.sf(row["F"], row["df1"] * expected, row["df2"] * expected)
    )
    assert huynh_feldt(0.2, 10, 4) == pytest.approx((10 * 3 * 0.2 - 2) / (3 * (9 - 3 * 0.2)))


def test_hotelling_matches_statsmodels_manova():
    panel = _panel(2, heteroscedastic=True)
    means = panel.groupby(["participant", "condition"])["score"].mean().unstack()
    diffs = pd.DataFrame({f"d{j}": means[f"c{j}"] - means["c0"] for j in (1, 2, 3)})
    test = (
        MANOVA.from_formula("d1 + d2 + d3 ~ 1", data=diffs).mv_test().results["Intercept"]["stat"]
    )
    row = rm_anova(panel).effects.set_index("effect").loc["condition"]
    assert row["mv_F"] == pytest.approx(test.loc["Hotelling-Lawley trace", "F Value"])
    assert row["p_mv"] == pytest.approx(test.loc["Hotelling-Lawley trace", "Pr > F"])
    assert (row["mv_df1"], row["mv_df2"]) == (3, 11)


def test_algina_keselman_choice():
    # sphericity holds (ε̂ high) and N < K + 30 → Huynh–Feldt
    spherical = rm_anova(_panel(3, n_listeners=20)).effects.set_index("effect").loc["condition"]
    assert spherical["eps_gg"] > 0.85
    assert spherical["chosen"] == "huynh_feldt"
    assert spherical["p_chosen"] == spherical["p_hf"]
    # strong heteroscedasticity (low ε̂) → multivariate test
    skewed = (
        rm_anova(_panel(4, n_listeners=20, heteroscedastic=True, noise=10))
        .effects.set_index("effect")
        .loc["condition"]
    )
    assert skewed["eps_gg"] <= 0.85
    assert skewed["chosen"] == "multivariate" and skewed["p_chosen"] == skewed["p_mv"]


def test_multimodality_coefficient_and_residual_verdicts():
    rng = np.random.default_rng(5)
    x = rng.normal(size=500)
    g, k, n = scipy.stats.skew(x, bias=False), scipy.stats.kurtosis(x, bias=False), x.size
    assert multimodality_coefficient(x) == pytest.approx(
        (g**2 + 1) / (k + 3 * (n - 1) ** 2 / ((n - 2) * (n - 3)))
    )
    bimodal = np.concatenate([rng.normal(-3, 0.5, 300), rng.normal(3, 0.5, 300)])
    assert residual_diagnostics(bimodal)["multimodal"]
    assert not residual_diagnostics(x)["multimodal"]
    assert residual_diagnostics(rng.exponential(size=2000))["skewness_verdict"] == "severe"
    assert residual_diagnostics(x)["skewness_verdict"] == "ok"


def test_friedman_and_kendalls_w():
    panel = _panel(6)
    means = panel.groupby(["participant", "condition"])["score"].mean().unstack()
    expected = scipy.stats.friedmanchisquare(*(means[c] for c in means.columns))
    row = friedman(panel).iloc[0]
    assert row["chi2"] == pytest.approx(expected.statistic) and row["p"] == pytest.approx(
        expected.pvalue
    )
    # perfect agreement: every listener ranks c0 < c1 < c2 → W = 1
    rows = [(f"L{i}", "i", f"c{j}", "system", 10.0 * j + i) for i in range(6) for j in range(3)]
    assert friedman(tidy_frame(rows)).iloc[0]["kendall_w"] == pytest.approx(1.0)


def test_incomplete_design_goes_to_mixed_model():
    panel = _panel(7, levels=(40, 60, 62), noise=6)
    dropped = panel.drop(
        index=panel.index[(panel["participant"] == "L00") & (panel["item"] == "i0")]
    )
    with pytest.raises(DesignError, match="cells are missing"):
        rm_anova(dropped)
    result = omnibus(dropped)
    assert result.method == "lmm"
    assert "incomplete design" in result.notes[0]
    row = result.effects.set_index("effect").loc["condition"]
    assert row["df1"] == 2 and row["p"] < 1e-6  # 20-point effect, 14 listeners
    assert row["lr_chi2"] == pytest.approx(2 * (row["llf_full"] - row["llf_reduced"]))
    null = mixed_model(_panel(8, levels=(60, 60, 60)))
    assert null.effects.set_index("effect").loc["condition", "p"] > 0.01


def test_crossed_random_item_model_runs_and_reports_components():
    panel = _panel(9, levels=(40, 60), n_items=4, n_listeners=10)
    result = mixed_model(panel, item_effect="crossed")
    row = result.effects.iloc[0]
    assert row["effect"] == "condition" and row["df1"] == 1
    assert set(row["variance_components"]) == {"listener", "item"}


def test_complete_design_uses_rm_anova():
    assert omnibus(_panel(10)).method == "rm_anova"
