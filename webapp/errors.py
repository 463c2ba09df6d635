"""Exceptions raised by the web app.

Every error the web app raises on purpose derives from :class:`WebappError`
(itself a :class:`common.errors.EarshotError`); the specific ones also
derive from the matching builtin so callers can catch either.
"""

from common.errors import EarshotError


class WebappError(EarshotError):
    """Base class of every error the web app raises on purpose."""


class ConfigError(WebappError, ValueError):
    """A settings file, ``test.yaml`` or environment variable is malformed."""


class StimulusSetError(WebappError, ValueError):
    """A stimulus set folder or its ``manifest.json`` cannot be served as given."""


class StorageError(WebappError, RuntimeError):
    """The results database cannot be used (unknown schema version, unreachable server)."""


class ImportFormatError(WebappError, ValueError):
    """A foreign test configuration (webMUSHRA YAML) cannot be converted."""


class SubmissionError(WebappError, ValueError):
    """A page submission was refused; ``status`` is the HTTP status, ``code`` a stable error name."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
