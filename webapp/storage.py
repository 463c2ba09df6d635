"""The results database: SQLAlchemy 2 tables, engines (SQLite WAL or PostgreSQL) and the schema version.

Nothing is ever deleted: excluding a participant sets a flag and writes an event. The schema
version is stored in the database (``schema_info``); :data:`MIGRATIONS` maps a version to the step
that upgrades a database to the next one, so a later release can open an existing results file.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import time
from collections import namedtuple
from collections.abc import Callable
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

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
    create_engine,
    event,
    select,
    text,
)
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker
from sqlalchemy.sql import ClauseElement

from .errors import StorageError
from .settings import make_private_dirs

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


SQLITE_SYNCHRONOUS = ("normal", "full")

PRIVATE_FILE = 0o600
"""Mode of the SQLite file (its -wal and -shm files copy it) and of the write-lock file: ratings
are personal data, readable by the study's owner only."""


class DatabaseUnavailable(StorageError):
    """The database can no longer store pages: its file was deleted or replaced while the server
    ran, or it is corrupt. Answered with HTTP 503, which the participant's page retries while
    keeping its answers."""


def _sqlite_corrupt(exc: BaseException) -> bool:
    """Whether a driver error says the file is damaged or not a database at all."""
    return getattr(exc, "sqlite_errorname", "") in ("SQLITE_CORRUPT", "SQLITE_NOTADB")


def _open_database_file(path: Path) -> tuple[int, int]:
    """Create the SQLite file (owner-only) unless it exists; its (device, inode).

    Created here rather than by SQLite so that the mode is 0600 whatever the umask, and so that
    the connections can open it with ``mode=rw``: a file deleted under a running server is then
    an error, not a new empty database that takes the next pages. An existing file is only
    stat()ed: closing a descriptor of it would drop this process's SQLite locks on it.
    """
    try:
        make_private_dirs(path.parent)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE_FILE)
            except FileExistsError:  # another worker created it first
                st = os.stat(path)
            else:
                st = os.fstat(fd)
                os.close(fd)
    except OSError as exc:
        raise StorageError(f"{path}: cannot open the results database there ({exc.strerror or exc})") from exc
    if not path.is_file():
        raise StorageError(f"{path}: expected a SQLite results database, found a folder or special file")
    if st.st_mode & 0o077:
        # Info, not a warning: a file of an older release, or shared on purpose; the docs say how.
        log.info("%s is readable by other users (mode %o); ratings are personal data", path, st.st_mode & 0o777)
    return st.st_dev, st.st_ino


