"""Fixtures of the web app tests: generated stimulus sets, apps on SQLite and PostgreSQL, a real
threaded HTTP server and Debian's chromium driven by Playwright."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.support.servers import LiveServer, free_port
from tests.support.system_tools import CHROMIUM, CHROMIUM_ARGS, missing_tool
from tests.webapp.admin_credentials import ADMIN_HASH
from webapp import create_app


@pytest.fixture
def stim_root(tmp_path):
    return tmp_path / "stimuli"


@pytest.fixture
def make_app(tmp_path):
    """``make_app(folder, **settings)``: an app on a temporary SQLite results folder."""
    apps = []

    def _make(*folders, **settings):
        config = {
            "stimulus_sets": [str(f) for f in folders],
            "results_dir": str(tmp_path / "results"),
            "admin_password_hash": ADMIN_HASH,
        }
        config.update(settings)
        app = create_app(config)
        apps.append(app)
        return app

    yield _make
    for app in apps:
        app.extensions["earshot"].dispose()


# ---- PostgreSQL: a throwaway cluster on loopback ----

def _run_as_postgres(cmd: list[str], **kw):
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


@pytest.fixture(scope="session")
def postgres_server():
    """URL of a fresh PostgreSQL cluster (initdb in a temp dir), stopped at the end of the session."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        missing_tool("PostgreSQL", "apt-get install postgresql", "EARSHOT_REQUIRE_POSTGRES")
    bindir = Path(found[-1]).parent
    tmp = Path(tempfile.mkdtemp(prefix="earshot-pg-"))
    if os.geteuid() == 0:
        shutil.chown(tmp, "postgres", "postgres")
    data = tmp / "data"
    port = free_port()
    _run_as_postgres([str(bindir / "initdb"), "-D", str(data), "-U", "earshot", "--auth=trust", "-E", "UTF8", "--no-sync"])
    _run_as_postgres(
        [
            str(bindir / "pg_ctl"), "-D", str(data), "-l", str(tmp / "log"), "-w", "start",
            "-o", f"-h 127.0.0.1 -p {port} -k {tmp} -c fsync=off -c full_page_writes=off",
        ]
    )
    try:
        yield {"bindir": bindir, "port": port, "url": f"postgresql://earshot@127.0.0.1:{port}/postgres"}
    finally:
        subprocess.run(
            (["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else [])
            + [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server, request):
    """A new empty database on the session's PostgreSQL server."""
    import psycopg

    name = "t_" + os.urandom(6).hex()
    base = f"postgresql://earshot@127.0.0.1:{postgres_server['port']}/postgres"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql://earshot@127.0.0.1:{postgres_server['port']}/{name}"


# ---- a real HTTP server and chromium ----

@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request):
    """App settings for each database the tests run against: SQLite, then a real PostgreSQL."""
    if request.param == "sqlite":
        return {}
    return {"database_url": request.getfixturevalue("postgres_url")}


@pytest.fixture
def live_server():
    servers = []

    def _start(app):
        server = LiveServer(app)
        servers.append(server)
        return server

    yield _start
    for s in servers:
        s.stop()


@pytest.fixture(scope="session")
def chromium():
    if not Path(CHROMIUM).exists():
        missing_tool("chromium", "apt-get install chromium", "EARSHOT_REQUIRE_BROWSER")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def browser_page(chromium):
    """A fresh browser context (own cookies) and page; JS errors fail the test."""
    context = chromium.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.js_errors = errors
    yield page
    context.close()
    assert not errors, f"JavaScript errors: {errors}"


