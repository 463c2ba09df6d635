"""How many samples a wet recording lags its dry input: an estimate that does not invent a delay.

**Definition.** The latency of a wet signal against its dry input is *the largest delay that
loses none of the wet signal's dependence on the dry one*. Overestimating it is the harmful
error: a student trained on targets shifted by more than the true latency has to answer a dry
sample before it arrives, which no causal network can; underestimating by a few samples only asks
it to learn a short delay. Two pieces of evidence each give an upper bound that a causal system
with latency D satisfies:

1. **Linear fit.** Least-squares FIR fits of the wet signal from the dry one with taps at lags
   ``L … L_hi`` are nested: a fit starting at a later lag ``L`` is a fit starting earlier with
   taps removed, so its explained energy can only fall as ``L`` grows. A system with latency D is
   explained as well for every ``L ≤ D`` as at D, and worse beyond. The bound is the largest
   ``L`` whose :data:`LOCAL_TAPS` earlier taps add at most :data:`LOSS_TOLERANCE` of the
   explained energy and all earlier taps searched at most :data:`TOTAL_LOSS_TOLERANCE` (a
   dilated network's response has gaps longer than LOCAL_TAPS). Both signals are first whitened
   with the dry signal's linear predictor, so that every frequency counts equally (raw, a
   one-sample shift of low-pass programme material loses about 0.1 % of its energy, less than any
   model error), and the top of the band, where
   converters' and resamplers' linear-phase filters ring ahead of their delay, is left out
   (:func:`_band_weight`). Levinson's recursion on the Toeplitz normal equations gives the
   explained energy of every nested fit in one pass. The tolerance is there because a causal
   *nonlinear* system driven by non-Gaussian programme material still correlates a little with
   the input just ahead of its latency: the 32 taps before it explain 0.5 % (built-in tube amp),
   0.7 % (overdrive) and 1.1 % (fuzz) of the explained energy, 0.03 % for a memoryless shaper.
2. **Onsets.** Where the dry signal starts after at least :data:`ONSET_QUIET_SAMPLES` of digital
   silence (the built-in programme and NAM's input file have such gaps) and the wet signal had
   settled meanwhile, the wet signal must start to move no later than D samples after the dry one
   does. The first wet sample that leaves its quiet baseline by more than four times the quiet
   stretch's largest deviation (and by more than float32 rounding) bounds D for that onset; the
   earliest such first move over all onsets is the bound, except that a move before the dry
   signal starts (a wet signal that leads) must be seen at two onsets, so that no single spike
   decides.

The estimate is the onsets' bound where it is the tighter one or where the linear bound is not
sharp (below :data:`UNSHARP`, see below), and the linear bound otherwise, except that a linear
bound earlier than every settled onset's first response gives way to the earliest one (the wet
signal was seen not to move there: what the fit found is leakage). The onsets are what pin a
zero-latency capture whose *linear* response peaks late: NAM's example ``wavenet.nam`` holds
0.04 % of its explained linear energy at lag 0 and 49 % at lag 17 (linear bound 16), its example
standard WaveNet peaks at 29 (linear bound 16); both wet signals move on the very sample the dry
one starts.
Without digital silence in the dry signal (most real recordings: noise, or a wet signal with
hiss that never settles) the linear bound alone decides, and a capture whose linear response
starts as softly as those two is then placed where its response gathers (``wavenet.nam`` on NAM's
chirp-and-noise input: 14 samples).

A GCC-PHAT cross-correlation first finds where the two signals line up at all (its peak may lie
a few samples after the latency, at the largest tap of a filter's response), refuses a clear peak
beyond ``max_latency_ms`` and warns about a weak one (unrelated files); the linear bound is searched
from :data:`SEARCH_BEFORE_SAMPLES` before that peak (and from :data:`ONSET_LEAD_SAMPLES` before lag
0 at least) to :data:`SEARCH_AFTER_SAMPLES` after it.

**Confidence** (in [0, 1], with a named level: high from 0.5, medium from 0.2): the larger of the
linear sharpness, the fraction of the explained energy that an alignment :data:`SHARPNESS_SAMPLES`
samples later than the estimate would lose (0.95 for a delayed waveshaper, 0.44-0.84 for the
built-in amps: a later latency is clearly wrong), and the onset support, the number of onsets
whose wet signal moves exactly at the estimate over three (capped at 1). A weak correlation peak
makes it 0; audio too short for the fit (the correlation peak alone) 0.1.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import scipy.fft
import scipy.linalg
import scipy.signal

from models.errors import DatasetError

logger = logging.getLogger(__name__)

# GCC-PHAT on more than this many samples (about 11 s at 48 kHz) buys no precision; bigger FFTs
# are what made the estimate take seconds on three-minute recordings.
PHAT_WINDOW_SAMPLES = 1 << 19
# Below this peak-to-RMS ratio the correlation peak is indistinguishable from chance.
WEAK_PEAK = 15.0
# The linear fit: candidate latencies from this far before the correlation peak to this far after.
SEARCH_BEFORE_SAMPLES = 128
SEARCH_AFTER_SAMPLES = 8
# Taps after the latest candidate (the response's tail the fit needs to explain anything).
TAIL_TAPS = 64
# A candidate latency L is rejected when the LOCAL_TAPS taps just before it add more than
# LOSS_TOLERANCE of the explained energy (measured ahead of a true latency: up to 1.1 %, the fuzz),
# or when all taps before it add more than TOTAL_LOSS_TOLERANCE.
LOCAL_TAPS = 32
LOSS_TOLERANCE = 0.02
TOTAL_LOSS_TOLERANCE = 0.1
# The fit runs on the loudest stretch of this many samples (about 5.5 s at 48 kHz).
FIT_WINDOW_SAMPLES = 1 << 18
# The fit weighs frequencies up to BAND_EDGE of the Nyquist frequency fully, none above BAND_STOP.
BAND_EDGE = 0.85
BAND_STOP = 0.95
# Order of the dry signal's linear predictor that whitens both signals.
WHITENING_ORDER = 32
# Fewer whitened samples than this many times the taps fitted: the fit is not trusted, and the
# correlation peak is the estimate, with this confidence (low).
MIN_SAMPLES_PER_TAP = 8
SHORT_CONFIDENCE = 0.1
SHARPNESS_SAMPLES = 4
# Below this linear sharpness at its own bound the fit does not overrule the onsets.
UNSHARP = 0.2
# Onsets: the dry signal digitally silent (exact zeros) for this many samples before it starts;
# the wet signal may lead by up to ONSET_LEAD_SAMPLES.
ONSET_QUIET_SAMPLES = 512
ONSET_LEAD_SAMPLES = 32
# The wet signal's quiet deviation is measured over the second half of the quiet run, up to this
# long, and the onset is used only when it stays within ONSET_SETTLED of the wet signal's peak.
ONSET_NOISE_SAMPLES = 1 << 14
ONSET_SETTLED = 1e-5
# The wet signal's quiet deviation times this is its onset threshold, and no change below
# ONSET_FLOOR of its peak counts (-160 dB: NAM's A2.nam answers a fade-in's first sample with 6e-8
# of its peak).
ONSET_NOISE_FACTOR = 4.0
ONSET_FLOOR = 1e-8
MAX_ONSETS = 400
LEVELS = ((0.5, "high"), (0.2, "medium"), (0.0, "low"))


@dataclasses.dataclass(frozen=True)
class LatencyEstimate:
    """A wet signal's latency against its dry one and where the number comes from.

    ``samples``: positive when the wet signal lags. ``confidence``: in [0, 1] for a measured
    latency (see the module docstring), None when nothing was measured. ``basis``: ``linear fit``,
    ``onsets`` (the tighter bound came from the dry signal's onsets), ``correlation peak`` (too
    little audio for the fit), ``set by the user`` or ``aligned by construction``.
    """

    samples: int
    confidence: float | None
    basis: str

    @property
    def level(self) -> str | None:
        """``high``, ``medium`` or ``low`` (None without a confidence)."""
        if self.confidence is None:
            return None
        return next(name for bound, name in LEVELS if self.confidence >= bound)

    def describe(self, sample_rate: int) -> str:
        """``12 samples (0.25 ms; estimated from the linear fit, confidence 0.93, high)``."""
        ms = 1000.0 * self.samples / sample_rate
        if self.confidence is None:
            return f"{self.samples} samples ({ms:.2f} ms; {self.basis})"
        return (f"{self.samples} samples ({ms:.2f} ms; estimated from the {self.basis}, "
                f"confidence {self.confidence:.2f}, {self.level})")


def measure_latency(
    dry: np.ndarray,
    wet: np.ndarray,
    sample_rate: int,
    max_latency_ms: float,
    *,
    where: str = "the wet signal",
) -> LatencyEstimate:
    """The latency of ``wet`` against ``dry`` (both ``(time,)``, equal length) and its confidence.

    See the module docstring for the definition. Raises DatasetError when a clear correlation
    peak lies beyond ``max_latency_ms``; a weak peak (unrelated files) is a logged warning and a
    confidence of 0. ``where`` names the wet signal in both.
    """
    dry = np.asarray(dry, dtype=np.float64)
    wet = np.asarray(wet, dtype=np.float64)
    if dry.ndim != 1 or wet.ndim != 1 or dry.size != wet.size:
        raise DatasetError(
            "estimate_latency: expected two (time,) signals of equal length, "
            f"found shapes {dry.shape} and {wet.shape}"
        )
    max_lag = min(int(round(max_latency_ms * sample_rate / 1000.0)), dry.size - 1)
    start, stop = _loudest_window(dry, PHAT_WINDOW_SAMPLES)
    d, w = dry[start:stop], wet[start:stop]
    peak, sharpness = _phat_peak(d, w, sample_rate, max_latency_ms, max_lag, where)
    start, stop = _loudest_window(dry, FIT_WINDOW_SAMPLES)
    fit = _linear_bound(dry[start:stop], wet[start:stop], peak, max_lag)
    if fit is None:
        logger.debug("latency: %d samples of audio are too few for the fit; the correlation peak decides", dry.size)
        # A clear peak, but nothing says where the response starts before it: low at best.
        return LatencyEstimate(peak, 0.0 if sharpness < WEAK_PEAK else SHORT_CONFIDENCE, "correlation peak")
    bound, explained_at = fit

    def sharpness_at(lag: int) -> float:
        at = explained_at(lag)
        return (at - explained_at(lag + SHARPNESS_SAMPLES)) / at if at > 0 else 0.0

    low, high = -ONSET_LEAD_SAMPLES, min(max(bound, peak), max_lag)
    onsets = _settled_onsets(dry, wet, low, high)
    moves = _first_moves(wet, onsets, low, high)
    # The earliest first response bounds the latency; one before the dry signal starts (the wet
    # signal leading) must be seen at two onsets, so that no single spike decides.
    ordered = sorted(moves)
    move_bound = None
    if ordered and ordered[0] >= 0:
        move_bound = ordered[0]
    elif len(ordered) >= 2:
        move_bound = ordered[1]
    if move_bound is not None and (move_bound <= bound or sharpness_at(bound) < UNSHARP):
        # The tighter bound wins; a linear bound above the onsets' is kept only when it is sharp
        # (a wet signal whose linear dependence is smeared over many lags, as a random-weight
        # capture's is, leaves the fit's bound anywhere within that smear).
        samples, basis = move_bound, "onsets"
    elif moves and bound < min(moves):
        # The fit finds dependence before any settled onset's first response, while the wet signal
        # was seen not to move there: nonlinear leakage, not latency (a trained WaveNet at 25 %
        # width reads -1 from the fit and moves at lag 0 at every onset).
        samples, basis = min(moves), "onsets"
    else:
        samples, basis = bound, "linear fit"
    linear = sharpness_at(samples)
    support = min(1.0, sum(m == samples for m in moves) / 3.0)
    confidence = 0.0 if sharpness < WEAK_PEAK else float(np.clip(max(linear, support), 0.0, 1.0))
    logger.debug(
        "latency: correlation peak at %d (%.1f times its RMS), linear bound %d, first responses %s from %d "
        "settled onsets; %d samples, linear sharpness %.3f, onset support %.2f",
        peak, sharpness, bound, sorted(moves)[:5], len(onsets), samples, linear, support,
    )
    return LatencyEstimate(int(samples), round(confidence, 3), basis)


def estimate_latency(
    dry: np.ndarray,
    wet: np.ndarray,
    sample_rate: int,
    max_latency_ms: float,
    *,
    where: str = "the wet signal",
) -> int:
    """Samples by which ``wet`` lags ``dry`` (negative when it leads): :func:`measure_latency`'s number."""
    return measure_latency(dry, wet, sample_rate, max_latency_ms, where=where).samples


