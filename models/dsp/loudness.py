"""Levels of listening-test signals: BS.1770 loudness, true peak, fades and PCM quantization.

Loudness is ITU-R BS.1770-4 integrated loudness as pyloudnorm measures it. The true peak is the
sample peak of the signal oversampled 4× (BS.1770-4 Annex 2), so inter-sample overs are counted.
Quantization is done here rather than by libsndfile so that the bytes written are a documented
function of the float signal (round half to even, clip to the code range) and identical on every
machine.
"""

from __future__ import annotations

import functools

import numpy as np
import pyloudnorm
from scipy import signal

SILENCE_LUFS = -70.0  # BS.1770's absolute gate: anything quieter is treated as silence
TRUE_PEAK_OVERSAMPLING = 4


@functools.lru_cache(maxsize=8)
def _meter(sample_rate: int) -> pyloudnorm.Meter:
    return pyloudnorm.Meter(sample_rate)


def integrated_loudness(audio: np.ndarray, sample_rate: int) -> float:
    """BS.1770-4 integrated loudness in LUFS of ``audio`` (time,); ``-inf`` for silence."""
    x = np.asarray(audio, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return float(_meter(int(sample_rate)).integrated_loudness(x))


def true_peak_dbfs(audio: np.ndarray) -> float:
    """Peak of ``audio`` (time,) oversampled 4× in dBFS (1.0 = 0 dBFS); ``-inf`` for silence."""
    x = np.asarray(audio, dtype=np.float64)
    up = signal.resample_poly(x, TRUE_PEAK_OVERSAMPLING, 1)
    peak = max(float(np.max(np.abs(up))), float(np.max(np.abs(x)))) if x.size else 0.0
    with np.errstate(divide="ignore"):
        return float(20.0 * np.log10(peak))


def raised_cosine_fades(audio: np.ndarray, fade_s: float, sample_rate: int) -> np.ndarray:
    """``audio`` (time,) with a raised-cosine fade-in and fade-out of ``fade_s`` each (a copy)."""
    x = np.array(audio, dtype=np.float64)
    n = int(round(fade_s * sample_rate))
    if n <= 0:
        return x
    n = min(n, x.size // 2)
    # 0.5·(1 − cos) from the first sample at 0 to the last below 1: the fade starts from silence.
    ramp = 0.5 * (1.0 - np.cos(np.pi * np.arange(n) / n))
    x[:n] *= ramp
    x[x.size - n :] *= ramp[::-1]
    return x


def db_to_gain(gain_db: float) -> float:
    return float(10.0 ** (gain_db / 20.0))


def quantize(audio: np.ndarray, bit_depth: int) -> np.ndarray:
    """Integer PCM codes of ``audio`` (time,) in [-1, 1): int16 for 16 bits, int32 holding the
    24-bit code for 24 bits. Values beyond full scale are clipped to the code range."""
    scale = float(2 ** (bit_depth - 1))
    codes = np.clip(np.rint(np.asarray(audio, dtype=np.float64) * scale), -scale, scale - 1)
    return codes.astype(np.int16 if bit_depth == 16 else np.int32)


def dequantize(codes: np.ndarray, bit_depth: int) -> np.ndarray:
    """Float64 samples of integer PCM codes from :func:`quantize`."""
    return np.asarray(codes, dtype=np.float64) / float(2 ** (bit_depth - 1))
