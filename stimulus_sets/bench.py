"""``python -m stimulus_sets bench``: time building a 12-trial stimulus set from a trained study.

The set: 3 built-in items (guitar, bass, drums) × 4 groups, 10 s at the study's rate (48 kHz for
the demo). The groups reuse the study's runs: one per student size (distilled vs non-distilled),
one with every student, and one with every student plus the teacher, so trials hold 5 to 12
signals. Three items are fewer than BS.1534-3's five, so the set is built with the limits relaxed.
Prints the wall time and its split between setup, rendering, filtering, metrics, loudness and
writing, with the CPU model and load.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import torch

from common.bs1534 import MAX_SIGNALS_PER_TRIAL
from common.provenance import cpu_model
from stimulus_sets.config import GroupSpec, ItemSpec, StimulusConfig, SystemSpec
from stimulus_sets.study_folder import load_trained_study

from .errors import StimulusError

TARGET_S = 60.0
ITEMS = (ItemSpec("guitar", kind="guitar"), ItemSpec("bass", kind="bass"), ItemSpec("drums", kind="drums"))


def _sizes(layers: str) -> tuple[int, ...]:
    return tuple(int(units) for units in layers.split("-"))


def bench_config(study_dir: Path, duration_s: float = 10.0) -> StimulusConfig:
    """The benchmark's config for the trained study in ``study_dir`` (its runs.csv and runs)."""
    study = load_trained_study(study_dir, key="--study-dir")
    if not study.runs:
        raise StimulusError(f"{study.runs_csv}: no runs; train the study first")
    first = study.runs[0]
    trained = [r for r in study.runs if r["dataset"] == first["dataset"] and r["seed"] == first["seed"]
               and (study.run_dir(r["run_id"]) / "metrics.json").is_file()]
    distilled = [r for r in trained if r["recipe"] == "kd"]
    if not distilled:
        raise StimulusError(f"{study_dir}: no trained distilled student; the benchmark needs a study with kd runs")

    def label(layers: tuple[int, ...]) -> str:
        return "s" + "_".join(map(str, layers))

    groups, everyone = [], []
    for layers in sorted({_sizes(r["layers"]) for r in distilled}):
        kd = next(r for r in distilled if _sizes(r["layers"]) == layers)
        pair = [SystemSpec("distilled", run_id=kd["run_id"])]
        # the same network trained without a teacher: same architecture and sizes
        base = [r for r in trained if r["recipe"] == "baseline" and r["arch"] == kd["arch"]
                and r["layers"] == kd["layers"]]
        if base:
            pair.append(SystemSpec("non_distilled", run_id=base[0]["run_id"]))
        groups.append(GroupSpec(f"S-{'-'.join(map(str, layers))}", tuple(pair)))
        everyone += [SystemSpec(f"{label(layers)}_{s.id}", run_id=s.run_id) for s in pair]
    room = MAX_SIGNALS_PER_TRIAL - 3
    groups.append(GroupSpec("students", tuple(everyone[:room])))
    groups.append(GroupSpec("zoo", tuple(everyone[: room - 1]), teacher=distilled[0]["teacher"]))
    while len(groups) < 4:  # a study with one student size still gives four groups
        groups.append(GroupSpec(f"{groups[0].name}-copy{len(groups)}", groups[0].systems))
    return StimulusConfig(study_dir=str(study_dir), items=ITEMS, groups=tuple(groups[:4]),
                          duration_s=duration_s, training_trials=0, strict=False)


def run_stimulus_bench(study_dir: Path, threads: int = 1) -> int:
    from stimulus_sets.build import PhaseTimes, build_stimulus_set

    config = bench_config(Path(study_dir))
    signals = [len(g.condition_ids) + 3 for g in config.groups]
    print(f"Earshot stimuli bench — CPU: {cpu_model()}; {os.cpu_count()} cores; load average "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}; torch {torch.__version__}, {threads} thread(s) rendering")
    print(f"set: {len(config.items)} items × {len(config.groups)} groups = {len(config.items) * len(config.groups)} "
          f"trials of {config.duration_s:g} s, {min(signals)}–{max(signals)} signals each, from {study_dir}")
    for group in config.groups:
        print(f"  {group.name:<10} {', '.join(group.condition_ids)}")
    times = PhaseTimes()
    with tempfile.TemporaryDirectory(prefix="earshot-stimuli-bench-") as tmp:
        started = time.perf_counter()
        cpu_started = time.process_time()
        manifest = build_stimulus_set(config, Path(tmp) / "bench", command="python -m stimulus_sets bench",
                                      threads=threads, times=times)
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
    runs = {c["run_id"] for t in manifest["trials"] for c in t["conditions"] if c["role"] == "system"}
    print(f"\nbuilt {len(manifest['trials'])} trials at {manifest['sample_rate']} Hz "
          f"({len(runs)} runs × {len(config.items)} items rendered once each)")
    for phase, seconds in times.seconds.items():
        print(f"  {phase:<10} {seconds:6.1f} s  {100 * seconds / wall:5.1f} %")
    verdict = "met" if wall <= TARGET_S else "NOT met"
    print(f"  {'total':<10} {wall:6.1f} s wall, {cpu:.1f} s CPU (target ≤ {TARGET_S:g} s on 2 cores: {verdict})")
    return 0
