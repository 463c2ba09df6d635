"""Descriptive statistics of MUSHRA scores per condition (and per condition × item).

BS.1534-3 §9 asks for the median and inter-quartile range (boxplots) and the mean with its 95 %
confidence interval, saying whether the interval is over listeners or over all ratings and whether it
is t- or normal-based. Intervals over all ratings treat a listener's grades as independent and are
about half as wide for a typical panel, so the default is over listeners: each listener's ratings in
a cell are averaged first and the interval is taken over those listener means.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
import scipy.stats

from .errors import ConfigError
from .hinges import grouped_quartiles

CiOver = Literal["listeners", "ratings"]
CiMethod = Literal["t", "normal", "bca"]

DESCRIPTIVE_COLUMNS = (
    "n_listeners",
    "n_ratings",
    "mean",
    "sd",
    "median",
    "q1",
    "q3",
    "iqr",
    "ci_low",
    "ci_high",
    "ci_over",
    "ci_method",
    "confidence",
)


def mean_ci(
    values, *, method: CiMethod = "t", confidence: float = 0.95, n_boot: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Confidence interval of the mean of 1-D ``values``.

    ``t``: mean ± t(1 − α/2, n − 1)·s/√n; ``normal``: with z instead of t; ``bca``: the
    bias-corrected and accelerated bootstrap (scipy.stats.bootstrap, ``n_boot`` resamples, seeded).
    NaN bounds when n < 2 (or all values equal for BCa).
    """
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    n = x.size
    if n < 2:
        return float("nan"), float("nan")
    mean = float(x.mean())
    se = float(x.std(ddof=1) / np.sqrt(n))
    if method == "t":
        half = scipy.stats.t.ppf(0.5 + confidence / 2, n - 1) * se
        return mean - half, mean + half
    if method == "normal":
        half = scipy.stats.norm.ppf(0.5 + confidence / 2) * se
        return mean - half, mean + half
    if method == "bca":
        if np.all(x == x[0]):
            return mean, mean
        result = scipy.stats.bootstrap(
            (x,),
            np.mean,
            confidence_level=confidence,
            n_resamples=n_boot,
            method="BCa",
            rng=np.random.default_rng(seed),
        )
        return float(result.confidence_interval.low), float(result.confidence_interval.high)
    raise ConfigError(f"CI method: expected one of ['t', 'normal', 'bca'], found {method!r}")


def describe(
    ratings: pd.DataFrame,
    by: Sequence[str] = ("condition",),
    *,
    ci_over: CiOver = "listeners",
    ci_method: CiMethod = "t",
    confidence: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
    subject: str = "participant",
    score: str = "score",
) -> pd.DataFrame:
    """One row per ``by`` cell: n, mean, SD, median, Tukey-hinge quartiles, IQR and the mean's CI.

    ``mean`` and ``sd`` are over the units the interval uses: listener means (``ci_over =
    "listeners"``) or single ratings (``"ratings"``); for one rating per listener and cell the two
    agree. Median and quartiles are always over all ratings (what the boxplots show). The
    columns ``ci_over, ci_method, confidence`` label every interval.
    """
    by = list(by)
    if ci_over not in ("listeners", "ratings"):
        raise ConfigError(f"CI over: expected 'listeners' or 'ratings', found {ci_over!r}")
    if ci_method not in ("t", "normal", "bca"):
        raise ConfigError(f"CI method: expected one of ['t', 'normal', 'bca'], found {ci_method!r}")
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence: expected a level in (0, 1), found {confidence}")
    missing = [c for c in [*by, subject, score] if c not in ratings.columns]
    if missing:
        raise ConfigError(
            f"describe: columns {missing} not in the ratings ({list(ratings.columns)})"
        )
    data = ratings[ratings[score].notna()]
    # Grouping a million rows by categorical codes is several times faster than by strings.
    data = data.astype({c: "category" for c in [*by, subject] if data[c].dtype == object})

    quart = grouped_quartiles(data, by, score)[["median", "q1", "q3"]]
    if ci_over == "listeners":
        units = data.groupby([*by, subject], observed=True, sort=False)[score].mean().reset_index()
    else:
        units = data
    grouped = units.groupby(by, observed=True, sort=True)[score]
    stats = grouped.agg(["size", "mean", "std"])
    stats.columns = ["n_units", "mean", "sd"]
    n_listeners = data.groupby(by, observed=True, sort=True)[subject].nunique()
    n_ratings = data.groupby(by, observed=True, sort=True).size()
    out = stats.join(n_listeners.rename("n_listeners")).join(n_ratings.rename("n_ratings"))
    if ci_method == "bca":
        bounds = [
            mean_ci(group.to_numpy(), method="bca", confidence=confidence, n_boot=n_boot, seed=seed)
            for _, group in grouped
        ]
        out["ci_low"] = [b[0] for b in bounds]
        out["ci_high"] = [b[1] for b in bounds]
    else:
        n = out["n_units"].to_numpy(dtype=float)
        with np.errstate(invalid="ignore", divide="ignore"):
            se = out["sd"].to_numpy() / np.sqrt(n)
            critical = (
                scipy.stats.t.ppf(0.5 + confidence / 2, n - 1)
                if ci_method == "t"
                else np.full(n.shape, scipy.stats.norm.ppf(0.5 + confidence / 2))
            )
        half = np.where(n >= 2, critical * se, np.nan)
        out["ci_low"] = out["mean"] - half
        out["ci_high"] = out["mean"] + half
    out = out.join(quart)
    out["iqr"] = out["q3"] - out["q1"]
    out["ci_over"] = ci_over
    out["ci_method"] = ci_method
    out["confidence"] = confidence
    out = out.reset_index()
    for column in by:
        if isinstance(out[column].dtype, pd.CategoricalDtype):
            out[column] = out[column].astype(object)
    return out[[*by, *DESCRIPTIVE_COLUMNS]]
