"""Synthesised source material: determinism, lengths, levels and the spectral facts each promises."""

import numpy as np
import pytest
import scipy.signal

from models.dsp import signals
from models.errors import ConfigError

GENERATORS = [
    signals.sine_sweep,
    signals.log_sweep,
    signals.white_noise,
    signals.pink_noise,
    signals.plucked_notes,
    signals.chords,
    signals.bass_line,
    signals.drums,
    signals.pads,
]
RATES = [44100, 48000]


@pytest.mark.parametrize("sample_rate", RATES)
@pytest.mark.parametrize("make", GENERATORS, ids=lambda f: f.__name__)
def test_generators_are_seeded_and_sized(make, sample_rate):
    first = make(1.3, sample_rate, 7)
    again = make(1.3, sample_rate, np.random.default_rng(7))
    other = make(1.3, sample_rate, 8)
    assert first.dtype == np.float32
    assert first.shape == (int(round(1.3 * sample_rate)),)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert np.all(np.isfinite(first))


@pytest.mark.parametrize("make", GENERATORS, ids=lambda f: f.__name__)
def test_generators_hit_the_requested_peak(make):
    x = make(0.8, 44100, 3, peak=0.3)
    assert np.max(np.abs(x)) == pytest.approx(0.3, rel=1e-6)


def test_bad_arguments_are_config_errors():
    with pytest.raises(ConfigError, match="duration_s"):
        signals.white_noise(-1.0, 48000, 0)
    with pytest.raises(ConfigError, match="sample_rate"):
        signals.white_noise(1.0, 0, 0)
    with pytest.raises(ConfigError, match="peak"):
        signals.white_noise(1.0, 48000, 0, peak=1.5)
    with pytest.raises(ConfigError, match="rng"):
        signals.white_noise(1.0, 48000, "seven")


def _psd_slope_db_per_octave(x, sample_rate, low_hz, high_hz):
    frequency, power = scipy.signal.welch(x.astype(np.float64), fs=sample_rate, nperseg=8192)
    band = (frequency >= low_hz) & (frequency <= high_hz)
    slope, _ = np.polyfit(np.log2(frequency[band]), 10.0 * np.log10(power[band]), 1)
    return slope


@pytest.mark.parametrize("sample_rate", RATES)
def test_pink_noise_falls_3_db_per_octave(sample_rate):
    pink = signals.pink_noise(8.0, sample_rate, 1)
    # 1/f power is 10*log10(2) = 3.01 dB less per octave.
    assert _psd_slope_db_per_octave(pink, sample_rate, 50.0, 15000.0) == pytest.approx(
        -3.01, abs=0.15
    )
    white = signals.white_noise(8.0, sample_rate, 1)
    assert _psd_slope_db_per_octave(white, sample_rate, 50.0, 15000.0) == pytest.approx(
        0.0, abs=0.15
    )


def _instantaneous_frequency(x, sample_rate):
    phase = np.unwrap(np.angle(scipy.signal.hilbert(x.astype(np.float64))))
    return np.diff(phase) * sample_rate / (2.0 * np.pi)


@pytest.mark.parametrize("sample_rate", RATES)
def test_sweeps_follow_their_frequency_law(sample_rate):
    duration_s, start_hz, end_hz = 2.0, 100.0, 8000.0
    linear = signals.sine_sweep(duration_s, sample_rate, 0, start_hz=start_hz, end_hz=end_hz)
    logarithmic = signals.log_sweep(duration_s, sample_rate, 0, start_hz=start_hz, end_hz=end_hz)
    f_linear = _instantaneous_frequency(linear, sample_rate)
    f_log = _instantaneous_frequency(logarithmic, sample_rate)
    for fraction in (0.25, 0.5, 0.75):
        i = int(fraction * duration_s * sample_rate)
        window = slice(i - 50, i + 50)
        assert np.median(f_linear[window]) == pytest.approx(
            start_hz + (end_hz - start_hz) * fraction, rel=0.01
        )
        assert np.median(f_log[window]) == pytest.approx(
            start_hz * (end_hz / start_hz) ** fraction, rel=0.01
        )


def test_sweep_end_is_clamped_below_nyquist():
    x = signals.sine_sweep(1.0, 8000, 0, start_hz=100.0, end_hz=20000.0)
    f = _instantaneous_frequency(x, 8000)
    assert np.median(f[-200:-100]) < 4000.0


def test_string_response_equals_the_time_domain_comb_loop():
    # Integer loop delay D: the FFT evaluation must equal lfilter with the comb denominator.
    sample_rate, delay, t60_s, n = 48000, 100, 1.0, 20000
    f0 = sample_rate / (delay + 0.5)
    excitation = np.random.default_rng(0).uniform(-1.0, 1.0, delay + 1)
    fast = signals.string_response(excitation, f0, n, sample_rate, t60_s)
    g = 10.0 ** (-3.0 / (f0 * t60_s))
    denominator = np.zeros(delay + 2)
    denominator[[0, delay, delay + 1]] = [1.0, -g / 2.0, -g / 2.0]
    padded = np.concatenate([excitation, np.zeros(n - excitation.size)])
    reference = scipy.signal.lfilter([1.0], denominator, padded)
    np.testing.assert_allclose(fast, reference, atol=1e-5)


