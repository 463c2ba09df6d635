"""NAM-style WaveNet: stacked layer arrays of dilated causal convolutions, as Neural Amp Modeler defines it.

One layer array (NAM's ``_LayerArray``) holds

- ``rechannel``: a 1×1 convolution without bias from the array's input to ``channels``;
- per dilation a layer: a dilated causal convolution (kernel ``kernel_size``, with bias) from
  ``channels`` to ``channels`` (``2·channels`` when gated), plus the 1×1 *input mixer* (no bias)
  from the condition (the dry input, and the knob values if any), then the activation (tanh, or
  tanh·sigmoid when gated), then a 1×1 residual convolution (with bias) added to the layer input;
  the post-activation signal of every layer is summed into the *head input*;
- ``head_rechannel``: a 1×1 convolution from ``channels`` to ``head_size`` of the summed head input
  (with bias only where ``head_bias``, NAM's presets: on the last array).

The next array reads the previous array's layer output and starts its head sum from the previous
array's head output, so ``head_size`` of one array is the next array's ``channels``. The network
output is ``head_scale`` (0.02 in NAM's presets) times the last array's head output; there is no
input skip. Layout, presets and the weight order of :mod:`models.export.nam_format` follow the
``neural-amp-modeler`` trainer up to version 0.12 (``.nam`` format 0.5.x).

Internally tensors are time-major, ``(batch, time, channels)``, and every convolution is a few
matrix products on views of the cached history (PyTorch's dilated Conv1d is slow on short CPU
blocks); the public ``forward`` takes and returns ``(batch, time, 1)`` like
:class:`models.nets.lstm.LSTMStack`. The ``nn.Conv1d`` modules only hold the parameters, in NAM's shapes.

Streaming state is the cached input history of every dilated convolution:
``(kernel_size − 1)·dilation`` past columns per layer, so a block costs work proportional to its
length and block-wise rendering equals whole-file rendering. A missing state means the input was
silent forever before the first sample (NAM pads the start with zeros): every layer's history is
then its constant response to silence, computed in one cheap one-sample pass.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from models.errors import ConfigError

log = logging.getLogger(__name__)

ACTIVATIONS = {
    "Tanh": torch.tanh,
    "ReLU": torch.relu,
    "Sigmoid": torch.sigmoid,
    "Hardtanh": F.hardtanh,
}

# NAM's dilation lists (neural-amp-modeler nam/train/core.py, trainer 0.7–0.12).
_DILATIONS_10 = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
_DILATIONS_7 = (1, 2, 4, 8, 16, 32, 64)
_DILATIONS_13 = (128, 256, 512, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


@dataclass(frozen=True)
class LayerArrayConfig:
    """One NAM layer array; field names are NAM's ``.nam`` config keys (``condition_size`` is derived)."""

    input_size: int
    channels: int
    head_size: int
    dilations: tuple[int, ...]
    kernel_size: int = 3
    activation: Literal["Tanh", "ReLU", "Sigmoid", "Hardtanh"] = "Tanh"
    gated: bool = False
    head_bias: bool = False

    def __post_init__(self) -> None:
        for name in ("input_size", "channels", "head_size", "kernel_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"wavenet layer array {name}: expected an integer >= 1, found {value!r}")
        if not self.dilations or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in self.dilations):
            raise ConfigError(f"wavenet layer array dilations: expected a non-empty list of integers >= 1, "
                              f"found {list(self.dilations)}")
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"wavenet layer array activation: expected one of {sorted(ACTIVATIONS)}, "
                              f"found {self.activation!r}")

    @property
    def mid_channels(self) -> int:
        """Rows of the dilated convolution and of the input mixer (doubled when gated)."""
        return 2 * self.channels if self.gated else self.channels

    @property
    def receptive_field(self) -> int:
        return 1 + (self.kernel_size - 1) * sum(self.dilations)


