"""The training loop: shuffled warm-up windows, plateau halving, early stopping, checkpoints, resume.

Resuming gives the same result as an uninterrupted run: the only randomness after the model's
initialisation is each epoch's window order, drawn from a generator seeded by (seed, epoch), and
everything else that changes (weights, optimiser moments, learning rate, counters) is in
``last.pt``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.func import functional_call
from tqdm.auto import tqdm

from models.config import to_dict
from models.data.windows import Windows
from models.errors import CheckpointError, ConfigError, TrainingError
from models.nets.lstm import NetConfig
from models.nets.slimmable import (
    SlimmableConfig,
    allowed_widths,
    forward_at_width,
    sample_widths,
    slimmable_loss,
)
from models.training.checkpoints import CHECKPOINT, LAST, load_payload, recovery_advice, save_atomic
from models.training.distill import DistillConfig, FeatureAligner, TeacherTargets
from models.training.losses import WeightedLoss

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingConfig:
    """Training settings; the defaults are the paper's recipe (Adam 3e-4, batch 8 × 2048, MAE)."""

    batch_size: int = 8
    window_samples: int = 2048
    warmup_samples: int = 256
    learning_rate: float = 3e-4
    loss: dict[str, float] = field(default_factory=lambda: {"mae": 1.0})
    lr_halve_patience_epochs: int = 5
    early_stop_patience_epochs: int = 30
    max_epochs: int = 1000
    max_batches_per_epoch: int | None = None
    validation_batch_size: int = 64
    # One thread: small recurrent models gain nothing from a second one, and with any other load
    # on the machine two threads are several times slower (measured; docs/zoo-methods.md).
    threads: int | None = 1

    def __post_init__(self) -> None:
        for name in ("batch_size", "window_samples", "max_epochs", "lr_halve_patience_epochs",
                     "early_stop_patience_epochs", "validation_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"training.{name}: expected >= 1, found {getattr(self, name)}")
        if self.warmup_samples < 0:
            raise ConfigError(f"training.warmup_samples: expected >= 0, found {self.warmup_samples}")
        if not self.learning_rate > 0:
            raise ConfigError(f"training.learning_rate: expected > 0, found {self.learning_rate}")
        if self.max_batches_per_epoch is not None and self.max_batches_per_epoch < 1:
            raise ConfigError("training.max_batches_per_epoch: expected >= 1 or null")
        WeightedLoss(self.loss)  # rejects unknown terms now rather than mid-run


@dataclass
class Distillation:
    """What the kd recipe adds to a training run."""

    config: DistillConfig
    targets: TeacherTargets
    sample_weights: np.ndarray | None = None


@dataclass
class TrainState:
    epoch: int = 0
    best_validation: float = math.inf
    best_epoch: int = -1
    stale_epochs: int = 0
    epochs_since_lr_change: int = 0
    learning_rate: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)


def _epoch_order(n_windows: int, batch_size: int, seed: int, epoch: int,
                 weights: np.ndarray | None, max_batches: int | None) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    if weights is None:
        order = torch.randperm(n_windows, generator=generator)
    else:
        order = torch.multinomial(torch.from_numpy(weights), n_windows, replacement=True, generator=generator)
    batches = list(order.split(batch_size))
    return batches[:max_batches] if max_batches else batches


def _logged_epoch(line: str) -> float:
    """The epoch of a log.jsonl line; infinity (never kept) for a line that is not a record."""
    try:
        record = json.loads(line)
        return int(record["epoch"])
    except (ValueError, KeyError, TypeError):
        return math.inf


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


