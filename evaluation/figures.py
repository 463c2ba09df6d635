"""Report figures (matplotlib, Agg). Each function returns a Figure; the report saves it.

Boxplots use the Tukey hinges of :mod:`evaluation.screening` (what BS.1534-3 asks for), not
matplotlib's percentile quartiles. Colours are the Okabe–Ito palette (colour-blind safe); markers
also differ, so nothing depends on colour alone.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from common.bs1534 import tukey_hinges  # noqa: E402
from common.stimulus_set import ROLE_ORDER  # noqa: E402

OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
_BANDS = ((80, "Excellent"), (60, "Good"), (40, "Fair"), (20, "Poor"), (0, "Bad"))


def condition_order(ratings: pd.DataFrame) -> list[str]:
    """Hidden reference first, then systems by descending mean, then the anchors."""
    means = ratings.groupby("condition", observed=True).agg(
        role=("role", "first"), mean=("score", "mean")
    )
    means["rank"] = means["role"].map(ROLE_ORDER).fillna(1)
    return means.sort_values(["rank", "mean"], ascending=[True, False]).index.tolist()


def _mushra_axis(ax, horizontal_labels: bool = False) -> None:
    ax.set_ylim(-2, 102)
    ax.set_yticks([0, 20, 40, 60, 80, 100])
    for lower, label in _BANDS:
        ax.axhline(lower, color="0.85", lw=0.6, zorder=0)
        ax.text(
            1.005,
            (lower + 10) / 104 + 0.02 / 1.04,
            label,
            transform=ax.transAxes,
            fontsize=7,
            color="0.4",
            va="center",
        )
    ax.set_ylabel("score")


def _wants_log(values: np.ndarray) -> bool:
    """Log axis for positive values spanning more than a factor of 30."""
    finite = values[np.isfinite(values)]
    return finite.size > 1 and bool(np.all(finite > 0)) and finite.max() / finite.min() > 30


def _box_stats(scores: np.ndarray, label: str, factor: float = 1.5) -> dict:
    scores = np.sort(scores[~np.isnan(scores)])
    q1, _, q3 = tukey_hinges(scores)
    iqr = q3 - q1
    low, high = q1 - factor * iqr, q3 + factor * iqr
    inside = scores[(scores >= low) & (scores <= high)]
    return {
        "label": label,
        "med": float(np.median(scores)),
        "q1": q1,
        "q3": q3,
        "whislo": float(inside.min()) if inside.size else q1,
        "whishi": float(inside.max()) if inside.size else q3,
        "fliers": scores[(scores < low) | (scores > high)],
        "mean": float(scores.mean()),
    }


def boxplots(ratings: pd.DataFrame, *, group_column: str = "group") -> Figure:
    """One panel per group: a boxplot per condition over all ratings (Tukey hinges, 1.5·IQR
    whiskers, outliers as points) with the mean as a white diamond."""
    groups = sorted(pd.unique(ratings[group_column])) if group_column in ratings else [None]
    fig, axes = plt.subplots(len(groups), 1, figsize=(8, 2.8 * len(groups) + 0.6), squeeze=False)
    for ax, group in zip(axes[:, 0], groups, strict=True):
        part = ratings if group is None else ratings[ratings[group_column] == group]
        order = condition_order(part)
        stats = [
            _box_stats(part.loc[part["condition"] == c, "score"].to_numpy(float), c) for c in order
        ]
        ax.bxp(
            stats,
            showmeans=True,
            meanprops={"marker": "D", "markerfacecolor": "white", "markeredgecolor": "black"},
            medianprops={"color": OKABE_ITO[3]},
            flierprops={"marker": "o", "markersize": 3},
        )
        _mushra_axis(ax)
        ax.set_title(
            f"group {group}" if group is not None else "all conditions", fontsize=9, loc="left"
        )
        ax.tick_params(axis="x", labelrotation=20, labelsize=8)
    fig.suptitle("Scores per condition (all ratings after screening)", fontsize=10)
    fig.tight_layout()
    return fig


def means_by_item(
    by_item: pd.DataFrame, overall: pd.DataFrame, *, group_column: str = "group"
) -> Figure:
    """Mean ± CI per condition × item (small markers, one per item) and over all items (black)."""
    groups = sorted(pd.unique(overall[group_column])) if group_column in overall else [None]
    fig, axes = plt.subplots(len(groups), 1, figsize=(8, 2.8 * len(groups) + 0.8), squeeze=False)
    items = sorted(pd.unique(by_item["item"]))
    for ax, group in zip(axes[:, 0], groups, strict=True):
        o = overall if group is None else overall[overall[group_column] == group]
        b = by_item if group is None else by_item[by_item[group_column] == group]
        ranked = o.assign(rank=o["role"].map(ROLE_ORDER).fillna(1) if "role" in o else 1)
        order = ranked.sort_values(["rank", "mean"], ascending=[True, False])["condition"].tolist()
        x = {c: i for i, c in enumerate(order)}
        width = 0.6
        for k, item in enumerate(items):
            part = b[b["item"] == item]
            offset = -width / 2 + width * (k + 0.5) / max(len(items), 1)
            xs = [x[c] + offset for c in part["condition"] if c in x]
            part = part[part["condition"].isin(x)]
            ax.errorbar(
                xs,
                part["mean"],
                yerr=[part["mean"] - part["ci_low"], part["ci_high"] - part["mean"]],
                fmt=MARKERS[k % len(MARKERS)],
                ms=3,
                lw=0.8,
                color=OKABE_ITO[k % len(OKABE_ITO)],
                label=str(item) if group == groups[0] and len(items) <= 12 else None,
                alpha=0.8,
            )
        ax.errorbar(
            [x[c] for c in o["condition"]],
            o["mean"],
            yerr=[o["mean"] - o["ci_low"], o["ci_high"] - o["mean"]],
            fmt="_",
            ms=14,
            mew=2,
            lw=2,
            color="black",
            capsize=4,
            label="all items" if group == groups[0] else None,
        )
        ax.set_xticks(range(len(order)), order, rotation=20, fontsize=8)
        _mushra_axis(ax)
        ax.set_title(f"group {group}" if group is not None else "", fontsize=9, loc="left")
    label = overall["ci_over"].iloc[0] if len(overall) else "listeners"
    method = overall["ci_method"].iloc[0] if len(overall) else "t"
    fig.suptitle(
        f"Mean with 95 % CI ({method}-based, over {label}) per condition and item", fontsize=10
    )
    handles, labels = axes[0, 0].get_legend_handles_labels()
    if handles:
        fig.legend(
            handles, labels, loc="lower center", ncol=min(len(labels), 7), fontsize=7, frameon=False
        )
    fig.tight_layout(rect=(0, 0.06 if handles else 0, 1, 1))
    return fig


def screening_figure(
    ratings: pd.DataFrame,
    listeners: pd.DataFrame,
    *,
    hidden_below: float = 90.0,
    anchor_above: float = 90.0,
) -> Figure:
    """Each listener's hidden-reference and mid-anchor scores; excluded listeners marked."""
    panels = [("hidden_reference", "hidden reference", hidden_below)]
    if (ratings["role"] == "anchor_mid").any():
        panels.append(("anchor_mid", "mid anchor (7 kHz)", anchor_above))
    order = listeners.sort_values(["excluded", "participant"])["participant"].tolist()
    x = {p: i for i, p in enumerate(order)}
    excluded = set(listeners.loc[listeners["excluded"], "participant"])
    fig, axes = plt.subplots(
        len(panels),
        1,
        figsize=(min(12.0, max(6.0, 0.22 * len(order) + 2)), 2.6 * len(panels) + 0.6),
        squeeze=False,
    )
    rng = np.random.default_rng(0)
    for ax, (role, title, threshold) in zip(axes[:, 0], panels, strict=True):
        part = ratings[(ratings["role"] == role) & ratings["participant"].isin(x)]
        xs = part["participant"].map(x).to_numpy(float) + rng.uniform(-0.2, 0.2, len(part))
        bad = part["participant"].isin(excluded).to_numpy()
        ax.scatter(
            xs[~bad],
            part["score"].to_numpy()[~bad],
            s=8,
            color=OKABE_ITO[0],
            marker="o",
            label="kept listener",
        )
        ax.scatter(
            xs[bad],
            part["score"].to_numpy()[bad],
            s=14,
            color=OKABE_ITO[3],
            marker="x",
            label="excluded listener",
        )
        ax.axhline(threshold, color="black", ls="--", lw=0.8)
        for p in excluded & set(x):
            ax.axvspan(x[p] - 0.5, x[p] + 0.5, color=OKABE_ITO[3], alpha=0.08, lw=0)
        ax.set_ylim(-2, 102)
        ax.set_ylabel("score")
        ax.set_title(f"{title}: rule threshold {threshold:g}", fontsize=9, loc="left")
        if len(order) <= 40:
            ax.set_xticks(range(len(order)), order, rotation=90, fontsize=6)
        else:
            # A large panel: name only the excluded listeners (the shaded columns).
            marked = [p for p in order if p in excluded]
            ax.set_xticks([x[p] for p in marked], marked, rotation=90, fontsize=6)
            ax.set_xlabel(f"{len(order)} listeners (kept first, excluded named)", fontsize=8)
        ax.set_xlim(-0.8, len(order) - 0.2)
        ax.legend(fontsize=7, loc="lower left")
    fig.suptitle("Post-screening (BS.1534-3 §4.1.2)", fontsize=10)
    fig.tight_layout()
    return fig


