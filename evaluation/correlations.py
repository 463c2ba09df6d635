"""How perceptual scores relate to objective metrics, and to each model's cost.

Correlations are over stimuli (systems only): each stimulus's mean score over listeners against
its objective metric; Pearson, Spearman and Kendall (τ-b) with percentile bootstrap CIs that
resample stimuli (seeded), overall and within each item.

The cost view puts each model's mean score (with its CI over listeners) against its size in bytes
and its real-time factor; the perceptual Pareto front holds the models no other model beats on
both (at most the cost, at least the score, better in one).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.stats

from .descriptives import describe
from .errors import DesignError

METHODS = ("pearson", "spearman", "kendall")
CORRELATION_COLUMNS = (
    "metric",
    "scope",
    "item",
    "method",
    "n",
    "r",
    "p",
    "ci_low",
    "ci_high",
    "n_boot",
)


def stimulus_means(ratings: pd.DataFrame) -> pd.DataFrame:
    """Mean score per stimulus (trial × condition) of the systems, with ``n_listeners``."""
    systems = ratings[(ratings["role"] == "system") & ratings["score"].notna()]
    keys = [c for c in ("trial", "item", "group", "condition") if c in systems]
    return systems.groupby(keys, observed=True, as_index=False).agg(
        mean_score=("score", "mean"), n_listeners=("participant", "nunique")
    )


def _pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r of each row pair of (B, n) arrays."""
    xc = x - x.mean(axis=1, keepdims=True)
    yc = y - y.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (xc * yc).sum(axis=1) / np.sqrt((xc**2).sum(axis=1) * (yc**2).sum(axis=1))


