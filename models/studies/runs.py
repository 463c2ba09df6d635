"""One training run: resolve its config, train, score the best checkpoint on the test split.

A run folder ``<runs>/<run_id>/`` holds ``config.json`` (fully resolved, seed, git commit),
``checkpoint.pt``, ``last.pt``, ``log.jsonl`` and, once finished, ``metrics.json``; a run with
``metrics.json`` is complete and is never trained again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from common.audio_metrics import compute_all
from models.config import to_dict
from models.data.datasets import AudioDataset, DatasetConfig
from models.data.sources import load_dataset
from models.data.windows import cut_windows
from models.errors import CheckpointError, ConfigError
from models.inference.rendering import render, torch_threads
from models.inference.streaming import stream
from models.nets.architectures import (
    build_model,
    fp32_bytes,
    is_net_config,
    label,
    macs_per_sample,
    net_from_dict,
    net_to_dict,
    of,
    parameter_count,
    size_label,
)
from models.nets.architectures import identity as net_identity
from models.nets.quantize import (
    check_bits,
    fake_quantized_parameters,
    quantize_model,
    save_quantized,
)
from models.nets.slimmable import SlimmableConfig, slim
from models.training.checkpoints import CHECKPOINT, load_model, save_atomic, write_json_atomic
from models.training.distill import (
    DistillConfig,
    balanced_weights,
    teacher_targets,
    window_embeddings,
)
from models.training.loop import TrainingConfig, TrainState, fit
from models.training.steps import Distillation, DistillationStep, PlainStep, SlimmableStep

log = logging.getLogger(__name__)

METRICS = "metrics.json"
QUANTIZED = "quantized.pt"
SHADOW = "shadow.pt"
QUANTIZED_RECIPES = ("ptq", "qat", "kd_qat")
STREAM_BLOCK_SAMPLES = 128


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a trained model; its hash is part of the run id."""

    dataset: DatasetConfig
    model: Any  # a registered architecture's config (a stored record is converted)
    recipe: Literal["baseline", "kd", "ptq", "qat", "kd_qat", "slimmable"] = "baseline"
    variant: str = "baseline"
    teacher: str | None = None
    teacher_run: str | None = None
    distill: DistillConfig | None = None
    training: TrainingConfig = field(default_factory=TrainingConfig)
    seed: int = 0
    bits: int = 32
    init_run: str | None = None
    width: float = 1.0
    slimmable: SlimmableConfig | None = None

    def __post_init__(self) -> None:
        # Frozen: the one conversion a config read from config.json needs, made once here.
        object.__setattr__(self, "model", net_from_dict(self.model, "model"))
        if not 0.0 < self.width <= 1.0:
            raise ConfigError(f"width: expected a fraction in (0, 1], found {self.width}")
        if self.recipe == "slimmable":
            if self.width == 1.0 and (self.slimmable is None or self.init_run is not None):
                raise ConfigError("a slimmable run at full width trains: it needs slimmable settings and no init_run")
            if self.width < 1.0 and self.init_run is None:
                raise ConfigError(f"a slimmable run at width {self.width} needs init_run: the trained slimmable run")
        elif self.width != 1.0 or self.slimmable is not None:
            raise ConfigError(f"recipe {self.recipe} trains at full width; width and slimmable settings belong "
                              "to the slimmable recipe")
        if self.recipe in ("kd", "kd_qat") and not of(self.model).distillable:
            raise ConfigError(f"a {self.recipe} run distils LSTM features; {label(self.model)} is a {self.model.arch}")
        if self.recipe in ("kd", "kd_qat") and (self.teacher_run is None or self.distill is None):
            raise ConfigError(f"a {self.recipe} run needs teacher_run and distill settings")
        if self.recipe in QUANTIZED_RECIPES:
            check_bits(self.bits)
            if self.init_run is None:
                raise ConfigError(f"a {self.recipe} run needs init_run: the fp32 run it starts from")
        elif self.bits != 32:
            raise ConfigError(f"recipe {self.recipe} trains fp32 weights; bits must be 32, found {self.bits}")

    @property
    def run_id(self) -> str:
        digest = hashlib.sha256(json.dumps(identity(self), sort_keys=True).encode()).hexdigest()[:8]
        who = self.variant if self.teacher is None else f"{self.variant}-{self.teacher}"
        return f"{self.dataset.name}_{label(self.model)}_{who}_s{self.seed}_{digest}"


def identity(config: Any) -> Any:
    """The config without fields left at their defaults, recursively: what a run id hashes.

    A setting added to the code later, with a default that keeps the old behaviour, then leaves
    every existing run id — and so every finished run — valid.
    """
    if is_net_config(config):
        return net_identity(config)
    if dataclasses.is_dataclass(config):
        out = {}
        for f in dataclasses.fields(config):
            value = getattr(config, f.name)
            if f.default is not dataclasses.MISSING and value == f.default:
                continue
            if f.default_factory is not dataclasses.MISSING and value == f.default_factory():
                continue
            out[f.name] = identity(value)
        return out
    return to_dict(config)


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def is_complete(run_dir: Path) -> bool:
    """metrics.json says the run finished; without checkpoint.pt (deleted as a damaged file's
    advice says) it trains again."""
    return (run_dir / METRICS).is_file() and (run_dir / CHECKPOINT).is_file()


