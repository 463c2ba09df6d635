"""The statements of the participants' requests (the hot path): finding the participant and the
page to show, an audio token's page, and storing a submitted page.

Built once here as module constants (or once per set of columns), compiled once per database by
:class:`.prepared.PreparedStatements` and run through ``Storage.run_fast``: a request pays for
neither building nor compiling them.
"""

from __future__ import annotations

from functools import cache

from sqlalchemy import and_, bindparam, exists, func, insert, select, update
from sqlalchemy.dialects.postgresql import ARRAY

from .schema import AudioToken, Page, Participant, Rating

_P = Participant.__table__
_PG = Page.__table__
_R = Rating.__table__
_AT = AudioToken.__table__

PARTICIPANT_ID = select(_P.c.id).where(_P.c.token == bindparam("token"), _P.c.test == bindparam("test"))
"""The participant of a token (``:token``) in a test (``:test``)."""

_SAME_KIND = _PG.alias("same_kind")
CURRENT_PAGE = (
    select(
        _P.c.language, _P.c.stopped, _P.c.volume_gain_db,
        _PG.c.kind, _PG.c.position, _PG.c.tokens,
        select(func.count())
        .where(_SAME_KIND.c.participant_id == _P.c.id, _SAME_KIND.c.kind == _PG.c.kind, _SAME_KIND.c.position <= _PG.c.position)
        .scalar_subquery().label("n"),
        select(func.count())
        .where(_SAME_KIND.c.participant_id == _P.c.id, _SAME_KIND.c.kind == _PG.c.kind)
        .scalar_subquery().label("total"),
    )
    .select_from(_P.outerjoin(_PG, and_(_PG.c.participant_id == _P.c.id, _PG.c.submitted_at.is_(None))))
    .where(_P.c.token == bindparam("token"), _P.c.test == bindparam("test"))
    .order_by(_PG.c.position)
    .limit(1)
)
"""One round trip for everything a page needs: the participant, its first page not yet submitted
(none: the test is finished) and that page's place (``n`` of ``total``) among the pages of its kind."""

AUDIO = (
    select(_AT.c.slot, _PG.c.kind, _PG.c.setup, _PG.c.trial, _PG.c.condition_order)
    .select_from(_AT.join(_P, _P.c.id == _AT.c.participant_id).join(_PG, _PG.c.id == _AT.c.page_id))
    .where(_AT.c.token == bindparam("audio"), _P.c.token == bindparam("token"), _P.c.test == bindparam("test"))
)
"""An audio token (``:audio``) of the participant (``:token``, ``:test``): its slot and its page."""

_PENDING = _PG.alias("pending")
SUBMISSION_LOOKUP = (
    select(
        _P.c.id.label("participant_id"), _P.c.stopped, _P.c.finished_at,
        _PG.c.id.label("page_id"), _PG.c.kind, _PG.c.trial, _PG.c.condition_order, _PG.c.tokens,
        _PG.c.setup, _PG.c.submitted_at, _PG.c.idempotency_key,
        select(func.min(_PENDING.c.position))
        .where(_PENDING.c.participant_id == _P.c.id, _PENDING.c.submitted_at.is_(None))
        .scalar_subquery().label("expected"),
        select(func.count())
        .where(_PENDING.c.participant_id == _P.c.id, _PENDING.c.submitted_at.is_(None))
        .scalar_subquery().label("remaining"),
    )
    .join(_PG, _PG.c.participant_id == _P.c.id)
    .where(_P.c.token == bindparam("token"), _P.c.test == bindparam("test"), _PG.c.position == bindparam("position"))
)
"""The submitted page (``:position``) of the participant with what checking it needs: the first
position not yet submitted (``expected``) and how many are left (``remaining``)."""

PAGE_STATE = (
    select(_PG.c.idempotency_key, _P.c.finished_at, _P.c.stopped)
    .join(_P, _P.c.id == _PG.c.participant_id)
    .where(_PG.c.id == bindparam("page_id"))
)
"""A page's idempotency key and its participant's state, read again after losing a race."""

INSERT_RATINGS = insert(_R)

RATING_COLUMNS = ("condition", "score", "condition_position", "plays", "listening_ms")
"""The columns of a rating that come from the submission (the rest come from its page)."""


def page_update(columns: tuple[str, ...]):
    """The UPDATE storing a page with values for ``columns`` besides the submission time and key
    (bound as ``v_<column>``); one statement per page kind's set of columns."""
    # "submitted_at IS NULL": a page is stored once even if the checks before were ever bypassed.
    return (
        update(_PG)
        .where(_PG.c.id == bindparam("page_id"), _PG.c.submitted_at.is_(None))
        .values(
            submitted_at=bindparam("now", type_=_PG.c.submitted_at.type),
            idempotency_key=bindparam("key", type_=_PG.c.idempotency_key.type),
            **{c: bindparam(f"v_{c}", type_=_PG.c[c].type) for c in columns},
        )
    )


store_page = cache(page_update)
""":func:`page_update`, one statement object per set of columns (the compiled form is keyed on it)."""


@cache
def update_participant(columns: tuple[str, ...]):
    """The UPDATE of the page's participant (``:participant_id``) with ``p_<column>`` values."""
    return (
        update(_P)
        .where(_P.c.id == bindparam("participant_id"))
        .values(**{c: bindparam(f"p_{c}", type_=_P.c[c].type) for c in columns})
    )


@cache
def store_in_one_statement(page_columns: tuple[str, ...], participant_columns: tuple[str, ...], with_ratings: bool):
    """PostgreSQL: the page's UPDATE, its ratings' INSERT and the participant's UPDATE as one
    statement (data-modifying CTEs), which commits on its own in autocommit mode: one round trip
    instead of five (BEGIN, three writes, COMMIT), the largest cost of a submission on that server.
    The INSERT and the participant's UPDATE read the page UPDATE's RETURNING row, so they write
    nothing unless it stored the page. Ratings come as one array per column (``r_<column>``).
    Answers ``stored``: 1, or 0 when the page had been submitted already."""
    # A new UPDATE, not store_page's: a statement once compiled memoises its (empty) RETURNING
    # columns, and .returning() on a copy of it would keep them (SQLAlchemy 2.1).
    stored = page_update(page_columns).returning(_PG.c.id, _PG.c.participant_id, _PG.c.trial).cte("stored")
    writes = []
    if with_ratings:
        rows = (
            func.unnest(*[bindparam(f"r_{c}", type_=ARRAY(_R.c[c].type)) for c in RATING_COLUMNS])
            .table_valued(*RATING_COLUMNS)
            .render_derived(name="r")
        )
        writes.append(
            insert(_R)
            .from_select(
                ["page_id", "participant_id", "trial", *RATING_COLUMNS],
                select(stored.c.id, stored.c.participant_id, stored.c.trial, *[rows.c[c] for c in RATING_COLUMNS]),
            )
            .cte("rated")
        )
    if participant_columns:
        writes.append(update_participant(participant_columns).where(exists(select(stored.c.id))).cte("finished"))
    return select(func.count().label("stored")).select_from(stored).add_cte(*writes)


__all__ = [
    "AUDIO",
    "CURRENT_PAGE",
    "INSERT_RATINGS",
    "PAGE_STATE",
    "PARTICIPANT_ID",
    "RATING_COLUMNS",
    "SUBMISSION_LOOKUP",
    "page_update",
    "store_in_one_statement",
    "store_page",
    "update_participant",
]
