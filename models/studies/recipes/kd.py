"""``kd``: the task loss plus feature distillation from a teacher run (and, where configured, the
loss against the teacher's output); one run per distillable student and teacher."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import numpy as np

from models.errors import ConfigError
from models.nets.architectures import label, of
from models.studies.recipes.registry import (
    Control,
    Expansion,
    Job,
    Recipe,
    check_fp32,
    check_full_width,
    register,
)
from models.studies.run_config import RunConfig
from models.studies.run_files import resolve_run
from models.training.checkpoints import load_model
from models.training.distill import (
    aligned_units,
    balanced_weights,
    teacher_targets,
    window_embeddings,
)
from models.training.steps import Distillation, DistillationStep

log = logging.getLogger(__name__)


def check_distils(run: RunConfig) -> None:
    """A distilling run needs a student whose features align, a teacher run and distill settings."""
    if not of(run.model).distillable:
        raise ConfigError(f"a {run.recipe} run distils LSTM features; {label(run.model)} is a {run.model.arch}")
    if run.teacher_run is None or run.distill is None:
        raise ConfigError(f"a {run.recipe} run needs teacher_run and distill settings")


def check_distillable_student(spec: Any, net: Any, study: Any, teachers: tuple[str, ...] | None = None) -> None:
    """The student's layer aligns with every teacher's the entry distils from (``teachers``, default
    the entry's, else all): both layers exist, and their sizes match or a projection head maps one
    onto the other."""
    teachers = spec.teachers if teachers is None else teachers
    if not of(net).distillable:
        raise ConfigError(f"study {study.name!r}: recipe {spec.label!r} distils LSTM features; "
                          f"student {label(net)} is a {net.arch}")
    for name, teacher in study.teacher_nets().items():
        if (teachers is not None and name not in teachers) or teacher == net:
            continue
        try:
            aligned_units(spec.distill, net, teacher)
        except ConfigError as exc:
            raise ConfigError(f"study {study.name!r}: recipe {spec.label!r}, student {label(net)}, teacher "
                              f"{name!r}: {exc}") from None


def teacher_distillation(run: RunConfig, job: Job) -> Distillation:
    """The teacher run's features on the training windows (and the balanced sampling weights)."""
    teacher_dir = resolve_run(run.teacher_run, job.runs_root, "teacher")
    teacher, payload = load_model(teacher_dir)
    if payload.get("dataset") != run.dataset.name:
        raise ConfigError(f"teacher {teacher_dir.name} was trained on {payload.get('dataset')!r}, "
                          f"not on {run.dataset.name!r}")
    targets = teacher_targets(teacher, run.distill, job.train)
    weights = None
    if run.distill.balanced_sampling:
        weights, labels = balanced_weights(window_embeddings(targets), run.distill.clusters, run.seed)
        log.info("balanced sampling: cluster sizes %s", np.bincount(labels).tolist())
    return Distillation(run.distill, targets, weights)


WITHOUT_DISTILLATION = "baseline: same data, seed and training budget, no teacher"


class KnowledgeDistillation(Recipe):
    name: ClassVar[str] = "kd"
    colour: ClassVar[str] = "#D55E00"
    distils: ClassVar[bool] = True
    source_of_others: ClassVar[bool] = True

    def validate_in_study(self, spec: Any, study: Any) -> None:
        if not study.teachers:
            raise ConfigError(f"study {study.name!r}: recipe {spec.label!r} is {self.name} but the study has no teachers")

    def validate_student(self, spec: Any, net: Any, study: Any) -> None:
        check_distillable_student(spec, net, study)

    def applies_to(self, net: Any) -> bool:
        return of(net).distillable

    def expand(self, spec: Any, at: Expansion) -> list[RunConfig]:
        runs = []
        for name, teacher_run in at.teacher_runs.items():
            if spec.teachers is not None and name not in spec.teachers:
                continue
            if teacher_run.model == at.net:
                continue  # a model does not distil into itself
            runs.append(RunConfig(dataset=at.dataset, model=at.net, recipe=self.name, variant=spec.label,
                                  teacher=name, teacher_run=teacher_run.run_id, distill=spec.distill,
                                  training=at.training, seed=at.seed))
        return runs

    def controls(self, spec: Any, at: Expansion, made: list[RunConfig]) -> list[Control]:
        """The student trained alone (``baseline``) with the same data, seed and training budget;
        one study entry ``baseline`` with the study's training makes the same run."""
        if not made:
            return []
        alone = RunConfig(dataset=at.dataset, model=at.net, training=at.training, seed=at.seed)
        return [Control(alone, tuple(run.run_id for run in made), WITHOUT_DISTILLATION)]

    def validate_run(self, run: RunConfig) -> None:
        check_full_width(run)
        check_distils(run)
        check_fp32(run)

    def loss_step(self, run: RunConfig, job: Job) -> DistillationStep:
        return DistillationStep(teacher_distillation(run, job), job.net)


KD = register(KnowledgeDistillation())