def finished_row(run_dir: Path) -> dict[str, Any]:
    """The runs.csv row a finished run wrote into its metrics.json."""
    path = run_dir / METRICS
    try:
        row = json.loads(path.read_text(encoding="utf-8"))["row"]
        if not isinstance(row, dict):
            raise TypeError(f"'row' is a {type(row).__name__}")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        detail = f"line {exc.lineno}: {exc.msg}" if isinstance(exc, json.JSONDecodeError) else str(exc)
        # Without metrics.json the run is scored again from its checkpoint (training resumes from
        # last.pt, which already holds the finished state).
        raise CheckpointError(f"{path}: expected the finished run's JSON with a 'row' of results, found an "
                              f"unreadable file ({detail}); delete it and run the same command again") from None
    return row


def _resolve_run(reference: str, runs_root: Path, what: str) -> Path:
    path = Path(reference)
    if not path.is_absolute():
        path = runs_root / path
    if not (path / CHECKPOINT).is_file():
        raise CheckpointError(f"{what} run {path} has no {CHECKPOINT}: train it first")
    return path


def _finalise_quantized(run_dir: Path, bits: int) -> int:
    """Quantize the best fp32 (shadow) weights: ``quantized.pt`` holds the bit-packed integers,
    ``checkpoint.pt`` the dequantized weights every renderer uses, ``shadow.pt`` the fp32 ones.
    Safe to repeat after an interruption. Returns the packed size in bytes."""
    if not (run_dir / SHADOW).exists():
        os.replace(run_dir / CHECKPOINT, run_dir / SHADOW)
    shadow, payload = load_model(run_dir / SHADOW)
    weights = quantize_model(shadow, bits)
    base = {k: v for k, v in payload.items() if k != "model"}
    save_quantized(weights, run_dir / QUANTIZED, extra={"net": payload["net"], "sample_rate": payload.get("sample_rate"),
                                                          "knob_names": payload.get("knob_names", [])})
    save_atomic({**base, "model": weights.state_dict(), "bits": bits, "packed_bytes": weights.packed_bytes},
                run_dir / CHECKPOINT)
    return weights.packed_bytes


def warmed_up(training: TrainingConfig, net: Any) -> TrainingConfig:
    """Windows must be warmed up over the network's receptive field, or the first outputs of every
    window would see the zero padding instead of the audio that preceded it (WaveNets)."""
    needed = of(net).receptive_field(net) - 1
    if training.warmup_samples >= needed:
        return training
    log.info("%s: warm-up raised from %d to %d samples (the receptive field)", label(net),
             training.warmup_samples, needed)
    return dataclasses.replace(training, warmup_samples=needed)


def evaluate(model: torch.nn.Module, dataset: AudioDataset, threads: int | None = 1) -> dict[str, float]:
    """Test-split metrics of ``model`` plus its offline and streaming real-time factors."""
    predictions, targets = [], []
    rendered_s = 0.0
    with torch_threads(threads):
        started = time.perf_counter()
        for segment in dataset.splits["test"]:
            predictions.append(render(model, segment.input, segment.knobs))
            targets.append(segment.target)
        rendered_s = time.perf_counter() - started
        first = dataset.splits["test"][0]
        stream_len = min(len(first.input), 2 * dataset.sample_rate)
        stream(model, first.input[: STREAM_BLOCK_SAMPLES * 8], STREAM_BLOCK_SAMPLES, first.knobs)  # warm-up
        started = time.perf_counter()
        stream(model, first.input[:stream_len], STREAM_BLOCK_SAMPLES, first.knobs)
        stream_s = time.perf_counter() - started
    prediction = np.concatenate(predictions)
    target = np.concatenate(targets)
    scores = compute_all(prediction, target, dataset.sample_rate)
    audio_s = len(target) / dataset.sample_rate
    return {
        **{f"test_{k}": float(v) for k, v in scores.items()},
        "rtf_offline": audio_s / rendered_s,
        "rtf_stream": (stream_len / dataset.sample_rate) / stream_s,
    }


