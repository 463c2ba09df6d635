"""Real-time style streaming: fixed blocks in order, carrying the network state, and its speed.

Both architectures stream through the same call, ``model(block, knobs, state)``: an LSTM carries
its (h, c) per layer, a WaveNet its cached convolution history (``(kernel − 1)·dilation`` past
columns per layer), so no block recomputes the receptive field and a block's work is proportional
to its length. The output equals whole-file rendering (tested to 1e-5).

WaveNets stream through a NumPy engine by default (:class:`WaveNetStreamer`): the same
matrix-product plan as the PyTorch forward, but NumPy's per-call cost is a few times lower than
PyTorch's, and on short blocks the per-call cost, not the arithmetic, is what limits speed
(20 layers × 4–5 calls per block, see :class:`WaveNetStreamer`). ``engine="torch"`` streams through ``model.forward``.

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

from models.errors import ConfigError
from models.inference.rendering import torch_threads
from models.nets.architectures import find
from models.nets.lstm import LSTMStack
from models.nets.wavenet import WaveNet

Engine = Literal["auto", "torch", "numpy", "compiled"]

def _sigmoid(z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    out = np.negative(z, out=out)
    np.exp(out, out=out)
    out += 1.0
    return np.reciprocal(out, out=out)


# Each takes (z, out=None) so the streamer can apply it in place.
_NUMPY_ACTIVATIONS: dict[str, Callable[..., np.ndarray]] = {
    "Tanh": np.tanh,
    "ReLU": lambda z, out=None: np.maximum(z, 0.0, out=out),
    "Sigmoid": _sigmoid,
    "Hardtanh": lambda z, out=None: np.clip(z, -1.0, 1.0, out=out),
}

log = logging.getLogger(__name__)
# Ring columns after a layer's span (at least one block): more room rewinds less often but spreads
# the writes over more memory that falls out of the cache. Measured for WaveNet standard on one
# thread at 512-sample blocks: 930 µs per block with one block of room, 1 300 µs with four or more;
# short blocks gain from a few blocks of room (fewer rewinds), hence a fixed column count.
ROOM_COLUMNS = 512
# Up to this many channels the residual addition rides in the residual product ([W | I] @ [act; g]):
# c² more multiply-adds per sample cost less than a NumPy call (about 2.5 µs) at these widths.
FOLD_RESIDUAL_CHANNELS = 8


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

    Layout, chosen to spend as few NumPy calls per layer as possible (on short blocks and narrow
    networks the per-call cost, not the arithmetic, is what limits speed):

    - each layer keeps its input history in a ring (channels, span + room), channels-first, so a
      tap ``i·dilation`` columns back is a plain view; one strided view of all k taps is copied in
      one call into the layer's slab ``[act; g; g(−d); …; g(−(k−1)d); x; 1]``;
    - one product ``[W_newest … W_oldest | mixer | bias] @ [g; …; x; 1]`` then gives the dilated
      convolution, the input mixer and the bias at once, written into the slab's ``act`` rows where
      the activation is applied in place;
    - the residual product writes the next layer's input straight into that layer's ring; on
      narrow layers the residual addition rides in it (``[W | I] @ [act; g]``);
    - the head sums every layer's ``act`` rows of an array in one call.
    """

    def __init__(self, model: WaveNet, knobs: Sequence[float] | None = None):
        k = _knobs(knobs, model.config.n_knobs)
        with torch.inference_mode():
            plans = model._plan(None)
            history = model.silence_state(1, k)
        self._arrays = []
        index = 0
        for plan in plans:
            config = plan.config
            c, mid, kernel = config.channels, config.mid_channels, config.kernel_size
            mixer = plan.mixer.numpy()
            bias = plan.mixer_bias.numpy()
            if k is not None:
                bias = bias + k[0].numpy() @ mixer[1:]
            fold = c <= FOLD_RESIDUAL_CHANNELS
            layers = []
            for j, dilation in enumerate(config.dilations):
                # Columns [tap k−1 (newest) … tap 0 (oldest) | mixer | bias], as the slab's rows.
                weight = np.empty((mid, kernel * c + 2), np.float32)
                for i in range(kernel):
                    back = kernel - 1 - i
                    weight[:, back * c:(back + 1) * c] = plan.taps[j][i].numpy().T
                weight[:, kernel * c] = mixer[0, j * mid:(j + 1) * mid]
                weight[:, kernel * c + 1] = bias[j * mid:(j + 1) * mid]
                out = plan.out[j].numpy().T
                if fold:
                    out = np.concatenate([out, np.eye(c, dtype=np.float32)], axis=1)
                layers.append({"weight": weight, "dilation": dilation, "span": (kernel - 1) * dilation,
                               "past": np.ascontiguousarray(history[index][0].numpy().T),
                               "out": np.ascontiguousarray(out)})
                index += 1
            self._arrays.append({
                "config": config,
                "fold": fold,
                "activation": _NUMPY_ACTIVATIONS[config.activation],
                "rechannel": np.ascontiguousarray(plan.rechannel.numpy().T),
                "layers": layers,
                "head": np.ascontiguousarray(plan.head.numpy().T),
                "head_bias": None if plan.head_bias is None else plan.head_bias.detach().numpy()[:, None].copy(),
            })
        self._room = 0  # ring columns after the longest span; 0 until the first block sizes them
        self._position = 0
        self._time = 0

    def _allocate(self, time: int) -> None:
        """(Re)size the slabs for blocks of up to ``time`` and the rings for ``room`` more columns."""
        room = max(ROOM_COLUMNS, time)
        for a in self._arrays:
            config = a["config"]
            c, kernel = config.channels, config.kernel_size
            slabs = np.zeros((len(a["layers"]), (kernel + 1) * c + 2, time), np.float32)
            slabs[:, -1] = 1.0
            a["slabs"] = slabs
            a["z"] = np.empty((config.mid_channels, time), np.float32) if config.gated else None
            a["output"] = np.empty((c, time), np.float32)
            for layer in a["layers"]:
                span = layer["span"]
                ring = np.zeros((c, span + room), np.float32)
                if self._room:  # keep the history the old ring holds
                    now = span + self._position
                    ring[:, :span] = layer["ring"][:, now - span:now]
                else:
                    ring[:, :span] = layer["past"]
                layer["ring"] = ring
        self._room, self._position, self._time = room, 0, time

    def _rewind(self) -> None:
        """Move every ring's last span columns to its start (once every room / block columns)."""
        for a in self._arrays:
            for layer in a["layers"]:
                span, ring = layer["span"], layer["ring"]
                now = span + self._position
                ring[:, :span] = ring[:, now - span:now].copy()
        self._position = 0

    def numpy_calls_per_block(self) -> int:
        """NumPy calls :meth:`process` makes per block (ring rewinds aside): its fixed cost."""
        calls = 0
        for n, a in enumerate(self._arrays):
            per_layer = 2 + (5 if a["config"].gated else 1) + (1 if a["fold"] else 2)
            calls += 4 + (n > 0) + (a["head_bias"] is not None) + len(a["layers"]) * per_layer
        return calls

    def process(self, block: np.ndarray) -> np.ndarray:
        """block: (time,) float32 → (time,) float32."""
        time = block.shape[0]
        if self._room == 0 or time > self._time:
            self._allocate(time)
        if self._position + time > self._room:
            self._rewind()
        p = self._position
        x = block.reshape(1, time)
        head = None
        g = x
        for a in self._arrays:
            config = a["config"]
            c, kernel, fold = config.channels, config.kernel_size, a["fold"]
            activation, gated = a["activation"], config.gated
            slabs = a["slabs"][:, :, :time]
            slabs[:, -2] = x
            layers = a["layers"]
            first = layers[0]
            np.matmul(a["rechannel"], g, out=first["ring"][:, first["span"] + p:first["span"] + p + time])
            for j, layer in enumerate(layers):
                slab, ring, d = slabs[j], layer["ring"], layer["dilation"]
                now = layer["span"] + p
                # Every tap at once, newest first: element [i, ch, t] is ring[ch, now − i·d + t].
                taps = np.ndarray((kernel, c, time), np.float32, ring, 4 * now, (-4 * d, 4 * ring.shape[1], 4))
                np.copyto(slab[c:(kernel + 1) * c].reshape(kernel, c, time), taps)
                if gated:
                    z = a["z"][:, :time]
                    np.matmul(layer["weight"], slab[c:], out=z)
                    np.divide(activation(z[:c]), 1.0 + np.exp(-z[c:]), out=slab[:c])
                else:
                    np.matmul(layer["weight"], slab[c:], out=slab[:c])
                    activation(slab[:c], out=slab[:c])
                if j + 1 < len(layers):
                    following = layers[j + 1]
                    start = following["span"] + p
                    g_next = following["ring"][:, start:start + time]
                else:
                    g_next = a["output"][:, :time]
                if fold:
                    np.matmul(layer["out"], slab[:2 * c], out=g_next)
                else:
                    np.matmul(layer["out"], slab[:c], out=g_next)
                    g_next += slab[c:2 * c]
            summed = slabs[:, :c].sum(axis=0)
            if head is not None:
                summed += head
            head = a["head"] @ summed
            if a["head_bias"] is not None:
                head += a["head_bias"]
            g = a["output"][:, :time]
        self._position = p + time
        return head[0]