@dataclass(frozen=True)
class WaveNetConfig:
    """What a WaveNet is: its layer arrays, the head scale and how many knob values it takes.

    ``preset`` only names where the layout came from (for labels); ``width`` records the fraction
    of the preset's channels a slimmed network kept (1.0 for an unslimmed one).
    """

    arrays: tuple[LayerArrayConfig, ...]
    head_scale: float = 0.02
    n_knobs: int = 0
    arch: Literal["wavenet"] = "wavenet"
    preset: str | None = None
    width: float = 1.0

    def __post_init__(self) -> None:
        if not self.arrays:
            raise ConfigError("wavenet arrays: expected at least one layer array, found none")
        if self.n_knobs < 0:
            raise ConfigError(f"wavenet n_knobs: expected >= 0, found {self.n_knobs}")
        if not 0.0 < self.width <= 1.0:
            raise ConfigError(f"wavenet width: expected a fraction in (0, 1], found {self.width}")
        if self.arrays[0].input_size != 1:
            raise ConfigError(f"wavenet arrays[0].input_size: expected 1 (mono audio), found {self.arrays[0].input_size}")
        for i in range(1, len(self.arrays)):
            before, here = self.arrays[i - 1], self.arrays[i]
            if here.input_size != before.channels:
                raise ConfigError(f"wavenet arrays[{i}].input_size: expected arrays[{i - 1}].channels = "
                                  f"{before.channels}, found {here.input_size}")
            if before.head_size != here.channels:
                raise ConfigError(f"wavenet arrays[{i - 1}].head_size: expected arrays[{i}].channels = "
                                  f"{here.channels} (the head sum continues into the next array), "
                                  f"found {before.head_size}")
        if self.arrays[-1].head_size != 1:
            raise ConfigError(f"wavenet arrays[-1].head_size: expected 1 (mono output), found {self.arrays[-1].head_size}")

    @property
    def condition_size(self) -> int:
        """Input mixer columns: the dry sample plus the knob values."""
        return 1 + self.n_knobs

    @property
    def receptive_field(self) -> int:
        return 1 + sum(a.receptive_field - 1 for a in self.arrays)

    @property
    def label(self) -> str:
        """``WN-standard``, ``WN-slimmable@50%`` or ``WN-16-8`` for a custom layout."""
        name = self.preset or "-".join(str(a.channels) for a in self.arrays)
        return f"WN-{name}" if self.width == 1.0 else f"WN-{name}@{round(100 * self.width):d}%"


def _preset_arrays(channels: tuple[int, int], dilations: tuple[tuple[int, ...], tuple[int, ...]]
                   ) -> tuple[LayerArrayConfig, LayerArrayConfig]:
    c1, c2 = channels
    return (
        LayerArrayConfig(input_size=1, channels=c1, head_size=c2, dilations=dilations[0], head_bias=False),
        LayerArrayConfig(input_size=c1, channels=c2, head_size=1, dilations=dilations[1], head_bias=True),
    )


PRESETS: dict[str, tuple[LayerArrayConfig, ...]] = {
    "standard": _preset_arrays((16, 8), (_DILATIONS_10, _DILATIONS_10)),
    "lite": _preset_arrays((12, 6), (_DILATIONS_7, _DILATIONS_13)),
    "feather": _preset_arrays((8, 4), (_DILATIONS_7, _DILATIONS_13)),
    "nano": _preset_arrays((4, 2), (_DILATIONS_7, _DILATIONS_13)),
    # The slimmable NAM paper slims NAM's WaveNet; the standard layout keeps the comparison with
    # NAM's presets direct: 75 % / 50 % / 25 % width have lite's / feather's / nano's channels.
    "slimmable": _preset_arrays((16, 8), (_DILATIONS_10, _DILATIONS_10)),
}


def from_preset(name: str, n_knobs: int = 0) -> WaveNetConfig:
    """The NAM preset ``name`` (standard, lite, feather, nano) or ``slimmable``, with ``n_knobs`` knobs."""
    if name not in PRESETS:
        raise ConfigError(f"wavenet preset: expected one of {sorted(PRESETS)}, found {name!r}")
    return WaveNetConfig(arrays=PRESETS[name], n_knobs=n_knobs, preset=name)


@dataclass(frozen=True)
class WaveNetPresetConfig:
    """A WaveNet as a study names it (``arch: wavenet``): NAM's ``preset`` (standard, lite, feather,
    nano, slimmable) at ``width`` (the fraction of its channels kept; 1.0 unslimmed). Knob values
    always enter through the input mixer."""

    preset: str
    width: float = 1.0
    n_knobs: int = 0
    arch: Literal["wavenet"] = "wavenet"

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ConfigError(f"model.preset: a wavenet needs one of {sorted(PRESETS)}, found {self.preset!r}")
        if not 0.0 < self.width <= 1.0:
            raise ConfigError(f"model.width: expected a fraction in (0, 1], found {self.width}")
        if self.n_knobs < 0:
            raise ConfigError(f"model.n_knobs: expected >= 0, found {self.n_knobs}")

    def layout(self) -> WaveNetConfig:
        """The layer arrays of the preset at this width."""
        full = from_preset(self.preset, self.n_knobs)
        return full if self.width == 1.0 else slimmed_config(full, self.width)

    @property
    def label(self) -> str:
        return self.layout().label


