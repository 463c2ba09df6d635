"""Studies: one YAML file expands into datasets × teachers × students × recipes × seeds.

``run_study`` trains only what is missing (finished runs are read back, interrupted ones
resumed), then writes ``runs.csv`` and the paper's comparison: per dataset, teacher and student
size, distilled vs non-distilled per metric with the improvement in %.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from common.outputs import write_file_atomic
from models.config import from_dict, load_yaml, to_dict
from models.data.datasets import DatasetConfig
from models.errors import ConfigError, OutputError
from models.nets.architectures import get as get_arch
from models.nets.architectures import label as net_label
from models.nets.architectures import macs_per_sample, of, student_config
from models.nets.architectures import names as arch_names
from models.nets.lstm import LSTMConfig
from models.nets.slimmable import SlimmableConfig
from models.processes import study_lock, watch_parent
from models.studies.figures import comparison_figure, pareto_figure, width_sweep_figure
from models.studies.recipes.builtin import Control, Expansion, names
from models.studies.recipes.builtin import get as recipe_named
from models.studies.recipes.builtin import of as recipe_of
from models.studies.runs import RunConfig, execute_run, is_complete
from models.studies.tables import (
    CONTROLS_COLUMNS,
    comparison,
    comparison_markdown,
    model_labels,
    quantization_table,
    width_sweep,
)
from models.training.distill import DistillConfig
from models.training.loop import TrainingConfig

log = logging.getLogger(__name__)

RUNS_COLUMNS = [
    "run_id", "dataset", "arch", "model", "layers", "recipe", "teacher", "bits", "width", "params", "bytes",
    "macs_per_sample", "epochs", "test_mae", "test_mse", "test_esr", "test_esr_pre", "test_mrstft",
    "rtf_offline", "rtf_stream",
]


@dataclass(frozen=True)
class TeacherSpec:
    """A teacher: trained with the baseline recipe, then distilled from. ``layers`` makes it an LSTM
    stack; ``model`` any network of a distillable architecture, written as a student entry is
    (``{arch: nam_lstm, hidden_size: 32, num_layers: 2}``). ``training`` overrides keys of the
    study's ``teacher_training``/``training`` for this teacher only."""

    name: str
    layers: tuple[int, ...] = ()
    model: dict[str, Any] | None = None
    training: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if bool(self.layers) == (self.model is not None):
            found = "both" if self.layers else "neither"
            raise ConfigError(f"teacher {self.name!r}: expected layers (an LSTM stack, e.g. [64, 8]) or model "
                              f"(e.g. {{arch: nam_lstm, hidden_size: 32}}), found {found}")

    def net(self, conditioning: str) -> Any:
        """The teacher's network config (the study's ``conditioning`` for networks that take knobs)."""
        if self.model is None:
            return LSTMConfig(layers=self.layers, conditioning=conditioning)
        net = student_config(self.model, conditioning, f"teacher {self.name!r}: model")
        if not of(net).distillable:
            distillable = [name for name in arch_names() if get_arch(name).distillable]
            raise ConfigError(f"teacher {self.name!r}: model: a teacher's features are distilled from; expected "
                              f"a distillable architecture ({', '.join(distillable)}), found {net.arch!r}")
        return net


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

    ``controls`` (default true) trains the budget-matched controls the recipe asks for, which the
    tables compare with: ``kd`` the student trained alone; ``qat`` and ``kd_qat`` the fp32 source
    fine-tuned for the same epochs with the same loss (``finetune``), ``kd_qat`` also plain ``qat``;
    ``ptq`` its source as it is; ``slimmable`` every width of ``widths`` below 1 trained alone
    (variant ``alone``; the full width where the study trains it alone anyway). With false, the
    tables fall back to the source run and to any baseline of the same network, and say so.
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
    controls: bool = True

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
        self.teacher_nets()  # refuses a bad teacher now
        dataset_names = [d.name for d in self.datasets]
        if len(set(dataset_names)) != len(dataset_names):
            raise ConfigError(f"study {self.name!r}: dataset names must be unique, found {dataset_names}")
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
                # Every student the entry makes runs of, named or by default: a distilled one whose
                # layer does not align with a teacher's is refused now, not when its run starts.
                if recipe.applies_to(net):
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

    def teacher_nets(self) -> dict[str, Any]:
        """The teachers' network configs by name."""
        return {teacher.name: teacher.net(self.conditioning) for teacher in self.teachers}


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
    return expansion(study)[0]


