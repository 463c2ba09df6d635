"""A WaveNet streamed through one numba-compiled call per block.

:class:`WaveNetKernelStreamer` computes what :class:`models.inference.streaming.WaveNetStreamer`
computes (the network's matrix-product plan, ``WaveNet._plan``, and its silence history), but the
whole block — every array, every layer, every tap — runs inside :func:`_process_block`, so a short
block pays one Python→machine-code call instead of a dozen NumPy calls per layer.

Numba handles lists of arrays poorly, so every layer's weights live in one flat float32 array and
every layer's history in another, located by two int64 tables (columns A_* and L_*):

- ``arrays`` (n_arrays, 13): channels, mid channels, kernel, gated, activation code, first layer,
  layer count, input size, head size, the offsets in ``weights`` of the rechannel (in, c), head
  (c, head) and head bias (head,), and whether the array multiplies through ``np.dot``;
- ``layers`` (n_layers, 6): dilation, span, the offsets in ``weights`` of its slab weight
  (mid, k·c + 2: taps oldest first, input-mixer column, bias column) and residual 1×1 (out, in), and the
  offset and row length of its history in ``rings``.

A layer's history is a channel-major buffer (c, span + room): the layer input of the block's
sample t is column ``span + position + t``; tap i (oldest first) of that sample reads column
``position + t + i·dilation``. When a block would run past the room, the last span columns move
back to the start (inside the compiled call), so indexing needs no modulo.
"""

from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np
import torch

from models.errors import ConfigError
from models.nets.wavenet import WaveNet

ROOM_SAMPLES = 512
"""History columns kept after each layer's span: rings rewind once every ROOM_SAMPLES samples (or block)."""

BLAS_CHANNELS = 16
"""Arrays at least this wide run their products through ``np.dot`` (BLAS); narrower ones through
loops with time innermost. Measured (median µs per block, shared 2-core machine, min of 5 runs):
the standard preset (16 + 8 channels) at 64 / 128 / 512 samples: both arrays np.dot 92 / 154 / 585,
only the 16-channel one 92 / 161 / 630, all loops 111 / 204 / 869; at 8 + 4 channels (50 % width)
and 4 + 2 (25 %) the loops win at every block size (36 vs 45–52 and 15 vs 26–34 µs at 64)."""

ACTIVATION_CODES = {"Tanh": 0, "ReLU": 1, "Sigmoid": 2, "Hardtanh": 3}

# Columns of the array table.
A_C, A_MID, A_K, A_GATED, A_ACT, A_FIRST, A_COUNT, A_IN, A_HEAD, A_RECH, A_HW, A_HB, A_BLAS = range(13)
# Columns of the layer table.
L_DIL, L_SPAN, L_W, L_OUT, L_RING, L_LEN = range(6)


@numba.njit(cache=True, error_model="numpy", inline="always")
def _tanh(v):
    # Eigen's float tanh (a 13/6 rational minimax, within a few float32 ulp): unlike libm's tanhf it
    # has no call in it, so the loops over time vectorise (with error_model="numpy": Python's
    # zero-division check would put a branch in them). Selects, not min/max, clamp: they vectorise best.
    bound = np.float32(7.90531110763549805)
    v = v if v < bound else bound
    v = v if v > -bound else -bound
    v2 = v * v
    p = v2 * np.float32(-2.76076847742355e-16) + np.float32(2.00018790482477e-13)
    p = v2 * p + np.float32(-8.60467152213735e-11)
    p = v2 * p + np.float32(5.12229709037114e-08)
    p = v2 * p + np.float32(1.48572235717979e-05)
    p = v2 * p + np.float32(6.37261928875436e-04)
    p = v2 * p + np.float32(4.89352455891786e-03)
    q = v2 * np.float32(1.19825839466702e-06) + np.float32(1.18534705686654e-04)
    q = v2 * q + np.float32(2.26843463243900e-03)
    q = v2 * q + np.float32(4.89352518554385e-03)
    return v * p / q


@numba.njit(cache=True, error_model="numpy", inline="always")
def _sigmoid(v):
    return np.float32(0.5) + np.float32(0.5) * _tanh(np.float32(0.5) * v)