def width_channels(channels: int, width: float) -> int:
    """Channels kept at ``width``: ``channels·width`` rounded half up, at least 1."""
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not 0.0 < width <= 1.0:
        raise ConfigError(f"width: expected a fraction in (0, 1], found {width!r}")
    return max(1, min(channels, math.floor(channels * width + 0.5)))


def slimmed_config(config: WaveNetConfig, width: float) -> WaveNetConfig:
    """The layout of ``config`` at ``width``: every array's channels scaled, inputs and heads matched.

    ``width`` is relative to ``config`` (slimming an already slimmed layout scales it again).
    """
    kept = [width_channels(a.channels, width) for a in config.arrays]
    arrays = []
    for i, array in enumerate(config.arrays):
        arrays.append(replace(
            array,
            input_size=1 if i == 0 else kept[i - 1],
            channels=kept[i],
            head_size=1 if i == len(config.arrays) - 1 else kept[i + 1],
        ))
    return replace(config, arrays=tuple(arrays), width=config.width * width)


def macs_per_sample(config: WaveNetConfig, width: float = 1.0) -> int:
    """Multiply-adds per output sample of the weight products at ``width``.

    Per array: rechannel ``input·c``; per layer the dilated convolution ``k·c·mid``, the input
    mixer ``condition·mid`` and the residual 1×1 ``c·c``; the head rechannel ``c·head``
    (mid = c, or 2c when gated). Biases, activations, the residual and head additions and the
    head scale are not counted, as for the LSTMs in :func:`models.nets.lstm.macs_per_sample`.
    """
    if width != 1.0:
        config = slimmed_config(config, width)
    macs = 0
    for a in config.arrays:
        per_layer = a.kernel_size * a.channels * a.mid_channels + config.condition_size * a.mid_channels
        per_layer += a.channels * a.channels
        macs += a.input_size * a.channels + len(a.dilations) * per_layer + a.channels * a.head_size
    return macs


def _gate_rows(channels: int, kept: int, gated: bool) -> torch.Tensor | slice:
    """Rows of a (possibly gated) convolution kept at ``kept`` channels: first ``kept`` of each half."""
    if not gated:
        return slice(0, kept)
    return torch.cat([torch.arange(kept), channels + torch.arange(kept)])


class _Layer(nn.Module):
    def __init__(self, array: LayerArrayConfig, dilation: int, condition_size: int):
        super().__init__()
        self.conv = nn.Conv1d(array.channels, array.mid_channels, array.kernel_size, dilation=dilation)
        self.input_mixer = nn.Conv1d(condition_size, array.mid_channels, 1, bias=False)
        self.layer1x1 = nn.Conv1d(array.channels, array.channels, 1)


class _LayerArray(nn.Module):
    def __init__(self, array: LayerArrayConfig, condition_size: int):
        super().__init__()
        self.rechannel = nn.Conv1d(array.input_size, array.channels, 1, bias=False)
        self.layers = nn.ModuleList(_Layer(array, d, condition_size) for d in array.dilations)
        self.head_rechannel = nn.Conv1d(array.channels, array.head_size, 1, bias=array.head_bias)


@dataclass
class _ArrayWeights:
    """One array's weights as plain tensors (views of the parameters, possibly sliced)."""

    rechannel: torch.Tensor
    conv_w: list[torch.Tensor]
    conv_b: list[torch.Tensor]
    mixer_w: torch.Tensor  # all layers' input mixers stacked: (layers·mid, condition, 1)
    out_w: list[torch.Tensor]
    out_b: list[torch.Tensor]
    head_w: torch.Tensor
    head_b: torch.Tensor | None


