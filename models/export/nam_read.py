"""Reading Neural Amp Modeler's ``.nam`` files into networks Earshot renders, trains from and measures.

Every file NeuralAmpModelerCore (the engine inside NAM's plug-in) reads is read here, formats
0.5.0 to 0.7.x, and renders as the engine renders it:

- ``WaveNet``: a file in the 0.5.x layout that the zoo's :class:`models.nets.wavenet.WaveNet`
  expresses (the trainable network of :mod:`models.export.nam_format`) loads into it; every other
  WaveNet (format 0.6/0.7: per-layer kernel sizes and activations, bottleneck, gating and blending,
  head1x1/layer1x1, grouped convolutions, FiLM, ``condition_dsp``, post-stack head, slimmable
  arrays) loads into :class:`models.nets.nam_wavenet.NamWaveNet` (see
  :mod:`models.export.nam_wavenet_read`);
- ``LSTM``: into :class:`models.nets.nam_lstm.NamLSTM`, its start state advanced over the engine's
  pre-warm (half a second of silence from the file's state);
- ``SlimmableContainer``: a list of ``{max_value, model}`` submodels; the slim value ``s`` picks the
  first submodel with ``s < max_value`` (the last when none), as the engine's ``SetSlimmableSize``;
  without a slim value the engine plays the last (largest) one.

A slimmable WaveNet takes the same slim value (per array ``allowed_channels[min(floor(s·n), n − 1)]``
channels); without one it plays at full width. ``state=None`` of every network read here is the
state the engine reaches by its pre-warm. Anything the engine reads that this reader does not
reproduce, and any key the engine does not read, is a :class:`CheckpointError` naming the file,
the key, the value and the format version.

See :mod:`models.export.nam_format` for the 0.5.x layouts and weight orders the zoo writes.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models.errors import CheckpointError, ConfigError
from models.export.nam_wavenet_read import (
    Where,
    as_int,
    as_number,
    as_object,
    build_wavenet,
    channels_for,
    check_keys,
    parse_version,
    parse_wavenet,
    require,
    slim_breakpoints,
    slimmed,
)
from models.nets import architectures
from models.nets.nam_lstm import NamLSTM, NamLSTMConfig
from models.nets.nam_wavenet import NamWaveNet, NamWaveNetConfig
from models.nets.wavenet import ACTIVATIONS, LayerArrayConfig, WaveNet, WaveNetConfig

log = logging.getLogger(__name__)

DEFAULT_SAMPLE_RATE = 48000.0
"""The rate NAM assumes for a file without ``sample_rate`` (format 0.5.0 and older)."""

LSTM_PREWARM_SECONDS = 0.5
"""Silence NAM's engine runs through an LSTM on reset (``LSTM::GetPrewarmSamples``)."""

_LEGACY_CONFIG_KEYS = frozenset({"layers", "head", "head_scale"})
_LEGACY_ARRAY_KEYS = frozenset({"input_size", "condition_size", "head_size", "channels", "kernel_size", "dilations",
                                "activation", "gated", "head_bias"})


def _weights(where: Where, document: dict[str, Any]) -> torch.Tensor:
    raw = require(where, document, "weights")
    if not isinstance(raw, list):
        raise where.at("weights").error("expected a flat list of numbers")
    try:
        return torch.tensor(raw, dtype=torch.float32).reshape(-1)
    except (TypeError, ValueError):
        raise where.at("weights").error("expected a flat list of numbers") from None


def _fits_zoo_wavenet(version: tuple[int, int, int], config: Any) -> bool:
    """Whether a WaveNet config is the 0.5.x layout the zoo's WaveNet expresses exactly."""
    if version[:2] != (0, 5) or not isinstance(config, dict) or set(config) - _LEGACY_CONFIG_KEYS:
        return False
    if config.get("head") is not None or not isinstance(config.get("layers"), list) or not config["layers"]:
        return False
    for layer in config["layers"]:
        if not isinstance(layer, dict) or set(layer) - _LEGACY_ARRAY_KEYS:
            return False
        if layer.get("condition_size") != 1 or layer.get("activation") not in ACTIVATIONS:
            return False
    return True


