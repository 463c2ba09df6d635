"""Built-in virtual analog effects: the embedded default devices the zoo learns to imitate.

Each device is a frozen dataclass of its circuit-like parameters with one method,
``process(x, sample_rate, knobs) -> y``, where ``x`` and ``y`` are mono ``(time,)`` arrays. The
signal chains are block-wise numpy/scipy (``sosfilt``, ``lfilter``, element-wise waveshapers), so
they run at any sample rate — every cutoff is given in Hz and clamped below Nyquist — and three
minutes of audio take about a second. Outputs are deterministic float32 and bounded: the last
stage of every device is a soft limiter whose ceiling is below 1.

The devices follow the four effects of the distillation paper (docs/zoo-methods.md):

- :class:`TubeAmp` — two triode-like stages whose grid bias follows the signal envelope (so the
  same input sample gives a different output after a loud passage: memory), a tone stack and a
  speaker-like band limit;
- :class:`Fuzz` — two cascaded high-gain hard-knee clippers with interstage filters and a
  mid-scooped tone control, run at twice the sample rate to keep aliasing down;
- :class:`Overdrive` — pre-emphasis filters, a treble-weighted gain stage, an asymmetric soft
  clipper (so even harmonics appear) and a tone low-pass; with ``drive=None`` it is conditioned
  on a Drive knob in [0, 1] that sets the gain from ``min_gain_db`` to ``max_gain_db``.
"""

from __future__ import annotations

import abc
import dataclasses
import logging
from collections.abc import Mapping

import numpy as np
import scipy.signal

from models.errors import ConfigError, DatasetError

logger = logging.getLogger(__name__)

# The output limiter's ceiling: keeps |y| < 1 even after float32 rounding.
_CEILING = 0.98


# --------------------------------------------------------------------------- filters


def _clamp_hz(frequency_hz: float, sample_rate: int) -> float:
    return float(min(frequency_hz, 0.45 * sample_rate))


def _butter(kind: str, cutoff_hz: float, sample_rate: int, order: int = 1) -> np.ndarray:
    return scipy.signal.butter(
        order, _clamp_hz(cutoff_hz, sample_rate), kind, fs=sample_rate, output="sos"
    )


def _peaking(center_hz: float, gain_db: float, q: float, sample_rate: int) -> np.ndarray:
    """RBJ audio-EQ-cookbook peaking biquad as one second-order section."""
    a = 10.0 ** (gain_db / 40.0)
    w0 = 2.0 * np.pi * _clamp_hz(center_hz, sample_rate) / sample_rate
    alpha = np.sin(w0) / (2.0 * q)
    b = np.array([1.0 + alpha * a, -2.0 * np.cos(w0), 1.0 - alpha * a])
    den = np.array([1.0 + alpha / a, -2.0 * np.cos(w0), 1.0 - alpha / a])
    return np.concatenate([b / den[0], den / den[0]])[None, :]


def _chain(*sections: np.ndarray) -> np.ndarray:
    return np.concatenate(sections, axis=0)


def _soft_limit(x: np.ndarray) -> np.ndarray:
    """Output stage: near-linear below about −6 dBFS, never reaching the ceiling."""
    return _CEILING * np.tanh(x / _CEILING)


def _hard_knee(x: np.ndarray, knee: float) -> np.ndarray:
    """Odd saturator ``x / (1 + |x|^p)^(1/p)``: p = 2 is soft, large p approaches a hard clip."""
    return x / (1.0 + np.abs(x) ** knee) ** (1.0 / knee)


def _asymmetric_clip(x: np.ndarray, negative_softness: float) -> np.ndarray:
    """``tanh`` above zero and ``tanh(k x) / k`` below it: same slope at zero, different ceilings.

    With ``k < 1`` the negative half saturates later and higher, so the curve is not odd and a
    sine comes out with even harmonics (like a diode pair of unequal forward voltages).
    """
    scale = np.where(x >= 0.0, 1.0, negative_softness)
    return np.tanh(scale * x) / scale


# --------------------------------------------------------------------------- devices


