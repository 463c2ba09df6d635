"""Omnibus tests on the systems (BS.1534-3 Attachment 4): do the conditions differ at all?

- Complete designs (every listener rated every condition × item): two-way repeated-measures ANOVA
  condition × item with Greenhouse–Geisser and Huynh–Feldt ε and the multivariate (Hotelling T²)
  test, both always reported, and the one the Algina–Keselman (1997) rule picks
  (:func:`algina_keselman`); partial η²; residual skewness, excess kurtosis and the multimodality
  coefficient.
- Unbalanced or incomplete designs: a linear mixed model (listener random intercept; item fixed or
  crossed random) with likelihood-ratio tests, and a check for collapsed variance components.
- Non-parametric companion: Friedman's test on listener means with Kendall's W.

``statsmodels``' ``AnovaRM`` refuses unbalanced data and has no sphericity correction, hence the
explicit sums of squares here (they equal AnovaRM's on balanced data; see the tests).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.linalg
import scipy.stats

from .errors import DesignError

log = logging.getLogger(__name__)

#: Residual skewness thresholds of BS.1534-3 Attachment 4.
SKEW_WARNING = 0.5
SKEW_SEVERE = 1.0
#: b above this suggests more than one mode (the value for a uniform distribution).
MULTIMODALITY_THRESHOLD = 5 / 9


def _orthonormal_contrasts(k: int) -> np.ndarray:
    """(k − 1, k) rows orthonormal and orthogonal to the constant vector."""
    basis = scipy.linalg.null_space(np.ones((1, k)))  # (k, k − 1)
    return basis.T


def greenhouse_geisser(covariance: np.ndarray) -> float:
    """ε̂ of Greenhouse–Geisser from the (k, k) covariance of a within factor's levels."""
    k = covariance.shape[0]
    if k < 2:
        return 1.0
    contrasts = _orthonormal_contrasts(k)
    projected = contrasts @ covariance @ contrasts.T
    trace = np.trace(projected)
    denominator = (k - 1) * np.trace(projected @ projected)
    if denominator <= 0:
        return 1.0
    return float(trace**2 / denominator)


def huynh_feldt(epsilon_gg: float, n_subjects: int, k: int) -> float:
    """Huynh–Feldt ε̃ (one group, so equal to Lecoutre's correction), capped at 1."""
    if k < 2:
        return 1.0
    df = k - 1
    denominator = df * (n_subjects - 1 - df * epsilon_gg)
    if denominator <= 0:
        return 1.0
    return float(min(1.0, (n_subjects * df * epsilon_gg - 2) / denominator))


def hotelling_one_sample(data: np.ndarray) -> tuple[float, float, int, float, float, str]:
    """Hotelling's T² that the (n, p) ``data`` have mean zero: (T², F, df1, df2, p, reason).

    F = T² (n − p) / (p (n − 1)) on (p, n − p) df. With n ≤ p the sample covariance is singular
    and df2 would be zero or negative: the test does not exist, so T², F, df2 and p are NaN and
    ``reason`` says why (empty when the test was computed).
    """
    n, p = data.shape
    nan = float("nan")
    if n <= p:
        return (
            nan,
            nan,
            p,
            nan,
            nan,
            (
                f"not computable: the multivariate test needs more listeners than contrasts "
                f"(N = {n} ≤ K − 1 = {p})"
            ),
        )
    mean = data.mean(axis=0)
    covariance = np.cov(data, rowvar=False).reshape(p, p)
    try:
        t2 = float(n * mean @ np.linalg.solve(covariance, mean))
    except np.linalg.LinAlgError:
        return nan, nan, p, nan, nan, "not computable: the contrast covariance is singular"
    f = t2 * (n - p) / (p * (n - 1))
    return t2, f, p, float(n - p), float(scipy.stats.f.sf(f, p, n - p)), ""


