"""Exceptions raised by the model zoo.

Every error the zoo raises on purpose derives from :class:`ModelsError`
(itself a :class:`common.errors.EarshotError`); the specific ones also
derive from the matching builtin so callers can catch either.
"""

from common.errors import EarshotError


class ModelsError(EarshotError):
    """Base class of every error the model zoo raises on purpose."""


class ConfigError(ModelsError, ValueError):
    """A configuration file or mapping is malformed: unknown key, wrong type, bad value."""


class DatasetError(ModelsError, ValueError):
    """Audio data (built-in or the user's recordings) cannot be used as given."""


class CheckpointError(ModelsError, OSError):
    """A checkpoint is missing, unreadable or does not match the model it should rebuild."""


class TrainingError(ModelsError, RuntimeError):
    """Training cannot go on (for example the loss became NaN)."""


class OutputError(ModelsError, OSError):
    """An output (a study folder, a dataset's WAV folder, an export) cannot be written where asked."""


class StudyBusyError(ModelsError, RuntimeError):
    """Another process is already working on the study folder."""

