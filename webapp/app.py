"""The application factory: ``create_app(settings)`` builds the Flask app serving every stimulus set."""

from __future__ import annotations

import logging

from flask import Flask, jsonify, render_template, request
from flask.json.provider import DefaultJSONProvider
from flask.sessions import SecureCookieSessionInterface
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from . import participant_views
from .admin_views import bp as admin_bp
from .catalogue import Translator
from .errors import StorageError
from .runtime import Earshot
from .security import add_security_headers
from .settings import Settings, load_settings, resolve_secret_key
from .typed_config import from_dict

log = logging.getLogger(__name__)


class _JSONProvider(DefaultJSONProvider):
    """Flask's JSON, with a body nested too deeply for the parser's recursion (``[[[...]]]``
    thousands deep) refused like any other malformed body: ``request.get_json`` turns a
    ValueError into its 400 (or None when silent), but a RecursionError would be a 500."""

    def loads(self, s, **kwargs):
        try:
            return super().loads(s, **kwargs)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None


class _SessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, minus the cost of building a signer for a request that
    carries no session cookie (every participant request: only the admin pages use the session)."""

    def open_session(self, app: Flask, request):
        if app.config["SESSION_COOKIE_NAME"] not in request.cookies:
            return self.session_class()
        return super().open_session(app, request)


def create_app(config: Settings | dict | None = None) -> Flask:
    """Build the app. ``config``: a :class:`Settings`, a mapping of its fields, or None to read
    the ``EARSHOT_*`` environment (and the file named by ``EARSHOT_SETTINGS``)."""
    if config is None:
        settings = load_settings()
    elif isinstance(config, Settings):
        settings = config
    else:
        settings = from_dict(Settings, dict(config), where="create_app config")

    app = Flask(__name__)
    app.json = _JSONProvider(app)
    app.config.update(
        SECRET_KEY=resolve_secret_key(settings),
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.secure_cookies,
        SESSION_COOKIE_NAME="earshot_session",
        # A participant may take an hour on one page; the token lives as long as the session.
        WTF_CSRF_TIME_LIMIT=None,
        JSON_SORT_KEYS=False,
        # None: Flask's default, templates re-read when edited while app.debug is on (also when
        # debug is turned on after this factory, as app.run(debug=True) does).
        TEMPLATES_AUTO_RELOAD=True if settings.development else None,
    )
    if settings.proxy_count:
        app.wsgi_app = ProxyFix(
            app.wsgi_app, x_for=settings.proxy_count, x_proto=settings.proxy_count, x_host=settings.proxy_count
        )
    app.extensions["earshot"] = Earshot(settings)
    app.session_interface = _SessionInterface()
    csrf = CSRFProtect(app)
    add_security_headers(app)

    app.register_blueprint(participant_views.bp)
    app.register_blueprint(admin_bp)
    for name in participant_views.CSRF_EXEMPT_FROM_FLASK_WTF:
        csrf.exempt(getattr(participant_views, name))

    def wants_json() -> bool:
        return "/api/" in request.path or request.is_json or request.accept_mimetypes.best == "application/json"

    def page_language() -> str:
        # Error pages under /t/<test>/ speak the test's language.
        test = (request.view_args or {}).get("test")
        runtime = app.extensions["earshot"].tests.get(test) if test else None
        return runtime.stim.settings.language if runtime else "en"

    def error_page(status: int, message: str):
        lang = page_language()
        return render_template("error.html", t=Translator(lang), lang=lang, status=status, message=message), status

    @app.errorhandler(CSRFError)
    def _csrf(exc: CSRFError):
        if wants_json():
            return jsonify(error="csrf", message=f"CSRF check failed: {exc.description}"), 400
        return error_page(400, exc.description)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        if wants_json():
            name = (exc.name or "error").lower().replace(" ", "_")
            return jsonify(error=name, message=exc.description), exc.code
        return error_page(exc.code, exc.description)

    @app.get("/favicon.ico")
    def _favicon():
        return "", 204

    @app.errorhandler(StorageError)
    def _storage(exc: StorageError):
        # 503, not 500: the participant's page keeps its answers and retries (earshot.js retries
        # every 5xx), and a load balancer reads it as "this server cannot serve now".
        # The details (a path, a process id) go to the log and /healthz, not to every visitor.
        log.error("%s %s refused: %s", request.method, request.path, exc)
        if wants_json():
            message = "the results cannot be stored right now; keep the page open, it sends the answers again"
            return jsonify(error="storage_unavailable", message=message), 503
        return error_page(503, "The results cannot be stored right now; please try again in a few minutes.")

    @app.get("/healthz")
    def _health():
        earshot = app.extensions["earshot"]
        problems = {}
        checked: dict[int, str | None] = {}  # tests sharing one PostgreSQL database: one check
        for name, runtime in sorted(earshot.tests.items()):
            key = id(runtime.storage)
            if key not in checked:
                checked[key] = runtime.storage.health(earshot.settings.integrity_check_interval_s)
            if checked[key] is not None:
                problems[name] = checked[key]
        if problems:
            reason = "; ".join(sorted(set(problems.values())))
            log.error("/healthz: %s", reason)
            return jsonify(ok=False, tests=sorted(earshot.tests), reason=reason, failing=sorted(problems)), 503
        return {"ok": True, "tests": sorted(earshot.tests)}

    return app


__all__ = ["create_app"]
