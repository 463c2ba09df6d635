"""Reading Neural Amp Modeler's ``.nam`` files into networks Earshot renders, trains from and measures.

See :mod:`models.export.nam_format` for the layouts and weight orders.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models.errors import CheckpointError, ConfigError
from models.nets import architectures
from models.nets.nam_lstm import NamLSTM, NamLSTMConfig
from models.nets.wavenet import ACTIVATIONS, LayerArrayConfig, WaveNet, WaveNetConfig

log = logging.getLogger(__name__)

DEFAULT_SAMPLE_RATE = 48000.0
"""The rate NAM assumes for a file without ``sample_rate`` (format 0.5.0 and older)."""


def _require(mapping: Any, key: str, where: str) -> Any:
    if not isinstance(mapping, dict) or key not in mapping:
        raise CheckpointError(f"{where}: missing key {key!r}")
    return mapping[key]


def _version(text: Any, path: Path) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in str(text).split("."))
    except ValueError:
        raise CheckpointError(f"{path}: version {text!r} is not a dotted version number") from None


def _take(weights: torch.Tensor, at: int, shape: tuple[int, ...]) -> tuple[torch.Tensor, int]:
    n = 1
    for s in shape:
        n *= s
    return weights[at : at + n].reshape(shape), at + n


def _load_wavenet(config: dict[str, Any], weights: torch.Tensor, path: Path) -> WaveNet:
    if config.get("head") is not None:
        raise CheckpointError(f"{path}: WaveNet with a post-head (config.head) is not supported")
    layers = _require(config, "layers", f"{path}: config")
    arrays = []
    for i, lc in enumerate(layers):
        where = f"{path}: config.layers[{i}]"
        if _require(lc, "condition_size", where) != 1:
            raise CheckpointError(f"{where}.condition_size: expected 1 (audio only), found {lc['condition_size']}")
        activation = _require(lc, "activation", where)
        if activation not in ACTIVATIONS:
            raise CheckpointError(f"{where}.activation: expected one of {sorted(ACTIVATIONS)}, found {activation!r}")
        try:
            arrays.append(LayerArrayConfig(
                input_size=_require(lc, "input_size", where), channels=_require(lc, "channels", where),
                head_size=_require(lc, "head_size", where), dilations=tuple(_require(lc, "dilations", where)),
                kernel_size=_require(lc, "kernel_size", where), activation=activation,
                gated=bool(_require(lc, "gated", where)), head_bias=bool(_require(lc, "head_bias", where))))
        except ConfigError as exc:
            raise CheckpointError(f"{where}: {exc}") from None
    try:
        # The config's head_scale is the exact value; the float32 copy ends the weights.
        head_scale = float(config.get("head_scale", weights[-1]))
        net_config = WaveNetConfig(arrays=tuple(arrays), head_scale=head_scale)
    except ConfigError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    model = WaveNet(net_config)
    expected = architectures.parameter_count(model) + 1
    if weights.numel() != expected:
        raise CheckpointError(f"{path}: expected {expected} weights for this WaveNet config, found {weights.numel()}")
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
                value, at = _take(weights, at, tuple(p.shape))
                p.copy_(value)
    return model.eval()


def _load_lstm(config: dict[str, Any], weights: torch.Tensor, path: Path) -> NamLSTM:
    where = f"{path}: config"
    try:
        net_config = NamLSTMConfig(hidden_size=_require(config, "hidden_size", where),
                                   num_layers=_require(config, "num_layers", where),
                                   input_size=_require(config, "input_size", where))
    except ConfigError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    model = NamLSTM(net_config)
    h_size, n_layers, i_size = net_config.hidden_size, net_config.num_layers, net_config.input_size
    expected = sum(4 * h_size * ((i_size if i == 0 else h_size) + h_size) + 4 * h_size + 2 * h_size
                   for i in range(n_layers)) + h_size + 1
    if weights.numel() != expected:
        raise CheckpointError(f"{path}: expected {expected} weights for this LSTM config, found {weights.numel()}")
    at = 0
    lstm = model.lstm
    with torch.no_grad():
        for i in range(n_layers):
            inputs = i_size if i == 0 else h_size
            w, at = _take(weights, at, (4 * h_size, inputs + h_size))
            b, at = _take(weights, at, (4 * h_size,))
            h0, at = _take(weights, at, (h_size,))
            c0, at = _take(weights, at, (h_size,))
            getattr(lstm, f"weight_ih_l{i}").copy_(w[:, :inputs])
            getattr(lstm, f"weight_hh_l{i}").copy_(w[:, inputs:])
            getattr(lstm, f"bias_ih_l{i}").copy_(b)
            getattr(lstm, f"bias_hh_l{i}").zero_()
            model.initial_hidden[i].copy_(h0)
            model.initial_cell[i].copy_(c0)
        head_w, at = _take(weights, at, (1, h_size))
        model.head.weight.copy_(head_w)
        model.head.bias.copy_(weights[at : at + 1])
    return model.eval()


def load_nam(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Read a ``.nam`` file into a :class:`WaveNet` or :class:`NamLSTM`.

    Returns ``(model, info)``; info has ``version``, ``architecture``, ``sample_rate`` (48 kHz when
    the file has none, as NAM assumes), ``metadata`` and ``path``. CheckpointError for a missing or
    malformed file, an unsupported architecture, or a WaveNet in a format other than 0.5.x.
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
    version = _version(_require(document, "version", str(path)), path)
    architecture = _require(document, "architecture", str(path))
    config = _require(document, "config", str(path))
    raw = _require(document, "weights", str(path))
    if not isinstance(raw, list) or not raw:
        raise CheckpointError(f"{path}: weights: expected a non-empty list of numbers")
    try:
        weights = torch.tensor(raw, dtype=torch.float32)
    except (TypeError, ValueError):
        raise CheckpointError(f"{path}: weights: expected a flat list of numbers") from None
    if architecture == "WaveNet":
        if version[:2] != (0, 5):
            raise CheckpointError(
                f"{path}: WaveNet file in format {'.'.join(map(str, version))}; this loader reads the 0.5.x "
                f"layout (NAM <= 0.12); format 0.7.x files come from NAM 0.13 and lay WaveNets out differently")
        model: nn.Module = _load_wavenet(config, weights, path)
    elif architecture == "LSTM":
        model = _load_lstm(config, weights, path)
    else:
        raise CheckpointError(f"{path}: architecture {architecture!r} is not supported (expected WaveNet or LSTM)")
    info = {
        "version": ".".join(map(str, version)),
        "architecture": architecture,
        "sample_rate": float(document.get("sample_rate") or DEFAULT_SAMPLE_RATE),
        "metadata": document.get("metadata") or {},
        "path": str(path),
    }
    return model, info