@numba.njit(cache=True, error_model="numpy")
def _activate(z, act, hsum, c, gated, code, time):
    """act[:c] = activation(z[:c]) (· sigmoid(z[c:2c]) when gated); hsum[:c] += act. Arrays (rows, time)."""
    for ch in range(c):
        if code == 0:
            for t in range(time):
                act[ch, t] = _tanh(z[ch, t])
        elif code == 1:
            for t in range(time):
                act[ch, t] = max(z[ch, t], np.float32(0.0))
        elif code == 2:
            for t in range(time):
                act[ch, t] = _sigmoid(z[ch, t])
        else:
            for t in range(time):
                act[ch, t] = min(max(z[ch, t], np.float32(-1.0)), np.float32(1.0))
        if gated:
            for t in range(time):
                act[ch, t] *= _sigmoid(z[c + ch, t])
        for t in range(time):
            hsum[ch, t] += act[ch, t]


@numba.njit(cache=True, error_model="numpy")
def _layer_blas(x, weights, rings, layers, li, c, mid, k, gated, code, position, time, hsum, nxt):
    """One layer through np.dot: adds its activations to hsum (c, time), writes the next layer's input to nxt."""
    d = layers[li, L_DIL]
    span = layers[li, L_SPAN]
    ring = layers[li, L_RING]
    length = layers[li, L_LEN]
    rows = k * c + 2
    slab = np.empty((rows, time), np.float32)
    for i in range(k):
        for ch in range(c):
            src = ring + ch * length + position + i * d
            slab[i * c + ch] = rings[src:src + time]
    for t in range(time):
        slab[k * c, t] = x[t]
        slab[k * c + 1, t] = np.float32(1.0)
    w = layers[li, L_W]
    z = np.dot(weights[w:w + mid * rows].reshape((mid, rows)), slab)
    act = np.empty((c, time), np.float32)
    _activate(z, act, hsum, c, gated, code, time)
    o = layers[li, L_OUT]
    r = np.dot(weights[o:o + c * c].reshape((c, c)), act)
    for ch in range(c):
        src = ring + ch * length + span + position
        here = rings[src:src + time]
        no = nxt[ch]
        rc = r[ch]
        for t in range(time):
            no[t] = here[t] + rc[t]


@numba.njit(cache=True, error_model="numpy")
def _layer_loops(x, weights, rings, layers, li, c, mid, k, gated, code, position, time, z, act, hsum, nxt):
    """One layer through loops with time innermost (narrow layers); same contract as :func:`_layer_blas`."""
    d = layers[li, L_DIL]
    span = layers[li, L_SPAN]
    ring = layers[li, L_RING]
    length = layers[li, L_LEN]
    w = layers[li, L_W]
    rows = k * c + 2
    # Row views, indexed by the loop counter alone: LLVM then vectorises the loops over time.
    for m in range(mid):
        mixm = weights[w + m * rows + k * c]
        bias = weights[w + m * rows + k * c + 1]
        zm = z[m]
        for t in range(time):
            zm[t] = bias + mixm * x[t]
    for i in range(k):
        for ch in range(c):
            src = ring + ch * length + position + i * d
            tap = rings[src:src + time]
            for m in range(mid):
                wm = weights[w + m * rows + i * c + ch]
                zm = z[m]
                for t in range(time):
                    zm[t] += wm * tap[t]
    _activate(z, act, hsum, c, gated, code, time)
    o = layers[li, L_OUT]
    for oc in range(c):
        src = ring + oc * length + span + position
        here = rings[src:src + time]
        no = nxt[oc]
        for t in range(time):
            no[t] = here[t]
        for ch in range(c):
            wo = weights[o + oc * c + ch]
            ac = act[ch]
            for t in range(time):
                no[t] += wo * ac[t]


