"""``qat``: quantization-aware fine-tuning of the fp32 source run through the straight-through
fake quantizer, then quantized."""

from __future__ import annotations

from typing import ClassVar

from models.studies.recipes.quantized import QuantizedRecipe, fake_quantizer
from models.studies.recipes.registry import Job, register
from models.studies.run_config import RunConfig
from models.training.steps import PlainStep


class QuantizationAwareTraining(QuantizedRecipe):
    name: ClassVar[str] = "qat"
    colour: ClassVar[str] = "#CC79A7"

    def loss_step(self, run: RunConfig, job: Job) -> PlainStep:
        return PlainStep(fake_quantizer(run.bits))


QAT = register(QuantizationAwareTraining())
