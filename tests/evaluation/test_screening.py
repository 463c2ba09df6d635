"""Post-screening (BS.1534-3 §4.1.2) and Tukey-hinge outlier flags."""

import numpy as np
import pandas as pd
import pytest

from common.bs1534 import tukey_hinges
from evaluation.config import from_dict
from evaluation.errors import ConfigError
from evaluation.ratings import assign_roles, read_list_valued_csv
from evaluation.screening import ScreeningConfig, flag_outliers, screen
from tests.evaluation.inputs import tidy_frame

STAHL_ROLES = {"Reference": "hidden_reference", "Anchor": "anchor_low"}


def _stahl(stahl_dir, name):
    return assign_roles(read_list_valued_csv(stahl_dir / name).ratings, STAHL_ROLES)


def test_stahl_hidden_reference_rule_removes_listeners_6_and_17(stahl_dir):
    raw = _stahl(stahl_dir, "ratings_formated.csv")
    result = screen(raw)
    assert sorted(result.excluded, key=int) == ["6", "17"]
    assert result.rules_applied == ("hidden_reference",)
    assert "mid_anchor" in result.rules_skipped  # this panel has no 7 kHz anchor
    kept = result.apply(raw)
    filtered = _stahl(stahl_dir, "ratings_formated_filtered.csv")
    key = ["participant", "trial", "condition"]
    left = kept[key + ["score"]].sort_values(key).reset_index(drop=True)
    right = filtered[key + ["score"]].sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(left, right)


def test_stahl_failure_counts_against_plain_pandas(stahl_dir):
    raw = _stahl(stahl_dir, "ratings_formated.csv")
    ref = raw[raw["condition"] == "Reference"]
    expected = (ref["score"] < 90).groupby(ref["participant"]).mean()
    got = screen(raw).listeners.set_index("participant")["hidden_reference_fraction"]
    pd.testing.assert_series_equal(got.sort_index(), expected.sort_index(), check_names=False)


def _panel(
    failures_per_listener: dict[str, int],
    n_trials: int,
    role="hidden_reference",
    bad=80.0,
    good=100.0,
):
    rows = []
    for participant, n_fail in failures_per_listener.items():
        for t in range(n_trials):
            rows.append((participant, f"t{t:02d}", "cond", role, bad if t < n_fail else good))
            rows.append((participant, f"t{t:02d}", "sys", "system", 50.0))
    return tidy_frame(rows)


def test_exactly_15_percent_is_kept_just_over_is_removed():
    # 3 of 20 = 15 % stays; 4 of 20 = 20 % goes; 1 of 7 = 14.3 % stays; 2 of 7 = 28.6 % goes
    result = screen(_panel({"keep": 3, "drop": 4}, 20))
    assert result.excluded == ["drop"]
    row = result.listeners.set_index("participant").loc["drop"]
    assert (row["hidden_reference_failures"], row["hidden_reference_trials"]) == (4, 20)
    assert row["reason"] == "hidden reference below 90 in 4 of 20 trials"
    assert screen(_panel({"a": 1, "b": 2}, 7)).excluded == ["b"]


def test_score_of_exactly_90_is_not_a_failure():
    result = screen(_panel({"a": 20}, 20, bad=90.0))
    assert result.excluded == []
    assert screen(_panel({"a": 20}, 20, bad=89.9)).excluded == ["a"]


def test_thresholds_are_configurable():
    config = ScreeningConfig(hidden_reference_max_fraction=0.25)
    assert screen(_panel({"a": 5, "b": 6}, 20), config).excluded == ["b"]
    assert (
        screen(_panel({"a": 20}, 20), ScreeningConfig(hidden_reference_rule=False)).excluded == []
    )


def _anchor_panel(n_listeners, n_trials, above: dict[str, set[int]]):
    rows = []
    for i in range(n_listeners):
        p = f"L{i}"
        for t in range(n_trials):
            rows.append((p, f"t{t:02d}", "hidden_reference", "hidden_reference", 100.0))
            rows.append(
                (
                    p,
                    f"t{t:02d}",
                    "anchor_7k",
                    "anchor_mid",
                    95.0 if t in above.get(p, set()) else 60.0,
                )
            )
    return tidy_frame(rows)


def test_mid_anchor_guard_ignores_items_where_over_25_percent_rate_above_90():
    # 8 listeners, 10 trials. In t00, 3 of 8 (37.5 %) rate the anchor above 90 → ignored.
    # In t01, 2 of 8 (25 %) do → not ignored (strictly more than 25 % is needed).
    above = {"L0": {0, 1}, "L1": {0, 1}, "L2": {0}}
    result = screen(_anchor_panel(8, 10, above))
    trials = result.anchor_trials.set_index("trial")
    assert bool(trials.loc["t00", "ignored"]) and not bool(trials.loc["t01", "ignored"])
    assert trials.loc["t00", "n_above"] == 3 and trials.loc["t01", "fraction_above"] == 0.25
    # L0: t01 counts, 1 of 9 remaining = 11 % → kept. Without the guard L0 fails 2 of 10 = 20 %.
    assert result.excluded == []
    unguarded = screen(_anchor_panel(8, 10, above), ScreeningConfig(mid_anchor_item_guard=1.0))
    assert unguarded.excluded == ["L0", "L1"]


