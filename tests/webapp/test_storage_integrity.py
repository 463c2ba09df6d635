"""The results database as a file that can be deleted, replaced or damaged under the server, and
what the web app writes being private: no acknowledged page may be lost, every user mistake is one
line on stderr with exit status 2, and ratings are readable by their owner only."""

from __future__ import annotations

import http.client
import http.cookiejar
import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from tests.support.servers import free_port
from tests.webapp.participant_driver import Driver, csrf_token, page_data
from tests.webapp.stimulus_sets import make_stimulus_set
from webapp.__main__ import main

QUIET = "headphone_check: {enabled: false}\nvolume_check: false\n"


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _started(app) -> tuple[Driver, dict]:
    """A participant on their first page, one page already acknowledged."""
    driver = Driver(app.test_client())
    driver.start()
    _, data = driver.current()
    r = driver.post(driver.answer(data))
    assert r.status_code == 200, r.get_data(as_text=True)
    _, data = driver.current()
    return driver, data


def _refused(driver: Driver, data: dict) -> None:
    # Like a network error: a 5xx that earshot.js retries while the page keeps its answers.
    body = driver.answer(data)
    for _ in range(2):
        r = driver.post(body, key="retry-key-1")
        assert r.status_code == 503, r.get_data(as_text=True)
        assert r.get_json()["error"] == "storage_unavailable"
        assert "results" in r.get_json()["message"] and "/" not in r.get_json()["message"]  # no path for visitors


def _unhealthy(app, problem: str) -> None:
    r = app.test_client().get("/healthz")
    assert r.status_code == 503
    assert r.get_json()["ok"] is False and problem in r.get_json()["reason"]


def test_a_deleted_database_file_is_noticed_before_a_page_is_acknowledged(stim_root, make_app, tmp_path, caplog):
    app = make_app(make_stimulus_set(stim_root, n_trials=2, test_yaml=QUIET))
    driver, data = _started(app)
    assert app.test_client().get("/healthz").status_code == 200
    os.unlink(tmp_path / "results" / "demo.db")
    _refused(driver, data)
    _unhealthy(app, "was deleted")
    assert "demo.db was deleted" in caplog.text
    # A new participant's start is refused too, not written into the deleted file.
    fresh = app.test_client()
    token = csrf_token(fresh.get("/t/demo/").get_data(as_text=True))
    r = fresh.post("/t/demo/start", data={"consent": "yes", "csrf_token": token})
    assert r.status_code == 503
    assert not (tmp_path / "results" / "demo.db").exists()  # not recreated empty either


def test_a_replaced_database_file_is_noticed_before_a_page_is_acknowledged(stim_root, make_app, tmp_path):
    app = make_app(make_stimulus_set(stim_root, n_trials=2, test_yaml=QUIET))
    driver, data = _started(app)
    db = tmp_path / "results" / "demo.db"
    other = tmp_path / "other.db"
    sqlite3.connect(other).close()
    os.replace(other, db)
    _refused(driver, data)
    _unhealthy(app, "was replaced")


def test_healthz_runs_the_integrity_check(stim_root, make_app, tmp_path):
    app = make_app(make_stimulus_set(stim_root, n_trials=2, test_yaml=QUIET), integrity_check_interval_s=0)
    driver, data = _started(app)
    assert app.test_client().get("/healthz").status_code == 200
    storage = app.extensions["earshot"].tests["demo"].storage
    storage.dispose()  # the WAL is checkpointed into the file, which is then damaged in place
    db = tmp_path / "results" / "demo.db"
    _damage(db)
    _unhealthy(app, "integrity check")
    _refused(driver, data)


def _damage(db) -> None:
    """Overwrite every page after the first two (schema) with garbage: the header still says
    SQLite, so only an integrity check finds it."""
    size = db.stat().st_size
    page = int.from_bytes(db.read_bytes()[16:18], "big")  # the header's page size
    with open(db, "r+b") as fh:
        for offset in range(2 * page, size, page):
            fh.seek(offset)
            fh.write(b"\xa5" * page)


