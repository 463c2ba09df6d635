"""Paired dry/wet audio for training: built-in device datasets and the user's recordings.

A dataset is an :class:`AudioDataset` with three contiguous splits (``train``, ``validation``,
``test``) of :class:`Segment` objects, each a dry ``input`` and wet ``target`` of the same length
plus the knob values it was recorded at. :func:`models.data.sources.load_dataset` builds one from a
:class:`DatasetConfig` (one entry of a study's ``datasets:`` list).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping
from typing import Literal

import numpy as np

from models.data.latency import LatencyEstimate
from models.errors import ConfigError, DatasetError
from models.resources import memory_bytes, memory_shortfall

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
# Peak memory per programme sample of a built-in device dataset: about 60-75 bytes measured while
# synthesising and rendering (overdrive, 5-20 s at 48 kHz), plus the training windows' float32
# input/target copies.
DEVICE_BYTES_PER_SAMPLE = 84


@dataclasses.dataclass(frozen=True)
class Segment:
    """One contiguous stretch of paired audio.

    ``input`` and ``target``: ``(time,)`` float32 of equal length; ``knobs``: the conditioning
    values in the order of :attr:`AudioDataset.knob_names` (``()`` for a fixed device).
    """

    input: np.ndarray
    target: np.ndarray
    knobs: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.input.ndim != 1 or self.target.ndim != 1:
            raise DatasetError(
                f"segment: expected (time,) input and target, found shapes {self.input.shape} and {self.target.shape}"
            )
        if self.input.shape != self.target.shape:
            raise DatasetError(
                f"segment: input has {self.input.size} samples but target has {self.target.size}; expected equal lengths"
            )

    @property
    def num_samples(self) -> int:
        return int(self.input.size)


@dataclasses.dataclass(frozen=True)
class AudioDataset:
    """Train / validation / test segments of one device or recording set at one sample rate.

    ``latency_samples``: the wet signal's latency removed from (or, without compensation, left
    in) the targets; ``latency``: where that number comes from and its confidence (None for a
    dataset aligned by construction that measured nothing).
    """

    name: str
    sample_rate: int
    knob_names: tuple[str, ...]
    splits: Mapping[str, tuple[Segment, ...]]
    latency_samples: int
    description: str
    latency: LatencyEstimate | None = None

    def __post_init__(self) -> None:
        if tuple(sorted(self.splits)) != tuple(sorted(SPLITS)):
            raise DatasetError(
                f"dataset {self.name!r}: expected splits {list(SPLITS)}, found {sorted(self.splits)}"
            )
        for split, segments in self.splits.items():
            if not segments:
                raise DatasetError(f"dataset {self.name!r}: split {split!r} holds no segment")
            for segment in segments:
                if len(segment.knobs) != len(self.knob_names):
                    raise DatasetError(
                        f"dataset {self.name!r}: split {split!r} has a segment with {len(segment.knobs)} "
                        f"knob values; expected {len(self.knob_names)} ({', '.join(self.knob_names) or 'none'})"
                    )

    def duration_s(self, split: str) -> float:
        """Total length of ``split`` in seconds (all its segments)."""
        if split not in self.splits:
            raise DatasetError(
                f"dataset {self.name!r}: unknown split {split!r}; expected one of {list(SPLITS)}"
            )
        return sum(segment.num_samples for segment in self.splits[split]) / self.sample_rate

    def log_made(self, how: str = "") -> None:
        """Log what the dataset holds (its description and split lengths); ``how``: e.g. ``built in 1.2 s``."""
        logger.info("dataset %s: %s; train %.1f s, validation %.1f s, test %.1f s%s", self.name, self.description,
                    self.duration_s("train"), self.duration_s("validation"), self.duration_s("test"),
                    f" ({how})" if how else "")


@dataclasses.dataclass(frozen=True)
class DatasetConfig:
    """One dataset of a study: a built-in ``device`` preset, a ``path`` to the user's recordings,
    or a ``teacher_nam`` capture to distill.

    ``sample_rate`` and ``duration_s`` (the whole programme, split over the knob values of a
    conditioned device) apply to built-in devices and captures; for recordings ``sample_rate`` is
    the rate files are resampled to when ``resample`` is true. ``split_fractions`` are contiguous
    train / validation / test fractions. ``channel`` picks one channel of multichannel files
    (``None`` refuses them). Latency up to ``max_latency_ms`` is estimated and, if
    ``compensate_latency``, removed; ``latency_samples`` (recordings only) sets it instead of the
    estimate.

    ``teacher_nam`` (see :mod:`models.data.capture`): a ``.nam`` file whose render of the dry
    signal is the target; ``slim`` picks a level of a ``SlimmableContainer`` file, ``width`` the
    width of a slimmable NAM WaveNet; ``dry`` is the user's dry audio (a WAV file, a folder of WAV
    files, or a list of either; default the built-in programme of ``duration_s`` and ``seed``),
    resampled to the capture's rate when ``resample`` is true. Relative paths are relative to the
    working directory, as ``path`` is.
    """

    name: str
    device: str | None = None
    path: str | None = None
    teacher_nam: str | None = None
    layout: Literal["auto", "nam", "wright", "conditioned"] = "auto"
    sample_rate: int = 48000
    duration_s: float = 180.0
    # tuple[float, ...] with the length checked below (an error that names the count found).
    split_fractions: tuple[float, ...] = (0.7, 0.15, 0.15)
    knob_values: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    seed: int = 0
    resample: bool = False
    channel: int | None = None
    max_latency_ms: float = 50.0
    compensate_latency: bool = True
    latency_samples: int | None = None
    slim: float | None = None
    width: float | None = None
    dry: str | tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        where = f"dataset {self.name!r}"
        if not self.name:
            raise ConfigError("dataset: name must be a non-empty string")
        sources = [key for key in ("device", "path", "teacher_nam") if getattr(self, key) is not None]
        if len(sources) != 1:
            found = {0: "neither", 2: "both {} and {}", 3: "all three"}[len(sources)].format(*map(repr, sources))
            raise ConfigError(
                f"{where}: expected exactly one of 'device' (a built-in preset), 'path' (a folder of "
                f"recordings) or 'teacher_nam' (a .nam capture to distill), found {found}"
            )
        if self.device is not None and self.layout != "auto":
            raise ConfigError(
                f"{where}: 'layout' applies to recordings only, found layout {self.layout!r} with a device"
            )
        if self.teacher_nam is not None and self.layout != "auto":
            raise ConfigError(
                f"{where}: 'layout' applies to recordings only, found layout {self.layout!r} with teacher_nam"
            )
        for key in ("slim", "width", "dry"):
            if getattr(self, key) is not None and self.teacher_nam is None:
                raise ConfigError(
                    f"{where}: {key!r} applies to a teacher_nam dataset only, found it with "
                    f"{'a device' if self.device is not None else 'recordings (path)'}"
                )
        if self.slim is not None and self.width is not None:
            raise ConfigError(
                f"{where}: expected at most one of 'slim' (a SlimmableContainer's level) and 'width' (a "
                "slimmable WaveNet's width), found both"
            )
        for key in ("slim", "width"):
            value = getattr(self, key)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ConfigError(f"{where}: {key} must lie in [0, 1], found {value}")
        if isinstance(self.dry, tuple) and not self.dry:
            raise ConfigError(f"{where}: dry must name at least one WAV file or folder, found an empty list")
        if self.latency_samples is not None and self.path is None:
            raise ConfigError(
                f"{where}: 'latency_samples' sets the latency of recordings (path) only; found it with "
                f"{'a device' if self.device is not None else 'teacher_nam (its render is sample-aligned)'}"
            )
        if self.sample_rate <= 0:
            raise ConfigError(
                f"{where}: sample_rate must be a positive integer, found {self.sample_rate}"
            )
        if not (math.isfinite(self.duration_s) and self.duration_s > 0):
            raise ConfigError(
                f"{where}: duration_s must be a positive number, found {self.duration_s}"
            )
        if self.device is not None or (self.teacher_nam is not None and self.dry is None):
            needed = self.duration_s * self.sample_rate * DEVICE_BYTES_PER_SAMPLE
            shortfall = memory_shortfall(needed)
            if shortfall is not None:
                most_s = (memory_bytes() or 0) / (self.sample_rate * DEVICE_BYTES_PER_SAMPLE)
                raise ConfigError(
                    f"{where}: duration_s {self.duration_s:g} s at sample_rate {self.sample_rate} Hz needs "
                    f"{DEVICE_BYTES_PER_SAMPLE} bytes per sample to synthesise, render and window: {shortfall}; "
                    f"expected at most about {most_s:.4g} s at this rate"
                )
        fractions = self.split_fractions
        if len(fractions) != 3 or any(not (math.isfinite(f) and f > 0) for f in fractions):
            raise ConfigError(
                f"{where}: split_fractions must be three positive numbers, found {list(fractions)}"
            )
        if abs(sum(fractions) - 1.0) > 1e-6:
            raise ConfigError(
                f"{where}: split_fractions must sum to 1, found {list(fractions)} (sum {sum(fractions):g})"
            )
        if not self.knob_values:
            raise ConfigError(f"{where}: knob_values must hold at least one value")
        for value in self.knob_values:
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{where}: knob_values must lie in [0, 1], found {value}")
        if len(set(self.knob_values)) != len(self.knob_values):
            raise ConfigError(
                f"{where}: knob_values must be distinct, found {list(self.knob_values)}"
            )
        if self.seed < 0:
            raise ConfigError(f"{where}: seed must be an integer >= 0, found {self.seed}")
        if self.channel is not None and self.channel < 0:
            raise ConfigError(
                f"{where}: channel must be >= 0 (0 is the first channel), found {self.channel}"
            )
        if not (math.isfinite(self.max_latency_ms) and self.max_latency_ms >= 0):
            raise ConfigError(
                f"{where}: max_latency_ms must be a number >= 0, found {self.max_latency_ms}"
            )


def split_bounds(num_samples: int, fractions: tuple[float, float, float]) -> list[tuple[int, int]]:
    """Contiguous ``(start, stop)`` sample ranges of train, validation and test.

    Boundaries are rounded cumulative fractions, so the three ranges tile ``[0, num_samples)``.
    """
    cumulative = np.cumsum((0.0, *fractions))
    edges = [int(round(c * num_samples)) for c in cumulative]
    edges[-1] = num_samples
    return [(edges[i], edges[i + 1]) for i in range(3)]


def split_pair(
    dry: np.ndarray,
    wet: np.ndarray,
    fractions: tuple[float, float, float],
    knobs: tuple[float, ...],
    where: str,
) -> dict[str, Segment]:
    """Cut one aligned pair into contiguous train / validation / test segments (copies, float32)."""
    segments = {}
    for split, (start, stop) in zip(SPLITS, split_bounds(dry.size, fractions), strict=True):
        if stop <= start:
            raise DatasetError(
                f"{where}: the {split} split of {dry.size} samples with fractions {list(fractions)} is empty; "
                "expected longer audio"
            )
        segments[split] = Segment(
            input=np.array(dry[start:stop], dtype=np.float32),
            target=np.array(wet[start:stop], dtype=np.float32),
            knobs=knobs,
        )
    return segments
