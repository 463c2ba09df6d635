"""What participants see: welcome and consent, the test pages, the JSON save API and the audio."""

from __future__ import annotations

import hashlib
import logging
import math
from functools import cache

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from flask_wtf.csrf import CSRFError
from jinja2.utils import htmlsafe_json_dumps
from markupsafe import Markup
from sqlalchemy.exc import IntegrityError

from . import headphones, security
from .catalogue import Translator, catalogue, languages
from .errors import SubmissionError
from .planning import admit, new_token, participant_for_consent, start_participant
from .runtime import Earshot, TestRuntime
from .security import CSRF_HEADERS, csrf_problem, csrf_token_for, is_loopback, keyed_digest
from .storage.fast_path import AUDIO, CURRENT_PAGE, PARTICIPANT_ID
from .submissions import submit

log = logging.getLogger(__name__)

bp = Blueprint("participant", __name__)

COOKIE = "earshot_participant"
CONSENT_COOKIE = "earshot_consent"
"""A random nonce, set by the welcome page, that the consent form's CSRF token is tied to."""
COOKIE_MAX_AGE_S = 60 * 24 * 3600
MAX_CROWD_VALUE = 200


def _earshot() -> Earshot:
    return current_app.extensions["earshot"]


def _runtime(test: str) -> TestRuntime:
    rt = _earshot().tests.get(test)
    if rt is None:
        abort(404)
    return rt


# CSRF on participant pages: the token is an HMAC of a secret HttpOnly cookie (the participant's
# token, or before consent a nonce), not Flask-WTF's token in the signed session cookie, so a
# participant's requests need no session: decoding and re-signing it cost about a third of a test
# page's CPU time. Same guarantees: only this server can make the token, another site cannot read
# the cookie it is tied to, and over HTTPS the Referer must name this origin.
CSRF_EXEMPT_FROM_FLASK_WTF = ("start", "submit_page")
"""Views that run :func:`_check_csrf` themselves (create_app exempts them from Flask-WTF)."""


def _csrf_token(purpose: str, value: str) -> str:
    return csrf_token_for(current_app.secret_key, purpose, value)


def _check_csrf(purpose: str, value: str | None, presented: str | None) -> None:
    problem = csrf_problem(
        current_app.secret_key, purpose, value, presented,
        request.is_secure, request.referrer, f"https://{request.host}/",
    )
    if problem:
        raise CSRFError(problem)


def _set_cookie(response, test: str, name: str, value: str, max_age: int | None) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=f"/t/{test}/",
        httponly=True,
        samesite="Lax",
        secure=current_app.config["SESSION_COOKIE_SECURE"],
    )


def _language(rt: TestRuntime, requested: str | None) -> str:
    return requested if requested in languages() else rt.stim.settings.language


@bp.get("/t/<test>/")
def welcome(test: str):
    rt = _runtime(test)
    known = request.cookies.get(COOKIE)
    if known and rt.storage.run_fast(
        lambda conn: conn.first(PARTICIPANT_ID, {"token": known, "test": rt.stim.name}), write=False
    ):
        return redirect(url_for(".page", test=test))
    cfg = rt.stim.settings
    crowd = {k: request.args[k][:MAX_CROWD_VALUE] for k in cfg.crowd_parameters if k in request.args}
    lang = _language(rt, request.args.get("lang"))
    nonce = request.cookies.get(CONSENT_COOKIE) or new_token()
    token = _csrf_token("consent", nonce)
    response = make_response(render_template(
        "welcome.html", t=Translator(lang), cfg=cfg, test=test, crowd=crowd, lang=lang, error=None, csrf_token=lambda: token
    ))
    _set_cookie(response, test, CONSENT_COOKIE, nonce, None)
    return response


