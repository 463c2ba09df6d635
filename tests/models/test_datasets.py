"""Dataset configs and built-in device datasets: contiguous splits, knob stretches, validation."""

import numpy as np
import pytest

from models.config import from_dict
from models.data.datasets import (
    AudioDataset,
    DatasetConfig,
    Segment,
    split_bounds,
)
from models.data.sources import build_device_dataset, load_dataset
from models.dsp import devices, signals
from models.errors import ConfigError, DatasetError


def test_config_from_mapping_rejects_unknown_keys_and_bad_values():
    config = from_dict(
        DatasetConfig, {"name": "amp", "device": "tube_amp", "split_fractions": [0.8, 0.1, 0.1]}
    )
    assert config.split_fractions == (0.8, 0.1, 0.1) and config.sample_rate == 48000
    with pytest.raises(ConfigError, match="unknown key 'devise'"):
        from_dict(DatasetConfig, {"name": "amp", "devise": "tube_amp"}, "datasets[0]")
    with pytest.raises(ConfigError, match="exactly one of 'device'.*found both"):
        DatasetConfig(name="x", device="fuzz", path="/tmp")
    with pytest.raises(ConfigError, match="found neither"):
        DatasetConfig(name="x")
    with pytest.raises(ConfigError, match=r"sum to 1, found \[0.5, 0.2, 0.2\]"):
        DatasetConfig(name="x", device="fuzz", split_fractions=(0.5, 0.2, 0.2))
    with pytest.raises(ConfigError, match="three positive numbers"):
        DatasetConfig(name="x", device="fuzz", split_fractions=(1.0, 0.0, 0.0))
    with pytest.raises(ConfigError, match=r"knob_values must lie in \[0, 1\], found 2"):
        DatasetConfig(name="x", device="overdrive_drive", knob_values=(0.0, 2.0))
    with pytest.raises(ConfigError, match="seed must be an integer >= 0, found -3"):
        DatasetConfig(name="x", device="fuzz", seed=-3)
    with pytest.raises(ConfigError, match="channel must be >= 0"):
        DatasetConfig(name="x", path="/tmp", channel=-1)
    with pytest.raises(ConfigError, match="layout' applies to recordings"):
        DatasetConfig(name="x", device="fuzz", layout="nam")
    with pytest.raises(ConfigError, match="duration_s must be a positive"):
        DatasetConfig(name="x", device="fuzz", duration_s=0.0)
    with pytest.raises(ConfigError, match="expected one of"):
        from_dict(DatasetConfig, {"name": "x", "path": "/tmp", "layout": "zip"})


def test_split_bounds_tile_the_audio():
    # 0.7 / 0.15 / 0.15 of 1000 samples by hand.
    assert split_bounds(1000, (0.7, 0.15, 0.15)) == [(0, 700), (700, 850), (850, 1000)]
    assert split_bounds(7, (0.5, 0.25, 0.25)) == [(0, 4), (4, 5), (5, 7)]


@pytest.mark.parametrize("sample_rate", [44100, 48000])
def test_fixed_device_dataset_is_the_programme_through_the_device(sample_rate):
    config = DatasetConfig(
        name="amp", device="tube_amp", sample_rate=sample_rate, duration_s=4.0, seed=3
    )
    dataset = load_dataset(config)
    assert dataset.knob_names == () and dataset.latency_samples == 0
    assert dataset.sample_rate == sample_rate
    assert set(dataset.splits) == {"train", "validation", "test"}
    n = 4 * sample_rate
    expected = [int(round(0.7 * n)), int(round(0.85 * n)) - int(round(0.7 * n))]
    expected.append(n - sum(expected))
    lengths = [dataset.splits[s][0].num_samples for s in ("train", "validation", "test")]
    assert lengths == expected
    assert all(len(dataset.splits[s]) == 1 for s in dataset.splits)
    dry = signals.program(4.0, sample_rate, 3)
    wet = devices.get_device("tube_amp").process(dry, sample_rate)
    joined_in = np.concatenate(
        [dataset.splits[s][0].input for s in ("train", "validation", "test")]
    )
    joined_out = np.concatenate(
        [dataset.splits[s][0].target for s in ("train", "validation", "test")]
    )
    np.testing.assert_array_equal(joined_in, dry)
    np.testing.assert_array_equal(joined_out, wet)
    assert dataset.duration_s("train") + dataset.duration_s("validation") + dataset.duration_s(
        "test"
    ) == pytest.approx(4.0)
    assert "tube_amp" in dataset.description and str(sample_rate) in dataset.description
    for segment in dataset.splits["train"]:
        assert segment.input.dtype == np.float32 and segment.target.dtype == np.float32


