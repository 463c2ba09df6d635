"""``kd_qat``: quantized distillation — quantization-aware fine-tuning of a kd source run with the
distillation loss of its teacher added, then quantized."""

from __future__ import annotations

from typing import Any, ClassVar

from models.errors import ConfigError
from models.nets.architectures import of
from models.studies.recipes.kd import check_distillable_student, check_distils, teacher_distillation
from models.studies.recipes.qat import QAT
from models.studies.recipes.quantized import QuantizedRecipe, fake_quantizer
from models.studies.recipes.registry import Control, Expansion, Job, check_full_width, get, register
from models.studies.run_config import RunConfig
from models.training.steps import DistillationStep

WITHOUT_TEACHER = "qat: same source, bits and epochs, no teacher"


class QuantizedDistillation(QuantizedRecipe):
    name: ClassVar[str] = "kd_qat"
    colour: ClassVar[str] = "#E69F00"
    distils: ClassVar[bool] = True

    def validate_student(self, spec: Any, net: Any, study: Any) -> None:
        # Its runs distil from the teachers of its kd source's runs, for the students that source trains.
        source = next((entry for entry in study.recipes if entry.label == spec.source), None)
        if source is not None and not source.applies_to(net):
            return
        check_distillable_student(spec, net, study, None if source is None else source.teachers)

    def validate_source(self, spec: Any, source: Any, study: Any) -> None:
        if not get(source.recipe).distils:
            raise ConfigError(f"study {study.name!r}: {self.name} recipe {spec.label!r} needs a kd source "
                              f"(its teacher distils into the quantized student), found {source.recipe!r}")

    def applies_to(self, net: Any) -> bool:
        return of(net).distillable

    def controls(self, spec: Any, at: Expansion, made: list[RunConfig]) -> list[Control]:
        """Besides the fp32 fine-tuning (with the same distillation), plain quantization-aware
        training of the same source at the same bits for the same epochs: what the teacher adds.
        That ``qat`` run is quantized too, so it gets its own control (plain fp32 fine-tuning)."""
        out = super().controls(spec, at, made)
        for run in made:
            plain = RunConfig(dataset=run.dataset, model=run.model, recipe=QAT.name, variant=f"{QAT.name}{run.bits}",
                              teacher=run.teacher, training=run.training, seed=run.seed, bits=run.bits,
                              init_run=run.init_run)
            out.append(Control(plain, (run.run_id,), WITHOUT_TEACHER))
            out += QAT.controls(spec, at, [plain])
        return out

    def validate_run(self, run: RunConfig) -> None:
        check_full_width(run)
        check_distils(run)
        self.check_quantized(run)

    def loss_step(self, run: RunConfig, job: Job) -> DistillationStep:
        return DistillationStep(teacher_distillation(run, job), job.net, fake_quantizer(run.bits))


KD_QAT = register(QuantizedDistillation())
