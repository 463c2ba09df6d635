"""The results tables, the schema version stored with them and the steps that upgrade an older
database.

Nothing is ever deleted: excluding a participant sets a flag and writes an event. The schema
version is stored in the database (``schema_info``); :data:`MIGRATIONS` maps a version to the step
that upgrades a database to the next one, so a later release can open an existing results file.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    select,
    text,
)
from sqlalchemy.engine import Connection
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ..errors import StorageError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
MIGRATIONS: dict[int, Callable[[Connection], None]] = {}
"""``MIGRATIONS[v](conn)`` upgrades a version-``v`` database to ``v + 1`` inside one transaction.
New tables need no step: ``create_all`` adds them before the migrations run."""


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    # none_as_null: Python None is stored as SQL NULL (not the JSON text 'null') also when it is
    # passed explicitly, as the participant pages' executemany inserts do.
    type_annotation_map = {dict: JSON(none_as_null=True), list: JSON(none_as_null=True)}


class SchemaInfo(Base):
    __tablename__ = "schema_info"
    key: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[str] = mapped_column(String(64))


class Participant(Base):
    __tablename__ = "participants"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    test: Mapped[str] = mapped_column(String(128), index=True)
    token: Mapped[str] = mapped_column(String(64), unique=True)
    code: Mapped[str] = mapped_column(String(16))
    """Short public id shown in exports (``P`` + 8 hex digits); the token stays secret."""
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    language: Mapped[str] = mapped_column(String(8))
    crowd: Mapped[dict] = mapped_column(default=dict)
    answers: Mapped[dict | None] = mapped_column()
    headphone_correct: Mapped[int | None] = mapped_column(Integer)
    headphone_passed: Mapped[bool | None] = mapped_column(Boolean)
    volume_gain_db: Mapped[float | None] = mapped_column(Float)
    user_agent: Mapped[str] = mapped_column(String(512), default="")
    excluded: Mapped[bool] = mapped_column(Boolean, default=False)
    stopped: Mapped[bool] = mapped_column(Boolean, default=False)
    """True when the headphone check failed and the test is set to stop."""
    consent_nonce: Mapped[str | None] = mapped_column(String(64), unique=True, index=True)
    """The consent-form nonce (a cookie of the browser that consented): a second consent from that
    browser, a double click included, finds this participant instead of creating another."""


class ParticipantEvent(Base):
    __tablename__ = "participant_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id"), index=True)
    action: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(500), default="")
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AdminSession(Base):
    """A logged-in admin browser; the signed session cookie carries ``id`` and ``issued_at``.
    Logout sets ``ended_at``; a password change ends every session through ``password_tag``."""

    __tablename__ = "admin_sessions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    issued_at: Mapped[float] = mapped_column(Float)
    """Seconds since the epoch (as are the other times of the rate-limit tables)."""
    password_tag: Mapped[str] = mapped_column(String(64))
    """A keyed digest of the password hash the session logged in with."""
    ended_at: Mapped[float | None] = mapped_column(Float)


class ThrottleEvent(Base):
    """One counted event of a rate limit (a failed admin login, a new participant), keyed by a
    keyed digest of the client address, never the address itself; old rows are deleted."""

    __tablename__ = "throttle_events"
    __table_args__ = (Index("ix_throttle_events_scope_key_at", "scope", "key", "at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scope: Mapped[str] = mapped_column(String(160))
    key: Mapped[str] = mapped_column(String(64))
    at: Mapped[float] = mapped_column(Float)


def _add_consent_nonce(conn: Connection) -> None:
    conn.execute(text("ALTER TABLE participants ADD COLUMN consent_nonce VARCHAR(64)"))
    conn.execute(text("CREATE UNIQUE INDEX ix_participants_consent_nonce ON participants (consent_nonce)"))


MIGRATIONS[1] = _add_consent_nonce


class Page(Base):
    __tablename__ = "pages"
    __table_args__ = (UniqueConstraint("participant_id", "position"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    """``headphones | volume | training | trial | questionnaire``."""
    trial: Mapped[str | None] = mapped_column(String(128))
    trial_position: Mapped[int | None] = mapped_column(Integer)
    """1-based position among the participant's rated trials (None for other pages)."""
    condition_order: Mapped[list | None] = mapped_column()
    """Condition ids in the order shown on the page (MUSHRA pages)."""
    tokens: Mapped[list | None] = mapped_column()
    """Opaque audio tokens of the page in slot order: ``[reference, shown condition 0, 1, ...]`` for
    MUSHRA pages, ``[reference]`` for the volume page, one per round for the headphone check."""
    setup: Mapped[dict | None] = mapped_column()
    """Server-side facts of the page the browser never sees (headphone-check answers)."""
    submitted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    idempotency_key: Mapped[str | None] = mapped_column(String(64))
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    loop_used: Mapped[bool | None] = mapped_column(Boolean)
    answers: Mapped[dict | None] = mapped_column()


class Rating(Base):
    __tablename__ = "ratings"
    __table_args__ = (UniqueConstraint("page_id", "condition"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    page_id: Mapped[int] = mapped_column(ForeignKey("pages.id"), index=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id"), index=True)
    trial: Mapped[str] = mapped_column(String(128))
    condition: Mapped[str] = mapped_column(String(128))
    score: Mapped[float | None] = mapped_column(Float)
    condition_position: Mapped[int] = mapped_column(Integer)
    plays: Mapped[int] = mapped_column(Integer)
    listening_ms: Mapped[int] = mapped_column(Integer)


class AudioToken(Base):
    __tablename__ = "audio_tokens"
    token: Mapped[str] = mapped_column(String(48), primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id"), index=True)
    page_id: Mapped[int] = mapped_column(ForeignKey("pages.id"))
    slot: Mapped[int] = mapped_column(Integer)
    """-1: the page's reference; n >= 0: the n-th shown condition (or headphone-check trial)."""


def utc_iso(value: datetime | None) -> str:
    if value is None:
        return ""
    if value.tzinfo is None:  # SQLite hands back naive datetimes; they were stored as UTC.
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def create_or_upgrade(conn: Connection, database: str) -> None:
    """Create the tables of a new database and record its schema version, or bring an older one
    up to :data:`SCHEMA_VERSION`, one committed migration at a time. ``conn``: a connection
    outside any transaction; ``database``: how errors and the log name it."""
    with conn.begin():
        Base.metadata.create_all(conn)
        row = conn.execute(select(SchemaInfo.value).where(SchemaInfo.key == "schema_version")).scalar()
        if row is None:
            conn.execute(SchemaInfo.__table__.insert().values(key="schema_version", value=str(SCHEMA_VERSION)))
            return
        version = int(row)
    if version > SCHEMA_VERSION:
        raise StorageError(
            f"database {database} has schema version {version}, newer than this "
            f"software's {SCHEMA_VERSION}; upgrade earshot"
        )
    while version < SCHEMA_VERSION:
        with conn.begin():
            MIGRATIONS[version](conn)
            version += 1
            conn.execute(
                SchemaInfo.__table__.update()
                .where(SchemaInfo.key == "schema_version")
                .values(value=str(version))
            )
        log.info("migrated %s to schema version %d", database, version)


__all__ = [
    "AdminSession",
    "AudioToken",
    "Base",
    "MIGRATIONS",
    "Page",
    "Participant",
    "ParticipantEvent",
    "Rating",
    "SCHEMA_VERSION",
    "SchemaInfo",
    "ThrottleEvent",
    "create_or_upgrade",
    "utc_iso",
    "utcnow",
]
