"""The architecture registry: every network the zoo trains is an :class:`Architecture`, looked up
by the ``arch`` name a study or a stored config gives.

An architecture owns its config (a frozen dataclass whose ``arch`` field holds the registered
name; unknown keys are rejected) and knows how to build, label, count, slim and export the network
it describes. Nothing else in the zoo compares architecture names: adding one is a module with the
class and a call to :func:`register` (see docs/architecture.md, "Adding an architecture").

The stored form of a config (``checkpoint.pt``'s ``net``, ``config.json``'s ``model``, an export's
manifest) is the flat record the zoo wrote before it had a registry: every config carries the keys
of the old record (``legacy_keys``) at neutral values, so files written before and after read alike.
"""

from __future__ import annotations

import dataclasses
import logging
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from torch import nn

from models.config import from_dict, to_dict
from models.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_ARCH = "lstm"
STORED_ORDER = ("arch", "layers", "conditioning", "n_knobs", "preset", "width")
"""Key order of the stored record, as the zoo always wrote it."""


class Architecture(ABC):
    """A network family: its config class and what the zoo does with a config of it.

    Subclasses set ``name`` and ``config_class`` and implement :meth:`build`, :meth:`label`,
    :meth:`size_label` and :meth:`macs_per_sample`; the rest has defaults that fit a network which
    cannot be slimmed, distilled by feature alignment or exported as ``.nam``.
    """

    name: ClassVar[str]
    config_class: ClassVar[type]
    student_keys: ClassVar[tuple[str, ...]] = ()
    """Keys a study's student entry may give besides ``arch`` (all config fields when empty)."""
    legacy_keys: ClassVar[dict[str, Any]] = {}
    """Keys of the old flat record this config does not use, with the neutral value written."""
    slimmable: ClassVar[bool] = False
    distillable: ClassVar[bool] = False
    """Whether its per-layer features (``return_features``) can be aligned with a teacher's."""
    size_names_model: ClassVar[bool] = True
    """Whether the size label alone tells its networks apart (an LSTM stack's ``16-8``), so figures
    print it beside a run; otherwise they print the model label."""
    recurrent: ClassVar[bool] = False
    """Whether its forward takes and returns a recurrent ``state`` (tensors, or lists/tuples of them,
    each ``(layers, batch, units)`` as torch's recurrent modules keep them) that carries everything
    before the block: the chunked renderer (:func:`models.inference.rendering.render`) then checks
    each chunk's warm-up against its predecessor's state and runs it again from there where it differs."""
    streaming_engine: ClassVar[str] = "torch"
    """What :func:`models.inference.streaming.stream` runs it with by default: ``torch`` (its own
    forward per block), ``lstm_stack`` (the LSTM stack's fused streamer) or ``numpy`` (WaveNets)."""

    # -- configs ---------------------------------------------------------------------------

    def student(self, keys: dict[str, Any], conditioning: str, where: str) -> Any:
        """The config of a study's student entry (``arch`` already removed); ``conditioning`` is
        the study's, for architectures that take knobs more than one way."""
        allowed = self.student_keys or tuple(f.name for f in dataclasses.fields(self.config_class) if f.name != "arch")
        keys = _drop_neutral(keys, self.legacy_keys, allowed)
        unknown = sorted(set(keys) - set(allowed))
        if unknown:
            raise ConfigError(f"{where}: unknown key{'s' if len(unknown) > 1 else ''} "
                              f"{', '.join(map(repr, unknown))} for arch {self.name!r} (allowed: arch, "
                              f"{', '.join(allowed)})")
        return self.student_config(keys, conditioning, where)

    def student_config(self, keys: dict[str, Any], conditioning: str, where: str) -> Any:
        return from_dict(self.config_class, {**keys, "arch": self.name}, where=where)

    def from_stored(self, data: dict[str, Any], where: str) -> Any:
        """A config from its stored record (old flat records included)."""
        fields = {f.name for f in dataclasses.fields(self.config_class)}
        return from_dict(self.config_class, _drop_neutral(data, self.legacy_keys, fields), where=where)

    def to_stored(self, config: Any) -> dict[str, Any]:
        record = {**self.legacy_keys, **to_dict(config), "arch": self.name}
        ordered = {k: record[k] for k in STORED_ORDER if k in record}
        return {**ordered, **{k: v for k, v in record.items() if k not in ordered}}

    def with_knobs(self, config: Any, n_knobs: int) -> Any:
        """The config taking ``n_knobs`` knob values (the dataset decides how many)."""
        return dataclasses.replace(config, n_knobs=n_knobs)

    # -- the network -----------------------------------------------------------------------

    @abstractmethod
    def build(self, config: Any) -> nn.Module:
        """A fresh, randomly initialised network whose ``config`` attribute is ``config``."""
        raise NotImplementedError

    @abstractmethod
    def label(self, config: Any) -> str:
        """runs.csv's ``model`` column (``S-16-8``, ``WN-nano@50%``)."""
        raise NotImplementedError

    @abstractmethod
    def size_label(self, config: Any) -> str:
        """runs.csv's ``layers`` column (``16-8``, a WaveNet's channels per array ``4-2``)."""
        raise NotImplementedError

    @abstractmethod
    def macs_per_sample(self, config: Any) -> int:
        """Multiply-adds of the weight products per output sample."""
        raise NotImplementedError

    def parameter_count(self, config: Any) -> int:
        """Trainable values of the network ``config`` describes."""
        return parameter_count(self.build(config))

    def receptive_field(self, config: Any) -> int:
        """Samples of input one output depends on (1 for a recurrent network: its state carries
        the rest), so training windows are warmed up over ``receptive_field − 1`` samples."""
        return 1

    def feature_size(self, config: Any, layer: int) -> int:
        """Units of feature layer ``layer`` (negative counts from the end)."""
        raise ConfigError(f"feature distillation aligns per-layer features; {self.label(config)} "
                          f"(arch {self.name!r}) has none to align")

    def slimmable_by_design(self, config: Any) -> bool:
        """Whether the layout itself was made to be slimmed (the slimmable WaveNet preset), so an
        export offers its widths whatever recipe trained it."""
        return False

    # -- slimming --------------------------------------------------------------------------

    def _not_slimmable(self) -> ConfigError:
        return ConfigError(f"slimming: arch {self.name!r} cannot run at a fraction of its width "
                           f"(slimmable: {', '.join(n for n in names() if get(n).slimmable)})")

    def allowed_widths(self, config: Any) -> tuple[float, ...]:
        """Every distinct width of the widest layer, k / c for k = 1 … c."""
        raise self._not_slimmable()

    def slimmed_config(self, config: Any, width: float) -> Any:
        """The config of the really smaller network cut at ``width``."""
        raise self._not_slimmable()

    def slim(self, model: nn.Module, width: float) -> nn.Module:
        """A really smaller copy holding the first channels of every weight; full width equals it."""
        raise self._not_slimmable()

    def forward_at_width(self, model: nn.Module, x: torch.Tensor, knobs: torch.Tensor | None, state: Any,
                         return_features: bool, width: float) -> Any:
        """The forward with the weights sliced on the fly to ``width`` (gradients reach the kept
        entries)."""
        raise self._not_slimmable()

    # -- export ----------------------------------------------------------------------------

    def nam_document(self, model: nn.Module, sample_rate: float, width: float | None) -> tuple[str, dict, list, nn.Module]:
        """NAM's ``architecture``, ``config`` and flat ``weights`` for ``model`` (cut to ``width``),
        and the network exported; ConfigError where NAM has no such architecture."""
        raise ConfigError(f"cannot export {self.label(model.config)} as .nam: NAM has no {self.name!r} "
                          "architecture; expected a WaveNet or a NAM LSTM (arch nam_lstm)")


