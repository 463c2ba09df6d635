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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from models.data.windows import Windows
from models.errors import CheckpointError, ConfigError, TrainingError
from models.nets.architectures import net_to_dict
from models.training.checkpoints import CHECKPOINT, LAST, load_payload, recovery_advice, save_atomic
from models.training.compute import windows_on
from models.training.losses import WeightedLoss
from models.training.steps import Distillation, PlainStep, WeightTransform, forward, validation_loss

__all__ = ["Distillation", "TrainState", "TrainingConfig", "WeightTransform", "fit", "forward", "validation_loss"]

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


def fit(
    model: torch.nn.Module,
    net: Any,
    train: Windows,
    validation: Windows,
    config: TrainingConfig,
    run_dir: Path,
    seed: int,
    resume: bool = False,
    step: PlainStep | None = None,
    progress: bool = False,
    extra_payload: dict[str, Any] | None = None,
    device: torch.device | str = "cpu",
) -> TrainState:
    """Train ``model`` in place and keep ``checkpoint.pt`` (best validation) and ``last.pt``.

    ``step`` computes each mini-batch's loss and the validation loss (:mod:`models.training.steps`;
    default the plain step): distillation, slimmable training and quantization-aware training are
    steps, not branches here.

    ``device`` (:func:`models.training.compute.resolve_device`) is where the model, the step and
    the windows are moved to train; the model stays there afterwards. Checkpoints hold CPU tensors
    whatever the device, so a run resumes on another one.

    Raises TrainingError when the loss stops being finite; KeyboardInterrupt propagates after the
    last finished epoch's checkpoint is safely on disk.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    loss_fn = WeightedLoss(config.loss)
    step = step or PlainStep()
    device = torch.device(device)
    model.to(device)
    step.to(device)
    train, validation = windows_on(train, device), windows_on(validation, device)
    params = list(model.parameters()) + step.parameters()
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
            if step.state_dict() is not None:
                step.load_state_dict(payload["aligner"])
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
    payload_base = {"net": net_to_dict(net), **(extra_payload or {})}
    epochs = tqdm(range(state.epoch, config.max_epochs), desc=run_dir.name, disable=not progress,
                  initial=state.epoch, total=config.max_epochs, leave=False)
    for epoch in epochs:
        for group in optimizer.param_groups:
            group["lr"] = state.learning_rate
        model.train()
        batches = _epoch_order(len(train), config.batch_size, seed, epoch, step.sample_weights,
                               config.max_batches_per_epoch)
        started = time.perf_counter()
        running = 0.0
        step.start_epoch(seed, epoch)
        for n, index in enumerate(tqdm(batches, desc=f"epoch {epoch + 1}", disable=not progress, leave=False)):
            loss = step.loss(model, train, index, loss_fn, warm)
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"{run_dir.name}: the loss became {loss.item()} at epoch {epoch + 1}, batch {n + 1}; "
                    f"the last good state is in {run_dir / LAST} — lower the learning rate "
                    f"(now {state.learning_rate:g}) or check the data for extreme values"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            running += loss.item()
        train_loss = running / max(len(batches), 1)
        val = step.validation_loss(model, validation, loss_fn, config.validation_batch_size)
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
        if step.state_dict() is not None:
            last["aligner"] = step.state_dict()
        save_atomic(last, run_dir / LAST)
        epochs.set_postfix(train=f"{train_loss:.4g}", val=f"{val:.4g}")
        log.debug("%s epoch %d: train %.5g, validation %.5g%s", run_dir.name, epoch + 1, train_loss, val,
                 " (best)" if improved else "")
        if state.stale_epochs >= config.early_stop_patience_epochs:
            log.info("%s: early stop after %d stale epochs", run_dir.name, state.stale_epochs)
            break
    return state
