"""``metadata.loudness`` and ``metadata.gain`` of a ``.nam`` file, measured as Neural Amp Modeler measures them.

NAM's plug-in reads ``loudness`` to normalise a model's output level; ``gain`` says how much gain or
compression the model seems to have. Both come from the model's output on NAM's fixed test signal,
``loudness_input.wav`` (1 s, 48 kHz, mono; shipped in ``resources/``, see its README), fed at the file's
sample rate whatever that is, as NAM does (``nam.models.base._Base``, neural-amp-modeler 0.12 and 0.13):

- ``loudness``: ``20·log10(RMS(y))`` in dB of the output ``y`` for the signal as it is;
- ``gain``: the signal scaled by ``g = 0, 0.1, …, 1.0`` (11 levels), ``r_g = RMS(y_g)`` (linear);
  with ``max = 11·r_1`` (a model that compresses every level to the loudest output) and ``min = max/2``
  (a model whose output grows linearly with its input), ``gain = clip((Σ_g r_g − min)/(max − min), 0, 1)``.

The output is rendered whole, from the state the file starts the plug-in in (a WaveNet: endless silence
before the first sample, NAM's ``pad_start``; an LSTM: the file's initial state). The renders are
float32 as NAM's; the RMS and the formulas above are evaluated in float64.
"""

from __future__ import annotations

import functools
import logging
import math
import wave
from pathlib import Path

import numpy as np
import torch
from torch import nn

from models.errors import ConfigError

log = logging.getLogger(__name__)

LOUDNESS_INPUT = Path(__file__).with_name("resources") / "nam_loudness_input.wav"
GAIN_LEVELS = np.linspace(0.0, 1.0, 11)
"""The input scalings of NAM's gain measure (``numpy.linspace(0, 1, 11)``); the last is exactly 1."""


@functools.lru_cache(maxsize=1)
def loudness_input() -> np.ndarray:
    """NAM's loudness test signal: (48000,) float32, PCM codes divided by 2**23 as NAM's wav reader does."""
    try:
        with wave.open(str(LOUDNESS_INPUT), "rb") as handle:
            channels, width, frames = handle.getnchannels(), handle.getsampwidth(), handle.getnframes()
            data = handle.readframes(frames)
    except (OSError, wave.Error) as exc:
        raise ConfigError(f"{LOUDNESS_INPUT}: NAM's loudness test signal cannot be read ({exc}); "
                          "reinstall Earshot") from None
    if channels != 1 or width != 3 or len(data) != 3 * frames:
        raise ConfigError(f"{LOUDNESS_INPUT}: expected mono 24-bit PCM, found {channels} channel(s) of "
                          f"{8 * width} bits")
    raw = np.frombuffer(data, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
    codes = raw[:, 0] | (raw[:, 1] << 8) | (raw[:, 2] << 16)
    codes = np.where(codes >= 1 << 23, codes - (1 << 24), codes)
    return (codes / float(1 << 23)).astype(np.float32)


@torch.inference_mode()
def output_rms(model: nn.Module, levels: np.ndarray = GAIN_LEVELS) -> np.ndarray:
    """RMS of ``model``'s output on the test signal scaled by each of ``levels``: (len(levels),) float64.

    ``model`` is the network as the file holds it (forward ``(batch, time, 1) → (y, state)``, starting
    from its own start state), in eval mode."""
    x = torch.from_numpy(loudness_input())
    scaled = torch.from_numpy(np.asarray(levels, dtype=np.float32))[:, None] * x[None, :]
    device = next(model.parameters()).device
    y, _ = model(scaled[:, :, None].to(device))
    y = y[:, :, 0].to("cpu", torch.float64).numpy()
    return np.sqrt(np.mean(np.square(y), axis=1))


def loudness_db(rms: float) -> float:
    """NAM's ``loudness``: the output RMS in dB (``-inf`` for a silent output)."""
    return 20.0 * math.log10(rms) if rms > 0.0 else -math.inf


def gain_from_rms(rms: np.ndarray) -> float:
    """NAM's ``gain`` from the output RMS at :data:`GAIN_LEVELS` (NaN when the loudest output is silent)."""
    rms = np.asarray(rms, dtype=np.float64)
    max_gain = rms[-1] * len(rms)
    min_gain = 0.5 * max_gain
    if not max_gain > 0.0:
        return math.nan
    return float(np.clip((rms.sum() - min_gain) / (max_gain - min_gain), 0.0, 1.0))


def level_metadata(model: nn.Module) -> dict[str, float]:
    """``{"loudness": dB, "gain": 0…1}`` of ``model`` as NAM computes them; a value that is not finite
    (a silent model) is left out, since JSON cannot hold it and the plug-in then leaves the level alone."""
    rms = output_rms(model)
    values = {"loudness": loudness_db(float(rms[-1])), "gain": gain_from_rms(rms)}
    kept = {k: float(v) for k, v in values.items() if math.isfinite(v)}
    for key in sorted(set(values) - set(kept)):
        log.warning("the model's output on NAM's loudness signal is silent: metadata.%s is left out", key)
    return kept