class LSTMStreamer:
    """An :class:`models.nets.lstm.LSTMStack` streaming blocks through ``torch.lstm`` directly.

    The operations of ``LSTMStack.forward`` (``torch.lstm`` is what ``nn.LSTM`` calls) without the
    module machinery per block: time-major tensors, the FiLM scales and shifts computed once for
    the fixed knob values, the states carried here. ``process`` takes and returns (time,) tensors.
    """

    def __init__(self, model: LSTMStack, knobs: Sequence[float] | None = None):
        config = model.config
        k = _knobs(knobs, config.n_knobs)
        with torch.inference_mode():
            self._films = []
            for i in range(len(model.lstms)):
                if model.films:
                    gamma, beta = model.films[i](k).chunk(2, dim=-1)
                    self._films.append(((1.0 + gamma)[None], beta[None]))
        self._concat = k[None] if (k is not None and config.conditioning == "concat") else None
        self._layers = [(lstm._flat_weights, lstm.bias) for lstm in model.lstms]
        self._states = [(torch.zeros(1, 1, lstm.hidden_size),) * 2 for lstm in model.lstms]
        self._dense_w, self._dense_b = model.dense.weight.detach().t(), model.dense.bias.detach()

    def process(self, block: torch.Tensor) -> torch.Tensor:
        """block: (time,) → (time,), under ``torch.inference_mode``."""
        x = block[:, None, None]
        h = x if self._concat is None else torch.cat([x, self._concat.expand(x.shape[0], -1, -1)], dim=-1)
        for i, (weights, bias) in enumerate(self._layers):
            h, h_n, c_n = torch.lstm(h, self._states[i], weights, bias, 1, 0.0, False, False, False)
            self._states[i] = (h_n, c_n)
            if self._films:
                h = h * self._films[i][0] + self._films[i][1]
        return torch.addmm(self._dense_b, h[:, 0], self._dense_w)[:, 0] + block