def differences_figure(comparisons: pd.DataFrame, *, kind: str | None = None) -> Figure:
    """Paired mean difference a − b with 95 % CI per comparison, the ±margin band shaded."""
    rows = comparisons if kind is None else comparisons[comparisons["kind"] == kind]
    labels = [f"{r.group}: {r.a} − {r.b}" for r in rows.itertuples()]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.9))
    y = np.arange(len(rows))[::-1]
    margin = float(rows["margin"].iloc[0]) if len(rows) else 5.0
    ax.axvspan(
        -margin, margin, color="0.9", zorder=0, label=f"±{margin:g} points (equivalence margin)"
    )
    ax.axvline(0, color="black", lw=0.8)
    ax.errorbar(
        rows["mean_diff"],
        y,
        xerr=[rows["mean_diff"] - rows["ci_low"], rows["ci_high"] - rows["mean_diff"]],
        fmt="o",
        color=OKABE_ITO[0],
        capsize=3,
    )
    for yi, r in zip(y, rows.itertuples(), strict=True):
        star = "*" if r.p_t_adj < 0.05 else ""
        ax.annotate(
            f"{r.mean_diff:+.1f}{star}",
            (r.ci_high, yi),
            xytext=(4, 4),
            textcoords="offset points",
            fontsize=7,
        )
    low = min(float(rows["ci_low"].min()), -margin) if len(rows) else -margin
    high = max(float(rows["ci_high"].max()), margin) if len(rows) else margin
    pad = 0.15 * (high - low)
    ax.set_xlim(low - pad, high + pad)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlabel("paired mean difference (points), 95 % CI over listeners")
    fig.legend(loc="lower center", fontsize=7, frameon=False)
    title = {
        "distilled_vs_non_distilled": "Distilled minus non-distilled, per student",
        "compressed_vs_full": "Compressed minus full-precision counterpart",
    }.get(kind or "", "Planned comparisons")
    ax.set_title(f"{title} (* adjusted p < 0.05)", fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig


def objective_scatter(joined: pd.DataFrame, metric: str, correlation: dict | None = None) -> Figure:
    """Per-stimulus mean score against an objective metric, one marker per condition."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for k, (condition, part) in enumerate(joined.groupby("condition", sort=True)):
        ax.scatter(
            part[metric],
            part["mean_score"],
            s=18,
            marker=MARKERS[k % len(MARKERS)],
            color=OKABE_ITO[k % len(OKABE_ITO)],
            label=str(condition),
        )
    values = joined[metric].to_numpy(float)
    if _wants_log(values):
        ax.set_xscale("log")
    ax.set_xlabel(metric)
    ax.set_ylabel("mean score per stimulus")
    ax.set_ylim(-2, 102)
    title = f"Mean score vs {metric}"
    if correlation:
        title += f" (Spearman ρ = {correlation['r']:.2f}, 95 % CI {correlation['ci_low']:.2f}…{correlation['ci_high']:.2f})"
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def pareto_figure(view: pd.DataFrame, cost: str, flag: str, label: str) -> Figure:
    """Mean score ± CI against a cost per model; the perceptual Pareto front joined by a line."""
    fig, ax = plt.subplots(figsize=(6, 4))
    data = view[np.isfinite(view[cost].astype(float))]
    for k, (group, part) in enumerate(
        data.groupby("group", sort=True) if "group" in data else [("all", data)]
    ):
        ax.errorbar(
            part[cost],
            part["mean"],
            yerr=[part["mean"] - part["ci_low"], part["ci_high"] - part["mean"]],
            fmt=MARKERS[k % len(MARKERS)],
            color=OKABE_ITO[k % len(OKABE_ITO)],
            capsize=3,
            label=str(group),
        )
        for r in part.itertuples():
            ax.annotate(
                str(r.condition),
                (getattr(r, cost), r.mean),
                fontsize=6,
                xytext=(3, 3),
                textcoords="offset points",
            )
    front = data[data[flag]].sort_values(cost)
    ax.plot(front[cost], front["mean"], color="black", lw=1, ls="--", label="Pareto front")
    if _wants_log(data[cost].to_numpy(float)):
        ax.set_xscale("log")
    ax.set_xlabel(label)
    ax.set_ylabel("mean score (95 % CI over listeners)")
    ax.set_ylim(-2, 102)
    ax.set_title(f"Perceptual cost view: score vs {label}", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
