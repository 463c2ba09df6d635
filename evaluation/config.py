"""The analysis configs (screening, report): frozen dataclasses from YAML or the command line.

Built by :mod:`common.typed_config`, raising this package's :class:`~evaluation.errors.ConfigError`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from common.typed_config import TypedConfig

from .errors import ConfigError

T = TypeVar("T")

_typed = TypedConfig(ConfigError)
from_dict = _typed.from_dict


def load_config(cls: type[T], path: str | Path) -> T:
    """``cls`` from the YAML file ``path``; every refusal is a ConfigError that names the file."""
    try:
        return _typed.load(cls, path)
    except ConfigError as exc:
        if str(exc).startswith(str(path)):
            raise
        raise ConfigError(f"{path}: {exc}") from exc


__all__ = ["from_dict", "load_config"]
