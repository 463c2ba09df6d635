"""Built-in devices: bounded, deterministic, and nonlinear in the ways each one promises."""

import dataclasses

import numpy as np
import pytest

from models.dsp import devices, signals
from models.errors import ConfigError, DatasetError

RATES = [44100, 48000]


def _knobs(device, drive=0.5):
    return {"drive": drive} if device.knob_names else None


def _sine(amplitude, frequency_hz, sample_rate, duration_s=1.0):
    t = np.arange(int(duration_s * sample_rate)) / sample_rate
    return amplitude * np.sin(2.0 * np.pi * frequency_hz * t)


def _harmonics(device, sample_rate, amplitude=0.3, knobs=None, count=10):
    """Magnitudes of harmonics 1..count of a steady sine of sample_rate/100 Hz.

    The analysed last 20 000 samples hold exactly 200 periods of 100 samples, so harmonic h
    falls on FFT bin 200 h (no window, no leakage).
    """
    f0 = sample_rate / 100.0
    y = device.process(_sine(amplitude, f0, sample_rate), sample_rate, knobs).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(y[-20000:])) / 20000
    return np.array([spectrum[200 * h] for h in range(1, count + 1)])


def _thd(harmonics):
    return float(np.sqrt(np.sum(harmonics[1:] ** 2)) / harmonics[0])


def test_required_presets_exist_with_their_knobs():
    for name in ("tube_amp", "fuzz", "overdrive", "overdrive_drive"):
        assert name in devices.PRESETS
        assert devices.get_device(name).name == name
    assert devices.get_device("overdrive_drive").knob_names == ("drive",)
    for name in ("tube_amp", "fuzz", "overdrive"):
        assert devices.get_device(name).knob_names == ()
    assert len(devices.PRESETS) > 4


def test_unknown_preset_lists_the_presets():
    with pytest.raises(ConfigError, match="unknown device preset 'marshall'.*tube_amp"):
        devices.get_device("marshall")