# --------------------------------------------------------------------------- correlation peak


def _loudest_window(x: np.ndarray, window: int) -> tuple[int, int]:
    if x.size <= window:
        return 0, x.size
    hop = window // 4
    energy = np.concatenate([[0.0], np.cumsum(x * x)])
    starts = np.arange(0, x.size - window + 1, hop)
    best = int(starts[np.argmax(energy[starts + window] - energy[starts])])
    return best, best + window


def _phat_peak(d: np.ndarray, w: np.ndarray, sample_rate: int, max_latency_ms: float, max_lag: int,
               where: str) -> tuple[int, float]:
    """The GCC-PHAT peak within ±max_lag and its peak-to-RMS ratio.

    The cross-spectrum is phase-transformed (every frequency weighted equally) because the plain
    correlation of a heavily clipped, mid-scooped output (a fuzz) with its input peaks tens of
    samples away from the true delay. The largest absolute value counts (a polarity inversion
    still aligns).
    """
    size = scipy.fft.next_fast_len(2 * d.size, real=True)
    cross = scipy.fft.rfft(w, size) * np.conj(scipy.fft.rfft(d, size))
    magnitude = np.abs(cross)
    # The floor keeps empty bins (band-limited material, digital silence) from dividing by zero.
    cross /= magnitude + 1e-9 * max(float(magnitude.max()), 1e-300)
    correlation = scipy.fft.irfft(cross, size)
    # Index k of the circular correlation is lag k for k < d.size and lag k - size above.
    all_lags = np.concatenate([np.arange(0, d.size), np.arange(d.size - size, 0)])
    all_values = np.concatenate([correlation[: d.size], correlation[d.size :]])
    # Peak-to-RMS of the phase-transformed correlation: about 4-6 for unrelated signals (the
    # largest of many Gaussian values), tens to hundreds for a recording of the input.
    rms = float(np.sqrt(np.mean(all_values**2))) + 1e-300
    overall = int(np.argmax(np.abs(all_values)))
    if abs(all_lags[overall]) > max_lag and abs(all_values[overall]) / rms >= WEAK_PEAK:
        lag = int(all_lags[overall])
        raise DatasetError(
            f"{where}: lags the dry one by {lag} samples ({1000.0 * lag / sample_rate:.1f} ms); "
            f"expected at most ±{max_latency_ms:g} ms. Raise max_latency_ms if that latency is real, "
            "or set latency_samples, or check that the files belong together"
        )
    inside = np.abs(all_lags) <= max_lag
    values, lags = all_values[inside], all_lags[inside]
    best = int(np.argmax(np.abs(values)))
    lag = int(lags[best])
    sharpness = abs(float(values[best])) / rms
    if sharpness < WEAK_PEAK:
        logger.warning(
            "%s: barely correlates with the dry signal (peak only %.1f times the RMS at a lag of "
            "%d samples); check that it is a recording of the dry one",
            where,
            sharpness,
            lag,
        )
    return lag, sharpness


