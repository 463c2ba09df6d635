"""The study's figures: the improvement by distillation against student size (the paper's Fig. 3),
test error and streaming speed against width, and error against size and speed (Pareto) — means
over seeds with 95 % intervals as error bars; written atomically, never half an image."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

from common.outputs import write_file_atomic  # noqa: E402
from models.errors import OutputError  # noqa: E402
from models.nets.architectures import find as find_arch  # noqa: E402
from models.studies.recipes.builtin import find, names  # noqa: E402
from models.studies.tables import METRIC_NAMES, pareto_points  # noqa: E402


def _save_figure(fig, path: Path) -> None:
    """Render the figure in memory and write it atomically: never a half-written image."""
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=120, format=path.suffix.lstrip("."))
    plt.close(fig)
    write_file_atomic(path, buffer.getvalue(), OutputError)


def comparison_figure(table: pd.DataFrame, path: Path) -> None:
    """Improvement of distilled over non-distilled vs student size: a row per dataset, a column per
    metric, a line per teacher (and kd variant); error bars are the 95 % paired-by-seed intervals
    where a point has two seeds or more."""
    datasets = sorted(table["dataset"].unique())
    metrics = [m for m in METRIC_NAMES if m in set(table["metric"])]
    uncertain = bool((table["seeds"] >= 2).any())
    fig, axes = plt.subplots(len(datasets), len(metrics), figsize=(3.2 * len(metrics), 2.8 * len(datasets)),
                             squeeze=False, sharex=True)
    for i, dataset in enumerate(datasets):
        for j, metric in enumerate(metrics):
            ax = axes[i][j]
            sub = table[(table["dataset"] == dataset) & (table["metric"] == metric)]
            for (teacher, variant), line in sub.groupby(["teacher", "variant"]):
                line = line.sort_values("student_units")
                label = teacher if variant in names() else f"{teacher} ({variant})"  # an entry's own name
                drawn, = ax.plot(line["student_units"], line["improvement_pct"], marker="o", label=label)
                ci = line.dropna(subset=["improvement_ci95_low_pct", "improvement_ci95_high_pct"])
                if len(ci):
                    ax.errorbar(ci["student_units"], ci["improvement_pct"], fmt="none", ecolor=drawn.get_color(),
                                capsize=3, linewidth=0.9,
                                yerr=[ci["improvement_pct"] - ci["improvement_ci95_low_pct"],
                                      ci["improvement_ci95_high_pct"] - ci["improvement_pct"]])
            ax.axhline(0.0, color="0.5", linewidth=0.8)
            ax.set_xscale("log", base=2)
            units = sorted(table["student_units"].unique())
            ax.set_xticks(units, [str(u) for u in units])
            ax.minorticks_off()
            # Half an octave either side: a lone student size would otherwise get a degenerate axis.
            ax.set_xlim(units[0] / 2 ** 0.5, units[-1] * 2 ** 0.5)
            ax.set_title(f"{dataset}: {METRIC_NAMES.get(metric, metric)}", fontsize=9)
            if j == 0:
                ax.set_ylabel("improvement by KD (%)" if uncertain else "improvement by KD (%, 1 seed)")
            if i == len(datasets) - 1:
                ax.set_xlabel("student units U (S-U-8)")
    axes[0][0].legend(fontsize=7, title="teacher", title_fontsize=7)
    if uncertain:
        fig.suptitle("mean over seeds, bars: 95 % CI of the paired (same-seed) improvement", fontsize=8)
    fig.tight_layout()
    _save_figure(fig, path)


def width_sweep_figure(table: pd.DataFrame, path: Path) -> None:
    """Test ESR and streaming real-time factor against width: a line per slimmable network (and
    variant), hollow markers for independently trained networks of the same layout; means over
    seeds, error bars the 95 % t-interval of the test ESR over seeds where a point has two or more."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), squeeze=False)
    many_variants = table.groupby(["dataset", "model"])["variant"].nunique().max() > 1
    for (dataset, model, variant), group in table.groupby(["dataset", "model", "variant"]):
        group = group.sort_values("width")
        name = model if table["dataset"].nunique() == 1 else f"{dataset}: {model}"
        name = f"{name} ({variant})" if many_variants else name
        for ax, column in ((axes[0][0], "test_esr"), (axes[0][1], "rtf_stream")):
            line, = ax.plot(100 * group["width"], group[column], marker="o", label=f"{name} (slimmable)")
            independent = group[group["independent_seeds"] > 0]
            if len(independent):
                ax.scatter(100 * independent["width"], independent[f"independent_{column}"], marker="s",
                           facecolors="none", edgecolors=line.get_color(), s=48, zorder=3,
                           label=f"{name} widths trained alone")
            if column != "test_esr":
                continue
            for prefix, points in (("", group), ("independent_", independent)):
                ci = points.dropna(subset=[f"{prefix}test_esr_ci95_low", f"{prefix}test_esr_ci95_high"])
                if len(ci):
                    mean = ci[f"{prefix}test_esr"]
                    ax.errorbar(100 * ci["width"], mean, fmt="none", ecolor=line.get_color(), capsize=3,
                                linewidth=0.9, yerr=[mean - ci[f"{prefix}test_esr_ci95_low"],
                                                     ci[f"{prefix}test_esr_ci95_high"] - mean])
    axes[0][0].set_yscale("log")
    counts = sorted(set(table["slimmable_seeds"]) | set(table.loc[table["independent_seeds"] > 0, "independent_seeds"]))
    if counts and counts[-1] >= 2:
        seeds = f"{counts[0]}–{counts[-1]} seeds" if len(counts) > 1 else f"{counts[0]} seeds"
        axes[0][0].set_ylabel("test ESR")
        fig.suptitle(f"mean over {seeds}, bars: 95 % CI of the test ESR over seeds", fontsize=8)
    else:
        axes[0][0].set_ylabel("test ESR (1 seed: no uncertainty)")
    axes[0][1].set_ylabel("streaming real-time factor (×, one thread)")
    for ax in axes[0]:
        ax.set_xlabel("width (% of channels / units)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    _save_figure(fig, path)


def family_colour(recipe: str) -> str:
    """A recipe family's colour in the figures (grey for a recipe no longer registered)."""
    found = find(recipe)
    return found.colour if found is not None else "0.3"


def _point_label(row: pd.Series) -> str:
    """A run's name beside its marker: the size label where it names the model (``16-8``), else
    the model label (WaveNet presets share channel counts)."""
    architecture = find_arch(row["arch"])
    name = row["layers"] if architecture is None or architecture.size_names_model else row["model"]
    return f"{name}" + (f" q{int(row['bits'])}" if row["bits"] < 32 else "")


def pareto_figure(runs: pd.DataFrame, path: Path) -> None:
    """Error against size and against streaming speed: one marker per model, families coloured;
    markers are means over seeds, error bars the 95 % t-interval of the test ESR over seeds where a
    model has two or more."""
    points = pareto_points(runs)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), squeeze=False)
    for ax, column, label in ((axes[0][0], "bytes", "size (bytes, packed)"),
                              (axes[0][1], "rtf_stream", "streaming real-time factor (×)")):
        for family, group in points.groupby("recipe"):
            ax.scatter(group[column], group["test_esr"], label=family, color=family_colour(family),
                       edgecolor="black", linewidth=0.4, s=36, zorder=3)
            ci = group.dropna(subset=["test_esr_ci95_low", "test_esr_ci95_high"])
            if len(ci):
                ax.errorbar(ci[column], ci["test_esr"], fmt="none", ecolor=family_colour(family), capsize=2,
                            linewidth=0.8, zorder=2, yerr=[ci["test_esr"] - ci["test_esr_ci95_low"],
                                                           ci["test_esr_ci95_high"] - ci["test_esr"]])
            for _, row in group.iterrows():
                ax.annotate(_point_label(row), (row[column], row["test_esr"]), fontsize=6, xytext=(3, 3),
                            textcoords="offset points")
        ax.set_xscale("log")
        ax.set_yscale("log")
        # Minor tick labels of a log axis spanning less than two decades run into each other.
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 3.0, 5.0, 7.0)))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v / 1000:g}k" if v >= 1000 else f"{v:g}"))
        ax.set_xlabel(label)
        ax.set_ylabel("test ESR")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=7, title="recipe", title_fontsize=7)
    counts = sorted(set(points["seeds"])) if len(points) else [1]
    seeds = f"{counts[0]}–{counts[-1]} seeds" if len(counts) > 1 else f"{counts[0]} seed" + "s" * (counts[0] != 1)
    fig.suptitle(f"mean over {seeds} per model, bars: 95 % CI of the test ESR over seeds" if counts[-1] >= 2
                 else "1 seed per model: no uncertainty", fontsize=8)
    fig.tight_layout()
    _save_figure(fig, path)
