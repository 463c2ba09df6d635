"""Distilling a capture: a dataset whose targets are a ``.nam`` file's render of the dry signal.

A study dataset ``{name: mycapture, teacher_nam: path/to/capture.nam}`` lets a musician who has
only a ``.nam`` file train smaller students of it: the dry signal (the built-in programme of
:func:`models.dsp.signals.program`, ``duration_s`` and ``seed`` as for built-in devices, or the
user's own WAV files named by ``dry``) is rendered through the capture
(:func:`models.inference.rendering.render`, chunked) and split contiguously like a device's.

- ``slim`` is NAM's slim value (a ``SlimmableContainer``'s level, a slimmable 0.7 WaveNet's
  channels), ``width`` the fraction of channels kept (a slimmable 0.7 WaveNet's slim value, or the
  zoo's cut of a 0.5.x WaveNet or NAM LSTM): :func:`models.export.nam_read.load_nam_at`.
- **Sample rate.** The dataset runs at the capture's rate: a capture only sounds as captured at
  it. The study's ``sample_rate`` must equal it (a one-line error otherwise, since silently
  training at another rate than the study says would mislabel every run); the built-in programme
  is synthesised at that rate, and the user's dry files are resampled to it when ``resample`` is
  true (refused otherwise, as for recordings).
- **Latency** is 0 by construction: the render is sample-aligned with the dry signal.
- Several dry files are rendered one by one (a capture's state does not run from one file into
  the next) and split each on its own, so every split holds one segment per file.
- Nothing is cached: the render is made again whenever the dataset is loaded.

The description names the file, its format version and architecture, the slim value and the
first 12 hex digits of its sha256.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from common.provenance import file_sha256
from models.data.datasets import SPLITS, AudioDataset, DatasetConfig, Segment, split_pair
from models.data.latency import LatencyEstimate
from models.data.recordings import check_not_silent, read_mono, resample
from models.dsp import signals
from models.errors import CheckpointError, ConfigError, DatasetError

logger = logging.getLogger(__name__)

# Render in chunks of this many samples, this many at a time: a standard WaveNet's activations for
# a three-minute programme at once would take gigabytes.
RENDER_CHUNK_SAMPLES = 1 << 16
RENDER_MAX_BATCH = 16
SHA_DIGITS = 12


sha256_of = file_sha256


def load_capture(config: DatasetConfig):
    """``(model, info, sha256)`` of the dataset's ``teacher_nam``; ConfigError naming the key."""
    from models.export.nam_read import load_nam_at

    where = f"dataset {config.name!r}: teacher_nam"
    path = Path(str(config.teacher_nam)).expanduser()
    if not path.is_file():
        found = "a folder" if path.is_dir() else "no such file"
        raise ConfigError(f"{where} {path}: expected a .nam file, found {found}")
    try:
        model, info = load_nam_at(path, slim=config.slim, width=config.width)
    except CheckpointError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return model.eval(), info, sha256_of(path)


def _dry_files(config: DatasetConfig) -> list[Path]:
    entries = (config.dry,) if isinstance(config.dry, str) else tuple(config.dry or ())
    files: list[Path] = []
    for entry in entries:
        path = Path(entry).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() == ".wav" and p.is_file())
            if not found:
                raise ConfigError(f"dataset {config.name!r}: dry {path}: expected WAV files in this folder, found none")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise ConfigError(f"dataset {config.name!r}: dry {path}: no such file or folder; expected dry WAV audio")
    return files


def _dry_signals(config: DatasetConfig, rate: int) -> tuple[list[tuple[str, np.ndarray]], str]:
    """The dry signals as ``(name, (time,) float32)`` pairs and a phrase describing them."""
    if config.dry is None:
        dry = signals.program(config.duration_s, rate, config.seed)
        return [("programme", dry)], f"{config.duration_s:g} s of synthesised programme (seed {config.seed})"
    pieces = []
    for path in _dry_files(config):
        audio, file_rate = read_mono(path, config.channel)
        check_not_silent(audio, str(path))
        if file_rate != rate:
            if not config.resample:
                raise DatasetError(
                    f"{path}: sample rate {file_rate} Hz; expected the capture's {rate} Hz. Set 'resample: true' "
                    "to resample the dry files to it"
                )
            audio = resample(audio, file_rate, rate)
        pieces.append((str(path), audio.astype(np.float32)))
    seconds = sum(audio.size for _, audio in pieces) / rate
    names = ", ".join(Path(name).name for name, _ in pieces[:3]) + (", …" if len(pieces) > 3 else "")
    return pieces, f"{seconds:.1f} s of the user's dry audio ({len(pieces)} file{'s' if len(pieces) != 1 else ''}: {names})"


def build_capture_dataset(config: DatasetConfig) -> AudioDataset:
    """Render the dry signal through the dataset's ``teacher_nam`` and split it contiguously."""
    from models.inference.rendering import render

    if config.teacher_nam is None:
        raise ConfigError(f"dataset {config.name!r}: build_capture_dataset needs 'teacher_nam', found none")
    started = time.perf_counter()
    model, info, sha = load_capture(config)
    file_rate = float(info["sample_rate"])
    rate = int(round(file_rate))
    path = Path(str(config.teacher_nam)).expanduser()
    if rate != file_rate or rate != config.sample_rate:
        raise ConfigError(
            f"dataset {config.name!r}: teacher_nam {path} runs at {file_rate:g} Hz but sample_rate is "
            f"{config.sample_rate} Hz; expected them equal (set sample_rate: {file_rate:g})"
        )
    dry_pieces, detail = _dry_signals(config, rate)
    splits: dict[str, list[Segment]] = {split: [] for split in SPLITS}
    for name, dry in dry_pieces:
        wet = render(model, dry, chunk_samples=RENDER_CHUNK_SAMPLES, max_batch=RENDER_MAX_BATCH)
        bad = np.flatnonzero(~np.isfinite(wet))
        if bad.size:
            raise DatasetError(
                f"dataset {config.name!r}: {path.name} renders {bad.size} non-finite samples of {name}, the first at "
                f"{int(bad[0]) / rate:.3f} s; expected finite audio"
            )
        for split, segment in split_pair(dry, wet, config.split_fractions, (), f"dataset {config.name!r} ({name})").items():
            splits[split].append(segment)
    level = (f", width {info['width']:g}" if info.get("width") is not None
             else f", slim {info['slim']:g}" if info.get("slim") is not None else "")
    dataset = AudioDataset(
        name=config.name,
        sample_rate=rate,
        knob_names=(),
        splits={split: tuple(segments) for split, segments in splits.items()},
        latency_samples=0,
        latency=LatencyEstimate(0, None, "aligned by construction"),
        description=(
            f"capture {path.name} (NAM format {info.get('version')}, {info.get('architecture')}{level}, "
            f"sha256 {sha[:SHA_DIGITS]}) rendering {detail} at {rate} Hz; latency 0 samples (the render is "
            "sample-aligned)"
        ),
    )
    dataset.log_made(f"rendered in {time.perf_counter() - started:.1f} s")
    return dataset
