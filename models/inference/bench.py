"""``python -m models bench``: size, multiply-adds, training throughput, rendering and streaming speed.

Figures are medians of repeated measurements; ratios are taken within one run because these
machines are noisy. Prints the CPU model, library versions and the machine load so figures from
different machines or moments are not mixed up. Sections (``--only``):

- ``train``: parameters, multiply-adds per sample and training throughput at 1 and 2 threads;
- ``render``: offline rendering, chunked (:func:`models.inference.rendering.render`) against whole-file, and
  the chunked result's max difference to whole-file rendering on a trained S-64-8;
- ``streaming``: the true cost — streaming real-time factor per block size on one thread, per
  preset, width and bit-width, next to a matmul probe of this machine's single-thread peak
  multiply-add rate, and the issue's targets checked, with a profile where one is missed.
"""

from __future__ import annotations

import cProfile
import io
import os
import platform
import pstats
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from common.provenance import cpu_model
from models.dsp.signals import program
from models.errors import ConfigError
from models.inference.rendering import (
    DEFAULT_WARMUP_SAMPLES,
    TARGET_BATCH,
    TIME_TILE,
    render,
    render_whole,
    torch_threads,
)
from models.inference.streaming import WaveNetStreamer, measure_rtf, stream
from models.nets.architectures import build_model, macs_per_sample, of, parameter_count
from models.nets.architectures import label as net_label
from models.nets.lstm import TEACHER_LAYERS, LSTMConfig
from models.nets.quantize import quantize_model
from models.nets.slimmable import slim
from models.nets.wavenet import WaveNet, WaveNetPresetConfig
from models.nets.wavenet import macs_per_sample as wavenet_macs
from models.training.checkpoints import load_model

PRESETS = {
    "teacher": TEACHER_LAYERS,
    "S-8-8": (8, 8),
    "S-16-8": (16, 8),
    "S-32-8": (32, 8),
    "S-64-8": (64, 8),
}
SAMPLE_RATE = 48000
BLOCKS = (64, 128, 256, 512)
SECTIONS = ("train", "render", "streaming")
WAVENET_PRESETS = ("standard", "lite", "feather", "nano")
WIDTHS = (0.25, 0.5, 0.75, 1.0)
BITS = (8, 4)
# The targets (one thread): streaming S-64-8 at 128-sample blocks, WaveNet standard at 512,
# and the slimmable preset's 25 % width against its full width.
TARGET_LSTM_BLOCK = 128
TARGET_WAVENET_BLOCK = 512
TARGET_SLIM_SPEEDUP = 2.5


def load_text() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "load unknown"
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} (1 / 5 / 15 min) on {os.cpu_count()} cores"


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: allocator, oneDNN kernels
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def paired_medians(first: Callable[[], object], second: Callable[[], object], repeats: int,
                   second_repeats: int) -> tuple[float, float]:
    """Median seconds of two functions timed in alternation (first, second, first, …), so a change
    of machine load between them falls on both and their ratio stays fair."""
    first()
    second()
    times: tuple[list[float], list[float]] = ([], [])
    for r in range(repeats):
        for fn, bucket, wanted in ((first, times[0], True), (second, times[1], r < second_repeats)):
            if wanted:
                started = time.perf_counter()
                fn()
                bucket.append(time.perf_counter() - started)
    return statistics.median(times[0]), statistics.median(times[1])


def train_throughput(layers: tuple[int, ...], threads: int, repeats: int) -> float:
    """Samples per second of one Adam step at batch 8 × 2048 (plus a 256-sample warm-up)."""
    torch.manual_seed(0)
    model = build_model(LSTMConfig(layers=layers))
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


@dataclass(frozen=True)
class Peak:
    """The matmul probe: best single-thread float32 multiply-adds per second, per library and size."""

    macs_per_s: float
    detail: str


