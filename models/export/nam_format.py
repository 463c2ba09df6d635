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

from torch import nn

from common.outputs import write_file_atomic
from models.errors import ConfigError, OutputError
from models.export.nam_read import DEFAULT_SAMPLE_RATE, load_nam
from models.nets import architectures
from models.nets.nam_lstm import SETTLE_SECONDS, NamLSTM, NamLSTMConfig, lstm_weights
from models.nets.wavenet_architecture import wavenet_nam_config, wavenet_weights

log = logging.getLogger(__name__)

FORMAT_VERSION = "0.5.4"
# Re-exported: the networks and weight orders live with their architectures.
__all__ = ["DEFAULT_SAMPLE_RATE", "FORMAT_VERSION", "SETTLE_SECONDS", "NamLSTM", "NamLSTMConfig", "export_nam", "load_nam",
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