def fit(
    model: torch.nn.Module,
    net: NetConfig,
    train: Windows,
    validation: Windows,
    config: TrainingConfig,
    run_dir: Path,
    seed: int,
    resume: bool = False,
    distillation: Distillation | None = None,
    progress: bool = False,
    extra_payload: dict[str, Any] | None = None,
    weight_transform: WeightTransform | None = None,
    slimmable: SlimmableConfig | None = None,
) -> TrainState:
    """Train ``model`` in place and keep ``checkpoint.pt`` (best validation) and ``last.pt``.

    ``weight_transform`` (quantization-aware training) replaces weights in every forward pass,
    training and validation alike, while the optimiser updates the model's fp32 shadow weights.
    ``slimmable`` trains every mini-batch at widths drawn by its rule (the draws are seeded per
    epoch, so a resumed run repeats them).

    Raises TrainingError when the loss stops being finite; KeyboardInterrupt propagates after the
    last finished epoch's checkpoint is safely on disk.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    loss_fn = WeightedLoss(config.loss)
    aligner = None
    if distillation is not None:
        teacher_net = distillation.targets.teacher.config
        aligner = FeatureAligner(distillation.config, net, teacher_net)
    params = list(model.parameters()) + (list(aligner.parameters()) if aligner else [])
    optimizer = torch.optim.Adam(params, lr=config.learning_rate)
    state = TrainState(learning_rate=config.learning_rate)
    log_path = run_dir / "log.jsonl"
    if resume and (run_dir / LAST).exists() and not (run_dir / CHECKPOINT).exists():
        # last.pt without the best epoch's weights cannot finish the run (the best epoch would not
        # be saved again unless a later one beat it): train again from the start.
        log.warning("%s: %s is missing, so the best epoch's weights are lost; training again from the start",
                    run_dir.name, CHECKPOINT)
        resume = False
    if resume and (run_dir / LAST).exists():
        payload = load_payload(run_dir / LAST)
        try:
            model.load_state_dict(payload["model"])
            optimizer.load_state_dict(payload["optimizer"])
            if aligner is not None:
                aligner.load_state_dict(payload["aligner"])
            state = TrainState(**json.loads(payload["state"]))
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise CheckpointError(f"{run_dir / LAST}: cannot resume from it ({exc}); "
                                  f"{recovery_advice(run_dir / LAST)}") from None
        log.info("resuming %s at epoch %d", run_dir.name, state.epoch)
        # Drop log lines of an epoch that was interrupted after last.pt was written, and a line
        # cut short by a kill in the middle of writing it.
        if log_path.exists():
            kept = [line for line in log_path.read_text(encoding="utf-8", errors="replace").splitlines()
                    if _logged_epoch(line) < state.epoch]
            log_path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    elif log_path.exists():
        log_path.unlink()

    if state.stale_epochs >= config.early_stop_patience_epochs:
        return state  # the interrupted run had already stopped early
    warm = config.warmup_samples
    payload_base = {"net": to_dict(net), **(extra_payload or {})}
    sample_weights = distillation.sample_weights if distillation else None
    if slimmable is not None and (distillation is not None or weight_transform is not None):
        raise ConfigError("slimmable training combines with neither distillation nor quantization-aware training")
    train_widths = (slimmable.train_widths or allowed_widths(model)) if slimmable else ()

    def masked(y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return loss_fn(y[:, warm:], t[:, warm:])

    epochs = tqdm(range(state.epoch, config.max_epochs), desc=run_dir.name, disable=not progress,
                  initial=state.epoch, total=config.max_epochs, leave=False)
    for epoch in epochs:
        for group in optimizer.param_groups:
            group["lr"] = state.learning_rate
        model.train()
        batches = _epoch_order(len(train), config.batch_size, seed, epoch, sample_weights,
                               config.max_batches_per_epoch)
        started = time.perf_counter()
        running = 0.0
        width_generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch + 500_009)
        for step, index in enumerate(tqdm(batches, desc=f"epoch {epoch + 1}", disable=not progress, leave=False)):
            knobs = train.knobs[index] if train.knobs.shape[1] else None
            x = train.inputs[index]
            target = train.targets[index, warm:]
            if slimmable is not None:
                widths = sample_widths(train_widths, slimmable.rule, width_generator, slimmable.count)
                loss, _ = slimmable_loss(model, x, train.targets[index], widths, masked, knobs,
                                         slimmable.inplace_distillation)
            elif distillation is None:
                y, _ = forward(model, x, knobs, weight_transform=weight_transform)
                loss = loss_fn(y[:, warm:], target)
            else:
                y, _, feats = forward(model, x, knobs, True, weight_transform)
                t_feats, t_out = distillation.targets.get(index)
                loss = loss_fn(y[:, warm:], target)
                loss = loss + distillation.config.alpha * aligner(
                    feats[distillation.config.student_layer][:, warm:], t_feats)
                if distillation.config.response_alpha:
                    loss = loss + distillation.config.response_alpha * loss_fn(y[:, warm:], t_out)
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"{run_dir.name}: the loss became {loss.item()} at epoch {epoch + 1}, batch {step + 1}; "
                    f"the last good state is in {run_dir / LAST} — lower the learning rate "
                    f"(now {state.learning_rate:g}) or check the data for extreme values"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            running += loss.item()
        train_loss = running / max(len(batches), 1)
        val = validation_loss(model, validation, loss_fn, config.validation_batch_size, weight_transform,
                              slimmable.widths if slimmable else None)
        if not math.isfinite(val):
            raise TrainingError(f"{run_dir.name}: the validation loss became {val} at epoch {epoch + 1}")
        improved = val < state.best_validation
        if improved:
            state.best_validation, state.best_epoch = val, epoch
            state.stale_epochs = state.epochs_since_lr_change = 0
            save_atomic({**payload_base, "model": model.state_dict(), "epoch": epoch + 1,
                         "validation_loss": val}, run_dir / CHECKPOINT)
        else:
            state.stale_epochs += 1
            state.epochs_since_lr_change += 1
        # Halve after N stale epochs (Keras' ReduceLROnPlateau semantics, which the paper used;
        # torch's waits one epoch longer).
        if state.epochs_since_lr_change >= config.lr_halve_patience_epochs:
            state.learning_rate /= 2
            state.epochs_since_lr_change = 0
        record = {"epoch": epoch, "train_loss": train_loss, "validation_loss": val,
                  "learning_rate": state.learning_rate, "best": improved,
                  "seconds": round(time.perf_counter() - started, 3), "batches": len(batches)}
        state.history.append(record)
        state.epoch = epoch + 1
        with log_path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        last = {**payload_base, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "state": json.dumps(state.__dict__)}
        if aligner is not None:
            last["aligner"] = aligner.state_dict()
        save_atomic(last, run_dir / LAST)
        epochs.set_postfix(train=f"{train_loss:.4g}", val=f"{val:.4g}")
        log.debug("%s epoch %d: train %.5g, validation %.5g%s", run_dir.name, epoch + 1, train_loss, val,
                 " (best)" if improved else "")
        if state.stale_epochs >= config.early_stop_patience_epochs:
            log.info("%s: early stop after %d stale epochs", run_dir.name, state.stale_epochs)
            break
    return state
