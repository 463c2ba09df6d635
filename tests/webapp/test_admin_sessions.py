"""Admin sessions are server-side (logout, expiry and a password change end them, also for a copied
cookie and after a restart) and the login limits hold per address and per account, across workers."""

from __future__ import annotations

import io
import sys
import time

import pytest

import webapp.security as security
from tests.webapp.admin_credentials import ADMIN_PASSWORD
from tests.webapp.participant_driver import csrf_token
from tests.webapp.stimulus_sets import make_stimulus_set
from webapp.__main__ import main as cli
from webapp.security import hash_password
from webapp.settings import load_settings, store_admin_password_hash

COOKIE = "earshot_session"
QUIET = "headphone_check: {enabled: false}\nvolume_check: false\n"
EXPORTS = ("ratings", "participants", "mushra", "json")


def login(client, password=ADMIN_PASSWORD):
    html = client.get("/admin/login").get_data(as_text=True)
    return client.post("/admin/login", data={"password": password, "csrf_token": csrf_token(html)})


def holding(app, cookie: str):
    """A browser of ``app`` holding the admin cookie ``cookie`` (copied, as a thief would)."""
    thief = app.test_client()
    thief.set_cookie(COOKIE, cookie)
    return thief


def copy_of(app, client):
    return holding(app, client.get_cookie(COOKIE).value)


def assert_admin(client):
    assert client.get("/admin/").status_code == 200
    for fmt in EXPORTS:
        assert client.get(f"/admin/demo/export/{fmt}").status_code == 200, fmt


def assert_refused(client):
    r = client.get("/admin/")
    assert r.status_code == 302 and "/admin/login" in r.headers["Location"]
    for fmt in EXPORTS:
        r = client.get(f"/admin/demo/export/{fmt}")
        assert r.status_code == 302 and "/admin/login" in r.headers["Location"], fmt
    r = client.get("/admin/demo/export/ratings", headers={"Accept": "application/json"})
    assert r.status_code == 401 and set(r.json) == {"error", "message"}


@pytest.fixture
def at(monkeypatch):
    """``at(t)``: the sessions' and limits' clock reads ``t`` (seconds since the epoch) from now on."""

    def _at(t: float) -> None:
        monkeypatch.setattr(security, "clock", lambda: t)

    return _at


def test_logout_ends_a_copied_session(stim_root, make_app, backend):
    app = make_app(make_stimulus_set(stim_root, n_trials=1, test_yaml=QUIET), **backend)
    admin = app.test_client()
    assert login(admin).status_code == 302
    stolen = admin.get_cookie(COOKIE).value
    assert_admin(holding(app, stolen))
    html = admin.get("/admin/").get_data(as_text=True)
    assert admin.post("/admin/logout", data={"csrf_token": csrf_token(html)}).status_code == 302
    assert_refused(holding(app, stolen))
    # the same cookie replayed after a restart (a new app on the same database) stays refused
    assert_refused(holding(make_app(stim_root / "demo", **backend), stolen))


def test_a_session_lasts_12_hours_from_login_also_after_a_restart(stim_root, make_app, backend, at, monkeypatch):
    folder = make_stimulus_set(stim_root, n_trials=1, test_yaml=QUIET)
    app = make_app(folder, **backend)
    now = time.time()
    old, recent = app.test_client(), app.test_client()
    at(now - 13 * 3600)
    assert login(old).status_code == 302
    at(now - 11 * 3600)
    assert login(recent).status_code == 302
    at(now)
    old_cookie, recent_cookie = old.get_cookie(COOKIE).value, recent.get_cookie(COOKIE).value
    assert_refused(holding(app, old_cookie))
    assert_admin(holding(app, recent_cookie))
    restarted = make_app(folder, **backend)
    assert_refused(holding(restarted, old_cookie))
    assert_admin(holding(restarted, recent_cookie))
    # a cookie from before server-side sessions (no session id, only a flag) is refused too
    legacy = restarted.test_client()
    with legacy.session_transaction() as session:
        session["admin"] = True
    assert_refused(legacy)


