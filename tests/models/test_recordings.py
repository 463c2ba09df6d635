"""The user's recordings: three layouts written as real WAV files, validation messages, latency."""

import logging
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
import soundfile as sf
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from models.cli import main
from models.data.datasets import DatasetConfig
from models.data.recordings import compensate, estimate_latency, measure_latency
from models.data.sources import load_dataset
from models.dsp import devices, signals
from models.errors import ConfigError, DatasetError
from models.export.nam_format import export_nam
from models.export.nam_read import load_nam
from models.inference.rendering import render
from models.nets.wavenet import WaveNet, from_preset

RATES = [44100, 48000]


def _shaper(x):
    """A memoryless asymmetric distortion: no filter, so no group delay of its own."""
    return np.tanh(2.0 * x) + 0.1 * x * x


def _delay(x, samples):
    """``x`` delayed by ``samples`` (ahead when negative), same length, zero-filled."""
    out = np.zeros_like(x)
    if samples >= 0:
        out[samples:] = x[: x.size - samples]
    else:
        out[:samples] = x[-samples:]
    return out


def _dry(duration_s, sample_rate, seed=0):
    return signals.program(duration_s, sample_rate, seed).astype(np.float64) + signals.white_noise(
        duration_s, sample_rate, seed + 100, peak=0.05
    )


def _write(path, data, sample_rate, subtype="FLOAT"):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), data, sample_rate, subtype=subtype)
    return path


def _nam_folder(tmp_path, sample_rate, wet_fn=_shaper, delay=37, duration_s=2.0):
    dry = _dry(duration_s, sample_rate)
    wet = _delay(wet_fn(dry), delay)
    _write(tmp_path / "input.wav", dry, sample_rate)
    _write(tmp_path / "output.wav", wet, sample_rate)
    return dry, wet


# --------------------------------------------------------------------------- latency


@pytest.mark.parametrize("sample_rate", RATES)
def test_latency_of_a_delayed_memoryless_device_is_exact(sample_rate):
    dry = _dry(2.0, sample_rate)
    assert estimate_latency(dry, _delay(_shaper(dry), 37), sample_rate, 50.0) == 37
    assert estimate_latency(dry, _delay(_shaper(dry), -5), sample_rate, 50.0) == -5
    assert estimate_latency(dry, -_delay(_shaper(dry), 37), sample_rate, 50.0) == 37  # inverted
    assert estimate_latency(dry, _shaper(dry), sample_rate, 50.0) == 0


@settings(max_examples=15, deadline=None)
@given(delay=st.integers(-200, 200), gain=st.floats(0.05, 2.0), seed=st.integers(0, 1000))
def test_latency_of_any_pure_delay_is_exact(delay, gain, seed):
    dry = np.random.default_rng(seed).uniform(-0.5, 0.5, 12000)
    wet = _delay(np.clip(gain * dry, -0.3, 0.3), delay)
    lag = estimate_latency(dry, wet, 44100, 10.0)
    assert lag == delay
    aligned_dry, aligned_wet = compensate(dry, wet, lag)
    assert aligned_dry.size == aligned_wet.size == dry.size - abs(delay)
    np.testing.assert_array_equal(aligned_wet, np.clip(gain * aligned_dry, -0.3, 0.3))


def test_latency_agrees_with_scipy_correlate_on_a_pure_delay():
    rng = np.random.default_rng(3)
    dry = rng.standard_normal(8000)
    wet = 0.5 * _delay(dry, 123) + 0.01 * rng.standard_normal(dry.size)
    plain = scipy.signal.correlate(wet, dry, mode="full", method="direct")
    lags = scipy.signal.correlation_lags(wet.size, dry.size, mode="full")
    assert lags[np.argmax(plain)] == 123
    assert estimate_latency(dry, wet, 48000, 50.0) == 123


