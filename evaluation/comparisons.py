"""Planned paired comparisons between two conditions — the ones this platform exists for.

Per group (student size, bit-width, width): distilled vs non-distilled, and each compressed model vs
its full-precision, full-width counterpart. For each pair ``a`` vs ``b``:

- listener means: each listener's mean score of ``a`` and of ``b`` over the trials in which they
  rated both; differences ``d = a − b`` (one per listener);
- paired mean difference with its t-based CI, paired t-test, Wilcoxon signed-rank test on the
  listener means; effect sizes d_z = mean(d)/sd(d) and the matched-pairs rank-biserial correlation;
- the BS.1534-3 Attachment-3 style permutation test on the difference of medians over all paired
  ratings (listener × trial), exchanging the two labels within each pair at random (the design's
  exchangeable unit), 10 000 permutations, seeded; two-sided p = (1 + #{|T*| ≥ |T|}) / (1 + N);
- TOST equivalence within ±margin and non-inferiority of ``a`` against ``b`` (H0: mean(d) ≤ −margin);
- p-values adjusted over the family of comparisons by Holm, Hochberg or Bonferroni — the method is
  always explicit (statsmodels ``multipletests`` would default to Holm–Šidák).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.stats
from statsmodels.stats.multitest import multipletests

from .errors import ConfigError, DesignError

log = logging.getLogger(__name__)

CORRECTIONS = {"holm": "holm", "hochberg": "simes-hochberg", "bonferroni": "bonferroni"}
COMPARISON_COLUMNS = (
    "group",
    "a",
    "b",
    "kind",
    "n_listeners",
    "n_pairs",
    "mean_a",
    "mean_b",
    "mean_diff",
    "ci_low",
    "ci_high",
    "t",
    "df",
    "p_t",
    "wilcoxon_w",
    "p_wilcoxon",
    "median_diff",
    "p_permutation",
    "n_permutations",
    "d_z",
    "rank_biserial",
    "margin",
    "p_tost",
    "p_noninferiority",
    "p_t_adj",
    "p_wilcoxon_adj",
    "p_permutation_adj",
    "correction",
)


def permutation_test_medians(
    a, b, *, n_permutations: int = 10_000, seed: int = 0, chunk: int = 500
) -> tuple[float, float]:
    """Two-sided paired permutation test of median(a) − median(b); returns (statistic, p).

    ``a`` and ``b`` are paired ratings, shape (pairs,). Each permutation swaps the two ratings of
    every pair with probability 1/2. p = (1 + #{|T*| ≥ |T|}) / (1 + n_permutations).
    """
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise DesignError(
            f"permutation test: expected paired 1-D arrays, found {a.shape} and {b.shape}"
        )
    observed = float(np.median(a) - np.median(b))
    rng = np.random.default_rng(seed)
    n = a.size
    values, codes = np.unique(np.concatenate([a, b]), return_inverse=True)
    # MUSHRA grades are mostly integers: with few distinct values, medians from per-permutation
    # value counts (one bincount; the other condition's counts are the total minus these) are
    # several times faster than sorting, and give identical results.
    use_counts = values.size <= n
    code_a, code_b = codes[:n], codes[n:]
    total = np.bincount(codes, minlength=values.size)
    extreme = 0
    done = 0
    # Float rounding must not turn a tie with the observed value into "less extreme".
    threshold = abs(observed) - 1e-9
    while done < n_permutations:
        size = min(chunk, n_permutations - done)
        swap = rng.random((size, n)) < 0.5
        if use_counts:
            chosen = np.where(swap, code_b, code_a) + (np.arange(size) * values.size)[:, None]
            counts_a = np.bincount(chosen.ravel(), minlength=size * values.size).reshape(size, -1)
            stats = _median_from_counts(counts_a, values, n) - _median_from_counts(
                total - counts_a, values, n
            )
        else:
            stats = np.median(np.where(swap, b, a), axis=1) - np.median(
                np.where(swap, a, b), axis=1
            )
        extreme += int(np.count_nonzero(np.abs(stats) >= threshold))
        done += size
    return observed, (1 + extreme) / (1 + n_permutations)


def _median_from_counts(counts: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Row medians of samples given as (rows, distinct values) counts, each row holding n samples."""
    cumulative = np.cumsum(counts, axis=1)
    low = (cumulative >= (n + 1) // 2).argmax(axis=1)
    high = (cumulative >= n // 2 + 1).argmax(axis=1)
    return (values[low] + values[high]) / 2


def rank_biserial(differences) -> float:
    """Matched-pairs rank-biserial correlation (T+ − T−)/(T+ + T−) of non-zero differences."""
    d = np.asarray(differences, dtype=float)
    d = d[d != 0]
    if d.size == 0:
        return 0.0
    ranks = scipy.stats.rankdata(np.abs(d))
    positive, negative = ranks[d > 0].sum(), ranks[d < 0].sum()
    return float((positive - negative) / (positive + negative))


def _paired_cells(ratings: pd.DataFrame, a: str, b: str, subject: str, unit: str) -> pd.DataFrame:
    rows = ratings[ratings["condition"].isin([a, b]) & ratings["score"].notna()]
    cells = rows.pivot_table(
        index=[subject, unit], columns="condition", values="score", aggfunc="mean", observed=True
    )
    if a not in cells or b not in cells:
        return pd.DataFrame(columns=[a, b])
    return cells[[a, b]].dropna()


def compare_pair(
    ratings: pd.DataFrame,
    a: str,
    b: str,
    *,
    group: str = "all",
    kind: str = "",
    margin: float = 5.0,
    confidence: float = 0.95,
    n_permutations: int = 10_000,
    seed: int = 0,
    subject: str = "participant",
    unit: str = "trial",
) -> dict:
    """One planned comparison ``a`` vs ``b`` (see the module docstring); returns a row as a dict."""
    cells = _paired_cells(ratings, a, b, subject, unit)
    means = cells.groupby(level=subject, observed=True).mean()
    n = len(means)
    if n < 3:
        raise DesignError(
            f"comparison {a!r} vs {b!r} in group {group!r}: expected at least 3 listeners who rated "
            f"both, found {n}"
        )
    d = (means[a] - means[b]).to_numpy()
    mean_diff = float(d.mean())
    sd = float(d.std(ddof=1))
    se = sd / np.sqrt(n)
    df = n - 1
    half = scipy.stats.t.ppf(0.5 + confidence / 2, df) * se
    if sd > 0:
        t_stat = mean_diff / se
        p_t = float(2 * scipy.stats.t.sf(abs(t_stat), df))
        p_lower = float(scipy.stats.t.sf((mean_diff + margin) / se, df))  # H0: d ≤ −margin
        p_upper = float(scipy.stats.t.cdf((mean_diff - margin) / se, df))  # H0: d ≥ +margin
        d_z = mean_diff / sd
    else:
        t_stat, p_t = (0.0, 1.0) if mean_diff == 0 else (np.copysign(np.inf, mean_diff), 0.0)
        p_lower = 0.0 if mean_diff > -margin else 1.0
        p_upper = 0.0 if mean_diff < margin else 1.0
        d_z = 0.0 if mean_diff == 0 else float(np.copysign(np.inf, mean_diff))
    if np.any(d != 0):
        wilcoxon = scipy.stats.wilcoxon(means[a], means[b])
        w_stat, p_w = float(wilcoxon.statistic), float(wilcoxon.pvalue)
    else:
        w_stat, p_w = 0.0, 1.0
    median_diff, p_perm = permutation_test_medians(
        cells[a].to_numpy(), cells[b].to_numpy(), n_permutations=n_permutations, seed=seed
    )
    return {
        "group": group,
        "a": a,
        "b": b,
        "kind": kind,
        "n_listeners": n,
        "n_pairs": len(cells),
        "mean_a": float(means[a].mean()),
        "mean_b": float(means[b].mean()),
        "mean_diff": mean_diff,
        "ci_low": mean_diff - half,
        "ci_high": mean_diff + half,
        "t": float(t_stat),
        "df": df,
        "p_t": p_t,
        "wilcoxon_w": w_stat,
        "p_wilcoxon": p_w,
        "median_diff": median_diff,
        "p_permutation": p_perm,
        "n_permutations": n_permutations,
        "d_z": float(d_z),
        "rank_biserial": rank_biserial(d),
        "margin": margin,
        "p_tost": max(p_lower, p_upper),
        "p_noninferiority": p_lower,
    }


def adjust(p_values: Sequence[float], method: str) -> np.ndarray:
    """Family-wise adjusted p-values: ``holm``, ``hochberg`` or ``bonferroni`` (explicit)."""
    if method not in CORRECTIONS:
        raise ConfigError(f"correction: expected one of {list(CORRECTIONS)}, found {method!r}")
    p = np.asarray(p_values, dtype=float)
    if p.size == 0:
        return p
    return multipletests(p, method=CORRECTIONS[method])[1]


def compare(
    ratings: pd.DataFrame,
    pairs: pd.DataFrame | Sequence[tuple[str, str, str]],
    *,
    correction: str = "holm",
    margin: float = 5.0,
    confidence: float = 0.95,
    n_permutations: int = 10_000,
    seed: int = 0,
) -> pd.DataFrame:
    """Run the comparisons ``pairs`` (rows ``group, a, b[, kind]``) and adjust their p-values.

    ``ratings`` needs a ``group`` column when groups other than ``all`` are named. Returns one row
    per comparison with :data:`COMPARISON_COLUMNS`.
    """
    if correction not in CORRECTIONS:
        raise ConfigError(f"correction: expected one of {list(CORRECTIONS)}, found {correction!r}")
    if margin < 0:
        raise ConfigError(
            f"equivalence margin: expected a non-negative number of points, found {margin}"
        )
    table = (
        pairs
        if isinstance(pairs, pd.DataFrame)
        else pd.DataFrame(pairs, columns=["group", "a", "b"])
    )
    rows = []
    for i, pair in enumerate(table.itertuples(index=False)):
        subset = (
            ratings
            if pair.group == "all" and "group" not in ratings
            else ratings[ratings["group"] == pair.group]
        )
        rows.append(
            compare_pair(
                subset,
                pair.a,
                pair.b,
                group=pair.group,
                kind=getattr(pair, "kind", ""),
                margin=margin,
                confidence=confidence,
                n_permutations=n_permutations,
                seed=seed + i,
            )
        )
    out = pd.DataFrame(
        rows,
        columns=[c for c in COMPARISON_COLUMNS if not c.endswith("_adj") and c != "correction"],
    )
    for column in ("p_t", "p_wilcoxon", "p_permutation"):
        out[f"{column}_adj"] = adjust(out[column], correction)
    out["correction"] = correction
    return out[list(COMPARISON_COLUMNS)]


def _is_full(row) -> bool:
    bits, width = row.get("bits"), row.get("width")
    full_bits = bits is None or pd.isna(bits) or float(bits) >= 32
    full_width = width is None or pd.isna(width) or float(width) >= 1.0
    return full_bits and full_width


def _same_model(a, b) -> bool:
    """Same architecture and, where both are stated, the same layer sizes."""
    if a.get("arch") != b.get("arch"):
        return False
    la, lb = a.get("layers"), b.get("layers")
    if la is None or lb is None or (isinstance(la, float) and pd.isna(la)) or (isinstance(lb, float) and pd.isna(lb)):
        return True
    return str(la) == str(lb)


def planned_pairs(conditions: pd.DataFrame) -> pd.DataFrame:
    """The planned comparisons of a stimulus set, from the manifest's condition table.

    Per group: ``distilled`` vs ``non_distilled`` (recipe ``kd`` vs ``baseline``, or those condition
    ids), and each compressed system (bits < 32 or width < 1) vs its full-precision full-width
    counterpart of the same architecture — the distilled one when its recipe involves KD, else the
    baseline. Returns rows ``group, a, b, kind``.
    """
    systems = conditions[conditions["role"] == "system"].drop_duplicates(["group", "condition"])
    rows = []
    for group, members in systems.groupby("group", sort=True):
        recs = members.to_dict("records")
        full = [r for r in recs if _is_full(r)]
        ids = {r["condition"] for r in recs}
        # A group may also hold a teacher (a baseline of another size): pair each distilled
        # student with the non-distilled student of the same architecture and layers.
        paired = False
        for kd in (r for r in full if r.get("recipe") == "kd"):
            base = [r for r in full if r.get("recipe") == "baseline" and _same_model(r, kd)]
            if base:
                rows.append((group, kd["condition"], base[0]["condition"], "distilled_vs_non_distilled"))
                paired = True
        if not paired and {"distilled", "non_distilled"} <= ids:
            rows.append((group, "distilled", "non_distilled", "distilled_vs_non_distilled"))
        for r in recs:
            if _is_full(r):
                continue
            candidates = ([f for f in full if _same_model(f, r)]
                          or [f for f in full if f.get("arch") == r.get("arch")] or full)
            if not candidates:
                log.warning("group %s: no full-precision counterpart for %s", group, r["condition"])
                continue
            wants_kd = "kd" in str(r.get("recipe") or "")
            preferred = [f for f in candidates if (f.get("recipe") == "kd") == wants_kd]
            counterpart = (preferred or candidates)[0]
            rows.append((group, r["condition"], counterpart["condition"], "compressed_vs_full"))
    return pd.DataFrame(rows, columns=["group", "a", "b", "kind"])


def all_pairs(ratings: pd.DataFrame) -> pd.DataFrame:
    """Every pair of systems within each group (only on request: a large family)."""
    systems = ratings[ratings["role"] == "system"]
    groups = systems["group"] if "group" in systems else pd.Series("all", index=systems.index)
    rows = []
    for group, members in systems.groupby(groups, sort=True):
        for a, b in itertools.combinations(sorted(pd.unique(members["condition"])), 2):
            rows.append((group, a, b, "all_pairs"))
    return pd.DataFrame(rows, columns=["group", "a", "b", "kind"])
