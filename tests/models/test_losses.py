"""Training losses against hand calculations and independent formulas."""

import numpy as np
import pytest
import torch

from common import audio_metrics as metrics
from models.errors import ConfigError
from models.training.losses import (
    WeightedLoss,
    dc,
    esr,
    esr_pre,
    feature_distance,
    mae,
    temporal_softmax_kl,
)


def t(values):
    return torch.tensor(values, dtype=torch.float64)[None, :, None]


def test_hand_values():
    y = t([1.0, -1.0, 2.0, 0.0])
    p = t([0.0, -1.0, 1.0, 1.0])
    assert float(mae(p, y)) == pytest.approx(3 / 4)
    # errors 1, 0, 1, -1 → Σe² = 3; Σy² = 6
    assert float(esr(p, y)) == pytest.approx(0.5)
    # pre-emphasis from a zero state: y → [1, -1.85, 2.85, -1.7]; p → [0, -1, 1.85, 0.15]
    expected = (1 + 0.85**2 + 1 + 1.85**2) / (1 + 1.85**2 + 2.85**2 + 1.7**2)
    assert float(esr_pre(p, y)) == pytest.approx(expected)
    # means 0.5 and 0.25: (0.25)² / mean(y²) = 0.0625 / 1.5
    assert float(dc(p, y)) == pytest.approx(0.0625 / 1.5)


def test_training_losses_agree_with_the_reported_metrics():
    rng = np.random.default_rng(3)
    y = rng.standard_normal(4000)
    p = y + 0.1 * rng.standard_normal(4000)
    assert float(esr(t(p), t(y))) == pytest.approx(metrics.esr(p, y), rel=1e-9)
    assert float(esr_pre(t(p), t(y))) == pytest.approx(metrics.esr_pre(p, y), rel=1e-9)


def test_weighted_sum_and_unknown_terms():
    y = t([1.0, -1.0, 2.0, 0.0])
    p = t([0.0, -1.0, 1.0, 1.0])
    assert float(WeightedLoss({"mae": 2.0, "esr": 1.0})(p, y)) == pytest.approx(2 * 0.75 + 0.5)
    with pytest.raises(ConfigError, match="'l3'"):
        WeightedLoss({"l3": 1.0})


def test_mrstft_term_is_auraloss():
    import auraloss

    torch.manual_seed(0)
    y = torch.randn(2, 8192, 1)
    p = y + 0.3 * torch.randn(2, 8192, 1)
    ours = WeightedLoss({"mrstft": 1.0})(p, y)
    theirs = auraloss.freq.MultiResolutionSTFTLoss()(p.transpose(1, 2), y.transpose(1, 2))
    assert float(ours) == pytest.approx(float(theirs))


def test_temporal_softmax_kl_by_hand():
    # One example, one channel, two time steps: softmax over time.
    teacher = torch.tensor([[[0.0], [1.0]]])
    student = torch.tensor([[[0.0], [0.0]]])
    p = np.exp([0.0, 1.0]) / np.exp([0.0, 1.0]).sum()
    q = np.array([0.5, 0.5])
    expected = float((p * np.log(p / q)).sum())
    assert float(temporal_softmax_kl(student, teacher)) == pytest.approx(expected)
    # temperature 2: distributions of x/2, scaled by 2²
    p2 = np.exp([0.0, 0.5]) / np.exp([0.0, 0.5]).sum()
    assert float(temporal_softmax_kl(student, teacher, 2.0)) == pytest.approx(4 * float((p2 * np.log(p2 / q)).sum()))
    assert float(temporal_softmax_kl(teacher, teacher)) == pytest.approx(0.0, abs=1e-7)


def test_feature_distances():
    a = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])
    b = torch.tensor([[[0.0, 1.0], [0.0, 4.0]]])
    assert float(feature_distance(a, b, "l1")) == pytest.approx((1 + 1 + 0 + 2) / 4)
    assert float(feature_distance(a, b, "mse")) == pytest.approx((1 + 1 + 0 + 4) / 4)
    # cosine: step 0 orthogonal (1 − 0), step 1 parallel (1 − 1)
    assert float(feature_distance(a, b, "cosine")) == pytest.approx(0.5)
    with pytest.raises(ConfigError):
        feature_distance(a, b, "kl2")
