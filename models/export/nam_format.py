"""Neural Amp Modeler's ``.nam`` files: export WaveNets (at any width) and NAM-shaped LSTMs in format 0.5.4
or 0.7.0, a slimmable WaveNet's widths as one ``SlimmableContainer``, and read files back.

A ``.nam`` file is JSON with ``version``, ``architecture`` (``WaveNet``, ``LSTM`` or
``SlimmableContainer``), ``config``, a flat ``weights`` list, ``sample_rate`` (48 kHz when absent) and
``metadata``. Which version to write (``nam_version``):

- **0.5.4** (the default): the layout of ``neural-amp-modeler`` 0.10–0.12 and of most published models;
  loads in NAM ≤ 0.12 and in every NAM plug-in release and NAM-compatible player. NAM 0.13 refuses
  0.5.x WaveNet files (its layer arrays need a ``head`` object).
- **0.7.0**: what NAM 0.13 writes (:func:`models.nets.wavenet_architecture.wavenet_nam_config_07`:
  per array a ``head`` ``{out_channels, kernel_size: 1, bias}``, per layer ``kernel_sizes``, ``activation``
  ``{"type": …}``, ``gating_mode`` and ``secondary_activation``, ``bottleneck`` = ``channels``,
  ``layer1x1`` active, ``head1x1`` and every FiLM inactive, ``slimmable`` null); loads in NAM 0.13 and in
  plug-ins built on NeuralAmpModelerCore ≥ 0.4.1. NAM 0.12 refuses 0.7.x WaveNet files.

LSTM files are the same in both versions but for the version string, and load in NAM 0.12 and 0.13.

Weight order (NAM's ``export_weights``; every tensor flattened row-major, PyTorch's layout), the same in
0.5.4 and 0.7.0:

- WaveNet, per layer array: rechannel weight; per layer: dilated conv weight
  ``(out, in, kernel)``, its bias, input mixer weight, 1×1 weight, 1×1 bias; then the head
  rechannel weight and, where ``head_bias``, its bias. Last of all the head scale.
- LSTM, per layer: ``[W_ih | W_hh]`` ``(4H, I + H)`` with gates in PyTorch's i, f, g, o order,
  the summed bias ``b_ih + b_hh``, the initial hidden state, the initial cell state; then the head
  weight ``(H,)`` and bias.

``metadata`` holds NAM's ``loudness`` (dB) and ``gain`` (0–1), measured on NAM's own test signal exactly as
NAM does (:mod:`models.export.nam_loudness`; the plug-in normalises its output level by ``loudness``), the
export date, the caller's keys (``name``, ``modeled_by``, …) and an ``earshot`` block (label, width,
parameters, format).

**SlimmableContainer** (format 0.7.0; read by NAM's C++ engine, i.e. the plug-in, not by NAM's Python
package): ``config.submodels`` is a list of ``{max_value, model}`` sorted by ``max_value``, each ``model`` a
complete 0.7.0 WaveNet document; top-level ``weights`` is empty. The plug-in's slim value ``v`` in [0, 1]
picks the first submodel with ``v < max_value`` (the last one for larger ``v``; the last by default).
For widths ``w_1 < … < w_n`` the thresholds are ``max_value_i`` = the next double above ``w_i`` (``i < n``)
and ``max_value_n`` = 1.0, so ``v`` selects **the smallest width ≥ v**: ``v ≤ w_1`` the narrowest,
``w_{i-1} < v ≤ w_i`` width ``w_i``, ``v > w_{n-1}`` the widest. The container's own ``loudness``/``gain``
are its widest submodel's (the one the plug-in starts with), as in NAM's ``A2.nam``.

NAM's LSTM is ``num_layers`` layers of one ``hidden_size`` and a linear head, with no input skip;
:class:`NamLSTM` is exactly that network with our forward signature, so it can be trained as a
student and exported. An :class:`models.nets.lstm.LSTMStack` adds its input to its output, which a
``.nam`` LSTM cannot express, so exporting one is refused. The initial state written for an LSTM
is the state it settles to after one second of silence at the file's sample rate, not zeros: the
plug-in starts from it.
"""

from __future__ import annotations