_REGISTRY: dict[str, Architecture] = {}


def register(architecture: Architecture) -> Architecture:
    """Make ``architecture`` known under its ``name``; a name is registered once."""
    name = architecture.name
    if name in _REGISTRY and type(_REGISTRY[name]) is not type(architecture):
        raise ConfigError(f"architecture {name!r} is already registered ({type(_REGISTRY[name]).__name__})")
    _REGISTRY[name] = architecture
    return architecture


def unregister(name: str) -> None:
    """Forget an architecture (tests that register one of their own clean up with this)."""
    _REGISTRY.pop(name, None)


def names() -> list[str]:
    return sorted(_REGISTRY)


def get(name: Any, where: str = "model.arch") -> Architecture:
    """The architecture registered as ``name``; ConfigError naming the known ones otherwise."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ConfigError(f"{where}: unknown architecture {name!r} (known: {', '.join(names())})") from None


def find(name: Any) -> Architecture | None:
    """The architecture registered as ``name``, or None (a runs.csv row of one no longer registered)."""
    return _REGISTRY.get(name) if isinstance(name, str) else None


def of(config: Any) -> Architecture:
    """The architecture of a config (its ``arch``)."""
    return get(getattr(config, "arch", None), where=f"{type(config).__name__}.arch")


def of_model(model: nn.Module) -> Architecture:
    """The architecture of a network built by a registered architecture."""
    config = getattr(model, "config", None)
    if config is None:
        raise ConfigError(f"expected a network of a registered architecture ({', '.join(names())}), "
                          f"found a {type(model).__name__} without a config")
    return of(config)


def is_net_config(value: Any) -> bool:
    return any(type(value) is a.config_class for a in _REGISTRY.values())


def student_config(entry: Any, conditioning: str, where: str) -> Any:
    """A study's student entry (``{layers: [16, 8]}``, ``{arch: wavenet, preset: nano}``) → its config."""
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a mapping such as {{layers: [16, 8]}} or "
                          f"{{arch: wavenet, preset: nano}}, found {entry!r}")
    keys = dict(entry)
    architecture = get(keys.pop("arch", DEFAULT_ARCH), where=f"{where}.arch")
    return architecture.student(keys, conditioning, where)


