"""NAM's LSTM (``arch: nam_lstm``): ``num_layers`` stacked layers of one ``hidden_size`` and a linear
head, with no input skip — the LSTM a ``.nam`` file holds — and its registered architecture.

A study names it ``{arch: nam_lstm, hidden_size: 16, num_layers: 1}``, as a student (every recipe:
its LSTM output distils through a projection head, it quantizes per gate row as the LSTM stack
does and slims to its first units per gate block) or as a teacher (``{name: …, model: {arch:
nam_lstm, …}}``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from models.errors import ConfigError
from models.nets.registry import Architecture, register
from models.nets.slimmable import nam_lstm_forward_at_width, nam_lstm_units, slim_nam_lstm

SETTLE_SECONDS = 1.0


@dataclass(frozen=True)
class NamLSTMConfig:
    """NAM's LSTM: ``num_layers`` stacked layers of ``hidden_size`` units, a linear head, no input skip."""

    hidden_size: int = 16
    num_layers: int = 1
    input_size: int = 1
    arch: Literal["nam_lstm"] = "nam_lstm"
    n_knobs: int = 0

    def __post_init__(self) -> None:
        for name in ("hidden_size", "num_layers", "input_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"nam_lstm {name}: expected an integer >= 1, found {value!r}")
        if self.n_knobs != 0:
            raise ConfigError(f"nam_lstm n_knobs: NAM's LSTM takes no knob values, found {self.n_knobs}")
        if self.input_size != 1:
            raise ConfigError(f"nam_lstm input_size: only mono input (1) is supported, found {self.input_size}")

    @property
    def label(self) -> str:
        return f"NAM-LSTM-{self.num_layers}x{self.hidden_size}"


class NamLSTM(nn.Module):
    """NAM's LSTM with the forward of :class:`models.nets.lstm.LSTMStack`.

    A missing state starts from the buffers ``initial_hidden`` / ``initial_cell`` (num_layers,
    hidden_size): zeros for a fresh network, the file's state for one read by :func:`load_nam`.
    The state is ``(h, c)``, each (num_layers, batch, hidden_size). Its features (for
    distillation) are every layer's output, (batch, time, hidden_size) each.
    """

    def __init__(self, config: NamLSTMConfig):
        super().__init__()
        self.config = config
        self.lstm = nn.LSTM(config.input_size, config.hidden_size, config.num_layers, batch_first=True)
        self.head = nn.Linear(config.hidden_size, 1)
        self.register_buffer("initial_hidden", torch.zeros(config.num_layers, config.hidden_size))
        self.register_buffer("initial_cell", torch.zeros(config.num_layers, config.hidden_size))

    def forward(self, x: torch.Tensor, knobs: torch.Tensor | None = None,
                state: tuple[torch.Tensor, torch.Tensor] | None = None, return_features: bool = False):
        """x: (batch, time, 1) → ``(y, new_state)`` or ``(y, new_state, [every layer's output])``."""
        if knobs is not None and knobs.numel():
            raise ConfigError(f"NAM's LSTM takes no knob values, found {tuple(knobs.shape)}")
        if return_features:
            # Layer by layer, so that every layer's output can be aligned with a teacher's.
            return nam_lstm_forward_at_width(self, x, knobs, state, True, 1.0)
        if state is None:
            batch = x.shape[0]
            state = (self.initial_hidden[:, None, :].expand(-1, batch, -1).contiguous(),
                     self.initial_cell[:, None, :].expand(-1, batch, -1).contiguous())
        out, new_state = self.lstm(x, state)
        return self.head(out), new_state

    @torch.no_grad()
    def settled_state(self, sample_rate: float, seconds: float = SETTLE_SECONDS) -> tuple[torch.Tensor, torch.Tensor]:
        """(h, c), each (num_layers, hidden_size), after ``seconds`` of silence from a zero state."""
        zeros = torch.zeros(1, max(1, int(round(seconds * sample_rate))), self.config.input_size,
                            device=self.head.weight.device)
        _, (h, c) = self.lstm(zeros)
        return h[:, 0], c[:, 0]


def _flat(*tensors: torch.Tensor) -> list[float]:
    values: list[float] = []
    for t in tensors:
        values.extend(t.detach().to("cpu", torch.float32).reshape(-1).tolist())
    return values


def lstm_weights(model: NamLSTM, sample_rate: float) -> list[float]:
    """The flat weight list of a NAM LSTM, with the state settled after one second of silence."""
    h0, c0 = model.settled_state(sample_rate)
    values: list[float] = []
    lstm = model.lstm
    for i in range(model.config.num_layers):
        w = torch.cat([getattr(lstm, f"weight_ih_l{i}"), getattr(lstm, f"weight_hh_l{i}")], dim=1)
        b = getattr(lstm, f"bias_ih_l{i}") + getattr(lstm, f"bias_hh_l{i}")
        values += _flat(w, b, h0[i], c0[i])
    return values + _flat(model.head.weight, model.head.bias)


class NamLSTMArchitecture(Architecture):
    """NAM's LSTM: distillable (every layer's output is a feature), slimmable by units (the first
    units of every gate block, as the LSTM stack) and exported as a ``.nam`` LSTM with its state
    settled after one second of silence."""

    name: ClassVar[str] = "nam_lstm"
    config_class: ClassVar[type] = NamLSTMConfig
    student_keys: ClassVar[tuple[str, ...]] = ("hidden_size", "num_layers")
    slimmable: ClassVar[bool] = True
    distillable: ClassVar[bool] = True
    recurrent: ClassVar[bool] = True
    size_names_model: ClassVar[bool] = False

    def build(self, config: NamLSTMConfig) -> NamLSTM:
        return NamLSTM(config)

    def label(self, config: NamLSTMConfig) -> str:
        return config.label

    def size_label(self, config: NamLSTMConfig) -> str:
        return "-".join([str(config.hidden_size)] * config.num_layers)

    def macs_per_sample(self, config: NamLSTMConfig) -> int:
        """The four gate matrices per layer, 4·H·(I + H), and the head's H (as for the LSTM stack)."""
        macs, inputs = 0, config.input_size
        for _ in range(config.num_layers):
            macs += 4 * config.hidden_size * (inputs + config.hidden_size)
            inputs = config.hidden_size
        return macs + config.hidden_size

    def feature_size(self, config: NamLSTMConfig, layer: int) -> int:
        n = config.num_layers
        if isinstance(layer, bool) or not isinstance(layer, int) or not -n <= layer < n:
            raise ConfigError(f"layer index {layer!r} is out of range for {config.label} ({n} LSTM layer"
                              f"{'s' if n > 1 else ''} of {config.hidden_size} units); expected -1, the LSTM "
                              f"output its head reads{f', or 0 … {n - 1}' if n > 1 else ''}")
        return config.hidden_size

    def allowed_widths(self, config: NamLSTMConfig) -> tuple[float, ...]:
        return tuple(k / config.hidden_size for k in range(1, config.hidden_size + 1))

    def slimmed_config(self, config: NamLSTMConfig, width: float) -> NamLSTMConfig:
        return dataclasses.replace(config, hidden_size=nam_lstm_units(config, width))

    def slim(self, model: nn.Module, width: float) -> nn.Module:
        return slim_nam_lstm(model, width)

    def forward_at_width(self, model: nn.Module, x: torch.Tensor, knobs: torch.Tensor | None, state: Any,
                         return_features: bool, width: float) -> Any:
        return nam_lstm_forward_at_width(model, x, knobs, state, return_features, width)

    def nam_document(self, model: nn.Module, sample_rate: float, width: float | None) -> tuple[str, dict, list, nn.Module]:
        if width is not None and width != 1.0:
            model = slim_nam_lstm(model, width).eval()
        config = {"input_size": model.config.input_size, "hidden_size": model.config.hidden_size,
                  "num_layers": model.config.num_layers}
        return "LSTM", config, lstm_weights(model, sample_rate), model


NAM_LSTM = register(NamLSTMArchitecture())
