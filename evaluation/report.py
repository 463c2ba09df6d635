"""The perceptual report: analyse a panel and write ``results/reports/<set>/``.

:func:`analyse` runs the whole pipeline (validation → screening → descriptives → omnibus →
planned comparisons → objective metrics, correlations and the cost view) and returns an
:class:`Analysis`; :func:`write_report` writes the folder of docs/formats.md: ``report.html``
(self-contained), ``figures/*.png|pdf``, ``screening.csv``, ``descriptives.csv``, ``tests.csv``,
``objective.csv``, ``correlations.csv``, ``tables.tex`` and ``numbers.json``. The folder is built
next to its destination and moved into place, so a failed run never leaves half a report, and it
replaces only an earlier report (never a folder or file of the user's).
"""

from __future__ import annotations

import base64
import html
import json
import logging
import math
import platform
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from common.outputs import output_folder

from . import figures, latex
from .comparisons import all_pairs, compare, planned_pairs
from .correlations import cost_view, objective_correlations, stimulus_means
from .descriptives import describe
from .errors import ConfigError, DesignError, OutputError
from .manifest import Manifest, annotate
from .objective import objective_table
from .omnibus import OmnibusResult, omnibus
from .ratings import Ratings, assign_roles
from .screening import ScreeningConfig, ScreeningResult, screen
from .validation import ValidationSummary, validate_ratings

log = logging.getLogger(__name__)

#: Share of systems scoring above 80 at which the report warns that the test was too easy (§2).
TOO_EASY_SHARE = 0.5
TOO_EASY_SCORE = 80.0
#: Metrics plotted against the scores (the others are in correlations.csv).
SCATTER_METRICS = ("mrstft", "esr")


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


@dataclass
class Analysis:
    """Everything :func:`write_report` writes; frames are tidy."""

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
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


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
    frame = ratings.ratings
    warnings_: list[str] = []
    notes: list[str] = []
    if manifest is not None:
        frame = annotate(frame, manifest)
    else:
        frame = frame.assign(group="all")
    if roles:
        frame = assign_roles(frame, roles)
    elif manifest is None:
        frame = assign_roles(frame, {})
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
    groups = sorted(pd.unique(frame["group"]))
    for group, a, b in pairs or []:
        if group not in groups:
            raise ConfigError(f"--pairs: unknown group {group!r}; groups: {groups}")
        known = sorted(pd.unique(frame.loc[frame["group"] == group, "condition"]))
        unknown = [c for c in (a, b) if c not in known]
        if unknown:
            raise ConfigError(
                f"--pairs: condition(s) {unknown} not rated in group {group!r}; conditions: {known}"
            )
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
        tests = pd.DataFrame()
    else:
        tests = compare(
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
        comparisons=tests,
        objective=objective,
        correlations=correlations,
        stimulus_means=means,
        cost=cost,
        warnings=warnings_,
        notes=notes,
    )


# ----------------------------------------------------------------------------------------- writing
def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if value is pd.NA or value is None:
        return None
    if isinstance(value, (Path, datetime)):
        return str(value)
    return value


def _records(frame: pd.DataFrame) -> list[dict]:
    if frame is None or frame.empty:
        return []
    return _jsonable(frame.astype(object).where(frame.notna(), None).to_dict("records"))


def software_versions() -> dict[str, str]:
    import matplotlib
    import pyloudnorm
    import scipy
    import statsmodels

    versions = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "pandas": pd.__version__,
        "statsmodels": statsmodels.__version__,
        "matplotlib": matplotlib.__version__,
    }
    versions["pyloudnorm"] = getattr(pyloudnorm, "__version__", "unknown")
    try:
        from importlib.metadata import version

        versions["earshot"] = version("earshot")
        versions["pyloudnorm"] = version("pyloudnorm")
    except Exception:  # noqa: BLE001 — metadata is optional (a source checkout without install)
        pass
    return versions


