"""The production server: ``python -m webapp serve`` (gunicorn on loopback) and the bench's crash check."""

from __future__ import annotations

import argparse
import http.client
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.support.servers import free_port
from tests.webapp.participant_driver import Driver
from tests.webapp.stimulus_sets import make_stimulus_set
from webapp.__main__ import build_parser
from webapp.bench import Stats, _verify, run_bench


def wait_for(port: int, proc: subprocess.Popen, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(proc.stderr.read())
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/healthz")
            if c.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("server did not start")


@pytest.mark.slow
def test_serve_runs_gunicorn_on_loopback(stim_root, tmp_path):
    folder = make_stimulus_set(stim_root, n_trials=1)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EARSHOT_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "webapp", "serve", str(folder), "--port", str(port), "--results-dir", str(tmp_path / "results"), "--workers", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True,
    )
    try:
        wait_for(port, proc)
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        c.request("GET", "/t/demo/")
        r = c.getresponse()
        body = r.read().decode()
        assert r.status == 200 and "Welcome" in body
        assert "gunicorn" in r.getheader("Server", "")
        assert r.getheader("Connection") == "close"  # sync workers (--threads 1, the default) keep none alive
        # not Werkzeug's debugger: an unknown URL gives the plain error page
        c.request("GET", "/console")
        r = c.getresponse()
        assert r.status == 404 and "Werkzeug" not in r.read().decode()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert f"participant link: http://127.0.0.1:{port}/t/demo/" in out
    assert (tmp_path / "results" / "demo.db").exists()
    assert (tmp_path / "results" / "webapp" / "secret_key").exists()


@pytest.mark.slow
def test_serve_refuses_public_host_and_bad_sets(stim_root, tmp_path):
    folder = make_stimulus_set(stim_root, n_trials=1)
    r = subprocess.run([sys.executable, "-m", "webapp", "serve", str(folder), "--host", "0.0.0.0"], capture_output=True, text=True)
    assert r.returncode == 2 and "loopback only" in r.stderr
    r = subprocess.run([sys.executable, "-m", "webapp", "serve", str(tmp_path / "nothing")], capture_output=True, text=True)
    assert r.returncode == 2 and "no manifest.json" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "webapp", "serve", str(folder), "--threads", "0"], capture_output=True, text=True)
    assert r.returncode == 2 and "--threads: expected a whole number of at least 1, found '0'" in r.stderr


def test_verify_counts_lost_and_duplicated_pages(stim_root, make_app):
    folder = make_stimulus_set(stim_root, n_trials=1, training=False, test_yaml="headphone_check: {enabled: false}\nvolume_check: false\nquestionnaire: []\n")
    app = make_app(folder)
    storage = app.extensions["earshot"].tests["demo"].storage
    d = Driver(app.test_client())
    d.start()
    _, data = d.current()
    assert d.post(d.answer(data), key="stored-key-001").status_code == 200
    token = d.client.get_cookie("earshot_participant", path="/t/demo/").value
    good = Stats(acknowledged=[(token, 0, "stored-key-001")])
    assert _verify(storage, good) == (0, 0)
    # an acknowledgement the database does not hold is a lost page
    assert _verify(storage, Stats(acknowledged=[(token, 0, "other-key-0001")])) == (1, 0)
    # the same page acknowledged under two keys would be a duplicate
    assert _verify(storage, Stats(acknowledged=[(token, 0, "stored-key-001"), (token, 0, "other-key-0001")])) == (0, 1)


def bench_args(*options: str) -> argparse.Namespace:
    return build_parser().parse_args(["bench", *options])


@pytest.mark.slow
def test_bench_survives_kill_9(capsys):
    # sync workers (the default), a connection per request
    assert run_bench(bench_args("--participants", "4", "--trials", "1", "--workers", "2", "--crash")) == 0
    out = capsys.readouterr().out
    assert "gunicorn 2 sync workers, connections: request" in out
    assert "crash: killed the server (SIGKILL)" in out
    assert "check: 0 lost, 0 duplicated; 4 of 4 participants finished" in out


@pytest.mark.slow
@pytest.mark.postgres
def test_bench_on_postgres(postgres_url, capsys):
    # gthread workers, keep-alive connections
    options = ("--participants", "3", "--trials", "1", "--workers", "1", "--threads", "2", "--connections", "keep")
    assert run_bench(bench_args(*options, "--database-url", postgres_url)) == 0
    out = capsys.readouterr().out
    assert "gunicorn 1 gthread workers x 2 threads, connections: keep" in out
    assert "check: 0 lost, 0 duplicated; 3 of 3 participants finished" in out
