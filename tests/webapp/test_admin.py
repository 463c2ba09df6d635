"""Admin: password login with a rate limit, CSRF, live figures, exclusions and exports; the CLI."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats
from sqlalchemy import select

from common.bs1534 import tukey_hinges
from common.ratings_table import TIDY_COLUMNS
from tests.webapp.admin_credentials import ADMIN_PASSWORD
from tests.webapp.participant_driver import Driver, csrf_token
from tests.webapp.stimulus_sets import make_stimulus_set
from webapp.live_stats import condition_summaries, hidden_reference_failures
from webapp.storage import Page, Participant, Rating

QUIET = "headphone_check: {enabled: false}\nvolume_check: false\nrandomise_trials: false\n"


def login(client, password=ADMIN_PASSWORD):
    html = client.get("/admin/login").get_data(as_text=True)
    return client.post("/admin/login", data={"password": password, "csrf_token": csrf_token(html)})


def run_participants(app, scores_by_participant):
    """Each participant rates every rated trial; ``scores_by_participant[k](data)`` -> scores."""
    storage = app.extensions["earshot"].tests["demo"].storage
    entered = []
    for scores_for in scores_by_participant:
        d = Driver(app.test_client())
        d.start()
        entered.append(d.complete(storage, scores_for))
    return entered


def test_login_required_and_rate_limited(stim_root, make_app):
    app = make_app(make_stimulus_set(stim_root, n_trials=1), login_attempts_per_window=3)
    client = app.test_client()
    r = client.get("/admin/")
    assert r.status_code == 302 and "/admin/login" in r.headers["Location"]
    assert client.get("/admin/demo/export/ratings").status_code == 302
    for _ in range(3):
        assert login(client, "wrong").status_code == 401
    # the fourth try is refused even with the right password
    assert login(client).status_code == 429
    other = app.test_client()
    other.environ_base["REMOTE_ADDR"] = "10.0.0.9"
    assert login(other).status_code == 302
    r = other.get("/admin/")
    assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store"


def test_forms_without_csrf_token_are_refused(stim_root, make_app):
    app = make_app(make_stimulus_set(stim_root, n_trials=1))
    client = app.test_client()
    assert client.post("/admin/login", data={"password": ADMIN_PASSWORD}).status_code == 400
    d = Driver(client)
    d.start()
    _, data = d.current()
    r = client.post("/t/demo/api/page", json=d.answer(data, app.extensions["earshot"].tests["demo"].storage) | {"idempotency_key": "k" * 10})
    assert r.status_code == 400 and r.json["error"] == "csrf"
    r = client.post("/t/demo/start", data={"consent": "yes"})
    assert r.status_code == 400


def test_no_password_configured_means_no_login(stim_root, make_app):
    app = make_app(make_stimulus_set(stim_root, n_trials=1), admin_password_hash=None)
    client = app.test_client()
    assert "No admin password is set" in client.get("/admin/login").get_data(as_text=True)
    assert login(client).status_code == 401


def test_exports_hold_exactly_the_entered_scores(stim_root, make_app, tmp_path):
    folder = make_stimulus_set(stim_root, n_trials=2, test_yaml=QUIET)
    app = make_app(folder)
    rng = np.random.default_rng(5)

    def scorer(data):
        return [100] + [int(v) for v in rng.integers(0, 100, len(data["sounds"]) - 1)]

    entered = run_participants(app, [scorer, scorer])
    client = app.test_client()
    assert login(client).status_code == 302
    r = client.get("/admin/demo/export/ratings")
    assert r.status_code == 200 and "attachment" in r.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(r.get_data(as_text=True))))
    assert tuple(rows[0].keys()) == TIDY_COLUMNS
    # what was sent: per trial page, the score of each shown sound position
    sent = {}
    for k, pages in enumerate(entered):
        for entry in pages:
            if entry["data"]["kind"] == "trial":
                for i, rating in enumerate(entry["body"]["ratings"]):
                    sent[(k, entry["data"]["position"], i + 1)] = rating["score"]
    assert len(rows) == 2 * 2 * 5 == len(sent)
    got = {}
    for r in rows:
        got.setdefault(r["participant"], []).append(r)
    # map participants by their creation order (exports are ordered by participant id)
    participants_in_order = list(dict.fromkeys(r["participant"] for r in rows))
    for k, code in enumerate(participants_in_order):
        mine = got[code]
        assert [int(r["score"]) for r in mine] == [
            sent[key] for key in sorted(key for key in sent if key[0] == k)
        ]
        assert all(r["test"] == "demo" for r in mine)
        assert {r["duration_ms"] for r in mine} == {"20000"}  # the page duration the driver sent
        assert all(r["submitted_at"].endswith("Z") for r in mine)
        assert {r["role"] for r in mine} == {"hidden_reference", "anchor_low", "anchor_mid", "system"}
        assert sorted({int(r["trial_position"]) for r in mine}) == [1, 2]
    # every trial shows each of its five conditions exactly once
    for code in participants_in_order:
        for trial in ("t01", "t02"):
            conds = [r["condition"] for r in got[code] if r["trial"] == trial]
            assert sorted(conds) == sorted(["hidden_reference", "anchor_3k5", "anchor_7k", "distilled", "non_distilled"])
    # webMUSHRA format
    mushra = list(csv.DictReader(io.StringIO(client.get("/admin/demo/export/mushra").get_data(as_text=True))))
    assert list(mushra[0]) == ["session_test_id", "session_uuid", "trial_id", "rating_stimulus", "rating_score", "rating_time", "rating_comment"]
    assert {m["rating_stimulus"] for m in mushra} == {"reference", "anchor35", "anchor70", "distilled", "non_distilled"}
    assert sorted(int(m["rating_score"]) for m in mushra) == sorted(int(r["score"]) for r in rows)
    payload = json.loads(client.get("/admin/demo/export/json").get_data(as_text=True))
    assert len(payload["ratings"]) == 20 and len(payload["participants"]) == 2
    assert sorted({r["listening_ms"] for r in payload["ratings"]}) == [1000, 1001, 1002, 1003, 1004]
    parts = list(csv.DictReader(io.StringIO(client.get("/admin/demo/export/participants").get_data(as_text=True))))
    assert [p["participant"] for p in parts] == participants_in_order
    assert parts[0]["q_hearing_problems"] == "no" and parts[0]["finished_at"]


def test_exclude_and_restore_are_recorded_and_never_delete(stim_root, make_app):
    folder = make_stimulus_set(stim_root, n_trials=1, test_yaml=QUIET)
    app = make_app(folder)
    run_participants(app, [lambda d: [100, 10, 20, 30, 40]] * 2)
    client = app.test_client()
    login(client)
    html = client.get("/admin/demo/").get_data(as_text=True)
    codes = sorted(set(re.findall(r"/admin/demo/participants/(P[0-9a-f]+)/exclude", html)))
    assert len(codes) == 2
    r = client.post(f"/admin/demo/participants/{codes[0]}/exclude", data={"reason": "noisy room", "csrf_token": csrf_token(html)})
    assert r.status_code == 302
    ratings = list(csv.DictReader(io.StringIO(client.get("/admin/demo/export/ratings").get_data(as_text=True))))
    assert {r["participant"] for r in ratings} == {codes[1]}
    everyone = list(csv.DictReader(io.StringIO(client.get("/admin/demo/export/ratings?include_excluded=1").get_data(as_text=True))))
    assert {r["participant"] for r in everyone} == set(codes)
    parts = {p["participant"]: p for p in csv.DictReader(io.StringIO(client.get("/admin/demo/export/participants").get_data(as_text=True)))}
    assert parts[codes[0]]["excluded"] == "True" and parts[codes[0]]["exclusion_reason"] == "noisy room"
    client.post(f"/admin/demo/participants/{codes[0]}/restore", data={"csrf_token": csrf_token(html)})
    ratings = list(csv.DictReader(io.StringIO(client.get("/admin/demo/export/ratings").get_data(as_text=True))))
    assert {r["participant"] for r in ratings} == set(codes)
    # a missing CSRF token changes nothing
    assert client.post(f"/admin/demo/participants/{codes[0]}/exclude", data={}).status_code == 400


def test_dashboard_figures(stim_root, make_app):
    folder = make_stimulus_set(stim_root, n_trials=2, test_yaml=QUIET)
    app = make_app(folder)
    # every score 80 except one 100 per page: the hidden reference is below 90 on every page
    # unless it happens to be shown first; the 100 goes to the first shown sound
    run_participants(app, [lambda d: [100, 80, 80, 80, 80]] * 3)
    client = app.test_client()
    login(client)
    html = client.get("/admin/demo/").get_data(as_text=True)
    assert "Started: 3" in html and "Finished: 3" in html
    assert "<svg" in html and 'id="summary"' in html
    with app.extensions["earshot"].tests["demo"].storage.reading() as s:
        rows = s.execute(select(Participant.code, Rating.score).join(Rating, Rating.participant_id == Participant.id).where(Rating.condition == "hidden_reference", Rating.page_id.in_(select(Page.id).where(Page.kind == "trial")))).all()
    below = {}
    for code, score in rows:
        below.setdefault(code, []).append(score < 90)
    failing = sorted(f"{code}: {sum(b)} of {len(b)} items" for code, b in below.items() if sum(b) / len(b) > 0.15)
    shown = sorted(re.findall(r"<li>(P[0-9a-f]+: \d+ of \d+ items)</li>", html))
    assert failing and shown == failing


def test_live_statistics_against_hand_values():
    rows = []
    # listener a: hidden reference 100, 80 -> one of two items below 90 (50 % > 15 %): fails
    # listener b: 95, 100 -> passes; listener c: 100, 100
    for who, hr, sys_scores in [("a", [100, 80], [40, 50]), ("b", [95, 100], [60, 70]), ("c", [100, 100], [20, 90])]:
        for item in range(2):
            rows.append({"participant": who, "condition": "hidden_reference", "role": "hidden_reference", "score": hr[item]})
            rows.append({"participant": who, "condition": "kd", "role": "system", "score": sys_scores[item]})
    failures = hidden_reference_failures(rows)
    assert [f["participant"] for f in failures] == ["a"] and failures[0]["fraction"] == 0.5
    assert (failures[0]["below_90"], failures[0]["n_items"]) == (1, 2)
    kd = [s for s in condition_summaries(rows) if s.condition == "kd"][0]
    listener_means = np.array([45.0, 65.0, 55.0])
    half = stats.t.ppf(0.975, 2) * listener_means.std(ddof=1) / np.sqrt(3)
    assert kd.mean == pytest.approx(55.0)
    assert (kd.ci_low, kd.ci_high) == pytest.approx((55 - half, 55 + half))
    # Tukey hinges of 20 40 50 60 70 90 (even n): lower half 20 40 50 -> 40, upper 60 70 90 -> 70
    assert tukey_hinges(np.array([20, 40, 50, 60, 70, 90])) == (40.0, 55.0, 70.0)
    # odd n: the median joins both halves: 1 2 3 | 3 | 3 4 5 ... of 1 2 3 4 5 -> (2, 3, 4)
    assert tukey_hinges(np.array([5, 1, 4, 2, 3])) == (2.0, 3.0, 4.0)
    assert (kd.q1, kd.median, kd.q3) == (40.0, 55.0, 70.0)


def test_exactly_15_percent_stays():
    rows = []
    for item in range(20):
        score = 80 if item < 3 else 100  # 3 of 20 = 15 %
        rows.append({"participant": "x", "condition": "hr", "role": "hidden_reference", "score": score})
    assert hidden_reference_failures(rows) == []
    rows[3]["score"] = 89.9  # 4 of 20 = 20 %
    assert [f["participant"] for f in hidden_reference_failures(rows)] == ["x"]


@pytest.mark.slow
def test_cli_export_and_set_password(stim_root, make_app, tmp_path):
    folder = make_stimulus_set(stim_root, n_trials=1, test_yaml=QUIET)
    app = make_app(folder)
    run_participants(app, [lambda d: [100, 1, 2, 3, 4]])
    results = tmp_path / "results"
    out = tmp_path / "out" / "ratings.csv"
    r = subprocess.run(
        [sys.executable, "-m", "webapp", "export", str(folder), "--results-dir", str(results), "--format", "ratings", "--out", str(out)],
        capture_output=True, text=True,
    )
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(out.open()))
    assert sorted(int(row["score"]) for row in rows) == [1, 2, 3, 4, 100]
    r = subprocess.run(
        [sys.executable, "-m", "webapp", "export", str(folder), "--results-dir", str(tmp_path / "nowhere")],
        capture_output=True, text=True,
    )
    assert r.returncode == 2 and r.stderr.startswith("error: no results database") and "Traceback" not in r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "webapp", "set-password", "--password-stdin", "--results-dir", str(results)],
        input="a much longer password\n", capture_output=True, text=True,
    )
    assert r.returncode == 0, r.stderr
    from webapp.security import verify_password

    stored = (results / "webapp" / "admin_password_hash").read_text().strip()
    assert verify_password(stored, "a much longer password") and not verify_password(stored, "wrong")
    # the running app reads the new password without a restart (no hash in its settings)
    app2 = make_app(folder, admin_password_hash=None)
    assert login(app2.test_client(), "a much longer password").status_code == 302
    r = subprocess.run(
        [sys.executable, "-m", "webapp", "set-password", "--password-stdin", "--results-dir", str(results)],
        input="short\n", capture_output=True, text=True,
    )
    assert r.returncode == 2 and "at least 10 characters" in r.stderr