def _load_zoo_wavenet(where: Where, config: dict[str, Any], weights: torch.Tensor) -> WaveNet:
    arrays = []
    for i, lc in enumerate(require(where, config, "layers")):
        at = where.at("layers").at(i)
        try:
            arrays.append(LayerArrayConfig(
                input_size=require(at, lc, "input_size"), channels=require(at, lc, "channels"),
                head_size=require(at, lc, "head_size"), dilations=tuple(require(at, lc, "dilations")),
                kernel_size=require(at, lc, "kernel_size"), activation=lc["activation"],
                gated=bool(require(at, lc, "gated")), head_bias=bool(require(at, lc, "head_bias"))))
        except (ConfigError, TypeError) as exc:
            raise at.error(str(exc)) from None
    try:
        # The config's head_scale is the exact value; the float32 copy ends the weights.
        head_scale = float(as_number(where.at("head_scale"), require(where, config, "head_scale")))
        net_config = WaveNetConfig(arrays=tuple(arrays), head_scale=head_scale)
    except ConfigError as exc:
        raise where.error(str(exc)) from None
    model = WaveNet(net_config)
    expected = architectures.parameter_count(model) + 1
    if weights.numel() != expected:
        raise where.at("weights").error(f"expected {expected} weights for this WaveNet config, "
                                        f"found {weights.numel()}")
    at = 0
    with torch.no_grad():
        for array in model.arrays:
            for p in [array.rechannel.weight] + [
                t for layer in array.layers
                for t in (layer.conv.weight, layer.conv.bias, layer.input_mixer.weight,
                          layer.layer1x1.weight, layer.layer1x1.bias)
            ] + [array.head_rechannel.weight] + (
                [] if array.head_rechannel.bias is None else [array.head_rechannel.bias]
            ):
                p.copy_(weights[at:at + p.numel()].reshape(p.shape))
                at += p.numel()
    return model.eval()


def _load_lstm(where: Where, config: Any, weights: torch.Tensor, sample_rate: float | None) -> NamLSTM:
    config = as_object(where, config)
    check_keys(where, config, {"num_layers", "input_size", "hidden_size", "in_channels", "out_channels"})
    for key in ("in_channels", "out_channels"):
        if key in config and as_int(where.at(key), config[key]) != 1:
            raise where.at(key).unsupported(config[key], "Earshot runs mono LSTMs only")
    input_size = as_int(where.at("input_size"), require(where, config, "input_size"))
    if input_size != 1:
        raise where.at("input_size").unsupported(input_size, "Earshot runs mono LSTMs only")
    net_config = NamLSTMConfig(hidden_size=as_int(where.at("hidden_size"), require(where, config, "hidden_size")),
                               num_layers=as_int(where.at("num_layers"), require(where, config, "num_layers")),
                               input_size=input_size)
    model = NamLSTM(net_config)
    h_size, n_layers = net_config.hidden_size, net_config.num_layers
    expected = sum(4 * h_size * ((input_size if i == 0 else h_size) + h_size) + 4 * h_size + 2 * h_size
                   for i in range(n_layers)) + h_size + 1
    if weights.numel() != expected:
        raise where.at("weights").error(f"expected {expected} weights for this LSTM config, found {weights.numel()}")
    at = 0

    def take(*shape: int) -> torch.Tensor:
        nonlocal at
        n = 1
        for s in shape:
            n *= s
        value = weights[at:at + n].reshape(shape)
        at += n
        return value

    lstm = model.lstm
    with torch.no_grad():
        for i in range(n_layers):
            inputs = input_size if i == 0 else h_size
            w, b = take(4 * h_size, inputs + h_size), take(4 * h_size)
            getattr(lstm, f"weight_ih_l{i}").copy_(w[:, :inputs])
            getattr(lstm, f"weight_hh_l{i}").copy_(w[:, inputs:])
            getattr(lstm, f"bias_ih_l{i}").copy_(b)
            getattr(lstm, f"bias_hh_l{i}").zero_()
            model.initial_hidden[i].copy_(take(h_size))
            model.initial_cell[i].copy_(take(h_size))
        model.head.weight.copy_(take(1, h_size))
        model.head.bias.copy_(take(1))
        # NAM's engine starts from the file's state advanced over its pre-warm: LSTM_PREWARM_SECONDS
        # of silence at the file's rate (one sample when the file has none).
        steps = max(1, int(LSTM_PREWARM_SECONDS * sample_rate)) if sample_rate else 1
        state = (model.initial_hidden[:, None].contiguous(), model.initial_cell[:, None].contiguous())
        _, (h, c) = lstm(torch.zeros(1, steps, 1), state)
        model.initial_hidden.copy_(h[:, 0])
        model.initial_cell.copy_(c[:, 0])
    return model.eval()


