"""Build a MUSHRA stimulus set (``stimuli/<set>/``) from a trained study and/or model files:
reference, hidden reference, the two BS.1534-3 anchors and the models' renders, loudness-aligned,
ready to rate.

Per item (the audio material) the dry excerpt is read or synthesised with a margin of
``max_latency_ms`` on both sides; the reference is the user's wet file, a reference model's output
(a ``.nam`` capture, an export) or the study device's output (see :mod:`stimulus_sets.config`).
Each system — a selected run or a model file (:mod:`stimulus_sets.model_files`), through the same
code — renders the extended excerpt once; its latency against the reference is the lag of the
cross-correlation peak within ±``max_latency_ms``, and the aligned stretch is cut out (the margin
supplies the samples a shift needs). A model file's real-time factor is measured after rendering
as the zoo measures its runs (:func:`models.studies.cost.measure_models`: one thread, offline
rendering of 4 s of noise, median of 5 after a warm-up); a run's facts are its runs.csv row.
Anchors are the reference low-passed with zero phase. Every signal gets 5 ms raised-cosine fades,
then a gain to the loudness target; a trial whose loudest true peak would pass the ceiling gets
one common gain lowering all its signals. Objective metrics compare each system with the
reference after the fades and before any gain, so the loudness difference is the model's own.
Everything is written into a temporary folder beside the target and moved into place at the end.

Layout and manifest: docs/formats.md, :mod:`common.stimulus_set` (``stimuli/<set>/manifest.json``,
``stimuli/<set>/audio/<trial_id>/<condition_id>.wav``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import logging
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from scipy import signal as sps

from common.anchors import ANCHORS, lowpass_anchor
from common.audio_metrics import compute_all
from common.bs1534 import MAX_DURATION_S, MAX_SIGNALS_PER_TRIAL, MIN_ITEMS
from common.outputs import MARKER, check_output_folder, output_folder
from common.stimulus_set import (
    HIDDEN_REFERENCE,
    HIDDEN_REFERENCE_ID,
    MANIFEST,
    ORIGIN_STUDY,
    REFERENCE_FILE,
    SCHEMA,
    SYSTEM,
    audio_path,
    condition_file,
    trial_folder,
    write_manifest,
)
from common.typed_config import to_dict
from models.dsp.loudness import (
    SILENCE_LUFS,
    db_to_gain,
    integrated_loudness,
    quantize,
    raised_cosine_fades,
    true_peak_dbfs,
)
from models.resources import memory_shortfall, unwritable_reason
from models.studies.cost import DEFAULT_REPEATS, OFFLINE_AUDIO_S
from stimulus_sets.config import ItemSpec, ModelFileSpec, StimulusConfig
from stimulus_sets.model_files import LoadedModel, file_key, load_model_file
from stimulus_sets.selection import CAPTURE_KEY, SelectedRun, Selection, select_runs

from .errors import StimulusConfigError, StimulusError

log = logging.getLogger(__name__)

SET_KIND = "stimulus set"  # the kind recorded in common.outputs' marker
PEAK_MARGIN_DB = 0.01  # keeps PCM rounding from lifting a true peak above the ceiling
SILENT_BELOW_REFERENCE_LU = 40.0  # an output this much quieter than the reference is no render of it
RECORDING = "recording"  # the trial's device for a wet recording without a study naming the device
# How a model file's real-time factor is timed: as the zoo times its runs (models.studies.cost),
# offline rendering only (a network read from a newer .nam layout need not stream block by block).
RTF_REPEATS = DEFAULT_REPEATS
RTF_AUDIO_S = OFFLINE_AUDIO_S
RTF_METHOD = ("models.studies.cost.measure_models: offline rendering of seeded noise at -20 dBFS RMS on one thread, "
              "one warm-up, then the median over the repeats; real-time factor = seconds of audio / seconds taken")
OBJECTIVE_BASIS = ("each system against the reference after the 5 ms fades and latency compensation, "
                   "before the loudness gains (common.audio_metrics.compute_all)")


@dataclass
class PhaseTimes:
    """Seconds spent per phase of a build (rendering, filtering, loudness, metrics, writing, setup)."""

    seconds: dict[str, float] = field(default_factory=dict)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started


@dataclass(frozen=True)
class Item:
    """One item's audio, each ``(num_samples + 2·margin,)`` float64: the dry input and the wet
    reference, the excerpt proper starting at ``margin``; ``device`` names what made the reference
    (the trial's ``device``)."""

    spec: ItemSpec
    dry: np.ndarray
    wet: np.ndarray
    margin: int
    source: dict[str, Any]
    device: str


def _set_violations(config: StimulusConfig) -> list[str]:
    """The BS.1534-3 limits this config would exceed (empty when it keeps them all)."""
    problems = []
    for group in config.groups:
        signals = len(group.condition_ids) + 1 + len(ANCHORS)
        if signals > MAX_SIGNALS_PER_TRIAL:
            problems.append(f"group {group.name!r} has {signals} signals per trial (hidden reference, "
                            f"{len(ANCHORS)} anchors and {len(group.condition_ids)} systems); "
                            f"BS.1534-3 §5.3 allows at most {MAX_SIGNALS_PER_TRIAL}")
    if config.duration_s > MAX_DURATION_S:
        problems.append(f"duration_s is {config.duration_s:g} s; BS.1534-3 §5.1 asks for at most "
                        f"{MAX_DURATION_S:g} s")
    if len(config.items) < MIN_ITEMS:
        problems.append(f"{len(config.items)} item(s); BS.1534-3 §7.1 asks for at least {MIN_ITEMS}")
    return problems


# --- items ---------------------------------------------------------------------------------------


def _item_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, index]).generate_state(1, dtype=np.uint64)[0] >> 1)


