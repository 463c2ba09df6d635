"""Helpers shared by the web app tests and their fixtures (kept out of conftest.py so test modules
can import them by a name no other test folder uses)."""

from __future__ import annotations

import os
import socket
import threading

import pytest

from webapp.security import hash_password

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
ADMIN_PASSWORD = "correct horse battery"
ADMIN_HASH = hash_password(ADMIN_PASSWORD)


def missing_tool(what: str, how: str, env: str):
    """Skip (or, with ``env=1`` as in CI, fail) because ``what`` is not installed."""
    message = f"{what} is not installed; install it with `{how}` (CI sets {env}=1 and fails instead)"
    if os.environ.get(env) == "1":
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """The app on a real threaded HTTP server on loopback, in a background thread."""

    def __init__(self, app):
        from werkzeug.serving import make_server

        self.app = app
        self.port = free_port()
        self.server = make_server("127.0.0.1", self.port, app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self):
        self.server.shutdown()
        self.thread.join(timeout=5)
