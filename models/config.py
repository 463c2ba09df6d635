"""The zoo's configs: frozen dataclasses built from parsed YAML, rejecting unknown keys.

The converter is :mod:`common.typed_config` (shared by every package); bound here to
the zoo's :class:`~models.errors.ConfigError`.
"""

from __future__ import annotations

from common.typed_config import TypedConfig, to_dict
from models.errors import ConfigError

_typed = TypedConfig(ConfigError)
from_dict = _typed.from_dict
load_yaml = _typed.load_yaml

__all__ = ["from_dict", "load_yaml", "to_dict"]
