"""NAM's activation functions, as NeuralAmpModelerCore's ``activations.h`` computes them.

A ``.nam`` file names an activation by a string (``"Tanh"``) or an object with a ``type`` and that
type's parameters (``{"type": "PReLU", "negative_slopes": [0.04, 0.05]}``); :class:`NamActivation`
holds one, and :data:`ACTIVATIONS` maps every type NAM's engine knows to its torch implementation.
Each is written in NAM's own float formula (``leaky_relu`` is ``x > 0 ? x : slope·x``, ``Fasttanh``
is NAM's rational approximation, ...), so a network applies exactly what the engine applies.
Tensors are channel-major: ``(batch, channels, time)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from models.errors import ConfigError


@dataclass(frozen=True)
class NamActivation:
    """One activation of a NAM network: its ``type`` and that type's parameters.

    ``negative_slope`` is LeakyReLU's slope (0.01 by default) or PReLU's single slope;
    ``negative_slopes`` PReLU's per-channel slopes; ``min_val``/``max_val``/``min_slope``/``max_slope``
    LeakyHardtanh's knees and outer slopes (NAM's defaults -1, 1, 0.01, 0.01).
    """

    type: str
    negative_slope: float | None = None
    negative_slopes: tuple[float, ...] | None = None
    min_val: float = -1.0
    max_val: float = 1.0
    min_slope: float = 0.01
    max_slope: float = 0.01

    def __post_init__(self) -> None:
        if self.type not in ACTIVATIONS:
            raise ConfigError(f"NAM activation: expected one of {sorted(ACTIVATIONS)}, found {self.type!r}")
        if self.negative_slopes is not None and not self.negative_slopes:
            raise ConfigError("NAM activation PReLU: negative_slopes must not be empty")

    def fits(self, channels: int) -> bool:
        """Whether the activation can be applied to ``channels`` channels (PReLU's slopes: one per channel)."""
        return self.negative_slopes is None or len(self.negative_slopes) in (1, channels)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, channels, time) → the same shape."""
        return ACTIVATIONS[self.type](self, x)


def _leaky(x: torch.Tensor, slope: float | torch.Tensor) -> torch.Tensor:
    return torch.where(x > 0, x, x * slope)


def _prelu(a: NamActivation, x: torch.Tensor) -> torch.Tensor:
    if a.negative_slopes is not None:
        if len(a.negative_slopes) == 1:
            return _leaky(x, a.negative_slopes[0])
        if len(a.negative_slopes) != x.shape[1]:
            raise ConfigError(f"NAM PReLU: {len(a.negative_slopes)} slopes for {x.shape[1]} channels")
        slopes = torch.tensor(a.negative_slopes, dtype=x.dtype, device=x.device)[:, None]
        return _leaky(x, slopes)
    return _leaky(x, 0.01 if a.negative_slope is None else a.negative_slope)


def _fast_tanh(x: torch.Tensor) -> torch.Tensor:
    ax = x.abs()
    x2 = x * x
    return (x * (2.45550750702956 + 2.45550750702956 * ax + (0.893229853513558 + 0.821226666969744 * ax) * x2)
            / (2.44506634652299 + (2.44506634652299 + x2) * (x + 0.814642734961073 * x * ax).abs()))


def _sigmoid(x: torch.Tensor) -> torch.Tensor:
    return 1.0 / (1.0 + torch.exp(-x))


def _hardswish(x: torch.Tensor) -> torch.Tensor:
    return x * (x + 3.0).clamp(0.0, 6.0) * (1.0 / 6.0)


def _leaky_hardtanh(a: NamActivation, x: torch.Tensor) -> torch.Tensor:
    below = (x - a.min_val) * a.min_slope + a.min_val
    above = (x - a.max_val) * a.max_slope + a.max_val
    return torch.where(x < a.min_val, below, torch.where(x > a.max_val, above, x))


ACTIVATIONS: dict[str, Callable[[NamActivation, torch.Tensor], torch.Tensor]] = {
    "Tanh": lambda a, x: torch.tanh(x),
    "Hardtanh": lambda a, x: x.clamp(-1.0, 1.0),
    "Fasttanh": lambda a, x: _fast_tanh(x),
    "ReLU": lambda a, x: torch.where(x > 0, x, torch.zeros_like(x)),
    "LeakyReLU": lambda a, x: _leaky(x, 0.01 if a.negative_slope is None else a.negative_slope),
    "PReLU": _prelu,
    "Sigmoid": lambda a, x: _sigmoid(x),
    "SiLU": lambda a, x: x * _sigmoid(x),
    "Hardswish": lambda a, x: _hardswish(x),
    "LeakyHardtanh": _leaky_hardtanh,
    "Softsign": lambda a, x: x / (1.0 + x.abs()),
}
"""Every activation type NAM's engine knows (``activations.h``), by its ``.nam`` name."""

ACTIVATION_PARAMETERS: dict[str, tuple[str, ...]] = {
    "LeakyReLU": ("negative_slope",),
    "PReLU": ("negative_slope", "negative_slopes"),
    "LeakyHardtanh": ("min_val", "max_val", "min_slope", "max_slope"),
}
"""The parameters NAM reads from an activation object, per type (the others take none)."""

ALIASES = {"LeakyHardTanh": "LeakyHardtanh"}
"""Other spellings NAM's engine accepts."""
