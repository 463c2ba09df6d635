"""Planned comparisons against scipy/statsmodels called directly and hand calculations."""

import numpy as np
import pandas as pd
import pytest
import scipy.stats
from statsmodels.stats.weightstats import ttost_paired

from evaluation.comparisons import (
    adjust,
    all_pairs,
    compare,
    compare_pair,
    permutation_test_medians,
    planned_pairs,
    rank_biserial,
)
from evaluation.errors import ConfigError, DesignError
from tests.evaluation.inputs import tidy_frame


def _panel(seed=0, n_listeners=15, n_trials=4, effect=6.0):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_listeners):
        bias = rng.normal(0, 8)
        for t in range(n_trials):
            base = 60 + bias + rng.normal(0, 4)
            rows.append(
                (
                    f"L{i}",
                    f"t{t}",
                    "kd",
                    "system",
                    float(np.clip(base + effect + rng.normal(0, 6), 0, 100)),
                )
            )
            rows.append(
                (
                    f"L{i}",
                    f"t{t}",
                    "base",
                    "system",
                    float(np.clip(base + rng.normal(0, 6), 0, 100)),
                )
            )
    return tidy_frame(rows)


def _listener_means(panel):
    return panel.groupby(["participant", "condition"])["score"].mean().unstack()


def test_paired_statistics_match_scipy_and_statsmodels():
    panel = _panel()
    row = compare_pair(panel, "kd", "base", n_permutations=2000)
    means = _listener_means(panel)
    d = means["kd"] - means["base"]
    ttest = scipy.stats.ttest_rel(means["kd"], means["base"])
    assert row["t"] == pytest.approx(ttest.statistic) and row["p_t"] == pytest.approx(ttest.pvalue)
    low, high = ttest.confidence_interval(0.95)
    assert row["ci_low"] == pytest.approx(low) and row["ci_high"] == pytest.approx(high)
    assert row["p_wilcoxon"] == pytest.approx(
        scipy.stats.wilcoxon(means["kd"], means["base"]).pvalue
    )
    assert row["d_z"] == pytest.approx(d.mean() / d.std(ddof=1))
    p_tost = ttost_paired(means["kd"].to_numpy(), means["base"].to_numpy(), -5.0, 5.0)[0]
    assert row["p_tost"] == pytest.approx(p_tost)
    p_ni = scipy.stats.ttest_1samp(d + 5.0, 0.0, alternative="greater").pvalue
    assert row["p_noninferiority"] == pytest.approx(p_ni)
    assert (row["n_listeners"], row["n_pairs"], row["df"]) == (15, 60, 14)


def test_permutation_test_agrees_with_exact_scipy_permutation_test():
    rng = np.random.default_rng(1)
    a = rng.integers(40, 90, 10).astype(float)
    b = a - rng.integers(-5, 15, 10)

    def stat(x, y, axis):
        return np.median(x, axis=axis) - np.median(y, axis=axis)

    exact = scipy.stats.permutation_test(
        (a, b), stat, permutation_type="samples", vectorized=True, n_resamples=np.inf
    )
    observed, p = permutation_test_medians(a, b, n_permutations=10_000, seed=3)
    assert observed == pytest.approx(np.median(a) - np.median(b))
    assert p == pytest.approx(exact.pvalue, abs=0.02)


def test_permutation_p_is_one_for_identical_conditions_and_small_for_a_clear_difference():
    a = np.linspace(30, 80, 40)
    assert permutation_test_medians(a, a.copy(), n_permutations=500)[1] == 1.0
    # every pair differs by +20: only the all-kept/all-swapped labellings reach |T|
    _, p = permutation_test_medians(a + 20, a, n_permutations=2000, seed=0)
    assert p == pytest.approx(1 / 2001)


def test_rank_biserial_by_hand():
    # |d| ranks 1, 2, 3, 4; T+ = 1 + 3 + 4 = 8, T− = 2 → (8 − 2) / 10
    assert rank_biserial([1, -2, 3, 4]) == pytest.approx(0.6)
    assert rank_biserial([0, 0]) == 0.0
    assert rank_biserial([-1, -2]) == -1.0


def test_corrections_by_hand():
    p = [0.01, 0.04, 0.03]
    np.testing.assert_allclose(adjust(p, "holm"), [0.03, 0.06, 0.06])
    np.testing.assert_allclose(adjust(p, "hochberg"), [0.03, 0.04, 0.04])
    np.testing.assert_allclose(adjust(p, "bonferroni"), [0.03, 0.12, 0.09])
    with pytest.raises(ConfigError, match="correction"):
        adjust(p, "fdr")


