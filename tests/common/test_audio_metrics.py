"""Objective metrics against hand calculations and independent implementations."""

import logging
import math

import numpy as np
import pytest
import scipy.signal

from common import audio_metrics as metrics
from common.audio_metrics import MetricInputError
from common.errors import EarshotError

SAMPLE_RATE = 48_000


def _noise(seed: int, n: int = 8000, scale: float = 0.3) -> np.ndarray:
    return scale * np.random.default_rng(seed).standard_normal(n)


def _sine(freq_hz: float, duration_s: float, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(duration_s * SAMPLE_RATE)) / SAMPLE_RATE
    return amplitude * np.sin(2 * np.pi * freq_hz * t)


# ---------------------------------------------------------------- hand calculations
PRED = np.array([1.0, 2.0, 3.0, 4.0])
TARG = np.array([2.0, 2.0, 2.0, 2.0])


def test_mae_mse_by_hand():
    # errors y − ŷ = [1, 0, −1, −2]
    assert metrics.mae(PRED, TARG) == pytest.approx(4 / 4)
    assert metrics.mse(PRED, TARG) == pytest.approx(6 / 4)


def test_esr_is_ratio_of_sums_not_mean_of_ratios():
    # Σe² = 6, Σy² = 16
    assert metrics.esr(PRED, TARG) == pytest.approx(6 / 16)
    # A target with very different sample magnitudes separates the two definitions.
    pred = np.array([0.0, 10.0])
    targ = np.array([0.1, 10.0])
    assert metrics.esr(pred, targ) == pytest.approx(0.01 / 100.01)


def test_esr_pre_by_hand():
    # y = [1, 1] → [1, 0.15]; ŷ = [1, 0] → [1, −0.85]; e = [0, 1]; Σy² = 1.0225
    assert metrics.esr_pre([1.0, 0.0], [1.0, 1.0]) == pytest.approx(1 / 1.0225)
    # coefficient 0 is the plain ESR
    assert metrics.esr_pre(PRED, TARG, coefficient=0.0) == pytest.approx(6 / 16)


def test_dc_error_by_hand():
    # mean y = 2, mean ŷ = 2.5, mean y² = 4 → 0.25 / 4
    assert metrics.dc_error(PRED, TARG) == pytest.approx(0.0625)
    # Zero-mean error has no DC error, whatever its size.
    assert metrics.dc_error(TARG + np.array([1.0, -1.0, 1.0, -1.0]), TARG) == 0.0


def test_snr_by_hand():
    assert metrics.snr_db(PRED, TARG) == pytest.approx(10 * math.log10(16 / 6))


def test_si_sdr_by_hand():
    # α = 1, projection [1, 0], distortion [0, 1] → 0 dB
    assert metrics.si_sdr_db([1.0, 1.0], [1.0, 0.0]) == pytest.approx(0.0, abs=1e-12)
    # α = 2, projection [2, 0], distortion [0, 1] → 10·log10(4)
    assert metrics.si_sdr_db([2.0, 1.0], [1.0, 0.0]) == pytest.approx(10 * math.log10(4))


def test_si_sdr_against_independent_formula():
    # Le Roux et al. eq. (1) written as an SNR between target projection and residual via
    # the cosine: SI-SDR = 10·log10(cos² / (1 − cos²)).
    pred, targ = _noise(1) + _noise(2), _noise(2)
    cos = np.dot(pred, targ) / (np.linalg.norm(pred) * np.linalg.norm(targ))
    expected = 10 * np.log10(cos**2 / (1 - cos**2))
    assert metrics.si_sdr_db(pred, targ) == pytest.approx(expected, rel=1e-9)


# ---------------------------------------------------------------- identity and invariance
def test_identity_gives_zero_errors_and_infinite_ratios():
    x = _noise(3, 30_000)
    results = metrics.compute_all(x, x, SAMPLE_RATE)
    for name in (
        "mae",
        "mse",
        "esr",
        "esr_pre",
        "dc_error",
        "spectral_convergence",
        "log_spectral_distance_db",
        "mrstft",
        "loudness_difference_lu",
    ):
        assert results[name] == 0.0, name
    assert results["snr_db"] == math.inf
    assert results["si_sdr_db"] == math.inf


@pytest.mark.parametrize("scale", [1e-3, 0.5, 3.0, 1e4])
def test_si_sdr_is_invariant_to_scaling_the_prediction(scale):
    pred, targ = _noise(4) + 0.5 * _noise(5), _noise(4)
    assert metrics.si_sdr_db(scale * pred, targ) == pytest.approx(
        metrics.si_sdr_db(pred, targ), rel=1e-9
    )
    # ...while SNR is not
    assert metrics.snr_db(scale * pred, targ) != pytest.approx(metrics.snr_db(pred, targ))


def test_esr_is_invariant_to_scaling_both_signals():
    pred, targ = _noise(6), _noise(7)
    assert metrics.esr(5 * pred, 5 * targ) == pytest.approx(metrics.esr(pred, targ))


def test_zero_target_guard():
    zeros = np.zeros(16)
    assert metrics.esr(zeros, zeros) == 0.0
    assert metrics.dc_error(zeros, zeros) == 0.0
    assert math.isfinite(metrics.esr(np.ones(16), zeros))
    assert metrics.esr(np.ones(16), zeros) > 1e9
    with pytest.raises(MetricInputError, match="all-zero target"):
        metrics.si_sdr_db(np.ones(16), zeros)


# ---------------------------------------------------------------- independent implementations
def _scipy_magnitudes(x: np.ndarray) -> np.ndarray:
    _, _, spec = scipy.signal.stft(
        x, window="hann", nperseg=2048, noverlap=2048 - 512, boundary="even", padded=False
    )
    return np.abs(spec)