#: Algina & Keselman (1997), their recommendations as bands: (largest K of the band, ε̂ at or below which
#: sphericity counts as clearly violated, listeners needed above K). Their simulations covered up
#: to 8 levels; for K ≥ 9 we keep the stricter band (ε̂ ≤ 0.85, N ≥ K + 30), since the
#: multivariate test only loses power as K grows relative to N.
ALGINA_KESELMAN_BANDS = ((4, 0.90, 10), (8, 0.85, 30), (None, 0.85, 30))


def algina_keselman(k: int, n: int, eps_gg: float) -> tuple[str, str]:
    """The test the Algina–Keselman rule picks for a K-level within factor and N listeners.

    Algina, J. & Keselman, H. J. (1997). Detecting repeated measures effects with univariate and
    multivariate statistics. *Psychological Methods*, 2(2), 208–218: the multivariate test is
    more powerful only when N is large relative to K *and* sphericity is clearly violated
    (K ≤ 4: ε ≤ 0.90 and N ≥ K + 10; 5 ≤ K ≤ 8: ε ≤ 0.85 and N ≥ K + 30); otherwise the
    ε-adjusted univariate test is. Like them we compare the Greenhouse–Geisser estimate ε̂ (not
    the Huynh–Feldt ε̃, which is biased upwards and capped at 1). For an interaction K is its
    df1 + 1. Returns (``"huynh_feldt"`` or ``"multivariate"``, a one-line reason).
    """
    eps_max, extra = next(
        (eps, more)
        for largest, eps, more in ALGINA_KESELMAN_BANDS
        if largest is None or k <= largest
    )
    eps_ok, n_ok = eps_gg <= eps_max, n >= k + extra
    eps_text = f"ε̂_GG = {eps_gg:.3f} {'≤' if eps_ok else '>'} {eps_max:.2f}"
    n_text = f"N = {n} {'≥' if n_ok else '<'} K + {extra} = {k + extra}"
    if eps_ok and n_ok:
        return "multivariate", f"Algina–Keselman, K = {k}: {eps_text} and {n_text}"
    failed = " and ".join(t for t, ok in ((eps_text, eps_ok), (n_text, n_ok)) if not ok)
    return "huynh_feldt", f"Algina–Keselman, K = {k}: {failed}"


def multimodality_coefficient(values) -> float:
    """b = (g² + 1) / (k + 3(n − 1)² / ((n − 2)(n − 3))), g and k the bias-corrected sample
    skewness and excess kurtosis (SAS's definition). NaN for n < 4."""
    x = np.asarray(values, dtype=float)
    n = x.size
    if n < 4 or np.all(x == x[0]):
        return float("nan")
    g = scipy.stats.skew(x, bias=False)
    k = scipy.stats.kurtosis(x, bias=False)
    return float((g**2 + 1) / (k + 3 * (n - 1) ** 2 / ((n - 2) * (n - 3))))


def residual_diagnostics(residuals) -> dict:
    """Skewness, excess kurtosis, multimodality coefficient and BS.1534-3's skewness verdict."""
    x = np.asarray(residuals, dtype=float)
    skew = float(scipy.stats.skew(x, bias=False)) if x.size > 2 else float("nan")
    verdict = "ok"
    if abs(skew) > SKEW_SEVERE:
        verdict = "severe"
    elif abs(skew) > SKEW_WARNING:
        verdict = "warning"
    mc = multimodality_coefficient(x)
    return {
        "n": int(x.size),
        "skewness": skew,
        "excess_kurtosis": float(scipy.stats.kurtosis(x, bias=False))
        if x.size > 3
        else float("nan"),
        "multimodality_coefficient": mc,
        "multimodal": bool(mc > MULTIMODALITY_THRESHOLD) if np.isfinite(mc) else False,
        "skewness_verdict": verdict,
    }


@dataclass(frozen=True)
class OmnibusResult:
    """``method``: ``rm_anova`` or ``lmm``. ``effects``: one row per effect. ``friedman``: one row."""

    method: str
    effects: pd.DataFrame
    residuals: dict
    friedman: pd.DataFrame
    n_listeners: int
    notes: list[str] = field(default_factory=list)


