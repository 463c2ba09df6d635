"""Paired-by-seed uncertainty for the zoo's comparison tables.

Two runs of the same seed share the data split and the initialisation seed, so a study's
comparisons (distilled vs non-distilled, quantized vs its fp32 source) are paired: the per-seed
differences are the sample, and their mean gets a Student-t 95 % confidence interval. A verdict
reads the interval: ``better`` or ``worse`` when it excludes 0, ``within noise`` when it contains
0 (touching counts), and with one seed there is no interval at all.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

BETTER = "better"
WORSE = "worse"
WITHIN_NOISE = "within noise"
ONE_SEED = "1 seed: no uncertainty"
NO_PAIRS = "no paired seeds"
CONFIDENCE = 0.95


@dataclass(frozen=True)
class PairedSummary:
    """The mean of per-seed paired differences, its t-interval and what it says.

    ``ci_low``/``ci_high`` are NaN with fewer than two seeds; the unit is the differences' unit.
    """

    mean: float
    n_seeds: int
    ci_low: float
    ci_high: float
    verdict: str


def t_interval(differences: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The ``confidence`` Student-t interval of the mean of ``differences`` (NaN, NaN for n < 2).

    Written out rather than via ``scipy.stats.t.interval(scale=…)``, which returns NaN when every
    difference is the same (scale 0); here that is a zero-width interval at the mean.
    """
    values = np.asarray(differences, dtype=float)
    n = len(values)
    if n < 2:
        return float("nan"), float("nan")
    mean = float(values.mean())
    half_width = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * values.std(ddof=1) / math.sqrt(n))
    return mean - half_width, mean + half_width


def verdict(ci_low: float, ci_high: float, n_seeds: int, better_when: Literal["positive", "negative"]) -> str:
    """``better``/``worse`` when the interval excludes 0, else ``within noise``; ``better_when``
    says which sign of the difference is an improvement."""
    if n_seeds == 0:
        return NO_PAIRS
    if n_seeds == 1:
        return ONE_SEED
    if ci_low > 0:
        return BETTER if better_when == "positive" else WORSE
    if ci_high < 0:
        return WORSE if better_when == "positive" else BETTER
    return WITHIN_NOISE


def summarise(differences: Sequence[float], better_when: Literal["positive", "negative"],
              confidence: float = CONFIDENCE) -> PairedSummary:
    """Summary of the per-seed paired ``differences``; non-finite ones (a zero reference error)
    are left out and not counted as seeds."""
    values = np.asarray(differences, dtype=float)
    values = values[np.isfinite(values)]
    low, high = t_interval(values, confidence)
    mean = float(values.mean()) if len(values) else float("nan")
    return PairedSummary(mean=mean, n_seeds=len(values), ci_low=low, ci_high=high,
                         verdict=verdict(low, high, len(values), better_when))


def describe(mean: float, ci_low: float, ci_high: float, n_seeds: int, verdict_text: str, unit: str = "%") -> str:
    """One table cell: ``+12.3 % [+4.1, +20.5] (3 seeds) better``, or the one-seed wording."""
    if n_seeds == 0 or not math.isfinite(mean):
        return NO_PAIRS
    value = f"{mean:+.1f} {unit}" if unit else f"{mean:+.1f}"
    if n_seeds == 1:
        return f"{value} ({ONE_SEED})"
    return f"{value} [{ci_low:+.1f}, {ci_high:+.1f}] ({n_seeds} seeds) {verdict_text}"
