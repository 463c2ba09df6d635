"""One run: resolve its config, train it (or transform its source run), score the best checkpoint
on the test split.

A run folder ``<runs>/<run_id>/`` holds ``config.json`` (fully resolved, seed, git commit),
``checkpoint.pt``, ``last.pt``, ``log.jsonl`` and, once finished, ``metrics.json``; a run with
``metrics.json`` is complete and is never trained again. What a run does besides what every run
shares is its recipe's (:mod:`models.studies.recipes`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common.audio_metrics import compute_all
from common.provenance import git_commit
from models.config import to_dict
from models.data.datasets import AudioDataset
from models.data.sources import load_dataset
from models.data.windows import cut_windows
from models.inference.rendering import render, torch_threads
from models.inference.streaming import stream
from models.nets.architectures import (
    build_model,
    fp32_bytes,
    label,
    macs_per_sample,
    net_from_dict,
    net_to_dict,
    of,
    parameter_count,
    size_label,
)
from models.studies.recipes.builtin import Job
from models.studies.recipes.builtin import of as recipe_of
from models.studies.run_config import RunConfig, identity
from models.studies.run_files import (
    METRICS,
    QUANTIZED,
    SHADOW,
    finished_row,
    is_complete,
    resolve_run,
)
from models.training.checkpoints import CHECKPOINT, load_model, write_json_atomic
from models.training.compute import resolve_device
from models.training.loop import TrainingConfig, TrainState, fit

__all__ = ["METRICS", "QUANTIZED", "SHADOW", "STREAM_BLOCK_SAMPLES", "RunConfig", "evaluate", "execute_run",
           "finished_row", "git_commit", "identity", "is_complete", "warmed_up"]

log = logging.getLogger(__name__)

STREAM_BLOCK_SAMPLES = 128


def warmed_up(training: TrainingConfig, net: Any) -> TrainingConfig:
    """Windows must be warmed up over the network's receptive field, or the first outputs of every
    window would see the zero padding instead of the audio that preceded it (WaveNets)."""
    needed = of(net).receptive_field(net) - 1
    if training.warmup_samples >= needed:
        return training
    log.info("%s: warm-up raised from %d to %d samples (the receptive field)", label(net),
             training.warmup_samples, needed)
    return dataclasses.replace(training, warmup_samples=needed)


def evaluate(model: torch.nn.Module, dataset: AudioDataset, threads: int | None = 1,
             device: torch.device | str = "cpu") -> dict[str, float]:
    """Test-split metrics of ``model`` plus its offline and streaming real-time factors.

    The test split is rendered on ``device`` (so ``rtf_offline`` is that device's); streaming is
    always measured on the CPU, block by block, as a plug-in would run it."""
    predictions, targets = [], []
    rendered_s = 0.0
    with torch_threads(threads):
        started = time.perf_counter()
        for segment in dataset.splits["test"]:
            predictions.append(render(model, segment.input, segment.knobs, device=device))
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
    dataset: AudioDataset | None = None, device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Train (or resume) one run and write its metrics; returns its runs.csv row.

    ``device`` (``auto``, ``cpu``, ``cuda`` or a torch.device; :func:`resolve_device`) is where the
    run trains and its test split is rendered. It is not part of the run's config or id (results
    do not depend on it beyond float tolerance); metrics.json records it as ``device``."""
    run_dir = runs_root / config.run_id
    if is_complete(run_dir):
        return finished_row(run_dir)
    device = resolve_device(device)
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
    recipe = recipe_of(config)
    with torch_threads(training.threads):
        torch.manual_seed(config.seed)
        model = build_model(net)
        train = cut_windows(dataset.splits["train"], training.window_samples, training.warmup_samples,
                            f"dataset {dataset.name!r} train split")
        validation = cut_windows(dataset.splits["validation"], training.window_samples,
                                 training.warmup_samples, f"dataset {dataset.name!r} validation split")
        if config.init_run is not None:
            source, _ = load_model(resolve_run(config.init_run, runs_root, "initial"))
            model.load_state_dict(source.state_dict())
        extra = {"dataset": dataset.name, "sample_rate": dataset.sample_rate,
                 "knob_names": list(dataset.knob_names), "run_id": config.run_id}
        job = Job(run_dir=run_dir, runs_root=runs_root, net=net, model=model, train=train, validation=validation,
                  payload=extra)
        trains = recipe.trains(config)
        # The step is built before the clock starts (a teacher's features are computed here), so
        # train_seconds is the training loop alone.
        step = recipe.loss_step(config, job) if trains else None
        started = time.perf_counter()
        if trains:
            state = fit(model, net, train, validation, training, run_dir, config.seed, resume=resume,
                        step=step, progress=progress, extra_payload=extra, device=device)
        else:
            recipe.transform(config, job)
            state = TrainState()
        train_s = time.perf_counter() - started
    size_bytes = recipe.finalise(config, run_dir)
    best, payload = load_model(run_dir)
    best_net = net_from_dict(payload["net"], where=f"{run_dir / CHECKPOINT}: net")
    scores = evaluate(best, dataset, device=device)
    fp32 = fp32_bytes(best)
    size_bytes = size_bytes or fp32
    file_bytes = (run_dir / recipe.model_file(config)).stat().st_size
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
    # The device is kept out of the row (runs.csv compares runs, and results do not depend on it).
    write_json_atomic({"row": row, "validation_loss": state.best_validation, "history": state.history,
                       "device": str(device)}, run_dir / METRICS)
    return row