# --------------------------------------------------------------------------- linear bound


def _whitener(x: np.ndarray, order: int) -> np.ndarray:
    """The prediction-error filter ``[1, -a_1, …, -a_order]`` of ``x`` (autocorrelation method)."""
    size = scipy.fft.next_fast_len(2 * x.size, real=True)
    spectrum = scipy.fft.rfft(x, size)
    autocorrelation = scipy.fft.irfft(spectrum.real**2 + spectrum.imag**2, size)[: order + 1]
    if autocorrelation[0] <= 0:
        return np.array([1.0])
    # A little white noise (-60 dB) keeps the predictor stable on band-limited material.
    autocorrelation[0] *= 1.0 + 1e-6
    coefficients = scipy.linalg.solve_toeplitz(autocorrelation[:order], autocorrelation[1 : order + 1])
    return np.concatenate([[1.0], -coefficients])


def _band_weight(bins: int) -> np.ndarray:
    """1 up to BAND_EDGE of the Nyquist frequency, a raised-cosine taper to 0 at BAND_STOP.

    Converters and resamplers filter the top of the band with linear-phase filters that ring
    *ahead* of their delay; whitened, that ringing would read as dependence before the latency
    (a recording resampled 48 → 44.1 → 48 kHz measured 2 samples early without the taper).
    """
    position = np.linspace(0.0, 1.0, bins)
    taper = np.clip((position - BAND_EDGE) / (BAND_STOP - BAND_EDGE), 0.0, 1.0)
    return 0.5 + 0.5 * np.cos(np.pi * taper)


