"""The ratings a listening test produces, as the web app exports them and the analysis reads them.

Three parts of one contract:

* the tidy ratings table (:data:`TIDY_COLUMNS`, one row per rating) and the participants table
  (:data:`PARTICIPANT_COLUMNS`, one row per participant, keyed by ``participant``);
* webMUSHRA's names for the hidden reference and the anchors (``reference``, ``anchor35``,
  ``anchor70``) and ours (:data:`WEBMUSHRA_CONDITIONS`, :data:`WEBMUSHRA_ROLES`);
* the web app's results tables (``participants``, ``pages``, ``ratings``) and the one query that
  says which of their ratings count (:func:`counted_ratings_sql`): only ratings of submitted rated
  pages (a training page's grades are discarded, BS.1534-3 §5.2; a page not yet submitted is not
  an answer), and not those of participants the experimenter excluded unless asked. The web app's
  exports and the analysis, reading the same database, run this same text.

Tidy columns:

=====================  ==========  ==========================================================
column                 dtype       meaning
=====================  ==========  ==========================================================
``test``               str         test (stimulus set) name
``participant``        str         listener id (the web app's public code, never its token)
``trial``              str         trial id (one MUSHRA page: one item, one group of systems)
``item``               str         audio material of the trial (``guitar``); = trial if unknown
``condition``          str         condition id, stable across trials (``hidden_reference``)
``role``               str         ``hidden_reference | anchor_low | anchor_mid | system``;
                                   missing until roles are assigned
``score``              float       0–100
``trial_position``     Int64       1-based position of the trial in the listener's session
``condition_position`` Int64       1-based position of the condition on the page
``duration_ms``        float       time spent on the page
``plays``              Int64       how often the condition was played
``submitted_at``       str         ISO 8601 UTC time the page was submitted (:func:`iso_utc`)
=====================  ==========  ==========================================================
"""

from __future__ import annotations

from datetime import UTC, datetime

from .stimulus_set import (
    ANCHOR_LOW,
    ANCHOR_MID,
    HIDDEN_REFERENCE,
    HIDDEN_REFERENCE_ID,
    LOW_ANCHOR_ID,
    MID_ANCHOR_ID,
)

TIDY_COLUMNS = (
    "test",
    "participant",
    "trial",
    "item",
    "condition",
    "role",
    "score",
    "trial_position",
    "condition_position",
    "duration_ms",
    "plays",
    "submitted_at",
)
REQUIRED_COLUMNS = ("participant", "condition", "score")
"""A tidy table needs these and ``trial`` (or ``item``); the other columns may be missing."""

PARTICIPANT_COLUMNS = (
    "test",
    "participant",
    "created_at",
    "finished_at",
    "pages_submitted",
    "pages_total",
    "language",
    "excluded",
    "exclusion_reason",
    "stopped",
    "headphone_correct",
    "headphone_passed",
    "volume_gain_db",
    "user_agent",
)
"""The participants table's fixed columns; each crowd parameter of the test follows under its own
name, then each questionnaire answer as ``q_<question>`` (:data:`QUESTION_PREFIX`)."""
QUESTION_PREFIX = "q_"

# --- webMUSHRA -----------------------------------------------------------------------------------

WEBMUSHRA_CONDITIONS = {"reference": HIDDEN_REFERENCE_ID, "anchor35": LOW_ANCHOR_ID, "anchor70": MID_ANCHOR_ID}
"""webMUSHRA's condition names for the hidden reference and the anchors it generates → ours."""
WEBMUSHRA_ROLES = {"reference": HIDDEN_REFERENCE, "anchor35": ANCHOR_LOW, "anchor70": ANCHOR_MID}
"""webMUSHRA's condition names → roles (its other conditions are systems)."""
WEBMUSHRA_NAME_OF_ROLE = {role: name for name, role in WEBMUSHRA_ROLES.items()}
"""Role → the name webMUSHRA's ``mushra.csv`` gives such a condition."""
WEBMUSHRA_CSV_COLUMNS = (
    "session_test_id",
    "session_uuid",
    "trial_id",
    "rating_stimulus",
    "rating_score",
    "rating_time",
    "rating_comment",
)
"""Column layout of current webMUSHRA releases' ``mushra.csv`` (``session_uuid`` is the listener;
questionnaire answers, when asked, sit between it and ``trial_id``)."""
WEBMUSHRA_REQUIRED_COLUMNS = ("session_uuid", "trial_id", "rating_stimulus", "rating_score")