@pytest.mark.slow
def test_a_password_change_ends_every_session(stim_root, make_app, tmp_path, backend, monkeypatch):
    folder = make_stimulus_set(stim_root, n_trials=1, test_yaml=QUIET)
    results = tmp_path / "results"
    store_admin_password_hash(load_settings(environ={}, results_dir=str(results)), hash_password(ADMIN_PASSWORD))
    app = make_app(folder, admin_password_hash=None, **backend)
    first, second = app.test_client(), app.test_client()
    assert login(first).status_code == 302 and login(second).status_code == 302
    assert_admin(first)
    # `python -m webapp set-password`, run in this process (a subprocess costs seconds of imports)
    monkeypatch.setattr(sys, "stdin", io.StringIO("a brand new password\n"))
    assert cli(["set-password", "--password-stdin", "--results-dir", str(results)]) == 0
    assert_refused(copy_of(app, first))
    assert_refused(second)
    fresh = app.test_client()
    assert login(fresh, ADMIN_PASSWORD).status_code == 401
    assert login(fresh, "a brand new password").status_code == 302
    assert_admin(fresh)


def _from(app, address):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


@pytest.mark.slow
def test_many_addresses_cannot_make_many_guesses(stim_root, make_app, backend, at):
    app = make_app(make_stimulus_set(stim_root, n_trials=1, test_yaml=QUIET), **backend)
    at(time.time())  # however slow the machine, the 25 guesses come within the first backoff
    statuses = [login(_from(app, f"198.51.100.{i}"), f"guess {i}").status_code for i in range(25)]
    checked = statuses.count(401)
    assert checked == 10 and statuses[checked:] == [429] * (25 - checked)


@pytest.mark.slow
def test_the_account_backoff_grows_and_then_lets_the_admin_in(stim_root, make_app, backend, at):
    app = make_app(make_stimulus_set(stim_root, n_trials=1, test_yaml=QUIET), **backend)
    t = 1_800_000_000.0
    at(t)
    for i in range(10):
        assert login(_from(app, f"198.51.100.{i}"), "wrong").status_code == 401
    admin = _from(app, "192.0.2.1")
    # during the backoff even the right password is refused, with the time to wait
    r = login(admin)
    assert r.status_code == 429 and r.headers["Retry-After"] == "1"
    assert "Try again in 1 second." in r.get_data(as_text=True)
    # each further failure doubles the wait: 1, 2, 4, 8 s
    for k, wait in enumerate((1, 2, 4, 8)):
        t += wait + 0.5
        at(t)
        assert login(_from(app, f"203.0.113.{k}"), "wrong").status_code == 401
    r = login(admin)
    assert r.status_code == 429 and r.headers["Retry-After"] == "16"
    at(t + 16.5)
    assert login(admin).status_code == 302
    assert_admin(admin)
    # a successful login resets the account's count: the next typo is checked at once
    at(t + 17)
    assert login(_from(app, "192.0.2.2"), "typo").status_code == 401


@pytest.mark.slow
def test_limits_are_shared_by_workers(stim_root, make_app, backend):
    # Two apps on the same database stand for two gunicorn workers (separate processes share
    # nothing but the database).
    folder = make_stimulus_set(stim_root, n_trials=1, test_yaml=QUIET)
    one, two = make_app(folder, login_attempts_per_window=3, **backend), make_app(folder, login_attempts_per_window=3, **backend)
    assert login(_from(one, "198.51.100.7"), "wrong").status_code == 401
    assert login(_from(two, "198.51.100.7"), "wrong").status_code == 401
    assert login(_from(one, "198.51.100.7"), "wrong").status_code == 401
    r = login(_from(two, "198.51.100.7"))
    assert r.status_code == 429 and 1 <= int(r.headers["Retry-After"]) <= 300
    # the per-address limit leaves other addresses alone
    assert login(_from(two, "198.51.100.8")).status_code == 302