def test_spectral_convergence_against_scipy_stft():
    pred, targ = _noise(8, 20_000), _noise(9, 20_000) + _noise(8, 20_000)
    p, t = _scipy_magnitudes(pred), _scipy_magnitudes(targ)
    expected = np.linalg.norm(t - p) / np.linalg.norm(t)
    assert metrics.spectral_convergence(pred, targ) == pytest.approx(expected, rel=1e-9)


def test_log_spectral_distance_against_scipy_stft():
    pred, targ = _noise(10, 20_000), _noise(11, 20_000)
    p, t = _scipy_magnitudes(pred) ** 2, _scipy_magnitudes(targ) ** 2  # (bins, frames)
    expected = np.mean(np.sqrt(np.mean((10 * np.log10(t / p)) ** 2, axis=0)))
    assert metrics.log_spectral_distance_db(pred, targ) == pytest.approx(expected, rel=1e-9)


def test_log_spectral_distance_of_a_gain_is_the_gain_in_db():
    x = _noise(12, 20_000)
    # every bin differs by exactly 20·log10(2) dB
    assert metrics.log_spectral_distance_db(2 * x, x) == pytest.approx(20 * math.log10(2), rel=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mrstft_agrees_with_auraloss(seed):
    torch = pytest.importorskip("torch")
    auraloss = pytest.importorskip("auraloss")
    rng = np.random.default_rng(seed)
    n = 6000 + 1000 * seed
    targ = rng.standard_normal(n) * 0.2
    pred = targ + rng.standard_normal(n) * 0.05 * (seed + 1)
    loss = auraloss.freq.MultiResolutionSTFTLoss()
    expected = float(
        loss(
            torch.tensor(pred, dtype=torch.float32).view(1, 1, -1),
            torch.tensor(targ, dtype=torch.float32).view(1, 1, -1),
        )
    )
    assert metrics.mrstft(pred, targ) == pytest.approx(expected, rel=1e-4)


def test_mrstft_agrees_with_auraloss_on_a_sine_against_silence_padded_signal():
    # Near-silent regions exercise the 1e-8 magnitude floor.
    torch = pytest.importorskip("torch")
    auraloss = pytest.importorskip("auraloss")
    targ = np.concatenate([np.zeros(3000), _sine(440.0, 0.1)])
    pred = np.concatenate([np.zeros(3000), 0.8 * _sine(440.0, 0.1)])
    expected = float(
        auraloss.freq.MultiResolutionSTFTLoss()(
            torch.tensor(pred, dtype=torch.float32).view(1, 1, -1),
            torch.tensor(targ, dtype=torch.float32).view(1, 1, -1),
        )
    )
    assert metrics.mrstft(pred, targ) == pytest.approx(expected, rel=1e-3)


def test_loudness_difference_of_doubled_sine_is_6_02_lu():
    targ = _sine(997.0, 1.0, amplitude=0.1)
    assert metrics.loudness_difference_lu(2 * targ, targ, SAMPLE_RATE) == pytest.approx(
        20 * math.log10(2), abs=1e-6
    )


# ---------------------------------------------------------------- compute_all and input errors
def test_compute_all_keys_and_values_match_single_metrics():
    pred, targ = _noise(13, 24_000), _noise(14, 24_000)
    results = metrics.compute_all(pred, targ, SAMPLE_RATE)
    assert list(results) == [
        "mae",
        "mse",
        "esr",
        "esr_pre",
        "dc_error",
        "snr_db",
        "si_sdr_db",
        "spectral_convergence",
        "log_spectral_distance_db",
        "mrstft",
        "loudness_difference_lu",
    ]
    assert all(type(v) is float for v in results.values())
    assert results["esr"] == metrics.esr(pred, targ)
    assert results["mrstft"] == metrics.mrstft(pred, targ)
    assert results["loudness_difference_lu"] == metrics.loudness_difference_lu(
        pred, targ, SAMPLE_RATE
    )


def test_compute_all_short_signal_gives_nan_loudness_with_warning(caplog):
    n = int(0.3 * SAMPLE_RATE)
    pred, targ = _noise(15, n), _noise(16, n)
    with caplog.at_level(logging.WARNING, logger="common.audio_metrics"):
        results = metrics.compute_all(pred, targ, SAMPLE_RATE)
    assert math.isnan(results["loudness_difference_lu"])
    assert math.isfinite(results["mrstft"])
    assert "loudness_difference_lu" in caplog.text
    with pytest.raises(MetricInputError, match="0.4 s"):
        metrics.loudness_difference_lu(pred, targ, SAMPLE_RATE)


@pytest.mark.parametrize(
    "pred, targ, message",
    [
        (np.zeros(5), np.zeros(6), "equal length"),
        (np.zeros((2, 5)), np.zeros((2, 5)), "1-D"),
        (np.zeros(0), np.zeros(0), "non-empty"),
        (np.array([0.0, np.nan]), np.zeros(2), "prediction at sample 1"),
    ],
)
def test_bad_inputs_raise_value_errors(pred, targ, message):
    for fn in (metrics.mae, metrics.esr, metrics.si_sdr_db):
        with pytest.raises(MetricInputError, match=message) as info:
            fn(pred, targ)
        assert isinstance(info.value, ValueError)
        assert isinstance(info.value, EarshotError)


def test_bad_sample_rate_is_rejected():
    x = _noise(17, 30_000)
    with pytest.raises(MetricInputError, match="sample rate"):
        metrics.compute_all(x, x, 0)
    with pytest.raises(MetricInputError, match="sample rate"):
        metrics.loudness_difference_lu(x, x, float("nan"))

