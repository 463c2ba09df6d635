"""Training losses: MAE, MSE, ESR, pre-emphasised ESR, DC, multi-resolution STFT and weighted sums.

All take ``prediction`` and ``target`` of shape (batch, time, 1) and return a scalar tensor.
The numpy definitions used to *report* errors live in ``common.audio_metrics``; these are their
differentiable training counterparts over a mini-batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import auraloss
import torch
import torch.nn.functional as F

from models.errors import ConfigError

_EPS = 1e-10


def mae(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (prediction - target).abs().mean()


def mse(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return ((prediction - target) ** 2).mean()


def esr(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Error-to-signal ratio Σe²/Σy² over the whole batch (not a mean of per-sample ratios)."""
    return ((target - prediction) ** 2).sum() / ((target**2).sum() + _EPS)


def pre_emphasis(signal: torch.Tensor, coefficient: float = 0.85) -> torch.Tensor:
    """First-order high-pass 1 − c·z⁻¹ along time from a zero state (as ``common.audio_metrics``);
    (batch, time, 1) → (batch, time, 1)."""
    previous = torch.cat([torch.zeros_like(signal[:, :1]), signal[:, :-1]], dim=1)
    return signal - coefficient * previous


def esr_pre(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """ESR after the 1 − 0.85 z⁻¹ pre-emphasis used by NAM and Wright et al."""
    return esr(pre_emphasis(prediction), pre_emphasis(target))


def dc(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """DC loss of Wright et al.: squared difference of the means over the mean target energy."""
    return ((target.mean(dim=1) - prediction.mean(dim=1)) ** 2).mean() / ((target**2).mean() + _EPS)


class _MRSTFT:
    """auraloss' multi-resolution STFT loss with its default resolutions, created once."""

    def __init__(self) -> None:
        self._loss = auraloss.freq.MultiResolutionSTFTLoss()

    def __call__(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self._loss(prediction.transpose(1, 2), target.transpose(1, 2))


LOSSES: dict[str, Callable[[], Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]] = {
    "mae": lambda: mae,
    "mse": lambda: mse,
    "esr": lambda: esr,
    "esr_pre": lambda: esr_pre,
    "dc": lambda: dc,
    "mrstft": _MRSTFT,
}


class WeightedLoss:
    """Σ weight · loss over the named terms, e.g. ``{"esr_pre": 1.0, "dc": 1.0, "mrstft": 2e-4}``."""

    def __init__(self, weights: Mapping[str, float]):
        if not weights:
            raise ConfigError("training.loss: expected at least one term, found none")
        unknown = sorted(set(weights) - set(LOSSES))
        if unknown:
            raise ConfigError(
                f"training.loss: unknown term {unknown[0]!r} (known: {', '.join(sorted(LOSSES))})"
            )
        for name, weight in weights.items():
            # A negative weight turns minimising the loss into maximising that error.
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) \
                    or weight < 0:
                raise ConfigError(f"training.loss.{name}: expected a weight >= 0, found {weight!r}")
        self.terms = {name: (float(w), LOSSES[name]()) for name, w in weights.items() if w != 0}

    def __call__(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total = prediction.new_zeros(())
        for weight, fn in self.terms.values():
            total = total + weight * fn(prediction, target)
        return total


def temporal_softmax_kl(
    student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """The paper's feature loss: KL(teacher ‖ student) of softmaxes over the *time* axis.

    student, teacher: (batch, time, channels). Each channel's activations over the window become
    a distribution over time; the KL is summed over time, averaged over batch and channels and
    scaled by temperature² (Hinton et al.) so its gradient does not shrink with the temperature.
    """
    log_p_student = F.log_softmax(student / temperature, dim=1)
    log_p_teacher = F.log_softmax(teacher / temperature, dim=1)
    kl = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(dim=1)
    return kl.mean() * temperature**2


def feature_distance(student: torch.Tensor, teacher: torch.Tensor, kind: str) -> torch.Tensor:
    """L1, MSE or (1 − cosine similarity over channels) between (batch, time, channels) features."""
    if kind == "l1":
        return (student - teacher).abs().mean()
    if kind == "mse":
        return ((student - teacher) ** 2).mean()
    if kind == "cosine":
        return (1.0 - F.cosine_similarity(student, teacher, dim=-1, eps=1e-8)).mean()
    raise ConfigError(f"distill.feature_loss: unknown kind {kind!r} (known: kl, l1, mse, cosine)")