def _check_slim(where: Where, slim: float | None) -> None:
    if slim is not None and (isinstance(slim, bool) or not isinstance(slim, (int, float)) or not 0.0 <= slim <= 1.0):
        raise where.error(f"slim: expected a number from 0 to 1, found {slim!r}")


def _read_wavenet(where: Where, document: dict[str, Any], version: tuple[int, int, int], sample_rate: float | None,
                  slim: float | None, general: bool) -> tuple[nn.Module, dict[str, Any]]:
    config = require(where, document, "config")
    weights = _weights(where, document)
    if not general and _fits_zoo_wavenet(version, config):
        if slim is not None:
            raise where.error(f"slim {slim}: this WaveNet has no slimmable layer arrays")
        return _load_zoo_wavenet(where.at("config"), config, weights), {}
    parsed = parse_wavenet(where.at("config"), config)
    condition = None
    if parsed.condition_dsp is not None:
        condition = _read_condition(where.at("config").at("condition_dsp"), parsed.condition_dsp, sample_rate)
    net_config: NamWaveNetConfig = parsed.config
    if not general and (net_config.in_channels, net_config.out_channels) != (1, 1):
        raise where.at("config").error(
            f"a WaveNet of {net_config.in_channels} input and {net_config.out_channels} output channels is not "
            f"supported (format {where.version}): Earshot renders mono networks")
    extra: dict[str, Any] = {}
    if net_config.slimmable:
        # Checked at full width first: slimming walks the weights in the full network's order.
        full = build_wavenet(where, net_config, weights, condition)
        extra["levels"] = _wavenet_levels(where, net_config, weights, condition)
        if slim is None:
            return full, extra
        cut_config, cut_weights = slimmed(where.at("config"), net_config, weights, channels_for(net_config, slim))
        return build_wavenet(where, cut_config, cut_weights, condition), extra
    if slim is not None:
        raise where.error(f"slim {slim}: this WaveNet has no slimmable layer arrays")
    return build_wavenet(where, net_config, weights, condition), extra


def _wavenet_levels(where: Where, config: NamWaveNetConfig, weights: torch.Tensor,
                    condition: NamWaveNet | None) -> list[dict[str, Any]]:
    """The widths a slim value picks: level i for slim values below its ``max_value`` (the last: up to 1)."""
    edges = slim_breakpoints(config) + [1.0]
    levels, low = [], 0.0
    condition_parameters = 0 if condition is None else architectures.parameter_count(condition)
    for high in edges:
        channels = channels_for(config, low)
        try:
            _, cut_weights = slimmed(where.at("config"), config, weights, channels)
            parameters: int | None = cut_weights.numel() - 1 + condition_parameters
        except CheckpointError:
            parameters = None  # NAM's engine cannot cut this width either; it fails only when picked
        levels.append({"max_value": high, "channels": list(channels), "parameters": parameters})
        low = high
    return levels


