"""Saving and loading checkpoints atomically, with clear errors for missing or corrupt files.

A run folder holds ``checkpoint.pt`` (best-validation weights and the network config: enough to
rebuild the model) and ``last.pt`` (the full training state of the last finished epoch, for
``--resume``). Both are written to a temporary file and renamed, so an interruption at any moment
leaves the previous complete file in place.
"""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from common.outputs import write_file_atomic
from models.errors import CheckpointError, OutputError
from models.nets.architectures import build_model, net_from_dict
from models.training.compute import cpu_tensors

CHECKPOINT = "checkpoint.pt"
LAST = "last.pt"


def save_atomic(payload: dict[str, Any], path: Path) -> None:
    """torch.save ``payload`` to ``path`` atomically (serialised in memory, then
    :func:`common.outputs.write_file_atomic`): a reader never finds half a checkpoint.

    Tensors are saved on the CPU whatever device they were trained on, so a checkpoint loads on
    a machine without that device (and is read back with ``map_location="cpu"`` anyway)."""
    buffer = io.BytesIO()
    torch.save(cpu_tensors(payload), buffer)
    write_file_atomic(path, buffer.getvalue(), OutputError)


def write_json_atomic(data: Any, path: Path) -> None:
    """Write ``data`` as indented JSON atomically (:func:`common.outputs.write_file_atomic`)."""
    write_file_atomic(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n", OutputError)


def describe_exception(exc: BaseException) -> str:
    """``Type: first line of the message`` (at most 200 characters), for one-line errors; some
    exceptions (an EOFError from torch.load on an empty file) have no message at all."""
    lines = str(exc).splitlines()
    return f"{type(exc).__name__}: {lines[0][:200]}" if lines else type(exc).__name__


def recovery_advice(path: Path) -> str:
    """What to do about a damaged file, advice that works when followed literally.

    In a run folder both files go: ``checkpoint.pt`` holds the best epoch's weights and ``last.pt``
    the state that led there, and neither is any use without the other, so the run trains again
    from the start (``config.json`` stays, so ``train RUN_DIR`` can rebuild it)."""
    path = Path(path)
    run_dir = path.parent
    if (run_dir / "config.json").is_file():
        # Another file of the run (a quantized run's shadow.pt) goes too, or it would be read again.
        files = [str(f) for f in dict.fromkeys((path, run_dir / CHECKPOINT, run_dir / LAST))]
        listed = f"{', '.join(files[:-1])} and {files[-1]}"
        return (f"delete {listed}, then run the study again (or `python -m models train {run_dir}`): the run "
                "trains again from the start")
    return "replace it with an intact copy"


def load_payload(path: Path) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_atomic` (tensors and plain values only)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        if path.stat().st_size == 0:
            # torch.load reports an empty file as an EOFError without a message.
            raise EOFError("the file is empty (0 bytes)")
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, OSError) as exc:
        raise CheckpointError(
            f"{path}: corrupt or unreadable checkpoint ({describe_exception(exc)}); {recovery_advice(path)}"
        ) from None
    if not isinstance(payload, dict) or "model" not in payload or "net" not in payload:
        raise CheckpointError(f"{path}: not an Earshot checkpoint (expected keys 'model' and 'net'); "
                              f"{recovery_advice(path)}")
    return payload


def load_model(path: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the network stored in a checkpoint file or run folder; returns (model, payload)."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT
    payload = load_payload(path)
    net = net_from_dict(payload["net"], where=f"{path}: net")
    model = build_model(net)
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit the stored network config ({exc})") from None
    model.eval()
    return model, payload
