"""The two mandatory MUSHRA anchors (ITU-R BS.1534-3 §5.1): the reference low-passed at 3.5 kHz
(``anchor_3k5``, role ``anchor_low``) and at 7 kHz (``anchor_7k``, role ``anchor_mid``).

The mask for the 3.5 kHz anchor: pass-band within ±0.1 dB up to the cut-off, at least 25 dB down
at 4 kHz and at least 50 dB down at 4.5 kHz; the 7 kHz anchor uses the same shape scaled by 2.
The filter is an elliptic low-pass run forwards and backwards (``sosfiltfilt``): zero phase, so the
anchor is not delayed against the reference, and the magnitude is the single pass squared. The
single pass is therefore designed for half the ripple (0.04 dB, leaving margin under 0.1 dB) and
30 dB from the 4 kHz edge on, which becomes 60 dB from 4 kHz on: both stop-band points are met with
10 dB to spare at any sample rate whose Nyquist frequency lies above the stop edge.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy import signal

from .errors import EarshotError
from .stimulus_set import ANCHOR_LOW, ANCHOR_MID, LOW_ANCHOR_ID, MID_ANCHOR_ID


class AnchorError(EarshotError, ValueError):
    """An anchor cannot be made: a sample rate too low for its filter, or audio of the wrong shape."""


PASS_RIPPLE_DB = 0.1
SINGLE_PASS_RIPPLE_DB = 0.04
SINGLE_PASS_STOP_DB = 30.0


@dataclass(frozen=True)
class Anchor:
    """One anchor: condition id, role and cut-off; the mask edges scale with the cut-off."""

    id: str
    role: str
    cutoff_hz: float

    @property
    def first_stop_hz(self) -> float:
        """At least 25 dB down from here (4 kHz for the 3.5 kHz anchor)."""
        return self.cutoff_hz * 8.0 / 7.0

    @property
    def second_stop_hz(self) -> float:
        """At least 50 dB down from here (4.5 kHz for the 3.5 kHz anchor)."""
        return self.cutoff_hz * 9.0 / 7.0


ANCHORS = (Anchor(LOW_ANCHOR_ID, ANCHOR_LOW, 3500.0), Anchor(MID_ANCHOR_ID, ANCHOR_MID, 7000.0))


def min_sample_rate(cutoff_hz: float) -> float:
    """Sample rates at or below this cannot hold the stop edge below their Nyquist frequency."""
    return 2.0 * cutoff_hz * 8.0 / 7.0


@functools.lru_cache(maxsize=32)
def anchor_sos(cutoff_hz: float, sample_rate: int) -> np.ndarray:
    """Second-order sections of the single-pass elliptic low-pass for ``cutoff_hz`` at ``sample_rate``."""
    stop_hz = cutoff_hz * 8.0 / 7.0
    if sample_rate <= min_sample_rate(cutoff_hz):
        raise AnchorError(
            f"a {cutoff_hz / 1000:g} kHz anchor needs a sample rate above {min_sample_rate(cutoff_hz):.0f} Hz "
            f"(its stop band starts at {stop_hz:.0f} Hz), found {sample_rate} Hz"
        )
    order, wn = signal.ellipord(cutoff_hz, stop_hz, SINGLE_PASS_RIPPLE_DB, SINGLE_PASS_STOP_DB, fs=sample_rate)
    return signal.ellip(order, SINGLE_PASS_RIPPLE_DB, SINGLE_PASS_STOP_DB, wn, btype="lowpass", output="sos",
                        fs=sample_rate)


def lowpass_anchor(audio: np.ndarray, sample_rate: int, cutoff_hz: float) -> np.ndarray:
    """``audio`` (time,) low-passed at ``cutoff_hz`` with zero phase, meeting the BS.1534-3 mask.

    Returns (time,) float64. The filter's start and end transients are handled by
    ``sosfiltfilt``'s odd extension of the signal.
    """
    x = np.asarray(audio, dtype=np.float64)
    if x.ndim != 1:
        raise AnchorError(f"anchor: expected mono audio of shape (time,), found shape {x.shape}")
    return signal.sosfiltfilt(anchor_sos(float(cutoff_hz), int(sample_rate)), x)


def measure_anchor(anchor: np.ndarray, reference: np.ndarray, sample_rate: int, cutoff_hz: float,
                   bit_depth: int | None = None) -> dict[str, float]:
    """How far the anchor file is from the reference low-passed to the BS.1534-3 mask.

    Both (time,). Welch spectra (8192-point Hann); the anchor's gain against the reference is taken
    from the pass band (the anchors are loudness-aligned, so it is not 1). Returns
    ``passband_deviation_db``: the largest band deviation of anchor/reference in third-octave bands
    from 100 Hz to 0.9 × cut-off (bands where the reference is within 60 dB of its loudest);
    ``stopband_attenuation_db``: anchor power above 9/7 × cut-off relative to the gain-matched
    reference there; ``stopband_floor_db``: the same anchor power relative to the PCM quantization
    noise in that band (a stop band at the noise floor cannot be attenuated further).
    """
    a = np.asarray(anchor, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    nperseg = min(8192, a.size)
    freqs, pa = signal.welch(a, sample_rate, nperseg=nperseg)
    _, pr = signal.welch(r, sample_rate, nperseg=nperseg)
    passband = (freqs >= 100.0) & (freqs <= 0.9 * cutoff_hz)
    gain = pa[passband].sum() / max(pr[passband].sum(), 1e-300)
    centres = 100.0 * 2.0 ** (np.arange(0, 40) / 3.0)
    centres = centres[centres * 2 ** (1 / 6) <= 0.9 * cutoff_hz]
    band_r = np.array([pr[(freqs >= c * 2 ** (-1 / 6)) & (freqs < c * 2 ** (1 / 6))].sum() for c in centres])
    band_a = np.array([pa[(freqs >= c * 2 ** (-1 / 6)) & (freqs < c * 2 ** (1 / 6))].sum() for c in centres])
    used = band_r > 1e-6 * band_r.max() if band_r.size and band_r.max() > 0 else np.zeros(0, dtype=bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        deviation = np.abs(10 * np.log10(band_a[used] / (gain * band_r[used]))) if used.any() else np.zeros(1)
    stop = freqs >= cutoff_hz * 9.0 / 7.0
    df = freqs[1] - freqs[0]
    power_a = float(pa[stop].sum() * df)
    power_r = float(gain * pr[stop].sum() * df)
    nyquist = sample_rate / 2.0
    lsb = 2.0 / 2.0 ** bit_depth if bit_depth else 2.0 / 2.0**24
    noise = lsb**2 / 12.0 * max(nyquist - cutoff_hz * 9.0 / 7.0, 0.0) / nyquist
    with np.errstate(divide="ignore"):
        return {
            "passband_deviation_db": float(np.max(deviation)),
            "stopband_attenuation_db": float(10 * np.log10(power_r / power_a)) if power_a > 0 else math.inf,
            "stopband_floor_db": float(10 * np.log10(power_a / noise)) if power_a > 0 else -math.inf,
        }