def _nested_explained(autocorrelation: np.ndarray, cross: np.ndarray) -> np.ndarray:
    """``out[k]``: the energy explained by the least-squares fit with the first k + 1 taps, i.e.
    ``c_k · T_k⁻¹ c_k`` for the leading ``(k+1)×(k+1)`` block ``T_k`` of the symmetric Toeplitz
    matrix with first column ``autocorrelation`` and the first k + 1 entries ``c_k`` of ``cross``.

    Levinson's recursion: each order's solution extends the previous one, so all orders cost one
    O(n²) pass (a dense Cholesky of the same matrix took half a second on a busy two-core machine,
    its BLAS threads waiting for each other).
    """
    r = autocorrelation
    n = r.size
    forward = np.array([1.0 / r[0]])
    solution = np.array([cross[0] / r[0]])
    out = np.empty(n)
    out[0] = cross[0] * solution[0]
    for k in range(1, n):
        lagged = r[k:0:-1]  # r[k], r[k-1], ..., r[1]: row k of the matrix left of the diagonal
        error = float(lagged @ forward)
        forward = (np.append(forward, 0.0) - error * np.append(0.0, forward[::-1])) / (1.0 - error * error)
        solution = np.append(solution, 0.0) + (cross[k] - float(lagged @ solution)) * forward[::-1]
        out[k] = float(cross[: k + 1] @ solution)
    return out