def net_from_dict(data: Any, where: str) -> Any:
    """A config from its stored record (``arch`` defaults to lstm)."""
    if is_net_config(data):
        return data
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of network settings, found {type(data).__name__} {data!r}")
    return get(data.get("arch", DEFAULT_ARCH), where=f"{where}.arch").from_stored(data, where)


def net_to_dict(config: Any) -> dict[str, Any]:
    """The stored record of a config (see the module docstring)."""
    return of(config).to_stored(config)


def identity(config: Any) -> dict[str, Any]:
    """What a run id hashes of a network config: the fields not at their defaults, ``arch`` left out
    when it is the default architecture (as a study leaves it out)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name == "arch":
            if value != DEFAULT_ARCH:
                out["arch"] = value
            continue
        if f.default is not dataclasses.MISSING and value == f.default:
            continue
        if f.default_factory is not dataclasses.MISSING and value == f.default_factory():
            continue
        out[f.name] = to_dict(value)
    return out


def build_model(config: Any) -> nn.Module:
    """A fresh, randomly initialised network for ``config``."""
    return of(config).build(config)


def label(config: Any) -> str:
    return of(config).label(config)


def size_label(config: Any) -> str:
    return of(config).size_label(config)


def macs_per_sample(config: Any) -> int:
    return of(config).macs_per_sample(config)


def parameter_count(model: nn.Module) -> int:
    """Number of trainable values."""
    return sum(p.numel() for p in model.parameters())


def fp32_bytes(model: nn.Module) -> int:
    """Size of the weights stored as 32-bit floats."""
    return 4 * parameter_count(model)


def _drop_neutral(data: dict[str, Any], neutral: dict[str, Any], used: Any) -> dict[str, Any]:
    """``data`` without the legacy keys this config does not use, where they hold their neutral value."""
    out = {}
    for key, value in data.items():
        if key in neutral and key not in used and _same(value, neutral[key]):
            continue
        out[key] = value
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return list(a) == list(b)
    return a == b