def test_mid_anchor_denominator_is_recorded_and_matters():
    # 14 trials; t00 and t01 guarded (all 4 listeners rate above 90); L0 also fails t02 and t03.
    above = {f"L{i}": {0, 1} for i in range(4)}
    above["L0"] = {0, 1, 2, 3}
    panel = _anchor_panel(4, 14, above)
    remaining = screen(panel)  # 2 of 12 = 16.7 % → excluded
    assert remaining.excluded == ["L0"]
    assert remaining.listeners.set_index("participant").loc["L0", "mid_anchor_trials"] == 12
    everything = screen(panel, ScreeningConfig(mid_anchor_denominator="all"))  # 2 of 14 = 14.3 %
    assert everything.excluded == []
    assert "remaining after that guard" in remaining.description()
    assert "all their rated trials" in everything.description()
    assert remaining.to_dict()["mid_anchor_trials_ignored"] == ["t00", "t01"]


def test_both_rules_give_both_reasons():
    rows = []
    for t in range(10):
        rows.append(("X", f"t{t}", "hidden_reference", "hidden_reference", 50.0))
        rows.append(("X", f"t{t}", "anchor_7k", "anchor_mid", 99.0))
        for p in ("A", "B", "C", "D", "E"):
            rows.append((p, f"t{t}", "hidden_reference", "hidden_reference", 100.0))
            rows.append((p, f"t{t}", "anchor_7k", "anchor_mid", 40.0))
    result = screen(tidy_frame(rows))
    assert result.excluded == ["X"]
    reason = result.listeners.set_index("participant").loc["X", "reason"]
    assert (
        reason
        == "hidden reference below 90 in 10 of 10 trials; mid anchor above 90 in 10 of 10 trials"
    )


@pytest.mark.parametrize(
    "values, hinges",
    [
        ([1, 2, 3, 4, 5, 6], (2.0, 5.0)),  # numpy's default would give 2.25, 4.75
        ([1, 2, 3, 4, 5, 6, 7, 8], (2.5, 6.5)),  # numpy: 2.75, 6.25
        ([1, 2, 3, 4, 5], (2.0, 4.0)),  # median in both halves
        ([7], (7.0, 7.0)),
        ([3, 1], (1.0, 3.0)),
    ],
)
def test_tukey_hinges_by_hand(values, hinges):
    q1, _, q3 = tukey_hinges(values)
    assert (q1, q3) == hinges


def test_outlier_flags_use_hinges_not_numpy_quantiles():
    # hinges 52 and 58 → fences 43 and 67: 44 is inside (numpy's quartiles would flag it)
    scores = [44, 52, 54, 56, 58, 60]
    rows = [(f"p{i}", "t1", "sys", "system", s) for i, s in enumerate(scores)]
    rows += [(f"p{i}", "t1", "other", "system", s) for i, s in enumerate([50, 52, 54, 56, 58, 100])]
    flagged = flag_outliers(tidy_frame(rows))
    assert flagged.loc[flagged["condition"] == "sys", "outlier"].sum() == 0
    other = flagged[flagged["condition"] == "other"]
    assert other.loc[other["outlier"], "score"].tolist() == [100.0]
    assert other["lower_fence"].iloc[0] == 43.0 and other["upper_fence"].iloc[0] == 67.0
    assert len(flagged) == len(rows)  # flagged, never removed


def test_grouped_hinges_match_scalar_hinges_on_random_groups():
    rng = np.random.default_rng(3)
    rows = []
    for g in range(30):
        n = rng.integers(1, 15)
        rows += [
            (f"p{i}", f"t{g}", "c", "system", float(s))
            for i, s in enumerate(rng.integers(0, 101, n))
        ]
    frame = tidy_frame(rows)
    flagged = flag_outliers(frame)
    for trial, group in frame.groupby("trial"):
        q1, _, q3 = tukey_hinges(group["score"])
        got = flagged[flagged["trial"] == trial]
        assert got["q1"].iloc[0] == q1 and got["q3"].iloc[0] == q3


def test_config_rejects_bad_values_and_unknown_keys():
    with pytest.raises(ConfigError, match="hidden_reference_max_fraction"):
        ScreeningConfig(hidden_reference_max_fraction=15)
    with pytest.raises(ConfigError, match=r"screening: unknown key 'threshold' \(allowed: "):
        from_dict(ScreeningConfig, {"threshold": 90}, "screening")
    with pytest.raises(ConfigError, match="expected one of"):
        from_dict(ScreeningConfig, {"mid_anchor_denominator": "some"}, "screening")