import copy
import datetime as _datetime
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from common.outputs import write_file_atomic
from models.errors import ConfigError, OutputError
from models.export.nam_loudness import level_metadata
from models.export.nam_read import DEFAULT_SAMPLE_RATE, load_nam
from models.nets import architectures
from models.nets.nam_lstm import SETTLE_SECONDS, NamLSTM, NamLSTMConfig, lstm_weights
from models.nets.wavenet_architecture import (
    wavenet_nam_config,
    wavenet_nam_config_07,
    wavenet_weights,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NamVersion:
    """One ``.nam`` format version this module writes.

    ``configs`` maps a NAM architecture name to the function that writes its ``config`` block from the
    exported network, where the version's layout differs from the one the architecture's
    ``nam_document`` gives (0.5.x); ``loads_in`` says where such a file loads (recorded in the file)."""

    version: str
    loads_in: str
    configs: dict[str, Callable[[nn.Module], dict[str, Any]]] = field(default_factory=dict)


NAM_VERSIONS: dict[str, NamVersion] = {
    "0.5.4": NamVersion("0.5.4", "NAM <= 0.12, every NAM plug-in release and NAM-compatible players; "
                                 "NAM 0.13 refuses 0.5.x WaveNet files"),
    "0.7.0": NamVersion("0.7.0", "NAM 0.13 and plug-ins built on NeuralAmpModelerCore >= 0.4.1; "
                                 "NAM <= 0.12 refuses 0.7.x WaveNet files",
                        {"WaveNet": lambda model: wavenet_nam_config_07(model.config)}),
}
DEFAULT_NAM_VERSION = "0.5.4"
FORMAT_VERSION = DEFAULT_NAM_VERSION  # the default, under its earlier name
CONTAINER_VERSION = "0.7.0"
CONTAINER_ARCHITECTURE = "SlimmableContainer"

# Re-exported: the networks and weight orders live with their architectures.
__all__ = ["CONTAINER_VERSION", "DEFAULT_NAM_VERSION", "DEFAULT_SAMPLE_RATE", "FORMAT_VERSION", "NAM_VERSIONS",
           "SETTLE_SECONDS", "NamLSTM", "NamLSTMConfig", "as_exported", "container_document",
           "container_thresholds", "export_nam", "export_nam_container", "find_nam_version", "load_nam", "lstm_weights",
           "nam_document", "wavenet_nam_config", "wavenet_nam_config_07", "wavenet_weights"]


def find_nam_version(value: str) -> NamVersion:
    """The :class:`NamVersion` named ``value``; ConfigError naming the versions written."""
    if value not in NAM_VERSIONS:
        raise ConfigError(f"nam_version: expected one of {list(NAM_VERSIONS)}, found {value!r}")
    return NAM_VERSIONS[value]


def _check_rate(sample_rate: float) -> None:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, float)) or not sample_rate > 0:
        raise ConfigError(f"sample_rate: expected a positive rate in Hz, found {sample_rate}")


def _date() -> dict[str, int]:
    now = _datetime.datetime.now()
    return {"year": now.year, "month": now.month, "day": now.day,
            "hour": now.hour, "minute": now.minute, "second": now.second}


def as_exported(model: nn.Module, sample_rate: float) -> nn.Module:
    """The network a ``.nam`` file of ``model`` holds, in eval mode: ``model`` itself, or for a
    :class:`NamLSTM` a copy whose start state is the settled state the file stores."""
    if not isinstance(model, NamLSTM):
        return model.eval()
    h0, c0 = model.settled_state(sample_rate)
    held = copy.deepcopy(model).eval()
    with torch.no_grad():
        held.initial_hidden.copy_(h0)
        held.initial_cell.copy_(c0)
    return held


def _metadata(levels: dict[str, float], metadata: dict[str, Any] | None, earshot: dict[str, Any]) -> dict[str, Any]:
    meta: dict[str, Any] = {"date": _date(), **levels}
    overwritten = sorted(set(metadata or {}) & set(levels))
    if overwritten:
        log.warning("metadata %s given by the caller replaces the value measured on NAM's loudness signal",
                    ", ".join(overwritten))
    meta.update(metadata or {})
    meta["earshot"] = earshot
    return meta


def _parts(model: nn.Module, sample_rate: float, width: float | None, spec: NamVersion
           ) -> tuple[str, dict[str, Any], list[float], nn.Module]:
    """NAM's architecture name, the version's config block, the weights and the exported network."""
    _check_rate(sample_rate)
    architecture, config, weights, exported = architectures.of_model(model).nam_document(model, sample_rate, width)
    if architecture in spec.configs:
        config = spec.configs[architecture](exported)
    return architecture, config, weights, exported


def _assemble(spec: NamVersion, parts: tuple[str, dict[str, Any], list[float], nn.Module], sample_rate: float,
              metadata: dict[str, Any] | None) -> dict[str, Any]:
    architecture, config, weights, exported = parts
    label, kept = exported.config.label, getattr(exported.config, "width", 1.0)
    earshot = {"label": label, "width": kept, "parameters": architectures.parameter_count(exported),
               "nam_format": spec.version, "note": f"format {spec.version}: loads in {spec.loads_in}"}
    levels = level_metadata(as_exported(exported, sample_rate))
    return {
        "version": spec.version,
        "metadata": _metadata(levels, metadata, earshot),
        "architecture": architecture,
        "config": config,
        "weights": weights,
        "sample_rate": float(sample_rate),
    }


def nam_document(model: nn.Module, sample_rate: float, width: float | None = None,
                 metadata: dict[str, Any] | None = None, nam_version: str = DEFAULT_NAM_VERSION
                 ) -> dict[str, Any]:
    """The ``.nam`` document of ``model`` (cut to ``width``) in format ``nam_version``; see :func:`export_nam`."""
    spec = find_nam_version(nam_version)
    return _assemble(spec, _parts(model, sample_rate, width, spec), sample_rate, metadata)