@dataclass
class _ArrayPlan:
    """One array's weights arranged for :func:`_run`: time-major, transposed for ``x @ W``.

    The residual stream is carried without its bias: every layer's 1×1 bias only adds a constant
    vector to the stream, so the plan keeps the stream bias-free and folds the accumulated constant
    into the next convolutions' biases (``offsets`` holds it, to rebuild true layer outputs).
    The last array's head carries the head scale.
    """

    config: LayerArrayConfig
    rechannel: torch.Tensor  # (in, c)
    mixer: torch.Tensor  # (condition, layers·mid)
    mixer_bias: torch.Tensor  # (layers·mid,): conv biases with the folded stream constants
    taps: list[list[torch.Tensor]]  # per layer, per tap (oldest first): (c, mid)
    taps_sum: list[torch.Tensor]  # (c, mid): the taps summed, for a constant (silent) input
    out: list[torch.Tensor]  # (c, c)
    offsets: list[torch.Tensor]  # (c,) stream constant at each layer's output
    head: torch.Tensor  # (c, head)
    head_bias: torch.Tensor | None


def _dense(t: torch.Tensor) -> torch.Tensor:
    # Standard strides, size-1 dimensions included: a sliced network then multiplies exactly like a
    # slimmed one, through the same kernels.
    return t.clone(memory_format=torch.contiguous_format)


def _compile(weights: list[_ArrayWeights], arrays: Sequence[LayerArrayConfig], head_scale: float) -> list[_ArrayPlan]:
    plans = []
    carried = None  # stream constant leaving the previous array (true output = stream + carried)
    for a, (w, array) in enumerate(zip(weights, arrays, strict=True)):
        rechannel = w.rechannel[:, :, 0]
        offset = rechannel.new_zeros(array.channels) if carried is None else rechannel @ carried
        taps, taps_sum, out, offsets, biases = [], [], [], [], []
        for j in range(len(array.dilations)):
            kernel = w.conv_w[j]  # (mid, c, kernel)
            taps.append([_dense(kernel[:, :, i].t()) for i in range(kernel.shape[2])])
            summed = kernel.sum(dim=2)
            taps_sum.append(_dense(summed.t()))
            biases.append(w.conv_b[j] + summed @ offset)
            out.append(_dense(w.out_w[j][:, :, 0].t()))
            offset = offset + w.out_b[j]
            offsets.append(offset)
        head = w.head_w[:, :, 0].t()
        head_bias = w.head_b
        if a == len(arrays) - 1:
            head = head * head_scale
            head_bias = None if head_bias is None else head_bias * head_scale
        plans.append(_ArrayPlan(
            config=array, rechannel=_dense(rechannel.t()), mixer=_dense(w.mixer_w[:, :, 0].t()),
            mixer_bias=torch.cat(biases), taps=taps, taps_sum=taps_sum, out=out, offsets=offsets,
            head=_dense(head), head_bias=head_bias,
        ))
        carried = offset
    return plans