@bp.post("/t/<test>/start")
def start(test: str):
    rt = _runtime(test)
    nonce = request.cookies.get(CONSENT_COOKIE)
    _check_csrf("consent", nonce, request.form.get("csrf_token"))
    cfg = rt.stim.settings
    crowd = {k: request.form[k][:MAX_CROWD_VALUE] for k in cfg.crowd_parameters if request.form.get(k)}
    lang = _language(rt, request.form.get("lang"))
    if request.form.get("consent") != "yes":
        t = Translator(lang)
        token = _csrf_token("consent", nonce)
        return render_template(
            "welcome.html", t=t, cfg=cfg, test=test, crowd=crowd, lang=lang, error=t("consent_required"),
            csrf_token=lambda: token,
        ), 400
    known = request.cookies.get(COOKIE)
    user_agent = request.headers.get("User-Agent", "")
    address = request.remote_addr or ""
    # Loopback: the experimenter's own tools, or a reverse proxy not declared in proxy_count
    # (every participant would share its address, and one limit).
    client_key = None if is_loopback(address) else keyed_digest(current_app.secret_key, "client", address)

    def create(conn):
        # One participant per browser: its participant cookie, or else the consent nonce it
        # consented with (a double click, a second tab, a resent form) finds the one it has.
        if known and conn.first(PARTICIPANT_ID, {"token": known, "test": rt.stim.name}):
            return "known", None
        token = participant_for_consent(conn, rt.stim.name, nonce)
        if token is not None:
            return "again", token
        if client_key is not None:
            wait = admit(conn, rt.stim, client_key, security.clock())
            if wait:
                return "limited", wait
        return "new", start_participant(conn, rt.stim, crowd, lang, user_agent, consent_nonce=nonce)

    for attempt in range(2):
        try:
            outcome, value = rt.storage.run_fast(create, write=True)
            break
        except IntegrityError:
            # A concurrent request with the same nonce (PostgreSQL lets both transactions run)
            # created the participant first; the second pass finds it.
            if attempt == 1:
                raise
    if outcome == "limited":
        seconds = math.ceil(value)
        log.warning("new participants from one address over the limit for test %s", test)
        unit = "second" if seconds == 1 else "seconds"
        message = f"Too many new participants from your network address. Try again in {seconds} {unit}."
        response = make_response(
            render_template("error.html", t=Translator(lang), lang=lang, status=429, message=message), 429
        )
        response.headers["Retry-After"] = str(seconds)
        return response
    response = redirect(url_for(".page", test=test))
    if outcome == "known":  # already a participant (consented twice, in two tabs)
        return response
    _set_cookie(response, test, COOKIE, value, COOKIE_MAX_AGE_S)
    return response


@bp.after_request
def _no_store_pages(response):
    # Test pages depend on what was submitted: Back or a reload must ask the server again.
    # (Audio sets its own private caching.)
    if response.mimetype == "text/html":
        response.headers["Cache-Control"] = "no-store"
    return response


@cache
def _messages_json(language: str) -> str:
    # The whole catalogue goes into every page's data; serialise it once per language.
    return htmlsafe_json_dumps(catalogue(language))


def _page_data_json(data: dict, language: str) -> Markup:
    """``data`` plus the message catalogue as JSON that is safe inside a <script> element."""
    head = htmlsafe_json_dumps(data)
    return Markup(f'{head[:-1]}, "messages": {_messages_json(language)}}}')


_CSRF_MARK = "\x00earshot-csrf\x00"
_DATA_MARK = "\x00earshot-data\x00"


def _render_page(template: str, key: tuple, data_json: Markup, csrf: str, **ctx) -> Response:
    """``template`` rendered around this request's CSRF token and page data.

    A test page's HTML depends only on the app, the test, the language and the page's shape
    (``key``), never on the participant: it is rendered once per shape with markers where the
    token and the data go, kept in the app's :class:`Earshot`, and each request fills them in.
    (No blindness risk: the audio tokens and everything else per participant live in the data,
    which is filled in per request.) While templates reload on edits (development, debug) every
    request renders afresh, so an edited template shows at the next request.
    """
    if current_app.jinja_env.auto_reload:
        html = render_template(template, csrf_token=lambda: _CSRF_MARK, data_json=Markup(_DATA_MARK), **ctx)
    else:
        key = (template, *key)
        rendered = _earshot().rendered_pages
        html = rendered.get(key)
        if html is None:
            html = render_template(template, csrf_token=lambda: _CSRF_MARK, data_json=Markup(_DATA_MARK), **ctx)
            rendered[key] = html
    return make_response(html.replace(_CSRF_MARK, csrf, 1).replace(_DATA_MARK, data_json, 1))


def _test_urls(test: str) -> tuple[str, str, str]:
    """(page, submit, audio prefix) URLs of ``test``; they change only with the mount point."""
    key = (request.script_root, test)
    cached = _earshot().test_urls
    urls = cached.get(key)
    if urls is None:
        urls = cached[key] = (
            url_for(".page", test=test), url_for(".submit_page", test=test), url_for(".audio", test=test, token="-")[:-1]
        )
    return urls


