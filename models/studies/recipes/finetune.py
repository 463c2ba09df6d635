"""``finetune``: an fp32 source run trained on for the entry's budget with the loss it learns with
(the task loss, plus distillation from a teacher where the run has one).

It is the budget-matched control of quantization-aware training: a ``qat`` or ``kd_qat`` run starts
from a converged fp32 run and trains for more epochs, so comparing it with the source alone
credits the quantizer with what the extra epochs did. The fine-tuned run has the same starting
weights, loss, data, seed and epochs, without the quantizer. Those recipes request it
(:meth:`controls`); a study may also name it as an entry of its own with a ``source``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from models.errors import ConfigError
from models.studies.recipes.kd import check_distils, teacher_distillation
from models.studies.recipes.registry import (
    Expansion,
    Job,
    Recipe,
    check_fp32,
    check_full_width,
    register,
)
from models.studies.run_config import RunConfig
from models.training.steps import DistillationStep, PlainStep


class FineTuning(Recipe):
    name: ClassVar[str] = "finetune"
    colour: ClassVar[str] = "#999999"
    spec_keys: ClassVar[tuple[str, ...]] = ("source",)

    def validate_spec(self, spec: Any) -> None:
        super().validate_spec(spec)
        if spec.source is None:
            raise ConfigError(f"recipe {spec.label!r}: finetune needs source (the name of the recipe whose fp32 "
                              "students it trains on)")

    def expand(self, spec: Any, at: Expansion) -> list[RunConfig]:
        return [fine_tuning(source, at.training, variant=spec.label)
                for source in at.made.get(spec.source, {}).values()]

    def validate_run(self, run: RunConfig) -> None:
        check_full_width(run)
        check_fp32(run)
        if run.init_run is None:
            raise ConfigError("a finetune run needs init_run: the fp32 run it trains on")
        if (run.teacher_run is None) != (run.distill is None):
            raise ConfigError("a finetune run distils with both teacher_run and distill settings, or with neither")
        if run.distill is not None:
            check_distils(run)

    def loss_step(self, run: RunConfig, job: Job) -> PlainStep:
        if run.distill is None:
            return PlainStep()
        return DistillationStep(teacher_distillation(run, job), job.net)


def fine_tuning(like: RunConfig, training: Any, variant: str | None = None, init_run: str | None = None) -> RunConfig:
    """The fp32 fine-tuning run matching ``like``: its dataset, network, seed, teacher and
    distillation settings (none when ``like`` has no teacher run), trained for ``training`` from
    ``init_run`` (default: ``like`` itself, a source run; a quantized run passes its own source).
    As a control it is named ``kd_finetune`` when it distils, else ``finetune``."""
    if variant is None:
        variant = f"kd_{FineTuning.name}" if like.teacher_run else FineTuning.name
    return RunConfig(dataset=like.dataset, model=like.model, recipe=FINETUNE.name, variant=variant,
                     teacher=like.teacher, teacher_run=like.teacher_run,
                     distill=like.distill if like.teacher_run else None, training=training, seed=like.seed,
                     init_run=init_run or like.run_id)


FINETUNE = register(FineTuning())