@pytest.fixture(scope="module")
def stress_input():
    """Per sample rate: programme, then the worst case for the bound (full-scale square and noise)."""

    def make(sample_rate):
        program = signals.program(1.0, sample_rate, 3).astype(np.float64)
        square = np.sign(_sine(1.0, 110.0, sample_rate, 0.2))
        noise = np.random.default_rng(0).uniform(-1.0, 1.0, sample_rate // 5)
        return np.concatenate([program, square, noise])

    return {rate: make(rate) for rate in RATES}


@pytest.mark.parametrize("sample_rate", RATES)
@pytest.mark.parametrize("name", sorted(devices.PRESETS))
def test_outputs_are_bounded_deterministic_float32(name, sample_rate, stress_input):
    device = devices.get_device(name)
    x = stress_input[sample_rate]
    y = device.process(x, sample_rate, _knobs(device))
    assert y.dtype == np.float32 and y.shape == x.shape
    assert np.all(np.isfinite(y))
    assert np.max(np.abs(y)) <= 1.0
    np.testing.assert_array_equal(y, device.process(x, sample_rate, _knobs(device)))
    # float32 input gives the same result as float64 input of the same values.
    np.testing.assert_array_equal(
        device.process(x.astype(np.float32), sample_rate, _knobs(device)),
        device.process(x.astype(np.float32).astype(np.float64), sample_rate, _knobs(device)),
    )
    # Not an identity or a gain: the output is not a scaled copy of the input.
    gain = np.dot(x, y) / np.dot(x, x)
    assert np.sqrt(np.mean((y - gain * x) ** 2)) > 0.05 * np.sqrt(np.mean(y.astype(float) ** 2))


@pytest.mark.parametrize("name", sorted(devices.PRESETS))
def test_silence_in_silence_out(name):
    device = devices.get_device(name)
    y = device.process(np.zeros(4800), 48000, _knobs(device))
    assert np.max(np.abs(y)) < 1e-12


@pytest.mark.parametrize("sample_rate", [22050, 96000])
@pytest.mark.parametrize("name", ["tube_amp", "fuzz", "overdrive"])
def test_other_sample_rates_work(name, sample_rate):
    x = _sine(0.3, 220.0, sample_rate, 0.5)
    y = devices.get_device(name).process(x, sample_rate)
    assert y.shape == x.shape and np.max(np.abs(y)) <= 1.0 and np.max(np.abs(y)) > 0.01


@pytest.mark.parametrize("name", ["tube_amp", "fuzz", "overdrive", "overdrive_drive"])
def test_device_is_causal(name):
    device = devices.get_device(name)
    x = np.zeros(4800)
    x[2400:] = _sine(0.5, 300.0, 48000, 0.05)
    y = device.process(x, 48000, _knobs(device))
    assert np.max(np.abs(y[:2400])) == 0.0
    assert np.max(np.abs(y[2400:])) > 0.01


def test_oversampled_fuzz_leaks_almost_nothing_before_its_input():
    # resample_poly is zero-phase: a few samples of pre-ringing, far below the signal.
    x = np.zeros(4800)
    x[2400:] = _sine(0.5, 300.0, 48000, 0.05)
    y = devices.get_device("fuzz_gated").process(x, 48000).astype(np.float64)
    assert np.sum(y[:2400] ** 2) < 1e-4 * np.sum(y[2400:] ** 2)
    assert np.max(np.abs(y[:2370])) < 1e-6


@pytest.mark.parametrize("sample_rate", RATES)
def test_tube_amp_bias_follows_the_envelope(sample_rate):
    """The same quiet tone sounds different right after a loud passage than after silence."""
    amp = devices.get_device("tube_amp")
    n_loud, n_quiet = int(0.3 * sample_rate), int(0.2 * sample_rate)
    loud = _sine(0.8, 200.0, sample_rate, 0.3)[:n_loud]
    quiet = _sine(0.1, 441.0, sample_rate, 0.2)[:n_quiet]
    # 40-80 ms after the switch: the linear filters have settled, the envelope has not.
    window = slice(n_loud + int(0.04 * sample_rate), n_loud + int(0.08 * sample_rate))

    def relative_difference(device):
        after_loud = device.process(np.concatenate([loud, quiet]), sample_rate)[window]
        after_silence = device.process(np.concatenate([np.zeros(n_loud), quiet]), sample_rate)[
            window
        ]
        diff = after_loud.astype(float) - after_silence
        return np.sqrt(np.mean(diff**2) / np.mean(after_silence.astype(float) ** 2))

    assert relative_difference(amp) > 0.1
    # Control: without the bias shift the same test shows no memory, so it is the envelope's.
    assert relative_difference(dataclasses.replace(amp, bias_shift=0.0)) < 1e-3


@pytest.mark.parametrize("sample_rate", RATES)
def test_drive_knob_raises_distortion_monotonically(sample_rate):
    device = devices.get_device("overdrive_drive")
    thd = [_thd(_harmonics(device, sample_rate, knobs={"drive": d})) for d in np.linspace(0, 1, 6)]
    assert all(b > a for a, b in zip(thd[:-1], thd[1:], strict=True)), thd
    assert thd[0] < 0.05 and thd[-1] > 0.25
    # The fixed preset is the conditioned device at drive 0.5.
    fixed = devices.get_device("overdrive")
    x = _sine(0.3, 500.0, sample_rate, 0.2)
    np.testing.assert_array_equal(
        fixed.process(x, sample_rate), device.process(x, sample_rate, {"drive": 0.5})
    )


@pytest.mark.parametrize("sample_rate", RATES)
def test_overdrive_is_asymmetric(sample_rate):
    h = _harmonics(devices.get_device("overdrive"), sample_rate)
    assert h[1] / h[0] > 0.03  # second harmonic: the clipper is not odd
    # Control: the same pedal with a symmetric clipper has (numerically) no even harmonics.
    symmetric = dataclasses.replace(devices.get_device("overdrive"), negative_softness=1.0)
    hs = _harmonics(symmetric, sample_rate)
    assert hs[1] / hs[0] < 1e-4 and hs[3] / hs[0] < 1e-4
    assert hs[2] / hs[0] > 0.01


@pytest.mark.parametrize("sample_rate", RATES)
def test_fuzz_clips_harder_than_overdrive(sample_rate):
    """A 20 dB louder input barely changes the fuzz's output level; the overdrive follows it more."""

    def level_change_db(device):
        def rms(amplitude):
            y = device.process(_sine(amplitude, sample_rate / 100.0, sample_rate), sample_rate)
            return np.sqrt(np.mean(y[sample_rate // 2 :].astype(float) ** 2))

        return 20.0 * np.log10(rms(0.5) / rms(0.05))

    fuzz = level_change_db(devices.get_device("fuzz"))
    overdrive = level_change_db(devices.get_device("overdrive"))
    assert fuzz < 3.0
    assert overdrive > fuzz + 6.0
    assert _thd(_harmonics(devices.get_device("fuzz"), sample_rate)) > _thd(
        _harmonics(devices.get_device("overdrive"), sample_rate)
    )


def test_knob_validation():
    conditioned = devices.get_device("overdrive_drive")
    x = np.zeros(100)
    with pytest.raises(ConfigError, match="knob 'drive' needs a value"):
        conditioned.process(x, 48000)
    with pytest.raises(ConfigError, match=r"'drive' must be in \[0, 1\], found 1.5"):
        conditioned.process(x, 48000, {"drive": 1.5})
    with pytest.raises(ConfigError, match="must be a number in \\[0, 1\\], found 'loud'"):
        conditioned.process(x, 48000, {"drive": "loud"})
    with pytest.raises(ConfigError, match="unknown knob 'gain'"):
        conditioned.process(x, 48000, {"drive": 0.5, "gain": 0.1})
    with pytest.raises(ConfigError, match="unknown knob 'drive'.*knobs: none"):
        devices.get_device("fuzz").process(x, 48000, {"drive": 0.5})


def test_input_validation():
    amp = devices.get_device("tube_amp")
    with pytest.raises(DatasetError, match=r"shape \(time,\), found shape \(10, 2\)"):
        amp.process(np.zeros((10, 2)), 48000)
    x = np.zeros(100)
    x[42] = np.nan
    with pytest.raises(DatasetError, match="input sample 42 is nan"):
        amp.process(x, 48000)
    with pytest.raises(ConfigError, match="sample_rate"):
        amp.process(np.zeros(10), 0)
    assert amp.process(np.zeros(0), 48000).shape == (0,)


def test_device_parameters_are_validated():
    with pytest.raises(ConfigError, match="drive must be in"):
        devices.Overdrive("bad", drive=2.0)
    with pytest.raises(ConfigError, match="oversample"):
        devices.Fuzz("bad", oversample=0)