def numbers(analysis: Analysis) -> dict:
    """Every number of the report, with the configuration, seeds and software versions."""
    a = analysis
    return _jsonable(
        {
            "title": a.title,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "inputs": {
                "ratings": a.source,
                "manifest": str(a.manifest.path) if a.manifest else None,
            },
            "software": software_versions(),
            "seeds": {"permutation": a.config.seed, "bootstrap": a.config.seed},
            "config": asdict(a.config),
            "screening_config": asdict(a.screening_config),
            "validation": a.validation.to_dict(),
            "screening": {
                **a.screening.to_dict(),
                "listeners": _records(a.screening.listeners),
                "anchor_trials": _records(a.screening.anchor_trials),
            },
            "descriptives": _records(a.descriptives),
            "descriptives_by_item": _records(a.descriptives_by_item),
            "omnibus": {
                group: {
                    "method": r.method,
                    "n_listeners": r.n_listeners,
                    "effects": _records(r.effects),
                    "residuals": r.residuals,
                    "friedman": _records(r.friedman),
                    "notes": r.notes,
                }
                for group, r in a.omnibus.items()
            },
            "comparisons": _records(a.comparisons),
            "objective": _records(a.objective),
            "correlations": _records(a.correlations),
            "cost": _records(a.cost),
            "warnings": a.warnings,
            "notes": a.notes,
        }
    )


def _save(fig, folder: Path, name: str, pdf: bool) -> Path:
    import matplotlib.pyplot as plt

    png = folder / f"{name}.png"
    fig.savefig(png, dpi=130)
    if pdf:
        fig.savefig(folder / f"{name}.pdf")
    plt.close(fig)
    return png