def _affine(add: torch.Tensor | None, x: torch.Tensor, w: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """``add + x @ w`` for x (time, in) or (batch, time, in) and w (in, out)."""
    if x.dim() == 2:
        if add is None:
            return torch.mm(x, w)
        # out= rather than addmm_: the same in-place kernel, and torch's flop counter sees it.
        return torch.addmm(add, x, w, out=add) if inplace else torch.addmm(add, x, w)
    w = w.expand(x.shape[0], -1, -1)
    if add is None:
        return torch.bmm(x, w)
    return torch.baddbmm(add, x, w, out=add) if inplace else torch.baddbmm(add, x, w)


def _run(plans: list[_ArrayPlan], cond: torch.Tensor, history: list[torch.Tensor] | None, keep_features: bool):
    """The network over ``cond`` ((batch,) time, condition) with per-layer (bias-free) ``history``.

    Tensors are time-major, ``((batch,) time, channels)``; a batch of one runs without the batch
    dimension (2-D products are several times cheaper per call than batched ones, which matters
    for short streamed blocks). history None: the input is constant in time (the silence pass,
    time length 1), so every convolution applies its summed taps. Returns y ((batch,) time, 1),
    the new history ((batch,) span, channels) per layer, and the layer outputs when ``keep_features``.
    """
    time = cond.shape[-2]
    inplace = not torch.is_grad_enabled()
    x = cond[..., :1]
    head = None
    new_history: list[torch.Tensor] = []
    features = []
    index = 0
    for plan in plans:
        array = plan.config
        c, mid, k = array.channels, array.mid_channels, array.kernel_size
        act_fn = ACTIVATIONS[array.activation]
        g = _affine(None, x, plan.rechannel)
        mixed = _affine(plan.mixer_bias, cond, plan.mixer)
        terms = [] if head is None else [head]
        for j, dilation in enumerate(array.dilations):
            span = (k - 1) * dilation
            z = mixed.narrow(-1, j * mid, mid)
            if history is None:
                z = _affine(z, g, plan.taps_sum[j])
                new_history.append(g.expand(*g.shape[:-2], span, c))
            else:
                full = torch.cat([history[index], g], dim=-2)
                # Tap i of the dilated convolution reads the rows i·dilation … i·dilation + time.
                z = _affine(z, full.narrow(-2, 0, time), plan.taps[j][0])
                for i in range(1, k):
                    z = _affine(z, full.narrow(-2, i * dilation, time), plan.taps[j][i], inplace)
                new_history.append(full.narrow(-2, time, span))
            act = act_fn(z.narrow(-1, 0, c)) * torch.sigmoid(z.narrow(-1, c, c)) if array.gated else act_fn(z)
            g = _affine(g, act, plan.out[j])
            terms.append(act)
            if keep_features:
                features.append(g + plan.offsets[j])
            index += 1
        summed = torch.stack(terms).sum(dim=0) if len(terms) > 1 else terms[0]
        head = _affine(plan.head_bias, summed, plan.head) if plan.head_bias is not None else _affine(
            None, summed, plan.head)
        x = g
    return head, new_history, features


WaveNetState = list[torch.Tensor]
"""Per layer (in array order) the cached input history ``(batch, (kernel − 1)·dilation, channels)``.

The history is kept without the residual-stream bias constants (see ``_ArrayPlan``): it is only
meaningful to the network (and width) that produced it."""


class WaveNet(nn.Module):
    """NAM's WaveNet with the forward of :class:`models.nets.lstm.LSTMStack` (see the module docstring)."""

    def __init__(self, config: WaveNetConfig):
        super().__init__()
        self.config = config
        self.arrays = nn.ModuleList(_LayerArray(a, config.condition_size) for a in config.arrays)
        self._plans: dict = {}
        self._parameter_list: list[nn.Parameter] | None = None

    @property
    def receptive_field(self) -> int:
        return self.config.receptive_field

    def weights_at(self, width: float | None = None) -> list[_ArrayWeights]:
        """Every array's weights at ``width`` (None or 1.0: the parameters themselves).

        Slicing keeps the first c′ channels of every weight (rows and columns of the convolutions,
        rows of the input rechannel and mixer, columns of the head rechannel; the gate half of a
        gated convolution keeps its own first c′ rows) so input and output stay mono. The slices
        are views of the parameters: gradients reach only the kept entries.
        """
        full = width is None or width == 1.0
        config = self.config if full else slimmed_config(self.config, width)
        result = []
        for module, base, small in zip(self.arrays, self.config.arrays, config.arrays, strict=True):
            c, ci, ch = small.channels, small.input_size, small.head_size
            rows = _gate_rows(base.channels, c, base.gated)

            def cut(w: torch.Tensor, columns: int | None, rows=rows) -> torch.Tensor:
                if full:
                    return w
                w = w[rows]
                return w if columns is None else w[:, :columns]

            layers = module.layers
            result.append(_ArrayWeights(
                rechannel=module.rechannel.weight if full else module.rechannel.weight[:c, :ci],
                conv_w=[cut(layer.conv.weight, c) for layer in layers],
                conv_b=[cut(layer.conv.bias, None) for layer in layers],
                mixer_w=torch.cat([cut(layer.input_mixer.weight, None) for layer in layers], dim=0),
                out_w=[layer.layer1x1.weight if full else layer.layer1x1.weight[:c, :c] for layer in layers],
                out_b=[layer.layer1x1.bias if full else layer.layer1x1.bias[:c] for layer in layers],
                head_w=module.head_rechannel.weight if full else module.head_rechannel.weight[:ch, :c],
                head_b=None if module.head_rechannel.bias is None else (
                    module.head_rechannel.bias if full else module.head_rechannel.bias[:ch]),
            ))
        return result

    def _condition(self, x: torch.Tensor, knobs: torch.Tensor | None) -> torch.Tensor:
        """(batch, time, 1) audio + knobs → (batch, time, condition)."""
        n_knobs = self.config.n_knobs
        if n_knobs and (knobs is None or knobs.shape[-1] != n_knobs):
            found = None if knobs is None else tuple(knobs.shape)
            raise ConfigError(f"this model needs {n_knobs} knob value(s) per example, found {found}")
        if n_knobs:
            return torch.cat([x, knobs[:, None, :].expand(-1, x.shape[1], -1).to(x.dtype)], dim=2)
        return x

    def _plan(self, width: float | None) -> list[_ArrayPlan]:
        """The weights of ``width`` rearranged for the fast forward (cached while no gradient is taken).

        Under ``no_grad``/``inference_mode`` the plan is rebuilt only when a parameter changes
        (version counters and storage), so streaming blocks do not pay for it.
        """
        if self._parameter_list is None:
            self._parameter_list = list(self.parameters())
        # Parameters made under inference_mode (e.g. a network built inside it) keep no version
        # counter, so an in-place change could not be seen: never cache their plan.
        if torch.is_grad_enabled() or any(p.is_inference() for p in self._parameter_list):
            return _compile(self.weights_at(width), self._arrays_at(width), self.config.head_scale)
        key = (width if width not in (None, 1.0) else 1.0, torch.is_inference_mode_enabled(),
               tuple((p._version, p.data_ptr()) for p in self._parameter_list))
        cached = self._plans.get(key[:2])
        if cached is None or cached[0] != key[2]:
            cached = (key[2], _compile(self.weights_at(width), self._arrays_at(width), self.config.head_scale))
            self._plans[key[:2]] = cached
        return cached[1]

    def _arrays_at(self, width: float | None) -> tuple[LayerArrayConfig, ...]:
        return self.config.arrays if width in (None, 1.0) else slimmed_config(self.config, width).arrays

    def silence_state(self, batch: int, knobs: torch.Tensor | None = None, width: float | None = None,
                      dtype: torch.dtype = torch.float32) -> WaveNetState:
        """The history every layer holds after endless silence (batch items differ only by knobs)."""
        x = torch.zeros(batch, 1, 1, dtype=dtype, device=self._device())
        cond = self._condition(x, knobs)
        if batch == 1:
            _, history, _ = _run(self._plan(width), cond[0], None, False)
            return [h[None] for h in history]
        _, history, _ = _run(self._plan(width), cond, None, False)
        return history

    def _device(self) -> torch.device:
        return self.arrays[0].rechannel.weight.device

    def forward(
        self,
        x: torch.Tensor,
        knobs: torch.Tensor | None = None,
        state: WaveNetState | None = None,
        return_features: bool = False,
        width: float | None = None,
    ):
        """Run the network causally; output length = input length.

        x: (batch, time, 1); knobs: (batch, n_knobs) or None; state: per-layer history from a
        previous call (see :data:`WaveNetState`) or None for endless silence before the first
        sample; width: fraction of channels to keep (None = all; the state must come from the same
        width). Returns ``(y, new_state)`` with y (batch, time, 1), or ``(y, new_state, features)``
        where features[i] is layer i's output (batch, time, channels).
        """
        if x.dim() != 3 or x.shape[2] != 1:
            raise ConfigError(f"wavenet input: expected a (batch, time, 1) tensor, found shape {tuple(x.shape)}")
        cond = self._condition(x, knobs)
        config = self.config if width in (None, 1.0) else slimmed_config(self.config, width)
        if state is None:
            state = self.silence_state(x.shape[0], knobs, width, x.dtype)
        else:
            expected = sum(len(a.dilations) for a in config.arrays)
            if len(state) != expected:
                raise ConfigError(f"wavenet state: expected {expected} layer histories, found {len(state)}")
        plan = self._plan(width)
        if x.shape[0] == 1:
            y, new_state, features = _run(plan, cond[0], [h[0] for h in state], return_features)
            y, new_state, features = y[None], [h[None] for h in new_state], [f[None] for f in features]
        else:
            y, new_state, features = _run(plan, cond, state, return_features)
        if return_features:
            return y, new_state, features
        return y, new_state


def build_wavenet(config: WaveNetConfig) -> WaveNet:
    """A fresh, randomly initialised WaveNet (PyTorch's default Conv1d initialisation, as NAM)."""
    return WaveNet(config)