def expansion(study: StudyConfig) -> tuple[list[RunConfig], pd.DataFrame]:
    """The study's runs (as :func:`expand`) and its budget-matched controls: a row per run and
    control (``run_id``, ``control_run``, ``control`` saying what it is), each control a run of the
    list — a recipe's controls are trained like its runs unless its entry says ``controls: false``;
    they come after the runs of the study's entries, and one the entries already make is not made
    twice."""
    runs: dict[str, RunConfig] = {}
    requested: list[Control] = []
    for dataset in study.datasets:
        for seed in study.seeds:
            teacher_runs: dict[str, RunConfig] = {}
            for teacher in study.teachers:
                training = _training(study.training, {**study.teacher_training, **teacher.training}, "teacher")
                run = RunConfig(dataset=dataset, model=teacher.net(study.conditioning), training=training, seed=seed)
                teacher_runs[teacher.name] = run
                runs.setdefault(run.run_id, run)
            for net in study.nets():
                made: dict[str, dict[str | None, RunConfig]] = {}
                # Recipes that start from another entry's runs come after those that train from scratch.
                for spec in sorted(study.recipes, key=lambda r: recipe_named(r.recipe).takes_source()):
                    if not spec.applies_to(net):
                        continue
                    recipe = recipe_named(spec.recipe)
                    training = _training(study.training, spec.training, "training")
                    at = Expansion(dataset=dataset, net=net, seed=seed, training=training, teacher_runs=teacher_runs,
                                   made=made)
                    made_here = recipe.expand(spec, at)
                    made[spec.label] = {run.teacher: run for run in made_here if run.init_run is None}
                    for run in made_here:
                        runs.setdefault(run.run_id, run)
                    if spec.controls:
                        requested += recipe.controls(spec, at, made_here)
    # A control the study already trains under another name (a baseline entry with the same
    # budget: only the variant differs, so the same seed trains the same weights) is that run.
    same_budget = {_budget_key(run): run for run in reversed(runs.values())}
    controls: list[dict[str, str]] = []
    for control in requested:
        if control.if_trained and _budget_key(control.run) not in same_budget:
            continue
        run = same_budget.setdefault(_budget_key(control.run), control.run)
        runs.setdefault(run.run_id, run)
        controls += [{"run_id": run_id, "control_run": run.run_id, "control": control.kind} for run_id in control.of]
    table = pd.DataFrame(controls, columns=CONTROLS_COLUMNS).drop_duplicates(ignore_index=True)
    return list(runs.values()), table


def _budget_key(run: RunConfig) -> str:
    """What a run trains, whatever its variant is called."""
    return dataclasses.replace(run, variant="").run_id


def _write_csv_atomic(frame: pd.DataFrame, path: Path) -> None:
    write_file_atomic(path, frame.to_csv(index=False), OutputError)


def write_outputs(rows: list[dict[str, Any]], out_dir: Path, controls: pd.DataFrame | None = None) -> pd.DataFrame:
    """runs.csv, controls.csv and the tables and figures made from them; ``controls`` (from
    :func:`expansion`) replaces the folder's controls.csv, which is read when it is None."""
    frame = pd.DataFrame(rows)
    frame["model"] = model_labels(frame)
    ordered = RUNS_COLUMNS + [c for c in frame.columns if c not in RUNS_COLUMNS]
    frame = frame.reindex(columns=ordered)
    if controls is None:
        controls = read_controls(out_dir)
    else:
        listed = set(frame["run_id"])
        controls = controls[controls["run_id"].isin(listed) & controls["control_run"].isin(listed)]
        _write_csv_atomic(controls, out_dir / "controls.csv")
    _write_csv_atomic(frame, out_dir / "runs.csv")
    table = comparison(frame, controls)
    _write_csv_atomic(table, out_dir / "comparison.csv")
    if not table.empty:
        comparison_figure(table, out_dir / "comparison.png")
        write_file_atomic(out_dir / "comparison.md", comparison_markdown(table), OutputError)
    quantized = quantization_table(frame, controls)
    if not quantized.empty:
        _write_csv_atomic(quantized, out_dir / "quantization.csv")
    pareto_figure(frame, out_dir / "pareto.png")
    sweep = width_sweep(frame, controls)
    if not sweep.empty:
        _write_csv_atomic(sweep, out_dir / "width_sweep.csv")
        width_sweep_figure(sweep, out_dir / "width_sweep.png")
    return frame


def read_controls(out_dir: Path) -> pd.DataFrame:
    """The study folder's controls.csv; an empty table for a folder written before it existed."""
    path = out_dir / "controls.csv"
    if not path.exists():
        return pd.DataFrame(columns=CONTROLS_COLUMNS)
    try:
        return pd.read_csv(path, dtype=str).reindex(columns=CONTROLS_COLUMNS)
    except (OSError, ValueError) as exc:
        raise OutputError(f"{path}: cannot read the study's controls ({exc})") from None


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
    runs, controls = expansion(study)
    if ray_address is not None:
        rows = _run_on_ray(runs, runs_root.resolve(), ray_address, on_run, progress, device)
        return write_outputs([rows[run.run_id] for run in runs], out_dir, controls)
    if jobs > 1:
        rows = _run_parallel(runs, runs_root, jobs, on_run, progress, device)
        return write_outputs([rows[run.run_id] for run in runs], out_dir, controls)
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
    return write_outputs(rows, out_dir, controls)


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

