"""The analysis configs (screening, report): frozen dataclasses from YAML or the command line.

Built by :mod:`evaluation.typed_config`, raising this package's :class:`~evaluation.errors.ConfigError`.
"""

from __future__ import annotations

from .errors import ConfigError
from .typed_config import TypedConfig

_typed = TypedConfig(ConfigError)
from_dict = _typed.from_dict
load_config = _typed.load

__all__ = ["from_dict", "load_config"]