def _read_wav(path: Path, sample_rate: int, needed: int, start: int, margin: int, where: str) -> np.ndarray:
    """The stretch ``[start − margin, start + needed + margin)`` of a mono WAV, zero outside the file."""
    try:
        audio, rate = sf.read(path, dtype="float64", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise StimulusError(f"{where}: cannot read {path} as audio ({exc})") from None
    if audio.shape[1] != 1:
        raise StimulusError(f"{where}: {path}: expected mono audio, found {audio.shape[1]} channels")
    if rate != sample_rate:
        raise StimulusError(f"{where}: {path}: expected a sample rate of {sample_rate} Hz (the set's), found {rate} Hz")
    x = audio[:, 0]
    if x.size < start + needed:
        raise StimulusError(
            f"{where}: {path} is too short: expected at least {(start + needed) / rate:.3f} s (start_s "
            f"{start / rate:g} s + duration_s {needed / rate:g} s), found {x.size / rate:.3f} s")
    bad = np.flatnonzero(~np.isfinite(x))
    if bad.size:
        raise StimulusError(f"{where}: {path}: sample {bad[0]} is {x[bad[0]]}; expected finite audio")
    out = np.zeros(needed + 2 * margin)
    lo, hi = max(0, start - margin), min(x.size, start + needed + margin)
    out[lo - (start - margin) : hi - (start - margin)] = x[lo:hi]
    return out


def reference_model(spec: ItemSpec, config: StimulusConfig, selection: Selection) -> tuple[ModelFileSpec, str] | None:
    """The model file rendering ``spec``'s reference and where the config names it (None: the
    item's wet file or the study's device is the reference)."""
    if spec.wet is not None:
        return None
    if spec.reference is not None:
        return spec.reference.model_file, f"item {spec.name!r}: reference"
    if config.reference is not None:
        return config.reference.model_file, "reference"
    if selection.capture is not None:
        return selection.capture, f"study_dir: the dataset's {CAPTURE_KEY}"
    return None


def load_items(config: StimulusConfig, selection: Selection, sample_rate: int,
               references: dict[str, LoadedModel] | None = None, threads: int | None = 1) -> list[Item]:
    """Every item's extended dry input and wet reference at ``sample_rate``: the item's wet file,
    the output of its reference model (``references``: loaded by :func:`stimulus_sets.model_files.file_key`),
    or the selected runs' device's output."""
    from models.dsp.devices import get_device
    from models.dsp.signals import excerpt

    n = int(round(config.duration_s * sample_rate))
    margin = int(round(config.max_latency_ms / 1000.0 * sample_rate))
    device = get_device(selection.device) if selection.device is not None else None
    items = []
    for index, spec in enumerate(config.items):
        where = f"item {spec.name!r}"
        if spec.kind is not None:
            seed = spec.seed if spec.seed is not None else _item_seed(config.seed, index)
            dry = excerpt(spec.kind, (n + 2 * margin) / sample_rate, sample_rate, seed).astype(np.float64)
            dry = np.pad(dry, (0, max(0, n + 2 * margin - dry.size)))[: n + 2 * margin]
            source = {"kind": spec.kind, "seed": seed}
        else:
            start = int(round(spec.start_s * sample_rate))
            dry = _read_wav(Path(spec.dry), sample_rate, n, start, margin, f"{where}: dry")
            source = {"dry": spec.dry, "start_s": spec.start_s}
        model = reference_model(spec, config, selection)
        if spec.wet is not None:
            wet = _read_wav(Path(spec.wet), sample_rate, n, int(round(spec.start_s * sample_rate)), margin,
                            f"{where}: wet")
            source["wet"] = spec.wet
            made_by = selection.device or selection.dataset or RECORDING
        elif model is not None:
            loaded = (references or {})[file_key(model[0])]
            wet = render_dry(loaded.model, loaded.payload, dry, config.knobs, threads)
            _check_finite(wet, f"{where}: the reference ({loaded.describe})")
            source["reference"] = loaded.describe
            source["reference_model"] = loaded.origin
            made_by = loaded.name
        elif device is not None:
            wet = device.process(dry, sample_rate, config.knobs or None).astype(np.float64)
            source["reference"] = f"built-in device {device.name!r}"
            made_by = device.name
        else:
            raise StimulusConfigError(f"{where}: the study's dataset {selection.dataset!r} is recordings, not a built-in "
                                      "device, so the reference must be given: add 'wet' (the dry file through the "
                                      "real device) or 'reference: {nam: FILE}' (a capture of it)")
        loudness = integrated_loudness(wet[margin : margin + n], sample_rate)
        if not loudness > SILENCE_LUFS:
            raise StimulusError(f"{where}: the reference is silent ({loudness:.1f} LUFS, below {SILENCE_LUFS:g}); "
                                "expected audible material")
        items.append(Item(spec, dry, wet, margin, source, made_by))
    return items


def _check_finite(y: np.ndarray, where: str) -> None:
    bad = np.flatnonzero(~np.isfinite(y))
    if bad.size:
        raise StimulusError(f"{where}: the output holds {y[bad[0]]} at sample {bad[0]} "
                            f"({bad.size} non-finite samples); expected finite audio")


# --- rendering and alignment ---------------------------------------------------------------------


def measure_latency(output: np.ndarray, reference: np.ndarray, margin: int) -> int:
    """Lag in samples (−margin … margin) of ``output`` (time + 2·margin,) against ``reference``
    (time,) placed at ``margin``: the cross-correlation peak. Positive: the output comes late."""
    if margin == 0:
        return 0
    corr = sps.correlate(output, reference, mode="valid", method="fft")
    return int(np.argmax(corr)) - margin


def align(output: np.ndarray, reference: np.ndarray, margin: int) -> tuple[np.ndarray, int]:
    """``output`` (time + 2·margin,) cut to the stretch that lines up with ``reference`` (time,),
    and the latency that was removed (see :func:`measure_latency`)."""
    lag = measure_latency(output, reference, margin)
    return output[margin + lag : margin + lag + reference.size], lag


def render_item(model, payload: dict, item: Item, knobs: dict[str, float], threads: int | None) -> np.ndarray:
    """The model's output for the item's extended dry input. (time + 2·margin,) float64."""
    return render_dry(model, payload, item.dry, knobs, threads)


def render_dry(model, payload: dict, dry: np.ndarray, knobs: dict[str, float], threads: int | None) -> np.ndarray:
    """The model's output for ``dry`` (time,), its knobs (``payload["knob_names"]``) set from ``knobs``."""
    from models.inference.rendering import render, torch_threads

    names = list(payload.get("knob_names") or [])
    values = [float(knobs[k]) for k in names] if names else None
    with torch_threads(threads):
        return render(model, dry.astype(np.float32), values).astype(np.float64)


def _check_rate(model: LoadedModel, sample_rate: int, where: str) -> None:
    rate = model.sample_rate
    if rate == sample_rate:
        return
    if model.origin.get("source") == ORIGIN_STUDY:
        raise StimulusConfigError(f"{where}: the model was trained at {rate} Hz, but the set is at {sample_rate} Hz; "
                                  "use models trained at one rate")
    raise StimulusConfigError(f"{where}: the model runs at {rate} Hz (its file's sample rate), but the set is at "
                              f"{sample_rate} Hz; models are not resampled: set sample_rate to {rate} or use a model "
                              f"made at {sample_rate} Hz")


def _load_run(run: SelectedRun, selection: Selection) -> LoadedModel:
    from models.training.checkpoints import load_model

    model, payload = load_model(run.run_dir)
    study = selection.study.name if selection.study is not None else None
    return LoadedModel(run.run_id, f"run {run.run_id}", model, payload, dict(run.facts),
                       {"source": ORIGIN_STUDY, "study": study, "run_id": run.run_id, "run_dir": str(run.run_dir)})


def _load_systems(config: StimulusConfig, selection: Selection
                  ) -> tuple[dict[str, LoadedModel], dict[str, list[tuple[str, str]]], dict[str, LoadedModel]]:
    """Every distinct system model (key → model), each group's ``[(condition_id, key)]`` and every
    distinct reference model (:func:`file_key` → model)."""
    systems: dict[str, LoadedModel] = {}
    chosen: dict[str, list[tuple[str, str]]] = {}
    for group, entries in selection.groups.items():
        chosen[group] = []
        for cid, system in entries:
            if isinstance(system, SelectedRun):
                key = system.run_id
                if key not in systems:
                    systems[key] = _load_run(system, selection)
            else:
                key = file_key(system)
                if key not in systems:
                    systems[key] = load_model_file(system, f"group {group!r}, system {cid!r}")
            chosen[group].append((cid, key))
    references: dict[str, LoadedModel] = {}
    for spec in config.items:
        model = reference_model(spec, config, selection)
        if model is not None and file_key(model[0]) not in references:
            references[file_key(model[0])] = load_model_file(*model)
    return systems, chosen, references


def _measure_files(systems: dict[str, LoadedModel], sample_rate: int) -> dict[str, Any] | None:
    """Time every model file's offline rendering (:func:`models.studies.cost.measure_models`) and
    put the median into its facts' ``rtf_offline``; returns how it was measured (None: no files)."""
    from models.studies.cost import TimedModel, measure_models

    files = {key: model for key, model in systems.items() if model.origin.get("source") != ORIGIN_STUDY}
    if not files:
        return None
    table = measure_models([TimedModel(key, model.model, model.facts.get("model") or model.name, sample_rate,
                                       len(model.knob_names)) for key, model in files.items()],
                           repeats=RTF_REPEATS, offline_s=RTF_AUDIO_S, stream_s=None)
    for row in table.to_dict("records"):
        files[row["run_id"]].facts["rtf_offline"] = float(row["rtf_offline_median"])
    first = table.iloc[0]
    return {"systems": [model.name for model in files.values()], "method": RTF_METHOD,
            "offline_audio_s": float(first["offline_audio_s"]), "repeats": int(first["repeats"]),
            "threads": int(first["threads"]), "cpu_model": first["cpu_model"],
            "cpu_count": None if first["cpu_count"] is None else int(first["cpu_count"]),
            "load_avg_1min_before": _number(first["load_avg_1min_before"]),
            "load_avg_1min_after": _number(first["load_avg_1min_after"]),
            "busy": bool(first["busy"]), "measured_at": first["measured_at"]}


def _number(value: Any) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def _check_knobs(config: StimulusConfig, payload: dict, where: str) -> None:
    names = list(payload.get("knob_names") or [])
    if set(config.knobs) != set(names):
        raise StimulusConfigError(f"{where}: knobs: this model needs values for {names or 'no knobs'}, "
                                  f"found {sorted(config.knobs) or 'none'}")


# --- the set ---------------------------------------------------------------------------------------


def _training_sources(trials: list[dict], count: int) -> list[dict]:
    """``count`` rated trials spread over the range of impairment, most impaired first: trials are
    ranked by the mean log-ESR of their systems and picked at evenly spaced ranks."""
    if count == 0:
        return []
    if count > len(trials):
        raise StimulusConfigError(f"training_trials: expected at most {len(trials)} (the rated trials), found {count}")

    def impairment(trial: dict) -> float:
        esr = [c["objective"]["esr"] for c in trial["conditions"] if c["role"] == "system"]
        return float(np.mean(np.log10(np.maximum(esr, 1e-12))))

    ranked = sorted(trials, key=lambda t: (-impairment(t), t["id"]))
    picks = sorted({int(round(p)) for p in np.linspace(0, len(ranked) - 1, count)})
    return [ranked[p] for p in picks]


def write_wav(path: Path, audio: np.ndarray, sample_rate: int, bit_depth: int) -> None:
    codes = quantize(audio, bit_depth)
    if bit_depth == 24:
        # libsndfile keeps the top 24 bits of int32 data: shift the code up.
        sf.write(path, codes << 8, sample_rate, subtype="PCM_24")
    else:
        sf.write(path, codes, sample_rate, subtype="PCM_16")


def build_stimulus_set(
    config: StimulusConfig,
    out: Path,
    *,
    command: str,
    force: bool = False,
    threads: int | None = 1,
    times: PhaseTimes | None = None,
) -> dict[str, Any]:
    """Build the set described by ``config`` into the folder ``out``; returns the manifest.

    ``out`` must not exist unless ``force`` (then it is replaced only once the new set is complete).
    ``command`` is recorded as provenance; ``threads`` pins torch while rendering; ``times``
    collects the seconds per phase.
    """
    from common.provenance import git_commit

    times = times or PhaseTimes()
    out = Path(out)
    # Refused before any work: the folder exists (without --force), is not a set this command
    # wrote (with it), or cannot be written at all.
    if out.exists() and not force:
        raise StimulusError(f"{out}: already exists; choose a new folder or pass --force to replace it")
    reason = unwritable_reason(out)
    if reason is not None:
        raise StimulusError(f"{out}: expected a folder that can be created, found that {reason}")
    if force:
        _adopt_legacy_set(out)
        check_output_folder(out, SET_KIND, StimulusError)
    with times.phase("setup"):
        violations = _set_violations(config)
        if violations and config.strict:
            raise StimulusConfigError("the set would break BS.1534-3 limits (use --no-strict to build it anyway and "
                                      "record that in the manifest): " + "; ".join(violations))
        most_systems = max(len(g.condition_ids) for g in config.groups)
        if len(config.items) < 1.5 * most_systems:
            log.warning("%d items for up to %d systems per trial: BS.1534-3 §7.1 suggests about 1.5 × the "
                        "number of systems (%d)", len(config.items), most_systems, math.ceil(1.5 * most_systems))
        selection = select_runs(config)
        systems, selected, references = _load_systems(config, selection)
        rates = sorted({int(model.sample_rate or 0) for model in systems.values()})
        sample_rate = config.sample_rate or rates[-1]
        for group, chosen in selected.items():
            for cid, key in chosen:
                where = f"group {group!r}, condition {cid!r} ({systems[key].describe})"
                _check_rate(systems[key], sample_rate, where)
                _check_knobs(config, systems[key].payload, where)
        for model in references.values():
            where = f"reference {model.describe}"
            _check_rate(model, sample_rate, where)
            _check_knobs(config, model.payload, where)
        n = int(round(config.duration_s * sample_rate))
        # Held at once, float64: each item's dry and wet input, its reference and anchors, and every
        # model's render and its faded copy.
        arrays = len(config.items) * (3 + len(ANCHORS) + 2 * len(systems))
        shortfall = memory_shortfall(8.0 * n * arrays)
        if shortfall is not None:
            raise StimulusConfigError(f"stimulus config: duration_s {config.duration_s:g} s at {sample_rate} Hz for "
                                      f"{len(config.items)} items and {len(systems)} models ({arrays} signals of 8 bytes "
                                      f"per sample) needs {shortfall}; expected a shorter duration_s")
    with times.phase("rendering"):
        items = load_items(config, selection, sample_rate, references, threads)
        renders: dict[tuple[str, str], np.ndarray] = {}
        lags: dict[tuple[str, str], int] = {}
        reference_lufs = {item.spec.name: integrated_loudness(item.wet[item.margin : item.margin + n], sample_rate)
                          for item in items}
        for item in items:
            reference = item.wet[item.margin : item.margin + n]
            for key, system in systems.items():
                y = render_item(system.model, system.payload, item, config.knobs, threads)
                where = f"{system.describe} on item {item.spec.name!r}"
                _check_finite(y, where)
                aligned, lag = align(y, reference, item.margin)
                loudness = integrated_loudness(aligned, sample_rate)
                floor = max(SILENCE_LUFS, reference_lufs[item.spec.name] - SILENT_BELOW_REFERENCE_LU)
                if not loudness > floor:
                    raise StimulusError(
                        f"{where}: the output is silent ({loudness:.1f} LUFS, the reference "
                        f"{reference_lufs[item.spec.name]:.1f} LUFS; expected at most {SILENT_BELOW_REFERENCE_LU:g} LU "
                        "below it): loudness alignment would only amplify noise")
                if abs(lag) == item.margin and item.margin > 0:
                    log.warning("%s: latency %d samples is at the search limit (max_latency_ms %g)", where, lag,
                                config.max_latency_ms)
                renders[(item.spec.name, key)] = aligned
                lags[(item.spec.name, key)] = lag
            log.info("item %s: rendered %d system(s)", item.spec.name, len(systems))
    timing = None
    if any(system.origin.get("source") != ORIGIN_STUDY for system in systems.values()):
        with times.phase("measuring"):
            timing = _measure_files(systems, sample_rate)
    fade_s = config.fade_ms / 1000.0
    signals: dict[tuple[str, str], np.ndarray] = {}  # (item, signal key) → faded float64 (time,)
    with times.phase("filtering"):
        for item in items:
            reference = item.wet[item.margin : item.margin + n]
            signals[(item.spec.name, "reference")] = raised_cosine_fades(reference, fade_s, sample_rate)
            for anchor in ANCHORS:
                filtered = lowpass_anchor(reference, sample_rate, anchor.cutoff_hz)
                signals[(item.spec.name, anchor.id)] = raised_cosine_fades(filtered, fade_s, sample_rate)
            for key in systems:
                # the aligned render is not needed once faded: drop it to halve peak memory
                signals[(item.spec.name, key)] = raised_cosine_fades(renders.pop((item.spec.name, key)),
                                                                     fade_s, sample_rate)
    objective: dict[tuple[str, str], dict[str, float]] = {}
    with times.phase("metrics"):
        for item in items:
            for key in systems:
                scores = compute_all(signals[(item.spec.name, key)], signals[(item.spec.name, "reference")],
                                     sample_rate)
                objective[(item.spec.name, key)] = {k: float(v) for k, v in scores.items()}
    levels: dict[tuple[str, str], tuple[float, float]] = {}  # loudness LUFS, true peak dBFS (before gain)
    with times.phase("loudness"):
        for key, audio in signals.items():
            levels[key] = (integrated_loudness(audio, sample_rate), true_peak_dbfs(audio))
        trials = []
        for item in items:
            for group in config.groups:
                trials.append(_trial(item, group.name, selected[group.name], systems, levels, objective, lags,
                                     config))
        for number, source in enumerate(_training_sources(trials, config.training_trials), start=1):
            trial = json.loads(json.dumps(source))
            trial.update(id=f"training_{number}", training=True, source_trial=source["id"])
            trials.append(trial)
    manifest = {
        "schema": SCHEMA,
        "name": out.name,
        "sample_rate": sample_rate,
        "bit_depth": config.bit_depth,
        "duration_s": n / sample_rate,
        "num_samples": n,
        "loudness_target_lufs": config.loudness_target_lufs,
        "loudness_measure": "ITU-R BS.1770-4 integrated loudness (pyloudnorm), after the fades",
        "peak_ceiling_dbfs": config.peak_ceiling_dbfs,
        "peak_measure": "true peak: sample peak of the signal oversampled 4x (BS.1770-4 Annex 2)",
        "fade_ms": config.fade_ms,
        "bs1534_enforced": config.strict,
        "bs1534_exceeded": violations,
        "anchors": [{"id": a.id, "role": a.role, "cutoff_hz": a.cutoff_hz,
                     "filter": "elliptic low-pass applied forwards and backwards (zero phase): pass band within "
                               f"0.1 dB to {a.cutoff_hz:g} Hz, >= 60 dB down from {a.first_stop_hz:g} Hz"}
                    for a in ANCHORS],
        "objective_basis": OBJECTIVE_BASIS,
        "training_selection": "rated trials at evenly spaced ranks of their systems' mean log-ESR, most impaired first",
        "study": None if selection.study is None else {
            "name": selection.study.name,
            "file": None if selection.study.study_file is None else str(selection.study.study_file),
            "folder": str(selection.study.root), "dataset": selection.dataset, "device": selection.device,
            "capture": None if selection.capture is None else selection.capture.path,
            "knobs": dict(sorted(config.knobs.items()))},
        "knobs": dict(sorted(config.knobs.items())),
        "items": {item.spec.name: item.source for item in items},
        "groups": {name: {cid: systems[key].name for cid, key in chosen} for name, chosen in selected.items()},
        "rtf_measurement": timing,
        "provenance": {"command": command, "seed": config.seed, "git_commit": git_commit(),
                       "created_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                       "config": to_dict(config)},
        "trials": trials,
    }
    with times.phase("writing"):
        _write_set(manifest, signals, out)
    log.info("wrote %d trials (%d training) to %s", len(trials), config.training_trials, out)
    return manifest


def _trial(item: Item, group: str, chosen: list[tuple[str, str]], systems: dict[str, LoadedModel], levels, objective,
           lags, config: StimulusConfig) -> dict:
    name = item.spec.name
    keys = [(HIDDEN_REFERENCE_ID, HIDDEN_REFERENCE, "reference")]
    keys += [(a.id, a.role, a.id) for a in ANCHORS]
    keys += [(cid, SYSTEM, key) for cid, key in chosen]
    target = config.loudness_target_lufs
    ceiling = config.peak_ceiling_dbfs - PEAK_MARGIN_DB
    loudest_peak = max(levels[(name, key)][1] + target - levels[(name, key)][0] for _, _, key in keys)
    trial_gain_db = min(0.0, ceiling - loudest_peak)
    conditions = []
    for cid, role, key in keys:
        loudness, peak = levels[(name, key)]
        gain_db = target - loudness + trial_gain_db
        entry: dict[str, Any] = {"id": cid, "role": role, "file": condition_file(cid), "gain_db": round(gain_db, 6),
                                 "loudness_before_lufs": round(loudness, 6),
                                 "true_peak_dbfs": round(peak + gain_db, 6), "signal": key}
        if role == SYSTEM:
            entry.update(systems[key].facts)
            entry["origin"] = systems[key].origin
            entry["latency_samples"] = lags[(name, key)]
            entry["objective"] = objective[(name, key)]
        conditions.append(entry)
    reference_gain = conditions[0]["gain_db"]
    return {"id": f"{name}_{group}", "item": name, "device": item.device, "group": group,
            "training": False, "reference": REFERENCE_FILE, "reference_gain_db": reference_gain,
            "trial_gain_db": round(trial_gain_db, 6), "conditions": conditions}


def _legacy_set_files(out: Path) -> list[str] | None:
    """The files of a set written before sets carried a marker, when ``out`` is exactly that:
    a manifest.json of this schema and nothing but the files it lists, manifest.json and
    webmushra.yaml. None for anything else."""
    try:
        manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
        listed = {MANIFEST, "webmushra.yaml"}
        for trial in manifest["trials"]:
            names = [trial["reference"], *(cond["file"] for cond in trial["conditions"])]
            listed.update(audio_path(out, trial["id"], name).relative_to(out).as_posix() for name in names)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(manifest, dict) or manifest.get("schema") != SCHEMA:
        return None
    found = []
    for root, dirs, files in os.walk(out):
        rel = Path(root).relative_to(out)
        if not dirs and not files and rel != Path("."):
            return None  # an empty folder of the user's
        found.extend((rel / name).as_posix() for name in files)
    return sorted(found) if set(found) <= listed else None


def _adopt_legacy_set(out: Path) -> None:
    """Give a marker to a set written before sets had one, so that --force may replace it like any
    set it wrote; anything else in ``out`` is left for check_output_folder to refuse."""
    if not out.is_dir() or out.is_symlink() or (out / MARKER).exists():
        return
    files = _legacy_set_files(out)
    if files is None:
        return
    try:
        (out / MARKER).write_text(json.dumps({"kind": SET_KIND, "files": files}, indent=1) + "\n", encoding="utf-8")
    except OSError as exc:
        raise StimulusError(f"{out}: cannot replace the existing set ({exc.strerror or exc})") from None
    log.info("%s: a set written before sets were marked; --force replaces it", out)


def _write_set(manifest: dict, signals: dict, out: Path) -> None:
    from stimulus_sets.webmushra import webmushra_yaml

    # The staging folder gets the umask's permissions (mkdtemp's 0700 would hide the set from a
    # web server's user), and replaces only an absent folder or a set this command wrote.
    with output_folder(out, SET_KIND, StimulusError) as tmp:
        rate, bits = manifest["sample_rate"], manifest["bit_depth"]
        for trial in manifest["trials"]:
            folder = trial_folder(tmp, trial["id"])
            folder.mkdir(parents=True)
            hidden = trial["conditions"][0]
            reference = signals[(trial["item"], "reference")] * db_to_gain(hidden["gain_db"])
            write_wav(folder / trial["reference"], reference, rate, bits)
            for cond in trial["conditions"]:
                audio = signals[(trial["item"], cond.pop("signal"))] * db_to_gain(cond["gain_db"])
                write_wav(folder / cond["file"], audio, rate, bits)
        write_manifest(tmp, manifest, StimulusError)
        (tmp / "webmushra.yaml").write_text(webmushra_yaml(manifest), encoding="utf-8")


def build_from_file(path: Path, out: Path, *, strict: bool | None = None, force: bool = False,
                    threads: int | None = 1, times: PhaseTimes | None = None, command: str | None = None) -> dict:
    """Load the config at ``path`` (``strict`` overrides its setting) and build the set."""
    from stimulus_sets.config import load_stimulus_config

    config = load_stimulus_config(path)
    if strict is not None:
        config = dataclasses.replace(config, strict=strict)
    command = command or (f"python -m stimulus_sets build {path} --out {out}"
                          + ("" if config.strict else " --no-strict"))
    try:
        return build_stimulus_set(config, out, command=command, force=force, threads=threads, times=times)
    except StimulusConfigError as exc:
        raise StimulusConfigError(f"{path}: {exc}") from None
