"""The study's tables, from runs.csv's rows: distilled vs trained alone (``comparison``), each
quantized model vs its controls (``quantization_table``), each slimmed width vs the same width
trained alone (``width_sweep``) and the points of the Pareto figure — every cell a mean over seeds
with the paired (same-seed) 95 % interval and a verdict (:mod:`models.studies.paired`).

A comparison is between runs of equal training budget: where the study folder lists a run's
budget-matched controls (``controls.csv``, from :meth:`Recipe.controls`), the tables compare with
exactly those runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pandas as pd

from models.nets.architectures import find as find_arch
from models.studies import paired
from models.studies.recipes.builtin import get as recipe_named
from models.studies.recipes.builtin import names

log = logging.getLogger(__name__)

COMPARED_METRICS = ["test_mae", "test_mse", "test_esr", "test_esr_pre", "test_mrstft"]


CONTROLS_COLUMNS = ["run_id", "control_run", "control"]
UNMATCHED = "budget not matched"
"""Marks a comparison with a run the study did not train as this run's control (controls.csv lists
none: a folder written before controls existed, or an entry with ``controls: false``)."""

COMPARISON_COLUMNS = ["dataset", "teacher", "variant", "layers", "student_units", "metric", "baseline", "distilled",
                      "improvement_pct", "seeds", "improvement_ci95_low_pct", "improvement_ci95_high_pct", "verdict",
                      "control", "model"]


def _per_seed(runs: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """``columns`` averaged per seed (several runs of one seed in a cell count once), indexed by seed."""
    return runs.groupby("seed")[columns].mean()


def listed_controls(controls: pd.DataFrame | None) -> dict[str, list[tuple[str, str]]]:
    """run id -> its (control run id, what the control is), from a controls.csv table."""
    out: dict[str, list[tuple[str, str]]] = {}
    if controls is None:
        return out
    for row in controls.itertuples(index=False):
        out.setdefault(row.run_id, []).append((row.control_run, row.control))
    return out


def comparison(runs: pd.DataFrame, controls: pd.DataFrame | None = None) -> pd.DataFrame:
    """Distilled vs non-distilled per dataset, teacher, variant and student, paired by seed.

    A distilled run is compared with its control from ``controls`` (the student trained alone with
    the same data, seed and budget); a run without one, with the baseline runs of the same student
    and seed (``control`` then says the budget was not matched). Per seed, improvement =
    100 · (baseline − distilled) / baseline: positive means distillation lowered the error.
    ``improvement_pct`` is its mean over the seeds both sides have (``seeds``), with the 95 %
    t-interval of that mean and a verdict (:mod:`models.studies.paired`); ``baseline``/``distilled``
    are the errors averaged over those seeds.
    """
    # Students a teacher distils into, whose size labels are units per layer (a WaveNet's
    # channels "16-8" are not the LSTM S-16-8).
    if "model" not in runs.columns:
        runs = runs.assign(model=model_labels(runs))
    distillable = runs[runs["arch"].map(lambda arch: bool(getattr(find_arch(arch), "distillable", False)))
                       .astype(bool)]
    kd = distillable[distillable["recipe"].isin(_recipes_where(lambda r: r.distils and not r.quantized))]
    base = distillable[distillable["recipe"].isin(_recipes_where(lambda r: r.reference))]
    if kd.empty or base.empty:
        return pd.DataFrame(columns=COMPARISON_COLUMNS)
    by_id = runs.set_index("run_id")
    listed = listed_controls(controls)
    rows = []
    # The model label too: a NAM LSTM's size label "16" is also a one-layer LSTM stack's.
    for (dataset, teacher, variant, layers, model), group in kd.groupby(["dataset", "teacher", "variant", "layers",
                                                                          "model"]):
        pairs, kinds = [], set()
        for _, run in group.iterrows():
            matched = [(c, kind) for c, kind in listed.get(run["run_id"], []) if c in by_id.index]
            if matched:
                alone = by_id.loc[[c for c, _ in matched]]
                kinds.update(kind for _, kind in matched)
            else:
                alone = base[(base["dataset"] == dataset) & (base["layers"] == layers) & (base["model"] == model)
                             & (base["seed"] == run["seed"])]
                if len(alone):
                    kinds.add(f"baseline of the same student and seed: {UNMATCHED}")
            if len(alone):
                pairs.append({"seed": run["seed"], **{f"b_{m}": float(alone[m].mean()) for m in COMPARED_METRICS},
                              **{f"d_{m}": float(run[m]) for m in COMPARED_METRICS}})
        if not pairs:
            log.warning("comparison %s %s %s %s: no seed has both a distilled and a baseline run; left out",
                        dataset, teacher, variant, layers)
            continue
        seeds = pd.DataFrame(pairs).groupby("seed").mean()
        for metric in COMPARED_METRICS:
            b, d = seeds[f"b_{metric}"], seeds[f"d_{metric}"]
            summary = paired.summarise(100.0 * (b - d) / b.where(b != 0), better_when="positive")
            rows.append({"dataset": dataset, "teacher": teacher, "variant": variant, "layers": layers,
                         "student_units": int(str(layers).split("-")[0]), "metric": metric,
                         "baseline": float(b.mean()), "distilled": float(d.mean()), "improvement_pct": summary.mean,
                         "seeds": summary.n_seeds, "improvement_ci95_low_pct": summary.ci_low,
                         "improvement_ci95_high_pct": summary.ci_high, "verdict": summary.verdict,
                         "control": " / ".join(sorted(kinds)), "model": model})
    return (pd.DataFrame(rows, columns=COMPARISON_COLUMNS)
            .sort_values(["dataset", "teacher", "variant", "metric", "student_units"]))


QUANTIZATION_COLUMNS = ["dataset", "layers", "variant", "recipe", "teacher", "bits", "bytes", "fp32_bytes",
                        "ratio_to_fp32", "teacher_bytes", "ratio_to_teacher", "test_esr", "source_test_esr",
                        "control", "control_test_esr", "esr_change_pct", "seeds", "esr_change_ci95_low_pct",
                        "esr_change_ci95_high_pct", "verdict", "model"]
_QUANTIZATION_CELL = ["dataset", "model", "layers", "variant", "recipe", "teacher", "bits"]


def quantization_table(runs: pd.DataFrame, controls: pd.DataFrame | None = None) -> pd.DataFrame:
    """Each quantized model against each of its controls, and its size against its fp32 source
    and its teacher.

    The controls are those ``controls`` lists for the run (``qat``/``kd_qat``: the source fine-tuned
    in fp32 for the same epochs with the same loss; ``kd_qat`` also plain ``qat``; ``ptq``: the
    source); a run without one is compared with its fp32 source, and ``control`` says that the
    budget was not matched. ratio_to_fp32 = packed bytes / the fp32 student's bytes;
    ratio_to_teacher = packed bytes / the teacher's fp32 bytes (the quantized-distillation paper
    reports 12 % and 2 %). Per seed, ESR change = 100 · (quantized − control) / control, positive
    meaning the quantized model has the higher error; a row per model, variant and control holds
    its mean over ``seeds``, the 95 % t-interval and a verdict (:mod:`models.studies.paired`).
    ``source_test_esr`` is the fp32 source's error before any fine-tuning.
    """
    if "init_run" not in runs.columns:
        return pd.DataFrame(columns=QUANTIZATION_COLUMNS)
    quantized = runs[runs["bits"] < 32]
    if "model" not in quantized.columns:
        quantized = quantized.assign(model=model_labels(quantized))
    by_id = runs.set_index("run_id")
    listed = listed_controls(controls)
    per_run = []
    for _, run in quantized.iterrows():
        source = by_id.loc[run["init_run"]] if run["init_run"] in by_id.index else None
        teacher_bytes = float("nan")
        teacher_id = run.get("teacher_run") or (source["teacher_run"] if source is not None else "")
        if isinstance(teacher_id, str) and teacher_id in by_id.index:
            teacher_bytes = float(by_id.loc[teacher_id, "bytes"])
        matched = [(c, kind) for c, kind in listed.get(run["run_id"], []) if c in by_id.index]
        if not matched and source is not None:
            matched = [(run["init_run"], f"fp32 source: {UNMATCHED}")]
        for control_id, kind in matched:
            control = by_id.loc[control_id]
            per_run.append({**{key: run[key] for key in _QUANTIZATION_CELL}, "seed": run["seed"],
                            "bytes": run["bytes"], "fp32_bytes": run["fp32_bytes"], "teacher_bytes": teacher_bytes,
                            "test_esr": run["test_esr"], "source_test_esr": float(source["test_esr"]),
                            "control_test_esr": float(control["test_esr"]),
                            "esr_change_pct": 100.0 * (run["test_esr"] - control["test_esr"]) / control["test_esr"],
                            "control": f"{kind} ({control['variant']})"})
    if not per_run:
        return pd.DataFrame(columns=QUANTIZATION_COLUMNS)
    rows = []
    for key, cell in pd.DataFrame(per_run).groupby(_QUANTIZATION_CELL + ["control"], dropna=False, sort=False):
        seeds = cell.groupby("seed")[["bytes", "fp32_bytes", "teacher_bytes", "test_esr", "source_test_esr",
                                      "control_test_esr", "esr_change_pct"]].mean()
        summary = paired.summarise(seeds["esr_change_pct"], better_when="negative")
        size = float(seeds["bytes"].mean())
        rows.append({**dict(zip(_QUANTIZATION_CELL + ["control"], key, strict=True)), "bits": int(key[-2]),
                     "bytes": int(round(size)), "fp32_bytes": int(round(float(seeds["fp32_bytes"].mean()))),
                     "ratio_to_fp32": size / float(seeds["fp32_bytes"].mean()),
                     "teacher_bytes": float(seeds["teacher_bytes"].mean()),
                     "ratio_to_teacher": size / float(seeds["teacher_bytes"].mean()),
                     "test_esr": float(seeds["test_esr"].mean()), "source_test_esr": float(seeds["source_test_esr"].mean()),
                     "control_test_esr": float(seeds["control_test_esr"].mean()),
                     "esr_change_pct": summary.mean, "seeds": summary.n_seeds,
                     "esr_change_ci95_low_pct": summary.ci_low, "esr_change_ci95_high_pct": summary.ci_high,
                     "verdict": summary.verdict})
    return pd.DataFrame(rows, columns=QUANTIZATION_COLUMNS)


def model_labels(runs: pd.DataFrame) -> pd.Series:
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
                       "control", "run_id"]
_WIDTH_SWEEP_CELL = ["dataset", "model", "variant", "width"]


def width_sweep(runs: pd.DataFrame, controls: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every width of every slimmable network next to an independently trained network of the same
    layout — the comparison the slimmable NAM paper makes: the width's control from ``controls``
    (trained alone with the same data, seed and budget), else, where the study has one, a baseline
    run of the same model label and seed (``control`` then says the budget was not matched).

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
        runs = runs.assign(model=model_labels(runs))
    if "variant" not in runs.columns:
        runs = runs.assign(variant=runs["recipe"])
    slimmable = runs[runs["recipe"].isin(_recipes_where(lambda r: r.slims))]
    baselines = runs[runs["recipe"].isin(_recipes_where(lambda r: r.reference))]
    listed = listed_controls(controls)
    alone_ids = set(baselines["run_id"])
    per_run = []
    for _, full in slimmable[slimmable["width"] == 1.0].iterrows():
        family = slimmable[(slimmable["run_id"] == full["run_id"]) | (slimmable["init_run"] == full["run_id"])]
        for _, run in family.iterrows():
            matched = [(c, kind) for c, kind in listed.get(run["run_id"], []) if c in alone_ids]
            if matched:
                match = baselines[baselines["run_id"].isin([c for c, _ in matched])]
                kind = " / ".join(sorted({kind for _, kind in matched}))
            else:
                match = baselines[(baselines["dataset"] == run["dataset"]) & (baselines["model"] == run["model"])
                                  & (baselines["seed"] == run["seed"])]
                kind = f"a baseline of the same layout and seed: {UNMATCHED}" if len(match) else "none trained"
            per_run.append({
                "dataset": run["dataset"], "model": full["model"], "variant": full["variant"],
                "width": float(run["width"]), "seed": run["seed"], "layers": run["layers"],
                "params": int(run["params"]), "macs_per_sample": int(run["macs_per_sample"]),
                "test_esr": float(run["test_esr"]), "rtf_stream": float(run["rtf_stream"]), "run_id": run["run_id"],
                # several baselines of one layout and seed (two variants) count once, averaged
                "independent_run": " ".join(sorted(match["run_id"])),
                "independent_test_esr": float(match["test_esr"].mean()) if len(match) else float("nan"),
                "independent_rtf_stream": float(match["rtf_stream"].mean()) if len(match) else float("nan"),
                "control": kind,
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
            "control": " / ".join(sorted(set(cell["control"]))), "run_id": " ".join(cell.sort_values("seed")["run_id"]),
        })
    return pd.DataFrame(rows, columns=WIDTH_SWEEP_COLUMNS)


def _recipes_where(predicate: Callable[[Any], bool]) -> list[str]:
    """The registered recipes for which ``predicate(recipe)`` holds (runs.csv's ``recipe`` values)."""
    return [name for name in names() if predicate(recipe_named(name))]


_PARETO_CELL = ["dataset", "recipe", "variant", "teacher", "arch", "model", "layers", "bits", "width"]


def pareto_points(runs: pd.DataFrame) -> pd.DataFrame:
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


METRIC_NAMES = {"test_esr": "ESR", "test_esr_pre": "ESR (pre-emphasis)", "test_mae": "MAE", "test_mse": "MSE",
                "test_mrstft": "MR-STFT"}


def comparison_markdown(table: pd.DataFrame) -> str:
    """The comparison as the paper's Table 2, in Markdown: a row per dataset, teacher, variant and
    student; the baseline's and the distilled student's mean test ESR; per metric the paired
    improvement by distillation in % of the baseline's error, ``mean [95 % CI]`` and the verdict
    (``+`` better, ``−`` worse, ``~`` within noise), or the one-seed wording."""
    metrics = [m for m in METRIC_NAMES if m in set(table["metric"])]
    marks = {paired.BETTER: "+", paired.WORSE: "−", paired.WITHIN_NOISE: "~"}
    seeds = sorted(set(int(n) for n in table["seeds"]))
    header = ["dataset", "teacher", "student", "ESR alone", "ESR distilled"] + [METRIC_NAMES.get(m, m) for m in metrics]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * (len(header) - 3)) + "|"]
    keys = ["dataset", "teacher", "variant", "layers"] + (["model"] if "model" in table.columns else [])
    cells = table.set_index(keys + ["metric"])
    for key, _ in table.groupby(keys, sort=False, dropna=False):
        dataset, teacher, variant, layers = key[:4]
        esr = cells.loc[key + ("test_esr",)] if "test_esr" in metrics else None
        who = teacher if variant in names() else f"{teacher} ({variant})"
        student = key[4] if len(key) > 4 and isinstance(key[4], str) else f"S-{layers}"
        row = [dataset, who, student, f"{esr['baseline']:.4f}" if esr is not None else "",
               f"{esr['distilled']:.4f}" if esr is not None else ""]
        for metric in metrics:
            cell = cells.loc[key + (metric,)]
            if cell["seeds"] >= 2:
                row.append(f"{cell['improvement_pct']:+.1f} [{cell['improvement_ci95_low_pct']:+.1f}, "
                           f"{cell['improvement_ci95_high_pct']:+.1f}] {marks.get(cell['verdict'], '?')}")
            elif cell["seeds"] == 1:
                row.append(f"{cell['improvement_pct']:+.1f} (1 seed)")
            else:
                row.append(paired.NO_PAIRS)
        lines.append("| " + " | ".join(row) + " |")
    if seeds and seeds[-1] >= 2:
        counted = f"{seeds[0]}–{seeds[-1]}" if len(seeds) > 1 else f"{seeds[0]}"
        how = (f"mean over {counted} seeds of the paired (same-seed) improvement [95 % t-interval]; + better, "
               "− worse, ~ within noise (the interval contains 0)")
    else:
        how = "one seed: no uncertainty, so no difference here can be told from seed noise"
    lines += ["", f"Improvement by distillation in % of the baseline's error (positive: lower error), {how}. "
              "ESR columns: mean test ESR over the same seeds."]
    return "\n".join(lines) + "\n"
