"""``python -m stimulus_sets check stimuli/<set>``: validate an existing stimulus set.

Per trial: every file present and readable, one sample rate (the manifest's), equal lengths, the
hidden reference identical to the reference, loudness within 0.5 LU of the trial's level, true peak
at or below the ceiling and no full-scale samples, both anchors present with spectra that meet the
BS.1534-3 mask, and (when the manifest says the limits were enforced) at most 12 signals and 12 s.
Per set: at least 5 rated items when enforced. The result is a tidy table, one row per check.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from common.anchors import ANCHORS, measure_anchor
from common.bs1534 import MAX_DURATION_S, MAX_SIGNALS_PER_TRIAL, MIN_ITEMS
from common.stimulus_set import HIDDEN_REFERENCE, HIDDEN_REFERENCE_ID, read_manifest, resolve_audio
from models.dsp.loudness import integrated_loudness, true_peak_dbfs

from .errors import StimulusError

LOUDNESS_TOLERANCE_LU = 0.5
PEAK_TOLERANCE_DB = 0.005  # the resampler behind the true peak is not bit-exact across platforms
PASSBAND_TOLERANCE_DB = 0.5  # spectral estimate from a few seconds of music, after fades and PCM
STOPBAND_MIN_DB = 40.0  # the mask asks 50 dB of the filter; music and fades leave some leakage
NOISE_FLOOR_MARGIN_DB = 10.0
SUBTYPE_BITS = {"PCM_16": 16, "PCM_24": 24, "PCM_32": 32}
CHECK_COLUMNS = ["trial", "check", "condition", "ok", "detail"]


def _load_manifest(folder: Path) -> dict:
    # Only the top level must hold: every problem inside a trial becomes a failed check row.
    return read_manifest(folder, StimulusError)[1]


def check_stimulus_set(folder: Path | str) -> pd.DataFrame:
    """Every check of every trial of the set in ``folder``: columns trial, check, condition, ok, detail.

    Set-wide checks have trial ``*``. Raises StimulusError only when there is no readable manifest.
    """
    folder = Path(folder)
    manifest = _load_manifest(folder)
    enforced = bool(manifest.get("bs1534_enforced", False))
    rows: list[dict] = []

    def add(trial: str, check: str, ok: bool, detail: str, condition: str = "") -> None:
        rows.append({"trial": trial, "check": check, "condition": condition, "ok": bool(ok), "detail": detail})

    rated_items = {str(t.get("item", t.get("id"))) for t in manifest["trials"]
                   if isinstance(t, dict) and not t.get("training")}
    if enforced:
        add("*", "items", len(rated_items) >= MIN_ITEMS,
            f"{len(rated_items)} rated items (BS.1534-3 asks for at least {MIN_ITEMS})")
    for index, trial in enumerate(manifest["trials"]):
        _check_trial(folder, manifest, trial, index, enforced, add)
    return pd.DataFrame(rows, columns=CHECK_COLUMNS)


def _check_trial(folder: Path, manifest: dict, trial: dict, index: int, enforced: bool, add) -> None:
    rate = manifest["sample_rate"]
    tid = str(trial.get("id", f"trials[{index}]"))
    conditions = [c for c in trial.get("conditions") or [] if isinstance(c, dict)]
    entries = [("reference", "reference", trial.get("reference"))]
    entries += [(str(c.get("id")), str(c.get("role")), c.get("file")) for c in conditions]
    audio: dict[str, np.ndarray] = {}
    bits = manifest.get("bit_depth")
    for cid, _role, name in entries:
        if not isinstance(name, str):
            add(tid, "file", False, f"expected a file name, found {name!r}", cid)
            continue
        try:
            path = resolve_audio(folder, tid, name, f"{tid}/{cid}", StimulusError)
        except StimulusError as exc:
            add(tid, "file", False, str(exc), cid)
            continue
        try:
            info = sf.info(path)
            x, file_rate = sf.read(path, dtype="float64", always_2d=True)
        except (sf.LibsndfileError, RuntimeError, OSError) as exc:
            add(tid, "file", False, f"{path} missing or unreadable ({exc})", cid)
            continue
        problems = []
        if file_rate != rate:
            problems.append(f"sample rate {file_rate} Hz, expected {rate} Hz")
        if x.shape[1] != 1:
            problems.append(f"{x.shape[1]} channels, expected mono")
        if bits and SUBTYPE_BITS.get(info.subtype) != bits:
            problems.append(f"format {info.subtype}, expected {bits}-bit PCM")
        add(tid, "file", not problems, "; ".join(problems) or f"{path.name}: {info.subtype}, {file_rate} Hz", cid)
        audio[cid] = x.mean(axis=1)
    if len(audio) < len(entries):
        return
    lengths = {cid: x.size for cid, x in audio.items()}
    same = len(set(lengths.values())) == 1
    duration = audio["reference"].size / rate
    add(tid, "lengths", same, f"all {duration:.3f} s" if same else f"lengths differ: {lengths}")
    if enforced:
        add(tid, "duration", duration <= MAX_DURATION_S + 1e-9, f"{duration:.3f} s (at most {MAX_DURATION_S:g} s)")
        count = len(conditions)
        add(tid, "signals", count <= MAX_SIGNALS_PER_TRIAL,
            f"{count} signals incl. hidden reference and anchors (≤ {MAX_SIGNALS_PER_TRIAL})")
    hidden = [c for c, r, _ in entries if r == HIDDEN_REFERENCE]
    if not hidden:
        add(tid, HIDDEN_REFERENCE_ID, False, f"no condition with role {HIDDEN_REFERENCE}")
    elif same:
        equal = np.array_equal(audio[hidden[0]], audio["reference"])
        add(tid, HIDDEN_REFERENCE_ID, equal, "identical to the reference" if equal else "differs from the reference",
            hidden[0])
    _check_levels(manifest, trial, tid, audio, rate, add)
    for anchor in ANCHORS:
        present = [c for c, r, _ in entries if r == anchor.role]
        if not present:
            add(tid, "anchor", False, f"no {anchor.role} condition (the {anchor.cutoff_hz / 1000:g} kHz anchor)")
            continue
        if not same:
            continue
        m = measure_anchor(audio[present[0]], audio["reference"], rate, anchor.cutoff_hz, bits)
        ok = m["passband_deviation_db"] <= PASSBAND_TOLERANCE_DB and (
            m["stopband_attenuation_db"] >= STOPBAND_MIN_DB or m["stopband_floor_db"] <= NOISE_FLOOR_MARGIN_DB)
        add(tid, "anchor", ok,
            f"pass band within {m['passband_deviation_db']:.2f} dB of the reference (≤ {PASSBAND_TOLERANCE_DB} dB), "
            f"{m['stopband_attenuation_db']:.1f} dB down above {anchor.second_stop_hz:.0f} Hz "
            f"(≥ {STOPBAND_MIN_DB:g} dB, or at the PCM noise floor: {m['stopband_floor_db']:.1f} dB above it)",
            present[0])


def _check_levels(manifest: dict, trial: dict, tid: str, audio: dict, rate: int, add) -> None:
    target = manifest.get("loudness_target_lufs")
    ceiling = float(manifest.get("peak_ceiling_dbfs", -1.0))
    loudness = {cid: integrated_loudness(x, rate) for cid, x in audio.items()}
    if target is not None:
        expected = float(target) + float(trial.get("trial_gain_db", 0.0))
        what = f"{expected:.2f} LUFS (target {float(target):g} + trial gain {float(trial.get('trial_gain_db', 0.0)):.2f} dB)"
    else:
        expected = loudness["reference"]
        what = f"the reference's {expected:.2f} LUFS"
    off = {cid: value - expected for cid, value in loudness.items()}
    worst = max(off, key=lambda c: abs(off[c]) if np.isfinite(off[c]) else np.inf)
    ok = all(np.isfinite(v) and abs(v) <= LOUDNESS_TOLERANCE_LU for v in off.values())
    add(tid, "loudness", ok, f"loudness within {abs(off[worst]):.2f} LU of {expected:.2f} LUFS"
        if ok else f"{worst} is {loudness[worst]:.2f} LUFS, expected {what} ± {LOUDNESS_TOLERANCE_LU} LU", worst)
    peaks = {cid: true_peak_dbfs(x) for cid, x in audio.items()}
    loudest = max(peaks, key=peaks.get)
    full_scale = [cid for cid, x in audio.items() if np.max(np.abs(x)) >= 1.0 - 2.0**-15]
    ok = peaks[loudest] <= ceiling + PEAK_TOLERANCE_DB and not full_scale
    detail = f"true peak {peaks[loudest]:.2f} dBFS ({loudest}; ceiling {ceiling:g})"
    if full_scale:
        detail += f"; full-scale samples in {full_scale}"
    add(tid, "clipping", ok, detail, loudest)


def verdict_text(frame: pd.DataFrame) -> str:
    """A readable verdict: one line per trial (OK, or FAIL with each failed check), then a summary."""
    lines = []
    for trial, checks in frame.groupby("trial", sort=False):
        failed = checks[~checks["ok"]]
        if failed.empty:
            facts = [row.detail for row in checks.drop_duplicates("check").itertuples(index=False)
                     if row.check in ("items", "lengths", "signals", "loudness", "clipping")]
            if "anchor" in set(checks["check"]):
                facts.append("anchors meet the mask")
            lines.append(f"OK    {trial}: " + "; ".join(facts))
        else:
            lines.append(f"FAIL  {trial}:")
            for row in failed.itertuples(index=False):
                who = f" [{row.condition}]" if row.condition else ""
                lines.append(f"        {row.check}{who}: {row.detail}")
    bad = frame.loc[~frame["ok"], "trial"].nunique()
    total = frame["trial"].nunique()
    lines.append(f"{total - bad} of {total} passed" + ("" if bad == 0 else f"; {bad} failed"))
    return "\n".join(lines)