@bp.get("/t/<test>/page")
def page(test: str):
    rt = _runtime(test)
    cfg = rt.stim.settings
    token = request.cookies.get(COOKIE)
    row = None
    if token:
        params = {"token": token, "test": rt.stim.name}
        row = rt.storage.run_fast(lambda conn: conn.first(CURRENT_PAGE, params), write=False)
    if row is None:
        return redirect(url_for(".welcome", test=test))
    lang = row.language
    t = Translator(lang)
    csrf = _csrf_token("participant", token)
    if row.stopped:
        return render_template("stopped.html", t=t, cfg=cfg, lang=lang, csrf_token=lambda: csrf)
    if row.kind is None:
        code = cfg.completion_code
        link = cfg.completion_redirect.replace("{code}", code or "") if cfg.completion_redirect else None
        return render_template("thanks.html", t=t, cfg=cfg, lang=lang, code=code, link=link, csrf_token=lambda: csrf)

    page_url, submit_url, audio_prefix = _test_urls(test)
    data = {
        "kind": row.kind,
        "position": row.position,
        "submit_url": submit_url,
        "next_url": page_url,
    }
    ctx = {"t": t, "cfg": cfg, "lang": lang, "page": row, "csrf": csrf}
    if row.kind in ("training", "trial"):
        sounds = [
            {"label": chr(ord("A") + i), "stimulus": tok, "url": audio_prefix + tok}
            for i, tok in enumerate(row.tokens[1:])
        ]
        data.update(
            reference=audio_prefix + row.tokens[0],
            sounds=sounds,
            gain_db=row.volume_gain_db or 0.0,
            enforce={
                "all_played": cfg.enforce.all_played,
                "all_rated": cfg.enforce.all_rated,
                "one_at_100": cfg.enforce.one_at_100,
            },
        )
        shape = (test, lang, row.kind, row.n, row.total, len(sounds))
        return _render_page("mushra.html", shape, _page_data_json(data, lang), sounds=sounds, n=row.n, total=row.total, **ctx)
    if row.kind == "headphones":
        data["rounds"] = [audio_prefix + tok for tok in row.tokens]
        data["on_failure"] = cfg.headphone_check.on_failure
        shape = (test, lang, len(data["rounds"]))
        return _render_page("headphones.html", shape, _page_data_json(data, lang), rounds=data["rounds"], **ctx)
    if row.kind == "volume":
        data["sound"] = audio_prefix + row.tokens[0]
        return _render_page("volume.html", (test, lang), _page_data_json(data, lang), **ctx)
    return _render_page("questionnaire.html", (test, lang), _page_data_json(data, lang), fields=cfg.questionnaire, **ctx)


def _json_error(status: int, code: str, message: str):
    return jsonify(error=code, message=message), status


@bp.post("/t/<test>/api/page")
def submit_page(test: str):
    rt = _runtime(test)
    token = request.cookies.get(COOKIE)
    _check_csrf("participant", token, next((v for h in CSRF_HEADERS if (v := request.headers.get(h))), None))
    body = request.get_json(silent=True)
    if body is None:
        return _json_error(400, "malformed_json", "expected a JSON object in the request body (Content-Type: application/json)")
    for attempt in range(2):
        try:
            result = submit(rt.storage, rt.stim, token, body)
            break
        except SubmissionError as exc:
            return _json_error(exc.status, exc.code, exc.message)
        except IntegrityError:
            # A concurrent retry of the same page won the race; the second pass answers it as a replay.
            if attempt == 1:
                return _json_error(409, "conflict", "the page was submitted concurrently; reload the page")
    result["next_url"] = _test_urls(test)[0]
    return jsonify(result)


@bp.get("/t/<test>/audio/<token>")
def audio(test: str, token: str):
    rt = _runtime(test)
    participant = request.cookies.get(COOKIE)
    if not participant:
        abort(404)
    params = {"audio": token, "token": participant, "test": rt.stim.name}
    # The token's page, only if the token is this participant's.
    page = rt.storage.run_fast(lambda conn: conn.first(AUDIO, params), write=False)
    if page is None:
        abort(404)
    max_age = _earshot().settings.audio_max_age_s
    etag = hashlib.sha256(f"{current_app.secret_key}:{token}".encode()).hexdigest()[:32]
    if page.kind == "headphones":
        rounds = page.setup["rounds"]
        if not 0 <= page.slot < len(rounds):
            abort(404)
        hc = rt.stim.settings.headphone_check
        body = headphones.round_wav(rounds[page.slot], tone_hz=hc.tone_hz)
        response = make_response(body)
        response.headers["Content-Type"] = "audio/wav"
        response.set_etag(etag)
        response.headers["Cache-Control"] = f"private, max-age={max_age}"
        return response.make_conditional(request, accept_ranges=True)
    trial = rt.stim.trial(page.trial)
    path = trial.reference if page.slot == -1 else trial.condition(page.condition_order[page.slot]).path
    response: Response = send_file(
        path, mimetype="audio/wav", conditional=True, etag=etag, max_age=max_age, last_modified=None
    )
    # Per-participant URLs: shared caches must not keep them.
    response.headers["Cache-Control"] = f"private, max-age={max_age}"
    response.headers.pop("Last-Modified", None)
    # send_file names the file in Content-Disposition; that would reveal the condition.
    response.headers.pop("Content-Disposition", None)
    return response
