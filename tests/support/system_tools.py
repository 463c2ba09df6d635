"""System programs the tests drive (Debian's chromium; PostgreSQL's initdb is looked up by its
fixture) and what a test does when one is missing."""

from __future__ import annotations

import os

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]


def missing_tool(what: str, how: str, env: str):
    """Skip (or, with ``env=1`` as in CI, fail) because ``what`` is not installed."""
    message = f"{what} is not installed; install it with `{how}` (CI sets {env}=1 and fails instead)"
    if os.environ.get(env) == "1":
        pytest.fail(message)
    pytest.skip(message)