def _resample_ranks(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Average ranks (ties share their mean rank) within each resample ``values[index[b]]``.

    Equal to ``scipy.stats.rankdata(values[index], axis=1)`` but from one bincount: a point's
    rank is the number of resampled points below it plus half of those equal to it, plus ½.
    """
    unique, codes = np.unique(values, return_inverse=True)
    n_boot, n = index.shape
    resampled = codes[index]
    counts = np.bincount(
        (resampled + (np.arange(n_boot) * unique.size)[:, None]).ravel(),
        minlength=n_boot * unique.size,
    )
    counts = counts.reshape(n_boot, unique.size)
    below = np.cumsum(counts, axis=1) - counts
    rank_of_code = below + (counts + 1) / 2
    return np.take_along_axis(rank_of_code, resampled, axis=1)


def _kendall_resamples(x: np.ndarray, y: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Kendall τ-b of each resample ``(x[index[b]], y[index[b]])`` without forming its pairs.

    A resample is the original points with multiplicities c; a pair's signs depend only on the two
    original points (and are 0 for two copies of one point), so each sum over resampled pairs is
    ½·cᵀMc for the original n × n sign matrix M — one matrix product for all resamples.
    """
    n_boot, n = index.shape
    counts = np.bincount((index + (np.arange(n_boot) * n)[:, None]).ravel(), minlength=n_boot * n)
    counts = counts.reshape(n_boot, n).astype(float)
    sx = np.sign(x[:, None] - x[None, :])
    sy = np.sign(y[:, None] - y[None, :])

    def quadratic(matrix: np.ndarray) -> np.ndarray:
        return ((counts @ matrix) * counts).sum(axis=1)

    with np.errstate(invalid="ignore", divide="ignore"):
        return quadratic(sx * sy) / np.sqrt(quadratic(np.abs(sx)) * quadratic(np.abs(sy)))


def correlate(
    x,
    y,
    *,
    method: str = "pearson",
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    chunk: int = 1000,
) -> dict:
    """Correlation of paired 1-D ``x`` and ``y`` with its p-value (scipy) and a percentile bootstrap CI."""
    if method not in METHODS:
        raise DesignError(f"correlation method: expected one of {list(METHODS)}, found {method!r}")
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    n = x.size
    nan = float("nan")
    if n < 3 or np.all(x == x[0]) or np.all(y == y[0]):
        return {"n": n, "r": nan, "p": nan, "ci_low": nan, "ci_high": nan}
    test = {
        "pearson": scipy.stats.pearsonr,
        "spearman": scipy.stats.spearmanr,
        "kendall": scipy.stats.kendalltau,
    }[method]
    result = test(x, y)
    rng = np.random.default_rng(seed)
    boots = []
    for start in range(0, n_boot, chunk):
        index = rng.integers(0, n, size=(min(chunk, n_boot - start), n))
        if method == "pearson":
            boots.append(_pearson_rows(x[index], y[index]))
        elif method == "spearman":
            boots.append(_pearson_rows(_resample_ranks(x, index), _resample_ranks(y, index)))
        else:
            boots.append(_kendall_resamples(x, y, index))
    values = np.concatenate(boots)
    values = values[np.isfinite(values)]
    alpha = (1 - confidence) / 2
    low, high = np.quantile(values, [alpha, 1 - alpha]) if values.size else (nan, nan)
    return {
        "n": n,
        "r": float(result.statistic),
        "p": float(result.pvalue),
        "ci_low": float(low),
        "ci_high": float(high),
    }


def objective_correlations(
    means: pd.DataFrame,
    objective: pd.DataFrame,
    metric_names,
    *,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    within_item: bool = True,
) -> pd.DataFrame:
    """Correlations of per-stimulus mean scores with each objective metric, overall and per item.

    ``means`` from :func:`stimulus_means`; ``objective`` from :func:`evaluation.objective.objective_table`.
    """
    joined = means.merge(
        objective.drop(columns=[c for c in ("item", "group", "role") if c in objective]),
        on=["trial", "condition"],
        how="inner",
    )
    rows = []
    for metric in metric_names:
        scopes = [("overall", "", joined)]
        if within_item:
            scopes += [
                ("item", str(item), part) for item, part in joined.groupby("item", sort=True)
            ]
        for scope, item, part in scopes:
            for k, method in enumerate(METHODS):
                stats = correlate(
                    part[metric],
                    part["mean_score"],
                    method=method,
                    n_boot=n_boot,
                    confidence=confidence,
                    seed=seed + k,
                )
                rows.append(
                    {
                        "metric": metric,
                        "scope": scope,
                        "item": item,
                        "method": method,
                        **stats,
                        "n_boot": n_boot,
                    }
                )
    return pd.DataFrame(rows, columns=list(CORRELATION_COLUMNS))


def pareto_front(cost, score) -> np.ndarray:
    """Boolean mask of points no other point dominates (cost ≤, score ≥, one strictly). NaN → False."""
    cost = np.asarray(cost, dtype=float)
    score = np.asarray(score, dtype=float)
    valid = np.isfinite(cost) & np.isfinite(score)
    front = np.zeros(cost.size, dtype=bool)
    for i in np.flatnonzero(valid):
        others = (
            valid
            & (cost <= cost[i])
            & (score >= score[i])
            & ((cost < cost[i]) | (score > score[i]))
        )
        front[i] = not others.any()
    return front


def cost_view(
    ratings: pd.DataFrame, conditions: pd.DataFrame, *, confidence: float = 0.95
) -> pd.DataFrame:
    """Per model (group × condition, systems only): mean score with CI over listeners, what
    rendered it (``origin``: a study run, a ``.nam`` file or an export) and its model facts
    (``run_id, arch, model, recipe, bits, width, params, bytes, macs_per_sample, rtf_offline``) and
    ``pareto_bytes`` / ``pareto_rtf`` flags."""
    systems = ratings[ratings["role"] == "system"]
    if systems.empty:
        raise DesignError("cost view: no ratings of systems")
    by = ["group", "condition"] if "group" in systems else ["condition"]
    scores = describe(systems, by=by, confidence=confidence)[
        [*by, "n_listeners", "mean", "ci_low", "ci_high"]
    ]
    facts = [
        c
        for c in (
            "origin",
            "run_id",
            "arch",
            "model",
            "recipe",
            "bits",
            "width",
            "params",
            "bytes",
            "macs_per_sample",
            "rtf_offline",
        )
        if c in conditions
    ]
    table = conditions[conditions["role"] == "system"].drop_duplicates(by)[[*by, *facts]]
    out = scores.merge(table, on=by, how="left")
    for column in ("bytes", "rtf_offline"):
        values = (
            pd.to_numeric(out[column], errors="coerce")
            if column in out
            else pd.Series(np.nan, index=out.index)
        )
        out[column] = values
        out[f"pareto_{column.split('_')[0]}"] = pareto_front(values, out["mean"])
    return out