@pytest.mark.parametrize("sample_rate", RATES)
@pytest.mark.parametrize("name", ["tube_amp", "fuzz", "overdrive"])
def test_latency_through_built_in_devices(name, sample_rate):
    """37 inserted samples plus the device's own filter group delay (a few samples, never less)."""
    dry = _dry(2.0, sample_rate)
    wet = _delay(devices.get_device(name).process(dry, sample_rate), 37)
    assert 37 <= estimate_latency(dry, wet, sample_rate, 50.0) <= 40


def test_latency_beyond_the_limit_is_an_error_and_unrelated_files_a_warning(caplog):
    dry = _dry(2.0, 48000)
    with pytest.raises(
        DatasetError, match=r"the wet signal: lags the dry one by 3000 samples \(62.5 ms\).*50 ms"
    ):
        estimate_latency(dry, _delay(_shaper(dry), 3000), 48000, 50.0)
    assert estimate_latency(dry, _delay(_shaper(dry), 3000), 48000, 100.0) == 3000
    with caplog.at_level(logging.WARNING, logger="models.data.recordings"):
        estimate_latency(
            signals.white_noise(2.0, 48000, 1), signals.white_noise(2.0, 48000, 2), 48000, 50.0
        )
    assert "the wet signal: barely correlates with the dry signal" in caplog.text


# --------------------------------------------------------------------------- layouts


@pytest.mark.parametrize("sample_rate", RATES)
def test_nam_layout_is_aligned_and_split(tmp_path, sample_rate, caplog):
    dry, _ = _nam_folder(tmp_path, sample_rate)
    with caplog.at_level(logging.INFO, logger="models.data.recordings"):
        dataset = load_dataset({"name": "amp", "path": str(tmp_path)})
    assert dataset.latency_samples == 37
    assert "latency 37 samples" in caplog.text
    assert dataset.sample_rate == sample_rate and dataset.knob_names == ()
    assert "nam layout" in dataset.description and "37 samples" in dataset.description
    n = dry.size - 37
    lengths = [dataset.splits[s][0].num_samples for s in ("train", "validation", "test")]
    assert lengths == [round(0.7 * n), round(0.85 * n) - round(0.7 * n), n - round(0.85 * n)]
    joined_in = np.concatenate(
        [dataset.splits[s][0].input for s in ("train", "validation", "test")]
    )
    joined_out = np.concatenate(
        [dataset.splits[s][0].target for s in ("train", "validation", "test")]
    )
    # After compensation the wet sample n answers the dry sample n exactly.
    np.testing.assert_allclose(joined_in, dry[:n].astype(np.float32), rtol=0, atol=1e-7)
    np.testing.assert_allclose(
        joined_out, _shaper(joined_in.astype(np.float64)), rtol=1e-5, atol=1e-6
    )


def test_latency_beyond_the_limit_names_the_files(tmp_path):
    _nam_folder(tmp_path, 48000, delay=3000)
    with pytest.raises(
        DatasetError, match=r"output.wav \(against input.wav\): lags the dry one by 3000 samples"
    ):
        load_dataset(DatasetConfig(name="amp", path=str(tmp_path)))
    assert (
        load_dataset(
            DatasetConfig(name="amp", path=str(tmp_path), max_latency_ms=80.0)
        ).latency_samples
        == 3000
    )


def test_latency_can_be_measured_without_compensation(tmp_path):
    dry, _ = _nam_folder(tmp_path, 48000)
    dataset = load_dataset(
        DatasetConfig(name="amp", path=str(tmp_path), layout="nam", compensate_latency=False)
    )
    assert dataset.latency_samples == 37
    assert sum(dataset.splits[s][0].num_samples for s in dataset.splits) == dry.size
    assert "not compensated" in dataset.description


