"""The files of a run folder ``<runs>/<run_id>/`` beside ``checkpoint.pt`` and ``last.pt``:
``metrics.json`` (a finished run's runs.csv row), and for a quantized run ``quantized.pt`` (the
bit-packed integers) and ``shadow.pt`` (the fp32 weights they were quantized from)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from models.errors import CheckpointError
from models.nets.quantize import quantize_model, save_quantized
from models.training.checkpoints import CHECKPOINT, load_model, save_atomic

METRICS = "metrics.json"
QUANTIZED = "quantized.pt"
SHADOW = "shadow.pt"


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


def resolve_run(reference: str, runs_root: Path, what: str) -> Path:
    """The folder of a run another run starts from (a run id under ``runs_root``, or a path)."""
    path = Path(reference)
    if not path.is_absolute():
        path = runs_root / path
    if not (path / CHECKPOINT).is_file():
        raise CheckpointError(f"{what} run {path} has no {CHECKPOINT}: train it first")
    return path


def finalise_quantized(run_dir: Path, bits: int) -> int:
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
