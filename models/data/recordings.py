"""The user's own dry/wet recordings: three folder layouts, validation, latency compensation.

Layouts of the folder a dataset's ``path`` points at (``layout: auto`` picks the first that fits,
in this order):

``conditioned``
    Several pairs recorded at different knob settings and a sidecar ``conditions.csv`` with a
    header ``input,output,<knob>[,<knob>...]`` and one row per pair: the dry and wet WAV file
    names (relative to the folder) and each knob's value in [0, 1] (normalise dial positions,
    e.g. 7 on a 0–10 dial is 0.7). The knob columns, in order, become the dataset's
    ``knob_names``; every pair is split contiguously on its own, so each split holds one segment
    per pair. Example::

        input,output,drive
        dry.wav,drive_0.wav,0.0
        dry.wav,drive_5.wav,0.5
        dry.wav,drive_10.wav,1.0

``nam``
    ``input.wav`` (dry) and ``output.wav`` (wet), as Neural Amp Modeler records them; split
    contiguously by ``split_fractions``.

``wright``
    ``Data/{train,val,test}/<name>-input.wav`` and ``<name>-target.wav`` (Wright et al.'s
    Automated-GuitarAmpModelling); the splits are given by the folders. ``path`` may point at the
    folder holding ``Data`` or at ``Data`` itself. When the folders hold several names, the one
    equal to the dataset's name is used.

Every file is validated and problems are reported as :class:`~models.errors.DatasetError`
naming the file, what was expected and what was found: unreadable files, sample rates that
differ (resampled to ``sample_rate`` instead when ``resample`` is true), dry and wet of different
lengths, multichannel files (one channel is picked with ``channel``, otherwise refused), NaN or
infinite samples (with the first sample index), silence (peak below −60 dBFS), and splits that
come out silent. Clipping (runs of three or more samples at full scale, or float samples beyond
it) is a logged warning. The wet file's latency against the dry one is estimated with its
confidence (:func:`models.data.latency.measure_latency`: the largest delay that loses none of the
wet signal's dependence on the dry one), or set by the user (``latency_samples``), removed
(``compensate_latency``), logged and recorded in :attr:`AudioDataset.latency_samples` and
:attr:`AudioDataset.latency`.
"""

from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.signal
import soundfile as sf

from models.data.datasets import SPLITS, AudioDataset, DatasetConfig, Segment, split_pair
from models.data.latency import LatencyEstimate, compensate, estimate_latency, measure_latency
from models.errors import ConfigError, DatasetError

logger = logging.getLogger(__name__)

CONDITIONS_FILE = "conditions.csv"
SILENCE_DBFS = -60.0
# A clipped recording sits at full scale for several samples in a row; a single sample touching
# 0 dBFS is a normalised peak, not clipping.
CLIP_LEVEL = 0.999
CLIP_RUN_SAMPLES = 3
_WRIGHT_SPLITS = {"train": "train", "val": "validation", "test": "test"}


@dataclass(frozen=True)
class _Pair:
    """One dry/wet pair to load, the split it belongs to (None: split by fractions) and its knobs."""

    dry: Path
    wet: Path
    split: str | None = None
    knobs: tuple[float, ...] = ()


# --------------------------------------------------------------------------- files