def execute_run(
    config: RunConfig, runs_root: Path, resume: bool = True, progress: bool = False,
    dataset: AudioDataset | None = None,
) -> dict[str, Any]:
    """Train (or resume) one run and write its metrics; returns its runs.csv row."""
    run_dir = runs_root / config.run_id
    if is_complete(run_dir):
        return finished_row(run_dir)
    dataset = dataset or load_dataset(config.dataset)
    net = of(config.model).with_knobs(config.model, len(dataset.knob_names))
    training = warmed_up(config.training, net)
    # "training" stays as configured (its hash is in the run id; `train RUN_DIR` rebuilds the run
    # from it); "effective_training" is what the run used.
    resolved = {**to_dict(config), "model": net_to_dict(net), "effective_training": to_dict(training),
                "run_id": config.run_id,
                "git_commit": git_commit(), "sample_rate": dataset.sample_rate,
                "knob_names": list(dataset.knob_names), "latency_samples": dataset.latency_samples}
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(resolved, run_dir / "config.json")
    with torch_threads(training.threads):
        torch.manual_seed(config.seed)
        model = build_model(net)
        train = cut_windows(dataset.splits["train"], training.window_samples, training.warmup_samples,
                            f"dataset {dataset.name!r} train split")
        validation = cut_windows(dataset.splits["validation"], training.window_samples,
                                 training.warmup_samples, f"dataset {dataset.name!r} validation split")
        distillation = None
        if config.init_run is not None:
            source, _ = load_model(_resolve_run(config.init_run, runs_root, "initial"))
            model.load_state_dict(source.state_dict())
        if config.recipe in ("kd", "kd_qat"):
            teacher_dir = _resolve_run(config.teacher_run, runs_root, "teacher")
            teacher, payload = load_model(teacher_dir)
            if payload.get("dataset") != config.dataset.name:
                raise ConfigError(f"teacher {teacher_dir.name} was trained on {payload.get('dataset')!r}, "
                                  f"not on {config.dataset.name!r}")
            targets = teacher_targets(teacher, config.distill, train)
            weights = None
            if config.distill.balanced_sampling:
                weights, labels = balanced_weights(window_embeddings(targets), config.distill.clusters, config.seed)
                log.info("balanced sampling: cluster sizes %s", np.bincount(labels).tolist())
            distillation = Distillation(config.distill, targets, weights)
        extra = {"dataset": dataset.name, "sample_rate": dataset.sample_rate,
                 "knob_names": list(dataset.knob_names), "run_id": config.run_id}
        started = time.perf_counter()
        if config.recipe == "slimmable" and config.width < 1.0:
            # No training: the trained slimmable network's first channels, as a really smaller net.
            small_net = of(net).slimmed_config(net, config.width)
            save_atomic({"net": net_to_dict(small_net), **extra, "model": slim(model, config.width).state_dict(),
                         "epoch": 0, "width": config.width}, run_dir / CHECKPOINT)
            state = TrainState()
        elif config.recipe == "ptq":
            # No training: the fp32 source, quantized as it is.
            if not (run_dir / SHADOW).exists():
                save_atomic({"net": net_to_dict(net), **extra, "model": model.state_dict(), "epoch": 0},
                            run_dir / CHECKPOINT)
            state = TrainState()
        else:
            transform = None
            if config.recipe in ("qat", "kd_qat"):
                bits = config.bits
                transform = lambda m: fake_quantized_parameters(m, bits)  # noqa: E731
            if config.slimmable is not None:
                step = SlimmableStep(config.slimmable, model)
            elif distillation is not None:
                step = DistillationStep(distillation, net, transform)
            else:
                step = PlainStep(transform)
            state = fit(model, net, train, validation, training, run_dir, config.seed, resume=resume,
                        step=step, progress=progress, extra_payload=extra)
        train_s = time.perf_counter() - started
    size_bytes = None
    if config.recipe in QUANTIZED_RECIPES:
        size_bytes = _finalise_quantized(run_dir, config.bits)
    best, payload = load_model(run_dir)
    best_net = net_from_dict(payload["net"], where=f"{run_dir / CHECKPOINT}: net")
    scores = evaluate(best, dataset)
    fp32 = fp32_bytes(best)
    size_bytes = size_bytes or fp32
    file_bytes = (run_dir / (QUANTIZED if config.recipe in QUANTIZED_RECIPES else CHECKPOINT)).stat().st_size
    row = {
        "run_id": config.run_id, "dataset": dataset.name, "arch": net.arch,
        "layers": size_label(best_net), "recipe": config.recipe, "variant": config.variant,
        "teacher": config.teacher or "", "bits": config.bits, "width": config.width,
        "params": parameter_count(best), "bytes": size_bytes, "macs_per_sample": macs_per_sample(best_net),
        "model": label(best_net),
        "epochs": state.epoch, "best_epoch": state.best_epoch + 1, "seed": config.seed,
        **scores, "train_seconds": round(train_s, 1),
        "file_bytes": file_bytes, "fp32_bytes": fp32, "ratio_to_fp32": size_bytes / fp32,
        "teacher_run": config.teacher_run or "", "init_run": config.init_run or "",
    }
    write_json_atomic({"row": row, "validation_loss": state.best_validation, "history": state.history},
                      run_dir / METRICS)
    return row
