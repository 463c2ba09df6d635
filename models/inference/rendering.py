"""Running a trained network over audio: fast offline (chunked) rendering (block streaming: models.inference.streaming).

``nn.LSTM`` over a whole file at batch 1 is slow on a CPU because every time step is a separate
small matrix product. Offline rendering cuts the file into chunks that overlap by a warm-up
stretch, runs them all as one batch and drops each chunk's warm-up output: the recurrent state
forgets where it started within the warm-up — and where it does not, the state check (see
:func:`render`) runs the chunk again from its predecessor's state — so the result matches
whole-file rendering to within float noise while the sequential loop is a chunk long instead of a
file long.

An :class:`models.nets.lstm.LSTMStack` runs its layers time-major here (``(time, batch, units)``, the
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
from typing import Any

import numpy as np
import torch

from models.nets.architectures import find as find_architecture
from models.nets.lstm import LSTMStack
from models.training.compute import CPU, on_device

log = logging.getLogger(__name__)

# The trained demo S-64-8 forgets its start state within 256 samples at most chunk boundaries, but
# not everywhere: one quiet passage of the bench programme keeps it for over 512 (2e-3 and 5e-4
# off whole-file at 256 and 512 without the state check). The check (see render) catches those
# chunks; 512 makes them rare (none of 64 in the bench's 10 s) and costs 7 % of a 7 500-sample chunk.
DEFAULT_WARMUP_SAMPLES = 512
# Measured for S-64-8 on one thread (PyTorch 2.13, oneDNN LSTM, time-major in 512-step tiles):
# the cost per sample falls from 5–6 µs at batch 1 to about 1.1 µs at batch 64–96. So the file is
# cut into about this many chunks per worker thread.
TARGET_BATCH = 64
# Time steps per call when an LSTM stack runs its chunks (see _lstm_stack_time_major): at batch
# 64 one thread renders S-64-8 about a quarter faster in tiles of 512 steps than in one call.
TIME_TILE = 512
MIN_CHUNK_SAMPLES = 2048
# Largest |h| or |c| difference between a chunk's post-warm-up state and its predecessor's final
# state that counts as forgotten: float noise between batch layouts is about 1e-7. At 1e-6 the demo
# S-64-8 runs none of its 64 chunks again on two 10 s bench programmes (11 and 17 at 1e-7, which is
# the noise), and an accepted gap leaves the output within about 1e-6 of whole-file rendering.
STATE_TOLERANCE = 1e-6
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


def _knob_tensor(knobs: Sequence[float] | None, batch: int, device: torch.device = CPU) -> torch.Tensor | None:
    if knobs is None or len(knobs) == 0:
        return None
    return torch.tensor(list(knobs), dtype=torch.float32, device=device).expand(batch, -1)


def render_whole(model: torch.nn.Module, audio: np.ndarray, knobs: Sequence[float] | None = None,
                 device: torch.device | str = CPU) -> np.ndarray:
    """Reference rendering: the whole file at batch 1 from the network's start state (zeros; a NAM
    LSTM's stored initial state). audio: (time,) → (time,).

    The model runs on ``device`` (moved there for the call and back afterwards); the output is a
    NumPy array either way."""
    device = torch.device(device)
    x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))[None, :, None].to(device)
    with on_device(model, device), torch.inference_mode():
        y, _ = model(x, _knob_tensor(knobs, 1, device))
    return y[0, :, 0].cpu().numpy().copy()


def _lstm_stack_time_major(
    model: LSTMStack,
    x: torch.Tensor,
    knobs: torch.Tensor | None,
    states: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
    split: int | None = None,
) -> tuple[torch.Tensor, list | None, list]:
    """``LSTMStack.forward`` on time-major x (time, batch, 1) → y (time, batch).

    The same operations as the module (``torch.lstm`` is what ``nn.LSTM`` calls), without the
    batch-first conversions, and TIME_TILE steps at a time through every layer with the states
    carried: each layer's output is then read back from the cache, not from memory (the first
    layer's input projection alone is 256 floats per sample for S-64-8). ``states`` None starts
    from zeros. Returns y, every layer's (h, c) after the first ``split`` steps (None without a
    split) and after the last step, each (1, batch, units). Tests hold it to whole-file rendering.
    """
    config = model.config
    films = []
    for i in range(len(model.lstms)):
        if model.films:
            gamma, beta = model.films[i](knobs).chunk(2, dim=-1)
            films.append((1.0 + gamma[None], beta[None]))
    if states is None:
        states = [(x.new_zeros(1, x.shape[1], lstm.hidden_size),) * 2 for lstm in model.lstms]
    states = list(states)
    at_split = list(states) if split == 0 else None
    out = x.new_empty(x.shape[:2])
    edges = [0] + ([split] if split else []) + list(range(split or TIME_TILE, x.shape[0], TIME_TILE))
    edges = sorted(set(e for e in edges if e < x.shape[0])) + [x.shape[0]]
    for begin, end in zip(edges[:-1], edges[1:], strict=True):
        xs = x[begin:end]
        h = xs
        if config.n_knobs and config.conditioning == "concat":
            h = torch.cat([xs, knobs[None, :, :].expand(xs.shape[0], -1, -1)], dim=-1)
        for i, lstm in enumerate(model.lstms):
            h, h_n, c_n = torch.lstm(h, states[i], lstm._flat_weights, lstm.bias, 1, 0.0, False, False, False)
            states[i] = (h_n, c_n)
            if films:
                h = h * films[i][0] + films[i][1]
        out[begin:end] = (model.dense(h) + xs)[:, :, 0]
        if end == split:
            at_split = list(states)
    return out, at_split, states


def _stacked(states: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """Every layer's (h, c) side by side: (batch, 2·Σ units), one row per chunk."""
    return torch.cat([t[0] for pair in states for t in pair], dim=-1)