class Device(abc.ABC):
    """A mono audio effect: ``process(x, sample_rate, knobs)`` maps ``(time,)`` to ``(time,)``.

    ``name`` is the preset name; ``knob_names`` lists the conditioning knobs (``()`` for a fixed
    device), each taking values in [0, 1].
    """

    name: str

    @property
    def knob_names(self) -> tuple[str, ...]:
        return ()

    def process(
        self, x: np.ndarray, sample_rate: int, knobs: Mapping[str, float] | None = None
    ) -> np.ndarray:
        """Run the effect. ``x``: ``(time,)`` mono audio in [-1, 1]; returns ``(time,)`` float32 with |y| < 1."""
        signal = self._check_input(x, sample_rate)
        values = self._check_knobs(knobs)
        if signal.size == 0:
            return np.zeros(0, dtype=np.float32)
        y = self._render(signal, int(sample_rate), values)
        return _soft_limit(y).astype(np.float32)

    @abc.abstractmethod
    def _render(self, x: np.ndarray, sample_rate: int, knobs: Mapping[str, float]) -> np.ndarray:
        """The effect before the output limiter; ``x`` is float64 ``(time,)``."""

    def _check_input(self, x: np.ndarray, sample_rate: int) -> np.ndarray:
        if isinstance(sample_rate, bool) or int(sample_rate) != sample_rate or sample_rate <= 0:
            raise ConfigError(
                f"device {self.name!r}: sample_rate must be a positive integer, found {sample_rate!r}"
            )
        signal = np.asarray(x, dtype=np.float64)
        if signal.ndim != 1:
            raise DatasetError(
                f"device {self.name!r}: expected mono audio of shape (time,), found shape {signal.shape}"
            )
        bad = np.flatnonzero(~np.isfinite(signal))
        if bad.size:
            raise DatasetError(
                f"device {self.name!r}: input sample {bad[0]} is {signal[bad[0]]}; expected finite audio"
            )
        return signal

    def _check_knobs(self, knobs: Mapping[str, float] | None) -> dict[str, float]:
        given = dict(knobs or {})
        unknown = sorted(set(given) - set(self.knob_names))
        if unknown:
            allowed = ", ".join(self.knob_names) if self.knob_names else "none"
            raise ConfigError(
                f"device {self.name!r}: unknown knob {unknown[0]!r} (knobs: {allowed})"
            )
        missing = [k for k in self.knob_names if k not in given]
        if missing:
            raise ConfigError(
                f"device {self.name!r}: knob {missing[0]!r} needs a value in [0, 1]; none was given"
            )
        values = {}
        for key, value in given.items():
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise ConfigError(
                    f"device {self.name!r}: knob {key!r} must be a number in [0, 1], found {value!r}"
                ) from None
            if not 0.0 <= number <= 1.0:
                raise ConfigError(
                    f"device {self.name!r}: knob {key!r} must be in [0, 1], found {value!r}"
                )
            values[key] = number
        return values