def _linear_bound(d: np.ndarray, w: np.ndarray, peak: int, max_lag: int):
    """The linear fit's bound and ``explained_at(L)``, the energy a fit from lag L explains; None
    when there is too little audio for the taps."""
    # Down to ONSET_LEAD_SAMPLES before lag 0 at least: a capture's linear response may peak
    # anywhere in its receptive field (a random nano WaveNet's at 1024) while it answers at once.
    low = max(min(peak - SEARCH_BEFORE_SAMPLES, -ONSET_LEAD_SAMPLES), -max_lag)
    high = min(peak + SEARCH_AFTER_SAMPLES, max_lag)
    first, last = low - LOCAL_TAPS, high + TAIL_TAPS  # lags of the fitted taps
    taps = last - first + 1
    if d.size < MIN_SAMPLES_PER_TAP * taps:
        return None
    a = _whitener(d, WHITENING_ORDER)
    dw = scipy.signal.lfilter(a, 1.0, d)
    ww = scipy.signal.lfilter(a, 1.0, w)
    size = scipy.fft.next_fast_len(d.size + max(abs(first), abs(last)) + 1, real=True)
    dry_spectrum = scipy.fft.rfft(dw, size)
    weight = _band_weight(dry_spectrum.size)
    autocorrelation = scipy.fft.irfft(weight * (dry_spectrum.real**2 + dry_spectrum.imag**2), size)[:taps]
    cross = scipy.fft.irfft(weight * scipy.fft.rfft(ww, size) * np.conj(dry_spectrum), size)
    # Taps ordered from the latest lag to the earliest, so that every fit "from lag L" is a leading
    # block of the Toeplitz normal equations: Levinson's recursion solves them order by order.
    lags = np.arange(last, first - 1, -1)
    autocorrelation[0] += 1e-9 * autocorrelation[0] + 1e-300
    explained = _nested_explained(autocorrelation, cross[lags % size])  # taps at lags last … last - k

    def explained_at(lag: int) -> float:
        return float(explained[min(max(last - lag, 0), taps - 1)])

    total = float(explained[-1])
    if total <= 0:
        return peak, explained_at
    candidates = np.arange(high, low - 1, -1)
    losses = (explained[last - candidates + LOCAL_TAPS] - explained[last - candidates]) / total
    # And all the taps before it, from the earliest searched, together explain at most
    # TOTAL_LOSS_TOLERANCE: a response with gaps longer than LOCAL_TAPS (dilated convolutions)
    # would otherwise pass at the gap before its largest tap.
    totals = (total - explained[last - candidates]) / total
    within = np.flatnonzero((losses <= LOSS_TOLERANCE) & (totals <= TOTAL_LOSS_TOLERANCE))
    # None within tolerance (the dependence is spread over every lag searched): the peak is the
    # only landmark left.
    bound = int(candidates[within[0]]) if within.size else peak
    return bound, explained_at