@numba.njit(cache=True, error_model="numpy")
def _process_block(x, out, weights, rings, arrays, layers, position, room):
    """x (time,) float32 → out (time,); the rings advance. Returns the new ring position."""
    time = x.shape[0]
    n_arrays = arrays.shape[0]
    if position + time > room:
        # Move every ring's last span columns to its start.
        for a in range(n_arrays):
            for li in range(arrays[a, A_FIRST], arrays[a, A_FIRST] + arrays[a, A_COUNT]):
                span, base, length = layers[li, L_SPAN], layers[li, L_RING], layers[li, L_LEN]
                for ch in range(arrays[a, A_C]):
                    row = base + ch * length
                    rings[row:row + span] = rings[row + position:row + position + span]
        position = 0
    width = 1
    mid_max = 1
    for a in range(n_arrays):
        width = max(width, arrays[a, A_C], arrays[a, A_HEAD])
        mid_max = max(mid_max, arrays[a, A_MID])
    g = np.zeros((width, time), np.float32)  # the array's input / output (channels, time)
    head = np.zeros((width, time), np.float32)  # the previous array's head output
    hsum = np.zeros((width, time), np.float32)
    act = np.empty((width, time), np.float32)
    nxt = np.empty((width, time), np.float32)
    z = np.empty((mid_max, time), np.float32)
    for t in range(time):
        g[0, t] = x[t]
    for a in range(n_arrays):
        c, mid, k = arrays[a, A_C], arrays[a, A_MID], arrays[a, A_K]
        gated, code, first, count = arrays[a, A_GATED] == 1, arrays[a, A_ACT], arrays[a, A_FIRST], arrays[a, A_COUNT]
        n_in, n_head, rech = arrays[a, A_IN], arrays[a, A_HEAD], arrays[a, A_RECH]
        # The rechannelled input enters the first layer's ring; the head sum starts from the
        # previous array's head output (zero for the first array).
        base, length, span = layers[first, L_RING], layers[first, L_LEN], layers[first, L_SPAN]
        for o in range(c):
            row = rings[base + o * length + span + position:base + o * length + span + position + time]
            for t in range(time):
                row[t] = np.float32(0.0)
                hsum[o, t] = head[o, t] if a > 0 else np.float32(0.0)
            for i in range(n_in):
                wi = weights[rech + i * c + o]
                for t in range(time):
                    row[t] += wi * g[i, t]
        for li in range(first, first + count):
            if arrays[a, A_BLAS] == 1:
                _layer_blas(x, weights, rings, layers, li, c, mid, k, gated, code, position, time, hsum, nxt)
            else:
                _layer_loops(x, weights, rings, layers, li, c, mid, k, gated, code, position, time, z, act, hsum,
                             nxt)
            if li + 1 < first + count:
                nbase, nlength, nspan = layers[li + 1, L_RING], layers[li + 1, L_LEN], layers[li + 1, L_SPAN]
                for ch in range(c):
                    start = nbase + ch * nlength + nspan + position
                    rings[start:start + time] = nxt[ch]
            else:
                for ch in range(c):
                    for t in range(time):
                        g[ch, t] = nxt[ch, t]
        hw, hb = arrays[a, A_HW], arrays[a, A_HB]
        for o in range(n_head):
            for t in range(time):
                head[o, t] = weights[hb + o]
        for ch in range(c):
            for o in range(n_head):
                wo = weights[hw + ch * n_head + o]
                for t in range(time):
                    head[o, t] += wo * hsum[ch, t]
    for t in range(time):
        out[t] = head[0, t]
    return position + time


def _numpy(t: torch.Tensor) -> np.ndarray:
    # Some plan entries are the parameters themselves (a head bias before the last array).
    return t.detach().numpy()


