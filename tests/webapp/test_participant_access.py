"""Participants' requests reach the database through the fast path only (Core statements on the
thread's kept connection, no ORM session), and still see only what is theirs."""

from __future__ import annotations

import re
from contextlib import contextmanager

import pytest

from tests.webapp.participant_driver import Driver
from tests.webapp.stimulus_sets import make_stimulus_set
from webapp.storage import Storage

AUDIO_URL = re.compile(r"/t/demo/audio/[A-Za-z0-9_-]+")


@contextmanager
def sessions_refused():
    """Any ORM session or pooled Core connection opened inside the block fails the test."""

    def refuse(self):
        raise AssertionError("a participant's request opened a session")

    with pytest.MonkeyPatch.context() as mp:
        for name in ("reading", "writing", "writing_core"):
            mp.setattr(Storage, name, refuse)
        yield


def test_every_participant_request_uses_the_fast_path_only(stim_root, make_app, backend):
    app = make_app(make_stimulus_set(stim_root, n_trials=2), **backend)
    storage = app.extensions["earshot"].tests["demo"].storage
    d = Driver(app.test_client())
    with sessions_refused():
        d.start()
        assert d.client.get("/t/demo/").status_code == 302  # welcome again: straight to the page
    seen = []
    while True:
        with sessions_refused():
            html, data = d.current()
            if data is None:
                break
            for url in sorted(set(AUDIO_URL.findall(html)))[:2]:
                assert d.client.get(url).status_code == 200, url
        seen.append(data["kind"])
        body = d.answer(data, storage)  # the headphone answers: read by the test through a session
        with sessions_refused():
            r = d.post(body)
        assert r.status_code == 200, r.get_data(as_text=True)
    assert seen == ["headphones", "volume", "training", "trial", "trial", "questionnaire"]
    assert "Thank you" in html


def test_audio_of_another_participant_or_without_cookie_is_not_found(stim_root, make_app, backend):
    app = make_app(make_stimulus_set(stim_root, n_trials=1, test_yaml="headphone_check: {enabled: false}\n"), **backend)
    me, other = Driver(app.test_client()), Driver(app.test_client())
    me.start()
    other.start()
    mine = sorted(set(AUDIO_URL.findall(me.current()[0])))
    theirs = sorted(set(AUDIO_URL.findall(other.current()[0])))
    assert mine and theirs and not set(mine) & set(theirs)
    assert me.client.get(mine[0]).status_code == 200
    assert me.client.get(theirs[0]).status_code == 404
    assert app.test_client().get(mine[0]).status_code == 404  # no participant cookie
    assert me.client.get("/t/demo/audio/no-such-token").status_code == 404
