"""Studies: one YAML file expands into datasets × teachers × students × recipes × seeds.

``run_study`` trains only what is missing (finished runs are read back, interrupted ones
resumed), then writes ``runs.csv`` and the paper's comparison: per dataset, teacher and student
size, distilled vs non-distilled per metric with the improvement in %.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

from common.outputs import write_file_atomic  # noqa: E402
from models.config import from_dict, load_yaml, to_dict  # noqa: E402
from models.data.datasets import DatasetConfig  # noqa: E402
from models.errors import ConfigError, OutputError  # noqa: E402
from models.nets.architectures import find as find_arch  # noqa: E402
from models.nets.architectures import label as net_label  # noqa: E402
from models.nets.architectures import macs_per_sample, of, student_config  # noqa: E402
from models.nets.lstm import LSTMConfig  # noqa: E402
from models.nets.slimmable import SlimmableConfig  # noqa: E402
from models.processes import study_lock, watch_parent  # noqa: E402
from models.studies import paired  # noqa: E402
from models.studies.recipes.builtin import Expansion, find, names  # noqa: E402
from models.studies.recipes.builtin import get as recipe_named  # noqa: E402
from models.studies.recipes.builtin import of as recipe_of  # noqa: E402
from models.studies.runs import RunConfig, execute_run, is_complete  # noqa: E402
from models.training.distill import DistillConfig  # noqa: E402
from models.training.loop import TrainingConfig  # noqa: E402

log = logging.getLogger(__name__)

RUNS_COLUMNS = [
    "run_id", "dataset", "arch", "model", "layers", "recipe", "teacher", "bits", "width", "params", "bytes",
    "macs_per_sample", "epochs", "test_mae", "test_mse", "test_esr", "test_esr_pre", "test_mrstft",
    "rtf_offline", "rtf_stream",
]
COMPARED_METRICS = ["test_mae", "test_mse", "test_esr", "test_esr_pre", "test_mrstft"]


@dataclass(frozen=True)
class TeacherSpec:
    """A teacher: trained with the baseline recipe, then distilled from. ``training`` overrides
    keys of the study's ``teacher_training``/``training`` for this teacher only."""

    name: str
    layers: tuple[int, ...]
    training: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RecipeSpec:
    """How students are trained.

    ``baseline``: task loss only. ``kd``: plus distillation from each teacher (``teachers`` limits
    which; default all) with the ``distill`` options. Quantized recipes, one run per entry of
    ``bits``, start from the fp32 run of the same student made by the recipe named in ``source``:
    ``ptq`` quantizes it as it is, ``qat`` fine-tunes through the quantizer (straight-through
    gradients to fp32 shadow weights), ``kd_qat`` does that with the distillation loss of a kd
    source's teacher added (quantized distillation). ``slimmable`` trains one network at widths
    drawn per mini-batch (``slimmable`` options) and makes each of its ``widths`` below 1 a run of
    its own, cut from it. ``students`` limits the recipe to students with these labels (``S-16-8``,
    ``WN-slimmable``); by default it applies to every student it can (distillation to LSTM
    students, slimming to full-width ones). ``training`` overrides the study's training settings
    for this recipe (e.g. a shorter fine-tuning budget). ``recipe`` names a registered recipe
    (:mod:`models.studies.recipes`), which validates the rest of the entry.
    """

    recipe: str
    name: str | None = None
    teachers: tuple[str, ...] | None = None
    distill: DistillConfig = field(default_factory=DistillConfig)
    bits: tuple[int, ...] = ()
    source: str | None = None
    training: dict[str, Any] = field(default_factory=dict)
    students: tuple[str, ...] | None = None
    slimmable: SlimmableConfig | None = None

    def __post_init__(self) -> None:
        recipe_named(self.recipe).validate_spec(self)

    @property
    def label(self) -> str:
        return self.name or self.recipe

    def applies_to(self, student: Any) -> bool:
        """Whether this recipe makes runs of ``student`` (see the class docstring)."""
        if self.students is not None:
            return net_label(student) in self.students
        return recipe_named(self.recipe).applies_to(student)