@dataclasses.dataclass(frozen=True)
class TubeAmp(Device):
    """Two triode-like stages with envelope-following grid bias, a tone stack and a speaker band.

    Stage 1 computes ``tanh(g x + b(t)) - tanh(b(t))`` where ``b(t) = bias - bias_shift · g · env(t)``
    and ``env`` is a smoothed rectified input (two one-pole low-passes of ``envelope_ms``): a loud
    passage drags the operating point (grid-conduction bias shift) and the clipping becomes more
    asymmetric until the envelope recovers. Subtracting ``tanh(b(t))`` keeps silence silent.
    """

    name: str
    input_gain_db: float = 14.0
    bias: float = 0.25
    bias_shift: float = 0.5
    envelope_ms: float = 40.0
    stage2_gain_db: float = 6.0
    stage2_bias: float = -0.2
    bass_db: float = 3.0
    mid_db: float = -4.0
    treble_db: float = 2.0
    speaker_hz: float = 5500.0
    output_gain_db: float = -3.0

    def _render(self, x: np.ndarray, sample_rate: int, knobs: Mapping[str, float]) -> np.ndarray:
        fs = sample_rate
        gain = 10.0 ** (self.input_gain_db / 20.0)
        u = gain * scipy.signal.sosfilt(_butter("highpass", 70.0, fs), x)
        # Envelope: two cascaded one-pole low-passes of |u| (smooth, still follows in tens of ms).
        pole = np.exp(-1.0 / (self.envelope_ms * 1e-3 * fs))
        envelope = scipy.signal.lfilter(
            [(1.0 - pole) ** 2], [1.0, -2.0 * pole, pole * pole], np.abs(u)
        )
        bias = self.bias - self.bias_shift * envelope
        v = np.tanh(u + bias) - np.tanh(bias)
        # Interstage coupling (bass cut) and Miller-capacitance treble roll-off.
        v = scipy.signal.sosfilt(
            _chain(_butter("highpass", 120.0, fs), _butter("lowpass", 9000.0, fs)), v
        )
        g2 = 10.0 ** (self.stage2_gain_db / 20.0)
        w = np.tanh(g2 * v + self.stage2_bias) - np.tanh(self.stage2_bias)
        tone = _chain(
            _peaking(110.0, self.bass_db, 0.7, fs),
            _peaking(550.0, self.mid_db, 0.8, fs),
            _peaking(2800.0, self.treble_db, 0.9, fs),
            _butter("highpass", 80.0, fs, order=2),
            _butter("lowpass", self.speaker_hz, fs, order=2),
        )
        return 10.0 ** (self.output_gain_db / 20.0) * scipy.signal.sosfilt(tone, w)


@dataclasses.dataclass(frozen=True)
class Fuzz(Device):
    """Two cascaded high-gain hard-knee clippers with interstage filters and a scooped tone control.

    ``oversample`` > 1 runs the clippers at that multiple of the sample rate (``resample_poly``,
    zero-phase, so a few samples of pre-ringing near Nyquist). With the band-limiting filters
    around the clippers the default preset folds back little without it (non-harmonic energy of
    a 1234.5 Hz sine at 48 kHz: −44 dB at 1×, −52 dB at 2×), so only the harsher
    ``fuzz_gated`` oversamples (−30 dB at 1×, −39 dB at 2×).
    """

    name: str
    gain1_db: float = 20.0
    gain2_db: float = 10.0
    bias1: float = 0.15
    knee1: float = 2.5
    knee2: float = 3.5
    tone: float = 0.5
    output_gain_db: float = -3.0
    oversample: int = 1

    def __post_init__(self) -> None:
        if (
            isinstance(self.oversample, bool)
            or not isinstance(self.oversample, int)
            or self.oversample < 1
        ):
            raise ConfigError(
                f"device {self.name!r}: oversample must be an integer >= 1, found {self.oversample!r}"
            )
        if not 0.0 <= self.tone <= 1.0:
            raise ConfigError(f"device {self.name!r}: tone must be in [0, 1], found {self.tone!r}")

    def _render(self, x: np.ndarray, sample_rate: int, knobs: Mapping[str, float]) -> np.ndarray:
        fs_in = sample_rate
        # Band-limit before the gain so the clipper mostly sees guitar-range content.
        x = scipy.signal.sosfilt(
            _chain(_butter("highpass", 90.0, fs_in), _butter("lowpass", 5000.0, fs_in, order=2)), x
        )
        if self.oversample > 1:
            x = scipy.signal.resample_poly(x, self.oversample, 1)
        fs = fs_in * self.oversample
        u = 10.0 ** (self.gain1_db / 20.0) * x
        v = _hard_knee(u + self.bias1, self.knee1) - _hard_knee(np.array(self.bias1), self.knee1)
        v = scipy.signal.sosfilt(
            _chain(_butter("highpass", 250.0, fs), _butter("lowpass", 3500.0, fs)), v
        )
        w = _hard_knee(10.0 ** (self.gain2_db / 20.0) * v, self.knee2)
        # Big-Muff-style tone: a blend of a low-pass and a high-pass leaves a mid scoop.
        low = scipy.signal.sosfilt(_butter("lowpass", 650.0, fs, order=2), w)
        high = scipy.signal.sosfilt(_butter("highpass", 1300.0, fs, order=2), w)
        y = (1.0 - self.tone) * low + self.tone * high
        if self.oversample > 1:
            y = scipy.signal.resample_poly(y, 1, self.oversample)
        return 10.0 ** (self.output_gain_db / 20.0) * y