def test_conditioned_dataset_has_every_knob_value_in_every_split():
    knob_values = (0.0, 0.5, 1.0)
    config = DatasetConfig(
        name="od", device="overdrive_drive", duration_s=3.0, knob_values=knob_values, seed=1
    )
    dataset = build_device_dataset(config)
    assert dataset.knob_names == ("drive",)
    device = devices.get_device("overdrive_drive")
    stretches = []
    for split in ("train", "validation", "test"):
        segments = dataset.splits[split]
        assert [s.knobs for s in segments] == [(v,) for v in knob_values]
    for index, value in enumerate(knob_values):
        dry = np.concatenate(
            [dataset.splits[s][index].input for s in ("train", "validation", "test")]
        )
        wet = np.concatenate(
            [dataset.splits[s][index].target for s in ("train", "validation", "test")]
        )
        assert dry.size == 48000  # 3 s over three knob values
        np.testing.assert_array_equal(wet, device.process(dry, 48000, {"drive": value}))
        stretches.append(dry)
    # Each knob value has its own programme, not the same audio three times.
    assert not np.array_equal(stretches[0], stretches[1])
    assert dataset.duration_s("train") == pytest.approx(3 * 0.7)


def test_datasets_are_seeded():
    a = load_dataset({"name": "f", "device": "fuzz", "duration_s": 1.0, "seed": 4})
    b = load_dataset({"name": "f", "device": "fuzz", "duration_s": 1.0, "seed": 4})
    c = load_dataset({"name": "f", "device": "fuzz", "duration_s": 1.0, "seed": 5})
    np.testing.assert_array_equal(a.splits["test"][0].target, b.splits["test"][0].target)
    assert not np.array_equal(a.splits["test"][0].input, c.splits["test"][0].input)


def test_unknown_device_and_too_short_audio_are_reported():
    with pytest.raises(ConfigError, match="unknown device preset 'wah'"):
        load_dataset(DatasetConfig(name="w", device="wah", duration_s=1.0))
    with pytest.raises(DatasetError, match="the test split of 3 samples.*is empty"):
        load_dataset(DatasetConfig(name="w", device="fuzz", duration_s=3 / 48000))


def test_segment_and_dataset_invariants():
    with pytest.raises(DatasetError, match="input has 3 samples but target has 2"):
        Segment(np.zeros(3, np.float32), np.zeros(2, np.float32))
    segment = Segment(np.zeros(3, np.float32), np.zeros(3, np.float32))
    with pytest.raises(DatasetError, match="expected splits"):
        AudioDataset("d", 48000, (), {"train": (segment,), "test": (segment,)}, 0, "")
    with pytest.raises(DatasetError, match="1 knob values; expected 0"):
        AudioDataset(
            "d",
            48000,
            (),
            {
                "train": (Segment(segment.input, segment.target, (0.5,)),),
                "validation": (segment,),
                "test": (segment,),
            },
            0,
            "",
        )
    dataset = AudioDataset(
        "d", 48000, (), {s: (segment,) for s in ("train", "validation", "test")}, 0, ""
    )
    with pytest.raises(DatasetError, match="unknown split 'val'"):
        dataset.duration_s("val")