def _sqlite_engine(path: Path, synchronous: str, storage: Storage) -> Engine:
    uri = f"file:{quote(str(path))}?mode=rw"

    def _connect():
        # check_same_thread=False: what SQLAlchemy sets for file databases itself (pooled
        # connections move between threads; each is used by one thread at a time).
        try:
            return sqlite3.connect(uri, uri=True, timeout=30, check_same_thread=False)
        except sqlite3.OperationalError:
            storage.check_file()  # "unable to open database file": was it deleted?
            raise

    engine = create_engine(f"sqlite:///{path}", creator=_connect)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        # A connection opened after the file was replaced would read and write the other file.
        storage.check_file()
        # Let SQLAlchemy's "begin" event, not pysqlite, open transactions so writers can take the
        # lock up front (BEGIN IMMEDIATE) instead of failing on a lock upgrade under load.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        # FULL (default): every commit is flushed to the disk before the page is acknowledged, so
        # it survives a power cut. NORMAL (WAL): a commit reaches the OS's page cache, which
        # survives a killed server but not a power cut.
        cur.execute(f"PRAGMA synchronous={synchronous.upper()}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        immediate = conn.get_execution_options().get("sqlite_immediate", False)
        # Straight to the driver: a statement through SQLAlchemy costs more than BEGIN itself.
        conn.connection.driver_connection.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


class Prepared:
    """A Core statement compiled once for one dialect, run straight on a DBAPI cursor.

    Through ``Connection.execute`` a statement costs about 0.25 ms of Python (cache-key
    generation, events, result objects) beyond the driver's own work: more than the query on a
    small SQLite database. This keeps SQLAlchemy's SQL and its type conversions (JSON, SQLite's
    datetimes and booleans, psycopg's JSON wrapper) and drops the rest. Rows are named tuples.
    """

    def __init__(
        self, statement: ClauseElement, dialect: Dialect, column_keys: list[str] | None = None, many: bool = False
    ):
        # column_keys: an INSERT's columns, when its values come with each execution.
        compiled = statement.compile(dialect=dialect, column_keys=column_keys, for_executemany=many)
        self.sql = compiled.string
        self._defaults = {k: v for k, v in compiled.construct_params(_check=False).items() if v is not None}
        self._order = list(compiled.positiontup) if compiled.positional else None
        self._processors = []
        for bind, name in compiled.bind_names.items():
            proc = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if proc is not None:
                self._processors.append((name, proc))
        self._dialect = dialect
        self._column_types = None
        self._result = None
        columns = []
        if getattr(statement, "is_select", False):
            columns = list(statement.selected_columns)
        elif getattr(statement, "is_dml", False):
            columns = list(statement.exported_columns)  # RETURNING
        if columns:
            self._column_types = [c.type.dialect_impl(dialect) for c in columns]
            self._row = namedtuple("Row", [c.key for c in columns])
        self.returns_rows = bool(columns)

    def parameters(self, values: dict):
        p = {**self._defaults, **values}
        for name, proc in self._processors:
            if name in p:
                p[name] = proc(p[name])
        return p if self._order is None else [p[name] for name in self._order]

    def row(self, cursor, raw: tuple | None):
        if raw is None:
            return None
        if self._result is None:
            # Result conversions depend on the driver's column types (psycopg's numeric OIDs).
            self._result = [
                t.result_processor(self._dialect, d[1]) for t, d in zip(self._column_types, cursor.description, strict=True)
            ]
        return self._row(*[v if f is None or v is None else f(v) for f, v in zip(self._result, raw, strict=True)])


class FastConnection:
    """A DBAPI connection running :class:`Prepared` statements (see :meth:`Storage.run_fast`)."""

    def __init__(self, storage: Storage, dbapi_connection):
        self.storage = storage
        self.dbapi_connection = dbapi_connection
        self.dialect_name = storage.engine.dialect.name

    def first(self, statement: ClauseElement, values: dict):
        """The first row of a SELECT (None: no rows), as a named tuple of its columns' keys."""
        prepared = self.storage.prepared(statement)
        with closing(self.dbapi_connection.cursor()) as cursor:
            cursor.execute(prepared.sql, prepared.parameters(values))
            return prepared.row(cursor, cursor.fetchone())

    def all(self, statement: ClauseElement, values: dict) -> list:
        """Every row of a SELECT."""
        prepared = self.storage.prepared(statement)
        with closing(self.dbapi_connection.cursor()) as cursor:
            cursor.execute(prepared.sql, prepared.parameters(values))
            return [prepared.row(cursor, raw) for raw in cursor.fetchall()]

    def insert(self, statement: ClauseElement, row: dict):
        """One row of an ``insert(table)`` whose values are ``row``'s; the RETURNING row if any.
        (Give every column with a Python-side default: they are not filled in here.)"""
        prepared = self.storage.prepared(statement, sorted(row), many=False)
        with closing(self.dbapi_connection.cursor()) as cursor:
            cursor.execute(prepared.sql, prepared.parameters(row))
            return prepared.row(cursor, cursor.fetchone()) if prepared.returns_rows else None

    def execute(self, statement: ClauseElement, values: dict) -> int:
        """Run an INSERT/UPDATE; returns the number of rows it changed."""
        prepared = self.storage.prepared(statement)
        with closing(self.dbapi_connection.cursor()) as cursor:
            cursor.execute(prepared.sql, prepared.parameters(values))
            return cursor.rowcount

    def executemany(self, statement: ClauseElement, rows: list[dict]) -> None:
        """One INSERT for many rows (all rows must have the same keys)."""
        prepared = self.storage.prepared(statement, sorted(rows[0]), many=True)
        with closing(self.dbapi_connection.cursor()) as cursor:
            cursor.executemany(prepared.sql, [prepared.parameters(r) for r in rows])


class Storage:
    """One database: an engine plus session factories for reading and for writing."""

    def __init__(self, url: str, sqlite_synchronous: str = "full"):
        if sqlite_synchronous not in SQLITE_SYNCHRONOUS:
            raise StorageError(f"sqlite_synchronous: expected one of {SQLITE_SYNCHRONOUS}, found {sqlite_synchronous!r}")
        self.url = url
        self._broken: str | None = None
        self._last_quick_check = 0.0
        self._path: Path | None = None
        if url.startswith("sqlite:///"):
            self._path = Path(url[len("sqlite:///") :])
            # The file this process serves: compared with what the path names before a write is
            # acknowledged (see check_file).
            self._identity = _open_database_file(self._path)
            self.engine = _sqlite_engine(self._path, sqlite_synchronous, self)
            write_engine = self.engine.execution_options(sqlite_immediate=True)
        else:
            self.engine = create_engine(url, pool_size=5, max_overflow=10, pool_pre_ping=True)
            write_engine = self.engine
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self._write_engine = write_engine
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(write_engine, expire_on_commit=False)
        self._thread_lock = threading.Lock()
        self._lock_file = None
        if self.is_sqlite:
            self._lock_path = Path(url[len("sqlite:///") :] + ".writelock")
        self._prepared: dict[tuple, Prepared] = {}
        self._local = threading.local()
        self._fast_connections: list = []
        dbapi = self.engine.dialect.loaded_dbapi
        self._dbapi_error = dbapi.Error

    @contextmanager
    def reading(self):
        with self._read() as session, session.begin():
            yield session

    @contextmanager
    def _sqlite_write_lock(self):
        # SQLite lets one writer in at a time and makes the others poll with growing sleeps (up to
        # 100 ms each), which ruins tail latency under load. Queue writers on a lock instead:
        # a mutex between this process's threads and flock() between gunicorn workers, both of
        # which wake the next writer the moment the previous one commits.
        with self._thread_lock:
            if self._lock_file is None:
                fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE)
                self._lock_file = os.fdopen(fd, "r+b")  # kept for the process's life
            fcntl.flock(self._lock_file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._lock_file, fcntl.LOCK_UN)

    @contextmanager
    def writing(self):
        """A session whose transaction commits on leaving the block (rolls back on error)."""
        if self.is_sqlite:
            self._refuse_if_broken()
            with self._sqlite_write_lock():
                with self._write() as session, session.begin():
                    yield session
                self.check_file()
        else:
            with self._write() as session, session.begin():
                yield session

    @contextmanager
    def writing_core(self):
        """A Core connection whose transaction commits on leaving the block (rolls back on error)."""
        if self.is_sqlite:
            self._refuse_if_broken()
            with self._sqlite_write_lock():
                with self._write_engine.connect() as conn, conn.begin():
                    yield conn
                self.check_file()
        else:
            with self._write_engine.connect() as conn, conn.begin():
                yield conn

    def prepared(self, statement: ClauseElement, column_keys: list[str] | None = None, many: bool = False) -> Prepared:
        """``statement`` compiled for this database, once (statements are module-level constants)."""
        key = (statement, None if column_keys is None else tuple(column_keys), many)
        prepared = self._prepared.get(key)
        if prepared is None:
            prepared = self._prepared[key] = Prepared(statement, self.engine.dialect, column_keys, many)
        return prepared

    def _fast_connection(self) -> FastConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            # One DBAPI connection per thread, kept open: no pool checkout and, on PostgreSQL,
            # no pre-ping round trip per request. Made by the engine, so its connect-time
            # settings (SQLite's WAL, foreign keys, ...) apply; a broken one is replaced below.
            proxied = self.engine.raw_connection()
            dbapi_connection = proxied.dbapi_connection
            proxied.detach()
            if not self.is_sqlite:
                # Statements outside BEGIN commit on their own: a lone SELECT costs no extra
                # round trips.
                dbapi_connection.autocommit = True
            conn = self._local.conn = FastConnection(self, dbapi_connection)
            with self._thread_lock:
                self._fast_connections.append(dbapi_connection)
        return conn

    def _drop_fast_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with self._thread_lock:
                if conn.dbapi_connection in self._fast_connections:
                    self._fast_connections.remove(conn.dbapi_connection)
            try:
                conn.dbapi_connection.close()
            except self._dbapi_error:
                pass

    def run_fast(self, work: Callable[[FastConnection], object], write: bool):
        """``work(conn)`` on this thread's :class:`FastConnection`; returns what it returns.

        ``write``: inside one transaction that commits before this returns (rolls back if
        ``work`` raises); SQLite writers take the write lock first, as :meth:`writing_core`
        does. Otherwise autocommit: every statement is its own transaction with its own
        snapshot (reads, or a single statement that writes; see ``submissions.submit``).
        Driver errors come out as SQLAlchemy's exceptions (``IntegrityError``, ...). A
        connection found dropped (a PostgreSQL restart) is replaced; ``work`` runs again once on
        the new one unless a transaction's COMMIT had been sent (whether it landed is then
        unknown, and the error goes to the caller: a retried page submission is answered from its
        idempotency key). In autocommit, ``work`` must be safe to run again for the same reason.
        """
        for attempt in range(2):
            conn = self._fast_connection()
            committing = [False]
            try:
                if not write:
                    return work(conn)
                if self.is_sqlite:
                    self._refuse_if_broken()
                    with self._sqlite_write_lock():
                        result = self._transaction(conn, work, "BEGIN IMMEDIATE", committing)
                        # One stat() per write (microseconds): a commit into a deleted or
                        # replaced file is lost at the next restart, so it is not acknowledged.
                        self.check_file()
                        return result
                return self._transaction(conn, work, "BEGIN", committing)
            except self._dbapi_error as exc:
                if self.is_sqlite:
                    self._check_after_error(exc)
                disconnected = self.engine.dialect.is_disconnect(exc, conn.dbapi_connection, None)
                if disconnected:
                    self._drop_fast_connection()
                if disconnected and attempt == 0 and not committing[0]:
                    log.info("database connection lost, reconnecting: %s", exc)
                    continue
                raise DBAPIError.instance(None, None, exc, self._dbapi_error) from exc

    @staticmethod
    def _transaction(conn: FastConnection, work, begin: str, committing: list[bool]):
        cursor = conn.dbapi_connection.cursor()
        try:
            cursor.execute(begin)
            try:
                result = work(conn)
                committing[0] = True
                cursor.execute("COMMIT")
                return result
            except BaseException:
                try:
                    cursor.execute("ROLLBACK")  # also after a failed COMMIT, which leaves it open
                except conn.storage._dbapi_error:
                    pass
                raise
        finally:
            cursor.close()

    def _refuse_if_broken(self) -> None:
        if self._broken is not None:
            raise DatabaseUnavailable(self._broken)

    def _fail(self, reason: str) -> DatabaseUnavailable:
        """Mark this database unusable for the rest of the process (the connections still point
        at the old file or a damaged one; only a restart opens it afresh)."""
        if self._broken is None:
            self._broken = reason
            log.error("%s", reason)
        return DatabaseUnavailable(self._broken)

    def check_file(self) -> None:
        """Raise :class:`DatabaseUnavailable` unless the SQLite path still names the file this
        process opened (no-op on PostgreSQL)."""
        self._refuse_if_broken()
        if self._path is None:
            return
        try:
            st = os.stat(self._path)
        except FileNotFoundError:
            problem = "was deleted while the server ran"
        except OSError as exc:
            problem = f"cannot be checked ({exc.strerror or exc})"
        else:
            if (st.st_dev, st.st_ino) == self._identity:
                return
            problem = "was replaced by another file while the server ran"
        raise self._fail(
            f"results database {self._path} {problem} (process {os.getpid()}): pages are refused from now on "
            f"(participants' pages keep their answers and retry); see 'The database file was deleted or "
            f"damaged' in webapp/docs/running-a-study.md"
        )

    def _check_after_error(self, exc: BaseException) -> None:
        """Turn a driver error caused by a vanished, replaced or damaged file into
        :class:`DatabaseUnavailable`; other errors stay as they are."""
        if isinstance(exc, DatabaseUnavailable):
            return
        if _sqlite_corrupt(exc):
            raise self._fail(f"results database {self._path} is damaged ({exc}): pages are refused from now on") from exc
        self.check_file()

    def _integrity_problem(self) -> str | None:
        """SQLite's ``PRAGMA quick_check`` (O(size) reads, no lock held against writers): None,
        or the first problem it found. On a read-only connection of its own, so that a damaged
        file is not written to (not even switched to WAL) before it has been checked."""
        self._last_quick_check = time.monotonic()
        try:
            with closing(sqlite3.connect(f"file:{quote(str(self._path))}?mode=ro", uri=True, timeout=30)) as conn:
                problems = [r for (r,) in conn.execute("PRAGMA quick_check") if r != "ok"]
        except sqlite3.Error as exc:
            if getattr(exc, "sqlite_errorname", "") == "SQLITE_NOTADB":
                return f"{self._path}: expected a SQLite results database, found another kind of file ({exc})"
            return f"results database {self._path} failed the integrity check: {exc}"
        if not problems:
            return None
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        return f"results database {self._path} failed the integrity check: {problems[0]}{more}"

    def quick_check(self) -> None:
        """:class:`DatabaseUnavailable` (and no page acknowledged from then on) when a SQLite
        file fails ``PRAGMA quick_check``."""
        if self.is_sqlite and (problem := self._integrity_problem()) is not None:
            raise self._fail(problem)

    def health(self, quick_check_every_s: float) -> str | None:
        """None when the database can store pages, else the reason it cannot. SQLite: the file
        identity each time, ``PRAGMA quick_check`` at most every ``quick_check_every_s``.
        PostgreSQL: one round trip."""
        try:
            if self.is_sqlite:
                self.check_file()
                if time.monotonic() - self._last_quick_check >= quick_check_every_s:
                    self.quick_check()
            else:
                with self.engine.connect() as conn:
                    conn.exec_driver_sql("SELECT 1")
        except DatabaseUnavailable as exc:
            return str(exc)
        except DBAPIError as exc:
            return f"database {self.engine.url!r} cannot be reached: {exc.orig}"
        return None

    def initialise(self) -> None:
        """Check a SQLite file's integrity, then create or upgrade the tables; several workers
        may call this at the same time. A file that is not a usable database is a
        :class:`StorageError` naming it."""
        # A damaged file found now is one error for the command to print, nothing to log.
        if self.is_sqlite and (problem := self._integrity_problem()) is not None:
            raise StorageError(problem)
        where = self._path if self.is_sqlite else repr(self.engine.url)
        try:
            self._initialise_with_retries()
        except OSError as exc:  # the write-lock file beside the database
            raise StorageError(f"{where}: cannot use the results database there ({exc.strerror or exc})") from exc
        except DBAPIError as exc:
            if isinstance(exc.orig, StorageError):
                raise exc.orig from exc
            if self.is_sqlite and _sqlite_corrupt(exc.orig):
                raise StorageError(f"{where}: expected a SQLite results database, found a damaged file "
                                   f"or another kind of file ({exc.orig})") from exc
            raise StorageError(f"{where}: cannot open the results database ({exc.orig})") from exc

    def _initialise_with_retries(self) -> None:
        for attempt in range(5):
            try:
                if self.is_sqlite:
                    # Workers starting together on a new file would otherwise fail at once with
                    # "database is locked": SQLite refuses (without waiting) a reader's upgrade
                    # to writer while another connection writes.
                    with self._sqlite_write_lock():
                        self._initialise_once()
                else:
                    self._initialise_once()
                return
            except (OperationalError, IntegrityError) as exc:
                if attempt == 4:
                    raise StorageError(f"cannot initialise the database {self.engine.url!r}: {exc}") from exc
                log.info("schema initialisation raced another worker, retrying: %s", exc)
                self.engine.dispose()

    def _initialise_once(self) -> None:
        with self.engine.connect() as conn:
            with conn.begin():
                Base.metadata.create_all(conn)
                row = conn.execute(
                    select(SchemaInfo.value).where(SchemaInfo.key == "schema_version")
                ).scalar()
                if row is None:
                    conn.execute(SchemaInfo.__table__.insert().values(key="schema_version", value=str(SCHEMA_VERSION)))
                    return
                version = int(row)
            if version > SCHEMA_VERSION:
                raise StorageError(
                    f"database {self.engine.url!r} has schema version {version}, newer than this "
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
                log.info("migrated %s to schema version %d", self.engine.url, version)

    def schema_version(self) -> int:
        with self.reading() as s:
            return int(s.scalar(select(SchemaInfo.value).where(SchemaInfo.key == "schema_version")))

    def dispose(self) -> None:
        with self._thread_lock:
            connections, self._fast_connections = self._fast_connections, []
        for conn in connections:
            try:
                conn.close()
            except self._dbapi_error:
                pass
        self._local = threading.local()
        self.engine.dispose()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None


def database_url_for(test: str, results_dir: Path, database_url: str | None) -> str:
    """The database of ``test``: the shared URL, else SQLite at ``<results_dir>/<test>.db``."""
    if database_url:
        if database_url.startswith("postgresql://"):
            # SQLAlchemy's default PostgreSQL driver is psycopg2; the project ships psycopg 3.
            database_url = "postgresql+psycopg://" + database_url[len("postgresql://") :]
        return database_url
    return f"sqlite:///{(Path(results_dir) / f'{test}.db').resolve()}"


def utc_iso(value: datetime | None) -> str:
    if value is None:
        return ""
    if value.tzinfo is None:  # SQLite hands back naive datetimes; they were stored as UTC.
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


__all__ = [
    "AdminSession",
    "AudioToken",
    "Base",
    "Page",
    "Participant",
    "ParticipantEvent",
    "Rating",
    "SCHEMA_VERSION",
    "Storage",
    "ThrottleEvent",
    "database_url_for",
    "utc_iso",
    "utcnow",
]