@pytest.mark.parametrize("as_data_folder", [False, True])
def test_wright_layout_uses_the_folders_as_splits(tmp_path, as_data_folder):
    fs = 44100
    lengths = {"train": 1.5, "val": 0.6, "test": 0.5}
    for index, (split, seconds) in enumerate(lengths.items()):
        dry = _dry(seconds, fs, seed=index)
        _write(tmp_path / "Data" / split / "amp-input.wav", dry, fs)
        _write(tmp_path / "Data" / split / "amp-target.wav", _delay(_shaper(dry), 12), fs)
    # A recording present in one split only does not make the choice ambiguous.
    _write(tmp_path / "Data" / "train" / "other-input.wav", _dry(0.5, fs), fs)
    _write(tmp_path / "Data" / "train" / "other-target.wav", _dry(0.5, fs), fs)
    path = tmp_path / "Data" if as_data_folder else tmp_path
    dataset = load_dataset(DatasetConfig(name="my-amp", path=str(path)))
    assert "wright layout" in dataset.description
    assert dataset.latency_samples == 12
    for ours, theirs in (("train", "train"), ("validation", "val"), ("test", "test")):
        (segment,) = dataset.splits[ours]
        assert segment.num_samples == round(lengths[theirs] * fs) - 12
        np.testing.assert_allclose(
            segment.target, _shaper(segment.input.astype(np.float64)), atol=1e-5
        )


def test_wright_layout_with_several_names_needs_the_dataset_name(tmp_path):
    fs = 44100
    for split in ("train", "val", "test"):
        for name in ("ht1", "muff"):
            dry = _dry(0.5, fs)
            _write(tmp_path / "Data" / split / f"{name}-input.wav", dry, fs)
            _write(tmp_path / "Data" / split / f"{name}-target.wav", _shaper(dry), fs)
    with pytest.raises(DatasetError, match="found names in all three: ht1, muff"):
        load_dataset(DatasetConfig(name="amp", path=str(tmp_path)))
    assert load_dataset(DatasetConfig(name="muff", path=str(tmp_path))).latency_samples == 0
    (tmp_path / "Data" / "val" / "muff-target.wav").unlink()
    with pytest.raises(
        DatasetError, match="muff-input.wav: has no partner; expected .*muff-target.wav"
    ):
        load_dataset(DatasetConfig(name="muff", path=str(tmp_path)))


def _conditioned_folder(tmp_path, fs, values=(0.0, 0.5, 1.0), delay=21):
    device = devices.get_device("overdrive_drive")
    dry = _dry(1.5, fs)
    _write(tmp_path / "dry.wav", dry, fs)
    rows = ["input,output,drive"]
    for value in values:
        name = f"drive_{int(value * 100):03d}.wav"
        _write(tmp_path / name, _delay(device.process(dry, fs, {"drive": value}), delay), fs)
        rows.append(f"dry.wav,{name},{value}")
    (tmp_path / "conditions.csv").write_text("\n".join(rows) + "\n")
    return dry


@pytest.mark.parametrize("sample_rate", RATES)
def test_conditioned_layout_reads_knob_values_from_the_sidecar(tmp_path, sample_rate):
    _conditioned_folder(tmp_path, sample_rate)
    dataset = load_dataset(DatasetConfig(name="od", path=str(tmp_path)))
    assert dataset.knob_names == ("drive",)
    assert "conditioned layout, 3 pairs" in dataset.description
    for split in ("train", "validation", "test"):
        assert [s.knobs for s in dataset.splits[split]] == [(0.0,), (0.5,), (1.0,)]
    # 21 inserted samples plus the overdrive's own filter delay.
    assert 21 <= dataset.latency_samples <= 24


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("in,out,drive\n", r"line 1: expected a header 'input,output,<knob>"),
        ("input,output\ndry.wav,drive_000.wav\n", r"line 1: expected a header"),
        ("input,output,drive\ndry.wav,drive_000.wav\n", r"line 2: expected 3 fields"),
        (
            "input,output,drive\ndry.wav,drive_000.wav,high\n",
            r"line 2: drive must be a number, found 'high'",
        ),
        ("input,output,drive\n\ndry.wav,drive_000.wav,7\n", r"line 3: drive must be in \[0, 1\]"),
        ("input,output,drive\n", r"lists no pairs"),
        ("input,output,drive\ndry.wav,missing.wav,0.5\n", r"missing.wav: no such file"),
    ],
)
def test_sidecar_mistakes_are_reported_with_their_line(tmp_path, content, message):
    _conditioned_folder(tmp_path, 44100, values=(0.0,))
    (tmp_path / "conditions.csv").write_text(content)
    with pytest.raises(DatasetError, match=message):
        load_dataset(DatasetConfig(name="od", path=str(tmp_path)))