def read_mono(path: Path, channel: int | None) -> tuple[np.ndarray, int]:
    """A mono float64 ``(time,)`` signal and its sample rate, after the per-file checks."""
    if not path.is_file():
        raise DatasetError(f"{path}: no such file; expected a WAV recording here")
    try:
        data, sample_rate = sf.read(str(path), dtype="float64", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise DatasetError(f"{path}: cannot be read as audio ({exc})") from None
    channels = data.shape[1]
    if channels > 1:
        if channel is None:
            raise DatasetError(
                f"{path}: has {channels} channels; expected mono. Set 'channel' in the dataset "
                f"config to pick one (0 to {channels - 1})"
            )
        if channel >= channels:
            raise DatasetError(
                f"{path}: has {channels} channels; channel {channel} does not exist (expected 0 to {channels - 1})"
            )
        signal = data[:, channel]
        logger.info("%s: using channel %d of %d", path, channel, channels)
    else:
        signal = data[:, 0]
    bad = np.flatnonzero(~np.isfinite(signal))
    if bad.size:
        first = int(bad[0])
        kind = "NaN" if np.isnan(signal[first]) else "infinite"
        raise DatasetError(
            f"{path}: sample {first} ({first / sample_rate:.3f} s) is {kind} "
            f"({bad.size} non-finite samples in all); expected finite audio"
        )
    if signal.size == 0:
        raise DatasetError(f"{path}: holds no samples; expected a recording")
    return signal, int(sample_rate)


def _peak_dbfs(x: np.ndarray) -> float:
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    return 20.0 * math.log10(peak) if peak > 0 else -math.inf


def check_not_silent(x: np.ndarray, where: str) -> None:
    level = _peak_dbfs(x)
    if level < SILENCE_DBFS:
        found = "all zeros" if level == -math.inf else f"peak {level:.1f} dBFS"
        raise DatasetError(
            f"{where}: is silent ({found}); expected audio peaking above {SILENCE_DBFS:g} dBFS"
        )


def _warn_if_clipped(x: np.ndarray, path: Path, sample_rate: int) -> None:
    hot = np.abs(x) >= CLIP_LEVEL
    # Lengths of runs of consecutive hot samples.
    edges = np.diff(np.concatenate([[0], hot.astype(np.int8), [0]]))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    long_runs = (stops - starts) >= CLIP_RUN_SAMPLES
    beyond = np.flatnonzero(np.abs(x) > 1.0)
    if long_runs.any() or beyond.size:
        first = int(
            min(
                starts[long_runs][0] if long_runs.any() else x.size,
                beyond[0] if beyond.size else x.size,
            )
        )
        logger.warning(
            "%s: looks clipped: %d runs of %d+ samples at full scale and %d samples beyond it, "
            "the first at sample %d (%.3f s); the model will learn the clipping too",
            path,
            int(long_runs.sum()),
            CLIP_RUN_SAMPLES,
            beyond.size,
            first,
            first / sample_rate,
        )


def resample(x: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    if source_rate == target_rate:
        return x
    divisor = math.gcd(source_rate, target_rate)
    return scipy.signal.resample_poly(x, target_rate // divisor, source_rate // divisor)


def _rates(pairs: list[_Pair]) -> dict[Path, int]:
    rates = {}
    for pair in pairs:
        for path in (pair.dry, pair.wet):
            if path in rates:
                continue
            if not path.is_file():
                raise DatasetError(f"{path}: no such file; expected a WAV recording here")
            try:
                rates[path] = int(sf.info(str(path)).samplerate)
            except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
                raise DatasetError(f"{path}: cannot be read as audio ({exc})") from None
    return rates


def _latency(
    dry: np.ndarray, wet: np.ndarray, sample_rate: int, config: DatasetConfig, where: str
) -> LatencyEstimate:
    """The measured latency, or the dataset's ``latency_samples`` where the user set it (the
    estimate is still logged next to it, when it can be made, for comparison)."""
    if config.latency_samples is None:
        return measure_latency(dry, wet, sample_rate, config.max_latency_ms, where=where)
    try:
        measured = measure_latency(dry, wet, sample_rate, config.max_latency_ms, where=where)
        logger.info(
            "%s: latency_samples %d set by the user; the estimate would be %s",
            where,
            config.latency_samples,
            measured.describe(sample_rate),
        )
    except DatasetError as exc:
        logger.info("%s: latency_samples %d set by the user; no estimate (%s)", where, config.latency_samples, exc)
    return LatencyEstimate(config.latency_samples, None, "set by the user")


def _load_pair(
    pair: _Pair, config: DatasetConfig, target_rate: int
) -> tuple[np.ndarray, np.ndarray, LatencyEstimate]:
    """Validated, resampled and latency-compensated ``(dry, wet, latency)`` of one pair."""
    dry, dry_rate = read_mono(pair.dry, config.channel)
    wet, wet_rate = read_mono(pair.wet, config.channel)
    if dry_rate == wet_rate and dry.size != wet.size:
        raise DatasetError(
            f"{pair.wet}: has {wet.size} samples ({wet.size / wet_rate:.3f} s) but {pair.dry} has "
            f"{dry.size} ({dry.size / dry_rate:.3f} s); expected dry and wet of the same length"
        )
    for signal, path, rate in ((dry, pair.dry, dry_rate), (wet, pair.wet, wet_rate)):
        check_not_silent(signal, str(path))
        _warn_if_clipped(signal, path, rate)
    dry = resample(dry, dry_rate, target_rate)
    wet = resample(wet, wet_rate, target_rate)
    if dry.size != wet.size:
        # Different source rates: equal durations may differ by a sample after resampling.
        if abs(dry.size - wet.size) > 1:
            raise DatasetError(
                f"{pair.wet}: lasts {wet.size / target_rate:.4f} s but {pair.dry} lasts "
                f"{dry.size / target_rate:.4f} s; expected dry and wet of the same duration"
            )
        size = min(dry.size, wet.size)
        dry, wet = dry[:size], wet[:size]
    where = f"{pair.wet} (against {pair.dry.name})"
    latency = _latency(dry, wet, target_rate, config, where)
    if abs(latency.samples) >= dry.size:
        raise DatasetError(
            f"{where}: a latency of {latency.samples} samples leaves nothing of {dry.size} samples; "
            "expected latency_samples shorter than the recording"
        )
    if config.compensate_latency:
        dry, wet = compensate(dry, wet, latency.samples)
    logger.info(
        "%s: latency %s against %s%s",
        pair.wet.name,
        latency.describe(target_rate),
        pair.dry.name,
        ", compensated" if config.compensate_latency else ", not compensated",
    )
    return dry, wet, latency


# --------------------------------------------------------------------------- layouts


def _wright_root(folder: Path) -> Path | None:
    for candidate in (folder / "Data", folder):
        if all((candidate / split).is_dir() for split in _WRIGHT_SPLITS):
            return candidate
    return None


def detect_layout(folder: Path) -> str:
    """``conditioned``, ``nam`` or ``wright`` for ``folder``; DatasetError saying what was looked for."""
    if (folder / CONDITIONS_FILE).is_file():
        return "conditioned"
    if (folder / "input.wav").is_file() and (folder / "output.wav").is_file():
        return "nam"
    if _wright_root(folder) is not None:
        return "wright"
    found = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
    shown = ", ".join(found[:10]) + (f", … ({len(found)} entries)" if len(found) > 10 else "")
    raise DatasetError(
        f"{folder}: no recording layout recognised; expected {CONDITIONS_FILE} (conditioned), "
        f"input.wav + output.wav (NAM) or Data/{{train,val,test}}/<name>-input.wav + <name>-target.wav "
        f"(Wright); found: {shown or 'an empty folder'}"
    )


def _nam_pairs(folder: Path) -> list[_Pair]:
    return [_Pair(folder / "input.wav", folder / "output.wav")]


def _wright_pairs(folder: Path, dataset_name: str) -> list[_Pair]:
    root = _wright_root(folder)
    if root is None:
        missing = [s for s in _WRIGHT_SPLITS if not (folder / "Data" / s).is_dir()]
        raise DatasetError(
            f"{folder}: expected folders Data/train, Data/val and Data/test (Wright layout); "
            f"missing Data/{missing[0]}"
        )
    names_per_split = {}
    for split in _WRIGHT_SPLITS:
        names = set()
        for inp in sorted((root / split).glob("*-input.wav")):
            name = inp.name[: -len("-input.wav")]
            if not (root / split / f"{name}-target.wav").is_file():
                raise DatasetError(
                    f"{inp}: has no partner; expected {root / split / (name + '-target.wav')}"
                )
            names.add(name)
        if not names:
            raise DatasetError(
                f"{root / split}: expected <name>-input.wav and <name>-target.wav, found none"
            )
        names_per_split[split] = names
    common = set.intersection(*names_per_split.values())
    if dataset_name in common:
        name = dataset_name
    elif len(common) == 1:
        name = next(iter(common))
    else:
        listing = ", ".join(sorted(common)) or "none"
        raise DatasetError(
            f"{root}: expected one recording name present in train, val and test, or one equal to the "
            f"dataset name {dataset_name!r}; found names in all three: {listing}"
        )
    return [
        _Pair(root / split / f"{name}-input.wav", root / split / f"{name}-target.wav", ours)
        for split, ours in _WRIGHT_SPLITS.items()
    ]


def _conditioned_pairs(folder: Path) -> tuple[list[_Pair], tuple[str, ...]]:
    sidecar = folder / CONDITIONS_FILE
    if not sidecar.is_file():
        raise DatasetError(
            f"{folder}: expected a {CONDITIONS_FILE} listing the pairs and their knob values"
        )
    with sidecar.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    rows = [
        (i + 1, [cell.strip() for cell in row])
        for i, row in enumerate(rows)
        if any(c.strip() for c in row)
    ]
    if not rows:
        raise DatasetError(
            f"{sidecar}: is empty; expected a header 'input,output,<knob>...' and one row per pair"
        )
    line, header = rows[0]
    if header[:2] != ["input", "output"] or len(header) < 3:
        raise DatasetError(
            f"{sidecar} line {line}: expected a header 'input,output,<knob>[,<knob>...]', found {','.join(header)!r}"
        )
    knob_names = tuple(header[2:])
    if len(set(knob_names)) != len(knob_names) or "" in knob_names:
        raise DatasetError(
            f"{sidecar} line {line}: knob names must be distinct and non-empty, found {list(knob_names)}"
        )
    pairs = []
    for line, row in rows[1:]:
        if len(row) != len(header):
            raise DatasetError(
                f"{sidecar} line {line}: expected {len(header)} fields ({','.join(header)}), found {len(row)}"
            )
        values = []
        for knob, cell in zip(knob_names, row[2:], strict=True):
            try:
                value = float(cell)
            except ValueError:
                raise DatasetError(
                    f"{sidecar} line {line}: {knob} must be a number, found {cell!r}"
                ) from None
            if not 0.0 <= value <= 1.0:
                raise DatasetError(
                    f"{sidecar} line {line}: {knob} must be in [0, 1] (normalise the dial position), found {cell}"
                )
            values.append(value)
        pairs.append(_Pair(folder / row[0], folder / row[1], None, tuple(values)))
    if not pairs:
        raise DatasetError(f"{sidecar}: lists no pairs; expected one row per recorded knob setting")
    return pairs, knob_names


# --------------------------------------------------------------------------- entry point


def load_recordings(config: DatasetConfig) -> AudioDataset:
    """Load, validate, align and split the user's recordings described by ``config``.

    Returns an :class:`AudioDataset` at the recordings' sample rate (or ``config.sample_rate``
    when ``resample`` is true) whose ``latency_samples`` is the measured latency, or the
    dataset's ``latency_samples`` where the user set it (the first pair's when several pairs were
    measured; all are logged), and ``latency`` that estimate with its confidence.
    """
    if config.path is None:
        raise ConfigError(f"dataset {config.name!r}: load_recordings needs 'path', found none")
    folder = Path(config.path).expanduser()
    if not folder.exists():
        raise DatasetError(
            f"dataset {config.name!r}: path {folder} does not exist; expected a folder of recordings"
        )
    if not folder.is_dir():
        raise DatasetError(
            f"dataset {config.name!r}: path {folder} is a file; expected a folder of recordings"
        )
    layout = detect_layout(folder) if config.layout == "auto" else config.layout
    knob_names: tuple[str, ...] = ()
    if layout == "nam":
        for name in ("input.wav", "output.wav"):
            if not (folder / name).is_file():
                raise DatasetError(f"{folder}: expected {name} (NAM layout), found none")
        pairs = _nam_pairs(folder)
    elif layout == "wright":
        pairs = _wright_pairs(folder, config.name)
    else:
        pairs, knob_names = _conditioned_pairs(folder)

    rates = _rates(pairs)
    first_path, first_rate = next(iter(rates.items()))
    if config.resample:
        target_rate = config.sample_rate
    else:
        for path, rate in rates.items():
            if rate != first_rate:
                raise DatasetError(
                    f"{path}: sample rate {rate} Hz; expected {first_rate} Hz like {first_path}. "
                    f"Set 'resample: true' to resample every file to sample_rate ({config.sample_rate} Hz)"
                )
        target_rate = first_rate
    resampled = sorted(str(p) for p, r in rates.items() if r != target_rate)
    if resampled:
        logger.info(
            "resampling %d files to %d Hz: %s", len(resampled), target_rate, ", ".join(resampled)
        )

    splits: dict[str, list[Segment]] = {split: [] for split in SPLITS}
    latencies = []
    for pair in pairs:
        dry, wet, latency = _load_pair(pair, config, target_rate)
        latencies.append(latency)
        if pair.split is None:
            pieces = split_pair(dry, wet, config.split_fractions, pair.knobs, f"{pair.wet}")
        else:
            pieces = {
                pair.split: Segment(dry.astype(np.float32), wet.astype(np.float32), pair.knobs)
            }
        for split, segment in pieces.items():
            for role, signal, path in (
                ("input", segment.input, pair.dry),
                ("target", segment.target, pair.wet),
            ):
                level = _peak_dbfs(signal)
                if level < SILENCE_DBFS:
                    raise DatasetError(
                        f"{path}: the {split} split ({role}, {signal.size / target_rate:.2f} s) is silent "
                        f"(peak {level:.1f} dBFS); expected audio above {SILENCE_DBFS:g} dBFS in every split. "
                        "Change split_fractions or trim the silence"
                    )
            splits[split].append(segment)
    samples = [latency.samples for latency in latencies]
    if len(set(samples)) > 1:
        logger.warning(
            "dataset %s: the pairs have different latencies %s samples; each was compensated on its own",
            config.name,
            samples,
        )
    compensated = "compensated" if config.compensate_latency else "not compensated"
    measured = [latency.confidence for latency in latencies if latency.confidence is not None]
    if len(set(samples)) == 1:
        # The least confident pair speaks for all.
        latency_text = "latency " + min(latencies, key=lambda x: x.confidence or 0.0).describe(target_rate)
    else:
        spread = f", confidence {min(measured):.2f} to {max(measured):.2f}" if measured else ""
        latency_text = f"latencies {samples} samples ({latencies[0].basis}{spread})"
    dataset = AudioDataset(
        name=config.name,
        sample_rate=target_rate,
        knob_names=knob_names,
        splits={split: tuple(segments) for split, segments in splits.items()},
        latency_samples=latencies[0].samples,
        latency=latencies[0],
        description=(
            f"recordings in {folder} ({layout} layout, {len(pairs)} pair{'s' if len(pairs) != 1 else ''}) "
            f"at {target_rate} Hz{' (resampled)' if resampled else ''}; {latency_text}, {compensated}"
        ),
    )
    dataset.log_made()
    return dataset


__all__ = ["LatencyEstimate", "compensate", "detect_layout", "estimate_latency", "load_recordings", "measure_latency", "read_mono",
           "resample", "check_not_silent"]