@dataclass(frozen=True)
class StudyConfig:
    name: str
    datasets: tuple[DatasetConfig, ...]
    students: tuple[dict[str, Any], ...]
    """Network configs as a registered architecture reads them: ``{layers: [16, 8]}`` (an LSTM
    stack, the default ``arch``), ``{arch: wavenet, preset: nano}``, ``{arch: nam_lstm, …}``."""
    teachers: tuple[TeacherSpec, ...] = ()
    recipes: tuple[RecipeSpec, ...] = (RecipeSpec("baseline"),)
    seeds: tuple[int, ...] = (0,)
    conditioning: Literal["film", "concat"] = "film"
    training: dict[str, Any] = field(default_factory=dict)
    teacher_training: dict[str, Any] = field(default_factory=dict)
    output_dir: str | None = None

    def __post_init__(self) -> None:
        for i, entry in enumerate(self.students):
            student_config(entry, self.conditioning, f"students[{i}]")  # refuses a bad entry now
        names = [d.name for d in self.datasets]
        if len(set(names)) != len(names):
            raise ConfigError(f"study {self.name!r}: dataset names must be unique, found {names}")
        teacher_names = {t.name for t in self.teachers}
        for recipe in self.recipes:
            recipe_named(recipe.recipe).validate_in_study(recipe, self)
            unknown = set(recipe.teachers or ()) - teacher_names
            if unknown:
                raise ConfigError(f"study {self.name!r}: recipe {recipe.label!r} names unknown teacher(s) "
                                  f"{sorted(unknown)} (known: {sorted(teacher_names)})")
        student_labels = [net_label(net) for net in self.nets()]
        for recipe in self.recipes:
            unknown = sorted(set(recipe.students or ()) - set(student_labels))
            if unknown:
                raise ConfigError(f"study {self.name!r}: recipe {recipe.label!r} names unknown student(s) {unknown} "
                                  f"(known: {student_labels})")
            for net in self.nets():
                if recipe.students and net_label(net) in recipe.students:
                    recipe_named(recipe.recipe).validate_student(recipe, net, self)
        labels = [r.label for r in self.recipes]
        if len(set(labels)) != len(labels):
            raise ConfigError(f"study {self.name!r}: recipe names must be unique, found {labels}")
        by_label = {r.label: r for r in self.recipes}
        for recipe in self.recipes:
            if recipe.source is None:
                continue
            source = by_label.get(recipe.source)
            if source is None or not recipe_named(source.recipe).source_of_others:
                sources = [n for n in names() if recipe_named(n).source_of_others]
                raise ConfigError(f"study {self.name!r}: recipe {recipe.label!r} has source {recipe.source!r}, "
                                  f"expected the name of a {' or '.join(sources)} recipe of this study ({labels})")
            recipe_named(recipe.recipe).validate_source(recipe, source, self)

    def nets(self) -> list[Any]:
        """The students' network configs."""
        return [student_config(entry, self.conditioning, f"students[{i}]") for i, entry in enumerate(self.students)]


def load_study(path: str | Path) -> StudyConfig:
    study = from_dict(StudyConfig, load_yaml(path), where=str(path))
    # Validate the training dictionaries now, not when the first run reaches them.
    _training(study.training, {}, f"{path}: training")
    _training(study.training, study.teacher_training, f"{path}: teacher_training")
    for teacher in study.teachers:
        _training(study.training, {**study.teacher_training, **teacher.training}, f"{path}: teacher {teacher.name}")
    for recipe in study.recipes:
        _training(study.training, recipe.training, f"{path}: recipe {recipe.label} training")
    return study


def _training(base: dict[str, Any], override: dict[str, Any], where: str) -> TrainingConfig:
    return from_dict(TrainingConfig, {**base, **override}, where=where)


def study_dir(study: StudyConfig, root: Path = Path("results/zoo")) -> Path:
    return Path(study.output_dir) if study.output_dir else root / study.name


