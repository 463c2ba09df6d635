"""Running a trained network over audio: fast offline (chunked) rendering and block streaming.

``nn.LSTM`` over a whole file at batch 1 is slow on a CPU because every time step is a separate
small matrix product. Offline rendering cuts the file into chunks that overlap by a warm-up
stretch, runs them all as one batch and drops each chunk's warm-up output: the recurrent state
forgets where it started within the warm-up, so the result matches whole-file rendering to
within float noise while the sequential loop is a chunk long instead of a file long.

An :class:`models.nets.LSTMStack` runs its layers time-major here (``(time, batch, units)``, the
layout oneDNN's LSTM computes in): the batch-first module converts every layer's output, which
costs about a tenth of the chunked time. With more than one thread the batch is split between
worker threads that each run one intra-op thread: OpenMP's two-thread LSTM spins at every time
step and collapses when another process holds a core, separate batch slices do not.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from .nets import LSTMStack

log = logging.getLogger(__name__)

# A trained S-64-8's chunked output differs from whole-file rendering by float noise only (2e-7)
# from a 256-sample warm-up on (the training windows' masked warm-up is 256 samples, so the
# networks are trained to forget their start state within it); twice that leaves a margin.
DEFAULT_WARMUP_SAMPLES = 512
# Measured for S-64-8 on one thread (PyTorch 2.13, oneDNN LSTM, time-major in 512-step tiles):
# the cost per sample falls from 5–6 µs at batch 1 to about 1.1 µs at batch 64–96. So the file is
# cut into about this many chunks per worker thread.
TARGET_BATCH = 64
# Time steps per call when an LSTM stack runs its chunks (see _lstm_stack_time_major): at batch
# 64 one thread renders S-64-8 about a quarter faster in tiles of 512 steps than in one call.
TIME_TILE = 512
MIN_CHUNK_SAMPLES = 2048
DEFAULT_MAX_BATCH = 256


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Temporarily set torch's intra-op thread count (None leaves it alone)."""
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _knob_tensor(knobs: Sequence[float] | None, batch: int) -> torch.Tensor | None:
    if knobs is None or len(knobs) == 0:
        return None
    return torch.tensor(list(knobs), dtype=torch.float32).expand(batch, -1)


def render_whole(model: torch.nn.Module, audio: np.ndarray, knobs: Sequence[float] | None = None) -> np.ndarray:
    """Reference rendering: the whole file at batch 1 from a zero state. audio: (time,) → (time,)."""
    x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))[None, :, None]
    with torch.inference_mode():
        y, _ = model(x, _knob_tensor(knobs, 1))
    return y[0, :, 0].numpy().copy()


def _lstm_stack_time_major(model: LSTMStack, x: torch.Tensor, knobs: torch.Tensor | None) -> torch.Tensor:
    """``LSTMStack.forward`` from zero states on time-major x (time, batch, 1) → y (time, batch).

    The same operations as the module (``torch.lstm`` is what ``nn.LSTM`` calls), without the
    batch-first conversions, and TIME_TILE steps at a time through every layer with the states
    carried: each layer's output is then read back from the cache, not from memory (the first
    layer's input projection alone is 256 floats per sample for S-64-8). Tests hold it to
    whole-file rendering.
    """
    config = model.config
    films = []
    for i in range(len(model.lstms)):
        if model.films:
            gamma, beta = model.films[i](knobs).chunk(2, dim=-1)
            films.append((1.0 + gamma[None], beta[None]))
    states = [(x.new_zeros(1, x.shape[1], lstm.hidden_size),) * 2 for lstm in model.lstms]
    out = x.new_empty(x.shape[:2])
    for begin in range(0, x.shape[0], TIME_TILE):
        xs = x[begin : begin + TIME_TILE]
        h = xs
        if config.n_knobs and config.conditioning == "concat":
            h = torch.cat([xs, knobs[None, :, :].expand(xs.shape[0], -1, -1)], dim=-1)
        for i, lstm in enumerate(model.lstms):
            h, h_n, c_n = torch.lstm(h, states[i], lstm._flat_weights, lstm.bias, 1, 0.0, False, False, False)
            states[i] = (h_n, c_n)
            if films:
                h = h * films[i][0] + films[i][1]
        out[begin : begin + xs.shape[0]] = (model.dense(h) + xs)[:, :, 0]
    return out


