"""The analysis of one panel: everything the report states, computed before anything is written.

:func:`analyse` runs the whole pipeline (validation → screening → descriptives → omnibus →
planned comparisons → objective metrics, correlations and the cost view) and returns an
:class:`Analysis`, which also holds what the report picks out of those tables (best and worst
system, strongest correlation, Pareto front) and the figures to draw with their data.
:func:`evaluation.report.write_report` only writes it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from . import figures
from .comparisons import all_pairs, compare, planned_pairs
from .correlations import cost_view, objective_correlations, stimulus_means
from .descriptives import describe
from .errors import ConfigError, DesignError
from .manifest import Manifest, annotate
from .objective import objective_table
from .omnibus import OmnibusResult, omnibus
from .ratings import Ratings, assign_roles
from .screening import ScreeningConfig, ScreeningResult, screen
from .validation import ValidationSummary, validate_ratings

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

#: Share of systems scoring above 80 at which the report warns that the test was too easy (§2).
TOO_EASY_SHARE = 0.5
TOO_EASY_SCORE = 80.0
#: Metrics plotted against the scores (the others are in correlations.csv).
SCATTER_METRICS = ("mrstft", "esr")
#: Comparison kinds with a figure of their own; the other kinds share one.
OWN_DIFFERENCE_FIGURES = ("distilled_vs_non_distilled", "compressed_vs_full")
#: The cutoffs of the two BS.1534-3 anchors, as the report describes them.
ANCHOR_DESCRIPTIONS = {"anchor_low": "low, 3.5 kHz", "anchor_mid": "mid, 7 kHz"}

_DIFFERENCES_CAPTION = "Paired mean differences with 95 % CIs over listeners; the shaded band is the equivalence margin."


@dataclass(frozen=True)
class ReportConfig:
    """Analysis choices of a report (all written to numbers.json)."""

    ci_over: Literal["listeners", "ratings"] = "listeners"
    ci_method: Literal["t", "normal", "bca"] = "t"
    confidence: float = 0.95
    correction: Literal["holm", "hochberg", "bonferroni"] = "holm"
    margin: float = 5.0
    n_permutations: int = 10_000
    n_boot: int = 2000
    seed: int = 0
    item_effect: Literal["fixed", "crossed"] = "fixed"
    all_pairs: bool = False
    compute_missing_metrics: bool = True
    pdf_figures: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.confidence < 1:
            raise ConfigError(
                f"report.confidence: expected a level in (0, 1), found {self.confidence}"
            )
        if self.n_permutations < 100:
            raise ConfigError(
                f"report.n_permutations: expected at least 100, found {self.n_permutations}"
            )
        if self.n_boot < 100:
            raise ConfigError(f"report.n_boot: expected at least 100, found {self.n_boot}")
        if self.margin < 0:
            raise ConfigError(
                f"report.margin: expected a non-negative number of points, found {self.margin}"
            )

    @property
    def interval_text(self) -> str:
        """How the report names its intervals."""
        method = {"t": "t", "normal": "normal", "bca": "BCa bootstrap"}[self.ci_method]
        return (
            f"{self.confidence:.0%} confidence intervals of the mean "
            f"({method}-based, over {self.ci_over})"
        )


@dataclass(frozen=True)
class FigurePlan:
    """One figure of the report: its data are bound into ``draw``; writing only calls it."""

    stem: str
    """File name without suffix under ``figures/``."""
    caption: str
    draw: Callable[[], Figure]


@dataclass
class Analysis:
    """Everything :func:`evaluation.report.write_report` writes; frames are tidy."""

    config: ReportConfig
    screening_config: ScreeningConfig
    title: str
    source: str
    manifest: Manifest | None
    ratings: pd.DataFrame
    kept: pd.DataFrame
    participants: pd.DataFrame
    validation: ValidationSummary
    screening: ScreeningResult
    descriptives: pd.DataFrame
    descriptives_by_item: pd.DataFrame
    omnibus: dict[str, OmnibusResult]
    comparisons: pd.DataFrame
    objective: pd.DataFrame
    correlations: pd.DataFrame
    stimulus_means: pd.DataFrame
    cost: pd.DataFrame
    tests: pd.DataFrame
    """Planned comparisons and omnibus tests in one table (``tests.csv``)."""
    items: list
    systems: list[str]
    anchors: list[str]
    """Anchor conditions with their cutoff, e.g. ``anchor_7k (mid, 7 kHz)``."""
    best_system: dict | None
    worst_system: dict | None
    strongest_correlation: dict | None
    """The overall Spearman correlation of largest magnitude."""
    correlation_table: pd.DataFrame
    """Overall r per metric (rows) and method (columns)."""
    pareto_front: pd.DataFrame
    """Systems on the size–quality front, smallest first."""
    figures: dict[str, FigurePlan]
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def prepare(
    frame: pd.DataFrame, manifest: Manifest | None, roles: dict[str, str] | None
) -> pd.DataFrame:
    """Ratings with ``group`` and ``role``: from the manifest, else ``roles``, else the ratings."""
    frame = annotate(frame, manifest) if manifest is not None else frame.assign(group="all")
    if roles:
        frame = assign_roles(frame, roles)
    elif manifest is None:
        frame = assign_roles(frame, {})
    return frame


def check_pairs(
    frame: pd.DataFrame, pairs: list[tuple[str, str, str]], name: str = "pairs"
) -> None:
    """Refuse a requested comparison (group, a, b) naming a group or condition not rated.

    ``frame`` as :func:`prepare` returns it; ``name`` is what the messages call the pairs.
    """
    groups = sorted(pd.unique(frame["group"]))
    for group, a, b in pairs:
        if group not in groups:
            raise ConfigError(f"{name}: unknown group {group!r}; groups: {groups}")
        known = sorted(pd.unique(frame.loc[frame["group"] == group, "condition"]))
        unknown = [c for c in (a, b) if c not in known]
        if unknown:
            raise ConfigError(
                f"{name}: condition(s) {unknown} not rated in group {group!r}; conditions: {known}"
            )


def analyse(
    ratings: Ratings,
    manifest: Manifest | None = None,
    *,
    config: ReportConfig | None = None,
    screening_config: ScreeningConfig | None = None,
    roles: dict[str, str] | None = None,
    pairs: list[tuple[str, str, str]] | None = None,
    title: str | None = None,
) -> Analysis:
    """Run the whole analysis of one panel.

    Roles come from the manifest, else from ``roles`` (condition → role; unknown conditions are
    systems), else from the ratings' own ``role`` column. ``pairs`` (group, a, b) adds explicit
    comparisons to the planned ones.
    """
    config = config or ReportConfig()
    screening_config = screening_config or ScreeningConfig()
    warnings_: list[str] = []
    notes: list[str] = []
    frame = prepare(ratings.ratings, manifest, roles)
    validation = validate_ratings(frame)
    if validation.out_of_range:
        warnings_.append(
            f"{validation.out_of_range} scores lie outside 0–100; they were kept as given "
            "(--allow-out-of-range) and analysed unchanged (see validation.csv)"
        )
    if validation.duplicates:
        warnings_.append(
            f"{validation.duplicates} listener × trial × condition cells were rated more than once; their mean is analysed"
        )
    screening = screen(frame, screening_config)
    kept = screening.apply(frame)
    if kept.empty:
        raise DesignError("every listener was excluded by post-screening; nothing to analyse")

    common = {
        "ci_over": config.ci_over,
        "ci_method": config.ci_method,
        "confidence": config.confidence,
        "n_boot": config.n_boot,
        "seed": config.seed,
    }
    desc = describe(kept, by=("group", "condition"), **common)
    roles_of = kept.drop_duplicates("condition").set_index("condition")["role"]
    desc.insert(2, "role", desc["condition"].map(roles_of))
    desc_item = describe(kept, by=("group", "condition", "item"), **common)
    desc_item.insert(2, "role", desc_item["condition"].map(roles_of))

    systems = kept[kept["role"] == "system"]
    omni: dict[str, OmnibusResult] = {}
    for group, part in systems.groupby("group", sort=True):
        if part["condition"].nunique() < 2 or part["participant"].nunique() < 3:
            notes.append(f"group {group}: fewer than 2 systems or 3 listeners, no omnibus test")
            continue
        try:
            omni[str(group)] = omnibus(part, item_effect=config.item_effect)
        except (DesignError, np.linalg.LinAlgError, ValueError) as exc:
            notes.append(f"group {group}: omnibus test not possible ({exc})")

    pair_table = (
        planned_pairs(manifest.conditions)
        if manifest is not None
        else pd.DataFrame(columns=["group", "a", "b", "kind"])
    )
    if config.all_pairs:
        pair_table = pd.concat([pair_table, all_pairs(kept)], ignore_index=True)
    if pairs:
        pair_table = pd.concat(
            [
                pair_table,
                pd.DataFrame(
                    [(g, a, b, "requested") for g, a, b in pairs],
                    columns=["group", "a", "b", "kind"],
                ),
            ],
            ignore_index=True,
        )
    pair_table = pair_table.drop_duplicates(["group", "a", "b"]).reset_index(drop=True)
    check_pairs(frame, pairs or [])
    runnable = []
    for row in pair_table.itertuples(index=False):
        part = kept[kept["group"] == row.group]
        both = (
            part[part["condition"].isin([row.a, row.b])]
            .groupby("participant")["condition"]
            .nunique()
        )
        if (both == 2).sum() < 3:
            notes.append(
                f"comparison {row.group}: {row.a} vs {row.b} skipped (fewer than 3 listeners rated both)"
            )
            continue
        runnable.append(row)
    runnable_table = pd.DataFrame(runnable, columns=["group", "a", "b", "kind"])
    if runnable_table.empty:
        notes.append(
            "no planned comparisons (give a manifest with model facts, --pairs or --all-pairs)"
        )
        comparisons = pd.DataFrame()
    else:
        comparisons = compare(
            kept,
            runnable_table,
            correction=config.correction,
            margin=config.margin,
            n_permutations=config.n_permutations,
            seed=config.seed,
            confidence=config.confidence,
        )

    means = stimulus_means(kept)
    if manifest is not None:
        objective = objective_table(manifest, compute_missing=config.compute_missing_metrics)
        metric_names = [
            c
            for c in objective.columns
            if c not in ("trial", "item", "group", "condition", "role", "source")
        ]
        usable = [m for m in metric_names if objective[m].notna().sum() >= 3]
        correlations = objective_correlations(
            means,
            objective,
            usable,
            n_boot=config.n_boot,
            confidence=config.confidence,
            seed=config.seed,
        )
        cost = (
            cost_view(kept, manifest.conditions, confidence=config.confidence)
            if not systems.empty
            else pd.DataFrame()
        )
        if not cost.empty and cost[["bytes", "rtf_offline"]].isna().all().all():
            notes.append("the manifest gives no model sizes or real-time factors: no cost view")
            cost = pd.DataFrame()
    else:
        objective, correlations, cost = pd.DataFrame(), pd.DataFrame(), pd.DataFrame()
        notes.append("no stimulus manifest: no objective metrics, correlations or cost view")

    system_means = desc[desc["role"] == "system"]["mean"]
    if len(system_means) and (system_means > TOO_EASY_SCORE).mean() > TOO_EASY_SHARE:
        warnings_.append(
            f"{int((system_means > TOO_EASY_SCORE).sum())} of {len(system_means)} systems score above "
            f"{TOO_EASY_SCORE:g} on average: the test was probably too easy to discriminate them (BS.1534-3 §2)"
        )
    for group, result in omni.items():
        verdict = result.residuals["skewness_verdict"]
        if verdict != "ok":
            warnings_.append(
                f"group {group}: residual skewness {result.residuals['skewness']:.2f} ({verdict}; BS.1534-3 Attachment 4)"
            )
        if result.residuals["multimodal"]:
            warnings_.append(
                f"group {group}: residuals look multimodal (b = {result.residuals['multimodality_coefficient']:.2f} > 5/9)"
            )
    n_outliers = int(screening.outliers["outlier"].sum())
    if n_outliers:
        notes.append(
            f"{n_outliers} grades are Tukey-hinge outliers within their trial × condition; flagged in screening_outliers.csv, not removed"
        )
    name = title or (
        manifest.folder.name if manifest is not None else Path(ratings.source).stem or "MUSHRA test"
    )
    best, worst = _extremes(desc)
    overall = (
        correlations[correlations["scope"] == "overall"] if not correlations.empty else correlations
    )
    return Analysis(
        config=config,
        screening_config=screening_config,
        title=name,
        source=ratings.source,
        manifest=manifest,
        ratings=frame,
        kept=kept,
        participants=ratings.participants,
        validation=validation,
        screening=screening,
        descriptives=desc,
        descriptives_by_item=desc_item,
        omnibus=omni,
        comparisons=comparisons,
        objective=objective,
        correlations=correlations,
        stimulus_means=means,
        cost=cost,
        tests=_tests_table(comparisons, omni),
        items=sorted(pd.unique(kept["item"])),
        systems=sorted(roles_of[roles_of == "system"].index),
        anchors=[
            f"{condition} ({ANCHOR_DESCRIPTIONS[role]})"
            for condition, role in roles_of.items()
            if role in ANCHOR_DESCRIPTIONS
        ],
        best_system=best,
        worst_system=worst,
        strongest_correlation=_strongest(overall),
        correlation_table=(
            overall.pivot_table(index="metric", columns="method", values="r")
            .rename_axis(columns=None)
            .reset_index()
            if not overall.empty
            else pd.DataFrame()
        ),
        pareto_front=(
            cost[cost["pareto_bytes"]].sort_values("bytes") if not cost.empty else pd.DataFrame()
        ),
        figures=_figure_plans(
            config,
            screening_config,
            frame,
            kept,
            screening,
            desc,
            desc_item,
            comparisons,
            objective,
            correlations,
            means,
            cost,
        ),
        warnings=warnings_,
        notes=notes,
    )


def _tests_table(comparisons: pd.DataFrame, omni: dict[str, OmnibusResult]) -> pd.DataFrame:
    parts = []
    for group, r in omni.items():
        parts.append(r.effects.assign(group=group, test="omnibus_" + r.method))
        parts.append(r.friedman.assign(group=group, test="friedman", effect="condition"))
    if not (len(comparisons) or parts):
        return pd.DataFrame()
    return pd.concat([comparisons.assign(test="planned_comparison"), *parts], ignore_index=True)


def _extremes(desc: pd.DataFrame) -> tuple[dict | None, dict | None]:
    """The systems with the highest and the lowest mean."""
    ranked = desc[desc["role"] == "system"].sort_values("mean", ascending=False)
    if ranked.empty:
        return None, None
    return ranked.iloc[0].to_dict(), ranked.iloc[-1].to_dict()


def _strongest(overall: pd.DataFrame) -> dict | None:
    if overall.empty:
        return None
    spearman = (
        overall[overall["method"] == "spearman"]
        .dropna(subset=["r"])
        .reindex(columns=["metric", "n", "r", "p", "ci_low", "ci_high"])
    )
    if spearman.empty:
        return None
    return spearman.iloc[spearman["r"].abs().argmax()].to_dict()


def _figure_plans(
    config: ReportConfig,
    screening_config: ScreeningConfig,
    ratings: pd.DataFrame,
    kept: pd.DataFrame,
    screening: ScreeningResult,
    desc: pd.DataFrame,
    desc_item: pd.DataFrame,
    comparisons: pd.DataFrame,
    objective: pd.DataFrame,
    correlations: pd.DataFrame,
    means: pd.DataFrame,
    cost: pd.DataFrame,
) -> dict[str, FigurePlan]:
    plans = {
        "boxplots": FigurePlan(
            "boxplots",
            "Boxplots per condition (Tukey hinges; whiskers 1.5 IQR; diamonds are means).",
            partial(figures.boxplots, kept),
        ),
        "means_by_item": FigurePlan(
            "means_by_item",
            f"Mean and {config.interval_text} per condition and item.",
            partial(figures.means_by_item, desc_item, desc),
        ),
        "screening": FigurePlan(
            "screening",
            "Hidden-reference and mid-anchor scores per listener; excluded listeners marked with crosses and shading.",
            partial(
                figures.screening_figure,
                ratings,
                screening.listeners,
                hidden_below=screening_config.hidden_reference_below,
                anchor_above=screening_config.mid_anchor_above,
            ),
        ),
    }
    if not comparisons.empty:
        for kind in OWN_DIFFERENCE_FIGURES:
            if (comparisons["kind"] == kind).any():
                plans[kind] = FigurePlan(
                    f"differences_{kind}",
                    _DIFFERENCES_CAPTION,
                    partial(figures.differences_figure, comparisons, kind=kind),
                )
        others = comparisons[~comparisons["kind"].isin(OWN_DIFFERENCE_FIGURES)]
        if not others.empty:
            plans["other_comparisons"] = FigurePlan(
                "differences_other",
                _DIFFERENCES_CAPTION,
                partial(figures.differences_figure, others),
            )
    if not objective.empty:
        joined = means.merge(
            objective.drop(columns=["item", "group", "role"]), on=["trial", "condition"]
        )
        for metric in SCATTER_METRICS:
            if metric in joined and joined[metric].notna().sum() >= 3:
                corr = correlations[
                    (correlations["metric"] == metric)
                    & (correlations["scope"] == "overall")
                    & (correlations["method"] == "spearman")
                ]
                plans[f"scatter_{metric}"] = FigurePlan(
                    f"objective_{metric}",
                    "Mean score per stimulus against an objective metric (systems only).",
                    partial(
                        figures.objective_scatter,
                        joined,
                        metric,
                        corr.iloc[0].to_dict() if len(corr) else None,
                    ),
                )
    if not cost.empty:
        for column, flag, label in (
            ("bytes", "pareto_bytes", "model size (bytes)"),
            ("rtf_offline", "pareto_rtf", "real-time factor (offline)"),
        ):
            if column in cost and cost[column].notna().any():
                plans[f"pareto_{column}"] = FigurePlan(
                    f"pareto_{column}",
                    "Mean score with 95 % CI against model cost; the dashed line joins the Pareto front.",
                    partial(figures.pareto_figure, cost, column, flag, label),
                )
    return plans
