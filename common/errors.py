"""The one base exception of Earshot.

Every package's own base exception (the zoo's ``ModelsError``, the web app's ``WebappError``, the
analysis's ``EvaluationError``) derives from :class:`EarshotError`, and so does every error the
shared leaves raise themselves; a caller that drives several stages (the ``earshot`` launcher, a
test) can catch whatever any of them refuses on purpose with one ``except``, while a bug still
surfaces as the builtin exception it is.
"""


class EarshotError(Exception):
    """Base class of every error an Earshot package raises on purpose."""


__all__ = ["EarshotError"]