def expand(study: StudyConfig) -> list[RunConfig]:
    """All runs of the study in an order where every teacher precedes its students; no duplicates
    (a small teacher equal to a baseline student is one run)."""
    runs: dict[str, RunConfig] = {}
    for dataset in study.datasets:
        for seed in study.seeds:
            teacher_runs: dict[str, RunConfig] = {}
            for teacher in study.teachers:
                training = _training(study.training, {**study.teacher_training, **teacher.training}, "teacher")
                run = RunConfig(dataset=dataset, model=LSTMConfig(layers=teacher.layers, conditioning=study.conditioning),
                                training=training, seed=seed)
                teacher_runs[teacher.name] = run
                runs.setdefault(run.run_id, run)
            for net in study.nets():
                made: dict[str, dict[str | None, RunConfig]] = {}
                # Recipes that start from another entry's runs come after those that train from scratch.
                for spec in sorted(study.recipes, key=lambda r: recipe_named(r.recipe).takes_source()):
                    if not spec.applies_to(net):
                        continue
                    training = _training(study.training, spec.training, "training")
                    at = Expansion(dataset=dataset, net=net, seed=seed, training=training, teacher_runs=teacher_runs,
                                   made=made)
                    made_here = recipe_named(spec.recipe).expand(spec, at)
                    made[spec.label] = {run.teacher: run for run in made_here if run.init_run is None}
                    for run in made_here:
                        runs.setdefault(run.run_id, run)
    return list(runs.values())


def _write_csv_atomic(frame: pd.DataFrame, path: Path) -> None:
    write_file_atomic(path, frame.to_csv(index=False), OutputError)


def _save_figure(fig, path: Path) -> None:
    """Render the figure in memory and write it atomically: never a half-written image."""
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=120, format=path.suffix.lstrip("."))
    plt.close(fig)
    write_file_atomic(path, buffer.getvalue(), OutputError)


COMPARISON_COLUMNS = ["dataset", "teacher", "variant", "layers", "student_units", "metric", "baseline", "distilled",
                      "improvement_pct", "seeds", "improvement_ci95_low_pct", "improvement_ci95_high_pct", "verdict"]


