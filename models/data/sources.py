"""Where a dataset comes from: :func:`load_dataset` renders the synthesised programme of
:mod:`models.dsp.signals` through a built-in device (:func:`build_device_dataset`) or a ``.nam``
capture (:mod:`models.data.capture`), or loads the user's recordings through
:mod:`models.data.recordings`.

Apart from :mod:`models.data.datasets` (the dataset types and splits) so that the recordings
loader can use those types without an import cycle.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from models.config import from_dict
from models.data.capture import build_capture_dataset
from models.data.datasets import SPLITS, AudioDataset, DatasetConfig, Segment, split_pair
from models.data.recordings import load_recordings
from models.dsp import signals
from models.dsp.devices import get_device
from models.errors import ConfigError

logger = logging.getLogger(__name__)


def _knob_seed(seed: int, index: int) -> int:
    """An independent programme seed per knob value, stable across runs."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1, dtype=np.uint64)[0] >> 1)


def build_device_dataset(config: DatasetConfig) -> AudioDataset:
    """Render the synthesised programme through a built-in device and split it contiguously.

    A fixed device gets one programme of ``duration_s`` and one segment per split. A conditioned
    device gets, for each of the ``knob_values``, its own programme of ``duration_s / len(knob_values)``
    rendered at that knob value; each stretch is split on its own, so every split holds one
    segment per knob value.
    """
    if config.device is None:
        raise ConfigError(
            f"dataset {config.name!r}: build_device_dataset needs 'device', found none"
        )
    device = get_device(config.device)
    started = time.perf_counter()
    fs = config.sample_rate
    splits: dict[str, list[Segment]] = {split: [] for split in SPLITS}
    if not device.knob_names:
        dry = signals.program(config.duration_s, fs, config.seed)
        wet = device.process(dry, fs)
        for split, segment in split_pair(
            dry, wet, config.split_fractions, (), f"dataset {config.name!r}"
        ).items():
            splits[split].append(segment)
        detail = f"{config.duration_s:g} s of synthesised programme (seed {config.seed})"
    else:
        if len(device.knob_names) != 1:
            raise ConfigError(
                f"dataset {config.name!r}: knob_values set one knob, but device {config.device!r} has "
                f"{len(device.knob_names)} ({', '.join(device.knob_names)})"
            )
        knob = device.knob_names[0]
        stretch_s = config.duration_s / len(config.knob_values)
        for index, value in enumerate(config.knob_values):
            dry = signals.program(stretch_s, fs, _knob_seed(config.seed, index))
            wet = device.process(dry, fs, {knob: value})
            where = f"dataset {config.name!r} at {knob}={value:g}"
            for split, segment in split_pair(
                dry, wet, config.split_fractions, (value,), where
            ).items():
                splits[split].append(segment)
        values = ", ".join(f"{v:g}" for v in config.knob_values)
        detail = f"{stretch_s:g} s of synthesised programme per {knob} value ({values}; seed {config.seed})"
    dataset = AudioDataset(
        name=config.name,
        sample_rate=fs,
        knob_names=device.knob_names,
        splits={split: tuple(segments) for split, segments in splits.items()},
        latency_samples=0,
        description=f"built-in device {config.device!r} at {fs} Hz: {detail}",
    )
    dataset.log_made(f"built in {time.perf_counter() - started:.1f} s")
    return dataset


def load_dataset(config: DatasetConfig | Mapping[str, Any]) -> AudioDataset:
    """A dataset from its config: a built-in device, recordings (layout detected when ``auto``), or
    a capture's render (``teacher_nam``, :mod:`models.data.capture`).

    A plain mapping (a parsed YAML entry) is converted with :func:`models.config.from_dict`.
    """
    if not isinstance(config, DatasetConfig):
        config = from_dict(DatasetConfig, config, "dataset")
    if config.device is not None:
        return build_device_dataset(config)
    if config.teacher_nam is not None:
        return build_capture_dataset(config)
    return load_recordings(config)
