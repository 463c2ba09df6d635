"""The experimenter's pages under ``/admin``: login, live figures, exclusions and exports."""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass
from datetime import timedelta

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from sqlalchemy import exists, func, select

from .exports import FORMATS, export, participant_rows, rating_rows
from .live_stats import condition_summaries, hidden_reference_failures
from .security import AdminSessions, LoginThrottle, keyed_digest, verify_password
from .storage import Page, Participant, ParticipantEvent, Storage, database_url_for

log = logging.getLogger(__name__)

bp = Blueprint("admin", __name__, url_prefix="/admin")

SESSION_LIFETIME = timedelta(hours=12)
MEDIA_TYPES = {"ratings": "text/csv", "participants": "text/csv", "mushra": "text/csv", "json": "application/json"}
FILE_NAMES = {"ratings": "ratings.csv", "participants": "participants.csv", "mushra": "mushra.csv", "json": "results.json"}


@bp.after_request
def _no_store(response):
    # Admin pages hold participants' data: keep them out of every cache.
    response.headers["Cache-Control"] = "no-store"
    return response


def _earshot():
    return current_app.extensions["earshot"]


@dataclass
class AdminState:
    """Admin sessions and login limits of one app, in ``app.extensions["earshot_admin"]``."""

    sessions: AdminSessions
    throttle: LoginThrottle


def _admin_storage(earshot) -> Storage:
    """The database of admin sessions and login failures: the shared database when there is
    one, else ``<instance folder>/admin.db`` (they belong to no test's SQLite file)."""
    settings = earshot.settings
    if settings.database_url:
        url = database_url_for("", settings.results_dir, settings.database_url)
    else:
        url = f"sqlite:///{(settings.instance_dir / 'admin.db').resolve()}"
    storage = earshot._storages.get(url)
    if storage is None:
        storage = Storage(url, settings.sqlite_synchronous)
        storage.initialise()
        # Registered with the tests' databases so that Earshot.dispose() closes it too.
        earshot._storages[url] = storage
    return storage


@bp.record_once
def _setup(state) -> None:
    app = state.app
    # The cookie's own expiry; the session's lifetime is enforced server-side (AdminSessions).
    app.config["PERMANENT_SESSION_LIFETIME"] = SESSION_LIFETIME
    earshot = app.extensions["earshot"]
    storage = _admin_storage(earshot)
    sessions = AdminSessions(storage, SESSION_LIFETIME.total_seconds())
    throttle = LoginThrottle(
        storage, sessions, app.secret_key, earshot.settings.login_attempts_per_window, earshot.settings.login_window_s
    )
    app.extensions["earshot_admin"] = AdminState(sessions, throttle)


def _admin() -> AdminState:
    return current_app.extensions["earshot_admin"]


def _password_tag(password_hash: str | None) -> str | None:
    return keyed_digest(current_app.secret_key, "admin-password", password_hash) if password_hash else None


def _logged_in() -> bool:
    tag = _password_tag(_earshot().admin_password_hash)
    return _admin().sessions.valid(session.get("admin_sid"), session.get("admin_issued"), tag)


def _wants_json() -> bool:
    return "/api/" in request.path or request.is_json or request.accept_mimetypes.best == "application/json"


def login_required(view):
    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if not _logged_in():
            # A stale cookie (logged out, expired, password changed) is dropped from the browser.
            session.clear()
            if _wants_json():
                return jsonify(error="login_required", message="log in at /admin/login first"), 401
            return redirect(url_for("admin.login", next=request.path))
        g.admin = True
        return view(*args, **kwargs)

    return wrapped


def _wait_text(seconds: int) -> str:
    if seconds == 1:
        return "1 second"
    if seconds < 90:
        return f"{seconds} seconds"
    return f"{math.ceil(seconds / 60)} minutes"


