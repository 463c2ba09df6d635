"""Validating and storing one submitted page, in one transaction, exactly once.

A submission is a JSON object ``{"position": int, "idempotency_key": str, ...}`` plus the fields of
the page kind (see :func:`_check_mushra` and friends). The page must belong to the participant of
the cookie and be the first one not yet submitted. A retry carrying the same idempotency key as
the stored page is answered as a success and stores nothing; anything else is refused with a
:class:`SubmissionError` before a single row is written.
"""

from __future__ import annotations

import math
import re
from typing import Any, NamedTuple

from .errors import SubmissionError
from .headphones import answer_key
from .manifest import StimulusSet
from .storage import FastConnection, Storage, utcnow
from .storage.fast_path import (
    INSERT_RATINGS,
    PAGE_STATE,
    PARTICIPANT_ID,
    RATING_COLUMNS,
    SUBMISSION_LOOKUP,
    store_in_one_statement,
    store_page,
    update_participant,
)

KEY_PATTERN = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
MAX_DURATION_MS = 24 * 3600 * 1000
MAX_PLAYS = 100_000
MAX_TEXT = 2000


def _invalid(message: str) -> SubmissionError:
    return SubmissionError(422, "invalid_submission", message)


def _keys(obj: dict, allowed: set[str], required: set[str], where: str) -> None:
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise _invalid(f"{where}: unknown key(s) {unknown}; expected {sorted(allowed)}")
    missing = sorted(required - set(obj))
    if missing:
        raise _invalid(f"{where}: missing key(s) {missing}")


