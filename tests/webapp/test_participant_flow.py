"""Integration tests through the app factory: the participant flow, saving, resuming, blindness and
audio serving, each on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import func, select

from tests.webapp.participant_driver import Driver
from tests.webapp.stimulus_sets import make_stimulus_set
from webapp.storage import Page, Participant, Rating

QUIET = "headphone_check: {enabled: false}\nvolume_check: false\n"


def storage_of(app, test="demo"):
    return app.extensions["earshot"].tests[test].storage


def test_whole_flow_stores_every_page_once(stim_root, make_app, backend):
    folder = make_stimulus_set(stim_root, n_trials=3)
    app = make_app(folder, **backend)
    storage = storage_of(app)
    d = Driver(app.test_client())
    d.start("?PROLIFIC_PID=abc123&STUDY_ID=s1&SESSION_ID=x9&EVIL=1")
    scores = iter(range(1000))

    def scores_for(data):
        return [100] + [next(scores) % 99 for _ in data["sounds"][1:]]

    sent = d.complete(storage, scores_for)
    kinds = [s["data"]["kind"] for s in sent]
    assert kinds == ["headphones", "volume", "training", "trial", "trial", "trial", "questionnaire"]
    html, data = d.current()
    assert data is None and "Thank you" in html
    with storage.reading() as s:
        p = s.scalar(select(Participant))
        assert p.crowd == {"PROLIFIC_PID": "abc123", "STUDY_ID": "s1", "SESSION_ID": "x9"}
        assert p.finished_at is not None
        assert p.headphone_passed is True and p.headphone_correct == 6
        assert p.volume_gain_db == -1.5
        assert p.answers == {"age": 30, "hearing_problems": "no", "experience": "some"}
        # 1 training + 3 rated trials, 5 conditions each
        assert s.scalar(select(func.count()).select_from(Rating)) == 4 * 5
        trial_positions = sorted(
            s.scalars(select(Page.trial_position).where(Page.kind == "trial")).all()
        )
        assert trial_positions == [1, 2, 3]
        # the stored score of each shown sound is the one sent for it
        for entry in sent:
            if entry["data"]["kind"] not in ("training", "trial"):
                continue
            page = s.scalar(select(Page).where(Page.position == entry["data"]["position"]))
            stored = {
                r.condition_position: r.score
                for r in s.scalars(select(Rating).where(Rating.page_id == page.id))
            }
            want = {i + 1: r["score"] for i, r in enumerate(entry["body"]["ratings"])}
            assert stored == want
    # a finished participant cannot submit again
    r = d.post({"position": 0, "answers": [0] * 6})
    assert r.status_code == 409 and r.json["error"] == "already_submitted"


def test_reload_resumes_at_first_unsubmitted_page(stim_root, make_app, backend):
    folder = make_stimulus_set(stim_root, n_trials=2, test_yaml=QUIET)
    app = make_app(folder, **backend)
    client = app.test_client()
    d = Driver(client)
    d.start()
    _, first = d.current()
    assert first["kind"] == "training" and first["position"] == 0
    assert d.post(d.answer(first)).status_code == 200
    _, again = d.current()
    assert again["position"] == 1 and again["kind"] == "trial"
    # reopening the link with the cookie goes straight to the current page
    r = client.get("/t/demo/")
    assert r.status_code == 302 and r.headers["Location"].endswith("/t/demo/page")
    _, still = d.current()
    assert still["position"] == 1 and still["sounds"] == again["sounds"]


def test_idempotent_retry_and_conflicts(stim_root, make_app, backend):
    folder = make_stimulus_set(stim_root, n_trials=2, test_yaml=QUIET)
    app = make_app(folder, **backend)
    storage = storage_of(app)
    d = Driver(app.test_client())
    d.start()
    _, data = d.current()
    body = d.answer(data)
    first = d.post(body, key="retry-key-0001")
    assert first.status_code == 200 and first.json["replayed"] is False
    replay = d.post(body, key="retry-key-0001")
    assert replay.status_code == 200 and replay.json["replayed"] is True
    other = d.post(body, key="another-key-01")
    assert other.status_code == 409 and other.json["error"] == "already_submitted"
    with storage.reading() as s:
        assert s.scalar(select(func.count()).select_from(Rating)) == 5
    # skipping ahead is refused
    _, current = d.current()
    ahead = dict(d.answer(current), position=current["position"] + 1)
    r = d.post(ahead)
    assert r.status_code == 409 and r.json["error"] == "wrong_page"


def test_enforcement_on_the_server(stim_root, make_app):
    folder = make_stimulus_set(stim_root, n_trials=1, training=False, test_yaml=QUIET)
    app = make_app(folder)
    d = Driver(app.test_client())
    d.start()
    _, data = d.current()
    no_100 = d.mushra_body(data, [99, 50, 50, 50, 50])
    r = d.post(no_100)
    assert r.status_code == 422 and "100" in r.json["message"]
    unrated = d.mushra_body(data, [100, None, 50, 50, 50])
    r = d.post(unrated)
    assert r.status_code == 422 and r.json["message"] == "not yet rated: B"
    unplayed = d.mushra_body(data)
    unplayed["ratings"][3]["plays"] = 0
    r = d.post(unplayed)
    assert r.status_code == 422 and r.json["message"] == "not yet played: D"


def test_enforcement_off_allows_unrated(stim_root, make_app, backend):
    folder = make_stimulus_set(
        stim_root, n_trials=1, training=False,
        test_yaml=QUIET + "enforce: {all_played: false, all_rated: false, one_at_100: false}\n",
    )
    app = make_app(folder, **backend)
    d = Driver(app.test_client())
    d.start()
    _, data = d.current()
    assert data["enforce"] == {"all_played": False, "all_rated": False, "one_at_100": False}
    body = d.mushra_body(data, [None, 20, 30, 40, 50])
    body["ratings"][0]["plays"] = 0
    assert d.post(body).status_code == 200
    with storage_of(app).reading() as s:
        assert sorted(s.scalars(select(Rating.score)).all(), key=lambda v: (v is not None, v)) == [None, 20, 30, 40, 50]


def test_balanced_subset_of_trials(stim_root, make_app):
    folder = make_stimulus_set(stim_root, n_trials=4, training=False, test_yaml=QUIET + "trials_per_participant: 2\nquestionnaire: []\n")
    app = make_app(folder)
    for _ in range(4):
        Driver(app.test_client()).start()
    with storage_of(app).reading() as s:
        counts = dict(s.execute(select(Page.trial, func.count()).where(Page.kind == "trial").group_by(Page.trial)).all())
    # 4 participants x 2 trials over 4 trials: least-assigned-first gives each trial exactly 2
    assert counts == {"t01": 2, "t02": 2, "t03": 2, "t04": 2}


def test_headphone_failure_stops_when_configured(stim_root, make_app, backend):
    folder = make_stimulus_set(stim_root, n_trials=1, test_yaml="headphone_check: {on_failure: stop, trials: 4, pass_threshold: 3}\n")
    app = make_app(folder, **backend)
    storage = storage_of(app)
    d = Driver(app.test_client())
    d.start()
    _, data = d.current()
    right = d.answer(data, storage)["answers"]
    wrong = [(a + 1) % 3 for a in right]
    answers = right[:2] + wrong[2:]  # 2 of 4 correct, below the threshold of 3
    r = d.post({"position": data["position"], "answers": answers})
    assert r.status_code == 200 and r.json["headphones_passed"] is False and r.json["stopped"] is True
    html, data = d.current()
    assert data is None and "needs headphones" in html
    with storage.reading() as s:
        p = s.scalar(select(Participant))
        assert (p.headphone_correct, p.headphone_passed, p.stopped) == (2, False, True)


def test_headphone_rounds_are_generated_wavs(stim_root, make_app):
    import io

    import numpy as np
    import soundfile as sf

    folder = make_stimulus_set(stim_root, n_trials=1)
    app = make_app(folder)
    storage = storage_of(app)
    d = Driver(app.test_client())
    d.start()
    _, data = d.current()
    key = d.answer(data, storage)["answers"]
    audio, rate = sf.read(io.BytesIO(d.client.get(data["rounds"][0]).data))
    assert audio.shape[1] == 2
    tone = int(rate * 1.0)
    gap = int(rate * 0.5)
    segments = [audio[i * (tone + gap): i * (tone + gap) + tone] for i in range(3)]
    rms = [float(np.sqrt(np.mean(seg[:, 0] ** 2))) for seg in segments]
    # the quiet tone is 6 dB (a factor of 2 in amplitude) below the others
    assert int(np.argmin(rms)) == key[0]
    assert sorted(rms)[1] / min(rms) == pytest.approx(10 ** (6 / 20), rel=1e-3)
    correlations = [float(np.corrcoef(seg[:, 0], seg[:, 1])[0, 1]) for seg in segments]
    assert sorted(round(c) for c in correlations) == [-1, 1, 1]


def test_german_catalogue(stim_root, make_app):
    folder = make_stimulus_set(stim_root, n_trials=1, test_yaml=QUIET + "language: de\n")
    app = make_app(folder)
    client = app.test_client()
    assert "Willkommen" in client.get("/t/demo/").get_data(as_text=True)
    en = client.get("/t/demo/?lang=en").get_data(as_text=True)
    assert "Welcome" in en
    d = Driver(client)
    d.start()
    html, _ = d.current()
    assert "Übungsseite 1 von 1" in html and 'lang="de"' in html
    missing = client.get("/t/demo/audio/no-such-token")
    assert missing.status_code == 404 and "Diese Seite existiert nicht." in missing.get_data(as_text=True)


def test_consent_required(stim_root, make_app):
    folder = make_stimulus_set(stim_root, n_trials=1)
    app = make_app(folder)
    client = app.test_client()
    d = Driver(client)
    html = client.get("/t/demo/").get_data(as_text=True)
    from tests.webapp.participant_driver import csrf_token

    r = client.post("/t/demo/start", data={"csrf_token": csrf_token(html)})
    assert r.status_code == 400 and "tick the box" in r.get_data(as_text=True)
    with storage_of(app).reading() as s:
        assert s.scalar(select(func.count()).select_from(Participant)) == 0
    d.start()


# Condition ids, roles and file names of the generated set. (Short or common words such as trial
# ids or "system" could occur by chance inside random tokens or in ordinary text.)
FORBIDDEN = ("hidden_reference", "anchor_3k5", "anchor_7k", "distilled", "non_distilled", "anchor_low",
             "anchor_mid", "reference.wav", ".wav", "item0", "item1", "run-")


def test_blindness_of_html_urls_and_scripts(stim_root, make_app):
    folder = make_stimulus_set(stim_root, n_trials=2)
    app = make_app(folder)
    storage = storage_of(app)
    client = app.test_client()
    d = Driver(client)
    d.start()
    seen: list[str] = []
    while True:
        html, data = d.current()
        seen.append(html)
        if data is None:
            break
        urls = [data.get("reference"), data.get("sound"), *data.get("rounds", []), *[s["url"] for s in data.get("sounds", [])]]
        for url in filter(None, urls):
            r = client.get(url)
            assert r.status_code == 200
            seen.append(url)
            seen.append(json.dumps(dict(r.headers)))
        assert d.post(d.answer(data, storage)).status_code == 200
    for script in ("earshot.js", "mushra.js"):
        seen.append(client.get(f"/static/{script}").get_data(as_text=True))
    text = "\n".join(seen)
    for word in FORBIDDEN:
        assert word not in text, f"{word!r} is visible to the participant"
    # the same condition gets a different URL for another participant
    d2 = Driver(app.test_client())
    d2.start()
    urls2 = set(re.findall(r"/t/demo/audio/[A-Za-z0-9_-]+", "\n".join(d2.current()[0] for _ in range(1))))
    assert urls2 and not urls2 & set(re.findall(r"/t/demo/audio/[A-Za-z0-9_-]+", text))


def test_audio_range_requests_and_caching(stim_root, make_app):
    folder = make_stimulus_set(stim_root, n_trials=1, test_yaml=QUIET)
    app = make_app(folder)
    d = Driver(app.test_client())
    d.start()
    _, data = d.current()
    url = data["sounds"][0]["url"]
    full = d.client.get(url)
    assert full.status_code == 200 and full.headers["Content-Type"] == "audio/wav"
    assert full.headers["Accept-Ranges"] == "bytes"
    assert full.headers["Cache-Control"].startswith("private") and "max-age=" in full.headers["Cache-Control"]
    assert "Content-Disposition" not in full.headers
    part = d.client.get(url, headers={"Range": "bytes=4-11"})
    assert part.status_code == 206
    assert part.data == full.data[4:12]
    assert part.headers["Content-Range"] == f"bytes 4-11/{len(full.data)}"
    etag = full.headers["ETag"]
    assert d.client.get(url, headers={"If-None-Match": etag}).status_code == 304
    # another participant cannot use these tokens, nor can a visitor without a cookie
    assert app.test_client().get(url).status_code == 404
    other = Driver(app.test_client())
    other.start()
    assert other.client.get(url).status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/t/demo/audio/..%2Fmanifest.json",
        "/t/demo/audio/../../manifest.json",
        "/t/demo/audio/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/t/demo/audio/audio%2Ft01%2Fhidden_reference.wav",
        "/t/../manifest.json",
        "/static/../manifest.json",
        "/static/..%2F..%2Fstimuli%2Fdemo%2Fmanifest.json",
    ],
)
def test_no_path_reaches_unlisted_files(stim_root, make_app, path):
    folder = make_stimulus_set(stim_root, n_trials=1, test_yaml=QUIET)
    app = make_app(folder)
    d = Driver(app.test_client())
    d.start()
    r = d.client.get(path)
    assert r.status_code == 404
    assert b"trials" not in r.data and b"root:" not in r.data and b"RIFF" not in r.data


def test_security_headers_and_cookie_flags(stim_root, make_app):
    folder = make_stimulus_set(stim_root, n_trials=1, test_yaml=QUIET)
    app = make_app(folder, secure_cookies=True)
    client = app.test_client()
    r = client.get("/t/demo/")
    csp = r.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "'unsafe-inline'" not in csp
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Referrer-Policy"] == "same-origin"
    assert r.headers["Cache-Control"] == "no-store"
    d = Driver(client)
    start = d.start()
    cookie = start.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie and "Path=/t/demo/" in cookie


def test_completion_code_and_redirect(stim_root, make_app):
    folder = make_stimulus_set(
        stim_root, n_trials=1, training=False,
        test_yaml=QUIET + "questionnaire: []\ncompletion_code: C0DE42\ncompletion_redirect: https://example.org/done?cc={code}\n",
    )
    app = make_app(folder)
    d = Driver(app.test_client())
    d.start()
    d.complete()
    html, data = d.current()
    assert data is None
    assert "Your completion code: C0DE42" in html
    assert 'href="https://example.org/done?cc=C0DE42"' in html


def test_https_behind_a_proxy_keeps_csrf_working(stim_root, make_app):
    """Behind an HTTPS reverse proxy (X-Forwarded-Proto), a same-origin form post still passes."""
    folder = make_stimulus_set(stim_root, n_trials=1, test_yaml=QUIET)
    app = make_app(folder, secure_cookies=True, proxy_count=1)
    client = app.test_client()
    proxied = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "listen.example.org", "X-Forwarded-For": "203.0.113.9"}
    from tests.webapp.participant_driver import csrf_token

    html = client.get("/t/demo/", headers=proxied).get_data(as_text=True)
    r = client.post(
        "/t/demo/start",
        data={"consent": "yes", "csrf_token": csrf_token(html)},
        headers={**proxied, "Referer": "https://listen.example.org/t/demo/"},
    )
    assert r.status_code == 302 and "Secure" in r.headers["Set-Cookie"]
    assert r.headers["Strict-Transport-Security"].startswith("max-age=")