def _database_with_rows(db) -> None:
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE filler (x TEXT)")
    conn.executemany("INSERT INTO filler VALUES (?)", [("x" * 500,) for _ in range(200)])
    conn.commit()
    conn.close()


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["not_sqlite", "fails_quick_check"])
@pytest.mark.parametrize("command", ["serve", "export"])
def test_a_damaged_database_at_startup_is_one_line_and_exit_2(stim_root, tmp_path, damage, command):
    folder = make_stimulus_set(stim_root, n_trials=1, test_yaml=QUIET)
    results = tmp_path / "results"
    results.mkdir()
    db = results / "demo.db"
    if damage == "not_sqlite":
        db.write_bytes(b"ratings,of,a,study\n" * 400)
    else:
        _database_with_rows(db)
        _damage(db)
    before = db.read_bytes()
    # serve stops before binding its port, so any port does.
    extra = ["--out", str(tmp_path / "out.csv")] if command == "export" else ["--port", "1"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("EARSHOT_")}
    r = subprocess.run([sys.executable, "-m", "webapp", command, str(folder), "--results-dir", str(results), *extra],
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert str(db) in lines[0]
    assert ("another kind of file" if damage == "not_sqlite" else "integrity check") in lines[0]
    assert db.read_bytes() == before
    assert not (tmp_path / "out.csv").exists()


def test_database_and_exports_are_readable_by_the_owner_only(stim_root, make_app, tmp_path, umask_022, capsys):
    folder = make_stimulus_set(stim_root, n_trials=1, test_yaml=QUIET)
    app = make_app(folder)
    _started(app)
    results = tmp_path / "results"
    assert _mode(results) == 0o700
    for name in ("demo.db", "demo.db-wal", "demo.db-shm", "demo.db.writelock"):
        assert _mode(results / name) == 0o600, name
    assert _mode(results / "webapp") == 0o700
    for fmt in ("ratings", "json"):
        out = tmp_path / "exports" / f"{fmt}.out"
        assert main(["export", str(folder), "--results-dir", str(results), "--format", fmt, "--out", str(out)]) == 0
        assert _mode(out) == 0o600 and out.stat().st_size > 0
    assert sorted(p.name for p in (tmp_path / "exports").iterdir()) == ["json.out", "ratings.out"]  # no temporaries left


@pytest.mark.slow
def test_export_to_an_unwritable_path_is_one_line_and_exit_2(stim_root, make_app, tmp_path):
    folder = make_stimulus_set(stim_root, n_trials=1, test_yaml=QUIET)
    _started(make_app(folder))
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = blocker / "ratings.csv"  # below a regular file: not even root can create it
    env = {k: v for k, v in os.environ.items() if not k.startswith("EARSHOT_")}
    r = subprocess.run(
        [sys.executable, "-m", "webapp", "export", str(folder), "--results-dir", str(tmp_path / "results"), "--out", str(out)],
        capture_output=True, text=True, timeout=60, env=env,
    )
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr and str(out) in lines[0], r.stderr
    assert blocker.read_text() == "not a folder"


@pytest.mark.parametrize("nested", ["[" * 5000 + "]" * 5000, '{"a":' * 5000 + "1" + "}" * 5000])
def test_deeply_nested_json_is_a_400_like_any_malformed_body(stim_root, make_app, nested):
    app = make_app(make_stimulus_set(stim_root, n_trials=1, test_yaml=QUIET))
    driver, data = _started(app)
    r = driver.post(None, raw=nested.encode())
    assert r.status_code == 400
    assert set(r.get_json()) == {"error", "message"}
    # The page is still there to submit.
    assert driver.post(driver.answer(data)).status_code == 200


class _HttpParticipant:
    """A participant over real HTTP (cookies, CSRF tokens), as the pages' JavaScript does it."""

    def __init__(self, port: int):
        self.base = f"http://127.0.0.1:{port}"
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        self.csrf = ""

    def _open(self, path: str, data: bytes | None = None, headers: dict | None = None) -> tuple[int, bytes]:
        request = urllib.request.Request(self.base + path, data=data, headers=headers or {})
        try:
            with self.opener.open(request, timeout=30) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def start(self) -> None:
        _, html = self._open("/t/demo/")
        form = urllib.parse.urlencode({"consent": "yes", "csrf_token": csrf_token(html.decode())}).encode()
        status, _ = self._open("/t/demo/start", form)  # redirected to the first page
        assert status == 200

    def current(self) -> dict:
        _, html = self._open("/t/demo/page")
        self.csrf = csrf_token(html.decode())
        return page_data(html.decode())

    def submit(self, body: dict) -> tuple[int, dict]:
        raw = json.dumps({**body, "idempotency_key": "http-key-" + str(body["position"])}).encode()
        status, reply = self._open("/t/demo/api/page", raw, {"Content-Type": "application/json", "X-CSRFToken": self.csrf})
        return status, json.loads(reply)


def _wait_for(port: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/healthz")
            if c.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("the server did not start")


@pytest.mark.slow
def test_a_running_server_stops_acknowledging_once_its_database_file_is_deleted(stim_root, tmp_path):
    folder = make_stimulus_set(stim_root, n_trials=3, test_yaml=QUIET)
    results = tmp_path / "results"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EARSHOT_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "webapp", "serve", str(folder), "--port", str(port), "--results-dir", str(results), "--workers", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True,
    )
    try:
        _wait_for(port, proc)
        participant = _HttpParticipant(port)
        participant.start()
        data = participant.current()
        assert participant.submit(Driver.mushra_body(data))[0] == 200  # the training page
        os.unlink(results / "demo.db")
        body = Driver.mushra_body(participant.current())
        # Several tries, so that both workers answer: neither may acknowledge the page.
        for _ in range(6):
            status, reply = participant.submit(body)
            assert status == 503 and reply["error"] == "storage_unavailable", reply
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("GET", "/healthz")
        r = c.getresponse()
        assert r.status == 503 and "was deleted" in json.loads(r.read())["reason"]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert "demo.db was deleted" in err  # the log says so too