def _int(value: Any, lo: int, hi: int, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise _invalid(f"{where}: expected an integer from {lo} to {hi}, found {value!r}")
    return value


def _number(value: Any, lo: float, hi: float, where: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or not lo <= value <= hi
    ):
        raise _invalid(f"{where}: expected a number from {lo:g} to {hi:g}, found {value!r}")
    return float(value)


COMMON = {"position", "idempotency_key"}


def _check_mushra(stim: StimulusSet, page: NamedTuple, body: dict, page_values: dict) -> list[dict]:
    _keys(body, COMMON | {"ratings", "duration_ms", "loop_used"}, COMMON | {"ratings", "duration_ms", "loop_used"}, "submission")
    duration_ms = _int(body["duration_ms"], 0, MAX_DURATION_MS, "duration_ms")
    if not isinstance(body["loop_used"], bool):
        raise _invalid(f"loop_used: expected true or false, found {body['loop_used']!r}")
    ratings = body["ratings"]
    order = page.condition_order or []
    if not isinstance(ratings, list):
        raise _invalid(f"ratings: expected a list of {len(order)} objects, found {type(ratings).__name__}")
    slots = {token: slot for slot, token in enumerate((page.tokens or [])[1:])}
    seen: dict[int, dict] = {}
    for i, r in enumerate(ratings):
        where = f"ratings[{i}]"
        if not isinstance(r, dict):
            raise _invalid(f"{where}: expected an object, found {r!r}")
        _keys(r, {"stimulus", "score", "plays", "listening_ms"}, {"stimulus", "score", "plays", "listening_ms"}, where)
        stimulus = r["stimulus"]
        if not isinstance(stimulus, str) or stimulus not in slots:
            raise _invalid(f"{where}.stimulus: not one of this page's sounds: {stimulus!r}")
        slot = slots[stimulus]
        if slot in seen:
            raise _invalid(f"{where}.stimulus: the same sound is rated twice")
        score = r["score"]
        if score is not None:
            score = _number(score, 0, 100, f"{where}.score")
        seen[slot] = {
            "score": score,
            "plays": _int(r["plays"], 0, MAX_PLAYS, f"{where}.plays"),
            "listening_ms": _int(r["listening_ms"], 0, MAX_DURATION_MS, f"{where}.listening_ms"),
        }
    if len(seen) != len(order):
        raise _invalid(f"ratings: expected all {len(order)} sounds of the page, found {len(seen)}")
    enforce = stim.settings.enforce
    labels = lambda slots_: ", ".join(chr(ord("A") + s) for s in sorted(slots_))  # noqa: E731
    if enforce.all_played and (unplayed := [s for s, v in seen.items() if v["plays"] < 1]):
        raise SubmissionError(422, "not_finished", f"not yet played: {labels(unplayed)}")
    if enforce.all_rated and (unrated := [s for s, v in seen.items() if v["score"] is None]):
        raise SubmissionError(422, "not_finished", f"not yet rated: {labels(unrated)}")
    if enforce.one_at_100 and not any(v["score"] == 100 for v in seen.values()):
        raise SubmissionError(422, "not_finished", "at least one sound must be rated 100")
    page_values.update(duration_ms=duration_ms, loop_used=body["loop_used"])
    return [
        {
            "page_id": page.page_id,
            "participant_id": page.participant_id,
            "trial": page.trial,
            "condition": order[slot],
            "score": v["score"],
            "condition_position": slot + 1,
            "plays": v["plays"],
            "listening_ms": v["listening_ms"],
        }
        for slot, v in sorted(seen.items())
    ]


def _check_headphones(stim: StimulusSet, page: NamedTuple, body: dict, page_values: dict, participant_values: dict) -> dict:
    _keys(body, COMMON | {"answers"}, COMMON | {"answers"}, "submission")
    key = answer_key(page.setup["rounds"])
    answers = body["answers"]
    if not isinstance(answers, list) or len(answers) != len(key):
        raise _invalid(f"answers: expected a list of {len(key)} tone numbers (0–2), found {answers!r}")
    answers = [_int(a, 0, 2, f"answers[{i}]") for i, a in enumerate(answers)]
    correct = sum(a == k for a, k in zip(answers, key, strict=True))
    cfg = stim.settings.headphone_check
    passed = correct >= cfg.pass_threshold
    participant_values.update(headphone_correct=correct, headphone_passed=passed)
    if not passed and cfg.on_failure == "stop":
        participant_values["stopped"] = True
    page_values["answers"] = {"answers": answers, "correct": correct, "passed": passed}
    return {"headphones_passed": passed}


def _check_volume(body: dict, page_values: dict, participant_values: dict) -> None:
    _keys(body, COMMON | {"gain_db", "plays"}, COMMON | {"gain_db", "plays"}, "submission")
    gain = _number(body["gain_db"], -4, 4, "gain_db")
    plays = _int(body["plays"], 1, MAX_PLAYS, "plays")
    participant_values["volume_gain_db"] = gain
    page_values["answers"] = {"gain_db": gain, "plays": plays}


def _check_questionnaire(stim: StimulusSet, body: dict, page_values: dict, participant_values: dict) -> None:
    _keys(body, COMMON | {"answers"}, COMMON | {"answers"}, "submission")
    answers = body["answers"]
    if not isinstance(answers, dict):
        raise _invalid(f"answers: expected an object, found {answers!r}")
    fields = {q.name: q for q in stim.settings.questionnaire}
    _keys(answers, set(fields), {n for n, q in fields.items() if q.required}, "answers")
    clean: dict[str, Any] = {}
    for name, value in answers.items():
        q = fields[name]
        where = f"answers.{name}"
        if value is None or value == "":
            if q.required:
                raise _invalid(f"{where}: an answer is required")
            continue
        if q.kind == "number":
            lo = -math.inf if q.minimum is None else q.minimum
            hi = math.inf if q.maximum is None else q.maximum
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not lo <= value <= hi:
                raise _invalid(f"{where}: expected a number from {lo:g} to {hi:g}, found {value!r}")
            clean[name] = value
        elif q.kind == "choice":
            if value not in q.choices:
                raise _invalid(f"{where}: expected one of {list(q.choices)}, found {value!r}")
            clean[name] = value
        else:
            if not isinstance(value, str) or len(value) > MAX_TEXT:
                raise _invalid(f"{where}: expected a text of at most {MAX_TEXT} characters")
            clean[name] = value
    participant_values["answers"] = clean
    page_values["answers"] = clean


def _write_in_transaction(conn: FastConnection, values: dict, page_values: dict, participant_values: dict, ratings: list[dict]) -> bool:
    """SQLite (inside ``BEGIN IMMEDIATE``): the page's UPDATE, then its ratings and the participant."""
    stored = conn.execute(store_page(tuple(sorted(page_values))), values)
    if stored != 1:
        return False
    if ratings:
        conn.executemany(INSERT_RATINGS, ratings)
    if participant_values:
        conn.execute(update_participant(tuple(sorted(participant_values))), values)
    return True


def _write_in_one_statement(conn: FastConnection, values: dict, page_values: dict, participant_values: dict, ratings: list[dict]) -> bool:
    """PostgreSQL (autocommit): :func:`.storage.fast_path.store_in_one_statement`."""
    statement = store_in_one_statement(tuple(sorted(page_values)), tuple(sorted(participant_values)), bool(ratings))
    if ratings:
        values = {**values, **{f"r_{c}": [r[c] for r in ratings] for c in RATING_COLUMNS}}
    return conn.first(statement, values).stored == 1


def submit(storage: Storage, stim: StimulusSet, participant_token: str | None, body: Any) -> dict:
    """Validate ``body`` and store it as the participant's current page; returns the JSON answer.

    A refused submission (:class:`SubmissionError`) leaves the database unchanged. Two round
    trips on PostgreSQL: the lookup of participant and page, then one statement storing
    everything (:func:`.storage.fast_path.store_in_one_statement`), each committing on its own. On SQLite the
    lookup and the writes share one ``BEGIN IMMEDIATE`` transaction, which serialises writers.
    Running it again after a lost connection is safe: a stored page is answered from its
    idempotency key.
    """
    if storage.is_sqlite:
        return storage.run_fast(lambda conn: _submit(conn, stim, participant_token, body, _write_in_transaction), write=True)
    return storage.run_fast(lambda conn: _submit(conn, stim, participant_token, body, _write_in_one_statement), write=False)


def _submit(conn: FastConnection, stim: StimulusSet, participant_token: str | None, body: Any, write) -> dict:
    if not isinstance(body, dict):
        raise _invalid(f"expected a JSON object, found {type(body).__name__}")
    if "position" not in body or "idempotency_key" not in body:
        raise _invalid("submission: missing key(s) position and/or idempotency_key")
    position = _int(body["position"], 0, 10_000, "position")
    key = body["idempotency_key"]
    if not isinstance(key, str) or not KEY_PATTERN.match(key):
        raise _invalid(f"idempotency_key: expected 8–64 letters, digits, - or _, found {key!r}")
    if not participant_token:
        raise SubmissionError(403, "no_participant", "no participant cookie; open the test link again")
    who = {"token": participant_token, "test": stim.name}
    row = conn.first(SUBMISSION_LOOKUP, {**who, "position": position})
    if row is None:
        if conn.first(PARTICIPANT_ID, who) is None:
            raise SubmissionError(403, "no_participant", "unknown participant; open the test link again")
        raise SubmissionError(404, "no_such_page", f"position {position}: this participant has no such page")
    if row.submitted_at is not None:
        if row.idempotency_key == key:
            return {"ok": True, "replayed": True, "finished": row.finished_at is not None, "stopped": bool(row.stopped)}
        raise SubmissionError(409, "already_submitted", f"page {position} was already submitted")
    if row.stopped:
        raise SubmissionError(409, "stopped", "this participant's test has ended")
    if position != row.expected:
        raise SubmissionError(409, "wrong_page", f"expected page {row.expected}, found page {position}")
    extra: dict = {}
    page_values: dict = {}
    participant_values: dict = {}
    ratings: list[dict] = []
    if row.kind in ("training", "trial"):
        ratings = _check_mushra(stim, row, body, page_values)
    elif row.kind == "headphones":
        extra = _check_headphones(stim, row, body, page_values, participant_values)
    elif row.kind == "volume":
        _check_volume(body, page_values, participant_values)
    elif row.kind == "questionnaire":
        _check_questionnaire(stim, body, page_values, participant_values)
    now = utcnow()
    if row.remaining == 1:
        participant_values["finished_at"] = now
    values = {
        "page_id": row.page_id, "participant_id": row.participant_id, "now": now, "key": key,
        **{f"v_{k}": v for k, v in page_values.items()}, **{f"p_{k}": v for k, v in participant_values.items()},
    }
    if not write(conn, values, page_values, participant_values, ratings):
        # A concurrent submission of this page committed after the lookup above (PostgreSQL: the
        # UPDATE waited for its row lock, then found the page submitted; SQLite serialises writers
        # and never gets here). This new statement sees what it stored, under READ COMMITTED.
        # Nothing was written yet: answering from here leaves the database as the other one left it.
        state = conn.first(PAGE_STATE, {"page_id": row.page_id})
        if state.idempotency_key == key:
            return {"ok": True, "replayed": True, "finished": state.finished_at is not None, "stopped": bool(state.stopped)}
        raise SubmissionError(409, "already_submitted", f"page {position} was already submitted")
    return {
        "ok": True,
        "replayed": False,
        **extra,
        "finished": "finished_at" in participant_values or row.finished_at is not None,
        "stopped": bool(participant_values.get("stopped", row.stopped)),
    }
