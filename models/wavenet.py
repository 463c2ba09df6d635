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
input skip. Layout, presets and the weight order of :mod:`models.nam_format` follow the
``neural-amp-modeler`` trainer up to version 0.12 (``.nam`` format 0.5.x).

Time runs left to right in the convolutions, so tensors here are channels-first
``(batch, channels, time)`` internally; the public ``forward`` takes and returns
``(batch, time, 1)`` like :class:`models.nets.LSTMStack`.

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

from .errors import ConfigError

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
    head scale are not counted, as for the LSTMs in :func:`models.nets.macs_per_sample`.
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


WaveNetState = list[torch.Tensor]
"""Per layer (in array order) the cached input history ``(batch, channels, (kernel − 1)·dilation)``."""


class WaveNet(nn.Module):
    """NAM's WaveNet with the forward of :class:`models.nets.LSTMStack` (see the module docstring)."""

    def __init__(self, config: WaveNetConfig):
        super().__init__()
        self.config = config
        self.arrays = nn.ModuleList(_LayerArray(a, config.condition_size) for a in config.arrays)

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
        """(batch, time, 1) audio + knobs → (batch, condition, time)."""
        n_knobs = self.config.n_knobs
        if n_knobs and (knobs is None or knobs.shape[-1] != n_knobs):
            found = None if knobs is None else tuple(knobs.shape)
            raise ConfigError(f"this model needs {n_knobs} knob value(s) per example, found {found}")
        cond = x.transpose(1, 2)
        if n_knobs:
            cond = torch.cat([cond, knobs[:, :, None].expand(-1, -1, x.shape[1]).to(x.dtype)], dim=1)
        return cond

    def _run(self, weights: list[_ArrayWeights], cond: torch.Tensor, history: WaveNetState | None,
             layer_configs: Sequence[LayerArrayConfig], keep_features: bool):
        """The network over ``cond`` (batch, condition, time) with per-layer ``history``.

        history None: every convolution reads only the current columns (the silence pass uses
        time length 1 and treats every tap as that column). Returns y (batch, 1, time), the new
        history and the per-layer outputs.
        """
        x = cond[:, :1]
        head = None
        new_history: WaveNetState = []
        features = []
        index = 0
        for w, array in zip(weights, layer_configs, strict=True):
            h = F.conv1d(x, w.rechannel)
            mixed = F.conv1d(cond, w.mixer_w)
            mid = w.conv_w[0].shape[0]
            channels = w.out_w[0].shape[0]
            act_fn = ACTIVATIONS[array.activation]
            for j, dilation in enumerate(array.dilations):
                span = (array.kernel_size - 1) * dilation
                if history is None:
                    # Constant input: every tap sees the same column, so the kernel sums.
                    z = F.conv1d(h, w.conv_w[j].sum(dim=2, keepdim=True), w.conv_b[j])
                    past = h.expand(-1, -1, span) if span else h[:, :, :0]
                    full = h
                else:
                    full = torch.cat([history[index], h], dim=2) if span else h
                    z = F.conv1d(full, w.conv_w[j], w.conv_b[j], dilation=dilation)
                    past = full[:, :, full.shape[2] - span:]
                new_history.append(past)
                z = z + mixed[:, j * mid:(j + 1) * mid]
                if array.gated:
                    act = act_fn(z[:, :channels]) * torch.sigmoid(z[:, channels:])
                else:
                    act = act_fn(z)
                h = h + F.conv1d(act, w.out_w[j], w.out_b[j])
                head = act if head is None else head + act
                if keep_features:
                    features.append(h)
                index += 1
            head = F.conv1d(head, w.head_w, w.head_b)
            x = h
        return self.config.head_scale * head, new_history, features

    def silence_state(self, batch: int, knobs: torch.Tensor | None = None, width: float | None = None,
                      dtype: torch.dtype = torch.float32) -> WaveNetState:
        """The history every layer holds after endless silence (batch items differ only by knobs)."""
        x = torch.zeros(batch, 1, 1, dtype=dtype, device=self._device())
        cond = self._condition(x, knobs)
        config = self.config if width in (None, 1.0) else slimmed_config(self.config, width)
        _, history, _ = self._run(self.weights_at(width), cond, None, config.arrays, False)
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
        y, new_state, features = self._run(self.weights_at(width), cond, state, config.arrays, return_features)
        y = y.transpose(1, 2)
        if return_features:
            return y, new_state, [f.transpose(1, 2) for f in features]
        return y, new_state


def build_wavenet(config: WaveNetConfig) -> WaveNet:
    """A fresh, randomly initialised WaveNet (PyTorch's default Conv1d initialisation, as NAM)."""
    return WaveNet(config)
