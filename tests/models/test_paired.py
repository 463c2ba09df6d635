"""Paired-by-seed intervals in the zoo's comparison tables, checked against scipy on hand-made runs."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from models.studies import figures as study_figures
from models.studies import paired
from models.studies.figures import comparison_figure, pareto_figure, width_sweep_figure
from models.studies.recipes.kd import WITHOUT_DISTILLATION
from models.studies.recipes.kd_qat import WITHOUT_TEACHER
from models.studies.recipes.quantized import FINE_TUNED
from models.studies.recipes.slimmable import TRAINED_ALONE
from models.studies.tables import (
    COMPARED_METRICS,
    CONTROLS_COLUMNS,
    comparison,
    comparison_markdown,
    quantization_table,
    width_sweep,
)


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
    assert row["control"] == "fp32 source: budget not matched (baseline)"  # no controls listed
    assert row["bytes"] == 1000 and row["ratio_to_fp32"] == pytest.approx(1000 / 3748)
    assert row["test_esr"] == pytest.approx(np.mean([source[s] * (1 + change[s] / 100) for s in source]))


def _controls(pairs):
    return pd.DataFrame([{"run_id": r, "control_run": c, "control": kind} for r, c, kind in pairs],
                        columns=CONTROLS_COLUMNS)


def test_quantization_compares_with_each_budget_matched_control():
    # The case: the 4-bit kd_qat student trained 3 more epochs than its fp32 kd source, and
    # those epochs alone halve the error (the fp32 fine-tuning). Against the source it looks 45 %
    # better; against the budget-matched fine-tuning it is 12 ± 2 % worse, and against plain qat
    # of the same budget −10, +2 and −7 % (mean −5 %): within noise.
    source = {0: 0.05, 1: 0.06, 2: 0.07}
    tuned = {s: e / 2 for s, e in source.items()}
    worse_pct = {0: 10.0, 1: 12.0, 2: 14.0}
    student = {s: tuned[s] * (1 + worse_pct[s] / 100) for s in source}
    vs_plain_pct = {0: -10.0, 1: 2.0, 2: -7.0}
    plain = {s: student[s] / (1 + vs_plain_pct[s] / 100) for s in source}
    rows = [_run(f"kd{s}", "kd", s, e, teacher="small", teacher_run=f"t{s}") for s, e in source.items()]
    rows += [_run(f"t{s}", "baseline", s, 0.01, layers="64-8", bytes_=78116) for s in source]
    rows += [_run(f"ft{s}", "finetune", s, tuned[s], teacher="small", init_run=f"kd{s}") for s in source]
    rows += [_run(f"q{s}", "qat", s, plain[s], variant="qat4", teacher="small", bits=4, init_run=f"kd{s}",
                  bytes_=1000) for s in source]
    rows += [_run(f"kq{s}", "kd_qat", s, student[s], variant="kd_qat4", teacher="small", bits=4,
                  init_run=f"kd{s}", teacher_run=f"t{s}", bytes_=1000) for s in source]
    controls = _controls([(f"kq{s}", f"ft{s}", FINE_TUNED) for s in source]
                         + [(f"kq{s}", f"q{s}", WITHOUT_TEACHER) for s in source]
                         + [(f"q{s}", f"ft{s}", FINE_TUNED) for s in source])
    frame = pd.DataFrame(rows)
    table = quantization_table(frame, controls).set_index(["recipe", "control"])
    fine = table.loc[("kd_qat", f"{FINE_TUNED} (finetune)")]
    ci = stats.ttest_1samp(list(worse_pct.values()), 0.0).confidence_interval()
    assert fine["esr_change_pct"] == pytest.approx(12.0) and fine["verdict"] == "worse"
    assert (fine["esr_change_ci95_low_pct"], fine["esr_change_ci95_high_pct"]) == pytest.approx((ci.low, ci.high))
    assert fine["control_test_esr"] == pytest.approx(np.mean(list(tuned.values())))
    assert fine["source_test_esr"] == pytest.approx(0.06)
    assert fine["ratio_to_teacher"] == pytest.approx(1000 / 78116)
    vs_qat = table.loc[("kd_qat", f"{WITHOUT_TEACHER} (qat4)")]
    ci = stats.ttest_1samp(list(vs_plain_pct.values()), 0.0).confidence_interval()
    assert vs_qat["esr_change_pct"] == pytest.approx(-5.0) and vs_qat["seeds"] == 3
    assert (vs_qat["esr_change_ci95_low_pct"], vs_qat["esr_change_ci95_high_pct"]) == pytest.approx((ci.low, ci.high))
    assert vs_qat["verdict"] == "within noise"
    assert table.loc[("qat", f"{FINE_TUNED} (finetune)"), "seeds"] == 3
    # Without the controls the same runs give the confounded number, and say so.
    confounded = quantization_table(frame).set_index("recipe").loc["kd_qat"]
    assert confounded["esr_change_pct"] == pytest.approx(np.mean([100 * (student[s] - source[s]) / source[s]
                                                                  for s in source]))
    assert confounded["esr_change_pct"] < -40 and confounded["control"] == "fp32 source: budget not matched (kd)"


def test_comparison_uses_the_listed_control_not_another_budget():
    # Two baselines per seed: the budget-matched one (listed as the control) and one trained ten
    # times longer (error / 10). Averaging both, as a study without controls must, would credit
    # the teacher with nothing; the listed control gives the paired 10/12/14 % of three_seed_runs.
    runs = three_seed_runs()
    longer = [_run(f"long{s}", "baseline", s, e / 10, variant="long") for s, e in BASELINE.items()]
    frame = pd.concat([runs, pd.DataFrame(longer)], ignore_index=True)
    controls = _controls([(f"kd{s}", f"b{s}", WITHOUT_DISTILLATION) for s in BASELINE])
    row = comparison(frame, controls).set_index("metric").loc["test_esr"]
    assert row["improvement_pct"] == pytest.approx(12.0) and row["control"] == WITHOUT_DISTILLATION
    unlisted = comparison(frame).set_index("metric").loc["test_esr"]
    assert unlisted["improvement_pct"] < 0 and "budget not matched" in unlisted["control"]


def test_comparison_figure_draws_the_intervals(tmp_path):
    table = comparison(three_seed_runs())
    comparison_figure(table, tmp_path / "with.png")
    no_ci = table.assign(improvement_ci95_low_pct=np.nan, improvement_ci95_high_pct=np.nan, seeds=1)
    comparison_figure(no_ci, tmp_path / "without.png")
    with_bytes = (tmp_path / "with.png").read_bytes()
    assert with_bytes[:8] == b"\x89PNG\r\n\x1a\n"
    assert with_bytes != (tmp_path / "without.png").read_bytes()


def _slim_run(run_id, recipe, seed, esr, *, width=1.0, model="WN-slimmable", init_run=None, variant=None):
    return {"run_id": run_id, "dataset": "od", "arch": "wavenet", "model": model, "layers": f"w{width:g}",
            "recipe": recipe, "teacher": None, "variant": variant or recipe, "bits": 32, "seed": seed,
            "width": width, "init_run": init_run, "params": int(1000 * width), "bytes": int(4000 * width),
            "macs_per_sample": int(2000 * width), "test_esr": esr, "rtf_stream": 10.0 / width + seed}


# Per seed, the 25 % cut's ESR and the same layout trained alone: slimmed − alone = +0.02, +0.03,
# +0.04 (mean 0.03, sd 0.01), so the slimmed network is worse beyond noise. Only seed 0 has a
# full-width network trained alone; no seed has one at 50 %.
QUARTER_ESR = {0: 0.12, 1: 0.33, 2: 0.24}
ALONE_QUARTER_ESR = {0: 0.10, 1: 0.30, 2: 0.20}
FULL_ESR = {0: 0.05, 1: 0.06, 2: 0.10}


def width_sweep_runs(seeds=(0, 1, 2)):
    rows = []
    for s in seeds:
        rows.append(_slim_run(f"full{s}", "slimmable", s, FULL_ESR[s]))
        rows.append(_slim_run(f"quarter{s}", "slimmable", s, QUARTER_ESR[s], width=0.25,
                              model="WN-slimmable@25%", init_run=f"full{s}"))
        rows.append(_slim_run(f"half{s}", "slimmable", s, 0.08, width=0.5, model="WN-slimmable@50%",
                              init_run=f"full{s}"))
        rows.append(_slim_run(f"alone{s}", "baseline", s, ALONE_QUARTER_ESR[s], width=0.25, model="WN-slimmable@25%"))
    rows.append(_slim_run("alone_full0", "baseline", 0, 0.04))
    return pd.DataFrame(rows).sample(frac=1.0, random_state=5)  # pairing must not rely on row order


def test_width_sweep_pairs_by_seed_and_matches_scipy():
    table = width_sweep(width_sweep_runs()).set_index("width")
    assert list(table.index) == [0.25, 0.5, 1.0] and set(table["model"]) == {"WN-slimmable"}
    quarter = table.loc[0.25]
    slimmed, alone = list(QUARTER_ESR.values()), list(ALONE_QUARTER_ESR.values())
    ci = stats.ttest_rel(slimmed, alone).confidence_interval(0.95)
    # By hand: 0.03 ± 4.302653 · 0.01 / √3 = [0.00516, 0.05484].
    assert ci.low == pytest.approx(0.03 - 4.302653 * 0.01 / math.sqrt(3), rel=1e-6)
    assert quarter["seeds"] == 3 and quarter["esr_difference"] == pytest.approx(0.03)
    assert (quarter["esr_difference_ci95_low"], quarter["esr_difference_ci95_high"]) == pytest.approx((ci.low, ci.high))
    assert quarter["verdict"] == "worse"  # a higher error than trained alone, on every seed
    assert quarter["test_esr"] == pytest.approx(np.mean(slimmed))
    assert quarter["independent_test_esr"] == pytest.approx(np.mean(alone))
    own = stats.t.interval(0.95, 2, loc=np.mean(slimmed), scale=stats.sem(slimmed))
    assert (quarter["test_esr_ci95_low"], quarter["test_esr_ci95_high"]) == pytest.approx(own)
    own = stats.t.interval(0.95, 2, loc=np.mean(alone), scale=stats.sem(alone))
    assert (quarter["independent_test_esr_ci95_low"], quarter["independent_test_esr_ci95_high"]) == pytest.approx(own)
    assert quarter["slimmable_seeds"] == 3 and quarter["independent_seeds"] == 3
    assert quarter["run_id"] == "quarter0 quarter1 quarter2"
    assert quarter["independent_run"] == "alone0 alone1 alone2"
    assert quarter["rtf_stream"] == pytest.approx(40.0 + 1.0)  # 10 / 0.25 + mean seed
    # Full width: one seed trained alone, so one pair and no interval, whatever the slimmed side has.
    full = table.loc[1.0]
    assert full["seeds"] == 1 and full["esr_difference"] == pytest.approx(0.05 - 0.04)
    assert math.isnan(full["esr_difference_ci95_low"]) and full["verdict"] == "1 seed: no uncertainty"
    assert full["independent_run"] == "alone_full0" and full["slimmable_seeds"] == 3
    # Half width: nothing trained alone.
    half = table.loc[0.5]
    assert half["seeds"] == 0 and half["verdict"] == "no paired seeds" and half["independent_run"] == ""
    assert math.isnan(half["independent_test_esr"])


def test_width_sweep_uses_the_listed_control():
    # A second 25 % network trained alone with another budget (error 0.01 on every seed) is a
    # baseline of the same layout; the listed control (alone0..2) is the one compared with.
    runs = width_sweep_runs()
    other = [_slim_run(f"other{s}", "baseline", s, 0.01, width=0.25, model="WN-slimmable@25%", variant="other")
             for s in (0, 1, 2)]
    frame = pd.concat([runs, pd.DataFrame(other)], ignore_index=True)
    controls = _controls([(f"quarter{s}", f"alone{s}", TRAINED_ALONE) for s in (0, 1, 2)])
    quarter = width_sweep(frame, controls).set_index("width").loc[0.25]
    assert quarter["esr_difference"] == pytest.approx(0.03) and quarter["independent_run"] == "alone0 alone1 alone2"
    assert quarter["control"] == TRAINED_ALONE
    both = width_sweep(frame).set_index("width").loc[0.25]
    assert both["independent_run"] == "alone0 other0 alone1 other1 alone2 other2"
    assert "budget not matched" in both["control"]


def test_width_sweep_one_seed_says_so():
    table = width_sweep(width_sweep_runs(seeds=(1,))).set_index("width")
    quarter = table.loc[0.25]
    assert quarter["seeds"] == 1 and quarter["esr_difference"] == pytest.approx(0.03)
    assert quarter["verdict"] == "1 seed: no uncertainty"
    assert math.isnan(quarter["test_esr_ci95_low"]) and math.isnan(quarter["independent_test_esr_ci95_high"])
    assert quarter["run_id"] == "quarter1" and quarter["independent_run"] == "alone1"


def _captured_figures(monkeypatch):
    """The figures the study's figure functions make, kept open instead of written."""
    figures = []
    monkeypatch.setattr(study_figures, "_save_figure", lambda fig, path: figures.append(fig))
    return figures


