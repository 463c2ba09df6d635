"""Loss steps: what one mini-batch's loss is, for the training loop (:func:`models.training.loop.fit`).

The loop owns what every run shares (window order, optimiser, plateau halving, early stopping,
checkpoints, resume); a step owns how a batch is scored. :class:`PlainStep` applies the configured
loss terms, :class:`DistillationStep` adds the feature loss against cached teacher features (and
the response loss), :class:`SlimmableStep` trains several widths per batch. Quantization-aware
training is a plain or distillation step whose ``weight_transform`` passes the weights through the
straight-through fake quantizer. A new training method is a new step class.

Shapes: windows ``(count, time, 1)``; a batch ``index`` selects rows of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.func import functional_call

from models.data.windows import Windows
from models.nets.slimmable import (
    SlimmableConfig,
    allowed_widths,
    forward_at_width,
    sample_widths,
    slimmable_loss,
)
from models.training.distill import DistillConfig, FeatureAligner, TeacherTargets
from models.training.losses import WeightedLoss

WeightTransform = Callable[[torch.nn.Module], dict[str, torch.Tensor]]


def forward(model: torch.nn.Module, x: torch.Tensor, knobs: torch.Tensor | None,
            return_features: bool = False, weight_transform: WeightTransform | None = None):
    """``model(x, knobs)``, or with some weights replaced (e.g. fake-quantized) when a transform
    is given; gradients still reach the model's own (shadow) parameters."""
    if weight_transform is None:
        return model(x, knobs, return_features=return_features)
    return functional_call(model, weight_transform(model), (x, knobs), {"return_features": return_features})


def validation_loss(model: torch.nn.Module, windows: Windows, loss: WeightedLoss, batch_size: int,
                    weight_transform: WeightTransform | None = None,
                    widths: tuple[float, ...] | None = None) -> float:
    """Task loss over all validation windows (warm-up masked), weighted by window count; for a
    slimmable network the mean over ``widths``."""
    model.eval()
    total = 0.0
    warm = windows.warmup_samples
    with torch.inference_mode():
        for begin in range(0, len(windows), batch_size):
            sl = slice(begin, begin + batch_size)
            knobs = windows.knobs[sl] if windows.knobs.shape[1] else None
            if widths:
                for width in widths:
                    y, _ = forward_at_width(model, windows.inputs[sl], knobs, width=width)
                    total += float(loss(y[:, warm:], windows.targets[sl, warm:])) * y.shape[0] / len(widths)
                continue
            y, _ = forward(model, windows.inputs[sl], knobs, weight_transform=weight_transform)
            total += float(loss(y[:, warm:], windows.targets[sl, warm:])) * y.shape[0]
    return total / len(windows)


@dataclass
class Distillation:
    """What the kd recipe adds to a training run."""

    config: DistillConfig
    targets: TeacherTargets
    sample_weights: np.ndarray | None = None


class PlainStep:
    """The configured loss terms against the target, after the warm-up; ``weight_transform``
    (quantization-aware training) replaces weights in every forward pass, training and validation
    alike, while the optimiser updates the model's fp32 shadow weights."""

    sample_weights: np.ndarray | None = None

    def __init__(self, weight_transform: WeightTransform | None = None):
        self.weight_transform = weight_transform

    def parameters(self) -> list[torch.nn.Parameter]:
        """Trainable values of the step itself (a projection head), optimised with the model's."""
        return []

    def to(self, device: torch.device) -> None:
        """Move the step's own tensors to the device the model trains on (before the optimiser
        sees :meth:`parameters`)."""

    def state_dict(self) -> dict[str, Any] | None:
        """What ``last.pt`` keeps of the step to resume it (None: nothing)."""
        return None

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def start_epoch(self, seed: int, epoch: int) -> None:
        """Called before each epoch's batches (a step that draws at random reseeds here)."""

    def loss(self, model: torch.nn.Module, train: Windows, index: torch.Tensor, loss_fn: WeightedLoss,
             warm: int) -> torch.Tensor:
        knobs = train.knobs[index] if train.knobs.shape[1] else None
        y, _ = forward(model, train.inputs[index], knobs, weight_transform=self.weight_transform)
        return loss_fn(y[:, warm:], train.targets[index, warm:])

    def validation_loss(self, model: torch.nn.Module, windows: Windows, loss_fn: WeightedLoss,
                        batch_size: int) -> float:
        return validation_loss(model, windows, loss_fn, batch_size, self.weight_transform)


class DistillationStep(PlainStep):
    """The plain loss plus ``alpha`` · the feature loss of the student's layer against the cached
    teacher features (through a learned projection where configured) and ``response_alpha`` · the
    loss against the teacher's output. ``student`` is the student's network config."""

    def __init__(self, distillation: Distillation, student: Any, weight_transform: WeightTransform | None = None):
        super().__init__(weight_transform)
        self.distillation = distillation
        self.aligner = FeatureAligner(distillation.config, student, distillation.targets.teacher.config)
        self.sample_weights = distillation.sample_weights

    def parameters(self) -> list[torch.nn.Parameter]:
        return list(self.aligner.parameters())

    def to(self, device: torch.device) -> None:
        self.aligner.to(device)

    def state_dict(self) -> dict[str, Any]:
        return self.aligner.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.aligner.load_state_dict(state)

    def loss(self, model: torch.nn.Module, train: Windows, index: torch.Tensor, loss_fn: WeightedLoss,
             warm: int) -> torch.Tensor:
        config = self.distillation.config
        knobs = train.knobs[index] if train.knobs.shape[1] else None
        y, _, feats = forward(model, train.inputs[index], knobs, True, self.weight_transform)
        # The teacher's cache stays in CPU memory (it can be large); each batch goes to the model's device.
        t_feats, t_out = (t.to(y.device) for t in self.distillation.targets.get(index))
        loss = loss_fn(y[:, warm:], train.targets[index, warm:])
        loss = loss + config.alpha * self.aligner(feats[config.student_layer][:, warm:], t_feats)
        if config.response_alpha:
            loss = loss + config.response_alpha * loss_fn(y[:, warm:], t_out)
        return loss


class SlimmableStep(PlainStep):
    """Every mini-batch at widths drawn by the ``slimmable`` rule (uniform or sandwich, optionally
    with in-place distillation from the full width); the draws are seeded per epoch, so a resumed
    run repeats them. Validation is the mean over the evaluated ``widths``."""

    def __init__(self, slimmable: SlimmableConfig, model: torch.nn.Module):
        super().__init__()
        self.slimmable = slimmable
        self.train_widths = slimmable.train_widths or allowed_widths(model)
        self.generator = torch.Generator()

    def start_epoch(self, seed: int, epoch: int) -> None:
        self.generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch + 500_009)

    def loss(self, model: torch.nn.Module, train: Windows, index: torch.Tensor, loss_fn: WeightedLoss,
             warm: int) -> torch.Tensor:
        options = self.slimmable
        knobs = train.knobs[index] if train.knobs.shape[1] else None
        widths = sample_widths(self.train_widths, options.rule, self.generator, options.count)

        def masked(y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return loss_fn(y[:, warm:], t[:, warm:])

        loss, _ = slimmable_loss(model, train.inputs[index], train.targets[index], widths, masked, knobs,
                                 options.inplace_distillation)
        return loss

    def validation_loss(self, model: torch.nn.Module, windows: Windows, loss_fn: WeightedLoss,
                        batch_size: int) -> float:
        return validation_loss(model, windows, loss_fn, batch_size, widths=self.slimmable.widths)
