"""What every stage's command line does around its verbs: logging set from ``-v``/``-q``, progress
bars that do not tear log lines, and a user's mistake (an :class:`~common.errors.EarshotError`)
printed as one ``error: …`` line with exit status 2 instead of a traceback."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from .errors import EarshotError

USER_ERROR = 2
INTERRUPTED = 130


def setup_logging(verbose: bool, quiet: bool) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def one_line(exc: BaseException) -> str:
    """The error's message on one line, whatever it holds: a log or a terminal shows one error line."""
    return " ".join(line.strip() for line in str(exc).splitlines())


def run_verb(verb: Callable[[], int], *, interrupted: str) -> int:
    """Run ``verb``; an EarshotError is one line on stderr and exit 2, Ctrl-C prints ``interrupted``
    (what is kept and how to go on) and exits 130."""
    try:
        from tqdm.contrib.logging import logging_redirect_tqdm

        with logging_redirect_tqdm():
            return verb()
    except EarshotError as exc:
        print("error: " + one_line(exc), file=sys.stderr)
        return USER_ERROR
    except KeyboardInterrupt:
        print("\n" + interrupted, file=sys.stderr)
        return INTERRUPTED


__all__ = ["INTERRUPTED", "USER_ERROR", "one_line", "run_verb", "setup_logging"]