def _cube(
    ratings: pd.DataFrame, subject: str, within: str, item: str
) -> tuple[np.ndarray, list, list, list]:
    cells = ratings.groupby([subject, within, item], observed=True)["score"].mean()
    subjects = sorted(pd.unique(ratings[subject]))
    levels = sorted(pd.unique(ratings[within]))
    items = sorted(pd.unique(ratings[item]))
    full = pd.MultiIndex.from_product([subjects, levels, items])
    values = cells.reindex(full).to_numpy().reshape(len(subjects), len(levels), len(items))
    return values, subjects, levels, items


def rm_anova(
    ratings: pd.DataFrame,
    *,
    subject: str = "participant",
    within: str = "condition",
    item: str = "item",
) -> OmnibusResult:
    """Two-way repeated-measures ANOVA ``within`` × ``item`` on a complete design.

    Raises DesignError when a listener misses a cell (use :func:`mixed_model`).
    """
    y, subjects, levels, items = _cube(ratings, subject, within, item)
    if np.isnan(y).any():
        raise DesignError(
            "repeated-measures ANOVA needs every listener to rate every condition × item; "
            f"{int(np.isnan(y).sum())} cells are missing (use the mixed model)"
        )
    n, a, b = y.shape
    if n < 2 or a < 2:
        raise DesignError(
            f"repeated-measures ANOVA: expected ≥ 2 listeners and ≥ 2 conditions, found {n} and {a}"
        )
    grand = y.mean()
    m_s = y.mean(axis=(1, 2))
    m_a = y.mean(axis=(0, 2))
    m_b = y.mean(axis=(0, 1))
    m_sa = y.mean(axis=2)
    m_sb = y.mean(axis=1)
    m_ab = y.mean(axis=0)
    ss = {
        within: n * b * np.sum((m_a - grand) ** 2),
        item: n * a * np.sum((m_b - grand) ** 2),
        f"{within}:{item}": n * np.sum((m_ab - m_a[:, None] - m_b[None, :] + grand) ** 2),
    }
    ss_err = {
        within: b * np.sum((m_sa - m_s[:, None] - m_a[None, :] + grand) ** 2),
        item: a * np.sum((m_sb - m_s[:, None] - m_b[None, :] + grand) ** 2),
        f"{within}:{item}": np.sum(
            (
                y
                - m_ab[None]
                - m_sa[:, :, None]
                - m_sb[:, None, :]
                + m_a[None, :, None]
                + m_b[None, None, :]
                + m_s[:, None, None]
                - grand
            )
            ** 2
        ),
    }
    df1 = {within: a - 1, item: b - 1, f"{within}:{item}": (a - 1) * (b - 1)}
    # Per-subject vectors whose contrasts carry each effect: (n, levels) for main effects, the
    # flattened a·b cells for the interaction.
    contrast_a = _orthonormal_contrasts(a)
    contrast_b = _orthonormal_contrasts(b) if b > 1 else np.zeros((0, 1))
    transformed = {
        within: m_sa @ contrast_a.T,
        item: m_sb @ contrast_b.T if b > 1 else np.zeros((n, 0)),
        f"{within}:{item}": y.reshape(n, a * b) @ np.kron(contrast_a, contrast_b).T
        if b > 1
        else np.zeros((n, 0)),
    }
    rows = []
    for effect in (within, item, f"{within}:{item}"):
        if df1[effect] == 0:
            continue
        d1, d2 = df1[effect], df1[effect] * (n - 1)
        ms_effect, ms_error = ss[effect] / d1, ss_err[effect] / d2
        f = ms_effect / ms_error if ms_error > 0 else np.inf
        p = float(scipy.stats.f.sf(f, d1, d2))
        z = transformed[effect]
        k = d1 + 1
        eps_gg = greenhouse_geisser_from_contrasts(z) if d1 > 1 else 1.0
        eps_hf = huynh_feldt(eps_gg, n, k) if d1 > 1 else 1.0
        t2, mv_f, mv_d1, mv_d2, p_mv, mv_reason = hotelling_one_sample(z)
        p_hf = float(scipy.stats.f.sf(f, d1 * eps_hf, d2 * eps_hf))
        if d1 == 1:
            # One contrast: sphericity holds trivially and all three tests coincide.
            chosen, reason, p_chosen = "uncorrected", "1 df: sphericity holds", p
        else:
            chosen, reason = algina_keselman(k, n, eps_gg)
            if chosen == "multivariate" and not np.isfinite(p_mv):
                chosen, reason = (
                    "huynh_feldt",
                    f"{reason}; but the multivariate test is {mv_reason}",
                )
            p_chosen = p_mv if chosen == "multivariate" else p_hf
        rows.append(
            {
                "effect": effect,
                "ss": float(ss[effect]),
                "ss_error": float(ss_err[effect]),
                "df1": d1,
                "df2": d2,
                "F": float(f),
                "p": p,
                "eps_gg": eps_gg,
                "eps_hf": eps_hf,
                "p_gg": float(scipy.stats.f.sf(f, d1 * eps_gg, d2 * eps_gg)),
                "df1_hf": d1 * eps_hf,
                "df2_hf": d2 * eps_hf,
                "p_hf": p_hf,
                "hotelling_t2": t2,
                "mv_F": mv_f,
                "mv_df1": mv_d1,
                "mv_df2": mv_d2,
                "p_mv": p_mv,
                "mv_note": mv_reason,
                "chosen": chosen,
                "chosen_reason": reason,
                "p_chosen": p_chosen,
                "partial_eta2": float(ss[effect] / (ss[effect] + ss_err[effect]))
                if ss[effect] + ss_err[effect] > 0
                else float("nan"),
            }
        )
    residuals = (y - m_ab[None] - m_s[:, None, None] + grand).ravel()
    return OmnibusResult(
        method="rm_anova",
        effects=pd.DataFrame(rows),
        residuals=residual_diagnostics(residuals),
        friedman=friedman(ratings, subject=subject, within=within),
        n_listeners=n,
    )


