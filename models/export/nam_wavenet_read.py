"""Reading a NAM WaveNet's ``config`` and ``weights`` (format 0.5.x–0.7.x) into a :class:`NamWaveNet`,
as NeuralAmpModelerCore's ``NAM/wavenet/model.cpp`` and ``slimmable.cpp`` read them.

Every key the engine reads is read here with the engine's defaults (``bottleneck`` = ``channels``,
``layer1x1`` active, no ``head1x1``, FiLM off, gating from ``gating_mode`` or the older ``gated``
with a Sigmoid secondary activation, the head from ``head`` or the older ``head_size``/``head_bias``,
``kernel_sizes`` or one ``kernel_size``); a key the engine does not read, or a value it refuses or
this reader cannot reproduce, is a :class:`CheckpointError` naming the file, the key, the value
and the format version. A slimmable WaveNet (``slimmable: {method: slice_channels_uniform}`` on a
layer array) is cut to the channels a slim value picks exactly as the engine's
``SetSlimmableSize`` cuts it: per array ``allowed_channels[min(floor(slim·n), n − 1)]``, the
weights being the leading rows and columns of every weight block in file order.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from models.errors import CheckpointError, ConfigError
from models.nets.nam_activations import ACTIVATION_PARAMETERS, ACTIVATIONS, ALIASES, NamActivation
from models.nets.nam_wavenet import (
    FILM_POSITIONS,
    GATING_MODES,
    FiLMConfig,
    NamHeadConfig,
    NamLayerArrayConfig,
    NamLayerConfig,
    NamWaveNet,
    NamWaveNetConfig,
)

log = logging.getLogger(__name__)

SLIMMABLE_METHOD = "slice_channels_uniform"

_ARRAY_KEYS = frozenset({
    "input_size", "condition_size", "channels", "bottleneck", "head", "head_size", "head_bias", "dilations",
    "kernel_size", "kernel_sizes", "activation", "gating_mode", "secondary_activation", "gated", "groups_input",
    "groups_input_mixin", "layer1x1", "head1x1", "slimmable", *FILM_POSITIONS,
})
_CONFIG_KEYS = frozenset({"layers", "head", "head_scale", "in_channels", "condition_dsp"})


@dataclass(frozen=True)
class Where:
    """Where a value sits: the file, the key path inside it and the format version of its document."""

    file: Path
    version: str
    key: str = ""

    def at(self, key: str | int) -> Where:
        if isinstance(key, int):
            return replace(self, key=f"{self.key}[{key}]")
        return replace(self, key=f"{self.key}.{key}" if self.key else key)

    def error(self, message: str) -> CheckpointError:
        return CheckpointError(f"{self.file}: {self.key}: {message}" if self.key else f"{self.file}: {message}")

    def unsupported(self, value: Any, why: str = "") -> CheckpointError:
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        return self.error(f"{shown} is not supported (format {self.version}){': ' + why if why else ''}")


def require(where: Where, mapping: dict[str, Any], key: str) -> Any:
    if key not in mapping:
        raise where.error(f"missing key {key!r}")
    return mapping[key]


def check_keys(where: Where, mapping: dict[str, Any], known: frozenset[str] | set[str]) -> None:
    for key in mapping:
        if key not in known:
            raise where.at(key).unsupported(mapping[key], "not a key NAM's engine reads here")


def as_object(where: Where, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise where.error(f"expected an object, found {value!r:.60}")
    return value


def as_int(where: Where, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise where.error(f"expected an integer >= {minimum}, found {value!r:.60}")
    return value


def as_bool(where: Where, value: Any) -> bool:
    if not isinstance(value, bool):
        raise where.error(f"expected true or false, found {value!r:.60}")
    return value


def as_number(where: Where, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise where.error(f"expected a number, found {value!r:.60}")
    return float(value)


def as_list(where: Where, value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise where.error(f"expected a list, found {value!r:.60}")
    return value


def parse_activation(where: Where, value: Any) -> NamActivation:
    """An activation name or ``{"type": ..., parameters}`` as NAM's ``ActivationConfig::from_json`` reads it."""
    if isinstance(value, str):
        name = ALIASES.get(value, value)
        if name not in ACTIVATIONS:
            raise where.unsupported(value, f"NAM's activations are {sorted(ACTIVATIONS)}")
        return NamActivation(name)
    if not isinstance(value, dict):
        raise where.unsupported(value, "expected an activation name or object")
    type_where = where.at("type")
    raw = require(where, value, "type")
    if not isinstance(raw, str) or ALIASES.get(raw, raw) not in ACTIVATIONS:
        raise type_where.unsupported(raw, f"NAM's activations are {sorted(ACTIVATIONS)}")
    name = ALIASES.get(raw, raw)
    parameters = ACTIVATION_PARAMETERS.get(name, ())
    check_keys(where, value, {"type", *parameters})
    kwargs: dict[str, Any] = {}
    if name == "PReLU":
        # NAM reads negative_slope first and ignores negative_slopes when both are given.
        if "negative_slope" in value:
            kwargs["negative_slope"] = as_number(where.at("negative_slope"), value["negative_slope"])
        elif "negative_slopes" in value:
            slopes = as_list(where.at("negative_slopes"), value["negative_slopes"])
            if not slopes:
                raise where.at("negative_slopes").error("expected a non-empty list of numbers")
            kwargs["negative_slopes"] = tuple(as_number(where.at("negative_slopes").at(i), s)
                                              for i, s in enumerate(slopes))
    else:
        for key in parameters:
            if key in value:
                kwargs[key] = as_number(where.at(key), value[key])
    return NamActivation(name, **kwargs)


