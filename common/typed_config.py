"""Frozen dataclass configs built from plain mappings (parsed YAML or JSON), rejecting unknown keys.

One converter for every package: a leaf (standard library and PyYAML only) that each package
uses through a :class:`TypedConfig` bound to its own ``ConfigError``, so its errors keep deriving
from that package's base exception.

Hand-written rather than pulled from a schema library: the project needs exactly three things
(unknown keys are errors that name the key and where it was found, nested dataclasses and tuples
are converted, the result is a frozen dataclass), a ``bool`` is never accepted as a number, and
the libraries that do this (dacite, pydantic) either accept ``true`` for an integer or bring a
model layer of their own.

Numbers: PyYAML reads YAML 1.1, where ``1e-3``, ``1E-3`` and ``-1e+2`` (no dot) are strings, not
floats; a float field accepts those strings too, and every spelling Python's decimal literals
allow (``.5``, ``5.``, ``1_000.0``). An integer field accepts integers only (``1e3`` is refused
rather than silently truncated or rounded), and no number field accepts ``true``/``false``.
Infinity and NaN are refused by every float field: no setting of any package means
anything by them (an unbounded limit is written ``null`` where a field allows it), and NaN would
pass every range check a ``__post_init__`` makes, since every comparison with it is false.

Errors name where they were found: ``where`` (the file, then the key path) prefixes every
message, including the refusals of a dataclass's own ``__post_init__``.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")

# A decimal float as written by hand: digits with optional '_' separators, an optional fraction,
# an optional exponent (Python's float literal syntax without inf/nan).
_DECIMAL = re.compile(r"[-+]?(?:\d+(?:_\d+)*(?:\.(?:\d+(?:_\d+)*)?)?|\.\d+(?:_\d+)*)(?:[eE][-+]?\d+(?:_\d+)*)?")


class TypedConfig:
    """:meth:`from_dict` and :meth:`load_yaml` raising ``error`` (a package's ``ConfigError``)."""

    def __init__(self, error: type[Exception]):
        self.error = error

    def from_dict(self, cls: type[T], data: Any, where: str = "config") -> T:
        """Build the frozen dataclass ``cls`` from a mapping (None: all defaults), converting
        nested values. Raises ``error`` naming the key path for an unknown key, a missing
        required key, a value of the wrong type or one its ``__post_init__`` refuses."""
        if isinstance(data, cls):
            return data
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise self.error(f"{where}: expected a mapping of {cls.__name__} settings, found {type(data).__name__} {data!r}")
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(data) - set(fields), key=str)
        if unknown:
            keys = ", ".join(map(repr, unknown))
            raise self.error(
                f"{where}: unknown key{'s' if len(unknown) > 1 else ''} {keys} (allowed: {', '.join(sorted(fields))})"
            )
        kwargs = {}
        for name, field in fields.items():
            if name in data:
                kwargs[name] = self._convert(data[name], hints[name], f"{where}.{name}")
            elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                raise self.error(f"{where}: missing required key {name!r}")
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, self.error) and str(exc).startswith(where):
                raise
            # A __post_init__ knows the key but not the file it came from.
            raise self.error(f"{where}: {exc}") from exc

    def load_yaml(self, path: str | Path) -> Any:
        """Parse a YAML file, turning a missing file or a syntax error into ``error``."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise self.error(f"{path}: no such file") from None
        except OSError as exc:
            raise self.error(f"{path}: cannot be read ({exc.strerror})") from None
        except UnicodeDecodeError as exc:
            raise self.error(f"{path}: expected UTF-8 text, found byte 0x{exc.object[exc.start]:02x} at offset "
                             f"{exc.start}") from None
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f" line {mark.line + 1}" if mark is not None else ""
            raise self.error(f"{path}{line}: not valid YAML ({getattr(exc, 'problem', exc)})") from None

    def load(self, cls: type[T], path: str | Path) -> T:
        """A YAML file read into ``cls``; errors name the file."""
        return self.from_dict(cls, self.load_yaml(path), str(path))

    def _convert(self, value: Any, annotation: Any, where: str) -> Any:
        origin = typing.get_origin(annotation)
        args = typing.get_args(annotation)
        if annotation is Any:
            return value
        if origin in (typing.Union, types.UnionType):
            if value is None and type(None) in args:
                return None
            errors = []
            for arg in args:
                if arg is type(None):
                    continue
                try:
                    return self._convert(value, arg, where)
                except self.error as exc:
                    errors.append(str(exc))
            raise self.error(f"{where}: {value!r} matches none of the allowed types ({'; '.join(errors)})")
        if origin is typing.Literal:
            if value not in args:
                raise self.error(f"{where}: expected one of {list(args)}, found {value!r}")
            return value
        if dataclasses.is_dataclass(annotation):
            return self.from_dict(annotation, value, where)
        if origin is tuple:
            if not isinstance(value, (list, tuple)):
                raise self.error(f"{where}: expected a list, found {type(value).__name__} {value!r}")
            if len(args) == 2 and args[1] is Ellipsis:
                return tuple(self._convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
            if len(args) != len(value):
                raise self.error(f"{where}: expected {len(args)} values, found {len(value)}")
            return tuple(self._convert(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
        if origin is dict:
            if not isinstance(value, dict):
                raise self.error(f"{where}: expected a mapping, found {type(value).__name__} {value!r}")
            return {
                self._convert(k, args[0], f"{where} key"): self._convert(v, args[1], f"{where}.{k}")
                for k, v in value.items()
            }
        if annotation is bool:
            if not isinstance(value, bool):
                raise self.error(f"{where}: expected true or false, found {value!r}")
            return value
        if annotation is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise self.error(f"{where}: expected an integer, found {value!r}")
            return value
        if annotation is float:
            return self._float(value, where)
        if annotation is str:
            if not isinstance(value, str):
                raise self.error(f"{where}: expected a string, found {value!r}")
            return value
        if annotation is Path:
            if not isinstance(value, (str, Path)):
                raise self.error(f"{where}: expected a path, found {value!r}")
            return Path(value)
        raise TypeError(f"unsupported config field type {annotation!r} at {where}")

    def _float(self, value: Any, where: str) -> float:
        if isinstance(value, str) and _DECIMAL.fullmatch(value):
            number = float(value.replace("_", ""))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                number = float(value)
            except OverflowError:  # an int beyond the float range
                number = math.inf
        else:
            raise self.error(f"{where}: expected a number, found {value!r}")
        if math.isnan(number):
            raise self.error(f"{where}: expected a number, found NaN")
        if math.isinf(number):
            raise self.error(f"{where}: expected a finite number, found {value!r}")
        return number


def to_dict(config: Any) -> Any:
    """Plain JSON/YAML-friendly form of a (nested) dataclass config."""
    if dataclasses.is_dataclass(config):
        return {f.name: to_dict(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, (list, tuple)):
        return [to_dict(v) for v in config]
    if isinstance(config, dict):
        return {k: to_dict(v) for k, v in config.items()}
    if isinstance(config, Path):
        return str(config)
    return config
