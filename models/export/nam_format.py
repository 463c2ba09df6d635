"""Neural Amp Modeler's ``.nam`` files: export WaveNets (at any width) and NAM-shaped LSTMs, and read them back.

A ``.nam`` file is JSON with ``version``, ``architecture`` (``WaveNet`` or ``LSTM``), ``config``,
a flat ``weights`` list, ``sample_rate`` (48 kHz when absent) and ``metadata``. Files written
here target **format 0.5.4**, the layout of ``neural-amp-modeler`` 0.10–0.12 and of most
published models. NAM 0.13 reads and writes format 0.7.x, whose WaveNet layout differs: its
loader refuses 0.5.x WaveNet files and ours refuses 0.7.x ones (LSTM files load in both).

Weight order (NAM's ``_export_weights``; every tensor flattened row-major, PyTorch's layout):

- WaveNet, per layer array: rechannel weight; per layer: dilated conv weight
  ``(out, in, kernel)``, its bias, input mixer weight, 1×1 weight, 1×1 bias; then the head
  rechannel weight and, where ``head_bias``, its bias. Last of all the head scale.
- LSTM, per layer: ``[W_ih | W_hh]`` ``(4H, I + H)`` with gates in PyTorch's i, f, g, o order,
  the summed bias ``b_ih + b_hh``, the initial hidden state, the initial cell state; then the head
  weight ``(H,)`` and bias.

NAM's LSTM is ``num_layers`` layers of one ``hidden_size`` and a linear head, with no input skip;
:class:`NamLSTM` is exactly that network with our forward signature, so it can be trained as a
student and exported. An :class:`models.nets.lstm.LSTMStack` adds its input to its output, which a
``.nam`` LSTM cannot express, so exporting one is refused. The initial state written for an LSTM
is the state it settles to after one second of silence at the file's sample rate (as NAM does),
not zeros: the plug-in starts from it.
"""

from __future__ import annotations

import datetime as _datetime
import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from common.outputs import write_file_atomic
from models.errors import CheckpointError, ConfigError, OutputError
from models.nets import architectures
from models.nets.nam_lstm import SETTLE_SECONDS, NamLSTM, NamLSTMConfig, lstm_weights
from models.nets.wavenet import ACTIVATIONS, LayerArrayConfig, WaveNet, WaveNetConfig
from models.nets.wavenet_architecture import wavenet_nam_config, wavenet_weights

log = logging.getLogger(__name__)

FORMAT_VERSION = "0.5.4"
DEFAULT_SAMPLE_RATE = 48000.0
# Re-exported: the networks and weight orders live with their architectures.
__all__ = ["FORMAT_VERSION", "SETTLE_SECONDS", "NamLSTM", "NamLSTMConfig", "export_nam", "load_nam",
           "lstm_weights", "wavenet_nam_config", "wavenet_weights"]


def export_nam(
    model: nn.Module,
    path: str | Path,
    sample_rate: float,
    width: float | None = None,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``model`` as a format-0.5.4 ``.nam`` file at ``path`` (atomically); returns the document.

    WaveNet: any layout without knobs; ``width`` exports the slimmed network (the first channels of
    every weight). NamLSTM: as is, with its settled initial state. Anything else, an LSTMStack
    included, raises ConfigError saying why. ``metadata`` (NAM's keys: name, modeled_by,
    gear_type, …) is merged into the file's metadata next to the export date and an ``earshot``
    block (architecture label, width, parameters, the targeted format).
    """
    if sample_rate <= 0:
        raise ConfigError(f"sample_rate: expected a positive rate in Hz, found {sample_rate}")
    architecture, config, weights, exported = architectures.of_model(model).nam_document(model, sample_rate, width)
    label, kept = exported.config.label, getattr(exported.config, "width", 1.0)
    now = _datetime.datetime.now()
    meta: dict[str, Any] = {
        "date": {"year": now.year, "month": now.month, "day": now.day,
                 "hour": now.hour, "minute": now.minute, "second": now.second},
    }
    meta.update(metadata or {})
    meta["earshot"] = {"label": label, "width": kept, "parameters": architectures.parameter_count(exported),
                       "nam_format": FORMAT_VERSION,
                       "note": "format 0.5.x: loads in NAM <= 0.12 and NAM-compatible players; "
                               "NAM 0.13 (format 0.7.x) refuses 0.5.x WaveNet files"}
    document = {
        "version": FORMAT_VERSION,
        "architecture": architecture,
        "config": config,
        "weights": weights,
        "sample_rate": float(sample_rate),
        "metadata": meta,
    }
    path = Path(path)
    write_file_atomic(path, json.dumps(document), OutputError)
    log.info("wrote %s (%s, %d weights, format %s)", path, label, len(weights), FORMAT_VERSION)
    return document


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
