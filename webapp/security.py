"""HTTP security headers, admin password hashing, admin sessions and the login rate limits."""

from __future__ import annotations

import base64
import hmac
import ipaddress
import secrets
import time
from urllib.parse import urlsplit

from flask import Flask
from sqlalchemy import delete, func, select, update
from werkzeug.security import check_password_hash, generate_password_hash

from .storage import AdminSession, Storage, ThrottleEvent

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


def clock() -> float:
    """Seconds since the epoch for sessions and rate limits; tests replace it to move time."""
    return time.time()


def keyed_digest(secret_key: str | bytes, purpose: str, value: str) -> str:
    """HMAC-SHA256 of ``value`` under the app's secret key, as 32 hex digits: lets the database
    match client addresses and password hashes without storing them."""
    key = secret_key.encode() if isinstance(secret_key, str) else secret_key
    return hmac.new(key, f"earshot-{purpose}\0{value}".encode(), "sha256").hexdigest()[:32]


def is_loopback(address: str | None) -> bool:
    try:
        return ipaddress.ip_address(address or "").is_loopback
    except ValueError:
        return False


CLOCK_SKEW_S = 60.0
"""How far in the future an issue time may lie (workers' clocks, NTP steps) and still count."""


class AdminSessions:
    """Admin logins kept server-side, so that logging out ends a session even for a copied cookie.

    A session lives ``lifetime_s`` from its login, checked on every request against the issue
    time in the database and in the signed cookie: a restart changes nothing. It ends on logout,
    and every session ends when the password changes (each row holds a digest of the password
    hash it logged in with).
    """

    def __init__(self, storage: Storage, lifetime_s: float):
        self.storage = storage
        self.lifetime_s = lifetime_s

    def open(self, password_tag: str) -> tuple[str, float]:
        """A new session: (its id, its issue time) for the cookie."""
        sid = secrets.token_urlsafe(32)
        now = clock()
        with self.storage.writing() as s:
            # Rows of sessions that expired long ago serve no purpose.
            s.execute(delete(AdminSession).where(AdminSession.issued_at < now - 2 * self.lifetime_s))
            s.add(AdminSession(id=sid, issued_at=now, password_tag=password_tag))
        return sid, now

    def _fresh(self, issued_at, now: float) -> bool:
        if isinstance(issued_at, bool) or not isinstance(issued_at, (int, float)):
            return False
        return now - self.lifetime_s < issued_at <= now + CLOCK_SKEW_S

    def valid(self, sid, issued_at, password_tag: str | None) -> bool:
        """Whether the cookie's session (``sid``, ``issued_at``) is live and was opened with the
        current password (``password_tag``; None: no password is set, nobody is logged in)."""
        now = clock()
        if not isinstance(sid, str) or not password_tag or not self._fresh(issued_at, now):
            return False
        with self.storage.reading() as s:
            row = s.get(AdminSession, sid)
        return (
            row is not None
            and row.ended_at is None
            and self._fresh(row.issued_at, now)
            and abs(row.issued_at - issued_at) < 1e-3
            and hmac.compare_digest(row.password_tag, password_tag)
        )

    def end(self, sid) -> None:
        if not isinstance(sid, str):
            return
        with self.storage.writing() as s:
            s.execute(update(AdminSession).where(AdminSession.id == sid).values(ended_at=clock()))

    def last_login(self) -> float | None:
        with self.storage.reading() as s:
            return s.scalar(select(func.max(AdminSession.issued_at)))


class LoginThrottle:
    """Rate limits of the admin login, shared by every worker through the database.

    Per client address: at most ``per_address`` failures within ``window_s``. Per account, from
    any number of addresses: after ``account_free`` failures since the last successful login
    (and within ``memory_s``), every further attempt must wait ``base_delay_s`` after the last
    failure, doubling with each failure up to ``max_delay_s``. An attempt made while waiting is
    refused unchecked and not counted, so once the wait is over the right password gets in.
    """

    SCOPE = "admin-login"

    def __init__(
        self,
        storage: Storage,
        sessions: AdminSessions,
        secret_key: str | bytes,
        per_address: int,
        window_s: float,
        account_free: int = 10,
        base_delay_s: float = 1.0,
        max_delay_s: float = 900.0,
        memory_s: float = 24 * 3600.0,
    ):
        self.storage = storage
        self.sessions = sessions
        self.secret_key = secret_key
        self.per_address = per_address
        self.window_s = window_s
        self.account_free = account_free
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.memory_s = memory_s

    def _key(self, address: str) -> str:
        return keyed_digest(self.secret_key, "client", address)

    def retry_after(self, address: str) -> float:
        """Seconds ``address`` must wait before its next attempt is checked (0: try now)."""
        now = clock()
        since_login = max(now - self.memory_s, self.sessions.last_login() or 0.0)
        with self.storage.reading() as s:
            mine = s.scalars(
                select(ThrottleEvent.at)
                .where(ThrottleEvent.scope == self.SCOPE, ThrottleEvent.key == self._key(address),
                       ThrottleEvent.at > now - self.window_s)
                .order_by(ThrottleEvent.at)
            ).all()
            failures, last = s.execute(
                select(func.count(), func.max(ThrottleEvent.at))
                .where(ThrottleEvent.scope == self.SCOPE, ThrottleEvent.at > since_login)
            ).one()
        wait = 0.0
        if len(mine) >= self.per_address:
            wait = mine[len(mine) - self.per_address] + self.window_s - now
        if failures >= self.account_free:
            # The exponent is capped before 2 ** n can outgrow a float.
            delay = min(self.base_delay_s * 2.0 ** min(failures - self.account_free, 60), self.max_delay_s)
            wait = max(wait, last + delay - now)
        return max(wait, 0.0)

    def failed(self, address: str) -> None:
        now = clock()
        with self.storage.writing() as s:
            s.execute(delete(ThrottleEvent).where(
                ThrottleEvent.scope == self.SCOPE, ThrottleEvent.at < now - max(self.window_s, self.memory_s)
            ))
            s.add(ThrottleEvent(scope=self.SCOPE, key=self._key(address), at=now))

    def succeeded(self, address: str) -> None:
        """Forget ``address``'s failures (the account's are forgotten through the new session)."""
        with self.storage.writing() as s:
            s.execute(delete(ThrottleEvent).where(
                ThrottleEvent.scope == self.SCOPE, ThrottleEvent.key == self._key(address)
            ))