# --------------------------------------------------------------------------- onsets


def _settled_onsets(dry: np.ndarray, wet: np.ndarray, low: int, high: int) -> list[tuple[int, float, float]]:
    """``(index, baseline, threshold)`` of every usable onset of the dry signal.

    An onset is usable when the dry signal was digitally silent (exact zeros: a fade-in's first
    samples lie far below any relative threshold, and the wet signal already answers them) for
    ONSET_QUIET_SAMPLES before it and the wet signal had settled: over the second half of that
    silence (up to ONSET_NOISE_SAMPLES) it moved by at most ONSET_SETTLED of its peak. The first
    half is left to the previous sound's tail (a standard WaveNet hears 85 ms back), and a wet
    signal that never settles (a noisy recording) gives no onset evidence: its first response would
    hide under the noise. ``baseline`` is the wet signal's last quiet value, ``threshold`` the
    change that counts as a response (:data:`ONSET_NOISE_FACTOR` times the quiet stretch's largest
    deviation, at least :data:`ONSET_FLOOR` of the wet signal's peak and four float32 steps).
    """
    loud = dry != 0.0
    steps = np.diff(loud.view(np.int8))
    rises = np.flatnonzero(steps == 1) + 1  # first loud sample after a quiet run
    if rises.size == 0:
        return []
    falls = np.flatnonzero(steps == -1) + 1  # first quiet sample after a loud run
    # Where each quiet run ending at a rise began: the last fall before it (the start of the file
    # when the file begins quiet).
    before = np.searchsorted(falls, rises, side="right") - 1
    runs = rises - np.where(before >= 0, falls[np.maximum(before, 0)], 0)
    usable = (runs >= ONSET_QUIET_SAMPLES) & (rises + high < wet.size)
    wet_peak = float(np.max(np.abs(wet)))
    floor = ONSET_FLOOR * wet_peak
    onsets = []
    for onset, run in zip(rises[usable][:MAX_ONSETS].tolist(), runs[usable][:MAX_ONSETS].tolist(), strict=True):
        quiet = wet[onset - min(run // 2, ONSET_NOISE_SAMPLES) : onset + low]
        baseline = float(quiet[-1])
        noise = float(np.max(np.abs(quiet - baseline)))
        if noise > ONSET_SETTLED * wet_peak:
            continue
        threshold = max(ONSET_NOISE_FACTOR * noise, floor, 4.0 * float(np.spacing(np.float32(baseline))))
        onsets.append((onset, baseline, threshold))
    return onsets


def _first_moves(wet: np.ndarray, onsets: list[tuple[int, float, float]], low: int, high: int) -> list[int]:
    """Per onset, the first lag in [low, high] at which the wet signal leaves its baseline by more
    than the onset's threshold (onsets whose wet signal does not move that soon give none)."""
    moves = []
    for onset, baseline, threshold in onsets:
        moved = np.flatnonzero(np.abs(wet[onset + low : onset + high + 1] - baseline) > threshold)
        if moved.size:
            moves.append(int(moved[0]) + low)
    return moves


def compensate(dry: np.ndarray, wet: np.ndarray, latency: int) -> tuple[np.ndarray, np.ndarray]:
    """Drop ``latency`` samples so that ``wet[n]`` answers ``dry[n]`` (both shortened equally)."""
    if latency > 0:
        return dry[: dry.size - latency], wet[latency:]
    if latency < 0:
        return dry[-latency:], wet[: wet.size + latency]
    return dry, wet


__all__ = ["LatencyEstimate", "compensate", "estimate_latency", "measure_latency"]
