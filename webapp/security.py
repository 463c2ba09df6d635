"""HTTP security headers, admin password hashing and the login rate limit."""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque

from flask import Flask, Response
from werkzeug.security import check_password_hash, generate_password_hash

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)


def add_security_headers(app: Flask) -> None:
    @app.after_request
    def _headers(response: Response) -> Response:
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        # Crowd-platform ids arrive in the query string: never pass them on to another site. Same-
        # origin requests keep the Referer, which Flask-WTF's CSRF check demands over HTTPS.
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
        response.headers["Permissions-Policy"] = "camera=(), microphone=(), geolocation=()"
        if app.config.get("SESSION_COOKIE_SECURE"):
            response.headers["Strict-Transport-Security"] = "max-age=31536000"
        return response


def hash_password(password: str) -> str:
    """A salted scrypt hash (werkzeug's default method)."""
    return generate_password_hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    if not password_hash:
        return False
    try:
        return check_password_hash(password_hash, password)
    except ValueError:  # a malformed stored hash must not let anyone in
        return False


class LoginLimiter:
    """At most ``attempts`` failed logins per client address within ``window_s`` seconds.

    Kept in the worker's memory: with several gunicorn workers the effective limit is
    ``attempts × workers``, still far too slow for guessing a decent password.
    """

    def __init__(self, attempts: int, window_s: float, clock=time.monotonic):
        self.attempts = attempts
        self.window_s = window_s
        self.clock = clock
        self._failures: dict[str, deque] = defaultdict(deque)
        self._lock = threading.Lock()

    def _prune(self, key: str) -> deque:
        q = self._failures[key]
        cutoff = self.clock() - self.window_s
        while q and q[0] < cutoff:
            q.popleft()
        return q

    def blocked(self, key: str) -> bool:
        with self._lock:
            return len(self._prune(key)) >= self.attempts

    def failed(self, key: str) -> None:
        with self._lock:
            self._prune(key).append(self.clock())

    def reset(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)
