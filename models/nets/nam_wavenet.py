"""NAM's general WaveNet: the layer-array network of ``.nam`` format 0.6.x/0.7.x (NeuralAmpModelerCore's
``NAM/wavenet``), computed as the engine computes it.

A layer array (:class:`NamLayerArrayConfig`) holds

- ``rechannel``: a 1×1 convolution without bias from the array's input to ``channels``;
- per layer (:class:`NamLayerConfig`, each with its own kernel size, dilation, activation and gating):
  the dilated causal convolution (``groups_input``, with bias) from ``channels`` to the bottleneck
  ``B`` (``2B`` when gated or blended) plus the 1×1 *input mixin* (``groups_input_mixin``, no bias)
  of the condition; then the activation: ``none`` applies it, ``gated`` multiplies the activated
  first half by the ``secondary_activation`` of the second, ``blended`` mixes the activated and
  the raw first half by the secondary activation of the second (``α·act(a) + (1 − α)·a``); the
  optional ``layer1x1`` (``B → channels``, bias) is added to the layer input for the next layer
  (without it the next layer gets the input unchanged); the optional ``head1x1`` (``B →
  out_channels``, bias) feeds the head instead of the activated signal;
- up to eight FiLM blocks (``conv_pre_film`` … ``head1x1_post_film``): a 1×1 convolution of the
  condition gives a per-channel scale (and shift) applied at that point;
- ``head_rechannel``: a causal convolution (``kernel_size``, ``dilation``, optional bias) of the
  head sum to ``head_size``.

The next array reads the previous array's layer output and starts its head sum from the previous
array's head output. The condition is the input itself, or the output of ``condition_dsp``, a
nested NAM WaveNet run on the input. The output is ``head_scale`` times the last array's head
output, or, with a post-stack :class:`NamHeadConfig`, that scaled signal through ``activation →
convolution`` blocks.

Two quirks of the engine are reproduced because files are rendered as it renders them: a
``layer1x1_post_film`` is applied only in ``blended`` layers (its weights are read everywhere),
and the head scale is the last value of the weight list (the config's ``head_scale`` is not read).

Tensors are channel-major inside, ``(batch, channels, time)``; the public ``forward`` takes and
returns ``(batch, time, 1)`` like the zoo's networks. The state is every causal convolution's
input history (``(kernel − 1)·dilation`` columns) and the condition network's state; a missing
state means endless silence before the first sample, which is what NAM's pre-warm reaches: every
history is then its convolution's constant input under silence, found in one one-sample pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from models.errors import ConfigError
from models.nets.nam_activations import NamActivation

GATING_MODES = ("none", "gated", "blended")
BLOCK_SAMPLES = 4096
"""Time steps the forward computes at once (a block's signals stay in the cache)."""
FILM_POSITIONS = ("conv_pre_film", "conv_post_film", "input_mixin_pre_film", "input_mixin_post_film",
                  "activation_pre_film", "activation_post_film", "layer1x1_post_film", "head1x1_post_film")
"""The FiLM blocks of a layer, in the order NAM reads their weights."""


def _positive(owner: str, name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{owner} {name}: expected an integer >= 1, found {value!r}")


def _divides(owner: str, what: str, channels: int, groups: int) -> None:
    if channels % groups:
        raise ConfigError(f"{owner} {what}: {channels} channels do not split into {groups} groups")


@dataclass(frozen=True)
class FiLMConfig:
    """One active FiLM block: a 1×1 convolution (``groups``) of the condition to a scale (and shift)."""

    shift: bool = True
    groups: int = 1

    def __post_init__(self) -> None:
        _positive("FiLM", "groups", self.groups)


@dataclass(frozen=True)
class NamLayerConfig:
    """One layer of an array: its convolution and activation."""

    kernel_size: int
    dilation: int
    activation: NamActivation
    gating_mode: str = "none"
    secondary_activation: NamActivation | None = None

    def __post_init__(self) -> None:
        _positive("NAM WaveNet layer", "kernel_size", self.kernel_size)
        _positive("NAM WaveNet layer", "dilation", self.dilation)
        if self.gating_mode not in GATING_MODES:
            raise ConfigError(f"NAM WaveNet layer gating_mode: expected one of {GATING_MODES}, found "
                              f"{self.gating_mode!r}")
        if (self.gating_mode == "none") != (self.secondary_activation is None):
            raise ConfigError("NAM WaveNet layer: a secondary activation goes with gating_mode gated or blended only")

    @property
    def z_channels_factor(self) -> int:
        return 1 if self.gating_mode == "none" else 2


@dataclass(frozen=True)
class NamLayerArrayConfig:
    """One layer array; field names follow NAM's ``.nam`` keys (see the module docstring)."""

    input_size: int
    condition_size: int
    channels: int
    bottleneck: int
    head_size: int
    layers: tuple[NamLayerConfig, ...]
    head_kernel_size: int = 1
    head_dilation: int = 1
    head_bias: bool = False
    groups_input: int = 1
    groups_input_mixin: int = 1
    layer1x1: bool = True
    layer1x1_groups: int = 1
    head1x1: bool = False
    head1x1_out_channels: int = 1
    head1x1_groups: int = 1
    conv_pre_film: FiLMConfig | None = None
    conv_post_film: FiLMConfig | None = None
    input_mixin_pre_film: FiLMConfig | None = None
    input_mixin_post_film: FiLMConfig | None = None
    activation_pre_film: FiLMConfig | None = None
    activation_post_film: FiLMConfig | None = None
    layer1x1_post_film: FiLMConfig | None = None
    head1x1_post_film: FiLMConfig | None = None
    allowed_channels: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        owner = "NAM WaveNet layer array"
        for name in ("input_size", "condition_size", "channels", "bottleneck", "head_size", "head_kernel_size",
                     "head_dilation", "groups_input", "groups_input_mixin", "layer1x1_groups",
                     "head1x1_out_channels", "head1x1_groups"):
            _positive(owner, name, getattr(self, name))
        if not self.layers:
            raise ConfigError(f"{owner}: expected at least one layer (dilation)")
        if not self.layer1x1:
            if self.bottleneck != self.channels:
                raise ConfigError(f"{owner}: without layer1x1 the bottleneck ({self.bottleneck}) must equal "
                                  f"channels ({self.channels})")
            if self.layer1x1_post_film is not None:
                raise ConfigError(f"{owner}: layer1x1_post_film needs an active layer1x1")
        if not self.head1x1 and self.head1x1_post_film is not None:
            raise ConfigError(f"{owner}: head1x1_post_film needs an active head1x1")
        for layer in self.layers:
            z = layer.z_channels_factor * self.bottleneck
            _divides(owner, "convolution input", self.channels, self.groups_input)
            _divides(owner, "convolution output", z, self.groups_input)
            _divides(owner, "input mixin input", self.condition_size, self.groups_input_mixin)
            _divides(owner, "input mixin output", z, self.groups_input_mixin)
            for activation in (layer.activation, layer.secondary_activation):
                if activation is not None and not activation.fits(self.bottleneck):
                    raise ConfigError(f"{owner}: PReLU with {len(activation.negative_slopes or ())} slopes for a "
                                      f"bottleneck of {self.bottleneck} channels")
                # NAM's engine reads a gated or blended layer's PReLU slopes per channel, past the end
                # of a single slope: only one slope per channel renders as it renders.
                if (activation is not None and activation.type == "PReLU" and layer.gating_mode != "none"
                        and len(activation.negative_slopes or ()) != self.bottleneck):
                    raise ConfigError(f"{owner}: a {layer.gating_mode} layer's PReLU needs one slope per bottleneck "
                                      f"channel ({self.bottleneck}), found "
                                      f"{len(activation.negative_slopes or ()) or 'a single slope'}")
        if self.layer1x1:
            _divides(owner, "layer1x1 input", self.bottleneck, self.layer1x1_groups)
            _divides(owner, "layer1x1 output", self.channels, self.layer1x1_groups)
        if self.head1x1:
            _divides(owner, "head1x1 input", self.bottleneck, self.head1x1_groups)
            _divides(owner, "head1x1 output", self.head1x1_out_channels, self.head1x1_groups)
        for name in FILM_POSITIONS:
            film = getattr(self, name)
            if film is not None:
                for layer in self.layers:
                    dim = self.film_channels(name, layer)
                    _divides(owner, f"{name} input", self.condition_size, film.groups)
                    _divides(owner, f"{name} output", (2 if film.shift else 1) * dim, film.groups)
        if self.allowed_channels is not None:
            allowed = self.allowed_channels
            if not allowed or any(b <= a for a, b in zip(allowed, allowed[1:], strict=False)) or allowed[0] < 1:
                raise ConfigError(f"{owner} allowed_channels: expected ascending integers >= 1, found {list(allowed)}")
            if allowed[-1] != self.channels:
                raise ConfigError(f"{owner} allowed_channels: the last entry must be the full channel count "
                                  f"({self.channels}), found {allowed[-1]}")

    @property
    def head_input_size(self) -> int:
        """Channels each layer adds to the head sum: head1x1's output, else the bottleneck."""
        return self.head1x1_out_channels if self.head1x1 else self.bottleneck

    def film_channels(self, name: str, layer: NamLayerConfig) -> int:
        """Channels the FiLM block ``name`` scales in ``layer``."""
        z = layer.z_channels_factor * self.bottleneck
        return {"conv_pre_film": self.channels, "conv_post_film": z, "input_mixin_pre_film": self.condition_size,
                "input_mixin_post_film": z, "activation_pre_film": z, "activation_post_film": self.bottleneck,
                "layer1x1_post_film": self.channels, "head1x1_post_film": self.head1x1_out_channels}[name]

    @property
    def receptive_field(self) -> int:
        return (1 + sum((layer.kernel_size - 1) * layer.dilation for layer in self.layers)
                + (self.head_kernel_size - 1) * self.head_dilation)


@dataclass(frozen=True)
class NamHeadConfig:
    """The post-stack head: ``len(kernel_sizes)`` blocks of ``activation → convolution`` (bias, dilation 1),
    ``in_channels → channels → … → out_channels``."""

    in_channels: int
    channels: int
    out_channels: int
    kernel_sizes: tuple[int, ...]
    activation: NamActivation

    def __post_init__(self) -> None:
        for name in ("in_channels", "channels", "out_channels"):
            _positive("NAM WaveNet head", name, getattr(self, name))
        if not self.kernel_sizes:
            raise ConfigError("NAM WaveNet head kernel_sizes: expected a non-empty list")
        for k in self.kernel_sizes:
            _positive("NAM WaveNet head", "kernel_sizes entry", k)
        widths = [self.in_channels] + [self.channels] * (len(self.kernel_sizes) - 1)
        if not all(self.activation.fits(c) for c in widths):
            raise ConfigError("NAM WaveNet head: PReLU slopes do not match the head's channels")


@dataclass(frozen=True)
class NamWaveNetConfig:
    """A NAM WaveNet: its layer arrays, optional post-stack head and head scale."""

    arrays: tuple[NamLayerArrayConfig, ...]
    head_scale: float
    head: NamHeadConfig | None = None
    in_channels: int = 1

    def __post_init__(self) -> None:
        _positive("NAM WaveNet", "in_channels", self.in_channels)
        if not self.arrays:
            raise ConfigError("NAM WaveNet: expected at least one layer array")
        if self.arrays[0].input_size != self.in_channels:
            raise ConfigError(f"NAM WaveNet: the first array's input_size ({self.arrays[0].input_size}) must equal "
                              f"in_channels ({self.in_channels})")
        for i in range(1, len(self.arrays)):
            before, array = self.arrays[i - 1], self.arrays[i]
            if array.input_size != before.channels:
                raise ConfigError(f"NAM WaveNet: layer array {i} input_size ({array.input_size}) must equal the "
                                  f"channels of array {i - 1} ({before.channels})")
            if array.channels != before.head_size or array.head_input_size != before.head_size:
                raise ConfigError(f"NAM WaveNet: layer array {i} takes a head sum of {array.head_input_size} channels "
                                  f"and {array.channels} channels, array {i - 1} gives head_size {before.head_size}")
        if self.head is not None and self.head.in_channels != self.arrays[-1].head_size:
            raise ConfigError(f"NAM WaveNet head in_channels ({self.head.in_channels}) must equal the last array's "
                              f"head_size ({self.arrays[-1].head_size})")

    @property
    def out_channels(self) -> int:
        return self.head.out_channels if self.head is not None else self.arrays[-1].head_size

    @property
    def condition_size(self) -> int:
        return self.arrays[0].condition_size

    @property
    def receptive_field(self) -> int:
        """Samples an output depends on (NAM's pre-warm count without the condition network)."""
        field = 1 + sum(a.receptive_field - 1 for a in self.arrays)
        if self.head is not None:
            field += sum(k - 1 for k in self.head.kernel_sizes)
        return field

    @property
    def slimmable(self) -> bool:
        return any(a.allowed_channels is not None for a in self.arrays)


def _conv(in_channels: int, out_channels: int, kernel_size: int = 1, bias: bool = True, dilation: int = 1,
          groups: int = 1) -> nn.Conv1d:
    return nn.Conv1d(in_channels, out_channels, kernel_size, dilation=dilation, groups=groups, bias=bias)


def _conv_parameters(conv: nn.Conv1d | None) -> list[nn.Parameter]:
    """NAM's order for one convolution: the weight (out, in/groups, kernel) row by row, then the bias."""
    if conv is None:
        return []
    return [conv.weight] + ([] if conv.bias is None else [conv.bias])


class _FiLM(nn.Module):
    def __init__(self, condition_size: int, channels: int, config: FiLMConfig):
        super().__init__()
        self.channels = channels
        self.shift = config.shift
        self.conv = _conv(condition_size, (2 if config.shift else 1) * channels, groups=config.groups)

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """x: (batch, channels, time) scaled (and shifted) by the condition (batch, condition, time)."""
        scale_shift = F.conv1d(condition, self.conv.weight, self.conv.bias, groups=self.conv.groups)
        if self.shift:
            return x * scale_shift[:, :self.channels] + scale_shift[:, self.channels:]
        return x * scale_shift


class _Layer(nn.Module):
    def __init__(self, array: NamLayerArrayConfig, layer: NamLayerConfig):
        super().__init__()
        self.config = layer
        z = layer.z_channels_factor * array.bottleneck
        self.bottleneck = array.bottleneck
        self.conv = _conv(array.channels, z, layer.kernel_size, dilation=layer.dilation, groups=array.groups_input)
        self.input_mixin = _conv(array.condition_size, z, bias=False, groups=array.groups_input_mixin)
        self.layer1x1 = (_conv(array.bottleneck, array.channels, groups=array.layer1x1_groups)
                         if array.layer1x1 else None)
        self.head1x1 = (_conv(array.bottleneck, array.head1x1_out_channels, groups=array.head1x1_groups)
                        if array.head1x1 else None)
        self.films = nn.ModuleDict({
            name: _FiLM(array.condition_size, array.film_channels(name, layer), getattr(array, name))
            for name in FILM_POSITIONS if getattr(array, name) is not None
        })

    def nam_parameters(self) -> list[nn.Parameter]:
        params = (_conv_parameters(self.conv) + [self.input_mixin.weight] + _conv_parameters(self.layer1x1)
                  + _conv_parameters(self.head1x1))
        for name in FILM_POSITIONS:
            if name in self.films:
                params += _conv_parameters(self.films[name].conv)
        return params

    def _film(self, name: str, x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        return self.films[name](x, condition) if name in self.films else x

    def forward(self, x: torch.Tensor, condition: torch.Tensor, conv_input: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (batch, channels, time) → (next layer's input, head contribution); ``conv_input`` runs the
        causal convolution with its history."""
        mode = self.config.gating_mode
        z = conv_input(self.conv, self._film("conv_pre_film", x, condition))
        z = self._film("conv_post_film", z, condition)
        mixed = F.conv1d(self._film("input_mixin_pre_film", condition, condition), self.input_mixin.weight,
                         groups=self.input_mixin.groups)
        z = z + self._film("input_mixin_post_film", mixed, condition)
        z = self._film("activation_pre_film", z, condition)
        b = self.bottleneck
        if mode == "none":
            top = self.config.activation(z)
        elif mode == "gated":
            top = self.config.activation(z[:, :b]) * self.config.secondary_activation(z[:, b:])
        else:
            alpha = self.config.secondary_activation(z[:, b:])
            raw = z[:, :b]
            top = alpha * self.config.activation(raw) + (1.0 - alpha) * raw
        top = self._film("activation_post_film", top, condition)
        if self.layer1x1 is not None:
            residual = F.conv1d(top, self.layer1x1.weight, self.layer1x1.bias, groups=self.layer1x1.groups)
            if mode == "blended":  # NAM applies layer1x1_post_film in blended layers only
                residual = self._film("layer1x1_post_film", residual, condition)
            out = x + residual
        else:
            out = x
        if self.head1x1 is not None:
            head = F.conv1d(top, self.head1x1.weight, self.head1x1.bias, groups=self.head1x1.groups)
            head = self._film("head1x1_post_film", head, condition)
        else:
            head = top
        return out, head


class _LayerArray(nn.Module):
    def __init__(self, config: NamLayerArrayConfig):
        super().__init__()
        self.config = config
        self.rechannel = _conv(config.input_size, config.channels, bias=False)
        self.layers = nn.ModuleList(_Layer(config, layer) for layer in config.layers)
        self.head_rechannel = _conv(config.head_input_size, config.head_size, config.head_kernel_size,
                                    bias=config.head_bias, dilation=config.head_dilation)

    def nam_parameters(self) -> list[nn.Parameter]:
        params = [self.rechannel.weight]
        for layer in self.layers:
            params += layer.nam_parameters()
        return params + _conv_parameters(self.head_rechannel)


class _Head(nn.Module):
    def __init__(self, config: NamHeadConfig):
        super().__init__()
        self.config = config
        widths = [config.in_channels] + [config.channels] * (len(config.kernel_sizes) - 1) + [config.out_channels]
        self.convs = nn.ModuleList(_conv(widths[i], widths[i + 1], k) for i, k in enumerate(config.kernel_sizes))

    def nam_parameters(self) -> list[nn.Parameter]:
        return [p for conv in self.convs for p in _conv_parameters(conv)]


class _Histories:
    """Hands each causal convolution its input history in order and collects the new ones.

    ``given`` None is the silence pass: the input is one constant column, so every history is that
    column repeated (which makes the convolution's output its constant response to it).
    """

    def __init__(self, given: list[torch.Tensor] | None):
        self._given: Iterator[torch.Tensor] | None = None if given is None else iter(given)
        self.new: list[torch.Tensor] = []

    def __call__(self, conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
        span = (conv.kernel_size[0] - 1) * conv.dilation[0]
        if self._given is None:
            history = x[:, :, :1].expand(-1, -1, span)
        else:
            try:
                history = next(self._given)
            except StopIteration:
                raise ConfigError("NAM WaveNet state: fewer histories than causal convolutions") from None
            if history.shape[1] != x.shape[1] or history.shape[2] != span:
                raise ConfigError(f"NAM WaveNet state: expected a history of {x.shape[1]} × {span}, found "
                                  f"{tuple(history.shape[1:])}")
        full = torch.cat([history, x], dim=2) if span else x
        self.new.append(full[:, :, full.shape[2] - span:])
        return F.conv1d(full, conv.weight, conv.bias, dilation=conv.dilation, groups=conv.groups)


NamWaveNetState = tuple[list[torch.Tensor], Any]
"""(every causal convolution's input history (batch, channels, span) in network order, the
condition network's state or None)."""


class NamWaveNet(nn.Module):
    """NAM's general WaveNet with the zoo's forward (see the module docstring).

    ``condition_dsp`` is the nested network whose output is the condition (None: the input is).
    """

    def __init__(self, config: NamWaveNetConfig, condition_dsp: NamWaveNet | None = None):
        super().__init__()
        if condition_dsp is not None:
            if condition_dsp.config.in_channels != config.in_channels:
                raise ConfigError(f"NAM WaveNet condition_dsp: takes {condition_dsp.config.in_channels} input "
                                  f"channels, the network gives it {config.in_channels}")
            given = condition_dsp.config.out_channels
        else:
            given = config.in_channels
        for i, array in enumerate(config.arrays):
            if array.condition_size != given:
                raise ConfigError(f"NAM WaveNet: layer array {i} condition_size ({array.condition_size}) must equal "
                                  f"the condition's channels ({given})")
        self.config = config
        self.condition_dsp = condition_dsp
        self.arrays = nn.ModuleList(_LayerArray(a) for a in config.arrays)
        self.head = None if config.head is None else _Head(config.head)

    @property
    def receptive_field(self) -> int:
        field = self.config.receptive_field
        if self.condition_dsp is not None:
            field += self.condition_dsp.receptive_field - 1
        return field

    def nam_parameters(self) -> list[nn.Parameter]:
        """This network's parameters (not the condition network's) in the order of a ``.nam`` weight list;
        the head scale follows them there."""
        params = [p for array in self.arrays for p in array.nam_parameters()]
        return params + ([] if self.head is None else self.head.nam_parameters())

    def macs_per_sample(self) -> int:
        """Multiply-adds per output sample of every convolution (FiLM, mixins and the condition network
        included); activations and additions are not counted."""
        return sum(m.weight.numel() for m in self.modules() if isinstance(m, nn.Conv1d))

    def _process(self, x: torch.Tensor, state: NamWaveNetState | None,
                 features: list[torch.Tensor] | None = None) -> tuple[torch.Tensor, NamWaveNetState]:
        """x: (batch, in_channels, time) → (y (batch, out_channels, time), new state); state None is the
        silence pass (see :class:`_Histories`)."""
        histories = _Histories(None if state is None else state[0])
        if self.condition_dsp is not None:
            condition, condition_state = self.condition_dsp._process(x, None if state is None else state[1])
        else:
            condition, condition_state = x, None
        layer_input, head = x, None
        for array in self.arrays:
            h = F.conv1d(layer_input, array.rechannel.weight)
            for layer in array.layers:
                h, contribution = layer(h, condition, histories)
                head = contribution if head is None else head + contribution
                if features is not None:
                    features.append(h)
            head = histories(array.head_rechannel, head)
            layer_input = h
        y = self.config.head_scale * head
        if self.head is not None:
            for conv in self.head.convs:
                y = histories(conv, self.head.config.activation(y))
        if state is not None:
            _check_used(histories, state[0])
        return y, (histories.new, condition_state)

    def silence_state(self, batch: int, dtype: torch.dtype = torch.float32,
                      device: torch.device | str | None = None) -> NamWaveNetState:
        """The state after endless silence (what NAM's pre-warm reaches), for ``batch`` items."""
        weight = self.arrays[0].rechannel.weight
        zeros = torch.zeros(1, self.config.in_channels, 1, dtype=dtype, device=device or weight.device)
        _, state = self._process(zeros, None)
        return _expand(state, batch)

    def forward(self, x: torch.Tensor, knobs: torch.Tensor | None = None, state: NamWaveNetState | None = None,
                return_features: bool = False):
        """x: (batch, time, 1) → ``(y (batch, time, 1), new_state)``, or with ``return_features``
        ``(y, new_state, [every layer's output (batch, time, channels)])``. state None: endless
        silence before the first sample. The network computes in its parameters' dtype (``.double()``
        for float64) and returns y in x's."""
        if knobs is not None and knobs.numel():
            raise ConfigError(f"a NAM WaveNet takes no knob values, found {tuple(knobs.shape)}")
        if x.dim() != 3 or x.shape[2] != 1:
            raise ConfigError(f"NAM WaveNet input: expected a (batch, time, 1) tensor, found shape {tuple(x.shape)}")
        if self.config.in_channels != 1 or self.config.out_channels != 1:
            raise ConfigError(f"NAM WaveNet: only mono networks run here, this one has {self.config.in_channels} "
                              f"input and {self.config.out_channels} output channels")
        dtype = self.arrays[0].rechannel.weight.dtype
        if state is None:
            state = self.silence_state(x.shape[0], dtype, x.device)
        features: list[torch.Tensor] | None = [] if return_features else None
        signal = x.transpose(1, 2).to(dtype)
        outputs, block_features = [], []
        # Blocks of BLOCK_SAMPLES keep every intermediate signal in the cache (several times faster
        # than whole-file tensors); the carried state makes the result the same.
        for start in range(0, max(1, signal.shape[2]), BLOCK_SAMPLES):
            y, state = self._process(signal[:, :, start:start + BLOCK_SAMPLES], state, features)
            outputs.append(y)
            if features is not None:
                block_features.append(features)
                features = []
        y = (torch.cat(outputs, dim=2) if len(outputs) > 1 else outputs[0]).transpose(1, 2).to(x.dtype)
        if return_features:
            per_layer = [torch.cat([block[i] for block in block_features], dim=2).transpose(1, 2)
                         for i in range(len(block_features[0]))]
            return y, state, per_layer
        return y, state


def _check_used(histories: _Histories, given: list[torch.Tensor]) -> None:
    if len(histories.new) != len(given):
        raise ConfigError(f"NAM WaveNet state: expected {len(histories.new)} histories, found {len(given)}")


def _expand(state: NamWaveNetState | None, batch: int) -> NamWaveNetState | None:
    if state is None:
        return None
    return [h.expand(batch, -1, -1) for h in state[0]], _expand(state[1], batch)
