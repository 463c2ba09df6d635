"""Small generated stimulus sets (manifest.json and audio), for the web app's tests.

Seeded sines with raised-cosine fades and seeded noise, a few hundred milliseconds long, written
with soundfile; the manifest has a training trial and rated trials with a hidden reference, both
BS.1534 anchors (``anchor_3k5`` low, ``anchor_7k`` mid) and two or three systems.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from common.stimulus_set import (
    REFERENCE_FILE,
    SCHEMA,
    STANDARD_CONDITIONS,
    SYSTEM,
    condition_file,
    trial_folder,
    write_manifest,
)

SAMPLE_RATE = 16000


def _tone(rng: np.random.Generator, duration_s: float, freq_hz: float, noise: float) -> np.ndarray:
    n = int(duration_s * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    x = 0.3 * np.sin(2 * np.pi * freq_hz * t) + noise * rng.standard_normal(n)
    fade = int(0.01 * SAMPLE_RATE)
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(fade) / fade)
    x[:fade] *= ramp
    x[-fade:] *= ramp[::-1]
    return x.astype(np.float32)


def make_stimulus_set(
    root: Path,
    name: str = "demo",
    n_trials: int = 3,
    systems: tuple[str, ...] = ("distilled", "non_distilled"),
    training: bool = True,
    duration_s: float = 1.0,
    seed: int = 0,
    test_yaml: str | None = None,
) -> Path:
    """Write ``root/name/manifest.json`` and its WAVs; returns the set folder."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / name
    conditions = [*STANDARD_CONDITIONS.items(), *((s, SYSTEM) for s in systems)]
    trials = []
    ids = (["train01"] if training else []) + [f"t{i + 1:02d}" for i in range(n_trials)]
    for k, trial_id in enumerate(ids):
        audio = trial_folder(folder, trial_id)
        audio.mkdir(parents=True, exist_ok=True)
        files = audio.relative_to(folder).as_posix()
        freq = 220.0 * (1 + k)
        ref = _tone(rng, duration_s, freq, 0.02)
        sf.write(audio / REFERENCE_FILE, ref, SAMPLE_RATE)
        entries = []
        for j, (cid, role) in enumerate(conditions):
            noise = {"hidden_reference": 0.02, "anchor_low": 0.2, "anchor_mid": 0.1}.get(role, 0.05 + 0.02 * j)
            sf.write(audio / condition_file(cid), _tone(rng, duration_s, freq, noise), SAMPLE_RATE)
            entry = {"id": cid, "role": role, "file": f"{files}/{condition_file(cid)}"}
            if role == SYSTEM:
                entry.update(run_id=f"run-{cid}", arch="lstm", params=1000 + j)
            entries.append(entry)
        trials.append(
            {
                "id": trial_id,
                "item": f"item{k}",
                "device": "fuzz",
                "group": "S-32-8",
                "training": trial_id.startswith("train"),
                "reference": f"{files}/{REFERENCE_FILE}",
                "conditions": entries,
            }
        )
    manifest = {
        "schema": SCHEMA,
        "sample_rate": SAMPLE_RATE,
        "provenance": {"command": "tests", "seed": seed, "git_commit": "test"},
        "loudness_target_lufs": -23.0,
        "bs1534_enforced": False,
        "trials": trials,
    }
    write_manifest(folder, manifest, ValueError)
    if test_yaml is not None:
        (folder / "test.yaml").write_text(test_yaml, encoding="utf-8")
    return folder