def _native_engine(model: torch.nn.Module) -> str:
    """The streamer its architecture runs with (``torch`` for a module no architecture built)."""
    config = getattr(model, "config", None)
    # A network read from a newer .nam file (NamWaveNet) has a config but no registered architecture.
    architecture = find(getattr(config, "arch", None)) if config is not None else None
    return architecture.streaming_engine if architecture is not None else "torch"


def stream(
    model: torch.nn.Module,
    audio: np.ndarray,
    block_samples: int,
    knobs: Sequence[float] | None = None,
    engine: Engine = "auto",
) -> np.ndarray:
    """Render ``audio`` (time,) block by block, carrying the state; returns (time,) float32.

    The last block may be shorter. ``engine``: ``auto`` (NumPy for a WaveNet, :class:`LSTMStreamer`
    for an LSTM stack, ``model.forward`` otherwise), ``torch`` (``model(block, knobs, state)``
    under ``torch.inference_mode``), ``numpy`` (WaveNets only) or ``compiled`` (the numba kernels of
    :mod:`models.inference.kernels`: LSTM stacks, NAM LSTMs and WaveNets at any width).
    """
    if isinstance(block_samples, bool) or not isinstance(block_samples, int) or block_samples < 1:
        raise ConfigError(f"block_samples: expected an integer >= 1, found {block_samples!r}")
    audio = np.ascontiguousarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ConfigError(f"streaming: expected mono audio of shape (time,), found shape {audio.shape}")
    if engine not in ("auto", "torch", "numpy", "compiled"):
        raise ConfigError(f"streaming engine: expected 'auto', 'torch', 'numpy' or 'compiled', found {engine!r}")
    out = np.empty_like(audio)
    if engine == "compiled":
        from models.inference.kernels import kernel_streamer

        streamer = kernel_streamer(model, knobs)
        for begin in range(0, audio.shape[0], block_samples):
            block = audio[begin : begin + block_samples]
            out[begin : begin + block.shape[0]] = streamer.process(block)
        return out
    native = _native_engine(model)
    if engine == "numpy" or (engine == "auto" and native == "numpy"):
        if native != "numpy":
            raise ConfigError(f"streaming engine 'numpy' runs WaveNets only, found {type(model).__name__}")
        streamer = WaveNetStreamer(model, knobs)
        for begin in range(0, audio.shape[0], block_samples):
            block = audio[begin : begin + block_samples]
            out[begin : begin + block.shape[0]] = streamer.process(block)
        return out
    x = torch.from_numpy(audio)
    if engine == "auto" and native == "lstm_stack":
        with torch.inference_mode():
            streamer = LSTMStreamer(model, knobs)
            for begin in range(0, audio.shape[0], block_samples):
                block = x[begin : begin + block_samples]
                out[begin : begin + block.shape[0]] = streamer.process(block).numpy()
        return out
    k = _knobs(knobs, getattr(model.config, "n_knobs", 0))
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