def greenhouse_geisser_from_contrasts(z: np.ndarray) -> float:
    """ε̂ from (n, k − 1) orthonormal-contrast scores of each subject."""
    p = z.shape[1]
    covariance = np.cov(z, rowvar=False).reshape(p, p)
    denominator = p * np.trace(covariance @ covariance)
    if denominator <= 0:
        return 1.0
    return float(np.trace(covariance) ** 2 / denominator)


def friedman(
    ratings: pd.DataFrame, *, subject: str = "participant", within: str = "condition"
) -> pd.DataFrame:
    """Friedman's χ² on listener means (listeners with every condition) and Kendall's W = χ²/(n(k−1))."""
    means = ratings.groupby([subject, within], observed=True)["score"].mean().unstack().dropna()
    n, k = means.shape
    if n < 2 or k < 3:
        return pd.DataFrame(
            [
                {
                    "chi2": np.nan,
                    "df": k - 1,
                    "p": np.nan,
                    "kendall_w": np.nan,
                    "n_listeners": n,
                    "k": k,
                }
            ]
        )
    result = scipy.stats.friedmanchisquare(*(means[c].to_numpy() for c in means.columns))
    return pd.DataFrame(
        [
            {
                "chi2": float(result.statistic),
                "df": k - 1,
                "p": float(result.pvalue),
                "kendall_w": float(result.statistic / (n * (k - 1))),
                "n_listeners": n,
                "k": k,
            }
        ]
    )