def matmul_peak(sizes: Iterable[int] = (128, 256, 512, 1024), tries: int = 7) -> Peak:
    """Single-thread float32 GEMM rate (n×n @ n×n, n³ multiply-adds), best over sizes and tries,
    through torch (oneDNN/MKL) and NumPy (OpenBLAS): the physical limit the models are held to."""
    rng = np.random.default_rng(0)
    best, parts = 0.0, []
    with torch_threads(1), threadpool_limits(limits=1, user_api="blas"):
        for n in sizes:
            a = rng.standard_normal((n, n)).astype(np.float32)
            b = rng.standard_normal((n, n)).astype(np.float32)
            ta, tb = torch.from_numpy(a), torch.from_numpy(b)
            calls = max(1, int(2e8 // n**3))  # about 0.2 GMAC per timing
            rates = {}
            for name, fn in (("torch", lambda x=ta, y=tb: torch.mm(x, y)), ("numpy", lambda x=a, y=b: x @ y)):
                fn()
                fastest = float("inf")
                for _ in range(tries):
                    started = time.perf_counter()
                    for _ in range(calls):
                        fn()
                    fastest = min(fastest, (time.perf_counter() - started) / calls)
                rates[name] = n**3 / fastest
            best = max(best, *rates.values())
            parts.append(f"{n}: torch {rates['torch'] / 1e9:.1f}, numpy {rates['numpy'] / 1e9:.1f}")
    return Peak(best, "GMAC/s by size — " + "; ".join(parts))


def _trained_or_fresh(checkpoint: Path | None) -> tuple[torch.nn.Module, str]:
    candidates = [checkpoint] if checkpoint else sorted(Path("results/zoo/demo/runs").glob("*_S-64-8_baseline_*"))
    for path in candidates:
        if path and (Path(path) / "checkpoint.pt").is_file():
            model, _ = load_model(path)
            return model.eval(), f"trained ({Path(path).name})"
    torch.manual_seed(0)
    return build_model(LSTMConfig(layers=(64, 8))).eval(), "untrained (run `make demo` for a trained one)"


def _quantized_copy(model: torch.nn.Module, bits: int) -> torch.nn.Module:
    """A copy of ``model`` holding its ``bits``-bit dequantized weights: what quantized runs render with."""
    config = model.config
    copy = of(config).build(config)
    copy.load_state_dict(quantize_model(model, bits).state_dict())
    return copy.eval()


def _streaming_rows() -> list[tuple[str, torch.nn.Module, int, str]]:
    """(label, model, MACs/sample, engine note) per streamed row. Fresh weights: the arithmetic,
    and so the speed, does not depend on their values."""
    rows = []
    for name, layers in PRESETS.items():
        torch.manual_seed(0)
        config = LSTMConfig(layers=layers)
        rows.append((name, build_model(config).eval(), macs_per_sample(config), "torch"))
    for preset in WAVENET_PRESETS:
        torch.manual_seed(0)
        config = WaveNetPresetConfig(preset=preset)
        rows.append((net_label(config), build_model(config).eval(), macs_per_sample(config), "numpy"))
    torch.manual_seed(0)
    slimmable = build_model(WaveNetPresetConfig(preset="slimmable")).eval()
    for width in WIDTHS:
        config = WaveNetPresetConfig(preset="slimmable", width=width)
        rows.append((net_label(config), slim(slimmable, width).eval(), macs_per_sample(config), "numpy"))
    for label, config in (("S-64-8", LSTMConfig(layers=(64, 8))), ("WN-standard", WaveNetPresetConfig(
                                                                                           preset="standard"))):
        torch.manual_seed(0)
        base = build_model(config).eval()
        for bits in BITS:
            rows.append((f"{label} q{bits}*", _quantized_copy(base, bits), macs_per_sample(config),
                         "numpy" if of(config).streaming_engine == "numpy" else "torch"))
    return rows


def _paired_width_ratios(narrow: torch.nn.Module, wide: torch.nn.Module, blocks: Iterable[int], seconds: float,
                         repeats: int) -> dict[int, float]:
    """Per block size, the narrow model's streaming speed over the wide one's, both timed in alternation
    on one thread (medians of ``repeats``)."""
    audio = (0.1 * np.random.default_rng(0).standard_normal(int(seconds * SAMPLE_RATE))).astype(np.float32)
    ratios = {}
    with torch_threads(1), threadpool_limits(limits=1, user_api="blas"):
        for b in blocks:
            t_narrow, t_wide = paired_medians(lambda b=b: stream(narrow, audio, b), lambda b=b: stream(wide, audio, b),
                                              repeats, repeats)
            ratios[b] = t_wide / t_narrow
    return ratios


def _profile_streamer(model: WaveNet, block: int, seconds: float) -> str:
    """cProfile of the NumPy engine streaming ``seconds`` of noise, plus the per-call arithmetic."""
    audio = (0.1 * np.random.default_rng(0).standard_normal(int(seconds * SAMPLE_RATE))).astype(np.float32)
    streamer = WaveNetStreamer(model)
    blocks = [audio[i : i + block] for i in range(0, audio.size, block)]
    profiler = cProfile.Profile()
    with threadpool_limits(limits=1, user_api="blas"):
        for b in blocks:
            streamer.process(b)  # warm-up
        started = time.perf_counter()  # timed without the profiler, whose hooks cost time per call
        for b in blocks:
            streamer.process(b)
        elapsed = time.perf_counter() - started
        profiler.enable()
        for b in blocks:
            streamer.process(b)
        profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(6)
    summary = "\n".join(line for line in out.getvalue().splitlines() if line.strip())
    calls = streamer.numpy_calls_per_block()
    per_block = elapsed / len(blocks)
    return (f"{summary}\n  {len(blocks)} blocks of {block}: {1e6 * per_block:.0f} µs per block unprofiled; {calls} NumPy "
            f"calls per block → {1e6 * per_block / calls:.1f} µs per call, for "
            f"{wavenet_macs(model.config) * block / calls:,.0f} multiply-adds per call on average")


def run_streaming(quick: bool, repeats: int) -> int:
    seconds = 1.0 if quick else 2.0
    print("Measuring the matmul peak …", flush=True)
    peak = matmul_peak(tries=3 if quick else 7)
    print(f"matmul probe (single thread, float32 n×n GEMM, best of tries): peak {peak.macs_per_s / 1e9:.1f} GMAC/s "
          f"({peak.detail})")
    print(f"streaming: {seconds:g} s of noise in blocks, one thread (torch and BLAS), wall-clock median of "
          f"{repeats} runs after a warm-up run; RTF = audio seconds per compute second (≥ 1 keeps up with "
          f"real time); GMAC/s and % of peak at the largest block. LSTMs stream through torch.lstm (nn.LSTM's "
          f"kernel) with carried states, WaveNets through the NumPy engine with cached convolution history.")
    print("* quantized rows run their dequantized fp32 weights (what quantized runs render with), so their "
          "speed equals fp32: measured to show nothing is added on the path.\n")
    header = (f"{'model':<20} {'engine':<6} {'MACs/sample':>11} "
              + " ".join(f"{f'RTF@{b}':>8}" for b in BLOCKS) + f" {'GMAC/s':>7} {'% peak':>7}")
    print(header)
    print("-" * len(header))
    results: dict[str, dict[int, float]] = {}
    models: dict[str, torch.nn.Module] = {}
    for label, model, macs, engine in _streaming_rows():
        rtfs = {b: measure_rtf(model, SAMPLE_RATE, b, seconds=seconds, repeats=repeats, threads=1) for b in BLOCKS}
        results[label], models[label] = rtfs, model
        rate = macs * SAMPLE_RATE * rtfs[BLOCKS[-1]]
        print(f"{label:<20} {engine:<6} {macs:>11,} " + " ".join(f"{rtfs[b]:>7.2f}×" for b in BLOCKS)
              + f" {rate / 1e9:>7.2f} {100 * rate / peak.macs_per_s:>6.1f}%", flush=True)

    print("\nTargets (one thread):")
    missed = []
    lstm = results["S-64-8"][TARGET_LSTM_BLOCK]
    wavenet = results["WN-standard"][TARGET_WAVENET_BLOCK]
    checks = [(f"streaming S-64-8 ≥ 1× real time at {TARGET_LSTM_BLOCK}-sample blocks", lstm, 1.0, "×"),
              (f"WaveNet standard ≥ 1× at {TARGET_WAVENET_BLOCK}-sample blocks", wavenet, 1.0, "×")]
    # The width ratio is timed in alternation (25 %, 100 %, 25 %, …): rows of the table are minutes
    # apart, and on a shared machine the load changes in between.
    ratios = _paired_width_ratios(models["WN-slimmable@25%"], models["WN-slimmable"], BLOCKS + (1024, 2048),
                                  seconds, repeats)
    for b in BLOCKS:
        checks.append((f"slimmable 25 % width ≥ {TARGET_SLIM_SPEEDUP:g}× faster than 100 % at {b}-sample blocks "
                       "(timed in alternation)", ratios[b], TARGET_SLIM_SPEEDUP, "×"))
    for text, value, goal, unit in checks:
        ok = value >= goal
        print(f"  {'met ' if ok else 'MISSED'} {text}: {value:.2f}{unit}")
        if not ok:
            missed.append(text)
    print("  (beyond the table: slimmable 25 % against 100 % at " + ", ".join(
        f"{b}-sample blocks {ratios[b]:.2f}×" for b in (1024, 2048)) + ")")
    if any("slimmable" in m for m in missed):
        block = TARGET_WAVENET_BLOCK
        print(f"\nProfile of the NumPy engine, slimmable at 25 % and 100 % width, {block}-sample blocks "
              "(cProfile cannot see inside NumPy's C calls, so the time of every call is the caller's "
              "tottime; the per-call figures below divide it by the calls made):")
        for label in ("WN-slimmable@25%", "WN-slimmable"):
            print(f"[{label}]")
            print(_profile_streamer(models[label], block, seconds))
        print("At 25 % width a layer's products are 4 × 14 by 14 × block (4 × 8 by 8 × block for the residual): "
              "the time per block is the fixed cost of the NumPy calls (a few µs each), not arithmetic, so "
              "slimming further buys little; longer blocks amortise it (the ratio grows with block length).")
    return 0


def run_render(repeats: int, audio_s: float, checkpoint: Path | None, quick: bool) -> int:
    audio = program(audio_s, SAMPLE_RATE, seed=1)
    whole_repeats = max(1, min(repeats, 3))
    print(f"render: {audio_s:g} s of programme at {SAMPLE_RATE} Hz; chunked = about {TARGET_BATCH} chunks per "
          f"worker thread, each with a {DEFAULT_WARMUP_SAMPLES}-sample warm-up, as one batch (LSTMs time-major in "
          f"{TIME_TILE}-step tiles); 1t / 2t = one / two worker threads for chunked, torch threads for whole-file; "
          f"speed-up 1t = whole 1t / chunked 1t, best = best whole-file / best chunked; medians of {repeats} "
          f"(whole-file: of {whole_repeats}), chunked and whole-file timed in alternation\n")
    header = (f"{'preset':<8} {'params':>7} {'MACs/sample':>11} {'RTF chunked 1t/2t':>18} {'RTF whole 1t/2t':>16} "
              f"{'speed-up 1t':>11} {'best':>6}")
    print(header)
    print("-" * len(header))
    names = ["S-64-8"] if quick else list(PRESETS)
    for name in names:
        config = LSTMConfig(layers=PRESETS[name])
        torch.manual_seed(0)
        model = build_model(config).eval()
        chunked, whole = [], []
        for threads in (1, 2):
            def whole_file(m=model, t=threads):
                with torch_threads(t):
                    return render_whole(m, audio)

            c, w = paired_medians(lambda m=model, t=threads: render(m, audio, threads=t), whole_file, repeats,
                                  whole_repeats)
            chunked.append(c)
            whole.append(w)
        print(f"{name:<8} {parameter_count(model):>7} {macs_per_sample(config):>11} "
              f"{audio_s / chunked[0]:>8.1f}×/{audio_s / chunked[1]:>5.1f}× {audio_s / whole[0]:>7.1f}×/"
              f"{audio_s / whole[1]:>5.1f}× {whole[0] / chunked[0]:>10.1f}× {min(whole) / min(chunked):>5.1f}×",
              flush=True)

    model, what = _trained_or_fresh(checkpoint)
    with torch_threads(1):
        a = render_whole(model, audio)
    b = render(model, audio, threads=1)
    print(f"\nS-64-8 {what}: max |chunked − whole-file| = {np.abs(a - b).max():.2e} over {audio_s:g} s "
          "(state check on, as by default)")
    if not quick:
        print("\nS-64-8 chunking sweep, one thread (real-time factor):")
        for batch, warmup in [(32, 512), (64, 256), (80, 512), (64, 512), (64, 2048), (128, 512)]:
            chunk = -(-(audio.size - warmup) // batch)
            rtf = audio_s / median_seconds(
                lambda c=chunk, w=warmup: render(model, audio, chunk_samples=c, warmup_samples=w, threads=1), repeats)
            diff = np.abs(render(model, audio, chunk_samples=chunk, warmup_samples=warmup, threads=1) - a).max()
            raw = np.abs(render(model, audio, chunk_samples=chunk, warmup_samples=warmup, threads=1,
                                state_tolerance=None) - a).max()
            print(f"  {batch:>4} chunks of {chunk:>6} + warm-up {warmup:>5}: {rtf:6.1f}×  max diff {diff:.1e} "
                  f"(without the state check {raw:.1e})")
    return 0


def run_train(repeats: int, quick: bool) -> int:
    header = f"{'preset':<8} {'params':>7} {'MACs/sample':>11} {'train 1t (samp/s)':>18} {'train 2t (samp/s)':>18}"
    print("training: one Adam step at batch 8 × 2048 (+256 warm-up), samples per second\n")
    print(header)
    print("-" * len(header))
    for name, layers in PRESETS.items():
        if quick and name not in ("S-64-8", "teacher"):
            continue
        config = LSTMConfig(layers=layers)
        model = build_model(config)
        t1 = train_throughput(layers, 1, repeats)
        t2 = train_throughput(layers, 2, repeats)
        print(f"{name:<8} {parameter_count(model):>7} {macs_per_sample(config):>11} {t1:>18,.0f} {t2:>18,.0f}",
              flush=True)
    return 0


def run_bench(repeats: int = 5, audio_s: float = 10.0, checkpoint: Path | None = None,
              only: Iterable[str] | None = None, quick: bool = False) -> int:
    sections = tuple(only) if only else SECTIONS
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        raise ConfigError(f"bench --only: expected some of {', '.join(SECTIONS)}, found {', '.join(unknown)}")
    if repeats < 1 or audio_s <= 0:
        raise ConfigError(f"bench: expected --repeats >= 1 and --audio-s > 0, found {repeats} and {audio_s:g}")
    # Streaming medians need at least 5 runs (the rule); rendering keeps what was asked.
    stream_repeats = max(5, repeats)
    if quick:
        audio_s = min(audio_s, 5.0)
    print(f"Earshot models bench — CPU: {cpu_model()}; {os.cpu_count()} cores, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads by default), numpy {np.__version__}, Python {platform.python_version()}")
    print(f"sections: {', '.join(sections)}{' (quick)' if quick else ''}; at start: {load_text()}\n")
    for section in SECTIONS:
        if section not in sections:
            continue
        if section == "train":
            run_train(max(1, min(repeats, 3)) if quick else repeats, quick)
        elif section == "render":
            run_render(repeats, audio_s, checkpoint, quick)
        else:
            run_streaming(quick, stream_repeats)
        print()
    print(f"at end: {load_text()}")
    return 0

