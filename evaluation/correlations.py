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


def _kendall_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall τ-b of each row pair: Σ sgn(Δx)·sgn(Δy) / √(Σ sgn(Δx)² · Σ sgn(Δy)²)."""
    sx = np.sign(x[:, :, None] - x[:, None, :])
    sy = np.sign(y[:, :, None] - y[:, None, :])
    with np.errstate(invalid="ignore", divide="ignore"):
        return (sx * sy).sum(axis=(1, 2)) / np.sqrt(
            (sx**2).sum(axis=(1, 2)) * (sy**2).sum(axis=(1, 2))
        )


def _statistic(method: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    if method == "pearson":
        return _pearson_rows(x, y)
    if method == "spearman":
        return _pearson_rows(scipy.stats.rankdata(x, axis=1), scipy.stats.rankdata(y, axis=1))
    return _kendall_rows(x, y)


def correlate(
    x,
    y,
    *,
    method: str = "pearson",
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    chunk: int = 250,
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
        boots.append(_statistic(method, x[index], y[index]))
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
    """Per model (group × condition, systems only): mean score with CI over listeners, the model
    facts (``run_id, recipe, bits, width, params, bytes, macs_per_sample, rtf_offline``) and
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
            "run_id",
            "arch",
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
