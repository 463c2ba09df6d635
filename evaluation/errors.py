"""Exceptions raised by the evaluation package.

Every error the package raises on purpose derives from :class:`EvaluationError`
(itself a :class:`common.errors.EarshotError`); the specific ones
also derive from the matching builtin, so callers can
catch either ``EvaluationError`` or the builtin.
"""

from common.errors import EarshotError


class EvaluationError(EarshotError):
    """Base class of every error the evaluation package raises on purpose."""


class RatingsFormatError(EvaluationError, ValueError):
    """A ratings file, table or frame does not have the expected columns or values."""


class RatingsSourceError(EvaluationError, FileNotFoundError):
    """A ratings source (file, database, table) does not exist or cannot be opened."""


class ManifestError(EvaluationError, ValueError):
    """A stimulus-set manifest is missing, malformed or disagrees with the ratings."""


class DesignError(EvaluationError, ValueError):
    """The ratings do not support the requested analysis (too few listeners, missing cells, …)."""


class ConfigError(EvaluationError, ValueError):
    """An option or configuration value is unknown or out of range."""


class OutputError(EvaluationError, OSError):
    """An output path cannot be written, or writing it would replace something the command did not
    write (a folder of the user's, an input file)."""
