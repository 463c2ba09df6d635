"""Levels of stimuli: BS.1770 loudness, true peak, raised-cosine fades, PCM codes, latency."""

import numpy as np
import pytest
import soundfile as sf

from models.dsp.loudness import (
    dequantize,
    integrated_loudness,
    quantize,
    raised_cosine_fades,
    true_peak_dbfs,
)
from stimulus_sets.build import align, measure_latency, write_wav


def test_loudness_of_a_full_scale_997_hz_sine_is_minus_3_lufs():
    # BS.1770-4: a 0 dBFS 997 Hz sine in one channel reads -3.01 LKFS (K-weighting is ~0 dB there)
    rate = 48000
    t = np.arange(5 * rate) / rate
    assert integrated_loudness(np.sin(2 * np.pi * 997 * t), rate) == pytest.approx(-3.01, abs=0.05)
    assert integrated_loudness(0.1 * np.sin(2 * np.pi * 997 * t), rate) == pytest.approx(-23.01, abs=0.05)
    assert integrated_loudness(np.zeros(rate), rate) == -np.inf


def test_true_peak_sees_the_peak_between_samples():
    # a sine at fs/4 sampled 45 degrees off its crest: every sample is at 0.707 of the amplitude
    n = np.arange(48000)
    x = raised_cosine_fades(0.5 * np.sin(np.pi / 2 * n + np.pi / 4), 0.005, 48000)  # faded like every stimulus
    assert 20 * np.log10(np.abs(x).max()) == pytest.approx(20 * np.log10(0.5) - 3.01, abs=0.01)
    assert true_peak_dbfs(x) == pytest.approx(20 * np.log10(0.5), abs=0.05)


def test_raised_cosine_fades_follow_the_formula():
    rate = 8000
    x = np.ones(rate)
    faded = raised_cosine_fades(x, 0.005, rate)
    n = 40  # 5 ms at 8 kHz
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(n) / n)
    np.testing.assert_allclose(faded[:n], ramp)
    np.testing.assert_allclose(faded[-n:], ramp[::-1])
    assert faded[0] == 0.0 and faded[-1] == 0.0 and faded[n // 2] == pytest.approx(0.5)
    np.testing.assert_array_equal(faded[n:-n], 1.0)


@pytest.mark.parametrize("bits, subtype", [(24, "PCM_24"), (16, "PCM_16")])
def test_pcm_codes_written_are_the_rounded_samples(tmp_path, bits, subtype):
    x = np.array([0.0, 0.5, -0.5, -1.0, 1.0, 0.25 + 0.4 / 2 ** (bits - 1), 2.0, -3.0])
    codes = quantize(x, bits)
    top = 2 ** (bits - 1)
    assert codes.tolist() == [0, top // 2, -top // 2, -top, top - 1, top // 4, top - 1, -top]
    path = tmp_path / "x.wav"
    write_wav(path, x, 48000, bits)
    assert sf.info(path).subtype == subtype
    back = sf.read(path, dtype="int32")[0] >> (32 - bits)
    assert back.tolist() == codes.tolist()
    np.testing.assert_array_equal(sf.read(path, dtype="float64")[0], dequantize(codes, bits))


@pytest.mark.parametrize("delay", [7, -5, 0, 40])
def test_latency_is_measured_and_removed(delay):
    rng = np.random.default_rng(3)
    margin, n = 40, 4000
    source = rng.normal(0, 0.3, n + 4 * margin)
    reference = source[2 * margin : 2 * margin + n]
    # the output holds the reference `delay` samples late (negative: early), with the margin around it
    output = source[2 * margin - margin - delay : 2 * margin - margin - delay + n + 2 * margin]
    assert measure_latency(output, reference, margin) == delay
    aligned, lag = align(output, reference, margin)
    assert lag == delay
    np.testing.assert_array_equal(aligned, reference)
