"""Exceptions raised by the stimulus-set stage.

Every error it raises on purpose derives from :class:`StimulusSetError` (itself a
:class:`common.errors.EarshotError`); the specific ones also derive from ``ValueError``.
"""

from common.errors import EarshotError


class StimulusSetError(EarshotError):
    """Base class of every error the stimulus-set stage raises on purpose."""


class ConfigError(StimulusSetError, ValueError):
    """A stimulus config file is malformed: unknown key, wrong type, bad value (named with the file)."""


class StimulusError(StimulusSetError, ValueError):
    """A stimulus-set config, its inputs, the trained study or an existing set cannot be used as given."""


class StimulusConfigError(StimulusError):
    """A stimulus config's setting does not fit the study, models or audio it names; the loader of
    the config file adds the file's name to the message."""


__all__ = ["ConfigError", "StimulusConfigError", "StimulusError", "StimulusSetError"]
