"""HTTP security headers, admin password hashing and the login rate limit."""

from __future__ import annotations

import base64
import hmac
import threading
import time
from collections import defaultdict, deque
from urllib.parse import urlsplit

from flask import Flask
from werkzeug.security import check_password_hash, generate_password_hash

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)


def security_headers(secure: bool) -> list[tuple[str, str]]:
    """The headers every response carries (``secure``: served over HTTPS, so HSTS too)."""
    headers = [
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        # Crowd-platform ids arrive in the query string: never pass them on to another site. Same-
        # origin requests keep the Referer, which the CSRF checks demand over HTTPS.
        ("Referrer-Policy", "same-origin"),
        ("Cross-Origin-Opener-Policy", "same-origin"),
        ("Permissions-Policy", "camera=(), microphone=(), geolocation=()"),
    ]
    if secure:
        headers.append(("Strict-Transport-Security", "max-age=31536000"))
    return headers


_OWN = {name.lower() for name, _ in security_headers(True)} | {"content-security-policy"}


def add_security_headers(app: Flask) -> None:
    """Add :func:`security_headers` and the CSP (unless a view set its own) to every response.

    Done as WSGI middleware on a prebuilt list: werkzeug's per-header ``set`` costs more than the
    rest of a small response's headers together.
    """
    fixed = security_headers(bool(app.config.get("SESSION_COOKIE_SECURE")))
    inner = app.wsgi_app

    def wsgi_app(environ, start_response):
        def start(status, headers, exc_info=None):
            if any(name.lower() in _OWN for name, _ in headers):
                own = {name.lower() for name, _ in headers}
                headers = [h for h in headers if h[0].lower() == "content-security-policy" or h[0].lower() not in _OWN]
                if "content-security-policy" not in own:
                    headers.append(("Content-Security-Policy", CONTENT_SECURITY_POLICY))
            else:
                headers.append(("Content-Security-Policy", CONTENT_SECURITY_POLICY))
            headers.extend(fixed)
            return start_response(status, headers, exc_info)

        return inner(environ, start)

    app.wsgi_app = wsgi_app


CSRF_HEADERS = ("X-CSRFToken", "X-CSRF-Token")


def csrf_token_for(secret_key: str | bytes, purpose: str, value: str) -> str:
    """The CSRF token tied to ``value`` (a secret cookie: the participant's token or a consent
    nonce): HMAC-SHA256 under the app's secret key, so only the server can make it and a page of
    another site can neither read the cookie nor compute the token."""
    key = secret_key.encode() if isinstance(secret_key, str) else secret_key
    digest = hmac.digest(key, f"earshot-csrf\0{purpose}\0{value}".encode(), "sha256")
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def csrf_problem(secret_key: str | bytes, purpose: str, value: str | None, presented: str | None,
                 secure: bool, referrer: str | None, host_url: str) -> str | None:
    """Why a POST fails the CSRF check (None: it passes), in Flask-WTF's words.

    ``secure``: the request came over HTTPS, where (as Flask-WTF does) the Referer must also name
    this origin, so a man in the middle on plain HTTP cannot plant a forged request.
    """
    if not presented:
        return "The CSRF token is missing."
    if not value or not hmac.compare_digest(presented.encode(), csrf_token_for(secret_key, purpose, value).encode()):
        return "The CSRF token is invalid."
    if secure:
        if not referrer:
            return "The referrer header is missing."
        if not _same_origin(referrer, host_url):
            return "The referrer does not match the host."
    return None


def _same_origin(a: str, b: str) -> bool:
    pa, pb = urlsplit(a), urlsplit(b)
    return (pa.scheme, pa.hostname, pa.port) == (pb.scheme, pb.hostname, pb.port)


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
