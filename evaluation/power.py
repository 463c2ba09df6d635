"""How many listeners does a planned comparison need? Power by simulation.

The planned comparisons test listener-mean differences with a paired t-test, so the quantity that
matters is the standard deviation of one listener's mean difference between the two conditions.
It is either assumed (``sd_diff``) or estimated from a pilot panel (the largest SD over the pilot's
planned or all system pairs: the conservative choice). For each panel size N, ``n_simulations``
panels of N listener differences ~ Normal(difference, sd_diff) are tested at ``alpha``; the power
is the share of rejections, and the answer is the smallest N whose power reaches the target.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.stats

from .errors import ConfigError, DesignError


@dataclass(frozen=True)
class PowerResult:
    """``curve``: one row per panel size (``n_listeners, power``). ``n_required`` is None when
    ``max_listeners`` is not enough."""

    difference: float
    sd_diff: float
    alpha: float
    target_power: float
    n_required: int | None
    curve: pd.DataFrame


def power_curve(
    difference: float,
    sd_diff: float,
    *,
    alpha: float = 0.05,
    target_power: float = 0.8,
    max_listeners: int = 200,
    n_simulations: int = 4000,
    seed: int = 0,
) -> PowerResult:
    """Simulated power of a two-sided paired t-test for N = 3 … max_listeners listeners."""
    if difference <= 0:
        raise ConfigError(f"difference: expected a positive number of points, found {difference}")
    if sd_diff <= 0:
        raise ConfigError(
            f"SD of listener differences: expected a positive number, found {sd_diff}"
        )
    if not 0 < alpha < 1 or not 0 < target_power < 1:
        raise ConfigError(
            f"alpha and power: expected levels in (0, 1), found {alpha} and {target_power}"
        )
    if max_listeners < 3:
        raise ConfigError(f"max listeners: expected at least 3, found {max_listeners}")
    rng = np.random.default_rng(seed)
    rows = []
    n_required = None
    # Coarse-to-fine would be faster, but the curve itself is part of the answer.
    for n in range(3, max_listeners + 1):
        samples = rng.normal(difference, sd_diff, size=(n_simulations, n))
        t = samples.mean(axis=1) / (samples.std(axis=1, ddof=1) / np.sqrt(n))
        critical = scipy.stats.t.ppf(1 - alpha / 2, n - 1)
        power = float(np.mean(np.abs(t) > critical))
        rows.append((n, power))
        if power >= target_power and n_required is None:
            n_required = n
            # A few sizes past the answer show the curve flattening; more is wasted time.
            max_listeners = min(max_listeners, n + 5)
        if n >= max_listeners:
            break
    return PowerResult(
        difference,
        sd_diff,
        alpha,
        target_power,
        n_required,
        pd.DataFrame(rows, columns=["n_listeners", "power"]),
    )


def pilot_sd(ratings: pd.DataFrame, pairs: pd.DataFrame | None = None) -> pd.DataFrame:
    """SD of listener-mean differences per system pair of a pilot panel (``group, a, b, n, sd_diff``).

    ``pairs`` defaults to every pair of systems within each group.
    """
    from .comparisons import all_pairs

    if "group" not in ratings:
        ratings = ratings.assign(group="all")
    pairs = all_pairs(ratings) if pairs is None or pairs.empty else pairs
    rows = []
    for pair in pairs.itertuples(index=False):
        part = ratings[
            (ratings["group"] == pair.group) & ratings["condition"].isin([pair.a, pair.b])
        ]
        means = part.groupby(["participant", "condition"])["score"].mean().unstack()
        if pair.a not in means or pair.b not in means:
            continue
        d = (means[pair.a] - means[pair.b]).dropna()
        if len(d) >= 3:
            rows.append((pair.group, pair.a, pair.b, len(d), float(d.std(ddof=1))))
    if not rows:
        raise DesignError(
            "pilot: no pair of systems rated by at least 3 listeners; cannot estimate the SD"
        )
    return pd.DataFrame(rows, columns=["group", "a", "b", "n", "sd_diff"])