def test_compare_family_and_columns():
    panel = pd.concat(
        [_panel(2).assign(group="S-16"), _panel(3, effect=0.0).assign(group="S-32")],
        ignore_index=True,
    )
    pairs = pd.DataFrame(
        [
            ("S-16", "kd", "base", "distilled_vs_non_distilled"),
            ("S-32", "kd", "base", "distilled_vs_non_distilled"),
        ],
        columns=["group", "a", "b", "kind"],
    )
    out = compare(panel, pairs, correction="hochberg", n_permutations=500)
    assert out["group"].tolist() == ["S-16", "S-32"]
    np.testing.assert_allclose(out["p_t_adj"], adjust(out["p_t"], "hochberg"))
    assert set(out["correction"]) == {"hochberg"}
    only = compare_pair(panel[panel["group"] == "S-32"], "kd", "base", n_permutations=500)
    assert out.iloc[1]["mean_diff"] == pytest.approx(only["mean_diff"])


def test_too_few_listeners_is_a_design_error():
    panel = _panel(n_listeners=2)
    with pytest.raises(DesignError, match="at least 3 listeners"):
        compare_pair(panel, "kd", "base")


def test_planned_pairs_from_manifest_facts():
    conditions = pd.DataFrame(
        [
            ("S-32-8", "hidden_reference", "hidden_reference", None, None, None, None),
            ("S-32-8", "distilled", "system", "lstm", "kd", 32, None),
            ("S-32-8", "non_distilled", "system", "lstm", "baseline", 32, None),
            ("S-32-8", "kd_q4", "system", "lstm", "kd_qat", 4, None),
            ("S-32-8", "ptq8", "system", "lstm", "ptq", 8, None),
            ("slim", "slim_100", "system", "wavenet", "slimmable", None, 1.0),
            ("slim", "slim_50", "system", "wavenet", "slimmable", None, 0.5),
        ],
        columns=["group", "condition", "role", "arch", "recipe", "bits", "width"],
    )
    pairs = planned_pairs(conditions)
    assert list(pairs.itertuples(index=False, name=None)) == [
        ("S-32-8", "distilled", "non_distilled", "distilled_vs_non_distilled"),
        ("S-32-8", "kd_q4", "distilled", "compressed_vs_full"),
        ("S-32-8", "ptq8", "non_distilled", "compressed_vs_full"),
        ("slim", "slim_50", "slim_100", "compressed_vs_full"),
    ]


def test_planned_pairs_ignore_a_teacher_in_the_group():
    # The teacher is a baseline run too, but of another size: it is not the non-distilled student.
    conditions = pd.DataFrame(
        [
            ("S-16-8", "distilled", "system", "lstm", "kd", "16-8", 32, 1.0),
            ("S-16-8", "non_distilled", "system", "lstm", "baseline", "16-8", 32, 1.0),
            ("S-16-8", "teacher", "system", "lstm", "baseline", "64-8", 32, 1.0),
            ("S-16-8", "kd_q4", "system", "lstm", "kd_qat", "16-8", 4, 1.0),
        ],
        columns=["group", "condition", "role", "arch", "recipe", "layers", "bits", "width"],
    )
    assert list(planned_pairs(conditions).itertuples(index=False, name=None)) == [
        ("S-16-8", "distilled", "non_distilled", "distilled_vs_non_distilled"),
        ("S-16-8", "kd_q4", "distilled", "compressed_vs_full"),
    ]


def test_all_pairs_on_request():
    panel = tidy_frame(
        [("A", "t", c, "system", 50.0) for c in ("x", "y", "z")]
        + [("A", "t", "r", "hidden_reference", 100.0)]
    )
    pairs = all_pairs(panel)
    assert [(p.a, p.b) for p in pairs.itertuples()] == [("x", "y"), ("x", "z"), ("y", "z")]


@pytest.mark.parametrize("integer", [True, False])
def test_counting_and_sorting_medians_give_the_same_p(integer):
    # integer grades take the counting path, continuous ones the sorting path; both must agree
    # with a plain numpy loop over the same random swaps
    rng = np.random.default_rng(4)
    a = rng.uniform(20, 90, 31)
    b = a + rng.normal(3, 10, 31)
    if integer:
        a, b = np.round(a), np.round(b)
    observed, p = permutation_test_medians(a, b, n_permutations=300, seed=9, chunk=100)
    swaps = np.random.default_rng(9)
    extreme = 0
    for _ in range(3):
        swap = swaps.random((100, a.size)) < 0.5
        for row in swap:
            stat = np.median(np.where(row, b, a)) - np.median(np.where(row, a, b))
            extreme += abs(stat) >= abs(observed) - 1e-9
    assert p == (1 + extreme) / 301