@bp.route("/login", methods=["GET", "POST"])
def login():
    password_hash = _earshot().admin_password_hash
    configured = password_hash is not None
    error = None
    status = 200
    headers = {}
    if request.method == "POST":
        admin = _admin()
        client = request.remote_addr or "unknown"
        wait = admin.throttle.retry_after(client)
        if wait > 0:
            seconds = math.ceil(wait)
            error = f"Too many failed attempts. Try again in {_wait_text(seconds)}."
            status = 429
            headers["Retry-After"] = str(seconds)
            log.warning("admin login from %s refused unchecked: rate limit, %d s to wait", client, seconds)
        elif verify_password(password_hash, request.form.get("password", "")):
            admin.throttle.succeeded(client)
            sid, issued_at = admin.sessions.open(_password_tag(password_hash))
            session.clear()
            session["admin_sid"] = sid
            session["admin_issued"] = issued_at
            session.permanent = True
            target = request.args.get("next", "")
            # Only local paths: an open redirect would help phishing.
            if not target.startswith("/admin") or target.startswith("//"):
                target = url_for("admin.index")
            return redirect(target)
        else:
            admin.throttle.failed(client)
            log.warning("failed admin login from %s", client)
            error = "Wrong password."
            status = 401
    return render_template("admin/login.html", error=error, configured=configured), status, headers


@bp.post("/logout")
def logout():
    _admin().sessions.end(session.get("admin_sid"))
    session.clear()
    return redirect(url_for("admin.login"))


@bp.get("/")
@login_required
def index():
    tests = []
    for name, rt in sorted(_earshot().tests.items()):
        with rt.storage.reading() as s:
            opened = s.scalar(select(func.count()).where(Participant.test == name))
            # Started: submitted a page. Opening the link and consenting alone (a bot, a closed
            # tab) creates a participant too; those are shown apart.
            started = s.scalar(select(func.count()).where(
                Participant.test == name,
                exists().where(Page.participant_id == Participant.id, Page.submitted_at.is_not(None)),
            ))
            finished = s.scalar(
                select(func.count()).where(Participant.test == name, Participant.finished_at.is_not(None))
            )
        tests.append({
            "name": name, "title": rt.stim.settings.title, "started": started, "opened_only": opened - started,
            "finished": finished,
        })
    return render_template("admin/index.html", tests=tests)


def _runtime(test: str):
    rt = _earshot().tests.get(test)
    if rt is None:
        abort(404)
    return rt


@bp.get("/<test>/")
@login_required
def dashboard(test: str):
    rt = _runtime(test)
    participants = participant_rows(rt.storage, rt.stim)
    rows = rating_rows(rt.storage, rt.stim)
    summaries = condition_summaries(rows)
    failures = hidden_reference_failures(rows)
    started = sum(1 for p in participants if p["pages_submitted"])
    finished = sum(1 for p in participants if p["finished_at"])
    return render_template(
        "admin/dashboard.html",
        test=test,
        title=rt.stim.settings.title,
        participants=participants,
        summaries=summaries,
        failures=failures,
        started=started,
        opened_only=len(participants) - started,
        finished=finished,
        formats=FORMATS,
        participant_url=url_for("participant.welcome", test=test, _external=True),
    )


def _set_excluded(test: str, code: str, excluded: bool):
    rt = _runtime(test)
    reason = request.form.get("reason", "").strip()[:500]
    with rt.storage.writing() as s:
        p = s.scalar(select(Participant).where(Participant.test == test, Participant.code == code))
        if p is None:
            abort(404)
        p.excluded = excluded
        s.add(ParticipantEvent(participant_id=p.id, action="exclude" if excluded else "restore", reason=reason))
    flash(f"{code} {'excluded' if excluded else 'restored'}.")
    return redirect(url_for("admin.dashboard", test=test))


@bp.post("/<test>/participants/<code>/exclude")
@login_required
def exclude(test: str, code: str):
    return _set_excluded(test, code, True)


@bp.post("/<test>/participants/<code>/restore")
@login_required
def restore(test: str, code: str):
    return _set_excluded(test, code, False)


@bp.get("/<test>/export/<fmt>")
@login_required
def download(test: str, fmt: str):
    rt = _runtime(test)
    if fmt not in FORMATS:
        abort(404)
    text = export(rt.storage, rt.stim, fmt, include_excluded=request.args.get("include_excluded") == "1")
    return Response(
        text,
        mimetype=MEDIA_TYPES[fmt],
        headers={
            "Content-Disposition": f'attachment; filename="{test}-{FILE_NAMES[fmt]}"',
            "Cache-Control": "no-store",
        },
    )