def test_width_sweep_figure_draws_the_intervals(tmp_path, monkeypatch):
    table = width_sweep(width_sweep_runs())
    width_sweep_figure(table, tmp_path / "with.png")
    no_ci = table.assign(**{c: np.nan for c in table.columns if "_ci95_" in c}, slimmable_seeds=1, independent_seeds=1)
    width_sweep_figure(no_ci, tmp_path / "without.png")
    with_bytes = (tmp_path / "with.png").read_bytes()
    assert with_bytes[:8] == b"\x89PNG\r\n\x1a\n"
    assert with_bytes != (tmp_path / "without.png").read_bytes()
    figures = _captured_figures(monkeypatch)
    width_sweep_figure(table, tmp_path / "unused.png")
    width_sweep_figure(width_sweep(width_sweep_runs(seeds=(0,))), tmp_path / "unused.png")
    esr, one_seed_esr = figures[0].axes[0], figures[1].axes[0]
    # Bars at the three slimmed widths and at the 25 % network trained alone (the only one with 3 seeds).
    bars = [c for c in esr.containers if c.has_yerr]
    assert sorted(len(c.lines[2][0].get_segments()) for c in bars) == [1, 3]
    assert "3 seeds" in figures[0].texts[0].get_text()
    assert not [c for c in one_seed_esr.containers if getattr(c, "has_yerr", False)]
    assert one_seed_esr.get_ylabel() == "test ESR (1 seed: no uncertainty)"


