"""Creating participants: one per browser (also under a double click), a per-address rate limit,
and participants who never submitted a page neither skew the balanced assignment nor count as
started."""

from __future__ import annotations

import http.client
import re
import threading
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from sqlalchemy import func, select, update

import webapp.security as security
from tests.webapp.admin_credentials import ADMIN_PASSWORD
from tests.webapp.participant_driver import Driver, csrf_token
from tests.webapp.stimulus_sets import make_stimulus_set
from webapp.storage import AudioToken, Page, Participant, utcnow

QUIET = "headphone_check: {enabled: false}\nvolume_check: false\n"


def storage_of(app):
    return app.extensions["earshot"].tests["demo"].storage


def count(app, what=Participant) -> int:
    with storage_of(app).reading() as s:
        return s.scalar(select(func.count()).select_from(what))


def consent(client):
    """Open the welcome page and consent; the response of the consent form."""
    html = client.get("/t/demo/").get_data(as_text=True)
    return client.post("/t/demo/start", data={"consent": "yes", "csrf_token": csrf_token(html)})


def participant_cookie(response) -> str | None:
    for header in response.headers.getlist("Set-Cookie"):
        if header.startswith("earshot_participant="):
            return header.split(";", 1)[0].split("=", 1)[1]
    return None


def test_a_browser_gets_one_participant(stim_root, make_app, backend):
    app = make_app(make_stimulus_set(stim_root, n_trials=1, test_yaml=QUIET), **backend)
    client = app.test_client()
    html = client.get("/t/demo/").get_data(as_text=True)
    form = {"consent": "yes", "csrf_token": csrf_token(html)}
    first = client.post("/t/demo/start", data=form)
    token = participant_cookie(first)
    assert first.status_code == 302 and token
    # again with the participant cookie (a second tab): no new participant, no new cookie
    again = client.post("/t/demo/start", data=form)
    assert again.status_code == 302 and participant_cookie(again) is None
    # again without it (the form resent before the cookie was stored): the same participant
    client.delete_cookie("earshot_participant", path="/t/demo/")
    resent = client.post("/t/demo/start", data=form)
    assert resent.status_code == 302 and participant_cookie(resent) == token
    assert count(app) == 1


