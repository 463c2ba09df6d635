"""The web app's settings and test configs: frozen dataclasses from YAML, rejecting unknown keys.

Built by :mod:`evaluation.typed_config` (a leaf module of the standard library and PyYAML, shared
by the three packages; it imports neither torch nor ``models``), raising the web app's
:class:`~webapp.errors.ConfigError`.
"""

from __future__ import annotations

from evaluation.typed_config import TypedConfig

from .errors import ConfigError

from_dict = TypedConfig(ConfigError).from_dict

__all__ = ["from_dict"]
