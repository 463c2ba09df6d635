"""The BS.1534-3 anchors: the measured response of the zero-phase filter against the mask."""

import numpy as np
import pytest

from common.anchors import ANCHORS, AnchorError, lowpass_anchor, measure_anchor

N = 1 << 17  # long enough for the elliptic filters' ringing to decay below the mask's 50 dB


def measured_response(sample_rate, cutoff_hz):
    """Frequency response of the anchor as applied: filter a centred unit impulse, FFT it with
    the impulse moved to index 0. Returns (frequencies, complex response)."""
    impulse = np.zeros(N)
    impulse[N // 2] = 1.0
    h = lowpass_anchor(impulse, sample_rate, cutoff_hz)
    return np.fft.rfftfreq(N, 1 / sample_rate), np.fft.rfft(np.roll(h, -N // 2))


@pytest.mark.parametrize("sample_rate", [44100, 48000, 32000, 96000])
@pytest.mark.parametrize("anchor", ANCHORS, ids=[a.id for a in ANCHORS])
def test_measured_response_meets_the_bs1534_mask(sample_rate, anchor):
    freqs, response = measured_response(sample_rate, anchor.cutoff_hz)
    magnitude_db = 20 * np.log10(np.maximum(np.abs(response), 1e-300))
    passband = freqs <= anchor.cutoff_hz
    assert np.abs(magnitude_db[passband]).max() <= 0.1
    # the mask's two stop-band points: 25 dB at 8/7 of the cut-off, 50 dB from 9/7 on
    transition = (freqs >= anchor.cutoff_hz * 8 / 7) & (freqs < anchor.cutoff_hz * 9 / 7)
    assert magnitude_db[transition].max() <= -25.0
    assert magnitude_db[freqs >= anchor.cutoff_hz * 9 / 7].max() <= -50.0
    # the 3.5 kHz anchor's mask in absolute numbers (×2 for the 7 kHz one)
    scale = anchor.cutoff_hz / 3500.0
    assert magnitude_db[np.argmin(np.abs(freqs - 4000 * scale))] <= -25.0
    assert magnitude_db[np.argmin(np.abs(freqs - 4500 * scale))] <= -50.0


@pytest.mark.parametrize("sample_rate", [44100, 48000])
def test_anchor_is_zero_phase(sample_rate):
    freqs, response = measured_response(sample_rate, 3500.0)
    passband = freqs <= 3500.0
    # a zero-phase filter has a real response: no delay against the reference
    assert np.abs(np.angle(response[passband])).max() < 1e-6
    rng = np.random.default_rng(0)
    t = np.arange(sample_rate) / sample_rate
    tone = np.sin(2 * np.pi * 1000.0 * t + rng.uniform(0, np.pi))
    out = lowpass_anchor(tone, sample_rate, 3500.0)
    middle = slice(sample_rate // 4, 3 * sample_rate // 4)
    assert np.abs(out[middle] - tone[middle]).max() < 0.02  # 0.1 dB of amplitude is 1.2 %


def test_sample_rate_too_low_for_the_7k_anchor_is_an_error():
    with pytest.raises(AnchorError, match=r"7 kHz anchor needs a sample rate above 16000 Hz.*found 16000"):
        lowpass_anchor(np.zeros(1000), 16000, 7000.0)


def test_measure_anchor_tells_a_true_anchor_from_the_reference():
    rate = 48000
    rng = np.random.default_rng(1)
    reference = rng.normal(0, 0.1, 4 * rate)
    anchor = 1.7 * lowpass_anchor(reference, rate, 3500.0)  # loudness gain differs from the reference's
    good = measure_anchor(anchor, reference, rate, 3500.0, 24)
    assert good["passband_deviation_db"] < 0.2
    assert good["stopband_attenuation_db"] > 50.0
    bad = measure_anchor(reference, reference, rate, 3500.0, 24)
    assert bad["stopband_attenuation_db"] == pytest.approx(0.0, abs=0.1)
    wrong = measure_anchor(lowpass_anchor(reference, rate, 7000.0), reference, rate, 3500.0, 24)
    assert wrong["stopband_attenuation_db"] < 10.0