def _parse_film(where: Where, layer: dict[str, Any], key: str) -> FiLMConfig | None:
    if key not in layer or layer[key] is False:
        return None
    film = as_object(where.at(key), layer[key])
    check_keys(where.at(key), film, {"active", "shift", "groups"})
    if not as_bool(where.at(key).at("active"), film.get("active", True)):
        return None
    return FiLMConfig(shift=as_bool(where.at(key).at("shift"), film.get("shift", True)),
                      groups=as_int(where.at(key).at("groups"), film.get("groups", 1)))


def _parse_gating(where: Where, layer: dict[str, Any], n: int) -> tuple[list[str], list[NamActivation | None]]:
    """Per layer the gating mode and secondary activation, with NAM's fallbacks (see the module docstring)."""
    sigmoid = NamActivation("Sigmoid")
    if "gating_mode" in layer:
        raw = layer["gating_mode"]
        modes_where = where.at("gating_mode")
        modes = as_list(modes_where, raw) if isinstance(raw, list) else [raw] * n
        if len(modes) != n:
            raise modes_where.error(f"expected {n} entries (one per dilation), found {len(modes)}")
        for i, mode in enumerate(modes):
            if mode not in GATING_MODES:
                raise (modes_where.at(i) if isinstance(raw, list) else modes_where).unsupported(
                    mode, f"NAM's gating modes are {list(GATING_MODES)}")
        secondary: list[NamActivation | None] = []
        given = layer.get("secondary_activation")
        sec_where = where.at("secondary_activation")
        if isinstance(raw, list) and isinstance(given, list) and len(given) != n:
            raise sec_where.error(f"expected {n} entries (one per dilation), found {len(given)}")
        for i, mode in enumerate(modes):
            if mode == "none":
                secondary.append(None)
            elif "secondary_activation" not in layer:
                secondary.append(sigmoid)
            elif isinstance(raw, list) and isinstance(given, list):
                secondary.append(parse_activation(sec_where.at(i), given[i]))
            else:
                secondary.append(parse_activation(sec_where, given))
        return modes, secondary
    if "gated" in layer and as_bool(where.at("gated"), layer["gated"]):
        return ["gated"] * n, [sigmoid] * n
    return ["none"] * n, [None] * n