@dataclasses.dataclass(frozen=True)
class Overdrive(Device):
    """Pre/post-filtered asymmetric soft clipping, optionally conditioned on a Drive knob.

    The gain stage amplifies the treble-weighted signal ``u + (G - 1) · highpass(u)`` (the bass
    stays cleaner, as in a Tube-Screamer-style pedal), ``G`` in dB runs linearly from
    ``min_gain_db`` (drive 0) to ``max_gain_db`` (drive 1), and the clipper is
    :func:`_asymmetric_clip`. ``drive=None`` makes the device conditioned: ``knob_names`` is
    ``("drive",)`` and every call must pass ``knobs={"drive": value}``.
    """

    name: str
    drive: float | None = 0.5
    min_gain_db: float = 6.0
    max_gain_db: float = 34.0
    negative_softness: float = 0.55
    emphasis_hz: float = 700.0
    tone_hz: float = 3200.0
    output_gain_db: float = -6.0

    def __post_init__(self) -> None:
        if self.drive is not None and not 0.0 <= self.drive <= 1.0:
            raise ConfigError(
                f"device {self.name!r}: drive must be in [0, 1] or None, found {self.drive!r}"
            )
        if not self.negative_softness > 0.0:
            raise ConfigError(
                f"device {self.name!r}: negative_softness must be > 0, found {self.negative_softness!r}"
            )

    @property
    def knob_names(self) -> tuple[str, ...]:
        return ("drive",) if self.drive is None else ()

    def _render(self, x: np.ndarray, sample_rate: int, knobs: Mapping[str, float]) -> np.ndarray:
        fs = sample_rate
        drive = knobs["drive"] if self.drive is None else self.drive
        gain = 10.0 ** ((self.min_gain_db + drive * (self.max_gain_db - self.min_gain_db)) / 20.0)
        u = scipy.signal.sosfilt(
            _chain(_butter("highpass", 100.0, fs), _butter("lowpass", 7000.0, fs)), x
        )
        s = u + (gain - 1.0) * scipy.signal.sosfilt(_butter("highpass", self.emphasis_hz, fs), u)
        c = _asymmetric_clip(s, self.negative_softness)
        # Tone low-pass and a DC blocker (the asymmetric clipper rectifies a little).
        c = scipy.signal.sosfilt(
            _chain(_butter("lowpass", self.tone_hz, fs, order=2), _butter("highpass", 25.0, fs)), c
        )
        return 10.0 ** (self.output_gain_db / 20.0) * c


PRESETS: dict[str, Device] = {
    device.name: device
    for device in (
        TubeAmp("tube_amp"),
        TubeAmp(
            "tube_amp_clean",
            input_gain_db=6.0,
            stage2_gain_db=0.0,
            bias_shift=0.3,
            output_gain_db=2.0,
        ),
        TubeAmp(
            "tube_amp_lead",
            input_gain_db=22.0,
            stage2_gain_db=10.0,
            mid_db=1.0,
            envelope_ms=25.0,
            output_gain_db=-6.0,
        ),
        Fuzz("fuzz"),
        Fuzz("fuzz_dark", tone=0.25, gain1_db=17.0),
        Fuzz("fuzz_gated", bias1=0.4, gain2_db=14.0, tone=0.6, oversample=2),
        Overdrive("overdrive"),
        Overdrive("overdrive_warm", drive=0.7, tone_hz=2000.0, emphasis_hz=400.0),
        Overdrive("overdrive_bright", drive=0.35, tone_hz=5000.0, emphasis_hz=1000.0),
        Overdrive("overdrive_drive", drive=None),
    )
}


def get_device(preset: str) -> Device:
    """The built-in device named ``preset``; an unknown name raises ConfigError listing the presets."""
    try:
        return PRESETS[preset]
    except (KeyError, TypeError):
        raise ConfigError(
            f"unknown device preset {preset!r}; expected one of: {', '.join(sorted(PRESETS))}"
        ) from None