# --------------------------------------------------------------------------- validation


def test_sample_rate_mismatch_is_refused_or_resampled(tmp_path):
    dry = _dry(2.0, 48000)
    wet48 = _delay(_shaper(dry), 37)
    _write(tmp_path / "input.wav", dry, 48000)
    _write(tmp_path / "output.wav", scipy.signal.resample_poly(wet48, 147, 160), 44100)
    with pytest.raises(
        DatasetError,
        match=r"output.wav: sample rate 44100 Hz; expected 48000 Hz like .*input.wav.*resample: true",
    ):
        load_dataset(DatasetConfig(name="amp", path=str(tmp_path)))
    dataset = load_dataset(
        DatasetConfig(name="amp", path=str(tmp_path), resample=True, sample_rate=48000)
    )
    assert dataset.sample_rate == 48000
    assert "(resampled)" in dataset.description
    assert abs(dataset.latency_samples - 37) <= 1
    # Everything to 44.1 kHz instead: 37 samples at 48 kHz are 34 at 44.1 kHz.
    dataset = load_dataset(
        DatasetConfig(name="amp", path=str(tmp_path), resample=True, sample_rate=44100)
    )
    assert dataset.sample_rate == 44100 and abs(dataset.latency_samples - 34) <= 1


def test_length_mismatch_names_both_files(tmp_path):
    dry = _dry(1.0, 48000)
    _write(tmp_path / "input.wav", dry, 48000)
    _write(tmp_path / "output.wav", _shaper(dry)[:-100], 48000)
    with pytest.raises(
        DatasetError, match=r"output.wav: has 47900 samples \(0.998 s\) but .*input.wav has 48000"
    ):
        load_dataset(DatasetConfig(name="amp", path=str(tmp_path)))


def test_multichannel_is_refused_unless_a_channel_is_picked(tmp_path):
    dry = _dry(1.0, 48000)
    stereo = np.stack([0.5 * _shaper(dry), _shaper(dry)], axis=1)
    _write(tmp_path / "input.wav", dry, 48000)
    _write(tmp_path / "output.wav", stereo, 48000)
    with pytest.raises(
        DatasetError, match=r"output.wav: has 2 channels; expected mono.*\(0 to 1\)"
    ):
        load_dataset(DatasetConfig(name="amp", path=str(tmp_path)))
    with pytest.raises(DatasetError, match=r"channel 2 does not exist \(expected 0 to 1\)"):
        load_dataset(DatasetConfig(name="amp", path=str(tmp_path), channel=2))
    dataset = load_dataset(DatasetConfig(name="amp", path=str(tmp_path), channel=1))
    segment = dataset.splits["train"][0]
    np.testing.assert_allclose(segment.target, _shaper(segment.input.astype(np.float64)), atol=1e-5)


@pytest.mark.parametrize(("bad", "word"), [(np.nan, "NaN"), (np.inf, "infinite")])
def test_non_finite_samples_name_the_first_index(tmp_path, bad, word):
    dry = _dry(1.0, 48000)
    wet = _shaper(dry)
    wet[[1234, 5000]] = bad
    _write(tmp_path / "input.wav", dry, 48000)
    _write(tmp_path / "output.wav", wet, 48000)
    with pytest.raises(
        DatasetError, match=rf"output.wav: sample 1234 \(0.026 s\) is {word} \(2 non-finite samples"
    ):
        load_dataset(DatasetConfig(name="amp", path=str(tmp_path)))