def _unstack(model: LSTMStack, row: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One chunk's stacked states (see :func:`_stacked`) back to per-layer (h, c), each (1, 1, units)."""
    states, at = [], 0
    for lstm in model.lstms:
        units = lstm.hidden_size
        states.append((row[at:at + units].reshape(1, 1, units), row[at + units:at + 2 * units].reshape(1, 1, units)))
        at += 2 * units
    return states


def _state_leaves(state: Any) -> list[torch.Tensor]:
    if isinstance(state, torch.Tensor):
        return [state]
    return [leaf for part in state for leaf in _state_leaves(part)]


def _state_rows(state: Any) -> torch.Tensor:
    """A recurrent state (tensors each (layers, batch, units), nested in lists/tuples) as one row per
    batch entry: (batch, Σ layers·units)."""
    return torch.cat([t.transpose(0, 1).reshape(t.shape[1], -1) for t in _state_leaves(state)], dim=1)


def _state_from_row(template: Any, row: torch.Tensor, at: int = 0) -> tuple[Any, int]:
    """One row of :func:`_state_rows` back into ``template``'s structure at batch 1."""
    if isinstance(template, torch.Tensor):
        layers, _, units = template.shape
        return row[at:at + layers * units].reshape(layers, 1, units).contiguous(), at + layers * units
    parts = []
    for part in template:
        value, at = _state_from_row(part, row, at)
        parts.append(value)
    return (tuple(parts) if isinstance(template, tuple) else parts), at


class _Chunks:
    """How a batch of chunks runs: outputs, and for a recurrent network each chunk's state after the
    warm-up and at its end (one row per chunk). The recurrent subclasses also ``rerun`` a chunk
    (kept (time,) from a state row → outputs (time,) and the final state's row); a network without
    state returns no states, so none of its chunks is ever run again."""

    def __init__(self, model: torch.nn.Module, knobs: Sequence[float] | None):
        self.model = model
        self.knobs = knobs

    def run(self, frames: torch.Tensor, warmup: int) -> tuple[np.ndarray, torch.Tensor | None, torch.Tensor | None]:
        """frames (batch, time) → outputs (batch, time), states after the warm-up, final states."""
        k = _knob_tensor(self.knobs, frames.shape[0], frames.device)
        with torch.inference_mode():
            y, _ = self.model(frames[:, :, None], k)
        return y[:, :, 0].cpu().numpy(), None, None


class _LSTMStackChunks(_Chunks):
    """An LSTM stack, time-major in TIME_TILE steps (:func:`_lstm_stack_time_major`)."""

    def run(self, frames, warmup):
        k = _knob_tensor(self.knobs, frames.shape[0], frames.device)
        with torch.inference_mode():
            y, warm, final = _lstm_stack_time_major(self.model, frames.t().contiguous()[:, :, None], k, split=warmup)
        return y.t().contiguous().cpu().numpy(), _stacked(warm), _stacked(final)

    def rerun(self, kept, row):
        k = _knob_tensor(self.knobs, 1, kept.device)
        with torch.inference_mode():
            y, _, final = _lstm_stack_time_major(self.model, kept.reshape(-1, 1, 1), k,
                                                 states=_unstack(self.model, row))
        return y[:, 0].cpu().numpy(), _stacked(final)[0]


class _RecurrentChunks(_Chunks):
    """A network whose forward takes and returns its recurrent state (an architecture with
    ``recurrent``, e.g. a NAM LSTM): the warm-up and the rest of a chunk run as two calls, the
    state handed over between them."""

    template: Any = None

    def run(self, frames, warmup):
        k = _knob_tensor(self.knobs, frames.shape[0], frames.device)
        x = frames[:, :, None]
        with torch.inference_mode():
            if warmup:
                y_warm, state = self.model(x[:, :warmup], k)
                y_rest, final = self.model(x[:, warmup:], k, state)
                y = torch.cat([y_warm, y_rest], dim=1)
                warm = _state_rows(state)
            else:
                y, final = self.model(x, k)
                # No warm-up: the start state is not known to be the predecessor's, so every chunk
                # after the first differs by more than any tolerance and runs again from it.
                warm = torch.full_like(_state_rows(final), math.inf)
        self.template = final
        return y[:, :, 0].cpu().numpy(), warm, _state_rows(final)

    def rerun(self, kept, row):
        k = _knob_tensor(self.knobs, 1, kept.device)
        state, _ = _state_from_row(self.template, row)
        with torch.inference_mode():
            y, final = self.model(kept.reshape(1, -1, 1), k, state)
        return y[0, :, 0].cpu().numpy(), _state_rows(final)[0]


def _chunks(model: torch.nn.Module, knobs: Sequence[float] | None) -> _Chunks:
    """How ``model``'s chunks run: an LSTM stack time-major (its knob count matching), another
    network of a ``recurrent`` architecture through its forward with the state checked, anything
    else (a WaveNet, whose warm-up covers its receptive field) as one batch."""
    n_knobs = 0 if knobs is None else len(knobs)
    if isinstance(model, LSTMStack) and model.config.n_knobs == n_knobs:
        return _LSTMStackChunks(model, knobs)
    architecture = find_architecture(getattr(getattr(model, "config", None), "arch", None))
    if architecture is not None and architecture.recurrent:
        return _RecurrentChunks(model, knobs)
    return _Chunks(model, knobs)


def render(
    model: torch.nn.Module,
    audio: np.ndarray,
    knobs: Sequence[float] | None = None,
    chunk_samples: int | None = None,
    warmup_samples: int = DEFAULT_WARMUP_SAMPLES,
    max_batch: int = DEFAULT_MAX_BATCH,
    threads: int | None = None,
    state_tolerance: float | None = STATE_TOLERANCE,
    device: torch.device | str = CPU,
) -> np.ndarray:
    """Offline rendering in overlapping chunks processed as one batch. audio: (time,) → (time,).

    Chunk 0 is the first ``warmup + chunk`` samples from the start state, exactly as whole-file
    rendering starts; chunk k ≥ 1 reads ``audio[k·C : k·C + W + C]`` and keeps its last C outputs.
    ``chunk_samples`` None picks C for about TARGET_BATCH chunks per thread. ``max_batch`` bounds
    memory on very long files by running the chunks in groups. A network with a finite
    ``receptive_field`` (a WaveNet) gets a warm-up of at least ``receptive_field − 1``, which makes
    chunking exact. ``threads`` (None: torch's current count) worker threads each run a slice of
    the batch on one intra-op thread.

    The warm-up of a recurrent network (an architecture with ``recurrent``: an LSTM stack, a NAM
    LSTM) is checked, not trusted: chunk k's state after its warm-up and chunk k − 1's state at its
    end are the states of the same time step. Where any layer's h or c differs by more than
    ``state_tolerance`` (None: no check), the warm-up did not forget its start (it happens: a
    trained S-64-8 keeps a state for over 512 samples in some quiet passages, and a NAM LSTM's
    chunks all start from its stored initial state), and chunk k is run again from chunk k − 1's
    final state, as whole-file rendering would run it.

    ``device`` (default the CPU) is where the model runs, moved there for the call and back
    afterwards; the chunking does not depend on it, and the output is a NumPy array either way.
    On a GPU the slices run one after another (``threads`` still sets the chunking).
    """
    device = torch.device(device)
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
            return render_whole(model, audio, knobs, device)
    n_chunks = math.ceil((total - warmup_samples) / chunk_samples)
    padded = np.zeros(n_chunks * chunk_samples + warmup_samples, dtype=np.float32)
    padded[:total] = audio
    frames = torch.from_numpy(padded).to(device).unfold(0, warmup_samples + chunk_samples, chunk_samples)
    groups = []
    for start in range(0, n_chunks, max_batch):
        stop = min(n_chunks, start + max_batch)
        # Each group split into `threads` near-equal slices, in chunk order.
        edges = np.linspace(start, stop, min(threads, stop - start) + 1).round().astype(int)
        groups.append([(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)])
    ys = np.empty((n_chunks, warmup_samples + chunk_samples), dtype=np.float32)
    warm_states: list[torch.Tensor | None] = [None] * n_chunks
    final_states: list[torch.Tensor | None] = [None] * n_chunks

    chunks = _chunks(model, knobs)

    def work(a: int, b: int) -> None:
        ys[a:b], warm, final = chunks.run(frames[a:b], warmup_samples)
        if warm is not None:
            warm_states[a:b], final_states[a:b] = list(warm), list(final)

    with torch_threads(1), on_device(model, device):
        if threads == 1 or device.type != "cpu":
            for slices in groups:
                for a, b in slices:
                    work(a, b)
        else:
            with ThreadPoolExecutor(threads) as pool:
                for slices in groups:
                    for future in [pool.submit(work, a, b) for a, b in slices]:
                        future.result()
        if state_tolerance is not None and warm_states[0] is not None:
            _rerun_unsettled(chunks, frames, warmup_samples, ys, warm_states, final_states, state_tolerance)
    out = np.empty(n_chunks * chunk_samples + warmup_samples, dtype=np.float32)
    out[: warmup_samples + chunk_samples] = ys[0]
    out[warmup_samples + chunk_samples :] = ys[1:, warmup_samples:].reshape(-1)
    return out[:total].copy()


def _rerun_unsettled(chunks: _LSTMStackChunks | _RecurrentChunks, frames, warmup, ys, warm_states, final_states, tolerance) -> None:
    """Run again, in order, every chunk whose post-warm-up state differs from its predecessor's final one."""
    gaps = (torch.stack(warm_states[1:]) - torch.stack(final_states[:-1])).abs().amax(dim=1)
    rerun = 0
    previous_changed = False
    for chunk in range(1, len(warm_states)):
        if previous_changed:
            gap = (warm_states[chunk] - final_states[chunk - 1]).abs().max().item()
        else:
            gap = gaps[chunk - 1].item()
        previous_changed = gap > tolerance
        if not previous_changed:
            continue
        ys[chunk, warmup:], final_states[chunk] = chunks.rerun(frames[chunk, warmup:], final_states[chunk - 1])
        rerun += 1
    if rerun:
        log.debug("chunked rendering: %d of %d chunks run again from their predecessor's state", rerun, len(ys))
