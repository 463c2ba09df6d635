"""``ptq``: post-training quantization — the fp32 source run quantized as it is, without training."""

from __future__ import annotations

from typing import ClassVar

from models.nets.architectures import net_to_dict
from models.studies.recipes.quantized import QuantizedRecipe
from models.studies.recipes.registry import Job, register
from models.studies.run_config import RunConfig
from models.studies.run_files import SHADOW
from models.training.checkpoints import CHECKPOINT, save_atomic


class PostTrainingQuantization(QuantizedRecipe):
    name: ClassVar[str] = "ptq"
    colour: ClassVar[str] = "#009E73"

    def trains(self, run: RunConfig) -> bool:
        return False

    def transform(self, run: RunConfig, job: Job) -> None:
        # Once shadow.pt exists the source's weights were already moved there (an interrupted finalise).
        if not (job.run_dir / SHADOW).exists():
            save_atomic({"net": net_to_dict(job.net), **job.payload, "model": job.model.state_dict(), "epoch": 0},
                        job.run_dir / CHECKPOINT)


PTQ = register(PostTrainingQuantization())
