"""The residual LSTM stack of the distillation paper, its config and its cost (parameters, multiply-adds).

Shapes: audio tensors are ``(batch, time, 1)``; knob values ``(batch, knobs)``; per-layer features
``(batch, time, units)``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from models.errors import ConfigError
from models.resources import memory_shortfall

log = logging.getLogger(__name__)

TEACHER_LAYERS = (8, 16, 32, 64, 32, 16, 8)
TRAINING_BYTES_PER_PARAMETER = 16  # float32 weights, gradients and Adam's two moments


@dataclass(frozen=True)
class LSTMConfig:
    """The residual LSTM stack (``arch: lstm``, the zoo's default architecture).

    ``layers`` are the LSTM sizes from input to output; ``conditioning`` says how knob values
    (``n_knobs`` of them) enter: ``film`` scales and shifts every LSTM layer's output, ``concat``
    appends them to the input sample. A slimmed LSTM is simply an LSTM with fewer units.
    """

    arch: Literal["lstm"] = "lstm"
    layers: tuple[int, ...] = (32, 8)
    conditioning: Literal["film", "concat"] = "film"
    n_knobs: int = 0

    def __post_init__(self) -> None:
        if not self.layers or any(u < 1 for u in self.layers):
            raise ConfigError(f"model.layers: expected a non-empty list of positive sizes, found {list(self.layers)}")
        if self.n_knobs < 0:
            raise ConfigError(f"model.n_knobs: expected >= 0, found {self.n_knobs}")
        params = lstm_parameter_estimate(self)
        shortfall = memory_shortfall(TRAINING_BYTES_PER_PARAMETER * params)
        if shortfall is not None:
            raise ConfigError(
                f"model.layers: {list(self.layers)} has about {params:.3g} parameters; training needs "
                f"{TRAINING_BYTES_PER_PARAMETER} bytes each (float32 weights, gradients and Adam's two "
                f"moments): {shortfall}; expected smaller layers")

    @property
    def label(self) -> str:
        """Short human name: ``S-32-8`` for two-layer students, ``LSTM-8-16-…`` for other stacks."""
        sizes = "-".join(str(u) for u in self.layers)
        return f"S-{sizes}" if len(self.layers) == 2 else f"LSTM-{sizes}"

    @property
    def size_label(self) -> str:
        """What runs.csv's ``layers`` column holds: the LSTM units."""
        return "-".join(str(u) for u in self.layers)


class LSTMStack(nn.Module):
    """Stacked LSTMs (one ``nn.LSTM`` per layer, sizes may differ) → dense(1) + the input sample.

    The residual input skip makes the network learn the difference between the effect and the
    dry signal, which is what the paper's models do.
    """

    def __init__(self, config: LSTMConfig):
        super().__init__()
        self.config = config
        input_size = 1 + (config.n_knobs if config.conditioning == "concat" else 0)
        self.lstms = nn.ModuleList()
        self.films = nn.ModuleList()
        for units in config.layers:
            self.lstms.append(nn.LSTM(input_size, units, batch_first=True))
            if config.conditioning == "film" and config.n_knobs > 0:
                self.films.append(nn.Linear(config.n_knobs, 2 * units))
            input_size = units
        self.dense = nn.Linear(input_size, 1)

    def forward(
        self,
        x: torch.Tensor,
        knobs: torch.Tensor | None = None,
        state: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
        return_features: bool = False,
    ):
        """Run the stack.

        x: (batch, time, 1); knobs: (batch, n_knobs) or None; state: per-layer (h, c), each
        (1, batch, units), or None for zeros. Returns ``(y, new_state)`` with y (batch, time, 1), or
        ``(y, new_state, features)`` where features[i] is layer i's output (batch, time, units).
        """
        n_knobs = self.config.n_knobs
        if n_knobs and (knobs is None or knobs.shape[-1] != n_knobs):
            found = None if knobs is None else tuple(knobs.shape)
            raise ConfigError(f"this model needs {n_knobs} knob value(s) per example, found {found}")
        h = x
        if n_knobs and self.config.conditioning == "concat":
            h = torch.cat([x, knobs[:, None, :].expand(-1, x.shape[1], -1)], dim=-1)
        features = []
        new_state = []
        for i, lstm in enumerate(self.lstms):
            h, layer_state = lstm(h, None if state is None else state[i])
            new_state.append(layer_state)
            if self.films:
                gamma, beta = self.films[i](knobs).chunk(2, dim=-1)
                # 1 + gamma: an untrained FiLM layer starts as the identity.
                h = h * (1.0 + gamma[:, None, :]) + beta[:, None, :]
            features.append(h)
        y = self.dense(h) + x
        if return_features:
            return y, new_state, features
        return y, new_state


def macs_per_sample(config: LSTMConfig) -> int:
    """Multiply-adds per output sample of the weight products.

    Counted: the four gate matrices of each LSTM layer, 4·H·(I + H), the dense output layer and,
    with FiLM, one multiply-add per unit per layer (the scale/shift; the knob projection is done
    once per block, not per sample). Not counted: bias additions, gate nonlinearities and the
    three element-wise products of the cell update — by the usual convention, and because they
    are what the paper leaves out when it quotes ≈ 49 k for the teacher.
    """
    macs = 0
    input_size = 1 + (config.n_knobs if config.conditioning == "concat" else 0)
    for units in config.layers:
        macs += 4 * units * (input_size + units)
        if config.conditioning == "film" and config.n_knobs:
            macs += units
        input_size = units
    return macs + input_size


def lstm_parameter_estimate(config: LSTMConfig) -> int:
    """Parameters of an LSTM stack from its config alone (no tensor allocated): the weight products
    of :func:`macs_per_sample`, torch's two bias vectors per gate and FiLM's knob projections."""
    params = macs_per_sample(config) + 1  # + the dense output's bias
    for units in config.layers:
        params += 8 * units
        if config.conditioning == "film" and config.n_knobs:
            params += 2 * units * (config.n_knobs + 1) - units
    return params


def feature_size(config: LSTMConfig, layer: int) -> int:
    """Units of LSTM layer ``layer`` (negative counts from the end); ConfigError when out of range."""
    n = len(config.layers)
    if not -n <= layer < n:
        raise ConfigError(f"layer index {layer} is out of range for a {n}-layer model {list(config.layers)}")
    return config.layers[layer]
