"""The participants' hot path made cheap without weakening it: CSRF tokens tied to the participant's
cookie (no Flask session), security headers added as WSGI middleware, and SQL run through
``Storage.run_fast`` (statements compiled once, bare DBAPI cursors), on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from base64 import urlsafe_b64encode
from datetime import UTC, datetime

import pytest
from flask import Flask
from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError

from tests.webapp.participant_driver import Driver, csrf_token
from tests.webapp.stimulus_sets import make_stimulus_set
from webapp.security import CONTENT_SECURITY_POLICY, add_security_headers, csrf_token_for
from webapp.storage import Page, Participant, Rating, utc_iso

QUIET = "headphone_check: {enabled: false}\nvolume_check: false\n"


def storage_of(app):
    return app.extensions["earshot"].tests["demo"].storage


def count(storage, table) -> int:
    with storage.reading() as s:
        return s.scalar(select(func.count()).select_from(table))


def test_csrf_token_is_an_hmac_of_the_cookie():
    # Independent computation: HMAC-SHA256 (RFC 2104) of the documented message, base64url, no padding.
    expected = urlsafe_b64encode(
        hmac.new(b"k" * 32, b"earshot-csrf\x00participant\x00tok123", hashlib.sha256).digest()
    ).rstrip(b"=").decode()
    assert csrf_token_for("k" * 32, "participant", "tok123") == expected
    assert len(expected) == 43
    assert csrf_token_for("k" * 32, "consent", "tok123") != expected
    assert csrf_token_for("j" * 32, "participant", "tok123") != expected


def test_consent_form_csrf(stim_root, make_app):
    app = make_app(make_stimulus_set(stim_root, n_trials=1, test_yaml=QUIET))
    alice, mallory = app.test_client(), app.test_client()
    html = alice.get("/t/demo/").get_data(as_text=True)
    token = csrf_token(html)
    nonce = alice.get_cookie("earshot_consent", path="/t/demo/")
    assert nonce is not None and nonce.http_only
    assert token == csrf_token_for(app.secret_key, "consent", nonce.value)
    mallory_token = csrf_token(mallory.get("/t/demo/").get_data(as_text=True))
    refused = [
        alice.post("/t/demo/start", data={"consent": "yes"}),  # no token
        alice.post("/t/demo/start", data={"consent": "yes", "csrf_token": mallory_token}),  # another browser's
        app.test_client().post("/t/demo/start", data={"consent": "yes", "csrf_token": token}),  # no nonce cookie
    ]
    for r in refused:
        assert r.status_code == 400 and "CSRF" in r.get_data(as_text=True)
    assert count(storage_of(app), Participant) == 0
    assert alice.post("/t/demo/start", data={"consent": "yes", "csrf_token": token}).status_code == 302
    assert count(storage_of(app), Participant) == 1


def test_page_csrf_is_tied_to_the_participant_and_needs_no_session(stim_root, make_app, backend):
    app = make_app(make_stimulus_set(stim_root, n_trials=2, test_yaml=QUIET), **backend)
    me, other = Driver(app.test_client()), Driver(app.test_client())
    me.start()
    other.start()
    _, data = me.current()
    other.current()
    mine = me.client.get_cookie("earshot_participant", path="/t/demo/").value
    assert me.csrf == csrf_token_for(app.secret_key, "participant", mine)
    storage = storage_of(app)
    raw = json.dumps({**Driver.mushra_body(data), "idempotency_key": "k" * 12}).encode()

    def post(headers):
        return me.client.post("/t/demo/api/page", data=raw, headers={"Content-Type": "application/json", **headers})

    forged = [
        {},  # no token
        {"X-CSRFToken": ""},
        {"X-CSRFToken": other.csrf},  # another participant's
        {"X-CSRFToken": csrf_token_for(app.secret_key, "consent", mine)},  # same cookie, other purpose
        {"X-CSRFToken": me.csrf[:-2] + ("AA" if me.csrf[-2:] != "AA" else "BB")},
    ]
    for headers in forged:
        r = post(headers)
        assert r.status_code == 400 and r.json["error"] == "csrf", (headers, r.json)
    assert count(storage, Rating) == 0
    # Flask-WTF's second header name works too, as before
    r = post({"X-CSRFToken": "", "X-CSRF-Token": me.csrf})
    assert r.status_code == 200 and r.json["replayed"] is False
    assert count(storage, Rating) == len(data["sounds"])
    me.complete()
    # the whole flow never sets Flask's session cookie: participants' requests decode none
    assert me.client.get_cookie("earshot_session") is None


def test_api_csrf_over_https_checks_the_referrer(stim_root, make_app):
    app = make_app(make_stimulus_set(stim_root, n_trials=1, test_yaml=QUIET), secure_cookies=True, proxy_count=1)
    proxied = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "listen.example.org", "X-Forwarded-For": "203.0.113.9"}
    client = app.test_client()
    html = client.get("/t/demo/", headers=proxied).get_data(as_text=True)
    r = client.post(
        "/t/demo/start", data={"consent": "yes", "csrf_token": csrf_token(html)},
        headers={**proxied, "Referer": "https://listen.example.org/t/demo/"},
    )
    assert r.status_code == 302
    d = Driver(client)
    html = client.get("/t/demo/page", headers=proxied).get_data(as_text=True)
    d.csrf = csrf_token(html)
    data = json.loads(html.split('id="page-data">', 1)[1].split("</script>", 1)[0])
    body = Driver.mushra_body(data)
    for referer, problem in ((None, "referrer header is missing"), ("https://evil.example.org/t/demo/", "does not match")):
        h = dict(proxied, **({"Referer": referer} if referer else {}))
        r = d.post(body, headers=h)
        assert r.status_code == 400 and problem in r.json["message"]
    r = d.post(body, headers={**proxied, "Referer": "https://listen.example.org/t/demo/page"})
    assert r.status_code == 200


def test_security_header_middleware_overrides_but_keeps_a_views_csp():
    app = Flask(__name__)

    @app.get("/own")
    def own():
        return "x", 200, {"Content-Security-Policy": "default-src 'none'", "X-Frame-Options": "SAMEORIGIN"}

    @app.get("/plain")
    def plain():
        return "x"

    add_security_headers(app)
    client = app.test_client()
    r = client.get("/own")
    assert r.headers.getlist("Content-Security-Policy") == ["default-src 'none'"]
    assert r.headers.getlist("X-Frame-Options") == ["DENY"]
    r = client.get("/plain")
    assert r.headers.getlist("Content-Security-Policy") == [CONTENT_SECURITY_POLICY]
    assert r.headers["Permissions-Policy"] == "camera=(), microphone=(), geolocation=()"
    assert "Strict-Transport-Security" not in r.headers
    r = client.get("/missing")  # error responses carry them too
    assert r.status_code == 404 and r.headers["X-Content-Type-Options"] == "nosniff"


def test_run_fast_matches_the_orm_and_keeps_transactions(stim_root, make_app, backend):
    app = make_app(make_stimulus_set(stim_root, n_trials=2, test_yaml=QUIET), **backend)
    d = Driver(app.test_client())
    d.start()
    storage = storage_of(app)
    when = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)
    with storage.writing() as s:
        s.execute(update(Participant).values(volume_gain_db=-1.5, stopped=True, answers={"a": [1, "ü"]}))
        s.execute(update(Page).where(Page.position == 0).values(submitted_at=when, loop_used=True))
    columns = select(
        Participant.id, Participant.stopped, Participant.volume_gain_db, Participant.answers, Participant.created_at,
        Page.position, Page.tokens, Page.condition_order, Page.submitted_at, Page.loop_used, Page.setup,
    ).join(Page, Page.participant_id == Participant.id).order_by(Page.position)
    with storage.reading() as s:
        expected = [tuple(r) for r in s.execute(columns).all()]
    fast = storage.run_fast(lambda conn: conn.first(columns, {}), write=False)
    assert tuple(fast) == expected[0]
    assert fast.stopped is True and fast.volume_gain_db == -1.5 and fast.answers == {"a": [1, "ü"]}
    assert isinstance(fast.tokens, list) and fast.setup is None
    assert utc_iso(fast.submitted_at) == "2026-03-04T05:06:07.890Z"
    assert storage.run_fast(lambda conn: conn.first(columns.where(Page.position == 99), {}), write=False) is None

    page_id, participant_id = storage.run_fast(
        lambda conn: conn.first(select(Page.id, Page.participant_id).where(Page.position == 1), {}), write=False
    )
    row = {"page_id": page_id, "participant_id": participant_id, "trial": "t", "condition": "c", "score": 50.0,
           "condition_position": 1, "plays": 1, "listening_ms": 10}

    def insert_then_fail(conn):
        conn.executemany(insert(Rating.__table__), [row, {**row, "condition": "d"}])
        raise RuntimeError("refused after writing")

    with pytest.raises(RuntimeError):
        storage.run_fast(insert_then_fail, write=True)
    assert count(storage, Rating) == 0  # rolled back
    with pytest.raises(IntegrityError):  # the driver's error comes out as SQLAlchemy's
        storage.run_fast(lambda conn: conn.executemany(insert(Rating.__table__), [row, row]), write=True)
    assert count(storage, Rating) == 0
    storage.run_fast(lambda conn: conn.executemany(insert(Rating.__table__), [row]), write=True)
    assert count(storage, Rating) == 1
    changed = storage.run_fast(
        lambda conn: conn.execute(update(Page).where(Page.position == 1).values(duration_ms=7), {}), write=True
    )
    assert changed == 1


@pytest.mark.postgres
@pytest.mark.parametrize("same_key", [True, False])
def test_a_submission_racing_a_committed_one_is_a_replay_or_a_conflict(stim_root, make_app, postgres_url, same_key):
    """PostgreSQL, READ COMMITTED: another transaction submits the page after our lookup; our
    UPDATE waits for its row lock, finds the page submitted and answers from what it stored."""
    import psycopg

    app = make_app(make_stimulus_set(stim_root, n_trials=1, test_yaml=QUIET), database_url=postgres_url)
    d = Driver(app.test_client())
    d.start()
    _, data = d.current()
    storage = storage_of(app)
    with storage.reading() as s:
        page_id = s.scalar(select(Page.id).where(Page.position == data["position"]))
    key = "first-key-1234"
    other = psycopg.connect(postgres_url)  # its UPDATE opens a transaction that holds the row lock
    other.execute("UPDATE pages SET submitted_at = now(), idempotency_key = %s WHERE id = %s", (key, page_id))
    result = {}

    def post():
        t0 = time.monotonic()
        r = d.post(Driver.mushra_body(data), key=key if same_key else "second-key-1234")
        result.update(status=r.status_code, json=r.json, waited_s=time.monotonic() - t0)

    thread = threading.Thread(target=post)
    thread.start()
    time.sleep(0.5)
    assert thread.is_alive()  # our UPDATE waits for the other transaction
    other.commit()
    other.close()
    thread.join(10)
    assert result["waited_s"] >= 0.45
    if same_key:
        assert result["status"] == 200 and result["json"]["replayed"] is True
    else:
        assert result["status"] == 409 and result["json"]["error"] == "already_submitted"
    assert count(storage, Rating) == 0  # the waiting request stored nothing
    with storage.reading() as s:
        assert s.scalar(select(Page.idempotency_key).where(Page.id == page_id)) == key


@pytest.mark.postgres
def test_fast_connections_replace_ones_the_server_dropped(stim_root, make_app, postgres_url):
    import psycopg

    app = make_app(make_stimulus_set(stim_root, n_trials=1, test_yaml=QUIET), database_url=postgres_url)
    d = Driver(app.test_client())
    d.start()
    d.current()
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        killed = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()[0]
    assert killed >= 1  # this thread's kept connection among them
    _, data = d.current()  # a read on a dead connection: replaced, the page still shown
    assert data["kind"] == "training"
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    r = d.post(Driver.mushra_body(data))  # a write on a dead connection: BEGIN fails, run again
    assert r.status_code == 200 and r.json["replayed"] is False
    assert count(storage_of(app), Rating) == len(data["sounds"])
