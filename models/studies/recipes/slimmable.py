"""``slimmable``: one network trained at widths drawn per mini-batch (uniform or sandwich rule,
optionally with in-place distillation), and each width below 1 a run of its own, cut from it
without training."""

from __future__ import annotations

from typing import Any, ClassVar

from models.errors import ConfigError
from models.nets.architectures import label, net_to_dict, of
from models.nets.slimmable import SlimmableConfig, slim
from models.studies.recipes.registry import Control, Expansion, Job, Recipe, check_fp32, register
from models.studies.run_config import RunConfig
from models.training.checkpoints import CHECKPOINT, save_atomic
from models.training.steps import SlimmableStep

WIDTHS_PER_BATCH = {"uniform": 1, "sandwich": 4}
"""Widths one mini-batch trains at by rule, where the settings give no ``count``."""


ALONE = "alone"
TRAINED_ALONE = "the same width trained alone: same data, seed and training budget"


class Slimmable(Recipe):
    name: ClassVar[str] = "slimmable"
    colour: ClassVar[str] = "#56B4E9"
    slims: ClassVar[bool] = True
    spec_keys: ClassVar[tuple[str, ...]] = ("slimmable",)

    def validate_student(self, spec: Any, net: Any, study: Any) -> None:
        if getattr(net, "width", 1.0) != 1.0:
            raise ConfigError(f"study {study.name!r}: recipe {spec.label!r} slims full-width "
                              f"networks; student {label(net)} is already at width {net.width}")

    def applies_to(self, net: Any) -> bool:
        return of(net).slimmable and getattr(net, "width", 1.0) == 1.0

    def expand(self, spec: Any, at: Expansion) -> list[RunConfig]:
        options = spec.slimmable or SlimmableConfig()
        full = RunConfig(dataset=at.dataset, model=at.net, recipe=self.name, variant=spec.label,
                         training=at.training, seed=at.seed, slimmable=options)
        runs = [full]
        for width in sorted(set(options.widths), reverse=True):
            if width == 1.0:
                continue
            runs.append(RunConfig(dataset=at.dataset, model=at.net, recipe=self.name,
                                  variant=f"{spec.label}{round(100 * width)}", training=at.training,
                                  seed=at.seed, width=width, init_run=full.run_id))
        return runs

    def controls(self, spec: Any, at: Expansion, made: list[RunConfig]) -> list[Control]:
        """Each slimmed width's network trained alone (``baseline``, variant ``alone``) for the same
        epochs on the same windows and seed. The full width is not compressed: its network trained
        alone is a control only where the study trains it anyway (a baseline entry of the full
        network with this budget, as paper.yaml has to ask what slimmable training costs)."""
        out = []
        for run in made:
            net = at.net if run.width == 1.0 else of(at.net).slimmed_config(at.net, run.width)
            alone = RunConfig(dataset=at.dataset, model=net, variant=ALONE, training=at.training, seed=at.seed)
            out.append(Control(alone, (run.run_id,), TRAINED_ALONE, if_trained=run.width == 1.0))
        return out

    def validate_run(self, run: RunConfig) -> None:
        if run.width == 1.0 and (run.slimmable is None or run.init_run is not None):
            raise ConfigError("a slimmable run at full width trains: it needs slimmable settings and no init_run")
        if run.width < 1.0 and run.init_run is None:
            raise ConfigError(f"a slimmable run at width {run.width} needs init_run: the trained slimmable run")
        check_fp32(run)

    def trains(self, run: RunConfig) -> bool:
        return run.width == 1.0

    def cost_factor(self, run: RunConfig) -> float:
        options = run.slimmable
        return WIDTHS_PER_BATCH[options.rule] if options.count is None else options.count

    def loss_step(self, run: RunConfig, job: Job) -> SlimmableStep:
        return SlimmableStep(run.slimmable, job.model)

    def transform(self, run: RunConfig, job: Job) -> None:
        # The trained slimmable network's first channels, as a really smaller network.
        small_net = of(job.net).slimmed_config(job.net, run.width)
        save_atomic({"net": net_to_dict(small_net), **job.payload, "model": slim(job.model, run.width).state_dict(),
                     "epoch": 0, "width": run.width}, job.run_dir / CHECKPOINT)


SLIMMABLE = register(Slimmable())