def _parse_slimmable(where: Where, layer: dict[str, Any], channels: int) -> tuple[int, ...] | None | str:
    """``allowed_channels`` of a slimmable array, None for none, ``"unnamed"`` for a method-less object."""
    raw = layer.get("slimmable")
    if raw is None:
        return None
    slim_where = where.at("slimmable")
    slim = as_object(slim_where, raw)
    check_keys(slim_where, slim, {"method", "kwargs"})
    method = slim.get("method", "")
    if method == "":
        return "unnamed"
    if method != SLIMMABLE_METHOD:
        raise slim_where.at("method").unsupported(method, f"NAM slims by {SLIMMABLE_METHOD!r} only")
    kwargs = as_object(slim_where.at("kwargs"), slim.get("kwargs", {}))
    check_keys(slim_where.at("kwargs"), kwargs, {"allowed_channels"})
    if "allowed_channels" not in kwargs:
        return tuple(range(1, channels + 1))
    allowed = as_list(slim_where.at("kwargs").at("allowed_channels"), kwargs["allowed_channels"])
    return tuple(as_int(slim_where.at("kwargs").at("allowed_channels").at(i), c) for i, c in enumerate(allowed))


def _parse_array(where: Where, raw: Any) -> tuple[dict[str, Any], tuple[int, ...] | None | str]:
    layer = as_object(where, raw)
    check_keys(where, layer, _ARRAY_KEYS)
    channels = as_int(where.at("channels"), require(where, layer, "channels"))
    dilations_raw = as_list(where.at("dilations"), require(where, layer, "dilations"))
    dilations = [as_int(where.at("dilations").at(i), d) for i, d in enumerate(dilations_raw)]
    n = len(dilations)
    if not n:
        raise where.at("dilations").error("expected at least one dilation")
    if "kernel_size" in layer and "kernel_sizes" in layer:
        raise where.error("only one of kernel_size and kernel_sizes may be given")
    if "kernel_sizes" in layer:
        ks = as_list(where.at("kernel_sizes"), layer["kernel_sizes"])
        if len(ks) != n:
            raise where.at("kernel_sizes").error(f"expected {n} entries (one per dilation), found {len(ks)}")
        kernel_sizes = [as_int(where.at("kernel_sizes").at(i), k) for i, k in enumerate(ks)]
    elif "kernel_size" in layer:
        kernel_sizes = [as_int(where.at("kernel_size"), layer["kernel_size"])] * n
    else:
        raise where.error("missing key 'kernel_size' (or 'kernel_sizes')")
    raw_act = require(where, layer, "activation")
    if isinstance(raw_act, list):
        if len(raw_act) != n:
            raise where.at("activation").error(f"expected {n} entries (one per dilation), found {len(raw_act)}")
        activations = [parse_activation(where.at("activation").at(i), a) for i, a in enumerate(raw_act)]
    else:
        activations = [parse_activation(where.at("activation"), raw_act)] * n
    modes, secondary = _parse_gating(where, layer, n)
    fields: dict[str, Any] = {
        "input_size": as_int(where.at("input_size"), require(where, layer, "input_size")),
        "condition_size": as_int(where.at("condition_size"), require(where, layer, "condition_size")),
        "channels": channels,
        "bottleneck": as_int(where.at("bottleneck"), layer.get("bottleneck", channels)),
        "groups_input": as_int(where.at("groups_input"), layer.get("groups_input", 1)),
        "groups_input_mixin": as_int(where.at("groups_input_mixin"), layer.get("groups_input_mixin", 1)),
        "layers": tuple(NamLayerConfig(kernel_size=k, dilation=d, activation=a, gating_mode=m, secondary_activation=s)
                        for k, d, a, m, s in zip(kernel_sizes, dilations, activations, modes, secondary, strict=True)),
    }
    if layer.get("head") is not None:
        head_where = where.at("head")
        head = as_object(head_where, layer["head"])
        check_keys(head_where, head, {"out_channels", "kernel_size", "bias", "head_dilation"})
        fields["head_size"] = as_int(head_where.at("out_channels"), require(head_where, head, "out_channels"))
        fields["head_kernel_size"] = as_int(head_where.at("kernel_size"), require(head_where, head, "kernel_size"))
        fields["head_bias"] = as_bool(head_where.at("bias"), require(head_where, head, "bias"))
        fields["head_dilation"] = as_int(head_where.at("head_dilation"), head.get("head_dilation", 1))
    elif "head_size" in layer:
        fields["head_size"] = as_int(where.at("head_size"), layer["head_size"])
        fields["head_bias"] = as_bool(where.at("head_bias"), require(where, layer, "head_bias"))
    else:
        raise where.error("missing key 'head' (or the older 'head_size' and 'head_bias')")
    if "layer1x1" in layer:
        l1 = as_object(where.at("layer1x1"), layer["layer1x1"])
        check_keys(where.at("layer1x1"), l1, {"active", "groups"})
        fields["layer1x1"] = as_bool(where.at("layer1x1").at("active"), require(where.at("layer1x1"), l1, "active"))
        fields["layer1x1_groups"] = as_int(where.at("layer1x1").at("groups"), require(where.at("layer1x1"), l1, "groups"))
    if "head1x1" in layer:
        h1_where = where.at("head1x1")
        h1 = as_object(h1_where, layer["head1x1"])
        check_keys(h1_where, h1, {"active", "out_channels", "groups"})
        fields["head1x1"] = as_bool(h1_where.at("active"), require(h1_where, h1, "active"))
        fields["head1x1_out_channels"] = as_int(h1_where.at("out_channels"), require(h1_where, h1, "out_channels"))
        fields["head1x1_groups"] = as_int(h1_where.at("groups"), require(h1_where, h1, "groups"))
    for key in FILM_POSITIONS:
        fields[key] = _parse_film(where, layer, key)
    return fields, _parse_slimmable(where, layer, channels)


