"""NAM's WaveNet with its presets as a registered architecture (``arch: wavenet``).

A study names one ``{arch: wavenet, preset: nano}`` (optionally ``width:``); the built network is a
:class:`models.nets.wavenet.WaveNet` of the preset's layout. Slimmable by channels; exported as a
format-0.5.x ``.nam`` WaveNet (without knobs).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from models.errors import ConfigError
from models.nets.registry import Architecture, register
from models.nets.slimmable import slim_wavenet
from models.nets.wavenet import (
    PRESETS,
    WaveNet,
    WaveNetConfig,
    WaveNetPresetConfig,
    slimmed_config,
    width_channels,
)
from models.nets.wavenet import macs_per_sample as wavenet_macs_per_sample


def layout(config: WaveNetPresetConfig | WaveNetConfig) -> WaveNetConfig:
    """The layer arrays of a study's WaveNet config, or a layout as it is (a built WaveNet's config)."""
    return config if isinstance(config, WaveNetConfig) else config.layout()


def _flat(*tensors: torch.Tensor) -> list[float]:
    values: list[float] = []
    for t in tensors:
        values.extend(t.detach().to("cpu", torch.float32).reshape(-1).tolist())
    return values


def wavenet_nam_config(config: WaveNetConfig) -> dict[str, Any]:
    """The ``config`` block of a 0.5.x WaveNet ``.nam`` file."""
    return {
        "layers": [
            {
                "input_size": a.input_size,
                "condition_size": config.condition_size,
                "head_size": a.head_size,
                "channels": a.channels,
                "kernel_size": a.kernel_size,
                "dilations": list(a.dilations),
                "activation": a.activation,
                "gated": a.gated,
                "head_bias": a.head_bias,
            }
            for a in config.arrays
        ],
        "head": None,
        "head_scale": config.head_scale,
    }


def _activation_07(name: str) -> dict[str, Any]:
    # NAM 0.13 writes Hardtanh with its bounds (``_export_pytorch_activation_config``); ours are torch's defaults.
    return {"type": name, "min_val": -1.0, "max_val": 1.0} if name == "Hardtanh" else {"type": name}


_FILM_KEYS_07 = ("conv_pre_film", "conv_post_film", "input_mixin_pre_film", "input_mixin_post_film",
                 "activation_pre_film", "activation_post_film", "layer1x1_post_film", "head1x1_post_film")


def wavenet_nam_config_07(config: WaveNetConfig) -> dict[str, Any]:
    """The ``config`` block of a 0.7.x WaveNet ``.nam`` file, key for key as NAM 0.13 writes it
    (``nam.models.wavenet._layer_array.LayerArray.export_config``) for the same network.

    The 0.5.x network in 0.7.x words: each array's ``head`` is its head rechannel (1×1, ``head_size``
    out, ``head_bias``); per layer ``kernel_sizes``, ``activation`` ``{"type": …}`` and ``gating_mode``
    ``gated`` (secondary activation Sigmoid on the second half of the rows, as 0.5.x gates) or ``none``;
    ``bottleneck`` = ``channels`` (no bottleneck); ``layer1x1`` active (the residual 1×1), ``head1x1``
    inactive (the post-activation signal itself is summed into the head); one group everywhere; no FiLM;
    not slimmable (a slimmed width is a network of its own).
    """
    layers = []
    for a in config.arrays:
        n = len(a.dilations)
        layers.append({
            "input_size": a.input_size,
            "condition_size": config.condition_size,
            "head": {"out_channels": a.head_size, "kernel_size": 1, "bias": a.head_bias},
            "channels": a.channels,
            "kernel_sizes": [a.kernel_size] * n,
            "dilations": list(a.dilations),
            "activation": [_activation_07(a.activation) for _ in range(n)],
            "bottleneck": a.channels,
            "head1x1": {"active": False, "out_channels": 1, "groups": 1},
            "layer1x1": {"active": True, "groups": 1},
            "groups_input": 1,
            "groups_input_mixin": 1,
            **{key: {"active": False, "shift": True, "groups": 1} for key in _FILM_KEYS_07},
            "gating_mode": ["gated" if a.gated else "none"] * n,
            "secondary_activation": [{"type": "Sigmoid"} if a.gated else None for _ in range(n)],
            "slimmable": None,
        })
    return {"layers": layers, "head": None, "head_scale": config.head_scale}


def wavenet_weights(model: WaveNet) -> list[float]:
    """The flat weight list of a WaveNet in NAM's order (head scale last); formats 0.5.x and 0.7.x alike."""
    values: list[float] = []
    for array in model.arrays:
        values += _flat(array.rechannel.weight)
        for layer in array.layers:
            values += _flat(layer.conv.weight, layer.conv.bias, layer.input_mixer.weight,
                            layer.layer1x1.weight, layer.layer1x1.bias)
        values += _flat(array.head_rechannel.weight)
        if array.head_rechannel.bias is not None:
            values += _flat(array.head_rechannel.bias)
    return values + [float(model.config.head_scale)]


