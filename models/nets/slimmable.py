"""Slimmable networks: run or cut a WaveNet, an LSTM stack or NAM's LSTM at a fraction of its width.

Width c → c′ keeps the first c′ channels (WaveNet) or hidden units (LSTM, in each of the four
gate blocks; a NAM LSTM's initial state too) of every weight, so the network stays mono in and
mono out. Two ways to use it:

- :func:`forward_at_width` slices the weights on the fly (views of the parameters: gradients
  reach only the kept entries), for slimmable training;
- :func:`slim` builds a really smaller network with the kept weights copied, for inference: it is
  as fast as a network trained at that size, and at full width it equals the original exactly.

Training helpers follow the slimmable-network literature (Yu et al. 2018, Yu & Huang 2019) and
the slimmable NAM paper (Atkinson 2025): :func:`sample_widths` draws the widths trained in one
step (``uniform``: one width per mini-batch; ``sandwich``: the largest, the smallest and random
ones), :func:`slimmable_loss` sums their losses and can use the full-width output as the target
of the slimmer widths (in-place distillation).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from models.errors import ConfigError
from models.nets import registry
from models.nets.lstm import LSTMConfig, LSTMStack
from models.nets.wavenet import WaveNet, slimmed_config, width_channels

log = logging.getLogger(__name__)

WidthRule = Literal["uniform", "sandwich"]


@dataclass(frozen=True)
class SlimmableConfig:
    """How a slimmable network is trained, and the widths a study evaluates and renders.

    ``widths``: the fractions of the full width made into runs of their own (each a really smaller
    network cut from the trained one); their mean validation loss picks the best epoch.
    ``train_widths``: the widths drawn during training (None: every width the widest layer allows,
    k/c for k = 1 … c, as the slimmable NAM paper). ``rule`` and ``count``: see
    :func:`sample_widths`. ``inplace_distillation``: slimmer widths learn from the full-width output.
    """

    widths: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
    train_widths: tuple[float, ...] | None = None
    rule: WidthRule = "uniform"
    count: int | None = None
    inplace_distillation: bool = False

    def __post_init__(self) -> None:
        if not self.widths:
            raise ConfigError("slimmable.widths: expected at least one width, found none")
        for name, values in (("widths", self.widths), ("train_widths", self.train_widths or ())):
            for w in values:
                if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0.0 < w <= 1.0:
                    raise ConfigError(f"slimmable.{name}: expected fractions in (0, 1], found {w!r}")
        if self.rule not in ("uniform", "sandwich"):
            raise ConfigError(f"slimmable.rule: expected 'uniform' or 'sandwich', found {self.rule!r}")
        if self.count is not None and self.count < (2 if self.rule == "sandwich" else 1):
            raise ConfigError(f"slimmable.count: expected >= {2 if self.rule == 'sandwich' else 1} for the "
                              f"{self.rule} rule, found {self.count}")


def _check_width(width: float | None) -> float:
    if width is None:
        return 1.0
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not 0.0 < width <= 1.0:
        raise ConfigError(f"width: expected a fraction in (0, 1], found {width!r}")
    return float(width)


def lstm_widths(config: LSTMConfig, width: float) -> tuple[int, ...]:
    """Hidden units per LSTM layer kept at ``width`` (rounded half up, at least 1)."""
    return tuple(width_channels(u, width) for u in config.layers)


def _gate_rows(units: int, kept: int, blocks: int) -> torch.Tensor:
    """Rows of ``blocks`` stacked gate blocks of ``units`` rows, keeping the first ``kept`` of each."""
    return torch.cat([b * units + torch.arange(kept) for b in range(blocks)])


def lstm_weights_at(model: LSTMStack, width: float | None) -> list[dict[str, torch.Tensor]]:
    """Per layer the (sliced) ``w_ih, w_hh, b_ih, b_hh`` and FiLM ``film_w, film_b``, plus ``dense_w, dense_b``.

    The last entry holds only the dense layer. At full width these are the parameters themselves.
    """
    width = _check_width(width)
    full = width == 1.0
    kept = lstm_widths(model.config, width)
    layers: list[dict[str, torch.Tensor]] = []
    for i, lstm in enumerate(model.lstms):
        u, k = lstm.hidden_size, kept[i]
        columns = lstm.input_size if i == 0 else kept[i - 1]
        rows = _gate_rows(u, k, 4)
        entry = {
            "w_ih": lstm.weight_ih_l0 if full else lstm.weight_ih_l0[rows][:, :columns],
            "w_hh": lstm.weight_hh_l0 if full else lstm.weight_hh_l0[rows][:, :k],
            "b_ih": lstm.bias_ih_l0 if full else lstm.bias_ih_l0[rows],
            "b_hh": lstm.bias_hh_l0 if full else lstm.bias_hh_l0[rows],
        }
        if model.films:
            film_rows = _gate_rows(u, k, 2)
            entry["film_w"] = model.films[i].weight if full else model.films[i].weight[film_rows]
            entry["film_b"] = model.films[i].bias if full else model.films[i].bias[film_rows]
        layers.append(entry)
    dense_w = model.dense.weight if full else model.dense.weight[:, : kept[-1]]
    layers.append({"dense_w": dense_w, "dense_b": model.dense.bias})
    return layers


def lstm_forward_at_width(
    model: LSTMStack,
    x: torch.Tensor,
    knobs: torch.Tensor | None = None,
    state: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
    return_features: bool = False,
    width: float | None = None,
):
    """:meth:`LSTMStack.forward` with every layer cut to ``width`` of its hidden units.

    Same arguments and results as ``LSTMStack.forward``; the state holds the kept units only,
    (1, batch, u′) per layer. Uses the functional LSTM kernel that ``nn.LSTM`` itself calls, so
    gradients flow into the kept slices of the parameters.
    """
    config = model.config
    n_knobs = config.n_knobs
    if n_knobs and (knobs is None or knobs.shape[-1] != n_knobs):
        found = None if knobs is None else tuple(knobs.shape)
        raise ConfigError(f"this model needs {n_knobs} knob value(s) per example, found {found}")
    weights = lstm_weights_at(model, width)
    kept = lstm_widths(config, _check_width(width))
    h = x
    if n_knobs and config.conditioning == "concat":
        h = torch.cat([x, knobs[:, None, :].expand(-1, x.shape[1], -1)], dim=-1)
    features, new_state = [], []
    for i, entry in enumerate(weights[:-1]):
        if state is None:
            zeros = x.new_zeros(1, x.shape[0], kept[i])
            hx = (zeros, zeros)
        else:
            hx = state[i]
        params = [entry["w_ih"], entry["w_hh"], entry["b_ih"], entry["b_hh"]]
        h, h_n, c_n = torch._VF.lstm(h, hx, params, True, 1, 0.0, model.training, False, True)
        new_state.append((h_n, c_n))
        if "film_w" in entry:
            gamma, beta = F.linear(knobs, entry["film_w"], entry["film_b"]).chunk(2, dim=-1)
            h = h * (1.0 + gamma[:, None, :]) + beta[:, None, :]
        features.append(h)
    y = F.linear(h, weights[-1]["dense_w"], weights[-1]["dense_b"]) + x
    if return_features:
        return y, new_state, features
    return y, new_state


def nam_lstm_units(config, width: float) -> int:
    """Hidden units of every layer of a NAM LSTM (``NamLSTMConfig``) kept at ``width``."""
    return width_channels(config.hidden_size, width)


def nam_lstm_weights_at(model: nn.Module, width: float | None) -> dict[str, torch.Tensor | list[torch.Tensor]]:
    """A NAM LSTM's weights cut to ``width``: ``layers`` (per layer ``[w_ih, w_hh, b_ih, b_hh]``,
    the rows of the first kept units of each i, f, g, o gate block and, past the first layer, the
    columns of the kept units), ``head_w`` (1, kept), ``head_b`` and the initial ``h0``/``c0``
    (layers, kept). At full width these are the parameters and buffers themselves."""
    width = _check_width(width)
    lstm, units = model.lstm, model.config.hidden_size
    kept = nam_lstm_units(model.config, width)
    full = kept == units
    rows = _gate_rows(units, kept, 4)
    layers = []
    for i in range(lstm.num_layers):
        w_ih, w_hh = getattr(lstm, f"weight_ih_l{i}"), getattr(lstm, f"weight_hh_l{i}")
        b_ih, b_hh = getattr(lstm, f"bias_ih_l{i}"), getattr(lstm, f"bias_hh_l{i}")
        if not full:
            w_ih = w_ih[rows] if i == 0 else w_ih[rows][:, :kept]
            w_hh, b_ih, b_hh = w_hh[rows][:, :kept], b_ih[rows], b_hh[rows]
        layers.append([w_ih, w_hh, b_ih, b_hh])
    head_w = model.head.weight if full else model.head.weight[:, :kept]
    return {"layers": layers, "head_w": head_w, "head_b": model.head.bias,
            "h0": model.initial_hidden[:, :kept], "c0": model.initial_cell[:, :kept]}


def run_lstm_layers(x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor], layers: list[list[torch.Tensor]],
                    training: bool, per_layer: bool) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor], list]:
    """Stacked batch-first LSTM layers of one size through the kernel ``nn.LSTM`` calls.

    x: (batch, time, inputs); state: (h, c), each (layers, batch, units); ``layers``: per layer
    ``[w_ih, w_hh, b_ih, b_hh]``. Returns the last layer's output (batch, time, units), the new
    (h, c) and, with ``per_layer``, every layer's output (the layers run one call each; without
    it, one call runs them all and the list holds the last output only)."""
    if not per_layer:
        flat = [w for layer in layers for w in layer]
        out, h_n, c_n = torch._VF.lstm(x, state, flat, True, len(layers), 0.0, training, False, True)
        return out, (h_n, c_n), [out]
    h, c = state
    out, features, hs, cs = x, [], [], []
    for i, weights in enumerate(layers):
        out, h_i, c_i = torch._VF.lstm(out, (h[i:i + 1], c[i:i + 1]), weights, True, 1, 0.0, training, False, True)
        features.append(out)
        hs.append(h_i)
        cs.append(c_i)
    return out, (torch.cat(hs), torch.cat(cs)), features


def nam_lstm_forward_at_width(model: nn.Module, x: torch.Tensor, knobs: torch.Tensor | None = None,
                              state: tuple[torch.Tensor, torch.Tensor] | None = None,
                              return_features: bool = False, width: float | None = None):
    """:meth:`NamLSTM.forward` with every layer cut to ``width`` of its units (see
    :func:`nam_lstm_weights_at`); the state holds the kept units, each (layers, batch, kept)."""
    if knobs is not None and knobs.numel():
        raise ConfigError(f"NAM's LSTM takes no knob values, found {tuple(knobs.shape)}")
    weights = nam_lstm_weights_at(model, width)
    if state is None:
        batch = x.shape[0]
        state = (weights["h0"][:, None, :].expand(-1, batch, -1).contiguous(),
                 weights["c0"][:, None, :].expand(-1, batch, -1).contiguous())
    out, new_state, features = run_lstm_layers(x, state, weights["layers"], model.training, return_features)
    y = F.linear(out, weights["head_w"], weights["head_b"])
    if return_features:
        return y, new_state, features
    return y, new_state


@torch.no_grad()
def slim_nam_lstm(model: nn.Module, width: float) -> nn.Module:
    """A smaller NAM LSTM holding the kept units' weights and initial state (see :func:`nam_lstm_weights_at`)."""
    width = _check_width(width)
    config = dataclasses.replace(model.config, hidden_size=nam_lstm_units(model.config, width))
    small = registry.build_model(config).to(model.head.weight.device)
    weights = nam_lstm_weights_at(model, width)
    for i, layer in enumerate(weights["layers"]):
        for name, value in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), layer, strict=True):
            getattr(small.lstm, f"{name}_l{i}").copy_(value)
    small.head.weight.copy_(weights["head_w"])
    small.head.bias.copy_(weights["head_b"])
    small.initial_hidden.copy_(weights["h0"])
    small.initial_cell.copy_(weights["c0"])
    return small.train(model.training)