def _parse_head(where: Where, raw: Any, in_channels: int) -> NamHeadConfig:
    head = as_object(where, raw)
    check_keys(where, head, {"in_channels", "channels", "out_channels", "kernel_sizes", "activation"})
    if head.get("in_channels") is not None and head["in_channels"] != in_channels:
        raise where.at("in_channels").error(f"expected the last array's head size {in_channels}, found "
                                            f"{head['in_channels']!r}")
    kernel_sizes = as_list(where.at("kernel_sizes"), require(where, head, "kernel_sizes"))
    try:
        return NamHeadConfig(
            in_channels=in_channels, channels=as_int(where.at("channels"), require(where, head, "channels")),
            out_channels=as_int(where.at("out_channels"), require(where, head, "out_channels")),
            kernel_sizes=tuple(as_int(where.at("kernel_sizes").at(i), k) for i, k in enumerate(kernel_sizes)),
            activation=parse_activation(where.at("activation"), require(where, head, "activation")))
    except ConfigError as exc:
        raise where.error(str(exc)) from None


@dataclass(frozen=True)
class ParsedWaveNet:
    """A WaveNet config as read: the network config (head scale still the config's), whether it is
    slimmable, and the ``condition_dsp`` document if any."""

    config: NamWaveNetConfig
    condition_dsp: dict[str, Any] | None


def parse_wavenet(where: Where, raw: Any) -> ParsedWaveNet:
    """``config`` of a WaveNet document → :class:`ParsedWaveNet` (CheckpointError naming the key)."""
    config = as_object(where, raw)
    check_keys(where, config, _CONFIG_KEYS)
    layers = as_list(where.at("layers"), require(where, config, "layers"))
    if not layers:
        raise where.at("layers").error("expected at least one layer array")
    arrays, slimming = [], []
    for i, layer in enumerate(layers):
        fields, allowed = _parse_array(where.at("layers").at(i), layer)
        arrays.append(fields)
        slimming.append(allowed)
    slimmable = any(isinstance(a, tuple) for a in slimming)
    for i, allowed in enumerate(slimming):
        if allowed == "unnamed":
            if slimmable:
                raise where.at("layers").at(i).at("slimmable").unsupported(
                    layers[i]["slimmable"], f"a slimmable array needs method {SLIMMABLE_METHOD!r}")
            slimming[i] = None
    head_scale = as_number(where.at("head_scale"), require(where, config, "head_scale"))
    in_channels = as_int(where.at("in_channels"), config.get("in_channels", 1))
    built = []
    for i, (fields, allowed) in enumerate(zip(arrays, slimming, strict=True)):
        try:
            built.append(NamLayerArrayConfig(**fields, allowed_channels=allowed if isinstance(allowed, tuple) else None))
        except ConfigError as exc:
            raise where.at("layers").at(i).error(str(exc)) from None
    head = None
    if config.get("head") is not None:
        head = _parse_head(where.at("head"), config["head"], built[-1].head_size)
    if slimmable and head is not None:
        raise where.at("head").unsupported(config["head"], "NAM's slimmable WaveNet has no post-stack head")
    try:
        net = NamWaveNetConfig(arrays=tuple(built), head_scale=head_scale, head=head, in_channels=in_channels)
    except ConfigError as exc:
        raise where.error(str(exc)) from None
    condition = config.get("condition_dsp")
    if condition is not None:
        condition = as_object(where.at("condition_dsp"), condition)
    return ParsedWaveNet(net, condition)


