"""Knowledge distillation: feature alignment, response KD and cluster-balanced window sampling.

The teacher runs on exactly the windows (with the same warm-up) the student trains on — not on
the whole file as in the paper's code, where teacher features carried a state the stateless
student windows could never see. Window positions are fixed, so the teacher's outputs are
computed once and cached.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from scipy.cluster.vq import kmeans2
from torch import nn

from models.data.windows import Windows
from models.errors import ConfigError
from models.nets.architectures import of
from models.training.losses import feature_distance, temporal_softmax_kl

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistillConfig:
    """How a student learns from a teacher (the ``kd`` recipe's options).

    ``student_layer`` / ``teacher_layer`` index LSTM layers (negative from the end); the default
    aligns the student's second LSTM with the teacher's last, as the paper does (a one-layer NAM
    LSTM student has only ``-1``: its LSTM output, which its head reads). ``feature_loss``
    ``kl`` is the paper's temporal-softmax KL; ``l1``/``mse``/``cosine`` compare features through a
    learned linear projection (student units → teacher units) that is dropped after training.
    Total loss = task loss + ``alpha`` · feature loss + ``response_alpha`` · task loss against the
    teacher's output.
    """

    student_layer: int = 1
    teacher_layer: int = -1
    feature_loss: Literal["kl", "l1", "mse", "cosine"] = "kl"
    temperature: float = 1.0
    alpha: float = 1.0
    projection: bool | None = None
    response_alpha: float = 0.0
    balanced_sampling: bool = False
    clusters: int = 8
    cache_limit_mb: float = 2048.0

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ConfigError(f"distill.temperature: expected > 0, found {self.temperature}")
        # Negative weights would make the student move away from its teacher.
        for name in ("alpha", "response_alpha"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"distill.{name}: expected a weight >= 0, found {getattr(self, name)}")
        if not self.cache_limit_mb >= 0:
            raise ConfigError(f"distill.cache_limit_mb: expected >= 0, found {self.cache_limit_mb}")
        if self.clusters < 2:
            raise ConfigError(f"distill.clusters: expected >= 2, found {self.clusters}")

    def uses_projection(self) -> bool:
        """Projection defaults to on for l1/mse/cosine and off for the paper's KL."""
        return self.feature_loss != "kl" if self.projection is None else self.projection


def aligned_units(config: DistillConfig, student, teacher) -> tuple[int, int]:
    """Units of the student's and the teacher's aligned layers (network configs of distillable
    architectures); ConfigError for a layer a network does not have, or for sizes that differ
    without a projection head."""
    for who, net in (("student", student), ("teacher", teacher)):
        if not of(net).distillable:
            raise ConfigError(f"distill: the {who} {of(net).label(net)} (arch {net.arch!r}) has no LSTM features "
                              "to align")
    try:
        s_units = of(student).feature_size(student, config.student_layer)
    except ConfigError as exc:
        raise ConfigError(f"distill.student_layer: {exc}") from None
    try:
        t_units = of(teacher).feature_size(teacher, config.teacher_layer)
    except ConfigError as exc:
        raise ConfigError(f"distill.teacher_layer: {exc}") from None
    if not config.uses_projection() and s_units != t_units:
        raise ConfigError(
            f"distill: student layer {config.student_layer} has {s_units} units but teacher layer "
            f"{config.teacher_layer} has {t_units}; set projection: true (or feature_loss: l1, mse or cosine) "
            "to align them through a projection head")
    return s_units, t_units


class FeatureAligner(nn.Module):
    """Maps student features to the teacher's space (or passes them through) and scores them."""

    def __init__(self, config: DistillConfig, student, teacher):
        """student, teacher: network configs of a distillable architecture."""
        super().__init__()
        self.config = config
        s_units, t_units = aligned_units(config, student, teacher)
        if config.uses_projection():
            self.projection: nn.Module = nn.Linear(s_units, t_units)
        else:
            self.projection = nn.Identity()

    def forward(self, student_features: torch.Tensor, teacher_features: torch.Tensor) -> torch.Tensor:
        """student_features: (batch, time, s_units); teacher_features: (batch, time, t_units)."""
        mapped = self.projection(student_features)
        if self.config.feature_loss == "kl":
            return temporal_softmax_kl(mapped, teacher_features, self.config.temperature)
        return feature_distance(mapped, teacher_features, self.config.feature_loss)


@dataclass
class TeacherTargets:
    """The teacher's outputs on the training windows, warm-up removed.

    features: (count, window, t_units); outputs: (count, window, 1). Either is computed per batch
    instead of cached when the cache would exceed ``cache_limit_mb``.
    """

    teacher: nn.Module
    layer: int
    windows: Windows
    features: torch.Tensor | None
    outputs: torch.Tensor | None

    def get(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.features is not None:
            return self.features[index], self.outputs[index]
        feats, outs = _teacher_pass(self.teacher, self.layer, self.windows, index)
        return feats, outs


def _teacher_pass(teacher: nn.Module, layer: int, windows: Windows, index: torch.Tensor):
    warm = windows.warmup_samples
    knobs = windows.knobs[index] if windows.knobs.shape[1] else None
    with torch.inference_mode():
        y, _, feats = teacher(windows.inputs[index], knobs, return_features=True)
    return feats[layer][:, warm:].clone(), y[:, warm:].clone()


def teacher_targets(
    teacher: nn.Module, config: DistillConfig, windows: Windows, batch_size: int = 64
) -> TeacherTargets:
    """Run the teacher over all windows once when the cache fits in ``cache_limit_mb``."""
    teacher.eval()
    t_units = of(teacher.config).feature_size(teacher.config, config.teacher_layer)
    window = windows.inputs.shape[1] - windows.warmup_samples
    cache_mb = len(windows) * window * (t_units + 1) * 4 / 2**20
    if cache_mb > config.cache_limit_mb:
        log.info("teacher cache would take %.0f MB (> %.0f MB): computing per batch", cache_mb, config.cache_limit_mb)
        return TeacherTargets(teacher, config.teacher_layer, windows, None, None)
    feats, outs = [], []
    for begin in range(0, len(windows), batch_size):
        index = torch.arange(begin, min(begin + batch_size, len(windows)))
        f, o = _teacher_pass(teacher, config.teacher_layer, windows, index)
        feats.append(f)
        outs.append(o)
    log.info("cached teacher outputs for %d windows (%.0f MB)", len(windows), cache_mb)
    return TeacherTargets(teacher, config.teacher_layer, windows, torch.cat(feats), torch.cat(outs))


def window_embeddings(targets: TeacherTargets) -> np.ndarray:
    """Per-window teacher embedding: mean and standard deviation of each feature unit over time.

    Returns (count, 2 · t_units).
    """
    rows = []
    for begin in range(0, len(targets.windows), 256):
        index = torch.arange(begin, min(begin + 256, len(targets.windows)))
        feats, _ = targets.get(index)
        rows.append(torch.cat([feats.mean(dim=1), feats.std(dim=1)], dim=1).numpy())
    return np.concatenate(rows).astype(np.float64)


def balanced_weights(embeddings: np.ndarray, clusters: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """k-means on standardised embeddings; each window's weight ∝ 1 / its cluster's size.

    Returns (weights summing to 1, cluster label per window). Rare regimes (a cluster of quiet
    passages, say) are then drawn as often in total as common ones.
    """
    k = min(clusters, embeddings.shape[0])
    z = (embeddings - embeddings.mean(axis=0)) / (embeddings.std(axis=0) + 1e-12)
    _, labels = kmeans2(z, k, seed=np.random.default_rng(seed), minit="++")
    sizes = np.bincount(labels, minlength=k)
    weights = 1.0 / sizes[labels]
    return weights / weights.sum(), labels
