"""The results database: its tables and schema version (:mod:`.schema`), connections to SQLite
files and PostgreSQL (:mod:`.engine`), the participants' statements (:mod:`.fast_path`) run
through the compiled fast path (:mod:`.prepared`), and :class:`Storage`, one database as the app
uses it (:mod:`.database`).

The names callers need are importable from here.
"""

from .database import Storage
from .engine import PRIVATE_FILE, SQLITE_SYNCHRONOUS, DatabaseUnavailable, database_url_for
from .prepared import FastConnection
from .schema import (
    MIGRATIONS,
    SCHEMA_VERSION,
    AdminSession,
    AudioToken,
    Base,
    Page,
    Participant,
    ParticipantEvent,
    Rating,
    SchemaInfo,
    ThrottleEvent,
    utc_iso,
    utcnow,
)

__all__ = [
    "AdminSession",
    "AudioToken",
    "Base",
    "DatabaseUnavailable",
    "FastConnection",
    "MIGRATIONS",
    "PRIVATE_FILE",
    "Page",
    "Participant",
    "ParticipantEvent",
    "Rating",
    "SCHEMA_VERSION",
    "SQLITE_SYNCHRONOUS",
    "SchemaInfo",
    "Storage",
    "ThrottleEvent",
    "database_url_for",
    "utc_iso",
    "utcnow",
]