def _per_seed(runs: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """``columns`` averaged per seed (several runs of one seed in a cell count once), indexed by seed."""
    return runs.groupby("seed")[columns].mean()


def comparison(runs: pd.DataFrame) -> pd.DataFrame:
    """Distilled vs non-distilled per dataset, teacher, variant and student, paired by seed.

    Per seed, improvement = 100 · (baseline − distilled) / baseline: positive means distillation
    lowered the error. ``improvement_pct`` is its mean over the seeds both sides have (``seeds``),
    with the 95 % t-interval of that mean and a verdict (:mod:`models.studies.paired`);
    ``baseline``/``distilled`` are the errors averaged over those seeds.
    """
    # Students a teacher distils into, whose size labels are units per layer (a WaveNet's
    # channels "16-8" are not the LSTM S-16-8).
    distillable = runs[runs["arch"].map(lambda arch: bool(getattr(find_arch(arch), "distillable", False)))
                       .astype(bool)]
    kd = distillable[distillable["recipe"].isin(_recipes_where(lambda r: r.distils and not r.quantized))]
    base = distillable[distillable["recipe"].isin(_recipes_where(lambda r: r.reference))]
    if kd.empty or base.empty:
        return pd.DataFrame(columns=COMPARISON_COLUMNS)
    base_by_cell = {key: _per_seed(group, COMPARED_METRICS) for key, group in base.groupby(["dataset", "layers"])}
    rows = []
    for (dataset, teacher, variant, layers), group in kd.groupby(["dataset", "teacher", "variant", "layers"]):
        if (dataset, layers) not in base_by_cell:
            continue
        b_seeds = base_by_cell[(dataset, layers)]
        d_seeds = _per_seed(group, COMPARED_METRICS)
        seeds = d_seeds.index.intersection(b_seeds.index)
        if seeds.empty:
            log.warning("comparison %s %s %s %s: no seed has both a distilled and a baseline run; left out",
                        dataset, teacher, variant, layers)
            continue
        for metric in COMPARED_METRICS:
            b, d = b_seeds.loc[seeds, metric], d_seeds.loc[seeds, metric]
            summary = paired.summarise(100.0 * (b - d) / b.where(b != 0), better_when="positive")
            rows.append({"dataset": dataset, "teacher": teacher, "variant": variant, "layers": layers,
                         "student_units": int(str(layers).split("-")[0]), "metric": metric,
                         "baseline": float(b.mean()), "distilled": float(d.mean()), "improvement_pct": summary.mean,
                         "seeds": summary.n_seeds, "improvement_ci95_low_pct": summary.ci_low,
                         "improvement_ci95_high_pct": summary.ci_high, "verdict": summary.verdict})
    return (pd.DataFrame(rows, columns=COMPARISON_COLUMNS)
            .sort_values(["dataset", "teacher", "variant", "metric", "student_units"]))


def comparison_figure(table: pd.DataFrame, path: Path) -> None:
    """Improvement of distilled over non-distilled vs student size: a row per dataset, a column per
    metric, a line per teacher (and kd variant); error bars are the 95 % paired-by-seed intervals
    where a point has two seeds or more."""
    datasets = sorted(table["dataset"].unique())
    metrics = [m for m in COMPARED_METRICS if m in set(table["metric"])]
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
            ax.set_title(f"{dataset}: {metric.removeprefix('test_')}", fontsize=9)
            if j == 0:
                ax.set_ylabel("improvement by KD (%)" if uncertain else "improvement by KD (%, 1 seed)")
            if i == len(datasets) - 1:
                ax.set_xlabel("student units U (S-U-8)")
    axes[0][0].legend(fontsize=7, title="teacher", title_fontsize=7)
    if uncertain:
        fig.suptitle("mean over seeds, bars: 95 % CI of the paired (same-seed) improvement", fontsize=8)
    fig.tight_layout()
    _save_figure(fig, path)


QUANTIZATION_COLUMNS = ["dataset", "layers", "variant", "recipe", "teacher", "bits", "bytes", "fp32_bytes",
                        "ratio_to_fp32", "teacher_bytes", "ratio_to_teacher", "test_esr", "source_test_esr",
                        "esr_change_pct", "control", "seeds", "esr_change_ci95_low_pct", "esr_change_ci95_high_pct",
                        "verdict", "model"]
_QUANTIZATION_CELL = ["dataset", "model", "layers", "variant", "recipe", "teacher", "bits"]


def quantization_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Each quantized model against the fp32 run it started from (``control``) and its teacher.

    ratio_to_fp32 = packed bytes / the fp32 student's bytes; ratio_to_teacher = packed bytes /
    the teacher's fp32 bytes (the quantized-distillation paper reports 12 % and 2 %). Per seed,
    ESR change = 100 · (quantized − source) / source, positive meaning quantization raised the
    error; a row per model and variant holds its mean over ``seeds``, the 95 % t-interval and a
    verdict (:mod:`models.studies.paired`).
    """
    if "init_run" not in runs.columns:
        return pd.DataFrame(columns=QUANTIZATION_COLUMNS)
    quantized = runs[runs["bits"] < 32]
    if "model" not in quantized.columns:
        quantized = quantized.assign(model=_model_labels(quantized))
    by_id = runs.set_index("run_id")
    per_run = []
    for _, run in quantized.iterrows():
        source = by_id.loc[run["init_run"]] if run["init_run"] in by_id.index else None
        teacher_bytes = float("nan")
        teacher_id = run.get("teacher_run") or (source["teacher_run"] if source is not None else "")
        if isinstance(teacher_id, str) and teacher_id in by_id.index:
            teacher_bytes = float(by_id.loc[teacher_id, "bytes"])
        source_esr = float(source["test_esr"]) if source is not None else float("nan")
        per_run.append({**{key: run[key] for key in _QUANTIZATION_CELL}, "seed": run["seed"],
                        "bytes": run["bytes"], "fp32_bytes": run["fp32_bytes"], "teacher_bytes": teacher_bytes,
                        "test_esr": run["test_esr"], "source_test_esr": source_esr,
                        "esr_change_pct": 100.0 * (run["test_esr"] - source_esr) / source_esr,
                        "control": f"fp32 source ({source['variant']})" if source is not None else "fp32 source (missing)"})
    if not per_run:
        return pd.DataFrame(columns=QUANTIZATION_COLUMNS)
    rows = []
    for key, cell in pd.DataFrame(per_run).groupby(_QUANTIZATION_CELL, dropna=False, sort=False):
        seeds = cell.groupby("seed")[["bytes", "fp32_bytes", "teacher_bytes", "test_esr", "source_test_esr",
                                      "esr_change_pct"]].mean()
        summary = paired.summarise(seeds["esr_change_pct"], better_when="negative")
        size = float(seeds["bytes"].mean())
        rows.append({**dict(zip(_QUANTIZATION_CELL, key, strict=True)), "bits": int(key[-1]),
                     "bytes": int(round(size)), "fp32_bytes": int(round(float(seeds["fp32_bytes"].mean()))),
                     "ratio_to_fp32": size / float(seeds["fp32_bytes"].mean()),
                     "teacher_bytes": float(seeds["teacher_bytes"].mean()),
                     "ratio_to_teacher": size / float(seeds["teacher_bytes"].mean()),
                     "test_esr": float(seeds["test_esr"].mean()), "source_test_esr": float(seeds["source_test_esr"].mean()),
                     "esr_change_pct": summary.mean, "control": " / ".join(sorted(set(cell["control"]))),
                     "seeds": summary.n_seeds, "esr_change_ci95_low_pct": summary.ci_low,
                     "esr_change_ci95_high_pct": summary.ci_high, "verdict": summary.verdict})
    return pd.DataFrame(rows, columns=QUANTIZATION_COLUMNS)


def _model_labels(runs: pd.DataFrame) -> pd.Series:
    """runs.csv's ``model`` column, rebuilt for rows written before it existed (LSTM runs)."""
    def label(row) -> str:
        value = row.get("model")
        if isinstance(value, str) and value:
            return value
        layers = str(row["layers"])
        return f"S-{layers}" if layers.count("-") == 1 else f"LSTM-{layers}"
    return runs.apply(label, axis=1) if len(runs) else pd.Series(dtype=str)


WIDTH_SWEEP_COLUMNS = ["dataset", "model", "variant", "width", "layers", "params", "macs_per_sample", "test_esr",
                       "test_esr_ci95_low", "test_esr_ci95_high", "slimmable_seeds", "rtf_stream",
                       "independent_run", "independent_test_esr", "independent_test_esr_ci95_low",
                       "independent_test_esr_ci95_high", "independent_seeds", "independent_rtf_stream",
                       "esr_difference", "esr_difference_ci95_low", "esr_difference_ci95_high", "seeds", "verdict",
                       "run_id"]
_WIDTH_SWEEP_CELL = ["dataset", "model", "variant", "width"]


def width_sweep(runs: pd.DataFrame) -> pd.DataFrame:
    """Every width of every slimmable network next to an independently trained network of the same
    layout (a baseline run of the same model label), where the study has one — the comparison the
    slimmable NAM paper makes.

    A row per dataset, slimmable network, variant and width, over seeds: ``test_esr`` and
    ``independent_test_esr`` are each side's mean over its seeds (``slimmable_seeds``,
    ``independent_seeds``) with the 95 % t-interval of that mean; ``esr_difference`` is the mean over
    the ``seeds`` both sides have of the per-seed slimmed − alone test ESR, with its paired 95 %
    interval and a verdict (:mod:`models.studies.paired`; negative is better). ``run_id`` and
    ``independent_run`` list the runs, one per seed, space-separated.
    """
    if runs.empty or "width" not in runs.columns:
        return pd.DataFrame(columns=WIDTH_SWEEP_COLUMNS)
    if "model" not in runs.columns:
        runs = runs.assign(model=_model_labels(runs))
    if "variant" not in runs.columns:
        runs = runs.assign(variant=runs["recipe"])
    slimmable = runs[runs["recipe"].isin(_recipes_where(lambda r: r.slims))]
    baselines = runs[runs["recipe"].isin(_recipes_where(lambda r: r.reference))]
    per_run = []
    for _, full in slimmable[slimmable["width"] == 1.0].iterrows():
        family = slimmable[(slimmable["run_id"] == full["run_id"]) | (slimmable["init_run"] == full["run_id"])]
        for _, run in family.iterrows():
            match = baselines[(baselines["dataset"] == run["dataset"]) & (baselines["model"] == run["model"])
                              & (baselines["seed"] == run["seed"])]
            per_run.append({
                "dataset": run["dataset"], "model": full["model"], "variant": full["variant"],
                "width": float(run["width"]), "seed": run["seed"], "layers": run["layers"],
                "params": int(run["params"]), "macs_per_sample": int(run["macs_per_sample"]),
                "test_esr": float(run["test_esr"]), "rtf_stream": float(run["rtf_stream"]), "run_id": run["run_id"],
                # several baselines of one layout and seed (two variants) count once, averaged
                "independent_run": " ".join(sorted(match["run_id"])),
                "independent_test_esr": float(match["test_esr"].mean()) if len(match) else float("nan"),
                "independent_rtf_stream": float(match["rtf_stream"].mean()) if len(match) else float("nan"),
            })
    if not per_run:
        return pd.DataFrame(columns=WIDTH_SWEEP_COLUMNS)
    rows = []
    for key, cell in pd.DataFrame(per_run).groupby(_WIDTH_SWEEP_CELL, sort=True):
        seeds = _per_seed(cell, ["test_esr", "rtf_stream", "independent_test_esr", "independent_rtf_stream"])
        alone = seeds["independent_test_esr"].dropna()
        summary = paired.summarise(seeds["test_esr"] - seeds["independent_test_esr"], better_when="negative")
        slim_low, slim_high = paired.t_interval(seeds["test_esr"].dropna())
        alone_low, alone_high = paired.t_interval(alone)
        first = cell.iloc[0]
        rows.append({
            **dict(zip(_WIDTH_SWEEP_CELL, key, strict=True)), "layers": first["layers"],
            "params": int(first["params"]), "macs_per_sample": int(first["macs_per_sample"]),
            "test_esr": float(seeds["test_esr"].mean()), "test_esr_ci95_low": slim_low,
            "test_esr_ci95_high": slim_high, "slimmable_seeds": len(seeds), "rtf_stream": float(seeds["rtf_stream"].mean()),
            "independent_run": " ".join(r for r in cell.sort_values("seed")["independent_run"] if r),
            "independent_test_esr": float(alone.mean()) if len(alone) else float("nan"),
            "independent_test_esr_ci95_low": alone_low, "independent_test_esr_ci95_high": alone_high,
            "independent_seeds": len(alone), "independent_rtf_stream": float(seeds["independent_rtf_stream"].mean()),
            "esr_difference": summary.mean, "esr_difference_ci95_low": summary.ci_low,
            "esr_difference_ci95_high": summary.ci_high, "seeds": summary.n_seeds, "verdict": summary.verdict,
            "run_id": " ".join(cell.sort_values("seed")["run_id"]),
        })
    return pd.DataFrame(rows, columns=WIDTH_SWEEP_COLUMNS)


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


def _recipes_where(predicate: Callable[[Any], bool]) -> list[str]:
    """The registered recipes for which ``predicate(recipe)`` holds (runs.csv's ``recipe`` values)."""
    return [name for name in names() if predicate(recipe_named(name))]


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


_PARETO_CELL = ["dataset", "recipe", "variant", "teacher", "arch", "model", "layers", "bits", "width"]


def _pareto_points(runs: pd.DataFrame) -> pd.DataFrame:
    """One point per model cell (its runs over seeds): mean bytes, streaming speed and test ESR over
    the seeds, the 95 % t-interval of the ESR's mean (NaN with one seed) and ``seeds``."""
    cell = [c for c in _PARETO_CELL if c in runs.columns]
    points = []
    for key, group in runs.groupby(cell, dropna=False, sort=True):
        seeds = _per_seed(group, ["bytes", "rtf_stream", "test_esr"])
        low, high = paired.t_interval(seeds["test_esr"].dropna())
        points.append({**dict(zip(cell, key, strict=True)), **seeds.mean().to_dict(),
                       "test_esr_ci95_low": low, "test_esr_ci95_high": high, "seeds": len(seeds)})
    return pd.DataFrame(points, columns=cell + ["bytes", "rtf_stream", "test_esr", "test_esr_ci95_low",
                                                "test_esr_ci95_high", "seeds"])


def pareto_figure(runs: pd.DataFrame, path: Path) -> None:
    """Error against size and against streaming speed: one marker per model, families coloured;
    markers are means over seeds, error bars the 95 % t-interval of the test ESR over seeds where a
    model has two or more."""
    points = _pareto_points(runs)
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


def write_outputs(rows: list[dict[str, Any]], out_dir: Path) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    frame["model"] = _model_labels(frame)
    ordered = RUNS_COLUMNS + [c for c in frame.columns if c not in RUNS_COLUMNS]
    frame = frame.reindex(columns=ordered)
    _write_csv_atomic(frame, out_dir / "runs.csv")
    table = comparison(frame)
    _write_csv_atomic(table, out_dir / "comparison.csv")
    if not table.empty:
        comparison_figure(table, out_dir / "comparison.png")
    quantized = quantization_table(frame)
    if not quantized.empty:
        _write_csv_atomic(quantized, out_dir / "quantization.csv")
    pareto_figure(frame, out_dir / "pareto.png")
    sweep = width_sweep(frame)
    if not sweep.empty:
        _write_csv_atomic(sweep, out_dir / "width_sweep.csv")
        width_sweep_figure(sweep, out_dir / "width_sweep.png")
    return frame


def dependencies(run: RunConfig) -> set[str]:
    """Run ids that must be complete before ``run`` can start (its teacher, its fp32 source)."""
    return recipe_of(run).dependencies(run)


def estimated_cost(run: RunConfig) -> float:
    """Relative training work of a run (multiply-adds per sample × samples fed per epoch × epochs),
    so that parallel workers start the longest runs first instead of ending on one long run."""
    recipe = recipe_of(run)
    if not recipe.trains(run):
        return 0.0
    training = run.training
    warmup = training.warmup_samples
    warmup = max(warmup, of(run.model).receptive_field(run.model) - 1)
    per_sample = macs_per_sample(run.model) * (training.window_samples + warmup) / training.window_samples
    return per_sample * recipe.cost_factor(run) * training.max_epochs


def _execute_in_worker(run: RunConfig, runs_root: Path, device: str = "cpu") -> dict[str, Any]:
    """One run in a worker process: no progress bars, one torch thread (runs.csv rows back)."""
    return execute_run(run, runs_root, resume=True, progress=False, device=device)


def run_study(
    study: StudyConfig,
    out_dir: Path | None = None,
    progress: bool = False,
    on_run: Callable[[RunConfig, str], None] | None = None,
    jobs: int = 1,
    ray_address: str | None = None,
    device: str = "cpu",
) -> pd.DataFrame:
    """Train every missing run of ``study`` and write runs.csv / comparison.csv / .png.

    ``on_run(run, status)`` is told ``skip`` (already complete), ``resume`` or ``train`` before each.
    ``jobs`` > 1 trains independent runs in that many worker processes at once; a run starts
    only when its teacher and fp32 source are complete. ``ray_address`` runs each missing run as a
    Ray task on that cluster (``"local"`` starts one on this machine); every node must see
    ``out_dir`` at the same path (a shared file system). Rows keep the study's order either way.
    ``device`` (auto, cpu, cuda: :func:`models.training.compute.resolve_device`) is where each run
    trains, resolved in each worker; it is not part of any run's id.
    """
    out_dir = out_dir or study_dir(study)
    if jobs < 1:
        raise ConfigError(f"jobs: expected >= 1, found {jobs}")
    with study_lock(out_dir):
        return _run_study_locked(study, out_dir, progress, on_run, jobs, ray_address, device)


def _run_study_locked(study: StudyConfig, out_dir: Path, progress: bool,
                      on_run: Callable[[RunConfig, str], None] | None, jobs: int,
                      ray_address: str | None, device: str = "cpu") -> pd.DataFrame:
    runs_root = out_dir / "runs"
    try:
        runs_root.mkdir(parents=True, exist_ok=True)
        (out_dir / "study.yaml").write_text(_yaml_dump(to_dict(study)), encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"{out_dir}: cannot write the study folder ({exc.strerror or exc})") from None
    runs = expand(study)
    if ray_address is not None:
        rows = _run_on_ray(runs, runs_root.resolve(), ray_address, on_run, progress, device)
        return write_outputs([rows[run.run_id] for run in runs], out_dir)
    if jobs > 1:
        rows = _run_parallel(runs, runs_root, jobs, on_run, progress, device)
        return write_outputs([rows[run.run_id] for run in runs], out_dir)
    rows = []
    datasets: dict[str, Any] = {}
    for run in runs:
        run_dir = runs_root / run.run_id
        status = "skip" if is_complete(run_dir) else ("resume" if (run_dir / "last.pt").exists() else "train")
        if on_run:
            on_run(run, status)
        dataset = None
        if status != "skip":
            key = repr(to_dict(run.dataset))
            if key not in datasets:
                from models.data.sources import load_dataset
                datasets = {key: load_dataset(run.dataset)}  # one dataset in memory at a time
            dataset = datasets[key]
        rows.append(execute_run(run, runs_root, resume=True, progress=progress, dataset=dataset, device=device))
    return write_outputs(rows, out_dir)


def _run_parallel(runs: list[RunConfig], runs_root: Path, jobs: int,
                  on_run: Callable[[RunConfig, str], None] | None, progress: bool,
                  device: str = "cpu") -> dict[str, dict[str, Any]]:
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    from tqdm.auto import tqdm

    rows: dict[str, dict[str, Any]] = {}
    pending = []
    for run in runs:
        if is_complete(runs_root / run.run_id):
            if on_run:
                on_run(run, "skip")
            rows[run.run_id] = execute_run(run, runs_root)  # reads metrics.json back
        else:
            pending.append(run)
    dependents = {run.run_id: sum(run.run_id in dependencies(other) for other in pending) for run in runs}
    bar = tqdm(total=len(pending), desc="runs", disable=not progress)
    # spawn, not fork: torch's thread pools do not survive a fork.
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                             initializer=watch_parent, initargs=(os.getpid(),)) as pool:
        running = {}
        while pending or running:
            ready = sorted((r for r in pending if dependencies(r) <= set(rows)),
                           key=lambda r: (-dependents[r.run_id], -estimated_cost(r)))
            for run in ready[: jobs - len(running)]:
                pending.remove(run)
                if on_run:
                    on_run(run, "resume" if (runs_root / run.run_id / "last.pt").exists() else "train")
                running[pool.submit(_execute_in_worker, run, runs_root, device)] = run
            if not running:
                missing = sorted(dependencies(pending[0]) - set(rows))
                raise ConfigError(f"run {pending[0].run_id} depends on {missing}, which no run of the study makes")
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                run = running.pop(future)
                rows[run.run_id] = future.result()
                bar.update()
    bar.close()
    return rows


