"""Synthesised, seeded source material for the built-in device datasets and listening-test items.

Every generator has the signature ``(duration_s, sample_rate, rng, ...)`` and returns a mono
``(time,)`` float32 array of ``round(duration_s * sample_rate)`` samples whose peak is ``peak``
(at most 1). ``rng`` is an integer seed or a ``numpy.random.Generator``; the same seed gives the
same samples on every machine.

Everything is vectorised: plucked strings are Karplus–Strong loops evaluated in the frequency
domain (one FFT per note, see :func:`_pluck`), pads use band-limited wavetables, and filters go
through ``scipy.signal.sosfilt``, so three minutes at 48 kHz take a second or two.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable
from typing import Literal

import numpy as np
import scipy.fft
import scipy.signal

from models.errors import ConfigError

logger = logging.getLogger(__name__)

RngLike = np.random.Generator | int

# Scale degrees in semitones above the key's root.
_MINOR_PENTATONIC = np.array([0, 3, 5, 7, 10])
_MAJOR_SCALE = np.array([0, 2, 4, 5, 7, 9, 11])
# Chord roots (semitones above the key) of a few common progressions and whether each is minor.
_PROGRESSIONS = (
    ((0, False), (7, False), (9, True), (5, False)),  # I V vi IV
    ((9, True), (5, False), (0, False), (7, False)),  # vi IV I V
    ((0, False), (5, False), (7, False), (5, False)),  # I IV V IV
    ((0, True), (10, False), (8, False), (7, False)),  # i bVII bVI V (minor, root-relative)
    ((2, True), (7, False), (0, False), (0, False)),  # ii V I I
)


def _generator(rng: RngLike) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise ConfigError(f"rng: expected an integer seed or numpy Generator, found {rng!r}")


def _length(duration_s: float, sample_rate: int) -> int:
    if not np.isfinite(duration_s) or duration_s < 0:
        raise ConfigError(f"duration_s: expected a finite number >= 0, found {duration_s!r}")
    if isinstance(sample_rate, bool) or int(sample_rate) != sample_rate or sample_rate <= 0:
        raise ConfigError(f"sample_rate: expected a positive integer, found {sample_rate!r}")
    return int(round(duration_s * sample_rate))


def _normalise(x: np.ndarray, peak: float) -> np.ndarray:
    """Scale to the requested peak; silence stays silence. Returns float32."""
    if not 0.0 < peak <= 1.0:
        raise ConfigError(f"peak: expected a value in (0, 1], found {peak!r}")
    top = float(np.max(np.abs(x))) if x.size else 0.0
    if top > 0.0:
        x = x * (peak / top)
    # float32 rounding can land a hair above the peak; the contract is peak <= requested.
    return np.clip(x, -peak, peak).astype(np.float32)


def _clamp_hz(frequency_hz: float, sample_rate: int) -> float:
    return float(min(frequency_hz, 0.45 * sample_rate))


def _lowpass(x: np.ndarray, cutoff_hz: float, sample_rate: int, order: int = 2) -> np.ndarray:
    sos = scipy.signal.butter(
        order, _clamp_hz(cutoff_hz, sample_rate), "lowpass", fs=sample_rate, output="sos"
    )
    return scipy.signal.sosfilt(sos, x)


def _highpass(x: np.ndarray, cutoff_hz: float, sample_rate: int, order: int = 2) -> np.ndarray:
    sos = scipy.signal.butter(
        order, _clamp_hz(cutoff_hz, sample_rate), "highpass", fs=sample_rate, output="sos"
    )
    return scipy.signal.sosfilt(sos, x)


def _fade(x: np.ndarray, fade_s: float, sample_rate: int) -> np.ndarray:
    """Raised-cosine fade in and out (in place on a copy) so sections start and end without clicks."""
    n = min(int(fade_s * sample_rate), x.size // 2)
    if n <= 0:
        return x
    ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / n)
    x = x.copy()
    x[:n] *= ramp
    x[-n:] *= ramp[::-1]
    return x


def midi_to_hz(note: float | np.ndarray) -> float | np.ndarray:
    """Equal-tempered frequency of a MIDI note number (69 = A4 = 440 Hz)."""
    return 440.0 * 2.0 ** ((np.asarray(note, dtype=float) - 69.0) / 12.0)


# --------------------------------------------------------------------------- test signals


def sine_sweep(
    duration_s: float,
    sample_rate: int,
    rng: RngLike = 0,
    *,
    start_hz: float = 20.0,
    end_hz: float = 20000.0,
    peak: float = 0.5,
) -> np.ndarray:
    """Linear sine sweep from ``start_hz`` to ``end_hz`` (clamped below Nyquist), random start phase.

    Returns ``(time,)`` float32; instantaneous frequency ``start_hz + (end - start) * t / duration``.
    """
    n = _length(duration_s, sample_rate)
    gen = _generator(rng)
    end_hz = _clamp_hz(end_hz, sample_rate)
    t = np.arange(n) / sample_rate
    phase_deg = float(gen.uniform(0.0, 360.0))
    x = scipy.signal.chirp(
        t, start_hz, max(duration_s, 1.0 / sample_rate), end_hz, method="linear", phi=phase_deg
    )
    return _normalise(_fade(x, 0.005, sample_rate), peak)


def log_sweep(
    duration_s: float,
    sample_rate: int,
    rng: RngLike = 0,
    *,
    start_hz: float = 20.0,
    end_hz: float = 20000.0,
    peak: float = 0.5,
) -> np.ndarray:
    """Exponential (logarithmic) sine sweep; the frequency doubles at a constant rate.

    Returns ``(time,)`` float32; instantaneous frequency ``start_hz * (end/start) ** (t / duration)``.
    """
    n = _length(duration_s, sample_rate)
    gen = _generator(rng)
    end_hz = _clamp_hz(end_hz, sample_rate)
    if not 0.0 < start_hz < end_hz:
        raise ConfigError(
            f"log_sweep: expected 0 < start_hz < end_hz, found {start_hz} and {end_hz}"
        )
    t = np.arange(n) / sample_rate
    phase_deg = float(gen.uniform(0.0, 360.0))
    x = scipy.signal.chirp(
        t, start_hz, max(duration_s, 1.0 / sample_rate), end_hz, method="logarithmic", phi=phase_deg
    )
    return _normalise(_fade(x, 0.005, sample_rate), peak)


def white_noise(
    duration_s: float, sample_rate: int, rng: RngLike, *, peak: float = 0.5
) -> np.ndarray:
    """Gaussian white noise scaled to ``peak``. Returns ``(time,)`` float32."""
    n = _length(duration_s, sample_rate)
    x = _generator(rng).standard_normal(n)
    return _normalise(x, peak)


def pink_noise(
    duration_s: float, sample_rate: int, rng: RngLike, *, peak: float = 0.5
) -> np.ndarray:
    """Pink (1/f power, −3 dB per octave) noise, shaped exactly in the frequency domain.

    White Gaussian noise is transformed, every bin above DC is scaled by ``1 / sqrt(f)`` and the
    DC bin is zeroed. Returns ``(time,)`` float32.
    """
    n = _length(duration_s, sample_rate)
    if n < 2:
        return np.zeros(n, dtype=np.float32)
    gen = _generator(rng)
    spectrum = scipy.fft.rfft(gen.standard_normal(n))
    frequency = np.fft.rfftfreq(n, 1.0 / sample_rate)
    scale = np.zeros_like(frequency)
    scale[1:] = 1.0 / np.sqrt(frequency[1:])
    x = scipy.fft.irfft(spectrum * scale, n)
    return _normalise(x, peak)


# --------------------------------------------------------------------------- plucked strings


def string_response(
    excitation: np.ndarray, f0_hz: float, n: int, sample_rate: int, t60_s: float
) -> np.ndarray:
    """A Karplus–Strong string driven by ``excitation``, ``n`` samples, computed with FFTs.

    The string loop ``y[n] = e[n] + g (y[n-D] + y[n-D-1]) / 2`` has the transfer function
    ``1 / (1 - g (1 + z^-1)/2 z^-D)`` with ``D = sample_rate / f0_hz - 0.5`` (the two-point average
    adds half a sample, so the loop period is exactly ``sample_rate / f0_hz``) and ``g`` set so the
    fundamental decays by 60 dB in ``t60_s``. Evaluating it on the DFT grid would wrap the decaying
    tail back onto the attack (circular convolution), so it is evaluated on the circle
    ``|z| = r > 1`` instead: the excitation is weighted by ``r^-n`` and the result by ``r^n``, which
    attenuates every wrapped copy by ``r^-size`` (80 dB). A fractional ``D`` tunes the string
    exactly (band-limited delay). For an integer ``D`` this equals ``lfilter`` with the comb
    denominator, at a fraction of the cost for low notes.

    ``excitation``: ``(burst,)``; returns ``(n,)`` float64.
    """
    if n <= 0:
        return np.zeros(0)
    delay = sample_rate / f0_hz - 0.5
    loop_gain = 10.0 ** (-3.0 / (f0_hz * t60_s))
    size = scipy.fft.next_fast_len(max(n, excitation.size) + 1, real=True)
    radius = 10.0 ** (4.0 / size)
    omega = 2.0 * np.pi * np.arange(size // 2 + 1) / size
    z_delay = np.exp(-1j * omega * delay)
    loop = (loop_gain * 0.5 * radius ** (-delay)) * (
        z_delay + z_delay * np.exp(-1j * omega) / radius
    )
    weighted = np.zeros(size)
    log_radius = np.log(radius)
    weighted[: excitation.size] = excitation * np.exp(-log_radius * np.arange(excitation.size))
    y = scipy.fft.irfft(scipy.fft.rfft(weighted) / (1.0 - loop), size)[:n]
    return y * np.exp(log_radius * np.arange(n))


def _pluck(
    f0_hz: float,
    n: int,
    sample_rate: int,
    rng: np.random.Generator,
    brightness: float,
    t60_s: float,
) -> np.ndarray:
    """One plucked string: a one-period noise burst, low-passed, through :func:`string_response`.

    ``brightness`` in [0, 1] sets how many harmonics the pluck excites: the burst's low-pass
    cutoff runs from 2 (a dull thumb pluck) to 40 times the fundamental (a pick near the bridge).
    """
    burst = max(2, int(round(sample_rate / f0_hz)))
    cutoff_hz = f0_hz * (2.0 + 38.0 * float(np.clip(brightness, 0.0, 1.0)))
    b, a = scipy.signal.butter(2, _clamp_hz(cutoff_hz, sample_rate), fs=sample_rate)
    # Filter a burst padded with its own filter tail, so the excitation is smooth, not truncated.
    excitation = scipy.signal.lfilter(
        b, a, np.concatenate([rng.uniform(-1.0, 1.0, burst), np.zeros(burst)])
    )
    excitation -= excitation.mean()
    return string_response(excitation, f0_hz, n, sample_rate, t60_s)


def _place(out: np.ndarray, note: np.ndarray, start: int, release: int) -> None:
    """Add ``note`` into ``out`` at ``start`` with a raised-cosine release over its last samples."""
    if start >= out.size or note.size == 0:
        return
    note = note[: out.size - start].copy()
    release = min(release, note.size)
    if release > 0:
        note[-release:] *= 0.5 + 0.5 * np.cos(np.pi * (np.arange(release) + 0.5) / release)
    out[start : start + note.size] += note


def _key(gen: np.random.Generator) -> int:
    """A random key as a MIDI pitch class offset (0 = C)."""
    return int(gen.integers(0, 12))


def plucked_notes(
    duration_s: float,
    sample_rate: int,
    rng: RngLike,
    *,
    tempo_bpm: float | None = None,
    low_midi: int = 40,
    high_midi: int = 76,
    peak: float = 0.8,
    key: int | None = None,
) -> np.ndarray:
    """A monophonic guitar-like line of plucked notes (minor pentatonic walk, eighth-note grid).

    Notes ring until the next one starts (then a short release), with random velocity and pluck
    brightness. Returns ``(time,)`` float32.
    """
    n = _length(duration_s, sample_rate)
    gen = _generator(rng)
    out = np.zeros(n)
    tempo = float(tempo_bpm if tempo_bpm is not None else gen.uniform(80.0, 150.0))
    eighth_s = 30.0 / tempo
    root = (_key(gen) if key is None else key) + 12 * ((low_midi + 6) // 12)
    pitches = np.array([root + d + 12 * o for o in range(-1, 4) for d in _MINOR_PENTATONIC])
    pitches = pitches[(pitches >= low_midi) & (pitches <= high_midi)]
    index = int(gen.integers(0, pitches.size))
    release = int(0.02 * sample_rate)
    t = 0.0
    while t < duration_s:
        length_s = eighth_s * float(gen.choice([1, 1, 2, 2, 3, 4]))
        if gen.random() < 0.1:  # a rest
            t += length_s
            continue
        index = int(np.clip(index + gen.choice([-2, -1, -1, 0, 1, 1, 2]), 0, pitches.size - 1))
        ring_s = length_s * (2.5 if gen.random() < 0.2 else 1.0)
        start = int(round(t * sample_rate))
        count = min(int(round(ring_s * sample_rate)) + release, n - start)
        if count > 0:
            f0 = float(midi_to_hz(pitches[index]))
            note = _pluck(
                f0, count, sample_rate, gen, gen.uniform(0.15, 0.6), gen.uniform(1.2, 3.0)
            )
            note *= gen.uniform(0.35, 1.0) / (np.max(np.abs(note)) + 1e-12)
            _place(out, note, start, release)
        t += length_s
    return _normalise(out, peak)


def _guitar_voicing(root_midi: int, minor: bool, strings: int) -> list[int]:
    """Notes of an E-shape barre chord from its lowest string up (at most 6)."""
    third = 3 if minor else 4
    shape = [0, 7, 12, 12 + third, 19, 24]
    return [root_midi + s for s in shape[:strings]]


def chords(
    duration_s: float,
    sample_rate: int,
    rng: RngLike,
    *,
    tempo_bpm: float | None = None,
    peak: float = 0.8,
    key: int | None = None,
) -> np.ndarray:
    """Strummed guitar chords following a common progression (down and up strums, 4–6 strings).

    Each string is a Karplus–Strong pluck; strums spread the strings over 8–30 ms and a new strum
    damps the previous one. Returns ``(time,)`` float32.
    """
    n = _length(duration_s, sample_rate)
    gen = _generator(rng)
    out = np.zeros(n)
    tempo = float(tempo_bpm if tempo_bpm is not None else gen.uniform(70.0, 130.0))
    beat_s = 60.0 / tempo
    key_pc = _key(gen) if key is None else key
    progression = _PROGRESSIONS[int(gen.integers(0, len(_PROGRESSIONS)))]
    release = int(0.03 * sample_rate)
    # Strum rhythms within one bar of 4 beats: onsets in beats and whether the strum goes up.
    patterns = (
        ((0.0, False), (1.0, False), (2.0, False), (3.0, False)),
        ((0.0, False), (1.0, False), (1.5, True), (2.5, True), (3.0, False), (3.5, True)),
        ((0.0, False), (2.0, False)),
        ((0.0, False), (1.5, False), (3.0, False)),
    )
    t = 0.0
    chord_index = 0
    while t < duration_s:
        root_pc, minor = progression[chord_index % len(progression)]
        # Lowest string between E2 (40) and D#3 (51) like a barre chord's root.
        root = 40 + (key_pc + root_pc - 40) % 12
        pattern = patterns[int(gen.integers(0, len(patterns)))]
        onsets = [(t + b * beat_s, up) for b, up in pattern] + [(t + 4 * beat_s, False)]
        for (onset, up), (next_onset, _) in zip(onsets[:-1], onsets[1:], strict=True):
            if onset >= duration_s:
                break
            strings = int(gen.integers(4, 7))
            notes = _guitar_voicing(root, minor, strings)
            if up:
                notes = notes[::-1][: max(3, strings - 2)]
            spread_s = gen.uniform(0.008, 0.03) / len(notes)
            velocity = gen.uniform(0.4, 1.0) * (0.7 if up else 1.0)
            brightness = gen.uniform(0.15, 0.5)
            for k, pitch in enumerate(notes):
                start = int(round((onset + k * spread_s) * sample_rate))
                if start >= n:
                    break
                count = min(int(round((next_onset - onset) * sample_rate)) + release, n - start)
                if count <= 0:
                    continue
                note = _pluck(
                    float(midi_to_hz(pitch)),
                    count,
                    sample_rate,
                    gen,
                    brightness,
                    gen.uniform(2.0, 4.0),
                )
                note *= velocity * gen.uniform(0.8, 1.0) / (np.max(np.abs(note)) + 1e-12)
                _place(out, note, start, release)
        t += 4 * beat_s
        chord_index += 1
    return _normalise(out, peak)


def bass_line(
    duration_s: float,
    sample_rate: int,
    rng: RngLike,
    *,
    tempo_bpm: float | None = None,
    peak: float = 0.8,
    key: int | None = None,
) -> np.ndarray:
    """A finger-plucked bass line: chord roots on eighth notes with fifths, octaves and rests.

    Dark Karplus–Strong plucks between E1 (41 Hz) and about C3. Returns ``(time,)`` float32.
    """
    n = _length(duration_s, sample_rate)
    gen = _generator(rng)
    out = np.zeros(n)
    tempo = float(tempo_bpm if tempo_bpm is not None else gen.uniform(80.0, 140.0))
    eighth_s = 30.0 / tempo
    key_pc = _key(gen) if key is None else key
    progression = _PROGRESSIONS[int(gen.integers(0, len(_PROGRESSIONS)))]
    release = int(0.015 * sample_rate)
    step = 0
    t = 0.0
    while t < duration_s:
        root_pc, _ = progression[(step // 8) % len(progression)]
        root = 28 + (key_pc + root_pc - 28) % 12  # E1 .. D#2
        length_s = eighth_s * float(gen.choice([1, 1, 1, 2]))
        if gen.random() >= 0.12:
            pitch = root + int(gen.choice([0, 0, 0, 7, 12, 12, 10]))
            start = int(round(t * sample_rate))
            count = min(int(round(length_s * 0.95 * sample_rate)) + release, n - start)
            if count > 0:
                note = _pluck(
                    float(midi_to_hz(pitch)),
                    count,
                    sample_rate,
                    gen,
                    gen.uniform(0.0, 0.15),
                    gen.uniform(1.0, 2.0),
                )
                note *= gen.uniform(0.6, 1.0) / (np.max(np.abs(note)) + 1e-12)
                _place(out, note, start, release)
        t += length_s
        step += int(round(length_s / eighth_s))
    return _normalise(out, peak)


# --------------------------------------------------------------------------- drums


def _kick(sample_rate: int, gen: np.random.Generator) -> np.ndarray:
    t = np.arange(int(0.45 * sample_rate)) / sample_rate
    frequency = 45.0 + gen.uniform(80.0, 120.0) * np.exp(-t / 0.03)
    body = np.sin(2.0 * np.pi * np.cumsum(frequency) / sample_rate) * np.exp(
        -t / gen.uniform(0.18, 0.3)
    )
    click = _lowpass(gen.standard_normal(t.size), 4000.0, sample_rate) * np.exp(-t / 0.002)
    return body + 0.3 * click / (np.max(np.abs(click)) + 1e-12)


def _snare(sample_rate: int, gen: np.random.Generator) -> np.ndarray:
    t = np.arange(int(0.35 * sample_rate)) / sample_rate
    tone = (np.sin(2 * np.pi * 185.0 * t) + 0.5 * np.sin(2 * np.pi * 330.0 * t)) * np.exp(-t / 0.05)
    sos = scipy.signal.butter(
        2,
        [_clamp_hz(1500.0, sample_rate) * 0.5, _clamp_hz(9000.0, sample_rate)],
        "bandpass",
        fs=sample_rate,
        output="sos",
    )
    rattle = scipy.signal.sosfilt(sos, gen.standard_normal(t.size)) * np.exp(
        -t / gen.uniform(0.08, 0.15)
    )
    rattle /= np.max(np.abs(rattle)) + 1e-12
    return 0.6 * tone + rattle


def _hat(sample_rate: int, gen: np.random.Generator, open_hat: bool) -> np.ndarray:
    length_s = 0.4 if open_hat else 0.08
    t = np.arange(int(length_s * sample_rate)) / sample_rate
    noise = _highpass(gen.standard_normal(t.size), 7000.0, sample_rate, order=4)
    decay_s = gen.uniform(0.12, 0.2) if open_hat else gen.uniform(0.015, 0.03)
    noise *= np.exp(-t / decay_s)
    return noise / (np.max(np.abs(noise)) + 1e-12)


def drums(
    duration_s: float,
    sample_rate: int,
    rng: RngLike,
    *,
    tempo_bpm: float | None = None,
    peak: float = 0.8,
) -> np.ndarray:
    """A drum-kit groove on a 16-step grid: kick, snare (with ghost notes), closed and open hats.

    The sounds are synthesised (pitch-swept sine kick, tone + band-passed noise snare, high-passed
    noise hats); velocities and fills vary per bar. Returns ``(time,)`` float32.
    """
    n = _length(duration_s, sample_rate)
    gen = _generator(rng)
    out = np.zeros(n)
    tempo = float(tempo_bpm if tempo_bpm is not None else gen.uniform(80.0, 160.0))
    step_s = 15.0 / tempo  # a sixteenth note
    sounds = {
        "kick": [_kick(sample_rate, gen) for _ in range(2)],
        "snare": [_snare(sample_rate, gen) for _ in range(2)],
        "hat": [_hat(sample_rate, gen, False) for _ in range(2)],
        "open": [_hat(sample_rate, gen, True)],
    }
    gains = {"kick": 1.0, "snare": 0.8, "hat": 0.35, "open": 0.35}
    hats_every = int(gen.choice([1, 2, 2]))
    steps = int(np.ceil(duration_s / step_s))
    for step in range(steps):
        position = step % 16
        hits = []
        if position in (0, 8) or (position in (3, 6, 10, 11, 14) and gen.random() < 0.22):
            hits.append(("kick", gen.uniform(0.75, 1.0)))
        if position in (4, 12):
            hits.append(("snare", gen.uniform(0.8, 1.0)))
        elif gen.random() < 0.06:
            hits.append(("snare", gen.uniform(0.15, 0.35)))
        if position == 14 and gen.random() < 0.3:
            hits.append(("open", gen.uniform(0.6, 1.0)))
        elif position % hats_every == 0:
            hits.append(("hat", gen.uniform(0.5, 1.0) * (1.0 if position % 4 == 0 else 0.7)))
        start = int(round(step * step_s * sample_rate))
        for name, velocity in hits:
            variants = sounds[name]
            sound = variants[int(gen.integers(0, len(variants)))]
            end = min(n, start + sound.size)
            if end > start:
                out[start:end] += gains[name] * velocity * sound[: end - start]
    return _normalise(out, peak)


# --------------------------------------------------------------------------- pads


@functools.lru_cache(maxsize=128)
def _saw_table(harmonics: int, size: int = 4096) -> np.ndarray:
    """One period of a band-limited sawtooth with ``harmonics`` partials of amplitude 1/k."""
    k = np.arange(1, harmonics + 1)
    phase = 2.0 * np.pi * np.arange(size)[:, None] * k[None, :] / size
    table = (np.sin(phase) / k).sum(axis=1)
    table.flags.writeable = False
    return table


def _oscillator(frequency_hz: float, n: int, sample_rate: int, phase0: float) -> np.ndarray:
    """Wavetable sawtooth with harmonics below 0.45 × sample rate, linearly interpolated."""
    table = _saw_table(max(1, min(64, int(0.45 * sample_rate / frequency_hz))))
    size = table.size
    position = ((phase0 + frequency_hz * np.arange(n) / sample_rate) % 1.0) * size
    index = position.astype(np.int64)
    fraction = position - index
    following = np.where(index + 1 >= size, 0, index + 1)
    return table[index] * (1.0 - fraction) + table[following] * fraction


def pads(
    duration_s: float,
    sample_rate: int,
    rng: RngLike,
    *,
    peak: float = 0.6,
    key: int | None = None,
) -> np.ndarray:
    """Slow synthesiser pad chords: detuned band-limited sawtooths, soft attack and release, low-passed.

    Returns ``(time,)`` float32.
    """
    n = _length(duration_s, sample_rate)
    gen = _generator(rng)
    out = np.zeros(n)
    key_pc = _key(gen) if key is None else key
    progression = _PROGRESSIONS[int(gen.integers(0, len(_PROGRESSIONS)))]
    t = 0.0
    index = 0
    while t < duration_s:
        chord_s = float(gen.uniform(2.0, 4.0))
        release_s = float(gen.uniform(0.3, 0.8))
        attack_s = float(gen.uniform(0.15, 0.8))
        root_pc, minor = progression[index % len(progression)]
        root = 48 + (key_pc + root_pc) % 12
        notes = [root, root + (3 if minor else 4), root + 7]
        if gen.random() < 0.5:
            notes.append(root + 12)
        start = int(round(t * sample_rate))
        count = min(int(round((chord_s + release_s) * sample_rate)), n - start)
        if count > 0:
            tone = np.zeros(count)
            for pitch in notes:
                f0 = float(midi_to_hz(pitch))
                for cents in (-gen.uniform(3, 9), gen.uniform(3, 9)):
                    tone += _oscillator(f0 * 2 ** (cents / 1200), count, sample_rate, gen.random())
            time = np.arange(count) / sample_rate
            envelope = np.minimum(1.0, time / attack_s)
            fall = time > chord_s
            envelope[fall] *= np.maximum(0.0, 1.0 - (time[fall] - chord_s) / release_s)
            out[start : start + count] += tone * envelope * gen.uniform(0.6, 1.0)
        t += chord_s
        index += 1
    out = _lowpass(out, float(gen.uniform(1500.0, 3500.0)), sample_rate)
    return _normalise(out, peak)


# --------------------------------------------------------------------------- programme and excerpts

# Kind -> (generator, relative section length). Music gets longer sections than test signals.
_SECTION_KINDS: dict[str, tuple[Callable[..., np.ndarray], float]] = {
    "sine_sweep": (sine_sweep, 1.0),
    "log_sweep": (log_sweep, 1.0),
    "white_noise": (white_noise, 0.6),
    "pink_noise": (pink_noise, 0.8),
    "plucked_notes": (plucked_notes, 2.0),
    "chords": (chords, 2.0),
    "bass_line": (bass_line, 2.0),
    "drums": (drums, 2.0),
    "pads": (pads, 1.5),
}


@dataclasses.dataclass(frozen=True)
class Section:
    """One stretch of the programme: ``kind`` in samples ``[start, stop)``, level ramp in dBFS peak."""

    kind: str
    start: int
    stop: int
    start_db: float
    end_db: float
    seed: int


def program_sections(duration_s: float, sample_rate: int, seed: int) -> list[Section]:
    """The plan of :func:`program`: which kind of material plays where and how loud.

    The programme is a sequence of rounds; each round holds one section of every kind in a random
    order, with section lengths scaled so there are about ten rounds (sections between 0.2 s and
    about 4 s): any contiguous fifth of the programme contains every kind and the default 15 %
    splits contain most. Each section's peak level ramps linearly in dB between two random levels
    in −30 … −3 dBFS; after 15 % of sections a short silence (50–300 ms) follows.
    """
    n = _length(duration_s, sample_rate)
    gen = _generator(seed)
    weights = sum(w for _, w in _SECTION_KINDS.values())
    base_s = float(np.clip(duration_s / (10.0 * weights), 0.25, 2.0))
    kinds = list(_SECTION_KINDS)
    sections = []
    position = 0
    while position < n:
        for kind_index in gen.permutation(len(kinds)):
            if position >= n:
                break
            kind = kinds[kind_index]
            section_s = base_s * _SECTION_KINDS[kind][1] * float(gen.uniform(0.75, 1.25))
            count = min(max(1, int(round(section_s * sample_rate))), n - position)
            start_db, end_db = (float(v) for v in gen.uniform(-30.0, -3.0, size=2))
            sections.append(
                Section(
                    kind,
                    position,
                    position + count,
                    start_db,
                    end_db,
                    int(gen.integers(0, 2**63 - 1)),
                )
            )
            position += count
            if gen.random() < 0.15:
                position += int(gen.uniform(0.05, 0.3) * sample_rate)
    return sections


def program(duration_s: float, sample_rate: int, seed: int) -> np.ndarray:
    """The mixed training programme: sections of every kind with level changes, shuffled in rounds.

    See :func:`program_sections` for the plan. Each section is rendered at full scale by its
    generator with its own seed, faded in and out over 3 ms and shaped by its level ramp.
    Returns ``(time,)`` float32 with peak <= 1.
    """
    n = _length(duration_s, sample_rate)
    out = np.zeros(n)
    for section in program_sections(duration_s, sample_rate, seed):
        count = section.stop - section.start
        make = _SECTION_KINDS[section.kind][0]
        audio = make(count / sample_rate, sample_rate, section.seed, peak=1.0).astype(np.float64)
        audio = _fade(audio[:count], 0.003, sample_rate)
        audio *= 10.0 ** (np.linspace(section.start_db, section.end_db, audio.size) / 20.0)
        out[section.start : section.start + audio.size] = audio
    logger.debug("programme of %.1f s at %d Hz (seed %d)", duration_s, sample_rate, seed)
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def excerpt(
    kind: Literal["guitar", "bass", "drums"],
    duration_s: float,
    sample_rate: int,
    seed: int,
) -> np.ndarray:
    """A musical excerpt for listening-test items, peak −6 dBFS. Returns ``(time,)`` float32.

    ``guitar``: strummed chords with a single-note line in the same key on top; ``bass``: a bass
    line; ``drums``: a drum groove.
    """
    gen = _generator(seed)
    if kind == "guitar":
        key = _key(gen)
        tempo = float(gen.uniform(80.0, 120.0))
        strums = chords(duration_s, sample_rate, gen, tempo_bpm=tempo, key=key).astype(np.float64)
        lead = plucked_notes(
            duration_s, sample_rate, gen, tempo_bpm=tempo, key=key, low_midi=52, high_midi=79
        )
        x = 0.7 * strums + 0.5 * lead
    elif kind == "bass":
        x = bass_line(duration_s, sample_rate, gen)
    elif kind == "drums":
        x = drums(duration_s, sample_rate, gen)
    else:
        raise ConfigError(
            f"excerpt kind: expected one of ['guitar', 'bass', 'drums'], found {kind!r}"
        )
    return _normalise(
        _fade(np.asarray(x, dtype=np.float64), 0.01, sample_rate), 10.0 ** (-6.0 / 20.0)
    )