def mixed_model(
    ratings: pd.DataFrame,
    *,
    subject: str = "participant",
    within: str = "condition",
    item: str = "item",
    item_effect: str = "fixed",
) -> OmnibusResult:
    """Linear mixed model for unbalanced or incomplete designs, with likelihood-ratio tests.

    ``item_effect = "fixed"``: score ~ condition + item, listener random intercept.
    ``item_effect = "crossed"``: score ~ condition, crossed random intercepts for listener and item.
    Models are fitted by maximum likelihood (REML likelihoods of models with different fixed effects
    are not comparable). A variance component below 1e-6 of the residual variance is reported as
    collapsed (a boundary fit).
    """
    import statsmodels.formula.api as smf

    if item_effect not in ("fixed", "crossed"):
        raise DesignError(
            f"mixed model: item effect must be 'fixed' or 'crossed', found {item_effect!r}"
        )
    data = ratings[ratings["score"].notna()][[subject, within, item, "score"]].rename(
        columns={subject: "subject_", within: "within_", item: "item_"}
    )
    n_levels = data["within_"].nunique()
    if n_levels < 2:
        raise DesignError(f"mixed model: expected ≥ 2 conditions, found {n_levels}")
    notes: list[str] = []

    def fit(formula: str):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if item_effect == "fixed":
                model = smf.mixedlm(formula, data, groups=data["subject_"])
            else:
                model = smf.mixedlm(
                    formula,
                    data,
                    groups=np.ones(len(data)),
                    re_formula="0",
                    vc_formula={"subject": "0 + C(subject_)", "item": "0 + C(item_)"},
                )
            result = model.fit(reml=False)
        for w in caught:
            message = f"{formula}: {w.message}"
            if message not in notes:
                notes.append(message)
        return result

    rows = []
    if item_effect == "fixed":
        full = fit("score ~ C(within_) + C(item_)")
        reduced = {within: fit("score ~ C(item_)"), item: fit("score ~ C(within_)")}
        extra_df = {within: n_levels - 1, item: data["item_"].nunique() - 1}
    else:
        full = fit("score ~ C(within_)")
        reduced = {within: fit("score ~ 1")}
        extra_df = {within: n_levels - 1}
    for effect, small in reduced.items():
        if extra_df[effect] == 0:
            continue
        lr = max(0.0, 2 * (full.llf - small.llf))
        rows.append(
            {
                "effect": effect,
                "lr_chi2": float(lr),
                "df1": int(extra_df[effect]),
                "p": float(scipy.stats.chi2.sf(lr, extra_df[effect])),
                "llf_full": float(full.llf),
                "llf_reduced": float(small.llf),
                "chosen": "likelihood_ratio",
                "p_chosen": float(scipy.stats.chi2.sf(lr, extra_df[effect])),
            }
        )
    residual_variance = float(full.scale)
    components = (
        {"listener": float(full.cov_re.iloc[0, 0])}
        if item_effect == "fixed"
        else dict(zip(["listener", "item"], map(float, full.vcomp), strict=False))
    )
    for name, value in components.items():
        if value < 1e-6 * residual_variance:
            notes.append(f"the {name} variance component collapsed to {value:.3g} (boundary fit)")
    effects = pd.DataFrame(rows)
    effects["variance_components"] = [components] * len(effects)
    effects["residual_variance"] = residual_variance
    return OmnibusResult(
        method="lmm",
        effects=effects,
        residuals=residual_diagnostics(np.asarray(full.resid)),
        friedman=friedman(ratings, subject=subject, within=within),
        n_listeners=int(data["subject_"].nunique()),
        notes=notes,
    )


def omnibus(ratings: pd.DataFrame, *, item_effect: str = "fixed", **columns) -> OmnibusResult:
    """RM-ANOVA when the design is complete, else the linear mixed model (with a note saying so).

    Pass the systems only: the hidden reference and anchors would dominate the condition effect.
    """
    y, *_ = _cube(
        ratings,
        columns.get("subject", "participant"),
        columns.get("within", "condition"),
        columns.get("item", "item"),
    )
    if not np.isnan(y).any():
        return rm_anova(ratings, **columns)
    result = mixed_model(ratings, item_effect=item_effect, **columns)
    result.notes.insert(
        0,
        f"incomplete design ({int(np.isnan(y).sum())} of {y.size} listener × condition × item cells "
        "missing): linear mixed model instead of repeated-measures ANOVA",
    )
    return result