def test_pareto_figure_plots_means_with_intervals(tmp_path, monkeypatch):
    runs = width_sweep_runs()
    pareto_figure(runs, tmp_path / "with.png")
    assert (tmp_path / "with.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    figures = _captured_figures(monkeypatch)
    pareto_figure(runs, tmp_path / "unused.png")
    pareto_figure(runs[runs["seed"] == 0], tmp_path / "unused.png")
    by_bytes = figures[0].axes[0]
    # One marker per model (4 cells: three slimmed widths, two trained alone), not one per run.
    offsets = np.concatenate([c.get_offsets() for c in by_bytes.collections if hasattr(c, "get_offsets")
                              and len(c.get_offsets()) and not hasattr(c, "get_segments")])
    assert len(offsets) == 5
    quarter_slimmed = offsets[(offsets[:, 0] == 1000) & np.isclose(offsets[:, 1], np.mean(list(QUARTER_ESR.values())))]
    assert len(quarter_slimmed) == 1
    bars = [c for c in by_bytes.containers if c.has_yerr]
    # Every cell but the full width trained alone (seed 0 only) has three seeds: 4 bars.
    assert sum(len(c.lines[2][0].get_segments()) for c in bars) == 4
    assert "3 seeds" in figures[0].texts[0].get_text()
    assert not figures[1].axes[0].containers
    assert figures[1].texts[0].get_text() == "1 seed per model: no uncertainty"


def test_comparison_markdown_is_table_2_with_intervals():
    text = comparison_markdown(comparison(three_seed_runs()))
    header, rule, row = text.splitlines()[:3]
    assert header.split(" | ")[5:7] == ["ESR", "ESR (pre-emphasis)"]
    ci = stats.ttest_1samp(list(IMPROVEMENT_PCT.values()), 0.0).confidence_interval()
    cells = [c.strip() for c in row.strip("|").split("|")]
    # every metric moved by the same 10/12/14 %: the same cell in each metric column
    assert cells[:3] == ["od", "small", "S-8-8"]
    assert cells[3] == f"{np.mean(list(BASELINE.values())):.4f}"
    assert cells[5:] == [f"+12.0 [{ci.low:+.1f}, {ci.high:+.1f}] +"] * 5
    assert "mean over 3 seeds" in text
    one = comparison_markdown(comparison(three_seed_runs()[lambda f: f["seed"] == 1]))
    assert "| +12.0 (1 seed) |" in one and "one seed: no uncertainty" in one


def test_comparison_figure_with_one_student_size_has_a_usable_axis(tmp_path, monkeypatch):
    figures = _captured_figures(monkeypatch)
    comparison_figure(comparison(three_seed_runs()), tmp_path / "one.png")
    low, high = figures[0].axes[0].get_xlim()
    assert low == pytest.approx(8 / 2 ** 0.5) and high == pytest.approx(8 * 2 ** 0.5)  # half an octave each side