def build_wavenet(where: Where, config: NamWaveNetConfig, weights: torch.Tensor,
                  condition_dsp: NamWaveNet | None = None) -> NamWaveNet:
    """The network of ``config`` with NAM's flat ``weights`` (its parameters, then the head scale);
    ``where`` is the model document."""
    try:
        model = NamWaveNet(config, condition_dsp)
    except ConfigError as exc:
        raise where.at("config").error(str(exc)) from None
    params = model.nam_parameters()
    expected = sum(p.numel() for p in params) + 1
    if weights.numel() != expected:
        raise where.at("weights").error(f"expected {expected} weights for this WaveNet config, found {weights.numel()}")
    at = 0
    with torch.no_grad():
        for p in params:
            p.copy_(weights[at:at + p.numel()].reshape(p.shape))
            at += p.numel()
    # NAM's engine takes the head scale from the end of the weights, not from the config.
    model.config = replace(config, head_scale=float(weights[-1]))
    return model.eval()


def channels_for(config: NamWaveNetConfig, slim: float) -> tuple[int, ...]:
    """Per array the channels NAM's ``SetSlimmableSize(slim)`` picks."""
    result = []
    for array in config.arrays:
        allowed = array.allowed_channels
        if allowed is None:
            result.append(array.channels)
        else:
            result.append(allowed[min(math.floor(slim * len(allowed)), len(allowed) - 1)])
    return tuple(result)


def slim_breakpoints(config: NamWaveNetConfig) -> list[float]:
    """The slim values where the channels change (NAM's ``GetSlimmableSizeBreakpoints``)."""
    points = {i / len(a.allowed_channels) for a in config.arrays if a.allowed_channels
              for i in range(1, len(a.allowed_channels))}
    return sorted(points)