def _architecture(model: nn.Module) -> registry.Architecture:
    if not hasattr(model, "config"):
        slimmable = [n for n in registry.names() if registry.get(n).slimmable]
        raise ConfigError(f"slimming: expected a network of a slimmable architecture ({', '.join(slimmable)}: "
                          f"an LSTMStack, a NamLSTM or a WaveNet), found {type(model).__name__}")
    return registry.of_model(model)


def forward_at_width(
    model: nn.Module,
    x: torch.Tensor,
    knobs: torch.Tensor | None = None,
    state=None,
    return_features: bool = False,
    width: float | None = None,
):
    """The model's forward at ``width`` (weights sliced on the fly), as its architecture slices it.

    x: (batch, time, 1); returns ``(y, new_state)`` or ``(y, new_state, features)`` as the
    model's own forward does.
    """
    return _architecture(model).forward_at_width(model, x, knobs, state, return_features, _check_width(width))


@torch.no_grad()
def slim_wavenet(model: WaveNet, width: float) -> WaveNet:
    """A smaller WaveNet holding the first channels of every weight of ``model``."""
    width = _check_width(width)
    small = WaveNet(slimmed_config(model.config, width)).to(model.arrays[0].rechannel.weight.device)
    for module, w, array in zip(small.arrays, model.weights_at(width), small.config.arrays, strict=True):
        module.rechannel.weight.copy_(w.rechannel)
        mid = array.mid_channels
        for j, layer in enumerate(module.layers):
            layer.conv.weight.copy_(w.conv_w[j])
            layer.conv.bias.copy_(w.conv_b[j])
            layer.input_mixer.weight.copy_(w.mixer_w[j * mid:(j + 1) * mid])
            layer.layer1x1.weight.copy_(w.out_w[j])
            layer.layer1x1.bias.copy_(w.out_b[j])
        module.head_rechannel.weight.copy_(w.head_w)
        if w.head_b is not None:
            module.head_rechannel.bias.copy_(w.head_b)
    return small.train(model.training)


