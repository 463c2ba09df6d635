"""``python -m evaluation bench``: time the full report and the screening of a million ratings.

Two workloads: (1) the full report (figures included) of a simulated panel of 100 listeners × 24
items × 8 conditions (hidden reference, two anchors, five systems); (2) screening and descriptives
of 1 000 000 ratings (1 000 listeners × 125 trials × 8 conditions). The stimulus set is a manifest
with objective metrics and no audio (nothing needs to be rendered or read).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from common.audio_metrics import METRIC_NAMES
from common.provenance import cpu_model
from common.stimulus_set import (
    REFERENCE_FILE,
    SCHEMA,
    STANDARD_CONDITIONS,
    SYSTEM,
    condition_file,
    write_manifest,
)

from .analysis import ReportConfig, analyse
from .descriptives import describe
from .errors import ManifestError
from .manifest import load_manifest
from .ratings import Ratings, to_tidy
from .report import write_report
from .screening import screen
from .simulation import SimulationConfig, simulate_panel

SYSTEMS = (
    ("distilled", "kd", 32, None, 0.02),
    ("non_distilled", "baseline", 32, None, 0.06),
    ("kd_q8", "kd_qat", 8, None, 0.03),
    ("kd_q4", "kd_qat", 4, None, 0.09),
    ("slim_50", "slimmable", 32, 0.5, 0.12),
)


def bench_manifest(folder: Path, n_items: int = 24, seed: int = 0) -> Path:
    """Write a manifest with ``n_items`` trials of 8 conditions and full objective metrics."""
    rng = np.random.default_rng(seed)
    trials = []
    for i in range(n_items):
        conditions = [
            {"id": cid, "role": role, "file": condition_file(cid)}
            for cid, role in STANDARD_CONDITIONS.items()
        ]
        for cid, recipe, bits, width, esr in SYSTEMS:
            item_esr = esr * float(np.exp(rng.normal(0, 0.3)))
            objective = {name: float(rng.uniform(0.01, 1.0)) for name in METRIC_NAMES}
            objective["esr"] = item_esr
            objective["mrstft"] = 0.5 + 4 * item_esr + float(rng.normal(0, 0.02))
            conditions.append(
                {
                    "id": cid,
                    "role": SYSTEM,
                    "file": condition_file(cid),
                    "run_id": f"run-{cid}",
                    "arch": "lstm",
                    "recipe": recipe,
                    "bits": bits,
                    "width": width,
                    "params": 9000,
                    "bytes": int(9000 * bits / 8 * (width or 1.0)),
                    "rtf_offline": 0.01 * (width or 1.0),
                    "objective": objective,
                }
            )
        trials.append(
            {
                "id": f"item{i:02d}",
                "item": f"item{i:02d}",
                "group": "S-32-8",
                "reference": REFERENCE_FILE,
                "conditions": conditions,
            }
        )
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {
        "schema": SCHEMA,
        "sample_rate": 48000,
        "provenance": {"command": "python -m evaluation bench", "seed": seed},
        "trials": trials,
    }
    write_manifest(folder, manifest, ManifestError)
    return folder


def million_ratings(n_listeners: int = 1000, n_trials: int = 125, seed: int = 0) -> pd.DataFrame:
    """1 000 000 tidy ratings built with numpy (the per-listener simulator is too slow for this)."""
    rng = np.random.default_rng(seed)
    conditions = np.array(["hidden_reference", "anchor_3k5", "anchor_7k", *[s[0] for s in SYSTEMS]])
    roles = np.array(["hidden_reference", "anchor_low", "anchor_mid", *["system"] * len(SYSTEMS)])
    levels = np.array([99, 20, 45, 75, 60, 70, 50, 40], dtype=float)
    k = conditions.size
    n = n_listeners * n_trials * k
    participant = np.repeat(np.arange(n_listeners), n_trials * k)
    trial = np.tile(np.repeat(np.arange(n_trials), k), n_listeners)
    cond = np.tile(np.arange(k), n_listeners * n_trials)
    bias = rng.normal(0, 6, n_listeners)[participant]
    score = np.clip(np.round(levels[cond] + bias + rng.normal(0, 8, n)), 0, 100)
    frame = pd.DataFrame(
        {
            "participant": pd.Categorical.from_codes(
                participant, [f"L{i:04d}" for i in range(n_listeners)]
            ).astype(str),
            "trial": pd.Categorical.from_codes(
                trial, [f"t{i:03d}" for i in range(n_trials)]
            ).astype(str),
            "condition": conditions[cond],
            "role": roles[cond],
            "score": score,
        }
    )
    return to_tidy(frame)


def _timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def _cpu_timed(fn: Callable[[], object]) -> tuple[float, float, object]:
    """Wall-clock and process CPU seconds (CPU time is what a loaded machine does not inflate)."""
    cpu = time.process_time()
    wall, value = _timed(fn)
    return wall, time.process_time() - cpu, value


def run_bench(print_fn: Callable[[str], None]) -> dict[str, float]:
    """Run both workloads and print their timings; returns them in seconds."""
    results: dict[str, float] = {}
    print_fn(
        f"CPU: {cpu_model()}; {os.cpu_count()} logical cores visible; affinity "
        f"{len(os.sched_getaffinity(0))}; load average {os.getloadavg()[0]:.1f}"
    )
    with tempfile.TemporaryDirectory(prefix="earshot-bench-") as tmp:
        folder = bench_manifest(Path(tmp) / "bench-set")
        manifest = load_manifest(folder)
        config = SimulationConfig(n_listeners=100, n_careless=3, seed=1)
        seconds, panel = _timed(lambda: simulate_panel(manifest, config))
        results["simulate_100x24x8_s"] = seconds
        print_fn(
            f"simulate 100 listeners × 24 items × 8 conditions ({len(panel)} ratings): {seconds:.2f} s"
        )
        participants = pd.DataFrame({"participant": pd.unique(panel["participant"])})
        ratings = Ratings(panel, participants, "simulated")

        def report():
            analysis = analyse(ratings, manifest, config=ReportConfig())
            return write_report(analysis, Path(tmp) / "report")

        seconds, cpu, out = _cpu_timed(report)
        results["report_100x24x8_s"] = seconds
        results["report_100x24x8_cpu_s"] = cpu
        n_figures = len(list((Path(out) / "figures").glob("*.png")))
        print_fn(
            f"full report (analysis, {n_figures} figures as PNG+PDF, CSV, LaTeX, JSON, HTML): "
            f"{seconds:.2f} s wall, {cpu:.2f} s CPU (target ≤ 20 s)"
        )
    seconds, big = _timed(million_ratings)
    print_fn(f"build 1 000 000 ratings: {seconds:.2f} s")
    wall_screen, cpu_screen, result = _cpu_timed(lambda: screen(big))
    wall_desc, cpu_desc, _ = _cpu_timed(
        lambda: (describe(big, by=("condition",)), describe(big, by=("condition", "item")))
    )
    results["screen_1m_s"] = wall_screen
    results["describe_1m_s"] = wall_desc
    results["screen_describe_1m_cpu_s"] = cpu_screen + cpu_desc
    print_fn(
        f"screening of 1 000 000 ratings: {wall_screen:.2f} s ({len(result.excluded)} excluded); "
        f"descriptives (per condition and per condition × item): {wall_desc:.2f} s; together "
        f"{wall_screen + wall_desc:.2f} s wall, {cpu_screen + cpu_desc:.2f} s CPU (target ≤ 10 s)"
    )
    return results