class WaveNetKernelStreamer:
    """A :class:`WaveNet` streaming mono blocks through one compiled call each.

    Knob values are fixed at construction (folded into the input-mixer bias); ``process`` takes
    and returns (time,) float32 arrays of any length >= 1; ``reset`` goes back to a silent past.
    A slimmed network is streamed by passing ``models.nets.slimmable.slim(model, width)``.
    """

    def __init__(self, model: WaveNet, knobs: Sequence[float] | None = None):
        n_knobs = model.config.n_knobs
        values = [] if knobs is None else [float(v) for v in knobs]
        if len(values) != n_knobs:
            raise ConfigError(f"wavenet kernel streamer: this model needs {n_knobs} knob value(s), found {len(values)}")
        k = torch.tensor(values, dtype=torch.float32)[None, :] if values else None
        with torch.inference_mode():
            plans = model._plan(None)
            history = model.silence_state(1, k)
        chunks: list[np.ndarray] = []
        used = 0

        def put(a: np.ndarray) -> int:
            nonlocal used
            flat = np.ascontiguousarray(a, dtype=np.float32).ravel()
            chunks.append(flat)
            used += flat.size
            return used - flat.size

        array_rows, layer_rows, self._pasts, channels = [], [], [], []
        index = 0
        for plan in plans:
            config = plan.config
            c, mid, kernel = config.channels, config.mid_channels, config.kernel_size
            mixer = _numpy(plan.mixer)
            bias = _numpy(plan.mixer_bias)
            if k is not None:
                bias = bias + k[0].numpy() @ mixer[1:]
            first = len(layer_rows)
            for j, dilation in enumerate(config.dilations):
                # (mid, k·c + 2): columns [tap 0 (oldest) … tap k−1 | input mixer | bias], as the slab's rows.
                weight = np.concatenate([_numpy(t) for t in plan.taps[j]]
                                        + [mixer[:1, j * mid:(j + 1) * mid], bias[None, j * mid:(j + 1) * mid]]).T
                layer_rows.append([dilation, (kernel - 1) * dilation, put(weight), put(_numpy(plan.out[j]).T), 0, 0])
                # history: (span, c) time-major → the ring's (c, span).
                self._pasts.append(np.ascontiguousarray(_numpy(history[index][0]).T, dtype=np.float32))
                channels.append(c)
                index += 1
            head_size = plan.head.shape[1]
            head_bias = np.zeros(head_size, np.float32) if plan.head_bias is None else _numpy(plan.head_bias)
            array_rows.append([
                c, mid, kernel, int(config.gated), ACTIVATION_CODES[config.activation], first,
                len(config.dilations), config.input_size, head_size, put(_numpy(plan.rechannel)),
                put(_numpy(plan.head)), put(head_bias), int(c >= BLAS_CHANNELS),
            ])
        self._weights = np.concatenate(chunks)
        self._arrays = np.array(array_rows, np.int64)
        self._layers = np.array(layer_rows, np.int64)
        self._channels = channels
        self._room = 0
        self._position = 0
        self._rings = np.zeros(0, np.float32)
        self._out = np.zeros(0, np.float32)

    def _allocate(self, time: int, keep: bool) -> None:
        """Size the rings for blocks of up to ``time`` samples, keeping the history when ``keep``."""
        room = max(ROOM_SAMPLES, time)
        rings = np.zeros(sum((int(span) + room) * c for span, c in zip(self._layers[:, L_SPAN], self._channels, strict=True)),
                         np.float32)
        offset = 0
        for li, c in enumerate(self._channels):
            span = int(self._layers[li, L_SPAN])
            ring = rings[offset:offset + (span + room) * c].reshape(c, span + room)
            if keep:
                old = int(self._layers[li, L_RING])
                length = int(self._layers[li, L_LEN])
                before = self._rings[old:old + c * length].reshape(c, length)
                ring[:, :span] = before[:, self._position:self._position + span]
            else:
                ring[:, :span] = self._pasts[li]
            self._layers[li, L_RING] = offset
            self._layers[li, L_LEN] = span + room
            offset += (span + room) * c
        self._rings, self._room, self._position = rings, room, 0
        self._out = np.zeros(room, np.float32)

    def reset(self) -> None:
        """Back to the history a silent past leaves."""
        self._allocate(max(self._room, 1), keep=False)

    def process(self, block: np.ndarray) -> np.ndarray:
        """block: (time,) float32 → (time,) float32."""
        x = np.ascontiguousarray(block, dtype=np.float32)
        if x.ndim != 1 or x.shape[0] < 1:
            raise ConfigError(f"wavenet kernel streamer: expected a (time,) block with time >= 1, found shape {x.shape}")
        time = x.shape[0]
        if self._room == 0:
            self._allocate(time, keep=False)
        elif time > self._room:
            self._allocate(time, keep=True)
        out = self._out[:time]
        self._position = _process_block(x, out, self._weights, self._rings, self._arrays, self._layers,
                                        self._position, self._room)
        return out.copy()