# --- the web app's results tables ----------------------------------------------------------------

PARTICIPANTS_TABLE = "participants"
PAGES_TABLE = "pages"
RATINGS_TABLE = "ratings"
RATED_PAGE = "trial"
"""``pages.kind`` of a rated MUSHRA page (the others: headphones, volume, training, questionnaire)."""

COUNTED_RATING_COLUMNS = (
    "participant_id",
    "test",
    "participant",
    "trial",
    "condition",
    "score",
    "trial_position",
    "condition_position",
    "duration_ms",
    "plays",
    "submitted_at",
)
"""What :func:`counted_ratings_sql` returns, in this order, followed by any ``extra`` columns."""

_SOURCES = {
    "participant_id": "p.id",
    "test": "p.test",
    "participant": "p.code",
    "trial": "r.trial",
    "condition": "r.condition",
    "score": "r.score",
    "trial_position": "pg.trial_position",
    "condition_position": "r.condition_position",
    "duration_ms": "pg.duration_ms",
    "plays": "r.plays",
    "submitted_at": "pg.submitted_at",
    "listening_ms": "r.listening_ms",
    "loop_used": "pg.loop_used",
    "excluded": "p.excluded",
}
EXTRA_COLUMNS = ("listening_ms", "loop_used", "excluded")
"""Further columns :func:`counted_ratings_sql` can return: listening time of the condition, whether
the page's loop was used, whether the participant is excluded."""


def counted_ratings_sql(*, include_excluded: bool = False, one_test: bool = False,
                        extra: tuple[str, ...] = ()) -> str:
    """The SQL (portable: SQLite and PostgreSQL) of the ratings that count, one row per rating with
    :data:`COUNTED_RATING_COLUMNS` and then ``extra`` (from :data:`EXTRA_COLUMNS`), ordered by
    participant, trial position, condition position.

    Counted: ratings on pages of kind ``trial`` that were submitted; participants marked excluded
    are left out unless ``include_excluded``. ``one_test``: only the test named by the bound
    parameter ``:test``.
    """
    unknown = [c for c in extra if c not in EXTRA_COLUMNS]
    if unknown:
        raise ValueError(f"extra: expected columns among {list(EXTRA_COLUMNS)}, found {unknown}")
    select = ",\n       ".join(f"{_SOURCES[c]} AS {c}" for c in (*COUNTED_RATING_COLUMNS, *extra))
    where = [f"pg.kind = '{RATED_PAGE}'", "pg.submitted_at IS NOT NULL"]
    if one_test:
        where.append("p.test = :test")
    if not include_excluded:
        # IS NOT TRUE: a participant whose flag was never set counts as not excluded.
        where.append("p.excluded IS NOT TRUE")
    return (
        f"SELECT {select}\n"
        f"FROM {RATINGS_TABLE} AS r\n"
        f"JOIN {PAGES_TABLE} AS pg ON pg.id = r.page_id\n"
        f"JOIN {PARTICIPANTS_TABLE} AS p ON p.id = r.participant_id\n"
        f"WHERE " + "\n  AND ".join(where) + "\n"
        "ORDER BY p.id, pg.trial_position, r.condition_position, r.id"
    )


def iso_utc(value: datetime | str | None) -> str:
    """A stored time as the tables give it: ISO 8601 in UTC to the millisecond with a ``Z``
    (``2026-01-01T10:01:00.000Z``); empty for none. A naive time (SQLite hands those back, as a
    datetime or as text) was stored as UTC."""
    if value is None:
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