def _run_batch(model: torch.nn.Module, frames: torch.Tensor, knobs: Sequence[float] | None) -> np.ndarray:
    """frames (batch, time) → outputs (batch, time), from zero (or silence) states."""
    k = _knob_tensor(knobs, frames.shape[0])
    with torch.inference_mode():
        if isinstance(model, LSTMStack) and model.config.n_knobs == (0 if k is None else k.shape[1]):
            return _lstm_stack_time_major(model, frames.t().contiguous()[:, :, None], k).t().contiguous().numpy()
        y, _ = model(frames[:, :, None], k)
        return y[:, :, 0].numpy()


def render(
    model: torch.nn.Module,
    audio: np.ndarray,
    knobs: Sequence[float] | None = None,
    chunk_samples: int | None = None,
    warmup_samples: int = DEFAULT_WARMUP_SAMPLES,
    max_batch: int = DEFAULT_MAX_BATCH,
    threads: int | None = None,
) -> np.ndarray:
    """Offline rendering in overlapping chunks processed as one batch. audio: (time,) → (time,).

    Chunk 0 is the first ``warmup + chunk`` samples from a zero state, exactly as whole-file
    rendering starts; chunk k ≥ 1 reads ``audio[k·C : k·C + W + C]`` and keeps its last C outputs.
    ``chunk_samples`` None picks C for about TARGET_BATCH chunks per thread. ``max_batch`` bounds
    memory on very long files by running the chunks in groups. A network with a finite
    ``receptive_field`` (a WaveNet) gets a warm-up of at least ``receptive_field − 1``, which makes
    chunking exact. ``threads`` (None: torch's current count) worker threads each run a slice of
    the batch on one intra-op thread.
    """
    warmup_samples = max(warmup_samples, getattr(model, "receptive_field", 1) - 1)
    threads = torch.get_num_threads() if threads is None else threads
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be an integer >= 1, found {threads!r}")
    audio = np.ascontiguousarray(audio, dtype=np.float32)
    total = audio.shape[0]
    if chunk_samples is None:
        chunk_samples = max(MIN_CHUNK_SAMPLES, math.ceil((total - warmup_samples) / (TARGET_BATCH * threads)))
    if chunk_samples < 1 or warmup_samples < 0:
        raise ValueError(f"chunk_samples must be >= 1 and warmup_samples >= 0, found {chunk_samples}, {warmup_samples}")
    if total <= warmup_samples + chunk_samples:
        with torch_threads(threads):
            return render_whole(model, audio, knobs)
    n_chunks = math.ceil((total - warmup_samples) / chunk_samples)
    padded = np.zeros(n_chunks * chunk_samples + warmup_samples, dtype=np.float32)
    padded[:total] = audio
    frames = torch.from_numpy(padded).unfold(0, warmup_samples + chunk_samples, chunk_samples)
    groups = []
    for start in range(0, n_chunks, max_batch):
        stop = min(n_chunks, start + max_batch)
        # Each group split into `threads` near-equal slices, in chunk order.
        edges = np.linspace(start, stop, min(threads, stop - start) + 1).round().astype(int)
        groups.append([(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)])
    out = np.empty(n_chunks * chunk_samples + warmup_samples, dtype=np.float32)

    def place(a: int, y: np.ndarray) -> None:
        for j in range(y.shape[0]):
            k = a + j
            if k == 0:
                out[: warmup_samples + chunk_samples] = y[0]
            else:
                begin = k * chunk_samples + warmup_samples
                out[begin : begin + chunk_samples] = y[j, warmup_samples:]

    def work(a: int, b: int) -> None:
        place(a, _run_batch(model, frames[a:b], knobs))

    if threads == 1:
        with torch_threads(1):
            for slices in groups:
                for a, b in slices:
                    work(a, b)
    else:
        with torch_threads(1), ThreadPoolExecutor(threads) as pool:
            for slices in groups:
                for future in [pool.submit(work, a, b) for a, b in slices]:
                    future.result()
    return out[:total].copy()


def render_stream(
    model: torch.nn.Module, audio: np.ndarray, block_samples: int, knobs: Sequence[float] | None = None
) -> np.ndarray:
    """Real-time style rendering: blocks of ``block_samples`` in order, carrying the recurrent state."""
    audio = np.ascontiguousarray(audio, dtype=np.float32)
    x = torch.from_numpy(audio)
    k = _knob_tensor(knobs, 1)
    out = np.empty_like(audio)
    state = None
    with torch.inference_mode():
        for begin in range(0, audio.shape[0], block_samples):
            block = x[begin : begin + block_samples][None, :, None]
            y, state = model(block, k, state)
            out[begin : begin + block.shape[1]] = y[0, :, 0].numpy()
    return out