@torch.no_grad()
def slim_lstm(model: LSTMStack, width: float) -> LSTMStack:
    """A smaller LSTMStack with the kept units' weights."""
    width = _check_width(width)
    config = model.config
    small = LSTMStack(LSTMConfig(layers=lstm_widths(config, width), conditioning=config.conditioning,
                                 n_knobs=config.n_knobs))
    small = small.to(model.dense.weight.device)
    weights = lstm_weights_at(model, width)
    for i, lstm in enumerate(small.lstms):
        entry = weights[i]
        lstm.weight_ih_l0.copy_(entry["w_ih"])
        lstm.weight_hh_l0.copy_(entry["w_hh"])
        lstm.bias_ih_l0.copy_(entry["b_ih"])
        lstm.bias_hh_l0.copy_(entry["b_hh"])
        if small.films:
            small.films[i].weight.copy_(entry["film_w"])
            small.films[i].bias.copy_(entry["film_b"])
    small.dense.weight.copy_(weights[-1]["dense_w"])
    small.dense.bias.copy_(weights[-1]["dense_b"])
    return small.train(model.training)


def slim(model: nn.Module, width: float) -> nn.Module:
    """A really smaller copy of ``model`` at ``width``, cut as its architecture cuts; full width equals it."""
    return _architecture(model).slim(model, _check_width(width))


