"""Objective metrics between a rendered signal and its target — one definition of each.

A leaf module: it imports numpy, scipy and pyloudnorm only, so the model zoo can import it to score
renders and the analysis can score stimuli, with the same numbers. Signals a metric cannot score are
a :class:`MetricInputError` (an :class:`~common.errors.EarshotError` and a ``ValueError``).

Every metric takes two 1-D float arrays ``prediction`` (ŷ, shape ``(samples,)``) and ``target``
(y, shape ``(samples,)``) of equal length and returns a Python ``float``. Conventions:

- errors (``mae``, ``mse``, ``esr``, ``esr_pre``, ``dc_error``, ``spectral_convergence``,
  ``log_spectral_distance_db``, ``mrstft``) are 0 for ``prediction == target``;
- ratios in decibels (``snr_db``, ``si_sdr_db``) are ``inf`` for ``prediction == target``;
- ``loudness_difference_lu`` is prediction minus target, in LU (BS.1770 integrated loudness).

No mean is removed before any metric: a DC offset is a real error of an audio effect.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Callable

import numpy as np
import pyloudnorm
import scipy.signal

from .errors import EarshotError

log = logging.getLogger(__name__)


class MetricInputError(EarshotError, ValueError):
    """Signals given to an objective metric have the wrong shape, length, values or sample rate."""


__all__ = [
    "METRIC_NAMES",
    "MetricInputError",
    "compute_all",
    "dc_error",
    "esr",
    "esr_pre",
    "log_spectral_distance_db",
    "loudness_difference_lu",
    "mae",
    "mrstft",
    "mse",
    "si_sdr_db",
    "snr_db",
    "spectral_convergence",
]

#: Keys of :func:`compute_all`, in report order.
METRIC_NAMES = (
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
)

# Replaces a denominator that is exactly zero (an all-zero target); never added to a non-zero one,
# so ordinary values are the textbook ratios.
_ZERO_GUARD = 1e-12

# STFT used by spectral_convergence and log_spectral_distance_db (≈43 ms frames at 48 kHz).
_SPECTRAL_FFT_SIZE = 2048
_SPECTRAL_HOP_SIZE = 512
# Power floor (−100 dB re full scale) so silent frames compare equal instead of producing log(0).
_LSD_POWER_FLOOR = 1e-10

# auraloss.freq.MultiResolutionSTFTLoss() defaults (auraloss 0.4).
_MRSTFT_FFT_SIZES = (1024, 2048, 512)
_MRSTFT_HOP_SIZES = (120, 240, 50)
_MRSTFT_WIN_LENGTHS = (600, 1200, 240)
_MRSTFT_EPS = 1e-8

# BS.1770 gating block length, pyloudnorm's default.
_LOUDNESS_BLOCK_S = 0.4


def _validate(prediction, target) -> tuple[np.ndarray, np.ndarray]:
    """Return both signals as float64 arrays of shape (samples,), or raise MetricInputError."""
    pred = np.asarray(prediction, dtype=np.float64)
    targ = np.asarray(target, dtype=np.float64)
    if pred.ndim != 1 or targ.ndim != 1:
        raise MetricInputError(
            f"expected 1-D signals of shape (samples,), found prediction shape {pred.shape} "
            f"and target shape {targ.shape}"
        )
    if pred.shape != targ.shape:
        raise MetricInputError(
            f"expected prediction and target of equal length, found {pred.shape[0]} and "
            f"{targ.shape[0]} samples"
        )
    if pred.size == 0:
        raise MetricInputError("expected non-empty signals, found 0 samples")
    for name, signal in (("prediction", pred), ("target", targ)):
        if not np.all(np.isfinite(signal)):
            bad = int(np.flatnonzero(~np.isfinite(signal))[0])
            raise MetricInputError(
                f"expected finite samples, found {signal[bad]} in {name} at sample {bad}"
            )
    return pred, targ


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / (denominator if denominator > 0 else _ZERO_GUARD))


def mae(prediction, target) -> float:
    """Mean absolute error, mean(|y − ŷ|)."""
    pred, targ = _validate(prediction, target)
    return float(np.mean(np.abs(targ - pred)))


def mse(prediction, target) -> float:
    """Mean squared error, mean((y − ŷ)²)."""
    pred, targ = _validate(prediction, target)
    return float(np.mean((targ - pred) ** 2))


def esr(prediction, target) -> float:
    """Error-to-signal ratio Σ(y − ŷ)² / Σy² (Wright et al. 2019), not a mean of per-sample ratios.

    An all-zero target makes the denominator a tiny guard value instead of dividing by zero.
    """
    pred, targ = _validate(prediction, target)
    return _ratio(np.sum((targ - pred) ** 2), np.sum(targ**2))


def _pre_emphasis(signal: np.ndarray, coefficient: float) -> np.ndarray:
    # First-order FIR 1 − c·z⁻¹ from a zero initial state: out[0] = signal[0].
    return scipy.signal.lfilter([1.0, -coefficient], [1.0], signal)


def esr_pre(prediction, target, coefficient: float = 0.85) -> float:
    """ESR after the pre-emphasis filter H(z) = 1 − coefficient·z⁻¹ applied to both signals.

    The filter starts from a zero state (its first output sample equals the first input sample).
    """
    pred, targ = _validate(prediction, target)
    if not math.isfinite(coefficient):
        raise MetricInputError(f"expected a finite pre-emphasis coefficient, found {coefficient}")
    return esr(_pre_emphasis(pred, coefficient), _pre_emphasis(targ, coefficient))


def dc_error(prediction, target) -> float:
    """DC error (mean(y) − mean(ŷ))² / mean(y²), as in Wright et al. (2019)."""
    pred, targ = _validate(prediction, target)
    return _ratio((np.mean(targ) - np.mean(pred)) ** 2, np.mean(targ**2))


def _db(power_ratio_numerator: float, power_ratio_denominator: float) -> float:
    if power_ratio_denominator == 0:
        return math.inf if power_ratio_numerator > 0 else math.nan
    if power_ratio_numerator == 0:
        return -math.inf
    return float(10.0 * math.log10(power_ratio_numerator / power_ratio_denominator))


def snr_db(prediction, target) -> float:
    """Signal-to-noise ratio 10·log10(Σy² / Σ(y − ŷ)²) in dB; ``inf`` when prediction == target.

    NaN when both the target and the error are all zero (nothing to compare).
    """
    pred, targ = _validate(prediction, target)
    return _db(float(np.sum(targ**2)), float(np.sum((targ - pred) ** 2)))


def si_sdr_db(prediction, target) -> float:
    """Scale-invariant signal-to-distortion ratio in dB (Le Roux et al. 2019), no mean removal.

    The target is scaled by α = ⟨ŷ, y⟩ / ⟨y, y⟩; SI-SDR = 10·log10(‖αy‖² / ‖ŷ − αy‖²). Invariant to
    multiplying the prediction by a positive constant; ``inf`` when the prediction is a positive
    multiple of the target. Raises MetricInputError for an all-zero target (undefined).
    """
    pred, targ = _validate(prediction, target)
    target_energy = float(np.dot(targ, targ))
    if target_energy == 0:
        raise MetricInputError("SI-SDR is undefined for an all-zero target")
    alpha = float(np.dot(pred, targ)) / target_energy
    projection = alpha * targ
    distortion = pred - projection
    return _db(float(np.dot(projection, projection)), float(np.dot(distortion, distortion)))


def _stft_magnitude(
    signal: np.ndarray, fft_size: int, hop_size: int, win_length: int, eps: float
) -> np.ndarray:
    """Magnitude STFT as ``torch.stft`` computes it with its defaults, shape (frames, bins).

    Centred frames (the signal reflect-padded by fft_size // 2 on both sides), a periodic Hann
    window of win_length zero-padded to fft_size in the middle, one-sided, unnormalised;
    magnitude sqrt(max(|X|², eps)) as auraloss takes it.
    """
    pad = fft_size // 2
    if signal.shape[0] <= pad:
        raise MetricInputError(
            f"expected more than {pad} samples for an STFT of size {fft_size}, "
            f"found {signal.shape[0]}"
        )
    padded = np.pad(signal, pad, mode="reflect")
    window = np.zeros(fft_size)
    start = (fft_size - win_length) // 2
    window[start : start + win_length] = scipy.signal.get_window("hann", win_length, fftbins=True)
    frames = np.lib.stride_tricks.sliding_window_view(padded, fft_size)[::hop_size]
    spectrum = np.fft.rfft(frames * window, axis=-1)
    return np.sqrt(np.maximum(spectrum.real**2 + spectrum.imag**2, eps))


def _spectral_magnitude(signal: np.ndarray) -> np.ndarray:
    return _stft_magnitude(signal, _SPECTRAL_FFT_SIZE, _SPECTRAL_HOP_SIZE, _SPECTRAL_FFT_SIZE, 0.0)


def spectral_convergence(prediction, target) -> float:
    """Spectral convergence ‖|Y| − |Ŷ|‖_F / ‖|Y|‖_F of STFT magnitudes (2048-point Hann, hop 512).

    Needs more than 1024 samples.
    """
    pred, targ = _validate(prediction, target)
    pred_mag, targ_mag = _spectral_magnitude(pred), _spectral_magnitude(targ)
    return _ratio(np.linalg.norm(targ_mag - pred_mag), np.linalg.norm(targ_mag))


def log_spectral_distance_db(prediction, target) -> float:
    """Log-spectral distance in dB: the mean over frames of the RMS over frequency bins of
    10·log10(|Y|² / |Ŷ|²), from a 2048-point Hann STFT with hop 512.

    Powers are floored at 1e-10 (−100 dB) so silent frames compare equal. Needs more than 1024
    samples.
    """
    pred, targ = _validate(prediction, target)
    pred_pow, targ_pow = _spectral_magnitude(pred) ** 2, _spectral_magnitude(targ) ** 2
    level_diff = 10.0 * np.log10(
        np.maximum(targ_pow, _LSD_POWER_FLOOR) / np.maximum(pred_pow, _LSD_POWER_FLOOR)
    )
    return float(np.mean(np.sqrt(np.mean(level_diff**2, axis=1))))


def mrstft(prediction, target) -> float:
    """Multi-resolution STFT loss, equal to ``auraloss.freq.MultiResolutionSTFTLoss()``.

    For each resolution (FFT 1024/2048/512, hop 120/240/50, Hann window 600/1200/240) the sum of
    spectral convergence ‖|Y| − |Ŷ|‖_F / ‖|Y|‖_F and the mean absolute difference of log
    magnitudes, magnitudes being sqrt(max(|X|², 1e-8)); the result is the mean over resolutions.
    Needs more than 1024 samples (the largest FFT's reflect padding).
    """
    pred, targ = _validate(prediction, target)
    total = 0.0
    for fft_size, hop_size, win_length in zip(
        _MRSTFT_FFT_SIZES, _MRSTFT_HOP_SIZES, _MRSTFT_WIN_LENGTHS, strict=True
    ):
        pred_mag = _stft_magnitude(pred, fft_size, hop_size, win_length, _MRSTFT_EPS)
        targ_mag = _stft_magnitude(targ, fft_size, hop_size, win_length, _MRSTFT_EPS)
        convergence = np.linalg.norm(targ_mag - pred_mag) / np.linalg.norm(targ_mag)
        log_magnitude = np.mean(np.abs(np.log(pred_mag) - np.log(targ_mag)))
        total += convergence + log_magnitude
    return float(total / len(_MRSTFT_FFT_SIZES))


def _validate_sample_rate(sample_rate) -> None:
    valid = (
        isinstance(sample_rate, numbers.Real)
        and not isinstance(sample_rate, bool)
        and math.isfinite(sample_rate)
        and sample_rate > 0
    )
    if not valid:
        raise MetricInputError(f"expected a positive sample rate in Hz, found {sample_rate!r}")


def _loudness_min_samples(sample_rate: float) -> int:
    # pyloudnorm's gating block is 0.4 s; it refuses signals shorter than one block.
    return int(math.ceil(_LOUDNESS_BLOCK_S * sample_rate))


def loudness_difference_lu(prediction, target, sample_rate: float) -> float:
    """Integrated loudness (ITU-R BS.1770-4, pyloudnorm) of the prediction minus the target, in LU.

    Needs at least one 400 ms gating block; raises MetricInputError for shorter signals. A signal
    whose every block is gated out (silence) has loudness −inf, so the difference may be ±inf or NaN.
    """
    pred, targ = _validate(prediction, target)
    _validate_sample_rate(sample_rate)
    meter = pyloudnorm.Meter(float(sample_rate))
    min_samples = _loudness_min_samples(sample_rate)
    if pred.shape[0] < min_samples:
        raise MetricInputError(
            f"expected at least {_LOUDNESS_BLOCK_S} s ({min_samples} samples at {sample_rate} Hz) "
            f"for integrated loudness, found {pred.shape[0]} samples"
        )
    with np.errstate(divide="ignore"):
        difference = meter.integrated_loudness(pred) - meter.integrated_loudness(targ)
    return float(difference)


def compute_all(prediction, target, sample_rate: float) -> dict[str, float]:
    """Every metric of this module, keyed as :data:`METRIC_NAMES`.

    Metrics that need more audio than given (``loudness_difference_lu`` needs 0.4 s; the spectral
    ones need more than 1024 samples) are NaN, with a logged warning, instead of failing the rest.
    """
    pred, targ = _validate(prediction, target)
    _validate_sample_rate(sample_rate)
    simple: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
        "mae": mae,
        "mse": mse,
        "esr": esr,
        "esr_pre": esr_pre,
        "dc_error": dc_error,
        "snr_db": snr_db,
    }
    results = {name: fn(pred, targ) for name, fn in simple.items()}
    results["si_sdr_db"] = si_sdr_db(pred, targ) if np.any(targ) else math.nan
    for name, fn in (
        ("spectral_convergence", spectral_convergence),
        ("log_spectral_distance_db", log_spectral_distance_db),
        ("mrstft", mrstft),
    ):
        if pred.shape[0] > max(_MRSTFT_FFT_SIZES) // 2:
            results[name] = fn(pred, targ)
        else:
            log.warning(
                "%s needs more than %d samples, found %d: reported as NaN",
                name,
                max(_MRSTFT_FFT_SIZES) // 2,
                pred.shape[0],
            )
            results[name] = math.nan
    min_samples = _loudness_min_samples(sample_rate)
    if pred.shape[0] >= min_samples:
        results["loudness_difference_lu"] = loudness_difference_lu(pred, targ, sample_rate)
    else:
        log.warning(
            "loudness_difference_lu needs at least %s s (%d samples at %s Hz), found %d samples: "
            "reported as NaN",
            _LOUDNESS_BLOCK_S,
            min_samples,
            sample_rate,
            pred.shape[0],
        )
        results["loudness_difference_lu"] = math.nan
    return {name: results[name] for name in METRIC_NAMES}
