"""Server-generated headphone screening stimuli (anti-phase test of Woods et al., 2017).

Each round plays three 200 Hz tones: two at the same level, one of them with the right channel
phase-inverted, and one 6 dB quieter. Over headphones the quiet tone is clearly the quietest; over
loudspeakers the anti-phase tone partly cancels in the air and sounds quieter, so loudspeaker
listeners tend to pick it. The answer key stays on the server.
"""

from __future__ import annotations

import io
import secrets

import numpy as np
import soundfile as sf

KINDS = ("normal", "antiphase", "quiet")
TONE_S = 1.0
GAP_S = 0.5
RAMP_S = 0.1
LEVEL = 0.25
QUIET_DB = -6.0


def plan_rounds(n_rounds: int, rng: secrets.SystemRandom | None = None) -> list[list[str]]:
    """``n_rounds`` random orders of the three tone kinds, e.g. ``[["quiet", "normal", "antiphase"], ...]``."""
    rng = rng or secrets.SystemRandom()
    rounds = []
    for _ in range(n_rounds):
        order = list(KINDS)
        rng.shuffle(order)
        rounds.append(order)
    return rounds


def answer_key(rounds: list[list[str]]) -> list[int]:
    """Index (0..2) of the quiet tone in each round."""
    return [order.index("quiet") for order in rounds]


def round_audio(order: list[str], sample_rate: int = 44100, tone_hz: float = 200.0) -> np.ndarray:
    """Stereo samples of one round: tones in ``order`` separated by gaps, shape ``(time, 2)``."""
    n_tone = int(round(TONE_S * sample_rate))
    n_gap = int(round(GAP_S * sample_rate))
    n_ramp = int(round(RAMP_S * sample_rate))
    t = np.arange(n_tone) / sample_rate
    tone = np.sin(2 * np.pi * tone_hz * t)
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(n_ramp) / n_ramp)
    tone[:n_ramp] *= ramp
    tone[-n_ramp:] *= ramp[::-1]
    parts = []
    for i, kind in enumerate(order):
        gain = LEVEL * (10 ** (QUIET_DB / 20) if kind == "quiet" else 1.0)
        left = gain * tone
        right = -left if kind == "antiphase" else left
        parts.append(np.stack([left, right], axis=1))
        if i < len(order) - 1:
            parts.append(np.zeros((n_gap, 2)))
    return np.concatenate(parts).astype(np.float32)


def round_wav(order: list[str], sample_rate: int = 44100, tone_hz: float = 200.0) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, round_audio(order, sample_rate, tone_hz), sample_rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()
