"""The residual LSTM stack as a registered architecture (``arch: lstm``, the default)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from models.errors import ConfigError
from models.nets.lstm import (
    LSTMConfig,
    LSTMStack,
    feature_size,
    lstm_parameter_estimate,
    macs_per_sample,
)
from models.nets.registry import Architecture, register
from models.nets.slimmable import lstm_forward_at_width, lstm_widths, slim_lstm


class LSTMArchitecture(Architecture):
    """Stacked LSTMs → dense(1) + the input sample; sized by ``layers``, slimmable by units,
    distillable layer by layer. NAM has no such network (its LSTM has no input skip), so there is
    no ``.nam`` export: the refusal names the study entry of a NAM-shaped student (``nam_lstm``)."""

    name: ClassVar[str] = "lstm"
    config_class: ClassVar[type] = LSTMConfig
    student_keys: ClassVar[tuple[str, ...]] = ("layers",)
    legacy_keys: ClassVar[dict[str, Any]] = {"preset": None, "width": 1.0}
    slimmable: ClassVar[bool] = True
    distillable: ClassVar[bool] = True
    recurrent: ClassVar[bool] = True
    streaming_engine: ClassVar[str] = "lstm_stack"

    def student(self, keys: dict[str, Any], conditioning: str, where: str) -> LSTMConfig:
        if not keys.get("layers"):
            raise ConfigError("student: an lstm student needs layers, e.g. [16, 8]")
        return super().student(keys, conditioning, where)

    def student_config(self, keys: dict[str, Any], conditioning: str, where: str) -> LSTMConfig:
        return super().student_config({**keys, "conditioning": conditioning}, conditioning, where)

    def build(self, config: LSTMConfig) -> LSTMStack:
        return LSTMStack(config)

    def label(self, config: LSTMConfig) -> str:
        return config.label

    def size_label(self, config: LSTMConfig) -> str:
        return config.size_label

    def macs_per_sample(self, config: LSTMConfig) -> int:
        return macs_per_sample(config)

    def parameter_count(self, config: LSTMConfig) -> int:
        return lstm_parameter_estimate(config)

    def feature_size(self, config: LSTMConfig, layer: int) -> int:
        return feature_size(config, layer)

    def allowed_widths(self, config: LSTMConfig) -> tuple[float, ...]:
        widest = max(config.layers)
        return tuple(k / widest for k in range(1, widest + 1))

    def slimmed_config(self, config: LSTMConfig, width: float) -> LSTMConfig:
        return LSTMConfig(layers=lstm_widths(config, width), conditioning=config.conditioning, n_knobs=config.n_knobs)

    def slim(self, model: nn.Module, width: float) -> nn.Module:
        return slim_lstm(model, width)

    def nam_document(self, model: nn.Module, sample_rate: float, width: float | None) -> tuple[str, dict, list, nn.Module]:
        config = model.config
        reasons = ["it adds its input to its output (NAM's LSTM output is head·h + bias, with no input skip)"]
        if len(set(config.layers)) > 1:
            reasons.append(f"its layers differ in size {list(config.layers)} (NAM stacks layers of one hidden_size)")
        if config.n_knobs:
            reasons.append(f"it takes {config.n_knobs} knob value(s) (NAM's LSTM takes audio only)")
        without_knobs = " on a dataset without knobs" if config.n_knobs else ""
        raise ConfigError(
            f"cannot export {config.label} as a .nam LSTM: " + "; ".join(reasons)
            + f". Train a NAM-shaped student instead{without_knobs}: `{{arch: nam_lstm, hidden_size: "
            f"{max(config.layers)}}}` in the study's students (every recipe applies to it), then export "
            "its run with --format nam")

    def forward_at_width(self, model: nn.Module, x: torch.Tensor, knobs: torch.Tensor | None, state: Any,
                         return_features: bool, width: float) -> Any:
        return lstm_forward_at_width(model, x, knobs, state, return_features, width)


LSTM = register(LSTMArchitecture())
