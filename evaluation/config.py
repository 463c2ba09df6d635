"""Flat frozen-dataclass configs built from mappings (YAML, CLI), rejecting unknown keys.

The analysis configs hold scalars only (thresholds, counts, method names), so this handles
``bool, int, float, str`` and ``Literal`` fields; anything else is a programming error.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .errors import ConfigError

T = TypeVar("T")


def _convert(value: Any, annotation: Any, where: str) -> Any:
    if typing.get_origin(annotation) is typing.Literal:
        allowed = typing.get_args(annotation)
        if value not in allowed:
            raise ConfigError(f"{where}: expected one of {list(allowed)}, found {value!r}")
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, found {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, found {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, found {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, found {value!r}")
        return value
    raise TypeError(f"unsupported config field type {annotation!r} at {where}")


def from_mapping(cls: type[T], mapping: Mapping[str, Any], where: str = "config") -> T:
    """Build the frozen dataclass ``cls`` from ``mapping``; unknown keys and bad types are errors."""
    if not isinstance(mapping, Mapping):
        raise ConfigError(f"{where}: expected a mapping, found {type(mapping).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(mapping) - fields)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; expected some of {sorted(fields)}")
    values = {k: _convert(v, hints[k], f"{where}.{k}") for k, v in mapping.items()}
    return cls(**values)


def load_config(cls: type[T], path: Path | str) -> T:
    """Read a YAML file into ``cls`` (see :func:`from_mapping`)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    return from_mapping(cls, data, str(path))