def test_a_double_click_creates_one_participant(stim_root, make_app, live_server, backend):
    app = make_app(make_stimulus_set(stim_root, n_trials=2, test_yaml=QUIET), **backend)
    server = live_server(app)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("GET", "/t/demo/")
    r = conn.getresponse()
    html = r.read().decode()
    nonce = re.search(r"earshot_consent=([^;]+)", r.getheader("Set-Cookie")).group(1)
    body = urlencode({"consent": "yes", "csrf_token": csrf_token(html)})
    n = 5
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def click(i):
        c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        headers = {"Cookie": f"earshot_consent={nonce}", "Content-Type": "application/x-www-form-urlencoded"}
        barrier.wait()
        c.request("POST", "/t/demo/start", body=body, headers=headers)
        resp = c.getresponse()
        resp.read()
        cookie = re.search(r"earshot_participant=([^;]+)", resp.getheader("Set-Cookie") or "")
        results[i] = (resp.status, cookie.group(1) if cookie else None)

    threads = [threading.Thread(target=click, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert [status for status, _ in results] == [302] * n
    tokens = {token for _, token in results}
    assert len(tokens) == 1 and None not in tokens  # every click lands on the one participant
    assert count(app) == 1
    with storage_of(app).reading() as s:
        assert s.scalar(select(Participant.token)) in tokens
        pages = s.scalar(select(func.count()).select_from(Page))
    # one participant's pages (training, 2 trials, questionnaire) and audio (reference + 5 conditions each)
    assert pages == 4 and count(app, AudioToken) == 3 * 6


@pytest.fixture
def at(monkeypatch):
    def _at(t: float) -> None:
        monkeypatch.setattr(security, "clock", lambda: t)

    return _at


def _from(app, address):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def test_new_participants_are_rate_limited_per_address(stim_root, make_app, backend, at):
    yaml = QUIET + "new_participants_per_address: 3\nnew_participants_window_s: 60\n"
    app = make_app(make_stimulus_set(stim_root, n_trials=1, test_yaml=yaml), **backend)
    t = 1_800_000_000.0
    at(t)
    browsers = [_from(app, "203.0.113.5") for _ in range(4)]
    first = [consent(b) for b in browsers[:3]]
    assert [r.status_code for r in first] == [302] * 3
    at(t + 10)
    r = consent(browsers[3])
    assert r.status_code == 429 and r.headers["Retry-After"] == "50"
    assert "Try again in 50 seconds" in r.get_data(as_text=True) and participant_cookie(r) is None
    assert count(app) == 3
    # a browser that already has its participant is not refused (here it lost the participant
    # cookie and consents again: its consent nonce finds its participant)
    browsers[0].delete_cookie("earshot_participant", path="/t/demo/")
    again = consent(browsers[0])
    assert again.status_code == 302 and participant_cookie(again) == participant_cookie(first[0])
    # other addresses have their own count; loopback (the experimenter, an undeclared proxy) none
    assert consent(_from(app, "198.51.100.1")).status_code == 302
    assert [consent(app.test_client()).status_code for _ in range(4)] == [302] * 4
    assert count(app) == 8
    # once the window has passed, the address may start again
    at(t + 61)
    assert consent(browsers[3]).status_code == 302
    assert count(app) == 9


def test_participants_who_never_submitted_a_page_stop_counting_for_the_balance(stim_root, make_app, backend):
    yaml = QUIET + "trials_per_participant: 1\nrandomise_trials: false\nabandoned_after_s: 1800\n"
    app = make_app(make_stimulus_set(stim_root, n_trials=3, test_yaml=yaml), **backend)
    storage = storage_of(app)
    drivers = []
    for _ in range(9):
        d = Driver(app.test_client())
        d.start()
        drivers.append(d)

    def assigned() -> dict[int, str]:
        with storage.reading() as s:
            return dict(s.execute(select(Page.participant_id, Page.trial).where(Page.kind == "trial")).all())

    by_trial: dict[str, list[int]] = {}
    for pid, trial in sorted(assigned().items()):
        by_trial.setdefault(trial, []).append(pid)
    assert sorted(len(v) for v in by_trial.values()) == [3, 3, 3]  # balanced so far
    gone, working, waiting = sorted(by_trial)
    # t02's listeners submitted their first page; t01's and t02's consented two hours ago;
    # t03's just now (still on their first page): t01's listeners left without a page.
    ids = {p: i for i, p in enumerate(sorted(assigned()))}
    for pid in by_trial[working]:
        d = drivers[ids[pid]]
        _, data = d.current()
        assert d.post(d.answer(data, storage)).status_code == 200
    with storage.writing() as s:
        s.execute(
            update(Participant)
            .where(Participant.id.in_(by_trial[gone] + by_trial[working]))
            .values(created_at=utcnow() - timedelta(hours=2))
        )
    before = set(assigned())
    for _ in range(3):
        Driver(app.test_client()).start()
    new = {pid: trial for pid, trial in assigned().items() if pid not in before}
    assert sorted(new.values()) == [gone] * 3


def test_started_means_submitted_a_page(stim_root, make_app, backend):
    app = make_app(make_stimulus_set(stim_root, n_trials=1, test_yaml=QUIET), **backend)
    done = Driver(app.test_client())
    done.start()
    done.complete(storage_of(app))
    Driver(app.test_client()).start()  # opened the link and consented, nothing more
    admin = app.test_client()
    html = admin.get("/admin/login").get_data(as_text=True)
    assert admin.post("/admin/login", data={"password": ADMIN_PASSWORD, "csrf_token": csrf_token(html)}).status_code == 302
    dashboard = admin.get("/admin/demo/").get_data(as_text=True)
    assert "Started: 1<" in dashboard and "Finished: 1<" in dashboard and "Opened only: 1<" in dashboard
    index = admin.get("/admin/").get_data(as_text=True)
    assert re.search(r">demo</a></td><td>[^<]*</td><td>1</td><td>1</td><td>1</td>", index)


def test_a_version_1_database_gains_the_consent_nonce(tmp_path, backend):
    from sqlalchemy import inspect, text
    from sqlalchemy.exc import IntegrityError

    from webapp.storage import SCHEMA_VERSION, Storage, database_url_for

    url = database_url_for("demo", tmp_path, backend.get("database_url"))
    storage = Storage(url)
    storage.initialise()
    # Make it a version-1 database: no consent_nonce column (nor its index).
    with storage.engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_participants_consent_nonce"))
        conn.execute(text("ALTER TABLE participants DROP COLUMN consent_nonce"))
        conn.execute(text("UPDATE schema_info SET value = '1' WHERE key = 'schema_version'"))
    storage.dispose()
    storage = Storage(url)
    try:
        storage.initialise()
        assert storage.schema_version() == SCHEMA_VERSION == 2
        assert "consent_nonce" in {c["name"] for c in inspect(storage.engine).get_columns("participants")}
        row = {"test": "demo", "code": "P1", "language": "en", "crowd": {}, "consent_nonce": "n"}
        with storage.writing() as s:
            s.add(Participant(token="a", **row))
        with pytest.raises(IntegrityError), storage.writing() as s:
            s.add(Participant(token="b", **row))
    finally:
        storage.dispose()
