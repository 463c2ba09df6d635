"""Everything an app keeps between requests belongs to that app: two apps in one process serve
their own tests, and a development app serves an edited template without a restart."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import flask
from jinja2 import FileSystemLoader

import webapp
from tests.webapp.participant_driver import Driver
from tests.webapp.stimulus_sets import make_stimulus_set
from webapp.__main__ import main

QUIET = "headphone_check: {enabled: false}\nvolume_check: false\n"


def test_two_apps_in_one_process_each_serve_their_own_title(tmp_path, make_app):
    # Two sets of the same name (so the same test URL and page shape) but different titles.
    first = make_stimulus_set(tmp_path / "a", n_trials=1, test_yaml=QUIET + "title: Amplifiers of spring\n")
    second = make_stimulus_set(tmp_path / "b", n_trials=1, test_yaml=QUIET + "title: Pedals of autumn\n")
    app_a = make_app(first, results_dir=str(tmp_path / "results-a"))
    app_b = make_app(second, results_dir=str(tmp_path / "results-b"))
    pages = {}
    for name, app in (("a", app_a), ("b", app_b), ("a again", app_a)):
        d = Driver(app.test_client())
        d.start()
        html, data = d.current()
        assert data["kind"] == "training"
        pages[name] = html
    assert "Amplifiers of spring" in pages["a"] and "Pedals of autumn" not in pages["a"]
    assert "Pedals of autumn" in pages["b"] and "Amplifiers of spring" not in pages["b"]
    assert "Amplifiers of spring" in pages["a again"] and "Pedals of autumn" not in pages["a again"]


def _templates_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "templates"
    shutil.copytree(Path(webapp.__file__).parent / "templates", folder)
    return folder


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    before = path.stat().st_mtime
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    # Jinja notices an edit by the file's mtime; make it differ even on a coarse clock.
    os.utime(path, (before + 5, before + 5))


def test_development_app_serves_an_edited_template_without_restart(tmp_path, stim_root, make_app):
    templates = _templates_copy(tmp_path)
    app = make_app(make_stimulus_set(stim_root, n_trials=1, test_yaml=QUIET), development=True)
    app.jinja_loader = FileSystemLoader(str(templates))
    d = Driver(app.test_client())
    d.start()
    html, data = d.current()
    assert data["kind"] == "training" and "Edited heading 1" not in html
    _edit(templates / "base.html", '<span class="test-title">', '<span class="test-title">Edited heading 1 ')
    html, data = d.current()
    assert "Edited heading 1" in html and data["kind"] == "training"
    _edit(templates / "base.html", "Edited heading 1", "Edited heading 2")
    html, _ = d.current()
    assert "Edited heading 2" in html and "Edited heading 1" not in html


def test_debug_mode_set_after_the_factory_reloads_templates_too(tmp_path, stim_root, make_app):
    # What app.run(debug=True) and `flask --debug run` do: turn debug on after create_app().
    templates = _templates_copy(tmp_path)
    app = make_app(make_stimulus_set(stim_root, n_trials=1, test_yaml=QUIET))
    app.jinja_loader = FileSystemLoader(str(templates))
    app.debug = True
    d = Driver(app.test_client())
    d.start()
    d.current()
    _edit(templates / "mushra.html", "{% block content %}", "{% block content %}<p>Edited trial page</p>")
    html, _ = d.current()
    assert "<p>Edited trial page</p>" in html


def test_serve_reload_runs_the_development_server_with_template_reloading(tmp_path, stim_root, monkeypatch, capsys):
    folder = make_stimulus_set(stim_root, n_trials=1, test_yaml=QUIET)
    runs = []

    def fake_run(app, **kwargs):
        runs.append((app.jinja_env.auto_reload, kwargs))
        app.extensions["earshot"].dispose()

    monkeypatch.setattr(flask.Flask, "run", fake_run)
    monkeypatch.setenv("EARSHOT_ADMIN_PASSWORD_HASH", "scrypt:32768:8:1$x$y")
    assert main(["serve", str(folder), "--results-dir", str(tmp_path / "results"), "--reload", "--port", "8123"]) == 0
    assert len(runs) == 1
    auto_reload, kwargs = runs[0]
    assert auto_reload is True
    assert kwargs["use_reloader"] is True and kwargs["port"] == 8123 and kwargs["host"] == "127.0.0.1"
    assert "participant link: http://127.0.0.1:8123/t/demo/" in capsys.readouterr().out