def _read_condition(where: Where, document: dict[str, Any], sample_rate: float | None) -> NamWaveNet:
    model, info = _read_document(where, document, None, general=True)
    where = Where(where.file, info["version"], where.key)
    if not isinstance(model, NamWaveNet):
        raise where.at("architecture").unsupported(info["architecture"], "a condition_dsp must be a WaveNet here")
    # The engine requires the same expected rate, an unknown one (-1) included.
    if info["file_sample_rate"] != sample_rate:
        raise where.at("sample_rate").error(f"expected the WaveNet's sample rate {sample_rate}, found "
                                            f"{info['file_sample_rate']}")
    return model


def _read_container(where: Where, document: dict[str, Any], sample_rate: float | None,
                    slim: float | None) -> tuple[nn.Module, dict[str, Any]]:
    config = as_object(where.at("config"), require(where, document, "config"))
    check_keys(where.at("config"), config, {"submodels"})
    entries_where = where.at("config").at("submodels")
    entries = require(where.at("config"), config, "submodels")
    if not isinstance(entries, list) or not entries:
        raise entries_where.error("expected a non-empty list of {max_value, model}")
    models, levels, infos = [], [], []
    for i, raw in enumerate(entries):
        at = entries_where.at(i)
        entry = as_object(at, raw)
        check_keys(at, entry, {"max_value", "model"})
        max_value = as_number(at.at("max_value"), require(at, entry, "max_value"))
        if levels and max_value <= levels[-1]["max_value"]:
            raise at.at("max_value").error(f"expected max_values in ascending order, found {max_value} after "
                                           f"{levels[-1]['max_value']}")
        model, info = _read_document(at.at("model"), as_object(at.at("model"), require(at, entry, "model")), None)
        sub_rate = info["file_sample_rate"]
        if sub_rate is not None and sample_rate is not None and sub_rate != sample_rate:
            raise at.at("model").at("sample_rate").error(f"expected the container's rate {sample_rate}, found {sub_rate}")
        models.append(model)
        infos.append(info)
        levels.append({"max_value": max_value, "architecture": info["architecture"],
                       "parameters": architectures.parameter_count(model)})
    if levels[-1]["max_value"] < 1.0:
        raise entries_where.error(f"the last submodel's max_value must be >= 1, found {levels[-1]['max_value']}")
    index = len(models) - 1
    if slim is not None:
        index = next((i for i, level in enumerate(levels) if slim < level["max_value"]), len(models) - 1)
    chosen = infos[index]
    info = {"levels": levels, "submodel": index, "metadata": chosen["metadata"] or None}
    return models[index], info


def _read_document(where: Where, document: dict[str, Any], slim: float | None,
                   general: bool = False) -> tuple[nn.Module, dict[str, Any]]:
    """One model document (a file, a container's submodel or a condition network) → (model, info)."""
    version_text = require(where, document, "version")
    version = parse_version(where, version_text)
    where = Where(where.file, version_text, where.key)
    architecture = require(where, document, "architecture")
    rate = document.get("sample_rate")
    sample_rate = None if rate is None else as_number(where.at("sample_rate"), rate)
    _check_slim(where, slim)
    extra: dict[str, Any] = {}
    if architecture == "WaveNet":
        model, extra = _read_wavenet(where, document, version, sample_rate, slim, general)
    elif architecture == "LSTM":
        if slim is not None:
            raise where.error(f"slim {slim}: an LSTM has no slimmable levels")
        model = _load_lstm(where.at("config"), require(where, document, "config"), _weights(where, document),
                           sample_rate)
    elif architecture == "SlimmableContainer":
        _weights(where, document)  # the engine requires the key (an empty list)
        model, extra = _read_container(where, document, sample_rate, slim)
    else:
        raise where.at("architecture").unsupported(architecture, "Earshot reads WaveNet, LSTM and "
                                                   "SlimmableContainer files")
    metadata = document.get("metadata")
    info = {
        "version": version_text,
        "architecture": architecture,
        "file_sample_rate": sample_rate,
        "metadata": metadata if isinstance(metadata, dict) else {},
        "slim": None,
    }
    if extra.get("metadata"):
        info["metadata"] = extra.pop("metadata")
    extra.pop("metadata", None)
    info.update(extra)
    return model, info