class WaveNetArchitecture(Architecture):
    """Accepts a study's :class:`WaveNetPresetConfig` or a built network's :class:`WaveNetConfig`
    (a ``.nam`` file's layout, which no preset may describe) wherever a config is asked for."""

    name: ClassVar[str] = "wavenet"
    config_class: ClassVar[type] = WaveNetPresetConfig
    student_keys: ClassVar[tuple[str, ...]] = ("preset", "width")
    legacy_keys: ClassVar[dict[str, Any]] = {"layers": [32, 8], "conditioning": "film"}
    slimmable: ClassVar[bool] = True
    size_names_model: ClassVar[bool] = False  # presets share channel counts
    streaming_engine: ClassVar[str] = "numpy"

    def student(self, keys: dict[str, Any], conditioning: str, where: str) -> WaveNetPresetConfig:
        if keys.get("layers"):
            raise ConfigError(f"student: a wavenet is sized by preset and width, not layers (found {list(keys['layers'])})")
        keys = {k: v for k, v in keys.items() if k != "layers"}  # written empty in older study.yaml files
        return super().student(keys, conditioning, where)

    def student_config(self, keys: dict[str, Any], conditioning: str, where: str) -> WaveNetPresetConfig:
        # The study's knob conditioning does not apply: knob values enter through the input mixer.
        if keys.get("preset") is None:
            raise ConfigError(f"{where}: model.preset: a wavenet needs one of {sorted(PRESETS)}, found None")
        return super().student_config(keys, conditioning, where)

    def build(self, config: WaveNetPresetConfig | WaveNetConfig) -> WaveNet:
        return WaveNet(layout(config))

    def label(self, config: WaveNetPresetConfig | WaveNetConfig) -> str:
        return layout(config).label

    def size_label(self, config: WaveNetPresetConfig | WaveNetConfig) -> str:
        return "-".join(str(a.channels) for a in layout(config).arrays)

    def macs_per_sample(self, config: WaveNetPresetConfig | WaveNetConfig) -> int:
        return wavenet_macs_per_sample(layout(config))

    def receptive_field(self, config: WaveNetPresetConfig | WaveNetConfig) -> int:
        return layout(config).receptive_field

    def slimmable_by_design(self, config: WaveNetPresetConfig | WaveNetConfig) -> bool:
        return config.preset == "slimmable"

    def allowed_widths(self, config: WaveNetPresetConfig | WaveNetConfig) -> tuple[float, ...]:
        widest = max(a.channels for a in layout(config).arrays)
        return tuple(k / widest for k in range(1, widest + 1))

    def slimmed_config(self, config: WaveNetPresetConfig, width: float) -> WaveNetPresetConfig:
        """The preset at ``config.width · width``; ConfigError when no width of the preset gives the
        channels that cutting at ``width`` keeps."""
        candidate = WaveNetPresetConfig(preset=config.preset, width=config.width * width, n_knobs=config.n_knobs)
        if candidate.layout() != slimmed_config(config.layout(), width):
            channels = [width_channels(a.channels, width) for a in config.layout().arrays]
            raise ConfigError(f"width: cutting {config.label} gives channels {channels}, which no width of "
                              f"preset {config.preset!r} describes; pick one of the allowed widths")
        return candidate

    def slim(self, model: nn.Module, width: float) -> nn.Module:
        return slim_wavenet(model, width)

    def forward_at_width(self, model: nn.Module, x: torch.Tensor, knobs: torch.Tensor | None, state: Any,
                         return_features: bool, width: float) -> Any:
        return model(x, knobs, state, return_features, width=width)

    def nam_document(self, model: nn.Module, sample_rate: float, width: float | None) -> tuple[str, dict, list, nn.Module]:
        if model.config.n_knobs:
            raise ConfigError(f"cannot export {model.config.label} as .nam: it takes {model.config.n_knobs} knob "
                              f"value(s); NAM's 0.5.x WaveNet is conditioned on the audio only")
        if width is not None and width != 1.0:
            model = slim_wavenet(model, width)
        return "WaveNet", wavenet_nam_config(model.config), wavenet_weights(model), model


WAVENET = register(WaveNetArchitecture())
