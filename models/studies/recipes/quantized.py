"""What the quantized recipes (``ptq``, ``qat``, ``kd_qat``) share: one run per fp32 run of the
entry's ``source`` and per entry of ``bits``, starting from that run's weights, and a finished run
quantized into ``quantized.pt`` (bit-packed) beside ``shadow.pt`` (the fp32 weights)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from models.errors import ConfigError
from models.nets.quantize import check_bits, fake_quantized_parameters
from models.studies.recipes.finetune import fine_tuning
from models.studies.recipes.registry import Control, Expansion, Recipe, check_full_width
from models.studies.run_config import RunConfig
from models.studies.run_files import QUANTIZED, finalise_quantized
from models.training.steps import WeightTransform

FINE_TUNED = "fp32 fine-tuned: same source, loss and epochs, no quantizer"
SOURCE_AS_IS = "fp32 source: no further training (ptq does not train)"


def fake_quantizer(bits: int) -> WeightTransform:
    """The weights as ``bits``-bit values in every forward pass; gradients pass straight through to
    the fp32 shadow weights."""
    return lambda model: fake_quantized_parameters(model, bits)


class QuantizedRecipe(Recipe):
    """A recipe whose runs start from a source run and end bit-packed."""

    quantized: ClassVar[bool] = True
    spec_keys: ClassVar[tuple[str, ...]] = ("bits", "source")

    def validate_spec(self, spec: Any) -> None:
        super().validate_spec(spec)
        if not spec.bits or spec.source is None:
            raise ConfigError(f"recipe {spec.label!r}: {self.name} needs bits (e.g. [8, 4]) and source "
                              "(the name of the recipe whose fp32 students it starts from)")
        for bits in spec.bits:
            check_bits(bits)

    def expand(self, spec: Any, at: Expansion) -> list[RunConfig]:
        runs = []
        for teacher, source in at.made.get(spec.source, {}).items():
            for bits in spec.bits:
                runs.append(RunConfig(dataset=at.dataset, model=at.net, recipe=self.name,
                                      variant=f"{spec.label}{bits}", teacher=teacher,
                                      teacher_run=source.teacher_run if self.distils else None,
                                      distill=spec.distill if self.distils else None, training=at.training,
                                      seed=at.seed, bits=bits, init_run=source.run_id))
        return runs

    def controls(self, spec: Any, at: Expansion, made: list[RunConfig]) -> list[Control]:
        """A run that trains gets the fp32 fine-tuning of its source for the same epochs with the
        same loss (``finetune``); one that does not (``ptq``) has its source as its control."""
        sources = {source.run_id: source for source in at.made.get(spec.source, {}).values()}
        out = []
        for run in made:
            if self.trains(run):
                out.append(Control(fine_tuning(run, run.training, init_run=run.init_run), (run.run_id,),
                                   FINE_TUNED))
            elif run.init_run in sources:
                out.append(Control(sources[run.init_run], (run.run_id,), SOURCE_AS_IS))
        return out

    def validate_run(self, run: RunConfig) -> None:
        check_full_width(run)
        self.check_quantized(run)

    def check_quantized(self, run: RunConfig) -> None:
        check_bits(run.bits)
        if run.init_run is None:
            raise ConfigError(f"a {run.recipe} run needs init_run: the fp32 run it starts from")

    def finalise(self, run: RunConfig, run_dir: Path) -> int:
        return finalise_quantized(run_dir, run.bits)

    def model_file(self, run: RunConfig) -> str:
        return QUANTIZED

