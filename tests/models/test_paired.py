"""Paired-by-seed intervals in the zoo's comparison tables, checked against scipy on hand-made runs."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from models.studies import paired
from models.studies.study import COMPARED_METRICS, comparison, comparison_figure, quantization_table


def _run(run_id, recipe, seed, error, *, layers="8-8", teacher=None, variant=None, bits=32, init_run=None,
         bytes_=3748, fp32_bytes=3748, teacher_run=None):
    return {"run_id": run_id, "dataset": "od", "arch": "lstm", "model": f"S-{layers}", "layers": layers,
            "recipe": recipe, "teacher": teacher, "variant": variant or recipe, "bits": bits, "seed": seed,
            "bytes": bytes_, "fp32_bytes": fp32_bytes, "init_run": init_run, "teacher_run": teacher_run,
            **{metric: error for metric in COMPARED_METRICS}}


# Baseline errors per seed and distilled ones 10 %, 12 % and 14 % lower: the paired improvements
# are 10, 12, 14 (mean 12); averaging the errors first would give 100 · (0.8 − 0.696) / 0.8 = 13.
BASELINE = {0: 0.10, 1: 0.20, 2: 0.50}
IMPROVEMENT_PCT = {0: 10.0, 1: 12.0, 2: 14.0}


def three_seed_runs():
    rows = [_run(f"b{s}", "baseline", s, e) for s, e in BASELINE.items()]
    rows += [_run(f"kd{s}", "kd", s, BASELINE[s] * (1 - IMPROVEMENT_PCT[s] / 100), teacher="small")
             for s in BASELINE]
    rows.append(_run("b9", "baseline", 9, 5.0))  # a baseline seed with no distilled partner
    rows.append(_run("kd7", "kd", 7, 9.0, teacher="small"))  # and a distilled one with no baseline
    return pd.DataFrame(rows).sample(frac=1.0, random_state=3)  # pairing must not rely on row order


def test_comparison_pairs_by_seed_and_matches_scipy():
    table = comparison(three_seed_runs())
    assert sorted(table["metric"]) == sorted(COMPARED_METRICS)
    expected = stats.ttest_rel(list(IMPROVEMENT_PCT.values()), np.zeros(3))
    ci = expected.confidence_interval(0.95)
    # By hand: mean 12, sd 2, t(0.975, 2) = 4.302653 → 12 ± 4.302653 · 2 / √3 = [7.032, 16.968].
    assert ci.low == pytest.approx(12 - 4.302653 * 2 / math.sqrt(3), rel=1e-6)
    for _, row in table.iterrows():
        assert row["seeds"] == 3
        assert row["improvement_pct"] == pytest.approx(12.0)
        assert row["improvement_ci95_low_pct"] == pytest.approx(ci.low)
        assert row["improvement_ci95_high_pct"] == pytest.approx(ci.high)
        assert row["verdict"] == "better"
        assert row["baseline"] == pytest.approx(np.mean(list(BASELINE.values())))


def test_comparison_within_noise_and_worse():
    # Improvements −10, +20, +50: mean 20, sd 30, interval 20 ± 74.5 contains 0.
    rows = [_run(f"b{s}", "baseline", s, 1.0) for s in range(3)]
    rows += [_run(f"kd{s}", "kd", s, 1.0 - imp / 100, teacher="small") for s, imp in enumerate([-10, 20, 50])]
    row = comparison(pd.DataFrame(rows)).iloc[0]
    expected = stats.t.interval(0.95, 2, loc=20.0, scale=30.0 / math.sqrt(3))
    assert (row["improvement_ci95_low_pct"], row["improvement_ci95_high_pct"]) == pytest.approx(expected)
    assert row["verdict"] == "within noise"
    # Distillation raising the error on every seed: −10, −12, −14.
    rows = [_run(f"b{s}", "baseline", s, 1.0) for s in range(3)]
    rows += [_run(f"kd{s}", "kd", s, 1.0 + imp / 100, teacher="small") for s, imp in enumerate([10, 12, 14])]
    row = comparison(pd.DataFrame(rows)).iloc[0]
    assert row["improvement_pct"] == pytest.approx(-12.0) and row["verdict"] == "worse"


def test_one_seed_has_no_interval_and_says_so():
    table = comparison(pd.DataFrame([_run("b0", "baseline", 0, 0.2), _run("kd0", "kd", 0, 0.15, teacher="small")]))
    row = table.iloc[0]
    assert row["seeds"] == 1 and row["improvement_pct"] == pytest.approx(25.0)
    assert math.isnan(row["improvement_ci95_low_pct"]) and math.isnan(row["improvement_ci95_high_pct"])
    assert row["verdict"] == "1 seed: no uncertainty"
    assert paired.describe(25.0, math.nan, math.nan, 1, row["verdict"]) == "+25.0 % (1 seed: no uncertainty)"


def test_verdict_boundaries():
    assert paired.verdict(0.0, 4.0, 3, "positive") == "within noise"  # touching 0 is not a difference
    assert paired.verdict(-4.0, 0.0, 3, "positive") == "within noise"
    assert paired.verdict(1e-9, 4.0, 3, "positive") == "better"
    assert paired.verdict(-4.0, -1e-9, 3, "positive") == "worse"
    assert paired.verdict(1e-9, 4.0, 3, "negative") == "worse"
    assert paired.verdict(-4.0, -1e-9, 3, "negative") == "better"
    assert paired.verdict(math.nan, math.nan, 1, "positive") == "1 seed: no uncertainty"
    # Identical differences on every seed: a zero-width interval at the mean, not NaN.
    summary = paired.summarise([5.0, 5.0, 5.0], "positive")
    assert (summary.ci_low, summary.ci_high, summary.verdict) == (5.0, 5.0, "better")
    # A NaN difference (zero reference error) is not a seed.
    summary = paired.summarise([2.0, math.nan, 4.0], "positive")
    assert summary.n_seeds == 2 and summary.mean == 3.0
    assert (summary.ci_low, summary.ci_high) == pytest.approx(stats.ttest_1samp([2.0, 4.0], 0.0).confidence_interval())
    assert paired.describe(12.0, 7.032, 16.968, 3, "better") == "+12.0 % [+7.0, +17.0] (3 seeds) better"


def test_quantization_change_is_paired_with_its_fp32_source():
    # Source ESR per seed and the 4-bit model's: changes +18 %, +20 %, +22 % (20 ± 4.97: worse).
    source = {0: 0.1, 1: 0.4, 2: 0.05}
    change = {0: 18.0, 1: 20.0, 2: 22.0}
    rows = [_run(f"b{s}", "baseline", s, e, bytes_=3748) for s, e in source.items()]
    rows += [_run(f"q{s}", "ptq", s, source[s] * (1 + change[s] / 100), variant="ptq4", bits=4,
                  init_run=f"b{s}", bytes_=1000) for s in source]
    table = quantization_table(pd.DataFrame(rows))
    assert len(table) == 1
    row = table.iloc[0]
    ci = stats.ttest_1samp(list(change.values()), 0.0).confidence_interval()
    assert row["seeds"] == 3 and row["esr_change_pct"] == pytest.approx(20.0)
    assert (row["esr_change_ci95_low_pct"], row["esr_change_ci95_high_pct"]) == pytest.approx((ci.low, ci.high))
    assert row["verdict"] == "worse"  # quantization raised the error on every seed, beyond noise
    assert row["control"] == "fp32 source (baseline)"
    assert row["bytes"] == 1000 and row["ratio_to_fp32"] == pytest.approx(1000 / 3748)
    assert row["test_esr"] == pytest.approx(np.mean([source[s] * (1 + change[s] / 100) for s in source]))


def test_comparison_figure_draws_the_intervals(tmp_path):
    table = comparison(three_seed_runs())
    comparison_figure(table, tmp_path / "with.png")
    no_ci = table.assign(improvement_ci95_low_pct=np.nan, improvement_ci95_high_pct=np.nan, seeds=1)
    comparison_figure(no_ci, tmp_path / "without.png")
    with_bytes = (tmp_path / "with.png").read_bytes()
    assert with_bytes[:8] == b"\x89PNG\r\n\x1a\n"
    assert with_bytes != (tmp_path / "without.png").read_bytes()