def _ray_task(run: RunConfig, runs_root: str, device: str, *finished_dependencies: dict[str, Any]) -> dict[str, Any]:
    """A Ray task: the dependencies' rows are arguments only so that Ray starts it after them."""
    return execute_run(run, Path(runs_root), resume=True, progress=False, device=device)


def _run_on_ray(runs: list[RunConfig], runs_root: Path, address: str,
                on_run: Callable[[RunConfig, str], None] | None, progress: bool,
                device: str = "cpu") -> dict[str, dict[str, Any]]:
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray needs the ray package: pip install -c constraints.txt ray") from None
    from tqdm.auto import tqdm

    if not ray.is_initialized():
        try:
            if address == "local":
                ray.init(include_dashboard=False, log_to_driver=False)
            else:
                ray.init(address=address, include_dashboard=False, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ConfigError(f"--ray {address}: cannot connect to a Ray cluster ({exc})") from None
    task = ray.remote(num_cpus=1, max_retries=0)(_ray_task)
    rows: dict[str, dict[str, Any]] = {}
    refs: dict[str, Any] = {}
    for run in runs:
        if is_complete(runs_root / run.run_id):
            if on_run:
                on_run(run, "skip")
            rows[run.run_id] = execute_run(run, runs_root)
            continue
        if on_run:
            on_run(run, "resume" if (runs_root / run.run_id / "last.pt").exists() else "train")
        waits = [refs[d] for d in sorted(dependencies(run)) if d in refs]
        refs[run.run_id] = task.remote(run, str(runs_root), device, *waits)
    pending = {ref: run_id for run_id, ref in refs.items()}
    with tqdm(total=len(pending), desc="ray runs", disable=not progress) as bar:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                try:
                    rows[pending.pop(ref)] = ray.get(ref)
                except ray.exceptions.RayTaskError as exc:
                    cause = exc.cause if isinstance(exc.cause, Exception) else exc
                    raise cause from None
                bar.update()
    return rows


def _yaml_dump(data: Any) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False)

