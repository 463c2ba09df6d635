"""Exports of a test's results: tidy ratings CSV, participants CSV, webMUSHRA ``mushra.csv``, JSON.

Ratings of training pages are never exported (BS.1534-3 §5.2 discards them). Participants excluded
by the experimenter are left out of the rating exports unless ``include_excluded`` is set; the
participants export always lists everyone with an ``excluded`` column.

Every CSV text cell that a spreadsheet would read as a formula (it starts with ``=``, ``+``, ``-``,
``@``, a tab or a carriage return) gets a leading ``'`` (OWASP's rule against CSV injection): crowd
ids from the URL, questionnaire answers, the user agent and exclusion reasons are anyone's text.
Numbers are written as numbers. The JSON export is left as is: it is read by programs, not
spreadsheets, and must give back exactly what was stored.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from sqlalchemy import select, text

from common.ratings_table import (
    PARTICIPANT_COLUMNS,
    QUESTION_PREFIX,
    TIDY_COLUMNS,
    WEBMUSHRA_CSV_COLUMNS,
    WEBMUSHRA_NAME_OF_ROLE,
    counted_ratings_sql,
    iso_utc,
)

from .manifest import StimulusSet
from .storage import Page, Participant, ParticipantEvent, Storage, utc_iso

FORMATS = ("ratings", "participants", "mushra", "json")


def _flag(value: Any) -> bool | None:
    # SQLite hands booleans back as 0/1 to a textual query.
    return None if value is None else bool(value)


def rating_rows(storage: Storage, stim: StimulusSet, include_excluded: bool = False) -> list[dict[str, Any]]:
    """One dict per rating that counts (:func:`common.ratings_table.counted_ratings_sql`: a
    submitted rated page, a participant not excluded unless ``include_excluded``), keys
    :data:`common.ratings_table.TIDY_COLUMNS` (``duration_ms``: the time spent on the page) plus ``listening_ms``, ``loop_used`` and ``excluded``; ordered by
    participant, trial position, condition position."""
    roles = {(t.id, c.id): c.role for t in stim.trials for c in t.conditions}
    items = {t.id: t.item for t in stim.trials}
    query = text(counted_ratings_sql(include_excluded=include_excluded, one_test=True,
                                     extra=("listening_ms", "loop_used", "excluded")))
    rows = []
    with storage.reading() as s:
        for r in s.execute(query, {"test": stim.name}).mappings():
            rows.append(
                {
                    "test": stim.name,
                    "participant": r["participant"],
                    "trial": r["trial"],
                    "item": items.get(r["trial"], ""),
                    "condition": r["condition"],
                    "role": roles.get((r["trial"], r["condition"]), ""),
                    "score": r["score"],
                    "trial_position": r["trial_position"],
                    "condition_position": r["condition_position"],
                    "duration_ms": r["duration_ms"],
                    "plays": r["plays"],
                    "submitted_at": iso_utc(r["submitted_at"]),
                    "listening_ms": r["listening_ms"],
                    "loop_used": _flag(r["loop_used"]),
                    "excluded": _flag(r["excluded"]),
                }
            )
    return rows


def participant_rows(storage: Storage, stim: StimulusSet) -> list[dict[str, Any]]:
    cfg = stim.settings
    rows = []
    with storage.reading() as s:
        participants = s.scalars(
            select(Participant).where(Participant.test == stim.name).order_by(Participant.id)
        ).all()
        pages = s.execute(
            select(Page.participant_id, Page.submitted_at)
            .join(Participant, Participant.id == Page.participant_id)
            .where(Participant.test == stim.name)
        ).all()
        events = s.scalars(
            select(ParticipantEvent)
            .join(Participant, Participant.id == ParticipantEvent.participant_id)
            .where(Participant.test == stim.name)
            .order_by(ParticipantEvent.id)
        ).all()
    total: dict[int, int] = {}
    done: dict[int, int] = {}
    for pid, submitted in pages:
        total[pid] = total.get(pid, 0) + 1
        done[pid] = done.get(pid, 0) + (submitted is not None)
    last_reason = {e.participant_id: e.reason for e in events}
    for p in participants:
        row = {
            "test": stim.name,
            "participant": p.code,
            "created_at": utc_iso(p.created_at),
            "finished_at": utc_iso(p.finished_at),
            "pages_submitted": done.get(p.id, 0),
            "pages_total": total.get(p.id, 0),
            "language": p.language,
            "excluded": p.excluded,
            "exclusion_reason": last_reason.get(p.id, "") if p.excluded else "",
            "stopped": p.stopped,
            "headphone_correct": p.headphone_correct,
            "headphone_passed": p.headphone_passed,
            "volume_gain_db": p.volume_gain_db,
            "user_agent": p.user_agent,
        }
        for key in cfg.crowd_parameters:
            row[key] = (p.crowd or {}).get(key, "")
        for q in cfg.questionnaire:
            row[f"{QUESTION_PREFIX}{q.name}"] = (p.answers or {}).get(q.name, "")
        rows.append(row)
    return rows


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: Any) -> Any:
    """``value`` for a CSV cell: text a spreadsheet would run as a formula gets a leading ``'``;
    numbers (a negative one included) and booleans stay as they are; None becomes empty."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def _csv(columns: list[str] | tuple[str, ...], rows: list[dict]) -> str:
    # The csv module quotes a field only for the characters of its line terminator (before
    # Python 3.12): with "\n" alone a carriage return in a free-text answer would stay bare and
    # split the row for readers. Rows are written with "\r\n", which quotes both, and end in "\n".
    line = io.StringIO()
    writer = csv.writer(line, lineterminator="\r\n")
    out = []
    # Column names come from the questionnaire and crowd settings: text like any other.
    for cells in ([spreadsheet_safe(k) for k in columns], *([spreadsheet_safe(row.get(k)) for k in columns] for row in rows)):
        writer.writerow(cells)
        out.append(line.getvalue()[:-2] + "\n")
        line.seek(0)
        line.truncate()
    return "".join(out)


def _score(value: float | None) -> Any:
    # Scores are whole numbers from the slider; keep "57", not "57.0", in the CSV.
    if value is None:
        return None
    return int(value) if float(value).is_integer() else value


def export(storage: Storage, stim: StimulusSet, fmt: str, include_excluded: bool = False) -> str:
    """The export ``fmt`` (one of :data:`FORMATS`) as text."""
    if fmt == "ratings":
        rows = rating_rows(storage, stim, include_excluded)
        for r in rows:
            r["score"] = _score(r["score"])
        return _csv(TIDY_COLUMNS, rows)
    if fmt == "participants":
        rows = participant_rows(storage, stim)
        return _csv(list(rows[0]) if rows else list(PARTICIPANT_COLUMNS[:2]), rows)
    if fmt == "mushra":
        rows = rating_rows(storage, stim, include_excluded)
        out = [
            {
                "session_test_id": r["test"],
                "session_uuid": r["participant"],
                "trial_id": r["trial"],
                "rating_stimulus": WEBMUSHRA_NAME_OF_ROLE.get(r["role"], r["condition"]),
                "rating_score": _score(r["score"]),
                "rating_time": r["duration_ms"],
                "rating_comment": "",
            }
            for r in rows
        ]
        return _csv(WEBMUSHRA_CSV_COLUMNS, out)
    if fmt == "json":
        return json.dumps(
            {
                "test": stim.name,
                "ratings": rating_rows(storage, stim, include_excluded),
                "participants": participant_rows(storage, stim),
            },
            indent=1,
        )
    raise ValueError(f"export format: expected one of {list(FORMATS)}, found {fmt!r}")