def test_silent_files_and_silent_splits_are_errors(tmp_path):
    dry = _dry(1.0, 48000)
    _write(tmp_path / "input.wav", dry, 48000)
    _write(tmp_path / "output.wav", np.zeros_like(dry), 48000)
    with pytest.raises(
        DatasetError, match=r"output.wav: is silent \(all zeros\); expected audio peaking above -60"
    ):
        load_dataset(DatasetConfig(name="amp", path=str(tmp_path)))
    wet = _shaper(dry)
    wet[int(0.8 * wet.size) :] = 0.0
    _write(tmp_path / "output.wav", wet, 48000)
    with pytest.raises(
        DatasetError, match=r"output.wav: the test split \(target, 0.15 s\) is silent"
    ):
        load_dataset(DatasetConfig(name="amp", path=str(tmp_path)))


def test_clipping_is_a_warning_not_an_error(tmp_path, caplog):
    dry = _dry(1.0, 48000)
    wet = _shaper(dry)
    wet[10000:10010] = 1.0
    _write(tmp_path / "input.wav", dry, 48000)
    _write(tmp_path / "output.wav", wet, 48000, subtype="PCM_16")
    with caplog.at_level(logging.WARNING, logger="models.data.recordings"):
        dataset = load_dataset(DatasetConfig(name="amp", path=str(tmp_path)))
    assert "output.wav: looks clipped: 1 runs of 3+ samples at full scale" in caplog.text
    assert "first at sample 10000" in caplog.text
    assert "input.wav: looks clipped" not in caplog.text
    assert dataset.latency_samples == 0


def test_folder_problems_are_explained(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(DatasetConfig(name="amp", path=str(tmp_path / "nowhere")))
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DatasetError, match="is a file; expected a folder"):
        load_dataset(DatasetConfig(name="amp", path=str(tmp_path / "notes.txt")))
    with pytest.raises(DatasetError, match=r"no recording layout recognised; .*found: notes.txt"):
        load_dataset(DatasetConfig(name="amp", path=str(tmp_path)))
    with pytest.raises(DatasetError, match=r"expected input.wav \(NAM layout\)"):
        load_dataset(DatasetConfig(name="amp", path=str(tmp_path), layout="nam"))
    (tmp_path / "input.wav").write_text("not audio")
    _write(tmp_path / "output.wav", _dry(0.5, 48000), 48000)
    with pytest.raises(DatasetError, match="input.wav: cannot be read as audio"):
        load_dataset(DatasetConfig(name="amp", path=str(tmp_path)))


# --------------------------------------------------------------------------- zero-latency captures, confidence, override

NAM_REFERENCE = Path(__file__).resolve().parents[1] / "data" / "nam-reference"


def _capture_folder(folder, model, delay=0, seconds=8.0, seed=2):
    """NAM-layout recordings of the programme through ``model`` (float WAVs), ``delay`` samples late."""
    dry = signals.program(seconds, 48000, seed)
    wet = render(model, dry).astype(np.float64)
    _write(folder / "input.wav", dry, 48000)
    _write(folder / "output.wav", _delay(wet, delay), 48000)
    return folder


@pytest.mark.slow
def test_a_zero_latency_wavenet_exported_to_nam_is_not_shifted(tmp_path, caplog):
    """A causal network renders sample-aligned: 0 samples, whatever its linear response looks like."""
    torch.manual_seed(0)
    export_nam(WaveNet(from_preset("nano")).eval(), tmp_path / "nano.nam", 48000)
    model, _ = load_nam(tmp_path / "nano.nam")
    with caplog.at_level(logging.INFO, logger="models.data.recordings"):
        dataset = load_dataset({"name": "capture", "path": str(_capture_folder(tmp_path / "aligned", model))})
    assert dataset.latency_samples == 0
    assert dataset.latency.basis != "set by the user" and 0.5 <= dataset.latency.confidence <= 1.0
    assert "latency 0 samples" in dataset.description and "confidence" in dataset.description
    assert "latency 0 samples (0.00 ms; estimated" in caplog.text
    # The same render 12 samples late (a real delay) is found as such.
    delayed = load_dataset({"name": "capture", "path": str(_capture_folder(tmp_path / "late", model, delay=12))})
    assert delayed.latency_samples == 12


