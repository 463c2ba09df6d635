"""Settings (file + EARSHOT_ environment), test.yaml, manifests and the schema version."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.webapp.stimulus_sets import make_stimulus_set
from webapp import create_app
from webapp.errors import ConfigError, StimulusSetError, StorageError
from webapp.manifest import load_stimulus_set
from webapp.settings import load_settings, resolve_secret_key
from webapp.storage import SCHEMA_VERSION, Storage
from webapp.study import load_study_settings


def test_settings_precedence(tmp_path):
    f = tmp_path / "settings.yaml"
    f.write_text("results_dir: from-file\nproxy_count: 1\nsecure_cookies: false\n")
    env = {"EARSHOT_SECURE_COOKIES": "true", "EARSHOT_PROXY_COUNT": "2", "EARSHOT_STIMULUS_SETS": f"a{os.pathsep}b", "HOME": "/x"}
    s = load_settings(f, environ=env)
    assert s.results_dir == Path("from-file")
    assert s.secure_cookies is True and s.proxy_count == 2
    assert s.stimulus_sets == (Path("a"), Path("b"))
    assert load_settings(f, environ=env, results_dir="cli").results_dir == Path("cli")


def test_settings_errors_name_the_problem(tmp_path):
    f = tmp_path / "settings.yaml"
    f.write_text("result_dir: typo\n")
    with pytest.raises(ConfigError, match="unknown key.*'result_dir'"):
        load_settings(f, environ={})
    with pytest.raises(ConfigError, match="EARSHOT_PROXY_COUNT: expected an integer, found 'two'"):
        load_settings(environ={"EARSHOT_PROXY_COUNT": "two"})


def test_secret_key_generated_once_and_private(tmp_path):
    s = load_settings(environ={}, results_dir=str(tmp_path / "results"))
    key = resolve_secret_key(s)
    path = tmp_path / "results" / "webapp" / "secret_key"
    assert len(key) == 64 and path.read_text().strip() == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert resolve_secret_key(s) == key
    assert resolve_secret_key(load_settings(environ={"EARSHOT_SECRET_KEY": "given"})) == "given"


def test_no_secret_in_repository():
    repo = Path(__file__).resolve().parents[2]
    tracked = subprocess.run(["git", "ls-files", "webapp"], cwd=repo, capture_output=True, text=True).stdout.split()
    assert not [t for t in tracked if "secret" in t or t.endswith(".db")]


def test_test_yaml_defaults_and_unknown_keys(tmp_path):
    assert load_study_settings(tmp_path).enforce.one_at_100 is True
    (tmp_path / "test.yaml").write_text("title: X\nenforce: {all_played: false}\n")
    cfg = load_study_settings(tmp_path)
    assert cfg.title == "X" and cfg.enforce.all_played is False and cfg.enforce.all_rated is True
    (tmp_path / "test.yaml").write_text("enforce: {all_payed: false}\n")
    with pytest.raises(ConfigError, match=r"test.yaml.enforce: unknown key 'all_payed' \(allowed: "):
        load_study_settings(tmp_path)
    (tmp_path / "test.yaml").write_text("language: fr\n")
    with pytest.raises(ConfigError, match=r"language: expected one of \['en', 'de'\], found 'fr'"):
        load_study_settings(tmp_path)
    (tmp_path / "test.yaml").write_text("headphone_check: {trials: 3, pass_threshold: 5}\n")
    with pytest.raises(ConfigError, match="pass_threshold: expected 1..3"):
        load_study_settings(tmp_path)


def _edit_manifest(folder: Path, edit) -> None:
    path = folder / "manifest.json"
    m = json.loads(path.read_text())
    edit(m)
    path.write_text(json.dumps(m))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m["trials"][0]["conditions"][0].update(file="../../../etc/passwd"), "points outside the stimulus set"),
        (lambda m: m["trials"][0]["conditions"][0].update(file="/etc/passwd"), "points outside the stimulus set"),
        (lambda m: m["trials"][0].update(reference="audio/t01/../../manifest.json"), "expected a .wav file"),
        (lambda m: m["trials"][0]["conditions"][0].update(file="audio/t01/missing.wav"), "does not exist"),
        (lambda m: m["trials"][0]["conditions"][1].update(id="hidden_reference"), "appears twice"),
        (lambda m: m["trials"][0]["conditions"][0].update(role="anchor"), "role: expected one of"),
        (lambda m: m.update(schema=99), "schema: expected one of"),
        (lambda m: m["trials"][0]["conditions"].extend([dict(m["trials"][0]["conditions"][4], id=f"x{i}") for i in range(8)]), "at most 12 signals"),
    ],
)
def test_manifest_errors(tmp_path, edit, message):
    folder = make_stimulus_set(tmp_path, training=False, n_trials=1)
    _edit_manifest(folder, edit)
    with pytest.raises(StimulusSetError, match=message):
        load_stimulus_set(folder)


def test_manifest_bare_file_names_live_in_the_trial_folder(tmp_path):
    folder = make_stimulus_set(tmp_path, training=False, n_trials=1)
    _edit_manifest(folder, lambda m: m["trials"][0]["conditions"][0].update(file="hidden_reference.wav"))
    stim = load_stimulus_set(folder)
    assert stim.trials[0].conditions[0].path == (folder / "audio" / "t01" / "hidden_reference.wav").resolve()


def test_sqlite_is_wal_and_schema_versioned(tmp_path):
    folder = make_stimulus_set(tmp_path / "stimuli", n_trials=1)
    app = create_app({"stimulus_sets": [str(folder)], "results_dir": str(tmp_path / "results")})
    storage = app.extensions["earshot"].tests["demo"].storage
    assert (tmp_path / "results" / "demo.db").exists()
    with storage.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    assert storage.schema_version() == SCHEMA_VERSION
    storage.dispose()
    # a database written by a newer release is refused with a clear message
    newer = Storage(storage.url)
    with newer.engine.begin() as conn:
        conn.execute(text("UPDATE schema_info SET value = :v WHERE key = 'schema_version'"), {"v": str(SCHEMA_VERSION + 1)})
    with pytest.raises(StorageError, match=f"schema version {SCHEMA_VERSION + 1}, newer than"):
        newer.initialise()


def test_sqlite_synchronous_setting(tmp_path):
    # SQLite's PRAGMA synchronous reads back 1 for NORMAL and 2 for FULL (sqlite.org/pragma.html).
    folder = make_stimulus_set(tmp_path / "stimuli", n_trials=1)
    for value, expected in (("normal", 1), ("full", 2)):
        app = create_app({"stimulus_sets": [str(folder)], "results_dir": str(tmp_path / value), "sqlite_synchronous": value})
        storage = app.extensions["earshot"].tests["demo"].storage
        with storage.writing_core() as conn:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == expected
        storage.dispose()
    settings = load_settings(environ={"EARSHOT_SQLITE_SYNCHRONOUS": "full"})
    assert settings.sqlite_synchronous == "full"
    with pytest.raises(ConfigError, match="sqlite_synchronous"):
        load_settings(environ={"EARSHOT_SQLITE_SYNCHRONOUS": "off"})


@pytest.mark.slow
def test_workers_starting_together_initialise_a_new_sqlite_file(tmp_path):
    # Four processes create the schema of the same new file at once, as gunicorn workers do.
    url = f"sqlite:///{tmp_path / 'new.db'}"
    code = "import sys; from webapp.storage import Storage; s = Storage(sys.argv[1]); s.initialise(); print(s.schema_version())"
    procs = [subprocess.Popen([sys.executable, "-c", code, url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [err for _, err in outputs]
    assert [out.strip() for out, _ in outputs] == [str(SCHEMA_VERSION)] * 4


def test_migrations_run_in_order(tmp_path, monkeypatch):
    import webapp.storage as storage_module

    storage = Storage(f"sqlite:///{tmp_path / 'old.db'}")
    storage.initialise()
    with storage.engine.begin() as conn:
        conn.execute(text("UPDATE schema_info SET value = :v WHERE key = 'schema_version'"), {"v": str(SCHEMA_VERSION - 1)})
    calls = []
    monkeypatch.setitem(storage_module.MIGRATIONS, SCHEMA_VERSION - 1, lambda conn: calls.append(SCHEMA_VERSION - 1))
    storage.initialise()
    assert calls == [SCHEMA_VERSION - 1] and storage.schema_version() == SCHEMA_VERSION


def test_missing_browser_or_database_skips_unless_required(monkeypatch):
    from tests.support.system_tools import missing_tool

    monkeypatch.delenv("EARSHOT_REQUIRE_BROWSER", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install chromium"):
        missing_tool("chromium", "apt-get install chromium", "EARSHOT_REQUIRE_BROWSER")
    monkeypatch.setenv("EARSHOT_REQUIRE_BROWSER", "1")
    with pytest.raises(pytest.fail.Exception, match="chromium is not installed"):
        missing_tool("chromium", "apt-get install chromium", "EARSHOT_REQUIRE_BROWSER")
