"""Compiled streaming kernels (numba): one compiled call per block, no per-layer Python or NumPy calls.

At plug-in block sizes (64–128 samples) the NumPy and torch streamers of
:mod:`models.inference.streaming` spend most of their time in call overhead, not arithmetic, which
makes small models look far more expensive than they are. The kernels here run a whole block of a
network in one ``numba.njit`` call (compiled on first use and cached on disk, so a second process
starts fast). :func:`kernel_streamer` picks the streamer for a network by its class.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from models.errors import ConfigError

_STREAMERS: dict[type, Callable[[torch.nn.Module, Sequence[float] | None], Any]] = {}


def _register_built_in() -> None:
    # Imported here, not at module level: numba compiles nothing until a streamer is made, but
    # importing it costs about a second that code which never streams should not pay.
    if _STREAMERS:
        return
    from models.inference.kernels.lstm import LSTMKernelStreamer
    from models.inference.kernels.wavenet import WaveNetKernelStreamer
    from models.nets.lstm import LSTMStack
    from models.nets.nam_lstm import NamLSTM
    from models.nets.wavenet import WaveNet

    _STREAMERS.update({LSTMStack: LSTMKernelStreamer, NamLSTM: LSTMKernelStreamer, WaveNet: WaveNetKernelStreamer})


def kernel_streamer(model: torch.nn.Module, knobs: Sequence[float] | None = None) -> Any:
    """The compiled streamer of ``model`` (its ``process(block)`` takes and returns (time,) float32
    NumPy arrays); ConfigError for a network without one (naming those that have one)."""
    _register_built_in()
    streamer = _STREAMERS.get(type(model))
    if streamer is None:
        names = ", ".join(sorted(t.__name__ for t in _STREAMERS))
        raise ConfigError(f"streaming engine 'compiled': expected one of {names}, found {type(model).__name__}")
    return streamer(model, knobs)