def allowed_widths(model_or_config) -> tuple[float, ...]:
    """Every distinct width of the widest layer: k / c_max for k = 1 … c_max (the paper's c′ ∈ [1, c])."""
    config = getattr(model_or_config, "config", model_or_config)
    return registry.of(config).allowed_widths(config)


def sample_widths(
    widths: Sequence[float],
    rule: WidthRule = "uniform",
    generator: torch.Generator | None = None,
    count: int | None = None,
) -> list[float]:
    """The widths to train in one optimisation step.

    ``uniform``: ``count`` (default 1) widths drawn uniformly, with replacement, from ``widths``.
    ``sandwich``: the largest, then the smallest, then ``count − 2`` (default 2) drawn uniformly from
    the widths strictly between them (from all widths when there are none between). The largest
    comes first so its output can serve as the in-place distillation target.
    """
    if not widths:
        raise ConfigError("widths: expected at least one allowed width, found none")
    choices = sorted({_check_width(w) for w in widths})
    if rule == "uniform":
        count = 1 if count is None else count
        if count < 1:
            raise ConfigError(f"sample_widths: uniform rule needs count >= 1, found {count}")
        picks = torch.randint(len(choices), (count,), generator=generator)
        return [choices[int(i)] for i in picks]
    if rule == "sandwich":
        count = 4 if count is None else count
        if count < 2:
            raise ConfigError(f"sample_widths: sandwich rule needs count >= 2 (largest and smallest), found {count}")
        middle = choices[1:-1] or choices
        picks = torch.randint(len(middle), (count - 2,), generator=generator)
        return [choices[-1], choices[0]] + [middle[int(i)] for i in picks]
    raise ConfigError(f"width rule: expected 'uniform' or 'sandwich', found {rule!r}")


def inplace_distillation_loss(
    y: torch.Tensor, y_full: torch.Tensor, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """Loss of a slimmer width's output against the full-width output, which gets no gradient."""
    return loss_fn(y, y_full.detach())


def slimmable_loss(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    widths: Sequence[float],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    knobs: torch.Tensor | None = None,
    inplace_distillation: bool = False,
) -> tuple[torch.Tensor, dict[float, float]]:
    """Summed loss of one step over ``widths`` (as drawn by :func:`sample_widths`).

    x, target: (batch, time, 1). Full width always learns from ``target``. With in-place
    distillation the slimmer widths learn from the full-width output (detached) instead; when 1.0
    is not among ``widths`` that output is computed without gradient, as a target only. Returns the
    loss to back-propagate and each width's loss value.
    """
    widths = [_check_width(w) for w in widths]
    if not widths:
        raise ConfigError("slimmable_loss: expected at least one width, found none")
    teacher = None
    if inplace_distillation and any(w < 1.0 for w in widths) and 1.0 not in widths:
        with torch.no_grad():
            teacher = forward_at_width(model, x, knobs, width=1.0)[0]
    order = sorted(set(widths), reverse=True)  # full width first: it is the teacher
    outputs: dict[float, torch.Tensor] = {}
    values: dict[float, float] = {}
    total = None
    for w in order:
        y = forward_at_width(model, x, knobs, width=w)[0]
        outputs[w] = y
        if w == 1.0 and teacher is None:
            teacher = y
    for w in widths:
        y = outputs[w]
        if inplace_distillation and w < 1.0:
            loss = inplace_distillation_loss(y, teacher, loss_fn)
        else:
            loss = loss_fn(y, target)
        values[w] = float(loss.detach())
        total = loss if total is None else total + loss
    return total, values