def _figures(a: Analysis, folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    pdf = a.config.pdf_figures
    out = {}
    out["boxplots"] = _save(figures.boxplots(a.kept), folder, "boxplots", pdf)
    out["means_by_item"] = _save(
        figures.means_by_item(a.descriptives_by_item, a.descriptives), folder, "means_by_item", pdf
    )
    out["screening"] = _save(
        figures.screening_figure(
            a.ratings,
            a.screening.listeners,
            hidden_below=a.screening_config.hidden_reference_below,
            anchor_above=a.screening_config.mid_anchor_above,
        ),
        folder,
        "screening",
        pdf,
    )
    if not a.comparisons.empty:
        for kind in ("distilled_vs_non_distilled", "compressed_vs_full"):
            if (a.comparisons["kind"] == kind).any():
                out[kind] = _save(
                    figures.differences_figure(a.comparisons, kind=kind),
                    folder,
                    f"differences_{kind}",
                    pdf,
                )
        others = a.comparisons[
            ~a.comparisons["kind"].isin(["distilled_vs_non_distilled", "compressed_vs_full"])
        ]
        if not others.empty:
            out["other_comparisons"] = _save(
                figures.differences_figure(others), folder, "differences_other", pdf
            )
    if not a.objective.empty:
        joined = a.stimulus_means.merge(
            a.objective.drop(columns=["item", "group", "role"]), on=["trial", "condition"]
        )
        for metric in SCATTER_METRICS:
            if metric in joined and joined[metric].notna().sum() >= 3:
                corr = a.correlations[
                    (a.correlations["metric"] == metric)
                    & (a.correlations["scope"] == "overall")
                    & (a.correlations["method"] == "spearman")
                ]
                out[f"scatter_{metric}"] = _save(
                    figures.objective_scatter(
                        joined, metric, corr.iloc[0].to_dict() if len(corr) else None
                    ),
                    folder,
                    f"objective_{metric}",
                    pdf,
                )
    if not a.cost.empty:
        for cost, flag, label in (
            ("bytes", "pareto_bytes", "model size (bytes)"),
            ("rtf_offline", "pareto_rtf", "real-time factor (offline)"),
        ):
            if cost in a.cost and a.cost[cost].notna().any():
                out[f"pareto_{cost}"] = _save(
                    figures.pareto_figure(a.cost, cost, flag, label), folder, f"pareto_{cost}", pdf
                )
    return out


#: How tables.tex names the omnibus test chosen (plain text: LaTeX turns -- into an en dash).
_TEST_NAMES = {
    "huynh_feldt": "Huynh--Feldt",
    "multivariate": "multivariate (Hotelling)",
    "uncorrected": "uncorrected (1 df)",
    "likelihood_ratio": "likelihood ratio",
}


def _tables_tex(a: Analysis) -> str:
    n1 = latex.number(1)
    parts = [
        "% Generated by `python -m evaluation report`; needs \\usepackage{booktabs}.",
        latex.booktabs(
            a.descriptives,
            [
                ("group", "Group", None),
                ("condition", "Condition", None),
                ("n_listeners", "$N$", latex.integer),
                ("mean", "Mean", n1),
                ("ci_low", "CI low", n1),
                ("ci_high", "CI high", n1),
                ("median", "Median", n1),
                ("iqr", "IQR", n1),
            ],
            caption=f"Scores per condition after post-screening: mean with {a.config.confidence:.0%} "
            f"{a.config.ci_method}-based CI over {a.config.ci_over}, median and IQR (Tukey hinges).",
            label="tab:descriptives",
        ),
    ]
    if not a.comparisons.empty:
        parts.append(
            latex.booktabs(
                a.comparisons,
                [
                    ("group", "Group", None),
                    ("a", "A", None),
                    ("b", "B", None),
                    ("n_listeners", "$N$", latex.integer),
                    ("mean_diff", r"$\bar d$", n1),
                    ("ci_low", "CI low", n1),
                    ("ci_high", "CI high", n1),
                    ("t", "$t$", latex.number(2)),
                    ("p_t_adj", r"$p_\mathrm{adj}$", latex.format_p),
                    ("p_permutation_adj", r"$p_\mathrm{perm,adj}$", latex.format_p),
                    ("d_z", "$d_z$", latex.number(2)),
                    ("p_tost", r"$p_\mathrm{TOST}$", latex.format_p),
                ],
                caption=f"Planned comparisons A − B on listener means; p-values adjusted by {a.config.correction.capitalize()}; "
                f"TOST margin ±{a.config.margin:g} points.",
                label="tab:comparisons",
            )
        )
    rows = []
    for group, result in a.omnibus.items():
        for r in result.effects.itertuples():
            # The statistic and df of the test the rule chose, not always the unadjusted F.
            if result.method != "rm_anova":
                stat, df = f"chi2 = {r.lr_chi2:.2f}", f"{r.df1}"
            elif r.chosen == "multivariate":
                stat, df = f"F = {r.mv_F:.2f}", f"{r.mv_df1}, {r.mv_df2:.0f}"
            elif r.chosen == "huynh_feldt":
                stat, df = f"F = {r.F:.2f}", f"{r.df1_hf:.2f}, {r.df2_hf:.2f}"
            else:
                stat, df = f"F = {r.F:.2f}", f"{r.df1}, {r.df2}"
            rows.append(
                {
                    "group": group,
                    "effect": r.effect,
                    "method": _TEST_NAMES.get(r.chosen, r.chosen),
                    "stat": stat,
                    "df": df,
                    "p": r.p_chosen,
                    "eta": getattr(r, "partial_eta2", float("nan")),
                }
            )
    if rows:
        parts.append(
            latex.booktabs(
                pd.DataFrame(rows),
                [
                    ("group", "Group", None),
                    ("effect", "Effect", None),
                    ("method", "Test", None),
                    ("stat", "Statistic", None),
                    ("df", "df", None),
                    ("p", "$p$", latex.format_p),
                    ("eta", r"$\eta^2_p$", latex.number(3)),
                ],
                caption="Omnibus tests on the systems (hidden reference and anchors excluded).",
                label="tab:omnibus",
            )
        )
    return "\n".join(parts)


def _fmt(x: float, digits: int = 1) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _p(p: float) -> str:
    return "p " + ("< .001" if p < 0.001 else "= " + f"{p:.3f}".lstrip("0"))


def _fact(data: dict, *keys: str) -> str:
    """A manifest fact under the first of ``keys`` present (the key names vary between writers)."""
    for key in keys:
        if key in data:
            value = data[key]
            return json.dumps(value) if isinstance(value, (dict, list)) else str(value)
    return "not stated in the manifest"


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"><figcaption>{html.escape(alt)}</figcaption></figure>'


def _cell(column: str, value, digits: int) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if column == "p" or column.startswith("p_") or column.endswith("_p"):
            return "< .001" if value < 0.001 else f"{value:.3f}"
        if column in (
            "bits",
            "bytes",
            "params",
            "df",
            "df1",
            "df2",
            "mv_df1",
            "mv_df2",
            "n",
        ) or column.startswith("n_"):
            return f"{value:.0f}" if float(value).is_integer() else f"{value:.2f}"
        return f"{value:.{digits}f}"
    return str(value)


def _table(frame: pd.DataFrame, columns: list[str], digits: int = 2) -> str:
    if frame.empty:
        return "<p><em>none</em></p>"
    shown = [c for c in columns if c in frame]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in shown)
    body = "".join(
        "<tr>"
        + "".join(f"<td>{html.escape(_cell(c, row[c], digits))}</td>" for c in shown)
        + "</tr>"
        for row in frame[shown].to_dict("records")
    )
    return f"<div class='scroll'><table class='t'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


