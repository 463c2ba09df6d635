"""Post-screening of assessors (ITU-R BS.1534-3 §4.1.2) and Tukey-hinge outlier flags.

Rule 1 (hidden reference): exclude a listener who rates the hidden reference below 90 for more than
15 % of the trials they rated (strictly more; the fraction is over their own rated trials).

Rule 2 (mid anchor): exclude a listener who rates the mid anchor (7 kHz) above 90 for more than 15 %
of the trials — ignoring every trial in which more than 25 % of the listeners rated the mid anchor
above 90 (the anchor did not degrade that item). The denominator is configurable: the listener's
rated trials that remain after that guard (``remaining``, default) or all trials they rated
(``all``); the result records which.

Outliers: per trial × condition, grades outside Q1 − 1.5·IQR … Q3 + 1.5·IQR with Tukey hinges
(medians of the lower and upper halves, the median in both halves when n is odd). Outliers are
flagged, never removed.

A trial is the unit both rules count ("test item" in the Recommendation): one page, one item.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import pandas as pd

from common import bs1534

from .errors import ConfigError
from .hinges import grouped_quartiles

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScreeningConfig:
    """Thresholds of the two BS.1534-3 post-screening rules (defaults: the Recommendation's)."""

    hidden_reference_rule: bool = True
    hidden_reference_below: float = bs1534.HIDDEN_REFERENCE_BELOW
    hidden_reference_max_fraction: float = bs1534.HIDDEN_REFERENCE_MAX_FRACTION
    mid_anchor_rule: bool = True
    mid_anchor_above: float = bs1534.MID_ANCHOR_ABOVE
    mid_anchor_max_fraction: float = bs1534.MID_ANCHOR_MAX_FRACTION
    mid_anchor_item_guard: float = bs1534.MID_ANCHOR_ITEM_GUARD
    """A trial is ignored by rule 2 when more than this fraction of listeners rate its mid anchor
    above the threshold."""
    mid_anchor_denominator: Literal["remaining", "all"] = "remaining"
    outlier_iqr_factor: float = 1.5

    def __post_init__(self) -> None:
        for name in (
            "hidden_reference_max_fraction",
            "mid_anchor_max_fraction",
            "mid_anchor_item_guard",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"screening.{name}: expected a fraction in [0, 1], found {value}")
        for name in ("hidden_reference_below", "mid_anchor_above"):
            value = getattr(self, name)
            if not 0.0 <= value <= 100.0:
                raise ConfigError(f"screening.{name}: expected a score in [0, 100], found {value}")
        if self.mid_anchor_denominator not in ("remaining", "all"):
            raise ConfigError(
                "screening.mid_anchor_denominator: expected 'remaining' or 'all', found "
                f"{self.mid_anchor_denominator!r}"
            )
        if self.outlier_iqr_factor <= 0:
            raise ConfigError(
                f"screening.outlier_iqr_factor: expected a positive number, found {self.outlier_iqr_factor}"
            )


@dataclass(frozen=True)
class ScreeningResult:
    """Outcome of :func:`screen`.

    ``listeners``: one row per listener — ``participant, trials_rated,
    hidden_reference_trials, hidden_reference_failures, hidden_reference_fraction,
    mid_anchor_trials, mid_anchor_failures, mid_anchor_fraction, excluded, reason``.
    ``anchor_trials``: one row per trial with a mid anchor — ``trial, n_listeners, n_above,
    fraction_above, ignored``. ``outliers``: the ratings frame with ``q1, q3, lower_fence,
    upper_fence, outlier`` (see :func:`flag_outliers`).
    """

    config: ScreeningConfig
    listeners: pd.DataFrame
    anchor_trials: pd.DataFrame
    outliers: pd.DataFrame
    rules_applied: tuple[str, ...]
    rules_skipped: dict

    @property
    def excluded(self) -> list[str]:
        return self.listeners.loc[self.listeners["excluded"], "participant"].tolist()

    @property
    def kept(self) -> list[str]:
        return self.listeners.loc[~self.listeners["excluded"], "participant"].tolist()

    def apply(self, ratings: pd.DataFrame) -> pd.DataFrame:
        """The ratings of kept listeners (outliers stay: they are flagged, never removed)."""
        return ratings[~ratings["participant"].isin(self.excluded)].reset_index(drop=True)

    def description(self) -> str:
        """One paragraph for the report saying what was applied and with which denominators."""
        c = self.config
        parts = []
        if "hidden_reference" in self.rules_applied:
            parts.append(
                f"listeners who rated the hidden reference below {c.hidden_reference_below:g} in more "
                f"than {c.hidden_reference_max_fraction:.0%} of their rated trials were excluded"
            )
        if "mid_anchor" in self.rules_applied:
            ignored = int(self.anchor_trials["ignored"].sum()) if len(self.anchor_trials) else 0
            denominator = (
                "the trials remaining after that guard"
                if c.mid_anchor_denominator == "remaining"
                else "all their rated trials"
            )
            parts.append(
                f"listeners who rated the mid anchor above {c.mid_anchor_above:g} in more than "
                f"{c.mid_anchor_max_fraction:.0%} of trials were excluded, ignoring trials in which "
                f"more than {c.mid_anchor_item_guard:.0%} of listeners did so ({ignored} trial(s) "
                f"ignored); the fraction is over {denominator}"
            )
        for rule, why in self.rules_skipped.items():
            parts.append(f"the {rule.replace('_', '-')} rule was not applied ({why})")
        n_before, n_after = len(self.listeners), len(self.kept)
        text = "; ".join(parts) if parts else "no screening rule was applied"
        return (
            f"Post-screening (ITU-R BS.1534-3 §4.1.2): {text}. {n_before} listeners before "
            f"screening, {n_after} after."
        )

    def to_dict(self) -> dict:
        return {
            "config": asdict(self.config),
            "rules_applied": list(self.rules_applied),
            "rules_skipped": dict(self.rules_skipped),
            "listeners_before": len(self.listeners),
            "listeners_after": len(self.kept),
            "excluded": self.excluded,
            "mid_anchor_trials_ignored": (
                self.anchor_trials.loc[self.anchor_trials["ignored"], "trial"].tolist()
                if len(self.anchor_trials)
                else []
            ),
            "outliers_flagged": int(self.outliers["outlier"].sum()),
        }


def flag_outliers(
    ratings: pd.DataFrame, *, keys: tuple[str, ...] = ("trial", "condition"), factor: float = 1.5
) -> pd.DataFrame:
    """Add ``q1, q3, lower_fence, upper_fence, outlier`` per ``keys`` group (Tukey hinges).

    A rating is an outlier when strictly outside [Q1 − factor·IQR, Q3 + factor·IQR]. Returns a copy
    of ``ratings`` with those columns; nothing is removed.
    """
    grouper = ratings.groupby(list(keys), observed=True, sort=True)
    codes = grouper.ngroup().to_numpy()
    quartiles = grouped_quartiles(ratings, keys).reindex(grouper.size().index)
    out = ratings.copy()
    out["q1"] = quartiles["q1"].to_numpy()[codes]
    out["q3"] = quartiles["q3"].to_numpy()[codes]
    iqr = out["q3"] - out["q1"]
    out["lower_fence"] = out["q1"] - factor * iqr
    out["upper_fence"] = out["q3"] + factor * iqr
    out["outlier"] = (out["score"] < out["lower_fence"]) | (out["score"] > out["upper_fence"])
    return out


def _per_trial_score(ratings: pd.DataFrame, role: str) -> pd.DataFrame:
    rows = ratings[(ratings["role"] == role) & ratings["score"].notna()]
    # A duplicated rating counts against the listener if either copy fails: keep the worst.
    agg = "min" if role == "hidden_reference" else "max"
    return rows.groupby(["participant", "trial"], as_index=False, observed=True)["score"].agg(agg)


def _categorical(ratings: pd.DataFrame, columns) -> pd.DataFrame:
    # Grouping a million rows by categorical codes is several times faster than by strings.
    return ratings.astype(
        {c: "category" for c in columns if c in ratings and ratings[c].dtype == object}
    )


def screen(ratings: pd.DataFrame, config: ScreeningConfig | None = None) -> ScreeningResult:
    """Apply the BS.1534-3 post-screening rules to tidy ratings with a ``role`` column.

    Rules whose role is absent (no hidden reference / no mid anchor rated) are skipped and the
    result says why.
    """
    config = config or ScreeningConfig()
    original = ratings
    ratings = _categorical(ratings, ("participant", "trial", "condition", "role"))
    participants = pd.unique(original["participant"])
    listeners = pd.DataFrame({"participant": participants})
    trials_rated = ratings.groupby("participant", observed=True)["trial"].nunique()
    listeners["trials_rated"] = listeners["participant"].map(trials_rated).astype(int)
    applied: list[str] = []
    skipped: dict[str, str] = {}
    reasons = pd.Series([""] * len(listeners), index=listeners.index, dtype=object)
    excluded = pd.Series(False, index=listeners.index)

    hidden = _per_trial_score(ratings, "hidden_reference")
    if not config.hidden_reference_rule:
        skipped["hidden_reference"] = "disabled"
    elif hidden.empty:
        skipped["hidden_reference"] = "no hidden-reference ratings"
    else:
        applied.append("hidden_reference")
    hidden["fail"] = hidden["score"] < config.hidden_reference_below
    per = hidden.groupby("participant", observed=True)["fail"].agg(["size", "sum"])
    listeners["hidden_reference_trials"] = (
        listeners["participant"].map(per["size"]).fillna(0).astype(int)
    )
    listeners["hidden_reference_failures"] = (
        listeners["participant"].map(per["sum"]).fillna(0).astype(int)
    )
    listeners["hidden_reference_fraction"] = _fraction(
        listeners["hidden_reference_failures"], listeners["hidden_reference_trials"]
    )
    if "hidden_reference" in applied:
        fails = bs1534.exceeds(
            listeners["hidden_reference_fraction"], config.hidden_reference_max_fraction
        )
        excluded |= fails
        reasons[fails] = (
            "hidden reference below "
            + f"{config.hidden_reference_below:g} in "
            + listeners.loc[fails, "hidden_reference_failures"].astype(str)
            + " of "
            + listeners.loc[fails, "hidden_reference_trials"].astype(str)
            + " trials"
        )

    anchor = _per_trial_score(ratings, "anchor_mid")
    anchor["above"] = anchor["score"] > config.mid_anchor_above
    anchor_trials = anchor.groupby("trial", as_index=False, observed=True).agg(
        n_listeners=("above", "size"), n_above=("above", "sum")
    )
    anchor_trials["fraction_above"] = anchor_trials["n_above"] / anchor_trials["n_listeners"]
    anchor_trials["ignored"] = bs1534.exceeds(
        anchor_trials["fraction_above"], config.mid_anchor_item_guard
    )
    if not config.mid_anchor_rule:
        skipped["mid_anchor"] = "disabled"
    elif anchor.empty:
        skipped["mid_anchor"] = "no mid-anchor ratings"
    else:
        applied.append("mid_anchor")
    ignored_trials = set(anchor_trials.loc[anchor_trials["ignored"], "trial"])
    counted = anchor[~anchor["trial"].isin(ignored_trials)]
    failures = counted.groupby("participant", observed=True)["above"].sum()
    if config.mid_anchor_denominator == "remaining":
        denominators = counted.groupby("participant", observed=True).size()
    else:
        denominators = anchor.groupby("participant", observed=True).size()
    listeners["mid_anchor_trials"] = (
        listeners["participant"].map(denominators).fillna(0).astype(int)
    )
    listeners["mid_anchor_failures"] = listeners["participant"].map(failures).fillna(0).astype(int)
    listeners["mid_anchor_fraction"] = _fraction(
        listeners["mid_anchor_failures"], listeners["mid_anchor_trials"]
    )
    if "mid_anchor" in applied:
        fails = bs1534.exceeds(listeners["mid_anchor_fraction"], config.mid_anchor_max_fraction)
        text = (
            "mid anchor above "
            + f"{config.mid_anchor_above:g} in "
            + listeners.loc[fails, "mid_anchor_failures"].astype(str)
            + " of "
            + listeners.loc[fails, "mid_anchor_trials"].astype(str)
            + " trials"
        )
        reasons[fails] = np.where(reasons[fails] != "", reasons[fails] + "; " + text, text)
        excluded |= fails

    listeners["excluded"] = excluded.astype(bool)
    listeners["reason"] = reasons
    outliers = flag_outliers(original, factor=config.outlier_iqr_factor)
    log.info(
        "screening: %d of %d listeners excluded, %d outlier grades flagged",
        int(excluded.sum()),
        len(listeners),
        int(outliers["outlier"].sum()),
    )
    return ScreeningResult(
        config=config,
        listeners=listeners,
        anchor_trials=anchor_trials,
        outliers=outliers,
        rules_applied=tuple(applied),
        rules_skipped=skipped,
    )


def _fraction(numerator: pd.Series, denominator: pd.Series) -> pd.Series:
    return (numerator / denominator.where(denominator > 0)).astype(float)
