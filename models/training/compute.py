"""Where tensors are computed: the ``--device auto|cpu|cuda`` option of ``study``, ``train`` and ``render``.

The device is never part of a run's config or id: a run's results must not depend on it beyond
float tolerance, so a run started on a GPU can be resumed on a CPU and the other way round.
Checkpoints always hold CPU tensors (:func:`cpu_tensors`), so they load on any machine.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any

import torch

from models.data.windows import Windows
from models.errors import ConfigError

DEVICE_CHOICES = ("auto", "cpu", "cuda")
CPU = torch.device("cpu")


def resolve_device(name: str | torch.device, option: str = "--device") -> torch.device:
    """``auto`` → CUDA when torch sees a GPU, else the CPU; ``cpu``; ``cuda`` (refused without a GPU).

    ``option`` names the setting in the one-line ConfigError for an unknown or unavailable device.
    """
    if isinstance(name, torch.device):
        name = str(name)
    if name == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else CPU
    if name == "cpu":
        return CPU
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{option} cuda: expected a CUDA GPU that torch can use, found none "
                              f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}); "
                              "use --device cpu or auto")
        return torch.device("cuda")
    raise ConfigError(f"{option}: expected one of {', '.join(DEVICE_CHOICES)}, found {name!r}")


def cpu_tensors(value: Any) -> Any:
    """``value`` with every tensor inside dicts, lists and tuples moved to the CPU (CPU tensors are
    returned as they are, not copied)."""
    if isinstance(value, torch.Tensor):
        return value.cpu()
    if isinstance(value, dict):
        return {key: cpu_tensors(item) for key, item in value.items()}
    if isinstance(value, list):
        return [cpu_tensors(item) for item in value]
    if isinstance(value, tuple):
        return tuple(cpu_tensors(item) for item in value)
    return value


def module_device(module: torch.nn.Module) -> torch.device:
    """The device of the module's first parameter or buffer (the CPU for a module without any)."""
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return CPU


def windows_on(windows: Windows, device: torch.device) -> Windows:
    """``windows`` with inputs, targets and knobs on ``device`` (the same object on its own device)."""
    if windows.inputs.device == device:
        return windows
    return dataclasses.replace(windows, inputs=windows.inputs.to(device), targets=windows.targets.to(device),
                               knobs=windows.knobs.to(device))


@contextlib.contextmanager
def on_device(module: torch.nn.Module, device: torch.device | str) -> Iterator[torch.nn.Module]:
    """Move ``module`` to ``device`` for the block and back to where it was afterwards (a no-op,
    without copies, when it is already there)."""
    device = torch.device(device)
    before = module_device(module)
    if before.type == device.type and device.index in (None, before.index):
        yield module
        return
    module.to(device)
    try:
        yield module
    finally:
        module.to(before)
