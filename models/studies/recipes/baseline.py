"""``baseline``: the network trained alone with the task loss — the reference every other recipe
is measured against."""

from __future__ import annotations

from typing import Any, ClassVar

from models.studies.recipes.registry import Expansion, Job, Recipe, register
from models.studies.run_config import RunConfig
from models.training.steps import PlainStep


class Baseline(Recipe):
    name: ClassVar[str] = "baseline"
    colour: ClassVar[str] = "#0072B2"
    reference: ClassVar[bool] = True
    source_of_others: ClassVar[bool] = True

    def expand(self, spec: Any, at: Expansion) -> list[RunConfig]:
        return [RunConfig(dataset=at.dataset, model=at.net, training=at.training, seed=at.seed, variant=spec.label)]

    def loss_step(self, run: RunConfig, job: Job) -> PlainStep:
        return PlainStep()


BASELINE = register(Baseline())