def load_nam(path: str | Path, slim: float | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Read a ``.nam`` file into a network that renders as NAM's engine renders it.

    ``slim`` (0 to 1) is NAM's slimmable size: for a ``SlimmableContainer`` it picks the submodel,
    for a WaveNet with slimmable layer arrays the channels (see the module docstring); None plays
    what the engine plays by default (the last submodel, the full width). A slim value for a file
    without such levels is a CheckpointError.

    Returns ``(model, info)``: a :class:`WaveNet`, :class:`NamWaveNet` or :class:`NamLSTM`, and
    ``version``, ``architecture`` (the file's), ``sample_rate`` (48 kHz when the file has none, as
    NAM assumes), ``metadata`` (the chosen submodel's where it has its own: ``loudness``, ``gain``,
    ...), ``slim`` (the value used, or None), ``path``, and for a container or slimmable WaveNet
    ``levels``: per level ``max_value`` (the level plays for slim values below it and at or above
    the previous one's; the last also at 1) and ``parameters``, plus ``architecture`` (a container's
    submodel) or ``channels`` (per layer array); a container's info also has ``submodel``, the
    index played. CheckpointError for a missing or malformed file and anything unsupported.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: .nam file not found")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} line {exc.lineno}: not valid JSON ({exc.msg})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: cannot be read ({exc})") from None
    where = Where(path, "unknown")
    if not isinstance(document, dict):
        raise where.error("expected a JSON object with version, architecture, config and weights")
    for key in ("version", "architecture", "config", "weights"):
        require(where, document, key)
    model, info = _read_document(where, document, slim)
    file_rate = info.pop("file_sample_rate")
    info["sample_rate"] = float(file_rate or DEFAULT_SAMPLE_RATE)
    info["slim"] = None if slim is None else float(slim)
    info["path"] = str(path)
    log.debug("read %s: %s %s, slim %s", path, info["architecture"], info["version"], info["slim"])
    return model, info


def load_nam_at(path: str | Path, slim: float | None = None, width: float | None = None
                ) -> tuple[nn.Module, dict[str, Any]]:
    """:func:`load_nam` at a level, the one rule every tool (render, datasets, stimulus sets) uses.

    ``slim`` is NAM's slim value (0 to 1): a ``SlimmableContainer``'s submodel, or a slimmable 0.7
    WaveNet's channels, exactly as the plug-in's slim control. ``width`` is the fraction of
    channels kept: for a slimmable 0.7 WaveNet it is that same slim value; for a network the zoo
    trains (a 0.5.x WaveNet such as an exported slimmable WaveNet, a NAM LSTM) it cuts the first
    channels or units of every weight as ``export --width`` does; a container takes ``slim`` only.
    At most one of them. ``info["width"]`` records the cut (None without one).
    """
    if slim is not None and width is not None:
        raise CheckpointError(f"{path}: expected one of slim (NAM's slim value) or width (the fraction of "
                              f"channels kept), found both")
    model, info = load_nam(path, slim=slim)
    info["width"] = None
    if width is None:
        return model, info
    if info["architecture"] == "SlimmableContainer":
        raise CheckpointError(f"{path}: is a SlimmableContainer; its levels are chosen with slim, found width {width:g}")
    if info.get("levels"):
        model, info = load_nam(path, slim=width)
    elif isinstance(width, bool) or not 0.0 < float(width) <= 1.0:
        raise CheckpointError(f"{path}: width: expected a fraction in (0, 1], found {width!r}")
    elif architectures.find(getattr(getattr(model, "config", None), "arch", None)) is not None:
        from models.nets.slimmable import slim as cut

        try:
            model = cut(model, float(width)).eval()
        except ConfigError as exc:
            raise CheckpointError(f"{path}: width {width:g}: {exc}") from None
    else:
        raise CheckpointError(f"{path}: width {width:g}: this {info['architecture']} (format {info['version']}) "
                              f"has no slimmable layer arrays, and the zoo cannot cut it")
    info["width"] = float(width)
    return model, info
