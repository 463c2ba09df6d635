"""Omnibus tests against statsmodels/scipy called directly and textbook formulas."""

import numpy as np
import pandas as pd
import pytest
import scipy.stats
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
from tests.evaluation.inputs import tidy_frame


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


# --- Algina & Keselman (1997) rule, and the tests it chooses between --------------------------


@pytest.mark.parametrize(
    "k, n, eps, expected",
    [
        # K ≤ 4: multivariate when ε̂ ≤ 0.90 and N ≥ K + 10
        (4, 14, 0.90, "multivariate"),  # both exactly at the boundary
        (4, 14, 0.9001, "huynh_feldt"),  # ε̂ just above
        (4, 13, 0.90, "huynh_feldt"),  # one listener short
        (4, 15, 0.89, "multivariate"),
        (3, 13, 0.60, "multivariate"),
        (3, 12, 0.60, "huynh_feldt"),
        # 5 ≤ K ≤ 8: ε̂ ≤ 0.85 and N ≥ K + 30
        (5, 35, 0.85, "multivariate"),
        (5, 35, 0.8501, "huynh_feldt"),
        (5, 34, 0.85, "huynh_feldt"),
        (5, 36, 0.84, "multivariate"),
        (8, 38, 0.85, "multivariate"),
        (8, 37, 0.85, "huynh_feldt"),
        (8, 38, 0.86, "huynh_feldt"),
        # K ≥ 9: the 5–8 band extended (ε̂ ≤ 0.85 and N ≥ K + 30)
        (9, 39, 0.85, "multivariate"),
        (9, 38, 0.85, "huynh_feldt"),
        (9, 39, 0.8501, "huynh_feldt"),
        (14, 44, 0.30, "multivariate"),
        (14, 43, 0.30, "huynh_feldt"),
        (14, 14, 0.20, "huynh_feldt"),  # the 14-listener × 14-item case: N barely above K
    ],
)
def test_algina_keselman_rule_at_its_boundaries(k, n, eps, expected):
    from evaluation.omnibus import algina_keselman

    chosen, reason = algina_keselman(k, n, eps)
    assert chosen == expected
    assert f"K = {k}" in reason and "Algina" in reason


def _square_panel(n_listeners=14, n_conditions=9, n_items=14, seed=11):
    """A complete panel shaped like the user's 14-listener × 14-item test: a strong item effect
    whose spread grows with the item (so sphericity is clearly violated)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_listeners):
        bias = rng.normal(0, 5)
        for c in range(n_conditions):
            for t in range(n_items):
                score = 30 + 3 * c + 3 * t + bias + rng.normal(0, 2 + 1.5 * t)
                rows.append((f"L{i:02d}", f"i{t:02d}", f"c{c}", "system", float(score)))
    return tidy_frame(rows)


def _hotelling_by_hand(x: np.ndarray) -> tuple[float, int, int, float]:
    # Successive differences are a full-rank contrast set: T² does not depend on which one.
    d = np.diff(x, axis=1)
    n, p = d.shape
    m = d.mean(axis=0)
    t2 = n * m @ np.linalg.inv(np.cov(d, rowvar=False)) @ m
    f = t2 * (n - p) / (p * (n - 1))
    return f, p, n - p, scipy.stats.f.sf(f, p, n - p)


def test_fourteen_by_fourteen_item_effect_uses_huynh_feldt_and_reports_both():
    panel = _square_panel()
    effects = rm_anova(panel).effects.set_index("effect")
    item = effects.loc["item"]
    # Unadjusted F and df from statsmodels' AnovaRM.
    table = AnovaRM(panel, "score", "participant", within=["condition", "item"]).fit().anova_table
    assert item["F"] == pytest.approx(table.loc["item", "F Value"])
    assert (item["df1"], item["df2"]) == (13, 13 * 13)
    # Huynh–Feldt ε̃ from its formula on the eigenvalue form of ε̂.
    means = panel.groupby(["participant", "item"])["score"].mean().unstack().to_numpy()
    gg = _eigen_gg(means)
    n, k = means.shape
    hf = min(1.0, (n * (k - 1) * gg - 2) / ((k - 1) * (n - 1 - (k - 1) * gg)))
    assert item["eps_gg"] == pytest.approx(gg) and gg < 0.85
    assert item["eps_hf"] == pytest.approx(hf)
    p_hf = scipy.stats.f.sf(item["F"], 13 * hf, 169 * hf)
    assert item["p_hf"] == pytest.approx(p_hf, rel=1e-6)
    # The multivariate test by hand: F(13, 1).
    mv_f, d1, d2, p_mv = _hotelling_by_hand(means)
    assert (item["mv_df1"], item["mv_df2"]) == (d1, d2) == (13, 1)
    assert item["mv_F"] == pytest.approx(mv_f, rel=1e-6)
    assert item["p_mv"] == pytest.approx(p_mv, rel=1e-6)
    # N = 14 < K + 30 = 44: the rule keeps the univariate test, whatever ε̂.
    assert item["chosen"] == "huynh_feldt"
    assert "N = 14 < K + 30 = 44" in item["chosen_reason"]
    assert item["p_chosen"] == pytest.approx(p_hf, rel=1e-6)
    assert item["p_chosen"] < 1e-20 < item["p_mv"]
    assert (item["df1_hf"], item["df2_hf"]) == (pytest.approx(13 * hf), pytest.approx(169 * hf))


def test_impossible_multivariate_test_is_nan_with_a_reason_never_a_negative_df():
    # condition × item: (9 − 1)(14 − 1) = 104 contrasts for 14 listeners, so N − (K − 1) = −90.
    effects = rm_anova(_square_panel()).effects.set_index("effect")
    inter = effects.loc["condition:item"]
    assert inter["mv_df1"] == 104
    assert np.isnan(inter["mv_df2"]) and np.isnan(inter["mv_F"]) and np.isnan(inter["p_mv"])
    assert "not computable" in inter["mv_note"] and "N = 14" in inter["mv_note"]
    assert inter["chosen"] == "huynh_feldt"
    numeric = effects.select_dtypes("number")
    assert not (numeric.filter(like="df") < 0).any().any()