_CSS = """
body{font-family:Georgia,serif;max-width:60rem;margin:2rem auto;padding:0 1rem;line-height:1.5;color:#222}
h1,h2,h3{font-family:Helvetica,Arial,sans-serif} h2{border-bottom:1px solid #ccc;padding-bottom:.2rem;margin-top:2rem}
table.t{border-collapse:collapse;font-size:.8rem;margin:.5rem 0;font-family:Helvetica,Arial,sans-serif}
table.t th,table.t td{padding:.15rem .5rem;text-align:right;border-bottom:1px solid #eee}
table.t th{border-bottom:2px solid #444} table.t td,table.t th{white-space:nowrap} .scroll{overflow-x:auto} figure{margin:1rem 0} img{max-width:100%}
figcaption{font-size:.85rem;color:#555} .warn{background:#fff4e0;border-left:4px solid #E69F00;padding:.4rem .8rem}
.note{background:#eef5fb;border-left:4px solid #0072B2;padding:.4rem .8rem} ul.check{list-style:none;padding-left:1rem}
ul.check li:before{content:"\\2611  "} code{font-size:.85rem}
"""


def _html(a: Analysis, figs: dict[str, Path]) -> str:
    esc = html.escape
    v, s, c = a.validation, a.screening, a.config
    n_before, n_after = len(s.listeners), len(s.kept)
    roles = a.kept.drop_duplicates("condition").set_index("condition")["role"]
    anchors = [
        f"{cond} ({'low, 3.5 kHz' if r == 'anchor_low' else 'mid, 7 kHz'})"
        for cond, r in roles.items()
        if r in ("anchor_low", "anchor_mid")
    ]
    items = sorted(pd.unique(a.kept["item"]))
    systems = sorted(roles[roles == "system"].index)
    ci_text = f"{c.confidence:.0%} confidence intervals of the mean ({'t' if c.ci_method == 't' else 'normal' if c.ci_method == 'normal' else 'BCa bootstrap'}-based, over {c.ci_over})"
    out = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{esc(a.title)} — MUSHRA report</title><style>{_CSS}</style></head><body>"
    ]
    out.append(f"<h1>{esc(a.title)}: listening-test results</h1>")
    out.append(
        f"<p>Ratings: <code>{esc(a.source)}</code>"
        + (f"; stimulus set: <code>{esc(str(a.manifest.path))}</code>" if a.manifest else "")
        + f". Generated {esc(datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC'))}.</p>"
    )
    for w in a.warnings:
        out.append(f"<p class='warn'><strong>Warning:</strong> {esc(w)}</p>")

    out.append("<h2>Method</h2>")
    out.append(
        f"<p>The test followed the MUSHRA method (ITU-R BS.1534-3). {v.n_participants} listeners rated {v.n_trials} trials "
        f"({len(items)} audio items: {esc(', '.join(map(str, items)))}) on the continuous 0–100 scale, each trial holding the open reference, a hidden reference, "
        f"the anchors and the systems under test ({len(systems)} systems: {esc(', '.join(systems))}). "
        f"Anchors: {esc(', '.join(anchors)) if anchors else 'none identified'}. "
        + (
            f"Each listener rated {v.trials_per_participant_min} trials"
            if v.trials_per_participant_min == v.trials_per_participant_max
            else f"Each listener rated between {v.trials_per_participant_min} and {v.trials_per_participant_max} trials"
        )
        + "; the design is "
        f"{'complete' if v.complete else 'incomplete'} and {'balanced' if v.balanced else 'unbalanced'}.</p>"
    )
    if a.manifest is not None:
        prov = a.manifest.data.get("provenance", {})
        out.append(
            f"<p>Stimuli: sample rate {a.manifest.sample_rate} Hz; loudness target "
            f"{esc(_fact(a.manifest.data, 'loudness_target_lufs', 'loudness_target', 'loudness'))}; "
            f"BS.1534-3 limits enforced: {esc(_fact(a.manifest.data, 'bs1534_enforced', 'bs1534_limits_enforced', 'bs1534'))}; "
            f"generated by <code>{esc(str(prov.get('command', 'unknown')))}</code> "
            f"(seed {esc(str(prov.get('seed', '–')))}, commit {esc(str(prov.get('git_commit', prov.get('commit', '–'))))}).</p>"
        )
    out.append(f"<p>{esc(s.description())} Excluded: {esc(', '.join(s.excluded) or 'nobody')}.</p>")
    if "screening" in figs:
        out.append(
            _img(
                figs["screening"],
                "Hidden-reference and mid-anchor scores per listener; excluded listeners marked with crosses and shading.",
            )
        )
    out.append(
        f"<p><strong>Statistics.</strong> Per condition we report the median and inter-quartile range (Tukey hinges) and the mean with {ci_text}. "
        "The omnibus test covers the systems only (hidden reference and anchors excluded): a repeated-measures ANOVA condition × item with "
        "Greenhouse–Geisser and Huynh–Feldt ε; both the Huynh–Feldt-adjusted univariate F and the multivariate (Hotelling T²) test are reported, and the "
        "Algina–Keselman rule (Algina &amp; Keselman, 1997, <i>Psychological Methods</i> 2(2), 208–218) chooses between them: the multivariate test only when the "
        "Greenhouse–Geisser ε̂ shows a clear violation of sphericity and the panel is large relative to the K levels (K ≤ 4: ε̂ ≤ 0.90 and N ≥ K + 10; "
        "K ≥ 5: ε̂ ≤ 0.85 and N ≥ K + 30, the band for 5–8 levels extended to more levels), else the Huynh–Feldt test; "
        "a linear mixed model with likelihood-ratio tests when the design is incomplete; Friedman's test with "
        "Kendall's W accompanies it. Planned comparisons use listener means: paired mean difference with its t-based CI, paired t and Wilcoxon "
        f"signed-rank tests, the permutation test on the difference of medians ({c.n_permutations} permutations, seed {c.seed}; BS.1534-3 Attachment 3), "
        f"effect sizes d<sub>z</sub> and rank-biserial r, TOST equivalence within ±{c.margin:g} points; p-values adjusted by the "
        f"{esc(c.correction.capitalize())} method over the family of planned comparisons.</p>"
    )
    out.append(
        "<h3>Validation of the ratings</h3><ul>"
        + "".join(f"<li>{esc(line)}</li>" for line in v.lines())
        + "</ul>"
    )

    out.append("<h2>Results</h2>")
    out.append(
        f"<p>After post-screening, {n_after} of {n_before} listeners remained ({len(a.kept)} ratings).</p>"
    )
    sys_desc = a.descriptives[a.descriptives["role"] == "system"].sort_values(
        "mean", ascending=False
    )
    if not sys_desc.empty:
        best, worst = sys_desc.iloc[0], sys_desc.iloc[-1]
        out.append(
            f"<p>Among the systems, {esc(str(best['condition']))} (group {esc(str(best['group']))}) scored highest with a mean of {_fmt(best['mean'])} "
            f"(95 % CI {_fmt(best['ci_low'])}–{_fmt(best['ci_high'])}, median {_fmt(best['median'])}), and {esc(str(worst['condition']))} "
            f"(group {esc(str(worst['group']))}) lowest with {_fmt(worst['mean'])} ({_fmt(worst['ci_low'])}–{_fmt(worst['ci_high'])}).</p>"
        )
    out.append(
        _table(
            a.descriptives,
            [
                "group",
                "condition",
                "role",
                "n_listeners",
                "n_ratings",
                "mean",
                "sd",
                "ci_low",
                "ci_high",
                "median",
                "q1",
                "q3",
                "iqr",
            ],
            1,
        )
    )
    out.append(f"<p class='note'>Intervals: {esc(ci_text)}.</p>")
    if "boxplots" in figs:
        out.append(
            _img(
                figs["boxplots"],
                "Boxplots per condition (Tukey hinges; whiskers 1.5 IQR; diamonds are means).",
            )
        )
    if "means_by_item" in figs:
        out.append(_img(figs["means_by_item"], f"Mean and {ci_text} per condition and item."))

    out.append("<h3>Omnibus tests</h3>")
    for group, r in a.omnibus.items():
        cond = r.effects[r.effects["effect"] == "condition"]
        if not cond.empty:
            e = cond.iloc[0]
            if r.method == "rm_anova":
                multivariate = (
                    f"F({e['mv_df1']}, {e['mv_df2']:.0f}) = {e['mv_F']:.2f}, {_p(e['p_mv'])}"
                    if not math.isnan(e["p_mv"])
                    else esc(str(e["mv_note"]))
                )
                text = (
                    f"In group {esc(group)}, the systems differed: F({e['df1']}, {e['df2']}) = {e['F']:.2f}, uncorrected {_p(e['p'])}; "
                    f"ε̂<sub>GG</sub> = {e['eps_gg']:.2f}, ε̃<sub>HF</sub> = {e['eps_hf']:.2f}; univariate Huynh–Feldt "
                    f"F({e['df1_hf']:.2f}, {e['df2_hf']:.2f}), {_p(e['p_hf'])}; multivariate (Hotelling T²) {multivariate}. "
                    f"Test chosen: {esc(str(e['chosen']))} ({_p(e['p_chosen'])}), because {esc(str(e['chosen_reason']))}; "
                    f"partial η² = {e['partial_eta2']:.2f}."
                )
            else:
                text = (
                    f"In group {esc(group)} (linear mixed model, {r.n_listeners} listeners), the condition effect: "
                    f"likelihood ratio χ²({e['df1']}) = {e['lr_chi2']:.2f}, {_p(e['p'])}."
                )
            if not (e["p_chosen"] < 0.05):
                text = text.replace(
                    "the systems differed", "the systems did not differ significantly"
                )
            out.append(f"<p>{text}")
            fr = r.friedman.iloc[0]
            if not math.isnan(fr["chi2"]):
                out.append(
                    f" Friedman χ²({int(fr['df'])}) = {fr['chi2']:.2f}, {_p(fr['p'])}, Kendall's W = {fr['kendall_w']:.2f}."
                )
            res = r.residuals
            out.append(
                f" Residuals: skewness {res['skewness']:.2f} ({esc(res['skewness_verdict'])}), excess kurtosis {res['excess_kurtosis']:.2f}, "
                f"multimodality coefficient {_fmt(res['multimodality_coefficient'], 2)}.</p>"
            )
        for note in r.notes:
            out.append(f"<p class='note'>{esc(note)}</p>")
        columns = (
            [
                "effect",
                "df1",
                "df2",
                "F",
                "p",
                "eps_gg",
                "eps_hf",
                "df1_hf",
                "df2_hf",
                "p_hf",
                "mv_F",
                "mv_df1",
                "mv_df2",
                "p_mv",
                "chosen",
                "p_chosen",
                "chosen_reason",
                "partial_eta2",
            ]
            if r.method == "rm_anova"
            else ["effect", "df1", "lr_chi2", "p"]
        )
        out.append(_table(r.effects, columns, 3))
    if not a.omnibus:
        out.append("<p>No omnibus test was possible.</p>")

    out.append("<h3>Planned comparisons</h3>")
    if a.comparisons.empty:
        out.append("<p>No planned comparisons were run.</p>")
    else:
        for r in a.comparisons.itertuples():
            verdict = "significant" if r.p_t_adj < 0.05 else "not significant"
            equiv = (
                f"; equivalent within ±{r.margin:g} points (TOST {_p(r.p_tost)})"
                if r.p_tost < 0.05
                else ""
            )
            out.append(
                f"<p>{esc(str(r.group))}: {esc(r.a)} vs {esc(r.b)} — mean difference {r.mean_diff:+.1f} points (95 % CI {r.ci_low:+.1f} to {r.ci_high:+.1f}), "
                f"t({r.df}) = {r.t:.2f}, {esc(c.correction.capitalize())}-adjusted {_p(r.p_t_adj)} ({verdict}); Wilcoxon adjusted {_p(r.p_wilcoxon_adj)}; "
                f"median difference {r.median_diff:+.1f}, permutation adjusted {_p(r.p_permutation_adj)}; d<sub>z</sub> = {r.d_z:.2f}, r<sub>rb</sub> = {r.rank_biserial:.2f}{equiv}.</p>"
            )
        out.append(
            _table(
                a.comparisons,
                [
                    "group",
                    "a",
                    "b",
                    "kind",
                    "n_listeners",
                    "mean_diff",
                    "ci_low",
                    "ci_high",
                    "t",
                    "p_t_adj",
                    "p_wilcoxon_adj",
                    "p_permutation_adj",
                    "d_z",
                    "rank_biserial",
                    "p_tost",
                    "p_noninferiority",
                ],
                3,
            )
        )
        for key in ("distilled_vs_non_distilled", "compressed_vs_full", "other_comparisons"):
            if key in figs:
                out.append(
                    _img(
                        figs[key],
                        "Paired mean differences with 95 % CIs over listeners; the shaded band is the equivalence margin.",
                    )
                )

    out.append("<h3>Objective metrics and scores</h3>")
    if a.correlations.empty:
        out.append("<p>No objective metrics available.</p>")
    else:
        overall = a.correlations[(a.correlations["scope"] == "overall")]
        spearman = (
            overall[overall["method"] == "spearman"]
            .dropna(subset=["r"])
            .reindex(columns=["metric", "n", "r", "p", "ci_low", "ci_high"])
        )
        if not spearman.empty:
            strongest = spearman.iloc[spearman["r"].abs().argmax()]
            out.append(
                f"<p>Across {int(strongest['n'])} system stimuli, the objective metric most related to the mean score is {esc(str(strongest['metric']))} "
                f"(Spearman ρ = {strongest['r']:.2f}, bootstrap 95 % CI {strongest['ci_low']:.2f} to {strongest['ci_high']:.2f}). "
                "Pearson, Spearman and Kendall correlations overall and within each item are in <code>correlations.csv</code>.</p>"
            )
        out.append(
            _table(
                overall.pivot_table(index="metric", columns="method", values="r")
                .rename_axis(columns=None)
                .reset_index(),
                ["metric", "pearson", "spearman", "kendall"],
                2,
            )
        )
        for key in (f"scatter_{m}" for m in SCATTER_METRICS):
            if key in figs:
                out.append(
                    _img(
                        figs[key],
                        "Mean score per stimulus against an objective metric (systems only).",
                    )
                )
    if not a.cost.empty:
        out.append("<h3>Cost: the perceptual Pareto front</h3>")
        front = a.cost[a.cost["pareto_bytes"]].sort_values("bytes")
        if not front.empty:
            out.append(
                "<p>Models on the size–quality Pareto front (no other model is both smaller and better): "
                + esc(
                    ", ".join(
                        f"{r.condition} ({r.group}, {int(r.bytes)} bytes, {r.mean:.1f})"
                        for r in front.itertuples()
                    )
                )
                + ".</p>"
            )
        out.append(
            _table(
                a.cost,
                [
                    "group",
                    "condition",
                    "recipe",
                    "bits",
                    "width",
                    "bytes",
                    "rtf_offline",
                    "mean",
                    "ci_low",
                    "ci_high",
                    "pareto_bytes",
                    "pareto_rtf",
                ],
                2,
            )
        )
        for key in ("pareto_bytes", "pareto_rtf_offline"):
            if key in figs:
                out.append(
                    _img(
                        figs[key],
                        "Mean score with 95 % CI against model cost; the dashed line joins the Pareto front.",
                    )
                )

    out.append("<h2>BS.1534-3 §10 checklist</h2><ul class='check'>")
    out.append(
        f"<li>Listeners before / after post-screening: {n_before} / {n_after}; screening rules and thresholds stated above, with a figure.</li>"
    )
    out.append(
        f"<li>Anchors: {esc(', '.join(anchors)) if anchors else 'none found in the ratings'}.</li>"
    )
    out.append(f"<li>Material: {len(items)} items ({esc(', '.join(map(str, items)))}).</li>")
    out.append(
        f"<li>Statistics: median and IQR, mean with {esc(ci_text)}, omnibus and planned comparisons as described, correction {esc(c.correction)}.</li>"
    )
    out.append(
        "<li>Design detail to repeat the test: numbers.json holds every number, the configuration, seeds and software versions.</li></ul>"
    )
    if a.notes:
        out.append("<h3>Notes</h3><ul>" + "".join(f"<li>{esc(n)}</li>" for n in a.notes) + "</ul>")
    versions = software_versions()
    out.append(
        "<p><small>Software: "
        + esc(", ".join(f"{k} {val}" for k, val in versions.items()))
        + ".</small></p>"
    )
    out.append("</body></html>")
    return "\n".join(out)


