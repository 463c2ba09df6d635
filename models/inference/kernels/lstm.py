"""A numba-compiled streamer for the zoo's LSTMs (:class:`models.nets.lstm.LSTMStack`, slimmed or
not, and NAM's :class:`models.nets.nam_lstm.NamLSTM`): one compiled call per block, every layer and
time step inside it.

Every layer is packed as its gate weights transposed, ``[W_ih | W_hh]ᵀ`` (inputs + units, 4·units)
in PyTorch's gate order i, f, g, o, with the two biases summed. Per time step the gate sums are
built as ``z += column_j · v_j`` over the layer's input-and-state vector ``v = [input; h]``: the
inner loop runs along the 4·units contiguous gate rows, so LLVM vectorises it without reordering
any sum (no fastmath), and one pass covers the input and the recurrent product. Measured on one
thread (2-core shared machine) per time step, this loop against ``np.dot`` (BLAS gemv) inside the
same kernel: 42 vs 185 ns at 8 units (input 1), 61 vs 252 at 8 (input 8), 179 vs 275 at 16 (input
16), 1 350 vs 1 650 at 64 (input 1): a BLAS call costs more than the whole product of a narrow
layer. The kernel runs layer by layer over the block (one layer's weights stay in the cache for
the whole block); a separate product of the first layer's input weights over the block would save
one column of 1 + units, so it is not done.

Knob values are fixed at construction and folded: a concat model's constant knob inputs become
part of the first layer's bias (its input is then the sample alone), a FiLM model's scale and
shift per layer are computed once (``1 + γ``, ``β``) and applied to the layer's output, which is
what the next layer reads; the recurrent state keeps the LSTM's own output, as ``nn.LSTM`` does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np
import torch

from models.errors import ConfigError
from models.nets.lstm import LSTMStack
from models.nets.nam_lstm import NamLSTM

# Columns of the per-layer table the kernel reads (int64 rows, one per layer).
_INPUTS, _UNITS, _WEIGHTS, _BIAS, _SCALE, _SHIFT, _VECTOR, _CELL, _FILM = range(9)

# Cephes' single-precision exp (range reduction by ln 2 in two parts, a degree-6 polynomial, the
# power of two built in the exponent bits): within 1e-7 relative of exp over the clamped range, and
# written as plain loops without calls, so LLVM vectorises it; numba's np.exp is one libm call per
# element, which made the gate nonlinearities three times the cost of the gate products at 64 units.
_F = np.float32
_LOG2E, _LN2_HI, _LN2_LO = _F(1.44269504088896341), _F(0.693359375), _F(-2.12194440e-4)
_P0, _P1, _P2 = _F(1.9875691500e-4), _F(1.3981999507e-3), _F(8.3334519073e-3)
_P3, _P4, _P5 = _F(4.1665795894e-2), _F(1.6666665459e-1), _F(5.0000001201e-1)
_EXP_MAX, _EXP_MIN = _F(88.3762626647949), _F(-87.3365447504019)
_HALF, _ONE, _TWO = _F(0.5), _F(1.0), _F(2.0)


@numba.njit(cache=True, nogil=True)
def _logistic(a, e, bits, n):
    """a[:n] ← 1 / (1 + exp(a[:n])), in place (e, bits: scratch of at least n)."""
    for r in range(n):
        x = min(max(a[r], _EXP_MIN), _EXP_MAX)
        fx = np.floor(x * _LOG2E + _HALF)
        x = x - fx * _LN2_HI - fx * _LN2_LO
        p = ((((_P0 * x + _P1) * x + _P2) * x + _P3) * x + _P4) * x + _P5
        e[r] = p * x * x + x + _ONE
        bits[r] = (np.int32(fx) + 127) << 23
    scale = bits.view(np.float32)
    for r in range(n):
        a[r] = _ONE / (_ONE + e[r] * scale[r])


@numba.njit(cache=True, nogil=True)
def lstm_block(x, y, params, layers, head, vectors, cells, z, e, bits, features):
    """Run a block through the stack and the head, carrying the state in ``vectors`` / ``cells``.

    Layer by layer over the whole block (each layer's weights are read from the cache for every
    time step, not those of every layer), the outputs of one layer kept for the next in
    ``features``. x, y: (time,) float32; params: every layer's packed weights (float32, offsets in
    ``layers``); layers: (n_layers, 9) int64, columns as the module's ``_INPUTS`` … ``_FILM``; head:
    float32 ``[w (last units), bias, skip]``; vectors: every layer's ``[input; h]``; cells: every
    layer's c; z, e (float32), bits (int32): scratch of 4 · the widest layer's units; features:
    (2, at least time, the widest layer's units) float32.
    """
    n_layers = layers.shape[0]
    time = x.shape[0]
    for layer in range(n_layers):
        n_in = layers[layer, _INPUTS]
        units = layers[layer, _UNITS]
        rows = 4 * units
        width = n_in + units
        w = params[layers[layer, _WEIGHTS]:layers[layer, _WEIGHTS] + width * rows].reshape((width, rows))
        b = params[layers[layer, _BIAS]:layers[layer, _BIAS] + rows]
        v = vectors[layers[layer, _VECTOR]:layers[layer, _VECTOR] + width]
        cell = cells[layers[layer, _CELL]:layers[layer, _CELL] + units]
        film = layers[layer, _FILM] != 0
        scale = params[layers[layer, _SCALE]:layers[layer, _SCALE] + units]
        shift = params[layers[layer, _SHIFT]:layers[layer, _SHIFT] + units]
        source = features[(layer + 1) % 2]
        out = features[layer % 2]
        for t in range(time):
            if layer == 0:
                v[0] = x[t]
            else:
                for j in range(n_in):
                    v[j] = source[t, j]
            for r in range(rows):
                z[r] = b[r]
            # Four columns per pass: a quarter of the loads and stores of z (S-64-8 a quarter faster).
            j = 0
            while j + 4 <= width:
                v0, v1, v2, v3 = v[j], v[j + 1], v[j + 2], v[j + 3]
                for r in range(rows):
                    z[r] += (w[j, r] * v0 + w[j + 1, r] * v1) + (w[j + 2, r] * v2 + w[j + 3, r] * v3)
                j += 4
            while j < width:
                vj = v[j]
                for r in range(rows):
                    z[r] += w[j, r] * vj
                j += 1
            # The packed rows are −W (i, f, o) and −2W (g): z is already the exponent of
            # logistic(z) = σ(W·v) and σ(2·W·v), and tanh(s) = 2σ(2s) − 1.
            _logistic(z, e, bits, rows)
            for u in range(units):
                c = z[units + u] * cell[u] + z[u] * (_TWO * z[2 * units + u] - _ONE)
                cell[u] = c
                z[u] = -(c + c)
            _logistic(z, e, bits, units)
            for u in range(units):
                h = z[3 * units + u] * (_TWO * z[u] - _ONE)
                v[n_in + u] = h
                out[t, u] = h * scale[u] + shift[u] if film else h
    last = features[(n_layers - 1) % 2]
    units = layers[n_layers - 1, _UNITS]
    bias_out = head[units]
    skip = head[units + 1]
    for t in range(time):
        acc = bias_out + skip * x[t]
        for u in range(units):
            acc += head[u] * last[t, u]
        y[t] = acc


def _f32(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float32).numpy()


class LSTMKernelStreamer:
    """An LSTM stack or a NAM LSTM streaming mono blocks through :func:`lstm_block`.

    ``knobs``: the model's knob values (fixed here, folded into the weights). ``process`` takes and
    returns (time,) float32 arrays of any length >= 1; ``reset`` goes back to the model's start state
    (zeros for a stack, ``initial_hidden`` / ``initial_cell`` for a NAM LSTM).
    """

    def __init__(self, model: LSTMStack | NamLSTM, knobs: Sequence[float] | None = None):
        if isinstance(model, LSTMStack):
            n_knobs = model.config.n_knobs
        elif isinstance(model, NamLSTM):
            n_knobs = 0
        else:
            raise ConfigError(f"LSTM kernel: expected an LSTMStack or a NamLSTM, found {type(model).__name__}")
        values = [] if knobs is None else [float(v) for v in knobs]
        if len(values) != n_knobs:
            raise ConfigError(f"LSTM kernel: this model needs {n_knobs} knob value(s), found {len(values)}")
        with torch.inference_mode():
            layers = self._stack_layers(model, values) if isinstance(model, LSTMStack) else self._nam_layers(model)
        self._pack(layers)
        if isinstance(model, LSTMStack):
            head = [_f32(model.dense.weight)[0], _f32(model.dense.bias), np.ones(1, np.float32)]
            self._start = [(np.zeros(h, np.float32), np.zeros(h, np.float32)) for _, _, _, h, _ in layers]
        else:
            head = [_f32(model.head.weight)[0], _f32(model.head.bias), np.zeros(1, np.float32)]
            h0, c0 = _f32(model.initial_hidden), _f32(model.initial_cell)
            self._start = [(h0[i].copy(), c0[i].copy()) for i in range(len(layers))]
        self._head = np.ascontiguousarray(np.concatenate(head), np.float32)
        self.reset()

    @staticmethod
    def _stack_layers(model: LSTMStack, knobs: list[float]) -> list:
        """Per layer (W (4H, I+H), bias (4H,), FiLM (scale, shift) or None, H, I)."""
        config = model.config
        k = torch.tensor([knobs], dtype=torch.float32) if knobs else None
        layers = []
        for i, lstm in enumerate(model.lstms):
            w_ih, w_hh = _f32(lstm.weight_ih_l0), _f32(lstm.weight_hh_l0)
            bias = _f32(lstm.bias_ih_l0) + _f32(lstm.bias_hh_l0)
            if i == 0 and config.conditioning == "concat" and config.n_knobs:
                # Constant knob inputs: their product joins the bias, the sample stays the only input.
                bias = bias + w_ih[:, 1:] @ np.asarray(knobs, np.float32)
                w_ih = w_ih[:, :1]
            film = None
            if model.films:
                gamma, beta = model.films[i](k).chunk(2, dim=-1)
                film = (_f32(1.0 + gamma[0]), _f32(beta[0]))
            layers.append((np.concatenate([w_ih, w_hh], axis=1), bias, film, lstm.hidden_size, w_ih.shape[1]))
        return layers

    @staticmethod
    def _nam_layers(model: NamLSTM) -> list:
        lstm = model.lstm
        layers = []
        for i in range(lstm.num_layers):
            w_ih, w_hh = _f32(getattr(lstm, f"weight_ih_l{i}")), _f32(getattr(lstm, f"weight_hh_l{i}"))
            bias = _f32(getattr(lstm, f"bias_ih_l{i}")) + _f32(getattr(lstm, f"bias_hh_l{i}"))
            layers.append((np.concatenate([w_ih, w_hh], axis=1), bias, None, lstm.hidden_size, w_ih.shape[1]))
        return layers

    def _pack(self, layers: list) -> None:
        params: list[np.ndarray] = []
        table = np.zeros((len(layers), 9), np.int64)
        offset = vector = cell = 0

        def put(a: np.ndarray) -> int:
            nonlocal offset
            params.append(np.ascontiguousarray(a, np.float32).reshape(-1))
            start, offset = offset, offset + params[-1].size
            return start

        for n, (w, bias, film, units, inputs) in enumerate(layers):
            # Exact (powers of two): the kernel's gate sums come out as logistic's exponents.
            sign = np.full((4 * units, 1), -1.0, np.float32)
            sign[2 * units:3 * units] = -2.0
            w, bias = w * sign, bias * sign[:, 0]
            row = table[n]
            row[_INPUTS], row[_UNITS] = inputs, units
            row[_WEIGHTS] = put(w.T)  # (I+H, 4H): a column of W per input, contiguous over gate rows
            row[_BIAS] = put(bias)
            if film is not None:
                row[_SCALE], row[_SHIFT], row[_FILM] = put(film[0]), put(film[1]), 1
            row[_VECTOR], row[_CELL] = vector, cell
            vector += inputs + units
            cell += units
        self._params = np.concatenate(params)
        self._layers = table
        self._vectors = np.zeros(vector, np.float32)
        self._cells = np.zeros(cell, np.float32)
        rows = 4 * int(table[:, _UNITS].max())
        self._z, self._e = np.zeros(rows, np.float32), np.zeros(rows, np.float32)
        self._bits = np.zeros(rows, np.int32)
        self._features = np.zeros((2, 0, int(table[:, _UNITS].max())), np.float32)

    def reset(self) -> None:
        """Back to the model's start state."""
        self._vectors[:] = 0.0
        for row, (h, c) in zip(self._layers, self._start, strict=True):
            start = row[_VECTOR] + row[_INPUTS]
            self._vectors[start:start + row[_UNITS]] = h
            self._cells[row[_CELL]:row[_CELL] + row[_UNITS]] = c

    def process(self, block: np.ndarray) -> np.ndarray:
        """block: (time,) float32 → (time,) float32 (a new array)."""
        x = np.ascontiguousarray(block, np.float32)
        if x.ndim != 1 or x.shape[0] < 1:
            raise ConfigError(f"LSTM kernel: expected a mono block of shape (time,), time >= 1, found {x.shape}")
        y = np.empty_like(x)
        if self._features.shape[1] < x.shape[0]:
            self._features = np.zeros((2, x.shape[0], self._features.shape[2]), np.float32)
        lstm_block(x, y, self._params, self._layers, self._head, self._vectors, self._cells, self._z, self._e,
                   self._bits, self._features)
        return y