def _slim_bottleneck(array: NamLayerArrayConfig, channels: int) -> int:
    return max(1, array.bottleneck * channels // array.channels) if array.layer1x1 else channels


def slimmed(where: Where, config: NamWaveNetConfig, weights: torch.Tensor,
            channels: tuple[int, ...]) -> tuple[NamWaveNetConfig, torch.Tensor]:
    """``config`` and its flat ``weights`` cut to ``channels`` per array, as NAM's slimmable WaveNet cuts them."""
    if all(c == a.channels for c, a in zip(channels, config.arrays, strict=True)):
        return config, weights
    arrays = config.arrays
    for i, a in enumerate(arrays):
        at = where.at("layers").at(i)
        if a.head_kernel_size != 1:
            raise at.at("head").at("kernel_size").unsupported(a.head_kernel_size, "NAM slims a head kernel of 1 only")
        for key, groups, active in (("groups_input", a.groups_input, True),
                                    ("groups_input_mixin", a.groups_input_mixin, True),
                                    ("layer1x1.groups", a.layer1x1_groups, a.layer1x1),
                                    ("head1x1.groups", a.head1x1_groups, a.head1x1)):
            if active and groups != 1:
                raise at.at(key).unsupported(groups, "NAM slims ungrouped convolutions only")
        for key in FILM_POSITIONS:
            film = getattr(a, key)
            if film is not None and film.groups != 1:
                raise at.at(key).at("groups").unsupported(film.groups, "NAM slims ungrouped FiLM only")
    source = _Cursor(weights)
    out: list[torch.Tensor] = []
    new_arrays = []
    for i, a in enumerate(arrays):
        ch = channels[i]
        bn = _slim_bottleneck(a, ch)
        input_size = a.input_size if i == 0 else channels[i - 1]
        head_size = channels[i + 1] if i + 1 < len(arrays) else a.head_size
        head_in = a.head_input_size
        slim_head_in = a.head1x1_out_channels if a.head1x1 else bn
        cond = a.condition_size
        out += source.block(a.input_size, a.channels, input_size, ch)
        for layer in a.layers:
            g = layer.z_channels_factor
            out += source.block(a.channels, g * a.bottleneck, ch, g * bn, layer.kernel_size, bias=True)
            out += source.block(cond, g * a.bottleneck, cond, g * bn)
            if a.layer1x1:
                out += source.block(a.bottleneck, a.channels, bn, ch, bias=True)
            if a.head1x1:
                out += source.block(a.bottleneck, a.head1x1_out_channels, bn, a.head1x1_out_channels, bias=True)
            full_dims = {"conv_pre_film": a.channels, "conv_post_film": g * a.bottleneck,
                         "input_mixin_pre_film": cond, "input_mixin_post_film": g * a.bottleneck,
                         "activation_pre_film": g * a.bottleneck, "activation_post_film": a.bottleneck,
                         "layer1x1_post_film": a.channels, "head1x1_post_film": a.head1x1_out_channels}
            slim_dims = {**full_dims, "conv_pre_film": ch, "conv_post_film": g * bn, "input_mixin_post_film": g * bn,
                         "activation_pre_film": g * bn, "activation_post_film": bn, "layer1x1_post_film": ch}
            for key in FILM_POSITIONS:
                film = getattr(a, key)
                if film is not None:
                    k = 2 if film.shift else 1
                    out += source.block(cond, k * full_dims[key], cond, k * slim_dims[key], bias=True)
        out += source.block(head_in, a.head_size, slim_head_in, head_size, bias=a.head_bias)
        try:
            new_arrays.append(replace(a, input_size=input_size, channels=ch, bottleneck=bn, head_size=head_size,
                                      allowed_channels=None))
        except ConfigError as exc:
            raise where.at("layers").at(i).error(f"slimmed to {ch} channels: {exc}") from None
    out += source.block(1, 1, 1, 1)  # the head scale
    try:
        new_config = replace(config, arrays=tuple(new_arrays))
    except ConfigError as exc:
        raise where.error(f"slimmed to channels {list(channels)}: {exc}") from None
    return new_config, torch.cat(out)


class _Cursor:
    """Walks a flat weight list block by block, keeping each block's leading rows and columns."""

    def __init__(self, weights: torch.Tensor):
        self._weights = weights
        self._at = 0

    def _take(self, n: int) -> torch.Tensor:
        chunk = self._weights[self._at:self._at + n]
        self._at += n
        return chunk

    def block(self, full_in: int, full_out: int, slim_in: int, slim_out: int, kernel_size: int = 1,
              bias: bool = False) -> list[torch.Tensor]:
        """A convolution (out, in, kernel) and its optional bias, cut to (slim_out, slim_in, kernel)."""
        w = self._take(full_out * full_in * kernel_size).reshape(full_out, full_in, kernel_size)
        kept = [w[:slim_out, :slim_in].reshape(-1)]
        if bias:
            kept.append(self._take(full_out)[:slim_out])
        return kept


def parse_version(where: Where, text: Any) -> tuple[int, int, int]:
    """A ``major.minor.patch`` version NAM's engine reads (0.5.0 up to 0.7.x), else CheckpointError."""
    if not isinstance(text, str) or not re.fullmatch(r"\d+\.\d+\.\d+", text):
        raise where.at("version").error(f"expected a version major.minor.patch, found {text!r:.60}")
    major, minor, patch = (int(p) for p in text.split("."))
    if (major, minor, patch) < (0, 5, 0) or major > 0 or minor > 7:
        raise where.at("version").error(f"{text!r} is not supported: NAM's engine reads formats 0.5.0 to 0.7.x")
    if (major, minor, patch) > (0, 7, 0):
        log.warning("%s: format %s is newer than 0.7.0; NAM's engine reads it with partial support", where.file, text)
    return major, minor, patch
