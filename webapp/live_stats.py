"""Figures the admin dashboard shows while a test is running (the full analysis is ``evaluation``'s).

Works on the tidy rows of :func:`webapp.exports.rating_rows`.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from common.bs1534 import (
    HIDDEN_REFERENCE_BELOW,
    HIDDEN_REFERENCE_MAX_FRACTION,
    exceeds,
    tukey_hinges,
)
from common.stimulus_set import HIDDEN_REFERENCE, ROLE_ORDER


@dataclass(frozen=True)
class ConditionSummary:
    """Mean ± t-based 95 % CI over listeners (each listener's mean over items), and a boxplot of
    all ratings (Tukey hinges, whiskers to the furthest rating within 1.5 IQR)."""

    condition: str
    role: str
    n_listeners: int
    n_ratings: int
    mean: float
    ci_low: float
    ci_high: float
    q1: float
    median: float
    q3: float
    whisker_low: float
    whisker_high: float


def condition_summaries(rows: list[dict]) -> list[ConditionSummary]:
    from scipy import stats  # imported here: it slows every worker's start by about a second

    per_listener: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    roles: dict[str, str] = {}
    for r in rows:
        if r["score"] is None:
            continue
        per_listener[r["condition"]][r["participant"]].append(float(r["score"]))
        roles[r["condition"]] = r["role"]
    out = []
    for condition in sorted(per_listener, key=lambda c: (ROLE_ORDER.get(roles[c], len(ROLE_ORDER)), c)):
        listeners = per_listener[condition]
        means = np.array([np.mean(v) for v in listeners.values()])
        all_scores = np.array([s for v in listeners.values() for s in v])
        n = len(means)
        mean = float(means.mean())
        if n > 1:
            half = float(stats.t.ppf(0.975, n - 1) * means.std(ddof=1) / math.sqrt(n))
        else:
            half = float("nan")
        q1, med, q3 = tukey_hinges(all_scores)
        iqr = q3 - q1
        inside = all_scores[(all_scores >= q1 - 1.5 * iqr) & (all_scores <= q3 + 1.5 * iqr)]
        out.append(
            ConditionSummary(
                condition, roles[condition], n, len(all_scores), mean, mean - half, mean + half,
                q1, med, q3, float(inside.min()), float(inside.max()),
            )
        )
    return out


def hidden_reference_failures(rows: list[dict]) -> list[dict]:
    """Listeners who rated the hidden reference below 90 for more than 15 % of their rated items
    (BS.1534-3 §4.1.2 as :mod:`common.bs1534` states it; exactly 15 % stays)."""
    below: dict[str, int] = defaultdict(int)
    items: dict[str, int] = defaultdict(int)
    for r in rows:
        if r["role"] != HIDDEN_REFERENCE or r["score"] is None:
            continue
        items[r["participant"]] += 1
        below[r["participant"]] += float(r["score"]) < HIDDEN_REFERENCE_BELOW
    out = []
    for participant, n in items.items():
        fraction = below[participant] / n
        if exceeds(fraction, HIDDEN_REFERENCE_MAX_FRACTION):
            out.append({"participant": participant, "below_90": below[participant], "n_items": n, "fraction": fraction})
    return sorted(out, key=lambda d: d["participant"])
