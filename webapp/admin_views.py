"""The experimenter's pages under ``/admin``: login, live figures, exclusions and exports."""

from __future__ import annotations

import functools
import logging
from datetime import timedelta

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from sqlalchemy import func, select

from .exports import FORMATS, export, rating_rows
from .live_stats import condition_summaries, hidden_reference_failures
from .security import verify_password
from .storage import Participant, ParticipantEvent

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


def login_required(view):
    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if not session.get("admin"):
            return redirect(url_for("admin.login", next=request.path))
        return view(*args, **kwargs)

    return wrapped


@bp.route("/login", methods=["GET", "POST"])
def login():
    earshot = _earshot()
    configured = earshot.admin_password_hash is not None
    error = None
    status = 200
    if request.method == "POST":
        client = request.remote_addr or "unknown"
        if earshot.limiter.blocked(client):
            error = "Too many failed attempts. Wait a few minutes and try again."
            status = 429
        elif verify_password(earshot.admin_password_hash, request.form.get("password", "")):
            earshot.limiter.reset(client)
            session.clear()
            session["admin"] = True
            session.permanent = True
            current_app.permanent_session_lifetime = SESSION_LIFETIME
            target = request.args.get("next", "")
            # Only local paths: an open redirect would help phishing.
            if not target.startswith("/admin") or target.startswith("//"):
                target = url_for("admin.index")
            return redirect(target)
        else:
            earshot.limiter.failed(client)
            log.warning("failed admin login from %s", client)
            error = "Wrong password."
            status = 401
    return render_template("admin/login.html", error=error, configured=configured), status


@bp.post("/logout")
def logout():
    session.clear()
    return redirect(url_for("admin.login"))


@bp.get("/")
@login_required
def index():
    tests = []
    for name, rt in sorted(_earshot().tests.items()):
        with rt.storage.reading() as s:
            started = s.scalar(select(func.count()).where(Participant.test == name))
            finished = s.scalar(
                select(func.count()).where(Participant.test == name, Participant.finished_at.is_not(None))
            )
        tests.append({"name": name, "title": rt.stim.settings.title, "started": started, "finished": finished})
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
    from .exports import participant_rows

    participants = participant_rows(rt.storage, rt.stim)
    rows = rating_rows(rt.storage, rt.stim)
    summaries = condition_summaries(rows)
    failures = hidden_reference_failures(rows)
    started = len(participants)
    finished = sum(1 for p in participants if p["finished_at"])
    return render_template(
        "admin/dashboard.html",
        test=test,
        title=rt.stim.settings.title,
        participants=participants,
        summaries=summaries,
        failures=failures,
        started=started,
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