@pytest.mark.slow
def test_the_dataset_command_prints_the_estimate_and_its_confidence_or_the_users_number(tmp_path, capsys):
    torch.manual_seed(0)
    folder = _capture_folder(tmp_path, WaveNet(from_preset("nano")).eval(), delay=12)
    assert main(["dataset", "--path", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "latency 12 samples (0.25 ms; estimated from the " in out and ", confidence " in out
    assert main(["dataset", "--path", str(folder), "--latency-samples", "10"]) == 0
    assert "latency 10 samples (0.21 ms; set by the user), compensated" in capsys.readouterr().out


def test_nams_own_wavenet_is_not_shifted(tmp_path):
    """NAM's example wavenet.nam explains 49 % of its linear energy at lag 17 and 0.04 % at lag 0:
    the fit alone would place it at 16 samples; the programme's onsets show it answers at once."""
    file = NAM_REFERENCE / "models" / "wavenet.nam"
    model, _ = load_nam(file)
    dataset = load_dataset({"name": "wavenet", "path": str(_capture_folder(tmp_path, model))})
    assert dataset.latency_samples == 0
    assert dataset.latency.confidence >= 0.5 and dataset.latency.level == "high"


def test_confidence_is_high_for_a_pure_delay_and_zero_for_unrelated_files():
    # A pure delay of white noise puts all explained energy in one tap: an alignment 4 samples
    # later loses it all but what the fit's band limit (the top 10 % of the band left out) lets
    # neighbouring samples predict, a few per cent.
    dry = np.random.default_rng(5).standard_normal(48000)
    estimate = measure_latency(dry, _delay(dry, 25), 48000, 50.0)
    assert estimate.samples == 25 and estimate.confidence >= 0.9 and estimate.level == "high"
    unrelated = measure_latency(signals.white_noise(2.0, 48000, 1), signals.white_noise(2.0, 48000, 2), 48000, 50.0)
    assert unrelated.confidence == 0.0 and unrelated.level == "low"


def test_the_user_can_set_the_latency(tmp_path, caplog):
    dry, _ = _nam_folder(tmp_path, 48000, delay=37)
    with caplog.at_level(logging.INFO, logger="models.data.recordings"):
        dataset = load_dataset({"name": "amp", "path": str(tmp_path), "latency_samples": 40})
    assert dataset.latency_samples == 40 and dataset.latency.basis == "set by the user"
    assert dataset.latency.confidence is None
    assert "latency 40 samples (0.83 ms; set by the user)" in dataset.description
    assert "latency_samples 40 set by the user; the estimate would be 37 samples" in caplog.text
    # Compensated by the user's number: wet[n + 40] answers dry[n].
    joined = np.concatenate([dataset.splits[s][0].target for s in ("train", "validation", "test")])
    assert joined.size == dry.size - 40
    np.testing.assert_allclose(joined, _shaper(dry[3 : dry.size - 37]).astype(np.float32), atol=1e-6)
    # Even where the estimate refuses (a peak beyond max_latency_ms), the user's number holds.
    _nam_folder(tmp_path, 48000, delay=3000)
    assert load_dataset({"name": "amp", "path": str(tmp_path), "latency_samples": 3000}).latency_samples == 3000
    with pytest.raises(ConfigError, match="'latency_samples' sets the latency of recordings"):
        DatasetConfig(name="amp", device="tube_amp", latency_samples=3)


def test_the_estimate_of_three_minutes_reads_only_stretches_of_it():
    """The correlation and the fit see at most 2^19 and 2^18 samples; only the onset scan reads
    the whole signal, so three minutes at 48 kHz cost about as much as 11 s."""
    dry = np.random.default_rng(6).uniform(-0.5, 0.5, 180 * 48000)
    wet = _delay(_shaper(dry), 20)
    started = time.perf_counter()
    assert estimate_latency(dry, wet, 48000, 50.0) == 20
    assert time.perf_counter() - started < 5.0  # 0.3 s measured on a busy two-core machine