def _write(document: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    # allow_nan=False: NAM's C++ JSON reader refuses NaN and Infinity.
    write_file_atomic(path, json.dumps(document, allow_nan=False), OutputError)
    return path


def export_nam(
    model: nn.Module,
    path: str | Path,
    sample_rate: float,
    width: float | None = None,
    metadata: dict[str, Any] | None = None,
    nam_version: str = DEFAULT_NAM_VERSION,
) -> dict[str, Any]:
    """Write ``model`` as a ``.nam`` file of format ``nam_version`` (``"0.5.4"`` or ``"0.7.0"``, see
    :data:`NAM_VERSIONS`) at ``path`` (atomically); returns the document.

    WaveNet: any layout without knobs; ``width`` exports the slimmed network (the first channels of
    every weight). NamLSTM: as is, with its settled initial state. Anything else, an LSTMStack
    included, raises ConfigError saying why. The file's metadata holds the export date, NAM's
    ``loudness`` and ``gain`` of the exported network, ``metadata`` (NAM's keys: name, modeled_by,
    gear_type, …) and an ``earshot`` block (architecture label, width, parameters, the format).
    """
    document = nam_document(model, sample_rate, width, metadata, nam_version)
    path = _write(document, path)
    log.info("wrote %s (%s, %d weights, format %s)", path, document["metadata"]["earshot"]["label"],
             len(document["weights"]), document["version"])
    return document


def container_thresholds(widths: Sequence[float]) -> list[float]:
    """``max_value`` of each of ``widths`` (ascending, distinct, in (0, 1]) in a SlimmableContainer, so
    that NAM's slim value ``v`` selects the smallest width ≥ ``v``: the next double above each width
    (NAM picks the first submodel with ``v < max_value``), 1.0 for the widest (NAM's engine requires the
    last to be ≥ 1)."""
    values = [float(w) for w in widths]
    if not values or any(not 0.0 < w <= 1.0 for w in values) or values != sorted(set(values)):
        raise ConfigError(f"container widths: expected distinct ascending fractions in (0, 1], found {list(widths)}")
    return [math.nextafter(w, math.inf) for w in values[:-1]] + [1.0]


def container_document(model: nn.Module, sample_rate: float, widths: Sequence[float],
                       metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``SlimmableContainer`` document of a WaveNet at ``widths`` (each a 0.7.0 WaveNet submodel,
    cut as ``width`` cuts); see :func:`export_nam_container`."""
    spec = find_nam_version(CONTAINER_VERSION)
    widths = sorted({float(w) for w in widths})
    thresholds = container_thresholds(widths)
    cuts, layouts = [], {}
    for width in widths:
        parts = _parts(model, sample_rate, width, spec)
        if parts[0] != "WaveNet":
            raise ConfigError(f"a {CONTAINER_ARCHITECTURE} holds the widths of a slimmable WaveNet; found "
                              f"{type(model).__name__}")
        layout = json.dumps(parts[1])
        if layout in layouts:
            raise ConfigError(f"container widths: {layouts[layout]:g} and {width:g} cut "
                              f"{model.config.label} to the same channels; keep one of them")
        layouts[layout] = width
        cuts.append(parts)
    submodels = [{"max_value": threshold, "model": _assemble(spec, parts, sample_rate, metadata)}
                 for threshold, parts in zip(thresholds, cuts, strict=True)]
    widest = submodels[-1]["model"]["metadata"]
    levels = {k: widest[k] for k in ("loudness", "gain") if k in widest}
    earshot = {"label": model.config.label, "widths": widths, "max_values": thresholds,
               "labels": [s["model"]["metadata"]["earshot"]["label"] for s in submodels],
               "nam_format": CONTAINER_VERSION,
               "slim_value": "NAM's slim value v in [0, 1] selects the smallest width >= v; the widest by default",
               "note": f"format {CONTAINER_VERSION} {CONTAINER_ARCHITECTURE}: loads in NAM plug-ins built on "
                       "NeuralAmpModelerCore >= 0.4.1; NAM's Python package does not read containers"}
    return {
        "version": CONTAINER_VERSION,
        "metadata": _metadata(levels, metadata, earshot),
        "architecture": CONTAINER_ARCHITECTURE,
        "config": {"submodels": submodels},
        "weights": [],
        "sample_rate": float(sample_rate),
    }


def export_nam_container(model: nn.Module, path: str | Path, sample_rate: float, widths: Sequence[float],
                         metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write a slimmable WaveNet's ``widths`` as one ``SlimmableContainer`` ``.nam`` file (format 0.7.0)
    at ``path`` (atomically); returns the document. Thresholds: :func:`container_thresholds`."""
    document = container_document(model, sample_rate, widths, metadata)
    path = _write(document, path)
    log.info("wrote %s (%s container of widths %s, format %s)", path, model.config.label,
             ", ".join(f"{w:g}" for w in document["metadata"]["earshot"]["widths"]), CONTAINER_VERSION)
    return document
