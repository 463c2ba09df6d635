"""Real-time style streaming: fixed blocks in order, carrying the network state, and its speed.

Both architectures stream through the same call, ``model(block, knobs, state)``: an LSTM carries
its (h, c) per layer, a WaveNet its cached convolution history (``(kernel − 1)·dilation`` past
columns per layer), so no block recomputes the receptive field and a block's work is proportional
to its length. The output equals whole-file rendering (tested to 1e-5).

WaveNets stream through a NumPy engine by default (:class:`WaveNetStreamer`): the same
matrix-product plan as the PyTorch forward, but NumPy's per-call cost is a few times lower than
PyTorch's, and on short blocks the per-call cost, not the arithmetic, is what limits speed
(20 layers × about 7 calls per block). ``engine="torch"`` streams through ``model.forward``.

The real-time factor is seconds of audio per second of computation, measured on one thread
(``torch.set_num_threads`` and the BLAS thread pool) as the median of repeated runs after one
warm-up run, the way NAM measures its plug-in (2 s of audio in small buffers).
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from .errors import ConfigError
from .rendering import torch_threads
from .wavenet import WaveNet

Engine = Literal["auto", "torch", "numpy"]

_NUMPY_ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "Tanh": np.tanh,
    "ReLU": lambda z: np.maximum(z, 0.0),
    "Sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z)),
    "Hardtanh": lambda z: np.clip(z, -1.0, 1.0),
}

log = logging.getLogger(__name__)


def _knobs(knobs: Sequence[float] | None, n_knobs: int) -> torch.Tensor | None:
    values = [] if knobs is None else list(knobs)
    if len(values) != n_knobs:
        raise ConfigError(f"streaming: this model needs {n_knobs} knob value(s), found {len(values)}")
    return torch.tensor(values, dtype=torch.float32)[None, :] if values else None


class WaveNetStreamer:
    """A WaveNet as plain NumPy float32 arrays, processing mono blocks in order.

    Built from the network's matrix-product plan (``WaveNet._plan``) and its silence history, so
    it computes what ``model.forward`` computes; knob values are fixed at construction and folded
    into the mixer bias. ``process`` returns the block's output and keeps the history.
    """

    def __init__(self, model: WaveNet, knobs: Sequence[float] | None = None):
        k = _knobs(knobs, model.config.n_knobs)
        with torch.inference_mode():
            plans = model._plan(None)
            history = model.silence_state(1, k)
        # Channels-first (channels, time) here: NumPy copies whole time rows fast, while stacking
        # time-major taps interleaves short channel vectors (twice slower on 512-sample blocks).
        self._arrays = []
        for plan in plans:
            mixer = plan.mixer.numpy()
            bias = plan.mixer_bias.numpy()
            if k is not None:
                bias = bias + k[0].numpy() @ mixer[1:]
            layers, mid = len(plan.config.dilations), plan.config.mid_channels
            self._arrays.append({
                "config": plan.config,
                "activation": _NUMPY_ACTIVATIONS[plan.config.activation],
                "rechannel": np.ascontiguousarray(plan.rechannel.numpy().T),
                "mixer": mixer[0].reshape(layers, mid, 1).copy(),
                "bias": bias.astype(np.float32).reshape(layers, mid, 1),
                # The k taps side by side: one product per layer over [oldest … newest] stacked rows.
                "taps": [np.ascontiguousarray(np.concatenate([t.numpy().T for t in taps], axis=1))
                         for taps in plan.taps],
                "out": [np.ascontiguousarray(w.numpy().T) for w in plan.out],
                "head": np.ascontiguousarray(plan.head.numpy().T),
                "head_bias": None if plan.head_bias is None else plan.head_bias.numpy()[:, None],
            })
        self._history = [np.ascontiguousarray(h[0].numpy().T) for h in history]

    def process(self, block: np.ndarray) -> np.ndarray:
        """block: (time,) float32 → (time,) float32."""
        time = block.shape[0]
        row = block.reshape(1, time)
        x = row
        head = None
        index = 0
        history = self._history
        for a in self._arrays:
            config = a["config"]
            c, k = config.channels, config.kernel_size
            activation = a["activation"]
            g = a["rechannel"] @ x
            mixed = a["mixer"] * row + a["bias"]  # (layers, mid, time)
            acc = head
            for j, dilation in enumerate(config.dilations):
                full = np.concatenate([history[index], g], axis=1)
                taps = np.concatenate([full[:, i * dilation:i * dilation + time] for i in range(k)], axis=0)
                z = a["taps"][j] @ taps
                z += mixed[j]
                history[index] = full[:, time:]
                if config.gated:
                    act = activation(z[:c]) / (1.0 + np.exp(-z[c:]))
                else:
                    act = activation(z)
                update = a["out"][j] @ act
                update += g
                g = update
                if acc is None:
                    acc = act.copy()
                else:
                    acc += act
                index += 1
            head = a["head"] @ acc
            if a["head_bias"] is not None:
                head += a["head_bias"]
            x = g
        return head[0]


def stream(
    model: torch.nn.Module,
    audio: np.ndarray,
    block_samples: int,
    knobs: Sequence[float] | None = None,
    engine: Engine = "auto",
) -> np.ndarray:
    """Render ``audio`` (time,) block by block, carrying the state; returns (time,) float32.

    The last block may be shorter. ``engine``: ``auto`` (NumPy for a WaveNet, PyTorch otherwise),
    ``torch`` (``model(block, knobs, state)`` under ``torch.inference_mode``) or ``numpy``
    (WaveNets only).
    """
    if isinstance(block_samples, bool) or not isinstance(block_samples, int) or block_samples < 1:
        raise ConfigError(f"block_samples: expected an integer >= 1, found {block_samples!r}")
    audio = np.ascontiguousarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ConfigError(f"streaming: expected mono audio of shape (time,), found shape {audio.shape}")
    if engine not in ("auto", "torch", "numpy"):
        raise ConfigError(f"streaming engine: expected 'auto', 'torch' or 'numpy', found {engine!r}")
    out = np.empty_like(audio)
    if engine == "numpy" or (engine == "auto" and isinstance(model, WaveNet)):
        if not isinstance(model, WaveNet):
            raise ConfigError(f"streaming engine 'numpy' runs WaveNets only, found {type(model).__name__}")
        streamer = WaveNetStreamer(model, knobs)
        for begin in range(0, audio.shape[0], block_samples):
            block = audio[begin : begin + block_samples]
            out[begin : begin + block.shape[0]] = streamer.process(block)
        return out
    k = _knobs(knobs, getattr(model.config, "n_knobs", 0))
    x = torch.from_numpy(audio)
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
    engine: Engine = "auto",
    clock: Literal["wall", "cpu"] = "wall",
) -> float:
    """Median real-time factor of :func:`stream` over ``repeats`` runs of ``seconds`` of noise.

    The input is seeded Gaussian noise at −20 dBFS RMS (the arithmetic does not depend on the
    signal). One untimed warm-up run comes first (allocator, kernel selection). ``threads`` limits
    both PyTorch's and the BLAS thread pools (None leaves them alone). ``clock``: ``wall``
    (``time.perf_counter``, what a listener would get) or ``cpu`` (this process's CPU time,
    ``time.process_time``: on a shared, loaded machine it leaves out the time other processes
    held the core, so it is the steadier estimate of the cost itself).
    """
    if clock not in ("wall", "cpu"):
        raise ConfigError(f"measure_rtf clock: expected 'wall' or 'cpu', found {clock!r}")
    timer = time.perf_counter if clock == "wall" else time.process_time
    if repeats < 1 or seconds <= 0 or sample_rate < 1:
        raise ConfigError(f"measure_rtf: expected repeats >= 1, seconds > 0 and sample_rate >= 1, "
                          f"found {repeats}, {seconds}, {sample_rate}")
    rng = np.random.default_rng(seed)
    audio = (0.1 * rng.standard_normal(int(round(seconds * sample_rate)))).astype(np.float32)
    was_training = model.training
    model.eval()
    try:
        with torch_threads(threads), threadpool_limits(limits=threads, user_api="blas"):
            stream(model, audio, block_samples, knobs, engine)
            times = []
            for _ in range(repeats):
                started = timer()
                stream(model, audio, block_samples, knobs, engine)
                times.append(timer() - started)
    finally:
        model.train(was_training)
    return audio.shape[0] / sample_rate / statistics.median(times)