def write_report(analysis: Analysis, out_dir: Path | str) -> Path:
    """Write the report folder; returns its path.

    It is built beside ``out_dir`` and swapped in at the end (:func:`common.outputs.output_folder`),
    so a failed run leaves the previous report as it was. An existing ``out_dir`` is replaced only
    when it is an earlier report holding nothing else; anything else (a folder of the user's, the
    ratings file) is refused with an OutputError naming it, and nothing is deleted.
    """
    out_dir = Path(out_dir)
    with output_folder(out_dir, "report", OutputError) as staging:
        figs = _figures(analysis, staging / "figures")
        a = analysis
        a.screening.listeners.to_csv(staging / "screening.csv", index=False)
        a.screening.outliers.to_csv(staging / "screening_outliers.csv", index=False)
        a.validation.issues.to_csv(staging / "validation.csv", index=False)
        pd.concat(
            [
                a.descriptives.assign(level="condition"),
                a.descriptives_by_item.assign(level="condition_item"),
            ],
            ignore_index=True,
        ).to_csv(staging / "descriptives.csv", index=False)
        omni_rows = []
        for group, r in a.omnibus.items():
            omni_rows.append(r.effects.assign(group=group, test="omnibus_" + r.method))
            omni_rows.append(r.friedman.assign(group=group, test="friedman", effect="condition"))
        tests = (
            pd.concat(
                [a.comparisons.assign(test="planned_comparison"), *omni_rows], ignore_index=True
            )
            if (len(a.comparisons) or omni_rows)
            else pd.DataFrame()
        )
        tests.to_csv(staging / "tests.csv", index=False)
        a.objective.to_csv(staging / "objective.csv", index=False)
        a.correlations.to_csv(staging / "correlations.csv", index=False)
        a.cost.to_csv(staging / "cost.csv", index=False)
        (staging / "tables.tex").write_text(_tables_tex(a), encoding="utf-8")
        (staging / "numbers.json").write_text(
            json.dumps(numbers(a), indent=1, allow_nan=False), encoding="utf-8"
        )
        (staging / "report.html").write_text(_html(a, figs), encoding="utf-8")
    log.info("report written to %s", out_dir)
    return out_dir
