"""The web app's settings and test configs: frozen dataclasses from YAML, rejecting unknown keys.

Built by :mod:`common.typed_config` (a leaf module of the standard library and PyYAML, shared
by every package; it imports neither torch nor ``models``), raising the web app's
:class:`~webapp.errors.ConfigError`.
"""

from __future__ import annotations

from common.typed_config import TypedConfig

from .errors import ConfigError

from_dict = TypedConfig(ConfigError).from_dict

__all__ = ["from_dict"]
