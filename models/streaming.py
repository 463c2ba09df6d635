"""Real-time style streaming: fixed blocks in order, carrying the network state, and its speed.

Both architectures stream through the same call, ``model(block, knobs, state)``: an LSTM carries
its (h, c) per layer, a WaveNet its cached convolution history (``(kernel − 1)·dilation`` past
columns per layer), so no block recomputes the receptive field and a block's work is proportional
to its length. The output equals whole-file rendering (tested to 1e-5).

The real-time factor is seconds of audio per second of computation, measured on one thread
(``torch.set_num_threads``) as the median of repeated runs after one warm-up run, the way NAM
measures its plug-in (2 s of audio in small buffers).
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Sequence

import numpy as np
import torch

from .errors import ConfigError
from .rendering import torch_threads

log = logging.getLogger(__name__)


def _knobs(knobs: Sequence[float] | None, n_knobs: int) -> torch.Tensor | None:
    values = [] if knobs is None else list(knobs)
    if len(values) != n_knobs:
        raise ConfigError(f"streaming: this model needs {n_knobs} knob value(s), found {len(values)}")
    return torch.tensor(values, dtype=torch.float32)[None, :] if values else None


def stream(
    model: torch.nn.Module, audio: np.ndarray, block_samples: int, knobs: Sequence[float] | None = None
) -> np.ndarray:
    """Render ``audio`` (time,) block by block, carrying the state; returns (time,) float32.

    The last block may be shorter. The model is called under ``torch.inference_mode``.
    """
    if isinstance(block_samples, bool) or not isinstance(block_samples, int) or block_samples < 1:
        raise ConfigError(f"block_samples: expected an integer >= 1, found {block_samples!r}")
    audio = np.ascontiguousarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ConfigError(f"streaming: expected mono audio of shape (time,), found shape {audio.shape}")
    k = _knobs(knobs, getattr(model.config, "n_knobs", 0))
    x = torch.from_numpy(audio)
    out = np.empty_like(audio)
    state = None
    with torch.inference_mode():
        for begin in range(0, audio.shape[0], block_samples):
            block = x[begin : begin + block_samples][None, :, None]
            y, state = model(block, k, state)
            out[begin : begin + block.shape[1]] = y[0, :, 0].numpy()
    return out


def measure_rtf(
    model: torch.nn.Module,
    sample_rate: int,
    block_samples: int,
    seconds: float = 2.0,
    repeats: int = 5,
    threads: int | None = 1,
    knobs: Sequence[float] | None = None,
    seed: int = 0,
) -> float:
    """Median real-time factor of :func:`stream` over ``repeats`` runs of ``seconds`` of noise.

    The input is seeded Gaussian noise at −20 dBFS RMS (the arithmetic does not depend on the
    signal). One untimed warm-up run comes first (allocator, kernel selection).
    """
    if repeats < 1 or seconds <= 0 or sample_rate < 1:
        raise ConfigError(f"measure_rtf: expected repeats >= 1, seconds > 0 and sample_rate >= 1, "
                          f"found {repeats}, {seconds}, {sample_rate}")
    rng = np.random.default_rng(seed)
    audio = (0.1 * rng.standard_normal(int(round(seconds * sample_rate)))).astype(np.float32)
    was_training = model.training
    model.eval()
    try:
        with torch_threads(threads):
            stream(model, audio, block_samples, knobs)
            times = []
            for _ in range(repeats):
                started = time.perf_counter()
                stream(model, audio, block_samples, knobs)
                times.append(time.perf_counter() - started)
    finally:
        model.train(was_training)
    return audio.shape[0] / sample_rate / statistics.median(times)
