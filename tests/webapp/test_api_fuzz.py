"""Fuzzing the page-submission API with hypothesis: every malformed, out-of-range, foreign or
replayed submission gets a 4xx JSON error and leaves the database exactly as it was."""

from __future__ import annotations

import copy
import json
import math

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from tests.webapp.participant_driver import Driver
from tests.webapp.stimulus_sets import make_stimulus_set
from webapp.storage import Page, Participant, ParticipantEvent, Rating
from webapp.submissions import KEY_PATTERN

QUIET = "headphone_check: {enabled: false}\nvolume_check: false\n"

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10**12, 10**12),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20),
)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=6)
not_a_number = st.one_of(st.none(), st.booleans(), st.text(max_size=10), st.lists(json_scalars, max_size=2), st.dictionaries(st.text(max_size=5), json_scalars, max_size=2))
bad_score = st.one_of(
    st.floats(min_value=100, exclude_min=True, allow_infinity=False), st.floats(max_value=0, exclude_max=True, allow_infinity=False),
    st.sampled_from([math.nan, math.inf, -math.inf]), st.booleans(), st.text(max_size=5), st.lists(st.integers(), max_size=2),
)
bad_count = st.one_of(st.integers(max_value=-1), st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not f.is_integer()), st.text(max_size=5), st.booleans(), st.none())


def snapshot(storage):
    with storage.reading() as s:
        return (
            [tuple(r) for r in s.execute(select(Rating.page_id, Rating.condition, Rating.score, Rating.plays)).all()],
            [tuple(r) for r in s.execute(select(Page.id, Page.submitted_at, Page.idempotency_key, Page.answers, Page.duration_ms)).all()],
            [tuple(r) for r in s.execute(select(Participant.id, Participant.finished_at, Participant.answers, Participant.stopped)).all()],
            s.scalars(select(ParticipantEvent.id)).all(),
        )


@pytest.fixture
def fuzz_setup(stim_root, make_app):
    folder = make_stimulus_set(stim_root, n_trials=2, test_yaml=QUIET)
    app = make_app(folder, max_body_bytes=4096)
    storage = app.extensions["earshot"].tests["demo"].storage
    me = Driver(app.test_client())
    me.start()
    _, first = me.current()
    submitted = me.answer(first)
    assert me.post(submitted).status_code == 200  # page 0 done: replays of it must be refused
    _, data = me.current()
    other = Driver(app.test_client())
    other.start()
    _, other_first = other.current()
    return {"app": app, "storage": storage, "me": me, "data": data, "submitted": submitted, "other": other, "other_first": other_first}


def mutations(base: dict, setup) -> st.SearchStrategy:
    n = len(base["ratings"])
    idx = st.integers(0, n - 1)

    def set_rating(i, key, value):
        body = copy.deepcopy(base)
        body["ratings"][i][key] = value
        return body

    def set_top(key, value):
        body = copy.deepcopy(base)
        body[key] = value
        return body

    def drop_top(key):
        body = copy.deepcopy(base)
        del body[key]
        return body

    def drop_rating(i):
        body = copy.deepcopy(base)
        del body["ratings"][i]
        return body

    def duplicate_rating(i, j):
        body = copy.deepcopy(base)
        body["ratings"][j] = copy.deepcopy(body["ratings"][i])
        return body

    def extra_key(where, key, value):
        body = copy.deepcopy(base)
        (body if where is None else body["ratings"][where])[key] = value
        return body

    tokens = {s["stimulus"] for s in setup["data"]["sounds"]}
    return st.one_of(
        st.builds(set_rating, idx, st.just("score"), bad_score),
        st.builds(set_rating, idx, st.just("plays"), bad_count),
        st.builds(set_rating, idx, st.just("listening_ms"), bad_count),
        st.builds(set_rating, idx, st.just("stimulus"), st.one_of(st.text(max_size=40), not_a_number).filter(lambda v: not (isinstance(v, str) and v in tokens))),
        st.builds(set_rating, idx, st.just("stimulus"), st.sampled_from([s["stimulus"] for s in setup["other_first"]["sounds"]])),
        st.builds(drop_rating, idx),
        st.builds(duplicate_rating, idx, idx).filter(lambda b: len({r["stimulus"] for r in b["ratings"]}) < n),
        st.builds(extra_key, st.one_of(st.none(), idx), st.text(min_size=1, max_size=10).filter(lambda k: k not in base and k not in base["ratings"][0]), json_values),
        st.builds(drop_top, st.sampled_from(sorted(base))),
        st.builds(set_top, st.just("ratings"), st.one_of(json_scalars, st.dictionaries(st.text(max_size=5), json_scalars, max_size=3))),
        st.builds(set_top, st.just("duration_ms"), bad_count),
        st.builds(set_top, st.just("loop_used"), json_values.filter(lambda v: not isinstance(v, bool))),
        st.builds(set_top, st.just("position"), st.one_of(st.integers(-5, 50).filter(lambda p: p != base["position"]), not_a_number)),
        st.builds(set_top, st.just("idempotency_key"), st.one_of(st.text(max_size=70).filter(lambda k: not KEY_PATTERN.match(k)), not_a_number)),
        st.builds(lambda s: _all_scores(base, s), st.integers(0, 99)),
        json_values.filter(lambda v: not isinstance(v, dict)),
    )