@pytest.mark.parametrize("sample_rate", RATES)
def test_string_is_tuned_exactly(sample_rate):
    excitation = np.random.default_rng(1).uniform(-1.0, 1.0, 400)
    y = signals.string_response(excitation, 110.0, 2 * sample_rate, sample_rate, 3.0)
    tail = y[sample_rate // 2 :]
    size = 16 * sample_rate  # 1/16 Hz bins
    spectrum = np.abs(np.fft.rfft(tail * np.hanning(tail.size), size))
    frequency = np.fft.rfftfreq(size, 1.0 / sample_rate)
    band = (frequency > 90.0) & (frequency < 130.0)
    assert frequency[band][np.argmax(spectrum[band])] == pytest.approx(110.0, abs=0.1)


def _band_fraction(x, sample_rate, low_hz, high_hz):
    power = np.abs(np.fft.rfft(x.astype(np.float64))) ** 2
    frequency = np.fft.rfftfreq(x.size, 1.0 / sample_rate)
    return power[(frequency >= low_hz) & (frequency < high_hz)].sum() / power.sum()


def test_instruments_occupy_their_registers():
    fs = 48000
    drums = signals.drums(4.0, fs, 2)
    assert _band_fraction(drums, fs, 20.0, 150.0) > 0.1  # kick
    assert _band_fraction(drums, fs, 6000.0, 20000.0) > 0.005  # hats
    bass = signals.bass_line(4.0, fs, 2)
    assert _band_fraction(bass, fs, 30.0, 400.0) > 0.8
    pads = signals.pads(4.0, fs, 2)
    assert _band_fraction(pads, fs, 5000.0, 24000.0) < 0.01
    guitar = signals.plucked_notes(4.0, fs, 2)
    assert _band_fraction(guitar, fs, 70.0, 2000.0) > 0.5


def test_program_sections_tile_and_mix_all_kinds():
    kinds = set(signals._SECTION_KINDS)
    for seed in range(3):
        sections = signals.program_sections(60.0, 48000, seed)
        n = 60 * 48000
        assert sections[0].start == 0 and sections[-1].stop == n
        for before, after in zip(sections[:-1], sections[1:], strict=True):
            assert before.stop <= after.start  # in order, gaps allowed (short silences)
            assert after.start - before.stop <= int(0.3 * 48000)
        for section in sections:
            assert (
                -30.0
                <= min(section.start_db, section.end_db)
                <= max(section.start_db, section.end_db)
                <= -3.0
            )
        # Any contiguous fifth holds every kind; each default 15 % split holds most kinds.
        window = n // 5
        for start in range(0, n - window, n // 50):
            present = {s.kind for s in sections if s.start < start + window and s.stop > start}
            assert present == kinds
        for start, stop in ((0, int(0.7 * n)), (int(0.7 * n), int(0.85 * n)), (int(0.85 * n), n)):
            present = {s.kind for s in sections if s.start < stop and s.stop > start}
            assert len(present) >= 6


@pytest.mark.parametrize("sample_rate", RATES)
def test_program_is_seeded_bounded_and_has_level_changes(sample_rate):
    x = signals.program(10.0, sample_rate, 5)
    assert x.dtype == np.float32 and x.shape == (10 * sample_rate,)
    np.testing.assert_array_equal(x, signals.program(10.0, sample_rate, 5))
    assert not np.array_equal(
        signals.program(2.0, sample_rate, 5), signals.program(2.0, sample_rate, 6)
    )
    assert np.max(np.abs(x)) <= 1.0
    frame = sample_rate // 10
    rms = np.sqrt(
        np.mean(x[: x.size // frame * frame].reshape(-1, frame).astype(np.float64) ** 2, axis=1)
    )
    loud = 20.0 * np.log10(rms[rms > 1e-6])
    assert loud.max() - loud.min() > 20.0
    # Every section's peak stays within its ramp: nothing louder than -3 dBFS.
    assert np.max(np.abs(x)) <= 10.0 ** (-3.0 / 20.0) + 1e-6


@pytest.mark.parametrize("kind", ["guitar", "bass", "drums"])
def test_excerpts_are_seeded_at_minus_6_dbfs(kind):
    x = signals.excerpt(kind, 3.0, 44100, 11)
    assert x.shape == (3 * 44100,) and x.dtype == np.float32
    assert np.max(np.abs(x)) == pytest.approx(10.0 ** (-6.0 / 20.0), rel=1e-6)
    np.testing.assert_array_equal(x, signals.excerpt(kind, 3.0, 44100, 11))


def test_unknown_excerpt_kind_is_named():
    with pytest.raises(ConfigError, match="piano"):
        signals.excerpt("piano", 1.0, 48000, 0)
