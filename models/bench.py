"""``python -m models bench``: size, multiply-adds, training throughput and rendering speed.

Figures are medians of repeated measurements; ratios are taken within one run because these
machines are noisy. Prints the CPU model so figures from different machines are not mixed up.
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from .checkpoints import load_model
from .nets import TEACHER_LAYERS, NetConfig, build_model, macs_per_sample, parameter_count
from .rendering import DEFAULT_WARMUP_SAMPLES, TARGET_BATCH, render, render_whole, torch_threads
from .signals import program

PRESETS = {
    "teacher": TEACHER_LAYERS,
    "S-8-8": (8, 8),
    "S-16-8": (16, 8),
    "S-32-8": (32, 8),
    "S-64-8": (64, 8),
}
SAMPLE_RATE = 48000


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: allocator, oneDNN kernels
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def train_throughput(layers: tuple[int, ...], threads: int, repeats: int) -> float:
    """Samples per second of one Adam step at batch 8 × 2048 (plus a 256-sample warm-up)."""
    torch.manual_seed(0)
    model = build_model(NetConfig(layers=layers))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
    x = torch.randn(8, 2048 + 256, 1) * 0.3

    def step():
        y, _ = model(x)
        loss = (y[:, 256:] - x[:, 256:]).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    with torch_threads(threads):
        return 8 * 2048 / median_seconds(step, repeats)


def _trained_or_fresh(checkpoint: Path | None) -> tuple[torch.nn.Module, str]:
    candidates = [checkpoint] if checkpoint else sorted(Path("results/zoo/demo/runs").glob("*_S-64-8_baseline_*"))
    for path in candidates:
        if path and (Path(path) / "checkpoint.pt").is_file():
            model, _ = load_model(path)
            return model, f"trained ({Path(path).name})"
    torch.manual_seed(0)
    return build_model(NetConfig(layers=(64, 8))).eval(), "untrained (run `make demo` for a trained one)"


def run_bench(repeats: int = 5, audio_s: float = 10.0, checkpoint: Path | None = None) -> int:
    audio = program(audio_s, SAMPLE_RATE, seed=1)
    print(f"Earshot models bench — CPU: {cpu_model()}; {torch.get_num_threads()} threads available; "
          f"torch {torch.__version__}; median of {repeats} (whole-file: of {max(1, min(repeats, 3))})")
    print(f"render: {audio_s:g} s of programme at {SAMPLE_RATE} Hz; chunked = about {TARGET_BATCH} chunks, each "
          f"with a {DEFAULT_WARMUP_SAMPLES}-sample warm-up, as one batch; speed-up = best whole-file time / best "
          "chunked time over 1 and 2 threads\n")
    header = (f"{'preset':<8} {'params':>7} {'MACs/sample':>11} {'train 1t (samp/s)':>18} "
              f"{'train 2t (samp/s)':>18} {'RTF chunked 1t/2t':>18} {'RTF whole 1t/2t':>16} {'speed-up':>9}")
    print(header)
    print("-" * len(header))
    whole_repeats = max(1, min(repeats, 3))
    for name, layers in PRESETS.items():
        config = NetConfig(layers=layers)
        torch.manual_seed(0)
        model = build_model(config).eval()
        t1 = train_throughput(layers, 1, repeats)
        t2 = train_throughput(layers, 2, repeats)
        chunked, whole = [], []
        for threads in (1, 2):
            with torch_threads(threads):
                chunked.append(median_seconds(lambda m=model: render(m, audio), repeats))
                whole.append(median_seconds(lambda m=model: render_whole(m, audio), whole_repeats))
        # Offline rendering may use every core; so may the whole-file baseline: best against best.
        speedup = min(whole) / min(chunked)
        print(f"{name:<8} {parameter_count(model):>7} {macs_per_sample(config):>11} {t1:>18,.0f} {t2:>18,.0f} "
              f"{audio_s / chunked[0]:>8.1f}×/{audio_s / chunked[1]:>5.1f}× {audio_s / whole[0]:>7.1f}×/"
              f"{audio_s / whole[1]:>5.1f}× {speedup:>8.1f}×", flush=True)

    model, what = _trained_or_fresh(checkpoint)
    with torch_threads(1):
        a = render_whole(model, audio)
        b = render(model, audio)
    print(f"\nS-64-8 {what}: max |chunked − whole-file| = {np.abs(a - b).max():.2e} over {audio_s:g} s")
    print("\nS-64-8 chunk size sweep (1 thread / 2 threads, real-time factor):")
    for chunk, warmup in [(4096, 2048), (8192, 2048), (12000, 2048), (16384, 2048), (32768, 2048), (12000, 1024)]:
        rtfs = []
        for threads in (1, 2):
            with torch_threads(threads):
                rtfs.append(audio_s / median_seconds(
                    lambda c=chunk, w=warmup: render(model, audio, chunk_samples=c, warmup_samples=w), repeats))
        print(f"  chunk {chunk:>6} + warm-up {warmup:>5}: {rtfs[0]:6.1f}× / {rtfs[1]:6.1f}×")
    return 0