def _all_scores(base, value):
    body = copy.deepcopy(base)
    for r in body["ratings"]:
        r["score"] = value  # nobody at 100: enforcement refuses it
    return body


def check_refused(response, storage, before):
    assert 400 <= response.status_code < 500, (response.status_code, response.get_data(as_text=True)[:300])
    payload = response.get_json(silent=True)
    assert isinstance(payload, dict) and isinstance(payload.get("error"), str) and isinstance(payload.get("message"), str), response.get_data(as_text=True)[:300]
    assert snapshot(storage) == before


@pytest.mark.slow
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_submissions_are_refused(fuzz_setup, data):
    setup = fuzz_setup
    me, storage = setup["me"], setup["storage"]
    base = Driver.mushra_body(setup["data"])
    base["idempotency_key"] = "fuzz-key-0001"
    body = data.draw(mutations(base, setup))
    before = snapshot(storage)
    raw = json.dumps(body).encode()
    check_refused(me.post(None, raw=raw), storage, before)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_arbitrary_bytes_are_refused(fuzz_setup, raw):
    setup = fuzz_setup
    try:
        parsed = json.loads(raw)
        assume(not (isinstance(parsed, dict) and "ratings" in parsed))
    except (ValueError, UnicodeDecodeError):
        pass
    before = snapshot(setup["storage"])
    check_refused(setup["me"].post(None, raw=raw), setup["storage"], before)


def test_replays_foreign_pages_and_oversized_bodies(fuzz_setup):
    setup = fuzz_setup
    me, other, storage = setup["me"], setup["other"], setup["storage"]
    before = snapshot(storage)
    # a replay of the submitted page under a new key
    check_refused(me.post(setup["submitted"], key="new-key-12345"), storage, before)
    # the other participant's page (their position 0, their tokens) from my session
    foreign = Driver.mushra_body(setup["other_first"])
    r = me.post(foreign)
    check_refused(r, storage, before)
    # my page sent with the other participant's cookie
    r = other.post(Driver.mushra_body(setup["data"]))
    check_refused(r, storage, before)
    # no cookie at all, with my CSRF token (tied to my participant cookie, so refused as CSRF)
    anonymous = Driver(setup["app"].test_client())
    anonymous.csrf = me.csrf
    r = anonymous.post(Driver.mushra_body(setup["data"]))
    assert r.status_code == 400 and r.json["error"] == "csrf"
    check_refused(r, storage, before)
    # bigger than the limit
    big = Driver.mushra_body(setup["data"])
    big["padding"] = "x" * 5000
    r = me.post(big)
    assert r.status_code == 413
    check_refused(r, storage, before)
    # wrong content type
    r = me.client.post("/t/demo/api/page", data="position=1", headers={"X-CSRFToken": me.csrf, "Content-Type": "application/x-www-form-urlencoded"})
    check_refused(r, storage, before)
    # and the untouched page can still be submitted afterwards
    assert me.post(Driver.mushra_body(setup["data"])).status_code == 200
